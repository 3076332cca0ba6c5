//! Flow control in the SQLite store: the rules' states in `fanfare_flow`, held runs
//! (status 4) in the indexes of their queues. The rules are `flow::rules`'.

use super::*;
use crate::flow::rules::{self, Place, Slot, Stage, States, Ticket, Verdict};
use crate::flow::Flow;
use crate::function::FunctionDef;

/// A run held back by flow control.
pub(super) const HELD: i64 = 4;

/// Its rate limit and throttle were applied.
const ADMITTED: i64 = 1;

/// It holds its concurrency slots.
const SLOTS: i64 = 2;

/// A claimed run's flow-control columns.
pub(super) struct RunFlow {
    pub flags: i64,
    pub ckey: Option<String>,
    pub rank: i64,
}

impl Ctx<'_> {
    /// Passes a claimed run of a flow-controlled function through the gate: `true` when
    /// it may execute now; otherwise it is left skipped, delayed or held.
    pub(super) fn gate(
        &self,
        tx: &Connection,
        key: i64,
        def: &'static FunctionDef,
        flow: &'static Flow,
        mut run: RunFlow,
        event: &Envelope,
    ) -> Result<bool> {
        let err = self.err("cannot apply flow control");
        if run.flags & SLOTS != 0 || (run.flags & ADMITTED != 0 && !flow.limits_concurrency()) {
            tx.prepare_cached("UPDATE fanfare_runs SET reason = NULL WHERE id = ?1")
                .and_then(|mut s| s.execute([key]))
                .map_err(&err)?;
            return Ok(true);
        }
        let first = if run.flags & ADMITTED == 0 {
            // Keys that cannot be computed (an event that does not decode) are empty:
            // the run then fails on decoding, as any other.
            let keys = (flow.keys)(event).unwrap_or_default();
            run.ckey = keys.concurrency;
            if flow.keyed_concurrency.is_some() {
                run.ckey.get_or_insert_with(String::new);
            }
            run.rank = event.ts as i64 - keys.priority * 1000;
            Some((
                keys.throttle.unwrap_or_default(),
                keys.rate_limit.unwrap_or_default(),
            ))
        } else {
            None
        };
        let ticket = Ticket {
            function: def.id(),
            flow,
            ckey: run.ckey.as_deref(),
            first: first.as_ref().map(|(t, r)| (t.as_str(), r.as_str())),
        };
        let mut states = self.load_states(tx, &ticket.slots())?;
        let verdict = rules::admit(&ticket, self.now, &mut states);
        self.save_states(tx, &states)?;
        let (status, hold, due, reason, flags, go) = match verdict {
            Verdict::Go => {
                let slots = if flow.limits_concurrency() { SLOTS } else { 0 };
                (QUEUED, None, None, None, ADMITTED | slots, true)
            }
            Verdict::Skip(reason) => (COMPLETED, None, None, Some(reason), ADMITTED, false),
            Verdict::Delay(at) => (
                QUEUED,
                None,
                Some(at as i64),
                Some(rules::throttled(flow)),
                ADMITTED,
                false,
            ),
            Verdict::Hold(stage) => (
                HELD,
                Some(stage as i64),
                None,
                Some(rules::held(flow, stage, run.ckey.as_deref())),
                ADMITTED,
                false,
            ),
        };
        let finished = (status == COMPLETED).then_some(self.now as i64);
        tx.prepare_cached(
            "UPDATE fanfare_runs SET status = ?2, hold = ?3, due_at = coalesce(?4, due_at), \
             reason = ?5, flow = ?6, ckey = ?7, rank = ?8, finished_at = ?9 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                key, status, hold, due, reason, flags, run.ckey, run.rank, finished
            ])
        })
        .map_err(&err)?;
        Ok(go)
    }

    /// Gives back the concurrency slots of runs whose attempt ended or suspended, and
    /// passes them on to the first held runs.
    pub(super) fn free_slots(&self, tx: &Connection, keys: &[i64]) -> Result<()> {
        let err = self.err("cannot release concurrency slots");
        for &key in keys {
            let row: Option<(String, i64, Option<String>)> = tx
                .prepare_cached("SELECT function_id, flow, ckey FROM fanfare_runs WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(&err)?;
            let Some((function_id, flags, ckey)) = row else {
                continue;
            };
            let Some(&index) = self.functions.get(function_id.as_str()) else {
                continue;
            };
            let def = self.registry.defs[index as usize];
            let (Some(flow), true) = (def.flow(), flags & SLOTS != 0) else {
                continue;
            };
            tx.prepare_cached("UPDATE fanfare_runs SET flow = flow & ~2 WHERE id = ?1")
                .and_then(|mut s| s.execute([key]))
                .map_err(&err)?;
            let function = def.id();
            let ckey = ckey.as_deref();
            let mut states =
                self.load_states(tx, &rules::concurrency_slots(function, flow, ckey))?;
            rules::release(function, flow, ckey, &mut states);
            let mut failed = None;
            let placed = rules::refill(function, flow, ckey, &mut states, |stage, n| {
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
            self.save_states(tx, &states)?;
            for (run, place) in placed {
                let (hold, status, flags, reason) = match place {
                    Place::Ready => (None, QUEUED, SLOTS, None),
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
                .and_then(|mut s| s.execute(params![run, status, hold, flags, reason]))
                .map_err(&err)?;
            }
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

    fn load_states(&self, tx: &Connection, slots: &[Slot]) -> Result<States> {
        let err = self.err("cannot read flow-control state");
        let mut select = tx
            .prepare_cached(
                "SELECT tat, active FROM fanfare_flow WHERE function_id = ?1 AND kind = ?2 AND key = ?3",
            )
            .map_err(&err)?;
        let mut states = States::new();
        for slot in slots {
            let state = select
                .query_row(params![slot.function, slot.kind as i64, slot.key], |r| {
                    Ok(rules::State {
                        tat_us: r.get(0)?,
                        active: r.get(1)?,
                    })
                })
                .optional()
                .map_err(&err)?;
            states.insert(slot.clone(), state.unwrap_or_default());
        }
        Ok(states)
    }

    /// Writes states back; those that say nothing a fresh one would not are deleted.
    fn save_states(&self, tx: &Connection, states: &States) -> Result<()> {
        let err = self.err("cannot write flow-control state");
        for (slot, state) in states {
            if state.is_idle(self.now) {
                tx.prepare_cached(
                    "DELETE FROM fanfare_flow WHERE function_id = ?1 AND kind = ?2 AND key = ?3",
                )
                .and_then(|mut s| s.execute(params![slot.function, slot.kind as i64, slot.key]))
                .map_err(&err)?;
            } else {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO fanfare_flow (function_id, kind, key, tat, active) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        slot.function,
                        slot.kind as i64,
                        slot.key,
                        state.tat_us,
                        state.active
                    ])
                })
                .map_err(&err)?;
            }
        }
        Ok(())
    }
}

/// The first held runs of a function's key (stage 1), in rank order.
pub(crate) const HELD_BY_KEY: &str = "SELECT id FROM fanfare_runs \
    WHERE status = 4 AND hold = 1 AND function_id = ?1 AND ckey = ?2 ORDER BY rank, id LIMIT ?3";

/// The first held runs of a function waiting for its own slot (stage 2), in rank order.
pub(crate) const HELD_BY_FUNCTION: &str = "SELECT id FROM fanfare_runs \
    WHERE status = 4 AND hold = 2 AND function_id = ?1 ORDER BY rank, id LIMIT ?3";
