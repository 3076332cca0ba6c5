//! Hand-written HTML: the one escaping helper every interpolated string goes through,
//! the page layout, and the small formatting helpers the pages share.

use crate::RunStatus;
use std::fmt::Write;

/// `s` with `& < > " '` replaced by entities: safe in element text and in quoted
/// attribute values. Every string that did not come from this module goes through it.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query string value or a path segment.
pub(crate) fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole page: `title` (text, escaped here), the navigation, `body` (HTML).
/// `base` is where the dashboard is mounted (`""` at the root); `csrf` the session's
/// token for the logout form, `None` on the login page.
pub(crate) fn page(base: &str, title: &str, csrf: Option<&str>, body: &str) -> String {
    let b = esc(base);
    let logout = match csrf {
        Some(csrf) => format!(
            "<form method=\"post\" action=\"{b}/logout\" class=\"logout\">{}<button>Log out</button></form>",
            csrf_field(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · fanfare</title>\
         <link rel=\"stylesheet\" href=\"{b}/assets/dashboard.css\">\
         <script src=\"{b}/assets/dashboard.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"{b}/\">fanfare</a>\
         <nav><a href=\"{b}/\">Functions</a><a href=\"{b}/runs\">Runs</a>\
         <a href=\"{b}/runs?status=failed\">Failed</a></nav>{logout}</header>\
         <main>{body}</main></body></html>\n",
        title = esc(title),
    )
}

/// The hidden field every state-changing form carries.
pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A run's status as a coloured badge.
pub(crate) fn badge(status: RunStatus) -> String {
    let s = status.as_str();
    format!("<span class=\"badge {s}\">{s}</span>")
}

/// Milliseconds since the Unix epoch as `2025-01-31 23:59:59.123 UTC`.
pub(crate) fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A duration in milliseconds, short: `850 ms`, `2.4 s`, `3 min 5 s`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(url("a b/é&"), "a%20b%2F%C3%A9%26");
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(time(951_782_400_123), "2000-02-29 00:00:00.123 UTC");
        assert_eq!(time(1_735_689_599_000), "2024-12-31 23:59:59.000 UTC");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(2_400), "2.4 s");
        assert_eq!(duration(185_000), "3 min 5 s");
    }
}
