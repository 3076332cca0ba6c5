//! `Store::cancel`: a run that is not executing ends at once, giving up its wait and its
//! flow-control place (`flow::cancel`); a running one is marked (`cancel`).

use super::*;
use crate::flow::cancel;
use crate::flow::rules::{self, flags, RunFlow, Stage};

/// A run by its id.
pub(crate) static FIND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT id, status, function_id, flow, ckey, rank, batch, hold, event_id \
         FROM fanfare_runs WHERE {}",
        position::BY_RUN_ID
    )
});

/// A run as `cancel` reads it: row id, status, function id, its flow-control columns
/// (flags, key, rank, batch, held stage), event id.
type CancelRow = (i64, i64, String, RunFlow, Option<i64>, Vec<u8>);

impl Ctx<'_> {
    pub(super) fn cancel(&self, tx: &Connection, run: RunId, reason: String) -> Result<Cancel> {
        let err = self.err("cannot cancel a run");
        let row: Option<CancelRow> = tx
            .prepare_cached(&FIND)
            .and_then(|mut s| {
                s.query_row(position::by_run_id(&run), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        RunFlow {
                            flags: r.get(3)?,
                            ckey: r.get(4)?,
                            rank: r.get(5)?,
                            batch: r.get(6)?,
                            ..RunFlow::default()
                        },
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })
                .optional()
            })
            .map_err(&err)?;
        let Some((key, status, function_id, place, hold, event_id)) = row else {
            return Ok(Cancel::Unknown);
        };
        let mark = |tx: &Connection| {
            tx.prepare_cached("UPDATE fanfare_runs SET cancel = coalesce(cancel, ?2) WHERE id = ?1")
                .and_then(|mut s| s.execute(params![key, reason]))
                .map_err(&err)
        };
        match status {
            COMPLETED if place.flags & flags::SKIPPED != 0 => {
                Ok(Cancel::Finished(RunStatus::Skipped))
            }
            COMPLETED | FAILED | CANCELLED => Ok(Cancel::Finished(status_from(status))),
            RUNNING => {
                mark(tx)?;
                Ok(Cancel::Marked(key as RunKey))
            }
            _ => {
                let held = (status == flow::HELD).then_some(hold).flatten();
                let def = self
                    .functions
                    .get(function_id.as_str())
                    .map(|&i| self.registry.defs[i as usize]);
                if def.is_none() && cancel::involved(&place, held.is_some()) {
                    // Another program's function: its rules are not known here.
                    mark(tx)?;
                    return Ok(Cancel::Pending);
                }
                let id = EventId::from_uuid(uuid_from(&event_id)?);
                let event = self.event(tx, id)?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Store,
                        format_args!("run {run} names event {id}, which is not stored"),
                    )
                })?;
                tx.prepare_cached(
                    "UPDATE fanfare_runs SET status = 5, sleeping = 0, waiting = 0, hold = NULL, \
                     reason = ?2, cancel = NULL, finished_at = ?3 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![key, reason, self.now as i64]))
                .map_err(&err)?;
                tx.prepare_cached("DELETE FROM fanfare_waits WHERE run = ?1")
                    .and_then(|mut s| s.execute([key]))
                    .map_err(&err)?;
                if let Some((def, flow)) = def.and_then(|d| Some((d, d.flow()?))) {
                    let held = held.and_then(cancel::stage);
                    self.withdraw(tx, key, def.id(), flow, place, held, &event, &reason)?;
                }
                let invocation = (event.name == crate::function::INVOKE_EVENT).then_some(event.id);
                let function = self.functions.get(function_id.as_str()).copied();
                Ok(Cancel::Cancelled {
                    invocation,
                    function,
                })
            }
        }
    }

    /// Gives up the flow-control place of run `key`, cancelled while not executing.
    #[allow(clippy::too_many_arguments)]
    fn withdraw(
        &self,
        tx: &Connection,
        key: i64,
        function: &'static str,
        flow: &'static crate::flow::Flow,
        place: RunFlow,
        held: Option<Stage>,
        event: &Envelope,
        reason: &str,
    ) -> Result<()> {
        let err = self.err("cannot cancel a run");
        let keys = cancel::keys(flow, &place, event);
        let mut slots = cancel::slots(function, flow, &place, held, keys.as_ref());
        slots.extend(rules::concurrency_slots(
            function,
            flow,
            place.ckey.as_deref(),
        ));
        let mut states = self.load_states(tx, &slots)?;
        let w = cancel::withdraw(
            function,
            flow,
            key,
            &place,
            held,
            keys.as_ref(),
            &mut states,
        );
        if w.refill {
            self.refill(tx, function, flow, place.ckey.as_deref(), &mut states)?;
        } else {
            self.save_states(tx, &states)?;
        }
        if w.release {
            self.free_slots(tx, &[key])?;
        }
        let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(p))
                .map_err(&err)
        };
        if w.leave.is_some() || w.dissolve.is_some() {
            run(
                "UPDATE fanfare_runs SET batch = NULL WHERE id = ?1",
                &[&key],
            )?;
        }
        if let Some(batch) = w.dissolve {
            // Back to the gate, where they form a new batch.
            run(
                "UPDATE fanfare_runs SET flow = flow & ~8, batch = NULL, status = 0, hold = NULL, \
                 reason = NULL, due_at = ?2 WHERE batch = ?1 AND status IN (0, 4)",
                &[&batch, &(self.now as i64)],
            )?;
        }
        if let Some(batch) = w.cancel_batch {
            let run_id: Vec<u8> = tx
                .prepare_cached("SELECT run_id FROM fanfare_runs WHERE id = ?1")
                .and_then(|mut s| s.query_row([key], |r| r.get(0)))
                .map_err(&err)?;
            let why = cancel::with_batch(uuid_from(&run_id)?, reason);
            run(
                "UPDATE fanfare_runs SET status = 5, hold = NULL, reason = ?3, finished_at = ?4 \
                 WHERE batch = ?1 AND id != ?2 AND status IN (0, 4)",
                &[&batch, &key, &why, &(self.now as i64)],
            )?;
        }
        Ok(())
    }
}
