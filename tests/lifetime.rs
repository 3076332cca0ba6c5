//! How runs end early: `cancel_on(…)` cancels a queued, a sleeping, a waiting and a
//! running run when the matching event arrives, and no other run; `timeouts(start,
//! finish)` cancel runs that start too late or run too long. Conformance: every test runs
//! against every store; the last one sends the cancelling event from another process
//! than the one running the function (PostgreSQL).

mod common;

use common::services::{log_file, log_lines, observer, Service, CANCEL};
use common::{
    finished, gate, hit, hits, postgres_ready, postgres_schema, run_of, started, step_ids,
    until_status, Store,
};
use fanfare::{function, Ctx, Error, Event, EventId, RunInfo, RunStatus, SendOptions};
use serde::{Deserialize, Serialize};
use std::time::Duration;

conformance!(
    a_queued_run_is_cancelled_by_its_event_and_only_it,
    a_sleeping_run_is_cancelled_by_its_event,
    a_waiting_run_is_cancelled_by_its_event,
    a_running_run_is_cancelled_by_its_event_at_its_next_step,
    an_event_without_matching_cancels_every_run_and_an_earlier_one_none,
    a_run_not_started_in_time_is_cancelled,
    a_run_not_finished_in_time_is_cancelled,
);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "lt/order.placed")]
struct OrderPlaced {
    order_id: String,
    /// What the run does between its two steps: "sleep", "wait", "gate" or nothing.
    then: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "lt/order.cancelled")]
struct OrderCancelled {
    order_id: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "lt/shop.closed")]
struct ShopClosed {
    shop: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "lt/order.approved")]
struct Approved {
    order_id: String,
}

#[function(
    trigger = "lt/order.placed",
    cancel_on(event = "lt/order.cancelled", matching = "order_id"),
    cancel_on(event = "lt/shop.closed", timeout = "1h")
)]
async fn fulfil(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    let OrderPlaced { order_id, then } = ctx.event();
    ctx.step("reserve", || async {
        hit(format!("{order_id} reserve"));
        Ok::<_, Error>(())
    })
    .await?;
    match then.as_str() {
        "sleep" => ctx.sleep("cool-off", Duration::from_secs(3600)).await?,
        "wait" => {
            ctx.wait_for_event::<Approved>("approval")
                .matching("order_id")
                .timeout(Duration::from_secs(3600))
                .await?;
        }
        "gate" => {
            let g = gate(order_id);
            g.started.notify_one();
            let _permit = g.release.acquire().await;
        }
        _ => {}
    }
    ctx.step("ship", || async {
        hit(format!("{order_id} ship"));
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

fn order(store: Store, what: &str) -> String {
    format!("{what} {} {:08x}", store.name(), fastrand::u32(..))
}

fn placed(order_id: &str, then: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: order_id.to_owned(),
        then: then.to_owned(),
    }
}

/// The run is cancelled by the event `by`.
fn assert_cancelled_by(run: &RunInfo, by: EventId) {
    assert_eq!(run.status, RunStatus::Cancelled, "{run:?}");
    let reason = run.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("cancelled by event `lt/"), "{reason}");
    assert!(reason.contains(&by.to_string()), "{reason}");
}

async fn a_queued_run_is_cancelled_by_its_event_and_only_it(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let (a, b) = (order(store, "queued"), order(store, "queued"));
    let later = || SendOptions::new().delay(Duration::from_secs(3600));
    let run_a = rt.send_with(placed(&a, ""), later()).await.unwrap();
    let run_b = rt.send_with(placed(&b, ""), later()).await.unwrap();
    let cancel = rt
        .send(OrderCancelled {
            order_id: a.clone(),
        })
        .await
        .unwrap();
    // Cancelled before `send` returned.
    assert_cancelled_by(&run_of(&rt, run_a).await, cancel);
    assert_eq!(run_of(&rt, run_b).await.status, RunStatus::Queued);
    assert_eq!(hits(format!("{a} reserve")), 0);
    rt.shutdown().await.unwrap();
}

async fn a_sleeping_run_is_cancelled_by_its_event(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let a = order(store, "sleeping");
    let id = rt.send(placed(&a, "sleep")).await.unwrap();
    until_status(&rt, id, RunStatus::Sleeping).await;
    let cancel = rt
        .send(OrderCancelled {
            order_id: a.clone(),
        })
        .await
        .unwrap();
    let run = finished(&rt, id).await;
    assert_cancelled_by(&run, cancel);
    assert_eq!(step_ids(&run), ["reserve", "cool-off"]);
    assert_eq!(
        (hits(format!("{a} reserve")), hits(format!("{a} ship"))),
        (1, 0)
    );
    rt.shutdown().await.unwrap();
}

async fn a_waiting_run_is_cancelled_by_its_event(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let a = order(store, "waiting");
    let id = rt.send(placed(&a, "wait")).await.unwrap();
    until_status(&rt, id, RunStatus::Waiting).await;
    let cancel = rt
        .send(OrderCancelled {
            order_id: a.clone(),
        })
        .await
        .unwrap();
    let run = finished(&rt, id).await;
    assert_cancelled_by(&run, cancel);
    // The awaited event comes too late: nothing resumes.
    rt.send(Approved {
        order_id: a.clone(),
    })
    .await
    .unwrap();
    assert_eq!(run_of(&rt, id).await.status, RunStatus::Cancelled);
    assert_eq!(hits(format!("{a} ship")), 0);
    rt.shutdown().await.unwrap();
}

async fn a_running_run_is_cancelled_by_its_event_at_its_next_step(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let a = order(store, "running");
    let id = rt.send(placed(&a, "gate")).await.unwrap();
    started(&a).await;
    let cancel = rt
        .send(OrderCancelled {
            order_id: a.clone(),
        })
        .await
        .unwrap();
    // Marked: it goes on until its next step, which does not start.
    assert_eq!(run_of(&rt, id).await.status, RunStatus::Running);
    gate(&a).release.add_permits(1);
    let run = finished(&rt, id).await;
    assert_cancelled_by(&run, cancel);
    assert_eq!(step_ids(&run), ["reserve"]);
    assert_eq!(
        (hits(format!("{a} reserve")), hits(format!("{a} ship"))),
        (1, 0)
    );
    rt.shutdown().await.unwrap();
}

async fn an_event_without_matching_cancels_every_run_and_an_earlier_one_none(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let shop = order(store, "shop");
    // An event sent before a run's own does not cancel it.
    rt.send(ShopClosed { shop: shop.clone() }).await.unwrap();
    let (a, b) = (order(store, "closing"), order(store, "closing"));
    let id_a = rt.send(placed(&a, "sleep")).await.unwrap();
    let id_b = rt.send(placed(&b, "sleep")).await.unwrap();
    until_status(&rt, id_a, RunStatus::Sleeping).await;
    until_status(&rt, id_b, RunStatus::Sleeping).await;
    let closed = rt.send(ShopClosed { shop }).await.unwrap();
    assert_cancelled_by(&finished(&rt, id_a).await, closed);
    assert_cancelled_by(&finished(&rt, id_b).await, closed);
    rt.shutdown().await.unwrap();
}

// --- timeouts ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "lt/export")]
struct Export {
    tag: String,
    /// Hold the only slot until released.
    block: bool,
}

#[function(trigger = "lt/export", concurrency = 1, timeouts(start = "1s"))]
async fn export(ctx: Ctx<Export>) -> fanfare::Result<()> {
    let Export { tag, block } = ctx.event();
    hit(format!("{tag} started"));
    if *block {
        let g = gate(tag);
        g.started.notify_one();
        let _permit = g.release.acquire().await;
    }
    Ok(())
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "lt/report")]
struct Report {
    tag: String,
    /// "sleep" sleeps an hour after a step; "hang" awaits forever outside any step.
    how: String,
}

#[function(trigger = "lt/report", timeouts(finish = "1s"))]
async fn report(ctx: Ctx<Report>) -> fanfare::Result<()> {
    let Report { tag, how } = ctx.event();
    hit(format!("{tag} started"));
    if how == "sleep" {
        ctx.step("prepare", || async { Ok::<_, Error>(()) }).await?;
        ctx.sleep("later", Duration::from_secs(3600)).await?;
    } else {
        std::future::pending::<()>().await;
    }
    hit(format!("{tag} done"));
    Ok(())
}

fn tag(store: Store, what: &str) -> String {
    format!("{what} {} {:08x}", store.name(), fastrand::u32(..))
}

async fn a_run_not_started_in_time_is_cancelled(store: Store) {
    let rt = store.builder().start().await.unwrap();
    // The first run holds the only slot for longer than the second may wait to start.
    let first = Export {
        tag: tag(store, "first"),
        block: true,
    };
    let first_id = rt.send(first.clone()).await.unwrap();
    started(&first.tag).await;
    let second = tag(store, "second");
    let second_id = rt
        .send(Export {
            tag: second.clone(),
            block: false,
        })
        .await
        .unwrap();
    // Time passes: the second run's start timeout, while it waits for the slot.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(run_of(&rt, second_id).await.status, RunStatus::Queued);
    gate(&first.tag).release.add_permits(1);
    assert_eq!(finished(&rt, first_id).await.status, RunStatus::Completed);
    let run = finished(&rt, second_id).await;
    assert_eq!(run.status, RunStatus::Cancelled, "{run:?}");
    assert_eq!(
        run.reason.as_deref(),
        Some("timed out: not started within 1s")
    );
    assert_eq!(hits(format!("{second} started")), 0);
    rt.shutdown().await.unwrap();
}

async fn a_run_not_finished_in_time_is_cancelled(store: Store) {
    let rt = store.builder().start().await.unwrap();
    // A run asleep past its deadline wakes at the deadline and is cancelled then; one
    // hanging outside any step is dropped where it hangs.
    for how in ["sleep", "hang"] {
        let tag = tag(store, how);
        let id = rt
            .send(Report {
                tag: tag.clone(),
                how: how.to_owned(),
            })
            .await
            .unwrap();
        let run = finished(&rt, id).await;
        assert_eq!(run.status, RunStatus::Cancelled, "{run:?}");
        assert_eq!(
            run.reason.as_deref(),
            Some("timed out: not finished within 1s")
        );
        assert_eq!(hits(format!("{tag} started")), 1);
        assert_eq!(hits(format!("{tag} done")), 0);
    }
    rt.shutdown().await.unwrap();
}

// --- across processes --------------------------------------------------------------------

/// The cancel-service's `fulfil_remote` sleeps an hour between its steps; an event sent
/// by another process (the test's observer, another app) cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_event_sent_by_another_process_cancels_a_sleeping_run() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    let _service = Service::start(CANCEL, &url, &log, &[]);
    let rt = observer(&url).await;
    let n = fastrand::u64(..);
    let id = rt
        .send_json("cancel/parcel", serde_json::json!({ "parcel": n }))
        .await
        .unwrap();
    until_status(&rt, id, RunStatus::Sleeping).await;
    let cancel = rt
        .send_json("cancel/parcel.lost", serde_json::json!({ "parcel": n }))
        .await
        .unwrap();
    let run = finished(&rt, id).await;
    assert_eq!(run.status, RunStatus::Cancelled, "{run:?}");
    let reason = run.reason.as_deref().unwrap_or_default();
    assert!(reason.contains(&cancel.to_string()), "{reason}");
    let lines = log_lines(&log);
    assert!(lines.contains(&format!("parcel packed {n}")), "{lines:?}");
    assert!(!lines.contains(&format!("parcel shipped {n}")), "{lines:?}");
    rt.shutdown().await.unwrap();
}
