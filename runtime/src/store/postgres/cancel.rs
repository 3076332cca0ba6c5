//! `Store::cancel`, for a run of any app: one not executing ends at once, giving up its
//! wait and its flow-control place (`flow::cancel`); a running one is marked (`cancel`),
//! for the process executing it to see at its next step, outcome or lease renewal.

use super::*;
use crate::flow::cancel;
use crate::flow::rules::{self, flags, RunFlow, Stage};
use std::collections::BTreeSet;

/// A run by its id, locked, with its event (looked up by key, as a claim does).
pub(crate) const FIND: &str = "
SELECT r.id, r.status, r.app, r.function_id, r.flow, r.ckey, r.rank, r.batch, r.hold,
    e.id, e.name, e.data, e.ts
FROM fanfare_runs r,
    LATERAL (SELECT id, name, data, ts FROM fanfare_events WHERE id = r.event_id OFFSET 0) e
WHERE r.run_id = $1
FOR UPDATE OF r";

impl Shared {
    pub(super) async fn cancel(&self, run: RunId, reason: String) -> Result<Cancel> {
        let err = |e| self.error("cannot cancel a run", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let Some(row) = tx.query_opt(FIND, &[&run.as_uuid()]).await.map_err(err)? else {
            return Ok(Cancel::Unknown);
        };
        let key: i64 = row.get(0);
        let status: i16 = row.get(1);
        let place = RunFlow {
            flags: row.get(4),
            ckey: row.get(5),
            rank: row.get(6),
            batch: row.get(7),
            ..RunFlow::default()
        };
        let held = if status == flow::HELD {
            row.get::<_, Option<i16>>(8)
                .and_then(|h| cancel::stage(h.into()))
        } else {
            None
        };
        let event = event_at(&row, 9);
        // This app's function, whose rules this process has.
        let def = (row.get::<_, &str>(2) == self.app)
            .then(|| self.index.get(row.get::<_, &str>(3)))
            .flatten()
            .map(|&i| self.defs[i as usize]);
        let mark = "UPDATE fanfare_runs SET cancel = coalesce(cancel, $2) WHERE id = $1";
        let outcome = match status {
            2 if place.flags & flags::SKIPPED != 0 => Cancel::Finished(RunStatus::Skipped),
            2 => Cancel::Finished(RunStatus::Completed),
            3 => Cancel::Finished(RunStatus::Failed),
            5 => Cancel::Finished(RunStatus::Cancelled),
            1 => {
                tx.execute(mark, &[&key, &reason]).await.map_err(err)?;
                Cancel::Marked(key as RunKey)
            }
            _ if def.is_none() && cancel::involved(&place, held.is_some()) => {
                // Another app's flow control: one of its processes cancels it.
                tx.execute(mark, &[&key, &reason]).await.map_err(err)?;
                Cancel::Pending
            }
            _ => {
                let now_ms: i64 = tx
                    .query_one(
                        concat!(
                            "WITH r AS (
                                 UPDATE fanfare_runs SET status = 5, sleeping = false,
                                     waiting = false, hold = NULL, reason = $2, cancel = NULL,
                                     finished_at = fanfare_now()
                                 WHERE id = $1 RETURNING ",
                            mirrored!(""),
                            "),
                             ",
                            mirror!("r"),
                            "
                             SELECT fanfare_now() FROM r"
                        ),
                        &[&key, &reason],
                    )
                    .await
                    .map_err(err)?
                    .get(0);
                tx.execute("DELETE FROM fanfare_waits WHERE run = $1", &[&key])
                    .await
                    .map_err(err)?;
                if let Some((def, flow)) = def.and_then(|d| Some((d, d.flow()?))) {
                    let w = (key, place, held, now_ms as u64);
                    self.withdraw(&tx, def, flow, w, &event, &reason).await?;
                    // Held runs may have been promoted, or a batch's runs queued again.
                    tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
                        .await
                        .map_err(err)?;
                }
                let invocation = (event.name == crate::function::INVOKE_EVENT).then_some(event.id);
                let function = (row.get::<_, &str>(2) == self.app)
                    .then(|| self.index.get(row.get::<_, &str>(3)).copied())
                    .flatten();
                Cancel::Cancelled {
                    invocation,
                    function,
                }
            }
        };
        tx.commit().await.map_err(err)?;
        Ok(outcome)
    }

    /// Gives up the flow-control place of run `key` (with its place, held stage, and the
    /// time), cancelled while not executing.
    async fn withdraw(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        def: &'static FunctionDef,
        flow: &'static crate::flow::Flow,
        (key, place, held, now_ms): (i64, RunFlow, Option<Stage>, u64),
        event: &Envelope,
        reason: &str,
    ) -> Result<()> {
        let err = |e| self.error("cannot cancel a run", e);
        let function = def.id();
        let keys = cancel::keys(flow, &place, event);
        let mut slots: BTreeSet<_> = cancel::slots(function, flow, &place, held, keys.as_ref())
            .into_iter()
            .collect();
        slots.extend(rules::concurrency_slots(
            function,
            flow,
            place.ckey.as_deref(),
        ));
        let mut states = self.lock_states(tx, slots).await?;
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
            let released = [(def, place.ckey.clone())];
            self.refill(tx, &released, &mut states, now_ms).await?;
        } else {
            self.save_states(tx, &states, now_ms).await?;
        }
        if w.release {
            self.free_slots(tx, &[key], now_ms).await?;
        }
        if w.leave.is_some() || w.dissolve.is_some() {
            tx.execute(
                "UPDATE fanfare_runs SET batch = NULL WHERE id = $1",
                &[&key],
            )
            .await
            .map_err(err)?;
        }
        if let Some(batch) = w.dissolve {
            // Back to the gate, where they form a new batch.
            tx.execute(
                update_mirrored!(
                    "UPDATE fanfare_runs SET flow = flow & ~8::smallint, batch = NULL, \
                     status = 0, hold = NULL, reason = NULL, due_at = fanfare_now() \
                     WHERE batch = $1 AND status IN (0, 4)"
                ),
                &[&batch],
            )
            .await
            .map_err(err)?;
        }
        if let Some(batch) = w.cancel_batch {
            let run_id: Uuid = tx
                .query_one("SELECT run_id FROM fanfare_runs WHERE id = $1", &[&key])
                .await
                .map_err(err)?
                .get(0);
            let why = cancel::with_batch(run_id, reason);
            tx.execute(
                update_mirrored!(
                    "UPDATE fanfare_runs SET status = 5, hold = NULL, reason = $3, \
                     finished_at = fanfare_now() \
                     WHERE batch = $1 AND id <> $2 AND status IN (0, 4)"
                ),
                &[&batch, &key, &why],
            )
            .await
            .map_err(err)?;
        }
        Ok(())
    }
}
