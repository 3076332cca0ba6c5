//! `Runtime::runs`: the runs of an event, with their steps.

use super::*;

/// What `runs` and `run` read of a run.
const COLUMNS: &str = "run_id, app, function_id, status, attempts, last_error, output, id, \
    sleeping, waiting, reason, CASE WHEN status = 0 AND NOT sleeping AND NOT waiting \
    AND due_at > fanfare_now() THEN due_at END, flow, event_id";

impl Shared {
    pub(super) async fn runs(&self, event: EventId) -> Result<Option<Vec<RunInfo>>> {
        let err = |e| self.error("cannot read runs", e);
        let client = self.client().await?;
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
        self.read_runs(&client, &sql, id).await.map(Some)
    }

    /// One run, by its id (the `run_id` index).
    pub(super) async fn run(&self, run: RunId) -> Result<Option<RunInfo>> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM fanfare_runs WHERE run_id = $1");
        Ok(self
            .read_runs(&client, &sql, run.as_uuid())
            .await?
            .into_iter()
            .next())
    }

    /// The runs `sql` (selecting `COLUMNS`, with one uuid parameter) reads.
    async fn read_runs(&self, client: &Object, sql: &str, key: Uuid) -> Result<Vec<RunInfo>> {
        let err = |e| self.error("cannot read runs", e);
        let rows = client.query(sql, &[&key]).await.map_err(err)?;
        let keys: Vec<i64> = rows.iter().map(|row| row.get(7)).collect();
        let mut steps = self.steps(client, &keys).await?;
        Ok(rows
            .into_iter()
            .map(|row| RunInfo {
                run_id: RunId::from_uuid(row.get(0)),
                event_id: EventId::from_uuid(row.get(13)),
                app: row.get(1),
                function_id: row.get(2),
                status: match row.get::<_, i16>(3) {
                    0 if row.get::<_, bool>(8) => RunStatus::Sleeping,
                    0 if row.get::<_, bool>(9) => RunStatus::Waiting,
                    0 | flow::HELD => RunStatus::Queued,
                    1 => RunStatus::Running,
                    2 if row.get::<_, i16>(12) & crate::flow::rules::flags::SKIPPED != 0 => {
                        RunStatus::Skipped
                    }
                    2 => RunStatus::Completed,
                    5 => RunStatus::Cancelled,
                    _ => RunStatus::Failed,
                },
                attempts: row.get::<_, i32>(4) as u32,
                last_error: row.get(5),
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
