//! `Batch<E>`: what a `batch(…)` function's run takes, and the shim that builds it.

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventId};
use crate::function::{HandlerResult, IntoOutput, RunInput};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

/// The events one run of a `batch(…)` function takes: up to `max` of them, oldest
/// first. Derefs to `[E]`; [`Batch::ids`] gives each event's id, in the same order.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
/// # #[event(name = "doc/log.line")]
/// # pub struct LogLine { pub text: String }
/// use fanfare::{Batch, Ctx};
///
/// #[fanfare::function(trigger = "doc/log.line", batch(max = 100, timeout = "2s"))]
/// async fn ingest(ctx: Ctx<Batch<LogLine>>) -> fanfare::Result<usize> {
///     for (id, line) in ctx.event().with_ids() {
///         let _ = (id, &line.text);
///     }
///     Ok(ctx.event().len())
/// }
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(bound(
    serialize = "E: Serialize",
    deserialize = "E: serde::de::DeserializeOwned"
))]
pub struct Batch<E> {
    events: Vec<E>,
    ids: Vec<EventId>,
}

impl<E> Batch<E> {
    /// The events' ids, in the order of the events.
    pub fn ids(&self) -> &[EventId] {
        &self.ids
    }

    /// Each event with its id.
    pub fn with_ids(&self) -> impl Iterator<Item = (EventId, &E)> {
        self.ids.iter().copied().zip(&self.events)
    }

    /// The events.
    pub fn into_vec(self) -> Vec<E> {
        self.events
    }
}

impl<E> Deref for Batch<E> {
    type Target = [E];

    fn deref(&self) -> &[E] {
        &self.events
    }
}

/// The name batches go by; reserved, so that a `Batch` itself cannot be sent.
const BATCH_EVENT: &str = "fanfare/batch";

#[diagnostic::do_not_recommend]
impl<E: Event> Event for Batch<E> {
    const NAME: &'static str = BATCH_EVENT;
}

/// Called by the shim of a `batch(…)` function: decodes the batch's events and starts
/// the function with them.
#[doc(hidden)]
pub fn call_batch<E, F, Fut>(input: RunInput, f: F) -> HandlerResult
where
    E: Event,
    F: FnOnce(Ctx<Batch<E>>) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: IntoOutput,
{
    let envelopes = if input.batch.is_empty() {
        std::slice::from_ref(&input.envelope)
    } else {
        &input.batch[..]
    };
    let mut batch = Batch {
        events: Vec::with_capacity(envelopes.len()),
        ids: Vec::with_capacity(envelopes.len()),
    };
    for envelope in envelopes {
        // Owned values, decoded from the stored JSON.
        let event = E::__fanfare_from(&envelope.name, &envelope.data).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format_args!(
                    "function `{}` could not decode event `{}` ({}) of its batch as `{}`: {e}",
                    input.def.id(),
                    envelope.name,
                    envelope.id,
                    std::any::type_name::<E>()
                ),
            )
            .with_source(e)
            .never_retry()
        })?;
        batch.events.push(event);
        batch.ids.push(envelope.id);
    }
    let fut = f(Ctx::new(Arc::new(batch), &input));
    Ok(Box::pin(async move { fut.await.into_output() }))
}
