//! Cancelling a run of a flow-controlled function that is not executing: what it gives
//! up, once for every store. (A run cancelled while executing gives its slots back when
//! its outcome is recorded, as any run; its batch is finished with it.)
//!
//! - Slots it holds (promoted, it waits to execute) go back, and held runs are promoted
//!   into them, as when an attempt ends.
//! - Held for the function's slot, it holds its key's: that goes back and the key's
//!   first held run is promoted. Held for its key's slot, it holds nothing.
//! - The latest event of a debounce's burst: the burst ends without a run (the earlier
//!   runs were already to be skipped).
//! - Waiting in a batch: it leaves the batch (its event is not handed to the batch's
//!   run). If it opened the batch, still open, it was to execute it at its timeout: the
//!   batch is dissolved instead, and its other runs go back through the gate, where they
//!   form a new one.
//! - Executing a batch (it filled it, and waits for its turn): the batch's other runs
//!   are cancelled with it, as they would have finished with it.

use super::rules::flags::{ADMITTED, BATCHED, DEBOUNCING, RUNNER, SLOTS};
use super::rules::{Kind, RunFlow, Slot, Stage, State, States};
use super::{Flow, FlowKeys};
use crate::event::Envelope;

/// What a store does, besides finishing it, for a cancelled run that was not executing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Withdrawal {
    /// It holds its slots: give them back and promote held runs (the store's record
    /// path does, guarded by the `SLOTS` flag).
    pub release: bool,
    /// Its key's slot was given back in the states: promote the key's held runs.
    pub refill: bool,
    /// The batch it leaves.
    pub leave: Option<i64>,
    /// The batch it dissolves: the batch's other runs lose it (`BATCHED` cleared, no
    /// batch) and are queued to pass the gate again.
    pub dissolve: Option<i64>,
    /// The batch whose other runs are cancelled with it.
    pub cancel_batch: Option<i64>,
}

/// Whether cancelling a queued run (`held`: held back) needs its function's rules: it
/// holds or waits for slots, or waits in a debounce or a batch. A store that does not
/// have the function marks such a run instead, for a process that has it.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn involved(run: &RunFlow, held: bool) -> bool {
    held || run.flags & (SLOTS | BATCHED) != 0
        || (run.flags & DEBOUNCING != 0 && run.flags & ADMITTED == 0)
}

/// The keys [`withdraw`] needs (computed from the run's event), if it needs any: those
/// of a run waiting in a debounce or a batch.
pub(crate) fn keys(flow: &Flow, run: &RunFlow, event: &Envelope) -> Option<FlowKeys> {
    let debouncing = run.flags & DEBOUNCING != 0 && run.flags & ADMITTED == 0;
    let batched = run.flags & BATCHED != 0 && run.flags & RUNNER == 0;
    (debouncing || batched).then(|| (flow.keys)(event).unwrap_or_default())
}

/// The states [`withdraw`] reads, for a run held in `held` (if held) with `keys`.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn slots(
    function: &'static str,
    flow: &Flow,
    run: &RunFlow,
    held: Option<Stage>,
    keys: Option<&FlowKeys>,
) -> Vec<Slot> {
    let slot = |kind, key: Option<&str>| Slot {
        function,
        kind,
        key: key.unwrap_or_default().to_owned(),
    };
    let mut slots = Vec::new();
    if let Some(keys) = keys {
        if run.flags & DEBOUNCING != 0 && run.flags & ADMITTED == 0 {
            slots.push(slot(Kind::Debounce, keys.debounce.as_deref()));
        }
        if run.flags & BATCHED != 0 && run.flags & RUNNER == 0 {
            slots.push(slot(Kind::Batch, keys.batch.as_deref()));
        }
    }
    if held == Some(Stage::Function) && flow.keyed_concurrency.is_some() {
        slots.push(slot(Kind::Key, run.ckey.as_deref()));
    }
    slots
}

/// What cancelling run `id` (the store's key for it), held in `held` if it is held,
/// gives up; updates `states` (which must hold every slot of [`slots`]).
pub(crate) fn withdraw(
    function: &'static str,
    flow: &Flow,
    id: i64,
    run: &RunFlow,
    held: Option<Stage>,
    keys: Option<&FlowKeys>,
    states: &mut States,
) -> Withdrawal {
    let mut out = Withdrawal {
        release: run.flags & SLOTS != 0,
        ..Withdrawal::default()
    };
    if held == Some(Stage::Function) && flow.keyed_concurrency.is_some() {
        let s = states.entry(function, Kind::Key, run.ckey.as_deref().unwrap_or_default());
        s.active = (s.active - 1).max(0);
        out.refill = true;
    }
    if let Some(keys) = keys {
        if run.flags & DEBOUNCING != 0 && run.flags & ADMITTED == 0 {
            let key = keys.debounce.as_deref().unwrap_or_default();
            let s = states.entry(function, Kind::Debounce, key);
            if s.run == id {
                *s = State::default();
            }
        }
    }
    if let (true, Some(batch)) = (run.flags & BATCHED != 0, run.batch) {
        if run.flags & RUNNER != 0 {
            out.cancel_batch = Some(batch);
            return out;
        }
        let key = keys.and_then(|k| k.batch.as_deref()).unwrap_or_default();
        let s = states.entry(function, Kind::Batch, key);
        let open = s.run == batch;
        if open && batch == id {
            *s = State::default();
            out.dissolve = Some(batch);
        } else {
            if open {
                s.active = (s.active - 1).max(0);
            }
            out.leave = Some(batch);
        }
    }
    out
}

/// The stage a store's code for it (`Stage as i64`) names.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn stage(code: i64) -> Option<Stage> {
    [Stage::Key, Stage::Function, Stage::Batch]
        .into_iter()
        .find(|s| *s as i64 == code)
}

/// The reason of a run cancelled with the batch of run `runner`, for `reason`.
pub(crate) fn with_batch(runner: impl std::fmt::Display, reason: &str) -> String {
    format!("cancelled with the batch of run {runner}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::rules::flags::ENTERED;
    use crate::flow::{BatchRule, Debounce};

    fn keys_of(_: &Envelope) -> crate::Result<FlowKeys> {
        Ok(FlowKeys {
            concurrency: Some("k".into()),
            debounce: Some("d".into()),
            batch: Some("b".into()),
            ..FlowKeys::default()
        })
    }

    const STACKED: Flow = Flow {
        concurrency: Some(1),
        keyed_concurrency: Some(1),
        throttle: None,
        rate_limit: None,
        debounce: None,
        batch: None,
        filter: false,
        idempotency: false,
        keys: keys_of,
    };

    const DEBOUNCED: Flow = Flow {
        debounce: Some(Debounce {
            period_ms: 100,
            timeout_ms: None,
        }),
        concurrency: None,
        keyed_concurrency: None,
        ..STACKED
    };

    const BATCHING: Flow = Flow {
        batch: Some(BatchRule {
            max: 3,
            timeout_ms: 100,
        }),
        concurrency: None,
        keyed_concurrency: None,
        ..STACKED
    };

    fn run(flags: i16, batch: Option<i64>) -> RunFlow {
        RunFlow {
            flags,
            ckey: Some("k".into()),
            batch,
            ..RunFlow::default()
        }
    }

    fn state(states: &States, kind: Kind, key: &str) -> State {
        states.get("f", kind, key).copied().unwrap_or_default()
    }

    #[test]
    fn a_run_holding_its_slots_gives_them_back_through_the_record_path() {
        let mut states = States::new();
        let w = withdraw("f", &STACKED, 1, &run(SLOTS, None), None, None, &mut states);
        assert_eq!(
            w,
            Withdrawal {
                release: true,
                ..Withdrawal::default()
            }
        );
    }

    #[test]
    fn a_run_held_for_the_function_slot_gives_back_its_keys_slot() {
        let mut states = States::new();
        states.entry("f", Kind::Key, "k").active = 1;
        let r = run(ADMITTED, None);
        assert_eq!(
            slots("f", &STACKED, &r, Some(Stage::Function), None),
            vec![Slot {
                function: "f",
                kind: Kind::Key,
                key: "k".into()
            }]
        );
        let w = withdraw(
            "f",
            &STACKED,
            1,
            &r,
            Some(Stage::Function),
            None,
            &mut states,
        );
        assert!(w.refill && !w.release);
        assert_eq!(state(&states, Kind::Key, "k").active, 0);
        // Held for its key's slot, it holds nothing.
        let w = withdraw("f", &STACKED, 1, &r, Some(Stage::Key), None, &mut states);
        assert_eq!(w, Withdrawal::default());
    }

    #[test]
    fn the_latest_run_of_a_burst_ends_the_burst_and_an_earlier_one_leaves_it() {
        let event = Envelope::internal("t", "{}".into(), crate::event::EventId::from_key("e"));
        let r = run(ENTERED | DEBOUNCING, None);
        let keys = keys(&DEBOUNCED, &r, &event);
        assert!(keys.is_some());
        let mut states = States::new();
        states.entry("f", Kind::Debounce, "d").run = 2;
        withdraw("f", &DEBOUNCED, 1, &r, None, keys.as_ref(), &mut states);
        assert_eq!(state(&states, Kind::Debounce, "d").run, 2);
        withdraw("f", &DEBOUNCED, 2, &r, None, keys.as_ref(), &mut states);
        assert_eq!(state(&states, Kind::Debounce, "d"), State::default());
    }

    #[test]
    fn batches_are_left_dissolved_or_cancelled_by_who_leaves_them() {
        let event = Envelope::internal("t", "{}".into(), crate::event::EventId::from_key("e"));
        let member = run(ENTERED | BATCHED, Some(1));
        let keys = keys(&BATCHING, &member, &event);
        let mut states = States::new();
        let open = |states: &mut States| {
            *states.entry("f", Kind::Batch, "b") = State {
                run: 1,
                active: 2,
                ..State::default()
            };
        };
        // A member of the open batch of run 1 leaves it.
        open(&mut states);
        let w = withdraw(
            "f",
            &BATCHING,
            2,
            &member,
            Some(Stage::Batch),
            keys.as_ref(),
            &mut states,
        );
        assert_eq!(w.leave, Some(1));
        assert_eq!(state(&states, Kind::Batch, "b").active, 1);
        // Its opener dissolves it.
        open(&mut states);
        let w = withdraw("f", &BATCHING, 1, &member, None, keys.as_ref(), &mut states);
        assert_eq!(w.dissolve, Some(1));
        assert_eq!(state(&states, Kind::Batch, "b"), State::default());
        // A closed batch (another run executes it) is left as it is.
        let w = withdraw("f", &BATCHING, 1, &member, None, keys.as_ref(), &mut states);
        assert_eq!(w.leave, Some(1));
        assert_eq!(state(&states, Kind::Batch, "b"), State::default());
        // Its runner takes it along.
        let runner = run(ENTERED | BATCHED | RUNNER | ADMITTED, Some(1));
        assert_eq!(super::keys(&BATCHING, &runner, &event), None);
        let w = withdraw("f", &BATCHING, 3, &runner, None, None, &mut states);
        assert_eq!(w.cancel_batch, Some(1));
    }
}
