//! Where events and runs live. One trait, one file per backend.
//!
//! The engine speaks to a store in batches: it appends an event (the store creates one
//! run per subscribed function, atomically), claims up to N due runs, and records the
//! outcomes of many runs at once.

pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use crate::error::Result;
use crate::event::{Envelope, EventId, RunId};
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
    pub retention: Duration,
    pub group_commit: bool,
    pub lease: Duration,
    pub execute: bool,
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
    /// Returns the number of runs created.
    fn append(&self, event: Envelope) -> StoreFuture<'_, usize>;

    /// Marks up to `max` due runs as running and hands them over.
    fn claim(&self, max: usize) -> StoreFuture<'_, Claim>;

    /// Records the outcomes of finished attempts. On failure the outcomes come back, to
    /// be written again.
    fn record(&self, outcomes: Vec<Outcome>) -> RecordFuture<'_>;

    /// Puts running runs back in the queue without counting the attempt.
    fn release(&self, runs: Vec<RunKey>) -> StoreFuture<'_, ()>;

    /// How many `record` calls may run at once (default 1).
    fn parallel_writes(&self) -> usize {
        1
    }

    /// The runs of one event, or `None` for an unknown event.
    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>>;
}

/// What one claim returned.
pub(crate) struct Claim {
    pub runs: Vec<ClaimedRun>,
    /// When the earliest delayed run becomes due, if there is one.
    pub next_due: Option<Instant>,
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
}

/// The result of one attempt, as decided by the engine.
pub(crate) struct Outcome {
    pub key: RunKey,
    pub result: OutcomeKind,
}

pub(crate) enum OutcomeKind {
    Completed(serde_json::Value),
    Retry { delay: Duration, error: String },
    Failed(String),
}

/// One run of an event, as [`crate::Runtime::runs`] reports it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run's id.
    pub run_id: RunId,
    /// The event the run belongs to.
    pub event_id: EventId,
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
    /// What the function returned, once completed (`None` for `()`).
    pub output: Option<serde_json::Value>,
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunStatus {
    /// Waiting for a worker: not started yet, or waiting for its next attempt.
    Queued,
    /// An attempt is executing.
    Running,
    /// The function returned `Ok`.
    Completed,
    /// Every attempt failed, or one failed with a non-retriable error. Kept, with its
    /// attempts and last error.
    Failed,
}

impl RunStatus {
    /// `true` for [`RunStatus::Completed`] and [`RunStatus::Failed`].
    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed)
    }
}
