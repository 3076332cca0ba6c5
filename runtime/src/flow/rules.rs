//! The flow-control rules, once for every store. A store loads the [`State`]s a batch of
//! runs needs (locked, on PostgreSQL), lets these functions decide, and writes back the
//! states and the runs' new places.
//!
//! A run of a flow-controlled function passes the gate each time it is claimed until it
//! holds what it needs to execute. On its way, in this order:
//! - `filter`: a run whose event the filter refuses ends `Skipped`.
//! - `idempotency`: the first run of a key holds it for 24 h; the others end `Skipped`.
//! - `debounce`: the run waits `period`; a later event of its key takes its place (the
//!   earlier run ends `Skipped`), unless `timeout` has passed since the burst began.
//! - `batch`: the first run of a key opens a batch and waits `timeout`; the next ones
//!   join it and wait in it; the run that fills it to `max`, or the first one once its
//!   timeout has passed, executes the batch for all of them.
//! - `rate_limit` and `throttle` are GCRA (as Inngest's): per key, a theoretical arrival
//!   time (`tat`); the period is cut in `limit` intervals of `period / limit`.
//!   - `throttle` starts one run per interval, in arrival order, and delays the others
//!     to their turn: never more than `limit` starts in any window of `period`. A run
//!     claimed after its turn also waits one interval from the key's last start.
//!   - `rate_limit` lets a burst of up to `limit` runs through, refilled at one per
//!     interval, and skips the runs beyond it.
//!
//!   These apply once per run: retries and wake-ups are not limited again.
//! - `concurrency` counts slots per function (stage 2) and per key (stage 1). A run takes
//!   its key's slot, then the function's; when one is full it is *held* in that stage's
//!   queue, ordered by rank (arrival minus priority). A run gives its slots back when an
//!   attempt ends or it suspends (sleep, wait, retry back-off), and the released slots go
//!   to the first held runs at once.

use super::{Flow, FlowKeys, Rate};
use crate::event::Envelope;

pub(crate) use super::state::{Kind, Slot, State, States};

/// A run's flow-control flags, as stores keep them.
pub(crate) mod flags {
    /// Past its debounce, batch, rate limit and throttle: only concurrency is left.
    pub const ADMITTED: i16 = 1;
    /// Holds its concurrency slots.
    pub const SLOTS: i16 = 2;
    /// Waited as its key's latest debounced event.
    pub const DEBOUNCING: i16 = 4;
    /// Belongs to a batch.
    pub const BATCHED: i16 = 8;
    /// Executes its batch.
    pub const RUNNER: i16 = 16;
    /// Finished without executing (filtered, a duplicate, rate limited, debounced away).
    pub const SKIPPED: i16 = 32;
    /// Past its filter and idempotency key (applied on its first pass only).
    pub const ENTERED: i16 = 64;
    /// Throttled: its start waits for its turn and the key's last start.
    pub const THROTTLED: i16 = 128;
}

use flags::*;

/// The queues of held runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// Waiting for its key's slot.
    Key = 1,
    /// Waiting for the function's slot (holding its key's, if any).
    Function = 2,
    /// In a batch another run executes: never promoted, finished with that run.
    Batch = 3,
}

/// A run's flow-control place, as stores keep it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunFlow {
    pub flags: i16,
    /// The keyed concurrency limit's key.
    pub ckey: Option<String>,
    /// Arrival minus priority, unix ms: held runs start in this order.
    pub rank: i64,
    /// The batch the run belongs to: the store's key of the batch's first run.
    pub batch: Option<i64>,
    /// When its event was sent (unix ms), then its order among the runs of that
    /// millisecond: set by [`prepare`] on each pass, not stored.
    pub arrival: (i64, i64),
}

/// A run's keys, when it still has to pass more than concurrency (computed from its
/// event; keys that cannot be computed, from an event that does not decode, are empty:
/// the run then fails on decoding, as any other). Sets its `ckey`, `rank` and `arrival`:
/// `seq` orders the runs of one millisecond, the store's key where keys grow with each
/// run, `i64::MAX` where runs pass the gate in the order they arrived.
pub(crate) fn prepare(
    flow: &Flow,
    run: &mut RunFlow,
    event: &Envelope,
    seq: i64,
) -> Option<FlowKeys> {
    if run.flags & ADMITTED != 0 && run.flags & THROTTLED == 0 {
        return None;
    }
    run.arrival = (event.ts as i64, seq);
    let mut keys = (flow.keys)(event).unwrap_or_default();
    run.ckey = keys.concurrency.take();
    if flow.keyed_concurrency.is_some() {
        run.ckey.get_or_insert_with(String::new);
    }
    run.rank = event.ts as i64 - keys.priority * 1000;
    Some(keys)
}

/// Whether a run is past every rule and holds its slots (a held run promoted into the
/// slots another released): the gate lets it go as it is, without reading a state, so
/// a store neither loads nor writes anything for it.
pub(crate) fn settled(run: &RunFlow) -> bool {
    run.flags & (ADMITTED | SLOTS) == ADMITTED | SLOTS && run.flags & THROTTLED == 0
}

/// How long an idempotency key holds: 24 h.
pub(crate) const IDEMPOTENCY_MS: i64 = 24 * 3600 * 1000;

/// What the gate decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Execute now, holding the function's slots if it limits concurrency.
    Go,
    /// Finish as `Skipped`, for this reason.
    Skip(String),
    /// Queued until then (unix ms).
    Delay(u64, Why),
    /// Held until a slot frees, or its batch is executed.
    Hold(Stage),
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
impl Verdict {
    /// What a store writes of it besides the status: the queue a held run waits in,
    /// when a delayed run is due (unix ms), and the reason `rt.runs` shows (`ckey`: the
    /// run's concurrency key).
    pub fn place(
        &self,
        flow: &Flow,
        ckey: Option<&str>,
    ) -> (Option<Stage>, Option<u64>, Option<String>) {
        match self {
            Verdict::Go => (None, None, None),
            Verdict::Skip(reason) => (None, None, Some(reason.clone())),
            Verdict::Delay(at, why) => (None, Some(*at), Some(delayed(flow, *why))),
            Verdict::Hold(stage) => (Some(*stage), None, Some(held(flow, *stage, ckey))),
        }
    }
}

/// Why a run is delayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    Throttle,
    Debounce,
    Batch,
}

/// The states the gate reads for a run (`keys` from [`prepare`]).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn slots(
    function: &'static str,
    flow: &Flow,
    run: &RunFlow,
    keys: Option<&FlowKeys>,
) -> Vec<Slot> {
    let mut slots = Vec::new();
    let slot = |kind, key: &Option<String>| Slot {
        function,
        kind,
        key: key.clone().unwrap_or_default(),
    };
    if let (Some(keys), true) = (keys, run.flags & ADMITTED != 0) {
        slots.push(slot(Kind::Throttle, &keys.throttle));
    } else if let Some(keys) = keys {
        if flow.idempotency && run.flags & ENTERED == 0 {
            slots.push(slot(Kind::Idempotency, &keys.idempotency));
        }
        if flow.debounce.is_some() {
            slots.push(slot(Kind::Debounce, &keys.debounce));
        }
        if flow.batch.is_some() {
            slots.push(slot(Kind::Batch, &keys.batch));
        }
        if flow.rate_limit.is_some() {
            slots.push(slot(Kind::RateLimit, &keys.rate_limit));
        }
        if flow.throttle.is_some() {
            slots.push(slot(Kind::Throttle, &keys.throttle));
        }
    }
    slots.extend(concurrency_slots(function, flow, run.ckey.as_deref()));
    slots
}

/// The concurrency states of a run of `function` with key `ckey`.
pub(crate) fn concurrency_slots(
    function: &'static str,
    flow: &Flow,
    ckey: Option<&str>,
) -> Vec<Slot> {
    let mut slots = Vec::new();
    if flow.keyed_concurrency.is_some() {
        slots.push(Slot {
            function,
            kind: Kind::Key,
            key: ckey.unwrap_or_default().to_owned(),
        });
    }
    if flow.concurrency.is_some() {
        slots.push(Slot {
            function,
            kind: Kind::Function,
            key: String::new(),
        });
    }
    slots
}

/// Decides the fate of run `id` (the store's key for it), updating its place and
/// `states` (which must hold every slot of [`slots`], fresh ones as `State::default()`).
pub(crate) fn admit(
    function: &'static str,
    flow: &Flow,
    id: i64,
    run: &mut RunFlow,
    keys: Option<&FlowKeys>,
    now_ms: u64,
    states: &mut States,
) -> Verdict {
    let now = now_ms as i64;
    if let (Some(keys), false) = (keys, run.flags & ADMITTED != 0) {
        if run.flags & ENTERED == 0 {
            run.flags |= ENTERED;
            if keys.filtered {
                run.flags |= SKIPPED | ADMITTED;
                return Verdict::Skip(
                    "filtered out: the function's filter refused the event".to_owned(),
                );
            }
            if flow.idempotency {
                let key = keys.idempotency.as_deref();
                let s = state(states, function, Kind::Idempotency, key);
                if s.tat_us > now * 1000 {
                    run.flags |= SKIPPED | ADMITTED;
                    return Verdict::Skip(format!(
                        "a duplicate: a run for idempotency key `{}` began less than 24 h ago",
                        key.unwrap_or_default()
                    ));
                }
                s.tat_us = (now + IDEMPOTENCY_MS) * 1000;
            }
        }
        if let Some(d) = flow.debounce {
            let s = state(states, function, Kind::Debounce, keys.debounce.as_deref());
            if run.flags & DEBOUNCING == 0 {
                run.flags |= DEBOUNCING;
                // Replicas can pass a burst's runs out of order: one whose event came
                // before the waiting run's was already replaced.
                if s.run != 0 && (s.tat_us, s.active) > run.arrival {
                    run.flags |= SKIPPED;
                    return Verdict::Skip("debounced: a later event took its place".to_owned());
                }
                // The latest event of the burst waits; earlier ones see it took their place.
                if s.run == 0 {
                    s.since = now;
                }
                s.run = id;
                (s.tat_us, s.active) = run.arrival;
                let cap = d
                    .timeout_ms
                    .map_or(i64::MAX, |t| s.since.saturating_add(t as i64));
                let at = (now + d.period_ms as i64).min(cap).max(now);
                return Verdict::Delay(at as u64, Why::Debounce);
            }
            if s.run != id {
                run.flags |= SKIPPED;
                return Verdict::Skip("debounced: a later event took its place".to_owned());
            }
            *s = State::default();
        }
        if let Some(b) = flow.batch {
            let s = state(states, function, Kind::Batch, keys.batch.as_deref());
            if run.flags & BATCHED == 0 {
                run.flags |= BATCHED;
                if s.run == 0 {
                    s.run = id;
                    s.since = now;
                }
                s.active += 1;
                run.batch = Some(s.run);
                if s.active < i64::from(b.max) {
                    return if s.run == id {
                        // The batch's first run executes it when its timeout has passed.
                        Verdict::Delay(now as u64 + b.timeout_ms, Why::Batch)
                    } else {
                        Verdict::Hold(Stage::Batch)
                    };
                }
                // Full: this run executes it.
                *s = State::default();
            } else if s.run == id {
                // The first run, its timeout passed: the batch closes and it executes it.
                *s = State::default();
            } else {
                // The first run of a batch another run filled.
                return Verdict::Hold(Stage::Batch);
            }
            run.flags |= RUNNER;
        }
        let mut start_us = now * 1000;
        if let Some(rate) = flow.rate_limit {
            let s = state(
                states,
                function,
                Kind::RateLimit,
                keys.rate_limit.as_deref(),
            );
            let (t_us, tau) = gcra(rate);
            if start_us < s.tat_us - tau {
                let key = keys
                    .rate_limit
                    .as_ref()
                    .map(|k| format!(" for key `{k}`"))
                    .unwrap_or_default();
                run.flags |= SKIPPED | ADMITTED;
                return Verdict::Skip(format!(
                    "rate limited: {} run(s) per {} ms{key} already started",
                    rate.limit, rate.period_ms
                ));
            }
            s.tat_us = s.tat_us.max(start_us) + t_us;
        }
        if let Some(rate) = flow.throttle {
            let s = state(states, function, Kind::Throttle, keys.throttle.as_deref());
            let (t_us, _) = gcra(rate);
            start_us = start_us.max(s.tat_us);
            s.tat_us = start_us + t_us;
            run.flags |= THROTTLED;
        }
        run.flags |= ADMITTED;
        if start_us > now * 1000 {
            // Concurrency is taken when the delay is over.
            return Verdict::Delay((start_us as u64).div_ceil(1000), Why::Throttle);
        }
    }
    if let (Some(keys), Some(rate), true) = (keys, flow.throttle, run.flags & THROTTLED != 0) {
        // Its turn came, but a claim made late may bring several turns at once: one
        // start per interval after the key's last, whenever the runs are claimed.
        let s = state(states, function, Kind::Throttle, keys.throttle.as_deref());
        let (t_us, _) = gcra(rate);
        let next_us = s.since.saturating_add(t_us);
        if s.since > 0 && now * 1000 < next_us {
            return Verdict::Delay((next_us as u64).div_ceil(1000), Why::Throttle);
        }
        s.since = now * 1000;
        // Runs that come later take their turns after this start.
        s.tat_us = s.tat_us.max(s.since + t_us);
        run.flags &= !THROTTLED;
    }
    if run.flags & SLOTS != 0 {
        return Verdict::Go;
    }
    let verdict = acquire(function, flow, run.ckey.as_deref(), states);
    if verdict == Verdict::Go && flow.limits_concurrency() {
        run.flags |= SLOTS;
    }
    verdict
}

/// Takes the run's concurrency slots, or says where it waits.
fn acquire(
    function: &'static str,
    flow: &Flow,
    ckey: Option<&str>,
    states: &mut States,
) -> Verdict {
    if let Some(limit) = flow.keyed_concurrency {
        let s = state(states, function, Kind::Key, ckey);
        if s.active >= i64::from(limit) {
            return Verdict::Hold(Stage::Key);
        }
        s.active += 1;
    }
    function_slot(function, flow, states)
}

fn function_slot(function: &'static str, flow: &Flow, states: &mut States) -> Verdict {
    if let Some(limit) = flow.concurrency {
        let s = state(states, function, Kind::Function, None);
        if s.active >= i64::from(limit) {
            return Verdict::Hold(Stage::Function);
        }
        s.active += 1;
    }
    Verdict::Go
}

/// Gives back the slots of a run that held them.
pub(crate) fn release(
    function: &'static str,
    flow: &Flow,
    ckey: Option<&str>,
    states: &mut States,
) {
    let mut give_back = |kind, key| {
        let s = states.entry(function, kind, key);
        s.active = (s.active - 1).max(0);
    };
    if flow.keyed_concurrency.is_some() {
        give_back(Kind::Key, ckey.unwrap_or_default());
    }
    if flow.concurrency.is_some() {
        give_back(Kind::Function, "");
    }
}

/// Whether a run giving its slots back hands them straight to its key's next held run
/// (if it has one), leaving every state as it is: only a keyed limit applies, and the
/// key is full, so the release frees the one slot that run takes. A store that knows
/// the next held run skips [`release`] and [`refill`] then.
pub(crate) fn hands_over(
    function: &'static str,
    flow: &Flow,
    ckey: Option<&str>,
    states: &States,
) -> bool {
    match (flow.keyed_concurrency, flow.concurrency) {
        (Some(limit), None) => states
            .get(function, Kind::Key, ckey.unwrap_or_default())
            .is_some_and(|s| s.active == i64::from(limit)),
        _ => false,
    }
}

/// How many held runs of a queue may be promoted now.
pub(crate) fn room(
    function: &'static str,
    flow: &Flow,
    stage: Stage,
    ckey: Option<&str>,
    states: &States,
) -> usize {
    let (limit, kind, key) = match stage {
        Stage::Key => (flow.keyed_concurrency, Kind::Key, ckey.unwrap_or_default()),
        Stage::Function => (flow.concurrency, Kind::Function, ""),
        Stage::Batch => return 0,
    };
    let Some(limit) = limit else { return 0 };
    let active = states.get(function, kind, key).map_or(0, |s| s.active);
    (i64::from(limit) - active).max(0) as usize
}

/// Where a promoted run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Holding every slot: queued to execute.
    Ready,
    /// Holding its key's slot, now waiting for the function's.
    Function,
}

/// Promotes held runs into released slots: first the function's queue (its runs
/// already hold their keys' slots), then the key's. `held(stage, n)` gives the first
/// `n` runs of that queue; the result is each promoted run's new place.
pub(crate) fn refill<R>(
    function: &'static str,
    flow: &Flow,
    ckey: Option<&str>,
    states: &mut States,
    mut held: impl FnMut(Stage, usize) -> Vec<R>,
) -> Vec<(R, Place)> {
    let mut placed = Vec::new();
    let n = room(function, flow, Stage::Function, ckey, states);
    if n > 0 {
        for run in held(Stage::Function, n) {
            state(states, function, Kind::Function, None).active += 1;
            placed.push((run, Place::Ready));
        }
    }
    let n = room(function, flow, Stage::Key, ckey, states);
    if n > 0 {
        for run in held(Stage::Key, n) {
            state(states, function, Kind::Key, ckey).active += 1;
            let place = match function_slot(function, flow, states) {
                Verdict::Go => Place::Ready,
                _ => Place::Function,
            };
            placed.push((run, place));
        }
    }
    placed
}

/// Why a run is held, for `rt.runs`.
pub(crate) fn held(flow: &Flow, stage: Stage, ckey: Option<&str>) -> String {
    match stage {
        Stage::Key => format!(
            "waiting for a concurrency slot: {} run(s) of key `{}` are executing",
            flow.keyed_concurrency.unwrap_or_default(),
            ckey.unwrap_or_default()
        ),
        Stage::Function => format!(
            "waiting for a concurrency slot: {} run(s) of the function are executing",
            flow.concurrency.unwrap_or_default()
        ),
        Stage::Batch => {
            "batched: its event is handled by the run that executes its batch".to_owned()
        }
    }
}

/// Why a run is delayed, for `rt.runs`.
pub(crate) fn delayed(flow: &Flow, why: Why) -> String {
    match why {
        Why::Throttle => {
            let rate = flow.throttle.unwrap_or(Rate {
                limit: 0,
                period_ms: 0,
            });
            format!(
                "throttled: at most {} start(s) per {} ms",
                rate.limit, rate.period_ms
            )
        }
        Why::Debounce => "debounced: waiting for later events of its key".to_owned(),
        Why::Batch => "batching: waiting for more events to fill its batch".to_owned(),
    }
}

/// GCRA's emission interval and burst tolerance, in microseconds.
fn gcra(rate: Rate) -> (i64, i64) {
    let period = rate.period_ms as i64 * 1000;
    let t = (period / i64::from(rate.limit)).max(1);
    (t, period - t)
}

fn state<'s>(
    states: &'s mut States,
    function: &'static str,
    kind: Kind,
    key: Option<&str>,
) -> &'s mut State {
    states.entry(function, kind, key.unwrap_or_default())
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
