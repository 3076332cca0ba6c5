//! The error [`Schedule::parse`](crate::Schedule::parse) returns.

use std::fmt;

/// Why an expression was refused.
///
/// [`Display`](fmt::Display) gives one lowercase message without a trailing
/// period, with the offending text in backticks, for example
/// ``the minute field `61` is out of range: expected 0–59``.
/// [`help`](ParseError::help) gives an optional hint on how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    message: String,
    help: Option<String>,
}

impl ParseError {
    /// An error with `message` and no hint.
    pub(crate) fn new(message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            help: None,
        }
    }

    /// The same error with the hint `help`.
    pub(crate) fn with_help(mut self, help: impl Into<String>) -> ParseError {
        self.help = Some(help.into());
        self
    }

    /// A hint on how to fix the expression, if there is one, for example
    /// ``use an IANA name such as `Europe/Paris` or `UTC` ``.
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}
