//! `Runtime::runs`: the runs of an event, with their steps.

use super::*;
use crate::flow::rules::flags;
use crate::store::{status_of_code, ListSource, WaitingFor};
use position::{by_run_id, of_event, BY_RUN_ID};

/// A run as `runs` reads it (see `COLUMNS`).
struct RunRow {
    run_id: Vec<u8>,
    function_id: String,
    status: i64,
    attempts: u32,
    last_error: Option<String>,
    output: Option<String>,
    key: i64,
    /// 1 sleeping, 2 or more waiting.
    suspension: i64,
    reason: Option<String>,
    due: i64,
    flow: i64,
    event_id: Vec<u8>,
    event_name: Option<String>,
    replay_of: Option<Vec<u8>>,
}

/// What `runs`, `run` and `list` read of a run.
const COLUMNS: &str = "run_id, function_id, status, attempts, last_error, output, id, \
    sleeping + 2 * waiting, reason, due_at, flow, event_id, \
    (SELECT name FROM fanfare_events e WHERE e.id = fanfare_runs.event_id), replay_of";

/// How `list` renders a status condition (`StatusWhere`) on `fanfare_runs`, in the
/// words of the partial indexes it reads (SQLite uses a partial index only for a
/// condition that repeats the index's own).
fn status_sql(code: i16, status: &StatusWhere) -> String {
    // Queued, running and completed runs have no index of their own: `+status` keeps
    // SQLite from reading the claim's due index (every queued run) and sorting it, and
    // reads the run id index newest first instead.
    let mut sql = match code {
        0..=2 => format!("+status = {code}"),
        _ => format!("status = {code}"),
    };
    match status.suspension {
        Some(0) => sql.push_str(" AND sleeping = 0 AND waiting = 0"),
        Some(1) => sql.push_str(" AND sleeping = 1 AND waiting = 0"),
        Some(_) => sql.push_str(" AND waiting = 1"),
        None => {}
    }
    match status.skipped {
        Some(true) => sql.push_str(&format!(" AND flow & {} <> 0", flags::SKIPPED)),
        Some(false) => sql.push_str(&format!(" AND flow & {} = 0", flags::SKIPPED)),
        None => {}
    }
    sql
}

/// The statement `list` runs for `filter` (named parameters `:limit`, `:function`,
/// `:event`, `:from`, `:below`, those the filter sets, and `:from_position`,
/// `:below_position` with `:from` and `:below`: `position::at_least` and `at_most`).
pub(crate) fn list_sql(filter: &RunFilter) -> String {
    crate::store::list_statement(
        filter,
        COLUMNS,
        |name| format!(":{name}"),
        status_sql,
        |status| list_sources(filter, status),
    )
}

/// Where `list` reads runs from (see `position.rs`): an event's runs by their positions
/// and the index by event; runs of a state with a partial index of its own from that
/// index; others from the table in position order, and from the run id index for runs
/// stored before positions.
fn list_sources(filter: &RunFilter, status: Option<(i16, &StatusWhere)>) -> Vec<ListSource> {
    if filter.event.is_some() {
        return vec![
            (Some(position::EVENT_RANGE.to_owned()), "id DESC"),
            (Some(position::BY_EVENT.to_owned()), "run_id DESC"),
        ];
    }
    let indexed = status.is_some_and(|(code, s)| {
        code >= 3 || s.suspension.is_some_and(|n| n >= 1) || s.skipped == Some(true)
    });
    if indexed {
        return vec![(None, "run_id DESC")];
    }
    let mut ours = format!("id >= {}", position::LEGACY);
    if filter.from().is_some() {
        ours.push_str(" AND id >= :from_position");
    }
    if filter.below().is_some() {
        ours.push_str(" AND id <= :below_position");
    }
    vec![
        (Some(ours), "id DESC"),
        (Some(format!("id < {}", position::LEGACY)), "run_id DESC"),
    ]
}

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
        let sql = format!(
            "SELECT * FROM ({}) ORDER BY id",
            of_event(&format!("SELECT {COLUMNS} FROM fanfare_runs WHERE"))
        );
        self.read_runs(tx, &sql, &[(":event", event.as_uuid().as_bytes())][..])
            .map(Some)
    }

    /// One run, by its id (its position, or the `run_id` index).
    pub(super) fn run(&self, tx: &Connection, run: RunId) -> Result<Option<RunInfo>> {
        let sql = format!("SELECT {COLUMNS} FROM fanfare_runs WHERE {BY_RUN_ID}");
        Ok(self
            .read_runs(tx, &sql, by_run_id(&run))?
            .into_iter()
            .next())
    }

    /// Up to `limit` runs `filter` selects, newest first: one index range per status
    /// code (the partial indexes of failed, held, cancelled, sleeping, waiting and skipped
    /// runs; the run id index otherwise), merged.
    pub(super) fn list(
        &self,
        tx: &Connection,
        filter: &RunFilter,
        limit: usize,
    ) -> Result<Vec<RunInfo>> {
        let function = filter.function.as_deref();
        let event = filter.event.map(|e| *e.as_uuid().as_bytes());
        let from = filter.from().map(|r| *r.as_uuid().as_bytes());
        let below = filter.below().map(|r| *r.as_uuid().as_bytes());
        let sql = list_sql(filter);
        let limit = limit as i64;
        let mut params: Vec<(&str, &dyn rusqlite::ToSql)> = vec![(":limit", &limit)];
        if let Some(f) = &function {
            params.push((":function", f));
        }
        if let Some(e) = &event {
            params.push((":event", e));
        }
        let from_position = filter.from().map(|r| position::at_least(&r));
        let below_position = filter.below().map(|r| position::at_most(&r));
        if let Some(f) = &from {
            params.push((":from", f));
        }
        if let Some(b) = &below {
            params.push((":below", b));
        }
        // Only the sources that walk positions name them.
        if let Some(p) = from_position
            .as_ref()
            .filter(|_| sql.contains(":from_position"))
        {
            params.push((":from_position", p));
        }
        if let Some(p) = below_position
            .as_ref()
            .filter(|_| sql.contains(":below_position"))
        {
            params.push((":below_position", p));
        }
        self.read_runs(tx, &sql, &params[..])
    }

    /// How many runs of each of `functions` are kept, by status: the function's rows,
    /// grouped (no index by function: every run would write it).
    pub(super) fn count(&self, tx: &Connection, functions: &[String]) -> Result<Vec<RunCounts>> {
        let err = self.err("cannot count runs");
        let mut s = tx
            .prepare_cached(&format!(
                "SELECT status, sleeping + 2 * waiting, flow & {} <> 0, count(*) \
                 FROM fanfare_runs WHERE function_id = ?1 GROUP BY 1, 2, 3",
                flags::SKIPPED
            ))
            .map_err(&err)?;
        functions
            .iter()
            .map(|function| {
                let mut counts = RunCounts::default();
                let rows = s
                    .query_map([function], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(&err)?;
                for (code, suspension, skipped, n) in rows {
                    counts.add(status_of_code(code, suspension, skipped), n as u64);
                }
                Ok(counts)
            })
            .collect()
    }

    /// The runs `sql` (selecting `COLUMNS`) reads with `params`.
    fn read_runs(
        &self,
        tx: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RunInfo>> {
        let err = self.err("cannot read runs");
        let mut s = tx.prepare_cached(sql).map_err(&err)?;
        let rows: Vec<RunRow> = s
            .query_map(params, |r| {
                Ok(RunRow {
                    run_id: r.get(0)?,
                    function_id: r.get(1)?,
                    status: r.get(2)?,
                    attempts: r.get(3)?,
                    last_error: r.get(4)?,
                    output: r.get(5)?,
                    key: r.get(6)?,
                    suspension: r.get(7)?,
                    reason: r.get(8)?,
                    due: r.get(9)?,
                    flow: r.get(10)?,
                    event_id: r.get(11)?,
                    event_name: r.get(12)?,
                    replay_of: r.get(13)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        rows.into_iter()
            .map(|row| {
                let queued = status_from(row.status) == RunStatus::Queued && row.suspension == 0;
                let run_id = RunId::from_uuid(uuid_from(&row.run_id)?);
                Ok(RunInfo {
                    run_id,
                    event_id: EventId::from_uuid(uuid_from(&row.event_id)?),
                    event_name: row.event_name.unwrap_or_default(),
                    app: self.app.to_owned(),
                    function_id: row.function_id,
                    status: status_of_code(
                        row.status,
                        row.suspension,
                        row.flow & i64::from(flags::SKIPPED) != 0,
                    ),
                    attempts: row.attempts,
                    // A run without an error has no failed attempt to read.
                    failed_attempts: match row.last_error {
                        Some(_) => self.failed_attempts(tx, row.key)?,
                        None => Vec::new(),
                    },
                    last_error: row.last_error,
                    output: row.output.and_then(|o| serde_json::from_str(&o).ok()),
                    steps: self
                        .steps(tx, row.key)?
                        .iter()
                        .map(StepRecord::info)
                        .collect(),
                    reason: row.reason,
                    not_before_ms: (queued && row.due > self.now as i64).then_some(row.due as u64),
                    created_at_ms: run_id.created_ms(),
                    replay_of: match row.replay_of {
                        Some(id) => Some(RunId::from_uuid(uuid_from(&id)?)),
                        None => None,
                    },
                    waiting_for: match row.suspension >= 2 && row.status == QUEUED {
                        true => self.waiting_for(tx, row.key)?,
                        false => None,
                    },
                })
            })
            .collect()
    }

    /// What run `key` waits for (its pending wait), if it waits.
    fn waiting_for(&self, tx: &Connection, key: i64) -> Result<Option<WaitingFor>> {
        let row: Option<(String, Option<String>, Option<String>, i64)> = tx
            .prepare_cached(
                "SELECT event, field, value, deadline FROM fanfare_waits WHERE run = ?1 \
                 ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .optional()
            })
            .map_err(self.err("cannot read a run's wait"))?;
        Ok(row.map(|(event, field, value, deadline)| WaitingFor {
            event,
            matching: field.map(|f| {
                let v = value
                    .and_then(|v| serde_json::from_str(&v).ok())
                    .unwrap_or(serde_json::Value::Null);
                (f, v)
            }),
            timeout_at_ms: deadline.max(0) as u64,
        }))
    }

    /// Queues a new run of a finished run's function for its event (see
    /// `Store::replay`).
    pub(super) fn replay(&self, tx: &Connection, run: RunId) -> Result<Replay> {
        let err = self.err("cannot replay the run");
        let found: Option<(i64, i64, i64, Vec<u8>, String)> = tx
            .prepare_cached(&format!(
                "SELECT status, sleeping + 2 * waiting, flow, event_id, function_id \
                     FROM fanfare_runs WHERE {BY_RUN_ID}"
            ))
            .and_then(|mut s| {
                s.query_row(by_run_id(&run), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(&err)?;
        let Some((status, suspension, flow, event, function)) = found else {
            return Ok(Replay::Unknown);
        };
        let status = status_of_code(status, suspension, false);
        if !status.is_finished() {
            return Ok(Replay::Unfinished(status));
        }
        if flow & i64::from(flags::BATCHED) != 0 {
            return Ok(Replay::Batched);
        }
        let position = self.positions.take(self.now, 1);
        let new = position::run_id(position);
        tx.prepare_cached(
            "INSERT INTO fanfare_runs (id, run_id, event_id, function_id, status, due_at, flow, replay_of) \
             VALUES (?7, ?1, ?2, ?3, 0, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                new.as_uuid().as_bytes(),
                event,
                function,
                self.now as i64,
                i64::from(flags::ADMITTED | flags::ENTERED),
                run.as_uuid().as_bytes(),
                position
            ])
        })
        .map_err(&err)?;
        Ok(Replay::Replayed(new))
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
