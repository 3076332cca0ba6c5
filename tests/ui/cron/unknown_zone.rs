use fanfare::{function, Cron, Ctx};

#[function(cron = "TZ=Europe/Atlantis 0 9 * * MON-FRI")]
async fn morning_report(_ctx: Ctx<Cron>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
