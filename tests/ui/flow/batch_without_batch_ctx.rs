use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "log/line")]
pub struct LogLine {
    pub source: String,
}

#[function(trigger = "log/line", batch(max = 100, timeout = "2s"))]
async fn ingest(_ctx: Ctx<LogLine>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
