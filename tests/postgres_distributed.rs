//! PostgreSQL across processes: two services with different functions on one database,
//! replicas sharing work, a replica killed mid-run, an outage of the database.
//!
//! The services are the `shipping-service` and `billing-service` programs of this package
//! (`services/`), started and killed by the tests; the test process observes through a
//! runtime of its own.

mod common;

use common::services::{log_file, log_lines, observer, Service, BILLING, SHIPPING};
use common::{postgres_ready, postgres_schema, LIMIT};
use fanfare::{ErrorKind, EventId, RunInfo, RunStatus, Runtime};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::timeout;

/// The runs of an event by `app/function`.
fn by_function(runs: &[RunInfo]) -> HashMap<String, RunInfo> {
    runs.iter()
        .map(|r| (format!("{}/{}", r.app, r.function_id), r.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_by_either_service_runs_the_functions_of_both() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    let mut shipping = Service::start(SHIPPING, &url, &log, &[]);
    let mut billing = Service::start(BILLING, &url, &log, &[]);
    let rt = observer(&url).await;

    for id in [shipping.send(1), billing.send(2)] {
        let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
        let runs = by_function(&runs);
        let names: HashSet<&str> = runs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            HashSet::from([
                "shipping/ship",
                "shipping/audit",
                "billing/charge",
                "billing/audit"
            ]),
            "both apps have an `audit`; each runs its own"
        );
        for (name, run) in &runs {
            assert_eq!(run.status, RunStatus::Completed, "{name}");
            assert_eq!(run.attempts, 1, "{name}");
            let pid = if name.starts_with("shipping/") {
                shipping.pid
            } else {
                billing.pid
            };
            assert_eq!(
                run.output,
                Some(serde_json::json!(pid)),
                "{name} ran in its own service"
            );
        }
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_one_service_share_the_runs_without_double_claims() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    let slow = [("FANFARE_SLOW_MS", "5")];
    let a = Service::start(SHIPPING, &url, &log, &slow);
    let b = Service::start(SHIPPING, &url, &log, &slow);
    let rt = observer(&url).await;

    let mut ids = Vec::new();
    for order_id in 0..100 {
        let data = serde_json::json!({ "order_id": order_id });
        ids.push(rt.send_json("shop/order", data).await.unwrap());
    }
    let mut pids = HashSet::new();
    for id in &ids {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        assert_eq!(runs.len(), 2);
        for run in &runs {
            assert_eq!(
                (run.status, run.attempts),
                (RunStatus::Completed, 1),
                "{run:?}"
            );
            pids.insert(run.output.clone().unwrap());
        }
    }
    assert_eq!(
        pids,
        HashSet::from([serde_json::json!(a.pid), serde_json::json!(b.pid)]),
        "both replicas took work"
    );
    // Every run started exactly once.
    let mut starts: HashMap<String, usize> = HashMap::new();
    for line in log_lines(&log) {
        if let Some(rest) = line.strip_prefix("start ") {
            let run = rest.split(' ').nth(1).unwrap().to_owned();
            *starts.entry(run).or_default() += 1;
        }
    }
    assert_eq!(starts.len(), 200);
    assert!(starts.values().all(|&n| n == 1), "a run was started twice");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_runs_are_taken_over_once_its_lease_expires() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    // Replica A takes the runs and hangs in them.
    let mut a = Service::start(
        SHIPPING,
        &url,
        &log,
        &[("FANFARE_SLOW_MS", "600000"), ("FANFARE_LEASE_MS", "1000")],
    );
    let rt = observer(&url).await;
    let mut ids = Vec::new();
    for order_id in 0..3 {
        let data = serde_json::json!({ "order_id": order_id });
        ids.push(rt.send_json("shop/order", data).await.unwrap());
    }
    timeout(LIMIT, async {
        while log_lines(&log).len() < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("replica A never started the runs");
    a.kill_9();

    // Replica B takes them over after A's lease expires.
    let b = Service::start(SHIPPING, &url, &log, &[("FANFARE_LEASE_MS", "1000")]);
    for id in &ids {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        for run in &runs {
            assert_eq!(run.status, RunStatus::Completed, "{run:?}");
            assert_eq!(run.attempts, 2, "the interrupted attempt counts: {run:?}");
            assert_eq!(run.output, Some(serde_json::json!(b.pid)));
        }
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_executes_the_runs_of_its_own_sends_while_it_has_free_slots() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    let mut a = Service::start(SHIPPING, &url, &log, &[]);
    let b = Service::start(SHIPPING, &url, &log, &[]);
    let rt = observer(&url).await;
    // A's sends claim their runs as they store them: B, woken by nothing, takes none.
    let ids: Vec<EventId> = (0..20).map(|order_id| a.send(order_id)).collect();
    for id in &ids {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        assert_eq!(runs.len(), 2);
        for run in &runs {
            assert_eq!(run.status, RunStatus::Completed, "{run:?}");
            assert_eq!(run.attempts, 1, "{run:?}");
            assert_eq!(run.output, Some(serde_json::json!(a.pid)), "{run:?}");
        }
    }
    assert_ne!(a.pid, b.pid);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_claimed_by_a_send_are_taken_over_once_the_killed_senders_lease_expires() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    // Replica A sends, claims the runs of its sends as it stores them, and hangs in them.
    let mut a = Service::start(
        SHIPPING,
        &url,
        &log,
        &[("FANFARE_SLOW_MS", "600000"), ("FANFARE_LEASE_MS", "1000")],
    );
    let ids: Vec<EventId> = (0..3).map(|order_id| a.send(order_id)).collect();
    timeout(LIMIT, async {
        while log_lines(&log).len() < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("replica A never started the runs");
    a.kill_9();

    // Replica B finds them through their expired leases.
    let b = Service::start(SHIPPING, &url, &log, &[("FANFARE_LEASE_MS", "1000")]);
    let rt = observer(&url).await;
    for id in &ids {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        assert_eq!(runs.len(), 2);
        for run in &runs {
            assert_eq!(run.status, RunStatus::Completed, "{run:?}");
            assert_eq!(run.attempts, 2, "the interrupted attempt counts: {run:?}");
            assert_eq!(run.output, Some(serde_json::json!(b.pid)));
        }
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_accepted_before_a_kill_9_runs_after_a_restart() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    let lease = [("FANFARE_LEASE_MS", "1000"), ("FANFARE_SLOW_MS", "20")];
    let mut a = Service::start(SHIPPING, &url, &log, &lease);
    a.command("spam");
    let mut sent: Vec<EventId> = (0..150)
        .map(|_| a.expect("SENT ").parse().unwrap())
        .collect();
    a.kill_9();
    // Lines printed before the kill are accepted events too.
    while let Ok(line) = a.lines.recv_timeout(Duration::from_millis(200)) {
        if let Some(id) = line.strip_prefix("SENT ") {
            sent.push(id.parse().unwrap());
        }
    }
    let _b = Service::start(SHIPPING, &url, &log, &lease);
    let rt = observer(&url).await;
    for id in &sent {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        assert_eq!(runs.len(), 2, "event {id} lost runs");
        assert!(
            runs.iter().all(|r| r.status == RunStatus::Completed),
            "{runs:?}"
        );
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_clearly_when_the_database_is_unreachable() {
    let err = Runtime::builder()
        .postgres("postgres://postgres@127.0.0.1:1/test")
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let msg = err.to_string();
    assert!(
        msg.contains("PostgreSQL 127.0.0.1:1/test: unreachable"),
        "{msg}"
    );

    let err = Runtime::builder()
        .postgres("mysql://nope")
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("invalid PostgreSQL URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_by_a_newer_fanfare_is_refused() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    observer(&url).await.shutdown().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE fanfare_meta SET value = 999 WHERE key = 'schema_version'",
            &[],
        )
        .await
        .unwrap();
    let err = Runtime::builder().postgres(&url).start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let msg = err.to_string();
    assert!(msg.contains("written by a newer fanfare"), "{msg}");
    assert!(msg.contains("schema version is 999"), "{msg}");
}
