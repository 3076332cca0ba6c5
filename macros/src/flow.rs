//! Flow-control keys of `#[function]` (`concurrency`, `throttle`, `rate_limit`,
//! `priority`): checked here (durations, limits, key closures, contradictions) and
//! expanded into the function's `Flow` record with one fn that computes every key.

use crate::attr::{Control, FunctionArgs};
use crate::check::Errors;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ExprClosure, LitInt, LitStr, Type};

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

    /// Items defining `__FANFARE_FLOW` (when there is flow control), and the expression
    /// that hands it to the registration: `Some(&__FANFARE_FLOW)` or `None`.
    pub fn expand(&self, event: &Type, private: &TokenStream) -> (TokenStream, TokenStream) {
        if self.is_empty() {
            return (TokenStream::new(), quote!(::core::option::Option::None));
        }
        let e = quote::format_ident!("__fanfare_e");
        let key = |k: Option<&ExprClosure>| match k {
            Some(k) => key_call(k, &e, private),
            None => quote!(::core::option::Option::None),
        };
        let rate = |r: &Option<Rate>| match r {
            Some(Rate {
                limit, period_ms, ..
            }) => quote! {
                ::core::option::Option::Some(#private::Rate { limit: #limit, period_ms: #period_ms })
            },
            None => quote!(::core::option::Option::None),
        };
        let concurrency = option(self.concurrency);
        let keyed = option(self.keyed.as_ref().map(|(l, _)| *l));
        let (throttle, rate_limit) = (rate(&self.throttle), rate(&self.rate_limit));
        let keyed_key = key(self.keyed.as_ref().map(|(_, k)| k));
        let throttle_key = key(self.throttle.as_ref().and_then(|r| r.key.as_ref()));
        let rate_key = key(self.rate_limit.as_ref().and_then(|r| r.key.as_ref()));
        let debounce_key = key(self.debounce.as_ref().and_then(|d| d.key.as_ref()));
        let batch_key = key(self.batch.as_ref().and_then(|b| b.key.as_ref()));
        let debounce = match &self.debounce {
            Some(Debounce {
                period_ms,
                timeout_ms,
                ..
            }) => {
                let timeout = match timeout_ms {
                    Some(t) => quote!(::core::option::Option::Some(#t)),
                    None => quote!(::core::option::Option::None),
                };
                quote! {
                    ::core::option::Option::Some(#private::Debounce { period_ms: #period_ms, timeout_ms: #timeout })
                }
            }
            None => quote!(::core::option::Option::None),
        };
        let batch = match &self.batch {
            Some(Batch {
                max, timeout_ms, ..
            }) => quote! {
                ::core::option::Option::Some(#private::BatchRule { max: #max, timeout_ms: #timeout_ms })
            },
            None => quote!(::core::option::Option::None),
        };
        let idempotency_key = key(self.idempotency.as_ref());
        let filtered = match &self.filter {
            Some(f) => {
                let (pat, body) = parts(f);
                quote!(!#private::filter_of(#e, |#pat| #body))
            }
            None => quote!(false),
        };
        let has_filter = self.filter.is_some();
        let has_idempotency = self.idempotency.is_some();
        let priority = match &self.priority {
            Some(p) => {
                let (pat, body) = parts(p);
                let span = p.body.span();
                let at = crate::exports::private(span);
                let clamp = quote_spanned!(span=> #at::priority(&(#body)));
                quote!(#private::key_of(#e, |#pat| #clamp))
            }
            None => quote!(0),
        };
        let items = quote! {
            fn __fanfare_flow_keys(
                __fanfare_event: &#private::Envelope,
            ) -> #private::Result<#private::FlowKeys> {
                #private::flow_keys::<#event, _>(__fanfare_event, |#e| #private::FlowKeys {
                    concurrency: #keyed_key,
                    throttle: #throttle_key,
                    rate_limit: #rate_key,
                    debounce: #debounce_key,
                    batch: #batch_key,
                    priority: #priority,
                    filtered: #filtered,
                    idempotency: #idempotency_key,
                })
            }

            const __FANFARE_FLOW: #private::Flow = #private::Flow {
                concurrency: #concurrency,
                keyed_concurrency: #keyed,
                throttle: #throttle,
                rate_limit: #rate_limit,
                debounce: #debounce,
                batch: #batch,
                filter: #has_filter,
                idempotency: #has_idempotency,
                keys: __fanfare_flow_keys,
            };
        };
        (items, quote!(::core::option::Option::Some(&__FANFARE_FLOW)))
    }
}

fn option(v: Option<u32>) -> TokenStream {
    match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// `Some(key)`, computed by the user's closure: its body is borrowed (so `|e| e.name`
/// works for a `String` field) and turned into a string through `Display`, with any
/// error spanned on the body.
fn key_call(k: &ExprClosure, e: &syn::Ident, private: &TokenStream) -> TokenStream {
    let (pat, body) = parts(k);
    let span = k.body.span();
    let at = crate::exports::private(span);
    let string = quote_spanned!(span=> #at::key_string(&(#body)));
    quote!(::core::option::Option::Some(#private::key_of(#e, |#pat| #string)))
}

/// The closure's one parameter pattern and its body.
fn parts(k: &ExprClosure) -> (&syn::Pat, &syn::Expr) {
    (&k.inputs[0], &k.body)
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
