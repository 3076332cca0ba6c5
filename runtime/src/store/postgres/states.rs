//! Flow control's states on PostgreSQL: rows of `fanfare_flow`, taken and locked in key
//! order inside the transaction that applies the rules, then written back (those that
//! say nothing a fresh one would not are deleted, so the table holds only keys in use).

use super::*;
use crate::flow::rules::{self, Slot, States};
use std::collections::BTreeSet;

/// Takes (creating them) and locks the states of `slots`, in key order.
const LOCK_STATES: &str = "
INSERT INTO fanfare_flow (app, function_id, kind, key, tat, active)
SELECT $1, f, k, key, 0, 0 FROM unnest($2::text[], $3::smallint[], $4::text[]) AS x(f, k, key)
ORDER BY f, k, key
ON CONFLICT (app, function_id, kind, key) DO UPDATE SET tat = fanfare_flow.tat
RETURNING function_id, kind, key, tat, active, run, since";

impl Shared {
    /// Takes and locks the states of `slots` (created fresh where missing).
    pub(super) async fn lock_states(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        slots: BTreeSet<Slot>,
    ) -> Result<States> {
        let err = |e| self.error("cannot lock flow-control state", e);
        let mut states = States::new();
        if slots.is_empty() {
            return Ok(states);
        }
        let functions: Vec<&str> = slots.iter().map(|s| s.function).collect();
        let kinds: Vec<i16> = slots.iter().map(|s| s.kind as i16).collect();
        let keys: Vec<&str> = slots.iter().map(|s| s.key.as_str()).collect();
        let stmt = tx.prepare_cached(LOCK_STATES).await.map_err(err)?;
        let rows = tx
            .query(&stmt, &[&self.app, &functions, &kinds, &keys])
            .await
            .map_err(err)?;
        let mut found: HashMap<(String, i16, String), rules::State> = HashMap::new();
        for row in rows {
            found.insert(
                (row.get(0), row.get(1), row.get(2)),
                rules::State {
                    tat_us: row.get(3),
                    active: row.get(4),
                    run: row.get(5),
                    since: row.get(6),
                },
            );
        }
        for slot in slots {
            let state = found
                .remove(&(slot.function.to_owned(), slot.kind as i16, slot.key.clone()))
                .unwrap_or_default();
            states.insert(slot, state);
        }
        Ok(states)
    }

    /// Writes locked states back; those that say nothing a fresh one would not are
    /// deleted, so the table holds only keys in use.
    pub(super) async fn save_states(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        states: &States,
        now_ms: u64,
    ) -> Result<()> {
        let err = |e| self.error("cannot write flow-control state", e);
        let (mut keep, mut drop) = (StateRows::default(), StateRows::default());
        for (slot, state) in states.iter() {
            let rows = if state.is_idle(now_ms) {
                &mut drop
            } else {
                &mut keep
            };
            rows.functions.push(slot.function);
            rows.kinds.push(slot.kind as i16);
            rows.keys.push(slot.key);
            rows.tats.push(state.tat_us);
            rows.actives.push(state.active);
            rows.runs.push(state.run);
            rows.sinces.push(state.since);
        }
        if !keep.functions.is_empty() {
            tx.execute(
                "UPDATE fanfare_flow s SET tat = u.tat, active = u.active, run = u.run, since = u.since \
                 FROM unnest($2::text[], $3::smallint[], $4::text[], $5::bigint[], $6::bigint[], \
                             $7::bigint[], $8::bigint[]) \
                     AS u(f, k, key, tat, active, run, since) \
                 WHERE s.app = $1 AND s.function_id = u.f AND s.kind = u.k AND s.key = u.key",
                &[
                    &self.app,
                    &keep.functions,
                    &keep.kinds,
                    &keep.keys,
                    &keep.tats,
                    &keep.actives,
                    &keep.runs,
                    &keep.sinces,
                ],
            )
            .await
            .map_err(err)?;
        }
        if !drop.functions.is_empty() {
            tx.execute(
                "DELETE FROM fanfare_flow s USING unnest($2::text[], $3::smallint[], $4::text[]) \
                     AS u(f, k, key) \
                 WHERE s.app = $1 AND s.function_id = u.f AND s.kind = u.k AND s.key = u.key",
                &[&self.app, &drop.functions, &drop.kinds, &drop.keys],
            )
            .await
            .map_err(err)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct StateRows {
    functions: Vec<&'static str>,
    kinds: Vec<i16>,
    keys: Vec<String>,
    tats: Vec<i64>,
    actives: Vec<i64>,
    runs: Vec<i64>,
    sinces: Vec<i64>,
}
