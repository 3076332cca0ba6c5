//! [`Error`], the one error type of fanfare, and [`ErrorKind`], what went wrong.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// `Result<T, fanfare::Error>`: what functions return and what the runtime's calls return.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a function or from the runtime.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it with `?`, so a function
/// body can use the libraries it already uses. Three constructors tell the runtime what
/// to do next with a failed run:
///
/// ```
/// use std::time::Duration;
/// use fanfare::Error;
///
/// let plain = Error::msg("the CRM answered 503");              // retried with backoff
/// let fatal = Error::non_retriable("account was deleted");      // fails the run at once
/// let later = Error::retry_after(Duration::from_secs(30), "rate limited"); // retried in 30 s
/// assert!(plain.is_retriable() && !fatal.is_retriable());
/// assert_eq!(later.retry_delay(), Some(Duration::from_secs(30)));
/// ```
///
/// Like `anyhow::Error`, it does not implement `std::error::Error` itself (that would
/// conflict with the blanket `From`); it converts into `Box<dyn std::error::Error + Send + Sync>`.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    retry: Retry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    Backoff,
    Never,
    After(Duration),
}

/// What kind of failure an [`Error`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Returned by a function's body (`?`, [`Error::msg`], …).
    Function,
    /// A function panicked; the panic failed that attempt of that run only.
    Panic,
    /// The event's data does not deserialize into the function's event type.
    Decode,
    /// The event could not be serialized to JSON.
    Serialize,
    /// The serialized event is larger than the runtime's `max_event_size`.
    EventTooLarge,
    /// An event name given at run time (to `send_json`) breaks the naming rules.
    InvalidEventName,
    /// Two linked functions share one id.
    DuplicateFunction,
    /// The runtime was configured with a value it cannot work with.
    Config,
    /// No runtime is running for the ambient [`crate::send`].
    NoRuntime,
    /// The runtime has been shut down.
    ShutDown,
    /// No event with this id is known to the store.
    EventNotFound,
    /// No run with this id is known to the store ([`Runtime::cancel`](crate::Runtime::cancel)).
    RunNotFound,
    /// A run cannot be replayed ([`Runtime::replay`](crate::Runtime::replay)): it has not
    /// finished, or it belongs to a batch.
    NotReplayable,
    /// The store failed: the database is unreachable, refused a statement, or is not a
    /// fanfare database.
    Store,
    /// A function called with `ctx.invoke` failed for good, or its run was cancelled.
    Invoked,
    /// The function called its steps in another order than when they first ran.
    NonDeterministic,
    /// The process running an attempt stopped before it finished (a crash, `kill -9`,
    /// an expired lease), and the run had no retries left.
    Interrupted,
}

impl Error {
    /// Makes an error from a message; the run is retried with the runtime's backoff.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Function, message)
    }

    /// Makes an error that fails the run at once: no further attempts are made.
    pub fn non_retriable(message: impl fmt::Display) -> Self {
        let mut e = Error::msg(message);
        e.inner.retry = Retry::Never;
        e
    }

    /// Makes an error whose next attempt starts after `delay` instead of the backoff's delay.
    ///
    /// The attempt still counts against the function's `retries`.
    pub fn retry_after(delay: Duration, message: impl fmt::Display) -> Self {
        let mut e = Error::msg(message);
        e.inner.retry = Retry::After(delay);
        e
    }

    pub(crate) fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.to_string(),
                source: None,
                retry: Retry::Backoff,
            }),
        }
    }

    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn never_retry(mut self) -> Self {
        self.inner.retry = Retry::Never;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// `false` for [`Error::non_retriable`] errors and for events that do not decode.
    pub fn is_retriable(&self) -> bool {
        self.inner.retry != Retry::Never
    }

    /// The delay set by [`Error::retry_after`], if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        match self.inner.retry {
            Retry::After(d) => Some(d),
            _ => None,
        }
    }

    /// The error this one was converted from, if any.
    pub fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }

    /// The error this one was converted from, if it is a `T`.
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        self.source()?.downcast_ref()
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Error::msg(&error).with_source(error)
    }
}

impl fmt::Display for Error {
    /// The message; with `{:#}`, followed by the chain of causes below the source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if f.alternate() {
            let mut cause = self.source().and_then(StdError::source);
            while let Some(c) = cause {
                write!(f, ": {c}")?;
                cause = c.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    /// Readable, as `main` prints it when it returns `Err`: the message, then the causes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("Error")
                .field("kind", &self.inner.kind)
                .field("message", &self.inner.message)
                .field("source", &self.inner.source)
                .field("retry", &self.inner.retry)
                .finish();
        }
        write!(f, "{} ({:?})", self.inner.message, self.inner.kind)?;
        let mut cause = self.source().and_then(StdError::source);
        if cause.is_some() {
            f.write_str("\n\nCaused by:")?;
        }
        while let Some(c) = cause {
            write!(f, "\n    {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// Lets a fanfare error travel through code that speaks `Box<dyn Error>`.
struct StdCompat(Error);

impl fmt::Debug for StdCompat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StdCompat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for StdCompat {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

impl From<Error> for Box<dyn StdError + Send + Sync + 'static> {
    fn from(error: Error) -> Self {
        Box::new(StdCompat(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn converts_with_question_mark_and_keeps_the_chain() {
        fn fails() -> Result<()> {
            Err(Outer(std::io::Error::other("disk gone")))?;
            Ok(())
        }
        let e = fails().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Function);
        assert_eq!(e.to_string(), "outer");
        assert_eq!(format!("{e:#}"), "outer: disk gone");
        assert!(e.downcast_ref::<Outer>().is_some());
        assert!(format!("{e:?}").contains("Caused by:\n    disk gone"));
        let boxed: Box<dyn StdError + Send + Sync> = e.into();
        assert_eq!(boxed.to_string(), "outer");
    }
}
