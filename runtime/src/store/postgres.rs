//! The PostgreSQL store: the distributed engine.
//!
//! Any number of processes on any number of hosts share one database:
//! - each process upserts its app's functions at start (`fanfare_functions`), so a send
//!   from any process fans out, **in its own transaction**, to the functions of every app;
//! - concurrent sends of a process share one transaction (group commit);
//! - workers claim due runs of their own functions in batches with
//!   `FOR UPDATE SKIP LOCKED`, under a lease they renew while the runs execute
//!   (heartbeat); a run whose lease expires (its process died) is claimed again by others;
//! - `NOTIFY` after each commit wakes idle workers everywhere at once; a poll every
//!   second covers a missed notification, and the listener reconnects on its own.
//!
//! Times (due, lease) are the database's clock, so hosts need not agree on the time.

use super::retention::{self, Marks};
use super::{
    Claim, ClaimedRun, EventCache, Outcome, OutcomeKind, RecordError, RecordFuture, RunInfo,
    RunKey, RunStatus, StepRecord, Store, StoreFuture, StoreOptions, WaitSpec, WaitState,
};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Envelope, EventId, RunId};
use crate::function::Registry;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

/// The NOTIFY channel that announces new runs.
const CHANNEL: &str = "fanfare_runs";
/// How often an idle worker looks for due runs without being notified.
const POLL: Duration = Duration::from_secs(1);
/// Sends committed together at most.
const MAX_BATCH: usize = 1024;
/// The outcome code of a durable sleep (stored as status 0 with `sleeping`).
const SLEEP: i16 = 4;
/// The outcome code of a wait for an event (stored as status 0 with `waiting`).
const WAIT: i16 = 5;
/// Parallel committers of sends.
const COMMITTERS: usize = 4;
/// Connections in the pool.
const POOL_SIZE: usize = 12;
/// The shortest period of a background task.
const MIN_TICK: Duration = Duration::from_millis(10);

/// The schema migrations, applied in order; the schema version is their count.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE FUNCTION fanfare_now() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;
CREATE FUNCTION fanfare_uuid7(ms bigint) RETURNS uuid LANGUAGE sql VOLATILE
    AS $$ SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                 PLACING substring(int8send(ms) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid $$;
CREATE TABLE fanfare_functions (
    app text NOT NULL,
    function_id text NOT NULL,
    trigger text NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (app, function_id)
);
CREATE INDEX fanfare_functions_trigger ON fanfare_functions (trigger);
CREATE TABLE fanfare_events (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    data text NOT NULL,
    ts bigint NOT NULL
);
CREATE TABLE fanfare_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL,
    event_id uuid NOT NULL,
    app text NOT NULL,
    function_id text NOT NULL,
    status smallint NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    due_at bigint NOT NULL,
    lease_until bigint,
    owner uuid,
    last_error text,
    output text,
    finished_at bigint
);
CREATE INDEX fanfare_runs_due ON fanfare_runs (app, function_id, due_at) WHERE status = 0;
CREATE INDEX fanfare_runs_lease ON fanfare_runs (app, lease_until) WHERE status = 1;
CREATE INDEX fanfare_runs_owner ON fanfare_runs (owner) WHERE status = 1;
CREATE INDEX fanfare_runs_event ON fanfare_runs (event_id);
"#,
    r#"
CREATE TABLE fanfare_steps (
    run bigint NOT NULL,
    seq integer NOT NULL,
    step_id text NOT NULL,
    output text NOT NULL,
    started_at bigint NOT NULL,
    completed_at bigint NOT NULL,
    PRIMARY KEY (run, seq)
);
ALTER TABLE fanfare_runs ADD COLUMN steps integer NOT NULL DEFAULT 0,
                         ADD COLUMN sleeping boolean NOT NULL DEFAULT false;
"#,
    r#"
CREATE TABLE fanfare_waits (
    run bigint NOT NULL,
    seq integer NOT NULL,
    step_id text NOT NULL,
    event text NOT NULL,
    field text,
    value jsonb,
    deadline bigint NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE INDEX fanfare_waits_event ON fanfare_waits (event);
CREATE INDEX fanfare_events_name ON fanfare_events (name, ts);
ALTER TABLE fanfare_runs ADD COLUMN waiting boolean NOT NULL DEFAULT false;
CREATE INDEX fanfare_runs_waiting ON fanfare_runs (app) WHERE waiting;
"#,
    // Every hot statement reads an index in the order it needs and stops at its limit:
    // claims take an app's due runs in `due_at` order whatever the functions; pruning
    // walks finished runs and events in time order; a send finds the waits it resolves
    // by (event, field, value) instead of reading every wait for the event's name.
    r#"
DROP INDEX fanfare_runs_due;
CREATE INDEX fanfare_runs_ready ON fanfare_runs (app, due_at) WHERE status = 0;
DROP INDEX fanfare_runs_waiting;
CREATE INDEX fanfare_runs_finished ON fanfare_runs (finished_at, id) WHERE status = 2;
CREATE INDEX fanfare_events_ts ON fanfare_events (ts, id);
DROP INDEX fanfare_waits_event;
CREATE INDEX fanfare_waits_match ON fanfare_waits (event, field, value);
CREATE TABLE fanfare_wait_fields (
    event text NOT NULL,
    field text NOT NULL,
    PRIMARY KEY (event, field)
);
INSERT INTO fanfare_wait_fields SELECT DISTINCT event, field FROM fanfare_waits WHERE field IS NOT NULL;
"#,
];

/// Claims up to `$5` due runs of this app's functions `$2`, earliest first, under a lease
/// (`$3` ms) for this process (`$4`), with their events. The index `(app, due_at)` gives
/// the runs in order whatever the functions, so the scan stops at the limit; rows are
/// then reached by key (`= ANY(ARRAY(…))`, a lateral lookup), never by a join the
/// planner could turn into a scan of the table.
pub(crate) const CLAIM: &str = "
WITH c AS (
    UPDATE fanfare_runs r
    SET status = 1, attempts = r.attempts + 1, lease_until = fanfare_now() + $3, owner = $4
    WHERE r.id = ANY(ARRAY(
        SELECT id FROM fanfare_runs
        WHERE app = $1 AND function_id = ANY($2)
          AND status = 0 AND due_at <= fanfare_now()
        ORDER BY due_at
        LIMIT $5
        FOR UPDATE SKIP LOCKED))
    RETURNING r.id, r.run_id, r.event_id, r.function_id, r.attempts, r.steps)
SELECT c.id, c.run_id, c.event_id, c.function_id, c.attempts, e.name, e.data, e.ts, c.steps
FROM c, LATERAL (SELECT name, data, ts FROM fanfare_events WHERE id = c.event_id OFFSET 0) e";

/// Stores events (`$1`..`$4`) with one run per subscribed function of every app, and
/// resolves the waits they match; returns per event the runs created and how many are
/// this process's (`$5` app, `$6` functions).
pub(crate) const SEND: &str = "
WITH e AS (
    INSERT INTO fanfare_events (id, name, data, ts)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id, name, data),
r AS (
    INSERT INTO fanfare_runs (run_id, event_id, app, function_id, due_at)
    SELECT gen_random_uuid(), e.id, f.app, f.function_id, fanfare_now()
    FROM e JOIN fanfare_functions f ON f.trigger = e.name
    RETURNING event_id, app, function_id),
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
    FROM w WHERE x.id = w.run)
SELECT event_id, count(*), count(*) FILTER (WHERE app = $5 AND function_id = ANY($6))
FROM r GROUP BY event_id";

/// Writes the outcomes of attempts (`$1` runs, `$2` codes, `$3` outputs, `$4` errors, `$5`
/// delays in ms, `$7` waiting steps) of runs this process (`$6`) still owns.
pub(crate) const RECORD: &str = "
UPDATE fanfare_runs r SET
    status = CASE WHEN u.status IN (4, 5) THEN 0 ELSE u.status END,
    sleeping = u.status = 4,
    -- A wait is still pending unless a send resolved it meanwhile, which
    -- stored its step: the row is read again after such a concurrent
    -- update, so `r.steps` tells (a subquery would not see it).
    waiting = u.status = 5 AND r.steps <= u.seq,
    attempts = r.attempts - CASE WHEN u.status IN (4, 5) THEN 1 ELSE 0 END,
    output = u.output,
    last_error = coalesce(u.error, r.last_error),
    due_at = CASE
        WHEN u.status IN (0, 4) THEN fanfare_now() + u.delay
        WHEN u.status = 5 AND r.steps <= u.seq THEN fanfare_now() + u.delay
        WHEN u.status = 5 THEN fanfare_now()
        ELSE r.due_at END,
    finished_at = CASE WHEN u.status >= 2 THEN fanfare_now() END,
    lease_until = NULL,
    owner = NULL
FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::bigint[], $7::integer[])
    AS u(id, status, output, error, delay, seq)
WHERE r.id = u.id AND r.owner = $6 AND r.status = 1";

/// How long until the earliest queued run of this app's functions is due (ms).
pub(crate) const NEXT_DUE: &str = "SELECT min(due_at) - fanfare_now() FROM fanfare_runs \
    WHERE app = $1 AND function_id = ANY($2) AND status = 0";

/// Re-queues this app's runs whose lease expired.
pub(crate) const REAP: &str =
    "UPDATE fanfare_runs SET status = 0, lease_until = NULL, owner = NULL \
    WHERE app = $1 AND status = 1 AND lease_until < fanfare_now()";

/// A send waiting for its commit, and where to answer.
type PendingSend = (Envelope, oneshot::Sender<Result<usize>>);

pub(crate) struct PgStore {
    shared: Arc<Shared>,
    sends: mpsc::UnboundedSender<PendingSend>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    pool: Pool,
    app: String,
    /// This process, as the owner of the runs it claims.
    owner: Uuid,
    /// Local function ids, in registry order.
    functions: Vec<String>,
    index: HashMap<String, u32>,
    cache: Mutex<EventCache>,
    target: String,
    /// A claimed run's lease; renewed every third of it while the run executes.
    lease: Duration,
}

fn pg_error(target: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Store,
        format_args!("PostgreSQL {target}: {what}: {e}"),
    )
}

/// `host:port/db` of a configuration, for messages (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

impl PgStore {
    pub async fn open(
        url: &str,
        registry: Arc<Registry>,
        options: StoreOptions,
        wake: Arc<Notify>,
    ) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format_args!("invalid PostgreSQL URL: {e}\nhelp: write it as `postgres://user:password@host:5432/database`"),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("fanfare");
        let target = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| pg_error(&target, "cannot build the connection pool", e))?;
        // A process that only sends hosts no functions: nothing is claimed or cached.
        let StoreOptions {
            app,
            retention,
            lease,
            execute,
            ..
        } = options;
        let functions: Vec<String> = if execute {
            registry.defs.iter().map(|d| d.id().to_owned()).collect()
        } else {
            Vec::new()
        };
        let shared = Arc::new(Shared {
            pool,
            app,
            owner: crate::event::new_uuid(crate::event::now_millis()),
            index: functions
                .iter()
                .enumerate()
                .map(|(i, f)| (f.clone(), i as u32))
                .collect(),
            functions,
            cache: Mutex::new(EventCache::default()),
            target,
            lease,
        });
        shared.migrate().await?;
        if execute {
            shared.register(&registry).await?;
        }

        let (sends, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let batch = if options.group_commit { MAX_BATCH } else { 1 };
        let mut tasks = Vec::new();
        for _ in 0..COMMITTERS {
            tasks.push(tokio::spawn(Arc::clone(&shared).commit_sends(
                Arc::clone(&rx),
                batch,
                Arc::clone(&wake),
            )));
        }
        tasks.push(tokio::spawn(listen(
            config,
            shared.target.clone(),
            Arc::clone(&wake),
        )));
        tasks.push(tokio::spawn(
            Arc::clone(&shared).heartbeat(Arc::clone(&wake)),
        ));
        tasks.push(tokio::spawn(Arc::clone(&shared).prune(retention)));
        Ok(PgStore {
            shared,
            sends,
            tasks,
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        pg_error(&self.target, what, e)
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Closed => super::closed("PostgreSQL"),
            e => self.error("unreachable", e),
        })
    }

    /// Applies the migrations this database has not seen, one process at a time;
    /// refuses a schema newer than this fanfare knows.
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error("cannot migrate", e))?;
        let err = |e| self.error("migration failed", e);
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7283421066); \
             CREATE TABLE IF NOT EXISTS fanfare_meta (key text PRIMARY KEY, value bigint NOT NULL)",
        )
        .await
        .map_err(err)?;
        let version: i64 = tx
            .query_opt(
                "SELECT value FROM fanfare_meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .map_err(err)?
            .map_or(0, |row| row.get(0));
        if version > MIGRATIONS.len() as i64 {
            return Err(self.error(
                "written by a newer fanfare",
                format_args!(
                    "its schema version is {version}, this fanfare knows versions up to {}; upgrade fanfare",
                    MIGRATIONS.len()
                ),
            ));
        }
        for m in &MIGRATIONS[version as usize..] {
            tx.batch_execute(m).await.map_err(err)?;
        }
        tx.execute(
            "INSERT INTO fanfare_meta (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&(MIGRATIONS.len() as i64)],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    /// Makes the database's subscriptions of this app the functions of this process.
    async fn register(&self, registry: &Registry) -> Result<()> {
        let triggers: Vec<&str> = registry.defs.iter().map(|d| d.trigger()).collect();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error("cannot register functions", e))?;
        let err = |e| self.error("cannot register functions", e);
        tx.execute(
            "INSERT INTO fanfare_functions (app, function_id, trigger, updated_at) \
             SELECT $1, f, t, fanfare_now() FROM unnest($2::text[], $3::text[]) AS x(f, t) \
             ON CONFLICT (app, function_id) DO UPDATE SET trigger = excluded.trigger, updated_at = excluded.updated_at",
            &[&self.app, &self.functions, &triggers],
        )
        .await
        .map_err(err)?;
        tx.execute(
            "DELETE FROM fanfare_functions WHERE app = $1 AND NOT (function_id = ANY($2))",
            &[&self.app, &self.functions],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    /// Takes the sends waiting and commits them in one transaction.
    async fn commit_sends(
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
    async fn insert(&self, events: Vec<Envelope>) -> Result<Vec<(usize, usize)>> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.id.as_uuid()).collect();
        let names: Vec<&str> = events.iter().map(|e| &*e.name).collect();
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        let ts: Vec<i64> = events.iter().map(|e| e.ts as i64).collect();
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
        let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&ids, &names, &data, &ts, &self.app, &self.functions];
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
                cache.keep(event, c.1);
                c
            })
            .collect())
    }

    async fn insert_to(&self, event: Envelope, function: u32) -> Result<usize> {
        let err = |e| self.error("cannot store events", e);
        let Some(function) = self.functions.get(function as usize) else {
            return Ok(0);
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let n = tx
            .execute(
                "WITH e AS (
                     INSERT INTO fanfare_events (id, name, data, ts) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING
                     RETURNING id)
                 INSERT INTO fanfare_runs (run_id, event_id, app, function_id, due_at)
                 SELECT gen_random_uuid(), e.id, $5, $6, fanfare_now() FROM e",
                &[
                    &event.id.as_uuid(),
                    &&*event.name,
                    &event.data,
                    &(event.ts as i64),
                    &self.app,
                    function,
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

    async fn claim(&self, max: usize) -> Result<Claim> {
        let err = |e| self.error("cannot claim runs", e);
        let client = self.client().await?;
        let stmt = client.prepare_cached(CLAIM).await.map_err(err)?;
        let lease = super::sql_millis(self.lease);
        let rows = client
            .query(
                &stmt,
                &[
                    &self.app,
                    &self.functions,
                    &lease,
                    &self.owner,
                    &(max as i64),
                ],
            )
            .await
            .map_err(err)?;
        let mut runs = Vec::with_capacity(rows.len());
        let mut with_steps = Vec::new();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for row in rows {
                let function: &str = row.get(3);
                let Some(function) = self.index.get(function).copied() else {
                    continue;
                };
                let event_id = EventId::from_uuid(row.get(2));
                let event = match cache.take(&event_id) {
                    Some(env) => env,
                    None => Arc::new(Envelope {
                        id: event_id,
                        name: Cow::Owned(row.get(5)),
                        data: row.get(6),
                        ts: row.get::<_, i64>(7) as u64,
                        typed: None,
                    }),
                };
                if row.get::<_, i32>(8) > 0 {
                    with_steps.push(row.get::<_, i64>(0));
                }
                runs.push(ClaimedRun {
                    key: row.get::<_, i64>(0) as RunKey,
                    run_id: RunId::from_uuid(row.get(1)),
                    function,
                    attempt: row.get::<_, i32>(4) as u32 - 1,
                    event,
                    steps: Vec::new(),
                });
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
        let next_due = if runs.is_empty() {
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
        Ok(Claim { runs, next_due })
    }

    async fn record(&self, outcomes: &[Outcome]) -> Result<()> {
        let mut ids = Vec::with_capacity(outcomes.len());
        let mut statuses: Vec<i16> = Vec::with_capacity(outcomes.len());
        let mut outputs: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut errors: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
        let mut delays: Vec<i64> = Vec::with_capacity(outcomes.len());
        // For a wait: the waiting step's position (-1 otherwise).
        let mut seqs: Vec<i32> = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            seqs.push(match &o.result {
                OutcomeKind::Wait { seq, .. } => *seq as i32,
                _ => -1,
            });
            ids.push(o.key as i64);
            match &o.result {
                OutcomeKind::Completed(output) => {
                    statuses.push(2);
                    outputs.push((!output.is_null()).then(|| output.to_string()));
                    errors.push(None);
                    delays.push(0);
                }
                OutcomeKind::Retry { delay, error } => {
                    statuses.push(0);
                    outputs.push(None);
                    errors.push(Some(error.clone()));
                    delays.push(super::sql_millis(*delay));
                }
                OutcomeKind::Wait { deadline_ms, .. } => {
                    statuses.push(WAIT);
                    outputs.push(None);
                    errors.push(None);
                    delays.push(deadline_ms.saturating_sub(crate::event::now_millis()) as i64);
                }
                OutcomeKind::Sleep { delay } => {
                    statuses.push(SLEEP);
                    outputs.push(None);
                    errors.push(None);
                    delays.push(super::sql_millis(*delay));
                }
                OutcomeKind::Failed(error) => {
                    statuses.push(3);
                    outputs.push(None);
                    errors.push(Some(error.clone()));
                    delays.push(0);
                }
            }
        }
        let err = |e| self.error("cannot record outcomes", e);
        let client = self.client().await?;
        let stmt = client.prepare_cached(RECORD).await.map_err(err)?;
        client
            .execute(
                &stmt,
                &[
                    &ids,
                    &statuses,
                    &outputs,
                    &errors,
                    &delays,
                    &self.owner,
                    &seqs,
                ],
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn release(&self, keys: Vec<RunKey>) -> Result<()> {
        let ids: Vec<i64> = keys.into_iter().map(|k| k as i64).collect();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE fanfare_runs SET status = 0, attempts = attempts - 1, lease_until = NULL, owner = NULL \
                 WHERE id = ANY($1) AND owner = $2 AND status = 1",
                &[&ids, &self.owner],
            )
            .await
            .map_err(|e| self.error("cannot release runs", e))?;
        Ok(())
    }

    async fn runs(&self, event: EventId) -> Result<Option<Vec<RunInfo>>> {
        let err = |e| self.error("cannot read runs", e);
        let client = self.client().await?;
        let id = event.as_uuid();
        if client
            .query_opt("SELECT 1 FROM fanfare_events WHERE id = $1", &[&id])
            .await
            .map_err(err)?
            .is_none()
        {
            return Ok(None);
        }
        let rows = client
            .query(
                "SELECT run_id, app, function_id, status, attempts, last_error, output, id, sleeping, waiting \
                 FROM fanfare_runs WHERE event_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .map_err(err)?;
        let keys: Vec<i64> = rows.iter().map(|row| row.get(7)).collect();
        let mut steps = self.steps(&client, &keys).await?;
        Ok(Some(
            rows.into_iter()
                .map(|row| RunInfo {
                    run_id: RunId::from_uuid(row.get(0)),
                    event_id: event,
                    app: row.get(1),
                    function_id: row.get(2),
                    status: match row.get::<_, i16>(3) {
                        0 if row.get::<_, bool>(8) => RunStatus::Sleeping,
                        0 if row.get::<_, bool>(9) => RunStatus::Waiting,
                        0 => RunStatus::Queued,
                        1 => RunStatus::Running,
                        2 => RunStatus::Completed,
                        _ => RunStatus::Failed,
                    },
                    attempts: row.get::<_, i32>(4) as u32,
                    last_error: row.get(5),
                    output: row
                        .get::<_, Option<String>>(6)
                        .and_then(|o| serde_json::from_str(&o).ok()),
                    steps: steps
                        .remove(&row.get::<_, i64>(7))
                        .unwrap_or_default()
                        .iter()
                        .map(StepRecord::info)
                        .collect(),
                })
                .collect(),
        ))
    }

    /// The completed steps of runs, by run, in order.
    async fn steps(&self, client: &Object, runs: &[i64]) -> Result<HashMap<i64, Vec<StepRecord>>> {
        let rows = client
            .query(
                "SELECT run, seq, step_id, output, started_at, completed_at FROM fanfare_steps \
                 WHERE run = ANY($1) ORDER BY run, seq",
                &[&runs],
            )
            .await
            .map_err(|e| self.error("cannot read steps", e))?;
        let mut steps: HashMap<i64, Vec<StepRecord>> = HashMap::new();
        for row in rows {
            steps.entry(row.get(0)).or_default().push(StepRecord {
                seq: row.get::<_, i32>(1) as u32,
                id: row.get(2),
                output: row.get(3),
                started_ms: row.get::<_, i64>(4) as u64,
                completed_ms: row.get::<_, i64>(5) as u64,
            });
        }
        Ok(steps)
    }

    async fn wait(&self, run: RunKey, spec: WaitSpec) -> Result<WaitState> {
        let err = |e| self.error("cannot register a wait", e);
        let run = run as i64;
        let seq = spec.seq as i32;
        let now = crate::event::now_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        // Exclusive against sends of this event name (see `insert`).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('fanfare:' || $1))",
            &[&spec.event],
        )
        .await
        .map_err(err)?;
        if let Some(row) = tx
            .query_opt(
                "SELECT output FROM fanfare_steps WHERE run = $1 AND seq = $2",
                &[&run, &seq],
            )
            .await
            .map_err(err)?
        {
            return Ok(WaitState::Resolved(row.get(0)));
        }
        let pending: Option<i64> = tx
            .query_opt(
                "SELECT deadline FROM fanfare_waits WHERE run = $1 AND seq = $2",
                &[&run, &seq],
            )
            .await
            .map_err(err)?
            .map(|row| row.get(0));
        let (field, value) = match &spec.matching {
            Some((f, v)) => (Some(f.clone()), Some(v.to_string())),
            None => (None, None),
        };
        let output = match pending {
            Some(deadline) if (now as i64) < deadline => {
                return Ok(WaitState::Pending(deadline as u64))
            }
            Some(_) => Some("null".to_owned()),
            None => {
                let found = match spec.event_id {
                    Some(id) => tx
                        .query_opt(
                            "SELECT data FROM fanfare_events WHERE id = $1 AND name = $2",
                            &[&id.as_uuid(), &spec.event],
                        )
                        .await
                        .map_err(err)?
                        .filter(|row| spec.matches(row.get::<_, &str>(0))),
                    None => tx
                        .query_opt(
                            "SELECT data FROM fanfare_events WHERE name = $1 AND ts >= $2 \
                             AND ($3::text IS NULL OR (data::jsonb -> $3::text) = $4::text::jsonb) \
                             ORDER BY ts LIMIT 1",
                            &[&spec.event, &(spec.since_ms as i64), &field, &value],
                        )
                        .await
                        .map_err(err)?,
                };
                match found {
                    Some(row) => Some(row.get::<_, String>(0)),
                    None if now >= spec.deadline_ms => Some("null".to_owned()),
                    None => None,
                }
            }
        };
        let state = match output {
            Some(output) => {
                tx.execute(
                    "DELETE FROM fanfare_waits WHERE run = $1 AND seq = $2",
                    &[&run, &seq],
                )
                .await
                .map_err(err)?;
                tx.execute(
                    "WITH s AS (
                         INSERT INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at)
                         VALUES ($1, $2, $3, $4, $5, $5)
                         ON CONFLICT (run, seq) DO NOTHING)
                     UPDATE fanfare_runs SET steps = greatest(steps, $2 + 1) WHERE id = $1",
                    &[&run, &seq, &spec.step_id, &output, &(now as i64)],
                )
                .await
                .map_err(err)?;
                WaitState::Resolved(output)
            }
            None => {
                if let Some(field) = &field {
                    // Sends look up waits by each field some wait of the event matches on.
                    tx.execute(
                        "INSERT INTO fanfare_wait_fields (event, field) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                        &[&spec.event, field],
                    )
                    .await
                    .map_err(err)?;
                }
                tx.execute(
                    "INSERT INTO fanfare_waits (run, seq, step_id, event, field, value, deadline) \
                     VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7)",
                    &[
                        &run,
                        &seq,
                        &spec.step_id,
                        &spec.event,
                        &field,
                        &value,
                        &(spec.deadline_ms as i64),
                    ],
                )
                .await
                .map_err(err)?;
                WaitState::Pending(spec.deadline_ms)
            }
        };
        tx.commit().await.map_err(err)?;
        Ok(state)
    }

    async fn save_step(&self, run: RunKey, step: StepRecord) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "WITH s AS (
                     INSERT INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (run, seq) DO UPDATE SET step_id = excluded.step_id,
                         output = excluded.output, started_at = excluded.started_at,
                         completed_at = excluded.completed_at)
                 UPDATE fanfare_runs SET steps = greatest(steps, $2 + 1) WHERE id = $1",
                &[
                    &(run as i64),
                    &(step.seq as i32),
                    &step.id,
                    &step.output,
                    &(step.started_ms as i64),
                    &(step.completed_ms as i64),
                ],
            )
            .await
            .map_err(|e| self.error("cannot store a step", e))?;
        Ok(())
    }

    /// Renews the leases of runs this process is executing.
    async fn renew(&self, runs: Vec<RunKey>) -> Result<()> {
        let ids: Vec<i64> = runs.into_iter().map(|k| k as i64).collect();
        self.client()
            .await?
            .execute(
                "UPDATE fanfare_runs SET lease_until = fanfare_now() + $1 \
                 WHERE id = ANY($2) AND owner = $3 AND status = 1",
                &[&super::sql_millis(self.lease), &ids, &self.owner],
            )
            .await
            .map_err(|e| self.error("cannot renew leases", e))?;
        Ok(())
    }

    /// Puts back in the queue this app's runs whose lease expired (their process died or
    /// lost the database; the interrupted attempt stays counted).
    async fn heartbeat(self: Arc<Self>, wake: Arc<Notify>) {
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
    async fn prune(self: Arc<Self>, retention: Duration) {
        let keep = super::sql_millis(retention);
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
            tokio::time::sleep(retention::pause(behind, began.elapsed(), retention)).await;
        }
    }

    /// One batch of each walk; returns whether more history may be waiting.
    async fn prune_batch(&self, keep: i64, marks: &mut Marks) -> Result<bool> {
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
        let stmt = tx.prepare_cached(PRUNE_RUNS).await.map_err(err)?;
        let row = tx
            .query_one(
                &stmt,
                &[&keep, &marks.run.0, &marks.run.1, &retention::BATCH],
            )
            .await
            .map_err(err)?;
        let runs = (
            row.get::<_, i64>(0),
            row.get::<_, Option<i64>>(1)
                .zip(row.get::<_, Option<i64>>(2)),
        );
        let stmt = tx.prepare_cached(PRUNE_EVENTS).await.map_err(err)?;
        let row = tx
            .query_one(
                &stmt,
                &[&keep, &marks.event.0, &marks.event.1, &retention::BATCH],
            )
            .await
            .map_err(err)?;
        let events = (
            row.get::<_, i64>(0),
            row.get::<_, Option<i64>>(1)
                .zip(row.get::<_, Option<Uuid>>(2)),
        );
        tx.commit().await.map_err(err)?;
        Ok(marks.advance(runs, events))
    }
}

/// Walks completed runs past the retention in `(finished_at, id)` order from a mark,
/// deleting each event (runs, steps) whose runs all completed before the cut-off.
/// Returns the runs read and the last one.
pub(crate) const PRUNE_RUNS: &str = "
WITH c AS (
    SELECT id, event_id, finished_at FROM fanfare_runs
    WHERE status = 2 AND finished_at < fanfare_now() - $1 AND (finished_at, id) > ($2, $3)
    ORDER BY finished_at, id
    LIMIT $4),
gone AS (
    DELETE FROM fanfare_events e WHERE e.id = ANY(ARRAY(SELECT event_id FROM c))
    AND NOT EXISTS (SELECT 1 FROM fanfare_runs r WHERE r.event_id = e.id
                    AND (r.status <> 2 OR r.finished_at >= fanfare_now() - $1))
    RETURNING e.id),
runs AS (
    DELETE FROM fanfare_runs r WHERE r.event_id = ANY(ARRAY(SELECT id FROM gone))
    RETURNING r.id),
steps AS (
    DELETE FROM fanfare_steps s WHERE s.run = ANY(ARRAY(SELECT id FROM runs)))
SELECT (SELECT count(*) FROM c), last.finished_at, last.id
FROM (SELECT 1) one
LEFT JOIN (SELECT finished_at, id FROM c ORDER BY finished_at DESC, id DESC LIMIT 1) last ON true";

/// Walks events past the retention in `(ts, id)` order from a mark, deleting those
/// without runs. Returns the events read and the last one.
pub(crate) const PRUNE_EVENTS: &str = "
WITH c AS (
    SELECT id, ts FROM fanfare_events
    WHERE ts < fanfare_now() - $1 AND (ts, id) > ($2, $3)
    ORDER BY ts, id
    LIMIT $4),
gone AS (
    DELETE FROM fanfare_events e
    WHERE e.id = ANY(ARRAY(SELECT id FROM c)) AND NOT EXISTS (SELECT 1 FROM fanfare_runs r WHERE r.event_id = e.id))
SELECT (SELECT count(*) FROM c), last.ts, last.id
FROM (SELECT 1) one
LEFT JOIN (SELECT ts, id FROM c ORDER BY ts DESC, id DESC LIMIT 1) last ON true";

/// Listens for new runs on a connection of its own, reconnecting after a failure.
async fn listen(config: tokio_postgres::Config, target: String, wake: Arc<Notify>) {
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
                if failures == 1 || failures % 30 == 0 {
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

impl Store for PgStore {
    fn append(&self, event: Envelope) -> StoreFuture<'_, usize> {
        let (tx, rx) = oneshot::channel();
        let sent = self.sends.send((event, tx));
        Box::pin(async move {
            let stopped = || {
                if self.shared.pool.is_closed() {
                    super::closed("PostgreSQL")
                } else {
                    Error::new(ErrorKind::Store, "the PostgreSQL committers have stopped")
                }
            };
            if sent.is_err() {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())?
        })
    }

    fn append_to(&self, event: Envelope, function: u32) -> StoreFuture<'_, usize> {
        Box::pin(self.shared.insert_to(event, function))
    }

    fn claim(&self, max: usize) -> StoreFuture<'_, Claim> {
        Box::pin(self.shared.claim(max))
    }

    fn record(&self, outcomes: Vec<Outcome>) -> RecordFuture<'_> {
        Box::pin(async move {
            match self.shared.record(&outcomes).await {
                Ok(()) => Ok(()),
                Err(error) => Err(RecordError { error, outcomes }),
            }
        })
    }

    fn release(&self, runs: Vec<RunKey>) -> StoreFuture<'_, ()> {
        Box::pin(self.shared.release(runs))
    }

    fn save_step(&self, run: RunKey, step: StepRecord) -> StoreFuture<'_, ()> {
        Box::pin(self.shared.save_step(run, step))
    }

    fn wait(&self, run: RunKey, spec: WaitSpec) -> StoreFuture<'_, WaitState> {
        Box::pin(self.shared.wait(run, spec))
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.shared.lease)
    }

    fn renew(&self, runs: Vec<RunKey>) -> StoreFuture<'_, ()> {
        Box::pin(self.shared.renew(runs))
    }

    fn parallel_writes(&self) -> usize {
        3
    }

    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>> {
        Box::pin(self.shared.runs(event))
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        // Committers, listener, reaper and pruner stop (the listener's connection with
        // it), and the pool closes its connections; later calls find it closed.
        for task in &self.tasks {
            task.abort();
        }
        self.shared.pool.close();
        Box::pin(std::future::ready(Ok(())))
    }
}
