//! Durability on the embedded SQLite store: an accepted event survives `kill -9`.
//!
//! ```text
//! cargo run --example durable
//! ```
//!
//! The program plays both parts. It starts a copy of itself (the *worker*) on
//! `fanfare-durable-example.db` in the temporary directory, which sends five `order/placed` events and starts
//! working on them, slowly. Once every event is accepted, the first process kills the
//! worker with SIGKILL mid-run, then opens the same database itself: the runs the worker
//! left `running` are re-queued, and every run of every accepted event completes.

use fanfare::{function, Ctx, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "order/placed")]
pub struct OrderPlaced {
    pub order_id: u64,
}

#[function(trigger = "order/placed")]
async fn reserve_stock(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    println!(
        "    [pid {}] reserve stock for order {} (attempt {})",
        std::process::id(),
        ctx.event().order_id,
        ctx.attempt()
    );
    // Long enough for the kill to land in the middle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

#[function(trigger = "order/placed")]
async fn email_receipt(ctx: Ctx<OrderPlaced>) -> fanfare::Result<()> {
    println!(
        "    [pid {}] email receipt for order {} (attempt {})",
        std::process::id(),
        ctx.event().order_id,
        ctx.attempt()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

fn db() -> std::path::PathBuf {
    std::env::temp_dir().join("fanfare-durable-example.db")
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        return worker().await;
    }
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db().display()));
    }

    println!("1. the worker sends five events and starts on them");
    let mut child = Command::new(std::env::current_exe()?)
        .arg("worker")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut accepted = Vec::new();
    let mut started = 0;
    while accepted.len() < 5 || started < 2 {
        let Some(Ok(line)) = lines.next() else { break };
        println!("{line}");
        if let Some(id) = line.trim().strip_prefix("accepted ") {
            accepted.push(
                id.parse::<fanfare::EventId>()
                    .map_err(fanfare::Error::from)?,
            );
        }
        started += line.contains("[pid") as usize;
    }

    println!("2. kill -9 the worker, mid-run");
    child.kill()?;
    child.wait()?;

    println!("3. restart on the same file: interrupted runs are re-queued");
    let rt = Runtime::builder().sqlite(db()).start().await?;
    for id in &accepted {
        let runs = rt.wait(*id).await?;
        for run in &runs {
            println!(
                "  event {id}  {:<14} {:?} after {} attempt(s)",
                run.function_id, run.status, run.attempts
            );
            assert_eq!(run.status, RunStatus::Completed);
        }
    }
    println!("every run of every accepted event completed");
    rt.shutdown().await
}

async fn worker() -> fanfare::Result<()> {
    let rt = Runtime::builder().sqlite(db()).start().await?;
    for order_id in 1..=5 {
        let id = rt.send(OrderPlaced { order_id }).await?;
        // `send` returned: the event and its runs are committed.
        println!("  accepted {id}");
        std::io::stdout().flush()?;
    }
    std::future::pending::<()>().await;
    Ok(())
}
