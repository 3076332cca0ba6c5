//! `batch` and `debounce` in their forms compile, keys included.
use fanfare::{function, Batch, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "log/line")]
pub struct LogLine {
    pub source: String,
    pub text: String,
}

#[function(trigger = "log/line", batch(max = 100, timeout = "2s"))]
async fn ingest(ctx: Ctx<Batch<LogLine>>) -> fanfare::Result<usize> {
    Ok(ctx.event().iter().map(|l| l.text.len()).sum())
}

#[function(trigger = "log/line", batch(max = 10, timeout = "500ms", key = |e| e.source), concurrency = 2)]
async fn per_source(ctx: Ctx<fanfare::Batch<LogLine>>) -> fanfare::Result<()> {
    assert_eq!(ctx.event().ids().len(), ctx.event().len());
    Ok(())
}

#[function(trigger = "log/line", debounce(period = "5s", key = |e| e.source, timeout = "1m"))]
async fn summarize(_ctx: Ctx<LogLine>) -> fanfare::Result<()> {
    Ok(())
}

#[function(trigger = "log/line", debounce(period = "100ms"), rate_limit(limit = 1, period = "1h"))]
async fn alert(_ctx: Ctx<LogLine>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {}
