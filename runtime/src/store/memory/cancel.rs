//! `Store::cancel` in the memory store: a run that is not executing ends at once, giving
//! up its wait and its flow-control place; a running one is marked.

use super::flow::Reason;
use super::*;
use crate::flow::cancel::{self, Withdrawal};
use crate::flow::rules::{flags, Stage};
use crate::flow::Flow;

impl Inner {
    pub(super) fn cancel(
        &mut self,
        registry: &Registry,
        id: RunId,
        reason: String,
        now: Instant,
    ) -> Cancel {
        let slot = slot_of(id);
        let Some(run) = self
            .runs
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .filter(|run| run.id == id)
        else {
            return Cancel::Unknown;
        };
        match run.status {
            status if status.is_finished() => Cancel::Finished(status),
            RunStatus::Running => {
                run.set_cancel(&reason);
                Cancel::Marked(slot as RunKey)
            }
            _ => {
                let invocation =
                    (run.event.name == crate::function::INVOKE_EVENT).then_some(run.event.id);
                let function = Some(run.function);
                self.cancel_now(registry, slot, reason, now);
                Cancel::Cancelled {
                    invocation,
                    function,
                }
            }
        }
    }

    /// Ends run `slot`, which is queued, sleeping or waiting, as cancelled. (Its entries
    /// in the ready and delayed queues stay: a claim passes over a finished run.)
    fn cancel_now(&mut self, registry: &Registry, slot: u32, reason: String, now: Instant) {
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return;
        };
        let waiting = run.status == RunStatus::Waiting;
        run.status = RunStatus::Cancelled;
        run.set_cancel(&reason);
        let (event, function) = (run.event.id, run.function);
        if waiting {
            self.drop_waits(slot);
        }
        let def = registry.defs[function as usize];
        if let Some(flow) = def.flow() {
            self.withdraw(slot, flow, def.id(), &reason, now);
        }
        self.finish(event, false, now);
    }

    /// Gives up the flow-control place of run `slot`, cancelled while not executing (see
    /// `flow::cancel`).
    fn withdraw(
        &mut self,
        slot: u32,
        flow: &'static Flow,
        function: &'static str,
        reason: &str,
        now: Instant,
    ) {
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return;
        };
        let Some(f) = run.flow.as_deref_mut() else {
            return;
        };
        let held = match f.reason {
            Some(Reason::Held(stage)) => Some(stage),
            _ => None,
        };
        let place = f.place.clone();
        let (index, run_id) = (run.function, run.id);
        let keys = cancel::keys(flow, &place, &run.event);
        let w = cancel::withdraw(
            function,
            flow,
            i64::from(slot) + 1,
            &place,
            held,
            keys.as_ref(),
            &mut self.book.states,
        );
        if let Some(stage) = held {
            self.unhold(slot, index, stage, place.ckey.as_deref());
        }
        let Withdrawal {
            release,
            refill,
            leave,
            dissolve,
            cancel_batch,
        } = w;
        if release {
            self.free_slots(slot, flow, function);
        }
        if refill {
            self.refill(index, flow, function, place.ckey.as_deref());
        }
        if let Some(batch) = leave.or(dissolve) {
            if let Some(members) = self.book.batches.get_mut(&batch) {
                members.retain(|&m| m != slot);
            }
        }
        if let Some(batch) = dissolve {
            // Back to the gate, where they form a new batch.
            for member in self.book.batches.remove(&batch).unwrap_or_default() {
                let Some(m) = self.runs[member as usize].as_mut() else {
                    continue;
                };
                if let Some(f) = m.flow.as_deref_mut() {
                    f.place.flags &= !flags::BATCHED;
                    f.place.batch = None;
                    f.reason = None;
                }
                self.ready.push_back(member);
            }
        }
        if let Some(batch) = cancel_batch {
            let why = cancel::with_batch(run_id, reason);
            for member in self.book.batches.remove(&batch).unwrap_or_default() {
                let Some(m) = self.runs[member as usize].as_mut() else {
                    continue;
                };
                if member == slot || m.status.is_finished() {
                    continue;
                }
                m.status = RunStatus::Cancelled;
                m.set_cancel(&why);
                let event = m.event.id;
                self.finish(event, false, now);
            }
        }
        if let Some(f) = self.flow_mut(slot) {
            f.reason = None;
            f.place.batch = f
                .place
                .batch
                .filter(|_| leave.is_none() && dissolve.is_none());
        }
    }

    /// Takes run `slot` out of the queue of held runs it waits in.
    fn unhold(&mut self, slot: u32, function: u32, stage: Stage, ckey: Option<&str>) {
        let key = match stage {
            Stage::Key => ckey.unwrap_or_default(),
            Stage::Function | Stage::Batch => "",
        };
        let Some(queues) = self.book.held.get_mut(&(function, stage)) else {
            return;
        };
        if let Some(queue) = queues.get_mut(key) {
            queue.remove(slot);
            if queue.is_empty() {
                queues.remove(key);
            }
        }
    }

    /// Removes the pending waits of run `slot`.
    pub(super) fn drop_waits(&mut self, slot: u32) {
        self.waits.retain(|_, waits| {
            waits.any.retain(|(s, _)| *s != slot);
            waits.by_field.retain(|_, values| {
                values.retain(|_, list| {
                    list.retain(|(s, _)| *s != slot);
                    !list.is_empty()
                });
                !values.is_empty()
            });
            !waits.is_empty()
        });
    }
}
