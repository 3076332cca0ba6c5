use fanfare::{function, Cron, Ctx};

/// Once per tick, per app: every weekday at 9:00, Paris time.
#[function(cron = "TZ=Europe/Paris 0 9 * * MON-FRI")]
async fn morning_report(ctx: Ctx<Cron>) -> fanfare::Result<()> {
    let _tick: std::time::SystemTime = ctx.event().scheduled_at;
    Ok(())
}

/// Six fields, seconds first; names; retries and an id, as for any function.
#[function(id = "quarterly", cron = "30 0 6 1 JAN,APR,JUL,OCT *", retries = 2)]
async fn quarterly_close(_ctx: Ctx<fanfare::Cron>) -> fanfare::Result<u32> {
    Ok(4)
}

#[function(cron = "@hourly", concurrency = 1)]
async fn hourly(_ctx: Ctx<Cron>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {
    let crons: Vec<_> = fanfare::functions()
        .into_iter()
        .filter_map(|f| f.cron())
        .collect();
    assert_eq!(crons.len(), 3);
    assert!(crons.contains(&"TZ=Europe/Paris 0 9 * * MON-FRI"));
}
