//! Cancellation (`Runtime::cancel`): queued, sleeping, waiting and running runs, what
//! never runs afterwards, the slots and handlers of cancelled runs, invocations, and a
//! run cancelled on PostgreSQL from another process than the one executing it.
//! Conformance: every test but the last three runs against every store.

mod common;

use common::services::{log_file, log_lines, observer, Service, CANCEL};
use common::{
    finished, gate, hit, hits, postgres_ready, postgres_schema, run_of, started, step_ids, until,
    until_status, Store,
};
use fanfare::{
    function, Ctx, Error, ErrorKind, Event, EventId, Failure, RunId, RunInfo, RunStatus, Runtime,
    SendOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

conformance!(
    a_queued_run_is_cancelled_before_it_ever_runs,
    a_sleeping_run_is_cancelled_at_once_and_never_wakes,
    a_waiting_run_is_cancelled_and_its_event_resumes_nothing,
    a_running_run_stops_at_its_next_step,
    a_step_executing_when_the_run_is_cancelled_is_discarded,
    a_marked_attempt_that_returns_or_fails_for_good_keeps_its_outcome,
    a_cancelled_run_does_not_start_its_on_failure_handler,
    a_cancelled_running_run_gives_its_slot_to_the_held_run,
    a_held_run_is_cancelled_and_the_slot_stays_right,
    an_invoke_waiting_for_a_cancelled_run_fails,
    a_finished_run_keeps_its_status_and_an_unknown_id_is_not_found,
);

const REASON: &str = "cancelled by `Runtime::cancel`";

fn assert_cancelled(run: &RunInfo) {
    assert_eq!(run.status, RunStatus::Cancelled, "{run:?}");
    assert_eq!(run.reason.as_deref(), Some(REASON));
    assert!(run.status.is_finished());
}

// --- queued -----------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/reminder")]
struct Reminder {
    tag: String,
}

#[function(trigger = "cancel/reminder")]
async fn remind(ctx: Ctx<Reminder>) -> fanfare::Result<()> {
    hit(format!("{} ran", ctx.event().tag));
    Ok(())
}

async fn a_queued_run_is_cancelled_before_it_ever_runs(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("queued {}", store.name());
    let later = SendOptions::new().delay(Duration::from_secs(3600));
    let id = rt
        .send_with(Reminder { tag: tag.clone() }, later)
        .await
        .unwrap();
    let run = run_of(&rt, id).await;
    assert_eq!(run.status, RunStatus::Queued);
    assert!(run.not_before_ms.is_some());

    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Cancelled);
    let run = run_of(&rt, id).await;
    assert_cancelled(&run);
    assert_eq!((run.attempts, run.not_before_ms), (0, None));
    // `wait` sees it finished; cancelling again changes nothing.
    assert_cancelled(&finished(&rt, id).await);
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Cancelled);
    assert_eq!(hits(format!("{tag} ran")), 0);
    rt.shutdown().await.unwrap();
}

// --- sleeping ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/nap")]
struct Nap {
    tag: String,
}

#[function(trigger = "cancel/nap")]
async fn napper(ctx: Ctx<Nap>) -> fanfare::Result<()> {
    let tag = &ctx.event().tag;
    hit(format!("{tag} before"));
    ctx.sleep("nap", Duration::from_secs(3600)).await?;
    hit(format!("{tag} after"));
    Ok(())
}

async fn a_sleeping_run_is_cancelled_at_once_and_never_wakes(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("sleeping {}", store.name());
    let id = rt.send(Nap { tag: tag.clone() }).await.unwrap();
    until_status(&rt, id, RunStatus::Sleeping).await;
    let run = run_of(&rt, id).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Cancelled);
    let run = run_of(&rt, id).await;
    assert_cancelled(&run);
    assert_eq!(step_ids(&run), ["nap"]);
    assert_eq!(hits(format!("{tag} before")), 1);
    assert_eq!(hits(format!("{tag} after")), 0);
    rt.shutdown().await.unwrap();
}

// --- waiting ----------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/order")]
struct Order {
    order: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/paid")]
struct Paid {
    order: u64,
}

#[function(trigger = "cancel/order")]
async fn await_payment(ctx: Ctx<Order>) -> fanfare::Result<()> {
    let paid = ctx
        .wait_for_event::<Paid>("paid")
        .matching("order")
        .timeout(Duration::from_secs(3600))
        .await?;
    assert!(paid.is_some());
    hit(format!("{} resumed", ctx.event_id()));
    Ok(())
}

async fn a_waiting_run_is_cancelled_and_its_event_resumes_nothing(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let order = fastrand::u64(..);
    // Two runs wait for the same payment; one is cancelled.
    let cancelled = rt.send(Order { order }).await.unwrap();
    let control = rt.send(Order { order }).await.unwrap();
    until_status(&rt, cancelled, RunStatus::Waiting).await;
    until_status(&rt, control, RunStatus::Waiting).await;
    let run = run_of(&rt, cancelled).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Cancelled);
    assert_cancelled(&run_of(&rt, cancelled).await);

    rt.send(Paid { order }).await.unwrap();
    let resumed = finished(&rt, control).await;
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(step_ids(&resumed), ["paid"]);
    // The payment resolved the control's wait only: the cancelled run's wait was gone.
    let run = run_of(&rt, cancelled).await;
    assert_cancelled(&run);
    assert!(run.steps.is_empty(), "{run:?}");
    assert_eq!(hits(format!("{cancelled} resumed")), 0);
    assert_eq!(hits(format!("{control} resumed")), 1);
    rt.shutdown().await.unwrap();
}

// --- running ----------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/two-steps")]
struct TwoSteps {
    tag: String,
}

#[function(trigger = "cancel/two-steps")]
async fn two_steps(ctx: Ctx<TwoSteps>) -> fanfare::Result<()> {
    let tag = &ctx.event().tag;
    ctx.step("one", || async {
        hit(format!("{tag} one"));
        Ok::<_, Error>(())
    })
    .await?;
    let g = gate(tag);
    g.started.notify_one();
    let _permit = g.release.acquire().await;
    ctx.step("two", || async {
        hit(format!("{tag} two"));
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

async fn a_running_run_stops_at_its_next_step(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("between steps {}", store.name());
    let id = rt.send(TwoSteps { tag: tag.clone() }).await.unwrap();
    started(&tag).await;
    let run = run_of(&rt, id).await;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Running);
    // Marked, it goes on until its next step, which does not start.
    assert_eq!(run_of(&rt, id).await.status, RunStatus::Running);
    gate(&tag).release.add_permits(1);
    let run = finished(&rt, id).await;
    assert_cancelled(&run);
    assert_eq!((step_ids(&run), run.attempts), (vec!["one"], 1));
    assert_eq!(hits(format!("{tag} one")), 1);
    assert_eq!(hits(format!("{tag} two")), 0);
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/in-step")]
struct InStep {
    tag: String,
}

#[function(trigger = "cancel/in-step")]
async fn slow_step(ctx: Ctx<InStep>) -> fanfare::Result<u32> {
    let tag = &ctx.event().tag;
    let n = ctx
        .step("slow", || async {
            let g = gate(tag);
            g.started.notify_one();
            let _permit = g.release.acquire().await;
            hit(format!("{tag} slow done"));
            Ok::<_, Error>(7)
        })
        .await?;
    hit(format!("{tag} after"));
    Ok(n)
}

async fn a_step_executing_when_the_run_is_cancelled_is_discarded(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("in a step {}", store.name());
    let id = rt.send(InStep { tag: tag.clone() }).await.unwrap();
    started(&tag).await;
    let run = run_of(&rt, id).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Running);
    gate(&tag).release.add_permits(1);
    let run = finished(&rt, id).await;
    assert_cancelled(&run);
    // The step ran to its end, but its result was not stored, nor returned.
    assert_eq!(hits(format!("{tag} slow done")), 1);
    assert!(run.steps.is_empty(), "{run:?}");
    assert_eq!(run.output, None);
    assert_eq!(hits(format!("{tag} after")), 0);
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/last-leg")]
struct LastLeg {
    tag: String,
    fail: bool,
}

/// Reaches no step after its gate: it returns, or fails for good.
#[function(trigger = "cancel/last-leg", retries = 0)]
async fn last_leg(ctx: Ctx<LastLeg>) -> fanfare::Result<u32> {
    let e = ctx.event();
    let g = gate(&e.tag);
    g.started.notify_one();
    let _permit = g.release.acquire().await;
    if e.fail {
        return Err(Error::msg("the carrier refused the parcel"));
    }
    Ok(3)
}

async fn a_marked_attempt_that_returns_or_fails_for_good_keeps_its_outcome(store: Store) {
    let rt = store.builder().start().await.unwrap();
    for fail in [false, true] {
        let tag = format!("last leg {fail} {}", store.name());
        let id = rt
            .send(LastLeg {
                tag: tag.clone(),
                fail,
            })
            .await
            .unwrap();
        started(&tag).await;
        let run = run_of(&rt, id).await;
        assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Running);
        gate(&tag).release.add_permits(1);
        let run = finished(&rt, id).await;
        // The work was done (or failed for good) before any point it could stop at.
        if fail {
            assert_eq!(run.status, RunStatus::Failed, "{run:?}");
            assert_eq!(
                run.last_error.as_deref(),
                Some("the carrier refused the parcel")
            );
        } else {
            assert_eq!(run.status, RunStatus::Completed, "{run:?}");
            assert_eq!(run.output, Some(serde_json::json!(3)));
        }
        assert_eq!(
            rt.cancel(run.run_id).await.unwrap(),
            run.status,
            "a finished run's status stays"
        );
    }
    rt.shutdown().await.unwrap();
}

// --- on_failure ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/flaky")]
struct Flaky {
    tag: String,
}

/// Fails after its gate: an attempt that would be retried, were the run not cancelled.
#[function(trigger = "cancel/flaky", retries = 3, on_failure = flaky_failed)]
async fn flaky(ctx: Ctx<Flaky>) -> fanfare::Result<()> {
    let g = gate(&ctx.event().tag);
    g.started.notify_one();
    let _permit = g.release.acquire().await;
    Err(Error::msg("the CRM answered 503"))
}

async fn flaky_failed(ctx: Ctx<Failure<Flaky>>) -> fanfare::Result<()> {
    hit(format!("{} handler", ctx.event().event.tag));
    Ok(())
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/doomed")]
struct Doomed {
    tag: String,
}

/// Fails for good at once: its handler runs.
#[function(trigger = "cancel/doomed", retries = 0, on_failure = doomed_failed)]
async fn doomed(_ctx: Ctx<Doomed>) -> fanfare::Result<()> {
    Err(Error::msg("gone"))
}

async fn doomed_failed(ctx: Ctx<Failure<Doomed>>) -> fanfare::Result<()> {
    hit(format!("{} handler", ctx.event().event.tag));
    Ok(())
}

async fn a_cancelled_run_does_not_start_its_on_failure_handler(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let tag = format!("flaky {}", store.name());
    let id = rt.send(Flaky { tag: tag.clone() }).await.unwrap();
    started(&tag).await;
    let run = run_of(&rt, id).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Running);
    gate(&tag).release.add_permits(1);
    let run = finished(&rt, id).await;
    // Its failed attempt is not retried: the run is cancelled, not failed.
    assert_cancelled(&run);
    assert_eq!(run.attempts, 1);

    // A handler started for it would have been queued before this one, and the runs it
    // queued start in order: once the control's handler ran, and the runtime let its
    // running attempts finish, the cancelled run's handler would have run too.
    let control = format!("doomed {}", store.name());
    rt.send(Doomed {
        tag: control.clone(),
    })
    .await
    .unwrap();
    until("the control's handler ran", async || {
        hits(format!("{control} handler")) == 1
    })
    .await;
    rt.shutdown().await.unwrap();
    assert_eq!(hits(format!("{tag} handler")), 0);
}

// --- concurrency --------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/limited")]
struct Limited {
    tag: String,
    n: u32,
}

#[function(trigger = "cancel/limited", concurrency = 1)]
async fn limited(ctx: Ctx<Limited>) -> fanfare::Result<()> {
    let e = ctx.event();
    hit(format!("{} {} started", e.tag, e.n));
    let g = gate(&e.tag);
    g.started.notify_one();
    let _permit = g.release.acquire().await;
    ctx.step("done", || async { Ok::<_, Error>(()) }).await?;
    Ok(())
}

/// Sends run `n` of `tag`.
async fn send_limited(rt: &Runtime, tag: &str, n: u32) -> EventId {
    let tag = tag.to_owned();
    rt.send(Limited { tag, n }).await.unwrap()
}

/// Waits until the run of `id` is held for the function's slot.
async fn until_held(rt: &Runtime, id: EventId) {
    until("the run is held for a slot", async || {
        let run = run_of(rt, id).await;
        run.status == RunStatus::Queued
            && run
                .reason
                .is_some_and(|r| r.starts_with("waiting for a concurrency slot"))
    })
    .await;
}

async fn a_cancelled_running_run_gives_its_slot_to_the_held_run(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("slot {}", store.name());
    let first = send_limited(&rt, &tag, 1).await;
    started(&tag).await;
    let held = send_limited(&rt, &tag, 2).await;
    until_held(&rt, held).await;

    let run = run_of(&rt, first).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Running);
    gate(&tag).release.add_permits(1);
    assert_cancelled(&finished(&rt, first).await);
    // The slot went to the held run.
    started(&tag).await;
    gate(&tag).release.add_permits(1);
    assert_eq!(finished(&rt, held).await.status, RunStatus::Completed);
    assert_eq!(hits(format!("{tag} 2 started")), 1);
    rt.shutdown().await.unwrap();
}

async fn a_held_run_is_cancelled_and_the_slot_stays_right(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("held {}", store.name());
    let first = send_limited(&rt, &tag, 1).await;
    started(&tag).await;
    let held = send_limited(&rt, &tag, 2).await;
    until_held(&rt, held).await;

    let run = run_of(&rt, held).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Cancelled);
    assert_cancelled(&run_of(&rt, held).await);
    gate(&tag).release.add_permits(1);
    assert_eq!(finished(&rt, first).await.status, RunStatus::Completed);
    // The slot is free again (the cancelled run neither took it nor leaked it), and the
    // cancelled run never ran.
    let third = send_limited(&rt, &tag, 3).await;
    started(&tag).await;
    gate(&tag).release.add_permits(1);
    assert_eq!(finished(&rt, third).await.status, RunStatus::Completed);
    assert_eq!(hits(format!("{tag} 2 started")), 0);
    assert_cancelled(&run_of(&rt, held).await);
    rt.shutdown().await.unwrap();
}

// --- invoke -------------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/quote")]
struct Quote {
    tag: String,
    /// Block at the gate (cancelled while running) instead of sleeping.
    block: bool,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/checkout")]
struct Checkout {
    tag: String,
    block: bool,
}

/// The invoked runs' (event, run) ids, by tag.
fn invoked() -> &'static Mutex<HashMap<String, (EventId, RunId)>> {
    static M: OnceLock<Mutex<HashMap<String, (EventId, RunId)>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

#[function(trigger = "cancel/quote")]
async fn quote(ctx: Ctx<Quote>) -> fanfare::Result<u64> {
    let e = ctx.event();
    invoked()
        .lock()
        .unwrap()
        .insert(e.tag.clone(), (ctx.event_id(), ctx.run_id()));
    if e.block {
        let g = gate(&e.tag);
        g.started.notify_one();
        let _permit = g.release.acquire().await;
    }
    ctx.sleep("think", Duration::from_secs(3600)).await?;
    Ok(42)
}

#[function(trigger = "cancel/checkout")]
async fn checkout(ctx: Ctx<Checkout>) -> fanfare::Result<String> {
    let e = ctx.event();
    let quote = Quote {
        tag: e.tag.clone(),
        block: e.block,
    };
    match ctx.invoke::<quote>("quote", quote).await {
        Ok(n) => Ok(format!("quoted {n}")),
        Err(err) => Ok(format!("{:?}: {err}", err.kind())),
    }
}

async fn an_invoke_waiting_for_a_cancelled_run_fails(store: Store) {
    let rt = store.builder().start().await.unwrap();
    for block in [false, true] {
        let tag = format!("invoke {block} {}", store.name());
        let id = rt
            .send(Checkout {
                tag: tag.clone(),
                block,
            })
            .await
            .unwrap();
        let mut callee = None;
        until("the invoked run started", async || {
            callee = invoked().lock().unwrap().get(&tag).copied();
            callee.is_some()
        })
        .await;
        let Some((quote_event, quote_run)) = callee else {
            unreachable!("set above")
        };
        // Cancelled while it sleeps, at once; or while it runs, at its sleep.
        let expected = if block {
            started(&tag).await;
            RunStatus::Running
        } else {
            until_status(&rt, quote_event, RunStatus::Sleeping).await;
            RunStatus::Cancelled
        };
        assert_eq!(rt.cancel(quote_run).await.unwrap(), expected);
        gate(&tag).release.add_permits(1);
        assert_cancelled(&finished(&rt, quote_event).await);
        let caller = finished(&rt, id).await;
        assert_eq!(caller.status, RunStatus::Completed);
        assert_eq!(
            caller.output,
            Some(serde_json::json!(format!(
                "Invoked: invoked function `quote` was cancelled: {REASON}"
            ))),
        );
    }
    rt.shutdown().await.unwrap();
}

// --- finished and unknown runs ----------------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cancel/quick")]
struct QuickJob {
    n: u32,
}

#[function(trigger = "cancel/quick")]
async fn quick_job(ctx: Ctx<QuickJob>) -> fanfare::Result<u32> {
    Ok(ctx.event().n * 2)
}

async fn a_finished_run_keeps_its_status_and_an_unknown_id_is_not_found(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let id = rt.send(QuickJob { n: 21 }).await.unwrap();
    let done = finished(&rt, id).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(rt.cancel(done.run_id).await.unwrap(), RunStatus::Completed);
    assert_eq!(run_of(&rt, id).await, done);

    let unknown: RunId = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
    let err = rt.cancel(unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RunNotFound);
    assert_eq!(
        err.to_string(),
        format!("no run with id {unknown} is known to this runtime")
    );
    rt.shutdown().await.unwrap();
}

// --- memory: slots are reused ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_cancelled_delayed_run_wakes_no_later_run_of_its_slot() {
    // Finished events are forgotten at once: the cancelled run's slot is reused at once.
    let rt = Store::Memory
        .builder()
        .retention(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let tag = "slot reuse memory";
    let delay = |ms| SendOptions::new().delay(Duration::from_millis(ms));
    let reminder = |name: &str| Reminder {
        tag: format!("{tag} {name}"),
    };
    let cancelled = rt.send_with(reminder("a"), delay(300)).await.unwrap();
    let run = run_of(&rt, cancelled).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Cancelled);
    until("the cancelled run is forgotten", async || {
        rt.runs(cancelled).await.is_err()
    })
    .await;
    let later = rt.send_with(reminder("b"), delay(3_600_000)).await.unwrap();
    // Due after the cancelled run was: once it ran, that time has come and gone.
    rt.send_with(reminder("c"), delay(600)).await.unwrap();
    until("the control ran", async || {
        hits(format!("{tag} c ran")) == 1
    })
    .await;
    assert_eq!(hits(format!("{tag} b ran")), 0);
    assert_eq!(run_of(&rt, later).await.status, RunStatus::Queued);
    rt.shutdown().await.unwrap();
}

// --- PostgreSQL, across processes ---------------------------------------------------------------

/// Waits until the service's log has `line`.
async fn until_logged(log: &std::path::Path, line: &str) {
    until(&format!("the service logs `{line}`"), async || {
        log_lines(log).iter().any(|l| l == line)
    })
    .await;
}

/// Lets the service's function go past its hold point (see `services/cancel.rs`).
fn release(log: &std::path::Path, n: u64) {
    std::fs::write(format!("{}.release.{n}", log.display()), b"").unwrap();
}

/// A `cancel-service` process (with `env`) on a fresh schema, its log, the test's
/// observer runtime and the schema's URL; `None` without PostgreSQL.
async fn remote(env: &[(&str, &str)]) -> Option<(std::path::PathBuf, Service, Runtime, String)> {
    if !postgres_ready().await {
        return None;
    }
    let url = postgres_schema();
    let log = log_file();
    let service = Service::start(CANCEL, &url, &log, env);
    let rt = observer(&url).await;
    Some((log, service, rt, url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_executing_in_another_process_discards_the_step_it_was_in() {
    // The default lease: renewals come after the test is over, so only the refused step
    // can tell the service.
    let Some((log, _service, rt, _)) = remote(&[]).await else {
        return;
    };
    let n = fastrand::u64(..);
    let id = rt
        .send_json(
            "cancel/remote",
            serde_json::json!({ "n": n, "hold": "one" }),
        )
        .await
        .unwrap();
    until_logged(&log, &format!("one started {n}")).await;
    let run = run_of(&rt, id).await;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Running);
    release(&log, n);
    let run = finished(&rt, id).await;
    assert_cancelled(&run);
    assert!(run.steps.is_empty(), "{run:?}");
    let lines = log_lines(&log);
    assert!(lines.contains(&format!("one done {n}")), "{lines:?}");
    assert!(!lines.contains(&format!("between {n}")), "{lines:?}");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_executing_in_another_process_stops_at_its_next_step() {
    // A short lease: the service renews it every 100 ms, and learns of the mark there.
    let Some((log, _service, rt, url)) = remote(&[("FANFARE_LEASE_MS", "300")]).await else {
        return;
    };
    let n = fastrand::u64(..);
    let id = rt
        .send_json(
            "cancel/remote",
            serde_json::json!({ "n": n, "hold": "between" }),
        )
        .await
        .unwrap();
    until_logged(&log, &format!("between {n}")).await;
    let run = run_of(&rt, id).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Running);
    // Two renewals after the mark: the service has read the first one's answer.
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let lease = async || -> Option<i64> {
        db.query_one(
            "SELECT lease_until FROM fanfare_runs WHERE run_id = $1::text::uuid",
            &[&run.run_id.to_string()],
        )
        .await
        .unwrap()
        .get(0)
    };
    let mut seen = lease().await;
    for _ in 0..2 {
        until("the service renewed the lease", async || {
            let now = lease().await;
            std::mem::replace(&mut seen, now) != now
        })
        .await;
    }
    release(&log, n);
    let run = finished(&rt, id).await;
    assert_cancelled(&run);
    assert_eq!(step_ids(&run), ["one"]);
    let lines = log_lines(&log);
    assert!(!lines.contains(&format!("two {n}")), "{lines:?}");
    rt.shutdown().await.unwrap();
}
