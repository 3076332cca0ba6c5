//! Retention: completed events go after `retention`, events with a failed run (the
//! dead-letter set) after `failed_retention`, on every store.

//! Conformance: every test runs against every store.

mod common;

use common::{until, Store, LIMIT};
use fanfare::{function, Ctx, Error, ErrorKind, Event, EventId, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::time::timeout;

conformance!(
    a_failed_event_outlives_the_retention_and_goes_after_the_failed_retention,
    an_event_with_a_failed_and_a_completed_run_follows_the_failed_rule,
);

/// Completed events go after this.
const RETENTION: Duration = Duration::from_millis(50);
/// Events with a failed run go after this: long enough that a completed event's pruning
/// (up to a second's poll on the memory store) is seen well before it.
const FAILED_RETENTION: Duration = Duration::from_secs(3);

/// Completes.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "retention/done")]
struct Done;

#[function(trigger = "retention/done")]
async fn done(_: Ctx<Done>) -> fanfare::Result<()> {
    Ok(())
}

/// Fails for good.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "retention/fatal")]
struct Fatal;

#[function(trigger = "retention/fatal")]
async fn fatal(_: Ctx<Fatal>) -> fanfare::Result<()> {
    Err(Error::non_retriable("declined"))
}

/// One function completes, the other fails for good.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "retention/mixed")]
struct Mixed;

#[function(trigger = "retention/mixed")]
async fn mixed_ok(_: Ctx<Mixed>) -> fanfare::Result<()> {
    Ok(())
}

#[function(trigger = "retention/mixed")]
async fn mixed_fails(_: Ctx<Mixed>) -> fanfare::Result<()> {
    Err(Error::non_retriable("declined"))
}

async fn start(store: Store) -> Runtime {
    store
        .fast()
        .retention(RETENTION)
        .failed_retention(FAILED_RETENTION)
        .start()
        .await
        .unwrap()
}

/// Whether the store has forgotten the event.
async fn gone(rt: &Runtime, id: EventId) -> bool {
    match rt.runs(id).await {
        Err(e) if e.kind() == ErrorKind::EventNotFound => true,
        Ok(_) => false,
        Err(e) => panic!("{e}"),
    }
}

/// Sends a completing event once `failed` finished, and waits until it is pruned: the
/// retention has passed for `failed` too, and the store pruned since.
async fn prune_past_the_retention(rt: &Runtime, failed: EventId) {
    timeout(LIMIT, rt.wait(failed)).await.unwrap().unwrap();
    let witness = rt.send(Done).await.unwrap();
    timeout(LIMIT, rt.wait(witness)).await.unwrap().unwrap();
    until("the completed event is pruned", async || {
        gone(rt, witness).await
    })
    .await;
}

/// `result`, which a store within the failed retention since `sent` must have.
fn kept<T>(result: fanfare::Result<T>, sent: Instant) -> T {
    result.unwrap_or_else(|e| {
        panic!(
            "{e} ({:?} after the send; the failed retention is {FAILED_RETENTION:?})",
            sent.elapsed()
        )
    })
}

async fn a_failed_event_outlives_the_retention_and_goes_after_the_failed_retention(store: Store) {
    let rt = start(store).await;
    let sent = Instant::now();
    let failed = rt.send(Fatal).await.unwrap();
    prune_past_the_retention(&rt, failed).await;
    // Past the retention, within the failed retention: kept, and found by its run's id.
    let runs = kept(rt.runs(failed).await, sent);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].last_error.as_deref(), Some("declined"));
    let run = kept(rt.run(runs[0].run_id).await, sent);
    assert_eq!(run.status, RunStatus::Failed);
    // Then pruned, with its run, once the failed retention has passed.
    until("the failed event is pruned", async || {
        gone(&rt, failed).await
    })
    .await;
    assert!(sent.elapsed() >= FAILED_RETENTION, "{:?}", sent.elapsed());
    let err = rt.run(runs[0].run_id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RunNotFound);
    rt.shutdown().await.unwrap();
}

async fn an_event_with_a_failed_and_a_completed_run_follows_the_failed_rule(store: Store) {
    let rt = start(store).await;
    let sent = Instant::now();
    let mixed = rt.send(Mixed).await.unwrap();
    prune_past_the_retention(&rt, mixed).await;
    // Its completed run is past the retention, but the event stays for the failed one,
    // with both runs.
    let runs = kept(rt.runs(mixed).await, sent);
    let mut statuses: Vec<(String, RunStatus)> = runs
        .iter()
        .map(|r| (r.function_id.clone(), r.status))
        .collect();
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        statuses,
        [
            ("mixed_fails".to_owned(), RunStatus::Failed),
            ("mixed_ok".to_owned(), RunStatus::Completed),
        ]
    );
    for run in &runs {
        assert_eq!(kept(rt.run(run.run_id).await, sent).status, run.status);
    }
    until("the mixed event is pruned", async || gone(&rt, mixed).await).await;
    assert!(sent.elapsed() >= FAILED_RETENTION, "{:?}", sent.elapsed());
    for run in &runs {
        let err = rt.run(run.run_id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RunNotFound);
    }
    rt.shutdown().await.unwrap();
}
