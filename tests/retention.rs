//! Retention: completed events go after `retention`, events with a failed run (the
//! dead-letter set) after `failed_retention`, on every store.

//! Conformance: every test runs against every store.

mod common;

use common::{postgres_ready, postgres_schema, temp_db, until, Store, LIMIT};
use fanfare::{
    function, Ctx, Error, ErrorKind, Event, EventId, RunFilter, RunStatus, Runtime, SendOptions,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::time::timeout;

conformance!(
    a_failed_event_outlives_the_retention_and_goes_after_the_failed_retention,
    an_event_with_a_failed_and_a_completed_run_follows_the_failed_rule,
    an_event_whose_queued_run_was_cancelled_goes_after_the_retention,
);

/// Completed events go after this.
const RETENTION: Duration = Duration::from_millis(50);
/// Events with a failed run go after this: long enough that a completed event's pruning
/// (up to a second's poll on the memory store) is seen well before it.
const FAILED_RETENTION: Duration = Duration::from_secs(3);

/// Completes.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "retention/done")]
struct Done;

#[function(trigger = "retention/done")]
async fn done(_: Ctx<Done>) -> fanfare::Result<()> {
    Ok(())
}

/// Fails for good.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "retention/fatal")]
struct Fatal;

#[function(trigger = "retention/fatal")]
async fn fatal(_: Ctx<Fatal>) -> fanfare::Result<()> {
    Err(Error::non_retriable("declined"))
}

/// One function completes, the other fails for good.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "retention/mixed")]
struct Mixed;

#[function(trigger = "retention/mixed")]
async fn mixed_ok(_: Ctx<Mixed>) -> fanfare::Result<()> {
    Ok(())
}

#[function(trigger = "retention/mixed")]
async fn mixed_fails(_: Ctx<Mixed>) -> fanfare::Result<()> {
    Err(Error::non_retriable("declined"))
}

async fn start(store: Store) -> Runtime {
    store
        .fast()
        .retention(RETENTION)
        .failed_retention(FAILED_RETENTION)
        .start()
        .await
        .unwrap()
}

/// Whether the store has forgotten the event.
async fn gone(rt: &Runtime, id: EventId) -> bool {
    match rt.runs(id).await {
        Err(e) if e.kind() == ErrorKind::EventNotFound => true,
        Ok(_) => false,
        Err(e) => panic!("{e}"),
    }
}

/// Sends a completing event once `failed` finished, and waits until it is pruned: the
/// retention has passed for `failed` too, and the store pruned since.
async fn prune_past_the_retention(rt: &Runtime, failed: EventId) {
    timeout(LIMIT, rt.wait(failed)).await.unwrap().unwrap();
    let witness = rt.send(Done).await.unwrap();
    timeout(LIMIT, rt.wait(witness)).await.unwrap().unwrap();
    until("the completed event is pruned", async || {
        gone(rt, witness).await
    })
    .await;
}

/// `result`, which a store within the failed retention since `sent` must have.
fn kept<T>(result: fanfare::Result<T>, sent: Instant) -> T {
    result.unwrap_or_else(|e| {
        panic!(
            "{e} ({:?} after the send; the failed retention is {FAILED_RETENTION:?})",
            sent.elapsed()
        )
    })
}

async fn a_failed_event_outlives_the_retention_and_goes_after_the_failed_retention(store: Store) {
    let rt = start(store).await;
    let sent = Instant::now();
    let failed = rt.send(Fatal).await.unwrap();
    prune_past_the_retention(&rt, failed).await;
    // Past the retention, within the failed retention: kept, and found by its run's id.
    let runs = kept(rt.runs(failed).await, sent);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].last_error.as_deref(), Some("declined"));
    let run = kept(rt.run(runs[0].run_id).await, sent);
    assert_eq!(run.status, RunStatus::Failed);
    // Then pruned, with its run, once the failed retention has passed.
    until("the failed event is pruned", async || {
        gone(&rt, failed).await
    })
    .await;
    assert!(sent.elapsed() >= FAILED_RETENTION, "{:?}", sent.elapsed());
    let err = rt.run(runs[0].run_id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RunNotFound);
    rt.shutdown().await.unwrap();
}

/// A run cancelled before it ran (a delayed one) finishes there: its event goes after the
/// retention, as a completed one's, and another event's delayed run is still kept.
async fn an_event_whose_queued_run_was_cancelled_goes_after_the_retention(store: Store) {
    let rt = start(store).await;
    let later = || SendOptions::new().delay(Duration::from_secs(3600));
    let cancelled = rt.send_with(Done, later()).await.unwrap();
    let waiting = rt.send_with(Done, later()).await.unwrap();
    let run = rt.runs(cancelled).await.unwrap()[0].run_id;
    assert_eq!(rt.cancel(run).await.unwrap(), RunStatus::Cancelled);
    until("the cancelled run's event is pruned", async || {
        gone(&rt, cancelled).await
    })
    .await;
    let err = rt.run(run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RunNotFound);
    let runs = rt.runs(waiting).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Queued);
    rt.shutdown().await.unwrap();
}

async fn an_event_with_a_failed_and_a_completed_run_follows_the_failed_rule(store: Store) {
    let rt = start(store).await;
    let sent = Instant::now();
    let mixed = rt.send(Mixed).await.unwrap();
    prune_past_the_retention(&rt, mixed).await;
    // Its completed run is past the retention, but the event stays for the failed one,
    // with both runs.
    let runs = kept(rt.runs(mixed).await, sent);
    let mut statuses: Vec<(String, RunStatus)> = runs
        .iter()
        .map(|r| (r.function_id.clone(), r.status))
        .collect();
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        statuses,
        [
            ("mixed_fails".to_owned(), RunStatus::Failed),
            ("mixed_ok".to_owned(), RunStatus::Completed),
        ]
    );
    for run in &runs {
        assert_eq!(kept(rt.run(run.run_id).await, sent).status, run.status);
    }
    until("the mixed event is pruned", async || gone(&rt, mixed).await).await;
    assert!(sent.elapsed() >= FAILED_RETENTION, "{:?}", sent.elapsed());
    for run in &runs {
        let err = rt.run(run.run_id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RunNotFound);
    }
    rt.shutdown().await.unwrap();
}

// --- upgrades ------------------------------------------------------------------------------

/// The schema versions before failed runs had an index of their own (SQLite migration 7,
/// PostgreSQL migration 8): a database left there by an older fanfare.
const SQLITE_BEFORE: i64 = 6;
const POSTGRES_BEFORE: i64 = 7;

/// Takes a database back to before the failed retention, as an older fanfare left it:
/// without that migration's index, and without what the migrations after it added
/// (`later`).
fn downgrade(before: i64, later: &str) -> String {
    format!(
        "DROP INDEX IF EXISTS fanfare_runs_failed; \
         DROP INDEX IF EXISTS fanfare_runs_function; \
         DROP INDEX IF EXISTS fanfare_runs_failed_runs; \
         DROP INDEX IF EXISTS fanfare_runs_held_runs; \
         DROP INDEX IF EXISTS fanfare_runs_cancelled_runs; \
         DROP INDEX IF EXISTS fanfare_runs_sleeping; \
         DROP INDEX IF EXISTS fanfare_runs_waiting_runs; \
         DROP INDEX IF EXISTS fanfare_runs_skipped; \
         ALTER TABLE fanfare_runs DROP COLUMN replay_of; \
         ALTER TABLE fanfare_events DROP COLUMN traceparent; \
         DROP TABLE fanfare_attempts; {later} \
         UPDATE fanfare_meta SET value = {before} WHERE key = 'schema_version'"
    )
}

/// Takes a SQLite database back to before run positions (migration 11), as an older
/// fanfare left it: runs numbered from 1, indexes by run id and by event on every run,
/// no positions in the events' rows.
const BEFORE_POSITIONS: &str = "DROP INDEX fanfare_runs_event; DROP INDEX fanfare_runs_run_id; \
    ALTER TABLE fanfare_events DROP COLUMN first_run; ALTER TABLE fanfare_events DROP COLUMN runs; \
    UPDATE fanfare_runs SET id = (SELECT count(*) FROM fanfare_runs r WHERE r.id <= fanfare_runs.id); \
    CREATE INDEX fanfare_runs_event ON fanfare_runs (event_id); \
    CREATE INDEX fanfare_runs_run_id ON fanfare_runs (run_id);";

/// Sends an event that fails, on a runtime that keeps it (the default failed retention).
async fn store_a_failure(builder: fanfare::Builder) -> EventId {
    let rt = builder.start().await.unwrap();
    let failed = rt.send(Fatal).await.unwrap();
    timeout(LIMIT, rt.wait(failed)).await.unwrap().unwrap();
    rt.shutdown().await.unwrap();
    failed
}

/// Starts on the upgraded database; its failed run goes after the failed retention.
async fn prunes_after_the_upgrade(builder: fanfare::Builder, failed: EventId) {
    let rt = builder
        .retention(RETENTION)
        .failed_retention(RETENTION * 2)
        .start()
        .await
        .unwrap();
    until("the failed event is pruned", async || {
        gone(&rt, failed).await
    })
    .await;
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrades_a_database_from_before_the_failed_retention() {
    let path = temp_db();
    let failed = store_a_failure(fanfare::Runtime::builder().sqlite(&path)).await;
    let before = format!("{BEFORE_POSITIONS} {}", downgrade(SQLITE_BEFORE, ""));
    common::sqlite_once_released(&path, &before).await;
    prunes_after_the_upgrade(fanfare::Runtime::builder().sqlite(&path), failed).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let index: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'fanfare_runs_failed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1);
    let version: i64 = conn
        .query_row(
            "SELECT value FROM fanfare_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(version > SQLITE_BEFORE, "{version}");
}

/// Runs stored before positions are found as before, by id, by event and in lists
/// (merged in run id order with runs stored after, page by page), replayed, and pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_serving_runs_stored_before_positions() {
    let path = temp_db();
    let rt = Runtime::builder().sqlite(&path).start().await.unwrap();
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(rt.send(Mixed).await.unwrap());
    }
    let old_done = rt.send(Done).await.unwrap();
    common::all_finished(&rt, old.iter().copied().chain([old_done])).await;
    rt.shutdown().await.unwrap();
    drop(rt);
    let sql = format!(
        "BEGIN; {BEFORE_POSITIONS} \
         UPDATE fanfare_meta SET value = 10 WHERE key = 'schema_version'; COMMIT;"
    );
    common::sqlite_once_released(&path, &sql).await;
    let legacy_ids: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT max(id) FROM fanfare_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(legacy_ids, 7, "runs numbered as an older fanfare did");

    let rt = Runtime::builder()
        .sqlite(&path)
        .retention(RETENTION)
        .failed_retention(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let mut new = Vec::new();
    for _ in 0..2 {
        new.push(rt.send(Mixed).await.unwrap());
    }
    common::all_finished(&rt, new.iter().copied()).await;
    until("the completed event stored before is pruned", async || {
        gone(&rt, old_done).await
    })
    .await;
    let mut all = Vec::new();
    for &event in old.iter().chain(&new) {
        let runs = rt.runs(event).await.unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        for run in runs {
            assert_eq!(run.event_id, event);
            let found = rt.run(run.run_id).await.unwrap();
            assert_eq!((found.run_id, found.status), (run.run_id, run.status));
            all.push(run.run_id);
        }
    }
    all.sort();
    all.reverse();
    // Every run, newest first by run id, two a page.
    let mut listed = Vec::new();
    let mut filter = RunFilter::new().limit(2);
    loop {
        let page = rt.list_runs(&filter).await.unwrap();
        listed.extend(page.runs.iter().map(|r| r.run_id));
        match page.next {
            Some(next) => filter = filter.after(next),
            None => break,
        }
    }
    assert_eq!(listed, all);
    let failed = rt
        .list_runs(&RunFilter::new().status(RunStatus::Failed))
        .await
        .unwrap();
    assert_eq!(failed.runs.len(), 5);
    // A run stored before, replayed: a run of its event.
    let old_failed = rt
        .runs(old[0])
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.status == RunStatus::Failed)
        .unwrap();
    let replayed = rt.replay(old_failed.run_id).await.unwrap();
    until("the replayed run finishes", async || {
        rt.run(replayed).await.unwrap().status == RunStatus::Failed
    })
    .await;
    let runs = rt.runs(old[0]).await.unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().any(|r| r.run_id == replayed));
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_a_database_from_before_the_failed_retention() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let failed = store_a_failure(fanfare::Runtime::builder().postgres(&url)).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&downgrade(
            POSTGRES_BEFORE,
            &format!(
                "DROP FUNCTION fanfare_run_id; \
             ALTER TABLE fanfare_runs DROP CONSTRAINT fanfare_runs_owned; \
             ALTER TABLE fanfare_runs DROP COLUMN list, DROP COLUMN failed_at; {UNDO_QUEUE} \
             CREATE INDEX fanfare_runs_held_key ON fanfare_runs (app, function_id, ckey, rank, id) \
                 WHERE status = 4 AND hold = 1; \
             CREATE INDEX fanfare_runs_held_function ON fanfare_runs (app, function_id, rank, id) \
                 WHERE status = 4 AND hold = 2; \
             CREATE INDEX fanfare_runs_owner ON fanfare_runs (owner) WHERE status = 1;",
            ),
        ))
        .await
        .unwrap();
    prunes_after_the_upgrade(fanfare::Runtime::builder().postgres(&url), failed).await;
    let index: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes \
             WHERE schemaname = current_schema() AND indexname = 'fanfare_runs_failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(index, 1);
    let version: i64 = client
        .query_one(
            "SELECT value FROM fanfare_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(version > POSTGRES_BEFORE, "{version}");
}

/// Starts `builder` with short retentions, fails an event, sees its failed attempt in
/// the run, waits until the failed retention prunes the event, and shuts down.
async fn fail_and_prune(builder: fanfare::Builder) {
    let rt = builder
        .retention(RETENTION)
        .failed_retention(RETENTION)
        .start()
        .await
        .unwrap();
    let failed = rt.send(Fatal).await.unwrap();
    timeout(LIMIT, rt.wait(failed)).await.unwrap().unwrap();
    let run = &rt.runs(failed).await.unwrap()[0];
    assert_eq!(run.failed_attempts.len(), 1, "{run:?}");
    assert_eq!(run.failed_attempts[0].error, "declined");
    until("the failed event is pruned", async || {
        gone(&rt, failed).await
    })
    .await;
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prunes_a_runs_failed_attempts_with_it() {
    let path = temp_db();
    fail_and_prune(Runtime::builder().sqlite(&path)).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM fanfare_attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prunes_a_runs_failed_attempts_with_it() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    fail_and_prune(Runtime::builder().postgres(&url)).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let left: i64 = client
        .query_one("SELECT count(*) FROM fanfare_attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// Undoes PostgreSQL's queue table (migration 14) and its table of finished runs
/// (migration 16), as an older fanfare left the schema: the claim's, the lease's and the
/// finished runs' indexes on the runs, which filled their pages.
const UNDO_QUEUE: &str = "DROP TABLE fanfare_queue; DROP TABLE fanfare_finished; \
    ALTER TABLE fanfare_runs RESET (fillfactor); \
    CREATE INDEX fanfare_runs_ready ON fanfare_runs (app, due_at, id) WHERE status = 0; \
    CREATE INDEX fanfare_runs_lease ON fanfare_runs (app, lease_until) WHERE status = 1; \
    CREATE INDEX fanfare_runs_finished ON fanfare_runs (finished_at, id) WHERE status IN (2, 5);";

/// Takes a PostgreSQL database back to before the queue table (schema version 13).
fn before_queue() -> String {
    format!("{UNDO_QUEUE} UPDATE fanfare_meta SET value = 13 WHERE key = 'schema_version'")
}

/// Runs queued and finished before the queue table are claimed, run once, and pruned
/// after the upgrade, as runs stored after it: those finished before it leave the queue
/// for `fanfare_finished` (migration 16), where retention finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_a_database_with_queued_and_finished_runs() {
    if !postgres_ready().await {
        return;
    }
    let url = postgres_schema();
    let rt = Runtime::builder().postgres(&url).start().await.unwrap();
    let done = rt.send(Done).await.unwrap();
    common::all_finished(&rt, [done]).await;
    rt.shutdown().await.unwrap();
    // Queued: sent by a process that executes nothing.
    let sender = Runtime::builder()
        .postgres(&url)
        .execute(false)
        .start()
        .await
        .unwrap();
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(sender.send(Mixed).await.unwrap());
    }
    sender.shutdown().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(&before_queue()).await.unwrap();

    let rt = Runtime::builder()
        .postgres(&url)
        .retention(RETENTION)
        .start()
        .await
        .unwrap();
    common::all_finished(&rt, queued.iter().copied()).await;
    for &event in &queued {
        let mut statuses: Vec<(RunStatus, u32)> = rt
            .runs(event)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.status, r.attempts))
            .collect();
        statuses.sort_by_key(|&(s, _)| s.to_string());
        assert_eq!(
            statuses,
            [(RunStatus::Completed, 1), (RunStatus::Failed, 1)],
            "each run once"
        );
    }
    until(
        "the event finished before the upgrade is pruned",
        async || gone(&rt, done).await,
    )
    .await;
    rt.shutdown().await.unwrap();
    let count = async |sql: &str| -> i64 { client.query_one(sql, &[]).await.unwrap().get(0) };
    assert_eq!(
        count(
            "SELECT count(*) FROM fanfare_runs r JOIN fanfare_queue q ON q.run = r.id \
             WHERE q.state = r.status AND r.status = 3"
        )
        .await,
        3,
        "every failed run kept has its queue row, in its state"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM fanfare_runs r JOIN fanfare_queue q ON q.run = r.id \
             WHERE r.status = 2"
        )
        .await,
        0,
        "the completed runs kept have left the queue"
    );
}
