//! Outcomes, steps and releases of the runs this process executes.

use super::*;
use std::borrow::Cow;

/// Completes the runs (`rarray` of their row ids) that ended without output.
pub(crate) const COMPLETE: &str = "UPDATE fanfare_runs SET status = 2, sleeping = 0, waiting = 0, \
    output = NULL, finished_at = ?2 WHERE id IN rarray(?1) AND status = 1";

impl Ctx<'_> {
    pub(super) fn record(&self, tx: &Connection, outcomes: &[Outcome]) -> Result<()> {
        let err = self.err("cannot record outcomes");
        let now = self.now as i64;
        // A run marked cancelled while it ran that would run again is cancelled instead.
        let mut mark = tx
            .prepare_cached(
                "SELECT cancel FROM fanfare_runs WHERE id = ?1 AND status = 1 AND cancel IS NOT NULL",
            )
            .map_err(&err)?;
        let mut results = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let marked: Option<String> = if o.result.resumes() {
                mark.query_row([o.key as i64], |r| r.get(0))
                    .optional()
                    .map_err(&err)?
            } else {
                None
            };
            results.push(match marked {
                Some(reason) => Cow::Owned(OutcomeKind::Cancelled(reason)),
                None => Cow::Borrowed(&o.result),
            });
        }
        // Flow control's share: slots for the runs of functions that limit concurrency,
        // batches for those of `batch` functions.
        let flow_of = |o: &Outcome| self.registry.defs[o.function as usize].flow();
        let releasing: Vec<i64> = outcomes
            .iter()
            .filter(|o| flow_of(o).is_some_and(|f| f.limits_concurrency()))
            .map(|o| o.key as i64)
            .collect();
        let batching: Vec<(RunKey, &OutcomeKind)> = outcomes
            .iter()
            .zip(&results)
            .filter(|(o, _)| flow_of(o).is_some_and(|f| f.batch.is_some()))
            .map(|(o, r)| (o.key, r.as_ref()))
            .collect();
        if !releasing.is_empty() {
            self.free_slots(tx, &releasing)?;
        }
        if !batching.is_empty() {
            self.finish_batches(tx, &batching)?;
        }
        // The common outcome, completed without output, is one statement for the batch.
        let mut completed = Vec::new();
        for (outcome, result) in outcomes.iter().zip(&results) {
            let key = outcome.key as i64;
            if let Some(error) = outcome.result.failure() {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO fanfare_attempts (run, attempt, started_at, ended_at, error) \
                     SELECT id, attempts, ?2, ?3, ?4 FROM fanfare_runs WHERE id = ?1 AND status = 1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key,
                        outcome.started_ms as i64,
                        outcome.ended_ms as i64,
                        error
                    ])
                })
                .map_err(&err)?;
            }
            match result.as_ref() {
                OutcomeKind::Completed(output) if output.is_null() => completed.push(key),
                OutcomeKind::Completed(output) => {
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 2, sleeping = 0, waiting = 0, output = ?2, finished_at = ?3 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, output.to_string(), now]))
                    .map_err(&err)?;
                }
                OutcomeKind::Retry { delay, error } => {
                    let due = now + crate::store::sql_millis(*delay);
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 0, sleeping = 0, waiting = 0, due_at = ?2, last_error = ?3 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, due, error]))
                    .map_err(&err)?;
                }
                OutcomeKind::Wait { deadline_ms, .. } => {
                    // Waiting until the deadline, unless the event came in the meantime.
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 0, attempts = attempts - 1, \
                         waiting = EXISTS (SELECT 1 FROM fanfare_waits WHERE run = ?1), \
                         due_at = CASE WHEN EXISTS (SELECT 1 FROM fanfare_waits WHERE run = ?1) \
                                  THEN ?2 ELSE ?3 END \
                         WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, *deadline_ms as i64, now]))
                    .map_err(&err)?;
                }
                OutcomeKind::Sleep { delay } => {
                    let due = now + crate::store::sql_millis(*delay);
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 0, sleeping = 1, due_at = ?2, \
                         attempts = attempts - 1 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, due]))
                    .map_err(&err)?;
                }
                OutcomeKind::Failed(error) => {
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 3, sleeping = 0, waiting = 0, last_error = ?2, finished_at = ?3 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, error, now]))
                    .map_err(&err)?;
                }
                OutcomeKind::Cancelled(reason) => {
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 5, sleeping = 0, waiting = 0, \
                         reason = coalesce(cancel, ?2), cancel = NULL, finished_at = ?3 \
                         WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, reason, now]))
                    .map_err(&err)?;
                    // A wait it registered before it stopped resumes nothing.
                    tx.prepare_cached("DELETE FROM fanfare_waits WHERE run = ?1")
                        .and_then(|mut s| s.execute([key]))
                        .map_err(&err)?;
                }
            }
        }
        if !completed.is_empty() {
            tx.prepare_cached(COMPLETE)
                .and_then(|mut s| s.execute(params![ids(completed), now]))
                .map_err(&err)?;
        }
        Ok(())
    }

    pub(super) fn release(&self, tx: &Connection, keys: Vec<RunKey>) -> Result<()> {
        let err = self.err("cannot release runs");
        let mut s = tx
            .prepare_cached("UPDATE fanfare_runs SET status = 0, attempts = attempts - 1 WHERE id = ?1 AND status = 1")
            .map_err(&err)?;
        for key in keys {
            s.execute([key as i64]).map_err(&err)?;
        }
        Ok(())
    }

    /// Stores a step of a running run, unless the run is marked cancelled.
    pub(super) fn save_running_step(
        &self,
        tx: &Connection,
        run: RunKey,
        step: StepRecord,
    ) -> Result<Saved> {
        let mark: Option<String> = tx
            .prepare_cached("SELECT cancel FROM fanfare_runs WHERE id = ?1")
            .and_then(|mut s| s.query_row([run as i64], |r| r.get(0)).optional())
            .map_err(self.err("cannot store a step"))?
            .flatten();
        match mark {
            Some(reason) => Ok(Saved::Cancelled(reason)),
            None => self.save_step(tx, run, step).map(|()| Saved::Stored),
        }
    }

    pub(super) fn save_step(&self, tx: &Connection, run: RunKey, step: StepRecord) -> Result<()> {
        let err = self.err("cannot store a step");
        tx.prepare_cached(
            "INSERT OR REPLACE INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                run as i64,
                step.seq,
                step.id,
                step.output,
                step.started_ms as i64,
                step.completed_ms as i64
            ])
        })
        .map_err(&err)?;
        tx.prepare_cached("UPDATE fanfare_runs SET steps = max(steps, ?2) WHERE id = ?1")
            .and_then(|mut s| s.execute(params![run as i64, step.seq + 1]))
            .map_err(&err)?;
        Ok(())
    }
}
