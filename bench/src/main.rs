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
//!
//! 4. **Flow control**: a keyed concurrency limit against no limit, on each store
//!    (`flow.rs`).
//!
//! 5. **HTTP**: events/s accepted by `POST /e/{key}` against a bare axum handler that
//!    only parses the JSON, single events and batches, memory and SQLite (`http.rs`).
//!
//! `--only scale` (never by default: it takes long) adds the scale section, `scale.rs`:
//! draining large backlogs, throughput over a large finished history, more events.
//! `--only list` (never by default) adds the runs API section, `list.rs`: a filtered page
//! of runs with 1 M runs stored.

use fanfare::{function, Ctx, Event, Runtime};
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

mod flow;
mod http;
mod list;
mod scale;

// --- a counting allocator, for memory per queued run ---------------------------------

/// Counts the bytes allocated, net, for the memory figures. Each thread adds to a
/// counter of its own (one writer: a plain load and store, no read-modify-write on a
/// cache line the other threads write too), so counting does not slow the throughput
/// figures, which run under it: a single shared atomic counter bounced its cache line
/// between the worker threads on every allocation and free, and cost fanfare, which
/// allocates more per run than the hand-written side, about a tenth of its time.
struct Counting;

/// Per-thread counters, each on its own cache line; threads past the first `SHARDS`
/// share the last one, with atomic additions.
const SHARDS: usize = 64;

#[repr(align(128))]
struct Shard(AtomicUsize);

static COUNTERS: [Shard; SHARDS] = [const { Shard(AtomicUsize::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Adds `delta` (wrapping: frees subtract) to this thread's counter.
fn count(delta: usize) {
    let shard = SHARD
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed).min(SHARDS - 1));
            }
            s.get()
        })
        .unwrap_or(SHARDS - 1);
    let counter = &COUNTERS[shard].0;
    if shard < SHARDS - 1 {
        // This thread is the counter's only writer.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    } else {
        counter.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Net bytes allocated so far, by every thread.
fn allocated() -> usize {
    std::sync::atomic::fence(Ordering::SeqCst);
    COUNTERS.iter().fold(0usize, |sum, c| {
        sum.wrapping_add(c.0.load(Ordering::Relaxed))
    })
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size().wrapping_neg());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.wrapping_sub(layout.size()));
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

/// Sends `events` `Fanout` events from 64 concurrent producers.
pub(crate) async fn send_all(rt: &Runtime, events: u64) -> fanfare::Result<()> {
    send_each(rt, events, |n| Fanout { n }).await
}

/// Sends `make(n)` for every `n` below `events`, from 64 concurrent producers.
pub(crate) async fn send_each<E: Event>(
    rt: &Runtime,
    events: u64,
    make: fn(u64) -> E,
) -> fanfare::Result<()> {
    let producers: Vec<tokio::task::JoinHandle<fanfare::Result<()>>> = (0..PRODUCERS)
        .map(|p| {
            let rt = rt.clone();
            tokio::spawn(async move {
                for n in (p..events).step_by(PRODUCERS as usize) {
                    rt.send(make(n)).await?;
                }
                Ok(())
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer panicked")?;
    }
    Ok(())
}

/// Sends `events` from 64 producers through a fresh runtime and waits until every run
/// has executed **and** its outcome is recorded (shutdown drains the recorder).
async fn fanfare_throughput(builder: fanfare::Builder, events: u64) -> fanfare::Result<Duration> {
    let rt = builder.start().await?;
    arm(events * FANOUT);
    let began = Instant::now();
    send_all(&rt, events).await?;
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
    // run stays queued. The gate is closed again first: an earlier call left it open.
    GATE.forget_permits(GATE.available_permits());
    let rt = Runtime::builder().concurrency(1).start().await?;
    rt.send(UserSignup {
        user_id: 0,
        email: "warm@example.com".into(),
    })
    .await?;
    let before = allocated();
    for i in 0..queued_events {
        rt.send(UserSignup {
            user_id: i,
            email: format!("user{i}@example.com"),
        })
        .await?;
    }
    let after = allocated();
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

    pub(crate) fn insert(conn: &mut Connection, from: u64, to: u64) {
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

    pub(crate) fn claim(conn: &mut Connection, max: usize) -> Vec<(i64, String)> {
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

    pub(crate) fn complete(conn: &mut Connection, ids: &[i64]) {
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

// --- PostgreSQL ------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/remote-ping")]
struct RemotePing {
    seq: u64,
    sent_unix_ns: u128,
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Runs in the worker process: reports how long after the send (same machine, same
/// clock) its body started.
#[function(trigger = "bench/remote-ping")]
async fn on_remote_ping(ctx: Ctx<RemotePing>) -> fanfare::Result<()> {
    let lat = unix_ns().saturating_sub(ctx.event().sent_unix_ns);
    println!("STARTED {} {lat}", ctx.event().seq);
    Ok(())
}

mod pg {
    use super::*;
    use tokio_postgres::{Client, NoTls};

    pub fn url() -> String {
        std::env::var("FANFARE_BENCH_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    pub async fn connect(url: &str) -> Client {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(conn);
        client
    }

    /// A URL into a new, empty schema.
    pub async fn fresh_schema(tag: &str) -> String {
        let url = url();
        let schema = format!(
            "fanfare_bench_{tag}_{}_{:x}",
            std::process::id(),
            fastrand::u32(..)
        );
        connect(&url)
            .await
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create schema");
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}")
    }

    pub async fn drop_schemas() {
        let client = connect(&url()).await;
        let rows = client
            .query(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'fanfare_bench_%'",
                &[],
            )
            .await
            .unwrap();
        for row in rows {
            let name: String = row.get(0);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
                .await;
        }
    }

    const FUNCTIONS: [&str; 5] = ["f1", "f2", "f3", "f4", "f5"];

    pub(crate) async fn schema(client: &Client) {
        client
            .batch_execute(
                "CREATE TABLE events (id uuid PRIMARY KEY, name text NOT NULL, data text NOT NULL, ts bigint NOT NULL);
                 CREATE TABLE runs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id uuid NOT NULL,
                     function_id text NOT NULL, status smallint NOT NULL DEFAULT 0, attempts int NOT NULL DEFAULT 0,
                     due_at bigint NOT NULL DEFAULT 0);
                 CREATE INDEX runs_due ON runs (due_at) WHERE status = 0;",
            )
            .await
            .expect("schema");
    }

    fn uuid() -> uuid::Uuid {
        uuid::Uuid::from_u64_pair(fastrand::u64(..), fastrand::u64(..))
    }

    pub(crate) async fn insert(client: &mut Client, from: u64, to: u64, notify: bool) {
        let ids: Vec<uuid::Uuid> = (from..to).map(|_| uuid()).collect();
        let data: Vec<String> = (from..to)
            .map(|n| serde_json::to_string(&Fanout { n }).unwrap())
            .collect();
        let tx = client.transaction().await.unwrap();
        tx.execute(
            "INSERT INTO events (id, name, data, ts) SELECT id, 'bench/fanout', d, 0 FROM unnest($1::uuid[], $2::text[]) AS x(id, d)",
            &[&ids, &data],
        )
        .await
        .unwrap();
        tx.execute(
            "INSERT INTO runs (event_id, function_id) SELECT e, f FROM unnest($1::uuid[]) e CROSS JOIN unnest($2::text[]) f",
            &[&ids, &FUNCTIONS.to_vec()],
        )
        .await
        .unwrap();
        if notify {
            tx.batch_execute("NOTIFY bench").await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    pub(crate) async fn claim(client: &Client, max: i64) -> Vec<(i64, String)> {
        client
            .query(
                "WITH c AS (UPDATE runs SET status = 1, attempts = attempts + 1 WHERE id = ANY(ARRAY(
                     SELECT id FROM runs WHERE status = 0 AND due_at <= 0 ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED))
                     RETURNING id, event_id)
                 SELECT c.id, e.data FROM c, LATERAL (SELECT data FROM events WHERE id = c.event_id OFFSET 0) e",
                &[&max],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// What `indexed` adds to the hand-written schema: the index entries fanfare wrote for
    /// every run beyond the claim's before its queue table (PostgreSQL migration 14), when
    /// every update of a run wrote each index again, with a time-ordered run id as
    /// fanfare's — by event (`runs`), by run id (`run`), by function (the runs API,
    /// counts), of running runs by lease (crash takeover) and of finished runs by time
    /// (retention): 15 entries a run.
    const FANFARE_INDEXES: &str = "ALTER TABLE runs ADD COLUMN run_id uuid NOT NULL DEFAULT \
        (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') \
         || substr(md5(random()::text), 1, 20))::uuid;
        CREATE INDEX runs_event ON runs (event_id);
        CREATE INDEX runs_run_id ON runs (run_id);
        CREATE INDEX runs_function ON runs (function_id, run_id);
        CREATE INDEX runs_lease ON runs (due_at) WHERE status = 1;
        CREATE INDEX runs_finished ON runs (due_at) WHERE status = 2;";

    /// 512 events (2,560 runs) per insert transaction, claimed with SKIP LOCKED in one
    /// statement, completed in one statement; with fanfare's indexes when `indexed`.
    pub async fn baseline_throughput(events: u64, indexed: bool) -> Duration {
        let url = fresh_schema("base").await;
        let mut client = connect(&url).await;
        schema(&client).await;
        if indexed {
            client
                .batch_execute(FANFARE_INDEXES)
                .await
                .expect("indexes");
        }
        checkpoint(&client).await;
        arm(events * FANOUT);
        let began = Instant::now();
        let mut n = 0;
        while n < events {
            let to = (n + 512).min(events);
            insert(&mut client, n, to, false).await;
            n = to;
            let claimed = claim(&client, 4096).await;
            for (_, data) in &claimed {
                let e: Fanout = serde_json::from_str(data).unwrap();
                trivial_work(e.n);
            }
            let ids: Vec<i64> = claimed.iter().map(|c| c.0).collect();
            client
                .execute("UPDATE runs SET status = 2 WHERE id = ANY($1)", &[&ids])
                .await
                .unwrap();
        }
        began.elapsed()
    }

    /// One event committed with NOTIFY; a listening worker claims it: time to start.
    pub async fn baseline_latency(samples: usize) -> (Duration, Duration) {
        let url = fresh_schema("lat").await;
        let mut sender = connect(&url).await;
        schema(&sender).await;
        let worker = connect(&url).await;
        let (listener, mut conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                if let tokio_postgres::AsyncMessage::Notification(_) = msg {
                    let _ = tx.send(());
                }
            }
        });
        listener.batch_execute("LISTEN bench").await.unwrap();
        let mut all = Vec::with_capacity(samples);
        for i in 0..samples as u64 {
            let t0 = Instant::now();
            insert(&mut sender, i, i + 1, true).await;
            rx.recv().await.unwrap();
            let claimed = claim(&worker, 16).await;
            all.push(t0.elapsed());
            assert_eq!(claimed.len(), 5);
        }
        all.sort();
        (all[samples / 2], all[samples * 99 / 100])
    }

    /// Completed runs in a fanfare schema.
    pub async fn completed(client: &Client) -> i64 {
        client
            .query_one("SELECT count(*) FROM fanfare_runs WHERE status = 2", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Writes every dirty page out before a timed round, so that no round pays for the
    /// WAL of the rounds before it (PostgreSQL checkpoints once `max_wal_size` worth has
    /// been written: a round would otherwise take that checkpoint at random). Needs a
    /// superuser or `pg_checkpoint`; without, the rounds run as they are.
    pub async fn checkpoint(client: &Client) {
        if let Err(e) = client.batch_execute("CHECKPOINT").await {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| eprintln!("(no CHECKPOINT before rounds: {e})"));
        }
    }

    /// Whether a run is still queued or running, read through the queue's claim and
    /// lease partial indexes: a poll that counted every run would take a core of the
    /// database away from the runs being measured.
    pub async fn unfinished(client: &Client) -> bool {
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM fanfare_queue WHERE app = 'bench' AND state = 0)
                     OR EXISTS (SELECT 1 FROM fanfare_queue WHERE app = 'bench' AND state = 1)",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A worker process; closing its stdin stops it, and dropping this waits for it.
    pub struct Worker(std::process::Child);

    impl Drop for Worker {
        fn drop(&mut self) {
            drop(self.0.stdin.take());
            let _ = self.0.wait();
        }
    }

    /// A second process of the bench, a replica of the same app.
    pub fn spawn_worker(url: &str) -> Worker {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--pg-worker", url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot start the worker process");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "READY");
        // Keep reading its output on a thread, for the latency samples.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(out).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        *WORKER_LINES.lock().unwrap() = Some(rx);
        Worker(child)
    }

    pub static WORKER_LINES: Mutex<Option<std::sync::mpsc::Receiver<String>>> = Mutex::new(None);

    /// The worker process: executes runs until its stdin closes.
    pub async fn worker(url: &str) -> fanfare::Result<()> {
        let rt = Runtime::builder()
            .postgres(url)
            .app("bench")
            .start()
            .await?;
        println!("READY");
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await
        .ok();
        rt.shutdown().await
    }

    /// Sends from 64 producers in this process; runs execute in this process and in
    /// `workers` others; done when every run is completed in the database.
    pub async fn throughput(
        events: u64,
        workers: usize,
        group_commit: bool,
    ) -> fanfare::Result<Duration> {
        let url = fresh_schema("fanfare").await;
        let rt = Runtime::builder()
            .postgres(&url)
            .app("bench")
            .group_commit(group_commit)
            .start()
            .await?;
        let children: Vec<Worker> = (0..workers).map(|_| spawn_worker(&url)).collect();
        let observer = connect(&url).await;
        checkpoint(&observer).await;
        arm(u64::MAX);
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
        // Every send has committed its runs: done when none is queued or running.
        while unfinished(&observer).await {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = began.elapsed();
        let done = completed(&observer).await;
        assert_eq!(done, (events * FANOUT) as i64, "runs recorded complete");
        rt.shutdown().await?;
        drop(children);
        Ok(took)
    }

    /// Local path: the sending process executes. NOTIFY path: a send-only process sends,
    /// a worker process is woken by NOTIFY and executes.
    pub async fn latency(
        samples: usize,
    ) -> fanfare::Result<((Duration, Duration), (Duration, Duration))> {
        let url = fresh_schema("latency").await;
        let rt = Runtime::builder()
            .postgres(&url)
            .app("bench")
            .start()
            .await?;
        let local = super::latency(samples, || async {
            rt.send(Ping).await.expect("send failed");
        })
        .await;
        rt.shutdown().await?;

        let url = fresh_schema("notify").await;
        let worker = spawn_worker(&url);
        let sender = Runtime::builder()
            .postgres(&url)
            .app("bench-sender")
            .execute(false)
            .start()
            .await?;
        let lines = WORKER_LINES.lock().unwrap().take().unwrap();
        let mut all = Vec::with_capacity(samples);
        for seq in 0..samples as u64 {
            sender
                .send(RemotePing {
                    seq,
                    sent_unix_ns: unix_ns(),
                })
                .await?;
            loop {
                let line = lines.recv().expect("the worker stopped");
                if let Some(rest) = line.strip_prefix("STARTED ") {
                    let (s, ns) = rest.split_once(' ').unwrap();
                    if s.parse::<u64>().unwrap() == seq {
                        all.push(Duration::from_nanos(ns.parse::<u64>().unwrap()));
                        break;
                    }
                }
            }
        }
        sender.shutdown().await?;
        drop(worker);
        all.sort();
        Ok((local, (all[samples / 2], all[samples * 99 / 100])))
    }
}

// --- durable steps: per-step overhead, sleeping runs -------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/stepped")]
struct Stepped {
    steps: u32,
}

/// `steps` trivial steps, then reports that it finished.
#[function(trigger = "bench/stepped")]
async fn stepped(ctx: Ctx<Stepped>) -> fanfare::Result<()> {
    for i in 0..ctx.event().steps {
        ctx.step("s", || async { Ok::<_, fanfare::Error>(i) })
            .await?;
    }
    report_start();
    Ok(())
}

/// Median time from send to the end of a run of `steps` steps, one run at a time.
async fn stepped_run(rt: &Runtime, steps: u32, runs: usize) -> Duration {
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        let done = expect_start();
        let t0 = Instant::now();
        rt.send(Stepped { steps }).await.expect("send failed");
        let t1 = done.await.expect("the run never finished");
        all.push(t1 - t0);
    }
    median(all)
}

/// Per-step overhead on a fresh runtime: (`steps` steps − none) / `steps`, medians.
async fn per_step(
    builder: fanfare::Builder,
    steps: u32,
    runs: usize,
) -> fanfare::Result<(Duration, Duration, f64)> {
    let rt = builder.start().await?;
    stepped_run(&rt, steps, runs / 10 + 1).await; // warm-up
    let none = stepped_run(&rt, 0, runs).await;
    let with = stepped_run(&rt, steps, runs).await;
    rt.shutdown().await?;
    let per = (with.as_secs_f64() - none.as_secs_f64()) / steps as f64 * 1e6;
    Ok((none, with, per))
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/sleeper")]
struct Sleeper {
    n: u64,
}

static SLEEPERS: AtomicU64 = AtomicU64::new(0);

#[function(trigger = "bench/sleeper")]
async fn sleeper(ctx: Ctx<Sleeper>) -> fanfare::Result<()> {
    SLEEPERS.fetch_add(1, Ordering::SeqCst);
    ctx.sleep("nap", Duration::from_secs(3600)).await?;
    Ok(())
}

/// Bytes and tokio tasks held by `n` runs sleeping in the memory store.
async fn sleeping_runs(n: u64) -> fanfare::Result<(f64, usize)> {
    let rt = Runtime::builder().start().await?;
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let before = allocated();
    let mut last = None;
    for i in 0..n {
        last = Some(rt.send(Sleeper { n: i }).await?);
    }
    let last = last.expect("at least one run");
    // Every run started, reached its sleep and was put back to sleep.
    while SLEEPERS.load(Ordering::SeqCst) < n
        || rt.runs(last).await?[0].status != fanfare::RunStatus::Sleeping
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while rt.runs(last).await?[0].status != fanfare::RunStatus::Sleeping {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // let the last outcomes land
    let after = allocated();
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        .saturating_sub(tasks_before);
    rt.shutdown().await?;
    Ok(((after as f64 - before as f64) / n as f64, tasks))
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

/// A long section that runs only when named in `--only` (not by default).
fn wants_named(section: &str) -> bool {
    std::env::args().any(|a| a == "--only") && wants(section)
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

/// A latency's p99 against its target: at most twice the target of its p50.
fn tail(p99: Duration, p50_target_us: f64) -> String {
    let target = 2.0 * p50_target_us;
    let verdict = if us(p99) <= target { "met" } else { "NOT met" };
    format!(
        "p99 {:.1} us (target <= 2 x the p50 target = {target:.0} us: {verdict})",
        us(p99)
    )
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn rate(events: u64, d: Duration) -> f64 {
    (events * FANOUT) as f64 / d.as_secs_f64()
}

/// The bench's database files of this process, removed when it ends (`remove_temp_dbs`).
fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("fanfare-bench")
}

/// Removes this process's database files (every runtime on them is shut down by then).
fn remove_temp_dbs() {
    let mine = format!("-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().contains(&mine) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A fresh file path for a benchmark database.
fn temp_db(tag: &str) -> std::path::PathBuf {
    let dir = temp_dir();
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
    // fanfare's own warnings (a failed prune, a lost connection), with RUST_LOG=warn.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, url] = args.as_slice() {
        if flag == "--pg-worker" {
            return pg::worker(url).await;
        }
    }
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
            "  ratio                             {:>10.2}   (target >= 1.00; first target 0.50)\n",
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
        println!("  fanfare                           p50 {:>8.1} us   p99 {:>8.1} us   (target p50 <= 50 us)", us(f50), us(f99));
        println!("  {}\n", tail(f99, 50.0));
    }

    if wants("sqlite") {
        // The hand-written batches and fanfare alternate; the medians are compared.
        let (mut bases, mut normals) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            bases.push(tokio::task::block_in_place(|| {
                sqlite_baseline::throughput(&temp_db(&format!("base{round}")), sqlite_events)
            }));
            normals.push(
                fanfare_throughput(
                    Runtime::builder()
                        .sqlite(temp_db(&format!("normal{round}")))
                        .sqlite_sync(fanfare::SqliteSync::Normal),
                    sqlite_events,
                )
                .await?,
            );
        }
        let (base, normal) = (median(bases), median(normals));
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
        println!("SQLite store (WAL): throughput, {sqlite_events} events (completed runs/s, outcomes committed; hand-written and NORMAL: median of {ROUNDS} alternating rounds)");
        println!(
            "  hand-written batched SQL, NORMAL  {:>10.0}",
            rate(sqlite_events, base)
        );
        println!(
            "  fanfare, synchronous=NORMAL       {:>10.0}   ratio {:.2} (target >= 0.60; first target 0.30)",
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
        println!("  fanfare                           p50 {:>8.1} us   p99 {:>8.1} us   (target p50 <= 1000 us)", us(f50), us(f99));
        println!("  {}\n", tail(f99, 1000.0));
    }
    if wants("postgres") {
        let pg_events = arg("--pg-events", 20_000);
        let (mut bases, mut ones, mut twos) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bases.push(pg::baseline_throughput(pg_events, false).await);
            ones.push(pg::throughput(pg_events, 0, true).await?);
            twos.push(pg::throughput(pg_events, 1, true).await?);
        }
        let (base, one, two) = (median(bases), median(ones), median(twos));
        let single_events = pg_events / 10;
        let single = pg::throughput(single_events, 0, false).await?;
        let indexed = pg::baseline_throughput(pg_events, true).await;
        println!("PostgreSQL store: throughput, {pg_events} events (completed runs/s, outcomes committed; all but the last two lines: median of {ROUNDS} alternating rounds)");
        println!(
            "  hand-written batched SQL          {:>10.0}",
            rate(pg_events, base)
        );
        println!(
            "  fanfare, one process              {:>10.0}   ratio {:.2} (target >= 0.30)",
            rate(pg_events, one),
            base.as_secs_f64() / one.as_secs_f64()
        );
        println!(
            "  fanfare, two processes            {:>10.0}   ratio {:.2} (target >= 0.60; first target 0.30)",
            rate(pg_events, two),
            base.as_secs_f64() / two.as_secs_f64()
        );
        println!("  fanfare, no group commit          {:>10.0}   ({single_events} events: a transaction per send)", rate(single_events, single));
        println!(
            "  hand-written, 15 index entries    {:>10.0}   (one round; fanfare, one process, to it: {:.2})\n",
            rate(pg_events, indexed),
            indexed.as_secs_f64() / one.as_secs_f64()
        );

        let (b50, b99) = pg::baseline_latency(samples).await;
        let ((l50, l99), (n50, n99)) = pg::latency(samples).await?;
        println!("PostgreSQL store: latency, send -> function start ({samples} single events)");
        println!(
            "  hand-written: commit+NOTIFY, claim p50 {:>8.1} us   p99 {:>8.1} us",
            us(b50),
            us(b99)
        );
        println!(
            "  fanfare, same process             p50 {:>8.1} us   p99 {:>8.1} us",
            us(l50),
            us(l99)
        );
        println!("  fanfare, other process (NOTIFY)   p50 {:>8.1} us   p99 {:>8.1} us   (target p50 <= 3000 us)", us(n50), us(n99));
        println!("  same process: {}", tail(l99, 3000.0));
        println!("  other process: {}\n", tail(n99, 3000.0));
        pg::drop_schemas().await;
    }
    if wants("steps") {
        let runs = arg("--step-runs", 300) as usize;
        println!("durable steps: per-step overhead, a run of 10 trivial steps vs none (medians of {runs} runs, one at a time)");
        let (n, t, per) = per_step(Runtime::builder(), 10, runs * 10).await?;
        println!("  memory          run {:>8.1} us, with 10 steps {:>8.1} us: {per:>7.2} us/step (target <= 5)", us(n), us(t));
        let (n, t, per) = per_step(Runtime::builder(), 1000, runs).await?;
        println!(
            "  memory, 1000 st run {:>8.1} us, with 1000 st  {:>8.1} us: {per:>7.2} us/step",
            us(n),
            us(t)
        );
        let (n, t, per) = per_step(
            Runtime::builder()
                .sqlite(temp_db("steps"))
                .sqlite_sync(fanfare::SqliteSync::Normal),
            10,
            runs,
        )
        .await?;
        println!("  SQLite NORMAL   run {:>8.1} us, with 10 steps {:>8.1} us: {per:>7.1} us/step (target <= 150)", us(n), us(t));
        let (n, t, per) =
            per_step(Runtime::builder().sqlite(temp_db("stepsfull")), 10, runs).await?;
        println!(
            "  SQLite FULL     run {:>8.1} us, with 10 steps {:>8.1} us: {per:>7.1} us/step",
            us(n),
            us(t)
        );
        let url = pg::fresh_schema("steps").await;
        let (n, t, per) =
            per_step(Runtime::builder().postgres(&url).app("bench"), 10, runs).await?;
        println!("  PostgreSQL      run {:>8.1} us, with 10 steps {:>8.1} us: {per:>7.1} us/step (target <= 1000)", us(n), us(t));
        let sleepers = arg("--sleepers", 100_000);
        let (bytes, tasks) = sleeping_runs(sleepers).await?;
        println!("\nmemory store: {sleepers} sleeping runs hold {:.1} MiB ({bytes:.0} bytes each) and {tasks} tokio tasks\n", bytes * sleepers as f64 / (1 << 20) as f64);
        pg::drop_schemas().await;
    }
    if wants("flow") {
        flow::run(
            arg("--flow-events", 100_000),
            arg("--flow-db-events", 20_000),
        )
        .await?;
    }
    if wants_named("list") {
        list::run(arg("--list-runs", 1_000_000)).await?;
    }
    if wants("http") {
        http::run(
            arg("--http-requests", 50_000),
            arg("--http-sqlite-requests", 20_000),
        )
        .await?;
    }

    if wants_named("scale") {
        scale::run(&scale::Sizes {
            max_queued: arg("--scale-max", 1_000_000),
            history: arg("--history", 10_000_000),
            events: arg("--scale-events", 20_000),
            pg_events: arg("--scale-pg-events", 100_000),
            parts: std::env::args()
                .skip_while(|a| a != "--scale-parts")
                .nth(1)
                .map(|p| p.split(',').map(str::to_owned).collect()),
        })
        .await?;
    }
    remove_temp_dbs();
    Ok(())
}
