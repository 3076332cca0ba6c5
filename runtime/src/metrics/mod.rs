//! Metrics: what [`Runtime::metrics`](crate::Runtime::metrics) returns, and its
//! Prometheus text rendering ([`Metrics::to_prometheus`]).
//!
//! Two kinds of figures, from two places:
//!
//! - **Counters** (runs started, completed, failed, retried, skipped, cancelled; the
//!   attempt duration histogram; events sent) count what **this process** did since it
//!   started, as every Prometheus client does: on PostgreSQL each process exports its
//!   own, and a query sums them (`sum by (function) (rate(…))`). The engine bumps them
//!   with relaxed atomics in a table per function allocated at start (`counters.rs`).
//! - **Queue gauges** (runs due, age of the oldest due run) are read from the store when
//!   the snapshot is taken, so they cover every process sharing it: on PostgreSQL the
//!   due runs of this app's functions (every process of the app), on SQLite every
//!   function of the file.
//!
//! A run is **due** when it waits for a worker now: queued (a first attempt, a retry
//! whose backoff has passed, a sleep or wait that has woken) and due at or before now.
//! Runs delayed to later (a delayed send, a backoff, a throttle), held by flow control
//! (waiting for a concurrency slot or a batch), sleeping or waiting, and running runs are
//! not counted. The store reads at most [`QUEUE_SCAN`] due runs, oldest first, so a
//! scrape costs the same with a backlog of a million; past that, the depths are counts
//! among the oldest [`QUEUE_SCAN`] and [`Metrics::queue_truncated`] is set.

mod counters;
mod render;

pub(crate) use counters::{Count, Counters};

use std::time::Duration;

/// Most due runs the store reads for a snapshot's queue gauges (the oldest ones).
pub const QUEUE_SCAN: usize = 100_000;

/// The `event` label under which events are counted whose name no function of this
/// process subscribes to (names can come from outside: bounded cardinality).
pub const OTHER_EVENTS: &str = "other";

/// A snapshot of this process's counters and of the store's queue, as
/// [`Runtime::metrics`](crate::Runtime::metrics) returns it.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize)]
/// # #[event(name = "doc/metrics.ping")]
/// # pub struct Ping { pub n: u32 }
/// #[fanfare::function(trigger = "doc/metrics.ping")]
/// async fn pong(ctx: fanfare::Ctx<Ping>) -> fanfare::Result<()> {
///     Ok(())
/// }
///
/// # #[tokio::main] async fn main() -> fanfare::Result<()> {
/// let rt = fanfare::Runtime::builder().start().await?;
/// let id = rt.send(Ping { n: 1 }).await?;
/// rt.wait(id).await?;
/// let metrics = rt.metrics().await?;
/// let pong = metrics.function("pong").expect("a function of this process");
/// assert_eq!((pong.started, pong.completed), (1, 1));
/// assert_eq!(pong.attempt_duration.count, 1);
/// assert!(metrics
///     .to_prometheus()
///     .contains("fanfare_runs_completed_total{function=\"pong\"} 1\n"));
/// # rt.shutdown().await }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Every function of this process, and any other function with due runs in the
    /// store, by id.
    pub functions: Vec<FunctionMetrics>,
    /// Events this process sent (`Runtime::send`, `ctx.send`), by name: the names some
    /// function of this process subscribes to, by name, then [`OTHER_EVENTS`] last.
    pub events_sent: Vec<EventsSent>,
    /// Whether more than [`QUEUE_SCAN`] runs are due: the queue depths are then counts
    /// among the oldest [`QUEUE_SCAN`] due runs (lower bounds), and a function none of
    /// whose due runs is among them shows none.
    pub queue_truncated: bool,
}

impl Metrics {
    /// The figures of the function with id `id`.
    pub fn function(&self, id: &str) -> Option<&FunctionMetrics> {
        self.functions.iter().find(|f| f.function == id)
    }

    /// Events sent under the label `event` (a subscribed name or [`OTHER_EVENTS`]).
    pub fn sent(&self, event: &str) -> u64 {
        self.events_sent
            .iter()
            .find(|e| e.event == event)
            .map_or(0, |e| e.sent)
    }
}

/// One function's figures.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct FunctionMetrics {
    /// The function's id.
    pub function: String,
    /// Runs whose first attempt began executing the function here (not retries, not
    /// resumptions after a sleep or a wait).
    pub started: u64,
    /// Runs that completed here (the function returned `Ok`).
    pub completed: u64,
    /// Runs that failed for good here (no retries left, or a non-retriable error).
    pub failed: u64,
    /// Attempts that failed here and were scheduled for a retry.
    pub retried: u64,
    /// Runs this process's claims skipped (`rate_limit`, `debounce`, `idempotency`,
    /// `filter`).
    pub skipped: u64,
    /// Runs cancelled here: by `Runtime::cancel` (or `cancel_on`, a timeout) while not
    /// executing, or stopped by a cancellation while executing here.
    pub cancelled: u64,
    /// How long this process's attempts of the function took, until they returned,
    /// suspended (a sleep, a wait) or were stopped.
    pub attempt_duration: Histogram,
    /// Runs due now and waiting for a worker: queued (a first attempt, a retry whose
    /// backoff has passed, a sleep or wait that has woken) and due at or before now; not
    /// the delayed, held, sleeping, waiting or running ones. From the store, every
    /// process's.
    pub queue_due: u64,
    /// How long the oldest due run has been due (zero without due runs).
    pub oldest_due_age: Duration,
}

/// A histogram: cumulative counts per upper bound.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Histogram {
    /// (upper bound in seconds, observations at most that), ascending; the last bound
    /// is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
    /// Observations.
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: counters::BUCKETS_US
                .iter()
                .map(|&le| (le as f64 / 1e6, 0))
                .chain([(f64::INFINITY, 0)])
                .collect(),
            sum_seconds: 0.0,
            count: 0,
        }
    }
}

/// Events sent under one `event` label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventsSent {
    /// The event's name, or [`OTHER_EVENTS`].
    pub event: String,
    /// How many this process sent.
    pub sent: u64,
}

/// What a store reports of its due runs ([`Store::queue_stats`](crate::store::Store::queue_stats)).
#[derive(Debug, Default)]
pub(crate) struct QueueStats {
    /// Functions with due runs.
    pub functions: Vec<FunctionQueue>,
    /// Whether the store stopped reading at its limit.
    pub truncated: bool,
}

/// One function's due runs.
#[derive(Debug)]
pub(crate) struct FunctionQueue {
    /// The function's id.
    pub function: String,
    /// Its due runs (among those read).
    pub due: u64,
    /// How long its oldest due run has been due, by the store's clock.
    pub oldest_due_age: Duration,
}
