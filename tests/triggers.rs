//! What starts a run: filters, idempotency keys, identified and delayed sends.
//! Conformance: every test runs against every store.

mod common;

use common::{hit, hits, Store, LIMIT};
use fanfare::{function, Ctx, Event, EventId, RunStatus, SendOptions};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::time::timeout;

conformance!(
    a_filter_skips_the_runs_of_events_it_refuses,
    an_idempotency_key_runs_once_per_key,
    an_event_sent_twice_under_one_id_runs_once,
    a_delayed_send_starts_no_run_before_its_time,
);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// --- filter ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "triggers/order.placed")]
struct OrderPlaced {
    tag: String,
    order_id: u64,
    total_cents: u64,
}

#[function(trigger = "triggers/order.placed", filter = |e| e.total_cents > 0)]
async fn invoice(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    hit(format!(
        "{} invoice {}",
        ctx.event().tag,
        ctx.event().order_id
    ));
    Ok(())
}

async fn a_filter_skips_the_runs_of_events_it_refuses(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("filter {}", store.name());
    let order = |order_id, total_cents| OrderPlaced {
        tag: tag.clone(),
        order_id,
        total_cents,
    };
    let paid = rt.send(order(1, 500)).await.unwrap();
    let free = rt.send(order(2, 0)).await.unwrap();
    let runs = |id| {
        let rt = rt.clone();
        async move {
            timeout(LIMIT, rt.wait(id))
                .await
                .expect("runs did not finish")
                .unwrap()
        }
    };
    let ran = runs(paid).await;
    let invoice_run = ran.iter().find(|r| r.function_id == "invoice").unwrap();
    assert_eq!(invoice_run.status, RunStatus::Completed);
    let skipped = runs(free).await;
    let invoice_run = skipped.iter().find(|r| r.function_id == "invoice").unwrap();
    assert_eq!(invoice_run.status, RunStatus::Skipped);
    assert_eq!(invoice_run.attempts, 0);
    assert!(invoice_run
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("filter"));
    assert_eq!(hits(format!("{tag} invoice 1")), 1);
    assert_eq!(hits(format!("{tag} invoice 2")), 0);
    rt.shutdown().await.unwrap();
}

// --- idempotency ----------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "triggers/payment")]
struct Payment {
    tag: String,
    order_id: u64,
}

#[function(trigger = "triggers/payment", idempotency = |e| e.order_id)]
async fn capture(ctx: Ctx<Payment>) -> fanfare::Result<()> {
    hit(format!(
        "{} capture {}",
        ctx.event().tag,
        ctx.event().order_id
    ));
    Ok(())
}

async fn an_idempotency_key_runs_once_per_key(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("idempotency {}", store.name());
    let mut ids = Vec::new();
    for order_id in [1, 2, 1, 1, 2, 3] {
        let payment = Payment {
            tag: tag.clone(),
            order_id,
        };
        ids.push(rt.send(payment).await.unwrap());
    }
    let mut statuses = Vec::new();
    for id in &ids {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        statuses.push(runs[0].status);
    }
    use RunStatus::{Completed as C, Skipped as S};
    assert_eq!(statuses, [C, C, S, S, S, C]);
    let duplicate = &rt.runs(ids[2]).await.unwrap()[0];
    assert!(duplicate
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("`1`"));
    for (order, n) in [(1, 1), (2, 1), (3, 1)] {
        assert_eq!(hits(format!("{tag} capture {order}")), n);
    }
    rt.shutdown().await.unwrap();
}

// --- identified and delayed sends -----------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "triggers/webhook")]
struct Webhook {
    tag: String,
}

fn started() -> &'static std::sync::Mutex<std::collections::HashMap<String, u64>> {
    static S: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, u64>>> =
        std::sync::OnceLock::new();
    S.get_or_init(Default::default)
}

#[function(trigger = "triggers/webhook")]
async fn handle_webhook(ctx: Ctx<Webhook>) -> fanfare::Result<()> {
    hit(format!("{} webhook", ctx.event().tag));
    started()
        .lock()
        .unwrap()
        .insert(ctx.event().tag.clone(), now_ms());
    Ok(())
}

async fn an_event_sent_twice_under_one_id_runs_once(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("identified {}", store.name());
    let id = EventId::from_key(&format!("delivery {tag}"));
    let options = SendOptions::new().id(id);
    let first = rt
        .send_with(Webhook { tag: tag.clone() }, options.clone())
        .await
        .unwrap();
    assert_eq!(first, id);
    timeout(LIMIT, rt.wait(first)).await.unwrap().unwrap();
    let again = rt
        .send_with(Webhook { tag: tag.clone() }, options)
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "the second send answers with the first one's id"
    );
    let runs = timeout(LIMIT, rt.wait(again)).await.unwrap().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].attempts, 1);
    assert_eq!(hits(format!("{tag} webhook")), 1);
    rt.shutdown().await.unwrap();
}

async fn a_delayed_send_starts_no_run_before_its_time(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("delayed {}", store.name());
    let sent = Instant::now();
    let not_before = now_ms() + 800;
    let options = SendOptions::new().delay(Duration::from_millis(800));
    let id = rt
        .send_with(Webhook { tag: tag.clone() }, options)
        .await
        .unwrap();
    let queued = &rt.runs(id).await.unwrap()[0];
    assert_eq!(queued.status, RunStatus::Queued);
    assert!(
        queued.not_before_ms.is_some_and(|t| t + 50 >= not_before),
        "{queued:?}"
    );
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs[0].status, RunStatus::Completed);
    let at = started().lock().unwrap().remove(&tag).unwrap();
    assert!(
        at + 50 >= not_before,
        "started {} ms early",
        not_before - at
    );
    assert!(sent.elapsed() >= Duration::from_millis(750));
    rt.shutdown().await.unwrap();
}
