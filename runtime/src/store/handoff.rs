//! A store's reservation of the engine's slots for the runs its sends store claimed
//! (`Slots`), shared by the stores that do it: reserved before the sends' transaction,
//! handed over with the runs once it commits, and given back whole on every other path
//! (an error, a dropped future) by a guard.

use super::{ClaimedRun, Slots};
use std::sync::{Arc, Weak};

/// The engine's slots once attached, and the runtime its runs start on (a store's own
/// thread, as SQLite's writer, is outside it).
pub(crate) struct Attached {
    slots: Weak<dyn Slots>,
    runtime: tokio::runtime::Handle,
}

impl Attached {
    /// `None` outside a tokio runtime (the engine attaches from inside one).
    pub fn new(slots: Weak<dyn Slots>) -> Option<Attached> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(Attached { slots, runtime })
    }
}

/// A reservation of slots: when dropped, hands the engine the runs claimed under it
/// ([`commit`](Self::commit); none if the sends did not commit), and the slots left go
/// free again.
pub(crate) struct Handoff {
    engine: Option<(Arc<dyn Slots>, tokio::runtime::Handle)>,
    reserved: usize,
    runs: Vec<ClaimedRun>,
}

impl Handoff {
    /// Reserves up to `want()` slots (none when no engine is attached, without asking
    /// `want`).
    pub fn reserve(attached: Option<&Attached>, want: impl FnOnce() -> usize) -> Handoff {
        let engine = attached.and_then(|a| Some((a.slots.upgrade()?, a.runtime.clone())));
        let reserved = match &engine {
            Some((slots, _)) => match want() {
                0 => 0,
                want => slots.reserve(want),
            },
            None => 0,
        };
        Handoff {
            engine: engine.filter(|_| reserved > 0),
            reserved,
            runs: Vec::new(),
        }
    }

    /// How many runs the sends may claim.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// The sends committed with `runs` claimed: they start when this is dropped.
    pub fn commit(&mut self, runs: Vec<ClaimedRun>) {
        self.runs = runs;
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some((slots, runtime)) = self.engine.take() {
            let _inside = runtime.enter();
            slots.hand(std::mem::take(&mut self.runs), self.reserved);
        }
    }
}
