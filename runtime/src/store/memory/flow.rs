//! Flow control in the memory store: the shared rules' states, and the held runs in
//! heaps by function, stage and key.

use super::*;
use crate::flow::cancel;
use crate::flow::rules::{self, flags, Place, Stage, States, Verdict};
use crate::flow::Flow;

/// How a batch's run ended, for the batch's other runs.
pub(super) enum End {
    Completed,
    Failed(Option<Box<str>>),
    /// Cancelled, for this reason.
    Cancelled(Option<Box<str>>),
}

/// A queue of held runs: (rank, arrival, slot), kept sorted, smallest first.
///
/// Runs mostly come in rank order (rank is their event's send time, less their
/// priority), so a run usually joins at the back and leaves from the front, each O(1);
/// a run that outranks others is inserted in its place.
#[derive(Default)]
pub(super) struct Queue(VecDeque<(i64, u64, u32)>);

impl Queue {
    fn push(&mut self, entry: (i64, u64, u32)) {
        match self.0.back() {
            Some(last) if *last > entry => {
                let at = self.0.partition_point(|e| *e < entry);
                self.0.insert(at, entry);
            }
            _ => self.0.push_back(entry),
        }
    }

    /// The first run's slot, taken out of the queue.
    fn pop(&mut self) -> Option<u32> {
        self.0.pop_front().map(|(_, _, slot)| slot)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes a run out of the queue wherever it is.
    pub fn remove(&mut self, slot: u32) {
        self.0.retain(|&(_, _, s)| s != slot);
    }
}

/// The flow-control state of the store.
#[derive(Default)]
pub(super) struct Book {
    pub states: States,
    /// Held runs by (function, stage), then key.
    pub held: Held,
    arrivals: u64,
    /// The runs of each batch, by the batch's first run.
    pub batches: HashMap<i64, Vec<u32>>,
    /// Prune idle states when there are more than this.
    prune_at: usize,
}

/// A run's flow-control place.
#[derive(Default)]
pub(super) struct RunFlow {
    pub place: rules::RunFlow,
    /// Why it is held back or how it ended, told in words only when asked (`runs`).
    pub reason: Option<Reason>,
    pub not_before_ms: Option<u64>,
    /// Why the run is cancelled (see `Run::cancelled`): kept in this box, which few
    /// runs have, rather than in every run.
    pub cancel: Option<Box<str>>,
    /// The run this one replays.
    pub replay_of: Option<RunId>,
    /// What it waits for, while it waits (`ctx.wait_for_event`).
    pub waiting_for: Option<crate::store::WaitingFor>,
    /// Its attempts that failed, oldest first.
    pub failed_attempts: Vec<crate::store::AttemptInfo>,
}

/// Why a run is held back, or how it ended without executing.
pub(super) enum Reason {
    Held(Stage),
    Delayed(rules::Why),
    Said(String),
}

impl RunFlow {
    /// The reason in words, for `rt.runs`.
    pub fn reason(&self, flow: Option<&Flow>) -> Option<String> {
        Some(match (self.reason.as_ref()?, flow) {
            (Reason::Said(text), _) => text.clone(),
            (Reason::Held(stage), Some(flow)) => {
                rules::held(flow, *stage, self.place.ckey.as_deref())
            }
            (Reason::Delayed(why), Some(flow)) => rules::delayed(flow, *why),
            (_, None) => return None,
        })
    }
}

impl Inner {
    /// Flow control's part of run `slot`, if the run is there and has one.
    pub(super) fn flow_mut(&mut self, slot: u32) -> Option<&mut RunFlow> {
        self.runs[slot as usize]
            .as_mut()
            .and_then(|r| r.flow.as_deref_mut())
    }

    /// Passes a ready run of a flow-controlled function through the gate: `true` when
    /// it may execute now. Otherwise it is skipped, delayed or held, and out of `ready`.
    pub(super) fn gate(
        &mut self,
        slot: u32,
        flow: &'static Flow,
        function: &'static str,
        now: Instant,
    ) -> bool {
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return false;
        };
        let f = run.flow.get_or_insert_with(Default::default);
        if rules::settled(&f.place) {
            return true;
        }
        let now_ms = now_millis();
        let was_batched = f.place.flags & flags::BATCHED != 0;
        // One process and one lock: a burst passes the gate in the order it came.
        let keys = rules::prepare(flow, &mut f.place, &run.event, i64::MAX);
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
            Verdict::Skip(reason) => Some(Reason::Said(reason.clone())),
            Verdict::Delay(at, why) => {
                f.not_before_ms = Some(*at);
                Some(Reason::Delayed(*why))
            }
            Verdict::Hold(stage) => Some(Reason::Held(*stage)),
        };
        if let (false, Some(batch)) = (was_batched, f.place.batch) {
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
                run.status = RunStatus::Queued;
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms));
                self.delayed
                    .push(Reverse((later(now, wait), slot, run.gen)));
                false
            }
            // Kept in its batch, finished with the run that executes it.
            Verdict::Hold(Stage::Batch) => {
                run.status = RunStatus::Queued;
                false
            }
            Verdict::Hold(stage) => {
                run.status = RunStatus::Queued;
                self.hold(slot, stage);
                false
            }
        }
    }

    /// The events of the batch run `slot` executes, if it executes one, in arrival order.
    pub(super) fn batch_events(&self, slot: u32) -> Vec<Arc<Envelope>> {
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return Vec::new();
        };
        let Some(f) = run.flow.as_deref() else {
            return Default::default();
        };
        let (true, Some(batch)) = (f.place.flags & flags::RUNNER != 0, f.place.batch) else {
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

    /// Finishes the other runs of the batch run `slot` executed, as it ended.
    pub(super) fn finish_batch(&mut self, slot: u32, end: End, now: Instant) {
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return;
        };
        let Some(f) = run.flow.as_deref() else {
            return Default::default();
        };
        let (true, Some(batch)) = (f.place.flags & flags::RUNNER != 0, f.place.batch) else {
            return;
        };
        let reason = match &end {
            End::Cancelled(why) => cancel::with_batch(run.id, why.as_deref().unwrap_or_default()),
            _ => format!("ran in the batch of run {}", run.id),
        };
        for member in self.book.batches.remove(&batch).unwrap_or_default() {
            if member == slot {
                continue;
            }
            let Some(m) = self.runs[member as usize].as_mut() else {
                continue;
            };
            if m.status.is_finished() {
                continue;
            }
            let failed = matches!(end, End::Failed(_));
            match &end {
                End::Completed => m.status = RunStatus::Completed,
                End::Failed(error) => {
                    m.status = RunStatus::Failed;
                    m.last_error = error.clone();
                }
                End::Cancelled(_) => {
                    m.status = RunStatus::Cancelled;
                    m.set_cancel(&reason);
                }
            }
            m.flow.get_or_insert_with(Default::default).reason = Some(Reason::Said(reason.clone()));
            let event = m.event.id;
            self.finish(event, failed, now);
        }
    }

    /// Queues a run in the held queue of its stage (by its key for stage 1).
    fn hold(&mut self, slot: u32, stage: Stage) {
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return;
        };
        let Some(f) = run.flow.as_deref() else {
            return;
        };
        let key = match stage {
            Stage::Key => f.place.ckey.as_deref().unwrap_or_default(),
            Stage::Function | Stage::Batch => "",
        };
        self.book.arrivals += 1;
        let entry = (f.place.rank, self.book.arrivals, slot);
        let queues = self.book.held.entry((run.function, stage)).or_default();
        match queues.get_mut(key) {
            Some(queue) => queue.push(entry),
            None => {
                let mut queue = Queue::default();
                queue.push(entry);
                queues.insert(key.to_owned(), queue);
            }
        }
    }

    /// Gives back the slots of a run whose attempt ended or suspended, and passes them
    /// on to the first held runs.
    pub(super) fn free_slots(&mut self, slot: u32, flow: &'static Flow, function: &'static str) {
        let Inner { runs, book, .. } = self;
        let Some(run) = runs[slot as usize].as_mut() else {
            return;
        };
        let index = run.function;
        let Some(f) = run.flow.as_deref_mut() else {
            return;
        };
        if f.place.flags & flags::SLOTS == 0 {
            return;
        }
        f.place.flags &= !flags::SLOTS;
        // Lent to `refill` while `runs` is borrowed there, then put back.
        let ckey = f.place.ckey.take();
        let handed = rules::hands_over(function, flow, ckey.as_deref(), &book.states)
            && self.hand_over(index, ckey.as_deref());
        if !handed {
            rules::release(function, flow, ckey.as_deref(), &mut self.book.states);
            self.refill(index, flow, function, ckey.as_deref());
        }
        if let Some(f) = self.flow_mut(slot) {
            f.place.ckey = ckey;
        }
    }

    /// Gives a released key slot of function `index` to the key's first held run, if it
    /// has one (`rules::hands_over`: the states stay as they are).
    fn hand_over(&mut self, index: u32, ckey: Option<&str>) -> bool {
        let key = ckey.unwrap_or_default();
        // A run that is gone leaves the slot to be released as any other.
        pop_held(&mut self.book.held, index, Stage::Key, key).is_some_and(|next| self.promote(next))
    }

    /// Queues a promoted run to execute, holding its slots; false if it is gone.
    fn promote(&mut self, slot: u32) -> bool {
        let Some(f) = self.flow_mut(slot) else {
            return false;
        };
        f.place.flags |= flags::SLOTS;
        f.reason = None;
        self.ready.push_back(slot);
        true
    }

    /// Passes released slots of function `index` (key `ckey`) on to the first held runs.
    pub(super) fn refill(
        &mut self,
        index: u32,
        flow: &'static Flow,
        function: &'static str,
        ckey: Option<&str>,
    ) {
        let Book { states, held, .. } = &mut self.book;
        let placed = rules::refill(function, flow, ckey, states, |stage, n| {
            let key = match stage {
                Stage::Key => ckey.unwrap_or_default(),
                Stage::Function | Stage::Batch => "",
            };
            (0..n)
                .map_while(|_| pop_held(held, index, stage, key))
                .collect()
        });
        for (slot, place) in placed {
            match place {
                Place::Ready => {
                    self.promote(slot);
                }
                Place::Function => {
                    let Some(f) = self.flow_mut(slot) else {
                        continue;
                    };
                    f.reason = Some(Reason::Held(Stage::Function));
                    self.hold(slot, Stage::Function);
                }
            }
        }
    }

    /// Forgets states that say nothing a fresh one would not, when there are many.
    pub(super) fn prune_flow(&mut self) {
        if self.book.states.len() > self.book.prune_at.max(1024) {
            let now_ms = now_millis();
            self.book.states.retain(|s| !s.is_idle(now_ms));
            self.book.prune_at = self.book.states.len() * 2;
        }
    }
}

/// The held queues, by (function, stage), then key.
type Held = crate::hash::Map<(u32, Stage), crate::hash::Map<String, Queue>>;

/// Takes the first run of a held queue, forgetting the queue once it is empty.
fn pop_held(held: &mut Held, index: u32, stage: Stage, key: &str) -> Option<u32> {
    let queues = held.get_mut(&(index, stage))?;
    let queue = queues.get_mut(key)?;
    let first = queue.pop();
    if queue.is_empty() {
        queues.remove(key);
    }
    first
}
