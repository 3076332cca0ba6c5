//! Outcomes, steps, releases and lease renewals of the runs this process executes.

use super::*;

/// The outcome code of a cancellation (the status it is stored as).
const CANCEL: i16 = 5;

/// The outcome code of a durable sleep (stored as status 0 with `sleeping`).
const SLEEP: i16 = 6;

/// The outcome code of a wait for an event (stored as status 0 with `waiting`).
const WAIT: i16 = 7;

/// The text of `record!`, for `concat!`: whether outcome `u` cancels run `r`. A run
/// marked cancelled while it ran (`cancel`) that would run again (a retry, a sleep, a
/// wait) is cancelled instead (`OutcomeKind::resumes`).
macro_rules! cancels {
    () => {
        "(u.status = 5 OR (r.cancel IS NOT NULL AND u.status IN (0, 6, 7)))"
    };
}

/// The text of [`RECORD`] and [`RECORD_FAILURES`]: writes the outcomes of attempts (`$1`
/// runs, `$2` codes, `$3` outputs, `$4` errors or cancellation reasons, `$5` delays in ms,
/// `$7` waiting steps) of runs this process (`$6`) still owns (an owned run is running:
/// `fanfare_runs_owned`); a cancelled run's pending wait goes. `$from` names the
/// outcomes' columns, `$returning` what `done` returns, and `$then` the statements after
/// it (`$returning` names `r.id` and `r.status`; `done` returns the mirrored columns
/// too, which `queued` mirrors). Returns the runs recorded, their status, and the time.
macro_rules! record {
    ($from:literal, $returning:literal, $then:literal) => {
        concat!(
            "
WITH done AS (
UPDATE fanfare_runs r SET
    status = CASE WHEN ",
            cancels!(),
            " THEN 5 WHEN u.status IN (6, 7) THEN 0 ELSE u.status END,
    sleeping = u.status = 6 AND r.cancel IS NULL,
    -- A wait is still pending unless a send resolved it meanwhile, which
    -- stored its step: the row is read again after such a concurrent
    -- update, so `r.steps` tells (a subquery would not see it).
    waiting = u.status = 7 AND r.cancel IS NULL AND r.steps <= u.seq,
    attempts = r.attempts - CASE WHEN u.status IN (6, 7) AND r.cancel IS NULL THEN 1 ELSE 0 END,
    output = u.output,
    last_error = CASE WHEN ",
            cancels!(),
            " THEN r.last_error ELSE coalesce(u.error, r.last_error) END,
    reason = CASE WHEN ",
            cancels!(),
            " THEN coalesce(r.cancel, u.error) ELSE r.reason END,
    cancel = CASE WHEN ",
            cancels!(),
            " THEN NULL ELSE r.cancel END,
    due_at = CASE
        WHEN ",
            cancels!(),
            " THEN r.due_at
        WHEN u.status IN (0, 6) THEN fanfare_now() + u.delay
        WHEN u.status = 7 AND r.steps <= u.seq THEN fanfare_now() + u.delay
        WHEN u.status = 7 THEN fanfare_now()
        ELSE r.due_at END,
    finished_at = CASE WHEN ",
            cancels!(),
            " OR u.status IN (2, 3) THEN fanfare_now() END,
    lease_until = NULL,
    owner = NULL
FROM ",
            $from,
            "
WHERE r.id = u.id AND r.owner = $6
RETURNING ",
            $returning,
            ", r.due_at, r.lease_until, r.finished_at),
",
            mirror!("done"),
            ",
-- A cancelled run's pending wait resumes nothing.
waits AS (
    DELETE FROM fanfare_waits WHERE run = ANY(ARRAY(SELECT id FROM done WHERE status = 5)))",
            $then,
            "
SELECT id, status, fanfare_now() FROM done"
        )
    };
}

/// Records a batch of outcomes none of which is a failed attempt (see `record!`).
pub(crate) const RECORD: &str = record!(
    "unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::bigint[], $7::integer[])
    AS u(id, status, output, error, delay, seq)",
    "r.id, r.status",
    ""
);

/// Records a batch with failed attempts (a retry's or a failure's code), each also kept
/// in `fanfare_attempts` with when it started (`$8`) and ended (`$9`): the history of
/// `RunInfo::failed_attempts`. (A batch without one takes [`RECORD`], which writes
/// nothing more.)
pub(crate) const RECORD_FAILURES: &str = record!(
    "unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::bigint[], $7::integer[],
            $8::bigint[], $9::bigint[])
    AS u(id, status, output, error, delay, seq, started, ended)",
    "r.id, r.status, r.attempts, u.status AS code, u.error, u.started, u.ended",
    ",
failures AS (
    INSERT INTO fanfare_attempts (run, attempt, started_at, ended_at, error)
    SELECT id, attempts, started, ended, error FROM done WHERE code IN (0, 3)
    ON CONFLICT (run, attempt) DO UPDATE SET started_at = excluded.started_at,
        ended_at = excluded.ended_at, error = excluded.error)"
);

impl Shared {
    pub(super) async fn record(&self, outcomes: &[Outcome]) -> Result<()> {
        let mut ids = Vec::with_capacity(outcomes.len());
        let mut statuses: Vec<i16> = Vec::with_capacity(outcomes.len());
        let mut outputs: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut errors: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut delays: Vec<i64> = Vec::with_capacity(outcomes.len());
        // For a wait: the waiting step's position (-1 otherwise).
        let mut seqs: Vec<i32> = Vec::with_capacity(outcomes.len());
        let started: Vec<i64> = outcomes.iter().map(|o| o.started_ms as i64).collect();
        let ended: Vec<i64> = outcomes.iter().map(|o| o.ended_ms as i64).collect();
        for o in outcomes {
            seqs.push(match &o.result {
                OutcomeKind::Wait { seq, .. } => *seq as i32,
                _ => -1,
            });
            ids.push(o.key as i64);
            match &o.result {
                OutcomeKind::Cancelled(reason) => {
                    statuses.push(CANCEL);
                    outputs.push(None);
                    errors.push(Some(reason.clone()));
                    delays.push(0);
                }
                OutcomeKind::Completed(output) => {
                    statuses.push(2);
                    outputs.push((!output.is_null()).then(|| output.to_string()));
                    errors.push(None);
                    delays.push(0);
                }
                OutcomeKind::Retry { delay, error } => {
                    statuses.push(0);
                    outputs.push(None);
                    errors.push(Some(error.clone()));
                    delays.push(crate::store::sql_millis(*delay));
                }
                OutcomeKind::Wait { deadline_ms, .. } => {
                    statuses.push(WAIT);
                    outputs.push(None);
                    errors.push(None);
                    delays.push(deadline_ms.saturating_sub(crate::event::now_millis()) as i64);
                }
                OutcomeKind::Sleep { delay } => {
                    statuses.push(SLEEP);
                    outputs.push(None);
                    errors.push(None);
                    delays.push(crate::store::sql_millis(*delay));
                }
                OutcomeKind::Failed(error) => {
                    statuses.push(3);
                    outputs.push(None);
                    errors.push(Some(error.clone()));
                    delays.push(0);
                }
            }
        }
        let err = |e| self.error("cannot record outcomes", e);
        let mut client = self.client().await?;
        let all: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &ids,
            &statuses,
            &outputs,
            &errors,
            &delays,
            &self.owner,
            &seqs,
            &started,
            &ended,
        ];
        let (sql, params) = match outcomes.iter().any(|o| o.result.failure().is_some()) {
            true => (RECORD_FAILURES, &all[..]),
            false => (RECORD, &all[..7]),
        };
        // Flow control's share only for batches with runs of functions that limit
        // concurrency (their slots) or batch (their batch's other runs).
        let (mut releasing, mut batching) = (false, false);
        for o in outcomes {
            if let Some(flow) = self.defs.get(o.function as usize).and_then(|d| d.flow()) {
                releasing |= flow.limits_concurrency();
                batching |= flow.batch.is_some();
            }
        }
        if !releasing && !batching {
            let stmt = client.prepare_cached(sql).await.map_err(err)?;
            client.query(&stmt, params).await.map_err(err)?;
            return Ok(());
        }
        // The runs' concurrency slots are given back in the transaction that records
        // their outcomes: never one without the other.
        let tx = client.transaction().await.map_err(err)?;
        let stmt = tx.prepare_cached(sql).await.map_err(err)?;
        let rows = tx.query(&stmt, params).await.map_err(err)?;
        let now_ms = rows.first().map_or(0, |r| r.get::<_, i64>(2) as u64);
        let recorded: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let promoted = releasing && self.free_slots(&tx, &recorded, now_ms).await?;
        if batching {
            self.finish_batches(&tx, &recorded).await?;
        }
        if promoted {
            tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    pub(super) async fn release(&self, keys: Vec<RunKey>) -> Result<()> {
        let ids: Vec<i64> = keys.into_iter().map(|k| k as i64).collect();
        let client = self.client().await?;
        client
            .execute(
                update_mirrored!(
                    "UPDATE fanfare_runs SET status = 0, attempts = attempts - 1, \
                     lease_until = NULL, owner = NULL WHERE id = ANY($1) AND owner = $2"
                ),
                &[&ids, &self.owner],
            )
            .await
            .map_err(|e| self.error("cannot release runs", e))?;
        Ok(())
    }

    /// Stores a step, unless the run is marked cancelled (by any process): the mark and
    /// the step's row lock the run's row in turn, so a step is never stored after a mark.
    pub(super) async fn save_step(&self, run: RunKey, step: StepRecord) -> Result<Saved> {
        let err = |e| self.error("cannot store a step", e);
        let client = self.client().await?;
        let stored = client
            .execute(
                "WITH r AS (
                     UPDATE fanfare_runs SET steps = greatest(steps, $2 + 1)
                     WHERE id = $1 AND cancel IS NULL RETURNING id)
                 INSERT INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at)
                 SELECT id, $2, $3, $4, $5, $6 FROM r
                 ON CONFLICT (run, seq) DO UPDATE SET step_id = excluded.step_id,
                     output = excluded.output, started_at = excluded.started_at,
                     completed_at = excluded.completed_at",
                &[
                    &(run as i64),
                    &(step.seq as i32),
                    &step.id,
                    &step.output,
                    &(step.started_ms as i64),
                    &(step.completed_ms as i64),
                ],
            )
            .await
            .map_err(err)?;
        if stored > 0 {
            return Ok(Saved::Stored);
        }
        // Marked (the statement's snapshot may predate the mark: read it again).
        let reason = client
            .query_opt(
                "SELECT cancel FROM fanfare_runs WHERE id = $1",
                &[&(run as i64)],
            )
            .await
            .map_err(err)?
            .and_then(|row| row.get::<_, Option<String>>(0));
        Ok(Saved::Cancelled(
            reason.unwrap_or_else(|| "cancelled".to_owned()),
        ))
    }

    /// Renews the leases of runs this process is executing; returns those of them marked
    /// cancelled, with the reasons.
    pub(super) async fn renew(&self, runs: Vec<RunKey>) -> Result<Vec<(RunKey, String)>> {
        let ids: Vec<i64> = runs.into_iter().map(|k| k as i64).collect();
        let rows = self
            .client()
            .await?
            .query(
                concat!(
                    "WITH r AS (
                         UPDATE fanfare_runs SET lease_until = fanfare_now() + $1
                         WHERE id = ANY($2) AND owner = $3 RETURNING cancel, ",
                    mirrored!(""),
                    "),
                     ",
                    mirror_unfinished!("r"),
                    "
                     SELECT id, cancel FROM r WHERE cancel IS NOT NULL"
                ),
                &[&crate::store::sql_millis(self.lease), &ids, &self.owner],
            )
            .await
            .map_err(|e| self.error("cannot renew leases", e))?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, i64>(0) as RunKey, row.get(1)))
            .collect())
    }
}
