//! `SendOptions`: an event's id of your own, and a time before which its runs do not start;
//! `JsonEvent`: an event from outside Rust, with its options, for batches.

use crate::error::Result;
use crate::event::{Envelope, EventId};
use crate::trace::TraceParent;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How [`Runtime::send_with`](crate::Runtime::send_with) sends an event.
///
/// - [`id`](SendOptions::id): the event's id, of your choosing. An event whose id is
///   already stored runs nothing, and the send returns that id: a webhook delivered
///   twice, a retried request, start their functions once (as Inngest's event ids). The
///   id is remembered as long as the event is kept: until all its runs completed longer
///   ago than the retention (`Builder::retention`, an hour by default: raise it to a day
///   for Inngest's window), or, with a failed run, the failed retention
///   (`Builder::failed_retention`, 30 days by default).
/// - [`not_before`](SendOptions::not_before) / [`delay`](SendOptions::delay): the
///   event's runs start no earlier (a delayed send). They are stored at once, and show
///   as `Queued` with [`not_before_ms`](crate::RunInfo::not_before_ms) meanwhile.
/// - [`traceparent`](SendOptions::traceparent): the trace context the event is sent in,
///   given by hand (otherwise the builder's inject hook reads it, if there is one).
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
/// # #[event(name = "doc/order.placed")]
/// # pub struct OrderPlaced { pub order_id: u64 }
/// use fanfare::{EventId, SendOptions};
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() -> fanfare::Result<()> {
/// let rt = fanfare::Runtime::builder().start().await?;
/// let once = SendOptions::new().id(EventId::from_key("order-42/placed"));
/// let first = rt.send_with(OrderPlaced { order_id: 42 }, once.clone()).await?;
/// let again = rt.send_with(OrderPlaced { order_id: 42 }, once).await?;
/// assert_eq!(first, again);
///
/// let later = SendOptions::new().delay(Duration::from_secs(3600));
/// let reminder = rt.send_with(OrderPlaced { order_id: 42 }, later).await?;
/// # let _ = reminder;
/// # rt.shutdown().await }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    id: Option<EventId>,
    not_before: Option<SystemTime>,
    trace: Option<TraceParent>,
}

impl SendOptions {
    /// Options that change nothing: a plain `send`.
    pub fn new() -> SendOptions {
        SendOptions::default()
    }

    /// Sends the event under `id` (see [`EventId::from_key`] to derive one from a key).
    pub fn id(mut self, id: EventId) -> SendOptions {
        self.id = Some(id);
        self
    }

    /// Its runs start no earlier than `at`.
    pub fn not_before(mut self, at: SystemTime) -> SendOptions {
        self.not_before = Some(at);
        self
    }

    /// Its runs start no earlier than `by` from now.
    pub fn delay(self, by: Duration) -> SendOptions {
        let at = SystemTime::now()
            .checked_add(by)
            .unwrap_or(SystemTime::now());
        self.not_before(at)
    }

    /// Sends the event in trace context `parent`: its runs' spans are linked to it (see
    /// [`Builder::trace_extract`](crate::Builder::trace_extract)), and the builder's
    /// inject hook is not asked.
    ///
    /// ```
    /// use fanfare::{SendOptions, TraceParent};
    ///
    /// let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
    /// let options = SendOptions::new().traceparent(parent);
    /// # let _ = options;
    /// # Ok::<(), fanfare::InvalidTraceParent>(())
    /// ```
    pub fn traceparent(mut self, parent: TraceParent) -> SendOptions {
        self.trace = Some(parent);
        self
    }

    pub(crate) fn apply(&self, envelope: &mut Envelope) {
        if self.trace.is_some() {
            envelope.trace = self.trace;
        }
        if let Some(id) = self.id {
            envelope.id = id;
        }
        if let Some(at) = self.not_before {
            let ms = at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis().min(1 << 52) as u64);
            envelope.not_before = Some(ms);
        }
    }
}

/// An event given by name and JSON data, with its [`SendOptions`]: one event of
/// [`Runtime::send_json_batch`](crate::Runtime::send_json_batch).
///
/// ```
/// use fanfare::{EventId, JsonEvent, SendOptions};
///
/// let event = JsonEvent::new("doc/order.placed", serde_json::json!({ "order_id": 42 }))
///     .options(SendOptions::new().id(EventId::from_key("order-42/placed")));
/// assert_eq!(event.name(), "doc/order.placed");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct JsonEvent {
    name: String,
    data: serde_json::Value,
    options: SendOptions,
}

impl JsonEvent {
    /// The event `name` with `data`, sent as a plain `send_json` would send it.
    pub fn new(name: impl Into<String>, data: serde_json::Value) -> JsonEvent {
        JsonEvent {
            name: name.into(),
            data,
            options: SendOptions::new(),
        }
    }

    /// Sends it with `options`: an id of your own, a start time.
    pub fn options(mut self, options: SendOptions) -> JsonEvent {
        self.options = options;
        self
    }

    /// Sends it in trace context `parent` unless its options name one (the HTTP API's
    /// `traceparent` header under an event's own field).
    #[cfg(feature = "http")]
    pub(crate) fn with_default_trace(mut self, parent: TraceParent) -> JsonEvent {
        self.options.trace = self.options.trace.or(Some(parent));
        self
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The envelope it travels in: the name checked, the data serialized and checked
    /// against `max_size`, the options applied.
    pub(crate) fn envelope(&self, max_size: usize) -> Result<Envelope> {
        let mut envelope = Envelope::json(self.name.clone(), &self.data, max_size)?;
        self.options.apply(&mut envelope);
        Ok(envelope)
    }
}
