use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
    pub customer: String,
}

#[function(
    trigger = "order/placed",
    idempotency = |e| e.order_id,
    cancel_on(event = "order/cancelled", matching = "order_id"),
    cancel_on(event = "customer/deleted", matching = "customer", timeout = "1d"),
    timeouts(start = "10m", finish = "2h"),
)]
async fn fulfil(_ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    Ok(())
}

#[function(trigger = "order/placed", timeouts(finish = "30s"))]
async fn notify(_ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {
    let fulfil = fanfare::functions()
        .into_iter()
        .find(|f| f.id() == "fulfil")
        .unwrap();
    let lifetime = fulfil.lifetime().unwrap();
    assert_eq!(lifetime.cancel_on().len(), 2);
    assert_eq!(lifetime.cancel_on()[1].matching(), Some("customer"));
    assert_eq!(lifetime.start(), Some(std::time::Duration::from_secs(600)));
}
