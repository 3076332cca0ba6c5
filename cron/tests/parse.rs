//! Parsing: accepted syntax and the messages of refused expressions.

use fanfare_cron::{ParseError, Schedule};

/// The error `expr` is refused with.
fn error(expr: &str) -> ParseError {
    match Schedule::parse(expr) {
        Ok(schedule) => panic!("`{expr}` parsed: {schedule:?}"),
        Err(error) => error,
    }
}

/// The message `expr` is refused with.
fn message(expr: &str) -> String {
    error(expr).to_string()
}

#[test]
fn accepts_the_documented_syntax() {
    for expr in [
        "* * * * *",
        "0 9 * * MON-FRI",
        "*/2 * * * * *",
        "0,15,30-45/5 */2 1-31 JAN-dec sun,Sat",
        "0 0 ? * 1",
        "0 0 1 * ?",
        "5/10 * * * *",
        "0 0 * * 7",
        "0 0 * * 0-7",
        "  0   0 *  * *  ",
        "0 0 30 2 *",
        "TZ=Europe/Paris 0 9 * * *",
        "CRON_TZ=America/New_York 0 9 * * *",
        "TZ=UTC @daily",
        "@yearly",
        "@ANNUALLY",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ] {
        if let Err(error) = Schedule::parse(expr) {
            panic!("`{expr}` was refused: {error}");
        }
    }
}

#[test]
fn source_and_zone() {
    let schedule = Schedule::parse("TZ=Europe/Paris  30 2 * * *").unwrap();
    assert_eq!(schedule.source(), "TZ=Europe/Paris  30 2 * * *");
    assert_eq!(schedule.zone(), Some("Europe/Paris"));
    let schedule = Schedule::parse("CRON_TZ=Asia/Tokyo @daily").unwrap();
    assert_eq!(schedule.zone(), Some("Asia/Tokyo"));
    let schedule = Schedule::parse("0 9 * * *").unwrap();
    assert_eq!(schedule.source(), "0 9 * * *");
    assert_eq!(schedule.zone(), None);
}

#[test]
fn unknown_and_empty_time_zones() {
    let e = error("TZ=Mars/Olympus 0 9 * * *");
    assert_eq!(e.to_string(), "unknown time zone `Mars/Olympus`");
    assert_eq!(
        e.help(),
        Some("use an IANA name such as `Europe/Paris` or `UTC`")
    );
    assert_eq!(
        message("CRON_TZ=Nowhere @daily"),
        "unknown time zone `Nowhere`"
    );
    assert_eq!(
        message("TZ= 0 9 * * *"),
        "the time zone after `TZ=` is empty"
    );
    assert_eq!(
        message("TZ=Europe/Paris"),
        "the cron expression has no fields after `TZ=Europe/Paris`"
    );
}

#[test]
fn wrong_field_counts() {
    let e = error("* * * *");
    assert_eq!(
        e.to_string(),
        "the cron expression has 4 fields: expected 5 \
         (`minute hour day-of-month month day-of-week`) or 6 \
         (`second minute hour day-of-month month day-of-week`)"
    );
    assert!(e.help().unwrap().contains("`0 9 * * MON-FRI`"));
    assert!(message("* * * * * * *").starts_with("the cron expression has 7 fields: expected 5"));
    assert!(message("*").starts_with("the cron expression has 1 field: expected 5"));
    assert!(message("TZ=UTC * *").starts_with("the cron expression has 2 fields:"));
    let e = error("   ");
    assert_eq!(e.to_string(), "the cron expression is empty");
    assert!(e.help().is_some());
}

#[test]
fn out_of_range_values() {
    assert_eq!(
        message("61 * * * *"),
        "the minute field `61` is out of range: expected 0–59"
    );
    assert_eq!(
        message("60 * * * * *"),
        "the second field `60` is out of range: expected 0–59"
    );
    let e = error("0 24 * * *");
    assert_eq!(
        e.to_string(),
        "the hour field `24` is out of range: expected 0–23"
    );
    assert_eq!(e.help(), Some("midnight is hour 0"));
    assert_eq!(
        message("0 0 0 * *"),
        "the day-of-month field `0` is out of range: expected 1–31"
    );
    assert_eq!(
        message("0 0 32 * *"),
        "the day-of-month field `32` is out of range: expected 1–31"
    );
    assert_eq!(
        message("0 0 * 13 *"),
        "the month field `13` is out of range: expected 1–12 or `JAN`–`DEC`"
    );
    let e = error("0 0 * * 8");
    assert_eq!(
        e.to_string(),
        "the day-of-week field `8` is out of range: expected 0–7 or `SUN`–`SAT`"
    );
    assert_eq!(e.help(), Some("0 and 7 both mean Sunday"));
    assert_eq!(
        message("1-99999999999999999999 * * * *"),
        "the minute field `99999999999999999999` is out of range: expected 0–59"
    );
}

#[test]
fn reversed_ranges() {
    let e = error("0 5-1 * * *");
    assert_eq!(
        e.to_string(),
        "the hour field has a reversed range `5-1`: its start is after its end"
    );
    assert!(e.help().unwrap().contains("cannot wrap around"));
    assert_eq!(
        message("0 0 * * FRI-MON"),
        "the day-of-week field has a reversed range `FRI-MON`: its start is after its end"
    );
    assert_eq!(
        message("30-10/5 * * * *"),
        "the minute field has a reversed range `30-10`: its start is after its end"
    );
}

#[test]
fn bad_steps() {
    let e = error("*/0 * * * *");
    assert_eq!(
        e.to_string(),
        "the minute field has a step of zero in `*/0`"
    );
    assert_eq!(e.help(), Some("a step must be 1 or more, as in `*/5`"));
    assert_eq!(
        message("0 1-5/0 * * *"),
        "the hour field has a step of zero in `1-5/0`"
    );
    assert_eq!(
        message("*/x * * * *"),
        "the minute field has an invalid step `x` in `*/x`: expected a number 1–60"
    );
    assert_eq!(
        message("*/ * * * *"),
        "the minute field has an invalid step `` in `*/`: expected a number 1–60"
    );
    assert_eq!(
        message("*/90 * * * *"),
        "the minute field step `90` in `*/90` is out of range: expected 1–60"
    );
}

#[test]
fn empty_list_items() {
    let e = error("1,,2 * * * *");
    assert_eq!(
        e.to_string(),
        "the minute field has an empty list item in `1,,2`"
    );
    assert_eq!(e.help(), Some("remove the extra comma"));
    assert_eq!(
        message("0 0 * JAN, *"),
        "the month field has an empty list item in `JAN,`"
    );
    assert_eq!(
        message("0 0 * * ,MON"),
        "the day-of-week field has an empty list item in `,MON`"
    );
}

#[test]
fn unknown_names_and_invalid_values() {
    assert_eq!(
        message("0 0 * FOO *"),
        "the month field has an unknown name `FOO`: expected 1–12 or `JAN`–`DEC`"
    );
    assert_eq!(
        message("0 0 * * MON-FUN"),
        "the day-of-week field has an unknown name `FUN`: expected 0–7 or `SUN`–`SAT`"
    );
    assert_eq!(
        message("0 0 * * JAN"),
        "the day-of-week field has an unknown name `JAN`: expected 0–7 or `SUN`–`SAT`"
    );
    assert_eq!(
        message("MON * * * *"),
        "the minute field has an invalid value `MON`: expected a number, a range `a-b`, \
         a step `*/n` or `a-b/n`, a list `a,b`, or `*`"
    );
    assert_eq!(
        message("0 0 * 1x *"),
        "the month field has an invalid value `1x`: expected a number or a name, a range `a-b`, \
         a step `*/n` or `a-b/n`, a list `a,b`, or `*`"
    );
    let e = error("0 0 L * *");
    assert!(e
        .to_string()
        .starts_with("the day-of-month field has an invalid value `L`"));
    assert_eq!(
        e.help(),
        Some("the `L`, `W` and `#` extensions are not supported")
    );
    assert!(message("0 0 * * 1#2").starts_with("the day-of-week field has an invalid value `1#2`"));
    assert_eq!(
        message("-5 * * * *"),
        "the minute field has an invalid range `-5`: expected `a-b` with a ≤ b"
    );
    assert_eq!(
        message("1-2-3 * * * *"),
        "the minute field has an invalid range `1-2-3`: expected `a-b` with a ≤ b"
    );
    let e = error("? * * * *");
    assert_eq!(
        e.to_string(),
        "`?` is only allowed in the day-of-month and day-of-week fields, not in the minute field"
    );
    assert_eq!(e.help(), Some("use `*` for any value"));
}

#[test]
fn aliases_errors() {
    let e = error("@reboot");
    assert_eq!(e.to_string(), "`@reboot` is not supported");
    assert!(e.help().unwrap().contains("startup"));
    assert_eq!(
        message("TZ=Europe/Paris @reboot"),
        "`@reboot` is not supported"
    );
    assert_eq!(
        message("@fortnightly"),
        "unknown alias `@fortnightly`: expected `@yearly`, `@annually`, `@monthly`, \
         `@weekly`, `@daily`, `@midnight` or `@hourly`"
    );
    assert_eq!(
        message("@daily 0"),
        "unexpected `0` after `@daily`: an alias stands for all the fields"
    );
}

#[test]
fn errors_are_lowercase_sentences_without_a_period() {
    for expr in [
        "",
        "* *",
        "TZ=Mars/Olympus * * * * *",
        "61 * * * *",
        "0 5-1 * * *",
        "*/0 * * * *",
        "1,,2 * * * *",
        "0 0 * FOO *",
        "@reboot",
        "@nope",
        "x * * * *",
    ] {
        let text = message(expr);
        let first = text.chars().next().unwrap();
        assert!(!first.is_uppercase(), "{text}");
        assert!(!text.ends_with('.'), "{text}");
    }
}
