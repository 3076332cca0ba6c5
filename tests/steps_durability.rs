//! Durable steps across processes: a sleep survives a restart, and a process killed
//! between two steps does not redo the first one.

mod common;

use common::{count, log, postgres_ready, postgres_schema, temp_db, LIMIT};
use fanfare::{function, Builder, Ctx, Error, Event, EventId, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::timeout;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "durable-steps/order")]
struct Order {
    log: PathBuf,
    nap_ms: u64,
    /// While this file exists, the second step waits (so a test can kill it there).
    hold: Option<PathBuf>,
}

#[function(trigger = "durable-steps/order", retries = 3)]
async fn order_flow(ctx: Ctx<Order>) -> fanfare::Result<()> {
    let e = ctx.event().clone();
    let id = ctx.event_id();
    ctx.step("charge", || async {
        log(&e.log, format!("charge {id}"));
        Ok::<_, Error>(())
    })
    .await?;
    ctx.sleep("cool-off", Duration::from_millis(e.nap_ms))
        .await?;
    ctx.step("ship", || async {
        log(&e.log, format!("ship-start {id}"));
        while e.hold.as_ref().is_some_and(|hold| hold.exists()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        log(&e.log, format!("ship {id}"));
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

/// A runtime on `open()`'s store, retried while the previous runtime lets go of it.
async fn reopen(open: impl Fn() -> Builder) -> Runtime {
    timeout(LIMIT, async {
        loop {
            match open().start().await {
                Ok(rt) => break rt,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the store never became available again")
}

async fn sleep_survives_a_restart(open: impl Fn() -> Builder) {
    let log_path = temp_db().with_extension("log");
    let rt = open().start().await.unwrap();
    let order = Order {
        log: log_path.clone(),
        nap_ms: 700,
        hold: None,
    };
    let id = rt.send(order).await.unwrap();
    timeout(LIMIT, async {
        while rt.runs(id).await.unwrap()[0].status != RunStatus::Sleeping {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the run never slept");
    rt.shutdown().await.unwrap();
    drop(rt);

    let rt = reopen(&open).await;
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 1)
    );
    assert_eq!(
        count(&log_path, &format!("charge {id}")),
        1,
        "the step before the sleep ran once"
    );
    assert_eq!(count(&log_path, &format!("ship {id}")), 1);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sleep_survives_a_restart() {
    let path = temp_db();
    sleep_survives_a_restart(|| Runtime::builder().sqlite(&path)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sleep_survives_a_restart() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    sleep_survives_a_restart(|| Runtime::builder().postgres(&url).app("steps")).await;
}

/// A builder for a store named as `sqlite:<path>` or `postgres:<url>`, with a short
/// lease so a killed process's runs are taken over quickly.
fn store_builder(store: &str) -> Builder {
    match store.split_once(':') {
        Some(("sqlite", path)) => Runtime::builder().sqlite(path),
        Some(("postgres", url)) => Runtime::builder()
            .postgres(url)
            .app("steps-crash")
            .lease(Duration::from_millis(1000)),
        _ => panic!("unknown store {store:?}"),
    }
}

/// The child of `a_process_killed_between_steps_does_not_redo_the_first`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the tests killed between steps, in a child process"]
async fn steps_child() {
    let store = std::env::var("FANFARE_CHILD_STORE").expect("FANFARE_CHILD_STORE");
    let log_path = PathBuf::from(std::env::var("FANFARE_CHILD_LOG").expect("FANFARE_CHILD_LOG"));
    let hold = PathBuf::from(std::env::var("FANFARE_CHILD_HOLD").expect("FANFARE_CHILD_HOLD"));
    let rt = store_builder(&store).start().await.unwrap();
    let order = Order {
        log: log_path,
        nap_ms: 0,
        hold: Some(hold),
    };
    let id = rt.send(order).await.unwrap();
    println!("SENT {id}");
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}

async fn killed_between_steps(store: String) {
    let log_path = temp_db().with_extension("log");
    let hold = log_path.with_extension("hold");
    std::fs::write(&hold, b"").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "steps_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FANFARE_CHILD_STORE", &store)
        .env("FANFARE_CHILD_LOG", &log_path)
        .env("FANFARE_CHILD_HOLD", &hold)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let id: EventId = loop {
        let line = lines.next().expect("the child stopped").unwrap();
        if let Some((_, id)) = line.split_once("SENT ") {
            break id.parse().unwrap();
        }
    };
    // Kill it inside the second step, after the first completed.
    timeout(LIMIT, async {
        while count(&log_path, &format!("ship-start {id}")) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the child never reached the second step");
    child.kill().unwrap();
    child.wait().unwrap();

    // The restarted process resumes with the first step's stored result.
    std::fs::remove_file(&hold).unwrap();
    let rt = reopen(|| store_builder(&store)).await;
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].attempts, 2, "the interrupted attempt counts");
    assert_eq!(
        count(&log_path, &format!("charge {id}")),
        1,
        "the completed step was redone"
    );
    assert_eq!(
        count(&log_path, &format!("ship-start {id}")),
        2,
        "the interrupted step ran again"
    );
    assert_eq!(count(&log_path, &format!("ship {id}")), 1);
    let steps: Vec<&str> = runs[0].steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(steps, ["charge", "cool-off", "ship"]);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_process_killed_between_steps_does_not_redo_the_first() {
    killed_between_steps(format!("sqlite:{}", temp_db().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_process_killed_between_steps_does_not_redo_the_first() {
    if !postgres_ready().await {
        return;
    }
    killed_between_steps(format!("postgres:{}", postgres_schema())).await;
}
