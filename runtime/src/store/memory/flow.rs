//! Flow control in the memory store: the shared rules' states, and the held runs in
//! heaps by function, stage and key.

use super::*;
use crate::flow::rules::{self, Place, Stage, States, Ticket, Verdict};
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
    /// Prune idle states when there are more than this.
    prune_at: usize,
}

/// A run's flow-control place.
#[derive(Default)]
pub(super) struct RunFlow {
    /// Passed its rate limit and throttle (done once per run).
    admitted: bool,
    /// Holds its concurrency slots.
    slots: bool,
    /// The keyed concurrency's key.
    ckey: Option<String>,
    /// Arrival minus priority, unix ms: held runs start in this order.
    rank: i64,
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
        if f.slots || (f.admitted && !flow.limits_concurrency()) {
            f.reason = None;
            f.not_before_ms = None;
            return true;
        }
        let first = if f.admitted {
            None
        } else {
            // Keys that cannot be computed (an event that does not decode) are empty:
            // the run then fails on decoding, as any other.
            let keys = (flow.keys)(&run.event).unwrap_or_default();
            f.ckey = keys.concurrency;
            f.rank = run.event.ts as i64 - keys.priority * 1000;
            Some((
                keys.throttle.unwrap_or_default(),
                keys.rate_limit.unwrap_or_default(),
            ))
        };
        f.admitted = true;
        let ticket = Ticket {
            function,
            flow,
            ckey: f.ckey.as_deref(),
            first: first.as_ref().map(|(t, r)| (t.as_str(), r.as_str())),
        };
        let verdict = rules::admit(&ticket, now_ms, &mut self.book.states);
        let (rank, ckey) = (f.rank, f.ckey.clone());
        match verdict {
            Verdict::Go => {
                f.slots = flow.limits_concurrency();
                f.reason = None;
                f.not_before_ms = None;
                true
            }
            Verdict::Skip(reason) => {
                f.reason = Some(reason);
                run.status = RunStatus::Skipped;
                let event = run.event.id;
                self.finish(event, false, now);
                false
            }
            Verdict::Delay(at_ms) => {
                f.reason = Some(rules::throttled(flow));
                f.not_before_ms = Some(at_ms);
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms));
                self.delayed.push(Reverse((later(now, wait), slot)));
                false
            }
            Verdict::Hold(stage) => {
                f.reason = Some(rules::held(flow, stage, ckey.as_deref()));
                self.hold(slot, stage, ckey.unwrap_or_default(), rank);
                false
            }
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
        if !std::mem::take(&mut run.flow.slots) {
            return;
        }
        let index = run.function;
        let ckey = run.flow.ckey.clone();
        let Book { states, held, .. } = &mut self.book;
        rules::release(function, flow, ckey.as_deref(), states);
        let placed = rules::refill(function, flow, ckey.as_deref(), states, |stage, n| {
            let key = match stage {
                Stage::Key => ckey.clone().unwrap_or_default(),
                Stage::Function => String::new(),
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
                    run.flow.slots = true;
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
