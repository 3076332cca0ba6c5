//! Flow control: keyed and stacked concurrency, throttle, rate limit and priority, as the
//! functions themselves observe them. Conformance: every test runs against every store.

mod common;

use common::{gate, hits, Store, LIMIT};
use fanfare::{function, Ctx, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::time::timeout;

conformance!(
    keyed_concurrency_runs_one_run_per_key_at_a_time_and_keys_in_parallel,
    stacked_limits_hold_per_key_and_per_function,
    a_throttle_spreads_starts_and_drops_nothing,
    a_rate_limit_skips_with_a_reason_until_the_period_passes,
    a_high_priority_run_starts_before_earlier_low_priority_ones,
);

/// Runs in flight and the most seen at once, per name.
fn inflight() -> &'static Mutex<HashMap<String, (u32, u32)>> {
    static M: OnceLock<Mutex<HashMap<String, (u32, u32)>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// Counts a run in under each name; returns how many are in flight under the first.
fn enter(names: &[String]) -> u32 {
    let mut m = inflight().lock().unwrap();
    let mut first = 0;
    for (i, name) in names.iter().enumerate() {
        let e = m.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        if i == 0 {
            first = e.0;
        }
    }
    first
}

fn leave(names: &[String]) {
    let mut m = inflight().lock().unwrap();
    for name in names {
        if let Some(e) = m.get_mut(name) {
            e.0 -= 1;
        }
    }
}

/// (in flight now, most at once) under `name`.
fn seen(name: &str) -> (u32, u32) {
    inflight()
        .lock()
        .unwrap()
        .get(name)
        .copied()
        .unwrap_or_default()
}

/// Waits until every run of every event has finished.
async fn wait_all(rt: &Runtime, ids: &[fanfare::EventId]) -> Vec<fanfare::RunInfo> {
    let mut all = Vec::new();
    for id in ids {
        all.extend(
            timeout(LIMIT, rt.wait(*id))
                .await
                .expect("runs did not finish in time")
                .unwrap(),
        );
    }
    all
}

/// Waits until `check` holds, polling; fails the test after `LIMIT`.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- keyed concurrency ----------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/contact.updated")]
struct ContactUpdated {
    tag: String,
    customer: String,
}

#[function(trigger = "flow/contact.updated", concurrency(limit = 1, key = |e| e.customer))]
async fn sync_contact(ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    let e = ctx.event();
    let me = format!("{} {}", e.tag, e.customer);
    let other = format!("{} {}", e.tag, if e.customer == "a" { "b" } else { "a" });
    enter(std::slice::from_ref(&me));
    // Keys run in parallel: the first run of each key meets a run of the other key (a
    // limit applied to the whole function would make this wait in vain).
    if common::hit(format!("{me} started")) == 1 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen(&other).0 == 0 && common::hits(format!("{other} met")) == 0 {
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if seen(&other).0 > 0 || common::hits(format!("{other} met")) > 0 {
            common::hit(format!("{me} met"));
        }
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    leave(std::slice::from_ref(&me));
    common::hit(format!("{} done", e.tag));
    Ok(())
}

async fn keyed_concurrency_runs_one_run_per_key_at_a_time_and_keys_in_parallel(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("keyed {}", store.name());
    let mut ids = Vec::new();
    for i in 0..20 {
        let customer = if i % 2 == 0 { "a" } else { "b" }.to_owned();
        ids.push(
            rt.send(ContactUpdated {
                tag: tag.clone(),
                customer,
            })
            .await
            .unwrap(),
        );
    }
    let runs = wait_all(&rt, &ids).await;
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    assert_eq!(hits(format!("{tag} done")), 20);
    for key in ["a", "b"] {
        assert_eq!(
            seen(&format!("{tag} {key}")).1,
            1,
            "two runs of key {key} at once"
        );
        assert_eq!(
            hits(format!("{tag} {key} met")),
            1,
            "key {key} never ran beside the other"
        );
    }
    rt.shutdown().await.unwrap();
}

// --- stacked limits -------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/render")]
struct Render {
    tag: String,
    customer: u32,
}

#[function(
    trigger = "flow/render",
    concurrency = 2,
    concurrency(limit = 1, key = |e| e.customer),
)]
async fn render(ctx: Ctx<Render>) -> fanfare::Result<()> {
    let e = ctx.event();
    let names = [
        format!("{} all", e.tag),
        format!("{} {}", e.tag, e.customer),
    ];
    enter(&names);
    tokio::time::sleep(Duration::from_millis(5)).await;
    leave(&names);
    common::hit(format!("{} done", e.tag));
    Ok(())
}

async fn stacked_limits_hold_per_key_and_per_function(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("stacked {}", store.name());
    let mut ids = Vec::new();
    // Each key's events in a row: a key limit that did not hold would let the
    // function's two slots go to one key.
    for i in 0..12 {
        let event = Render {
            tag: tag.clone(),
            customer: i / 4,
        };
        ids.push(rt.send(event).await.unwrap());
    }
    wait_all(&rt, &ids).await;
    assert_eq!(hits(format!("{tag} done")), 12);
    assert!(
        seen(&format!("{tag} all")).1 <= 2,
        "more than 2 runs at once"
    );
    for key in 0..3 {
        assert_eq!(
            seen(&format!("{tag} {key}")).1,
            1,
            "two runs of key {key} at once"
        );
    }
    rt.shutdown().await.unwrap();
}

// --- throttle -------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/email")]
struct Email {
    tag: String,
}

fn starts() -> &'static Mutex<HashMap<String, Vec<Instant>>> {
    static S: OnceLock<Mutex<HashMap<String, Vec<Instant>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

#[function(trigger = "flow/email", throttle(limit = 10, period = "1s"))]
async fn send_email(ctx: Ctx<Email>) -> fanfare::Result<()> {
    let now = Instant::now();
    starts()
        .lock()
        .unwrap()
        .entry(ctx.event().tag.clone())
        .or_default()
        .push(now);
    Ok(())
}

async fn a_throttle_spreads_starts_and_drops_nothing(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("throttle {}", store.name());
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(rt.send(Email { tag: tag.clone() }).await.unwrap());
    }
    // Held back runs say so, with the time they may start.
    let last = rt.runs(*ids.last().unwrap()).await.unwrap();
    if last[0].status == RunStatus::Queued && last[0].reason.is_some() {
        assert!(last[0].reason.as_deref().unwrap().contains("throttled"));
    }
    let runs = wait_all(&rt, &ids).await;
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    let mut at = starts().lock().unwrap().remove(&tag).unwrap();
    assert_eq!(at.len(), 30);
    at.sort();
    let span = at[29] - at[0];
    assert!(
        span >= Duration::from_secs(2),
        "30 starts took only {span:?}"
    );
    // One start per 100 ms: any 11 consecutive starts span most of a second.
    for w in at.windows(11) {
        assert!(
            w[10] - w[0] >= Duration::from_millis(800),
            "11 starts within {:?}",
            w[10] - w[0]
        );
    }
    rt.shutdown().await.unwrap();
}

// --- rate limit -----------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/login")]
struct Login {
    tag: String,
    user: u64,
}

#[function(trigger = "flow/login", rate_limit(limit = 1, period = "1s", key = |e| e.user))]
async fn notify_new_device(ctx: Ctx<Login>) -> fanfare::Result<()> {
    common::hit(format!("{} {}", ctx.event().tag, ctx.event().user));
    Ok(())
}

async fn a_rate_limit_skips_with_a_reason_until_the_period_passes(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("rate {}", store.name());
    let login = |user| Login {
        tag: tag.clone(),
        user,
    };
    let first = rt.send(login(1)).await.unwrap();
    let ran = wait_all(&rt, &[first]).await;
    let done = Instant::now();
    assert_eq!(ran[0].status, RunStatus::Completed);
    let again = rt.send(login(1)).await.unwrap();
    let other = rt.send(login(2)).await.unwrap();
    let skipped = wait_all(&rt, &[again]).await;
    assert_eq!(skipped[0].status, RunStatus::Skipped);
    let reason = skipped[0].reason.as_deref().unwrap_or_default();
    assert!(reason.contains("rate limited"), "{reason}");
    assert_eq!(skipped[0].attempts, 0);
    assert_eq!(
        wait_all(&rt, &[other]).await[0].status,
        RunStatus::Completed
    );
    // Once the period has passed, the key runs again.
    tokio::time::sleep_until((done + Duration::from_millis(1100)).into()).await;
    let later = rt.send(login(1)).await.unwrap();
    assert_eq!(
        wait_all(&rt, &[later]).await[0].status,
        RunStatus::Completed
    );
    assert_eq!(hits(format!("{tag} 1")), 2);
    assert_eq!(hits(format!("{tag} 2")), 1);
    rt.shutdown().await.unwrap();
}

// --- priority -------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/job")]
struct Job {
    tag: String,
    n: u32,
    paid: bool,
}

fn order() -> &'static Mutex<HashMap<String, Vec<u32>>> {
    static O: OnceLock<Mutex<HashMap<String, Vec<u32>>>> = OnceLock::new();
    O.get_or_init(Default::default)
}

#[function(trigger = "flow/job", concurrency = 1, priority = |e| if e.paid { 60 } else { 0 })]
async fn job(ctx: Ctx<Job>) -> fanfare::Result<()> {
    let e = ctx.event();
    order()
        .lock()
        .unwrap()
        .entry(e.tag.clone())
        .or_default()
        .push(e.n);
    if e.n == 0 {
        // The first run holds the only slot until the test has queued the others.
        let g = gate(&e.tag);
        g.started.notify_one();
        let _ = g.release.acquire().await.unwrap();
    }
    Ok(())
}

async fn a_high_priority_run_starts_before_earlier_low_priority_ones(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("priority {}", store.name());
    let g = gate(&tag);
    let job = |n, paid| Job {
        tag: tag.clone(),
        n,
        paid,
    };
    let started = g.started.notified();
    let mut ids = vec![rt.send(job(0, false)).await.unwrap()];
    timeout(LIMIT, started).await.unwrap();
    for n in 1..=20 {
        ids.push(rt.send(job(n, false)).await.unwrap());
    }
    ids.push(rt.send(job(21, true)).await.unwrap());
    // Every run waits for the slot, and says so.
    until("every run is held", async || {
        let mut held = 0;
        for id in &ids[1..] {
            let runs = rt.runs(*id).await.unwrap();
            if runs[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("concurrency slot"))
            {
                held += 1;
            }
        }
        held == 21
    })
    .await;
    g.release.add_permits(1);
    wait_all(&rt, &ids).await;
    let order = order().lock().unwrap().remove(&tag).unwrap();
    assert_eq!(
        order[..2],
        [0, 21],
        "the paid job did not start next: {order:?}"
    );
    assert_eq!(order[2..], (1..=20).collect::<Vec<_>>()[..]);
    rt.shutdown().await.unwrap();
}
