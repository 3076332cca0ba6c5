//! How a run may end early: `cancel_on(…)` events and `timeouts(start, finish)`, as
//! `#[function]` registers them.

use std::time::Duration;

/// A function's `cancel_on` rules and `timeouts`.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize)]
/// # #[event(name = "doc/order.placed")]
/// # pub struct OrderPlaced { pub order_id: u64 }
/// #[fanfare::function(
///     trigger = "doc/order.placed",
///     cancel_on(event = "doc/order.cancelled", matching = "order_id"),
///     timeouts(start = "10m", finish = "2h"),
/// )]
/// async fn fulfil(ctx: fanfare::Ctx<OrderPlaced>) -> fanfare::Result<()> { Ok(()) }
///
/// let f = fanfare::functions().into_iter().find(|f| f.id() == "fulfil").unwrap();
/// let lifetime = f.lifetime().unwrap();
/// assert_eq!(lifetime.cancel_on()[0].event(), "doc/order.cancelled");
/// assert_eq!(lifetime.finish(), Some(std::time::Duration::from_secs(7200)));
/// ```
#[derive(Debug)]
pub struct Lifetime {
    cancel_on: &'static [CancelOn],
    start_ms: Option<u64>,
    finish_ms: Option<u64>,
}

impl Lifetime {
    #[doc(hidden)]
    pub const fn __new(
        cancel_on: &'static [CancelOn],
        start_ms: Option<u64>,
        finish_ms: Option<u64>,
    ) -> Lifetime {
        Lifetime {
            cancel_on,
            start_ms,
            finish_ms,
        }
    }

    /// The events that cancel a run (`cancel_on(…)`, in the order written).
    pub fn cancel_on(&self) -> &'static [CancelOn] {
        self.cancel_on
    }

    /// `timeouts(start)`: a run not started this long after its event is cancelled.
    pub fn start(&self) -> Option<Duration> {
        self.start_ms.map(Duration::from_millis)
    }

    /// `timeouts(finish)`: a run not finished this long after its first start is
    /// cancelled.
    pub fn finish(&self) -> Option<Duration> {
        self.finish_ms.map(Duration::from_millis)
    }
}

/// One `cancel_on(event = "…", matching = "…", timeout = "…")` rule.
#[derive(Debug)]
pub struct CancelOn {
    event: &'static str,
    matching: Option<&'static str>,
    timeout_ms: Option<u64>,
}

impl CancelOn {
    #[doc(hidden)]
    pub const fn __new(
        event: &'static str,
        matching: Option<&'static str>,
        timeout_ms: Option<u64>,
    ) -> CancelOn {
        CancelOn {
            event,
            matching,
            timeout_ms,
        }
    }

    /// The name of the event that cancels the run.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// The field whose value must be the same in that event and in the run's own.
    pub fn matching(&self) -> Option<&'static str> {
        self.matching
    }

    /// How long after the run's event a cancelling event still counts.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}
