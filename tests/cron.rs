//! Cron schedules: a function with `cron = "* * * * * *"` runs once per second — one run
//! per tick — in one process on the embedded stores, and with one or three processes
//! sharing a PostgreSQL database (`services/cron.rs`), one of them killed midway.

mod common;

use common::services::{log_file, log_lines, Service, CRON};
use common::{postgres_ready, postgres_schema, Store};
use fanfare::{function, Cron, Ctx};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (tick, when its run started), unix ms, of this process's runs.
static TICKS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[function(cron = "* * * * * *")]
async fn every_second(ctx: Ctx<Cron>) -> fanfare::Result<()> {
    assert_eq!(ctx.event().schedule, "* * * * * *");
    let tick = ms(ctx.event().scheduled_at);
    TICKS.lock().unwrap().push((tick, ms(SystemTime::now())));
    Ok(())
}

/// Asserts that `ticks` (unix ms) are whole seconds, each once, with none missing
/// between the first and the last, and at least `min` of them.
fn assert_each_second_once(ticks: &[u64], min: usize) {
    let mut sorted = ticks.to_vec();
    sorted.sort_unstable();
    assert!(sorted.len() >= min, "too few ticks: {sorted:?}");
    assert!(sorted.iter().all(|t| t % 1000 == 0), "{sorted:?}");
    for pair in sorted.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "a tick twice or missed: {sorted:?}"
        );
    }
}

/// Memory and SQLite, one after the other (the function is this binary's, so every
/// runtime started here runs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_runs_each_tick_once() {
    for store in [Store::Memory, Store::Sqlite] {
        TICKS.lock().unwrap().clear();
        let started = ms(SystemTime::now());
        let rt = store.builder().start().await.unwrap();
        // Cron is about time: let 4.5 seconds of ticks pass.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        rt.shutdown().await.unwrap();
        let runs = TICKS.lock().unwrap().clone();
        let ticks: Vec<u64> = runs.iter().map(|r| r.0).collect();
        // 4 or 5 ticks pass; the last may still be queued at shutdown.
        assert_each_second_once(&ticks, 3);
        for (tick, ran) in runs {
            assert!(
                tick > started,
                "{}: a tick from before the start ran",
                store.name()
            );
            // Never early; late only by what a loaded machine takes to start a run.
            assert!(
                ran >= tick && ran - tick < 3000,
                "{}: tick {tick} ran at {ran}",
                store.name()
            );
        }
    }
}

/// The logged runs of the cron service: tick → its distinct run ids.
fn logged_ticks(log: &std::path::Path) -> HashMap<u64, Vec<String>> {
    let mut ticks: HashMap<u64, Vec<String>> = HashMap::new();
    for line in log_lines(log) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() == 5 && w[0] == "tick" {
            let runs = ticks.entry(w[1].parse().unwrap()).or_default();
            // An attempt repeated after a crash logs the same run again: still one run.
            if !runs.iter().any(|r| r == w[2]) {
                runs.push(w[2].to_owned());
            }
        }
    }
    ticks
}

/// `n` processes of the cron app on one fresh database, started at the same moment;
/// with `kill_one`, one is killed with SIGKILL after two seconds. Returns the log.
async fn run_services(n: usize, kill_one: bool) -> Option<std::path::PathBuf> {
    if !postgres_ready().await {
        return None;
    }
    let url = postgres_schema();
    let log = log_file();
    let env = [("FANFARE_LEASE_MS", "500")];
    let mut services: Vec<Service> = std::thread::scope(|s| {
        let started: Vec<_> = (0..n)
            .map(|_| s.spawn(|| Service::start(CRON, &url, &log, &env)))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Cron is about time: let the ticks pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if kill_one {
        services[0].kill_9();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(services);
    Some(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_process_runs_each_tick_once() {
    let Some(log) = run_services(1, false).await else {
        return;
    };
    let ticks = logged_ticks(&log);
    for (tick, runs) in &ticks {
        assert_eq!(runs.len(), 1, "tick {tick} ran as {runs:?}");
    }
    assert_each_second_once(&ticks.keys().copied().collect::<Vec<_>>(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_processes_run_each_tick_once() {
    let Some(log) = run_services(3, true).await else {
        return;
    };
    let ticks = logged_ticks(&log);
    for (tick, runs) in &ticks {
        assert_eq!(runs.len(), 1, "tick {tick} ran as {runs:?}");
    }
    assert_each_second_once(&ticks.keys().copied().collect::<Vec<_>>(), 4);
}
