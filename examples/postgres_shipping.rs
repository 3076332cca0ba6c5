//! The shipping service of the two-service PostgreSQL example (see README).
//!
//! ```text
//! cargo run --example postgres_shipping -- send 42
//! ```
//!
//! It hosts its own functions for `shop/order-placed`, sends one order, and waits until
//! every run of it is finished: its own **and the billing service's**, which runs in
//! another process (start `cargo run --example postgres_billing` first). `DATABASE_URL`
//! names the database (default: the local `postgres` database).

use fanfare::{function, Ctx, RunStatus};
use fanfare_examples::shop::OrderPlaced;
use std::time::Duration;

#[function(trigger = "shop/order-placed")]
async fn ship(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    println!("shipping: label printed for order {}", ctx.event().order_id);
    Ok(())
}

#[function(trigger = "shop/order-placed")]
async fn audit(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    println!("shipping: audited order {}", ctx.event().order_id);
    Ok(())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let order_id: u64 = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [cmd, id] if cmd == "send" => id
            .parse()
            .map_err(|e| fanfare::Error::msg(format!("order id {id:?}: {e}")))?,
        _ => {
            return Err(fanfare::Error::msg(
                "usage: postgres_shipping send <order id>",
            ))
        }
    };
    let rt = fanfare::Runtime::builder()
        .postgres(url)
        .app("shipping")
        .start()
        .await?;
    let id = rt
        .send(OrderPlaced {
            order_id,
            cents: 1999,
        })
        .await?;
    println!("shipping: sent order {order_id} as event {id}");

    let runs = tokio::time::timeout(Duration::from_secs(30), rt.wait(id))
        .await
        .map_err(|_| {
            fanfare::Error::msg("runs still unfinished after 30 s: is postgres_billing running?")
        })??;
    for run in &runs {
        println!("  {:<9} {:<12} {:?}", run.app, run.function_id, run.status);
    }
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    rt.shutdown().await
}
