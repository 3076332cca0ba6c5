use fanfare::{function, Cron, Ctx};

#[function(cron = "0 9 * *")]
async fn morning_report(_ctx: Ctx<Cron>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
