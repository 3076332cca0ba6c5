//! Keys: event keys for `POST /e/{key}`, admin keys for the APIs that read and change
//! runs. Several of each may be valid at once (rotation); compared in constant time.

/// The keys configured on the builder.
#[derive(Clone, Default)]
pub(crate) struct Keys {
    pub event: Vec<String>,
    /// For the runs API and the dashboard.
    pub admin: Vec<String>,
}

impl Keys {
    /// Whether `key` is one of the event keys.
    pub fn is_event_key(&self, key: &str) -> bool {
        any_equal(&self.event, key)
    }

    /// Whether `key` is one of the admin keys.
    pub fn is_admin_key(&self, key: &str) -> bool {
        any_equal(&self.admin, key)
    }
}

/// Whether `key` equals one of `valid`, comparing every one of them in full.
pub(crate) fn any_equal(valid: &[String], key: &str) -> bool {
    valid.iter().fold(false, |found, v| {
        found | constant_time_eq(v.as_bytes(), key.as_bytes())
    })
}

/// `a == b` in a time that depends on their lengths only, not on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    // Keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_only_in_full() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        let keys = Keys {
            event: vec!["old".into(), "new".into()],
            admin: vec![],
        };
        assert!(keys.is_event_key("old") && keys.is_event_key("new"));
        assert!(!keys.is_event_key("") && !keys.is_event_key("ne"));
    }
}
