//! Flow control in the memory store: the shared rules' states, and the held runs in
//! heaps by function, stage and key.

use super::*;
use crate::flow::rules::{self, flags, Place, Stage, States, Verdict};
use crate::flow::Flow;

/// A queue of held runs: (rank, arrival, slot), smallest first.
type Queue = BinaryHeap<Reverse<(i64, u64, u32)>>;

/// The flow-control state of the store.
#[derive(Default)]
pub(super) struct Book {
    states: States,
    /// Held runs by (function, stage, key).
    held: HashMap<(u32, Stage, String), Queue>,
    arrivals: u64,
    /// The runs of each batch, by the batch's first run.
    batches: HashMap<i64, Vec<u32>>,
    /// Prune idle states when there are more than this.
    prune_at: usize,
}

/// A run's flow-control place.
#[derive(Default)]
pub(super) struct RunFlow {
    pub place: rules::RunFlow,
    pub reason: Option<String>,
    pub not_before_ms: Option<u64>,
}

impl Inner {
    /// Passes a ready run of a flow-controlled function through the gate: `true` when
    /// it may execute now. Otherwise it is skipped, delayed or held, and out of `ready`.
    pub(super) fn gate(
        &mut self,
        slot: u32,
        flow: &'static Flow,
        function: &'static str,
        now: Instant,
    ) -> bool {
        let now_ms = now_millis();
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return false;
        };
        let f = &mut run.flow;
        let was_batched = f.place.flags & flags::BATCHED != 0;
        let keys = rules::prepare(flow, &mut f.place, &run.event);
        let verdict = rules::admit(
            function,
            flow,
            // Rules take 0 for "no run": slot 0 is run 1 to them.
            i64::from(slot) + 1,
            &mut f.place,
            keys.as_ref(),
            now_ms,
            &mut self.book.states,
        );
        f.not_before_ms = None;
        f.reason = match &verdict {
            Verdict::Go => None,
            Verdict::Skip(reason) => Some(reason.clone()),
            Verdict::Delay(at, why) => {
                f.not_before_ms = Some(*at);
                Some(rules::delayed(flow, *why))
            }
            Verdict::Hold(stage) => Some(rules::held(flow, *stage, f.place.ckey.as_deref())),
        };
        let (rank, ckey, batch) = (f.place.rank, f.place.ckey.clone(), f.place.batch);
        if let (false, Some(batch)) = (was_batched, batch) {
            self.book.batches.entry(batch).or_default().push(slot);
        }
        match verdict {
            Verdict::Go => true,
            Verdict::Skip(_) => {
                run.status = RunStatus::Skipped;
                let event = run.event.id;
                self.finish(event, false, now);
                false
            }
            Verdict::Delay(at_ms, _) => {
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms));
                self.delayed.push(Reverse((later(now, wait), slot)));
                false
            }
            // Kept in its batch, finished with the run that executes it.
            Verdict::Hold(Stage::Batch) => false,
            Verdict::Hold(stage) => {
                self.hold(slot, stage, ckey.unwrap_or_default(), rank);
                false
            }
        }
    }

    /// The events of the batch run `slot` executes, if it executes one, in arrival order.
    pub(super) fn batch_events(&self, slot: u32) -> Vec<Arc<Envelope>> {
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return Vec::new();
        };
        let (true, Some(batch)) = (
            run.flow.place.flags & flags::RUNNER != 0,
            run.flow.place.batch,
        ) else {
            return Vec::new();
        };
        // In the order the runs joined: the order of their events' arrival.
        self.book
            .batches
            .get(&batch)
            .into_iter()
            .flatten()
            .filter_map(|&m| self.runs[m as usize].as_ref())
            .map(|r| Arc::clone(&r.event))
            .collect()
    }

    /// Finishes the other runs of the batch run `slot` executed, as it finished.
    pub(super) fn finish_batch(&mut self, slot: u32, failed: Option<&str>, now: Instant) {
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return;
        };
        let (true, Some(batch)) = (
            run.flow.place.flags & flags::RUNNER != 0,
            run.flow.place.batch,
        ) else {
            return;
        };
        let reason = format!("ran in the batch of run {}", run.id);
        for member in self.book.batches.remove(&batch).unwrap_or_default() {
            if member == slot {
                continue;
            }
            let Some(m) = self.runs[member as usize].as_mut() else {
                continue;
            };
            m.status = if failed.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Completed
            };
            m.last_error = failed.map(Into::into);
            m.flow.reason = Some(reason.clone());
            let event = m.event.id;
            self.finish(event, failed.is_some(), now);
        }
    }

    fn hold(&mut self, slot: u32, stage: Stage, key: String, rank: i64) {
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return;
        };
        let key = if stage == Stage::Function {
            String::new()
        } else {
            key
        };
        self.book.arrivals += 1;
        let arrival = self.book.arrivals;
        self.book
            .held
            .entry((run.function, stage, key))
            .or_default()
            .push(Reverse((rank, arrival, slot)));
    }

    /// Gives back the slots of a run whose attempt ended or suspended, and passes them
    /// on to the first held runs.
    pub(super) fn free_slots(&mut self, slot: u32, flow: &'static Flow, function: &'static str) {
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return;
        };
        if run.flow.place.flags & flags::SLOTS == 0 {
            return;
        }
        run.flow.place.flags &= !flags::SLOTS;
        let index = run.function;
        let ckey = run.flow.place.ckey.clone();
        let Book { states, held, .. } = &mut self.book;
        rules::release(function, flow, ckey.as_deref(), states);
        let placed = rules::refill(function, flow, ckey.as_deref(), states, |stage, n| {
            let key = match stage {
                Stage::Key => ckey.clone().unwrap_or_default(),
                Stage::Function | Stage::Batch => String::new(),
            };
            let Some(heap) = held.get_mut(&(index, stage, key.clone())) else {
                return Vec::new();
            };
            let taken: Vec<(i64, u32)> = (0..n)
                .map_while(|_| heap.pop().map(|Reverse((rank, _, slot))| (rank, slot)))
                .collect();
            if heap.is_empty() {
                held.remove(&(index, stage, key));
            }
            taken
        });
        for ((rank, slot), place) in placed {
            let Some(run) = self.runs[slot as usize].as_mut() else {
                continue;
            };
            match place {
                Place::Ready => {
                    run.flow.place.flags |= flags::SLOTS;
                    run.flow.reason = None;
                    self.ready.push_back(slot);
                }
                Place::Function => {
                    run.flow.reason = Some(rules::held(flow, Stage::Function, None));
                    self.hold(slot, Stage::Function, String::new(), rank);
                }
            }
        }
    }

    /// Forgets states that say nothing a fresh one would not, when there are many.
    pub(super) fn prune_flow(&mut self) {
        if self.book.states.len() > self.book.prune_at.max(1024) {
            let now_ms = now_millis();
            self.book.states.retain(|_, s| !s.is_idle(now_ms));
            self.book.prune_at = self.book.states.len() * 2;
        }
    }
}
