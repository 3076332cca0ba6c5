//! Claims: due runs of this process's functions, with their events and completed steps.

use super::*;
use crate::flow::rules::{flags, RunFlow};

/// Due runs of this process's functions, earliest first (ties in the order the runs
/// were stored: the order of debounce, batch and throttle). Through the due index, in
/// its order: `+function_id` keeps SQLite from reading the function index instead
/// (which holds every run of the function, finished ones too) and sorting.
pub(crate) const CLAIM: &str =
    "SELECT id, run_id, event_id, function_id, attempts, steps, flow, ckey, rank, batch, cancel FROM fanfare_runs \
    WHERE status = 0 AND due_at <= ?1 AND +function_id IN (SELECT id FROM temp.fanfare_local) \
    ORDER BY due_at, id LIMIT ?2";

/// Marks the claimed runs (`rarray` of their row ids) running.
pub(crate) const MARK: &str =
    "UPDATE fanfare_runs SET status = 1, attempts = attempts + 1 WHERE id IN rarray(?1)";

/// When the earliest queued run of this process's functions is due.
pub(crate) const NEXT_DUE: &str = "SELECT min(due_at) FROM fanfare_runs WHERE status = 0 \
    AND +function_id IN (SELECT id FROM temp.fanfare_local)";

/// A due run: row id, run id, event id, function (registry index; `None` for another
/// program's), attempts so far, steps completed, its flow-control columns, and its
/// cancellation mark.
type ClaimRow = (
    i64,
    Uuid,
    Uuid,
    Option<u32>,
    u32,
    u32,
    RunFlow,
    Option<String>,
);

/// A 16-byte id column, read in place.
fn uuid_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let bytes = r.get_ref(i)?.as_blob()?;
    Uuid::from_slice(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

impl Ctx<'_> {
    pub(super) fn claim(
        &self,
        tx: &Connection,
        max: usize,
        cache: &mut EventCache,
    ) -> Result<Claim> {
        let err = self.err("cannot claim runs");
        let mut select = tx.prepare_cached(CLAIM).map_err(&err)?;
        let rows: Vec<ClaimRow> = select
            .query_map(params![self.now as i64, max as i64], |r| {
                // Only this process's functions are selected, so the lookup succeeds.
                let function = self.functions.get(r.get_ref(3)?.as_str()?).copied();
                Ok((
                    r.get(0)?,
                    uuid_at(r, 1)?,
                    uuid_at(r, 2)?,
                    function,
                    r.get(4)?,
                    r.get(5)?,
                    RunFlow {
                        flags: r.get(6)?,
                        ckey: r.get(7)?,
                        rank: r.get(8)?,
                        batch: r.get(9)?,
                        ..RunFlow::default()
                    },
                    r.get(10)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        let mut load = tx
            .prepare_cached("SELECT name, data, ts, traceparent FROM fanfare_events WHERE id = ?1")
            .map_err(&err)?;
        let mut runs = Vec::with_capacity(rows.len());
        let mut gated = false;
        let mut skipped = Vec::new();
        for (key, run_id, event_id, function, attempts, steps, flow, cancel) in rows {
            let Some(function) = function else {
                continue;
            };
            let event_id = EventId::from_uuid(event_id);
            let event = match cache.take(&event_id) {
                Some(env) => env,
                None => {
                    let (name, data, ts, trace): (String, String, i64, Option<String>) = load
                        .query_row([event_id.as_uuid().as_bytes()], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .map_err(&err)?;
                    Arc::new(
                        Envelope::stored(event_id, name, data, ts as u64)
                            .with_trace(trace.as_deref()),
                    )
                }
            };
            let def = self.registry.defs[function as usize];
            let mut batch = Vec::new();
            if let Some(rules) = def.flow() {
                let place = match self.gate(tx, key, def, rules, flow, &event)? {
                    Ok(place) => place,
                    Err(skip) => {
                        if skip {
                            skipped.push(function);
                        }
                        gated = true;
                        continue;
                    }
                };
                if let (true, Some(b)) = (place.flags & flags::RUNNER != 0, place.batch) {
                    batch = self.batch_events(tx, b)?;
                }
            }
            let steps = if steps > 0 {
                self.steps(tx, key)?
            } else {
                Vec::new()
            };
            runs.push(ClaimedRun {
                key: key as RunKey,
                run_id: RunId::from_uuid(run_id),
                function,
                attempt: attempts,
                event,
                steps,
                batch,
                cancel,
            });
        }
        // The runs claimed, marked running in one statement.
        if !runs.is_empty() {
            let keys = ids(runs.iter().map(|r| r.key as i64));
            tx.prepare_cached(MARK)
                .and_then(|mut s| s.execute([keys]))
                .map_err(&err)?;
        }
        let next_due = if gated {
            // Runs were held or delayed instead of claimed: others may be due.
            Some(Instant::now())
        } else if runs.is_empty() {
            let due: Option<i64> = tx
                .prepare_cached(NEXT_DUE)
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(&err)?;
            due.map(|due| {
                Instant::now() + Duration::from_millis((due as u64).saturating_sub(self.now))
            })
        } else {
            None
        };
        Ok(Claim {
            runs,
            next_due,
            skipped,
        })
    }

    /// The completed steps of a run, in order.
    pub(super) fn steps(&self, tx: &Connection, run: i64) -> Result<Vec<StepRecord>> {
        let err = self.err("cannot read steps");
        tx.prepare_cached(
            "SELECT seq, step_id, output, started_at, completed_at FROM fanfare_steps \
             WHERE run = ?1 ORDER BY seq",
        )
        .and_then(|mut s| {
            s.query_map([run], |r| {
                Ok(StepRecord {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    output: r.get(2)?,
                    started_ms: r.get::<_, i64>(3)? as u64,
                    completed_ms: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect()
        })
        .map_err(&err)
    }

    /// The failed attempts of a run, oldest first.
    pub(super) fn failed_attempts(&self, tx: &Connection, run: i64) -> Result<Vec<AttemptInfo>> {
        let err = self.err("cannot read attempts");
        tx.prepare_cached(
            "SELECT attempt, started_at, ended_at, error FROM fanfare_attempts \
             WHERE run = ?1 ORDER BY attempt",
        )
        .and_then(|mut s| {
            s.query_map([run], |r| {
                Ok(AttemptInfo {
                    attempt: r.get(0)?,
                    started_at_ms: r.get::<_, i64>(1)? as u64,
                    ended_at_ms: r.get::<_, i64>(2)? as u64,
                    error: r.get(3)?,
                })
            })?
            .collect()
        })
        .map_err(&err)
    }
}
