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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use crate::event::{now_millis, Envelope, EventId};
    use crate::function::{FunctionDef, HandlerResult, Registry, RunInput};
    use crate::store::memory::MemoryStore;
    use crate::store::retention::Retention;
    use crate::store::Store;
    use std::time::Duration;

    /// Runs until the test ends.
    fn forever(_: RunInput) -> HandlerResult {
        Ok(Box::pin(std::future::pending()))
    }

    static F: FunctionDef = FunctionDef::for_test("f", &["h/event"], forever);

    /// A claim sized for three free slots returns after a send reserved two of them:
    /// one of its runs starts, the other two go back to the queue.
    #[tokio::test]
    async fn a_claim_starts_only_as_many_runs_as_the_slots_a_send_left() {
        let registry = Arc::new(Registry::new(vec![&F]).unwrap());
        let retention = Retention::new(Duration::from_secs(60), Duration::from_secs(60));
        let store = Arc::new(MemoryStore::new(
            Arc::clone(&registry),
            "app".into(),
            retention,
        ));
        let (engine, _outcomes) = Engine::new(
            Arc::clone(&store) as Arc<dyn Store>,
            registry,
            Backoff::default(),
            3,
            1 << 20,
            Default::default(),
            Default::default(),
        );
        for _ in 0..3 {
            let id = EventId::from_uuid(crate::event::new_uuid(now_millis()));
            let event = Envelope::stored(id, "h/event".into(), "{}".into(), now_millis());
            store.append(event).await.unwrap();
        }
        let claim = store.claim(3).await.unwrap();
        assert_eq!(claim.runs.len(), 3);
        // Meanwhile a send reserved two slots.
        assert_eq!(engine.reserve(2), 2);
        engine.start_claimed(claim.runs);
        assert_eq!(engine.busy(), 3, "one run started, two slots reserved");
        // The two others are queued again, for the next claim.
        let mut again = Vec::new();
        for _ in 0..100 {
            again = store.claim(3).await.unwrap().runs;
            if !again.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|r| r.attempt == 0), "no attempt counted");
    }
}
