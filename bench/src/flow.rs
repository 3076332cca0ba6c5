//! Flow control's cost: the same trivial function with and without
//! `concurrency(limit = 1, key = |e| e.key)`, over 1,000 keys, on each store.
//!
//! Events carry `n % 1000` as their key, so at most 1,000 runs execute at once and the
//! others of each key wait for their turn (held, then promoted as the one before ends).
//! Reported: completed runs/s of each and the keyed/unkeyed ratio (target >= 0.5).

use crate::{median, pg, rate, send_each, temp_db, ROUNDS};
use fanfare::{function, Ctx, Event, Runtime};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Keys the events spread over.
const KEYS: u64 = 1_000;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/keyed")]
struct Keyed {
    n: u64,
    key: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/unkeyed")]
struct Unkeyed {
    n: u64,
    key: u64,
}

static RAN: AtomicU64 = AtomicU64::new(0);
static GOAL: AtomicU64 = AtomicU64::new(u64::MAX);
static REACHED: Notify = Notify::const_new();

fn one_run(n: u64) {
    std::hint::black_box(n);
    if RAN.fetch_add(1, Ordering::Relaxed) + 1 == GOAL.load(Ordering::Relaxed) {
        REACHED.notify_one();
    }
}

#[function(trigger = "bench/keyed", concurrency(limit = 1, key = |e| e.key))]
async fn keyed_run(ctx: Ctx<Keyed>) -> fanfare::Result<()> {
    one_run(ctx.event().n);
    Ok(())
}

#[function(trigger = "bench/unkeyed")]
async fn unkeyed_run(ctx: Ctx<Unkeyed>) -> fanfare::Result<()> {
    one_run(ctx.event().n);
    Ok(())
}

/// Sends `events` of one kind through a fresh runtime and waits until every run has
/// executed and been recorded.
async fn throughput(
    builder: fanfare::Builder,
    events: u64,
    keyed: bool,
) -> fanfare::Result<Duration> {
    let rt = builder.start().await?;
    RAN.store(0, Ordering::SeqCst);
    GOAL.store(events, Ordering::SeqCst);
    let began = Instant::now();
    if keyed {
        send_each(&rt, events, |n| Keyed { n, key: n % KEYS }).await?;
    } else {
        send_each(&rt, events, |n| Unkeyed { n, key: n % KEYS }).await?;
    }
    REACHED.notified().await;
    rt.shutdown().await?;
    Ok(began.elapsed())
}

/// Unkeyed then keyed, alternating for `rounds`; the medians.
async fn compare(
    builder: impl Fn() -> fanfare::Builder,
    events: u64,
    rounds: usize,
) -> fanfare::Result<(Duration, Duration)> {
    let (mut plain, mut keyed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(throughput(builder(), events, false).await?);
        keyed.push(throughput(builder(), events, true).await?);
    }
    Ok((median(plain), median(keyed)))
}

fn report(store: &str, events: u64, (plain, keyed): (Duration, Duration)) {
    println!("{store}: keyed concurrency, {events} events over {KEYS} keys, limit 1 per key (completed runs/s)");
    println!(
        "  no flow control                   {:>10.0}",
        rate(events, plain)
    );
    println!(
        "  concurrency(limit = 1, key)       {:>10.0}   ratio {:.2} (target >= 0.50)\n",
        rate(events, keyed),
        plain.as_secs_f64() / keyed.as_secs_f64()
    );
}

pub async fn run(events: u64, db_events: u64) -> fanfare::Result<()> {
    // Warm up, then alternate.
    throughput(Runtime::builder(), events / 10, true).await?;
    // The memory store's figures vary most from round to round: more rounds.
    let memory = compare(Runtime::builder, events, 2 * ROUNDS - 1).await?;
    report("memory store", events, memory);
    let sqlite = compare(
        || {
            Runtime::builder()
                .sqlite(temp_db("flow"))
                .sqlite_sync(fanfare::SqliteSync::Normal)
        },
        db_events,
        1,
    )
    .await?;
    report("SQLite store (NORMAL)", db_events, sqlite);
    let mut urls = Vec::new();
    for _ in 0..2 {
        urls.push(pg::fresh_schema("flow").await);
    }
    let next = std::sync::Mutex::new(urls.into_iter());
    let postgres = compare(
        || {
            let url = next
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next()
                .unwrap_or_default();
            Runtime::builder().postgres(url)
        },
        db_events,
        1,
    )
    .await?;
    report("PostgreSQL store", db_events, postgres);
    pg::drop_schemas().await;
    Ok(())
}
