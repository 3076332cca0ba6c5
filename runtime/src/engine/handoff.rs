//! Runs a store claimed as it stored them, handed to the engine (`Slots`), and the
//! dispatcher's claimed runs, started within the slots those left.
//!
//! A send whose runs this process executes can claim them in the send's own statement
//! (the PostgreSQL and SQLite stores do): the store reserves free slots first, so the
//! runs it claims never exceed the concurrency, and hands the runs over once committed.
//! They start as claimed runs do; the slots of the reservation it did not use go free.

use super::Engine;
use crate::store::{ClaimedRun, RunKey, Slots};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Slots for Engine {
    fn reserve(&self, want: usize) -> usize {
        if want == 0 || self.stopping.load(Ordering::Acquire) {
            return 0;
        }
        let mut inflight = self.inflight();
        let n = want.min(self.concurrency.saturating_sub(inflight.busy()));
        inflight.reserved += n;
        n
    }

    fn hand(self: Arc<Self>, runs: Vec<ClaimedRun>, reserved: usize) {
        let mut release: Vec<RunKey> = Vec::new();
        let unused = reserved.saturating_sub(runs.len());
        let stopping = {
            let mut inflight = self.inflight();
            // Nothing starts once shutdown began (the dispatcher claims nothing from then
            // on either): the runs go back to the queue.
            if inflight.closed || self.stopping.load(Ordering::Acquire) {
                release = runs.iter().map(|r| r.key).collect();
            } else if !runs.is_empty() {
                self.start(&mut inflight, runs);
            }
            // After the runs are in flight: the slots never look free in between.
            inflight.reserved = inflight.reserved.saturating_sub(reserved);
            !release.is_empty() || inflight.closed || self.stopping.load(Ordering::Acquire)
        };
        if !release.is_empty() {
            self.release_later(release);
        }
        if stopping {
            // Shutdown waits for reserved slots as for runs.
            self.progress.send_modify(|n| *n += 1);
        }
        if unused > 0 {
            // The dispatcher may be waiting for a free slot.
            self.wake.notify_one();
        }
    }
}

impl Engine {
    /// Starts runs the dispatcher claimed, as many as the slots free now allow: sends
    /// that claimed runs while the claim was in flight (`Slots`) may have taken some of
    /// the slots it was sized for. The rest go back to the queue, so that the process
    /// never executes more runs at once than its concurrency. (Reserving the claim's
    /// slots while it is in flight instead left the sends of a busy process few to claim
    /// runs for: 15–25 % fewer runs/s on PostgreSQL in `bench`.)
    pub(super) fn start_claimed(self: &Arc<Self>, mut runs: Vec<ClaimedRun>) {
        let excess = {
            let mut inflight = self.inflight();
            let room = self.concurrency.saturating_sub(inflight.busy());
            let excess = runs.split_off(runs.len().min(room));
            if !runs.is_empty() {
                self.start(&mut inflight, runs);
            }
            excess
        };
        if !excess.is_empty() {
            self.release_later(excess.iter().map(|r| r.key).collect());
        }
    }

    /// Puts claimed runs that will not start here back in the queue, without counting
    /// an attempt.
    fn release_later(self: &Arc<Self>, runs: Vec<RunKey>) {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = engine.store.release(runs).await {
                tracing::warn!(error = %e, "fanfare: putting claimed runs back in the queue failed; they run once their lease expires, or at the next start");
            }
        });
    }
}
