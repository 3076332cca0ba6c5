//! `cargo run --release --manifest-path bench/peers/Cargo.toml -- [--events 4000,40000]`
//!
//! fanfare against other Rust job systems, on one workload: **N events × 5 trivial
//! functions**, sent by 64 concurrent producers, timed from the first send until every
//! one of the 5N runs has executed *and* its completion is recorded in the database.
//!
//! Systems, each in a fresh schema (PostgreSQL) or a fresh file (SQLite):
//!
//! - **fanfare** on PostgreSQL and on SQLite: one `send` per event; five
//!   `#[function(trigger = "bench/fanout")]` functions run on it.
//! - **apalis** 1.x with `apalis-postgres` and `apalis-sqlite`: a queue used for fan-out,
//!   one job type carrying a handler index, dispatched to five handler functions; each
//!   producer pushes the event's five jobs with one `push_bulk`.
//! - **graphile_worker** (PostgreSQL): five task kinds; each producer adds the event's five
//!   jobs with one `add_raw_jobs` batch.
//!
//! Every peer runs twice: its defaults, and the fastest configuration its own docs,
//! examples or benchmarks give (see `bench/peers/README.md` and each module).
//!
//! The body of every function or handler is [`trivial_work`]: count, and wake the
//! measurement when the last run has executed. A run is only counted as done once the
//! system's own tables say it completed; the program panics if a system executes a run
//! twice, skips one, or records fewer completions than it executed. A run that exceeds
//! `--time-limit` seconds is reported as not finished, with its rate so far, and that
//! configuration is not run again at a larger N.
//!
//! Options: `--events 4000,40000`, `--database-url URL` (or `FANFARE_PEERS_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/peers`), `--time-limit 90`,
//! `--apalis-sqlite-max-events 4000`, `--only WORD` (only systems whose name or
//! configuration contains WORD; fanfare always runs, as the reference).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

mod apalis_pg;
mod apalis_sqlite;
mod fanfare_sys;
mod graphile;

/// Concurrent producers, as in fanfare's own bench.
pub const PRODUCERS: u64 = 64;
/// Functions (handlers, task kinds) per event.
pub const FANOUT: u64 = 5;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which of a peer's configurations: its default, or its fastest documented one.
pub enum Kind {
    Default,
    Fastest,
}

/// A peer's configuration, as the table labels it.
pub struct PeerConfig {
    pub label: &'static str,
    pub kind: Kind,
}

static DONE: AtomicU64 = AtomicU64::new(0);
static PER_HANDLER: [AtomicU64; FANOUT as usize] = [const { AtomicU64::new(0) }; FANOUT as usize];
static TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static ALL_DONE: Notify = Notify::const_new();

/// The body every benchmarked function runs, in every system: `handler` is which of the
/// five functions (0..5), `n` the event's number.
pub fn trivial_work(handler: usize, n: u64) {
    std::hint::black_box(n);
    PER_HANDLER[handler].fetch_add(1, Ordering::Relaxed);
    if DONE.fetch_add(1, Ordering::Relaxed) + 1 == TARGET.load(Ordering::Relaxed) {
        ALL_DONE.notify_one();
    }
}

fn arm(target: u64) {
    DONE.store(0, Ordering::SeqCst);
    for h in &PER_HANDLER {
        h.store(0, Ordering::SeqCst);
    }
    TARGET.store(target, Ordering::SeqCst);
}

/// The result of one measured run.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Runs executed (and, when finished, recorded complete).
    pub runs: u64,
    pub took: Duration,
    /// False: the time limit was reached first.
    pub finished: bool,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.runs as f64 / self.took.as_secs_f64()
    }
}

/// What a run needs besides the system itself.
#[derive(Clone)]
pub struct Env {
    pub database_url: String,
    pub time_limit: Duration,
}

/// Runs `events` events through a started system and measures until all `5 × events`
/// runs are executed and recorded complete.
///
/// `produce` sends everything (it spawns the 64 producers); `completed` counts the runs
/// the system's tables record as completed. Setup before and shutdown after are the
/// caller's and untimed. Panics when a run is executed twice or not at all, or when the
/// system records a different number of completions than it executed.
pub async fn measure<P, C, CF>(
    events: u64,
    limit: Duration,
    produce: P,
    mut completed: C,
) -> Outcome
where
    P: Future<Output = Result<(), BoxError>> + Send + 'static,
    C: FnMut() -> CF,
    CF: Future<Output = u64>,
{
    let target = events * FANOUT;
    arm(target);
    let began = Instant::now();
    let deadline = began + limit;
    let producers = tokio::spawn(produce);
    let partial = |runs: u64| Outcome {
        runs,
        took: began.elapsed(),
        finished: false,
    };
    // Every run executed.
    loop {
        let woken = ALL_DONE.notified();
        if DONE.load(Ordering::SeqCst) >= target {
            break;
        }
        if tokio::time::timeout_at(deadline.into(), woken)
            .await
            .is_err()
        {
            producers.abort();
            return partial(DONE.load(Ordering::SeqCst));
        }
    }
    match producers.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("a producer failed: {e}"),
        Err(e) => panic!("a producer panicked: {e}"),
    }
    // Every run recorded complete.
    loop {
        let recorded = completed().await;
        if recorded == target {
            break;
        }
        assert!(
            recorded < target,
            "{recorded} runs recorded complete, only {target} sent"
        );
        if Instant::now() >= deadline {
            return partial(recorded);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = began.elapsed();
    check_exactly_once(events);
    Outcome {
        runs: target,
        took,
        finished: true,
    }
}

/// Every one of the five functions ran exactly once per event. Called when a run is
/// measured, and again after the system is shut down (a late duplicate shows there).
pub fn check_exactly_once(events: u64) {
    let done = DONE.load(Ordering::SeqCst);
    assert_eq!(
        done,
        events * FANOUT,
        "{done} executions for {} runs",
        events * FANOUT
    );
    for (h, count) in PER_HANDLER.iter().enumerate() {
        let count = count.load(Ordering::SeqCst);
        assert_eq!(
            count, events,
            "function {h} ran {count} times for {events} events"
        );
    }
}

/// Spawns the 64 producers and waits for them: `producer(p)` sends the events of
/// [`share`]`(p, events)`, one event (its five jobs) per call to the system.
pub async fn produce_with<F, Fut>(producer: F) -> Result<(), BoxError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let producers: Vec<_> = (0..PRODUCERS).map(|p| tokio::spawn(producer(p))).collect();
    for p in producers {
        p.await??;
    }
    Ok(())
}

/// The events producer `p` sends: `p, p + 64, p + 128, …` below `events`.
pub fn share(p: u64, events: u64) -> impl Iterator<Item = u64> {
    (p..events).step_by(PRODUCERS as usize)
}

/// One line of a table.
struct Row {
    system: &'static str,
    label: &'static str,
    /// Which fanfare system this one is compared with (its first row, the default
    /// configuration); "" for fanfare's own rows.
    against: &'static str,
    result: Result<Outcome, String>,
}

impl Row {
    fn peer(
        system: &'static str,
        label: &'static str,
        against: &'static str,
        result: Result<Outcome, String>,
    ) -> Row {
        Row {
            system,
            label,
            against,
            result,
        }
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Versions of the benchmarked crates, from this workspace's `Cargo.lock`.
fn versions() -> String {
    let lock = include_str!("../Cargo.lock");
    let mut out = Vec::new();
    for name in [
        "apalis",
        "apalis-postgres",
        "apalis-sqlite",
        "graphile_worker",
        "sqlx",
    ] {
        let mut lines = lock.lines();
        while let Some(line) = lines.next() {
            if line == format!("name = \"{name}\"") {
                if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = ")) {
                    out.push(format!("{name} {}", v.trim_matches('"')));
                }
            }
        }
    }
    format!(
        "fanfare {} (this repository), {}",
        fanfare_version(),
        out.join(", ")
    )
}

fn fanfare_version() -> &'static str {
    let manifest = include_str!("../../../Cargo.toml");
    manifest
        .lines()
        .skip_while(|l| *l != "[workspace.package]")
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"'))
        .unwrap_or("?")
}

fn print_table(events: u64, rows: &[Row], limit: Duration) {
    println!(
        "\n{events} events x {FANOUT} functions = {} runs, {PRODUCERS} producers",
        events * FANOUT
    );
    println!(
        "  {:<17} {:<52} {:>13} {:>9} {:>9}  fanfare's ratio",
        "system", "configuration", "runs", "seconds", "runs/s"
    );
    let rate_of = |label: &str| {
        rows.iter()
            .find(|r| r.against.is_empty() && r.system == label)
            .and_then(|r| r.result.as_ref().ok())
            .filter(|o| o.finished)
            .map(Outcome::rate)
    };
    for row in rows {
        match &row.result {
            Ok(o) => {
                let runs = if o.finished {
                    format!("{}", o.runs)
                } else {
                    format!("{}/{}", o.runs, events * FANOUT)
                };
                let secs = if o.finished {
                    format!("{:.2}", o.took.as_secs_f64())
                } else {
                    format!(">{:.0}", limit.as_secs_f64())
                };
                let ratio = match rate_of(row.against) {
                    _ if row.against.is_empty() => "(reference)".to_owned(),
                    Some(ours) if o.finished => {
                        format!("{:.1}x  (vs {})", ours / o.rate(), row.against)
                    }
                    Some(ours) if o.runs > 0 => format!(
                        "~{:.1}x  (vs {}; did not finish in {:.0} s, rate so far)",
                        ours / o.rate(),
                        row.against,
                        limit.as_secs_f64()
                    ),
                    _ => "-".to_owned(),
                };
                println!(
                    "  {:<17} {:<52} {:>13} {:>9} {:>9.0}  {ratio}",
                    row.system,
                    row.label,
                    runs,
                    secs,
                    o.rate()
                );
            }
            Err(why) => println!("  {:<17} {:<52} {why}", row.system, row.label),
        }
    }
}

#[tokio::main]
async fn main() {
    // The systems' own logs, with RUST_LOG (e.g. RUST_LOG=warn).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let events: Vec<u64> = arg(&args, "--events")
        .unwrap_or_else(|| "4000,40000".to_owned())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("--events: numbers separated by commas")
        })
        .collect();
    let database_url = arg(&args, "--database-url")
        .or_else(|| std::env::var("FANFARE_PEERS_DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/peers".to_owned());
    let time_limit = Duration::from_secs(
        arg(&args, "--time-limit")
            .map(|s| s.parse().expect("--time-limit: seconds"))
            .unwrap_or(90),
    );
    let sqlite_max: u64 = arg(&args, "--apalis-sqlite-max-events")
        .map(|s| s.parse().expect("--apalis-sqlite-max-events: a number"))
        .unwrap_or(4_000);
    let only = arg(&args, "--only");
    let env = Env {
        database_url,
        time_limit,
    };
    let wanted = |system: &str, config: &str| {
        only.as_deref()
            .is_none_or(|w| system.contains(w) || config.contains(w))
    };

    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    let server = fanfare_sys::server_version(&env.database_url).await;
    println!("fanfare peers: {FANOUT} trivial functions per event, {PRODUCERS} producers, {threads} tokio worker threads");
    println!("crates: {}", versions());
    println!(
        "PostgreSQL {server} at {}; SQLite files in {}",
        redact(&env.database_url),
        std::env::temp_dir().display()
    );
    println!(
        "timed: first send -> every run executed and recorded complete; time limit {} s per run",
        time_limit.as_secs()
    );

    // A configuration that did not finish at some N is not run at larger N.
    let mut unfinished: Vec<(&str, &str, u64)> = Vec::new();
    for &n in &events {
        let mut rows = Vec::new();
        for config in fanfare_sys::CONFIGS {
            let result = fanfare_sys::run(config, n, &env).await;
            rows.push(Row {
                system: config.system,
                label: config.label,
                against: "",
                result: Ok(result),
            });
        }
        for config in apalis_pg::CONFIGS {
            let (system, label) = ("apalis-postgres", config.label);
            if wanted(system, label) {
                let result = match skip(&unfinished, system, label, n) {
                    Some(why) => Err(why),
                    None => Ok(apalis_pg::run(config, n, &env).await),
                };
                rows.push(Row::peer(system, label, fanfare_sys::PG, result));
            }
        }
        for config in graphile::CONFIGS {
            let (system, label) = ("graphile_worker", config.label);
            if wanted(system, label) {
                let result = match skip(&unfinished, system, label, n) {
                    Some(why) => Err(why),
                    None => Ok(graphile::run(config, n, &env).await),
                };
                rows.push(Row::peer(system, label, fanfare_sys::PG, result));
            }
        }
        for config in apalis_sqlite::CONFIGS {
            let (system, label) = ("apalis-sqlite", config.label);
            if wanted(system, label) {
                let result = if n > sqlite_max {
                    Err(format!(
                        "not run: {n} events > --apalis-sqlite-max-events {sqlite_max} (its ack query slows with every job stored)"
                    ))
                } else if let Some(why) = skip(&unfinished, system, label, n) {
                    Err(why)
                } else {
                    Ok(apalis_sqlite::run(config, n, &env).await)
                };
                rows.push(Row::peer(system, label, fanfare_sys::SQLITE, result));
            }
        }
        for row in &rows {
            if matches!(row.result, Ok(o) if !o.finished) {
                unfinished.push((row.system, row.label, n));
            }
        }
        print_table(n, &rows, time_limit);
    }
}

/// Why a configuration is not run at `n` events: it did not finish at fewer.
fn skip(unfinished: &[(&str, &str, u64)], system: &str, label: &str, n: u64) -> Option<String> {
    unfinished
        .iter()
        .find(|&&(s, l, m)| s == system && l == label && m < n)
        .map(|&(_, _, m)| format!("not run: did not finish {m} events within the time limit"))
}

/// The URL without a password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap();
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A fresh path for a SQLite database file.
pub fn temp_db(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("fanfare-peers");
    std::fs::create_dir_all(&dir).expect("cannot create the temp directory");
    let path = dir.join(format!("{tag}-{}.db", std::process::id()));
    remove_db(&path);
    path
}

pub fn remove_db(path: &std::path::Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
}

/// Waits at most `limit` for a system's task to end (after it was asked to stop), and
/// aborts it otherwise. True if it ended by itself.
pub async fn bounded<T>(what: &str, limit: Duration, task: tokio::task::JoinHandle<T>) -> bool {
    let abort = task.abort_handle();
    match tokio::time::timeout(limit, task).await {
        Ok(_) => true,
        Err(_) => {
            eprintln!(
                "warning: {what} did not stop within {} s; aborted",
                limit.as_secs()
            );
            abort.abort();
            false
        }
    }
}

/// A one-connection pool to PostgreSQL, for setup and counting.
pub async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"))
}

/// A one-connection pool to a SQLite file, for counting.
pub async fn sqlite_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// The single number `query` (a `count(*)`) returns, from PostgreSQL.
pub async fn count_pg(pool: &sqlx::PgPool, query: &str) -> u64 {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    n as u64
}

/// The single number `query` (a `count(*)`) returns, from SQLite.
pub async fn count_sqlite(pool: &sqlx::SqlitePool, query: &str) -> u64 {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    n as u64
}

/// Drops and recreates `schema` (or only drops it, with `create` false): each run starts
/// empty and leaves nothing behind.
pub async fn fresh_schema(url: &str, schema: &str, create: bool) {
    let pool = pg_pool(url).await;
    let mut sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE;");
    if create {
        sql += &format!(" CREATE SCHEMA {schema};");
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("cannot reset schema {schema}: {e}"));
    pool.close().await;
}
