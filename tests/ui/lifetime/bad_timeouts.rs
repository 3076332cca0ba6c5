use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
}

#[function(trigger = "order/placed", timeouts(start = "10 minutes", finish = "30d"))]
async fn fulfil(_ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    Ok(())
}

#[function(trigger = "order/placed", timeouts())]
async fn ship(_ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
