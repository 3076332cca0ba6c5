//! Durable steps: memoized across retries, repeated ids, non-determinism detected, durable
//! sleep holding no worker, sends exactly once per run. Conformance: every store.

mod common;

use common::{gate, hit, hits, Store, LIMIT};
use fanfare::{function, Ctx, Error, Event, EventId, RunStatus};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::timeout;

conformance!(
    a_completed_step_is_not_executed_again_when_the_run_retries,
    repeated_step_ids_get_numbered,
    steps_called_in_another_order_fail_the_run_as_non_deterministic,
    a_sleeping_run_holds_no_worker_and_resumes_after_the_step_before,
    a_send_step_sends_once_however_often_the_run_replays,
    wait_for_event_resumes_the_run_with_the_matching_event,
    wait_for_event_times_out_with_none,
    an_event_sent_just_before_the_wait_is_not_missed,
    invoke_returns_the_called_functions_typed_result,
    a_failed_invoked_function_fails_the_step_without_multiplying_retries,
);

// --- memoization ----------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/charge")]
struct Charge {
    cents: u64,
}

#[function(trigger = "steps/charge", retries = 5)]
async fn fulfil(ctx: Ctx<Charge>) -> fanfare::Result<String> {
    let key = ctx.event_id();
    let charge = ctx
        .step("charge-card", || async {
            hit(format!("charged {key}"));
            Ok::<_, Error>(format!("ch_{}", ctx.event().cents))
        })
        .await?;
    if ctx.attempt() < 3 {
        return Err(Error::msg(format!(
            "shipping API down (attempt {})",
            ctx.attempt()
        )));
    }
    Ok(charge)
}

async fn a_completed_step_is_not_executed_again_when_the_run_retries(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Charge { cents: 1299 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 4)
    );
    assert_eq!(runs[0].output, Some(serde_json::json!("ch_1299")));
    assert_eq!(
        hits(format!("charged {id}")),
        1,
        "the card was charged once"
    );
    let steps: Vec<&str> = runs[0].steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(steps, ["charge-card"]);
    assert!(runs[0].steps[0].completed_at_ms >= runs[0].steps[0].started_at_ms);
    rt.shutdown().await.unwrap();
}

// --- repeated ids ---------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/items")]
struct Items {
    n: u32,
}

#[function(trigger = "steps/items", retries = 1)]
async fn each_item(ctx: Ctx<Items>) -> fanfare::Result<Vec<u32>> {
    let mut out = Vec::new();
    for i in 0..ctx.event().n {
        let key = format!("item {} {i}", ctx.event_id());
        out.push(
            ctx.step("item", || async {
                hit(key);
                Ok::<_, Error>(i * 10)
            })
            .await?,
        );
    }
    if ctx.attempt() == 0 {
        return Err(Error::msg("fail once after the loop"));
    }
    Ok(out)
}

async fn repeated_step_ids_get_numbered(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Items { n: 3 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].output, Some(serde_json::json!([0, 10, 20])));
    let steps: Vec<&str> = runs[0].steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(steps, ["item", "item:1", "item:2"]);
    for i in 0..3 {
        assert_eq!(hits(format!("item {id} {i}")), 1);
    }
    rt.shutdown().await.unwrap();
}

// --- non-determinism ------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/fickle")]
struct Fickle;

#[function(trigger = "steps/fickle", retries = 3)]
async fn fickle(ctx: Ctx<Fickle>) -> fanfare::Result<()> {
    // Branches on the attempt: a different first step on the retry.
    let first = if ctx.attempt() == 0 {
        "reserve"
    } else {
        "refund"
    };
    ctx.step(first, || async { Ok::<_, Error>(1) }).await?;
    Err(Error::msg("fail so that the run replays"))
}

async fn steps_called_in_another_order_fail_the_run_as_non_deterministic(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Fickle).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!((runs[0].status, runs[0].attempts), (RunStatus::Failed, 2));
    let error = runs[0].last_error.as_deref().unwrap();
    assert!(error.contains("step #0"), "{error}");
    assert!(
        error.contains("is `refund` now but was `reserve`"),
        "{error}"
    );
    rt.shutdown().await.unwrap();
}

// --- durable sleep ----------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/nap")]
struct Nap {
    millis: u64,
}

#[function(trigger = "steps/nap")]
async fn napper(ctx: Ctx<Nap>) -> fanfare::Result<()> {
    let id = ctx.event_id();
    ctx.step("before", || async {
        hit(format!("before {id}"));
        Ok::<_, Error>(())
    })
    .await?;
    ctx.sleep("nap", Duration::from_millis(ctx.event().millis))
        .await?;
    ctx.step("after", || async {
        hit(format!("after {id}"));
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/quick")]
struct Quick {
    gate: String,
}

#[function(trigger = "steps/quick")]
async fn quick(ctx: Ctx<Quick>) -> fanfare::Result<()> {
    gate(&ctx.event().gate).started.notify_one();
    Ok(())
}

async fn a_sleeping_run_holds_no_worker_and_resumes_after_the_step_before(store: Store) {
    // One worker slot: a sleeping run that kept it would block everything else.
    let rt = store.fast().concurrency(1).start().await.unwrap();
    let long = rt.send(Nap { millis: 3_600_000 }).await.unwrap();
    let short = rt.send(Nap { millis: 300 }).await.unwrap();
    let key = format!("quick {}", store.name());
    rt.send(Quick { gate: key.clone() }).await.unwrap();
    timeout(LIMIT, gate(&key).started.notified())
        .await
        .expect("a sleeping run kept the only worker slot");

    let runs = timeout(LIMIT, rt.wait(short)).await.unwrap().unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 1)
    );
    let steps: Vec<&str> = runs[0].steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(steps, ["before", "nap", "after"]);
    let nap = &runs[0].steps[1];
    let after = &runs[0].steps[2];
    assert!(
        after.started_at_ms >= nap.completed_at_ms + 300,
        "woke early: {runs:?}"
    );
    assert_eq!(
        hits(format!("before {short}")),
        1,
        "the step before the sleep ran once"
    );
    assert_eq!(hits(format!("after {short}")), 1);

    let runs = rt.runs(long).await.unwrap();
    assert_eq!((runs[0].status, runs[0].attempts), (RunStatus::Sleeping, 0));
    assert_eq!(hits(format!("after {long}")), 0);
    rt.shutdown().await.unwrap();
}

// --- send as a step ---------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/parent")]
struct Parent;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/child")]
struct Child {
    parent: EventId,
}

#[function(trigger = "steps/parent", retries = 3)]
async fn parent(ctx: Ctx<Parent>) -> fanfare::Result<String> {
    let sent = ctx
        .send(
            "notify",
            Child {
                parent: ctx.event_id(),
            },
        )
        .await?;
    if ctx.attempt() < 2 {
        return Err(Error::msg("fail after the send"));
    }
    Ok(sent.to_string())
}

#[function(trigger = "steps/child")]
async fn child(ctx: Ctx<Child>) -> fanfare::Result<()> {
    hit(format!("child of {}", ctx.event().parent));
    Ok(())
}

async fn a_send_step_sends_once_however_often_the_run_replays(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt.send(Parent).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 3)
    );
    let sent: EventId = runs[0]
        .output
        .as_ref()
        .unwrap()
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let child_runs = timeout(LIMIT, rt.wait(sent)).await.unwrap().unwrap();
    assert_eq!(child_runs.len(), 1);
    assert_eq!(child_runs[0].status, RunStatus::Completed);
    assert_eq!(hits(format!("child of {id}")), 1, "the event was sent once");
    rt.shutdown().await.unwrap();
}

// --- wait for an event --------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/order")]
struct Order {
    order_id: u64,
    timeout_ms: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/settled")]
struct Settled {
    order_id: u64,
    cents: u64,
}

#[function(trigger = "steps/order")]
async fn await_payment(ctx: Ctx<Order>) -> fanfare::Result<Option<u64>> {
    let id = ctx.event_id();
    ctx.step("reserve", || async {
        hit(format!("reserve {id}"));
        Ok::<_, Error>(())
    })
    .await?;
    let paid = ctx
        .wait_for_event::<Settled>("settled")
        .matching("order_id")
        .timeout(Duration::from_millis(ctx.event().timeout_ms))
        .await?;
    Ok(paid.map(|p| p.cents))
}

/// Order ids unique per test and store, so runs of other tests never match.
fn order_id(store: Store, n: u64) -> u64 {
    n * 10 + store as u64
}

async fn wait_for_event_resumes_the_run_with_the_matching_event(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let order = order_id(store, 1);
    let id = rt
        .send(Order {
            order_id: order,
            timeout_ms: 60_000,
        })
        .await
        .unwrap();
    timeout(LIMIT, async {
        while rt.runs(id).await.unwrap()[0].status != RunStatus::Waiting {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the run never waited");
    // Another order's payment does not count.
    rt.send(Settled {
        order_id: order + 1000,
        cents: 1,
    })
    .await
    .unwrap();
    rt.send(Settled {
        order_id: order,
        cents: 4200,
    })
    .await
    .unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 1)
    );
    assert_eq!(runs[0].output, Some(serde_json::json!(4200)));
    assert_eq!(
        hits(format!("reserve {id}")),
        1,
        "the step before the wait ran once"
    );
    let steps: Vec<&str> = runs[0].steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(steps, ["reserve", "settled"]);
    rt.shutdown().await.unwrap();
}

async fn wait_for_event_times_out_with_none(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt
        .send(Order {
            order_id: order_id(store, 2),
            timeout_ms: 300,
        })
        .await
        .unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].output, None, "timed out: Ok(None)");
    rt.shutdown().await.unwrap();
}

async fn an_event_sent_just_before_the_wait_is_not_missed(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let order = order_id(store, 3);
    // The order is sent first, the payment right after: it may well be stored before the
    // function reaches its wait.
    let id = rt
        .send(Order {
            order_id: order,
            timeout_ms: 60_000,
        })
        .await
        .unwrap();
    rt.send(Settled {
        order_id: order,
        cents: 777,
    })
    .await
    .unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].output, Some(serde_json::json!(777)));
    rt.shutdown().await.unwrap();
}

// --- invoke -------------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/quote")]
struct Quote {
    cents: u64,
    fail: bool,
    key: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "steps/checkout")]
struct Checkout {
    cents: u64,
    fail_tax: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Tax {
    cents: u64,
}

#[function(trigger = "steps/quote", retries = 1)]
async fn tax(ctx: Ctx<Quote>) -> fanfare::Result<Tax> {
    hit(format!("tax {}", ctx.event().key));
    if ctx.event().fail {
        return Err(Error::msg("tax service down"));
    }
    Ok(Tax {
        cents: ctx.event().cents / 5,
    })
}

#[function(trigger = "steps/checkout", retries = 3)]
async fn checkout(ctx: Ctx<Checkout>) -> fanfare::Result<u64> {
    let quote = Quote {
        cents: ctx.event().cents,
        fail: ctx.event().fail_tax,
        key: ctx.event_id().to_string(),
    };
    let tax: Tax = ctx.invoke::<tax>("tax", quote).await?;
    if ctx.attempt() == 0 {
        return Err(Error::msg("fail once after the invocation"));
    }
    Ok(ctx.event().cents + tax.cents)
}

async fn invoke_returns_the_called_functions_typed_result(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt
        .send(Checkout {
            cents: 1000,
            fail_tax: false,
        })
        .await
        .unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 2)
    );
    assert_eq!(runs[0].output, Some(serde_json::json!(1200)));
    assert_eq!(
        hits(format!("tax {id}")),
        1,
        "invoked once although the caller replayed"
    );
    let steps: Vec<&str> = runs[0].steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(steps, ["tax"]);
    rt.shutdown().await.unwrap();
}

async fn a_failed_invoked_function_fails_the_step_without_multiplying_retries(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt
        .send(Checkout {
            cents: 1000,
            fail_tax: true,
        })
        .await
        .unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!((runs[0].status, runs[0].attempts), (RunStatus::Failed, 1));
    let error = runs[0].last_error.as_deref().unwrap();
    assert_eq!(error, "invoked function `tax` failed: tax service down");
    assert_eq!(
        hits(format!("tax {id}")),
        2,
        "the invoked function retried on its own, once"
    );
    rt.shutdown().await.unwrap();
}
