//! `cargo run --release -p fanfare-bench -- [--events N] [--samples N] [--queued N]`
//!
//! Measures, in one process, fanfare against the same work written by hand:
//!
//! 1. **Throughput**: N events × 5 trivial functions, sent by 64 concurrent producers.
//!    Baseline: one `tokio::spawn` per function per event. Reported: completed runs/s of
//!    each and their ratio.
//! 2. **Latency**: single events, one at a time: time from calling `send` to the start of
//!    the function's body, p50 and p99. Baseline: `tokio::spawn` to task start.
//! 3. **Memory per queued run**: bytes allocated per run that waits in the queue (all
//!    workers busy), counted by a counting global allocator.

use fanfare::{function, Ctx, Event, Runtime};
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

// --- a counting allocator, for memory per queued run ---------------------------------

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// --- throughput: five trivial functions on one event ---------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/fanout")]
struct Fanout {
    n: u64,
}

static DONE: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static ALL_DONE: Notify = Notify::const_new();

/// The body every benchmarked function (fanfare's and the baseline's) runs.
fn trivial_work(n: u64) {
    std::hint::black_box(n);
    if DONE.fetch_add(1, Ordering::Relaxed) + 1 == TARGET.load(Ordering::Relaxed) {
        ALL_DONE.notify_one();
    }
}

macro_rules! trivial_functions {
    ($($name:ident),*) => {$(
        #[function(trigger = "bench/fanout")]
        async fn $name(ctx: Ctx<Fanout>) -> fanfare::Result<()> {
            trivial_work(ctx.event().n);
            Ok(())
        }
    )*};
}

trivial_functions!(f1, f2, f3, f4, f5);

const PRODUCERS: u64 = 64;
const FANOUT: u64 = 5;

fn arm(target: u64) {
    DONE.store(0, Ordering::SeqCst);
    TARGET.store(target, Ordering::SeqCst);
}

async fn baseline_throughput(events: u64) -> Duration {
    arm(events * FANOUT);
    let began = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(async move {
                for i in (p..events).step_by(PRODUCERS as usize) {
                    let event = Arc::new(Fanout { n: i });
                    for _ in 0..FANOUT {
                        let event = Arc::clone(&event);
                        tokio::spawn(async move { trivial_work(event.n) });
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer panicked");
    }
    ALL_DONE.notified().await;
    began.elapsed()
}

/// Sends `events` from 64 producers through a fresh runtime and waits until every run
/// has executed **and** its outcome is recorded (shutdown drains the recorder).
async fn fanfare_throughput(builder: fanfare::Builder, events: u64) -> fanfare::Result<Duration> {
    let rt = builder.start().await?;
    arm(events * FANOUT);
    let began = Instant::now();
    let producers: Vec<tokio::task::JoinHandle<fanfare::Result<()>>> = (0..PRODUCERS)
        .map(|p| {
            let rt = rt.clone();
            tokio::spawn(async move {
                for i in (p..events).step_by(PRODUCERS as usize) {
                    rt.send(Fanout { n: i }).await?;
                }
                Ok(())
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer panicked")?;
    }
    ALL_DONE.notified().await;
    rt.shutdown().await?;
    Ok(began.elapsed())
}

// --- latency: send → start of the body -----------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/latency")]
struct Ping;

static STARTED: OnceLock<Mutex<Option<tokio::sync::oneshot::Sender<Instant>>>> = OnceLock::new();

fn report_start() {
    let now = Instant::now();
    if let Some(tx) = STARTED.get_or_init(Default::default).lock().unwrap().take() {
        let _ = tx.send(now);
    }
}

#[function(trigger = "bench/latency")]
async fn on_ping(_: Ctx<Ping>) -> fanfare::Result<()> {
    report_start();
    Ok(())
}

fn expect_start() -> tokio::sync::oneshot::Receiver<Instant> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    *STARTED.get_or_init(Default::default).lock().unwrap() = Some(tx);
    rx
}

async fn latency<F, Fut>(samples: usize, mut start_one: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut all = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = expect_start();
        let t0 = Instant::now();
        start_one().await;
        let t1 = started.await.expect("the function never started");
        all.push(t1 - t0);
    }
    all.sort();
    (all[samples / 2], all[samples * 99 / 100])
}

// --- memory per queued run -----------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/queued")]
struct UserSignup {
    user_id: u64,
    email: String,
}

static GATE: Semaphore = Semaphore::const_new(0);

macro_rules! gated_functions {
    ($($name:ident),*) => {$(
        #[function(trigger = "bench/queued")]
        async fn $name(_: Ctx<UserSignup>) -> fanfare::Result<()> {
            GATE.acquire().await.expect("gate closed").forget();
            Ok(())
        }
    )*};
}

gated_functions!(q1, q2, q3, q4, q5);

async fn bytes_per_queued_run(queued_events: u64) -> fanfare::Result<f64> {
    // One worker slot, taken by the first run, which waits at the gate: every other
    // run stays queued.
    let rt = Runtime::builder().concurrency(1).start().await?;
    rt.send(UserSignup {
        user_id: 0,
        email: "warm@example.com".into(),
    })
    .await?;
    let before = ALLOCATED.load(Ordering::SeqCst);
    for i in 0..queued_events {
        rt.send(UserSignup {
            user_id: i,
            email: format!("user{i}@example.com"),
        })
        .await?;
    }
    let after = ALLOCATED.load(Ordering::SeqCst);
    GATE.add_permits(Semaphore::MAX_PERMITS / 2);
    rt.shutdown().await?;
    Ok((after as f64 - before as f64) / (queued_events * FANOUT) as f64)
}

// --- SQLite: the same work as hand-written batched SQL --------------------------------

mod sqlite_baseline {
    use super::*;
    use rusqlite::{params, Connection};

    pub fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE events (id BLOB PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL, ts INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id BLOB NOT NULL, event_id BLOB NOT NULL,
                 function_id TEXT NOT NULL, status INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                 due_at INTEGER NOT NULL);
             CREATE INDEX runs_due ON runs (due_at) WHERE status = 0;",
        )
        .expect("schema");
        conn
    }

    const FUNCTIONS: [&str; 5] = ["f1", "f2", "f3", "f4", "f5"];

    fn insert(conn: &mut Connection, from: u64, to: u64) {
        let tx = conn.transaction().expect("tx");
        {
            let mut ev = tx
                .prepare_cached("INSERT INTO events VALUES (?1, ?2, ?3, ?4)")
                .unwrap();
            let mut run = tx
                .prepare_cached("INSERT INTO runs (run_id, event_id, function_id, status, due_at) VALUES (?1, ?2, ?3, 0, ?4)")
                .unwrap();
            for n in from..to {
                let id = fastid();
                let data = serde_json::to_string(&Fanout { n }).unwrap();
                ev.execute(params![&id[..], "bench/fanout", data, 0])
                    .unwrap();
                for f in FUNCTIONS {
                    run.execute(params![&fastid()[..], &id[..], f, 0]).unwrap();
                }
            }
        }
        tx.commit().expect("commit");
    }

    fn claim(conn: &mut Connection, max: usize) -> Vec<(i64, String)> {
        let tx = conn.transaction().expect("tx");
        let claimed: Vec<(i64, String)> = {
            let mut sel = tx
                .prepare_cached(
                    "SELECT r.id, e.data FROM runs r JOIN events e ON e.id = r.event_id \
                     WHERE r.status = 0 AND r.due_at <= ?1 ORDER BY r.due_at LIMIT ?2",
                )
                .unwrap();
            let rows = sel
                .query_map(params![0, max as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap();
            let mut mark = tx
                .prepare_cached("UPDATE runs SET status = 1, attempts = attempts + 1 WHERE id = ?1")
                .unwrap();
            for (id, _) in &rows {
                mark.execute([id]).unwrap();
            }
            rows
        };
        tx.commit().expect("commit");
        claimed
    }

    fn complete(conn: &mut Connection, ids: &[i64]) {
        let tx = conn.transaction().expect("tx");
        {
            let mut done = tx
                .prepare_cached("UPDATE runs SET status = 2 WHERE id = ?1")
                .unwrap();
            for id in ids {
                done.execute([id]).unwrap();
            }
        }
        tx.commit().expect("commit");
    }

    fn fastid() -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
        id[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
        id
    }

    /// Insert 512 events (and their 2,560 runs) per transaction, claim them in one
    /// transaction, run the trivial body, complete them in one transaction.
    pub fn throughput(path: &std::path::Path, events: u64) -> Duration {
        let mut conn = open(path);
        arm(events * FANOUT);
        let began = Instant::now();
        let mut n = 0;
        while n < events {
            let to = (n + 512).min(events);
            insert(&mut conn, n, to);
            n = to;
            let claimed = claim(&mut conn, 4096);
            for (_, data) in &claimed {
                let e: Fanout = serde_json::from_str(data).unwrap();
                trivial_work(e.n);
            }
            let ids: Vec<i64> = claimed.iter().map(|c| c.0).collect();
            complete(&mut conn, &ids);
        }
        began.elapsed()
    }

    /// One event committed, a worker thread woken, its claim committed: time to start.
    pub fn latency(path: &std::path::Path, samples: usize) -> (Duration, Duration) {
        let mut producer = open(path);
        let (tx, rx) = std::sync::mpsc::channel::<Instant>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Duration>();
        let path = path.to_owned();
        let worker = std::thread::spawn(move || {
            let mut conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
            while let Ok(t0) = rx.recv() {
                let claimed = claim(&mut conn, 16);
                assert_eq!(claimed.len(), 1);
                done_tx.send(t0.elapsed()).unwrap();
            }
        });
        let mut all = Vec::with_capacity(samples);
        for i in 0..samples as u64 {
            let t0 = Instant::now();
            insert_one(&mut producer, i);
            tx.send(t0).unwrap();
            all.push(done_rx.recv().unwrap());
        }
        drop(tx);
        worker.join().unwrap();
        all.sort();
        (all[samples / 2], all[samples * 99 / 100])
    }

    fn insert_one(conn: &mut Connection, n: u64) {
        let tx = conn.transaction().expect("tx");
        {
            let id = fastid();
            let data = serde_json::to_string(&Ping).unwrap();
            let _ = n;
            tx.prepare_cached("INSERT INTO events VALUES (?1, ?2, ?3, ?4)")
                .unwrap()
                .execute(params![&id[..], "bench/latency", data, 0])
                .unwrap();
            tx.prepare_cached("INSERT INTO runs (run_id, event_id, function_id, status, due_at) VALUES (?1, ?2, ?3, 0, ?4)")
                .unwrap()
                .execute(params![&fastid()[..], &id[..], "on_ping", 0])
                .unwrap();
        }
        tx.commit().expect("commit");
    }
}

// --- the program -----------------------------------------------------------------------

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a whole number, got {v:?}"))
        })
        .unwrap_or(default)
}

fn wants(section: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--only") {
        Some(i) => args
            .get(i + 1)
            .is_some_and(|s| s.split(',').any(|s| s == section)),
        None => true,
    }
}

/// Rounds of each throughput measurement; the median is reported.
const ROUNDS: usize = 3;

fn median(mut all: Vec<Duration>) -> Duration {
    all.sort();
    all[all.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn rate(events: u64, d: Duration) -> f64 {
    (events * FANOUT) as f64 / d.as_secs_f64()
}

/// A fresh file path for a benchmark database.
fn temp_db(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("fanfare-bench");
    std::fs::create_dir_all(&dir).expect("cannot create the bench directory");
    let path = dir.join(format!(
        "{tag}-{}-{:x}.db",
        std::process::id(),
        fastrand::u64(..)
    ));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    path
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    let events = arg("--events", 200_000);
    let sqlite_events = arg("--sqlite-events", 40_000);
    let samples = arg("--samples", 2_000) as usize;
    let queued = arg("--queued", 100_000);
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    println!("fanfare bench: {FANOUT} trivial functions per event, {PRODUCERS} producers, {threads} tokio worker threads\n");

    if wants("memory") {
        // First, while nothing else allocates or frees in the background.
        let per_run = bytes_per_queued_run(queued).await?;
        println!("memory store: memory per queued run ({queued} events x {FANOUT} runs waiting, small event)");
        println!("  {per_run:.0} bytes                         (target <= 1024)\n");

        // Warm both paths up (allocator, thread pool), then alternate them and keep the
        // median of each, so neither side benefits from running first or last.
        baseline_throughput(events / 10).await;
        fanfare_throughput(Runtime::builder(), events / 10).await?;
        let (mut bases, mut ourss) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bases.push(baseline_throughput(events).await);
            ourss.push(fanfare_throughput(Runtime::builder(), events).await?);
        }
        let (base, ours) = (median(bases), median(ourss));
        println!("memory store: throughput, {events} events (completed runs/s)");
        println!(
            "  hand-written tokio::spawn         {:>10.0}",
            rate(events, base)
        );
        println!(
            "  fanfare                           {:>10.0}",
            rate(events, ours)
        );
        println!(
            "  ratio                             {:>10.2}   (target >= 0.50)\n",
            base.as_secs_f64() / ours.as_secs_f64()
        );

        let rt = Runtime::builder().start().await?;
        let (b50, b99) = latency(samples, || async {
            tokio::spawn(async { report_start() });
        })
        .await;
        let (f50, f99) = latency(samples, || async {
            rt.send(Ping).await.expect("send failed");
        })
        .await;
        rt.shutdown().await?;
        println!("memory store: latency, send -> function start ({samples} single events)");
        println!(
            "  hand-written tokio::spawn         p50 {:>8.1} us   p99 {:>8.1} us",
            us(b50),
            us(b99)
        );
        println!("  fanfare                           p50 {:>8.1} us   p99 {:>8.1} us   (target p50 <= 50 us)\n", us(f50), us(f99));
    }

    if wants("sqlite") {
        let base = tokio::task::block_in_place(|| {
            sqlite_baseline::throughput(&temp_db("base"), sqlite_events)
        });
        let normal = fanfare_throughput(
            Runtime::builder()
                .sqlite(temp_db("normal"))
                .sqlite_sync(fanfare::SqliteSync::Normal),
            sqlite_events,
        )
        .await?;
        let full =
            fanfare_throughput(Runtime::builder().sqlite(temp_db("full")), sqlite_events).await?;
        let single_events = sqlite_events / 10;
        let single = fanfare_throughput(
            Runtime::builder()
                .sqlite(temp_db("single"))
                .sqlite_sync(fanfare::SqliteSync::Normal)
                .group_commit(false),
            single_events,
        )
        .await?;
        println!("SQLite store (WAL): throughput, {sqlite_events} events (completed runs/s, outcomes committed)");
        println!(
            "  hand-written batched SQL, NORMAL  {:>10.0}",
            rate(sqlite_events, base)
        );
        println!(
            "  fanfare, synchronous=NORMAL       {:>10.0}   ratio {:.2} (target >= 0.30)",
            rate(sqlite_events, normal),
            base.as_secs_f64() / normal.as_secs_f64()
        );
        println!(
            "  fanfare, synchronous=FULL         {:>10.0}   (default: survives power loss)",
            rate(sqlite_events, full)
        );
        println!("  fanfare, NORMAL, no group commit  {:>10.0}   ({single_events} events: a transaction per call)\n", rate(single_events, single));

        let (b50, b99) =
            tokio::task::block_in_place(|| sqlite_baseline::latency(&temp_db("lat"), samples));
        let rt = Runtime::builder()
            .sqlite(temp_db("latency"))
            .sqlite_sync(fanfare::SqliteSync::Normal)
            .start()
            .await?;
        let (f50, f99) = latency(samples, || async {
            rt.send(Ping).await.expect("send failed");
        })
        .await;
        rt.shutdown().await?;
        println!("SQLite store: latency, send -> function start ({samples} single events, NORMAL)");
        println!(
            "  hand-written: commit, wake, claim p50 {:>8.1} us   p99 {:>8.1} us",
            us(b50),
            us(b99)
        );
        println!("  fanfare                           p50 {:>8.1} us   p99 {:>8.1} us   (target p50 <= 1000 us)\n", us(f50), us(f99));
    }
    Ok(())
}
