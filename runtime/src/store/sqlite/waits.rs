//! `ctx.wait_for_event`: resolved at once (a stored step, the lookback, a deadline) or
//! registered for the sends that match it.

use super::*;

impl Ctx<'_> {
    pub(super) fn wait(&self, tx: &Connection, key: RunKey, spec: WaitSpec) -> Result<WaitState> {
        let err = self.err("cannot register a wait");
        let run = key as i64;
        let done: Option<String> = tx
            .prepare_cached("SELECT output FROM fanfare_steps WHERE run = ?1 AND seq = ?2")
            .and_then(|mut s| s.query_row(params![run, spec.seq], |r| r.get(0)).optional())
            .map_err(&err)?;
        if let Some(output) = done {
            return Ok(WaitState::Resolved(output));
        }
        let pending: Option<i64> = tx
            .prepare_cached("SELECT deadline FROM fanfare_waits WHERE run = ?1 AND seq = ?2")
            .and_then(|mut s| s.query_row(params![run, spec.seq], |r| r.get(0)).optional())
            .map_err(&err)?;
        let now = self.now;
        if let Some(deadline) = pending {
            if (now as i64) < deadline {
                return Ok(WaitState::Pending(deadline as u64));
            }
            self.resolve(tx, run, &spec, "null".into())?;
            return Ok(WaitState::Resolved("null".into()));
        }
        // The lookback: the event itself when its id is known, otherwise every event of
        // the name sent since `since_ms`, earliest first.
        let candidates: Vec<String> = match spec.event_id {
            Some(id) => tx
                .prepare_cached("SELECT data FROM fanfare_events WHERE id = ?1 AND name = ?2")
                .and_then(|mut s| {
                    s.query_map(params![id.as_uuid().as_bytes(), spec.event], |r| r.get(0))?
                        .collect()
                }),
            None => tx
                .prepare_cached(
                    "SELECT data FROM fanfare_events WHERE name = ?1 AND ts >= ?2 ORDER BY ts",
                )
                .and_then(|mut s| {
                    s.query_map(params![spec.event, spec.since_ms as i64], |r| r.get(0))?
                        .collect()
                }),
        }
        .map_err(&err)?;
        if let Some(data) = candidates.into_iter().find(|d| spec.matches(d)) {
            self.resolve(tx, run, &spec, data.clone())?;
            return Ok(WaitState::Resolved(data));
        }
        if now >= spec.deadline_ms {
            self.resolve(tx, run, &spec, "null".into())?;
            return Ok(WaitState::Resolved("null".into()));
        }
        let (field, value) = match &spec.matching {
            Some((f, v)) => (Some(f.clone()), Some(v.to_string())),
            None => (None, None),
        };
        if let Some(field) = &field {
            // Sends look up waits by each field some wait of the event matches on.
            tx.prepare_cached(
                "INSERT OR IGNORE INTO fanfare_wait_fields (event, field) VALUES (?1, ?2)",
            )
            .and_then(|mut s| s.execute(params![spec.event, field]))
            .map_err(&err)?;
        }
        self.waits.set(Some(true));
        tx.prepare_cached(
            "INSERT INTO fanfare_waits (run, seq, step_id, event, field, value, deadline) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                run,
                spec.seq,
                spec.step_id,
                spec.event,
                field,
                value,
                spec.deadline_ms as i64
            ])
        })
        .map_err(&err)?;
        Ok(WaitState::Pending(spec.deadline_ms))
    }

    /// Ends a wait with `output` (the event's data, or `null`) and makes the run due.
    pub(super) fn resolve(
        &self,
        tx: &Connection,
        run: i64,
        spec: &WaitSpec,
        output: String,
    ) -> Result<()> {
        let err = self.err("cannot resolve a wait");
        tx.prepare_cached("DELETE FROM fanfare_waits WHERE run = ?1 AND seq = ?2")
            .and_then(|mut s| s.execute(params![run, spec.seq]))
            .map_err(&err)?;
        let now = self.now;
        self.save_step(
            tx,
            run as RunKey,
            StepRecord {
                seq: spec.seq,
                id: spec.step_id.clone(),
                output,
                started_ms: now,
                completed_ms: now,
            },
        )?;
        tx.prepare_cached(
            "UPDATE fanfare_runs SET due_at = ?2, waiting = 0 WHERE id = ?1 AND status = 0 AND waiting = 1",
        )
        .and_then(|mut s| s.execute(params![run, now as i64]))
        .map_err(&err)?;
        Ok(())
    }
}
