//! [`Ctx`], what a function receives.

use crate::error::{Error, ErrorKind, Result};
use crate::event::{now_millis, Envelope, Event, EventId, RunId};
use crate::function::{Function, IntoOutput, RunInput, INVOKE_EVENT, INVOKE_RESULT_EVENT};
use crate::step::{RunState, Slot, Suspend};
use crate::store::{WaitSpec, WaitState};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The context of one attempt of one run: the event and the run's identity.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize)]
/// # #[event(name = "user/signup")]
/// # pub struct UserSignup { pub user_id: u64, pub email: String }
/// #[fanfare::function(trigger = "user/signup")]
/// async fn send_welcome_email(ctx: fanfare::Ctx<UserSignup>) -> fanfare::Result<()> {
///     let user = ctx.event();
///     // The run id is stable across retries: a good idempotency key.
///     let key = format!("welcome-{}", ctx.run_id());
///     # let _ = (user, key);
///     Ok(())
/// }
/// ```
pub struct Ctx<E> {
    event: Arc<E>,
    event_id: EventId,
    event_ts: u64,
    run_id: RunId,
    attempt: u32,
    function_id: &'static str,
    /// The trace context the event was sent in.
    trace: Option<crate::trace::TraceParent>,
    run: Arc<RunState>,
}

impl<E: Event> Ctx<E> {
    pub(crate) fn new(event: Arc<E>, input: &RunInput) -> Self {
        Ctx {
            event,
            event_id: input.envelope.id,
            event_ts: input.envelope.ts,
            run_id: input.run_id,
            attempt: input.attempt,
            function_id: input.def.id(),
            trace: input.envelope.trace,
            run: Arc::clone(&input.state),
        }
    }

    /// The event that triggered this run.
    pub fn event(&self) -> &E {
        &self.event
    }

    /// The event's id, as `send` returned it.
    pub fn event_id(&self) -> EventId {
        self.event_id
    }

    /// When the event was sent, in milliseconds since the Unix epoch.
    pub fn event_timestamp_ms(&self) -> u64 {
        self.event_ts
    }

    /// This run's id: one per function per event, the same on every attempt.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// The attempt number: 0 on the first try, 1 on the first retry, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The id of the function being run.
    pub fn function_id(&self) -> &'static str {
        self.function_id
    }

    /// The trace context the event was sent in, if it carried one (see
    /// [`Builder::trace_inject`](crate::Builder::trace_inject) and the HTTP API's
    /// `traceparent` header). The run's span already records it; this is for passing it
    /// on by hand, to an outgoing HTTP request for instance. Events sent with
    /// [`send`](Ctx::send) carry it (or, with an inject hook, the run's own context).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/traced")]
    /// # pub struct Traced { pub id: u64 }
    /// #[fanfare::function(trigger = "doc/traced")]
    /// async fn call_out(ctx: fanfare::Ctx<Traced>) -> fanfare::Result<()> {
    ///     if let Some(parent) = ctx.traceparent() {
    ///         // e.g. request.header("traceparent", parent.as_str())
    ///         tracing::info!(trace_id = parent.trace_id(), "calling out");
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn traceparent(&self) -> Option<crate::TraceParent> {
        self.trace
    }
}

impl<E> Ctx<E> {
    /// Runs `f` once per run, durably: its output is stored when it completes, and when
    /// the run is executed again (a retry after a later failure, a resume after a sleep,
    /// a restart after a crash) the stored output is returned without calling `f`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/order")]
    /// # pub struct OrderPlaced { pub cents: u64 }
    /// # async fn charge(cents: u64) -> Result<String, std::io::Error> { Ok(format!("ch_{cents}")) }
    /// #[fanfare::function(trigger = "doc/order", retries = 5)]
    /// async fn fulfil(ctx: fanfare::Ctx<OrderPlaced>) -> fanfare::Result<String> {
    ///     // Charged once, however often the rest of the function fails and retries.
    ///     let charge = ctx.step("charge-card", || charge(ctx.event().cents)).await?;
    ///     Ok(charge)
    /// }
    /// ```
    ///
    /// A failed step fails the attempt; the run is retried per the function's `retries`,
    /// and the step runs again. The output must be `Serialize + DeserializeOwned`.
    ///
    /// Step ids name a step within its run; calling one id again (in a loop) gives the
    /// calls `id`, `id:1`, `id:2`, …. Steps must be called in the same order on every
    /// execution: a different order fails the run with [`ErrorKind::NonDeterministic`]
    /// instead of handing a step another step's output.
    ///
    /// A run cancelled while it executes ([`Runtime::cancel`](crate::Runtime::cancel))
    /// stops at its next step call (this one, `sleep`, `wait_for_event`, `invoke`, `send`),
    /// which does not start; a step executing when the run was cancelled has its output
    /// discarded and stops the run instead of returning.
    pub async fn step<T, Er, F, Fut>(&self, id: &str, f: F) -> Result<T>
    where
        T: StepOutput,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, Er>>,
        Er: Into<Error>,
    {
        match self.run.enter(id).await? {
            Slot::Done(done) => serde_json::from_str(&done.output).map_err(|e| {
                Error::new(
                    ErrorKind::NonDeterministic,
                    format_args!(
                        "the stored output of step `{}` does not deserialize as `{}`: {e}",
                        done.id,
                        std::any::type_name::<T>()
                    ),
                )
                .never_retry()
            }),
            Slot::New { seq, id } => {
                let started = now_millis();
                let value = f().await.map_err(Into::into)?;
                let output = serde_json::to_string(&value).map_err(|e| {
                    Error::new(
                        ErrorKind::Serialize,
                        format_args!("the output of step `{id}` could not be serialized: {e}"),
                    )
                    .never_retry()
                })?;
                self.run.save(seq, id, output, started).await?;
                Ok(value)
            }
        }
    }

    /// Pauses the run for `duration`, durably: the run gives up its worker slot and its
    /// task, and is resumed at wake time — also after a restart of the process. Steps
    /// before the sleep are not executed again.
    ///
    /// While it sleeps, the run is [`RunStatus::Sleeping`](crate::RunStatus::Sleeping).
    pub async fn sleep(&self, id: &str, duration: Duration) -> Result<()> {
        self.sleep_step(id, || {
            now_millis().saturating_add(duration.as_millis().min(1 << 52) as u64)
        })
        .await
    }

    /// Pauses the run until `time`, durably, as [`Ctx::sleep`].
    pub async fn sleep_until(&self, id: &str, time: SystemTime) -> Result<()> {
        let wake = crate::event::unix_millis(time);
        self.sleep_step(id, || wake).await
    }

    async fn sleep_step(&self, id: &str, wake: impl FnOnce() -> u64) -> Result<()> {
        let wake = match self.run.enter(id).await? {
            Slot::Done(done) => done.output.parse().map_err(|_| {
                Error::new(
                    ErrorKind::NonDeterministic,
                    format_args!("step `{}` was not a sleep when it first ran", done.id),
                )
                .never_retry()
            })?,
            Slot::New { seq, id } => {
                let wake = wake();
                let now = now_millis();
                self.run.save(seq, id, wake.to_string(), now).await?;
                wake
            }
        };
        if now_millis() >= wake {
            return Ok(());
        }
        // The engine drops this attempt here and queues the run until `wake`.
        self.run.suspend(Suspend::Sleep(wake));
        std::future::pending().await
    }

    /// Sends an event from the run, exactly once per run: the event's id is derived from
    /// the run and the step, so executing the step again stores nothing new.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/placed")]
    /// # pub struct OrderPlaced { pub order_id: u64 }
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/shipped")]
    /// # pub struct OrderShipped { pub order_id: u64 }
    /// #[fanfare::function(trigger = "doc/placed")]
    /// async fn ship(ctx: fanfare::Ctx<OrderPlaced>) -> fanfare::Result<()> {
    ///     ctx.send("notify", OrderShipped { order_id: ctx.event().order_id }).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn send<Ev: Event>(&self, id: &str, event: Ev) -> Result<EventId> {
        match self.run.enter(id).await? {
            Slot::Done(done) => serde_json::from_str::<String>(&done.output)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(EventId::from_uuid)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NonDeterministic,
                        format_args!("step `{}` was not a send when it first ran", done.id),
                    )
                    .never_retry()
                }),
            Slot::New { seq, id } => {
                let started = now_millis();
                let event_id = EventId::for_step(self.run_id, &id);
                let engine = &self.run.engine;
                let mut envelope = Envelope::typed_with_id(event, engine.max_event_size, event_id)?;
                // The chain stays in the run's trace: under the run's span when a hook
                // reads it, else under what the run's event was sent in.
                envelope.trace = engine.trace.current().or(self.trace);
                engine.append(envelope).await?;
                let output = format!("\"{event_id}\"");
                self.run.save(seq, id, output, started).await?;
                Ok(event_id)
            }
        }
    }
}

/// What a step may return: a value that can be stored and read back.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the output of a step",
    label = "a step's output is stored, so it must be `Serialize + DeserializeOwned`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}`, or return a type that has them"
)]
pub trait StepOutput: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> StepOutput for T {}

/// How long [`Ctx::invoke`] waits for the invoked function at most.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

impl<E> Ctx<E> {
    /// Calls another function as a step and returns its typed result: the function runs
    /// as a run of its own (with its own retries), once per step however often this run
    /// replays, and this run waits for it without holding a task.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/quote")]
    /// # pub struct QuoteRequested { pub cents: u64 }
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/checkout")]
    /// # pub struct Checkout { pub cents: u64 }
    /// #[fanfare::function(trigger = "doc/quote")]
    /// async fn tax(ctx: fanfare::Ctx<QuoteRequested>) -> fanfare::Result<u64> {
    ///     Ok(ctx.event().cents / 5)
    /// }
    ///
    /// #[fanfare::function(trigger = "doc/checkout")]
    /// async fn checkout(ctx: fanfare::Ctx<Checkout>) -> fanfare::Result<u64> {
    ///     // `tax` names the function as a type; its event and output types are checked.
    ///     let tax: u64 = ctx.invoke::<tax>("tax", QuoteRequested { cents: ctx.event().cents }).await?;
    ///     Ok(ctx.event().cents + tax)
    /// }
    /// ```
    ///
    /// When the invoked function fails for good or its run is cancelled, the step fails
    /// with [`ErrorKind::Invoked`] and is not retried: retrying would only invoke it again,
    /// multiplying its retries. The function must be linked into this program (naming
    /// its type sees to that).
    pub async fn invoke<F>(
        &self,
        id: &str,
        event: F::Event,
    ) -> Result<<F::Returns as IntoOutput>::Output>
    where
        F: Function,
        F::Event: Event,
        F::Returns: IntoOutput,
        <F::Returns as IntoOutput>::Output: DeserializeOwned,
    {
        let output = match self.run.enter(id).await? {
            Slot::Done(done) => done.output,
            Slot::New { seq, id } => {
                let engine = &self.run.engine;
                let function = engine.registry.index_of(F::ID).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format_args!(
                            "cannot invoke `{}`: it is not a function of this runtime",
                            F::ID
                        ),
                    )
                    .never_retry()
                })?;
                let child = EventId::for_step(self.run_id, &id);
                let mut envelope = Envelope::typed_with_id(event, engine.max_event_size, child)?;
                envelope.name = std::borrow::Cow::Borrowed(INVOKE_EVENT);
                envelope.trace = engine.trace.current().or(self.trace);
                if engine.store.append_to(envelope, function).await? > 0 {
                    engine.wake.notify_one();
                }
                let now = now_millis();
                let spec = WaitSpec {
                    seq,
                    step_id: id,
                    event: INVOKE_RESULT_EVENT.to_owned(),
                    matching: Some(("invocation".to_owned(), serde_json::json!(child))),
                    deadline_ms: now.saturating_add(INVOKE_TIMEOUT.as_millis() as u64),
                    since_ms: now,
                    // The result may be any age: it is looked up by its id.
                    event_id: Some(EventId::invocation_result(child)),
                };
                match engine.store.wait(self.run.key, spec).await? {
                    WaitState::Resolved(output) => output,
                    WaitState::Pending(deadline_ms) => {
                        self.run.suspend(Suspend::Wait { deadline_ms, seq });
                        return std::future::pending().await;
                    }
                }
            }
        };
        invoke_result(F::ID, &output)
    }
}

/// Reads an invocation's result: `{"ok": …}`, `{"error": "…"}` or `{"cancelled": "…"}`
/// (`null`: timed out).
fn invoke_result<T: DeserializeOwned>(function: &str, output: &str) -> Result<T> {
    #[derive(serde::Deserialize)]
    struct Finished<T> {
        ok: Option<T>,
        error: Option<String>,
        cancelled: Option<String>,
    }
    let finished: Option<Finished<T>> = serde_json::from_str(output).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format_args!("the result of `{function}` does not decode: {e}"),
        )
        .never_retry()
    })?;
    match finished {
        Some(Finished {
            cancelled: Some(reason),
            ..
        }) => Err(Error::new(
            ErrorKind::Invoked,
            format_args!("invoked function `{function}` was cancelled: {reason}"),
        )
        .never_retry()),
        Some(Finished {
            error: Some(error), ..
        }) => Err(Error::new(
            ErrorKind::Invoked,
            format_args!("invoked function `{function}` failed: {error}"),
        )
        .never_retry()),
        Some(Finished {
            ok: Some(value), ..
        }) => Ok(value),
        Some(Finished { ok: None, .. }) => serde_json::from_str("null").map_err(|_| {
            Error::new(
                ErrorKind::Decode,
                format_args!("`{function}` returned no value"),
            )
            .never_retry()
        }),
        None => Err(Error::new(
            ErrorKind::Invoked,
            format_args!("invoked function `{function}` did not finish in time"),
        )
        .never_retry()),
    }
}

/// How far back [`Ctx::wait_for_event`] looks for an event sent before the wait began.
pub const WAIT_LOOKBACK: Duration = Duration::from_secs(60);

/// Default timeout of [`Ctx::wait_for_event`].
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

impl<E: Event> Ctx<E> {
    /// Waits, durably, for an event of type `Ev`: returns `Some(event)`, or `None` when
    /// the wait times out. While it waits, the run holds no worker slot and no task
    /// ([`RunStatus::Waiting`](crate::RunStatus::Waiting)); the event may come from any
    /// process (PostgreSQL).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use std::time::Duration;
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/order-placed")]
    /// # pub struct OrderPlaced { pub order_id: u64 }
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/payment-settled")]
    /// # pub struct PaymentSettled { pub order_id: u64 }
    /// #[fanfare::function(trigger = "doc/order-placed")]
    /// async fn fulfil(ctx: fanfare::Ctx<OrderPlaced>) -> fanfare::Result<bool> {
    ///     let paid = ctx
    ///         .wait_for_event::<PaymentSettled>("settled")
    ///         .matching("order_id") // the same value in both events' data
    ///         .timeout(Duration::from_secs(86_400))
    ///         .await?;
    ///     Ok(paid.is_some())
    /// }
    /// ```
    ///
    /// **No race with a send just before the wait**: an event sent up to
    /// [`WAIT_LOOKBACK`] (60 s) before the wait began — but not before the run's own
    /// triggering event — counts, so an event that arrives while the function is on its
    /// way to the wait is not missed. Later events count until the timeout (default
    /// [`WAIT_TIMEOUT`], 7 days). The first matching event wins.
    ///
    /// `Ev` is one event type: waiting for an event union does not compile (wait for the
    /// variant's type).
    pub fn wait_for_event<Ev: Event>(&self, id: &str) -> WaitForEvent<'_, E, Ev> {
        const {
            assert!(
                Ev::NAMES.len() == 1,
                "`wait_for_event` waits for one event type, not an event union: wait for a variant's type"
            )
        };
        WaitForEvent {
            ctx: self,
            id: id.to_owned(),
            matching: None,
            timeout: WAIT_TIMEOUT,
            _event: PhantomData,
        }
    }
}

/// A pending [`Ctx::wait_for_event`]: set `.matching(…)` and `.timeout(…)`, then `.await`.
#[must_use = "a wait does nothing until `.await`ed"]
pub struct WaitForEvent<'a, E, Ev> {
    ctx: &'a Ctx<E>,
    id: String,
    matching: Option<String>,
    timeout: Duration,
    _event: PhantomData<fn() -> Ev>,
}

impl<E: Event, Ev: Event> WaitForEvent<'_, E, Ev> {
    /// Only an event whose data has the same value in field `field` as the run's
    /// triggering event counts (`"order_id"`: the same order).
    pub fn matching(mut self, field: &str) -> Self {
        self.matching = Some(field.to_owned());
        self
    }

    /// How long to wait before returning `None`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<'a, E: Event, Ev: Event> IntoFuture for WaitForEvent<'a, E, Ev> {
    type Output = Result<Option<Ev>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Option<Ev>>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let ctx = self.ctx;
            let output = match ctx.run.enter(&self.id).await? {
                Slot::Done(done) => done.output,
                Slot::New { seq, id } => {
                    let matching = match self.matching {
                        None => None,
                        Some(field) => {
                            let trigger = serde_json::to_value(ctx.event()).map_err(|e| {
                                Error::new(ErrorKind::Serialize, format_args!("{e}")).never_retry()
                            })?;
                            let value = trigger.get(&field).cloned().ok_or_else(|| {
                                Error::new(
                                    ErrorKind::Function,
                                    format_args!(
                                        "wait `{id}` matches on field `{field}`, which the triggering event `{}` does not have",
                                        E::NAME
                                    ),
                                )
                                .never_retry()
                            })?;
                            Some((field, value))
                        }
                    };
                    let now = now_millis();
                    let lookback = now.saturating_sub(WAIT_LOOKBACK.as_millis() as u64);
                    let spec = WaitSpec {
                        seq,
                        step_id: id,
                        event: Ev::NAME.to_owned(),
                        matching,
                        // Far enough for any wait, near enough for every store's integers.
                        deadline_ms: now
                            .saturating_add(self.timeout.as_millis().min(1 << 52) as u64),
                        since_ms: lookback.max(ctx.event_ts),
                        event_id: None,
                    };
                    match ctx.run.engine.store.wait(ctx.run.key, spec).await? {
                        WaitState::Resolved(output) => output,
                        WaitState::Pending(deadline_ms) => {
                            // The engine drops this attempt here; the run resumes when the
                            // event arrives or at the deadline.
                            ctx.run.suspend(Suspend::Wait { deadline_ms, seq });
                            return std::future::pending().await;
                        }
                    }
                }
            };
            serde_json::from_str::<Option<Ev>>(&output).map_err(|e| {
                Error::new(
                    ErrorKind::Decode,
                    format_args!(
                        "the event awaited by `{}` does not decode as `{}`: {e}",
                        self.id,
                        std::any::type_name::<Ev>()
                    ),
                )
                .never_retry()
            })
        })
    }
}

impl<E> Clone for Ctx<E> {
    fn clone(&self) -> Self {
        Ctx {
            event: Arc::clone(&self.event),
            run: Arc::clone(&self.run),
            ..*self
        }
    }
}

impl<E: std::fmt::Debug> std::fmt::Debug for Ctx<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("function_id", &self.function_id)
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .field("event_id", &self.event_id)
            .field("event", &self.event)
            .finish()
    }
}
