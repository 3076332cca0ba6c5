//! Parsing of `#[function(…)]` and `#[event(…)]` arguments: hand-written, one key at a
//! time with `lookahead1`, so an unknown key is answered with the list of valid ones.

use crate::check::Errors;
use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{ExprClosure, LitInt, LitStr, Token};

mod kw {
    syn::custom_keyword!(trigger);
    syn::custom_keyword!(id);
    syn::custom_keyword!(retries);
    syn::custom_keyword!(on_failure);
    syn::custom_keyword!(name);
    syn::custom_keyword!(concurrency);
    syn::custom_keyword!(throttle);
    syn::custom_keyword!(rate_limit);
    syn::custom_keyword!(priority);
    syn::custom_keyword!(limit);
    syn::custom_keyword!(period);
    syn::custom_keyword!(key);
    syn::custom_keyword!(debounce);
    syn::custom_keyword!(batch);
    syn::custom_keyword!(max);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(filter);
    syn::custom_keyword!(idempotency);
    syn::custom_keyword!(cron);
    syn::custom_keyword!(cancel_on);
    syn::custom_keyword!(event);
    syn::custom_keyword!(matching);
    syn::custom_keyword!(timeouts);
    syn::custom_keyword!(start);
    syn::custom_keyword!(finish);
}

/// The greatest `retries` value accepted.
pub const MAX_RETRIES: u32 = 20;

/// Stores `value` for `key`, or reports a duplicate: the single place where duplicate
/// keys are detected, for every attribute (axum's `parse_assignment_attribute`).
fn set<T>(slot: &mut Option<T>, key: &str, key_span: Span, value: T, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(
            key_span,
            format_args!("duplicate `{key}` key\nhelp: remove one of the two `{key} = …`"),
        );
    } else {
        *slot = Some(value);
    }
}

/// Parses `key = value` pairs separated by commas, calling `one` for each key.
fn parse_pairs(
    input: ParseStream,
    mut one: impl FnMut(ParseStream) -> syn::Result<()>,
) -> syn::Result<()> {
    while !input.is_empty() {
        one(input)?;
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// The arguments of a flow-control key (`concurrency(…)`, `throttle(…)`, `rate_limit(…)`,
/// `debounce(…)`, `batch(…)`): whichever are written, among those the control takes;
/// which are required is checked later.
pub struct Control {
    /// The control's name, for messages and spans.
    pub name: &'static str,
    pub span: Span,
    pub limit: Option<LitInt>,
    pub max: Option<LitInt>,
    pub period: Option<LitStr>,
    pub timeout: Option<LitStr>,
    pub key: Option<ExprClosure>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            name: "",
            span: Span::call_site(),
            limit: None,
            max: None,
            period: None,
            timeout: None,
            key: None,
        }
    }
}

impl Control {
    /// Parses the parenthesized arguments of control `name`.
    fn parse(
        name: &'static str,
        span: Span,
        input: ParseStream,
        errors: &mut Errors,
    ) -> syn::Result<Control> {
        let content;
        syn::parenthesized!(content in input);
        let mut control = Control {
            name,
            span,
            ..Control::default()
        };
        // What each control takes.
        let (limit, max, period, timeout) = match name {
            "concurrency" => (true, false, false, false),
            "throttle" | "rate_limit" => (true, false, true, false),
            "debounce" => (false, false, true, true),
            _ => (false, true, false, true),
        };
        parse_pairs(&content, |input| {
            let look = input.lookahead1();
            if limit && look.peek(kw::limit) {
                let key = input.parse::<kw::limit>()?;
                input.parse::<Token![=]>()?;
                set(
                    &mut control.limit,
                    "limit",
                    key.span,
                    input.parse()?,
                    errors,
                );
            } else if max && look.peek(kw::max) {
                let key = input.parse::<kw::max>()?;
                input.parse::<Token![=]>()?;
                set(&mut control.max, "max", key.span, input.parse()?, errors);
            } else if period && look.peek(kw::period) {
                let key = input.parse::<kw::period>()?;
                input.parse::<Token![=]>()?;
                set(
                    &mut control.period,
                    "period",
                    key.span,
                    input.parse()?,
                    errors,
                );
            } else if timeout && look.peek(kw::timeout) {
                let key = input.parse::<kw::timeout>()?;
                input.parse::<Token![=]>()?;
                set(
                    &mut control.timeout,
                    "timeout",
                    key.span,
                    input.parse()?,
                    errors,
                );
            } else if look.peek(kw::key) {
                let key = input.parse::<kw::key>()?;
                input.parse::<Token![=]>()?;
                set(&mut control.key, "key", key.span, input.parse()?, errors);
            } else {
                return Err(look.error());
            }
            Ok(())
        })?;
        Ok(control)
    }
}

/// `cancel_on(event = "…", matching = "…", timeout = "…")`: which are required is
/// checked later.
pub struct CancelOn {
    pub span: Span,
    pub event: Option<LitStr>,
    pub matching: Option<LitStr>,
    pub timeout: Option<LitStr>,
}

impl CancelOn {
    fn parse(span: Span, input: ParseStream, errors: &mut Errors) -> syn::Result<CancelOn> {
        let content;
        syn::parenthesized!(content in input);
        let mut c = CancelOn {
            span,
            event: None,
            matching: None,
            timeout: None,
        };
        parse_pairs(&content, |input| {
            let look = input.lookahead1();
            if look.peek(kw::event) {
                let key = input.parse::<kw::event>()?;
                input.parse::<Token![=]>()?;
                set(&mut c.event, "event", key.span, input.parse()?, errors);
            } else if look.peek(kw::matching) {
                let key = input.parse::<kw::matching>()?;
                input.parse::<Token![=]>()?;
                set(
                    &mut c.matching,
                    "matching",
                    key.span,
                    input.parse()?,
                    errors,
                );
            } else if look.peek(kw::timeout) {
                let key = input.parse::<kw::timeout>()?;
                input.parse::<Token![=]>()?;
                set(&mut c.timeout, "timeout", key.span, input.parse()?, errors);
            } else {
                return Err(look.error());
            }
            Ok(())
        })?;
        Ok(c)
    }
}

/// `timeouts(start = "…", finish = "…")`.
pub struct Timeouts {
    pub span: Span,
    pub start: Option<LitStr>,
    pub finish: Option<LitStr>,
}

impl Timeouts {
    fn parse(span: Span, input: ParseStream, errors: &mut Errors) -> syn::Result<Timeouts> {
        let content;
        syn::parenthesized!(content in input);
        let mut t = Timeouts {
            span,
            start: None,
            finish: None,
        };
        parse_pairs(&content, |input| {
            let look = input.lookahead1();
            if look.peek(kw::start) {
                let key = input.parse::<kw::start>()?;
                input.parse::<Token![=]>()?;
                set(&mut t.start, "start", key.span, input.parse()?, errors);
            } else if look.peek(kw::finish) {
                let key = input.parse::<kw::finish>()?;
                input.parse::<Token![=]>()?;
                set(&mut t.finish, "finish", key.span, input.parse()?, errors);
            } else {
                return Err(look.error());
            }
            Ok(())
        })?;
        Ok(t)
    }
}

/// `#[function(trigger = "…" | cron = "…", id = "…", retries = N, on_failure = handler, …flow control)]`
#[derive(Default)]
pub struct FunctionArgs {
    /// `trigger = "…"` or `trigger = ["…", "…"]`.
    pub trigger: Option<Vec<LitStr>>,
    /// `cron = "…"`.
    pub cron: Option<LitStr>,
    pub id: Option<LitStr>,
    pub retries: Option<LitInt>,
    pub on_failure: Option<syn::Path>,
    /// `concurrency = N` and `concurrency(limit = N, key = …)`, in the order written.
    pub concurrency: Vec<Control>,
    pub throttle: Option<Control>,
    pub rate_limit: Option<Control>,
    pub debounce: Option<Control>,
    pub batch: Option<Control>,
    pub priority: Option<ExprClosure>,
    pub filter: Option<ExprClosure>,
    pub idempotency: Option<ExprClosure>,
    /// `cancel_on(event = "…", matching = "…", timeout = "…")`, in the order written.
    pub cancel_on: Vec<CancelOn>,
    /// `timeouts(start = "…", finish = "…")`.
    pub timeouts: Option<Timeouts>,
    /// Problems that do not stop parsing (duplicates); reported with the other checks.
    pub errors: Errors,
}

impl Parse for FunctionArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = FunctionArgs::default();
        parse_pairs(input, |input| {
            let look = input.lookahead1();
            if look.peek(kw::trigger) {
                let key = input.parse::<kw::trigger>()?;
                input.parse::<Token![=]>()?;
                let value = if input.peek(syn::token::Bracket) {
                    let content;
                    syn::bracketed!(content in input);
                    let names = content.parse_terminated(|i| i.parse::<LitStr>(), Token![,])?;
                    names.into_iter().collect()
                } else {
                    vec![input.parse()?]
                };
                set(
                    &mut args.trigger,
                    "trigger",
                    key.span,
                    value,
                    &mut args.errors,
                );
            } else if look.peek(kw::cron) {
                let key = input.parse::<kw::cron>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse()?;
                set(&mut args.cron, "cron", key.span, value, &mut args.errors);
            } else if look.peek(kw::id) {
                let key = input.parse::<kw::id>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse()?;
                set(&mut args.id, "id", key.span, value, &mut args.errors);
            } else if look.peek(kw::retries) {
                let key = input.parse::<kw::retries>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse()?;
                set(
                    &mut args.retries,
                    "retries",
                    key.span,
                    value,
                    &mut args.errors,
                );
            } else if look.peek(kw::on_failure) {
                let key = input.parse::<kw::on_failure>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse()?;
                set(
                    &mut args.on_failure,
                    "on_failure",
                    key.span,
                    value,
                    &mut args.errors,
                );
            } else if look.peek(kw::concurrency) {
                let key = input.parse::<kw::concurrency>()?;
                if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    let limit: LitInt = input.parse()?;
                    args.concurrency.push(Control {
                        name: "concurrency",
                        span: key.span,
                        limit: Some(limit),
                        ..Control::default()
                    });
                } else {
                    let c = Control::parse("concurrency", key.span, input, &mut args.errors)?;
                    args.concurrency.push(c);
                }
            } else if look.peek(kw::throttle) {
                let key = input.parse::<kw::throttle>()?;
                let c = Control::parse("throttle", key.span, input, &mut args.errors)?;
                set(
                    &mut args.throttle,
                    "throttle",
                    key.span,
                    c,
                    &mut args.errors,
                );
            } else if look.peek(kw::rate_limit) {
                let key = input.parse::<kw::rate_limit>()?;
                let c = Control::parse("rate_limit", key.span, input, &mut args.errors)?;
                set(
                    &mut args.rate_limit,
                    "rate_limit",
                    key.span,
                    c,
                    &mut args.errors,
                );
            } else if look.peek(kw::debounce) {
                let key = input.parse::<kw::debounce>()?;
                let c = Control::parse("debounce", key.span, input, &mut args.errors)?;
                set(
                    &mut args.debounce,
                    "debounce",
                    key.span,
                    c,
                    &mut args.errors,
                );
            } else if look.peek(kw::batch) {
                let key = input.parse::<kw::batch>()?;
                let c = Control::parse("batch", key.span, input, &mut args.errors)?;
                set(&mut args.batch, "batch", key.span, c, &mut args.errors);
            } else if look.peek(kw::filter) {
                let key = input.parse::<kw::filter>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse()?;
                set(
                    &mut args.filter,
                    "filter",
                    key.span,
                    value,
                    &mut args.errors,
                );
            } else if look.peek(kw::idempotency) {
                let key = input.parse::<kw::idempotency>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse()?;
                set(
                    &mut args.idempotency,
                    "idempotency",
                    key.span,
                    value,
                    &mut args.errors,
                );
            } else if look.peek(kw::cancel_on) {
                let key = input.parse::<kw::cancel_on>()?;
                let c = CancelOn::parse(key.span, input, &mut args.errors)?;
                args.cancel_on.push(c);
            } else if look.peek(kw::timeouts) {
                let key = input.parse::<kw::timeouts>()?;
                let t = Timeouts::parse(key.span, input, &mut args.errors)?;
                set(
                    &mut args.timeouts,
                    "timeouts",
                    key.span,
                    t,
                    &mut args.errors,
                );
            } else if look.peek(kw::priority) {
                let key = input.parse::<kw::priority>()?;
                input.parse::<Token![=]>()?;
                let value = input.parse()?;
                set(
                    &mut args.priority,
                    "priority",
                    key.span,
                    value,
                    &mut args.errors,
                );
            } else {
                return Err(look.error());
            }
            Ok(())
        })?;
        Ok(args)
    }
}

impl FunctionArgs {
    /// Reads `retries` as a number in `0..=MAX_RETRIES`.
    pub fn retries(&self, errors: &mut Errors) -> Option<u32> {
        let lit = self.retries.as_ref()?;
        match lit.base10_parse::<u32>() {
            Ok(n) if n <= MAX_RETRIES => Some(n),
            _ => {
                errors.spanned(
                    lit,
                    format_args!(
                        "`retries` must be a whole number from 0 to {MAX_RETRIES}\n\
                         help: `retries` counts the tries after the first failure; the default is 4"
                    ),
                );
                None
            }
        }
    }
}

/// `#[event(name = "…")]`
#[derive(Default)]
pub struct EventArgs {
    pub name: Option<LitStr>,
    pub errors: Errors,
}

impl Parse for EventArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = EventArgs::default();
        parse_pairs(input, |input| {
            let look = input.lookahead1();
            if look.peek(kw::name) {
                let key = input.parse::<kw::name>()?;
                input.parse::<Token![=]>()?;
                let value: LitStr = input.parse()?;
                set(&mut args.name, "name", key.span, value, &mut args.errors);
                Ok(())
            } else {
                Err(look.error())
            }
        })?;
        Ok(args)
    }
}
