//! A crate of its own defining an event and a function, as a billing service would.
//! It depends on `fanfare` and `serde` only.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Sent when an order is placed.
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
    pub cents: u64,
}

static CHARGED_CENTS: AtomicU64 = AtomicU64::new(0);

/// Cents charged by [`charge_card`] so far.
pub fn charged_cents() -> u64 {
    CHARGED_CENTS.load(Ordering::SeqCst)
}

#[fanfare::function(id = "billing-charge", trigger = "order/placed", retries = 2)]
async fn charge_card(ctx: fanfare::Ctx<OrderPlaced>) -> fanfare::Result<()> {
    CHARGED_CENTS.fetch_add(ctx.event().cents, Ordering::SeqCst);
    Ok(())
}

/// A request for the tax on an amount.
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "billing/tax.quote")]
pub struct TaxQuote {
    pub cents: u64,
}

/// The tax on an amount (20 %), for other crates to `ctx.invoke::<billing::tax>`.
#[fanfare::function(id = "billing-tax", trigger = "billing/tax.quote")]
pub async fn tax(ctx: fanfare::Ctx<TaxQuote>) -> fanfare::Result<u64> {
    Ok(ctx.event().cents / 5)
}
