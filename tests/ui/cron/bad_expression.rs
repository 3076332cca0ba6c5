use fanfare::{function, Cron, Ctx};

#[function(cron = "0 25 * * *")]
async fn nightly(_ctx: Ctx<Cron>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
