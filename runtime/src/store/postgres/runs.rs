//! `Runtime::runs`: the runs of an event, with their steps.

use super::*;
use crate::store::{status_of_code, WaitingFor};

/// What `runs`, `run` and `list` read of a run.
const COLUMNS: &str = "run_id, app, function_id, status, attempts, last_error, output, id, \
    sleeping, waiting, reason, CASE WHEN status = 0 AND NOT sleeping AND NOT waiting \
    AND due_at > fanfare_now() THEN due_at END, flow, event_id, \
    (SELECT name FROM fanfare_events e WHERE e.id = fanfare_runs.event_id), replay_of";

/// How `list` renders a status condition (`StatusWhere`) on `fanfare_runs`: the states
/// with a `list` code (schema migration 13) through it, read by its index.
fn status_sql(code: i16, status: &StatusWhere) -> String {
    let listed = match (code, status.suspension, status.skipped) {
        (3..=5, _, _) => Some(code),
        (0, Some(1), _) => Some(6),
        (0, Some(2..), _) => Some(7),
        (2, _, Some(true)) => Some(8),
        _ => None,
    };
    if let Some(list) = listed {
        return format!("list = {list}");
    }
    let mut sql = format!("status = {code}");
    match status.suspension {
        Some(0) => sql.push_str(" AND NOT sleeping AND NOT waiting"),
        Some(1) => sql.push_str(" AND sleeping AND NOT waiting"),
        Some(_) => sql.push_str(" AND waiting"),
        None => {}
    }
    let skipped = crate::flow::rules::flags::SKIPPED;
    match status.skipped {
        Some(true) => sql.push_str(&format!(" AND flow & {skipped} <> 0")),
        Some(false) => sql.push_str(&format!(" AND flow & {skipped} = 0")),
        None => {}
    }
    sql
}

/// A run's suspension as `status_of_code` reads it, from PostgreSQL's two flags (as
/// the SQL `sleeping::int + 2 * waiting::int`: waiting counts over sleeping).
fn suspension(sleeping: bool, waiting: bool) -> i64 {
    i64::from(sleeping) + 2 * i64::from(waiting)
}

/// The statement `list` runs for `filter`: `$1` the limit, then the function, the
/// event, the lower and the upper bound on run ids, those the filter sets, in this order.
pub(crate) fn list_sql(filter: &RunFilter) -> String {
    let mut n = 0;
    let param = |_: &str| {
        n += 1;
        format!("${n}")
    };
    crate::store::list_statement(filter, COLUMNS, param, status_sql, |_| {
        vec![(None, "run_id DESC")]
    })
}

impl Shared {
    pub(super) async fn runs(&self, event: EventId) -> Result<Option<Vec<RunInfo>>> {
        let err = |e| self.error("cannot read runs", e);
        let client = self.inspect_client().await?;
        let id = event.as_uuid();
        if client
            .query_opt("SELECT 1 FROM fanfare_events WHERE id = $1", &[&id])
            .await
            .map_err(err)?
            .is_none()
        {
            return Ok(None);
        }
        let sql = format!("SELECT {COLUMNS} FROM fanfare_runs WHERE event_id = $1 ORDER BY id");
        self.read_runs(&client, &sql, &[&id]).await.map(Some)
    }

    /// One run, by its id (the `run_id` index).
    pub(super) async fn run(&self, run: RunId) -> Result<Option<RunInfo>> {
        let client = self.inspect_client().await?;
        let sql = format!("SELECT {COLUMNS} FROM fanfare_runs WHERE run_id = $1");
        Ok(self
            .read_runs(&client, &sql, &[&run.as_uuid()])
            .await?
            .into_iter()
            .next())
    }

    /// Up to `limit` runs `filter` selects, newest first: one index range per status
    /// code (the partial indexes of failed, held, cancelled, sleeping, waiting and skipped
    /// runs; the run id index otherwise), merged.
    pub(super) async fn list(&self, filter: &RunFilter, limit: usize) -> Result<Vec<RunInfo>> {
        let client = self.inspect_client().await?;
        let function = filter.function.clone();
        let event = filter.event.map(|e| e.as_uuid());
        let from = filter.from().map(|r| r.as_uuid());
        let below = filter.below().map(|r| r.as_uuid());
        let limit = limit as i64;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&limit];
        if let Some(f) = &function {
            params.push(f);
        }
        if let Some(e) = &event {
            params.push(e);
        }
        if let Some(f) = &from {
            params.push(f);
        }
        if let Some(b) = &below {
            params.push(b);
        }
        let sql = list_sql(filter);
        self.read_runs(&client, &sql, &params).await
    }

    /// How many runs of each of `functions` are kept (in any app), by status: the
    /// function's `(function_id, run_id)` index entries and their rows, grouped.
    pub(super) async fn count(&self, functions: Vec<String>) -> Result<Vec<RunCounts>> {
        let err = |e| self.error("cannot count runs", e);
        let client = self.inspect_client().await?;
        let sql = format!(
            "SELECT status, sleeping::int + 2 * waiting::int, flow & {} <> 0, count(*) \
             FROM fanfare_runs WHERE function_id = $1 GROUP BY 1, 2, 3",
            crate::flow::rules::flags::SKIPPED
        );
        let statement = client.prepare_cached(&sql).await.map_err(err)?;
        let mut all = Vec::with_capacity(functions.len());
        for function in &functions {
            let mut counts = RunCounts::default();
            for row in client.query(&statement, &[function]).await.map_err(err)? {
                let status = status_of_code(
                    i64::from(row.get::<_, i16>(0)),
                    i64::from(row.get::<_, i32>(1)),
                    row.get(2),
                );
                counts.add(status, row.get::<_, i64>(3) as u64);
            }
            all.push(counts);
        }
        Ok(all)
    }

    /// Queues a new run of a finished run's function for its event (see
    /// `Store::replay`), for the run's app; its event is locked meanwhile, so pruning
    /// cannot take it away under the new run.
    pub(super) async fn replay(&self, run: RunId) -> Result<Replay> {
        let err = |e| self.error("cannot replay the run", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let Some(row) = tx
            .query_opt(
                "SELECT r.status, r.sleeping, r.waiting, r.flow, r.event_id, r.app, r.function_id \
                 FROM fanfare_runs r JOIN fanfare_events e ON e.id = r.event_id \
                 WHERE r.run_id = $1 FOR SHARE OF e",
                &[&run.as_uuid()],
            )
            .await
            .map_err(err)?
        else {
            return Ok(Replay::Unknown);
        };
        let status = status_of_code(
            i64::from(row.get::<_, i16>(0)),
            suspension(row.get(1), row.get(2)),
            false,
        );
        if !status.is_finished() {
            return Ok(Replay::Unfinished(status));
        }
        let flags = crate::flow::rules::flags::ADMITTED | crate::flow::rules::flags::ENTERED;
        if row.get::<_, i16>(3) & crate::flow::rules::flags::BATCHED != 0 {
            return Ok(Replay::Batched);
        }
        let new = RunId::new(crate::event::now_millis());
        let (event, app, function): (Uuid, String, String) = (row.get(4), row.get(5), row.get(6));
        tx.execute(
            concat!(
                "WITH r AS (
                     INSERT INTO fanfare_runs
                         (run_id, event_id, app, function_id, status, due_at, flow, replay_of)
                     VALUES ($1, $2, $3, $4, 0, fanfare_now(), $5, $6)
                     RETURNING ",
                queued!(),
                ") ",
                enqueue!("r")
            ),
            &[
                &new.as_uuid(),
                &event,
                &app,
                &function,
                &flags,
                &run.as_uuid(),
            ],
        )
        .await
        .map_err(err)?;
        tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Replay::Replayed(new))
    }

    /// What the runs `keys` (waiting runs) wait for: their pending waits.
    async fn waiting_for(&self, client: &Object, keys: &[i64]) -> Result<HashMap<i64, WaitingFor>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = client
            .query(
                "SELECT run, event, field, value::text, deadline FROM fanfare_waits \
                 WHERE run = ANY($1) ORDER BY run, seq",
                &[&keys],
            )
            .await
            .map_err(|e| self.error("cannot read the runs' waits", e))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let field: Option<String> = row.get(2);
                let value: Option<serde_json::Value> = row
                    .get::<_, Option<String>>(3)
                    .and_then(|v| serde_json::from_str(&v).ok());
                (
                    row.get(0),
                    WaitingFor {
                        event: row.get(1),
                        matching: field.map(|f| (f, value.unwrap_or(serde_json::Value::Null))),
                        timeout_at_ms: row.get::<_, i64>(4).max(0) as u64,
                    },
                )
            })
            .collect())
    }

    /// The runs `sql` (selecting `COLUMNS`) reads with `params`.
    async fn read_runs(
        &self,
        client: &Object,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RunInfo>> {
        let err = |e| self.error("cannot read runs", e);
        let rows = client.query(sql, params).await.map_err(err)?;
        let keys: Vec<i64> = rows.iter().map(|row| row.get(7)).collect();
        let mut steps = self.steps(client, &keys).await?;
        let waiting: Vec<i64> = rows
            .iter()
            .filter(|row| row.get::<_, i16>(3) == 0 && row.get::<_, bool>(9))
            .map(|row| row.get(7))
            .collect();
        let mut waits = self.waiting_for(client, &waiting).await?;
        // Only a run with an error has failed attempts.
        let failing: Vec<i64> = rows
            .iter()
            .filter(|row| row.get::<_, Option<&str>>(5).is_some())
            .map(|row| row.get(7))
            .collect();
        let mut failures = self.failed_attempts(client, &failing).await?;
        Ok(rows
            .into_iter()
            .map(|row| RunInfo {
                run_id: RunId::from_uuid(row.get(0)),
                created_at_ms: RunId::from_uuid(row.get(0)).created_ms(),
                event_id: EventId::from_uuid(row.get(13)),
                event_name: row.get::<_, Option<String>>(14).unwrap_or_default(),
                replay_of: row.get::<_, Option<Uuid>>(15).map(RunId::from_uuid),
                waiting_for: waits.remove(&row.get::<_, i64>(7)),
                app: row.get(1),
                function_id: row.get(2),
                status: status_of_code(
                    i64::from(row.get::<_, i16>(3)),
                    suspension(row.get(8), row.get(9)),
                    row.get::<_, i16>(12) & crate::flow::rules::flags::SKIPPED != 0,
                ),
                attempts: row.get::<_, i32>(4) as u32,
                last_error: row.get(5),
                failed_attempts: failures.remove(&row.get::<_, i64>(7)).unwrap_or_default(),
                output: row
                    .get::<_, Option<String>>(6)
                    .and_then(|o| serde_json::from_str(&o).ok()),
                steps: steps
                    .remove(&row.get::<_, i64>(7))
                    .unwrap_or_default()
                    .iter()
                    .map(StepRecord::info)
                    .collect(),
                reason: row.get(10),
                not_before_ms: row.get::<_, Option<i64>>(11).map(|t| t as u64),
            })
            .collect())
    }
}

impl Shared {
    /// This app's runs of `function` that have not finished, with their events, oldest
    /// first: queued, sleeping and waiting ones through the due index, held and running
    /// ones through theirs.
    pub(super) async fn unfinished(&self, function: u32, limit: usize) -> Result<Vec<Unfinished>> {
        let err = |e| self.error("cannot read unfinished runs", e);
        let Some(function) = self.functions.get(function as usize) else {
            return Ok(Vec::new());
        };
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.run_id, e.id, e.name, e.data, e.ts FROM fanfare_runs r \
                 JOIN fanfare_events e ON e.id = r.event_id \
                 WHERE r.app = $1 AND r.function_id = $2 AND r.status IN (0, 1, 4) \
                 ORDER BY r.id LIMIT $3",
                &[&self.app, function, &(limit as i64)],
            )
            .await
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|row| Unfinished {
                run_id: RunId::from_uuid(row.get(0)),
                event: Arc::new(event_at(&row, 1)),
            })
            .collect())
    }

    /// Events named one of `names` sent at `since_ms` or later, oldest first (the
    /// `(name, ts)` index).
    pub(super) async fn events_named(
        &self,
        names: Vec<String>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Envelope>>> {
        let err = |e| self.error("cannot read events", e);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, name, data, ts FROM fanfare_events \
                 WHERE name = ANY($1) AND ts >= $2 ORDER BY ts, id LIMIT $3",
                &[
                    &names,
                    &(since_ms.min(i64::MAX as u64) as i64),
                    &(limit as i64),
                ],
            )
            .await
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|row| Arc::new(event_at(&row, 0)))
            .collect())
    }
}
