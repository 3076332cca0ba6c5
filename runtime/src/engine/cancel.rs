//! Cancelling a run: the store cancels or marks it; the engine stops its attempt if this
//! process executes it, and tells the caller of an invoked run.

use super::Engine;
use crate::error::Result;
use crate::event::RunId;
use crate::store::{Cancel, OutcomeKind, RunKey, RunStatus};
use std::sync::atomic::Ordering;

impl Engine {
    /// Cancels a run for `reason` (what `RunInfo::reason` shows): the entry point of
    /// [`Runtime::cancel`](crate::Runtime::cancel), and of anything else that cancels
    /// runs. Returns the run's status after the call (`None`: no such run):
    /// - queued, sleeping or waiting: cancelled at once (`Cancelled`);
    /// - executing: marked (`Running`). In this process its attempt is flagged at once;
    ///   in another, at that process's next step, outcome or heartbeat. The attempt stops
    ///   at its next step or suspension point, and the run is recorded cancelled then;
    /// - finished: its status, unchanged;
    /// - queued behind another app's flow control (PostgreSQL): marked (`Queued`); a
    ///   process of that app cancels it when it takes it, without executing it.
    ///
    /// The caller of an invoked run (`ctx.invoke`) cancelled at once is told here; one
    /// cancelled while executing is told when its attempt stops.
    ///
    /// It calls the store (and may store an event, an invocation's result): call it from
    /// a task, never from inside a store call such as a send's transaction.
    pub async fn cancel(&self, run: RunId, reason: String) -> Result<Option<RunStatus>> {
        let status = match self.store.cancel(run, reason.clone()).await? {
            Cancel::Unknown => return Ok(None),
            Cancel::Finished(status) => status,
            Cancel::Cancelled {
                invocation,
                function,
            } => {
                tracing::info!(run_id = %run, reason, "fanfare: run cancelled");
                if let Some(function) = function {
                    self.metrics
                        .count(function, crate::metrics::Count::Cancelled);
                }
                if let Some(invocation) = invocation {
                    self.report_invocation(invocation, &OutcomeKind::Cancelled(reason))
                        .await;
                }
                // Slots may have been freed: held runs may be due; `wait` looks again.
                self.wake.notify_one();
                self.progress.send_modify(|n| *n += 1);
                RunStatus::Cancelled
            }
            Cancel::Marked(key) => {
                tracing::info!(run_id = %run, reason, "fanfare: running run marked cancelled");
                self.mark_cancelled(key, reason);
                RunStatus::Running
            }
            Cancel::Pending => RunStatus::Queued,
        };
        Ok(Some(status))
    }

    /// Flags the attempt of a run this process executes as cancelled; nothing if it is
    /// not executing here (another process's, or its outcome is on its way).
    pub(super) fn mark_cancelled(&self, key: RunKey, reason: String) {
        let mut inflight = self.inflight();
        if inflight.contains(key) {
            // The first reason stays.
            inflight.marks.entry(key).or_insert(reason);
            self.marked.store(true, Ordering::Release);
        }
    }

    /// The mark of a run executing here, if it is marked cancelled.
    pub(crate) fn mark_of(&self, key: RunKey) -> Option<String> {
        if !self.marked.load(Ordering::Acquire) {
            return None;
        }
        self.inflight().marks.get(&key).cloned()
    }
}
