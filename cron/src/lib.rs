//! Cron schedules for fanfare: parsing and next ticks, with time zones.
//!
//! Use it through the `fanfare` crate: `#[function(cron = "…")]` parses the
//! expression at compile time, so a bad one is a compile error, and the
//! runtime asks [`Schedule::next_after`] for each next tick.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use fanfare_cron::Schedule;
//!
//! // 09:00 on weekdays, Paris time.
//! let schedule = Schedule::parse("TZ=Europe/Paris 0 9 * * MON-FRI")?;
//! assert_eq!(schedule.zone(), Some("Europe/Paris"));
//!
//! // Friday 2026-07-03 12:00 UTC…
//! let friday_noon = SystemTime::UNIX_EPOCH + Duration::from_secs(1_783_080_000);
//! // …is followed by Monday 2026-07-06 09:00 CEST, 07:00 UTC.
//! let monday_nine = SystemTime::UNIX_EPOCH + Duration::from_secs(1_783_321_200);
//! assert_eq!(schedule.next_after(friday_noon), Some(monday_nine));
//!
//! let error = Schedule::parse("61 * * * *").unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "the minute field `61` is out of range: expected 0–59",
//! );
//! # Ok::<(), fanfare_cron::ParseError>(())
//! ```
//!
//! See [`Schedule`] for the syntax and for what happens around
//! daylight-saving changes.

#![warn(missing_docs)]

mod error;
mod fields;
mod next;
mod parse;

use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;

pub use error::ParseError;
use fields::Fields;

/// A parsed cron schedule.
///
/// # Syntax
///
/// `[TZ=Area/City] [second] minute hour day-of-month month day-of-week`:
///
/// - An optional `TZ=` (or `CRON_TZ=`) prefix names the IANA time zone whose
///   wall clock the fields match, such as `TZ=Europe/Paris`. Without it the
///   schedule is in UTC.
/// - Five fields, or six with a leading `second` (five fields fire at second
///   0). Ranges: second 0–59, minute 0–59, hour 0–23, day-of-month 1–31,
///   month 1–12 or `JAN`–`DEC`, day-of-week 0–7 or `SUN`–`SAT`, where 0 and 7
///   are both Sunday. Names are case-insensitive.
/// - Each field is `*`, a number or name, a range `a-b`, a step `*/n`,
///   `a-b/n` or `a/n` (from `a` to the field's maximum), or a
///   comma-separated list of those. `?` is `*` in the two day fields.
/// - `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`)
///   and `@hourly` stand for all the fields, and may follow the prefix.
///   `@reboot` is refused.
///
/// When the day-of-month and day-of-week fields are both restricted (neither
/// is exactly `*` or `?`), a day matches when either matches, as in Vixie
/// cron: `0 0 1 * MON` fires on the 1st and on every Monday. Otherwise only
/// the restricted one counts.
///
/// # Ticks
///
/// The fields match the wall-clock time in the schedule's zone, to the
/// second. Around daylight-saving changes and other changes of a zone's
/// offset:
///
/// - A matching wall-clock time that does not exist, because the clock
///   jumps over it, fires once at the instant of the jump. In Europe/Paris,
///   where 02:00 CET jumps to 03:00 CEST, `30 2 * * *` fires at 03:00 CEST
///   on that day. Several such times, and a matching time right at the end
///   of the jump, make a single tick.
/// - A matching wall-clock time that occurs twice, because the clock goes
///   back, fires once, at its first occurrence, unless the hour field allows
///   all 24 hours (`*`, `0-23`, `*/1`): then it fires at both occurrences,
///   so `*/15 * * * *` keeps firing every 15 minutes of elapsed time through
///   the repeated hour, while `30 2 * * *` fires once.
#[derive(Clone, Debug)]
pub struct Schedule {
    source: String,
    zone: Option<(String, TimeZone)>,
    fields: Fields,
}

impl Schedule {
    /// Parses a cron expression; see [`Schedule`] for the syntax.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] naming the offending field and text when the
    /// expression is not valid or names an unknown time zone. An expression
    /// that is valid but can never fire, such as `0 0 30 2 *`, parses, and
    /// [`next_after`](Schedule::next_after) gives `None` for it.
    pub fn parse(expr: &str) -> Result<Schedule, ParseError> {
        let parsed = parse::parse(expr)?;
        Ok(Schedule {
            source: expr.to_owned(),
            zone: parsed.zone,
            fields: parsed.fields,
        })
    }

    /// The first tick strictly after `after`, or `None` if there is none.
    ///
    /// Ticks are whole seconds, following the rules in [`Schedule`]'s
    /// "Ticks" section. The search skips whole months, days and hours that
    /// cannot match, and gives up after 10 years past `after` (a Feb 29
    /// schedule fires at least every 8 years), so a schedule that never
    /// fires, such as Feb 30 (`0 0 30 2 *`), gives `None` quickly. `None`
    /// also comes when the tick would fall after the year 9999, or `after`
    /// is before the year -9999.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let zone = self.zone.as_ref().map(|(_, zone)| zone);
        let tick = next::next_after(&self.fields, zone, floor_seconds(after)?)?;
        let magnitude = Duration::from_secs(tick.unsigned_abs());
        if tick >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(magnitude)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// The expression as given to [`parse`](Schedule::parse).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The IANA zone name as given with `TZ=` (or `CRON_TZ=`), or `None`
    /// when the expression has no prefix and the schedule is in UTC.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_ref().map(|(name, _)| name.as_str())
    }
}

/// `time` as Unix seconds, rounded down; `None` past `i64`.
fn floor_seconds(time: SystemTime) -> Option<i64> {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).ok(),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).ok()?;
            let partial = i64::from(before.subsec_nanos() > 0);
            whole.checked_neg()?.checked_sub(partial)
        }
    }
}
