//! Sends: group-committed events with one run per subscribed function of every app,
//! and the waits they resolve.

use super::*;

/// Sends committed together at most.
pub(super) const MAX_BATCH: usize = 1024;

/// Parallel committers of sends: while one waits for its commit, the other gathers the
/// next batch. More contend for the database's CPUs with the claims and outcomes of
/// every process (four instead of two: 7–9 % fewer runs/s in `bench`, on 2 cores).
pub(super) const COMMITTERS: usize = 2;

/// Stores events (`$1`..`$4`, `$8` their trace contexts) with one run per subscribed
/// function of every app, due at
/// `$7` at the earliest (a delayed send; 0 for now), and resolves the waits they match;
/// returns per event the runs created and how many are this process's (`$5` app, `$6`
/// functions).
pub(crate) const SEND: &str = concat!(
    "
WITH e AS (
    INSERT INTO fanfare_events (id, name, data, ts, traceparent)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $8::text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id, name, data),
r AS (
    INSERT INTO fanfare_runs (run_id, event_id, app, function_id, due_at)
    SELECT fanfare_run_id(fanfare_now()), e.id, f.app, f.function_id, greatest(fanfare_now(), d.due)
    FROM e JOIN unnest($1::uuid[], $7::bigint[]) AS d(id, due) ON d.id = e.id
    JOIN fanfare_functions f ON f.trigger = e.name
    RETURNING event_id, ",
    queued!(),
    "),
q AS (",
    enqueue!("r"),
    "),
-- The waits this send resolves, each found through the index: those
-- for any event of the name, and per field waits match on, those whose
-- value is the event's.
w_any AS (
    DELETE FROM fanfare_waits w USING e
    WHERE w.event = e.name AND w.field IS NULL
    RETURNING w.run, w.seq, w.step_id, e.data),
w_field AS (
    DELETE FROM fanfare_waits w USING e JOIN fanfare_wait_fields f ON f.event = e.name
    WHERE w.event = e.name AND w.field = f.field AND w.value = (e.data::jsonb -> f.field)
    RETURNING w.run, w.seq, w.step_id, e.data),
w AS (SELECT * FROM w_any UNION ALL SELECT * FROM w_field),
s AS (
    INSERT INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at)
    SELECT run, seq, step_id, data, fanfare_now(), fanfare_now() FROM w
    ON CONFLICT (run, seq) DO NOTHING),
u AS (
    UPDATE fanfare_runs x SET steps = greatest(x.steps, w.seq + 1), waiting = false,
        due_at = CASE WHEN x.status = 0 THEN fanfare_now() ELSE x.due_at END
    FROM w WHERE x.id = w.run
    RETURNING ",
    mirrored!("x."),
    "),
uq AS (",
    mirror!("u"),
    ")
SELECT event_id, count(*), count(*) FILTER (WHERE app = $5 AND function_id = ANY($6))
FROM r GROUP BY event_id"
);

/// A send waiting for its commit, and where to answer.
pub(super) type PendingSend = (Envelope, oneshot::Sender<Result<usize>>);

impl Shared {
    /// Takes the sends waiting and commits them in one transaction.
    pub(super) async fn commit_sends(
        self: Arc<Self>,
        rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<PendingSend>>>,
        max: usize,
        wake: Arc<Notify>,
    ) {
        let mut batch = Vec::with_capacity(max);
        loop {
            {
                let mut rx = rx.lock().await;
                if rx.recv_many(&mut batch, max).await == 0 {
                    return;
                }
            }
            let events: Vec<Envelope> = Vec::with_capacity(batch.len());
            let (events, replies): (Vec<Envelope>, Vec<_>) =
                batch
                    .drain(..)
                    .fold((events, Vec::new()), |(mut e, mut r), (ev, tx)| {
                        e.push(ev);
                        r.push(tx);
                        (e, r)
                    });
            match self.insert(events).await {
                Ok(counts) => {
                    if counts.iter().any(|&(_, local)| local > 0) {
                        wake.notify_one();
                    }
                    for (reply, (n, _)) in replies.into_iter().zip(counts) {
                        let _ = reply.send(Ok(n));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(Error::new(ErrorKind::Store, &msg)));
                    }
                }
            }
        }
    }

    /// Stores events and their runs (one per subscribed function of any app) in one
    /// transaction; returns, per event, the runs created and how many are local.
    pub(super) async fn insert(&self, events: Vec<Envelope>) -> Result<Vec<(usize, usize)>> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.id.as_uuid()).collect();
        let names: Vec<&str> = events.iter().map(|e| &*e.name).collect();
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        let ts: Vec<i64> = events.iter().map(|e| e.ts as i64).collect();
        let traces: Vec<Option<&str>> = events
            .iter()
            .map(|e| e.trace.as_ref().map(|t| t.as_str()))
            .collect();
        let dues: Vec<i64> = events
            .iter()
            .map(|e| e.not_before.unwrap_or(0) as i64)
            .collect();
        let err = |e| self.error("cannot store events", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let stmt = tx.prepare_cached(SEND).await.map_err(err)?;
        // Sends hold a shared lock per event name while they look for waits; a wait
        // being registered holds it exclusively, so neither misses the other. Both
        // statements go out in one round trip.
        // Both statements are prepared, so that pipelining keeps their order (a statement
        // given as text would be prepared first, letting the insert overtake the lock).
        let lock_stmt = tx
            .prepare_cached(
                "SELECT count(pg_advisory_xact_lock_shared(hashtext('fanfare:' || n))) \
                 FROM (SELECT DISTINCT unnest($1::text[])) x(n)",
            )
            .await
            .map_err(err)?;
        let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&names];
        let lock = tx.execute(&lock_stmt, &lock_params);
        let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &ids,
            &names,
            &data,
            &ts,
            &self.app,
            &self.functions,
            &dues,
            &traces,
        ];
        let insert = tx.query(&stmt, &insert_params);
        let (_, rows) = tokio::try_join!(lock, insert).map_err(err)?;
        // Wakes every worker: for the new runs, and for waits this send resolved.
        tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;

        // Per event: runs created, and how many of them this process may claim.
        let counts: HashMap<Uuid, (usize, usize)> = rows
            .iter()
            .map(|row| {
                let all: i64 = row.get(1);
                let local: i64 = row.get(2);
                (row.get(0), (all as usize, local as usize))
            })
            .collect();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        Ok(events
            .into_iter()
            .map(|event| {
                let c = counts.get(&event.id.as_uuid()).copied().unwrap_or_default();
                cache.keep(Arc::new(event), c.1);
                c
            })
            .collect())
    }

    pub(super) async fn insert_to(&self, event: Envelope, function: u32) -> Result<usize> {
        let err = |e| self.error("cannot store events", e);
        let Some(function) = self.functions.get(function as usize) else {
            return Ok(0);
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let n = tx
            .execute(
                concat!(
                    "WITH e AS (
                         INSERT INTO fanfare_events (id, name, data, ts, traceparent)
                         VALUES ($1, $2, $3, $4, $7)
                         ON CONFLICT (id) DO NOTHING
                         RETURNING id),
                     r AS (
                         INSERT INTO fanfare_runs (run_id, event_id, app, function_id, due_at)
                         SELECT fanfare_run_id(fanfare_now()), e.id, $5, $6, fanfare_now() FROM e
                         RETURNING ",
                    queued!(),
                    ") ",
                    enqueue!("r")
                ),
                &[
                    &event.id.as_uuid(),
                    &&*event.name,
                    &event.data,
                    &(event.ts as i64),
                    &self.app,
                    function,
                    &event.trace.as_ref().map(|t| t.as_str()),
                ],
            )
            .await
            .map_err(err)?;
        tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(n as usize)
    }
}
