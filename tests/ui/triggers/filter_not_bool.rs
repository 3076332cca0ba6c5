use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
    pub total_cents: u64,
    pub lines: Vec<String>,
}

#[function(trigger = "order/placed", filter = |e| e.total_cents)]
async fn invoice(_ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
