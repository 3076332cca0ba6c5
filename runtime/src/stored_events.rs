//! Looking through the events a store keeps: `Runtime::event` and `Runtime::events`,
//! for the runs API, the dashboard and the CLI.

use crate::error::{Error, ErrorKind, Result};
use crate::event::{unix_millis, Envelope, EventId};
use crate::inspect::{DEFAULT_PAGE, MAX_PAGE};
use crate::Runtime;
use std::time::SystemTime;

/// A stored event, as [`Runtime::event`] and [`Runtime::events`] return it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EventInfo {
    /// Its id.
    pub id: EventId,
    /// Its name.
    pub name: String,
    /// Its data, as sent.
    pub data: serde_json::Value,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
}

impl EventInfo {
    pub(crate) fn of(event: &Envelope) -> EventInfo {
        EventInfo {
            id: event.id,
            name: event.name.to_string(),
            data: serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null),
            ts_ms: event.ts,
        }
    }
}

/// Which events [`Runtime::events`] returns: newest first, a page at a time.
///
/// ```
/// use fanfare::EventFilter;
/// use std::time::{Duration, SystemTime};
/// let signups = EventFilter::new()
///     .name("user/signup")
///     .since(SystemTime::now() - Duration::from_secs(3600));
/// # let _ = signups;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EventFilter {
    pub(crate) name: Option<String>,
    pub(crate) since_ms: Option<u64>,
    pub(crate) until_ms: Option<u64>,
    pub(crate) after: Option<EventId>,
    pub(crate) limit: usize,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            name: None,
            since_ms: None,
            until_ms: None,
            after: None,
            limit: DEFAULT_PAGE,
        }
    }
}

impl EventFilter {
    /// Every event, [`DEFAULT_PAGE`] at a time.
    pub fn new() -> EventFilter {
        EventFilter::default()
    }

    /// Only events with this name.
    pub fn name(mut self, name: impl Into<String>) -> EventFilter {
        self.name = Some(name.into());
        self
    }

    /// Only events accepted at `time` or later.
    pub fn since(mut self, time: SystemTime) -> EventFilter {
        self.since_ms = Some(unix_millis(time));
        self
    }

    /// Only events accepted before `time`.
    pub fn until(mut self, time: SystemTime) -> EventFilter {
        self.until_ms = Some(unix_millis(time));
        self
    }

    /// Continues after a page: only events older than `cursor` ([`EventPage::next`]).
    pub fn after(mut self, cursor: EventId) -> EventFilter {
        self.after = Some(cursor);
        self
    }

    /// At most `n` events a page, between 1 and [`MAX_PAGE`].
    pub fn limit(mut self, n: usize) -> EventFilter {
        self.limit = n.clamp(1, MAX_PAGE);
        self
    }
}

/// One page of [`Runtime::events`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EventPage {
    /// The events, newest first (by the time they were accepted, then by id).
    pub events: Vec<EventInfo>,
    /// Where the next page starts ([`EventFilter::after`]), or `None` after the last.
    pub next: Option<EventId>,
}

impl Runtime {
    /// One stored event.
    ///
    /// Fails with [`ErrorKind::EventNotFound`] for an id the store does not know (never
    /// sent, or pruned after the retention).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// let id = rt.send_json("doc/webhook", serde_json::json!({ "user_id": 7 })).await?;
    /// let event = rt.event(id).await?;
    /// assert_eq!((event.name.as_str(), event.data["user_id"].as_u64()), ("doc/webhook", Some(7)));
    /// # rt.shutdown().await }
    /// ```
    pub async fn event(&self, id: EventId) -> Result<EventInfo> {
        match self.store().event(id).await? {
            Some(event) => Ok(EventInfo::of(&event)),
            None => Err(Error::new(
                ErrorKind::EventNotFound,
                format_args!("no event with id {id} is known to this runtime"),
            )),
        }
    }

    /// A page of the stored events `filter` selects, newest first.
    ///
    /// Fails with [`ErrorKind::EventNotFound`] when the cursor ([`EventFilter::after`])
    /// names an event no longer stored (pruned since the page before).
    ///
    /// ```
    /// use fanfare::EventFilter;
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// for n in 0..3 {
    ///     rt.send_json("doc/tick", serde_json::json!({ "n": n })).await?;
    /// }
    /// let page = rt.events(&EventFilter::new().name("doc/tick").limit(2)).await?;
    /// assert_eq!(page.events.len(), 2);
    /// let rest = rt.events(&EventFilter::new().name("doc/tick").after(page.next.unwrap())).await?;
    /// assert_eq!(rest.events.len(), 1);
    /// # rt.shutdown().await }
    /// ```
    pub async fn events(&self, filter: &EventFilter) -> Result<EventPage> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let Some(mut events) = self.store().events(filter, limit + 1).await? else {
            let cursor = filter.after.map(|c| c.to_string()).unwrap_or_default();
            return Err(Error::new(
                ErrorKind::EventNotFound,
                format_args!("the cursor names event {cursor}, which is no longer stored\nhelp: start again from the first page"),
            ));
        };
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(EventPage {
            events: events.iter().map(|e| EventInfo::of(e)).collect(),
            next,
        })
    }
}
