//! The next tick: matching wall-clock times turned into instants, with the
//! daylight-saving rules documented on [`Schedule`](crate::Schedule).
//!
//! Instants are Unix seconds; wall-clock times are local seconds (see
//! `fields.rs`). Between two transitions of a zone the offset is constant,
//! so each such segment is searched as one stretch of wall-clock time;
//! the rules only matter at a segment's start:
//! - after a forward transition at `T` (offset `p` to `o`, `o > p`), the
//!   wall-clock times `[T + p, T + o)` do not exist and fire once, at `T`;
//! - after a backward transition at `T` (`o < p`), the wall-clock times
//!   `[T + o, T + p)` come round a second time and fire again only when the
//!   hour field allows all 24 hours.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::fields::{Fields, DAY};

/// How far past `after` the search goes before giving up: 10 years, so a
/// Feb 29 schedule still finds its tick across a non-leap century year
/// (2096 to 2104).
const HORIZON: i64 = 3_660 * DAY;

/// The first tick strictly after the instant `after` (Unix seconds,
/// already rounded down to a whole second), as Unix seconds.
pub(crate) fn next_after(fields: &Fields, zone: Option<&TimeZone>, after: i64) -> Option<i64> {
    let min = Timestamp::MIN.as_second();
    let max = Timestamp::MAX.as_second();
    let start = after.checked_add(1).filter(|t| (min..=max).contains(t))?;
    // The last instant searched.
    let limit = start.saturating_add(HORIZON).min(max - DAY);
    let Some(zone) = zone else {
        return fields.next_match(start, limit + 1);
    };
    let offset_at = |t: i64| {
        Some(i64::from(
            zone.to_offset(Timestamp::from_second(t).ok()?).seconds(),
        ))
    };

    let mut t = start;
    let mut offset = offset_at(t)?;
    // The transition that began the current segment, at or before `t`, and
    // the offset before it.
    let mut began = match zone.preceding(Timestamp::from_second(t + 1).ok()?).next() {
        Some(transition) => {
            let at = transition.timestamp().as_second();
            Some((at, offset_at(at - 1)?))
        }
        None => None,
    };
    while t <= limit {
        let next = zone
            .following(Timestamp::from_second(t).ok()?)
            .next()
            .map(|tr| (tr.timestamp().as_second(), i64::from(tr.offset().seconds())));
        let end = next.map_or(limit + 1, |(at, _)| at.min(limit + 1));
        let mut wall = t + offset;
        if let Some((at, before)) = began {
            if t == at && offset > before && fields.next_match(at + before, at + offset).is_some() {
                return Some(at);
            }
            if offset < before && !fields.all_hours() {
                wall = wall.max(at + before);
            }
        }
        if let Some(found) = fields.next_match(wall, end + offset) {
            return Some(found - offset);
        }
        let (at, after_offset) = next?;
        began = Some((at, offset));
        t = at;
        offset = after_offset;
    }
    None
}
