//! The billing service of the two-service PostgreSQL example (see README).
//!
//! ```text
//! cargo run --example postgres_billing        # runs until Ctrl-C
//! ```
//!
//! It hosts two functions for `shop/order-placed`, an event type from the shared crate
//! (`fanfare_examples::shop`). It sends nothing: the shipping service does, and this
//! service's functions run all the same. `DATABASE_URL` names the database (default:
//! the local `postgres` database).

use fanfare::{function, Ctx};
use fanfare_examples::shop::OrderPlaced;

#[function(trigger = "shop/order-placed")]
async fn charge_card(ctx: Ctx<OrderPlaced>) -> fanfare::Result<u64> {
    let order = ctx.event();
    println!(
        "billing: charged {} cents for order {}",
        order.cents, order.order_id
    );
    Ok(order.cents)
}

/// The shipping service has an `audit` too: function ids are per app.
#[function(trigger = "shop/order-placed")]
async fn audit(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    println!("billing: audited order {}", ctx.event().order_id);
    Ok(())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let rt = fanfare::Runtime::builder()
        .postgres(url)
        .app("billing")
        .start()
        .await?;
    println!("billing: ready; waiting for orders (Ctrl-C to stop)");
    tokio::signal::ctrl_c().await?;
    rt.shutdown().await
}
