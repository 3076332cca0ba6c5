//! The parsed fields of a schedule and the search for matching wall-clock
//! times, with no time zone involved.
//!
//! A wall-clock time is counted in "local seconds": seconds since
//! 1970-01-01T00:00:00 on the zone's clock, as if every day had 86,400
//! seconds. Turning it into an instant is `next.rs`'s business.

/// Seconds in a day.
pub(crate) const DAY: i64 = 86_400;

/// Every hour of the day, as an `hours` mask.
const ALL_HOURS: u64 = (1 << 24) - 1;

/// What each field allows, one bit per value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fields {
    /// Bits 0–59.
    pub(crate) seconds: u64,
    /// Bits 0–59.
    pub(crate) minutes: u64,
    /// Bits 0–23.
    pub(crate) hours: u64,
    /// Bits 1–31.
    pub(crate) days_of_month: u64,
    /// Bits 1–12.
    pub(crate) months: u64,
    /// Bits 0–6, 0 being Sunday.
    pub(crate) days_of_week: u64,
    /// The day-of-month field was `*` or `?`.
    pub(crate) dom_any: bool,
    /// The day-of-week field was `*` or `?`.
    pub(crate) dow_any: bool,
}

impl Fields {
    /// Whether the hour field allows all 24 hours (`*`, `0-23`, `*/1`…).
    pub(crate) fn all_hours(&self) -> bool {
        self.hours & ALL_HOURS == ALL_HOURS
    }

    /// Whether the day `day` (1–31) of a month, falling on `weekday`
    /// (0 = Sunday), matches, with Vixie cron's rule: when both day fields
    /// are restricted, either one matching is enough.
    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = self.days_of_month & (1 << day) != 0;
        let dow = self.days_of_week & (1 << weekday) != 0;
        match (self.dom_any, self.dow_any) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first matching second of a day at or after second `from` of that
    /// day (0–86,399), as a second of the day.
    fn first_time_in_day(&self, from: u32) -> Option<u32> {
        let (h0, m0, s0) = (from / 3600, from / 60 % 60, from % 60);
        let mut hour = next_bit(self.hours, h0)?;
        loop {
            let mut minute = next_bit(self.minutes, if hour == h0 { m0 } else { 0 });
            while let Some(m) = minute {
                let s_from = if hour == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, s_from) {
                    return Some(hour * 3600 + m * 60 + s);
                }
                minute = next_bit(self.minutes, m + 1);
            }
            hour = next_bit(self.hours, hour + 1)?;
        }
    }

    /// The first matching wall-clock time in `[start, end)`, in local
    /// seconds. Skips whole months and days that do not match, so its cost
    /// grows with the number of candidate days, not of seconds.
    pub(crate) fn next_match(&self, start: i64, end: i64) -> Option<i64> {
        let mut day = start.div_euclid(DAY);
        let mut from = start.rem_euclid(DAY) as u32;
        let last_day = (end - 1).div_euclid(DAY);
        while day <= last_day {
            let (year, month, dom) = civil_from_days(day);
            if self.months & (1 << month) == 0 {
                day = self.first_day_of_next_month(year, month);
                from = 0;
                continue;
            }
            let weekday = (day + 4).rem_euclid(7) as u32;
            if self.day_matches(dom, weekday) {
                if let Some(sod) = self.first_time_in_day(from) {
                    let wall = day * DAY + i64::from(sod);
                    return (wall < end).then_some(wall);
                }
            }
            day = if dom >= days_in_month(year, month) {
                self.first_day_of_next_month(year, month)
            } else {
                day + 1
            };
            from = 0;
        }
        None
    }

    /// The day number of the first day of the next allowed month after
    /// `month` of `year`.
    fn first_day_of_next_month(&self, year: i64, month: u32) -> i64 {
        match next_bit(self.months, month + 1).filter(|&m| m <= 12) {
            Some(m) => days_from_civil(year, m, 1),
            // `months` is never empty, so the next year has one.
            None => days_from_civil(year + 1, next_bit(self.months, 1).unwrap_or(1), 1),
        }
    }
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

/// Whether `year` is a leap year in the proleptic Gregorian calendar.
fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` (1–12) of `year`.
pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month 1–12, day 1–31) of a day
/// counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_and_agrees_with_jiff() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let date = jiff::civil::Date::new(y as i16, m as i8, d as i8).unwrap();
            assert_eq!(date.days_in_month() as u32, days_in_month(y, m));
            let weekday = date.weekday().to_sunday_zero_offset() as u32;
            assert_eq!((days + 4).rem_euclid(7) as u32, weekday);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn next_bit_finds_the_lowest_bit_at_or_above() {
        assert_eq!(next_bit(0b1010, 0), Some(1));
        assert_eq!(next_bit(0b1010, 2), Some(3));
        assert_eq!(next_bit(0b1010, 4), None);
        assert_eq!(next_bit(u64::MAX, 63), Some(63));
        assert_eq!(next_bit(u64::MAX, 64), None);
    }
}
