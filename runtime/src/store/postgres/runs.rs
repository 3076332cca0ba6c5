//! `Runtime::runs`: the runs of an event, with their steps.

use super::*;

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
        let rows = client
            .query(
                "SELECT run_id, app, function_id, status, attempts, last_error, output, id, sleeping, waiting, \
                 reason, CASE WHEN status = 0 AND NOT sleeping AND NOT waiting AND due_at > fanfare_now() \
                 THEN due_at END, flow \
                 FROM fanfare_runs WHERE event_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .map_err(err)?;
        let keys: Vec<i64> = rows.iter().map(|row| row.get(7)).collect();
        let mut steps = self.steps(&client, &keys).await?;
        Ok(Some(
            rows.into_iter()
                .map(|row| RunInfo {
                    run_id: RunId::from_uuid(row.get(0)),
                    event_id: event,
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
                .collect(),
        ))
    }
}
