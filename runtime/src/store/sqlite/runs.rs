//! `Runtime::runs`: the runs of an event, with their steps.

use super::*;
use crate::flow::rules::flags;

/// A run as `runs` reads it: run id, function id, status, attempts, last error, output,
/// row id, suspension (1 sleeping, 2 waiting), flow control's reason, due time.
type RunRow = (
    Vec<u8>,
    String,
    i64,
    u32,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<String>,
    i64,
    i64,
);

impl Ctx<'_> {
    pub(super) fn runs(&self, tx: &Connection, event: EventId) -> Result<Option<Vec<RunInfo>>> {
        let err = self.err("cannot read runs");
        let known: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM fanfare_events WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([event.as_uuid().as_bytes()], |r| r.get(0))
                    .optional()
            })
            .map_err(&err)?;
        if known.is_none() {
            return Ok(None);
        }
        let mut s = tx
            .prepare_cached(
                "SELECT run_id, function_id, status, attempts, last_error, output, id, \
                 sleeping + 2 * waiting, reason, due_at, flow FROM fanfare_runs WHERE event_id = ?1 ORDER BY id",
            )
            .map_err(&err)?;
        let rows: Vec<RunRow> = s
            .query_map([event.as_uuid().as_bytes()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        rows.into_iter()
            .map(
                |(
                    run_id,
                    function_id,
                    status,
                    attempts,
                    last_error,
                    output,
                    key,
                    sleeping,
                    reason,
                    due,
                    flow,
                )| {
                    let queued = status_from(status) == RunStatus::Queued && sleeping == 0;
                    Ok(RunInfo {
                        run_id: RunId::from_uuid(uuid_from(&run_id)?),
                        event_id: event,
                        app: self.app.to_owned(),
                        function_id,
                        status: match status_from(status) {
                            RunStatus::Completed if flow & i64::from(flags::SKIPPED) != 0 => {
                                RunStatus::Skipped
                            }
                            RunStatus::Queued if sleeping == 1 => RunStatus::Sleeping,
                            RunStatus::Queued if sleeping >= 2 => RunStatus::Waiting,
                            other => other,
                        },
                        attempts,
                        last_error,
                        output: output.and_then(|o| serde_json::from_str(&o).ok()),
                        steps: self.steps(tx, key)?.iter().map(StepRecord::info).collect(),
                        reason,
                        not_before_ms: (queued && due > self.now as i64).then_some(due as u64),
                    })
                },
            )
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
