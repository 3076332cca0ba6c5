//! Flow control: how many runs of a function execute at once, how fast they start, and
//! in what order (`concurrency`, `throttle`, `rate_limit`, `priority`).
//!
//! `#[function]` registers a [`Flow`] per function that sets any of these keys, with one
//! generated fn that decodes the event once and computes every key. The rules that turn
//! keys into decisions live in [`rules`], once for every store; a store only keeps their
//! state (`tat`s and slot counts per function and key) and its held runs.
//!
//! Keys are compared as the strings their `Display` gives: `|e| e.customer_id` with
//! `customer_id: u64 = 7` and with `customer_id: String = "7"` name the same key.

mod batch;
pub(crate) mod cancel;
pub(crate) mod rules;
mod state;

pub use batch::{call_batch, Batch};

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Envelope, Event};
use std::fmt::Display;

/// A function's flow-control keys, as `#[function]` registers them.
#[doc(hidden)]
#[derive(Debug)]
pub struct Flow {
    /// `concurrency = N`: runs of the function executing at once.
    pub concurrency: Option<u32>,
    /// `concurrency(limit = N, key = …)`: runs executing at once per key.
    pub keyed_concurrency: Option<u32>,
    /// `throttle(…)`: starts per period, the rest delayed.
    pub throttle: Option<Rate>,
    /// `rate_limit(…)`: runs per period, the rest skipped.
    pub rate_limit: Option<Rate>,
    /// `debounce(…)`: one run for a burst of events, with the last.
    pub debounce: Option<Debounce>,
    /// `batch(…)`: one run for up to `max` events.
    pub batch: Option<BatchRule>,
    /// `filter = |e| …`: runs whose event it refuses are skipped.
    pub filter: bool,
    /// `idempotency = |e| …`: one run per key per 24 h.
    pub idempotency: bool,
    /// Computes the keys from an event.
    pub keys: fn(&Envelope) -> Result<FlowKeys>,
}

impl Flow {
    /// Whether runs hold concurrency slots while they execute.
    pub fn limits_concurrency(&self) -> bool {
        self.concurrency.is_some() || self.keyed_concurrency.is_some()
    }
}

/// `limit` per `period`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Runs per period, at least 1.
    pub limit: u32,
    /// The period, in milliseconds, at least 1.
    pub period_ms: u64,
}

/// `debounce(period, timeout?)`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debounce {
    /// How long after the last event of a burst the run starts, in milliseconds.
    pub period_ms: u64,
    /// The longest a run waits after the first event of its burst, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// `batch(max, timeout)`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRule {
    /// Most events a run takes.
    pub max: u32,
    /// The longest the first event of a batch waits, in milliseconds.
    pub timeout_ms: u64,
}

/// The keys of one run, computed from its event by the function's closures.
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowKeys {
    /// The keyed concurrency limit's key.
    pub concurrency: Option<String>,
    /// The throttle's key (`None` when the throttle has no key).
    pub throttle: Option<String>,
    /// The rate limit's key.
    pub rate_limit: Option<String>,
    /// The debounce's key.
    pub debounce: Option<String>,
    /// The batch's key.
    pub batch: Option<String>,
    /// Seconds ahead, clamped to `-600..=600`.
    pub priority: i64,
    /// The filter refused the event.
    pub filtered: bool,
    /// The idempotency key.
    pub idempotency: Option<String>,
}

/// Called by the generated key fn: decodes the event once and computes every key.
#[doc(hidden)]
pub fn flow_keys<E: Event, F: FnOnce(&E) -> FlowKeys>(event: &Envelope, f: F) -> Result<FlowKeys> {
    let decoded = event.decode::<E>().map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format_args!(
                "the flow-control keys of event `{}` ({}) could not be computed: {e}",
                event.name, event.id
            ),
        )
    })?;
    Ok(f(&decoded))
}

/// Calls a key closure; its parameter's type is inferred from `E` here.
#[doc(hidden)]
pub fn key_of<E, T, F: FnOnce(&E) -> T>(event: &E, f: F) -> T {
    f(event)
}

/// Calls a filter closure; its parameter's type is inferred from `E` here.
#[doc(hidden)]
pub fn filter_of<E, F: FnOnce(&E) -> bool>(event: &E, f: F) -> bool {
    f(event)
}

/// A key, as it is compared and stored.
#[doc(hidden)]
pub fn key_string<K: Display + ?Sized>(key: &K) -> String {
    key.to_string()
}

/// A priority in seconds, clamped to `-600..=600` as Inngest's.
#[doc(hidden)]
pub fn priority<P: Priority>(p: &P) -> i64 {
    p.seconds().clamp(-MAX_PRIORITY, MAX_PRIORITY)
}

/// The largest priority, in seconds either way.
pub const MAX_PRIORITY: i64 = 600;

/// What `priority = |e| …` may return: any integer, in seconds.
#[diagnostic::on_unimplemented(
    message = "`priority` must be a whole number of seconds, not `{Self}`",
    note = "return an integer from -600 to 600, as in `priority = |e| if e.paid {{ 60 }} else {{ 0 }}`"
)]
pub trait Priority {
    /// The value, in seconds (saturating).
    fn seconds(&self) -> i64;
}

macro_rules! priority_ints {
    ($($t:ty),*) => {$(
        impl Priority for $t {
            fn seconds(&self) -> i64 {
                i64::try_from(*self).unwrap_or(if *self > 0 as $t { i64::MAX } else { i64::MIN })
            }
        }
    )*};
}
priority_ints!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);
