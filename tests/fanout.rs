//! One `send` runs every subscribed function, each as its own run, in parallel.
//! Conformance: every test runs against every store.

mod common;

use common::{hit, hits, Store, LIMIT};
use fanfare::{function, Ctx, ErrorKind, Event, RunStatus};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Barrier;
use tokio::time::timeout;

conformance!(
    one_send_runs_every_subscribed_function_once,
    an_event_with_twenty_functions_runs_each_once,
    concurrent_senders_find_their_events_stored_and_each_runs_once,
    outputs_are_kept_and_run_ids_are_distinct,
    subscribed_functions_run_in_parallel,
    a_function_that_blocks_its_thread_holds_back_no_other_run,
    ctx_exposes_event_run_and_attempt,
    send_json_runs_typed_functions,
    an_event_without_subscribers_is_accepted_with_zero_runs,
    runs_of_an_unknown_event_is_an_error,
    no_more_runs_execute_at_once_than_the_concurrency_limit,
);

// --- every subscriber runs once -------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/signup")]
struct Signup {
    user_id: u64,
}

#[function(trigger = "test/signup")]
async fn welcome(ctx: Ctx<Signup>) -> fanfare::Result<()> {
    hit(format!("welcome {}", ctx.event_id()));
    Ok(())
}

#[function(id = "crm", trigger = "test/signup", retries = 5)]
async fn crm_sync(ctx: Ctx<Signup>) -> fanfare::Result<()> {
    hit(format!("crm {}", ctx.event_id()));
    Ok(())
}

mod analytics {
    use super::*;

    #[function(trigger = "test/signup")]
    pub async fn count(ctx: Ctx<Signup>) -> fanfare::Result<u64> {
        hit(format!("count {}", ctx.event_id()));
        Ok(ctx.event().user_id * 10)
    }
}

async fn one_send_runs_every_subscribed_function_once(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let mut ids = Vec::new();
    for user_id in 1..=50 {
        ids.push(rt.send(Signup { user_id }).await.unwrap());
    }
    for id in &ids {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        let fns: HashSet<_> = runs.iter().map(|r| r.function_id.as_str()).collect();
        assert_eq!(fns, HashSet::from(["welcome", "crm", "count"]));
        for run in &runs {
            assert_eq!(run.status, RunStatus::Completed);
            assert_eq!(run.attempts, 1);
            assert_eq!(run.event_id, *id);
            assert_eq!(run.last_error, None);
        }
        for f in ["welcome", "crm", "count"] {
            assert_eq!(hits(format!("{f} {id}")), 1, "{f} ran once for {id}");
        }
    }
    rt.shutdown().await.unwrap();
}

// --- more functions than a store writes in one statement ------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/crowd")]
struct Crowd {
    n: u64,
}

/// Twenty functions of `test/crowd`, `crowd_0` to `crowd_19`: more than the SQLite store
/// inserts in one statement (16), so one event's runs take two.
macro_rules! crowd {
    ($($name:ident)*) => {$(
        #[function(trigger = "test/crowd")]
        async fn $name(ctx: Ctx<Crowd>) -> fanfare::Result<u64> {
            hit(format!("{} {}", stringify!($name), ctx.event_id()));
            Ok(ctx.event().n)
        }
    )*};
}

crowd!(crowd_0 crowd_1 crowd_2 crowd_3 crowd_4 crowd_5 crowd_6 crowd_7 crowd_8 crowd_9
    crowd_10 crowd_11 crowd_12 crowd_13 crowd_14 crowd_15 crowd_16 crowd_17 crowd_18 crowd_19);

async fn an_event_with_twenty_functions_runs_each_once(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(rt.send(Crowd { n }).await.unwrap());
    }
    for (n, id) in ids.iter().enumerate() {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        let fns: HashSet<_> = runs.iter().map(|r| r.function_id.clone()).collect();
        let all: HashSet<_> = (0..20).map(|i| format!("crowd_{i}")).collect();
        assert_eq!(fns, all);
        let run_ids: HashSet<_> = runs.iter().map(|r| r.run_id).collect();
        assert_eq!(run_ids.len(), 20, "each run has an id of its own");
        for run in &runs {
            assert_eq!(run.status, RunStatus::Completed);
            assert_eq!(run.event_id, *id);
            assert_eq!(run.output, Some(serde_json::json!(n)));
            assert_eq!(hits(format!("{} {id}", run.function_id)), 1);
        }
    }
    rt.shutdown().await.unwrap();
}

async fn concurrent_senders_find_their_events_stored_and_each_runs_once(store: Store) {
    let rt = store.builder().start().await.unwrap();
    // Senders on both worker threads meet the claims and the records at the store.
    let senders: Vec<_> = (0..8)
        .map(|p| {
            let rt = rt.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..40 {
                    let id = rt
                        .send(Signup {
                            user_id: p * 100 + n,
                        })
                        .await
                        .unwrap();
                    // Stored when `send` returns: every run is there to be seen.
                    let runs = rt.runs(id).await.unwrap();
                    assert_eq!(runs.len(), 3, "{runs:?}");
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for s in senders {
        ids.extend(s.await.unwrap());
    }
    for id in ids {
        let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
        assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
        for f in ["welcome", "crm", "count"] {
            assert_eq!(hits(format!("{f} {id}")), 1, "{f} {id}");
        }
    }
    rt.shutdown().await.unwrap();
}

async fn outputs_are_kept_and_run_ids_are_distinct(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let id = rt.send(Signup { user_id: 7 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    let count = runs.iter().find(|r| r.function_id == "count").unwrap();
    assert_eq!(count.output, Some(serde_json::json!(70)));
    let welcome = runs.iter().find(|r| r.function_id == "welcome").unwrap();
    assert_eq!(welcome.output, None, "`()` is not stored");
    let run_ids: HashSet<_> = runs.iter().map(|r| r.run_id).collect();
    assert_eq!(run_ids.len(), 3);
    rt.shutdown().await.unwrap();
}

// --- runs execute concurrently --------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/rendezvous")]
struct Rendezvous;

/// Three parties; whatever three runs arrive together pass.
fn barrier() -> &'static Barrier {
    static B: OnceLock<Barrier> = OnceLock::new();
    B.get_or_init(|| Barrier::new(3))
}

#[function(trigger = "test/rendezvous")]
async fn meet_a(_: Ctx<Rendezvous>) -> fanfare::Result<()> {
    barrier().wait().await;
    Ok(())
}

#[function(trigger = "test/rendezvous")]
async fn meet_b(_: Ctx<Rendezvous>) -> fanfare::Result<()> {
    barrier().wait().await;
    Ok(())
}

#[function(trigger = "test/rendezvous")]
async fn meet_c(_: Ctx<Rendezvous>) -> fanfare::Result<()> {
    barrier().wait().await;
    Ok(())
}

/// The three functions only finish if all three are running at the same time.
async fn subscribed_functions_run_in_parallel(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let id = rt.send(Rendezvous).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id))
        .await
        .expect("runs did not execute concurrently")
        .unwrap();
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/blocking")]
struct Blocking {
    key: u64,
}

/// The keys of the `Blocking` events whose `left` or `right` run has started.
fn started() -> &'static Mutex<HashSet<(u64, &'static str)>> {
    static S: OnceLock<Mutex<HashSet<(u64, &'static str)>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Marks `me` started, then blocks its thread — never awaiting — until `other` has
/// started too: whether it saw it within 10 s.
fn block_until_started(key: u64, me: &'static str, other: &'static str) -> bool {
    started().lock().unwrap().insert((key, me));
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(10) {
        if started().lock().unwrap().contains(&(key, other)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[function(trigger = "test/blocking")]
async fn left(ctx: Ctx<Blocking>) -> fanfare::Result<bool> {
    Ok(block_until_started(ctx.event().key, "left", "right"))
}

#[function(trigger = "test/blocking")]
async fn right(ctx: Ctx<Blocking>) -> fanfare::Result<bool> {
    Ok(block_until_started(ctx.event().key, "right", "left"))
}

/// Each of the two functions blocks its worker thread until the other has started: both
/// see the other only if neither run waits for the other to start (two worker threads).
async fn a_function_that_blocks_its_thread_holds_back_no_other_run(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let key = store as u64;
    let id = rt.send(Blocking { key }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(
            run.output,
            Some(serde_json::json!(true)),
            "`{}` ran while the other had not started",
            run.function_id
        );
    }
    rt.shutdown().await.unwrap();
}

// --- the context ----------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/ctx")]
struct CtxProbe {
    n: u32,
}

type Seen = (String, String, u32, String);

static CTX_SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

#[function(id = "ctx-probe", trigger = "test/ctx", retries = 2)]
async fn ctx_probe(ctx: Ctx<CtxProbe>) -> fanfare::Result<()> {
    CTX_SEEN.lock().unwrap().push((
        ctx.event_id().to_string(),
        ctx.run_id().to_string(),
        ctx.attempt(),
        ctx.function_id().to_string(),
    ));
    if ctx.attempt() == 0 {
        return Err(fanfare::Error::retry_after(
            Duration::ZERO,
            "first try fails",
        ));
    }
    Ok(())
}

async fn ctx_exposes_event_run_and_attempt(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let id = rt.send(CtxProbe { n: 1 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    let seen: Vec<Seen> = CTX_SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == id.to_string())
        .cloned()
        .collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, runs[0].run_id.to_string());
    assert_eq!(
        seen[0].1, seen[1].1,
        "the run id is the same on every attempt"
    );
    assert_eq!((seen[0].2, seen[1].2), (0, 1));
    assert_eq!(seen[0].3, "ctx-probe");
    rt.shutdown().await.unwrap();
}

// --- send_json, no subscribers, unknown ids -------------------------------------------

async fn send_json_runs_typed_functions(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let id = rt
        .send_json("test/signup", serde_json::json!({ "user_id": 9001 }))
        .await
        .unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    let count = runs.iter().find(|r| r.function_id == "count").unwrap();
    assert_eq!(count.output, Some(serde_json::json!(90010)));
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/nobody-listens")]
struct Unheard;

async fn an_event_without_subscribers_is_accepted_with_zero_runs(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let id = rt.send(Unheard).await.unwrap();
    assert!(rt.runs(id).await.unwrap().is_empty());
    assert!(rt.wait(id).await.unwrap().is_empty());
    rt.shutdown().await.unwrap();
}

async fn runs_of_an_unknown_event_is_an_error(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let other = Store::Memory.builder().start().await.unwrap();
    let id = other.send(Unheard).await.unwrap();
    let err = rt.runs(id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EventNotFound);
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    rt.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

// --- the worker concurrency limit -----------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/limited")]
struct Limited {
    store: String,
}

/// Per store: (running now, most ever running at once).
static RUNNING: Mutex<Vec<(String, AtomicUsize, AtomicUsize)>> = Mutex::new(Vec::new());

/// Adds `delta` to the store's runs running now; returns (running now, most at once).
fn running(store: &str, delta: isize) -> (usize, usize) {
    let mut all = RUNNING.lock().unwrap();
    if !all.iter().any(|(s, ..)| s == store) {
        all.push((store.to_owned(), AtomicUsize::new(0), AtomicUsize::new(0)));
    }
    let (_, now, max) = all.iter().find(|(s, ..)| s == store).unwrap();
    let n = (now.load(Ordering::SeqCst) as isize + delta) as usize;
    now.store(n, Ordering::SeqCst);
    max.fetch_max(n, Ordering::SeqCst);
    (n, max.load(Ordering::SeqCst))
}

/// The limit the test runtime is built with.
const LIMIT_AT_ONCE: usize = 3;

#[function(trigger = "test/limited")]
async fn limited(ctx: Ctx<Limited>) -> fanfare::Result<()> {
    let store = &ctx.event().store;
    running(store, 1);
    // Stays busy until the limit's worth of runs run at once (or a second passed:
    // the last runs may be fewer), so a limit that let more through would be seen
    // however slowly the machine sends and claims.
    let until = Instant::now() + Duration::from_secs(1);
    while running(store, 0).0 < LIMIT_AT_ONCE && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    running(store, -1);
    hit(format!("limited {}", ctx.event().store));
    Ok(())
}

async fn no_more_runs_execute_at_once_than_the_concurrency_limit(store: Store) {
    let rt = store
        .builder()
        .concurrency(LIMIT_AT_ONCE)
        .start()
        .await
        .unwrap();
    // Six senders at once: their sends claim runs as they store them (SQLite,
    // PostgreSQL) while the dispatcher's claims are in flight, and neither may start
    // runs beyond the limit.
    let senders: Vec<_> = (0..6)
        .map(|_| {
            let (rt, store) = (rt.clone(), store.name().to_owned());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..5 {
                    let event = Limited {
                        store: store.clone(),
                    };
                    ids.push(rt.send(event).await.unwrap());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for sender in senders {
        ids.extend(sender.await.unwrap());
    }
    common::all_finished(&rt, ids).await;
    assert_eq!(hits(format!("limited {}", store.name())), 30);
    assert_eq!(
        running(store.name(), 0).1,
        LIMIT_AT_ONCE,
        "most runs at once"
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_concurrency_of_zero_is_refused() {
    let err = fanfare::Runtime::builder()
        .concurrency(0)
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("concurrency must be at least 1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_lease_too_short_to_renew_is_refused() {
    let err = fanfare::Runtime::builder()
        .lease(Duration::from_millis(5))
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("too short to renew"), "{err}");
}

#[tokio::test]
async fn a_send_only_runtime_needs_a_durable_store() {
    let err = fanfare::Runtime::builder()
        .execute(false)
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("needs a durable store"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_only_sqlite_runtime_leaves_runs_for_the_next_process() {
    let path = common::temp_db();
    let sender = fanfare::Runtime::builder()
        .sqlite(&path)
        .execute(false)
        .start()
        .await
        .unwrap();
    let id = sender.send(Signup { user_id: 77 }).await.unwrap();
    let runs = sender.runs(id).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Queued && r.attempts == 0));
    sender.shutdown().await.unwrap();
    drop(sender);

    let worker = timeout(LIMIT, async {
        loop {
            match fanfare::Runtime::builder().sqlite(&path).start().await {
                Ok(rt) => break rt,
                // The sender's writer thread may still hold the file for a moment.
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap();
    let runs = timeout(LIMIT, worker.wait(id)).await.unwrap().unwrap();
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    worker.shutdown().await.unwrap();
}

#[test]
fn every_function_of_this_binary_is_linked() {
    let ids: HashSet<_> = fanfare::functions().iter().map(|f| f.id()).collect();
    for id in ["welcome", "crm", "count", "meet_a", "ctx-probe", "limited"] {
        assert!(ids.contains(id), "{id} missing from {ids:?}");
    }
    let count = fanfare::functions()
        .into_iter()
        .find(|f| f.id() == "count")
        .unwrap();
    assert_eq!(count.trigger(), "test/signup");
    assert_eq!(count.retries(), 4);
    assert_eq!(count.fn_name(), "count");
    assert!(count.location().module_path.ends_with("analytics"));
    assert!(count.location().file.ends_with("fanout.rs"));
}
