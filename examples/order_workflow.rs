//! A multi-step function in a fan-out, next to plain functions.
//!
//! ```text
//! cargo run --example order_workflow
//! ```
//!
//! One `order/placed` event runs three functions. `fulfil` is a durable workflow: it
//! charges the card in a step, fails once afterwards (the retry does **not** charge
//! again), cools off in a durable sleep (no task held), waits for the payment to settle
//! (the settlement is sent while it sleeps, and it is not missed), and sends
//! `order/shipped` exactly once. `notify_warehouse` and `count_order` are plain
//! functions. On the embedded SQLite store in the temporary directory.

use fanfare::{function, Backoff, Ctx, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
    pub cents: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "payment/settled")]
pub struct PaymentSettled {
    pub order_id: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "order/shipped")]
pub struct OrderShipped {
    pub order_id: u64,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Receipt {
    pub charge: String,
    pub paid: bool,
}

static CHARGES: AtomicU32 = AtomicU32::new(0);

/// Stands for a payment provider's API.
async fn charge_card(order_id: u64, cents: u64) -> Result<String, std::io::Error> {
    CHARGES.fetch_add(1, Ordering::SeqCst);
    Ok(format!("ch_{order_id}_{cents}"))
}

#[function(trigger = "order/placed", retries = 5)]
async fn fulfil(ctx: Ctx<OrderPlaced>) -> fanfare::Result<Receipt> {
    let order = ctx.event();
    let charge = ctx
        .step("charge-card", || charge_card(order.order_id, order.cents))
        .await?;
    // Printed on every replay (after the retry, after the sleep, after the wait); the
    // card itself is charged once.
    println!(
        "  fulfil     attempt {}: charge-card -> {charge}",
        ctx.attempt()
    );
    if ctx.attempt() == 0 {
        // A flaky dependency after the charge: the retry replays the step's result.
        return Err(fanfare::Error::msg("label printer offline"));
    }
    ctx.sleep("cool-off", Duration::from_millis(500)).await?;
    let paid = ctx
        .wait_for_event::<PaymentSettled>("settled")
        .matching("order_id")
        .timeout(Duration::from_secs(30))
        .await?;
    println!("  fulfil     payment settled: {}", paid.is_some());
    ctx.send(
        "shipped",
        OrderShipped {
            order_id: order.order_id,
        },
    )
    .await?;
    Ok(Receipt {
        charge,
        paid: paid.is_some(),
    })
}

#[function(trigger = "order/placed")]
async fn notify_warehouse(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    println!(
        "  warehouse  order {} queued for picking",
        ctx.event().order_id
    );
    Ok(())
}

#[function(trigger = "order/placed")]
async fn count_order(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    println!("  analytics  order {} counted", ctx.event().order_id);
    Ok(())
}

#[function(trigger = "order/shipped")]
async fn email_tracking(ctx: Ctx<OrderShipped>) -> fanfare::Result<()> {
    println!(
        "  email      tracking link for order {}",
        ctx.event().order_id
    );
    Ok(())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    let db = std::env::temp_dir().join("fanfare-order-workflow.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let rt = Runtime::builder()
        .sqlite(&db)
        .backoff(Backoff::exponential(
            Duration::from_millis(50),
            Duration::from_secs(1),
        ))
        .start()
        .await?;

    let id = rt
        .send(OrderPlaced {
            order_id: 7,
            cents: 4999,
        })
        .await?;
    // The payment provider's webhook, while `fulfil` sleeps.
    rt.send(PaymentSettled { order_id: 7 }).await?;

    let runs = rt.wait(id).await?;
    println!("\nruns of order/placed {id}:");
    for run in &runs {
        let steps: Vec<&str> = run.steps.iter().map(|s| s.id.as_str()).collect();
        println!(
            "  {:<17} {:?} after {} attempt(s), steps {:?}",
            run.function_id, run.status, run.attempts, steps
        );
    }
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    assert_eq!(
        CHARGES.load(Ordering::SeqCst),
        1,
        "the card was charged once"
    );
    println!("the card was charged once");
    rt.shutdown().await
}
