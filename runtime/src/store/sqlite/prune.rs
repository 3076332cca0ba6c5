//! The retention (see `store::retention`): one batch of each walk per transaction.

use super::*;

/// Completed (or cancelled, or skipped) runs past the retention cut-off, from a mark, in
/// `(finished_at, id)` order.
pub(crate) const PRUNE_RUNS: &str = "SELECT finished_at, id, event_id FROM fanfare_runs \
    WHERE status IN (2, 5) AND finished_at < ?1 AND (finished_at, id) > (?2, ?3) \
    ORDER BY finished_at, id LIMIT ?4";

/// Failed runs past the failed retention cut-off, from a mark, in `(finished_at, id)`
/// order.
pub(crate) const PRUNE_FAILED: &str = "SELECT finished_at, id, event_id FROM fanfare_runs \
    WHERE status = 3 AND finished_at < ?1 AND (finished_at, id) > (?2, ?3) \
    ORDER BY finished_at, id LIMIT ?4";

/// Whether every run of event `:event` is past its keep: finished, before `:completed`
/// (the retention's cut-off), and a failed one before `:failed` (the failed retention's).
pub(crate) static EXPIRED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT NOT EXISTS ({})",
        position::of_event(
            "SELECT 1 FROM fanfare_runs WHERE (status NOT IN (2, 3, 5) OR finished_at >= :completed \
             OR (status = 3 AND finished_at >= :failed)) AND"
        )
    )
});

/// Deleting an event (`:event`) and what is kept of its runs, made once: the event if
/// no run of it is kept, then its runs' steps, their failed attempts, and the runs.
static DELETE: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
    let runs = position::of_event("SELECT id FROM fanfare_runs WHERE");
    [
        format!(
            "DELETE FROM fanfare_events WHERE id = :event AND NOT EXISTS ({})",
            position::of_event("SELECT 1 FROM fanfare_runs WHERE")
        ),
        format!("DELETE FROM fanfare_steps WHERE run IN ({runs})"),
        format!("DELETE FROM fanfare_attempts WHERE run IN ({runs})"),
        format!("DELETE FROM fanfare_runs WHERE id IN ({runs})"),
    ]
});

/// The last row of a walk's batch: `(finished_at, id)`.
type Walked = (i64, Option<(i64, i64)>);

/// Events past the retention cut-off, from a mark, in `(ts, id)` order.
pub(crate) const PRUNE_EVENTS: &str =
    "SELECT ts, id FROM fanfare_events WHERE ts < ?1 AND (ts, id) > (?2, ?3) \
    ORDER BY ts, id LIMIT ?4";

impl Ctx<'_> {
    /// Applies the retention (see `retention`): one batch of each walk from `marks`, moved
    /// past it; returns whether more history may be waiting.
    pub(super) fn prune(
        &self,
        tx: &Connection,
        retention: Retention,
        marks: &mut Marks,
    ) -> Result<bool> {
        let err = self.err("cannot prune");
        let cutoff = |keep: Duration| {
            self.now
                .saturating_sub(crate::store::sql_millis(keep) as u64) as i64
        };
        let cutoffs = (cutoff(retention.completed), cutoff(retention.failed));
        let runs = self.prune_walk(tx, PRUNE_RUNS, cutoffs, cutoffs.0, marks.run)?;
        let failed = self.prune_walk(tx, PRUNE_FAILED, cutoffs, cutoffs.1, marks.failed)?;
        let cutoff = cutoffs.0;
        let events: Vec<(i64, Vec<u8>)> = tx
            .prepare_cached(PRUNE_EVENTS)
            .and_then(|mut s| {
                s.query_map(
                    params![
                        cutoff,
                        marks.event.0,
                        marks.event.1.as_bytes(),
                        retention::BATCH
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
            })
            .map_err(&err)?;
        tx.prepare_cached(&DELETE[0])
            .and_then(|mut s| {
                for (_, id) in &events {
                    s.execute(rusqlite::named_params! { ":event": id })?;
                }
                Ok(())
            })
            .map_err(&err)?;
        let last_event = match events.last() {
            Some((ts, id)) => Some((*ts, uuid_from(id)?)),
            None => None,
        };
        Ok(marks.advance(runs, failed, (events.len() as i64, last_event)))
    }

    /// One batch of a walk over finished runs (`PRUNE_RUNS` or `PRUNE_FAILED`, read
    /// before `before` from `mark`): deletes each event they belong to whose runs are all
    /// past their keep (`cutoffs`: the retention's, the failed retention's).
    fn prune_walk(
        &self,
        tx: &Connection,
        walk: &str,
        cutoffs: (i64, i64),
        before: i64,
        mark: (i64, i64),
    ) -> Result<Walked> {
        let err = self.err("cannot prune");
        let candidates: Vec<(i64, i64, Vec<u8>)> = tx
            .prepare_cached(walk)
            .and_then(|mut s| {
                s.query_map(params![before, mark.0, mark.1, retention::BATCH], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(&err)?;
        let mut expired = tx.prepare_cached(&EXPIRED).map_err(&err)?;
        let mut seen = std::collections::HashSet::new();
        for (_, _, event) in &candidates {
            if seen.insert(event.as_slice())
                && expired
                    .query_row(
                        rusqlite::named_params! {
                            ":event": event,
                            ":completed": cutoffs.0,
                            ":failed": cutoffs.1
                        },
                        |r| r.get::<_, bool>(0),
                    )
                    .map_err(&err)?
            {
                self.delete_event(tx, event)?;
            }
        }
        Ok((
            candidates.len() as i64,
            candidates.last().map(|(at, id, _)| (*at, *id)),
        ))
    }

    /// Deletes an event with its runs, their steps and their failed attempts.
    pub(super) fn delete_event(&self, tx: &Connection, event: &[u8]) -> Result<()> {
        let err = self.err("cannot prune");
        for sql in &DELETE[1..] {
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(rusqlite::named_params! { ":event": event }))
                .map_err(&err)?;
        }
        tx.prepare_cached("DELETE FROM fanfare_events WHERE id = ?1")
            .and_then(|mut s| s.execute([event]))
            .map_err(&err)?;
        Ok(())
    }
}
