//! A run's row id is its **position**: `ms << 12 | sequence`, taken in order by the writer
//! as it stores runs, and its run id is the position written as a UUIDv7 (the position's
//! ms as the timestamp, its sequence as the 12 bits after the version, 62 random bits).
//! So the table itself finds a run by its id and walks runs in run id order, and an
//! event's runs are the positions its row records (`first_run`, `runs`): no index by run
//! id or by event for any run stored since (the two cost about a fifth of the store's
//! throughput, `bench --only sqlite`).
//!
//! Runs stored before positions (row ids below [`LEGACY`]) keep those indexes, now
//! partial; a replayed run, stored long after its event's runs, is found by its event
//! through the same partial index.

use super::*;

/// Row ids below this are runs stored before positions (`2^50`; positions start at about
/// `2^52`, the ms of 1970 + 34 years shifted by 12 bits).
pub(crate) const LEGACY: i64 = 1 << 50;

/// The condition of the partial index by event: runs found by event through it.
pub(crate) const BY_EVENT: &str = "(id < 1125899906842624 OR replay_of IS NOT NULL)";

/// Bits of a position below its ms.
const SEQ_BITS: u32 = 12;

/// The next position to take: at least the last one taken plus one, and at least the
/// clock's ms shifted.
#[derive(Debug)]
pub(super) struct Positions {
    next: std::cell::Cell<i64>,
}

impl Positions {
    /// Before the database is read.
    pub(super) fn empty() -> Self {
        Positions {
            next: std::cell::Cell::new(0),
        }
    }

    /// Positions after every row id of `conn`'s runs.
    pub(super) fn after(conn: &Connection) -> rusqlite::Result<Self> {
        let max: Option<i64> =
            conn.query_row("SELECT max(id) FROM fanfare_runs", [], |r| r.get(0))?;
        Ok(Positions {
            next: std::cell::Cell::new(max.map_or(0, |m| m + 1)),
        })
    }

    /// Takes `n` consecutive positions at `now_ms` or after; returns the first.
    pub(super) fn take(&self, now_ms: u64, n: usize) -> i64 {
        let first = self.next.get().max((now_ms as i64) << SEQ_BITS);
        self.next.set(first + n as i64);
        first
    }
}

/// The run id of the run at `position`.
pub(super) fn run_id(position: i64) -> RunId {
    let p = position as u64;
    let ms = p >> SEQ_BITS;
    let seq = p & ((1 << SEQ_BITS) - 1);
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (seq >> 8) as u8;
    b[7] = seq as u8;
    b[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    b[8] = 0x80 | (b[8] & 0x3f);
    RunId::from_uuid(Uuid::from_bytes(b))
}

/// The first 8 bytes of a run id, as a number: the position's order.
fn head(run: &RunId) -> u64 {
    (run.as_uuid().as_u128() >> 64) as u64
}

/// The lowest position whose run ids can be `>= run` (for any run id, not only ours):
/// the position of a run id of ours.
pub(crate) fn at_least(run: &RunId) -> i64 {
    let h = head(run);
    let (ms, low) = (h >> 16, h & 0xffff);
    let p = match low {
        ..0x7000 => ms << SEQ_BITS,
        0x7000..=0x7fff => ms << SEQ_BITS | (low - 0x7000),
        _ => (ms + 1) << SEQ_BITS,
    };
    p as i64
}

/// The highest position whose run ids can be `< run`.
pub(crate) fn at_most(run: &RunId) -> i64 {
    let h = head(run);
    let (ms, low) = (h >> 16, h & 0xffff);
    let p = match low {
        ..0x7000 => (ms << SEQ_BITS).wrapping_sub(1),
        0x7000..=0x7fff => ms << SEQ_BITS | (low - 0x7000),
        _ => ms << SEQ_BITS | ((1 << SEQ_BITS) - 1),
    };
    p as i64
}

/// The condition selecting the run whose id is `?1` (at position `?2`, if it is ours):
/// through the table, or the partial index of runs stored before positions.
pub(crate) const BY_RUN_ID: &str = "run_id = ?1 AND id IN (?2, \
    (SELECT id FROM fanfare_runs WHERE run_id = ?1 AND id < 1125899906842624))";

/// The positions event `:event`'s row records for its runs.
pub(crate) const EVENT_RANGE: &str =
    "id >= (SELECT first_run FROM fanfare_events WHERE id = :event) \
    AND id < (SELECT first_run + runs FROM fanfare_events WHERE id = :event)";

/// The runs of event `:event`, as `select` reads them: the positions its row records, and
/// those the index by event holds. `select` ends where a condition follows
/// (`SELECT … FROM fanfare_runs WHERE`, or `… WHERE x AND`).
pub(crate) fn of_event(select: &str) -> String {
    format!(
        "{select} {EVENT_RANGE} AND event_id = :event \
         UNION ALL {select} event_id = :event AND {BY_EVENT}"
    )
}

/// The parameters of [`BY_RUN_ID`]: the run id, its position.
pub(super) fn by_run_id(run: &RunId) -> ([u8; 16], i64) {
    (*run.as_uuid().as_bytes(), at_least(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_follow_positions_and_give_them_back() {
        let ms = 1_800_000_000_000u64;
        let positions = Positions::empty();
        let first = positions.take(ms, 4095);
        assert_eq!(first, (ms as i64) << 12);
        // The sequence runs over into the next ms, and the clock going back changes nothing.
        let next = positions.take(ms - 5, 3);
        assert_eq!(next, first + 4095);
        let ids: Vec<RunId> = (first..next + 3).map(run_id).collect();
        for (i, id) in ids.iter().enumerate() {
            let p = first + i as i64;
            assert_eq!(id.as_uuid().get_version_num(), 7);
            assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.created_ms(), (p >> 12) as u64);
            assert_eq!(at_least(id), p);
            assert_eq!(at_most(id), p);
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "run ids in position order"
        );
    }

    #[test]
    fn statements_name_the_legacy_bound() {
        let bound = format!("id < {LEGACY}");
        let migration = super::super::MIGRATIONS.last().expect("migrations");
        for sql in [BY_EVENT, BY_RUN_ID, migration] {
            assert!(sql.contains(&bound), "{sql}");
        }
        // Positions of today are far above it.
        assert!(Positions::empty().take(crate::event::now_millis(), 1) > 4 * LEGACY);
    }

    #[test]
    fn bounds_hold_for_any_run_id() {
        // A run id of ours at position p is >= x exactly when p >= at_least(x) (and the
        // random tail decides at p == at_least(x)); < x exactly when p <= at_most(x).
        for _ in 0..10_000 {
            // Any id, or one of ours (version 7, sequence at its edges or between).
            let mut x = Uuid::from_u128(fastrand::u128(..) >> 20).into_bytes();
            if fastrand::bool() {
                x[6] = 0x70 | (x[6] & [0, 0x0f][fastrand::usize(..2)]);
            }
            let x = RunId::from_uuid(Uuid::from_bytes(x));
            let near = if fastrand::bool() {
                at_least(&x)
            } else {
                at_most(&x)
            };
            let p = (near + fastrand::i64(-2..=2)).max(0);
            let ours = run_id(p);
            if ours >= x {
                assert!(p >= at_least(&x), "{ours} >= {x}");
            }
            if p > at_least(&x) {
                assert!(ours >= x);
            }
            if ours < x {
                assert!(p <= at_most(&x), "{ours} < {x}");
            }
            if p < at_most(&x) {
                assert!(ours < x);
            }
        }
    }
}
