//! A test service: the crm app, whose functions carry flow control. Each logs
//! `start|end <function> <key> <pid> <unix ms>` around its work.

#[path = "common.rs"]
mod common;

use fanfare::Batch;
use fanfare::{function, Ctx};
use shop_events::{CrmContact, CrmEmail, CrmLine, CrmLogin, CrmNoteEdited, CrmSignup};

async fn work(function: &str, key: u64) -> fanfare::Result<u32> {
    let pid = std::process::id();
    common::log(format!("start {function} {key} {pid} {}", common::now_ms()));
    tokio::time::sleep(common::slow()).await;
    common::log(format!("end {function} {key} {pid} {}", common::now_ms()));
    Ok(pid)
}

#[function(trigger = "crm/contact", concurrency(limit = 1, key = |e| e.customer))]
async fn sync_contact(ctx: Ctx<CrmContact>) -> fanfare::Result<u32> {
    work("sync_contact", ctx.event().customer).await
}

#[function(trigger = "crm/email", throttle(limit = 5, period = "1s"))]
async fn send_email(ctx: Ctx<CrmEmail>) -> fanfare::Result<u32> {
    work("send_email", ctx.event().n).await
}

#[function(trigger = "crm/login", rate_limit(limit = 1, period = "1h", key = |e| e.user))]
async fn notify_login(ctx: Ctx<CrmLogin>) -> fanfare::Result<u32> {
    work("notify_login", ctx.event().user).await
}

/// Once per user, and never for user 0 (a test account).
#[function(trigger = "crm/signup", filter = |e| e.user != 0, idempotency = |e| e.user)]
async fn welcome(ctx: Ctx<CrmSignup>) -> fanfare::Result<u32> {
    work("welcome", ctx.event().user).await
}

/// Once per burst of edits of a note, with the last edit (logged as its number).
// A period well beyond how late a loaded CI machine claims the burst's runs: the period
// counts from when a run is first claimed, and an event whose run is claimed only after
// it has passed starts a burst of its own (README, flow control).
#[function(trigger = "crm/note.edited", debounce(period = "1s", key = |e| e.note))]
async fn index_note(ctx: Ctx<CrmNoteEdited>) -> fanfare::Result<u32> {
    work("index_note", ctx.event().n).await
}

/// Up to 5 lines a run (logged as the run's first line's number, then each line).
#[function(trigger = "crm/line", batch(max = 5, timeout = "10s"))]
async fn ingest_lines(ctx: Ctx<Batch<CrmLine>>) -> fanfare::Result<u32> {
    for line in ctx.event().iter() {
        common::log(format!("line {}", line.n));
    }
    work("ingest_lines", ctx.event().len() as u64).await
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    common::serve("crm").await
}
