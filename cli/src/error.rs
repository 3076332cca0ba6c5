//! What can go wrong, and the exit code each maps to: the codes scripts rely on.

use std::fmt;

/// Exit codes, documented in `--help` and the README.
pub mod code {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (an output that could not be written, an HTTP status the
    /// API does not use).
    pub const OTHER: u8 = 1;
    /// A usage error: a bad argument, caught here (clap's own code) or by the server
    /// (`400`).
    pub const USAGE: u8 = 2;
    /// Not found (`404`): no such run, event or function.
    pub const NOT_FOUND: u8 = 3;
    /// Refused (`409`): e.g. a run that is not finished cannot be replayed.
    pub const REFUSED: u8 = 4;
    /// Unauthorized (`401`): no admin key, or a wrong one.
    pub const UNAUTHORIZED: u8 = 5;
    /// The runtime could not be reached, or answered with a server error (`5xx`) or an
    /// answer that is not the API's.
    pub const SERVER: u8 = 6;
}

/// A failed command: the exit code's category and the message for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

/// Categories of failure, one per exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    Usage,
    NotFound,
    Refused,
    Unauthorized,
    Server,
}

impl Kind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Kind::Other => code::OTHER,
            Kind::Usage => code::USAGE,
            Kind::NotFound => code::NOT_FOUND,
            Kind::Refused => code::REFUSED,
            Kind::Unauthorized => code::UNAUTHORIZED,
            Kind::Server => code::SERVER,
        }
    }

    /// The category of an HTTP error status.
    pub fn of_status(status: u16) -> Kind {
        match status {
            400 | 422 => Kind::Usage,
            401 | 403 => Kind::Unauthorized,
            404 => Kind::NotFound,
            409 => Kind::Refused,
            500..=599 => Kind::Server,
            _ => Kind::Other,
        }
    }
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Usage, message)
    }

    pub fn server(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Server, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_documented_codes() {
        assert_eq!(Kind::of_status(400).code(), 2);
        assert_eq!(Kind::of_status(401).code(), 5);
        assert_eq!(Kind::of_status(404).code(), 3);
        assert_eq!(Kind::of_status(409).code(), 4);
        assert_eq!(Kind::of_status(500).code(), 6);
        assert_eq!(Kind::of_status(503).code(), 6);
        assert_eq!(Kind::of_status(413).code(), 1);
    }
}
