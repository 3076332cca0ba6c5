//! The engine: claim → run → record.
//!
//! - [`Engine::dispatch`] claims due runs in batches, up to the free worker slots, and
//!   starts them, a task per chunk of runs; a run that awaits moves into its own task
//!   (`start`).
//! - [`Engine::execute`] runs one attempt, catching panics, and decides
//!   what happens next: completed, retried after a delay, or failed for good. A chunk
//!   reports the outcomes of the runs that finished in it together.
//! - [`Engine::record`] writes the outcomes back to the store in batches and frees the
//!   slots.

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind};
use crate::event::now_millis;
use crate::function::{Registry, RunInput};
use crate::metrics::{Count, Counters};
use crate::step::{RunState, Suspend};
use crate::store::{ClaimedRun, Outcome, OutcomeKind, RunKey, Store};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument;

mod cancel;
mod handoff;
mod inflight;
mod lifetime;
mod start;

use inflight::Inflight;
use lifetime::Started;

/// Longest an idle dispatcher waits before it claims again.
const IDLE_CLAIM: Duration = Duration::from_secs(1);

/// Most runs claimed or recorded in one store call.
const BATCH: usize = 512;

pub(crate) struct Engine {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub backoff: Backoff,
    /// Most runs executing at once; 0 for a process that only sends.
    pub concurrency: usize,
    /// Largest accepted event, for sends from functions.
    pub max_event_size: usize,
    /// New work, free slots or a stop request: the dispatcher looks again. Shared with
    /// the store, which wakes it for work it learns of itself (another process's send).
    pub wake: Arc<Notify>,
    /// Set once shutdown begins: nothing more is claimed.
    pub stopping: AtomicBool,
    /// Runs executing now, with the handle that aborts each and its attempt's state.
    inflight: crate::padded::Padded<Mutex<Inflight>>,
    /// Whether any executing run is marked cancelled (`Inflight::marks` is not empty):
    /// attempts read their marks only then.
    marked: AtomicBool,
    /// Outcomes to record: a chunk's together (`start`), or one run's.
    outcomes: mpsc::UnboundedSender<Vec<Outcome>>,
    /// Bumped after every recorded batch; `Runtime::wait` and shutdown watch it.
    pub progress: watch::Sender<u64>,
    /// This process's counters (`Runtime::metrics`).
    pub metrics: Counters,
    /// The builder's trace-context hooks.
    pub trace: crate::trace::Hooks,
    /// Fewest tasks a claim's runs are spread over (`start`).
    spread: usize,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        backoff: Backoff,
        concurrency: usize,
        max_event_size: usize,
        wake: Arc<Notify>,
        trace: crate::trace::Hooks,
    ) -> (Arc<Engine>, mpsc::UnboundedReceiver<Vec<Outcome>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = Counters::new(&registry);
        let engine = Engine {
            metrics,
            store,
            registry,
            backoff,
            concurrency,
            max_event_size,
            wake,
            stopping: AtomicBool::new(false),
            inflight: crate::padded::Padded(Mutex::new(Inflight::default())),
            marked: AtomicBool::new(false),
            outcomes: tx,
            progress: watch::Sender::new(0),
            trace,
            spread: start::spread(),
        };
        (Arc::new(engine), rx)
    }

    fn inflight(&self) -> MutexGuard<'_, Inflight> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Slots taken: runs executing here, and slots reserved for runs a store is handing
    /// over (`Slots`).
    pub fn busy(&self) -> usize {
        self.inflight().busy()
    }

    /// Claims and starts runs until shutdown begins.
    pub async fn dispatch(self: Arc<Self>) {
        if self.concurrency == 0 {
            return;
        }
        let mut store_errors = 0u32;
        while !self.stopping.load(Ordering::Acquire) {
            let free = self.concurrency.saturating_sub(self.busy());
            if free == 0 {
                self.wake.notified().await;
                continue;
            }
            let claim = match self.store.claim(free.min(BATCH)).await {
                Ok(claim) => {
                    store_errors = 0;
                    claim
                }
                Err(e) => {
                    store_errors += 1;
                    let delay =
                        Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5))
                            .delay(store_errors.min(10));
                    tracing::warn!(error = %e, retry_in = ?delay, "fanfare: claiming runs failed");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            for &function in &claim.skipped {
                self.metrics.count(function, Count::Skipped);
            }
            if claim.runs.is_empty() {
                // Look again when woken, when the next delayed run is due, and at least
                // every second: stores prune and notice other processes' work on claims.
                let idle = tokio::time::Instant::now() + IDLE_CLAIM;
                let until = claim.next_due.map_or(idle, |due| idle.min(due.into()));
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep_until(until) => {}
                }
                continue;
            }
            self.start_claimed(claim.runs);
        }
    }

    /// Runs one attempt and returns its outcome, for the caller to [`report`](Self::report).
    /// `began` is when the attempt began (the caller's last reading of the clock); returns
    /// when it ended too, so that a chunk of runs reads the clock once a run.
    async fn execute(self: Arc<Self>, mut run: ClaimedRun, began: Instant) -> (Outcome, Instant) {
        let def = self.registry.defs[run.function as usize];
        let steps = std::mem::take(&mut run.steps);
        // What `timeouts` measure from (read only by functions that have them).
        let started = Started {
            fresh: run.attempt == 0 && steps.is_empty(),
            first_ms: match def.lifetime() {
                Some(_) => steps
                    .iter()
                    .map(|s| s.started_ms)
                    .min()
                    .unwrap_or_else(now_millis),
                None => 0,
            },
        };
        let state = Arc::new(RunState::new(run.key, run.run_id, self, steps));
        // The run's state holds the engine from here: one reference count for both.
        let this = &state.engine;
        let span = tracing::info_span!(
            "fanfare.run",
            function = def.id(),
            run_id = %run.run_id,
            event_id = %run.event.id,
            attempt = run.attempt,
            trace_id = tracing::field::Empty,
            traceparent = tracing::field::Empty,
        );
        if let Some(parent) = &run.event.trace {
            this.trace.link(&span, parent);
        }
        let finish = Self::finish_deadline(def, started);
        // How long the attempt ran (zero for one that did not run).
        let mut took = Duration::ZERO;
        let mut ended_at = None;
        let ended = if let Some(reason) = run.cancel.take() {
            // Marked cancelled before this attempt began (by another app's process, or
            // while its last attempt ran in a process that stopped): it does not execute.
            state.cancel(reason);
            Ended::Suspended(Suspend::Cancel)
        } else if run.attempt > def.retries() {
            // Every attempt was used, the last one by a process that died or lost its
            // lease while running it: no attempt is left to make.
            Ended::Returned(Err(Error::new(
                ErrorKind::Interrupted,
                format_args!(
                    "attempt {} was interrupted (the process running it stopped) and no retries are left",
                    run.attempt
                ),
            )
            .never_retry()))
        } else if let Some(reason) = match def.lifetime() {
            // Boxed, as the other rare paths below: the task of every run holds this
            // future, and tokio copies it as a whole when it starts and ends the task.
            Some(_) => Box::pin(this.ends_before(def, &run.event, started, finish.as_ref())).await,
            None => None,
        } {
            // A timeout passed, or a cancelling event was sent since the run's event.
            state.cancel(reason);
            Ended::Suspended(Suspend::Cancel)
        } else {
            let input = RunInput {
                envelope: Arc::clone(&run.event),
                run_id: run.run_id,
                attempt: run.attempt,
                def,
                state: Arc::clone(&state),
                batch: run.batch.clone(),
            };
            if started.fresh {
                this.metrics.count(run.function, Count::Started);
            }
            let ended = match span.in_scope(|| def.call(input)) {
                // A durable sleep or wait, or a cancellation, suspends the run: the
                // attempt's future is dropped where it stands, and the run goes back to
                // the queue until its wake time (or ends), holding no task.
                // `timeouts(finish)`: the attempt is dropped where it stands at the deadline.
                Ok(fut) => tokio::select! {
                    biased;
                    result = CatchUnwind(fut).instrument(span.clone()) => Ended::Returned(result),
                    why = state.suspended() => Ended::Suspended(why),
                    reason = finish_timer(finish.clone()) => {
                        state.cancel(reason);
                        Ended::Suspended(Suspend::Cancel)
                    }
                },
                Err(e) => Ended::Returned(Err(e)),
            };
            let now = Instant::now();
            took = now.saturating_duration_since(began);
            ended_at = Some(now);
            this.metrics.attempt(run.function, took);
            ended
        };
        let result = span.in_scope(|| this.decide(&run, def.retries(), ended, state.cancelled()));
        let result = Self::cap(result, finish.map(|(deadline, _)| deadline));
        let counted = match result {
            OutcomeKind::Completed(_) => Some(Count::Completed),
            OutcomeKind::Failed(_) => Some(Count::Failed),
            OutcomeKind::Retry { .. } => Some(Count::Retried),
            OutcomeKind::Cancelled(_) => Some(Count::Cancelled),
            OutcomeKind::Sleep { .. } | OutcomeKind::Wait { .. } => None,
        };
        if let Some(what) = counted {
            this.metrics.count(run.function, what);
        }
        if let OutcomeKind::Sleep { .. } | OutcomeKind::Wait { .. } = result {
            // Suspended: nothing to report, no handler to start.
            let outcome = Outcome {
                key: run.key,
                function: run.function,
                result,
                started_ms: 0,
                ended_ms: 0,
            };
            return (outcome, ended_at.unwrap_or_else(Instant::now));
        }
        // A failed attempt's times are kept with its error (read the clock only then).
        let (started_ms, ended_ms) = match result.failure() {
            Some(_) => {
                let ended_ms = now_millis();
                (ended_ms.saturating_sub(took.as_millis() as u64), ended_ms)
            }
            None => (0, 0),
        };
        if run.event.name == crate::function::INVOKE_EVENT {
            Box::pin(this.report_invocation(run.event.id, &result)).await;
        }
        // A cancelled run's handler does not run: it did not fail.
        if let OutcomeKind::Failed(error) = &result {
            if let Some(handler) = this.registry.failure_handler(run.function) {
                Box::pin(this.start_failure_handler(&run, def.id(), handler, error)).await;
            }
        }
        let outcome = Outcome {
            key: run.key,
            function: run.function,
            result,
            started_ms,
            ended_ms,
        };
        (outcome, ended_at.unwrap_or_else(Instant::now))
    }

    /// Hands outcomes to the recorder.
    fn report(&self, outcomes: Vec<Outcome>) {
        // The receiver is gone only after shutdown gave up on these runs and released them.
        let _ = self.outcomes.send(outcomes);
    }

    /// What the end of an attempt means for its run: completed, retried, failed for good,
    /// suspended (a sleep, a wait), or cancelled (`cancelled`: why, if the run was
    /// cancelled while the attempt ran; then an attempt that would run again ends it).
    fn decide(
        &self,
        run: &ClaimedRun,
        retries: u32,
        ended: Ended,
        cancelled: Option<&str>,
    ) -> OutcomeKind {
        let cancel = |reason: &str| {
            tracing::info!(reason, "fanfare: run cancelled");
            OutcomeKind::Cancelled(reason.to_owned())
        };
        match ended {
            // Cancelled or not, the function did its work.
            Ended::Returned(Ok(output)) => {
                tracing::debug!("fanfare: run completed");
                OutcomeKind::Completed(output)
            }
            Ended::Returned(Err(e)) if e.is_retriable() && run.attempt < retries => {
                if let Some(reason) = cancelled {
                    tracing::info!(error = %e, "fanfare: attempt failed");
                    return cancel(reason);
                }
                let delay = e
                    .retry_delay()
                    .unwrap_or_else(|| self.backoff.delay(run.attempt));
                tracing::warn!(error = %e, retry_in = ?delay, "fanfare: attempt failed, will retry");
                OutcomeKind::Retry {
                    delay,
                    error: e.to_string(),
                }
            }
            Ended::Returned(Err(e)) => {
                tracing::error!(error = %e, attempts = run.attempt + 1, "fanfare: run failed");
                OutcomeKind::Failed(e.to_string())
            }
            Ended::Suspended(why) => match (why, cancelled) {
                (_, Some(reason)) => cancel(reason),
                (Suspend::Sleep(wake_ms), None) => {
                    tracing::debug!(?why, "fanfare: run suspended");
                    OutcomeKind::Sleep {
                        delay: Duration::from_millis(wake_ms.saturating_sub(now_millis())),
                    }
                }
                (Suspend::Wait { deadline_ms, seq }, None) => {
                    tracing::debug!(?why, "fanfare: run suspended");
                    OutcomeKind::Wait { deadline_ms, seq }
                }
                // An attempt stops for a cancellation only once it has a reason.
                (Suspend::Cancel, None) => cancel("cancelled"),
            },
        }
    }

    /// Writes outcomes back in batches (of [`BATCH`], or what is waiting), freeing the
    /// runs' slots: one batch at a time, each of what came in while the one before it was
    /// written. (On PostgreSQL, three batches written at once made them a third as large:
    /// 25 µs of statement execution per run against 17, and 12–15 % fewer runs/s in
    /// `bench`.) Each batch is written by a task of its own, which shutdown does not abort.
    pub async fn record(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Vec<Outcome>>) {
        let writer = Arc::new(tokio::sync::Semaphore::new(1));
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = rx.recv().await {
            let Ok(permit) = Arc::clone(&writer).acquire_owned().await else {
                return;
            };
            batch.extend(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            let outcomes = std::mem::take(&mut batch);
            let engine = Arc::clone(&self);
            tokio::spawn(async move {
                engine.write(outcomes).await;
                drop(permit);
            });
        }
    }

    /// Writes one batch of outcomes, then frees the runs' slots.
    async fn write(&self, mut outcomes: Vec<Outcome>) {
        let keys: Vec<RunKey> = outcomes.iter().map(|o| o.key).collect();
        // The outcomes are known: keep writing them until the store takes them (a
        // database restart). Meanwhile the runs hold their slots, so nothing more is
        // claimed. Should the process die first, their leases expire and the runs are
        // repeated, never lost.
        let mut failures = 0u32;
        while let Err(failed) = self.store.record(outcomes).await {
            outcomes = failed.outcomes;
            failures += 1;
            let delay = Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5))
                .delay(failures.min(10));
            tracing::error!(error = %failed.error, runs = keys.len(), retry_in = ?delay, "fanfare: recording outcomes failed");
            tokio::time::sleep(delay).await;
        }
        {
            let mut inflight = self.inflight();
            for key in &keys {
                inflight.remove(*key);
            }
            // A mark lives as long as its run executes here (a key is reused).
            if self.marked.load(Ordering::Acquire) {
                for key in &keys {
                    inflight.marks.remove(key);
                }
                self.marked
                    .store(!inflight.marks.is_empty(), Ordering::Release);
            }
        }
        self.progress.send_modify(|n| *n += 1);
        self.wake.notify_one();
    }

    /// Stores an event and its runs, and wakes the dispatcher if some are this
    /// process's. Used by `Runtime::send` and by `ctx.send`.
    pub async fn append(
        &self,
        mut envelope: crate::event::Envelope,
    ) -> crate::error::Result<crate::event::EventId> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::ShutDown,
                format_args!(
                    "event `{}` not sent: the runtime is shut down",
                    envelope.name
                ),
            ));
        }
        let id = envelope.id;
        if envelope.trace.is_none() {
            envelope.trace = self.trace.current();
        }
        // An event that cancels runs (`cancel_on`) cancels them before `send` returns.
        let cancels = (self.registry.any_cancellers()
            && !self.registry.cancellers(&envelope.name).is_empty())
        .then(|| Arc::new(envelope.clone()));
        let label = self.metrics.event_label(&envelope.name);
        let runs = self.store.append(envelope).await?;
        self.metrics.sent(label);
        if runs > 0 {
            self.wake.notify_one();
        }
        if let Some(event) = cancels {
            self.cancel_matching(&[event]).await;
        }
        Ok(id)
    }

    /// Stores several events atomically (all or none), as `append` does one each:
    /// the dispatcher is woken, and events that cancel runs (`cancel_on`) cancel them
    /// before this returns.
    pub async fn append_all(
        &self,
        mut envelopes: Vec<crate::event::Envelope>,
    ) -> crate::error::Result<()> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::ShutDown,
                format_args!(
                    "{} events not sent: the runtime is shut down",
                    envelopes.len()
                ),
            ));
        }
        if self.trace.inject.is_some() {
            for envelope in envelopes.iter_mut().filter(|e| e.trace.is_none()) {
                envelope.trace = self.trace.current();
            }
        }
        let cancels: Vec<_> = match self.registry.any_cancellers() {
            true => envelopes
                .iter()
                .filter(|e| !self.registry.cancellers(&e.name).is_empty())
                .map(|e| Arc::new(e.clone()))
                .collect(),
            false => Vec::new(),
        };
        let runs = self.store.append_all(envelopes).await?;
        if runs > 0 {
            self.wake.notify_one();
        }
        if !cancels.is_empty() {
            self.cancel_matching(&cancels).await;
        }
        Ok(())
    }

    /// Reports a finished invocation (`ctx.invoke`, the invoked run's event) to the run
    /// waiting for it, before the outcome is recorded; the report's id is derived from
    /// the invocation, so a repeat after a crash stores nothing new.
    async fn report_invocation(&self, invocation: crate::event::EventId, result: &OutcomeKind) {
        let data = match result {
            OutcomeKind::Completed(output) => {
                serde_json::json!({ "invocation": invocation, "ok": output })
            }
            OutcomeKind::Failed(error) => {
                serde_json::json!({ "invocation": invocation, "error": error })
            }
            OutcomeKind::Cancelled(reason) => {
                serde_json::json!({ "invocation": invocation, "cancelled": reason })
            }
            _ => return,
        };
        let id = crate::event::EventId::invocation_result(invocation);
        let envelope = crate::event::Envelope::internal(
            crate::function::INVOKE_RESULT_EVENT,
            data.to_string(),
            id,
        );
        self.store_internal(envelope, None, "an invocation's result")
            .await;
    }

    /// Stores an event of the runtime's own, retrying until the store takes it (the run's
    /// outcome waits meanwhile, holding its slot) or shutdown begins.
    pub(crate) async fn store_internal(
        &self,
        envelope: crate::event::Envelope,
        to: Option<u32>,
        what: &str,
    ) {
        let mut failures = 0u32;
        loop {
            let stored = match to {
                Some(function) => self.store.append_to(envelope.clone(), function).await,
                None => self.store.append(envelope.clone()).await,
            };
            match stored {
                Ok(_) => {
                    self.wake.notify_one();
                    return;
                }
                Err(e) if self.stopping.load(Ordering::Acquire) => {
                    tracing::error!(error = %e, "fanfare: could not store {what} before shutdown");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let delay =
                        Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5))
                            .delay(failures.min(10));
                    tracing::error!(error = %e, retry_in = ?delay, "fanfare: could not store {what}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Queues the `on_failure` handler's run for a run that failed for good, before the
    /// failure is recorded: should the process die in between, the run fails again and
    /// the handler's event (its id derived from the run) is not stored twice.
    async fn start_failure_handler(
        &self,
        run: &ClaimedRun,
        function: &str,
        handler: u32,
        error: &str,
    ) {
        let decode = |e: &crate::event::Envelope| {
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap_or(serde_json::Value::Null)
        };
        // A batch run fails with its batch: the handler gets it whole.
        let event = if run.batch.is_empty() {
            decode(&run.event)
        } else {
            serde_json::json!({
                "events": run.batch.iter().map(|e| decode(e)).collect::<Vec<_>>(),
                "ids": run.batch.iter().map(|e| e.id).collect::<Vec<_>>(),
            })
        };
        let data = serde_json::json!({
            "function_id": function,
            "run_id": run.run_id,
            "event_id": run.event.id,
            "error": error,
            "attempts": run.attempt + 1,
            "event": event,
        });
        let id = crate::event::EventId::for_step(run.run_id, "fanfare:on-failure");
        let mut envelope =
            crate::event::Envelope::internal(crate::function::FAILURE_EVENT, data.to_string(), id);
        // The handler's run is in the failed run's trace.
        envelope.trace = run.event.trace;
        self.store_internal(envelope, Some(handler), "the on_failure handler's event")
            .await;
    }

    /// Renews the leases of the runs this process executes, every third of a lease, for
    /// stores that lease runs.
    pub async fn heartbeat(self: Arc<Self>) {
        let Some(lease) = self.store.lease() else {
            return;
        };
        let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let runs: Vec<RunKey> = self.inflight().keys().collect();
            if runs.is_empty() {
                continue;
            }
            match self.store.renew(runs).await {
                // Cancelled by another process: they stop at their next step.
                Ok(marked) => {
                    for (key, reason) in marked {
                        self.mark_cancelled(key, reason);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fanfare: lease heartbeat failed; runs may be taken over")
                }
            }
        }
    }

    /// Aborts every executing run and returns its key, for the store to release.
    pub fn abort_inflight(&self) -> Vec<RunKey> {
        let mut inflight = self.inflight();
        self.marked.store(false, Ordering::Release);
        inflight.abort_all()
    }
}

/// How an attempt's future ended.
enum Ended {
    /// The function returned.
    Returned(crate::error::Result<serde_json::Value>),
    /// A step asked to stop here (a sleep, a wait, a cancellation).
    Suspended(Suspend),
}

/// Catches a panic of the function so it fails that attempt only.
struct CatchUnwind(crate::function::HandlerFuture);

impl Future for CatchUnwind {
    type Output = crate::error::Result<serde_json::Value>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic payload".to_string());
                Poll::Ready(Err(Error::new(
                    ErrorKind::Panic,
                    format_args!("the function panicked: {message}"),
                )))
            }
        }
    }
}

/// Resolves with the reason at the `finish` deadline, if there is one; never otherwise.
/// (The timer is boxed: most functions have no deadline, and every run's task holds this.)
async fn finish_timer(finish: Option<(u64, String)>) -> String {
    match finish {
        Some((deadline_ms, reason)) => {
            let left = Duration::from_millis(deadline_ms.saturating_sub(now_millis()));
            Box::pin(tokio::time::sleep(left)).await;
            reason
        }
        None => std::future::pending().await,
    }
}
