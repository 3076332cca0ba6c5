//! Trace context: the W3C `traceparent` an event is stored with, so the spans of its runs
//! can be linked to the span that sent it, in this process or another.
//!
//! fanfare depends on `tracing` only. It stores a [`TraceParent`] with each event and
//! hands it back to the run; reading the current OpenTelemetry context at `send` and
//! making it a run span's parent are two hooks given to the builder
//! ([`Builder::trace_inject`](crate::Builder::trace_inject),
//! [`Builder::trace_extract`](crate::Builder::trace_extract)), which a user of
//! `tracing-opentelemetry` fills with a few lines (see the README, "Tracing across
//! services").

use std::fmt;

/// Length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const LEN: usize = 55;

/// A W3C Trace Context `traceparent`, validated: `00-{trace-id}-{parent-id}-{flags}`,
/// with a 32-digit trace id and a 16-digit parent (span) id, neither all zeros, and two
/// flag digits, all lowercase hexadecimal.
///
/// Anything else is refused by [`parse`](TraceParent::parse): other versions, uppercase
/// digits, zero ids, extra characters. An event whose context does not parse is stored
/// without one, as the W3C specification asks of an invalid header — its runs start a
/// trace of their own.
///
/// It is kept inline (55 bytes, no allocation) and is `Copy`.
///
/// ```
/// use fanfare::TraceParent;
///
/// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.parent_id(), "00f067aa0ba902b7");
/// assert!(tp.sampled());
/// assert_eq!(tp.as_str(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
///
/// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent([u8; LEN]);

impl TraceParent {
    /// Parses a `traceparent` under the rules above; `None` when it breaks one.
    pub fn parse(s: &str) -> Option<TraceParent> {
        let b = s.as_bytes();
        if b.len() != LEN || !b.starts_with(b"00-") || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let hex = |r: std::ops::Range<usize>| {
            b[r].iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        };
        let zero = |r: std::ops::Range<usize>| b[r].iter().all(|&c| c == b'0');
        if !hex(3..35) || !hex(36..52) || !hex(53..55) || zero(3..35) || zero(36..52) {
            return None;
        }
        let mut out = [0u8; LEN];
        out.copy_from_slice(b);
        Some(TraceParent(out))
    }

    /// The `traceparent` as text, as it is stored and sent.
    pub fn as_str(&self) -> &str {
        // Only ASCII passes `parse`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.as_str()[3..35]
    }

    /// The id of the span that sent the event: 16 lowercase hex digits.
    pub fn parent_id(&self) -> &str {
        &self.as_str()[36..52]
    }

    /// Whether the sender sampled its trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        // Both digits are hex: the low bit of the second is the flag.
        let d = self.0[54];
        let v = if d.is_ascii_digit() {
            d - b'0'
        } else {
            d - b'a' + 10
        };
        v & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({})", self.as_str())
    }
}

impl std::str::FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceParent::parse(s).ok_or(InvalidTraceParent)
    }
}

/// A string that is not a valid `traceparent` (see [`TraceParent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidTraceParent;

impl fmt::Display for InvalidTraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a W3C traceparent: expected `00-` 32 hex digits `-` 16 hex digits `-` 2 hex \
             digits, lowercase, with non-zero ids",
        )
    }
}

impl std::error::Error for InvalidTraceParent {}

/// The hooks a builder was given: how to read the current context at a send, and how
/// to make a run's span a child of its event's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hooks {
    pub inject: Option<fn() -> Option<String>>,
    pub extract: Option<fn(&tracing::Span, &str)>,
}

impl Hooks {
    /// The current context, read by the inject hook (none without one, or when it
    /// returns nothing valid).
    pub fn current(&self) -> Option<TraceParent> {
        let inject = self.inject?;
        inject().as_deref().and_then(TraceParent::parse)
    }

    /// Links `span`, a run's, to `parent`, its event's: records it on the span and calls
    /// the extract hook.
    pub fn link(&self, span: &tracing::Span, parent: &TraceParent) {
        span.record("trace_id", parent.trace_id());
        span.record("traceparent", parent.as_str());
        if let Some(extract) = self.extract {
            extract(span, parent.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TraceParent;

    #[test]
    fn parse_follows_the_documented_rules() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let tp = TraceParent::parse(ok).unwrap();
        assert!(!tp.sampled());
        assert_eq!(tp.to_string(), ok);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        let odd = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0b");
        assert!(odd.is_some_and(|t| t.sampled()));
    }
}
