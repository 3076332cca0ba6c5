//! [`Ctx`], what a function receives.

use crate::event::{Event, EventId, RunId};
use crate::function::RunInput;
use std::sync::Arc;

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
}

impl<E> Clone for Ctx<E> {
    fn clone(&self) -> Self {
        Ctx {
            event: Arc::clone(&self.event),
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
