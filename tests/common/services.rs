//! Service processes started by the PostgreSQL tests (the programs in `services/`),
//! and the observer runtime a test reads runs through.

use super::LIMIT;
use fanfare::{EventId, Runtime};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

/// A service process started by a test; killed when dropped.
pub struct Service {
    child: Child,
    stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<String>,
    pub pid: u32,
}

impl Service {
    pub fn start(bin: &str, url: &str, log: &std::path::Path, env: &[(&str, &str)]) -> Service {
        let mut child = Command::new(bin)
            .env("FANFARE_URL", url)
            .env("FANFARE_LOG", log)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the service");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut service = Service {
            child,
            stdin,
            lines,
            pid: 0,
        };
        let ready = service.expect("READY ");
        service.pid = ready.parse().unwrap();
        service
    }

    /// The rest of the next line that starts with `prefix`.
    pub fn expect(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("no `{prefix}` line from the service"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    pub fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, order_id: u64) -> EventId {
        self.command(&format!("send {order_id}"));
        self.expect("SENT ").parse().unwrap()
    }

    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SHIPPING: &str = env!("CARGO_BIN_EXE_shipping-service");
pub const BILLING: &str = env!("CARGO_BIN_EXE_billing-service");
pub const CRM: &str = env!("CARGO_BIN_EXE_crm-service");
pub const CANCEL: &str = env!("CARGO_BIN_EXE_cancel-service");
pub const CRON: &str = env!("CARGO_BIN_EXE_cron-service");

pub fn log_file() -> PathBuf {
    super::temp_db().with_extension("log")
}

pub fn log_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The test's own runtime: it sends and reads runs, and executes nothing.
pub async fn observer(url: &str) -> Runtime {
    Runtime::builder()
        .postgres(url)
        .app("observer")
        .execute(false)
        .start()
        .await
        .unwrap()
}
