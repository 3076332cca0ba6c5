use fanfare::{function, Batch, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "log/line")]
pub struct LogLine {
    pub source: String,
}

#[function(trigger = "log/line")]
async fn ingest(_ctx: Ctx<Batch<LogLine>>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
