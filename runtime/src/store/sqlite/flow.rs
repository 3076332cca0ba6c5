//! Flow control in the SQLite store: the rules' states in `fanfare_flow`, held runs
//! (status 4) in the indexes of their queues. The rules are `flow::rules`'.

use super::*;
use crate::flow::rules::{self, flags, Place, RunFlow, Slot, Stage, States, Verdict};
use crate::flow::Flow;
use crate::function::FunctionDef;

/// A run held back by flow control.
pub(super) const HELD: i64 = 4;

impl Ctx<'_> {
    /// Passes a claimed run of a flow-controlled function through the gate: its place
    /// when it may execute now; otherwise it is left skipped (`Err(true)`), delayed or
    /// held (`Err(false)`).
    pub(super) fn gate(
        &self,
        tx: &Connection,
        key: i64,
        def: &'static FunctionDef,
        flow: &'static Flow,
        mut run: RunFlow,
        event: &Envelope,
    ) -> Result<std::result::Result<RunFlow, bool>> {
        if rules::settled(&run) {
            return Ok(Ok(run));
        }
        let err = self.err("cannot apply flow control");
        let function = def.id();
        let keys = rules::prepare(flow, &mut run, event, key);
        let mut states =
            self.load_states(tx, &rules::slots(function, flow, &run, keys.as_ref()))?;
        let verdict = rules::admit(
            function,
            flow,
            key,
            &mut run,
            keys.as_ref(),
            self.now,
            &mut states,
        );
        self.save_states(tx, &states)?;
        let status = match &verdict {
            Verdict::Go | Verdict::Delay(..) => QUEUED,
            Verdict::Skip(_) => COMPLETED,
            Verdict::Hold(_) => HELD,
        };
        let (hold, due, reason) = verdict.place(flow, run.ckey.as_deref());
        let (hold, due) = (hold.map(|s| s as i64), due.map(|d| d as i64));
        let finished = (status == COMPLETED).then_some(self.now as i64);
        tx.prepare_cached(
            "UPDATE fanfare_runs SET status = ?2, hold = ?3, due_at = coalesce(?4, due_at), \
             reason = ?5, flow = ?6, ckey = ?7, rank = ?8, batch = ?9, finished_at = ?10 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                key, status, hold, due, reason, run.flags, run.ckey, run.rank, run.batch, finished
            ])
        })
        .map_err(&err)?;
        Ok(match verdict {
            Verdict::Go => Ok(run),
            Verdict::Skip(_) => Err(true),
            _ => Err(false),
        })
    }

    /// The events of batch `batch`, in the order their runs were stored.
    pub(super) fn batch_events(&self, tx: &Connection, batch: i64) -> Result<Vec<Arc<Envelope>>> {
        let err = self.err("cannot read a batch's events");
        let rows: Vec<BatchEventRow> = tx
            .prepare_cached(BATCH_EVENTS)
            .and_then(|mut s| {
                s.query_map([batch], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            })
            .map_err(&err)?;
        rows.into_iter()
            .map(|(id, name, data, ts, trace)| {
                Ok(Arc::new(
                    Envelope::stored(EventId::from_uuid(uuid_from(&id)?), name, data, ts as u64)
                        .with_trace(trace.as_deref()),
                ))
            })
            .collect()
    }

    /// Finishes the other runs of the batches that finished runs executed, as they
    /// ended.
    pub(super) fn finish_batches(
        &self,
        tx: &Connection,
        outcomes: &[(RunKey, &OutcomeKind)],
    ) -> Result<()> {
        let err = self.err("cannot finish a batch");
        for &(key, result) in outcomes {
            let (status, error, cancelled) = match result {
                OutcomeKind::Completed(_) => (COMPLETED, None, None),
                OutcomeKind::Failed(e) => (FAILED, Some(e.as_str()), None),
                OutcomeKind::Cancelled(why) => (CANCELLED, None, Some(why.as_str())),
                _ => continue,
            };
            let runner: Option<(i64, Option<i64>, Vec<u8>)> = tx
                .prepare_cached(
                    "SELECT flow, batch, run_id FROM fanfare_runs WHERE id = ?1 AND status = 1",
                )
                .and_then(|mut s| {
                    s.query_row([key as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(&err)?;
            let Some((flow, Some(batch), run_id)) = runner else {
                continue;
            };
            if flow & i64::from(flags::RUNNER) == 0 {
                continue;
            }
            let run_id = uuid_from(&run_id)?;
            let reason = match cancelled {
                Some(why) => crate::flow::cancel::with_batch(run_id, why),
                None => format!("ran in the batch of run {run_id}"),
            };
            tx.prepare_cached(FINISH_BATCH)
                .and_then(|mut s| {
                    s.execute(params![
                        batch,
                        key as i64,
                        status,
                        error,
                        reason,
                        self.now as i64
                    ])
                })
                .map_err(&err)?;
        }
        Ok(())
    }

    /// Gives back the concurrency slots of runs whose attempt ended or suspended, and
    /// passes them on to the first held runs.
    pub(super) fn free_slots(&self, tx: &Connection, keys: &[i64]) -> Result<()> {
        let err = self.err("cannot release concurrency slots");
        // One statement reads the runs that hold slots and one lets them go, for the
        // whole batch; then each gives its slots back and promotes, one at a time.
        let holding: Vec<(i64, String, Option<String>)> = tx
            .prepare_cached(HOLDING)
            .and_then(|mut s| {
                s.query_map([ids(keys.iter().copied())], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(&err)?;
        if holding.is_empty() {
            return Ok(());
        }
        tx.prepare_cached(LET_GO)
            .and_then(|mut s| s.execute([ids(holding.iter().map(|h| h.0))]))
            .map_err(&err)?;
        for (_, function_id, ckey) in &holding {
            let Some(&index) = self.functions.get(function_id.as_str()) else {
                continue;
            };
            let def = self.registry.defs[index as usize];
            let Some(flow) = def.flow() else {
                continue;
            };
            let function = def.id();
            let ckey = ckey.as_deref();
            let mut states =
                self.load_states(tx, &rules::concurrency_slots(function, flow, ckey))?;
            rules::release(function, flow, ckey, &mut states);
            self.refill(tx, function, flow, ckey, &mut states)?;
        }
        Ok(())
    }

    /// Passes released slots of `function` (key `ckey`) on to the first held runs, and
    /// writes `states` (which hold the function's concurrency states).
    pub(super) fn refill(
        &self,
        tx: &Connection,
        function: &'static str,
        flow: &'static Flow,
        ckey: Option<&str>,
        states: &mut States,
    ) -> Result<()> {
        let err = self.err("cannot release concurrency slots");
        let mut failed = None;
        let placed = rules::refill(function, flow, ckey, states, |stage, n| {
            match self.held(tx, function, stage, ckey, n) {
                Ok(runs) => runs,
                Err(e) => {
                    failed = Some(e);
                    Vec::new()
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        self.save_states(tx, states)?;
        for (run, place) in placed {
            let (hold, status, set, reason) = match place {
                Place::Ready => (None, QUEUED, flags::SLOTS, None),
                Place::Function => (
                    Some(Stage::Function as i64),
                    HELD,
                    0,
                    Some(rules::held(flow, Stage::Function, None)),
                ),
            };
            tx.prepare_cached(
                "UPDATE fanfare_runs SET status = ?2, hold = ?3, flow = flow | ?4, reason = ?5 \
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![run, status, hold, set, reason]))
            .map_err(&err)?;
        }
        Ok(())
    }

    /// The first `n` runs of a queue of held runs.
    fn held(
        &self,
        tx: &Connection,
        function: &str,
        stage: Stage,
        ckey: Option<&str>,
        n: usize,
    ) -> Result<Vec<i64>> {
        let err = self.err("cannot read held runs");
        let sql = match stage {
            Stage::Key => HELD_BY_KEY,
            Stage::Function => HELD_BY_FUNCTION,
            Stage::Batch => return Ok(Vec::new()),
        };
        tx.prepare_cached(sql)
            .and_then(|mut s| {
                s.query_map(params![function, ckey.unwrap_or_default(), n as i64], |r| {
                    r.get(0)
                })?
                .collect()
            })
            .map_err(&err)
    }

    pub(super) fn load_states(&self, tx: &Connection, slots: &[Slot]) -> Result<States> {
        let err = self.err("cannot read flow-control state");
        let mut select = tx
            .prepare_cached(
                "SELECT tat, active, run, since FROM fanfare_flow \
                 WHERE function_id = ?1 AND kind = ?2 AND key = ?3",
            )
            .map_err(&err)?;
        let mut states = States::new();
        for slot in slots {
            let state = select
                .query_row(params![slot.function, slot.kind as i64, slot.key], |r| {
                    Ok(rules::State {
                        tat_us: r.get(0)?,
                        active: r.get(1)?,
                        run: r.get(2)?,
                        since: r.get(3)?,
                    })
                })
                .optional()
                .map_err(&err)?;
            states.insert(slot.clone(), state.unwrap_or_default());
        }
        Ok(states)
    }

    /// Writes states back; those that say nothing a fresh one would not are deleted.
    pub(super) fn save_states(&self, tx: &Connection, states: &States) -> Result<()> {
        let err = self.err("cannot write flow-control state");
        for (slot, state) in states.iter() {
            if state.is_idle(self.now) {
                tx.prepare_cached(
                    "DELETE FROM fanfare_flow WHERE function_id = ?1 AND kind = ?2 AND key = ?3",
                )
                .and_then(|mut s| s.execute(params![slot.function, slot.kind as i64, slot.key]))
                .map_err(&err)?;
            } else {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO fanfare_flow (function_id, kind, key, tat, active, run, since) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        slot.function,
                        slot.kind as i64,
                        slot.key,
                        state.tat_us,
                        state.active,
                        state.run,
                        state.since
                    ])
                })
                .map_err(&err)?;
            }
        }
        Ok(())
    }
}

/// The events of batch `?1`, in the order their runs were stored.
pub(crate) const BATCH_EVENTS: &str =
    "SELECT e.id, e.name, e.data, e.ts, e.traceparent FROM fanfare_runs r \
    JOIN fanfare_events e ON e.id = r.event_id WHERE r.batch = ?1 ORDER BY r.id";

/// A batch's event as `BATCH_EVENTS` reads it: id, name, data, time, trace context.
type BatchEventRow = (Vec<u8>, String, String, i64, Option<String>);

/// Finishes the runs of batch `?1` but its runner `?2`, as it ended.
pub(crate) const FINISH_BATCH: &str = "UPDATE fanfare_runs \
    SET status = ?3, last_error = ?4, reason = ?5, finished_at = ?6 WHERE batch = ?1 AND id != ?2";

/// The runs of `rarray(?1)` that hold their concurrency slots.
const HOLDING: &str = "SELECT id, function_id, ckey FROM fanfare_runs \
    WHERE id IN rarray(?1) AND flow & 2 <> 0 ORDER BY id";

/// Marks the runs of `rarray(?1)` as holding no slots.
const LET_GO: &str = "UPDATE fanfare_runs SET flow = flow & ~2 WHERE id IN rarray(?1)";

/// The first held runs of a function's key (stage 1), in rank order.
pub(crate) const HELD_BY_KEY: &str = "SELECT id FROM fanfare_runs \
    WHERE status = 4 AND hold = 1 AND function_id = ?1 AND ckey = ?2 ORDER BY rank, id LIMIT ?3";

/// The first held runs of a function waiting for its own slot (stage 2), in rank order.
pub(crate) const HELD_BY_FUNCTION: &str = "SELECT id FROM fanfare_runs \
    WHERE status = 4 AND hold = 2 AND function_id = ?1 ORDER BY rank, id LIMIT ?3";
