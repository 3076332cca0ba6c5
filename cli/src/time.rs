//! Times: `--since`/`--until` values (a duration ago, or an RFC 3339 instant) to ms since
//! the Unix epoch, as the API takes them, and ms back to text for tables.

use jiff::Timestamp;

/// What `--since` and `--until` accept, for error messages and `--help`.
pub const ACCEPTED: &str =
    "a duration ago such as `30m`, `1h`, `2d` or `1h30m` (units s, m, h, d, w), \
     or an RFC 3339 time such as `2026-01-31T09:00:00Z`";

/// Parses a `--since`/`--until` value relative to now.
pub fn parse_arg(s: &str) -> Result<i64, String> {
    parse(s, Timestamp::now().as_millisecond())
}

/// Parses `s` as a duration before `now_ms`, or as an RFC 3339 instant: ms since the epoch.
pub fn parse(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("empty time: expected {ACCEPTED}"));
    }
    if s.contains(['T', 't', ' ']) && s.contains(':') {
        return s
            .parse::<Timestamp>()
            .map(Timestamp::as_millisecond)
            .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e}): expected {ACCEPTED}"));
    }
    let ago = parse_duration_ms(s)?;
    Ok(now_ms.saturating_sub(ago))
}

/// `30m`, `1h`, `2d`, `1h30m`: the duration in ms.
fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("`{s}` is not a time: {why}; expected {ACCEPTED}");
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("a number must come before each unit"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| bad("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: i64 = match &rest[..unit_len] {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => return Err(bad("a unit is missing after the number")),
            other => return Err(bad(&format!("unknown unit `{other}`"))),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| bad("the duration is too large"))?;
    }
    Ok(total)
}

/// A time in ms since the epoch as `2026-01-31 09:00:05Z` (UTC), or the number itself if
/// it is out of range.
pub fn format_ms(ms: i64) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        Err(_) => ms.to_string(),
    }
}

/// A duration in ms, short: `850ms`, `2.4s`, `3m05s`, `2h10m`.
pub fn format_duration_ms(ms: i64) -> String {
    match ms {
        ..=-1 => format!("{ms}ms"),
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn durations_are_before_now() {
        assert_eq!(parse("30m", NOW), Ok(NOW - 30 * 60_000));
        assert_eq!(parse("1h", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse("2d", NOW), Ok(NOW - 2 * 86_400_000));
        assert_eq!(parse("1h30m", NOW), Ok(NOW - 90 * 60_000));
        assert_eq!(parse("45s", NOW), Ok(NOW - 45_000));
        assert_eq!(parse("1w", NOW), Ok(NOW - 7 * 86_400_000));
        assert_eq!(parse(" 0m ", NOW), Ok(NOW));
    }

    #[test]
    fn rfc3339_times_are_absolute() {
        assert_eq!(parse("2026-01-31T09:00:00Z", NOW), Ok(1_769_850_000_000));
        assert_eq!(
            parse("2026-01-31T10:00:00+01:00", NOW),
            Ok(1_769_850_000_000)
        );
        assert_eq!(
            parse("2026-01-31T09:00:00.250Z", NOW),
            Ok(1_769_850_000_250)
        );
    }

    #[test]
    fn bad_times_say_what_is_accepted() {
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "1hour",
            "-1h",
            "yesterday",
            "1h 30m",
            "2026-13-01T00:00:00Z",
        ] {
            let e = parse(bad, NOW).expect_err(bad);
            assert!(e.contains("expected a duration ago"), "{bad}: {e}");
        }
        assert!(parse("1x", NOW).unwrap_err().contains("unknown unit `x`"));
        assert!(parse("99999999999999999d", NOW)
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(format_ms(1_769_850_000_250), "2026-01-31 09:00:00Z");
        assert_eq!(format_duration_ms(850), "850ms");
        assert_eq!(format_duration_ms(2_400), "2.4s");
        assert_eq!(format_duration_ms(185_000), "3m05s");
        assert_eq!(format_duration_ms(7_800_000), "2h10m");
    }
}
