//! The command line: global options and one subcommand per API operation.

use clap::{Args, Parser, Subcommand, ValueEnum};

const GLOBAL: &str = "Global options";

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure (an output that could not be written, an unexpected HTTP status)
  2  usage error: a bad argument (e.g. --since), caught here or refused by the runtime (400)
  3  not found (404): no such run or event
  4  refused (409): e.g. replaying a run that has not finished
  5  unauthorized (401): no admin key, or a wrong one
  6  the runtime could not be reached, failed (5xx), or gave an answer that is not the API's

Only plain http:// is supported (no https).";

/// Talk to a running fanfare runtime over its HTTP API: send events, list and inspect
/// functions, runs and events, replay and cancel runs.
///
/// The runtime must serve HTTP (`Builder::http`) with an admin key (`Builder::admin_key`).
#[derive(Debug, Parser)]
#[command(name = "fanfare", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// The runtime's address: plain http:// only, with a path if the API is mounted
    /// under one.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "FANFARE_URL",
        default_value = "http://127.0.0.1:8288"
    )]
    pub url: String,

    /// An admin key of the runtime (`Builder::admin_key`), sent as `Authorization: Bearer`.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "FANFARE_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,

    /// Print one JSON document on stdout instead of text for people (for scripts).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Seconds to wait for each answer of the runtime.
    #[arg(long, global = true, help_heading = GLOBAL, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send an event: every function subscribed to NAME gets a run. Prints the event id.
    #[command(after_help = "Example: fanfare send user/signup '{\"user_id\": 42}'")]
    Send {
        /// The event's name, e.g. `user/signup`.
        name: String,
        /// The event's data: a JSON object (default `{}`); `-` reads it from stdin.
        data: Option<String>,
    },

    /// List the functions the runtime knows, with their trigger or cron and their runs
    /// counted by status.
    Functions,

    /// List runs, newest first.
    #[command(after_help = "Example: fanfare runs --status failed --since 1h")]
    Runs {
        #[command(flatten)]
        filter: Filter,
        /// Runs per page (1 to 1000; default 50, or 1000 with --all).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Start after this run id (the `next` of a previous page).
        #[arg(long, value_name = "RUN_ID", conflicts_with = "all")]
        after: Option<String>,
        /// Follow the pages to the last matching run.
        #[arg(long)]
        all: bool,
    },

    /// Show one run in full: status, event, attempts, error, output, failed attempts, steps with timing.
    Run {
        /// The run's id.
        id: String,
    },

    /// Show an event and its fan-out: the runs it started.
    Event {
        /// The event's id (as `send` printed it).
        id: String,
    },

    /// Run a finished run again, as a new run of the same event: one by id, or every
    /// finished run matching a filter (others are passed over).
    #[command(after_help = "Examples:\n  fanfare replay 01936f4e-…\n  \
                            fanfare replay --status failed --function crm-sync --since 1h")]
    Replay(Target),

    /// Cancel a run: one by id, or every run matching a filter. A running run stops at
    /// its next step; a finished one keeps its status.
    #[command(after_help = "Examples:\n  fanfare cancel 01936f4e-…\n  \
                            fanfare cancel --status queued --function crm-sync")]
    Cancel(Target),
}

/// One run by id, or a filter for a bulk operation.
#[derive(Debug, Args)]
pub struct Target {
    /// The run's id. Without it, every run matching the filter (at least one filter
    /// is required).
    #[arg(conflicts_with_all = ["status", "function", "event", "since", "until"])]
    pub id: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
}

/// Which runs: every option narrows the set.
#[derive(Debug, Args, Default, Clone)]
pub struct Filter {
    /// Only runs with this status.
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    /// Only runs of this function (its id).
    #[arg(long, value_name = "ID")]
    pub function: Option<String>,
    /// Only runs of this event (its id).
    #[arg(long, value_name = "ID")]
    pub event: Option<String>,
    /// Only runs created at or after: a duration ago (30m, 1h, 2d, 1h30m; units s m h d w)
    /// or an RFC 3339 time (2026-01-31T09:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<i64>,
    /// Only runs created before: as --since.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<i64>,
}

impl Filter {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.function.is_none()
            && self.event.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// The API's query parameters for this filter.
    pub fn params(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("status", self.status.map(|s| s.as_str().to_string())),
            ("function", self.function.clone()),
            ("event", self.event.clone()),
            ("since", self.since.map(|t| t.to_string())),
            ("until", self.until.map(|t| t.to_string())),
        ]
    }
}

/// A run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Queued,
    Running,
    Sleeping,
    Waiting,
    Completed,
    Failed,
    Skipped,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Sleeping => "sleeping",
            Status::Waiting => "waiting",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
        }
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    crate::time::parse_arg(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fanfare").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn runs_takes_every_filter() {
        let cli = parse(&[
            "runs",
            "--status",
            "failed",
            "--function",
            "crm",
            "--event",
            "e1",
            "--since",
            "1h",
            "--until",
            "2026-01-31T09:00:00Z",
            "--limit",
            "10",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Runs {
            filter,
            limit,
            all,
            after,
        } = cli.command
        else {
            panic!("not runs")
        };
        assert_eq!(filter.status, Some(Status::Failed));
        assert_eq!(filter.function.as_deref(), Some("crm"));
        assert_eq!(filter.until, Some(1_769_850_000_000));
        assert!(filter.since.is_some());
        assert_eq!((limit, all, after), (Some(10), false, None));
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["--url", "http://h:1", "functions", "--admin-key", "k"]).unwrap();
        assert_eq!(cli.url, "http://h:1");
        assert_eq!(cli.admin_key.as_deref(), Some("k"));
        assert_eq!(cli.timeout, 30);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["runs", "--since", "1 hour"][..],
            &["runs", "--since", "yesterday"],
            &["runs", "--status", "done"],
            &["runs", "--limit", "0"],
            &["runs", "--limit", "1001"],
            &["runs", "--all", "--after", "x"],
            &["replay", "some-id", "--status", "failed"],
            &["send"],
            &["frobnicate"],
        ] {
            let e = parse(args).expect_err(&format!("{args:?}"));
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        let e = parse(&["runs", "--since", "1x"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("unknown unit `x`"), "{e}");
    }

    #[test]
    fn replay_takes_an_id_or_a_filter() {
        let cli = parse(&["replay", "r1"]).unwrap();
        let Command::Replay(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.id.as_deref(), Some("r1"));
        assert!(t.filter.is_empty());
        let cli = parse(&["cancel", "--status", "queued", "--function", "f"]).unwrap();
        let Command::Cancel(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.id, None);
        assert_eq!(
            crate::client::query(&t.filter.params()),
            "?status=queued&function=f"
        );
    }

    #[test]
    fn help_documents_the_exit_codes() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("3  not found (404)"), "{help}");
        assert!(help.contains("plain http://"), "{help}");
    }
}
