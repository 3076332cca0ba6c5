//! Parsing an expression into a time zone and [`Fields`].

use jiff::tz::TimeZone;

use crate::error::ParseError;
use crate::fields::Fields;

/// The help shown with a wrong number of fields.
const EXAMPLE_HELP: &str = "for example `0 9 * * MON-FRI` fires at 09:00 on weekdays, \
     and `*/10 * * * * *` every 10 seconds";

/// The help shown with a bad time zone.
const ZONE_HELP: &str = "use an IANA name such as `Europe/Paris` or `UTC`";

/// An expression, parsed.
pub(crate) struct Parsed {
    /// The zone name as given after `TZ=` and the zone.
    pub(crate) zone: Option<(String, TimeZone)>,
    /// What the fields allow.
    pub(crate) fields: Fields,
}

/// How one field reads its values.
struct Spec {
    /// The field's name in messages.
    name: &'static str,
    /// The smallest value.
    min: u32,
    /// The largest value (7 for day-of-week, folded onto Sunday after).
    max: u32,
    /// Names for values, the first standing for `min`.
    names: &'static [&'static str],
    /// Whether `?` stands for `*`.
    question: bool,
}

const SECOND: Spec = Spec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    question: false,
};
const MINUTE: Spec = Spec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    question: false,
};
const HOUR: Spec = Spec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    question: false,
};
const DAY_OF_MONTH: Spec = Spec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    question: true,
};
const MONTH: Spec = Spec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    question: false,
};
const DAY_OF_WEEK: Spec = Spec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    question: true,
};

impl Spec {
    /// "0–59", "1–12 or `JAN`–`DEC`"…
    fn expected(&self) -> String {
        match (self.names.first(), self.names.last()) {
            (Some(first), Some(last)) => {
                format!("{}–{} or `{first}`–`{last}`", self.min, self.max)
            }
            _ => format!("{}–{}", self.min, self.max),
        }
    }

    /// The error for an item that is not a value, range or step at all.
    fn invalid(&self, item: &str) -> ParseError {
        let names = if self.names.is_empty() {
            ""
        } else {
            " or a name"
        };
        let error = ParseError::new(format!(
            "the {} field has an invalid value `{item}`: expected a number{names}, \
             a range `a-b`, a step `*/n` or `a-b/n`, a list `a,b`, or `*`",
            self.name
        ));
        if self.question && item.contains(['L', 'l', 'W', 'w', '#']) {
            error.with_help("the `L`, `W` and `#` extensions are not supported")
        } else {
            error
        }
    }

    /// One value: a number or a name.
    fn value(&self, text: &str) -> Result<u32, ParseError> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let value = text
                .parse::<u32>()
                .ok()
                .filter(|v| (self.min..=self.max).contains(v));
            return value.ok_or_else(|| {
                let error = ParseError::new(format!(
                    "the {} field `{text}` is out of range: expected {}",
                    self.name,
                    self.expected()
                ));
                match self.name {
                    "day-of-week" => error.with_help("0 and 7 both mean Sunday"),
                    "hour" => error.with_help("midnight is hour 0"),
                    _ => error,
                }
            });
        }
        if !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_alphabetic())
            && !self.names.is_empty()
        {
            let index = self.names.iter().position(|n| n.eq_ignore_ascii_case(text));
            return match index {
                Some(i) => Ok(self.min + i as u32),
                None => Err(ParseError::new(format!(
                    "the {} field has an unknown name `{text}`: expected {}",
                    self.name,
                    self.expected()
                ))),
            };
        }
        Err(self.invalid(text))
    }

    /// One list item: `*`, a value, a range, each with an optional step.
    fn item(&self, item: &str, field: &str) -> Result<u64, ParseError> {
        if item.is_empty() {
            return Err(ParseError::new(format!(
                "the {} field has an empty list item in `{field}`",
                self.name
            ))
            .with_help("remove the extra comma"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(self.step(step, item)?)),
            None => (item, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if range == "?" && !self.question {
                return Err(self.question_error());
            }
            (self.min, if self.max == 7 { 6 } else { self.max })
        } else if let Some((a, b)) = range.split_once('-') {
            if a.is_empty() || b.is_empty() || b.contains('-') {
                return Err(ParseError::new(format!(
                    "the {} field has an invalid range `{item}`: expected `a-b` with a ≤ b",
                    self.name
                )));
            }
            let (lo, hi) = (self.value(a)?, self.value(b)?);
            if lo > hi {
                return Err(ParseError::new(format!(
                    "the {} field has a reversed range `{range}`: its start is after its end",
                    self.name
                ))
                .with_help("a range cannot wrap around: swap its ends, or split it in two, as in `a-max,min-b`"));
            }
            (lo, hi)
        } else {
            let value = self.value(range)?;
            (value, if step.is_some() { self.max } else { value })
        };
        let mut mask = 0;
        for value in (lo..=hi).step_by(step.unwrap_or(1) as usize) {
            mask |= 1 << value;
        }
        Ok(mask)
    }

    /// The step after `/` in `item`.
    fn step(&self, text: &str, item: &str) -> Result<u32, ParseError> {
        let span = self.max - self.min + 1;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::new(format!(
                "the {} field has an invalid step `{text}` in `{item}`: expected a number 1–{span}",
                self.name
            )));
        }
        match text.parse::<u32>() {
            Ok(0) => Err(ParseError::new(format!(
                "the {} field has a step of zero in `{item}`",
                self.name
            ))
            .with_help("a step must be 1 or more, as in `*/5`")),
            Ok(step) if step <= span => Ok(step),
            _ => Err(ParseError::new(format!(
                "the {} field step `{text}` in `{item}` is out of range: expected 1–{span}",
                self.name
            ))
            .with_help(
                "a step counts within its own field and cannot carry over into the next one",
            )),
        }
    }

    /// The error for `?` outside the day fields.
    fn question_error(&self) -> ParseError {
        ParseError::new(format!(
            "`?` is only allowed in the day-of-month and day-of-week fields, not in the {} field",
            self.name
        ))
        .with_help("use `*` for any value")
    }

    /// A whole field: a comma-separated list. Returns the mask and whether
    /// the field was `*` or `?`.
    fn field(&self, field: &str) -> Result<(u64, bool), ParseError> {
        let any = field == "*" || (self.question && field == "?");
        let mut mask = 0u64;
        for item in field.split(',') {
            mask |= self.item(item, field)?;
        }
        if self.max == 7 && mask & (1 << 7) != 0 {
            mask = (mask & !(1 << 7)) | 1;
        }
        Ok((mask, any))
    }
}

/// Parses a whole expression.
pub(crate) fn parse(expr: &str) -> Result<Parsed, ParseError> {
    let mut tokens: Vec<&str> = expr.split_whitespace().collect();
    let Some(&first) = tokens.first() else {
        return Err(ParseError::new("the cron expression is empty").with_help(EXAMPLE_HELP));
    };
    let prefix = ["TZ=", "CRON_TZ="]
        .into_iter()
        .find_map(|p| first.strip_prefix(p).map(|name| (p, name)));
    let zone = match prefix {
        Some((prefix, name)) => {
            if name.is_empty() {
                return Err(
                    ParseError::new(format!("the time zone after `{prefix}` is empty"))
                        .with_help(ZONE_HELP),
                );
            }
            let Ok(zone) = TimeZone::get(name) else {
                return Err(
                    ParseError::new(format!("unknown time zone `{name}`")).with_help(ZONE_HELP)
                );
            };
            tokens.remove(0);
            if tokens.is_empty() {
                return Err(ParseError::new(format!(
                    "the cron expression has no fields after `{first}`"
                ))
                .with_help(format!(
                    "for example `{first} 0 9 * * MON-FRI` fires at 09:00 on weekdays"
                )));
            }
            Some((name.to_owned(), zone))
        }
        None => None,
    };
    let fields = match tokens.as_slice() {
        &[alias, ref rest @ ..] if alias.starts_with('@') => {
            let fields = alias_fields(alias)?;
            if let Some(extra) = rest.first() {
                return Err(ParseError::new(format!(
                    "unexpected `{extra}` after `{alias}`: an alias stands for all the fields"
                )));
            }
            fields
        }
        &[minute, hour, dom, month, dow] => build_fields(["0", minute, hour, dom, month, dow])?,
        &[second, minute, hour, dom, month, dow] => {
            build_fields([second, minute, hour, dom, month, dow])?
        }
        other => {
            let count = other.len();
            let plural = if count == 1 { "" } else { "s" };
            return Err(ParseError::new(format!(
                "the cron expression has {count} field{plural}: expected 5 \
                 (`minute hour day-of-month month day-of-week`) or 6 \
                 (`second minute hour day-of-month month day-of-week`)"
            ))
            .with_help(EXAMPLE_HELP));
        }
    };
    Ok(Parsed { zone, fields })
}

/// The fields from their texts, seconds first.
fn build_fields([second, minute, hour, dom, month, dow]: [&str; 6]) -> Result<Fields, ParseError> {
    let (days_of_month, dom_any) = DAY_OF_MONTH.field(dom)?;
    let (days_of_week, dow_any) = DAY_OF_WEEK.field(dow)?;
    Ok(Fields {
        seconds: SECOND.field(second)?.0,
        minutes: MINUTE.field(minute)?.0,
        hours: HOUR.field(hour)?.0,
        days_of_month,
        months: MONTH.field(month)?.0,
        days_of_week,
        dom_any,
        dow_any,
    })
}

/// The fields an `@` alias stands for.
fn alias_fields(alias: &str) -> Result<Fields, ParseError> {
    let fields = match alias.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => ["0", "0", "0", "1", "1", "*"],
        "@monthly" => ["0", "0", "0", "1", "*", "*"],
        "@weekly" => ["0", "0", "0", "*", "*", "0"],
        "@daily" | "@midnight" => ["0", "0", "0", "*", "*", "*"],
        "@hourly" => ["0", "0", "*", "*", "*", "*"],
        "@reboot" => {
            return Err(ParseError::new("`@reboot` is not supported").with_help(
                "schedules fire at clock times only; to run something when the app starts, \
                 call it from the app's startup code",
            ))
        }
        _ => {
            return Err(ParseError::new(format!(
                "unknown alias `{alias}`: expected `@yearly`, `@annually`, `@monthly`, \
                 `@weekly`, `@daily`, `@midnight` or `@hourly`"
            )))
        }
    };
    build_fields(fields)
}
