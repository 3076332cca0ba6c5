//! `ctx.wait_for_event`: resolved at once (a stored step, the lookback, a deadline) or
//! registered for the sends that match it.

use super::*;

impl Shared {
    pub(super) async fn wait(&self, run: RunKey, spec: WaitSpec) -> Result<WaitState> {
        let err = |e| self.error("cannot register a wait", e);
        let run = run as i64;
        let seq = spec.seq as i32;
        let now = crate::event::now_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        // Exclusive against sends of this event name (see `insert`).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('fanfare:' || $1))",
            &[&spec.event],
        )
        .await
        .map_err(err)?;
        if let Some(row) = tx
            .query_opt(
                "SELECT output FROM fanfare_steps WHERE run = $1 AND seq = $2",
                &[&run, &seq],
            )
            .await
            .map_err(err)?
        {
            return Ok(WaitState::Resolved(row.get(0)));
        }
        let pending: Option<i64> = tx
            .query_opt(
                "SELECT deadline FROM fanfare_waits WHERE run = $1 AND seq = $2",
                &[&run, &seq],
            )
            .await
            .map_err(err)?
            .map(|row| row.get(0));
        let (field, value) = match &spec.matching {
            Some((f, v)) => (Some(f.clone()), Some(v.to_string())),
            None => (None, None),
        };
        let output = match pending {
            Some(deadline) if (now as i64) < deadline => {
                return Ok(WaitState::Pending(deadline as u64))
            }
            Some(_) => Some("null".to_owned()),
            None => {
                let found = match spec.event_id {
                    Some(id) => tx
                        .query_opt(
                            "SELECT data FROM fanfare_events WHERE id = $1 AND name = $2",
                            &[&id.as_uuid(), &spec.event],
                        )
                        .await
                        .map_err(err)?
                        .filter(|row| spec.matches(row.get::<_, &str>(0))),
                    None => tx
                        .query_opt(
                            "SELECT data FROM fanfare_events WHERE name = $1 AND ts >= $2 \
                             AND ($3::text IS NULL OR (data::jsonb -> $3::text) = $4::text::jsonb) \
                             ORDER BY ts LIMIT 1",
                            &[&spec.event, &(spec.since_ms as i64), &field, &value],
                        )
                        .await
                        .map_err(err)?,
                };
                match found {
                    Some(row) => Some(row.get::<_, String>(0)),
                    None if now >= spec.deadline_ms => Some("null".to_owned()),
                    None => None,
                }
            }
        };
        let state = match output {
            Some(output) => {
                tx.execute(
                    "DELETE FROM fanfare_waits WHERE run = $1 AND seq = $2",
                    &[&run, &seq],
                )
                .await
                .map_err(err)?;
                tx.execute(
                    "WITH s AS (
                         INSERT INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at)
                         VALUES ($1, $2, $3, $4, $5, $5)
                         ON CONFLICT (run, seq) DO NOTHING)
                     UPDATE fanfare_runs SET steps = greatest(steps, $2 + 1) WHERE id = $1",
                    &[&run, &seq, &spec.step_id, &output, &(now as i64)],
                )
                .await
                .map_err(err)?;
                WaitState::Resolved(output)
            }
            None => {
                if let Some(field) = &field {
                    // Sends look up waits by each field some wait of the event matches on.
                    tx.execute(
                        "INSERT INTO fanfare_wait_fields (event, field) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                        &[&spec.event, field],
                    )
                    .await
                    .map_err(err)?;
                }
                tx.execute(
                    "INSERT INTO fanfare_waits (run, seq, step_id, event, field, value, deadline) \
                     VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7)",
                    &[
                        &run,
                        &seq,
                        &spec.step_id,
                        &spec.event,
                        &field,
                        &value,
                        &(spec.deadline_ms as i64),
                    ],
                )
                .await
                .map_err(err)?;
                WaitState::Pending(spec.deadline_ms)
            }
        };
        tx.commit().await.map_err(err)?;
        Ok(state)
    }
}
