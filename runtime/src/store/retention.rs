//! Retention: the rule every store applies to its history.
//!
//! Each finished run is kept for its **keep** ([`Retention::keep`]): a completed (or
//! cancelled, or skipped) run for the retention (`Builder::retention`), a failed run for
//! the failed retention (`Builder::failed_retention`; the dead-letter set), and never
//! less than the retention, so a failed event is never deleted before a completed one
//! would be. An event is deleted, with its runs and their steps, once **all** its runs
//! finished and each finished longer ago than its keep: an event with a failed run goes
//! once its last failed run finished more than the failed retention ago and its other
//! runs more than the retention ago. An event no function subscribed to goes once it is
//! older than the retention.
//!
//! Pruning must cost O(its batch), never O(history), and never hold what a claim needs.
//! So it walks three indexes in time order, a small batch at a time, from where it last
//! stopped (a [`Marks`]):
//! - completed and cancelled runs by `(finished_at, id)`, past the retention, and
//! - failed runs by `(finished_at, id)`, past the failed retention: reaching an event's
//!   run, the event goes if every run of it is past its keep. The walk that reaches an
//!   event's last run to expire finds the others expired already, so every event is
//!   deleted by one walk or the other; a run whose event still has an unfinished run, or
//!   one within its keep, is passed over;
//! - events by `(ts, id)`: those without any run go.
//!
//! While the history is behind, batches follow each other, but pruning takes at most a
//! fifth of the store's time ([`pause`]): a large history past the retention (after an
//! outage, or a retention shortened) is worked off without starving the workload.
//!
//! The marks live in the process: a restart walks the kept history once more.

// The walks (marks, batches, pauses) are the durable stores'; the memory store applies
// the rule alone.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

use std::time::Duration;
use uuid::Uuid;

/// How long finished runs are kept, by outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Completed, cancelled and skipped runs.
    pub completed: Duration,
    /// Failed runs: never less than `completed`.
    pub failed: Duration,
}

impl Retention {
    /// The builder's two durations; a failed retention shorter than the retention is
    /// raised to it (the longer applies).
    pub fn new(retention: Duration, failed_retention: Duration) -> Self {
        Retention {
            completed: retention,
            failed: failed_retention.max(retention),
        }
    }

    /// How long a run that finished this way is kept.
    pub fn keep(&self, failed: bool) -> Duration {
        if failed {
            self.failed
        } else {
            self.completed
        }
    }
}

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
    /// The last failed run passed: `(finished_at, row id)`.
    pub failed: (i64, i64),
    /// The last event passed: `(ts, id)`.
    pub event: (i64, Uuid),
}

impl Default for Marks {
    fn default() -> Self {
        Marks {
            run: (i64::MIN, i64::MIN),
            failed: (i64::MIN, i64::MIN),
            event: (i64::MIN, Uuid::nil()),
        }
    }
}

impl Marks {
    /// Moves the marks past a batch of each walk (the rows it read, and the last);
    /// returns whether any walk read a full batch (more history may be waiting).
    pub fn advance(
        &mut self,
        runs: (i64, Option<(i64, i64)>),
        failed: (i64, Option<(i64, i64)>),
        events: (i64, Option<(i64, Uuid)>),
    ) -> bool {
        if let Some(last) = runs.1 {
            self.run = last;
        }
        if let Some(last) = failed.1 {
            self.failed = last;
        }
        if let Some(last) = events.1 {
            self.event = last;
        }
        runs.0 >= BATCH || failed.0 >= BATCH || events.0 >= BATCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn failed_runs_are_kept_for_the_failed_retention() {
        let r = Retention::new(HOUR, 24 * HOUR);
        assert_eq!(r.keep(false), HOUR);
        assert_eq!(r.keep(true), 24 * HOUR);
    }

    #[test]
    fn a_failed_retention_shorter_than_the_retention_is_raised_to_it() {
        let r = Retention::new(24 * HOUR, HOUR);
        assert_eq!(r.keep(false), 24 * HOUR);
        assert_eq!(r.keep(true), 24 * HOUR);
        assert_eq!(Retention::new(HOUR, Duration::ZERO).failed, HOUR);
    }

    #[test]
    fn each_walk_moves_its_own_mark_and_a_full_one_asks_for_more() {
        let mut marks = Marks::default();
        let id = Uuid::from_u128(7);
        assert!(!marks.advance((3, Some((10, 1))), (0, None), (2, Some((5, id)))));
        assert_eq!(marks.run, (10, 1));
        assert_eq!(marks.failed, (i64::MIN, i64::MIN));
        assert_eq!(marks.event, (5, id));
        assert!(marks.advance((0, None), (BATCH, Some((20, 4))), (0, None)));
        assert_eq!(marks.run, (10, 1));
        assert_eq!(marks.failed, (20, 4));
        assert_eq!(marks.event, (5, id));
    }
}
