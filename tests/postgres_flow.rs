//! Flow control across processes on PostgreSQL: replicas of the `crm-service` program
//! (`services/crm.rs`) share one database and, together, respect its functions' keyed
//! concurrency, throttle and rate limit; a replica killed while holding a slot does not
//! block its key past its lease; filters and idempotency keys hold across replicas too.

mod common;

use common::services::{log_file, log_lines, observer, Service, CRM};
use common::{postgres_ready, postgres_schema, LIMIT};
use fanfare::{EventId, RunStatus, Runtime};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::timeout;

/// One logged attempt: (key, pid, start ms, end ms), for a function.
fn attempts(log: &std::path::Path, function: &str) -> Vec<(u64, u32, u128, Option<u128>)> {
    let mut open: HashMap<(u64, u32), Vec<usize>> = HashMap::new();
    let mut all: Vec<(u64, u32, u128, Option<u128>)> = Vec::new();
    for line in log_lines(log) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() != 5 || w[1] != function {
            continue;
        }
        let (key, pid, at) = (
            w[2].parse().unwrap(),
            w[3].parse().unwrap(),
            w[4].parse().unwrap(),
        );
        match w[0] {
            "start" => {
                open.entry((key, pid)).or_default().push(all.len());
                all.push((key, pid, at, None));
            }
            _ => {
                let i = open
                    .get_mut(&(key, pid))
                    .and_then(|v| v.pop())
                    .expect("an end without a start");
                all[i].3 = Some(at);
            }
        }
    }
    all
}

/// Two crm-service replicas (with `env`) on a fresh schema, their side-effect log and an
/// observer runtime; `None` without PostgreSQL.
async fn two_replicas(env: &[(&str, &str)]) -> Option<(PathBuf, [Service; 2], Runtime)> {
    if !postgres_ready().await {
        return None;
    }
    let url = postgres_schema();
    let log = log_file();
    let replicas = [
        Service::start(CRM, &url, &log, env),
        Service::start(CRM, &url, &log, env),
    ];
    let rt = observer(&url).await;
    Some((log, replicas, rt))
}

/// Sends one event named `name` per item of `data`.
async fn send_each(
    rt: &Runtime,
    name: &str,
    data: impl IntoIterator<Item = serde_json::Value>,
) -> Vec<EventId> {
    let mut ids = Vec::new();
    for data in data {
        ids.push(rt.send_json(name, data).await.unwrap());
    }
    ids
}

async fn wait_all(rt: &Runtime, ids: &[EventId]) -> Vec<fanfare::RunInfo> {
    let mut runs = Vec::new();
    for id in ids {
        runs.extend(
            timeout(LIMIT, rt.wait(*id))
                .await
                .expect("runs did not finish")
                .unwrap(),
        );
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_run_one_run_per_key_at_a_time() {
    let Some((log, [a, b], rt)) = two_replicas(&[("FANFARE_SLOW_MS", "20")]).await else {
        return;
    };
    let contacts = (0..40).map(|i| serde_json::json!({ "customer": i % 2 }));
    let ids = send_each(&rt, "crm/contact", contacts).await;
    let runs = wait_all(&rt, &ids).await;
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Completed && r.attempts == 1));
    let done = attempts(&log, "sync_contact");
    assert_eq!(done.len(), 40);
    for (i, x) in done.iter().enumerate() {
        for y in &done[i + 1..] {
            let (xe, ye) = (x.3.unwrap(), y.3.unwrap());
            assert!(
                x.0 != y.0 || xe <= y.2 || ye <= x.2,
                "two runs of key {} at once: {x:?} and {y:?}",
                x.0
            );
        }
    }
    // Both replicas took part.
    for pid in [a.pid, b.pid] {
        assert!(done.iter().any(|x| x.1 == pid), "replica {pid} ran nothing");
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_slot_returns_with_its_lease() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let log = log_file();
    // A hangs in its run, holding key 7's only slot, and is killed.
    let mut a = Service::start(
        CRM,
        &url,
        &log,
        &[("FANFARE_SLOW_MS", "600000"), ("FANFARE_LEASE_MS", "1000")],
    );
    let rt = observer(&url).await;
    let first = rt
        .send_json("crm/contact", serde_json::json!({ "customer": 7 }))
        .await
        .unwrap();
    timeout(LIMIT, async {
        while attempts(&log, "sync_contact").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("A never started the run");
    a.kill_9();
    // B takes the run over once A's lease expires, and the key goes on.
    let b = Service::start(CRM, &url, &log, &[("FANFARE_LEASE_MS", "1000")]);
    let second = rt
        .send_json("crm/contact", serde_json::json!({ "customer": 7 }))
        .await
        .unwrap();
    let runs = wait_all(&rt, &[first, second]).await;
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    assert_eq!(runs[0].attempts, 2, "the killed attempt counts");
    assert_eq!(runs[0].output, Some(serde_json::json!(b.pid)));
    // Key 7 was never run twice at once, the crash included.
    let on_b: Vec<_> = attempts(&log, "sync_contact")
        .into_iter()
        .filter(|x| x.1 == b.pid)
        .collect();
    assert_eq!(on_b.len(), 2);
    assert!(on_b[0].3.unwrap() <= on_b[1].2 || on_b[1].3.unwrap() <= on_b[0].2);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_respect_a_throttle() {
    let Some((log, _replicas, rt)) = two_replicas(&[]).await else {
        return;
    };
    let emails = (0..15).map(|n| serde_json::json!({ "n": n }));
    let ids = send_each(&rt, "crm/email", emails).await;
    let runs = wait_all(&rt, &ids).await;
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    let mut starts: Vec<u128> = attempts(&log, "send_email").iter().map(|x| x.2).collect();
    assert_eq!(starts.len(), 15);
    starts.sort();
    // 5 a second, one per 200 ms, whichever replica starts them.
    assert!(starts[14] - starts[0] >= 2_000, "{starts:?}");
    for w in starts.windows(6) {
        assert!(w[5] - w[0] >= 800, "6 starts within {} ms", w[5] - w[0]);
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_respect_a_rate_limit() {
    let Some((log, _replicas, rt)) = two_replicas(&[]).await else {
        return;
    };
    let logins = (0..10).map(|_| serde_json::json!({ "user": 3 }));
    let ids = send_each(&rt, "crm/login", logins).await;
    let runs = wait_all(&rt, &ids).await;
    let count = |s| runs.iter().filter(|r| r.status == s).count();
    assert_eq!(
        (count(RunStatus::Completed), count(RunStatus::Skipped)),
        (1, 9),
        "{runs:?}"
    );
    assert_eq!(attempts(&log, "notify_login").len(), 1);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_run_once_per_idempotency_key_and_respect_the_filter() {
    let Some((log, _replicas, rt)) = two_replicas(&[]).await else {
        return;
    };
    let signups = (0..6)
        .flat_map(|_| [0, 5, 6])
        .map(|user| serde_json::json!({ "user": user }));
    let ids = send_each(&rt, "crm/signup", signups).await;
    let runs = wait_all(&rt, &ids).await;
    let count = |s| runs.iter().filter(|r| r.status == s).count();
    assert_eq!(count(RunStatus::Completed), 2, "{runs:?}");
    assert_eq!(count(RunStatus::Skipped), 16);
    let welcomed: Vec<u64> = attempts(&log, "welcome").iter().map(|x| x.0).collect();
    assert_eq!(welcomed.len(), 2);
    assert!(
        welcomed.contains(&5) && welcomed.contains(&6),
        "{welcomed:?}"
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_debounce_and_batch() {
    let Some((log, _replicas, rt)) = two_replicas(&[]).await else {
        return;
    };
    // Five quick edits of note 1: one run, with the fifth.
    let edits = (1..=5).map(|n| serde_json::json!({ "note": 1, "n": n }));
    let edits = send_each(&rt, "crm/note.edited", edits).await;
    // Ten lines, batches of five: two runs, every line once.
    let lines = (0..10).map(|n| serde_json::json!({ "n": n }));
    let lines = send_each(&rt, "crm/line", lines).await;
    let runs = wait_all(&rt, &edits).await;
    let ran: Vec<u64> = attempts(&log, "index_note").iter().map(|x| x.0).collect();
    assert_eq!(ran, [5], "{runs:?}");
    assert_eq!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Skipped)
            .count(),
        4
    );
    let runs = wait_all(&rt, &lines).await;
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    let sizes: Vec<u64> = attempts(&log, "ingest_lines").iter().map(|x| x.0).collect();
    assert_eq!(sizes, [5, 5]);
    let mut seen: Vec<u64> = log_lines(&log)
        .iter()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    rt.shutdown().await.unwrap();
}
