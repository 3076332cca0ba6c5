//! Flow control: keyed and stacked concurrency, throttle, rate limit and priority, as the
//! functions themselves observe them. Conformance: every test runs against every store.

mod common;

use common::{gate, hits, Store, LIMIT};
use fanfare::{function, Batch, Ctx, Event, Failure, RunStatus, Runtime};
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
    a_debounce_runs_once_per_key_with_the_last_event,
    a_debounce_timeout_forces_a_run_during_an_endless_burst,
    a_batch_runs_full_batches_and_the_rest_after_its_timeout,
    a_failed_batch_run_retries_with_the_same_events,
    a_batch_that_fails_for_good_fails_its_runs_and_hands_the_batch_to_on_failure,
    a_sleeping_run_holds_no_concurrency_slot,
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

/// Sends each event, in order; their ids.
async fn send_each<E: Event>(
    rt: &Runtime,
    events: impl IntoIterator<Item = E>,
) -> Vec<fanfare::EventId> {
    let mut ids = Vec::new();
    for event in events {
        ids.push(rt.send(event).await.unwrap());
    }
    ids
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
    let updates = (0..20).map(|i| ContactUpdated {
        tag: tag.clone(),
        customer: if i % 2 == 0 { "a" } else { "b" }.to_owned(),
    });
    let ids = send_each(&rt, updates).await;
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
    // Each key's events in a row: a key limit that did not hold would let the
    // function's two slots go to one key.
    let renders = (0..12).map(|i| Render {
        tag: tag.clone(),
        customer: i / 4,
    });
    let ids = send_each(&rt, renders).await;
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
    let ids = send_each(&rt, (0..30).map(|_| Email { tag: tag.clone() })).await;
    // Held back runs say so, with the time they may start (the last one, 2.9 s on).
    let last = *ids.last().unwrap();
    until("the last run is throttled", async || {
        let run = &rt.runs(last).await.unwrap()[0];
        run.reason.is_some()
    })
    .await;
    let run = &rt.runs(last).await.unwrap()[0];
    assert_eq!(run.status, RunStatus::Queued);
    assert!(
        run.reason.as_deref().unwrap().starts_with("throttled"),
        "{run:?}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        run.not_before_ms.is_some_and(|t| t > now_ms + 1000),
        "{run:?}"
    );
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

// --- debounce -------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/doc.edited")]
struct DocEdited {
    tag: String,
    doc: String,
    n: u32,
}

#[function(trigger = "flow/doc.edited", debounce(period = "500ms", key = |e| e.doc))]
async fn reindex(ctx: Ctx<DocEdited>) -> fanfare::Result<()> {
    let e = ctx.event();
    order()
        .lock()
        .unwrap()
        .entry(format!("{} {}", e.tag, e.doc))
        .or_default()
        .push(e.n);
    Ok(())
}

async fn a_debounce_runs_once_per_key_with_the_last_event(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("debounce {}", store.name());
    let mut ids = Vec::new();
    for n in 1..=5 {
        for doc in ["a", "b"] {
            let edit = DocEdited {
                tag: tag.clone(),
                doc: doc.to_owned(),
                n,
            };
            ids.push(rt.send(edit).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = wait_all(&rt, &ids).await;
    for doc in ["a", "b"] {
        let ran = order().lock().unwrap().remove(&format!("{tag} {doc}"));
        assert_eq!(
            ran,
            Some(vec![5]),
            "key {doc}: one run, with the fifth event"
        );
    }
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    assert_eq!(skipped.len(), 8);
    assert!(skipped.iter().all(|r| r
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("debounced")
        && r.attempts == 0));
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/typing")]
struct Typing {
    tag: String,
}

#[function(trigger = "flow/typing", debounce(period = "300ms", timeout = "1s"))]
async fn autosave(ctx: Ctx<Typing>) -> fanfare::Result<()> {
    starts()
        .lock()
        .unwrap()
        .entry(ctx.event().tag.clone())
        .or_default()
        .push(Instant::now());
    Ok(())
}

async fn a_debounce_timeout_forces_a_run_during_an_endless_burst(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("endless {}", store.name());
    let mut ids = Vec::new();
    // An event every 100 ms for 2.5 s: the period never passes quietly.
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(2500) {
        ids.push(rt.send(Typing { tag: tag.clone() }).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let burst_end = Instant::now();
    wait_all(&rt, &ids).await;
    let ran = starts().lock().unwrap().remove(&tag).unwrap_or_default();
    let during = ran.iter().filter(|&&t| t < burst_end).count();
    assert!(during >= 1, "no run during the burst: {ran:?}");
    // Each run within the timeout of its burst's first event (and some slack).
    assert!(
        ran[0] - began < Duration::from_millis(1500),
        "{:?}",
        ran[0] - began
    );
    rt.shutdown().await.unwrap();
}

// --- batch ----------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/log.line")]
struct LogLine {
    tag: String,
    n: u32,
}

/// Per tag: when each batch ran, with its events' numbers.
type Batches = Mutex<HashMap<String, Vec<(Instant, Vec<u32>)>>>;

fn batches() -> &'static Batches {
    static B: OnceLock<Batches> = OnceLock::new();
    B.get_or_init(Default::default)
}

#[function(trigger = "flow/log.line", batch(max = 100, timeout = "1s"))]
async fn ingest(ctx: Ctx<Batch<LogLine>>) -> fanfare::Result<usize> {
    let lines = ctx.event();
    assert_eq!(lines.ids().len(), lines.len());
    let tag = lines[0].tag.clone();
    let ns = lines.iter().map(|l| l.n).collect();
    batches()
        .lock()
        .unwrap()
        .entry(tag)
        .or_default()
        .push((Instant::now(), ns));
    Ok(lines.len())
}

async fn a_batch_runs_full_batches_and_the_rest_after_its_timeout(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("batch {}", store.name());
    let mut ids = Vec::new();
    let mut last_sent = Instant::now();
    for n in 0..250 {
        if n == 200 {
            last_sent = Instant::now();
        }
        ids.push(
            rt.send(LogLine {
                tag: tag.clone(),
                n,
            })
            .await
            .unwrap(),
        );
    }
    let runs = wait_all(&rt, &ids).await;
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    let mut ran = batches().lock().unwrap().remove(&tag).unwrap();
    ran.sort_by_key(|(_, ns)| ns[0]);
    let sizes: Vec<usize> = ran.iter().map(|(_, ns)| ns.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let all: Vec<u32> = ran.iter().flat_map(|(_, ns)| ns.clone()).collect();
    assert_eq!(
        all,
        (0..250).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        ran[2].0 - last_sent >= Duration::from_millis(900),
        "the last batch ran {:?} after its first event",
        ran[2].0 - last_sent
    );
    // Each run of the batch tells which run executed it; that run returned its size.
    let executed: Vec<_> = runs.iter().filter(|r| r.output.is_some()).collect();
    assert_eq!(executed.len(), 3);
    assert!(runs.iter().filter(|r| r.output.is_none()).all(|r| r
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("ran in the batch of run")));
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/charge")]
struct Charge {
    tag: String,
    n: u32,
}

#[function(trigger = "flow/charge", batch(max = 3, timeout = "5s"))]
async fn settle(ctx: Ctx<Batch<Charge>>) -> fanfare::Result<()> {
    let tag = ctx.event()[0].tag.clone();
    let ids = ctx.event().ids().to_vec();
    let counted = ctx
        .step("count", || async {
            common::hit(format!("{tag} counted"));
            Ok::<_, fanfare::Error>(ids.len())
        })
        .await?;
    assert_eq!(counted, 3);
    batches()
        .lock()
        .unwrap()
        .entry(tag)
        .or_default()
        .push((Instant::now(), ctx.event().iter().map(|c| c.n).collect()));
    if ctx.attempt() == 0 {
        return Err(fanfare::Error::msg("the bank is down"));
    }
    Ok(())
}

async fn a_failed_batch_run_retries_with_the_same_events(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let tag = format!("settle {}", store.name());
    let charges = (0..3).map(|n| Charge {
        tag: tag.clone(),
        n,
    });
    let ids = send_each(&rt, charges).await;
    let runs = wait_all(&rt, &ids).await;
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    let attempts = batches().lock().unwrap().remove(&tag).unwrap();
    assert_eq!(attempts.len(), 2, "one failed attempt, one retry");
    assert_eq!(
        attempts[0].1, attempts[1].1,
        "the retry has the same events"
    );
    assert_eq!(hits(format!("{tag} counted")), 1, "the step ran once");
    assert_eq!(runs.iter().map(|r| r.attempts).max(), Some(2));
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/refund")]
struct Refund {
    tag: String,
    n: u32,
}

#[function(trigger = "flow/refund", retries = 0, batch(max = 2, timeout = "5s"), on_failure = refunds_failed)]
async fn refund_all(_ctx: Ctx<Batch<Refund>>) -> fanfare::Result<()> {
    Err(fanfare::Error::msg("the ledger is closed"))
}

async fn refunds_failed(ctx: Ctx<Failure<Batch<Refund>>>) -> fanfare::Result<()> {
    let failure = ctx.event();
    assert_eq!(failure.error, "the ledger is closed");
    let tag = failure.event[0].tag.clone();
    let ns: Vec<u32> = failure.event.iter().map(|r| r.n).collect();
    assert_eq!(failure.event.ids().len(), 2);
    order().lock().unwrap().insert(tag, ns);
    Ok(())
}

async fn a_batch_that_fails_for_good_fails_its_runs_and_hands_the_batch_to_on_failure(
    store: Store,
) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("refund {}", store.name());
    let refunds = (0..2).map(|n| Refund {
        tag: tag.clone(),
        n,
    });
    let ids = send_each(&rt, refunds).await;
    let runs = wait_all(&rt, &ids).await;
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Failed),
        "{runs:?}"
    );
    assert!(runs
        .iter()
        .all(|r| r.last_error.as_deref() == Some("the ledger is closed")));
    until("the on_failure handler ran", async || {
        order().lock().unwrap().contains_key(&tag)
    })
    .await;
    assert_eq!(order().lock().unwrap().remove(&tag), Some(vec![0, 1]));
    rt.shutdown().await.unwrap();
}

// --- a suspended run holds no slot ---------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "flow/nap")]
struct Nap {
    tag: String,
    n: u32,
}

#[function(trigger = "flow/nap", concurrency = 1)]
async fn napper(ctx: Ctx<Nap>) -> fanfare::Result<()> {
    let e = ctx.event();
    let log = |what: &str| {
        order()
            .lock()
            .unwrap()
            .entry(e.tag.clone())
            .or_default()
            .push(e.n * 10 + if what == "start" { 1 } else { 2 });
    };
    if e.n == 1 {
        // Steps: the run starts again from the top after its sleep.
        ctx.step("start", || async {
            log("start");
            Ok::<_, fanfare::Error>(())
        })
        .await?;
        ctx.sleep("nap", Duration::from_millis(500)).await?;
        ctx.step("end", || async {
            log("end");
            Ok::<_, fanfare::Error>(())
        })
        .await?;
    } else {
        log("start");
        log("end");
    }
    Ok(())
}

async fn a_sleeping_run_holds_no_concurrency_slot(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("nap {}", store.name());
    let first = rt
        .send(Nap {
            tag: tag.clone(),
            n: 1,
        })
        .await
        .unwrap();
    until("the first run sleeps", async || {
        rt.runs(first).await.unwrap()[0].status == RunStatus::Sleeping
    })
    .await;
    let second = rt
        .send(Nap {
            tag: tag.clone(),
            n: 2,
        })
        .await
        .unwrap();
    wait_all(&rt, &[first, second]).await;
    let log = order().lock().unwrap().remove(&tag).unwrap();
    // The second run ran while the first slept (limit 1), then the first ended.
    assert_eq!(log, [11, 21, 22, 12], "{log:?}");
    rt.shutdown().await.unwrap();
}
