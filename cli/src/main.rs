//! `fanfare`: a command line for a running fanfare runtime, over its HTTP API.
//!
//! Parse the arguments (`cli.rs`), call the API (`client.rs`, `commands.rs`), print a
//! JSON document or text (`render.rs`, `table.rs`), and exit with the code the failure's
//! kind maps to (`error.rs`).

mod api;
mod cli;
mod client;
mod commands;
mod error;
mod progress;
mod render;
mod table;
mod time;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    // Exits with 2 on a usage error, 0 for --help and --version.
    let cli = cli::Cli::parse();
    let json = cli.json;
    let outcome = match start(cli) {
        Ok(outcome) => outcome,
        Err(failure) => commands::Outcome {
            output: None,
            failure: Some(failure),
        },
    };
    let mut code = error::code::OK;
    if let Some(output) = outcome.output {
        let printed = if json {
            serde_json::to_string_pretty(&output.json)
                .map_err(std::io::Error::other)
                .and_then(|s| writeln!(std::io::stdout(), "{s}"))
        } else {
            write!(std::io::stdout(), "{}", output.text)
        };
        // A closed pipe (`fanfare runs | head`) is not worth a message.
        if let Err(e) = printed.and_then(|()| std::io::stdout().flush()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("error: cannot write the output: {e}");
                code = error::code::OTHER;
            }
        }
    }
    if let Some(failure) = outcome.failure {
        eprintln!("error: {failure}");
        code = failure.kind.code();
    }
    ExitCode::from(code)
}

/// Runs the command on a single-threaded tokio runtime.
fn start(cli: cli::Cli) -> Result<commands::Outcome, error::Failure> {
    let base = client::Base::parse(&cli.url)?;
    let client = client::Client::new(base, cli.admin_key, Duration::from_secs(cli.timeout));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error::Failure::new(error::Kind::Other, format!("cannot start tokio: {e}")))?;
    Ok(rt.block_on(commands::run(&client, cli.command)))
}
