//! Claims: due runs of this process's functions, under a lease, with their events and
//! completed steps.

use super::*;
use crate::flow::rules;

/// Claims up to `$5` due runs of this app's functions `$2`, earliest first (ties in the
/// order the runs were stored), under a lease (`$3` ms) for this process (`$4`), with
/// their events. The queue's index `(app, due_at, run)` gives the runs in order whatever
/// the functions, so the scan stops at the limit; each run's row is locked, skipping
/// those another claim holds, and read again if it changed meanwhile. Only the run's
/// row is locked, so only the conditions on it are checked again on its latest version:
/// the due time is checked on the run as well as on the queue's row, since a claim that
/// committed meanwhile can have put the run back with a later one (a debounce, a
/// throttle) — the queue's row as first read would let it through early. Rows are then
/// reached by key (`= ANY(ARRAY(…))`, a lateral lookup), never by a join the planner
/// could turn into a scan of the table. The claim changes no indexed column of runs (a
/// heap-only update); the queue's row mirrors it.
pub(crate) const CLAIM: &str = concat!(
    "
WITH c AS (
    UPDATE fanfare_runs r
    SET status = 1, attempts = r.attempts + 1, lease_until = fanfare_now() + $3, owner = $4
    WHERE r.id = ANY(ARRAY(
        SELECT x.id FROM fanfare_queue q JOIN fanfare_runs x ON x.id = q.run
        WHERE q.app = $1 AND q.function_id = ANY($2)
          AND q.state = 0 AND q.due_at <= fanfare_now()
          AND x.status = 0 AND x.due_at <= fanfare_now()
        ORDER BY q.due_at, q.run
        LIMIT $5
        FOR UPDATE OF x SKIP LOCKED))
    RETURNING r.id, r.run_id, r.event_id, r.function_id, r.attempts, r.steps, r.flow, r.ckey, r.rank,
        r.batch, r.cancel, r.status, r.due_at, r.lease_until, r.finished_at),
",
    mirror_unfinished!("c"),
    "
SELECT c.id, c.run_id, c.event_id, c.function_id, c.attempts, e.name, e.data, e.ts, c.steps,
    c.flow, c.ckey, c.rank, fanfare_now(), c.batch, c.cancel, e.traceparent
FROM c, LATERAL (SELECT name, data, ts, traceparent FROM fanfare_events WHERE id = c.event_id OFFSET 0) e"
);

/// How long until the earliest queued run of this app's functions is due (ms).
pub(crate) const NEXT_DUE: &str = "SELECT min(due_at) - fanfare_now() FROM fanfare_queue \
    WHERE app = $1 AND function_id = ANY($2) AND state = 0";

impl Shared {
    pub(super) async fn claim(&self, max: usize) -> Result<Claim> {
        let err = |e| self.error("cannot claim runs", e);
        let mut client = self.client().await?;
        let lease = crate::store::sql_millis(self.lease);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &self.app,
            &self.functions,
            &lease,
            &self.owner,
            &(max as i64),
        ];
        let mut stopped = 0;
        let mut skipped = Vec::new();
        // Runs that execute a batch, with the batch.
        let mut runners: Vec<(i64, i64)> = Vec::new();
        let (mut runs, with_steps) = if self.flow {
            // Flow control decides in the claim's transaction which claimed runs go.
            let tx = client.transaction().await.map_err(err)?;
            let stmt = tx.prepare_cached(CLAIM).await.map_err(err)?;
            let rows = tx.query(&stmt, &params).await.map_err(err)?;
            let now_ms = rows.first().map_or(0, |r| r.get::<_, i64>(12) as u64);
            let (mut runs, gated, mut with_steps) = self.claimed(rows);
            if !gated.is_empty() {
                let gated_keys: Vec<i64> = gated.iter().map(|g| g.key).collect();
                let going;
                (going, skipped) = self.gate(&tx, gated, now_ms).await?;
                let stops: std::collections::HashSet<i64> = gated_keys
                    .into_iter()
                    .filter(|k| !going.contains_key(k))
                    .collect();
                stopped = stops.len();
                runs.retain(|r| !stops.contains(&(r.key as i64)));
                with_steps.retain(|k| !stops.contains(k));
                runners = going
                    .into_iter()
                    .filter(|(_, p)| p.flags & rules::flags::RUNNER != 0)
                    .filter_map(|(k, p)| Some((k, p.batch?)))
                    .collect();
            }
            tx.commit().await.map_err(err)?;
            (runs, with_steps)
        } else {
            let stmt = client.prepare_cached(CLAIM).await.map_err(err)?;
            let rows = client.query(&stmt, &params).await.map_err(err)?;
            let (runs, _, with_steps) = self.claimed(rows);
            (runs, with_steps)
        };
        if !runners.is_empty() {
            let batches: Vec<i64> = runners.iter().map(|(_, b)| *b).collect();
            let mut events = self.batch_events(&client, &batches).await?;
            let runners: HashMap<i64, i64> = runners.into_iter().collect();
            for run in &mut runs {
                if let Some(batch) = runners.get(&(run.key as i64)) {
                    run.batch = events.remove(batch).unwrap_or_default();
                }
            }
        }
        if !with_steps.is_empty() {
            let mut steps = self.steps(&client, &with_steps).await?;
            for run in &mut runs {
                if let Some(done) = steps.remove(&(run.key as i64)) {
                    run.steps = done;
                }
            }
        }
        let next_due = if stopped > 0 {
            // Runs were held or delayed instead of claimed: others may be due.
            Some(Instant::now())
        } else if runs.is_empty() {
            let stmt = client.prepare_cached(NEXT_DUE).await.map_err(err)?;
            let wait: Option<i64> = client
                .query_one(&stmt, &[&self.app, &self.functions])
                .await
                .map_err(err)?
                .get(0);
            let wait = wait.map_or(POLL, |ms| Duration::from_millis(ms.max(0) as u64).min(POLL));
            Some(Instant::now() + wait)
        } else {
            None
        };
        Ok(Claim {
            runs,
            next_due,
            skipped,
        })
    }

    /// The runs of claimed rows, the flow-controlled ones among them that must pass the
    /// gate, and the keys of runs with steps to read.
    fn claimed(
        &self,
        rows: Vec<tokio_postgres::Row>,
    ) -> (Vec<ClaimedRun>, Vec<flow::Gated>, Vec<i64>) {
        let mut runs = Vec::with_capacity(rows.len());
        let mut gated = Vec::new();
        let mut with_steps = Vec::new();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            let function: &str = row.get(3);
            let Some(function) = self.index.get(function).copied() else {
                continue;
            };
            let event_id = EventId::from_uuid(row.get(2));
            let event = match cache.take(&event_id) {
                Some(env) => env,
                None => Arc::new(
                    Envelope::stored(
                        event_id,
                        row.get(5),
                        row.get(6),
                        row.get::<_, i64>(7) as u64,
                    )
                    .with_trace(row.get(15)),
                ),
            };
            let key = row.get::<_, i64>(0);
            if row.get::<_, i32>(8) > 0 {
                with_steps.push(key);
            }
            if self.defs[function as usize].flow().is_some() {
                gated.push(flow::Gated {
                    key,
                    function,
                    place: rules::RunFlow {
                        flags: row.get(9),
                        ckey: row.get(10),
                        rank: row.get(11),
                        batch: row.get(13),
                        ..rules::RunFlow::default()
                    },
                    event: Arc::clone(&event),
                });
            }
            runs.push(ClaimedRun {
                key: key as RunKey,
                run_id: RunId::from_uuid(row.get(1)),
                function,
                attempt: row.get::<_, i32>(4) as u32 - 1,
                event,
                steps: Vec::new(),
                batch: Vec::new(),
                cancel: row.get(14),
            });
        }
        (runs, gated, with_steps)
    }

    /// The completed steps of runs, by run, in order.
    pub(super) async fn steps(
        &self,
        client: &Object,
        runs: &[i64],
    ) -> Result<HashMap<i64, Vec<StepRecord>>> {
        self.by_run(
            client,
            "SELECT run, seq, step_id, output, started_at, completed_at FROM fanfare_steps \
             WHERE run = ANY($1) ORDER BY run, seq",
            runs,
            "cannot read steps",
            |row| StepRecord {
                seq: row.get::<_, i32>(1) as u32,
                id: row.get(2),
                output: row.get(3),
                started_ms: row.get::<_, i64>(4) as u64,
                completed_ms: row.get::<_, i64>(5) as u64,
            },
        )
        .await
    }

    /// The failed attempts of the runs `runs`, oldest first.
    pub(super) async fn failed_attempts(
        &self,
        client: &Object,
        runs: &[i64],
    ) -> Result<HashMap<i64, Vec<AttemptInfo>>> {
        self.by_run(
            client,
            "SELECT run, attempt, started_at, ended_at, error FROM fanfare_attempts \
             WHERE run = ANY($1) ORDER BY run, attempt",
            runs,
            "cannot read attempts",
            |row| AttemptInfo {
                attempt: row.get::<_, i32>(1) as u32,
                started_at_ms: row.get::<_, i64>(2) as u64,
                ended_at_ms: row.get::<_, i64>(3) as u64,
                error: row.get(4),
            },
        )
        .await
    }

    /// The rows `sql` selects for the runs `runs` (`$1`; the run id first in each row),
    /// made into items by `item` and grouped by run, in the query's order.
    async fn by_run<T>(
        &self,
        client: &Object,
        sql: &str,
        runs: &[i64],
        what: &str,
        item: impl Fn(&tokio_postgres::Row) -> T,
    ) -> Result<HashMap<i64, Vec<T>>> {
        let mut by_run: HashMap<i64, Vec<T>> = HashMap::new();
        if runs.is_empty() {
            return Ok(by_run);
        }
        let rows = client
            .query(sql, &[&runs])
            .await
            .map_err(|e| self.error(what, e))?;
        for row in rows {
            by_run.entry(row.get(0)).or_default().push(item(&row));
        }
        Ok(by_run)
    }
}
