//! Flow-control keys of `#[function]` (`concurrency`, `throttle`, `rate_limit`,
//! `debounce`, `batch`, `priority`, `filter`, `idempotency`): checked here (durations,
//! limits, key closures, contradictions); `expand.rs` turns them into the function's
//! `Flow` record with one fn that computes every key.

use crate::attr::{Control, FunctionArgs};
use crate::check::Errors;
use syn::spanned::Spanned;
use syn::{ExprClosure, LitInt, LitStr};

mod expand;

/// The greatest `limit` of any control.
pub const MAX_LIMIT: u32 = 100_000;

/// The longest `period`: a week, in milliseconds.
const MAX_PERIOD_MS: u64 = 7 * 24 * 3600 * 1000;

/// What the expansion needs of the flow-control keys, once checked.
#[derive(Default)]
pub struct Flow {
    /// `concurrency = N`: runs of the function executing at once.
    concurrency: Option<u32>,
    /// `concurrency(limit = N, key = …)`: runs per key executing at once.
    keyed: Option<(u32, ExprClosure)>,
    throttle: Option<Rate>,
    rate_limit: Option<Rate>,
    debounce: Option<Debounce>,
    batch: Option<Batch>,
    priority: Option<ExprClosure>,
    filter: Option<ExprClosure>,
    idempotency: Option<ExprClosure>,
}

struct Debounce {
    period_ms: u64,
    timeout_ms: Option<u64>,
    key: Option<ExprClosure>,
}

struct Batch {
    max: u32,
    timeout_ms: u64,
    key: Option<ExprClosure>,
}

/// The most events a batch takes.
const MAX_BATCH: u32 = 10_000;

struct Rate {
    limit: u32,
    period_ms: u64,
    key: Option<ExprClosure>,
}

impl Flow {
    /// Checks the flow-control keys, reporting each problem; `None` when any failed.
    pub fn check(args: &mut FunctionArgs, errors: &mut Errors) -> Option<Flow> {
        let mut ok = true;
        let mut flow = Flow::default();
        let mut unkeyed_at = None;
        for (i, c) in std::mem::take(&mut args.concurrency)
            .into_iter()
            .enumerate()
        {
            let limit = limit(&c, errors);
            if c.key.is_some() && flow.keyed.is_some()
                || c.key.is_none() && flow.concurrency.is_some()
                || i >= 2
            {
                ok = false;
                errors.at(
                    c.span,
                    "at most two `concurrency` limits stack: one with a `key` and one without\n\
                     help: merge the limits that are alike into one"
                        .to_owned(),
                );
                continue;
            }
            let key = c.key.map(|k| closure(k, "concurrency", errors));
            match (limit, key) {
                (Some(limit), Some(Some(key))) => flow.keyed = Some((limit, key)),
                (Some(limit), None) => {
                    flow.concurrency = Some(limit);
                    unkeyed_at = Some(c.span);
                }
                _ => ok = false,
            }
        }
        if let (Some(all), Some((per_key, key))) = (flow.concurrency, &flow.keyed) {
            if *per_key >= all {
                ok = false;
                errors.at(
                    unkeyed_at.unwrap_or_else(|| key.span()),
                    format!(
                        "the limit per key ({per_key}) is not below the function's limit ({all}), \
                         so it never applies\nhelp: lower the keyed `limit`, or remove one of the two"
                    ),
                );
            }
        }
        for (slot, control) in [
            (&mut flow.throttle, args.throttle.take()),
            (&mut flow.rate_limit, args.rate_limit.take()),
        ] {
            let Some(c) = control else { continue };
            let limit = limit(&c, errors);
            let period = required_duration(&c, c.period.as_ref(), "period", errors);
            let key = c.key.map(|k| closure(k, c.name, errors));
            match (limit, period, key) {
                (Some(limit), Some(period_ms), None) => {
                    *slot = Some(Rate {
                        limit,
                        period_ms,
                        key: None,
                    })
                }
                (Some(limit), Some(period_ms), Some(Some(key))) => {
                    *slot = Some(Rate {
                        limit,
                        period_ms,
                        key: Some(key),
                    })
                }
                _ => ok = false,
            }
        }
        if let Some(c) = args.debounce.take() {
            let period = required_duration(&c, c.period.as_ref(), "period", errors);
            let timeout = c.timeout.as_ref().map(|t| duration(t, errors));
            let key = c.key.map(|k| closure(k, "debounce", errors));
            if let (Some(period), Some(Some(timeout)), Some(lit)) = (period, timeout, &c.timeout) {
                if timeout < period {
                    ok = false;
                    errors.spanned(
                        lit,
                        "the debounce `timeout` is shorter than its `period`, so it would cut every wait short\n\
                         help: make `timeout` longer than `period`, or remove it",
                    );
                }
            }
            match period {
                Some(period_ms) if !matches!(timeout, Some(None)) && !matches!(key, Some(None)) => {
                    flow.debounce = Some(Debounce {
                        period_ms,
                        timeout_ms: timeout.flatten(),
                        key: key.flatten(),
                    })
                }
                _ => ok = false,
            }
        }
        if let Some(c) = args.batch.take() {
            let max = match &c.max {
                Some(lit) => number(lit, "batch", MAX_BATCH, errors),
                None => {
                    errors.at(
                        c.span,
                        "`batch` needs a `max`\nhelp: write `batch(max = 100, timeout = \"2s\")`",
                    );
                    None
                }
            };
            let timeout = required_duration(&c, c.timeout.as_ref(), "timeout", errors);
            let key = c.key.map(|k| closure(k, "batch", errors));
            // A batch run executes many events at once: what limits single runs by
            // their event has no event to go by.
            for (name, set) in [
                ("debounce", flow.debounce.is_some()),
                ("rate_limit", flow.rate_limit.is_some()),
                ("throttle", flow.throttle.is_some()),
                ("a keyed `concurrency`", flow.keyed.is_some()),
                ("priority", args.priority.is_some()),
            ] {
                if set {
                    ok = false;
                    errors.at(
                        c.span,
                        format_args!(
                            "`batch` cannot be combined with {}: a batch run carries many events, and it goes by one event\n\
                             help: remove one of the two",
                            if name.starts_with('a') { name.to_owned() } else { format!("`{name}`") }
                        ),
                    );
                }
            }
            match (max, timeout) {
                (Some(max), Some(timeout_ms)) if !matches!(key, Some(None)) => {
                    flow.batch = Some(Batch {
                        max,
                        timeout_ms,
                        key: key.flatten(),
                    })
                }
                _ => ok = false,
            }
        }
        for (slot, closure_arg, what) in [
            (&mut flow.filter, args.filter.take(), "filter"),
            (
                &mut flow.idempotency,
                args.idempotency.take(),
                "idempotency",
            ),
        ] {
            if let Some(k) = closure_arg {
                match closure(k, what, errors) {
                    Some(k) => *slot = Some(k),
                    None => ok = false,
                }
            }
        }
        if let Some(p) = args.priority.take() {
            if flow.concurrency.is_none() && flow.keyed.is_none() {
                ok = false;
                errors.spanned(
                    &p,
                    "`priority` orders the runs that wait for a concurrency slot, and this function has no \
                     concurrency limit\nhelp: add `concurrency = N`, or remove `priority`"
                        .to_owned(),
                );
            }
            match closure(p, "priority", errors) {
                Some(p) => flow.priority = Some(p),
                None => ok = false,
            }
        }
        ok.then_some(flow)
    }

    /// Whether any flow-control key is set.
    fn is_empty(&self) -> bool {
        self.concurrency.is_none()
            && self.keyed.is_none()
            && self.throttle.is_none()
            && self.rate_limit.is_none()
            && self.debounce.is_none()
            && self.batch.is_none()
            && self.filter.is_none()
            && self.idempotency.is_none()
    }

    /// Whether the function takes its events in batches.
    pub fn batches(&self) -> bool {
        self.batch.is_some()
    }
}

/// Checks a key closure's shape: one parameter, no `async`.
fn closure(k: ExprClosure, what: &str, errors: &mut Errors) -> Option<ExprClosure> {
    if k.inputs.len() != 1 || k.asyncness.is_some() {
        errors.spanned(
            &k,
            format_args!(
                "the `{what}` key must be a closure of the event, taking one argument\n\
                 help: write `key = |e| e.customer_id`"
            ),
        );
        return None;
    }
    Some(k)
}

/// Reads `limit` as a whole number in `1..=MAX_LIMIT`.
fn limit(c: &Control, errors: &mut Errors) -> Option<u32> {
    let Some(lit) = &c.limit else {
        errors.at(
            c.span,
            format_args!(
                "`{}` needs a `limit`\nhelp: write `{}(limit = 1, …)`",
                c.name, c.name
            ),
        );
        return None;
    };
    number(lit, c.name, MAX_LIMIT, errors)
}

fn number(lit: &LitInt, what: &str, most: u32, errors: &mut Errors) -> Option<u32> {
    match lit.base10_parse::<u32>() {
        Ok(n) if (1..=most).contains(&n) => Some(n),
        _ => {
            errors.spanned(
                lit,
                format_args!(
                    "the `{what}` limit must be a whole number from 1 to {most}\n\
                     help: a limit of 0 would never let a run start"
                ),
            );
            None
        }
    }
}

/// A duration the control requires.
fn required_duration(
    c: &Control,
    lit: Option<&LitStr>,
    what: &str,
    errors: &mut Errors,
) -> Option<u64> {
    match lit {
        Some(lit) => duration(lit, errors),
        None => {
            errors.at(
                c.span,
                format_args!(
                    "`{}` needs a `{what}`\nhelp: write `{}({what} = \"1s\", …)`",
                    c.name, c.name
                ),
            );
            None
        }
    }
}

/// Parses a duration written as a whole number and a unit: `"500ms"`, `"10s"`, `"5m"`,
/// `"1h"`, `"1d"`; from 1 ms to 7 days.
pub fn duration(lit: &LitStr, errors: &mut Errors) -> Option<u64> {
    let text = lit.value();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale = match unit {
        "ms" => Some(1),
        "s" => Some(1_000),
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(86_400_000),
        _ => None,
    };
    let ms = scale.and_then(|scale| number.parse::<u64>().ok()?.checked_mul(scale));
    match ms {
        Some(ms) if (1..=MAX_PERIOD_MS).contains(&ms) => Some(ms),
        Some(_) => {
            errors.spanned(
                lit,
                format_args!("the duration `{text}` is out of range: it must be from 1ms to 7d"),
            );
            None
        }
        None => {
            errors.spanned(
                lit,
                format_args!(
                    "`{text}` is not a duration\n\
                     help: write a whole number and a unit (`ms`, `s`, `m`, `h`, `d`): \"500ms\", \"10s\", \"5m\", \"1h\", \"1d\""
                ),
            );
            None
        }
    }
}
