use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "report/requested")]
pub struct ReportRequested {
    pub day: u32,
}

#[function(cron = "0 9 * * MON-FRI")]
async fn morning_report(_ctx: Ctx<ReportRequested>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
