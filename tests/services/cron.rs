//! A test service: an app with a function run every second by a cron schedule. Each run
//! logs `tick <scheduled unix ms> <run id> <pid> <unix ms>`.

#[path = "common.rs"]
mod common;

use fanfare::{function, Cron, Ctx};

#[function(cron = "* * * * * *")]
async fn every_second(ctx: Ctx<Cron>) -> fanfare::Result<()> {
    let scheduled = ctx
        .event()
        .scheduled_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    common::log(format!(
        "tick {scheduled} {} {} {}",
        ctx.run_id(),
        std::process::id(),
        common::now_ms()
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    common::serve("cron").await
}
