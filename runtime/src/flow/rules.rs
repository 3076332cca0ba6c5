//! The flow-control rules, once for every store. A store loads the [`State`]s a batch of
//! runs needs (locked, on PostgreSQL), lets these functions decide, and writes back the
//! states and the runs' new places.
//!
//! - `rate_limit` and `throttle` are GCRA (as Inngest's): per key, a theoretical arrival
//!   time (`tat`); the period is cut in `limit` intervals of `period / limit`.
//!   - `throttle` starts one run per interval, in arrival order, and delays the others
//!     to their turn: never more than `limit` starts in any window of `period`.
//!   - `rate_limit` lets a burst of up to `limit` runs through, refilled at one per
//!     interval, and skips the runs beyond it.
//!
//!   Both apply once per run: retries and wake-ups are not limited again.
//! - `concurrency` counts slots per function (stage 2) and per key (stage 1). A run takes
//!   its key's slot, then the function's; when one is full it is *held* in that stage's
//!   queue, ordered by rank (arrival minus priority). A run gives its slots back when an
//!   attempt ends or it suspends (sleep, wait, retry back-off), and the released slots go
//!   to the first held runs at once.

use super::{Flow, Rate};
use std::collections::HashMap;

/// Which state of a function a [`Slot`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// The function's concurrency (`concurrency = N`), key `""`.
    Function = 0,
    /// A key's concurrency (`concurrency(limit, key)`).
    Key = 1,
    Throttle = 2,
    RateLimit = 3,
}

/// One piece of flow-control state: a function's, per kind and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot {
    pub function: &'static str,
    pub kind: Kind,
    pub key: String,
}

/// What is kept per [`Slot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// GCRA's theoretical arrival time, unix microseconds (rate limit, throttle).
    pub tat_us: i64,
    /// Slots taken (concurrency).
    pub active: i64,
}

impl State {
    /// Whether the state says nothing a fresh one would not (it can be forgotten).
    pub fn is_idle(&self, now_ms: u64) -> bool {
        self.active <= 0 && self.tat_us <= now_ms as i64 * 1000
    }
}

pub(crate) type States = HashMap<Slot, State>;

/// The two queues of held runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// Waiting for its key's slot.
    Key = 1,
    /// Waiting for the function's slot (holding its key's, if any).
    Function = 2,
}

/// A run at the gate.
pub(crate) struct Ticket<'a> {
    pub function: &'static str,
    pub flow: &'static Flow,
    /// The keyed concurrency limit's key.
    pub ckey: Option<&'a str>,
    /// The throttle's and rate limit's keys, on the run's first admission only.
    pub first: Option<(&'a str, &'a str)>,
}

/// What the gate decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Execute now, holding the function's slots if it limits concurrency.
    Go,
    /// Rate limited: finish as `Skipped` with this reason.
    Skip(String),
    /// Throttled: queued until then (unix ms).
    Delay(u64),
    /// Held until a slot frees.
    Hold(Stage),
}

impl Ticket<'_> {
    /// The states the gate reads.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub fn slots(&self) -> Vec<Slot> {
        let flow = self.flow;
        let mut slots = Vec::new();
        let slot = |kind, key: &str| Slot {
            function: self.function,
            kind,
            key: key.to_owned(),
        };
        if let Some((throttle, rate)) = self.first {
            if flow.rate_limit.is_some() {
                slots.push(slot(Kind::RateLimit, rate));
            }
            if flow.throttle.is_some() {
                slots.push(slot(Kind::Throttle, throttle));
            }
        }
        slots.extend(concurrency_slots(self.function, flow, self.ckey));
        slots
    }
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

/// Decides a run's fate, updating `states` (which must hold every slot of
/// [`Ticket::slots`], fresh ones as `State::default()`).
pub(crate) fn admit(t: &Ticket<'_>, now_ms: u64, states: &mut States) -> Verdict {
    let flow = t.flow;
    let now_us = now_ms as i64 * 1000;
    let mut start_us = now_us;
    if let Some((throttle_key, rate_key)) = t.first {
        if let Some(rate) = flow.rate_limit {
            let s = state(states, t.function, Kind::RateLimit, rate_key);
            let (t_us, tau) = gcra(rate);
            if now_us < s.tat_us - tau {
                let key = if rate_key.is_empty() {
                    String::new()
                } else {
                    format!(" for key `{rate_key}`")
                };
                return Verdict::Skip(format!(
                    "rate limited: {} run(s) per {} ms{key} already started",
                    rate.limit, rate.period_ms
                ));
            }
            s.tat_us = s.tat_us.max(now_us) + t_us;
        }
        if let Some(rate) = flow.throttle {
            let s = state(states, t.function, Kind::Throttle, throttle_key);
            let (t_us, _) = gcra(rate);
            start_us = now_us.max(s.tat_us);
            s.tat_us = start_us + t_us;
        }
    }
    if start_us > now_us {
        // Concurrency is taken when the delay is over.
        return Verdict::Delay((start_us as u64).div_ceil(1000));
    }
    acquire(t.function, flow, t.ckey, states)
}

/// Takes the run's concurrency slots, or says where it waits.
fn acquire(
    function: &'static str,
    flow: &Flow,
    ckey: Option<&str>,
    states: &mut States,
) -> Verdict {
    if let Some(limit) = flow.keyed_concurrency {
        let s = state(states, function, Kind::Key, ckey.unwrap_or_default());
        if s.active >= i64::from(limit) {
            return Verdict::Hold(Stage::Key);
        }
        s.active += 1;
    }
    function_slot(function, flow, states)
}

fn function_slot(function: &'static str, flow: &Flow, states: &mut States) -> Verdict {
    if let Some(limit) = flow.concurrency {
        let s = state(states, function, Kind::Function, "");
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
    for slot in concurrency_slots(function, flow, ckey) {
        let s = states.entry(slot).or_default();
        s.active = (s.active - 1).max(0);
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
    };
    let Some(limit) = limit else { return 0 };
    let active = states
        .get(&Slot {
            function,
            kind,
            key: key.to_owned(),
        })
        .map_or(0, |s| s.active);
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
            state(states, function, Kind::Function, "").active += 1;
            placed.push((run, Place::Ready));
        }
    }
    let n = room(function, flow, Stage::Key, ckey, states);
    if n > 0 {
        for run in held(Stage::Key, n) {
            state(states, function, Kind::Key, ckey.unwrap_or_default()).active += 1;
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
    }
}

/// Why a run is delayed by its throttle, for `rt.runs`.
pub(crate) fn throttled(flow: &Flow) -> String {
    let rate = flow.throttle.unwrap_or(Rate {
        limit: 0,
        period_ms: 0,
    });
    format!(
        "throttled: at most {} start(s) per {} ms",
        rate.limit, rate.period_ms
    )
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
    key: &str,
) -> &'s mut State {
    states
        .entry(Slot {
            function,
            kind,
            key: key.to_owned(),
        })
        .or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowKeys;

    fn no_keys(_: &crate::event::Envelope) -> crate::Result<FlowKeys> {
        Ok(FlowKeys::default())
    }

    static THROTTLE: Flow = Flow {
        concurrency: None,
        keyed_concurrency: None,
        throttle: Some(Rate {
            limit: 10,
            period_ms: 1000,
        }),
        rate_limit: None,
        keys: no_keys,
    };

    static RATE: Flow = Flow {
        concurrency: None,
        keyed_concurrency: None,
        throttle: None,
        rate_limit: Some(Rate {
            limit: 1,
            period_ms: 3_600_000,
        }),
        keys: no_keys,
    };

    static STACKED: Flow = Flow {
        concurrency: Some(2),
        keyed_concurrency: Some(1),
        throttle: None,
        rate_limit: None,
        keys: no_keys,
    };

    fn ticket<'a>(flow: &'static Flow, ckey: Option<&'a str>, first: bool) -> Ticket<'a> {
        Ticket {
            function: "f",
            flow,
            ckey,
            first: first.then_some(("", "")),
        }
    }

    #[test]
    fn a_throttle_delays_in_arrival_order_and_drops_nothing() {
        let mut states = States::new();
        let now = 1_000_000;
        let starts: Vec<u64> = (0..30)
            .map(
                |_| match admit(&ticket(&THROTTLE, None, true), now, &mut states) {
                    Verdict::Go => now,
                    Verdict::Delay(at) => at,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        // One start per 100 ms: never more than 10 in a second, the last at 2.9 s.
        assert!(starts.windows(2).all(|w| w[1] == w[0] + 100));
        assert_eq!(starts[29], now + 2900);
    }

    #[test]
    fn a_rate_limit_skips_within_the_period_and_not_after() {
        let mut states = States::new();
        let t = ticket(&RATE, None, true);
        assert_eq!(admit(&t, 0, &mut states), Verdict::Go);
        assert!(matches!(admit(&t, 1000, &mut states), Verdict::Skip(_)));
        assert_eq!(admit(&t, 3_600_000, &mut states), Verdict::Go);
        // Retries and wake-ups are not limited again.
        assert_eq!(
            admit(&ticket(&RATE, None, false), 3_600_001, &mut states),
            Verdict::Go
        );
    }

    #[test]
    fn stacked_limits_hold_per_key_then_per_function_and_refill_in_that_order() {
        let mut states = States::new();
        assert_eq!(
            admit(&ticket(&STACKED, Some("a"), true), 0, &mut states),
            Verdict::Go
        );
        assert_eq!(
            admit(&ticket(&STACKED, Some("a"), true), 0, &mut states),
            Verdict::Hold(Stage::Key)
        );
        assert_eq!(
            admit(&ticket(&STACKED, Some("b"), true), 0, &mut states),
            Verdict::Go
        );
        assert_eq!(
            admit(&ticket(&STACKED, Some("c"), true), 0, &mut states),
            Verdict::Hold(Stage::Function)
        );
        // "a" ends: the function's queue ("c") goes first, then "a"'s next run, which
        // now waits for the function.
        release("f", &STACKED, Some("a"), &mut states);
        let placed = refill("f", &STACKED, Some("a"), &mut states, |stage, n| {
            assert_eq!(n, 1);
            vec![stage]
        });
        assert_eq!(
            placed,
            vec![
                (Stage::Function, Place::Ready),
                (Stage::Key, Place::Function)
            ]
        );
    }
}
