use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "fanfare/mine")]
pub struct Mine;

#[function(trigger = "fanfare/mine")]
async fn welcome(_ctx: Ctx<Mine>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
