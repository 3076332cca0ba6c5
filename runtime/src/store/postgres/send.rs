//! Sends: group-committed events with one run per subscribed function of every app,
//! and the waits they resolve.

use super::*;

/// Sends committed together at most.
pub(super) const MAX_BATCH: usize = 1024;

/// Committers of sends: while one commits, the other gathers the next batch, which
/// begins when that commit ends, or when it is full ([`Committers::next`]).
pub(super) const COMMITTERS: usize = 2;

/// Stores events (`$1`..`$4`, `$8` their trace contexts) with one run per subscribed
/// function of every app, due at `$7` at the earliest (a delayed send; 0 for now), and
/// resolves the waits they match. Up to `$12` runs due now of this process's functions
/// `$9` (those without flow control) are claimed as they are inserted, as [`CLAIM`]
/// would: running, first attempt, under a lease (`$10` ms) for this process (`$11`).
/// Returns per event the runs created, how many of this process's (`$5` app, `$6`
/// functions) are queued, how many of any app are queued, and the claimed runs' keys,
/// ids and functions; then a row with a null event and the number of waits resolved.
///
/// [`CLAIM`]: super::claim::CLAIM
pub(crate) const SEND: &str = concat!(
    "
WITH e AS (
    INSERT INTO fanfare_events (id, name, data, ts, traceparent)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $8::text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id, name, data),
-- The time, and the run ids' prefix, once for the statement.
t AS (SELECT fanfare_now() AS now, fanfare_run_id_prefix(fanfare_now()) AS prefix),
n AS (
    SELECT e.id, f.app, f.function_id, greatest(t.now, d.due) AS due, t.now, t.prefix,
        f.app = $5 AND f.function_id = ANY($9) AND d.due <= t.now AS direct
    FROM t, e JOIN unnest($1::uuid[], $7::bigint[]) AS d(id, due) ON d.id = e.id
    JOIN fanfare_functions f ON f.trigger = e.name),
c AS (
    SELECT n.*, direct AND count(*) FILTER (WHERE direct)
        OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) <= $12 AS claimed
    FROM n),
r AS (
    INSERT INTO fanfare_runs (run_id, event_id, app, function_id, due_at, status, attempts,
        lease_until, owner)
    SELECT fanfare_run_id_from(prefix), id, app, function_id, due,
        CASE WHEN claimed THEN 1 ELSE 0 END, CASE WHEN claimed THEN 1 ELSE 0 END,
        CASE WHEN claimed THEN now + $10 END, CASE WHEN claimed THEN $11::uuid END
    FROM c
    RETURNING event_id, run_id, ",
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
",
    mirror_unfinished!("u"),
    "
SELECT event_id, count(*),
    count(*) FILTER (WHERE status = 0 AND app = $5 AND function_id = ANY($6)),
    count(*) FILTER (WHERE status = 0),
    array_agg(id) FILTER (WHERE status = 1), array_agg(run_id) FILTER (WHERE status = 1),
    array_agg(function_id) FILTER (WHERE status = 1)
FROM r GROUP BY event_id
UNION ALL
SELECT NULL, 0, 0, count(*), NULL, NULL, NULL FROM u"
);

/// A send waiting for its commit, and where to answer.
pub(super) type PendingSend = (Envelope, oneshot::Sender<Result<usize>>);

/// What the committers share: the sends waiting, the sends in the commits in flight, and
/// a wake-up when a commit ends.
pub(super) struct Committers {
    /// The sends to commit, and those a batch left to the next one (`next`).
    sends: tokio::sync::Mutex<(mpsc::UnboundedReceiver<PendingSend>, Vec<PendingSend>)>,
    /// Sends in the commits in flight.
    in_flight: std::sync::atomic::AtomicUsize,
    ended: Notify,
}

impl Committers {
    pub fn new(sends: mpsc::UnboundedReceiver<PendingSend>) -> Committers {
        Committers {
            sends: tokio::sync::Mutex::new((sends, Vec::new())),
            in_flight: Default::default(),
            ended: Notify::new(),
        }
    }

    /// Takes the next batch of sends into `batch` (empty, at most `max`); false once no
    /// more can come. The committers keep two commits of about equal size in flight
    /// under load, each carrying what arrived during the other:
    /// - First, the batch takes the sends waiting and the rest of their burst (senders
    ///   that a commit just answered send again).
    /// - With no commit in flight, the batch commits at once; if it holds more than one
    ///   send, it leaves half of them to the other committer, which commits them at once
    ///   beside it. A lone send commits at once.
    /// - With a commit in flight, the batch gathers what comes in until it holds as many
    ///   sends as that commit (or is full), or that commit ends.
    ///
    /// (Taking only what was waiting made most commits of `bench` a single event's, 2,418
    /// of 4,348, at ≈ 0.6 ms of the database's time each whatever its size; one commit at
    /// a time of everything gave 8–10 % fewer runs/s than two of half as many.) The batch
    /// counts as in flight from here until [`ended`](Self::ended).
    async fn next(&self, batch: &mut Vec<PendingSend>, max: usize) -> bool {
        let mut sends = self.sends.lock().await;
        let (rx, left) = &mut *sends;
        if !left.is_empty() {
            // The other half of a batch that went: it goes at once too.
            batch.append(left);
        } else if rx.recv_many(batch, max).await == 0 {
            return false;
        } else {
            self.gather(rx, left, batch, max).await;
        }
        self.in_flight
            .fetch_add(batch.len(), std::sync::atomic::Ordering::AcqRel);
        true
    }

    /// The rest of a batch begun with the sends waiting (see [`next`](Self::next)); what
    /// it leaves to the other committer goes to `left`.
    async fn gather(
        &self,
        rx: &mut mpsc::UnboundedReceiver<PendingSend>,
        left: &mut Vec<PendingSend>,
        batch: &mut Vec<PendingSend>,
        max: usize,
    ) {
        loop {
            // The rest of the burst.
            loop {
                tokio::task::yield_now().await;
                let before = batch.len();
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(send) => batch.push(send),
                        Err(_) => break,
                    }
                }
                if batch.len() == before || batch.len() == max {
                    break;
                }
            }
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let in_flight = self.in_flight.load(std::sync::atomic::Ordering::Acquire);
            if in_flight == 0 {
                let half = batch.len().div_ceil(2);
                left.extend(batch.drain(half..));
                return;
            }
            if batch.len() >= in_flight.min(max) {
                return;
            }
            let room = max - batch.len();
            tokio::select! {
                n = rx.recv_many(batch, room) => if n == 0 { return },
                _ = &mut ended => {}
            }
        }
    }

    /// A commit of `sends` sends that [`next`](Self::next) started has ended.
    fn ended(&self, sends: usize) {
        self.in_flight
            .fetch_sub(sends, std::sync::atomic::Ordering::AcqRel);
        self.ended.notify_waiters();
    }
}

impl Shared {
    /// Takes the sends waiting and commits them in one transaction.
    pub(super) async fn commit_sends(
        self: Arc<Self>,
        committers: Arc<Committers>,
        max: usize,
        wake: Arc<Notify>,
    ) {
        let mut batch = Vec::with_capacity(max);
        while committers.next(&mut batch, max).await {
            let events: Vec<Envelope> = Vec::with_capacity(batch.len());
            let (events, replies): (Vec<Envelope>, Vec<_>) =
                batch
                    .drain(..)
                    .fold((events, Vec::new()), |(mut e, mut r), (ev, tx)| {
                        e.push(ev);
                        r.push(tx);
                        (e, r)
                    });
            let sent = events.len();
            let stored = self.insert(events).await;
            committers.ended(sent);
            match stored {
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
    /// transaction; returns, per event, the runs created and how many of this process's
    /// are queued. The runs it claimed as it stored them (as many as the engine had
    /// slots for) are handed to the engine; on an error the slots go free again.
    pub(super) async fn insert(&self, events: Vec<Envelope>) -> Result<Vec<(usize, usize)>> {
        let mut handoff = Handoff::reserve(self.slots.get(), || {
            events
                .iter()
                .filter(|e| e.not_before.is_none())
                .map(|e| self.direct.get(&*e.name).copied().unwrap_or(0))
                .sum()
        });
        let events: Vec<Arc<Envelope>> = events.into_iter().map(Arc::new).collect();
        let (counts, claimed) = self.insert_claiming(&events, handoff.reserved()).await?;
        handoff.commit(claimed);
        drop(handoff);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        Ok(events
            .into_iter()
            .map(|event| {
                let c = counts.get(&event.id.as_uuid()).copied().unwrap_or_default();
                cache.keep(event, c.1);
                c
            })
            .collect())
    }

    /// The statement of [`insert`](Self::insert), claiming up to `quota` runs: per event
    /// the runs created and how many of this process's are queued, and the claimed runs.
    async fn insert_claiming(
        &self,
        events: &[Arc<Envelope>],
        quota: usize,
    ) -> Result<(HashMap<Uuid, (usize, usize)>, Vec<ClaimedRun>)> {
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
        let lease = crate::store::sql_millis(self.lease);
        let quota = quota as i64;
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
        let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
            &ids,
            &names,
            &data,
            &ts,
            &self.app,
            &self.functions,
            &dues,
            &traces,
            &self.direct_functions,
            &lease,
            &self.owner,
            &quota,
        ];
        let insert = tx.query(&stmt, &insert_params);
        let (_, rows) = tokio::try_join!(lock, insert).map_err(err)?;
        // Per event: runs created, and how many of them this process may claim.
        let mut counts = HashMap::with_capacity(rows.len());
        let mut claimed = Vec::new();
        // Whether other processes have something to look at: runs queued (now or later)
        // or waits resolved.
        let mut news = false;
        let by_id: HashMap<Uuid, &Arc<Envelope>> =
            events.iter().map(|e| (e.id.as_uuid(), e)).collect();
        for row in &rows {
            news |= row.get::<_, i64>(3) > 0;
            let Some(id) = row.get::<_, Option<Uuid>>(0) else {
                continue;
            };
            let all: i64 = row.get(1);
            let local: i64 = row.get(2);
            counts.insert(id, (all as usize, local as usize));
            let (Some(keys), Some(run_ids), Some(functions), Some(event)) = (
                row.get::<_, Option<Vec<i64>>>(4),
                row.get::<_, Option<Vec<Uuid>>>(5),
                row.get::<_, Option<Vec<String>>>(6),
                by_id.get(&id),
            ) else {
                continue;
            };
            for ((key, run_id), function) in keys.into_iter().zip(run_ids).zip(functions) {
                let Some(&function) = self.index.get(&function) else {
                    continue;
                };
                claimed.push(ClaimedRun::sent(
                    key as RunKey,
                    RunId::from_uuid(run_id),
                    function,
                    Arc::clone(event),
                ));
            }
        }
        if news {
            // Wakes every worker: for the new runs, and for waits this send resolved.
            tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok((counts, claimed))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn send(tx: &mpsc::UnboundedSender<PendingSend>) {
        let (reply, _) = oneshot::channel();
        let id = EventId::from_uuid(crate::event::new_uuid(0));
        let event = Envelope::stored(id, "test/event".into(), "{}".into(), 0);
        assert!(tx.send((event, reply)).is_ok());
    }

    /// Lets every other task of the test's runtime run as far as it can.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// The size of the next batch.
    async fn next(committers: &Committers, max: usize) -> usize {
        let mut batch = Vec::new();
        assert!(committers.next(&mut batch, max).await);
        batch.len()
    }

    #[tokio::test]
    async fn a_lone_send_commits_at_once() {
        let (tx, rx) = mpsc::unbounded_channel();
        let committers = Committers::new(rx);
        send(&tx);
        assert_eq!(next(&committers, 8).await, 1);
    }

    #[tokio::test]
    async fn sends_waiting_with_no_commit_in_flight_go_in_two_commits_at_once() {
        let (tx, rx) = mpsc::unbounded_channel();
        let committers = Committers::new(rx);
        for _ in 0..5 {
            send(&tx);
        }
        assert_eq!(next(&committers, 8).await, 3);
        assert_eq!(
            next(&committers, 8).await,
            2,
            "the other half, beside the first"
        );
    }

    #[tokio::test]
    async fn with_commits_in_flight_a_batch_gathers_as_many_sends_or_until_they_end() {
        let (tx, rx) = mpsc::unbounded_channel();
        let committers = Arc::new(Committers::new(rx));
        send(&tx);
        send(&tx);
        assert_eq!(next(&committers, 8).await, 1);
        assert_eq!(next(&committers, 8).await, 1);
        // Two sends in flight: the next batch waits for a second send.
        let gather = |committers: &Arc<Committers>| {
            let committers = Arc::clone(committers);
            tokio::spawn(async move { next(&committers, 8).await })
        };
        let batch = gather(&committers);
        send(&tx);
        settle().await;
        assert!(
            !batch.is_finished(),
            "a batch of one began beside two in flight"
        );
        send(&tx);
        assert_eq!(batch.await.unwrap(), 2);
        // Or for the commits in flight to end.
        committers.ended(1);
        committers.ended(1);
        let batch = gather(&committers);
        send(&tx);
        settle().await;
        assert!(
            !batch.is_finished(),
            "a batch of one began beside two in flight"
        );
        committers.ended(2);
        assert_eq!(batch.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_full_batch_commits_beside_the_one_in_flight() {
        let (tx, rx) = mpsc::unbounded_channel();
        let committers = Committers::new(rx);
        for _ in 0..8 {
            send(&tx);
        }
        assert_eq!(next(&committers, 8).await, 4);
        assert_eq!(next(&committers, 8).await, 4);
        for _ in 0..3 {
            send(&tx);
        }
        // Eight in flight, but a batch of at most three is full at three.
        assert_eq!(next(&committers, 3).await, 3);
    }

    #[tokio::test]
    async fn the_committers_stop_once_no_send_can_come() {
        let (tx, rx) = mpsc::unbounded_channel();
        let committers = Committers::new(rx);
        drop(tx);
        assert!(!committers.next(&mut Vec::new(), 4).await);
    }
}
