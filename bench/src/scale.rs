//! The scale section (`--only scale`): how fanfare holds up as its store grows.
//!
//! 1. **Drain a backlog**: runs queued by a send-only process, then executed by a fresh
//!    runtime, on SQLite and PostgreSQL, for growing backlogs; against hand-written SQL
//!    draining the same backlog. The largest backlog should drain at ≥ 0.8 × the rate of
//!    the smallest.
//! 2. **Steady state over a large finished history**: the throughput workload on a store
//!    that already holds many finished runs (kept, or past the retention and being
//!    pruned), against the same workload on an empty store.
//! 3. **PostgreSQL throughput with more events**: the PostgreSQL section's workload at
//!    100 k events against 20 k.
//! 4. **Memory store**: bytes per queued run with the largest backlog queued, and the
//!    drain rate of each backlog size.
//!
//! Every figure is completed runs per second; a run is one of the five trivial functions
//! `f1`..`f5` triggered by a `bench/fanout` event, so N events make 5 N runs. Durable
//! figures stop once the last outcome is committed (the runtime's shutdown).

use super::*;
use fanfare::SqliteSync;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// The app of every runtime here, and of the rows inserted by hand.
const APP: &str = "bench";
/// Events per bulk-insert statement of the finished history (5 runs each: ~1 M runs).
const HISTORY_CHUNK: u64 = 200_000;
/// Events per insert transaction when the baselines fill their backlog.
const FILL_CHUNK: u64 = 4096;
/// Runs a baseline claims per transaction while draining.
const CLAIM: usize = 512;
/// The finished history of variant (b): older than the default 1 h retention.
const OLD: Duration = Duration::from_secs(2 * 3600);

/// What the section measures, from the command line.
pub(crate) struct Sizes {
    /// Largest backlog, in queued runs (`--scale-max`).
    pub max_queued: u64,
    /// Finished runs already stored for the steady-state workload (`--history`).
    pub history: u64,
    /// Events of the steady-state workload, and the smaller PostgreSQL size
    /// (`--scale-events`).
    pub events: u64,
    /// The larger PostgreSQL throughput size (`--scale-pg-events`).
    pub pg_events: u64,
    /// Only these parts (`--scale-parts memory,sqlite-drain,pg-drain,sqlite-history,
    /// pg-history,pg-events`); all by default.
    pub parts: Option<Vec<String>>,
}

impl Sizes {
    /// Backlogs to drain, in queued runs: 10 k, 100 k, 1 M, capped at `max_queued`.
    fn backlogs(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = [10_000, 100_000, 1_000_000]
            .into_iter()
            .filter(|&s| s < self.max_queued)
            .collect();
        sizes.push(self.max_queued);
        sizes
    }
}

pub(crate) async fn run(s: &Sizes) -> fanfare::Result<()> {
    println!(
        "scale: cargo run --release -p fanfare-bench -- --only scale --scale-max {} --history {} --scale-events {} --scale-pg-events {}",
        s.max_queued, s.history, s.events, s.pg_events
    );
    println!(
        "  backlogs (queued runs): {:?}; history: {} finished runs; steady state: {} events; PostgreSQL throughput: {} vs {} events\n",
        s.backlogs(),
        s.history,
        s.events,
        s.pg_events,
        s.events
    );
    let part = |name: &str| s.parts.as_ref().is_none_or(|p| p.iter().any(|x| x == name));
    // First, while nothing else allocates or frees in the background.
    if part("memory") {
        memory(s).await?;
    }
    if part("sqlite-drain") {
        sqlite_drains(s).await?;
    }
    if part("pg-drain") {
        pg_drains(s).await?;
    }
    if part("sqlite-history") {
        sqlite_history(s).await?;
    }
    if part("pg-history") {
        pg_history(s).await?;
    }
    if part("pg-events") {
        pg_more_events(s).await?;
    }
    pg::drop_schemas().await;
    Ok(())
}

// --- shared helpers ----------------------------------------------------------------------

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn unix_ms() -> i64 {
    (unix_ns() / 1_000_000) as i64
}

/// Waits until `target` runs armed with [`arm`] have executed. Always consumes the one
/// notification `trivial_work` gives at the target (a notification left behind would end
/// the next `fanfare_throughput` at once); a stale one from before is skipped.
async fn wait_done(target: u64) {
    loop {
        ALL_DONE.notified().await;
        if DONE.load(Ordering::SeqCst) >= target {
            return;
        }
    }
}

/// The ids of the functions `bench/fanout` triggers (`f1`..`f5`), as stored in run rows.
fn fanout_ids() -> Vec<&'static str> {
    let ids: Vec<&'static str> = fanfare::functions()
        .into_iter()
        .filter(|f| f.trigger() == Fanout::NAME)
        .map(|f| f.id())
        .collect();
    assert_eq!(ids.len(), FANOUT as usize, "{ids:?}");
    ids
}

fn sqlite_builder(path: &Path) -> fanfare::Builder {
    Runtime::builder()
        .sqlite(path)
        .sqlite_sync(SqliteSync::Normal)
        .app(APP)
}

/// Opens a fanfare SQLite file (a runtime's `shutdown` has released it).
fn sqlite_open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn
}

fn sqlite_count(path: &Path, sql: &str) -> i64 {
    tokio::task::block_in_place(|| {
        sqlite_open(path)
            .query_row(sql, [], |r| r.get(0))
            .expect("count")
    })
}

fn remove_db(path: &Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
}

/// Drops the schema of a URL made by `pg::fresh_schema`.
async fn drop_schema(url: &str) {
    if let Some((_, schema)) = url.rsplit_once("search_path%3D") {
        pg::connect(&pg::url())
            .await
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop schema");
    }
}

/// Prints a drain table: per backlog, the baseline's and fanfare's runs/s and their
/// ratio, then the largest backlog's rate over the smallest's for each.
/// A measured backlog: queued runs, the baseline's drain, fanfare's drain, and how much
/// of fanfare's was `Runtime::start` (the store opening; no run executes before it).
type Drained = (u64, Duration, Duration, Duration);

fn print_drains(title: &str, rows: &[Drained]) {
    println!(
        "{title}: drain a backlog of queued runs (runs/s from start to the last outcome committed)"
    );
    println!("  queued runs        hand-written     fanfare   ratio   (fanfare's start)");
    for &(runs, base, ours, start) in rows {
        println!(
            "  {runs:>11}          {:>10.0}  {:>10.0}   {:.2}    ({:.0} ms)",
            runs as f64 / secs(base),
            runs as f64 / secs(ours),
            secs(base) / secs(ours),
            secs(start) * 1e3
        );
    }
    let (small, large) = (rows[0], rows[rows.len() - 1]);
    let scaled = |pick: fn(&Drained) -> Duration| {
        (large.0 as f64 / secs(pick(&large))) / (small.0 as f64 / secs(pick(&small)))
    };
    println!(
        "  {:>11}          {:>10.2}  {:>10.2}          (rate at the largest / smallest; target fanfare >= 0.80)",
        format!("{}/{}", large.0, small.0),
        scaled(|r| r.1),
        scaled(|r| r.2)
    );
}

// --- 1. drain a backlog: SQLite ----------------------------------------------------------

/// SQLite (`NORMAL`): for each backlog size, fanfare's drain and the baseline's drain,
/// after one unreported round of the smallest (so that the smallest is not the cold one).
async fn sqlite_drains(s: &Sizes) -> fanfare::Result<()> {
    let began = Instant::now();
    let mut rows = Vec::new();
    let mut fills = Duration::ZERO;
    let sizes = s.backlogs();
    for (i, runs) in std::iter::once(sizes[0]).chain(sizes).enumerate() {
        let events = runs / FANOUT;
        let (fill_b, base) = tokio::task::block_in_place(|| sqlite_baseline_drain(events));
        let (fill, ours, start) = sqlite_drain(events).await?;
        fills += fill + fill_b;
        if i > 0 {
            rows.push((events * FANOUT, base, ours, start));
        }
    }
    print_drains("SQLite store (NORMAL)", &rows);
    println!(
        "  (took {:.1} s, of which filling the backlogs {:.1} s)\n",
        secs(began.elapsed()),
        secs(fills)
    );
    Ok(())
}

/// fanfare drains `events` × 5 runs that a send-only runtime (`execute(false)`) queued in
/// a SQLite file: the clock runs from `start` of an executing runtime until its shutdown
/// after the last run executed (so every outcome is committed). Returns (fill, drain,
/// start).
async fn sqlite_drain(events: u64) -> fanfare::Result<(Duration, Duration, Duration)> {
    let path = temp_db("drain");
    let filling = Instant::now();
    let sender = sqlite_builder(&path).execute(false).start().await?;
    send_all(&sender, events).await?;
    sender.shutdown().await?;
    drop(sender);
    // `shutdown` released the file: it opens at once.
    let queued = sqlite_count(&path, "SELECT count(*) FROM fanfare_runs WHERE status = 0");
    assert_eq!(
        queued as u64,
        events * FANOUT,
        "the backlog is not all queued"
    );
    let fill = filling.elapsed();

    arm(events * FANOUT);
    let began = Instant::now();
    let rt = sqlite_builder(&path).start().await?;
    let start = began.elapsed();
    wait_done(events * FANOUT).await;
    rt.shutdown().await?;
    let drain = began.elapsed();
    drop(rt);
    remove_db(&path);
    Ok((fill, drain, start))
}

/// The hand-written baseline drains the same backlog from its own table (the SQLite
/// section's layout): rows inserted in transactions of 4,096 events, then claimed 512 at
/// a time (`ORDER BY due_at LIMIT 512`, marked running), executed, and marked done in
/// one transaction per batch. Returns (fill, drain).
fn sqlite_baseline_drain(events: u64) -> (Duration, Duration) {
    let path = temp_db("basedrain");
    let mut conn = sqlite_baseline::open(&path);
    let filling = Instant::now();
    for from in (0..events).step_by(FILL_CHUNK as usize) {
        sqlite_baseline::insert(&mut conn, from, (from + FILL_CHUNK).min(events));
    }
    let fill = filling.elapsed();

    arm(events * FANOUT);
    let began = Instant::now();
    loop {
        let claimed = sqlite_baseline::claim(&mut conn, CLAIM);
        if claimed.is_empty() {
            break;
        }
        for (_, data) in &claimed {
            let e: Fanout = serde_json::from_str(data).unwrap();
            trivial_work(e.n);
        }
        let ids: Vec<i64> = claimed.iter().map(|c| c.0).collect();
        sqlite_baseline::complete(&mut conn, &ids);
    }
    let drain = began.elapsed();
    assert_eq!(DONE.load(Ordering::SeqCst), events * FANOUT);
    drop(conn);
    remove_db(&path);
    (fill, drain)
}

// --- 1. drain a backlog: PostgreSQL ------------------------------------------------------

/// PostgreSQL: for each backlog size, fanfare's drain and the baseline's drain, each in a
/// fresh schema, after one unreported round of the smallest.
async fn pg_drains(s: &Sizes) -> fanfare::Result<()> {
    let began = Instant::now();
    let mut rows = Vec::new();
    let mut fills = Duration::ZERO;
    let sizes = s.backlogs();
    for (i, runs) in std::iter::once(sizes[0]).chain(sizes).enumerate() {
        let events = runs / FANOUT;
        let (fill_b, base) = pg_baseline_drain(events).await;
        let (fill, ours, start) = pg_drain(events).await?;
        fills += fill + fill_b;
        if i > 0 {
            rows.push((events * FANOUT, base, ours, start));
        }
    }
    print_drains("PostgreSQL store", &rows);
    println!(
        "  (took {:.1} s, of which filling the backlogs {:.1} s)\n",
        secs(began.elapsed()),
        secs(fills)
    );
    Ok(())
}

/// fanfare drains `events` × 5 runs that a send-only runtime queued in a fresh schema;
/// timed like [`sqlite_drain`]. Returns (fill, drain, start).
async fn pg_drain(events: u64) -> fanfare::Result<(Duration, Duration, Duration)> {
    let url = pg::fresh_schema("drain").await;
    let builder = Runtime::builder().postgres(&url).app(APP);
    let filling = Instant::now();
    // A send-only process registers no functions, and a send creates runs only for
    // registered ones: an executing runtime of the app registers them first.
    builder.clone().start().await?.shutdown().await?;
    let sender = builder.clone().execute(false).start().await?;
    send_all(&sender, events).await?;
    sender.shutdown().await?;
    drop(sender);
    let client = pg::connect(&url).await;
    let queued: i64 = client
        .query_one("SELECT count(*) FROM fanfare_runs WHERE status = 0", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        queued as u64,
        events * FANOUT,
        "the backlog is not all queued"
    );
    // Statistics as autovacuum would have them for a backlog that waited (the baseline's
    // tables get the same).
    client
        .batch_execute("ANALYZE fanfare_runs; ANALYZE fanfare_events; ANALYZE fanfare_queue")
        .await
        .expect("analyze");
    let fill = filling.elapsed();

    arm(events * FANOUT);
    let began = Instant::now();
    let rt = builder.start().await?;
    let start = began.elapsed();
    wait_done(events * FANOUT).await;
    rt.shutdown().await?;
    let drain = began.elapsed();
    drop(rt);
    drop(client);
    drop_schema(&url).await;
    Ok((fill, drain, start))
}

/// The hand-written baseline on its own table (the PostgreSQL section's layout) in a
/// fresh schema: rows inserted in transactions of 4,096 events, then claimed 512 at a
/// time (`ORDER BY due_at LIMIT 512 FOR UPDATE SKIP LOCKED`, marked running, joined with
/// the event), executed, and marked done in one statement per batch; the tables are
/// `ANALYZE`d after the fill, as fanfare's are. (Its claim is the PostgreSQL section's:
/// its plan scans the whole `runs` table per batch, so its rate falls as the backlog
/// grows.) Returns (fill, drain).
async fn pg_baseline_drain(events: u64) -> (Duration, Duration) {
    let url = pg::fresh_schema("basedrain").await;
    let mut client = pg::connect(&url).await;
    pg::schema(&client).await;
    let filling = Instant::now();
    for from in (0..events).step_by(FILL_CHUNK as usize) {
        pg::insert(&mut client, from, (from + FILL_CHUNK).min(events), false).await;
    }
    client
        .batch_execute("ANALYZE runs; ANALYZE events")
        .await
        .expect("analyze");
    let fill = filling.elapsed();

    arm(events * FANOUT);
    let began = Instant::now();
    loop {
        let claimed = pg::claim(&client, CLAIM as i64).await;
        if claimed.is_empty() {
            break;
        }
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
    let drain = began.elapsed();
    assert_eq!(DONE.load(Ordering::SeqCst), events * FANOUT);
    drop(client);
    drop_schema(&url).await;
    (fill, drain)
}

// --- 2. steady state over a large finished history ---------------------------------------

/// The two histories: finished just now (within the default 1 h retention: kept), and
/// finished 2 h ago (past it: the store's pruner deletes them while the workload runs).
fn histories() -> [(&'static str, Duration); 2] {
    [
        ("finished now (kept)", Duration::ZERO),
        ("finished 2 h ago (pruned)", OLD),
    ]
}

fn print_history_row(label: &str, events: u64, took: Duration, empty: Duration) {
    println!(
        "  {label:<32}  {:>10.0}   ratio {:.2}",
        rate(events, took),
        secs(empty) / secs(took)
    );
}

/// SQLite (`NORMAL`): the throughput workload (`fanfare_throughput`: `events` events from
/// 64 producers, until every outcome is committed) on an empty file, then on files that
/// already hold `history` finished runs (one event per 5 runs), inserted with SQL after a
/// runtime created the schema. Reported: runs/s and the ratio to the empty file; for the
/// old history, how many of its runs are left after the workload.
async fn sqlite_history(s: &Sizes) -> fanfare::Result<()> {
    let began = Instant::now();
    let empty_path = temp_db("empty");
    let empty = fanfare_throughput(sqlite_builder(&empty_path), s.events).await?;
    remove_db(&empty_path);
    println!(
        "SQLite store (NORMAL): throughput, {} events, over {} finished runs (completed runs/s)",
        s.events, s.history
    );
    println!("  {:<32}  {:>10.0}", "empty store", rate(s.events, empty));
    let mut notes = Vec::new();
    for (label, age) in histories() {
        let path = temp_db("history");
        sqlite_builder(&path).start().await?.shutdown().await?;
        let finished = unix_ms() - age.as_millis() as i64;
        let inserting = Instant::now();
        tokio::task::block_in_place(|| sqlite_insert_history(&path, s.history, finished));
        let inserted = inserting.elapsed();
        let working = Instant::now();
        let took = fanfare_throughput(sqlite_builder(&path), s.events).await?;
        let worked = working.elapsed();
        print_history_row(label, s.events, took, empty);
        if age > Duration::ZERO {
            let left = sqlite_count(
                &path,
                &format!("SELECT count(*) FROM fanfare_runs WHERE finished_at <= {finished}"),
            );
            println!(
                "  {:<32}  {left:>10} of {} history runs",
                "  left after the workload", s.history
            );
        }
        notes.push(format!(
            "{label}: insert {:.1} s, open + workload {:.1} s",
            secs(inserted),
            secs(worked)
        ));
        remove_db(&path);
    }
    println!(
        "  (took {:.1} s; {})\n",
        secs(began.elapsed()),
        notes.join("; ")
    );
    Ok(())
}

/// Inserts `runs` completed runs (`runs / 5` events of `bench/fanout`) into fanfare's
/// SQLite tables, one transaction per ~1 M runs. As fanfare's own: event ids are
/// time-ordered (UUIDv7: the millisecond, then random bits), runs are at their positions
/// with run ids that say them, and the events spread one per millisecond up to
/// `finished` (unix ms), each event's runs finishing at its time.
fn sqlite_insert_history(path: &Path, runs: u64, finished: i64) {
    let mut conn = sqlite_open(path);
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; CREATE TEMP TABLE history_ids (id BLOB NOT NULL, ts INTEGER NOT NULL)",
    )
    .unwrap();
    let functions: Vec<String> = fanout_ids()
        .iter()
        .enumerate()
        .map(|(i, f)| format!("('{f}', {i})"))
        .collect();
    // Each run at its position (`h.ts << 12 | i`), its run id saying it (the ms, the
    // version and the sequence, the variant and random bits).
    let insert_runs = format!(
        "INSERT INTO fanfare_runs (id, run_id, event_id, function_id, status, attempts, due_at, finished_at) \
         SELECT (h.ts << 12) + f.column2, \
                unhex(printf('%012x%04x%02x', h.ts, 28672 + f.column2, 128 + abs(random()) % 64) \
                      || hex(randomblob(7))), \
                h.id, f.column1, 2, 1, h.ts, h.ts \
         FROM temp.history_ids h CROSS JOIN (VALUES {}) f",
        functions.join(", ")
    );
    let mut left = runs / FANOUT;
    let mut ts = finished - left as i64;
    while left > 0 {
        let n = left.min(HISTORY_CHUNK);
        left -= n;
        let tx = conn.transaction().unwrap();
        tx.execute("DELETE FROM temp.history_ids", []).unwrap();
        tx.execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1) \
             INSERT INTO temp.history_ids \
             SELECT unhex(printf('%012x', ?2 + i) || hex(randomblob(10))), ?2 + i FROM s",
            [n as i64, ts],
        )
        .unwrap();
        tx.execute(
            &format!(
                "INSERT INTO fanfare_events (id, name, data, ts, first_run, runs) \
                 SELECT id, 'bench/fanout', '{{\"n\":0}}', ts, ts << 12, {FANOUT} FROM temp.history_ids"
            ),
            [],
        )
        .unwrap();
        tx.execute(&insert_runs, []).unwrap();
        tx.commit().unwrap();
        ts += n as i64;
    }
}

/// PostgreSQL: as [`sqlite_history`], each store in a fresh schema; the history is
/// inserted with `generate_series` and `gen_random_uuid()`, then `ANALYZE`d.
async fn pg_history(s: &Sizes) -> fanfare::Result<()> {
    let began = Instant::now();
    let url = pg::fresh_schema("empty").await;
    let empty = fanfare_throughput(Runtime::builder().postgres(&url).app(APP), s.events).await?;
    drop_schema(&url).await;
    println!(
        "PostgreSQL store: throughput, {} events, over {} finished runs (completed runs/s)",
        s.events, s.history
    );
    println!("  {:<32}  {:>10.0}", "empty store", rate(s.events, empty));
    let mut notes = Vec::new();
    for (label, age) in histories() {
        let url = pg::fresh_schema("history").await;
        let builder = Runtime::builder().postgres(&url).app(APP);
        builder.clone().start().await?.shutdown().await?;
        let client = pg::connect(&url).await;
        let finished = unix_ms() - age.as_millis() as i64;
        let inserting = Instant::now();
        pg_insert_history(&client, s.history, finished).await;
        let inserted = inserting.elapsed();
        let working = Instant::now();
        let took = fanfare_throughput(builder, s.events).await?;
        let worked = working.elapsed();
        print_history_row(label, s.events, took, empty);
        if age > Duration::ZERO {
            let left: i64 = client
                .query_one(
                    "SELECT count(*) FROM fanfare_runs WHERE finished_at <= $1",
                    &[&finished],
                )
                .await
                .unwrap()
                .get(0);
            println!(
                "  {:<32}  {left:>10} of {} history runs",
                "  left after the workload", s.history
            );
        }
        notes.push(format!(
            "{label}: insert {:.1} s, open + workload {:.1} s",
            secs(inserted),
            secs(worked)
        ));
        drop(client);
        drop_schema(&url).await;
    }
    println!(
        "  (took {:.1} s; {})\n",
        secs(began.elapsed()),
        notes.join("; ")
    );
    Ok(())
}

/// Inserts `runs` completed runs of app `bench` (`runs / 5` events) into fanfare's
/// PostgreSQL tables, ~1 M runs per statement, then vacuums, analyzes and writes them out
/// (`CHECKPOINT`). As fanfare's own: ids
/// are time-ordered (`fanfare_uuid7`), one event per millisecond up to `finished`.
async fn pg_insert_history(client: &tokio_postgres::Client, runs: u64, finished: i64) {
    let functions = fanout_ids();
    let mut left = runs / FANOUT;
    let mut ts = finished - left as i64;
    while left > 0 {
        let n = left.min(HISTORY_CHUNK);
        left -= n;
        client
            .execute(
                "WITH e AS (
                     INSERT INTO fanfare_events (id, name, data, ts)
                     SELECT fanfare_uuid7($1::bigint + g), 'bench/fanout', '{\"n\":0}', $1::bigint + g
                     FROM generate_series(1, $2::bigint) g
                     RETURNING id, ts),
                 r AS (
                     INSERT INTO fanfare_runs (run_id, event_id, app, function_id, status, attempts, due_at, finished_at)
                     SELECT fanfare_uuid7(e.ts), e.id, $3::text, f, 2, 1, e.ts, e.ts
                     FROM e CROSS JOIN unnest($4::text[]) AS f
                     RETURNING id, finished_at)
                 INSERT INTO fanfare_finished (finished_at, run)
                 SELECT finished_at, id FROM r",
                &[&ts, &(n as i64), &APP, &functions],
            )
            .await
            .expect("insert the history");
        ts += n as i64;
    }
    // As a history that old would be: vacuumed and analyzed by autovacuum, its pages
    // written out. Left to the workload, vacuuming and checkpointing 10 M fresh rows (a
    // few GB) ran during it.
    for table in ["fanfare_events", "fanfare_runs", "fanfare_finished"] {
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
            .await
            .expect("vacuum");
    }
    pg::checkpoint(client).await;
}

// --- 3. PostgreSQL throughput with more events -------------------------------------------

/// The PostgreSQL section's throughput workload (fresh schema, one process, 64 producers,
/// done when every run is completed in the database) at `pg_events` events against
/// `events`: the larger figure should not be below the smaller.
async fn pg_more_events(s: &Sizes) -> fanfare::Result<()> {
    let began = Instant::now();
    let small = pg::throughput(s.events, 0, true).await?;
    let large = pg::throughput(s.pg_events, 0, true).await?;
    println!(
        "PostgreSQL store: throughput by number of events (completed runs/s, outcomes committed)"
    );
    println!(
        "  {:<32}  {:>10.0}",
        format!("{} events", s.events),
        rate(s.events, small)
    );
    println!(
        "  {:<32}  {:>10.0}   ratio {:.2} (target >= 1.00)",
        format!("{} events", s.pg_events),
        rate(s.pg_events, large),
        rate(s.pg_events, large) / rate(s.events, small)
    );
    println!("  (took {:.1} s)\n", secs(began.elapsed()));
    Ok(())
}

// --- 4. memory store ---------------------------------------------------------------------

/// Memory store: bytes per queued run with the largest backlog queued (the memory
/// section's measurement: one worker slot, held at a gate), and the drain rate of each
/// backlog size (see [`memory_drain`]).
async fn memory(s: &Sizes) -> fanfare::Result<()> {
    let began = Instant::now();
    let largest = s.max_queued / FANOUT;
    let per_run = bytes_per_queued_run(largest).await?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let mut rows = Vec::new();
    for runs in s.backlogs() {
        let events = runs / FANOUT;
        let took = tokio::task::block_in_place(|| {
            std::thread::spawn(move || memory_drain(events, workers))
                .join()
                .expect("the memory drain panicked")
        })?;
        rows.push((events * FANOUT, took));
    }
    println!(
        "memory store: {} queued runs, and draining a backlog",
        largest * FANOUT
    );
    println!("  memory per queued run            {per_run:>10.0} bytes   (target <= 1024)");
    for &(runs, took) in &rows {
        println!(
            "  drain {runs:>11} queued runs    {:>10.0} runs/s",
            runs as f64 / secs(took)
        );
    }
    let (small, large) = (rows[0], rows[rows.len() - 1]);
    println!(
        "  rate at {} / at {}   {:>10.2}\n  (took {:.1} s)\n",
        large.0,
        small.0,
        (large.0 as f64 / secs(large.1)) / (small.0 as f64 / secs(small.1)),
        secs(began.elapsed())
    );
    Ok(())
}

/// Drains `events` × 5 runs queued in the memory store, on a tokio runtime of its own
/// with `workers` worker threads (as many as the bench's).
///
/// The memory store has no `execute(false)`, and a send does not wait for its runs, so
/// the backlog is queued while no worker can run the dispatcher: every worker thread of
/// the new runtime is held by a task that blocks it; this thread (not a worker) starts
/// the fanfare runtime, which spawns its dispatcher (queued, not polled: no worker is
/// free), and sends every event (the memory store's send completes on the calling thread
/// and needs no worker). That nothing ran is checked. Releasing the workers starts the
/// clock; it stops at the shutdown after the last run, once every outcome is recorded.
fn memory_drain(events: u64, workers: usize) -> fanfare::Result<Duration> {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let held = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    for _ in 0..workers {
        let (held, release) = (Arc::clone(&held), Arc::clone(&release));
        tokio_rt.spawn(async move {
            held.fetch_add(1, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(50));
            }
        });
    }
    let waiting = Instant::now();
    while held.load(Ordering::SeqCst) < workers {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the workers were not all held"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = tokio_rt.block_on(async {
        let rt = Runtime::builder().app(APP).start().await?;
        arm(events * FANOUT);
        for n in 0..events {
            rt.send(Fanout { n }).await?;
        }
        assert_eq!(
            DONE.load(Ordering::SeqCst),
            0,
            "a run executed while filling"
        );
        release.store(true, Ordering::SeqCst);
        let began = Instant::now();
        wait_done(events * FANOUT).await;
        rt.shutdown().await?;
        Ok::<_, fanfare::Error>(began.elapsed())
    })?;
    drop(tokio_rt);
    Ok(took)
}
