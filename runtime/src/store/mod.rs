//! Where events and runs live. One trait, one file per backend.
//!
//! The engine speaks to a store in batches: it appends an event (the store creates one
//! run per subscribed function, atomically), claims up to N due runs, and records the
//! outcomes of many runs at once.

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod handoff;
pub(crate) mod memory;
#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
mod plans;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod retention;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use crate::error::Result;
use crate::event::{Envelope, EventId, RunId};
pub(crate) use crate::inspect::{RunCounts, RunFilter};
pub(crate) use crate::metrics::{FunctionQueue, QueueStats};
pub(crate) use crate::stored_events::EventFilter;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a runtime's builder tells a durable store.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // lease, execute: PostgreSQL's
#[derive(Clone, Debug)]
pub(crate) struct StoreOptions {
    pub app: String,
    pub retention: retention::Retention,
    pub group_commit: bool,
    pub lease: Duration,
    pub execute: bool,
}

/// A duration in milliseconds for SQL, saturating far below `i64::MAX` so that adding it
/// to a timestamp cannot overflow (a `Duration::MAX` backoff is a thousand centuries).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn sql_millis(d: Duration) -> i64 {
    d.as_millis().min(1 << 52) as i64
}

/// Events sent by this process, kept decoded (with their typed value) until their local
/// runs are claimed, so those runs skip reading and deserializing the event. Bounded.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Default)]
pub(crate) struct EventCache {
    events: std::collections::HashMap<EventId, (Arc<Envelope>, usize)>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl EventCache {
    /// Most events kept.
    const MAX: usize = 65_536;

    /// Keeps `event` for the `runs` runs of it this process may claim, if there is room.
    pub fn keep(&mut self, event: Arc<Envelope>, runs: usize) {
        if runs > 0 && self.events.len() < Self::MAX {
            self.events.insert(event.id, (event, runs));
        }
    }

    /// The event, for one of its runs being claimed.
    pub fn take(&mut self, id: &EventId) -> Option<Arc<Envelope>> {
        let (envelope, left) = self.events.get_mut(id)?;
        let envelope = Arc::clone(envelope);
        *left -= 1;
        if *left == 0 {
            self.events.remove(id);
        }
        Some(envelope)
    }

    /// Takes in what `other` keeps (events of a batch, once all of it is stored).
    #[cfg(feature = "sqlite")]
    pub fn absorb(&mut self, other: EventCache) {
        for (_, (event, runs)) in other.events {
            if self.events.len() >= Self::MAX {
                break;
            }
            self.events.insert(event.id, (event, runs));
        }
    }

    #[cfg(feature = "sqlite")]
    pub fn clear(&mut self) {
        self.events.clear();
    }
}

/// The store's answer from rows of (function, due runs, earliest due time) read at
/// `now` (ms, the store's clock) with `limit`: the SQL stores' translation.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn queue_stats_of(rows: Vec<(String, i64, i64)>, now: i64, limit: usize) -> QueueStats {
    let read: i64 = rows.iter().map(|r| r.1).sum();
    QueueStats {
        truncated: read >= limit as i64,
        functions: rows
            .into_iter()
            .map(|(function, due, oldest)| FunctionQueue {
                function,
                due: due.max(0) as u64,
                oldest_due_age: Duration::from_millis(now.saturating_sub(oldest).max(0) as u64),
            })
            .collect(),
    }
}

/// A boxed future borrowing the store.
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What [`Store::record`] returns.
pub(crate) type RecordFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<(), RecordError>> + Send + 'a>>;

/// A failed [`Store::record`]: why, and the outcomes it did not write.
pub(crate) struct RecordError {
    pub error: crate::error::Error,
    pub outcomes: Vec<Outcome>,
}

/// Identifies a run inside one store (a slab slot, a row id).
pub(crate) type RunKey = u64;

/// The backend contract the engine runs on.
pub(crate) trait Store: Send + Sync + 'static {
    /// Stores the event and one queued run per subscribed function, atomically.
    /// Returns the number of runs created (the memory store may count the runs of an
    /// event it already has: the engine only asks whether there are any).
    fn append(&self, event: Envelope) -> StoreFuture<'_, usize>;

    /// Stores several events, each as [`append`](Store::append) would, in one
    /// transaction: all of them or, on an error, none. Returns the number of runs created.
    fn append_all(&self, events: Vec<Envelope>) -> StoreFuture<'_, usize>;

    /// Stores the event with a run of one function of this process only (an
    /// `on_failure` handler), unless an event with its id is already stored.
    fn append_to(&self, event: Envelope, function: u32) -> StoreFuture<'_, usize>;

    /// Marks up to `max` due runs as running and hands them over.
    fn claim(&self, max: usize) -> StoreFuture<'_, Claim>;

    /// Records the outcomes of finished attempts. On failure the outcomes come back, to
    /// be written again.
    fn record(&self, outcomes: Vec<Outcome>) -> RecordFuture<'_>;

    /// Puts running runs back in the queue without counting the attempt.
    fn release(&self, runs: Vec<RunKey>) -> StoreFuture<'_, ()>;

    /// Registers a run's wait for an event, or resolves it at once: from a step already
    /// stored, an expired deadline (`null`), or a matching event sent since
    /// `spec.since_ms` (the lookback). Events appended later resolve a pending wait.
    fn wait(&self, run: RunKey, spec: WaitSpec) -> StoreFuture<'_, WaitState>;

    /// Stores a completed step of a running run, durably, before the run goes on; refuses
    /// it for a run marked cancelled (the step's result is discarded, the run stops).
    fn save_step(&self, run: RunKey, step: StepRecord) -> StoreFuture<'_, Saved>;

    /// Cancels a run (see [`Cancel`]). A queued, sleeping or waiting run is cancelled at
    /// once: its pending wait is removed and its flow-control place given up (slots given
    /// back and held runs promoted, as when a run ends). A running one is marked: `record`
    /// turns its next retry, sleep or wait into a cancellation, and `save_step` refuses
    /// its steps. The reason is what [`RunInfo::reason`] shows.
    fn cancel(&self, run: RunId, reason: String) -> StoreFuture<'_, Cancel>;

    /// How long a claim lasts without renewal, for stores that lease runs to processes
    /// (default: no lease).
    fn lease(&self) -> Option<Duration> {
        None
    }

    /// Renews the leases of runs this process is executing (called every third of the
    /// lease with exactly those runs, so a run claimed by a request whose answer was lost
    /// is not kept alive by it). Returns those of them marked cancelled, with the reasons:
    /// another process cancelled them.
    fn renew(&self, _runs: Vec<RunKey>) -> StoreFuture<'_, Vec<(RunKey, String)>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Up to `limit` runs of this app's function `function` that have not finished
    /// (queued, held, running, sleeping, waiting), with their events, oldest first: what
    /// `cancel_on` looks through when a cancelling event arrives.
    fn unfinished(&self, function: u32, limit: usize) -> StoreFuture<'_, Vec<Unfinished>>;

    /// Up to `limit` stored events named one of `names`, sent at `since_ms` or later,
    /// oldest first: how a process learns of events other processes sent (`cancel_on` on
    /// PostgreSQL). Stores whose events all pass through this process's engine answer
    /// nothing (the default).
    fn events_named(
        &self,
        _names: Vec<String>,
        _since_ms: u64,
        _limit: usize,
    ) -> StoreFuture<'_, Vec<Arc<Envelope>>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// The due runs (queued and due now, waiting for a worker) by function, with the age
    /// of each function's oldest: reads at most `limit` of them, oldest first, and says
    /// so when it stopped there. What the queue gauges of
    /// [`Runtime::metrics`](crate::Runtime::metrics) show; every store reads the index
    /// its claims read, so the cost is O(min(due runs, `limit`)) whatever the backlog.
    /// PostgreSQL: this app's runs; SQLite: every function of the file.
    fn queue_stats(&self, limit: usize) -> StoreFuture<'_, QueueStats>;

    /// One run, or `None` for an unknown run.
    fn run(&self, run: RunId) -> StoreFuture<'_, Option<RunInfo>>;

    /// The runs of one event, or `None` for an unknown event.
    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>>;

    /// Up to `limit` runs `filter` selects, newest first (by run id: UUIDv7s sort by
    /// creation time), with their steps. Its status condition reads as [`StatusWhere`].
    fn list<'a>(&'a self, filter: &'a RunFilter, limit: usize) -> StoreFuture<'a, Vec<RunInfo>>;

    /// One stored event, or `None`.
    fn event(&self, id: EventId) -> StoreFuture<'_, Option<Arc<Envelope>>>;

    /// Up to `limit` stored events `filter` selects, newest first by `(ts, id)`; `None`
    /// when its cursor names an event not stored.
    fn events<'a>(
        &'a self,
        filter: &'a EventFilter,
        limit: usize,
    ) -> StoreFuture<'a, Option<Vec<Arc<Envelope>>>>;

    /// How many runs of each function of `functions` (by id, in any app) the store
    /// keeps, by status, in the order of `functions`. Reads each function's runs
    /// (`(function_id, run_id)` index entries and rows) on the SQL stores.
    fn count_runs(&self, functions: Vec<String>) -> StoreFuture<'_, Vec<RunCounts>>;

    /// Queues a new run of a finished run's function for its event (see [`Replay`]):
    /// flow flags `ADMITTED | ENTERED` (past debounce, rate limit, throttle, filter and
    /// idempotency; concurrency still applies), `replay_of` the original. Refused for a
    /// run that has not finished, and for one of a batch.
    fn replay(&self, run: RunId) -> StoreFuture<'_, Replay>;

    /// Gives the store the engine's slots, for a store that claims runs of this process
    /// as it stores them (see [`Slots`]; default: it does not).
    fn attach(&self, _slots: std::sync::Weak<dyn Slots>) {}

    /// Releases what the store holds (a database file and its lock, connections,
    /// background tasks), once the runtime has stopped using it. Later calls fail with
    /// [`ErrorKind::ShutDown`](crate::ErrorKind::ShutDown). The memory store keeps its
    /// contents readable.
    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What a closed store answers.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn closed(store: &str) -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::ShutDown,
        format_args!("the runtime is shut down: its {store} store is closed"),
    )
}

/// The engine's free slots, for a store that claims runs as it stores them: a send
/// whose runs this process executes marks them running in the send's own statement, as
/// a claim would, when the process has free slots for them, and hands them to the
/// engine once committed. That saves the claim's statement, and the claim's write of
/// each run. The store reserves the slots before the statement and hands the runs over
/// with the reservation after it; those it did not claim go free again.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // only PostgreSQL claims at sends
pub(crate) trait Slots: Send + Sync {
    /// Reserves up to `want` free slots; returns how many it reserved (none once the
    /// engine is stopping).
    fn reserve(&self, want: usize) -> usize;

    /// Starts `runs`, claimed in slots of a reservation of `reserved` (the slots left go
    /// free). Runs that come after shutdown began are released instead.
    fn hand(self: Arc<Self>, runs: Vec<ClaimedRun>, reserved: usize);
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use handoff::{Attached, Handoff};

/// Whether a send may store a run of `def` claimed (`Slots`): only a function without
/// flow control, whose gate a claim alone passes.
#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
pub(crate) fn claimed_at_send(def: &crate::function::FunctionDef) -> bool {
    def.flow().is_none()
}

/// What one claim returned.
pub(crate) struct Claim {
    pub runs: Vec<ClaimedRun>,
    /// When the earliest delayed run becomes due, if there is one.
    pub next_due: Option<Instant>,
    /// The functions (registry indexes) of the runs this claim's flow control skipped
    /// (`Verdict::Skip`), one entry per run, for the metrics.
    pub skipped: Vec<u32>,
}

/// A run handed to the engine to execute one attempt of.
pub(crate) struct ClaimedRun {
    pub key: RunKey,
    pub run_id: RunId,
    /// Index of the function in the runtime's registry.
    pub function: u32,
    /// 0 on the first attempt.
    pub attempt: u32,
    pub event: Arc<Envelope>,
    /// The steps this run completed in earlier attempts, in the order they ran.
    pub steps: Vec<StepRecord>,
    /// The events of the batch the run executes (`batch(…)`), oldest first; empty
    /// for a run of one event.
    pub batch: Vec<Arc<Envelope>>,
    /// Why the run was cancelled, if it was marked while queued or running (its last
    /// attempt was interrupted, or another app's process cancelled it): it is recorded
    /// cancelled without executing.
    pub cancel: Option<String>,
}

impl ClaimedRun {
    /// A run its send stored claimed (`Slots`): its first attempt, with nothing done yet.
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub fn sent(key: RunKey, run_id: RunId, function: u32, event: Arc<Envelope>) -> ClaimedRun {
        ClaimedRun {
            key,
            run_id,
            function,
            attempt: 0,
            event,
            steps: Vec::new(),
            batch: Vec::new(),
            cancel: None,
        }
    }
}

/// A run that has not finished, as [`Store::unfinished`] lists it.
pub(crate) struct Unfinished {
    pub run_id: RunId,
    pub event: Arc<Envelope>,
}

/// What [`Store::save_step`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Saved {
    /// The step is stored.
    Stored,
    /// The run is marked cancelled, for this reason: the step was not stored.
    Cancelled(String),
}

/// What [`Store::replay`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// No run has this id.
    Unknown,
    /// The run has not finished: its status.
    Unfinished(RunStatus),
    /// The run belongs to a batch (`flags::BATCHED`).
    Batched,
    /// A new run is queued: its id.
    Replayed(RunId),
}

/// A [`RunStatus`] as the SQL stores keep it, for filtering: the status codes it spans,
/// and the further conditions on the run's suspension and skip flag. The one
/// translation every SQL store renders.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct StatusWhere {
    /// Status codes (0 queued, 1 running, 2 ok, 3 failed, 4 held, 5 cancelled).
    pub codes: &'static [i16],
    /// `Some(0)`: not suspended; `Some(1)`: sleeping; `Some(2)`: waiting.
    pub suspension: Option<u8>,
    /// `Some(skipped)`: the `SKIPPED` flow flag's value.
    pub skipped: Option<bool>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl StatusWhere {
    pub fn of(status: RunStatus) -> StatusWhere {
        let (codes, suspension, skipped): (&'static [i16], _, _) = match status {
            RunStatus::Queued => (&[0, 4], Some(0), None),
            RunStatus::Running => (&[1], None, None),
            RunStatus::Sleeping => (&[0], Some(1), None),
            RunStatus::Waiting => (&[0], Some(2), None),
            RunStatus::Completed => (&[2], None, Some(false)),
            RunStatus::Skipped => (&[2], None, Some(true)),
            RunStatus::Failed => (&[3], None, None),
            RunStatus::Cancelled => (&[5], None, None),
        };
        StatusWhere {
            codes,
            suspension,
            skipped,
        }
    }
}

/// A run's status from its SQL status code, suspension (0 none, 1 sleeping, 2 or more
/// waiting) and `SKIPPED` flow flag: [`StatusWhere`] read backwards.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn status_of_code(code: i64, suspension: i64, skipped: bool) -> RunStatus {
    match code {
        0 if suspension == 1 => RunStatus::Sleeping,
        0 if suspension >= 2 => RunStatus::Waiting,
        0 | 4 => RunStatus::Queued,
        1 => RunStatus::Running,
        2 if skipped => RunStatus::Skipped,
        2 => RunStatus::Completed,
        5 => RunStatus::Cancelled,
        _ => RunStatus::Failed,
    }
}

/// Where a list's statement reads runs of one status code (or of all) from, in run id
/// order: a condition added to the others (`None`: none), and the `ORDER BY` that walks
/// it in run id order, newest first.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type ListSource = (Option<String>, &'static str);

/// The statement of [`Store::list`] for `filter`, in a SQL store's words: `columns`
/// selected from `fanfare_runs`; `param` names the placeholder of each parameter, asked
/// for `"limit"` first, then `"function"`, `"event"`, `"from"`, `"below"` (those the
/// filter sets, in this order); `status` renders one status code's condition, and
/// `sources` says where runs of one status code (`None`: of any) are read from. Newest
/// first: one index range per status code and source, each ordered and limited, merged.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn list_statement(
    filter: &RunFilter,
    columns: &str,
    mut param: impl FnMut(&str) -> String,
    status: impl Fn(i16, &StatusWhere) -> String,
    sources: impl Fn(Option<(i16, &StatusWhere)>) -> Vec<ListSource>,
) -> String {
    let limit = param("limit");
    let mut conditions = Vec::new();
    for (set, name, condition) in [
        (filter.function.is_some(), "function", "function_id ="),
        (filter.event.is_some(), "event", "event_id ="),
        (filter.from().is_some(), "from", "run_id >="),
        (filter.below().is_some(), "below", "run_id <"),
    ] {
        if set {
            conditions.push(format!("{condition} {}", param(name)));
        }
    }
    let select = |status: Option<String>, (source, order): ListSource| {
        let all: Vec<&str> = status
            .iter()
            .chain(source.iter())
            .map(String::as_str)
            .chain(conditions.iter().map(String::as_str))
            .collect();
        let mut sql = format!("SELECT {columns} FROM fanfare_runs");
        if !all.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&all.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
        sql
    };
    let mut parts = Vec::new();
    match filter.status {
        None => {
            for source in sources(None) {
                parts.push(select(None, source));
            }
        }
        Some(s) => {
            let s = StatusWhere::of(s);
            for &code in s.codes {
                for source in sources(Some((code, &s))) {
                    parts.push(select(Some(status(code, &s)), source));
                }
            }
        }
    }
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let parts: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| format!("SELECT * FROM ({part}) AS p{i}"))
        .collect();
    format!(
        "{} ORDER BY run_id DESC LIMIT {limit}",
        parts.join(" UNION ALL ")
    )
}

/// What [`Store::cancel`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// No run has this id.
    Unknown,
    /// The run had finished: its status, unchanged.
    Finished(RunStatus),
    /// The run was queued, sleeping or waiting: it is cancelled. `invocation` is the
    /// event of a run started by `ctx.invoke`, whose caller must be told; `function`
    /// the run's function's registry index, when it is this process's (the metrics).
    Cancelled {
        invocation: Option<EventId>,
        function: Option<u32>,
    },
    /// An attempt is executing (here or in another process): the run is marked. It stops
    /// at its next step or suspension point, and is recorded cancelled then.
    Marked(RunKey),
    /// Queued for a slot, a batch or a debounce of a function this process does not
    /// have (another app's, on PostgreSQL): marked, and cancelled without executing
    /// when a process of its app takes it.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    Pending,
}

/// What a run waits for (`ctx.wait_for_event`).
#[derive(Clone, Debug)]
pub(crate) struct WaitSpec {
    /// The step's position and id.
    pub seq: u32,
    pub step_id: String,
    /// The awaited event's name.
    pub event: String,
    /// A field of the awaited event's data, and the value it must have.
    pub matching: Option<(String, serde_json::Value)>,
    /// When the wait times out (unix ms).
    pub deadline_ms: u64,
    /// Events sent since then count too (unix ms): the lookback.
    pub since_ms: u64,
    /// The awaited event's id, when it is known in advance (an invocation's result):
    /// looked up directly instead of searched for.
    pub event_id: Option<EventId>,
}

impl WaitSpec {
    /// Whether an event's data (JSON) is what this wait is for.
    pub fn matches(&self, data: &str) -> bool {
        match &self.matching {
            None => true,
            Some((field, value)) => field_of(data, field).is_some_and(|v| v == *value),
        }
    }
}

/// The value of `field` in an event's data (JSON), if it has one: what waits and
/// `cancel_on` match on.
pub(crate) fn field_of(data: &str, field: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()?
        .get(field)
        .cloned()
}

/// Where a wait stands.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WaitState {
    /// The step's output: the awaited event's data, or `null` on timeout.
    Resolved(String),
    /// Registered: the run suspends until the event or the deadline (unix ms, as first
    /// registered).
    Pending(u64),
}

/// A completed step, as stored: its output is returned instead of running it again.
#[derive(Clone, Debug)]
pub(crate) struct StepRecord {
    /// Position among the run's steps.
    pub seq: u32,
    /// The step id, with a `:n` suffix for its n-th repetition.
    pub id: String,
    /// The step's output, JSON.
    pub output: String,
    pub started_ms: u64,
    pub completed_ms: u64,
}

impl StepRecord {
    pub fn info(&self) -> StepInfo {
        StepInfo {
            id: self.id.clone(),
            started_at_ms: self.started_ms,
            completed_at_ms: self.completed_ms,
        }
    }
}

/// A completed step of a run, as [`RunInfo::steps`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepInfo {
    /// The step id (`id:1`, `id:2`, … for repetitions of one id).
    pub id: String,
    /// When the step started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it completed.
    pub completed_at_ms: u64,
}

/// A failed attempt of a run, as [`RunInfo::failed_attempts`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptInfo {
    /// Which attempt it was: 1 for the first.
    pub attempt: u32,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it ended.
    pub ended_at_ms: u64,
    /// Why it failed: the error the function returned, its panic, or its timeout.
    pub error: String,
}

/// The result of one attempt, as decided by the engine.
pub(crate) struct Outcome {
    pub key: RunKey,
    /// Index of the run's function in the runtime's registry.
    pub function: u32,
    pub result: OutcomeKind,
    /// When a failed attempt ([`OutcomeKind::failure`]) started and ended, in ms since
    /// the Unix epoch, stored with its error; zero for other outcomes.
    pub started_ms: u64,
    pub ended_ms: u64,
}

#[derive(Clone)]
pub(crate) enum OutcomeKind {
    Completed(serde_json::Value),
    Retry {
        delay: Duration,
        error: String,
    },
    /// Suspended by a durable sleep: queued again for `delay` from now, without a task,
    /// and without counting an attempt.
    Sleep {
        delay: Duration,
    },
    /// Suspended by `ctx.wait_for_event`: queued again at the deadline, or as soon as
    /// the awaited event arrives; without a task and without counting an attempt.
    Wait {
        deadline_ms: u64,
        /// The waiting step's position: a run whose stored steps reach past it was
        /// resumed while this outcome was on its way (PostgreSQL reads it).
        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        seq: u32,
    },
    Failed(String),
    /// Stopped by a cancellation, for this reason (see [`Store::cancel`]).
    Cancelled(String),
}

impl OutcomeKind {
    /// The error of an attempt that failed (retried or for good): such an attempt is
    /// kept in the run's history ([`RunInfo::failed_attempts`]).
    pub fn failure(&self) -> Option<&str> {
        match self {
            OutcomeKind::Retry { error, .. } | OutcomeKind::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the run executes again after this outcome (a retry, a sleep, a wait). The
    /// rule every store applies when it records the outcome of a run marked cancelled:
    /// such an outcome becomes [`OutcomeKind::Cancelled`], with the mark's reason; a
    /// completion or a failure for good stands (its work was done, or it failed).
    /// PostgreSQL applies it in its record statement, where the mark is read.
    pub fn resumes(&self) -> bool {
        matches!(
            self,
            OutcomeKind::Retry { .. } | OutcomeKind::Sleep { .. } | OutcomeKind::Wait { .. }
        )
    }
}

/// One run of an event, as [`crate::Runtime::runs`] reports it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run's id.
    pub run_id: RunId,
    /// The event the run belongs to.
    pub event_id: EventId,
    /// That event's name.
    pub event_name: String,
    /// The app whose function the run executes (see `Builder::app`).
    pub app: String,
    /// The id of the function the run executes.
    pub function_id: String,
    /// Where the run is.
    pub status: RunStatus,
    /// Attempts started so far, including one running now.
    pub attempts: u32,
    /// The error of the latest failed attempt.
    pub last_error: Option<String>,
    /// Every attempt that failed, oldest first, with its error and timing (retried
    /// ones, and the last one of a failed run). A completed run's successful attempt,
    /// or one running now, is not listed: [`attempts`](Self::attempts) counts it.
    pub failed_attempts: Vec<AttemptInfo>,
    /// What the function returned, once completed (`None` for `()`).
    pub output: Option<serde_json::Value>,
    /// The steps completed so far, in the order they ran.
    pub steps: Vec<StepInfo>,
    /// Why a queued run is held back by flow control ("waiting for a concurrency slot",
    /// "throttled"), why a run was [`RunStatus::Skipped`], or who or what cancelled a
    /// [`RunStatus::Cancelled`] one ("cancelled by `Runtime::cancel`").
    pub reason: Option<String>,
    /// When a queued run may start at the earliest (a throttle's or a retry's delay),
    /// in milliseconds since the Unix epoch, if that is in the future.
    pub not_before_ms: Option<u64>,
    /// When the run was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The run this one replays ([`Runtime::replay`](crate::Runtime::replay)).
    pub replay_of: Option<RunId>,
    /// What a [`RunStatus::Waiting`] run waits for (`ctx.wait_for_event`).
    pub waiting_for: Option<WaitingFor>,
}

/// The event a waiting run waits for, as [`RunInfo::waiting_for`] shows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WaitingFor {
    /// The awaited event's name.
    pub event: String,
    /// A field of its data, and the value it must have (`match_field`).
    pub matching: Option<(String, serde_json::Value)>,
    /// When the wait times out (and the step returns `None`), in ms since the Unix epoch.
    pub timeout_at_ms: u64,
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunStatus {
    /// Waiting for a worker: not started yet, or waiting for its next attempt.
    Queued,
    /// An attempt is executing.
    Running,
    /// Suspended by `ctx.sleep` until its wake time: it holds no worker slot and no task.
    Sleeping,
    /// Suspended by `ctx.wait_for_event` until the event arrives or the wait times out:
    /// it holds no worker slot and no task.
    Waiting,
    /// The function returned `Ok`.
    Completed,
    /// Every attempt failed, or one failed with a non-retriable error. Kept, with its
    /// attempts and last error.
    Failed,
    /// Never executed: its function's `rate_limit` was reached (see [`RunInfo::reason`]).
    Skipped,
    /// Cancelled ([`Runtime::cancel`](crate::Runtime::cancel)); [`RunInfo::reason`] says
    /// by whom or what. It never executes again, and its `on_failure` handler does not
    /// run.
    Cancelled,
}

impl RunStatus {
    /// `true` for [`RunStatus::Completed`], [`RunStatus::Failed`], [`RunStatus::Skipped`]
    /// and [`RunStatus::Cancelled`].
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Skipped | RunStatus::Cancelled
        )
    }

    /// Every status, in the order of a run's life.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Skipped,
        RunStatus::Cancelled,
    ];

    /// The status in lowercase (`"queued"`, `"failed"`, …): how the HTTP API and the
    /// CLI name it; [`str::parse`] reads it back.
    ///
    /// ```
    /// use fanfare::RunStatus;
    /// assert_eq!(RunStatus::Failed.as_str(), "failed");
    /// assert_eq!("failed".parse::<RunStatus>(), Ok(RunStatus::Failed));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`RunStatus::as_str`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl std::fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown run status `{}`: expected one of ", self.0)?;
        for (i, s) in RunStatus::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}`{s}`")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownStatus {}

impl std::str::FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> std::result::Result<RunStatus, UnknownStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}
