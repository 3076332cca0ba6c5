//! Flow control on PostgreSQL, for every process of an app at once: the rules' states
//! are rows of `fanfare_flow`, locked (always in key order, so two processes never wait
//! for each other in a circle) by the transaction that applies the rules; held runs
//! (status 4) wait in the indexes of their queues. The rules are `flow::rules`'.
//!
//! A run's slots are taken in the claim's transaction and given back in the transaction
//! that records its outcome, guarded by its `flow` flag so that they are given back
//! exactly once. A process that dies holding slots leaves them on its runs, which are
//! claimed again when their leases expire and give the slots back when they end.

use super::*;
use crate::flow::rules::{self, Place, RunFlow, Stage, States, Verdict};
use std::collections::{BTreeSet, HashSet};

/// A run held back by flow control.
pub(super) const HELD: i16 = 4;

/// A claimed run of a flow-controlled function, before the gate.
pub(super) struct Gated {
    pub key: i64,
    pub function: u32,
    pub place: RunFlow,
    pub event: Arc<Envelope>,
}

/// Applies the gate's verdicts to claimed runs; those that do not go are no longer
/// running, and their attempt does not count.
const GATE: &str = update_mirrored!(
    "r.",
    "
UPDATE fanfare_runs r SET status = u.status, hold = u.hold, due_at = coalesce(u.due, r.due_at),
    reason = u.reason, flow = u.flow, ckey = u.ckey, rank = u.rank, batch = u.batch,
    finished_at = CASE WHEN u.status = 2 THEN fanfare_now() END,
    attempts = r.attempts - CASE WHEN u.status = 1 THEN 0 ELSE 1 END,
    lease_until = CASE WHEN u.status = 1 THEN r.lease_until END,
    owner = CASE WHEN u.status = 1 THEN r.owner END
FROM unnest($1::bigint[], $2::smallint[], $3::smallint[], $4::bigint[], $5::text[],
            $6::smallint[], $7::text[], $8::bigint[], $9::bigint[])
    AS u(id, status, hold, due, reason, flow, ckey, rank, batch)
WHERE r.id = u.id"
);

/// The first held runs of a function's key (stage 1), in rank order, per
/// (`$2` function, `$3` key, `$4` count).
pub(crate) const HELD_BY_KEY: &str = "
SELECT x.f, x.key, h.id FROM unnest($2::text[], $3::text[], $4::bigint[]) AS x(f, key, n)
CROSS JOIN LATERAL (
    SELECT id FROM fanfare_runs
    WHERE app = $1 AND function_id = x.f AND list = 4 AND hold = 1 AND ckey = x.key
    ORDER BY rank, id LIMIT x.n FOR UPDATE) h";

/// The first held runs of a function waiting for its own slot (stage 2), in rank order.
pub(crate) const HELD_BY_FUNCTION: &str = "
SELECT x.f, '', h.id FROM unnest($2::text[], $3::bigint[]) AS x(f, n)
CROSS JOIN LATERAL (
    SELECT id FROM fanfare_runs
    WHERE app = $1 AND function_id = x.f AND list = 4 AND hold = 2
    ORDER BY rank, id LIMIT x.n FOR UPDATE) h";

/// The runs of batches (`$1`), with their events (put in order by the caller).
pub(crate) const BATCH_EVENTS: &str = "
SELECT r.batch, e.id, e.name, e.data, e.ts, r.id, e.traceparent FROM fanfare_runs r
JOIN LATERAL (SELECT id, name, data, ts, traceparent FROM fanfare_events WHERE id = r.event_id OFFSET 0) e ON true
WHERE r.batch = ANY($1)";

/// Finishes the other runs of the batches that runs `$1` executed and finished (or that
/// were cancelled).
pub(crate) const FINISH_BATCHES: &str = concat!(
    "
WITH r AS (
    SELECT id, batch, status, last_error, run_id, finished_at, reason FROM fanfare_runs
    WHERE id = ANY($1) AND status IN (2, 3, 5) AND flow & 16::smallint <> 0),
f AS (
UPDATE fanfare_runs m SET status = r.status, last_error = r.last_error,
    reason = CASE WHEN r.status = 5
        THEN 'cancelled with the batch of run ' || r.run_id || ': ' || r.reason
        ELSE 'ran in the batch of run ' || r.run_id END,
    finished_at = r.finished_at
FROM r
WHERE m.batch = ANY(ARRAY(SELECT batch FROM r)) AND m.batch = r.batch AND m.id <> r.id
RETURNING ",
    mirrored!("m."),
    "), ",
    mirror!("f"),
    " SELECT 1 FROM f"
);

impl Shared {
    /// Passes claimed runs through the gate, in the claim's transaction; returns the
    /// places of those that may execute now, by key (the others are skipped, delayed
    /// or held), and the functions of the skipped ones.
    pub(super) async fn gate(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        runs: Vec<Gated>,
        now_ms: u64,
    ) -> Result<(HashMap<i64, RunFlow>, Vec<u32>)> {
        let err = |e| self.error("cannot apply flow control", e);
        // In arrival order (a claim returns its runs in any order): the last event of a
        // burst, the order of a throttle and of a batch depend on it.
        let mut runs = runs;
        runs.sort_by_key(|r| (r.event.ts, r.key));
        let mut gated = Vec::with_capacity(runs.len());
        let mut slots = BTreeSet::new();
        let mut going = HashMap::new();
        for mut run in runs {
            let def = self.defs[run.function as usize];
            let Some(flow) = def.flow() else { continue };
            if rules::settled(&run.place) {
                // Its row already says so, and it stays running, as the claim marked it.
                going.insert(run.key, run.place);
                continue;
            }
            let keys = rules::prepare(flow, &mut run.place, &run.event, run.key);
            slots.extend(rules::slots(def.id(), flow, &run.place, keys.as_ref()));
            gated.push((run, def.id(), flow, keys));
        }
        let mut skipped = Vec::new();
        if gated.is_empty() {
            return Ok((going, skipped));
        }
        let mut states = self.lock_states(tx, slots).await?;
        let mut u = GateRows::default();
        for (mut run, function, flow, keys) in gated {
            let verdict = rules::admit(
                function,
                flow,
                run.key,
                &mut run.place,
                keys.as_ref(),
                now_ms,
                &mut states,
            );
            // The claim marked it running: it stays so only if it goes.
            let status = match &verdict {
                Verdict::Go => 1,
                Verdict::Delay(..) => 0,
                Verdict::Skip(_) => 2,
                Verdict::Hold(_) => HELD,
            };
            let (hold, due, reason) = verdict.place(flow, run.place.ckey.as_deref());
            let (hold, due) = (hold.map(|s| s as i16), due.map(|d| d as i64));
            u.ids.push(run.key);
            u.statuses.push(status);
            u.holds.push(hold);
            u.dues.push(due);
            u.reasons.push(reason);
            u.flags.push(run.place.flags);
            u.ckeys.push(run.place.ckey.clone());
            u.ranks.push(run.place.rank);
            u.batches.push(run.place.batch);
            match verdict {
                Verdict::Go => {
                    going.insert(run.key, run.place);
                }
                Verdict::Skip(_) => skipped.push(run.function),
                _ => {}
            }
        }
        self.save_states(tx, &states, now_ms).await?;
        let stmt = tx.prepare_cached(GATE).await.map_err(err)?;
        tx.execute(
            &stmt,
            &[
                &u.ids,
                &u.statuses,
                &u.holds,
                &u.dues,
                &u.reasons,
                &u.flags,
                &u.ckeys,
                &u.ranks,
                &u.batches,
            ],
        )
        .await
        .map_err(err)?;
        Ok((going, skipped))
    }

    /// The events of batches, in the order their runs were stored, by batch.
    pub(super) async fn batch_events(
        &self,
        client: &Object,
        batches: &[i64],
    ) -> Result<HashMap<i64, Vec<Arc<Envelope>>>> {
        let rows = client
            .query(BATCH_EVENTS, &[&batches])
            .await
            .map_err(|e| self.error("cannot read a batch's events", e))?;
        // In the order the runs were stored: the order their events arrived in.
        let mut rows = rows;
        rows.sort_by_key(|row| (row.get::<_, i64>(0), row.get::<_, i64>(5)));
        let mut events: HashMap<i64, Vec<Arc<Envelope>>> = HashMap::new();
        for row in rows {
            let event = event_at(&row, 1).with_trace(row.get(6));
            events.entry(row.get(0)).or_default().push(Arc::new(event));
        }
        Ok(events)
    }

    /// Finishes the other runs of batches whose runs were just recorded finished (in that
    /// transaction), as those runs finished.
    pub(super) async fn finish_batches(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        recorded: &[i64],
    ) -> Result<()> {
        tx.execute(FINISH_BATCHES, &[&recorded])
            .await
            .map_err(|e| self.error("cannot finish a batch", e))?;
        Ok(())
    }

    /// Gives back the slots of runs whose outcome was just recorded (in that
    /// transaction), and passes them on to the first held runs. Returns whether some
    /// held run became ready.
    pub(super) async fn free_slots(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        runs: &[i64],
        now_ms: u64,
    ) -> Result<bool> {
        let err = |e| self.error("cannot release concurrency slots", e);
        let rows = tx
            .query(
                "UPDATE fanfare_runs SET flow = flow & ~2::smallint \
                 WHERE id = ANY($1) AND flow & 2::smallint <> 0 RETURNING function_id, ckey",
                &[&runs],
            )
            .await
            .map_err(err)?;
        // What was released, per function and key.
        let mut released: Vec<(&'static FunctionDef, Option<String>)> = Vec::new();
        for row in rows {
            let function: String = row.get(0);
            if let Some(&i) = self.index.get(&function) {
                released.push((self.defs[i as usize], row.get(1)));
            }
        }
        if released.is_empty() {
            return Ok(false);
        }
        let mut slots = BTreeSet::new();
        for (def, ckey) in &released {
            if let Some(flow) = def.flow() {
                slots.extend(rules::concurrency_slots(def.id(), flow, ckey.as_deref()));
            }
        }
        let mut states = self.lock_states(tx, slots).await?;
        for (def, ckey) in &released {
            if let Some(flow) = def.flow() {
                rules::release(def.id(), flow, ckey.as_deref(), &mut states);
            }
        }
        self.refill(tx, &released, &mut states, now_ms).await
    }

    /// Passes slots released (per function and key) on to the first held runs, and
    /// writes the states (locked, holding the functions' concurrency states) back.
    /// Returns whether some held run became ready.
    pub(super) async fn refill(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        released: &[(&'static FunctionDef, Option<String>)],
        states: &mut States,
        now_ms: u64,
    ) -> Result<bool> {
        let err = |e| self.error("cannot release concurrency slots", e);
        let states = &mut *states;
        // The first runs of every queue a slot was freed in, as many as may go.
        let mut by_key: (Vec<&str>, Vec<String>, Vec<i64>) = Default::default();
        let mut by_function: (Vec<&str>, Vec<i64>) = Default::default();
        let mut asked = HashSet::new();
        for (def, ckey) in released {
            let Some(flow) = def.flow() else { continue };
            let key = ckey.clone().unwrap_or_default();
            if flow.keyed_concurrency.is_some() && asked.insert((def.id(), Stage::Key, key.clone()))
            {
                let n = rules::room(def.id(), flow, Stage::Key, ckey.as_deref(), states);
                by_key.0.push(def.id());
                by_key.1.push(key);
                by_key.2.push(n as i64);
            }
            if flow.concurrency.is_some()
                && asked.insert((def.id(), Stage::Function, String::new()))
            {
                let n = rules::room(def.id(), flow, Stage::Function, None, states);
                by_function.0.push(def.id());
                by_function.1.push(n as i64);
            }
        }
        let mut queues: HashMap<(&str, Stage, String), std::collections::VecDeque<i64>> =
            HashMap::new();
        let stmt = tx.prepare_cached(HELD_BY_KEY).await.map_err(err)?;
        for row in tx
            .query(&stmt, &[&self.app, &by_key.0, &by_key.1, &by_key.2])
            .await
            .map_err(err)?
        {
            let f: String = row.get(0);
            let Some(&i) = self.index.get(&f) else {
                continue;
            };
            let key = (
                self.defs[i as usize].id(),
                Stage::Key,
                row.get::<_, String>(1),
            );
            queues.entry(key).or_default().push_back(row.get(2));
        }
        let stmt = tx.prepare_cached(HELD_BY_FUNCTION).await.map_err(err)?;
        for row in tx
            .query(&stmt, &[&self.app, &by_function.0, &by_function.1])
            .await
            .map_err(err)?
        {
            let f: String = row.get(0);
            let Some(&i) = self.index.get(&f) else {
                continue;
            };
            let key = (self.defs[i as usize].id(), Stage::Function, String::new());
            queues.entry(key).or_default().push_back(row.get(2));
        }
        let (mut ids, mut ready, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
        for (def, ckey) in released {
            let Some(flow) = def.flow() else { continue };
            let function = def.id();
            let placed = rules::refill(function, flow, ckey.as_deref(), states, |stage, n| {
                let key = match stage {
                    Stage::Key => ckey.clone().unwrap_or_default(),
                    Stage::Function | Stage::Batch => String::new(),
                };
                queues
                    .get_mut(&(function, stage, key))
                    .map(|q| q.drain(..n.min(q.len())).collect())
                    .unwrap_or_default()
            });
            for (run, place) in placed {
                ids.push(run);
                ready.push(place == Place::Ready);
                reasons.push(match place {
                    Place::Ready => None,
                    Place::Function => Some(rules::held(flow, Stage::Function, None)),
                });
            }
        }
        self.save_states(tx, states, now_ms).await?;
        if !ids.is_empty() {
            tx.execute(
                update_mirrored!(
                    "r.",
                    "UPDATE fanfare_runs r SET status = CASE WHEN u.ready THEN 0 ELSE 4 END, \
                     hold = CASE WHEN u.ready THEN NULL ELSE 2 END, \
                     flow = r.flow | CASE WHEN u.ready THEN 2 ELSE 0 END, reason = u.reason \
                     FROM unnest($1::bigint[], $2::bool[], $3::text[]) AS u(id, ready, reason) \
                     WHERE r.id = u.id"
                ),
                &[&ids, &ready, &reasons],
            )
            .await
            .map_err(err)?;
        }
        Ok(ready.iter().any(|&r| r))
    }
}

#[derive(Default)]
struct GateRows {
    ids: Vec<i64>,
    statuses: Vec<i16>,
    holds: Vec<Option<i16>>,
    dues: Vec<Option<i64>>,
    reasons: Vec<Option<String>>,
    flags: Vec<i16>,
    ckeys: Vec<Option<String>>,
    ranks: Vec<i64>,
    batches: Vec<Option<i64>>,
}
