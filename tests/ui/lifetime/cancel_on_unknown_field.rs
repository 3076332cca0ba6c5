use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
}

#[function(trigger = "order/placed", cancel_on(event = "order/cancelled", matching = "orderid"))]
async fn fulfil(_ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
