//! A test service: the shipping app. Its functions differ from billing's, and both have
//! one called `audit`.

#[path = "common.rs"]
mod common;

use fanfare::{function, Ctx};
use shop_events::ShopOrder;

#[function(trigger = "shop/order")]
async fn ship(ctx: Ctx<ShopOrder>) -> fanfare::Result<u32> {
    common::work("ship", &ctx).await
}

#[function(trigger = "shop/order")]
async fn audit(ctx: Ctx<ShopOrder>) -> fanfare::Result<u32> {
    common::work("shipping-audit", &ctx).await
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    common::serve("shipping").await
}
