//! A test service: the billing app. Its functions differ from shipping's, and both have
//! one called `audit`.

#[path = "common.rs"]
mod common;

use fanfare::{function, Ctx};
use shop_events::ShopOrder;

#[function(trigger = "shop/order")]
async fn charge(ctx: Ctx<ShopOrder>) -> fanfare::Result<u32> {
    common::work("charge", &ctx).await
}

#[function(trigger = "shop/order")]
async fn audit(ctx: Ctx<ShopOrder>) -> fanfare::Result<u32> {
    common::work("billing-audit", &ctx).await
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    common::serve("billing").await
}
