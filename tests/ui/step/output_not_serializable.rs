use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub cents: u64,
}

/// Not `Serialize`: it cannot be stored as a step's output.
pub struct Charge {
    pub id: String,
}

#[function(trigger = "order/placed")]
async fn fulfil(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    let _charge = ctx
        .step("charge", || async {
            Ok::<_, fanfare::Error>(Charge { id: "ch_1".into() })
        })
        .await?;
    Ok(())
}

fn main() {}
