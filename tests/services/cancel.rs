//! A test service: the cancel app, whose function is cancelled from another process.
//! It logs `one started|one done|between|two <n>` as it goes, and waits at its hold
//! point (`hold`: "one", inside its first step, or "between", after it) until the test
//! creates the file `<log>.release.<n>`.

#[path = "common.rs"]
mod common;

use fanfare::{function, Ctx, Error, Event};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/remote")]
struct Remote {
    n: u64,
    hold: String,
}

/// Waits until the test releases run `n`, for at most a minute.
async fn held(n: u64) -> fanfare::Result<()> {
    let log = std::env::var("FANFARE_LOG").expect("FANFARE_LOG");
    let file = format!("{log}.release.{n}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(&file).exists() {
        if Instant::now() > deadline {
            return Err(Error::non_retriable(format!("run {n} was never released")));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[function(trigger = "cancel/remote")]
async fn remote(ctx: Ctx<Remote>) -> fanfare::Result<()> {
    let Remote { n, hold } = ctx.event();
    ctx.step("one", || async {
        common::log(format!("one started {n}"));
        if hold == "one" {
            held(*n).await?;
        }
        common::log(format!("one done {n}"));
        Ok::<_, Error>(())
    })
    .await?;
    common::log(format!("between {n}"));
    if hold == "between" {
        held(*n).await?;
    }
    ctx.step("two", || async {
        common::log(format!("two {n}"));
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/parcel")]
struct Parcel {
    parcel: u64,
}

/// Packs, sleeps an hour, ships; a `cancel/parcel.lost` of its parcel cancels it.
#[function(
    trigger = "cancel/parcel",
    cancel_on(event = "cancel/parcel.lost", matching = "parcel")
)]
async fn fulfil_remote(ctx: Ctx<Parcel>) -> fanfare::Result<()> {
    let n = ctx.event().parcel;
    ctx.step("pack", || async {
        common::log(format!("parcel packed {n}"));
        Ok::<_, Error>(())
    })
    .await?;
    ctx.sleep("wait", Duration::from_secs(3600)).await?;
    ctx.step("ship", || async {
        common::log(format!("parcel shipped {n}"));
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    common::serve("cancel-remote").await
}
