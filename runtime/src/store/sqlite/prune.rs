//! The retention (see `store::retention`): one batch of each walk per transaction.

use super::*;

/// Completed (or cancelled) runs past the retention cut-off, from a mark, in
/// `(finished_at, id)` order.
pub(crate) const PRUNE_RUNS: &str = "SELECT finished_at, id, event_id FROM fanfare_runs \
    WHERE status IN (2, 5) AND finished_at < ?1 AND (finished_at, id) > (?2, ?3) \
    ORDER BY finished_at, id LIMIT ?4";

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
        retention: Duration,
        marks: &mut Marks,
    ) -> Result<bool> {
        let err = self.err("cannot prune");
        let cutoff = self.now.saturating_sub(retention.as_millis() as u64) as i64;
        let candidates: Vec<(i64, i64, Vec<u8>)> = tx
            .prepare_cached(PRUNE_RUNS)
            .and_then(|mut s| {
                s.query_map(
                    params![cutoff, marks.run.0, marks.run.1, retention::BATCH],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?
                .collect()
            })
            .map_err(&err)?;
        let mut done = tx
            .prepare_cached(
                "SELECT NOT EXISTS (SELECT 1 FROM fanfare_runs \
                 WHERE event_id = ?1 AND (status NOT IN (2, 5) OR finished_at >= ?2))",
            )
            .map_err(&err)?;
        let mut seen = std::collections::HashSet::new();
        for (_, _, event) in &candidates {
            if seen.insert(event.as_slice())
                && done
                    .query_row(params![event, cutoff], |r| r.get::<_, bool>(0))
                    .map_err(&err)?
            {
                self.delete_event(tx, event)?;
            }
        }
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
        tx.prepare_cached(
            "DELETE FROM fanfare_events WHERE id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM fanfare_runs WHERE event_id = ?1)",
        )
        .and_then(|mut s| {
            for (_, id) in &events {
                s.execute([id])?;
            }
            Ok(())
        })
        .map_err(&err)?;
        let last_event = match events.last() {
            Some((ts, id)) => Some((*ts, uuid_from(id)?)),
            None => None,
        };
        Ok(marks.advance(
            (
                candidates.len() as i64,
                candidates.last().map(|(at, id, _)| (*at, *id)),
            ),
            (events.len() as i64, last_event),
        ))
    }

    /// Deletes an event with its runs and their steps.
    pub(super) fn delete_event(&self, tx: &Connection, event: &[u8]) -> Result<()> {
        let err = self.err("cannot prune");
        tx.prepare_cached(
            "DELETE FROM fanfare_steps WHERE run IN (SELECT id FROM fanfare_runs WHERE event_id = ?1)",
        )
        .and_then(|mut s| s.execute([event]))
        .map_err(&err)?;
        tx.prepare_cached("DELETE FROM fanfare_runs WHERE event_id = ?1")
            .and_then(|mut s| s.execute([event]))
            .map_err(&err)?;
        tx.prepare_cached("DELETE FROM fanfare_events WHERE id = ?1")
            .and_then(|mut s| s.execute([event]))
            .map_err(&err)?;
        Ok(())
    }
}
