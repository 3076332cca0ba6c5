//! The runs API section (`--only list`, never by default: filling takes a while): how
//! long `Runtime::list_runs` takes for a page of 50 with 1 M runs stored, on SQLite and
//! PostgreSQL, for the filters the runs API and the dashboard use; against a hand-written
//! query reading the newest 50 runs by primary key on the same database.
//!
//! The runs: 5 functions (`f1`..`f5`), one event per 5 runs, one per millisecond up to now;
//! of every 100 runs, 90 completed, 5 failed, 3 queued (due in a day), 1 sleeping and
//! 1 cancelled (spread by a hash of the event's time and the function, the same on both
//! stores). Target: p99 ≤ 50 ms for every filter.

use super::*;
use fanfare::{RunFilter, RunStatus};
use std::path::Path;

/// Pages read per filter.
const PAGES: usize = 200;

/// The filters measured, by name.
fn filters(now: std::time::SystemTime) -> Vec<(&'static str, RunFilter)> {
    let f = || RunFilter::new();
    vec![
        ("every run", f()),
        ("failed", f().status(RunStatus::Failed)),
        ("failed of f3", f().status(RunStatus::Failed).function("f3")),
        (
            "completed of f3",
            f().status(RunStatus::Completed).function("f3"),
        ),
        ("queued", f().status(RunStatus::Queued)),
        ("sleeping", f().status(RunStatus::Sleeping)),
        (
            "cancelled of f3",
            f().status(RunStatus::Cancelled).function("f3"),
        ),
        ("runs of f3", f().function("f3")),
        ("last 10 minutes", f().since(now - Duration::from_secs(600))),
        ("skipped (none stored)", f().status(RunStatus::Skipped)),
    ]
}

pub(crate) async fn run(runs: u64) -> fanfare::Result<()> {
    println!("runs API: cargo run --release -p fanfare-bench -- --only list --list-runs {runs}");
    println!("  a page of 50 runs with {runs} runs stored; {PAGES} pages per filter, each from a random point (keyset cursor)\n");
    sqlite(runs).await?;
    postgres(runs).await?;
    Ok(())
}

/// The status code and flags of the i-th run of 100, as the SQL stores keep them:
/// (status, sleeping, finished).
const MIX: &str =
    "CASE WHEN k < 90 THEN 2 WHEN k < 95 THEN 3 WHEN k < 98 THEN 0 WHEN k < 99 THEN 0 ELSE 5 END";

async fn sqlite(runs: u64) -> fanfare::Result<()> {
    let path = temp_db("list");
    let now = unix_now();
    let rt = Runtime::builder().sqlite(&path).start().await?;
    rt.shutdown().await?;
    let took = Instant::now();
    tokio::task::block_in_place(|| sqlite_fill(&path, runs, now));
    let fill = took.elapsed();
    let base = tokio::task::block_in_place(|| sqlite_baseline(&path));
    let rt = Runtime::builder()
        .sqlite(&path)
        .execute(false)
        .retention(Duration::from_secs(365 * 86_400))
        .start()
        .await?;
    println!(
        "  SQLite ({runs} runs stored in {:.1} s)",
        fill.as_secs_f64()
    );
    measure(&rt, base).await?;
    rt.shutdown().await?;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    Ok(())
}

fn sqlite_fill(path: &Path, runs: u64, now: i64) {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("PRAGMA synchronous = OFF")
        .expect("pragma");
    let tx = conn.transaction().expect("tx");
    let events = (runs / 5) as i64;
    tx.execute(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1) \
         INSERT INTO fanfare_events (id, name, data, ts) \
         SELECT unhex(printf('%012x', ?2 - ?1 + i) || hex(randomblob(10))), 'bench/fanout', '{\"n\":0}', ?2 - ?1 + i FROM s",
        [events, now],
    )
    .expect("events");
    tx.execute(
        &format!(
            "INSERT INTO fanfare_runs (run_id, event_id, function_id, status, attempts, due_at, finished_at, sleeping) \
             SELECT unhex(printf('%012x', ts) || hex(randomblob(10))), id, 'f' || f, {MIX}, 1, \
                    CASE WHEN k >= 95 AND k < 99 THEN ts + 86400000 ELSE ts END, \
                    CASE WHEN k < 95 OR k >= 99 THEN ts END, k = 98 \
             FROM (SELECT e.id, e.ts, f.column1 AS f, (e.ts * 7 + f.column1 * 13) % 100 AS k \
                   FROM fanfare_events e, (VALUES (1), (2), (3), (4), (5)) f)"
        ),
        [],
    )
    .expect("runs");
    tx.commit().expect("commit");
    conn.execute_batch("ANALYZE").expect("analyze");
}

/// The hand-written query: the newest 50 runs by primary key, p50 and p99.
fn sqlite_baseline(path: &Path) -> (Duration, Duration) {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut times = Vec::with_capacity(PAGES);
    let max: i64 = conn
        .query_row("SELECT max(id) FROM fanfare_runs", [], |r| r.get(0))
        .expect("max");
    for _ in 0..PAGES {
        let from = fastrand::i64(50..=max.max(50));
        let t = Instant::now();
        let mut s = conn
            .prepare_cached(
                "SELECT run_id, function_id, status, attempts, last_error, output FROM fanfare_runs \
                 WHERE id <= ?1 ORDER BY id DESC LIMIT 50",
            )
            .expect("prepare");
        let n = s
            .query_map([from], |r| r.get::<_, Vec<u8>>(0))
            .expect("query")
            .count();
        assert!(n > 0);
        times.push(t.elapsed());
    }
    percentiles(times)
}

async fn postgres(runs: u64) -> fanfare::Result<()> {
    let url = pg::fresh_schema("list");
    let url = url.await;
    let now = unix_now();
    let rt = Runtime::builder()
        .postgres(&url)
        .app("bench")
        .start()
        .await?;
    rt.shutdown().await?;
    let client = pg::connect(&url).await;
    let took = Instant::now();
    let events = (runs / 5) as i64;
    client
        .execute(
            &format!(
                "WITH e AS (
                     INSERT INTO fanfare_events (id, name, data, ts)
                     SELECT fanfare_run_id($1::bigint - $2 + g), 'bench/fanout', '{{\"n\":0}}', $1::bigint - $2 + g
                     FROM generate_series(1, $2::bigint) g
                     RETURNING id, ts)
                 INSERT INTO fanfare_runs (run_id, event_id, app, function_id, status, attempts, due_at, finished_at, sleeping)
                 SELECT fanfare_run_id(ts), id, 'bench', 'f' || f, {MIX}, 1,
                        CASE WHEN k >= 95 AND k < 99 THEN ts + 86400000 ELSE ts END,
                        CASE WHEN k < 95 OR k >= 99 THEN ts END, k = 98
                 FROM (SELECT e.id, e.ts, f, (e.ts * 7 + f * 13) % 100 AS k
                       FROM e CROSS JOIN generate_series(1, 5) f) x"
            ),
            &[&now, &events],
        )
        .await
        .expect("fill");
    client.batch_execute("ANALYZE").await.expect("analyze");
    let fill = took.elapsed();
    let max: i64 = client
        .query_one("SELECT max(id) FROM fanfare_runs", &[])
        .await
        .expect("max")
        .get(0);
    let stmt = client
        .prepare(
            "SELECT run_id, function_id, status, attempts, last_error, output FROM fanfare_runs \
             WHERE id <= $1 ORDER BY id DESC LIMIT 50",
        )
        .await
        .expect("prepare");
    let mut times = Vec::with_capacity(PAGES);
    for _ in 0..PAGES {
        let from = fastrand::i64(50..=max.max(50));
        let t = Instant::now();
        let rows = client.query(&stmt, &[&from]).await.expect("query");
        assert!(!rows.is_empty());
        times.push(t.elapsed());
    }
    let base = percentiles(times);
    let rt = Runtime::builder()
        .postgres(&url)
        .app("bench")
        .execute(false)
        .retention(Duration::from_secs(365 * 86_400))
        .start()
        .await?;
    println!(
        "  PostgreSQL ({runs} runs stored in {:.1} s)",
        fill.as_secs_f64()
    );
    measure(&rt, base).await?;
    rt.shutdown().await?;
    drop(client);
    pg::drop_schemas().await;
    Ok(())
}

/// Reads `PAGES` pages of each filter, each from a random point in the stored time
/// range, and prints p50/p99 against the baseline's.
async fn measure(rt: &Runtime, (b50, b99): (Duration, Duration)) -> fanfare::Result<()> {
    println!(
        "    hand-written: newest 50 by primary key   p50 {:>7.2} ms   p99 {:>7.2} ms",
        ms(b50),
        ms(b99)
    );
    let now = std::time::SystemTime::now();
    let newest = rt.list_runs(&RunFilter::new().limit(1)).await?.runs;
    let oldest_ms = newest
        .first()
        .map_or(0, |r| r.created_at_ms)
        .saturating_sub(200_000);
    for (name, filter) in filters(now) {
        let mut times = Vec::with_capacity(PAGES);
        let mut found = 0;
        for i in 0..PAGES {
            // Half the pages are first pages, half continue from a random point.
            let filter = if i % 2 == 0 {
                filter.clone()
            } else {
                let at = oldest_ms + fastrand::u64(..200_000);
                filter
                    .clone()
                    .until(std::time::UNIX_EPOCH + Duration::from_millis(at))
            };
            let t = Instant::now();
            let page = rt.list_runs(&filter).await?;
            times.push(t.elapsed());
            found += page.runs.len();
        }
        let (p50, p99) = percentiles(times);
        println!(
            "    {name:<24} {:>4} runs/page   p50 {:>7.2} ms   p99 {:>7.2} ms   ({:.1}x the hand-written p99; target p99 <= 50 ms)",
            found / PAGES,
            ms(p50),
            ms(p99),
            p99.as_secs_f64() / b99.as_secs_f64().max(1e-9)
        );
    }
    println!();
    Ok(())
}

fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.5), at(0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
