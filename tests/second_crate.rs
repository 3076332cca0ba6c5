//! Functions defined in another crate of the workspace run on events sent here, and a
//! `pub` one can be invoked from here.

use billing::OrderPlaced;
use fanfare::{function, Ctx, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::timeout;

static SHIPPED: AtomicU64 = AtomicU64::new(0);

#[function(trigger = "order/placed")]
async fn ship(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    SHIPPED.fetch_add(ctx.event().order_id, Ordering::SeqCst);
    Ok(())
}

#[test]
fn the_other_crates_function_is_linked() {
    let f = fanfare::functions()
        .into_iter()
        .find(|f| f.id() == "billing-charge")
        .expect("billing's function was dropped by the linker");
    assert_eq!(f.trigger(), "order/placed");
    assert_eq!(f.retries(), 2);
    assert_eq!(f.location().module_path, "billing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_send_runs_functions_of_both_crates() {
    let rt = Runtime::builder().start().await.unwrap();
    let id = rt
        .send(OrderPlaced {
            order_id: 7,
            cents: 1299,
        })
        .await
        .unwrap();
    let runs = timeout(Duration::from_secs(10), rt.wait(id))
        .await
        .unwrap()
        .unwrap();
    let mut fns: Vec<_> = runs.iter().map(|r| r.function_id.as_str()).collect();
    fns.sort();
    assert_eq!(fns, ["billing-charge", "ship"]);
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    assert_eq!(billing::charged_cents(), 1299);
    assert_eq!(SHIPPED.load(Ordering::SeqCst), 7);
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "checkout/started")]
struct Checkout {
    cents: u64,
}

/// Invokes `billing::tax`, a `pub` function of the other crate, as a step.
#[function(trigger = "checkout/started")]
async fn checkout(ctx: Ctx<Checkout>) -> fanfare::Result<u64> {
    let cents = ctx.event().cents;
    let tax: u64 = ctx
        .invoke::<billing::tax>("tax", billing::TaxQuote { cents })
        .await?;
    Ok(cents + tax)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pub_function_of_another_crate_can_be_invoked() {
    let rt = Runtime::builder().start().await.unwrap();
    let id = rt.send(Checkout { cents: 1000 }).await.unwrap();
    let runs = timeout(Duration::from_secs(10), rt.wait(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].output, Some(serde_json::json!(1200)));
    rt.shutdown().await.unwrap();
}
