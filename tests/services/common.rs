//! What both test services share: configuration from the environment, a side-effect log,
//! and a stdin command loop driven by the tests.
//!
//! Environment: `FANFARE_URL` (PostgreSQL), `FANFARE_LOG` (a file to append side
//! effects to), `FANFARE_SLOW_MS` (how long each function works, default 0),
//! `FANFARE_LEASE_MS` (lease, default 30 000).
//! Commands on stdin: `send <order id>` prints `SENT <event id>`; `spam` sends orders
//! until killed, printing `SENT <event id>` for each; end of input shuts down.

use shop_events::ShopOrder;
use std::io::{BufRead, Write};
use std::time::Duration;

pub fn slow() -> Duration {
    Duration::from_millis(env_u64("FANFARE_SLOW_MS", 0))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds since the Unix epoch.
#[allow(dead_code)]
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Appends `line` to the side-effect log.
pub fn log(line: String) {
    let path = std::env::var("FANFARE_LOG").expect("FANFARE_LOG");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("cannot open the log");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("cannot write the log");
}

#[allow(dead_code)]
/// One unit of work of a function: logged at start and end, with the process id.
pub async fn work(function: &str, ctx: &fanfare::Ctx<ShopOrder>) -> fanfare::Result<u32> {
    let pid = std::process::id();
    log(format!("start {function} {} {pid}", ctx.run_id()));
    tokio::time::sleep(slow()).await;
    log(format!("end {function} {} {pid}", ctx.run_id()));
    Ok(pid)
}

pub async fn serve(app: &str) -> fanfare::Result<()> {
    let url = std::env::var("FANFARE_URL").expect("FANFARE_URL");
    let rt = fanfare::Runtime::builder()
        .postgres(url)
        .app(app)
        .lease(Duration::from_millis(env_u64("FANFARE_LEASE_MS", 30_000)))
        .start()
        .await?;
    println!("READY {}", std::process::id());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("send"), Some(n)) => {
                let order_id = n.parse().expect("send takes a number");
                let id = rt.send(ShopOrder { order_id }).await?;
                println!("SENT {id}");
            }
            (Some("spam"), _) => {
                for order_id in 0.. {
                    let id = rt.send(ShopOrder { order_id }).await?;
                    println!("SENT {id}");
                    std::io::stdout().flush().ok();
                }
            }
            _ => panic!("unknown command {line:?}"),
        }
        std::io::stdout().flush().ok();
    }
    rt.shutdown().await
}
