use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order/paid")]
pub struct OrderPaid {
    pub order_id: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order/refunded")]
pub struct OrderRefunded {
    pub order_id: u64,
}

#[derive(Event, Serialize, Deserialize)]
pub enum Settled {
    #[event(name = "order/paid")]
    Paid(OrderPaid),
    #[event(name = "order/refunded")]
    Refunded(OrderRefunded),
}

#[function(trigger = "order/placed")]
async fn settle(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    let _settled = ctx.wait_for_event::<Settled>("settled").await?;
    Ok(())
}
fn main() {}
