//! # fanfare
//!
//! Event-driven background functions for Rust. Annotate async fns with
//! `#[fanfare::function(trigger = "…")]`, in any module of any crate of your program; one
//! [`send`](Runtime::send) of that event runs **every** one of them, in parallel, each as
//! an independent run that is retried on failure.
//!
//! ```
//! use fanfare::{function, Ctx, Event};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Serialize, Deserialize, Clone, Debug)]
//! #[event(name = "user/signup")]
//! pub struct UserSignup { pub user_id: u64, pub email: String }
//!
//! #[function(trigger = "user/signup")]
//! async fn send_welcome_email(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
//!     let user = ctx.event();
//!     # let _ = user;
//!     Ok(())
//! }
//!
//! #[function(id = "crm-sync", trigger = "user/signup", retries = 5)]
//! async fn sync_crm(ctx: Ctx<UserSignup>) -> fanfare::Result<()> { Ok(()) }
//!
//! # #[tokio::main] async fn main() -> fanfare::Result<()> {
//! let rt = fanfare::Runtime::builder().start().await?;
//! let id = rt.send(UserSignup { user_id: 1, email: "a@b.c".into() }).await?;
//! let runs = rt.wait(id).await?;               // both functions ran
//! assert_eq!(runs.len(), 2);
//! rt.shutdown().await
//! # }
//! ```
//!
//! ## What runs, and how often
//! - `send` stores the event and one run per subscribed function before it returns.
//! - Each run executes on its own, in parallel with the others; a panic fails that attempt
//!   of that run only.
//! - A failed attempt is retried `retries` times (default 4) with [`Backoff`];
//!   [`Error::non_retriable`] fails the run at once, [`Error::retry_after`] sets the delay.
//! - A run that exhausts its retries is [`RunStatus::Failed`] and kept, with its
//!   attempts and last error ([`Runtime::runs`]).
//!
//! ## Flow control
//! Attribute keys say how much of a function runs at once, how fast, and in what order;
//! key closures take the event and are type-checked against it.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
//! # #[event(name = "doc/contact.updated")]
//! # pub struct ContactUpdated { pub customer_id: u64 }
//! use fanfare::{Ctx, RunStatus};
//!
//! /// One run per customer at a time; at most 10 starts a second.
//! #[fanfare::function(
//!     trigger = "doc/contact.updated",
//!     concurrency(limit = 1, key = |e| e.customer_id),
//!     throttle(limit = 10, period = "1s"),
//! )]
//! async fn sync_crm(ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> { Ok(()) }
//!
//! # #[tokio::main] async fn main() -> fanfare::Result<()> {
//! let rt = fanfare::Runtime::builder().start().await?;
//! let id = rt.send(ContactUpdated { customer_id: 7 }).await?;
//! assert_eq!(rt.wait(id).await?[0].status, RunStatus::Completed);
//! rt.shutdown().await
//! # }
//! ```
//!
//! - `concurrency = N` / `concurrency(limit = N, key = …)`: at most N runs (per key)
//!   execute at once; one keyed and one unkeyed limit may stack. Sleeping, waiting and
//!   backing-off runs hold no slot.
//! - `throttle(limit, period, key?)`: one start per `period / limit`, the rest delayed in
//!   order. `rate_limit(limit, period, key?)`: the runs over the limit end
//!   [`RunStatus::Skipped`], with a [reason](RunInfo::reason).
//! - `debounce(period, key?, timeout?)`: one run per burst, with the last event.
//! - `batch(max, timeout, key?)`: one run per up to `max` events, taking [`Batch<E>`].
//! - `priority = |e| seconds`: the order of the runs waiting for a concurrency slot.
//!
//! A run held back shows why in [`Runtime::runs`] ([`RunInfo::reason`],
//! [`RunInfo::not_before_ms`]). On PostgreSQL the limits hold across every process of
//! the app.
//!
//! ## Functions in other crates: the linker
//! Functions are collected at link time. The linker leaves out a library crate that
//! nothing in the program refers to, and its functions with it. A crate that only
//! defines functions must therefore be referred to from the binary, for instance
//! `use billing as _;` in `main.rs`, or a call to any of its items. Check it with
//! [`functions`] in a test.

#![warn(missing_docs)]

mod backoff;
mod cron;
mod ctx;
mod engine;
mod error;
mod event;
mod flow;
mod function;
mod hash;
#[cfg(feature = "http")]
pub mod http;
mod inspect;
mod lifetime;
mod metrics;
mod padded;
mod runtime;
mod send_options;
mod step;
mod store;
mod stored_events;
mod trace;

pub use backoff::Backoff;
pub use cron::Cron;
pub use ctx::{Ctx, StepOutput, WaitForEvent, WAIT_LOOKBACK, WAIT_TIMEOUT};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventId, RunId, MAX_NAME_LEN};
pub use fanfare_macros::{function, Event};
pub use flow::{Batch, Priority, MAX_PRIORITY};
pub use function::{functions, Failure, Function, FunctionDef, IntoOutput, Location};
pub use inspect::{FunctionInfo, RunCounts, RunFilter, RunPage, DEFAULT_PAGE, MAX_PAGE};
pub use lifetime::{CancelOn, Lifetime};
pub use metrics::{EventsSent, FunctionMetrics, Histogram, Metrics, OTHER_EVENTS, QUEUE_SCAN};
pub use runtime::{
    Builder, Runtime, DEFAULT_CONCURRENCY, DEFAULT_FAILED_RETENTION, DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_RETENTION,
};
pub use send_options::{JsonEvent, SendOptions};
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteSync;
pub use store::{AttemptInfo, RunInfo, RunStatus, StepInfo, UnknownStatus, WaitingFor};
pub use stored_events::{EventFilter, EventInfo, EventPage};
pub use trace::{InvalidTraceParent, TraceParent};

/// Sends an event through the ambient runtime: the last one started and still alive.
///
/// Fails with [`ErrorKind::NoRuntime`] when there is none. Otherwise as [`Runtime::send`].
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize)]
/// # #[event(name = "doc/ambient")]
/// # pub struct Ping { pub n: u32 }
/// # #[tokio::main] async fn main() -> fanfare::Result<()> {
/// let rt = fanfare::Runtime::builder().start().await?;
/// let id = fanfare::send(Ping { n: 1 }).await?;
/// # let _ = id; rt.shutdown().await
/// # }
/// ```
pub async fn send<E: Event>(event: E) -> Result<EventId> {
    Runtime::ambient()?.send(event).await
}

/// Items the macros' expansions name. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::cron::{check_cron, CronEvent};
    pub use crate::error::Result;
    pub use crate::event::{unknown_variant, Envelope, Event, EventBounds};
    pub use crate::flow::{
        call_batch, filter_of, flow_keys, key_of, key_string, priority, BatchRule, Debounce, Flow,
        FlowKeys, Rate,
    };
    pub use crate::function::{
        call, check_trigger, Failure, Function, FunctionDef, HandlerFuture, HandlerResult,
        IntoOutput, Location, RunInput, FAILURE_EVENT,
    };
    pub use crate::lifetime::{CancelOn, Lifetime};
    pub use inventory;
    pub use serde_json;
}
