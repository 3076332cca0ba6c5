//! Shared by the conformance suite: one behavioural test, run against every store.
//!
//! `conformance!(a, b)` turns each `async fn a(store: Store)` of the including file into
//! one `#[tokio::test]` per backend: `memory::a`, `sqlite::a`, `postgres::a`. Tests of
//! different backends run at the same time in one process, so what a test counts it
//! counts under a key of its own (the event id, or a name in the event).

#![allow(dead_code)]

pub mod http;
pub mod services;

use fanfare::{Backoff, Builder, EventId, RunInfo, RunStatus, Runtime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio::time::timeout;

/// Longest a test waits for runs before it fails.
pub const LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Memory,
    Sqlite,
    Postgres,
}

impl Store {
    /// A builder on a fresh, empty store of this kind.
    pub fn builder(self) -> Builder {
        match self {
            Store::Memory => Runtime::builder(),
            Store::Sqlite => Runtime::builder().sqlite(temp_db()),
            Store::Postgres => Runtime::builder().postgres(postgres_schema()),
        }
    }

    /// A fresh store with a retry backoff of a few milliseconds.
    pub fn fast(self) -> Builder {
        self.builder().backoff(Backoff::exponential(
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
    }

    pub fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
        }
    }
}

/// A path for a new SQLite database under the target directory.
pub fn temp_db() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fanfare-tests");
    std::fs::create_dir_all(&dir).expect("cannot create the test directory");
    dir.join(format!(
        "{}-{:016x}.db",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// Appends one line to a side-effect log that several processes may share.
pub fn log(path: &std::path::Path, line: String) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("cannot open the log");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("cannot write the log");
}

/// How many lines of the log are exactly `line`.
pub fn count(path: &std::path::Path, line: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

fn counters() -> &'static Mutex<HashMap<String, u32>> {
    static C: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Counts one call under `key`.
pub fn hit(key: impl std::fmt::Display) -> u32 {
    let mut c = counters().lock().unwrap();
    let n = c.entry(key.to_string()).or_default();
    *n += 1;
    *n
}

/// Calls counted under `key`.
pub fn hits(key: impl std::fmt::Display) -> u32 {
    counters()
        .lock()
        .unwrap()
        .get(&key.to_string())
        .copied()
        .unwrap_or(0)
}

/// A named meeting point between a test and a function it started.
pub struct Gate {
    pub started: Notify,
    pub release: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            started: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

pub fn gate(key: &str) -> Arc<Gate> {
    static G: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
    let mut gates = G.get_or_init(Default::default).lock().unwrap();
    Arc::clone(gates.entry(key.to_owned()).or_default())
}

// --- runs -----------------------------------------------------------------------------

/// The only run of an event.
pub async fn run_of(rt: &Runtime, id: EventId) -> RunInfo {
    let runs = rt.runs(id).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.into_iter().next().unwrap()
}

/// Waits until `check` holds, polling; fails the test after `LIMIT`.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the event's only run has `status`.
pub async fn until_status(rt: &Runtime, id: EventId, status: RunStatus) {
    until(&format!("the run is {status:?}"), async || {
        run_of(rt, id).await.status == status
    })
    .await;
}

/// Waits until every run of the event has finished.
pub async fn finished(rt: &Runtime, id: EventId) -> RunInfo {
    timeout(LIMIT, rt.wait(id))
        .await
        .expect("the run did not finish in time")
        .unwrap();
    run_of(rt, id).await
}

/// Waits until every run of each event has finished.
pub async fn all_finished(rt: &Runtime, ids: impl IntoIterator<Item = EventId>) {
    for id in ids {
        timeout(LIMIT, rt.wait(id))
            .await
            .expect("the runs did not finish in time")
            .unwrap();
    }
}

/// Runs `sql` on the SQLite database at `path` once the runtime that had it open has let
/// go of it (its writer thread closes the file after `shutdown` returns).
pub async fn sqlite_once_released(path: &std::path::Path, sql: &str) {
    timeout(LIMIT, async {
        loop {
            let conn = rusqlite::Connection::open(path).unwrap();
            if conn.execute_batch(sql).is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the runtime did not let go of the SQLite file");
}

/// Waits for the function of `tag` to reach its gate.
pub async fn started(tag: &str) {
    timeout(LIMIT, gate(tag).started.notified())
        .await
        .expect("the function never started");
}

pub fn step_ids(run: &RunInfo) -> Vec<&str> {
    run.steps.iter().map(|s| s.id.as_str()).collect()
}

// --- PostgreSQL ------------------------------------------------------------------------

/// The server the PostgreSQL tests use: `FANFARE_TEST_POSTGRES`, or the local default.
pub fn postgres_url() -> String {
    std::env::var("FANFARE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Whether PostgreSQL tests can run. Without a server they are skipped, and the skip is
/// written to the terminal (past the test harness's capture) once per test binary; with
/// `FANFARE_REQUIRE_POSTGRES=1` (as CI sets it) a missing server fails the test instead.
pub async fn postgres_ready() -> bool {
    static READY: tokio::sync::OnceCell<std::result::Result<(), String>> =
        tokio::sync::OnceCell::const_new();
    let ready = READY
        .get_or_init(|| async {
            let url = postgres_url();
            match connect(&url).await {
                Ok(client) => {
                    drop_old_schemas(&client).await;
                    Ok(())
                }
                Err(e) => Err(format!("PostgreSQL is unreachable at {url}: {e}")),
            }
        })
        .await;
    match ready {
        Ok(()) => true,
        Err(why) if std::env::var("FANFARE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("{why}, and FANFARE_REQUIRE_POSTGRES=1 requires it")
        }
        Err(why) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\nSKIPPED: the PostgreSQL tests of this binary: {why}\n\
                     (set FANFARE_TEST_POSTGRES to a server's URL, or start one on 127.0.0.1:5432)\n"
                );
            });
            false
        }
    }
}

async fn connect(url: &str) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Test schemas are named `fanfare_t_<unix seconds>_<random>`; those older than an
/// hour are left over from earlier runs.
async fn drop_old_schemas(client: &tokio_postgres::Client) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'fanfare_t_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let born = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if born + 3600 < now {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
}

/// A URL whose connections live in a new, empty schema of the test server.
pub fn postgres_schema() -> String {
    let url = postgres_url();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("fanfare_t_{now}_{:08x}", fastrand::u32(..));
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let client = connect(&url).await.expect("PostgreSQL is unreachable");
            client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .expect("cannot create a test schema");
        })
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

#[macro_export]
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Store::Memory).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Store::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if $crate::common::postgres_ready().await {
                        super::$test($crate::common::Store::Postgres).await
                    }
                }
            )*
        }
    };
}
