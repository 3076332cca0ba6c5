//! Next ticks: exact instants, in UTC and around daylight-saving changes.

use std::time::{Duration, Instant, SystemTime};

use fanfare_cron::Schedule;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::Timestamp;

/// The instant written `text` (RFC 3339).
fn at(text: &str) -> SystemTime {
    SystemTime::try_from(text.parse::<Timestamp>().unwrap()).unwrap()
}

/// `time` written in RFC 3339, in UTC.
fn show(time: SystemTime) -> String {
    Timestamp::try_from(time).unwrap().to_string()
}

/// The first `count` ticks of `expr` after `from`, in UTC.
fn ticks(expr: &str, from: &str, count: usize) -> Vec<String> {
    let schedule = Schedule::parse(expr).unwrap();
    let mut after = at(from);
    let mut out = Vec::new();
    for _ in 0..count {
        match schedule.next_after(after) {
            Some(next) => {
                assert!(
                    next > after,
                    "`{expr}`: {} is not after {}",
                    show(next),
                    show(after)
                );
                out.push(show(next));
                after = next;
            }
            None => break,
        }
    }
    out
}

/// The next tick of `expr` after `from`, in UTC.
fn next(expr: &str, from: &str) -> Option<String> {
    Schedule::parse(expr)
        .unwrap()
        .next_after(at(from))
        .map(show)
}

#[test]
fn seconds_field() {
    assert_eq!(
        ticks("*/2 * * * * *", "2026-01-01T00:00:00Z", 4),
        [
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:04Z",
            "2026-01-01T00:00:06Z",
            "2026-01-01T00:00:08Z"
        ]
    );
    assert_eq!(
        ticks("*/2 * * * * *", "2026-12-31T23:59:57Z", 2),
        ["2026-12-31T23:59:58Z", "2027-01-01T00:00:00Z"]
    );
    // Sub-second `after`: the next whole second, strictly after.
    assert_eq!(
        next("* * * * * *", "2026-01-01T00:00:00.5Z").unwrap(),
        "2026-01-01T00:00:01Z"
    );
    assert_eq!(
        next("* * * * * *", "2026-01-01T00:00:00Z").unwrap(),
        "2026-01-01T00:00:01Z"
    );
    assert_eq!(
        ticks("15,45 30 * * * *", "2026-01-01T00:30:20Z", 3),
        [
            "2026-01-01T00:30:45Z",
            "2026-01-01T01:30:15Z",
            "2026-01-01T01:30:45Z"
        ]
    );
    // Five fields fire at second 0.
    assert_eq!(
        next("* * * * *", "2026-01-01T00:00:00Z").unwrap(),
        "2026-01-01T00:01:00Z"
    );
}

#[test]
fn weekdays_in_utc_over_a_weekend() {
    // 2026-07-03 is a Friday.
    assert_eq!(
        ticks("0 9 * * MON-FRI", "2026-07-02T12:00:00Z", 4),
        [
            "2026-07-03T09:00:00Z",
            "2026-07-06T09:00:00Z",
            "2026-07-07T09:00:00Z",
            "2026-07-08T09:00:00Z"
        ]
    );
    assert_eq!(
        next("0 9 * * 1-5", "2026-07-03T09:00:00Z").unwrap(),
        "2026-07-06T09:00:00Z"
    );
    assert_eq!(
        next("0 9 * * mon-fri", "2026-07-03T08:59:59Z").unwrap(),
        "2026-07-03T09:00:00Z"
    );
}

#[test]
fn aliases() {
    // 2026-05-05 is a Tuesday.
    let from = "2026-05-05T10:30:00Z";
    assert_eq!(next("@yearly", from).unwrap(), "2027-01-01T00:00:00Z");
    assert_eq!(next("@annually", from).unwrap(), "2027-01-01T00:00:00Z");
    assert_eq!(next("@monthly", from).unwrap(), "2026-06-01T00:00:00Z");
    assert_eq!(next("@weekly", from).unwrap(), "2026-05-10T00:00:00Z");
    assert_eq!(next("@daily", from).unwrap(), "2026-05-06T00:00:00Z");
    assert_eq!(next("@midnight", from).unwrap(), "2026-05-06T00:00:00Z");
    assert_eq!(next("@hourly", from).unwrap(), "2026-05-05T11:00:00Z");
    // After the prefix: midnight in Paris, 22:00 UTC in summer.
    assert_eq!(
        next("TZ=Europe/Paris @daily", from).unwrap(),
        "2026-05-05T22:00:00Z"
    );
}

#[test]
fn names_steps_and_lists() {
    assert_eq!(
        ticks("0 0 1 jan,Jul *", "2026-03-01T00:00:00Z", 3),
        [
            "2026-07-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            "2027-07-01T00:00:00Z"
        ]
    );
    assert_eq!(
        ticks("0 0 1 FEB-APR *", "2026-03-15T00:00:00Z", 3),
        [
            "2026-04-01T00:00:00Z",
            "2027-02-01T00:00:00Z",
            "2027-03-01T00:00:00Z"
        ]
    );
    // 7 and SUN are Sunday, as is 0; 2026-05-10 is a Sunday.
    for expr in ["0 0 * * 7", "0 0 * * 0", "0 0 * * sun", "0 0 * * 6-7"] {
        assert_eq!(
            next(expr, "2026-05-09T12:00:00Z").unwrap(),
            "2026-05-10T00:00:00Z",
            "{expr}"
        );
    }
    assert_eq!(
        ticks("0 0 * * FRI-7", "2026-05-07T12:00:00Z", 4),
        [
            "2026-05-08T00:00:00Z",
            "2026-05-09T00:00:00Z",
            "2026-05-10T00:00:00Z",
            "2026-05-15T00:00:00Z"
        ]
    );
    // `a/n` runs to the field's maximum; `a-b/n` within the range.
    assert_eq!(
        ticks("50/5 * * * *", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T00:50:00Z",
            "2026-01-01T00:55:00Z",
            "2026-01-01T01:50:00Z"
        ]
    );
    assert_eq!(
        ticks("0 1-10/4,23 * * *", "2026-01-01T00:00:00Z", 5),
        [
            "2026-01-01T01:00:00Z",
            "2026-01-01T05:00:00Z",
            "2026-01-01T09:00:00Z",
            "2026-01-01T23:00:00Z",
            "2026-01-02T01:00:00Z"
        ]
    );
    assert_eq!(
        next("0 0 31 * *", "2026-04-01T00:00:00Z").unwrap(),
        "2026-05-31T00:00:00Z"
    );
}

#[test]
fn day_of_month_or_day_of_week() {
    // Both restricted: the 13th or any Friday. 2026-01-02 is a Friday, the
    // 13th a Tuesday.
    assert_eq!(
        ticks("0 0 13 * FRI", "2026-01-01T00:00:00Z", 4),
        [
            "2026-01-02T00:00:00Z",
            "2026-01-09T00:00:00Z",
            "2026-01-13T00:00:00Z",
            "2026-01-16T00:00:00Z"
        ]
    );
    // Only one restricted: it alone counts.
    assert_eq!(
        ticks("0 0 * * FRI", "2026-01-01T00:00:00Z", 2),
        ["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"]
    );
    assert_eq!(
        ticks("0 0 13 * *", "2026-01-01T00:00:00Z", 2),
        ["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"]
    );
    assert_eq!(
        ticks("0 0 13 * ?", "2026-01-01T00:00:00Z", 2),
        ["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"]
    );
    assert_eq!(
        ticks("0 0 ? * FRI", "2026-01-01T00:00:00Z", 2),
        ["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"]
    );
    // A range covering every day is still restricted: every day matches.
    assert_eq!(
        ticks("0 0 1-31 * MON", "2026-01-01T00:00:00Z", 2),
        ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]
    );
    // The month restricts both.
    assert_eq!(
        ticks("0 0 13 FEB FRI", "2026-01-01T00:00:00Z", 3),
        [
            "2026-02-06T00:00:00Z",
            "2026-02-13T00:00:00Z",
            "2026-02-20T00:00:00Z"
        ]
    );
}

#[test]
fn schedules_that_never_fire_give_none_quickly() {
    let started = Instant::now();
    for expr in [
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "TZ=Europe/Paris 0 0 30 2 *",
    ] {
        let schedule = Schedule::parse(expr).unwrap();
        assert_eq!(
            schedule.next_after(at("2026-01-01T00:00:00Z")),
            None,
            "{expr}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Feb 29 waits 8 years across 2100.
    assert_eq!(
        ticks("0 0 29 2 *", "2096-03-01T00:00:00Z", 2),
        ["2104-02-29T00:00:00Z", "2108-02-29T00:00:00Z"]
    );
}

#[test]
fn far_past_and_future() {
    assert_eq!(
        next("0 0 1 1 *", "1969-06-01T00:00:00Z").unwrap(),
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(
        next("0 0 1 1 *", "1969-12-31T23:59:59.5Z").unwrap(),
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(
        next("* * * * * *", "1969-12-31T23:59:58.5Z").unwrap(),
        "1969-12-31T23:59:59Z"
    );
    assert_eq!(
        next("0 0 1 1 *", "1900-06-01T00:00:00Z").unwrap(),
        "1901-01-01T00:00:00Z"
    );
    assert_eq!(next("0 0 1 1 *", "9999-06-01T00:00:00Z"), None);
    let schedule = Schedule::parse("* * * * *").unwrap();
    assert_eq!(
        schedule.next_after(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 62)),
        None
    );
}

#[test]
fn paris_weekdays_across_both_changes() {
    // Spring forward on Sun 2026-03-29: 08:00 UTC in winter, 07:00 in summer.
    assert_eq!(
        ticks("TZ=Europe/Paris 0 9 * * MON-FRI", "2026-03-26T00:00:00Z", 3),
        [
            "2026-03-26T08:00:00Z",
            "2026-03-27T08:00:00Z",
            "2026-03-30T07:00:00Z"
        ]
    );
    // Fall back on Sun 2026-10-25.
    assert_eq!(
        ticks("TZ=Europe/Paris 0 9 * * MON-FRI", "2026-10-22T00:00:00Z", 3),
        [
            "2026-10-22T07:00:00Z",
            "2026-10-23T07:00:00Z",
            "2026-10-26T08:00:00Z"
        ]
    );
}

#[test]
fn paris_spring_forward_gap() {
    // 02:30 does not exist on 2026-03-29: it fires at the jump, 03:00 CEST.
    assert_eq!(
        ticks("TZ=Europe/Paris 30 2 * * *", "2026-03-28T00:00:00Z", 3),
        [
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z"
        ]
    );
    // Hourly: 02:00 is skipped and 03:00 CEST is the jump itself, one tick.
    assert_eq!(
        ticks("TZ=Europe/Paris 0 * * * *", "2026-03-28T22:30:00Z", 4),
        [
            "2026-03-28T23:00:00Z",
            "2026-03-29T00:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z"
        ]
    );
    // Every gap time collapses into the one tick at the jump.
    assert_eq!(
        ticks("TZ=Europe/Paris */15 2 * * *", "2026-03-28T01:40:00Z", 3),
        [
            "2026-03-28T01:45:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:00:00Z"
        ]
    );
    assert_eq!(
        ticks("TZ=Europe/Paris 0 2,3 * * *", "2026-03-29T00:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-30T01:00:00Z"
        ]
    );
    // Elapsed time keeps its rhythm across the jump.
    assert_eq!(
        ticks("TZ=Europe/Paris */15 * * * *", "2026-03-29T00:30:00Z", 3),
        [
            "2026-03-29T00:45:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:15:00Z"
        ]
    );
    // Asked from the jump itself, the gap tick is not repeated.
    assert_eq!(
        next("TZ=Europe/Paris 30 2 * * *", "2026-03-29T01:00:00Z").unwrap(),
        "2026-03-30T00:30:00Z"
    );
    assert_eq!(
        next("TZ=Europe/Paris 30 2 * * *", "2026-03-29T00:59:59.9Z").unwrap(),
        "2026-03-29T01:00:00Z"
    );
}

#[test]
fn paris_fall_back_fold() {
    // 02:30 happens twice on 2026-10-25 (CEST then CET): it fires once.
    assert_eq!(
        ticks("TZ=Europe/Paris 30 2 * * *", "2026-10-24T00:00:00Z", 3),
        [
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z"
        ]
    );
    // Asked from inside the second pass, it waits for the next day.
    assert_eq!(
        next("TZ=Europe/Paris 30 2 * * *", "2026-10-25T01:10:00Z").unwrap(),
        "2026-10-26T01:30:00Z"
    );
    assert_eq!(
        ticks("TZ=Europe/Paris */15 2 * * *", "2026-10-24T23:50:00Z", 5),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:15:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:45:00Z",
            "2026-10-26T01:00:00Z"
        ]
    );
    // With every hour allowed, both passes fire: 02:00 local at 00:00 and
    // 01:00 UTC.
    assert_eq!(
        ticks("TZ=Europe/Paris 0 * * * *", "2026-10-24T22:30:00Z", 5),
        [
            "2026-10-24T23:00:00Z",
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z",
            "2026-10-25T03:00:00Z"
        ]
    );
    assert_eq!(
        ticks("TZ=Europe/Paris */15 * * * *", "2026-10-25T00:30:00Z", 6),
        [
            "2026-10-25T00:45:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:15:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T01:45:00Z",
            "2026-10-25T02:00:00Z"
        ]
    );
    assert_eq!(
        next("TZ=Europe/Paris 30 * * * *", "2026-10-25T01:10:00Z").unwrap(),
        "2026-10-25T01:30:00Z"
    );
}

#[test]
fn new_york() {
    // Spring forward Sun 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); fall
    // back Sun 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC).
    assert_eq!(
        ticks("TZ=America/New_York 30 2 * * *", "2026-03-07T12:00:00Z", 2),
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
    assert_eq!(
        ticks(
            "CRON_TZ=America/New_York 30 1 * * *",
            "2026-10-31T12:00:00Z",
            2
        ),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    assert_eq!(
        ticks(
            "TZ=America/New_York 0 9 * * MON-FRI",
            "2026-03-06T00:00:00Z",
            2
        ),
        ["2026-03-06T14:00:00Z", "2026-03-09T13:00:00Z"]
    );
}

#[test]
fn zones_without_daylight_saving() {
    assert_eq!(
        next("TZ=Asia/Tokyo 0 9 * * *", "2026-06-01T00:00:00Z").unwrap(),
        "2026-06-02T00:00:00Z"
    );
    assert_eq!(
        next("TZ=UTC 0 9 * * *", "2026-06-01T00:00:00Z").unwrap(),
        "2026-06-01T09:00:00Z"
    );
    assert_eq!(
        next("TZ=Asia/Kolkata 0 0 * * *", "2026-06-01T00:00:00Z").unwrap(),
        "2026-06-01T18:30:00Z"
    );
}

/// A schedule and a test of a local wall-clock time, written by hand.
type Case = (&'static str, fn(jiff::civil::DateTime) -> bool);

/// The ticks of `matches` in `zone` within `[from, to)`, found by checking
/// every wall-clock minute with jiff's own gap and fold answers.
fn brute_force(
    zone: &TimeZone,
    matches: fn(jiff::civil::DateTime) -> bool,
    all_hours: bool,
    from: i64,
    to: i64,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut wall = (from - 2 * 86_400).div_euclid(60) * 60;
    while wall < to + 2 * 86_400 {
        let dt = Offset::UTC.to_datetime(Timestamp::from_second(wall).unwrap());
        if matches(dt) {
            match zone.to_ambiguous_timestamp(dt).offset() {
                AmbiguousOffset::Unambiguous { offset } => {
                    found.push(wall - i64::from(offset.seconds()))
                }
                AmbiguousOffset::Gap { after, .. } => {
                    let before_gap =
                        Timestamp::from_second(wall - i64::from(after.seconds())).unwrap();
                    let jump = zone.following(before_gap).next().unwrap().timestamp();
                    found.push(jump.as_second());
                }
                AmbiguousOffset::Fold { before, after } => {
                    found.push(wall - i64::from(before.seconds()));
                    if all_hours {
                        found.push(wall - i64::from(after.seconds()));
                    }
                }
            }
        }
        wall += 60;
    }
    found.sort();
    found.dedup();
    found.retain(|&t| t > from && t < to);
    found
        .into_iter()
        .map(|t| Timestamp::from_second(t).unwrap().to_string())
        .collect()
}

#[test]
fn agrees_with_a_brute_force_search_around_transitions() {
    let cases: [Case; 8] = [
        ("*/15 * * * *", |dt| dt.minute() % 15 == 0),
        ("30 2 * * *", |dt| dt.hour() == 2 && dt.minute() == 30),
        ("0 1-3 * * *", |dt| {
            (1..=3).contains(&dt.hour()) && dt.minute() == 0
        }),
        ("*/20 2-3 * * *", |dt| {
            (2..=3).contains(&dt.hour()) && dt.minute() % 20 == 0
        }),
        ("0 * * * *", |dt| dt.minute() == 0),
        ("45 1 * * *", |dt| dt.hour() == 1 && dt.minute() == 45),
        ("0,30 0-23 * * SUN", |dt| {
            dt.minute() % 30 == 0 && dt.weekday() == jiff::civil::Weekday::Sunday
        }),
        ("10 2 1,4,5,8,25,29 * *", |dt| {
            dt.hour() == 2 && dt.minute() == 10 && [1, 4, 5, 8, 25, 29].contains(&dt.day())
        }),
    ];
    let windows = [
        (
            "Europe/Paris",
            "2026-03-28T00:00:00Z",
            "2026-03-31T00:00:00Z",
        ),
        (
            "Europe/Paris",
            "2026-10-24T00:00:00Z",
            "2026-10-27T00:00:00Z",
        ),
        (
            "America/New_York",
            "2026-03-07T00:00:00Z",
            "2026-03-10T00:00:00Z",
        ),
        (
            "America/New_York",
            "2026-10-31T00:00:00Z",
            "2026-11-03T00:00:00Z",
        ),
        // A 30-minute change: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April.
        (
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            "2026-10-06T00:00:00Z",
        ),
        (
            "Australia/Lord_Howe",
            "2026-04-03T00:00:00Z",
            "2026-04-07T00:00:00Z",
        ),
    ];
    for (name, from, to) in windows {
        let zone = TimeZone::get(name).unwrap();
        let (from_s, to_s) = (
            from.parse::<Timestamp>().unwrap().as_second(),
            to.parse::<Timestamp>().unwrap().as_second(),
        );
        for (expr, matches) in cases {
            let all_hours = expr
                .split(' ')
                .nth(1)
                .is_some_and(|h| h == "*" || h == "0-23");
            let expected = brute_force(&zone, matches, all_hours, from_s, to_s);
            let schedule = Schedule::parse(&format!("TZ={name} {expr}")).unwrap();
            let mut got = Vec::new();
            let mut after = at(from);
            while let Some(next) = schedule.next_after(after).filter(|&n| n < at(to)) {
                got.push(show(next));
                after = next;
            }
            assert!(!expected.is_empty(), "{name} {expr}");
            assert_eq!(got, expected, "{name} {expr} from {from}");
        }
    }
}
