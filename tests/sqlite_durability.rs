//! The SQLite store keeps its promises across processes: an accepted event survives
//! `kill -9`, interrupted runs are re-queued, failed runs stay, and files that are not
//! fanfare databases are refused untouched.

mod common;

use common::{log, temp_db, LIMIT};
use fanfare::{function, Ctx, Error, ErrorKind, Event, EventId, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::timeout;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "durable/order")]
struct Order {
    n: u64,
    log: PathBuf,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "durable/doomed")]
struct Doomed;

#[function(trigger = "durable/order")]
async fn reserve_stock(ctx: Ctx<Order>) -> fanfare::Result<()> {
    let log_path = &ctx.event().log;
    log(log_path, format!("start reserve {}", ctx.event_id()));
    tokio::time::sleep(Duration::from_millis(30)).await;
    log(log_path, format!("end reserve {}", ctx.event_id()));
    Ok(())
}

#[function(trigger = "durable/order")]
async fn email_receipt(ctx: Ctx<Order>) -> fanfare::Result<()> {
    let log_path = &ctx.event().log;
    log(log_path, format!("start email {}", ctx.event_id()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    log(log_path, format!("end email {}", ctx.event_id()));
    Ok(())
}

#[function(trigger = "durable/doomed", retries = 0)]
async fn doomed(_: Ctx<Doomed>) -> fanfare::Result<()> {
    Err(Error::msg("the card was declined"))
}

/// The child process of `sqlite_survives_kill_9`: sends events and reports each accepted
/// one on stdout until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sqlite_survives_kill_9 in a child process"]
async fn sqlite_child() {
    let db = PathBuf::from(std::env::var("FANFARE_CHILD_DB").expect("FANFARE_CHILD_DB"));
    let log_path = PathBuf::from(std::env::var("FANFARE_CHILD_LOG").expect("FANFARE_CHILD_LOG"));
    let rt = Runtime::builder()
        .sqlite(&db)
        .concurrency(8)
        .start()
        .await
        .unwrap();
    let doomed = rt.send(Doomed).await.unwrap();
    rt.wait(doomed).await.unwrap();
    println!("DOOMED {doomed}");
    for n in 0.. {
        let id = rt
            .send(Order {
                n,
                log: log_path.clone(),
            })
            .await
            .unwrap();
        println!("SENT {id}");
        std::io::stdout().flush().unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_9() {
    let db = temp_db();
    let log_path = db.with_extension("log");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sqlite_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FANFARE_CHILD_DB", &db)
        .env("FANFARE_CHILD_LOG", &log_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // Let it accept events and get runs going, then kill it mid-stream.
    let mut doomed = None;
    let mut sent = Vec::new();
    while sent.len() < 150 {
        let line = lines.next().expect("the child stopped early").unwrap();
        // The harness prints "test sqlite_child ... " before the first line.
        if let Some((_, id)) = line.split_once("DOOMED ") {
            doomed = Some(id.parse::<EventId>().unwrap());
        } else if let Some(id) = line.strip_prefix("SENT ") {
            sent.push(id.parse::<EventId>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines already written before the kill are accepted events too.
    for line in lines.map_while(Result::ok) {
        if let Some(id) = line.strip_prefix("SENT ") {
            sent.push(id.parse().unwrap());
        }
    }
    let before = std::fs::read_to_string(&log_path).unwrap_or_default();
    let interrupted: HashSet<String> = {
        let started: HashSet<_> = before
            .lines()
            .filter_map(|l| l.strip_prefix("start "))
            .collect();
        let ended: HashSet<_> = before
            .lines()
            .filter_map(|l| l.strip_prefix("end "))
            .collect();
        started.difference(&ended).map(|s| s.to_string()).collect()
    };
    assert!(
        !interrupted.is_empty(),
        "the kill should catch runs mid-attempt"
    );

    // Restart on the same file: every accepted event's runs complete.
    let rt = Runtime::builder().sqlite(&db).start().await.unwrap();
    for id in &sent {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        assert_eq!(runs.len(), 2, "event {id} lost runs");
        assert!(
            runs.iter().all(|r| r.status == RunStatus::Completed),
            "{runs:?}"
        );
    }
    let after = std::fs::read_to_string(&log_path).unwrap();
    let ended: HashMap<&str, usize> =
        after
            .lines()
            .filter_map(|l| l.strip_prefix("end "))
            .fold(HashMap::new(), |mut m, l| {
                *m.entry(l).or_default() += 1;
                m
            });
    for id in &sent {
        for f in ["reserve", "email"] {
            assert!(
                ended.contains_key(format!("{f} {id}").as_str()),
                "{f} never finished for {id}"
            );
        }
    }
    // An attempt interrupted by the kill was run again, and counted.
    for run in &interrupted {
        let (f, id) = run.split_once(' ').unwrap();
        let runs = rt.runs(id.parse().unwrap()).await.unwrap();
        let function = if f == "reserve" {
            "reserve_stock"
        } else {
            "email_receipt"
        };
        let r = runs.iter().find(|r| r.function_id == function).unwrap();
        assert!(r.attempts >= 2, "{run}: {r:?}");
    }
    // The run that failed before the crash is still there to inspect.
    let runs = rt.runs(doomed.expect("no DOOMED line")).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].last_error.as_deref(), Some("the card was declined"));
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn sqlite_refuses_a_file_that_is_not_a_database_and_leaves_it_untouched() {
    let path = temp_db();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = Runtime::builder().sqlite(&path).start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let msg = err.to_string();
    assert!(msg.contains("not a SQLite database"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file was modified"
    );
}

#[tokio::test]
async fn sqlite_refuses_another_programs_database_and_leaves_it_untouched() {
    let path = temp_db();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users VALUES (1, 'a@b.c');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Runtime::builder().sqlite(&path).start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let msg = err.to_string();
    assert!(msg.contains("not a fanfare database"), "{msg}");
    assert!(msg.contains("users"), "{msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was modified"
    );
}

#[tokio::test]
async fn sqlite_refuses_a_database_written_by_a_newer_fanfare() {
    let path = temp_db();
    let rt = Runtime::builder().sqlite(&path).start().await.unwrap();
    rt.shutdown().await.unwrap();
    drop(rt);
    common::sqlite_once_released(
        &path,
        "UPDATE fanfare_meta SET value = 999 WHERE key = 'schema_version'",
    )
    .await;
    let err = Runtime::builder().sqlite(&path).start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let msg = err.to_string();
    assert!(msg.contains("written by a newer fanfare"), "{msg}");
    assert!(msg.contains("schema version is 999"), "{msg}");
}

#[tokio::test]
async fn sqlite_refuses_a_second_runtime_on_the_same_file() {
    let path = temp_db();
    let rt = Runtime::builder().sqlite(&path).start().await.unwrap();
    let err = Runtime::builder().sqlite(&path).start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("another process"), "{err}");
    rt.shutdown().await.unwrap();
}

/// A send whose runs the database refuses (here a trigger, as a full disk or a damaged
/// page would) fails with SQLite's reason, alone: the sends that shared its transaction
/// are stored and run, and none of the refused event is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_refused_send_fails_alone_among_concurrent_sends() {
    let path = temp_db();
    let log_path = path.with_extension("log");
    let refused = EventId::from_key("refused order");
    Runtime::builder()
        .sqlite(&path)
        .start()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let hex: String = refused.to_string().chars().filter(|c| *c != '-').collect();
    let trigger = format!(
        "CREATE TRIGGER refuse BEFORE INSERT ON fanfare_runs WHEN NEW.event_id = X'{hex}' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    );
    common::sqlite_once_released(&path, &trigger).await;
    let rt = Runtime::builder().sqlite(&path).start().await.unwrap();
    let sends: Vec<_> = (0..40u64)
        .map(|n| {
            let rt = rt.clone();
            let log = log_path.clone();
            tokio::spawn(async move {
                let order = Order { n, log };
                if n == 20 {
                    rt.send_with(order, fanfare::SendOptions::new().id(refused))
                        .await
                } else {
                    rt.send(order).await
                }
            })
        })
        .collect();
    let mut stored = Vec::new();
    for (n, send) in sends.into_iter().enumerate() {
        match send.await.unwrap() {
            Ok(id) if n != 20 => stored.push(id),
            Err(e) if n == 20 => {
                assert_eq!(e.kind(), ErrorKind::Store, "{e}");
                assert!(e.to_string().contains("refused by the test"), "{e}");
            }
            other => panic!("send {n}: {other:?}"),
        }
    }
    for &id in &stored {
        let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
        assert_eq!(runs.len(), 2);
        assert!(
            runs.iter().all(|r| r.status == RunStatus::Completed),
            "{runs:?}"
        );
    }
    let err = rt.runs(refused).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EventNotFound);
    rt.shutdown().await.unwrap();
}
