//! Background work: the reaper of expired leases, the pruner (`retention`), and the
//! listener that wakes the dispatcher on `NOTIFY`.

use super::*;

/// Re-queues this app's runs whose lease expired, found through the queue's lease index
/// (and checked on the runs' rows, which the statement locks).
pub(crate) const REAP: &str = update_mirrored!(
    "UPDATE fanfare_runs SET status = 0, lease_until = NULL, owner = NULL \
    WHERE id = ANY(ARRAY(SELECT run FROM fanfare_queue \
                         WHERE app = $1 AND state = 1 AND lease_until < fanfare_now())) \
      AND status = 1 AND lease_until < fanfare_now()"
);

/// A walk over finished runs: those `$walk` selects (`id, event_id, finished_at`, past
/// their cut-off) in `(finished_at, id)` order from a mark (`$2`, `$3`), `$4` at most,
/// deleting each event (runs, their queue rows, steps, failed attempts) whose runs are all
/// past their keep: finished before the retention's cut-off (`$1` ago), and a failed one
/// before the failed retention's (`$5` ago); `$then` are more CTEs after those. Returns
/// the runs read and the last one.
macro_rules! prune_walk {
    ($walk:literal, $then:literal) => {
        concat!(
            "
WITH c AS (",
            $walk,
            "),
gone AS (
    DELETE FROM fanfare_events e WHERE e.id = ANY(ARRAY(SELECT event_id FROM c))
    AND NOT EXISTS (SELECT 1 FROM fanfare_runs r WHERE r.event_id = e.id
                    AND (r.status NOT IN (2, 3, 5) OR r.finished_at >= fanfare_now() - $1
                         OR (r.status = 3 AND r.finished_at >= fanfare_now() - $5)))
    RETURNING e.id),
runs AS (
    DELETE FROM fanfare_runs r WHERE r.event_id = ANY(ARRAY(SELECT id FROM gone))
    RETURNING r.id),
queue AS (
    DELETE FROM fanfare_queue q WHERE q.run = ANY(ARRAY(SELECT id FROM runs))),
steps AS (
    DELETE FROM fanfare_steps s WHERE s.run = ANY(ARRAY(SELECT id FROM runs))),
attempts AS (
    DELETE FROM fanfare_attempts a WHERE a.run = ANY(ARRAY(SELECT id FROM runs)))",
            $then,
            "
SELECT (SELECT count(*) FROM c), m.at, (SELECT max(id) FROM c WHERE finished_at = m.at)
FROM (SELECT max(finished_at) AS at FROM c) m"
        )
    };
}

/// Walks completed (and cancelled, and skipped) runs past the retention (see
/// `prune_walk!`), through `fanfare_finished`, whose rows it reads it deletes: an event
/// kept then (another of its runs is not past its keep) is deleted when the walk reads
/// the run that keeps it, or by the walk of failed runs. A row whose run is gone (its
/// event deleted by either walk) reads with no event.
pub(crate) const PRUNE_RUNS: &str = prune_walk!(
    "
    SELECT f.ctid AS walked, f.run AS id, r.event_id, f.finished_at FROM fanfare_finished f
        LEFT JOIN LATERAL (SELECT event_id FROM fanfare_runs WHERE id = f.run OFFSET 0) r ON true
    WHERE f.finished_at < fanfare_now() - $1 AND (f.finished_at, f.run) > ($2, $3)
    ORDER BY f.finished_at, f.run
    LIMIT $4",
    ",
finished AS (
    DELETE FROM fanfare_finished WHERE ctid = ANY(ARRAY(SELECT walked FROM c)))"
);

/// Walks failed runs past the failed retention (see `prune_walk!`), by `failed_at` (a
/// failed run's `finished_at`).
pub(crate) const PRUNE_FAILED: &str = prune_walk!(
    "
    SELECT id, event_id, failed_at AS finished_at FROM fanfare_runs
    WHERE failed_at < fanfare_now() - $5 AND (failed_at, id) > ($2, $3)
    ORDER BY failed_at, id
    LIMIT $4",
    ""
);

/// Walks events past the retention in `(ts, id)` order from a mark, deleting those
/// without runs. Returns the events read and the last one. The batch is read in index
/// order by itself (`MATERIALIZED`), and the retention applied to it after: with both
/// conditions in one scan, a planner without statistics on a new, fast-growing table
/// chose a bitmap scan and a sort of every event past the retention (the plan guard
/// caught it when events grew a column).
pub(crate) const PRUNE_EVENTS: &str = "
WITH s AS MATERIALIZED (
    SELECT id, ts FROM fanfare_events
    WHERE (ts, id) > ($2, $3)
    ORDER BY ts, id
    LIMIT $4),
c AS (SELECT id, ts FROM s WHERE ts < fanfare_now() - $1),
gone AS (
    DELETE FROM fanfare_events e
    WHERE e.id = ANY(ARRAY(SELECT id FROM c)) AND NOT EXISTS (SELECT 1 FROM fanfare_runs r WHERE r.event_id = e.id))
SELECT (SELECT count(*) FROM c), last.ts, last.id
FROM (SELECT 1) one
LEFT JOIN (SELECT ts, id FROM c ORDER BY ts DESC, id DESC LIMIT 1) last ON true";

/// Listens for new runs on a connection of its own, reconnecting after a failure.
pub(super) async fn listen(config: tokio_postgres::Config, target: String, wake: Arc<Notify>) {
    let mut failures = 0u32;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let listen_sql = format!("LISTEN {CHANNEL}");
                let listening = client.batch_execute(&listen_sql);
                let driven = async {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return e.to_string(),
                            None => return "connection closed".to_string(),
                        }
                    }
                };
                tokio::pin!(driven);
                // Drive the connection while LISTEN is sent.
                let ok = tokio::select! {
                    r = listening => r.is_ok(),
                    reason = &mut driven => {
                        tracing::warn!(target = %target, reason, "fanfare: listener connection lost");
                        false
                    }
                };
                if ok {
                    failures = 0;
                    // Notifications sent while disconnected are lost: look now.
                    wake.notify_one();
                    let reason = driven.await;
                    tracing::warn!(target = %target, reason, "fanfare: listener connection lost; reconnecting");
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(target = %target, error = %e, "fanfare: cannot connect the listener; polling meanwhile");
                }
            }
        }
        let delay = crate::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5))
            .delay(failures.min(10));
        tokio::time::sleep(delay).await;
        wake.notify_one();
    }
}

impl Shared {
    /// Puts back in the queue this app's runs whose lease expired (their process died or
    /// lost the database; the interrupted attempt stays counted).
    pub(super) async fn heartbeat(self: Arc<Self>, wake: Arc<Notify>) {
        // Finding expired leases reads an index, so it happens every poll. (Leases are
        // renewed by the engine, for the runs it is executing: `renew`.)
        let mut reap = tokio::time::interval((self.lease / 3).min(POLL).max(MIN_TICK));
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            reap.tick().await;
            let reaped = async {
                self.client()
                    .await?
                    .execute(REAP, &[&self.app])
                    .await
                    .map_err(|e| self.error("cannot re-queue expired runs", e))
            };
            match reaped.await {
                Ok(0) => {}
                Ok(expired) => {
                    tracing::warn!(
                        runs = expired,
                        "fanfare: re-queued runs whose lease expired"
                    );
                    wake.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, "fanfare: looking for expired leases failed"),
            }
        }
    }

    /// Applies the retention (see `retention`), a batch at a time, again at once while
    /// batches come back full. One process of the database prunes at a time.
    pub(super) async fn prune(self: Arc<Self>, retention: Retention) {
        let keep = (
            crate::store::sql_millis(retention.completed),
            crate::store::sql_millis(retention.failed),
        );
        let mut marks = Marks::default();
        loop {
            let began = Instant::now();
            let behind = match self.prune_batch(keep, &mut marks).await {
                Ok(behind) => behind,
                Err(e) => {
                    tracing::warn!(error = %e, "fanfare: pruning finished runs failed");
                    false
                }
            };
            let pause = retention::pause(behind, began.elapsed(), retention.completed);
            tokio::time::sleep(pause).await;
        }
    }

    /// One batch of each walk (`keep`: the retention and the failed retention, in
    /// milliseconds); returns whether more history may be waiting.
    pub(super) async fn prune_batch(&self, keep: (i64, i64), marks: &mut Marks) -> Result<bool> {
        let err = |e| self.error("cannot prune", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let ours: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtext('fanfare:prune:' || current_schema()))",
                &[],
            )
            .await
            .map_err(err)?
            .get(0);
        if !ours {
            return Ok(false);
        }
        let mut walked = [(0, None), (0, None)];
        for (walk, (sql, mark)) in [(PRUNE_RUNS, marks.run), (PRUNE_FAILED, marks.failed)]
            .into_iter()
            .enumerate()
        {
            let stmt = tx.prepare_cached(sql).await.map_err(err)?;
            let row = tx
                .query_one(
                    &stmt,
                    &[&keep.0, &mark.0, &mark.1, &retention::BATCH, &keep.1],
                )
                .await
                .map_err(err)?;
            walked[walk] = (
                row.get::<_, i64>(0),
                row.get::<_, Option<i64>>(1)
                    .zip(row.get::<_, Option<i64>>(2)),
            );
        }
        let stmt = tx.prepare_cached(PRUNE_EVENTS).await.map_err(err)?;
        let row = tx
            .query_one(
                &stmt,
                &[&keep.0, &marks.event.0, &marks.event.1, &retention::BATCH],
            )
            .await
            .map_err(err)?;
        let events = (
            row.get::<_, i64>(0),
            row.get::<_, Option<i64>>(1)
                .zip(row.get::<_, Option<Uuid>>(2)),
        );
        tx.commit().await.map_err(err)?;
        let [runs, failed] = walked;
        Ok(marks.advance(runs, failed, events))
    }
}
