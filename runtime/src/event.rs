//! Events: the [`Event`] trait, ids, and the envelope an event travels in.

use crate::error::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// A type that can be sent as an event: derive it with `#[derive(fanfare::Event)]`.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
/// #[event(name = "user/signup")]
/// pub struct UserSignup { pub user_id: u64, pub email: String }
///
/// assert_eq!(<UserSignup as fanfare::Event>::NAME, "user/signup");
/// ```
///
/// Event names are 1 to 256 bytes of ASCII letters, digits and `/ . _ - :`; the derive
/// checks the name at compile time.
///
/// **Event unions.** On an enum of newtype variants, each named with `#[event(name)]`,
/// the derive makes an event union: a value is sent under its variant's name, with its
/// variant's data, so the variants' own functions run for it too; a function takes the
/// union for several of its names with `trigger = [..]` (each checked against the
/// union at compile time). An enum named as a whole is one event, as a struct.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
/// # #[event(name = "doc/user.signup")]
/// # pub struct UserSignup { pub user_id: u64 }
/// # #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
/// # #[event(name = "doc/user.invited")]
/// # pub struct UserInvited { pub by: u64 }
/// use fanfare::{Ctx, Event};
///
/// #[derive(Event, Serialize, Deserialize, Clone, Debug)]
/// enum UserChanged {
///     #[event(name = "doc/user.signup")]
///     Signup(UserSignup),
///     #[event(name = "doc/user.invited")]
///     Invited(UserInvited),
/// }
///
/// #[fanfare::function(trigger = ["doc/user.signup", "doc/user.invited"])]
/// async fn add_to_crm(ctx: Ctx<UserChanged>) -> fanfare::Result<()> {
///     match ctx.event() {
///         UserChanged::Signup(s) => { let _ = s.user_id; }
///         UserChanged::Invited(i) => { let _ = i.by; }
///     }
///     Ok(())
/// }
///
/// assert_eq!(UserChanged::NAMES, ["doc/user.signup", "doc/user.invited"]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a fanfare event",
    label = "not an `Event`",
    note = "derive it with `#[derive(fanfare::Event)]` and name it with `#[event(name = \"…\")]`"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event's name, which `#[function(trigger = "…")]` refers to (for an event
    /// union, its first variant's).
    const NAME: &'static str;

    /// Every name values of this type are sent under: `[NAME]`, or, for an event union
    /// (an enum of events), each variant's.
    const NAMES: &'static [&'static str] = &[Self::NAME];

    /// The name this value is sent under.
    #[doc(hidden)]
    fn __fanfare_name(&self) -> &'static str {
        Self::NAME
    }

    /// This value's data, as stored: a union stores its variant's value.
    #[doc(hidden)]
    fn __fanfare_data(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// A value of an event named `name` with `data`.
    #[doc(hidden)]
    fn __fanfare_from(name: &str, data: &str) -> serde_json::Result<Self> {
        let _ = name;
        serde_json::from_str(data)
    }
}

/// For event unions: an event name the union has no variant for.
#[doc(hidden)]
pub fn unknown_variant(union: &str, name: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(format_args!(
        "`{union}` has no variant for event `{name}`"
    ))
}

/// What `Event` requires of its implementors, named once so that `#[derive(Event)]` on
/// a generic type can require it of its parameters.
#[doc(hidden)]
pub trait EventBounds: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> EventBounds for T {}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// The id as a UUID (version 7: it sorts by creation time).
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Wraps a UUID, for ids that were stored or sent elsewhere.
            pub fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        /// As its hyphenated string, so ids can travel inside events and outputs.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map($name).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

uuid_id! {
    /// The id of one sent event, returned by `send`.
    EventId
}

uuid_id! {
    /// The id of one run: one function's execution for one event, across all its attempts.
    ///
    /// Stable across retries, so it serves as an idempotency key for external APIs.
    RunId
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_millis() -> u64 {
    unix_millis(SystemTime::now())
}

/// `t` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A UUIDv7 for `millis`, with 74 random bits.
pub(crate) fn new_uuid(millis: u64) -> Uuid {
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    random[8..].copy_from_slice(&fastrand::u16(..).to_le_bytes());
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

impl RunId {
    pub(crate) fn new(millis: u64) -> Self {
        RunId(new_uuid(millis))
    }

    /// When the run was created: the UUIDv7's timestamp, in ms since the Unix epoch.
    pub(crate) fn created_ms(&self) -> u64 {
        let b = self.0.as_bytes();
        b[..6].iter().fold(0, |t, &byte| (t << 8) | u64::from(byte))
    }
}

impl EventId {
    /// The id of the event that reports the result of invocation `invocation` (the
    /// invoked run's event): the caller can look it up directly.
    pub(crate) fn invocation_result(invocation: EventId) -> EventId {
        EventId::for_step(RunId(invocation.0), "fanfare:invoke-finished")
    }

    /// An id derived from a key of yours (an order number, a webhook's delivery id):
    /// the same key gives the same id, in every process and every version, so an event
    /// sent twice under it is stored, and runs, once. See [`SendOptions::id`](crate::SendOptions::id).
    /// A UUIDv5 (SHA-1) of the key in fanfare's namespace.
    ///
    /// ```
    /// use fanfare::EventId;
    /// assert_eq!(EventId::from_key("order-42/placed"), EventId::from_key("order-42/placed"));
    /// assert_ne!(EventId::from_key("order-42/placed"), EventId::from_key("order-43/placed"));
    /// ```
    pub fn from_key(key: &str) -> EventId {
        EventId(Uuid::new_v5(&KEY_NAMESPACE, key.as_bytes()))
    }

    /// The id of the event a run sends from step `step`: the same on every replay, so
    /// the store keeps one event however often the step is re-executed. A UUIDv8 made
    /// of two FNV-1a hashes of the run id and the step id.
    pub(crate) fn for_step(run: RunId, step: &str) -> EventId {
        fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
            let mut h = seed;
            for part in parts {
                for &b in *part {
                    h ^= b as u64;
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
            h
        }
        let parts: [&[u8]; 3] = [run.0.as_bytes(), b"\0", step.as_bytes()];
        let hi = fnv(0xcbf2_9ce4_8422_2325, &parts);
        let lo = fnv(0x6c62_272e_07bb_0142, &parts);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        EventId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

/// The namespace of [`EventId::from_key`]'s UUIDv5s.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6661_6e66_6172_6500_8000_6b65_7973_0001);

/// An accepted event as the runtime keeps it: serialized once, and — when sent from
/// Rust in this process — also kept as the typed value, so functions of that type skip
/// deserialization.
#[derive(Clone)]
#[doc(hidden)]
pub struct Envelope {
    pub id: EventId,
    pub name: Cow<'static, str>,
    /// Unix milliseconds at `send`.
    pub ts: u64,
    /// The event's data as JSON.
    pub data: String,
    pub typed: Option<Arc<dyn Any + Send + Sync>>,
    /// Its runs start no earlier (unix ms): a delayed send.
    pub not_before: Option<u64>,
    /// The trace context it was sent in: its runs' spans are linked to it.
    pub trace: Option<crate::trace::TraceParent>,
}

impl Envelope {
    /// Serializes `event` and checks it against `max_size`.
    pub fn typed<E: Event>(event: E, max_size: usize) -> Result<Envelope> {
        let name = event.__fanfare_name();
        let data = event.__fanfare_data().map_err(|e| {
            Error::new(
                ErrorKind::Serialize,
                format_args!("event `{name}` could not be serialized: {e}"),
            )
            .with_source(e)
        })?;
        Envelope::new(Cow::Borrowed(name), data, Some(Arc::new(event)), max_size)
    }

    /// The same, under a given id (a `ctx.send` step's deterministic id).
    pub fn typed_with_id<E: Event>(event: E, max_size: usize, id: EventId) -> Result<Envelope> {
        let mut envelope = Envelope::typed(event, max_size)?;
        envelope.id = id;
        Ok(envelope)
    }

    /// A failure handler's event, under a given id.
    pub fn internal(name: &'static str, data: String, id: EventId) -> Envelope {
        Envelope {
            id,
            name: Cow::Borrowed(name),
            ts: now_millis(),
            data,
            typed: None,
            not_before: None,
            trace: None,
        }
    }

    /// An event as a store read it back.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn stored(id: EventId, name: String, data: String, ts: u64) -> Envelope {
        Envelope {
            id,
            name: Cow::Owned(name),
            ts,
            data,
            typed: None,
            not_before: None,
            trace: None,
        }
    }

    /// The same, with the trace context a store read back (stored text that does not
    /// parse is dropped).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn with_trace(mut self, trace: Option<&str>) -> Envelope {
        self.trace = trace.and_then(crate::trace::TraceParent::parse);
        self
    }

    /// An event from outside Rust: its name is checked at run time.
    pub fn json(name: String, data: &serde_json::Value, max_size: usize) -> Result<Envelope> {
        check_name(&name)?;
        if name.starts_with(RESERVED_PREFIX) {
            return Err(Error::new(
                ErrorKind::InvalidEventName,
                format_args!("invalid event name {name:?}: names starting with `{RESERVED_PREFIX}` are reserved for fanfare's own events"),
            ));
        }
        let data = serde_json::to_string(data).map_err(|e| {
            Error::new(
                ErrorKind::Serialize,
                format_args!("event `{name}` could not be serialized: {e}"),
            )
        })?;
        Envelope::new(Cow::Owned(name), data, None, max_size)
    }

    fn new(
        name: Cow<'static, str>,
        data: String,
        typed: Option<Arc<dyn Any + Send + Sync>>,
        max_size: usize,
    ) -> Result<Envelope> {
        if data.len() > max_size {
            return Err(Error::new(
                ErrorKind::EventTooLarge,
                format_args!(
                    "event `{name}` is {} bytes serialized, over the limit of {max_size} bytes\n\
                     help: send a reference (an id, a URL) instead of the payload, or raise \
                     the limit with `Runtime::builder().max_event_size(…)`",
                    data.len()
                ),
            ));
        }
        let ts = now_millis();
        Ok(Envelope {
            id: EventId(new_uuid(ts)),
            name,
            ts,
            data,
            typed,
            not_before: None,
            trace: None,
        })
    }

    /// The event as an `E`: the typed value when it is one, otherwise deserialized.
    pub fn decode<E: Event>(&self) -> std::result::Result<Arc<E>, serde_json::Error> {
        if let Some(typed) = &self.typed {
            if let Ok(e) = Arc::clone(typed).downcast::<E>() {
                return Ok(e);
            }
        }
        E::__fanfare_from(&self.name, &self.data).map(Arc::new)
    }
}

/// Longest event name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// What is wrong with a name under the event-name rules, if anything.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "it is {} bytes long, over {MAX_NAME_LEN}",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "/._-:".contains(*c)))
            .map(|c| format!("it contains {c:?}"))
    }
}

/// Names under this prefix are fanfare's own events.
pub(crate) const RESERVED_PREFIX: &str = "fanfare/";

/// The naming rules, as a `help:` line.
pub(crate) const NAME_RULES: &str = "1 to 256 ASCII letters, digits and `/`, `.`, `_`, `-`, `:`";

/// Checks an event name given at run time, with the rules `#[derive(Event)]` applies at
/// compile time.
pub(crate) fn check_name(name: &str) -> Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(Error::new(
            ErrorKind::InvalidEventName,
            format_args!(
                "invalid event name {name:?}: {problem}\nhelp: event names are {NAME_RULES}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rules() {
        assert!(check_name("user/signup").is_ok());
        assert!(check_name("a.b_c-d:e/1").is_ok());
        for bad in ["", "user signup", "über", &"x".repeat(257)] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidEventName, "{bad:?}");
        }
    }

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = RunId::new(1_000);
        let b = RunId::new(2_000);
        assert!(a < b);
        assert_eq!(a.to_string().parse::<RunId>().unwrap(), a);
    }
}
