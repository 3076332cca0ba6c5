//! The rules' decisions, one scenario each.

use super::*;
use crate::flow::{BatchRule, Debounce};

fn no_keys(_: &crate::event::Envelope) -> crate::Result<FlowKeys> {
    Ok(FlowKeys::default())
}

const NONE: Flow = Flow {
    concurrency: None,
    keyed_concurrency: None,
    throttle: None,
    rate_limit: None,
    debounce: None,
    batch: None,
    filter: false,
    idempotency: false,
    keys: no_keys,
};

static THROTTLE: Flow = Flow {
    throttle: Some(Rate {
        limit: 10,
        period_ms: 1000,
    }),
    ..NONE
};

static RATE: Flow = Flow {
    rate_limit: Some(Rate {
        limit: 1,
        period_ms: 3_600_000,
    }),
    ..NONE
};

static STACKED: Flow = Flow {
    concurrency: Some(2),
    keyed_concurrency: Some(1),
    ..NONE
};

static DEBOUNCE: Flow = Flow {
    debounce: Some(Debounce {
        period_ms: 500,
        timeout_ms: Some(2000),
    }),
    ..NONE
};

static BATCH: Flow = Flow {
    batch: Some(BatchRule {
        max: 3,
        timeout_ms: 2000,
    }),
    ..NONE
};

/// A new run's first pass.
fn first(
    flow: &Flow,
    id: i64,
    ckey: Option<&str>,
    now: u64,
    states: &mut States,
) -> (Verdict, RunFlow) {
    let mut run = RunFlow {
        ckey: ckey.map(str::to_owned),
        ..RunFlow::default()
    };
    let v = again(flow, id, &mut run, now, states);
    (v, run)
}

/// A later pass of the same run.
fn again(flow: &Flow, id: i64, run: &mut RunFlow, now: u64, states: &mut States) -> Verdict {
    let keys = (run.flags & ADMITTED == 0 || run.flags & THROTTLED != 0).then(FlowKeys::default);
    admit("f", flow, id, run, keys.as_ref(), now, states)
}

#[test]
fn a_throttle_delays_in_arrival_order_and_drops_nothing() {
    let mut states = States::new();
    let now = 1_000_000;
    let starts: Vec<u64> = (0..30)
        .map(|i| match first(&THROTTLE, i, None, now, &mut states).0 {
            Verdict::Go => now,
            Verdict::Delay(at, Why::Throttle) => at,
            other => panic!("{other:?}"),
        })
        .collect();
    // One start per 100 ms: never more than 10 in a second, the last at 2.9 s.
    assert!(starts.windows(2).all(|w| w[1] == w[0] + 100));
    assert_eq!(starts[29], now + 2900);
}

#[test]
fn a_rate_limit_skips_within_the_period_and_not_after() {
    let mut states = States::new();
    assert_eq!(first(&RATE, 1, None, 0, &mut states).0, Verdict::Go);
    let (skipped, run) = first(&RATE, 2, None, 1000, &mut states);
    assert!(matches!(skipped, Verdict::Skip(_)));
    assert_ne!(run.flags & SKIPPED, 0);
    let (go, mut run) = first(&RATE, 3, None, 3_600_000, &mut states);
    assert_eq!(go, Verdict::Go);
    // Retries and wake-ups are not limited again.
    assert_eq!(
        again(&RATE, 3, &mut run, 3_600_001, &mut states),
        Verdict::Go
    );
}

#[test]
fn stacked_limits_hold_per_key_then_per_function_and_refill_in_that_order() {
    let mut states = States::new();
    assert_eq!(first(&STACKED, 1, Some("a"), 0, &mut states).0, Verdict::Go);
    assert_eq!(
        first(&STACKED, 2, Some("a"), 0, &mut states).0,
        Verdict::Hold(Stage::Key)
    );
    assert_eq!(first(&STACKED, 3, Some("b"), 0, &mut states).0, Verdict::Go);
    assert_eq!(
        first(&STACKED, 4, Some("c"), 0, &mut states).0,
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

#[test]
fn a_debounce_runs_the_last_event_of_a_burst_and_caps_the_wait() {
    let mut states = States::new();
    let mut runs = Vec::new();
    for i in 0..5 {
        let (v, run) = first(&DEBOUNCE, i, None, 100 * i as u64, &mut states);
        assert_eq!(v, Verdict::Delay(100 * i as u64 + 500, Why::Debounce));
        runs.push(run);
    }
    // At their times, the first four find a later event in their place.
    for (i, run) in runs.iter_mut().enumerate().take(4) {
        let at = 100 * i as u64 + 500;
        assert!(matches!(
            again(&DEBOUNCE, i as i64, run, at, &mut states),
            Verdict::Skip(_)
        ));
    }
    assert_eq!(
        again(&DEBOUNCE, 4, &mut runs[4], 900, &mut states),
        Verdict::Go
    );
    // An endless burst: the timeout (2 s from its first event) caps the wait.
    let mut last = None;
    for i in 0..40 {
        let (v, run) = first(&DEBOUNCE, 100 + i, None, 1000 + 100 * i as u64, &mut states);
        if let Verdict::Delay(at, _) = v {
            assert!(at <= 3000);
        }
        last = Some((100 + i, run, v));
        if 1000 + 100 * i as u64 >= 2900 {
            break;
        }
    }
    let (id, mut run, _) = last.unwrap();
    assert_eq!(
        again(&DEBOUNCE, id, &mut run, 3000, &mut states),
        Verdict::Go
    );
}

#[test]
fn a_batch_is_executed_by_the_run_that_fills_it_or_by_its_first_after_the_timeout() {
    let mut states = States::new();
    let (v1, mut r1) = first(&BATCH, 1, None, 0, &mut states);
    assert_eq!(v1, Verdict::Delay(2000, Why::Batch));
    assert_eq!(
        first(&BATCH, 2, None, 10, &mut states).0,
        Verdict::Hold(Stage::Batch)
    );
    let (v3, r3) = first(&BATCH, 3, None, 20, &mut states);
    assert_eq!(v3, Verdict::Go);
    assert_eq!((r3.batch, r3.flags & RUNNER != 0), (Some(1), true));
    // The first run, at its timeout, finds its batch executed by another.
    assert_eq!(
        again(&BATCH, 1, &mut r1, 2000, &mut states),
        Verdict::Hold(Stage::Batch)
    );
    // A batch that does not fill is executed by its first run after the timeout.
    let (_, mut r4) = first(&BATCH, 4, None, 3000, &mut states);
    let (_, r5) = first(&BATCH, 5, None, 3001, &mut states);
    assert_eq!(r5.batch, Some(4));
    assert_eq!(again(&BATCH, 4, &mut r4, 5000, &mut states), Verdict::Go);
    assert_ne!(r4.flags & RUNNER, 0);
}

#[test]
fn a_debounce_passed_out_of_order_still_runs_the_last_event() {
    // Two replicas: the burst's last event (run 2, sent at 20) passes the gate before
    // the one sent at 10 (run 1), and a run of the same millisecond with a smaller key.
    let mut states = States::new();
    let arriving = |at: i64, seq: i64| RunFlow {
        arrival: (at, seq),
        ..RunFlow::default()
    };
    let mut last = arriving(20, 2);
    assert_eq!(
        again(&DEBOUNCE, 2, &mut last, 30, &mut states),
        Verdict::Delay(530, Why::Debounce)
    );
    for (id, at, seq) in [(1, 10, 1), (3, 20, 1)] {
        let mut earlier = arriving(at, seq);
        let v = again(&DEBOUNCE, id, &mut earlier, 40, &mut states);
        assert!(matches!(v, Verdict::Skip(_)), "{v:?}");
        assert_ne!(earlier.flags & SKIPPED, 0);
    }
    assert_eq!(
        again(&DEBOUNCE, 2, &mut last, 530, &mut states),
        Verdict::Go
    );
    // A later event after all takes the place of the waiting one.
    let mut a = arriving(600, 5);
    let mut b = arriving(600, 6);
    again(&DEBOUNCE, 5, &mut a, 600, &mut states);
    again(&DEBOUNCE, 6, &mut b, 601, &mut states);
    assert!(matches!(
        again(&DEBOUNCE, 5, &mut a, 1100, &mut states),
        Verdict::Skip(_)
    ));
    assert_eq!(again(&DEBOUNCE, 6, &mut b, 1101, &mut states), Verdict::Go);
}

#[test]
fn a_throttle_claimed_late_still_spaces_its_starts() {
    let mut states = States::new();
    let now = 1_000_000;
    let (go, _) = first(&THROTTLE, 1, None, now, &mut states);
    assert_eq!(go, Verdict::Go);
    let (v2, mut r2) = first(&THROTTLE, 2, None, now, &mut states);
    let (v3, mut r3) = first(&THROTTLE, 3, None, now, &mut states);
    assert_eq!(v2, Verdict::Delay(now + 100, Why::Throttle));
    assert_eq!(v3, Verdict::Delay(now + 200, Why::Throttle));
    // Claimed together, 500 ms late: one starts, the other waits an interval more.
    let at = now + 700;
    assert_eq!(again(&THROTTLE, 2, &mut r2, at, &mut states), Verdict::Go);
    assert_eq!(
        again(&THROTTLE, 3, &mut r3, at, &mut states),
        Verdict::Delay(at + 100, Why::Throttle)
    );
    // A new event takes its turn after the late start's.
    let (v4, _) = first(&THROTTLE, 4, None, at, &mut states);
    assert!(
        matches!(v4, Verdict::Delay(t, _) if t >= at + 100),
        "{v4:?}"
    );
    assert_eq!(
        again(&THROTTLE, 3, &mut r3, at + 100, &mut states),
        Verdict::Go
    );
}

#[test]
fn a_run_promoted_into_its_slots_is_settled_and_goes_without_a_state() {
    let mut states = States::new();
    assert_eq!(first(&STACKED, 1, Some("a"), 0, &mut states).0, Verdict::Go);
    let (held, mut run) = first(&STACKED, 2, Some("a"), 0, &mut states);
    assert_eq!(held, Verdict::Hold(Stage::Key));
    assert!(!settled(&run));
    // Run 1 ends: run 2 takes its slots (a store sets SLOTS on the promoted run).
    release("f", &STACKED, Some("a"), &mut states);
    let placed = refill(
        "f",
        &STACKED,
        Some("a"),
        &mut states,
        |stage, _| match stage {
            Stage::Key => vec![2],
            _ => Vec::new(),
        },
    );
    assert_eq!(placed, vec![(2, Place::Ready)]);
    run.flags |= SLOTS;
    assert!(settled(&run));
    let mut none = States::new();
    assert_eq!(again(&STACKED, 2, &mut run, 10, &mut none), Verdict::Go);
    assert_eq!(none.len(), 0, "no state read or written");
}

static KEYED: Flow = Flow {
    keyed_concurrency: Some(2),
    ..NONE
};

#[test]
fn a_full_key_hands_a_released_slot_straight_to_its_next_run() {
    let mut states = States::new();
    assert!(!hands_over("f", &KEYED, Some("a"), &states), "no state yet");
    assert_eq!(first(&KEYED, 1, Some("a"), 0, &mut states).0, Verdict::Go);
    assert!(
        !hands_over("f", &KEYED, Some("a"), &states),
        "a slot is free: a release must be counted"
    );
    assert_eq!(first(&KEYED, 2, Some("a"), 0, &mut states).0, Verdict::Go);
    assert_eq!(
        first(&KEYED, 3, Some("a"), 0, &mut states).0,
        Verdict::Hold(Stage::Key)
    );
    assert!(hands_over("f", &KEYED, Some("a"), &states));
    assert!(!hands_over("f", &KEYED, Some("b"), &states), "another key");
    // The hand-over is what release and refill would do: the key stays full.
    let before = *states.get("f", Kind::Key, "a").unwrap();
    release("f", &KEYED, Some("a"), &mut states);
    let mut placed = refill("f", &KEYED, Some("a"), &mut states, |_, n| {
        assert_eq!(n, 1);
        vec![3]
    });
    assert_eq!(placed.pop(), Some((3, Place::Ready)));
    assert_eq!(*states.get("f", Kind::Key, "a").unwrap(), before);
    // A function-wide limit too: its slot must be given back through the rules.
    let mut stacked = States::new();
    assert_eq!(
        first(&STACKED, 1, Some("a"), 0, &mut stacked).0,
        Verdict::Go
    );
    assert!(!hands_over("f", &STACKED, Some("a"), &stacked));
}
