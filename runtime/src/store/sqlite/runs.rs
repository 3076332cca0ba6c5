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

/// What `runs` and `run` read of a run.
const COLUMNS: &str = "run_id, function_id, status, attempts, last_error, output, id, \
    sleeping + 2 * waiting, reason, due_at, flow, event_id";

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
        let sql = format!("SELECT {COLUMNS} FROM fanfare_runs WHERE event_id = ?1 ORDER BY id");
        self.read_runs(tx, &sql, event.as_uuid().as_bytes())
            .map(Some)
    }

    /// One run, by its id (the `run_id` index).
    pub(super) fn run(&self, tx: &Connection, run: RunId) -> Result<Option<RunInfo>> {
        let sql = format!("SELECT {COLUMNS} FROM fanfare_runs WHERE run_id = ?1");
        Ok(self
            .read_runs(tx, &sql, run.as_uuid().as_bytes())?
            .into_iter()
            .next())
    }

    /// The runs `sql` (selecting `COLUMNS`, with one parameter, `key`) reads.
    fn read_runs(&self, tx: &Connection, sql: &str, key: &[u8]) -> Result<Vec<RunInfo>> {
        let err = self.err("cannot read runs");
        let mut s = tx.prepare_cached(sql).map_err(&err)?;
        let rows: Vec<(RunRow, Vec<u8>)> = s
            .query_map([key], |r| {
                Ok((
                    (
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
                    ),
                    r.get(11)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        rows.into_iter()
            .map(
                |(
                    (
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
                    ),
                    event_id,
                )| {
                    let queued = status_from(status) == RunStatus::Queued && sleeping == 0;
                    Ok(RunInfo {
                        run_id: RunId::from_uuid(uuid_from(&run_id)?),
                        event_id: EventId::from_uuid(uuid_from(&event_id)?),
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
            .collect()
    }
}

/// An unfinished run as `unfinished` reads it: run id, event id, name, data, time.
type UnfinishedRow = (Vec<u8>, Vec<u8>, String, String, i64);

impl Ctx<'_> {
    /// This app's runs of `function` that have not finished, with their events, oldest
    /// first (a scan: it serves `cancel_on`, when a cancelling event arrives).
    pub(super) fn unfinished(
        &self,
        tx: &Connection,
        function: u32,
        limit: usize,
    ) -> Result<Vec<Unfinished>> {
        let err = self.err("cannot read unfinished runs");
        let Some(def) = self.registry.defs.get(function as usize) else {
            return Ok(Vec::new());
        };
        let mut s = tx
            .prepare_cached(
                "SELECT r.run_id, e.id, e.name, e.data, e.ts FROM fanfare_runs r \
                 JOIN fanfare_events e ON e.id = r.event_id \
                 WHERE r.function_id = ?1 AND r.status IN (?2, ?3, ?4) ORDER BY r.id LIMIT ?5",
            )
            .map_err(&err)?;
        let rows: Vec<UnfinishedRow> = s
            .query_map(
                params![def.id(), QUEUED, RUNNING, flow::HELD, limit as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        rows.into_iter()
            .map(|(run_id, event_id, name, data, ts)| {
                Ok(Unfinished {
                    run_id: RunId::from_uuid(uuid_from(&run_id)?),
                    event: Arc::new(Envelope::stored(
                        EventId::from_uuid(uuid_from(&event_id)?),
                        name,
                        data,
                        ts as u64,
                    )),
                })
            })
            .collect()
    }
}
