use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "log/line")]
pub struct LogLine {
    pub source: String,
}

#[function(trigger = "log/line", debounce(period = "5s", key = |e| e.source, timeout = "1s"))]
async fn reindex(_ctx: Ctx<LogLine>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
