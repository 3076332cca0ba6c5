//! Retention: the rule every durable store applies to its history.
//!
//! An event is deleted, with its runs and their steps, once **all** its runs completed
//! (or were cancelled, or skipped) longer ago than the retention; an event with a failed
//! run stays (the dead-letter set), and so does every run of it. An event no function subscribed to goes once it is
//! older than the retention.
//!
//! Pruning must cost O(its batch), never O(history), and never hold what a claim needs.
//! So it walks two indexes in time order, a small batch at a time, from where it last
//! stopped (a [`Marks`]):
//! - completed and cancelled runs by `(finished_at, id)`: reaching an event's last completed run, the
//!   event goes (its other runs finished earlier, so they were passed already); a run
//!   whose event still has an unfinished or failed run is passed over, and that event is
//!   deleted when the walk reaches its last run;
//! - events by `(ts, id)`: those without any run go.
//!
//! While the history is behind, batches follow each other, but pruning takes at most a
//! fifth of the store's time ([`pause`]): a large history past the retention (after an
//! outage, or a retention shortened) is worked off without starving the workload.
//!
//! The marks live in the process: a restart walks the kept history once more.

use std::time::Duration;
use uuid::Uuid;

/// Rows one pruning statement reads at most.
pub(crate) const BATCH: i64 = 1000;

/// How often to prune while caught up: often enough to keep the history within half of
/// the retention past it.
pub(crate) fn every(retention: Duration) -> Duration {
    Duration::from_secs(30)
        .min(retention / 2)
        .max(Duration::from_millis(10))
}

/// How long to wait before the next batch, after one that took `took`: while the history
/// is behind, at least `BEHIND` and four times the batch's own time, so that pruning takes
/// at most a fifth of the store's time (on SQLite, of its one writer) and the workload
/// keeps the rest; caught up, `every(retention)`.
pub(crate) fn pause(behind: bool, took: Duration, retention: Duration) -> Duration {
    if behind {
        (took * 4).max(BEHIND)
    } else {
        every(retention)
    }
}

/// The shortest pause between two batches.
const BEHIND: Duration = Duration::from_millis(10);

/// Where pruning got to in each walk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Marks {
    /// The last completed run passed: `(finished_at, row id)`.
    pub run: (i64, i64),
    /// The last event passed: `(ts, id)`.
    pub event: (i64, Uuid),
}

impl Default for Marks {
    fn default() -> Self {
        Marks {
            run: (i64::MIN, i64::MIN),
            event: (i64::MIN, Uuid::nil()),
        }
    }
}

impl Marks {
    /// Moves the marks past a batch; returns whether either walk read a full batch (more
    /// history may be waiting).
    pub fn advance(
        &mut self,
        runs: (i64, Option<(i64, i64)>),
        events: (i64, Option<(i64, Uuid)>),
    ) -> bool {
        if let Some(last) = runs.1 {
            self.run = last;
        }
        if let Some(last) = events.1 {
            self.event = last;
        }
        runs.0 >= BATCH || events.0 >= BATCH
    }
}
