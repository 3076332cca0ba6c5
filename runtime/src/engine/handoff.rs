//! Runs a store claimed as it stored them, handed to the engine (`Slots`).
//!
//! A send whose runs this process executes can claim them in the send's own statement
//! (the PostgreSQL store does): the store reserves free slots first, so the runs it
//! claims never exceed the concurrency, and hands the runs over once committed. They
//! start as claimed runs do; the slots of the reservation it did not use go free.

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
            let engine = Arc::clone(&self);
            tokio::spawn(async move {
                if let Err(e) = engine.store.release(release).await {
                    tracing::warn!(error = %e, "fanfare: releasing runs claimed during shutdown failed; they run again once their lease expires");
                }
            });
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
