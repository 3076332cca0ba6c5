//! The PostgreSQL store: the distributed engine.
//!
//! Any number of processes on any number of hosts share one database:
//! - each process upserts its app's functions at start (`fanfare_functions`), so a send
//!   from any process fans out, **in its own transaction**, to the functions of every app;
//! - concurrent sends of a process share one transaction (group commit);
//! - workers claim due runs of their own functions in batches with
//!   `FOR UPDATE SKIP LOCKED`, under a lease they renew while the runs execute
//!   (heartbeat); a run whose lease expires (its process died) is claimed again by others;
//! - a send claims, as it inserts them, the runs of the sending process's functions it
//!   has free slots for (`send.rs`, `store::Slots`): the process executes them without a
//!   claim statement;
//! - `NOTIFY` after each commit that left runs queued wakes idle workers everywhere at
//!   once; a poll every second covers a missed notification, and the listener
//!   reconnects on its own.
//!
//! Times (due, lease) are the database's clock, so hosts need not agree on the time.

/// The text of the common table expressions that mirror the runs a CTE changed (`$cte`,
/// whose rows are the runs' `id, status, due_at, lease_until, finished_at`:
/// [`mirrored!`]'s `RETURNING`) into `fanfare_queue` (schema migration 14), for a `WITH`
/// list: an unfinished run's queue row is updated; a finished run's (completed or
/// cancelled) is deleted, and its finish goes to `fanfare_finished` (migration 16).
/// They are named after `$cte` (`$cte_queued`, `$cte_left`, `$cte_finished`).
macro_rules! mirror {
    ($cte:literal) => {
        concat!(
            mirror_unfinished!($cte),
            ",\n",
            $cte,
            "_left AS (DELETE FROM fanfare_queue q USING ",
            $cte,
            " m WHERE q.run = m.id AND m.status IN (2, 5)),\n",
            $cte,
            "_finished AS (INSERT INTO fanfare_finished (finished_at, run) \
             SELECT m.finished_at, m.id FROM ",
            $cte,
            " m WHERE m.status IN (2, 5))"
        )
    };
}

/// [`mirror!`] for a change that leaves every run unfinished (a claim, a release, a
/// lease's renewal or expiry): the runs' queue rows are updated.
macro_rules! mirror_unfinished {
    ($cte:literal) => {
        concat!(
            $cte,
            "_queued AS (UPDATE fanfare_queue q SET state = m.status, due_at = m.due_at, \
             lease_until = m.lease_until FROM ",
            $cte,
            " m WHERE q.run = m.id AND m.status NOT IN (2, 5))"
        )
    };
}

/// The columns of runs that `fanfare_queue` mirrors, as a `RETURNING` list, each
/// qualified with `$runs` (the runs' alias and a dot, or `""`).
macro_rules! mirrored {
    ($runs:literal) => {
        concat!(
            $runs,
            "id, ",
            $runs,
            "status, ",
            $runs,
            "due_at, ",
            $runs,
            "lease_until, ",
            $runs,
            "finished_at"
        )
    };
}

/// An update of runs (`$update`, without `RETURNING`) and the mirror of the runs it
/// changed, in one statement, which returns a row per run changed; `$runs` qualifies the
/// runs' columns where the update reads another table with columns of the same names
/// (the runs' alias and a dot).
macro_rules! update_mirrored {
    ($update:literal) => {
        update_mirrored!("", $update)
    };
    ($runs:literal, $update:literal) => {
        concat!(
            "WITH changed AS (",
            $update,
            " RETURNING ",
            mirrored!($runs),
            "), ",
            mirror!("changed"),
            " SELECT 1 FROM changed"
        )
    };
}

/// The text of the insert into `fanfare_queue` of the runs a CTE inserted (`$cte`, with
/// `RETURNING` [`queued!`]'s columns).
macro_rules! enqueue {
    ($cte:literal) => {
        concat!(
            "INSERT INTO fanfare_queue (run, app, function_id, state, due_at, lease_until) \
             SELECT id, app, function_id, status, due_at, lease_until FROM ",
            $cte
        )
    };
}

/// The columns of inserted runs that [`enqueue!`] reads, as a `RETURNING` list.
macro_rules! queued {
    () => {
        "id, app, function_id, status, due_at, lease_until"
    };
}

mod background;
mod cancel;
mod claim;
mod events;
mod flow;
mod queue;
mod record;
mod runs;
mod schema;
mod send;
mod states;
mod waits;

use background::listen;
use send::{PendingSend, COMMITTERS, MAX_BATCH};

#[cfg(test)]
pub(crate) use {
    background::{PRUNE_EVENTS, PRUNE_FAILED, PRUNE_RUNS, REAP},
    cancel::FIND,
    claim::{CLAIM, NEXT_DUE},
    flow::{BATCH_EVENTS, FINISH_BATCHES, HELD_BY_FUNCTION, HELD_BY_KEY},
    queue::QUEUE_STATS,
    record::{RECORD, RECORD_FAILURES},
    runs::list_sql,
    schema::MIGRATIONS,
    send::SEND,
};

use super::retention::{self, Marks, Retention};
use super::{
    Attached, AttemptInfo, EventFilter, Handoff, Replay, RunCounts, RunFilter, StatusWhere,
};
use super::{
    Cancel, Claim, ClaimedRun, EventCache, Outcome, OutcomeKind, QueueStats, RecordError,
    RecordFuture, RunInfo, RunKey, RunStatus, Saved, Slots, StepRecord, Store, StoreFuture,
    StoreOptions, Unfinished, WaitSpec, WaitState,
};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Envelope, EventId, RunId};
use crate::function::{FunctionDef, Registry};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
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

/// Run on each new connection. A prepared statement keeps a generic plan made from the
/// tables' sizes when it was made: one made on a new, near-empty table read the whole
/// runs table to find a claim's rows by key (a sequential scan looks cheaper than index
/// lookups in a table of a few pages), and went on doing so as the backlog grew into the
/// hundreds of thousands, until autovacuum analyzed the table (a minute or more later).
/// Every statement of fanfare's finds its rows through an index (`store::plans` checks
/// each, planned on empty tables and run on full ones), so its connections rule
/// sequential scans out (a table without a usable index is still read whole). And no
/// JIT compilation: none of these statements runs long enough to repay it, and a plan
/// whose estimate is high (a generic list page, which cannot know its limit, or a
/// disabled sequential scan) would be compiled at every execution (6–75 ms a page).
pub(crate) const SESSION: &str = "SET enable_seqscan = off; SET jit = off";

/// Run on each new connection of the main pool, after [`SESSION`]: each statement is
/// planned once per connection. Without sequential scans PostgreSQL judges some generic
/// plans dearer than plans made for each call's values and plans those statements anew
/// at every call: a send (0.4 ms, a quarter of a lone send's latency), and by the bench
/// more: with this for sends only, 0.36–0.43 of the hand-written runs/s (one process)
/// against 0.42–0.45 with it for all. The pages of the runs and events APIs go through a
/// pool of their own without it ([`INSPECT_POOL_SIZE`]): the generic plan of a page of
/// one function's runs walks the run id index and skips the other functions' runs, most
/// of the history for a rare function; a plan made for the function reads its index.
const GENERIC: &str = "SET plan_cache_mode = force_generic_plan";

/// Connections of the pool that reads pages of runs and events (`runs.rs`, `events.rs`).
const INSPECT_POOL_SIZE: usize = 4;

/// Connections in the pool.
const POOL_SIZE: usize = 12;

/// The shortest period of a background task.
const MIN_TICK: Duration = Duration::from_millis(10);

pub(crate) struct PgStore {
    shared: Arc<Shared>,
    sends: mpsc::UnboundedSender<PendingSend>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    pool: Pool,
    /// Connections that read pages of runs and events, planned for their values.
    inspect_pool: Pool,
    app: String,
    /// This process, as the owner of the runs it claims.
    owner: Uuid,
    /// Local function ids, in registry order.
    functions: Vec<String>,
    /// Local functions, in registry order.
    defs: Vec<&'static FunctionDef>,
    /// Whether any local function has flow control.
    flow: bool,
    index: HashMap<String, u32>,
    cache: Mutex<EventCache>,
    target: String,
    /// A claimed run's lease; renewed every third of it while the run executes.
    lease: Duration,
    /// The local functions whose runs a send claims as it stores them (those without
    /// flow control, which the claim's gate decides on), by id…
    direct_functions: Vec<String>,
    /// …and how many of them each event name triggers.
    direct: HashMap<&'static str, usize>,
    /// The engine's slots, once attached: where runs claimed by a send go.
    slots: std::sync::OnceLock<Attached>,
}

/// The event in four consecutive columns of `row` from `at`: id, name, data, time.
fn event_at(row: &tokio_postgres::Row, at: usize) -> Envelope {
    Envelope::stored(
        EventId::from_uuid(row.get(at)),
        row.get(at + 1),
        row.get(at + 2),
        row.get::<_, i64>(at + 3) as u64,
    )
}

fn pg_error(target: &str, what: &str, e: impl std::error::Error) -> Error {
    // The server's own message is in the source: "db error" alone says nothing.
    let mut message = format!("PostgreSQL {target}: {what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::new(ErrorKind::Store, message)
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
        let pool = |size, session: &'static [&'static str]| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(5)))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                    Box::pin(async move {
                        for sql in session {
                            client
                                .batch_execute(sql)
                                .await
                                .map_err(deadpool_postgres::HookError::Backend)?;
                        }
                        Ok(())
                    })
                }))
                .build()
                .map_err(|e| pg_error(&target, "cannot build the connection pool", e))
        };
        let inspect_pool = pool(INSPECT_POOL_SIZE, &[SESSION])?;
        let pool = pool(POOL_SIZE, &[SESSION, GENERIC])?;
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
        let defs: Vec<&'static FunctionDef> = if execute {
            registry.defs.clone()
        } else {
            Vec::new()
        };
        let direct_defs = || defs.iter().filter(|d| super::claimed_at_send(d));
        let mut direct: HashMap<&'static str, usize> = HashMap::new();
        for trigger in direct_defs().flat_map(|d| d.triggers()) {
            *direct.entry(trigger).or_default() += 1;
        }
        let direct_functions = direct_defs().map(|d| d.id().to_owned()).collect();
        let shared = Arc::new(Shared {
            direct,
            direct_functions,
            slots: std::sync::OnceLock::new(),
            flow: defs.iter().any(|d| d.flow().is_some()),
            defs,
            pool,
            inspect_pool,
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
        let committers = Arc::new(send::Committers::new(rx));
        let batch = if options.group_commit { MAX_BATCH } else { 1 };
        let mut tasks = Vec::new();
        for _ in 0..COMMITTERS {
            tasks.push(tokio::spawn(Arc::clone(&shared).commit_sends(
                Arc::clone(&committers),
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
    fn error(&self, what: &str, e: impl std::error::Error) -> Error {
        pg_error(&self.target, what, e)
    }

    async fn client(&self) -> Result<Object> {
        self.connection(&self.pool).await
    }

    /// A connection of the pool that reads pages of runs and events.
    async fn inspect_client(&self) -> Result<Object> {
        self.connection(&self.inspect_pool).await
    }

    async fn connection(&self, pool: &Pool) -> Result<Object> {
        pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Closed => super::closed("PostgreSQL"),
            e => self.error("unreachable", e),
        })
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

    fn append_all(&self, events: Vec<Envelope>) -> StoreFuture<'_, usize> {
        // Its own transaction, beside the group-committed sends.
        Box::pin(async move {
            let counts = self.shared.insert(events).await?;
            Ok(counts.iter().map(|&(all, _)| all).sum())
        })
    }

    fn claim(&self, max: usize) -> StoreFuture<'_, Claim> {
        Box::pin(self.shared.claim(max))
    }

    fn attach(&self, slots: std::sync::Weak<dyn Slots>) {
        if let Some(attached) = Attached::new(slots) {
            let _ = self.shared.slots.set(attached);
        }
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

    fn save_step(&self, run: RunKey, step: StepRecord) -> StoreFuture<'_, Saved> {
        Box::pin(self.shared.save_step(run, step))
    }

    fn cancel(&self, run: RunId, reason: String) -> StoreFuture<'_, Cancel> {
        Box::pin(self.shared.cancel(run, reason))
    }

    fn wait(&self, run: RunKey, spec: WaitSpec) -> StoreFuture<'_, WaitState> {
        Box::pin(self.shared.wait(run, spec))
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.shared.lease)
    }

    fn renew(&self, runs: Vec<RunKey>) -> StoreFuture<'_, Vec<(RunKey, String)>> {
        Box::pin(self.shared.renew(runs))
    }

    fn unfinished(&self, function: u32, limit: usize) -> StoreFuture<'_, Vec<Unfinished>> {
        Box::pin(self.shared.unfinished(function, limit))
    }

    fn queue_stats(&self, limit: usize) -> StoreFuture<'_, QueueStats> {
        Box::pin(self.shared.queue_stats(limit))
    }

    fn events_named(
        &self,
        names: Vec<String>,
        since_ms: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Arc<Envelope>>> {
        Box::pin(self.shared.events_named(names, since_ms, limit))
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, Option<RunInfo>> {
        Box::pin(self.shared.run(run))
    }

    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>> {
        Box::pin(self.shared.runs(event))
    }

    fn list<'a>(&'a self, filter: &'a RunFilter, limit: usize) -> StoreFuture<'a, Vec<RunInfo>> {
        Box::pin(self.shared.list(filter, limit))
    }

    fn replay(&self, run: RunId) -> StoreFuture<'_, Replay> {
        Box::pin(self.shared.replay(run))
    }

    fn event(&self, id: EventId) -> StoreFuture<'_, Option<Arc<Envelope>>> {
        Box::pin(self.shared.event(id))
    }

    fn events<'a>(
        &'a self,
        filter: &'a EventFilter,
        limit: usize,
    ) -> StoreFuture<'a, Option<Vec<Arc<Envelope>>>> {
        Box::pin(self.shared.events(filter, limit))
    }

    fn count_runs(&self, functions: Vec<String>) -> StoreFuture<'_, Vec<RunCounts>> {
        Box::pin(self.shared.count(functions))
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        // Committers, listener, reaper and pruner stop (the listener's connection with
        // it), and the pool closes its connections; later calls find it closed.
        for task in &self.tasks {
            task.abort();
        }
        self.shared.pool.close();
        self.shared.inspect_pool.close();
        Box::pin(std::future::ready(Ok(())))
    }
}
