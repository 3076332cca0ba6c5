//! A failure in one run never takes other work with it: retries, non-retriable errors,
//! explicit delays, panics, undecodable data, and refused events.

//! Conformance: every test runs against every store.

mod common;

use common::{hit, hits, Store, LIMIT};
use fanfare::{function, Backoff, Ctx, Error, ErrorKind, Event, EventId, Failure, RunStatus};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::time::timeout;

conformance!(
    each_run_retries_on_its_own_and_exhausted_runs_are_kept_as_failed,
    a_non_retriable_error_fails_the_run_at_once,
    retry_after_sets_the_delay_of_the_next_attempt,
    retries_wait_for_the_backoff,
    a_panic_fails_only_that_attempt_of_that_run,
    undecodable_data_fails_that_function_only_without_retries,
    a_typed_send_decodes_for_every_view_of_the_event,
    an_event_over_the_size_limit_is_refused_and_runs_nothing,
    send_json_refuses_a_malformed_event_name,
    completed_events_are_pruned_after_the_retention_and_failed_ones_are_kept,
    a_history_larger_than_a_batch_is_pruned_and_every_event_with_a_failed_run_kept,
    the_on_failure_handler_runs_once_with_the_event_and_the_final_error,
);

/// Instants at which each event's attempts started.
static TIMES: Mutex<Option<HashMap<EventId, Vec<Instant>>>> = Mutex::new(None);

fn stamp(id: EventId) {
    TIMES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(id)
        .or_default()
        .push(Instant::now());
}

fn stamps(id: EventId) -> Vec<Instant> {
    TIMES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&id)
        .cloned()
        .unwrap_or_default()
}

// --- retries until success, and until exhaustion --------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/flaky")]
struct Flaky;

#[function(trigger = "test/flaky")]
async fn fails_twice(ctx: Ctx<Flaky>) -> fanfare::Result<()> {
    hit(format!("fails_twice {}", ctx.event_id()));
    if ctx.attempt() < 2 {
        return Err(Error::msg(format!("attempt {} failed", ctx.attempt())));
    }
    Ok(())
}

#[function(trigger = "test/flaky")]
async fn steady(ctx: Ctx<Flaky>) -> fanfare::Result<()> {
    hit(format!("steady {}", ctx.event_id()));
    Ok(())
}

#[function(trigger = "test/flaky", retries = 3)]
async fn always_fails(ctx: Ctx<Flaky>) -> fanfare::Result<()> {
    hit(format!("always_fails {}", ctx.event_id()));
    Err(std::io::Error::other(format!(
        "disk full on attempt {}",
        ctx.attempt()
    )))?;
    Ok(())
}

async fn each_run_retries_on_its_own_and_exhausted_runs_are_kept_as_failed(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Flaky).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    let by = |f: &str| runs.iter().find(|r| r.function_id == f).unwrap().clone();

    let flaky = by("fails_twice");
    assert_eq!(flaky.status, RunStatus::Completed);
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.last_error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(hits(format!("fails_twice {id}")), 3);

    let steady = by("steady");
    assert_eq!((steady.status, steady.attempts), (RunStatus::Completed, 1));
    assert_eq!(hits(format!("steady {id}")), 1);

    let doomed = by("always_fails");
    assert_eq!(doomed.status, RunStatus::Failed);
    assert_eq!(doomed.attempts, 4, "retries = 3 means 4 attempts");
    assert_eq!(doomed.last_error.as_deref(), Some("disk full on attempt 3"));
    assert_eq!(hits(format!("always_fails {id}")), 4);

    // A failed run stays inspectable.
    assert_eq!(rt.runs(id).await.unwrap(), runs);
    rt.shutdown().await.unwrap();
}

// --- non-retriable errors and explicit delays -----------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/fatal")]
struct Fatal;

#[function(trigger = "test/fatal", retries = 10)]
async fn gives_up(ctx: Ctx<Fatal>) -> fanfare::Result<()> {
    hit(format!("gives_up {}", ctx.event_id()));
    Err(Error::non_retriable("account deleted"))
}

async fn a_non_retriable_error_fails_the_run_at_once(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Fatal).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].attempts, 1);
    assert_eq!(runs[0].last_error.as_deref(), Some("account deleted"));
    assert_eq!(hits(format!("gives_up {id}")), 1);
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/later")]
struct Later;

#[function(trigger = "test/later")]
async fn rate_limited(ctx: Ctx<Later>) -> fanfare::Result<()> {
    stamp(ctx.event_id());
    if ctx.attempt() == 0 {
        return Err(Error::retry_after(
            Duration::from_millis(300),
            "429 too many requests",
        ));
    }
    Ok(())
}

async fn retry_after_sets_the_delay_of_the_next_attempt(store: Store) {
    // The backoff alone would retry within 5 ms.
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Later).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 2)
    );
    let times = stamps(id);
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/backoff")]
struct Slow;

#[function(trigger = "test/backoff", retries = 2)]
async fn backs_off(ctx: Ctx<Slow>) -> fanfare::Result<()> {
    stamp(ctx.event_id());
    Err(Error::msg("still down"))
}

async fn retries_wait_for_the_backoff(store: Store) {
    let min = Duration::from_millis(100);
    let rt = store
        .builder()
        .backoff(Backoff::exponential(min, Duration::from_secs(1)))
        .start()
        .await
        .unwrap();
    let id = rt.send(Slow).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!((runs[0].status, runs[0].attempts), (RunStatus::Failed, 3));
    let t = stamps(id);
    // Attempt n waits between half and all of min × 2ⁿ.
    assert!(t[1] - t[0] >= min / 2, "{:?}", t[1] - t[0]);
    assert!(t[2] - t[1] >= min, "{:?}", t[2] - t[1]);
    rt.shutdown().await.unwrap();
}

// --- panics ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/panic")]
struct Boom {
    panics: u32,
}

#[function(trigger = "test/panic")]
async fn panics(ctx: Ctx<Boom>) -> fanfare::Result<()> {
    if ctx.attempt() < ctx.event().panics {
        panic!("boom on attempt {}", ctx.attempt());
    }
    Ok(())
}

#[function(trigger = "test/panic")]
async fn calm(ctx: Ctx<Boom>) -> fanfare::Result<()> {
    hit(format!("calm {}", ctx.event_id()));
    Ok(())
}

async fn a_panic_fails_only_that_attempt_of_that_run(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Boom { panics: 2 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    let panicky = runs.iter().find(|r| r.function_id == "panics").unwrap();
    assert_eq!(
        (panicky.status, panicky.attempts),
        (RunStatus::Completed, 3)
    );
    assert_eq!(
        panicky.last_error.as_deref(),
        Some("the function panicked: boom on attempt 1")
    );
    let calm = runs.iter().find(|r| r.function_id == "calm").unwrap();
    assert_eq!((calm.status, calm.attempts), (RunStatus::Completed, 1));

    // A function that always panics ends failed, and the runtime keeps working.
    let id = rt.send(Boom { panics: 99 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    let panicky = runs.iter().find(|r| r.function_id == "panics").unwrap();
    assert_eq!((panicky.status, panicky.attempts), (RunStatus::Failed, 5));
    assert_eq!(hits(format!("calm {id}")), 1);
    rt.shutdown().await.unwrap();
}

// --- data that does not decode --------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/webhook")]
struct Strict {
    user_id: u64,
}

/// Another view of the same event: only needs `source`, if any.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/webhook")]
struct Lenient {
    #[serde(default)]
    source: Option<String>,
}

static STRICT_SAW: Mutex<Vec<fanfare::EventId>> = Mutex::new(Vec::new());

#[function(trigger = "test/webhook")]
async fn strict(ctx: Ctx<Strict>) -> fanfare::Result<()> {
    STRICT_SAW.lock().unwrap().push(ctx.event_id());
    Ok(())
}

#[function(trigger = "test/webhook")]
async fn lenient(ctx: Ctx<Lenient>) -> fanfare::Result<Option<String>> {
    Ok(ctx.event().source.clone())
}

async fn undecodable_data_fails_that_function_only_without_retries(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let data = serde_json::json!({ "user_id": "not a number", "source": "stripe" });
    let id = rt.send_json("test/webhook", data).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();

    let strict = runs.iter().find(|r| r.function_id == "strict").unwrap();
    assert_eq!((strict.status, strict.attempts), (RunStatus::Failed, 1));
    let error = strict.last_error.as_deref().unwrap();
    assert!(error.contains("function `strict`"), "{error}");
    assert!(error.contains("event `test/webhook`"), "{error}");
    assert!(error.contains(&id.to_string()), "{error}");
    assert!(
        error.contains("invalid type: string \"not a number\", expected u64"),
        "{error}"
    );
    assert!(
        !STRICT_SAW.lock().unwrap().contains(&id),
        "the body never ran"
    );

    let lenient = runs.iter().find(|r| r.function_id == "lenient").unwrap();
    assert_eq!(lenient.status, RunStatus::Completed);
    assert_eq!(lenient.output, Some(serde_json::json!("stripe")));
    rt.shutdown().await.unwrap();
}

async fn a_typed_send_decodes_for_every_view_of_the_event(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Strict { user_id: 5 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    rt.shutdown().await.unwrap();
}

// --- events refused by send -----------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/big")]
struct Big {
    blob: String,
}

#[function(trigger = "test/big")]
async fn big(ctx: Ctx<Big>) -> fanfare::Result<()> {
    hit(format!("big {}", ctx.event_id()));
    Ok(())
}

async fn an_event_over_the_size_limit_is_refused_and_runs_nothing(store: Store) {
    let rt = store.fast().max_event_size(1024).start().await.unwrap();
    let err = rt
        .send(Big {
            blob: "x".repeat(2000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EventTooLarge);
    let msg = err.to_string();
    assert!(msg.contains("event `test/big` is 2011 bytes"), "{msg}");
    assert!(msg.contains("limit of 1024 bytes"), "{msg}");

    let err = rt
        .send_json("test/big", serde_json::json!({ "blob": "y".repeat(5000) }))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EventTooLarge);

    // Just under the limit is fine.
    let id = rt
        .send(Big {
            blob: "x".repeat(1000),
        })
        .await
        .unwrap();
    timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(hits(format!("big {id}")), 1);
    rt.shutdown().await.unwrap();
}

async fn send_json_refuses_a_malformed_event_name(store: Store) {
    let rt = store.fast().start().await.unwrap();
    for name in ["", "user signup", "ünïcode", &"a".repeat(300)] {
        let err = rt.send_json(name, serde_json::json!({})).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEventName, "{name:?}");
        assert!(err.to_string().contains("invalid event name"), "{err}");
    }
    rt.shutdown().await.unwrap();
}

async fn completed_events_are_pruned_after_the_retention_and_failed_ones_are_kept(store: Store) {
    let rt = store
        .fast()
        .retention(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let done = rt.send(Big { blob: "ok".into() }).await.unwrap();
    let failed = rt.send(Fatal).await.unwrap();
    timeout(LIMIT, rt.wait(done)).await.unwrap().unwrap();
    timeout(LIMIT, rt.wait(failed)).await.unwrap().unwrap();
    // Gone once the retention has passed and the store pruned (checked every second at most).
    let err = timeout(LIMIT, async {
        loop {
            match rt.runs(done).await {
                Err(e) => break e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("the completed event was never pruned");
    assert_eq!(err.kind(), ErrorKind::EventNotFound);
    // The failed run is the dead-letter set: kept.
    let runs = rt.runs(failed).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    rt.shutdown().await.unwrap();
}

/// One function completes, the other fails for good: the event is kept for its failure.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/mixed")]
struct Mixed {
    fail: bool,
}

#[function(trigger = "test/mixed")]
async fn mixed_ok(_: Ctx<Mixed>) -> fanfare::Result<()> {
    Ok(())
}

#[function(trigger = "test/mixed")]
async fn mixed_maybe(ctx: Ctx<Mixed>) -> fanfare::Result<()> {
    if ctx.event().fail {
        return Err(Error::non_retriable("declined"));
    }
    Ok(())
}

/// No function subscribes to it.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/unheard")]
struct Unheard;

async fn a_history_larger_than_a_batch_is_pruned_and_every_event_with_a_failed_run_kept(
    store: Store,
) {
    let rt = store
        .fast()
        .retention(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    // 2,500 events whose runs all complete, interleaved with 1 in 100 that has a failed
    // run (kept, with its completed sibling), and 600 without runs: more than two batches
    // of each of the pruner's walks.
    let mut done = Vec::new();
    let mut kept = Vec::new();
    for i in 0..2_500 {
        let fail = i % 100 == 50;
        let id = rt.send(Mixed { fail }).await.unwrap();
        if fail {
            kept.push(id)
        } else {
            done.push(id)
        }
    }
    let mut unheard = Vec::new();
    for _ in 0..600 {
        unheard.push(rt.send(Unheard).await.unwrap());
    }
    // (A completed event may be pruned before the test could wait for it.)
    let gone = |id: EventId| {
        let rt = rt.clone();
        async move {
            match rt.runs(id).await {
                Err(e) if e.kind() == ErrorKind::EventNotFound => true,
                Ok(_) => false,
                Err(e) => panic!("{e}"),
            }
        }
    };
    timeout(LIMIT, async {
        loop {
            let mut all = true;
            for id in done.iter().chain(&unheard) {
                if !gone(*id).await {
                    all = false;
                    break;
                }
            }
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the completed history was never pruned");
    for id in &kept {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        let mut statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
        statuses.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(statuses, [RunStatus::Completed, RunStatus::Failed]);
    }
    rt.shutdown().await.unwrap();
}

// --- on_failure -------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/refundable")]
struct Refundable {
    cents: u64,
    fail: bool,
}

/// What the handler saw: original event id, cents, error, attempts, function id.
type Refund = (EventId, u64, String, u32, String);

static REFUNDS: Mutex<Vec<Refund>> = Mutex::new(Vec::new());

#[function(id = "take-payment", trigger = "test/refundable", retries = 1, on_failure = refund)]
async fn take_payment(ctx: Ctx<Refundable>) -> fanfare::Result<()> {
    if ctx.event().fail {
        return Err(Error::msg(format!(
            "card declined (attempt {})",
            ctx.attempt()
        )));
    }
    Ok(())
}

async fn refund(ctx: Ctx<Failure<Refundable>>) -> fanfare::Result<()> {
    let f = ctx.event();
    REFUNDS.lock().unwrap().push((
        f.event_id,
        f.event.cents,
        f.error.clone(),
        f.attempts,
        f.function_id.clone(),
    ));
    hit(format!("refund {}", f.event_id));
    Ok(())
}

async fn the_on_failure_handler_runs_once_with_the_event_and_the_final_error(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let ok = rt
        .send(Refundable {
            cents: 10,
            fail: false,
        })
        .await
        .unwrap();
    let failed = rt
        .send(Refundable {
            cents: 250,
            fail: true,
        })
        .await
        .unwrap();
    timeout(LIMIT, rt.wait(ok)).await.unwrap().unwrap();
    let runs = timeout(LIMIT, rt.wait(failed)).await.unwrap().unwrap();
    assert_eq!((runs[0].status, runs[0].attempts), (RunStatus::Failed, 2));
    timeout(LIMIT, async {
        while hits(format!("refund {failed}")) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the on_failure handler never ran");
    let refunds: Vec<_> = REFUNDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == failed)
        .cloned()
        .collect();
    assert_eq!(refunds.len(), 1);
    let (_, cents, error, attempts, function) = &refunds[0];
    assert_eq!((*cents, *attempts), (250, 2));
    assert_eq!(error, "card declined (attempt 1)");
    assert_eq!(function, "take-payment");
    assert_eq!(
        hits(format!("refund {ok}")),
        0,
        "a success has no failure handler run"
    );
    let handler = fanfare::functions()
        .into_iter()
        .find(|f| f.id() == "take-payment:on-failure")
        .expect("the handler is registered as a function");
    assert_eq!(handler.fn_name(), "refund");
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn send_json_refuses_fanfares_reserved_names() {
    let rt = fanfare::Runtime::builder().start().await.unwrap();
    let err = rt
        .send_json("fanfare/function-failed", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEventName);
    assert!(err.to_string().contains("reserved"), "{err}");
    rt.shutdown().await.unwrap();
}
