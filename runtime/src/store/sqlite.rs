//! The SQLite store: embedded and durable.
//!
//! One connection, owned by one thread (the *writer*). Every store call is a command sent
//! to it; the writer takes all the commands waiting, runs them in **one transaction**, and
//! answers each after the commit. Concurrent sends therefore share a commit (group
//! commit), and claims and outcomes ride along in the same transaction.
//!
//! The database is in WAL mode with `locking_mode=EXCLUSIVE`: one process owns the file
//! while it runs. Runs left `running` by a process that died are re-queued at open.

use super::retention::{self, Marks};
use super::{
    Claim, ClaimedRun, Outcome, OutcomeKind, RunInfo, RunKey, RunStatus, Store, StoreFuture,
};
use super::{EventCache, RecordError, RecordFuture, StepRecord, StoreOptions, WaitSpec, WaitState};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{now_millis, Envelope, EventId, RunId};
use crate::function::Registry;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// How hard SQLite works to make a commit durable: its `synchronous` setting.
///
/// In WAL mode:
/// - [`SqliteSync::Full`] (the default) syncs the log on every commit: an event whose
///   `send` returned survives a crash of the process **and** of the machine (power loss).
///   Group commit shares one sync among all the sends of a transaction.
/// - [`SqliteSync::Normal`] syncs only at checkpoints: an accepted event survives a crash
///   of the process (`kill -9`), but the last commits can be lost if the machine loses
///   power or the OS crashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// `PRAGMA synchronous = NORMAL`.
    Normal,
    /// `PRAGMA synchronous = FULL`.
    #[default]
    Full,
}

/// The schema migrations, applied in order; the schema version is their count.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE fanfare_events (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    ts INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE fanfare_runs (
    id INTEGER PRIMARY KEY,
    run_id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    function_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER NOT NULL,
    last_error TEXT,
    output TEXT,
    finished_at INTEGER
);
CREATE INDEX fanfare_runs_due ON fanfare_runs (due_at) WHERE status = 0;
CREATE INDEX fanfare_runs_event ON fanfare_runs (event_id);
"#,
    r#"
CREATE TABLE fanfare_steps (
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    output TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    completed_at INTEGER NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
ALTER TABLE fanfare_runs ADD COLUMN steps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fanfare_runs ADD COLUMN sleeping INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
CREATE TABLE fanfare_waits (
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    event TEXT NOT NULL,
    field TEXT,
    value TEXT,
    deadline INTEGER NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
CREATE INDEX fanfare_waits_event ON fanfare_waits (event);
CREATE INDEX fanfare_events_name ON fanfare_events (name, ts);
ALTER TABLE fanfare_runs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
"#,
    // Pruning walks finished runs and events in time order; a send finds the waits it
    // resolves by (event, field, value) instead of reading every wait for the name.
    r#"
CREATE INDEX fanfare_runs_finished ON fanfare_runs (finished_at, id) WHERE status = 2;
CREATE INDEX fanfare_events_ts ON fanfare_events (ts, id);
DROP INDEX fanfare_waits_event;
CREATE INDEX fanfare_waits_match ON fanfare_waits (event, field, value);
CREATE TABLE fanfare_wait_fields (
    event TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (event, field)
) WITHOUT ROWID;
INSERT OR IGNORE INTO fanfare_wait_fields SELECT DISTINCT event, field FROM fanfare_waits WHERE field IS NOT NULL;
"#,
];

/// Due runs of this process's functions, earliest first.
pub(crate) const CLAIM: &str =
    "SELECT id, run_id, event_id, function_id, attempts, steps FROM fanfare_runs \
    WHERE status = 0 AND due_at <= ?1 AND function_id IN (SELECT id FROM temp.fanfare_local) \
    ORDER BY due_at LIMIT ?2";

/// When the earliest queued run of this process's functions is due.
pub(crate) const NEXT_DUE: &str = "SELECT min(due_at) FROM fanfare_runs WHERE status = 0 \
    AND function_id IN (SELECT id FROM temp.fanfare_local)";

/// The waits for an event name matching on a field (or on none) with a value.
pub(crate) const WAITS_OF: &str = "SELECT run, seq, step_id FROM fanfare_waits \
    WHERE event = ?1 AND field IS ?2 AND value IS ?3";

/// Completed runs past the retention cut-off, from a mark, in `(finished_at, id)` order.
pub(crate) const PRUNE_RUNS: &str = "SELECT finished_at, id, event_id FROM fanfare_runs \
    WHERE status = 2 AND finished_at < ?1 AND (finished_at, id) > (?2, ?3) \
    ORDER BY finished_at, id LIMIT ?4";

/// Events past the retention cut-off, from a mark, in `(ts, id)` order.
pub(crate) const PRUNE_EVENTS: &str =
    "SELECT ts, id FROM fanfare_events WHERE ts < ?1 AND (ts, id) > (?2, ?3) \
    ORDER BY ts, id LIMIT ?4";

const IN_USE: &str = "cannot open: another process is using it (a SQLite database serves one \
    process at a time; use PostgreSQL to share work between processes)";

/// Most commands run in one transaction.
const MAX_BATCH: usize = 2048;
const QUEUED: i64 = 0;
const RUNNING: i64 = 1;
const COMPLETED: i64 = 2;
const FAILED: i64 = 3;

pub(crate) struct SqliteStore {
    commands: mpsc::UnboundedSender<Command>,
    /// Set by `close`: the writer thread is gone and the file released.
    closed: std::sync::atomic::AtomicBool,
}

enum Command {
    Append(Envelope, Option<u32>, oneshot::Sender<Result<usize>>),
    Claim(usize, oneshot::Sender<Result<Claim>>),
    Record(
        Vec<Outcome>,
        oneshot::Sender<std::result::Result<(), RecordError>>,
    ),
    Release(Vec<RunKey>, oneshot::Sender<Result<()>>),
    SaveStep(RunKey, StepRecord, oneshot::Sender<Result<()>>),
    Wait(RunKey, WaitSpec, oneshot::Sender<Result<WaitState>>),
    Runs(EventId, oneshot::Sender<Result<Option<Vec<RunInfo>>>>),
    /// Ends the writer after the commands before it; answered once the file is released.
    Close(oneshot::Sender<Result<()>>),
}

/// An answer held until the transaction it belongs to commits.
enum Reply {
    Append(oneshot::Sender<Result<usize>>, Result<usize>),
    Claim(oneshot::Sender<Result<Claim>>, Result<Claim>),
    Unit(oneshot::Sender<Result<()>>, Result<()>),
    Record(
        oneshot::Sender<std::result::Result<(), RecordError>>,
        Vec<Outcome>,
        Result<()>,
    ),
    Runs(
        oneshot::Sender<Result<Option<Vec<RunInfo>>>>,
        Result<Option<Vec<RunInfo>>>,
    ),
    Wait(oneshot::Sender<Result<WaitState>>, Result<WaitState>),
}

impl Reply {
    fn send(self, commit: &std::result::Result<(), String>) {
        // A caller that stopped waiting (timeout, shutdown) is no error of the store's.
        fn answer<T>(
            tx: oneshot::Sender<Result<T>>,
            r: Result<T>,
            commit: &std::result::Result<(), String>,
        ) {
            let _ = tx.send(match commit {
                Ok(()) => r,
                Err(e) => Err(Error::new(ErrorKind::Store, e)),
            });
        }
        match self {
            Reply::Append(tx, r) => answer(tx, r, commit),
            Reply::Claim(tx, r) => answer(tx, r, commit),
            Reply::Unit(tx, r) => answer(tx, r, commit),
            Reply::Record(tx, outcomes, r) => {
                let r = match commit {
                    Ok(()) => r,
                    Err(e) => Err(Error::new(ErrorKind::Store, e)),
                };
                let _ = tx.send(r.map_err(|error| RecordError { error, outcomes }));
            }
            Reply::Runs(tx, r) => answer(tx, r, commit),
            Reply::Wait(tx, r) => answer(tx, r, commit),
        }
    }
}

fn store_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Store,
        format_args!("SQLite database {}: {what}: {e}", path.display()),
    )
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and starts the writer thread.
    pub async fn open(
        path: PathBuf,
        sync: SqliteSync,
        registry: Arc<Registry>,
        options: StoreOptions,
    ) -> Result<SqliteStore> {
        let (opened_tx, opened_rx) = oneshot::channel();
        let (commands, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("fanfare-sqlite".into())
            .spawn(move || {
                match Writer::open(&path, sync, registry, options.app, options.retention) {
                    Ok(writer) => {
                        let _ = opened_tx.send(Ok(()));
                        writer.run(rx, if options.group_commit { MAX_BATCH } else { 1 });
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Store,
                    format_args!("could not start the SQLite thread: {e}"),
                )
            })?;
        opened_rx.await.map_err(|_| {
            Error::new(ErrorKind::Store, "the SQLite thread stopped while opening")
        })??;
        Ok(SqliteStore {
            commands,
            closed: Default::default(),
        })
    }

    /// Why a command got no answer: the store was closed, or the writer died.
    fn stopped(&self) -> Error {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            super::closed("SQLite")
        } else {
            Error::new(ErrorKind::Store, "the SQLite writer thread has stopped")
        }
    }

    fn call<T: Send + 'static>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> StoreFuture<'_, T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(command(tx));
        Box::pin(async move {
            if sent.is_err() {
                return Err(self.stopped());
            }
            rx.await.map_err(|_| self.stopped())?
        })
    }
}

impl Store for SqliteStore {
    fn append(&self, event: Envelope) -> StoreFuture<'_, usize> {
        self.call(|tx| Command::Append(event, None, tx))
    }

    fn append_to(&self, event: Envelope, function: u32) -> StoreFuture<'_, usize> {
        self.call(|tx| Command::Append(event, Some(function), tx))
    }

    fn claim(&self, max: usize) -> StoreFuture<'_, Claim> {
        self.call(|tx| Command::Claim(max, tx))
    }

    fn record(&self, outcomes: Vec<Outcome>) -> RecordFuture<'_> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Record(outcomes, tx));
        Box::pin(async move {
            let stopped = || self.stopped();
            match sent {
                // The outcomes are gone with the thread; their runs are re-queued at the
                // next open.
                Err(_) => Err(RecordError {
                    error: stopped(),
                    outcomes: Vec::new(),
                }),
                Ok(()) => rx.await.unwrap_or_else(|_| {
                    Err(RecordError {
                        error: stopped(),
                        outcomes: Vec::new(),
                    })
                }),
            }
        })
    }

    fn release(&self, runs: Vec<RunKey>) -> StoreFuture<'_, ()> {
        self.call(|tx| Command::Release(runs, tx))
    }

    fn save_step(&self, run: RunKey, step: StepRecord) -> StoreFuture<'_, ()> {
        self.call(|tx| Command::SaveStep(run, step, tx))
    }

    fn wait(&self, run: RunKey, spec: WaitSpec) -> StoreFuture<'_, WaitState> {
        self.call(|tx| Command::Wait(run, spec, tx))
    }

    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>> {
        self.call(|tx| Command::Runs(event, tx))
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Close(tx));
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        Box::pin(async move {
            if sent.is_ok() {
                // The writer answers once the connection (and the file's lock) is gone.
                let _ = rx.await;
            }
            Ok(())
        })
    }
}

/// The thread that owns the connection.
struct Writer {
    conn: Connection,
    app: String,
    path: PathBuf,
    registry: Arc<Registry>,
    functions: HashMap<&'static str, u32>,
    retention: Duration,
    /// Events sent by this process whose runs are not all claimed yet, with the number
    /// of runs left to claim: their typed values spare the functions a deserialization.
    cache: EventCache,
    /// When to prune next, and where pruning got to.
    next_prune: Instant,
    marks: Marks,
}

impl Writer {
    fn open(
        path: &Path,
        sync: SqliteSync,
        registry: Arc<Registry>,
        app: String,
        retention: Duration,
    ) -> Result<Writer> {
        let fail = |what: &str, e: rusqlite::Error| store_error(path, what, e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("cannot open", e))?;
        // Read before writing anything: a file that is not a database, or a database of
        // another program, is refused untouched.
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    fail(IN_USE, e)
                }
                _ => fail(
                    "not a SQLite database, or a damaged one (the file was left untouched)",
                    e,
                ),
            })?;
        if !tables.is_empty() && !tables.iter().any(|t| t == "fanfare_meta") {
            return Err(store_error(
                path,
                "not a fanfare database (the file was left untouched)",
                format_args!("it holds other tables: {}", tables.join(", ")),
            ));
        }
        let sync = match sync {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
             PRAGMA busy_timeout = 0;"
        ))
        .map_err(|e| fail(IN_USE, e))?;
        let mut writer = Writer {
            conn,
            app,
            path: path.to_owned(),
            functions: registry
                .defs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.id(), i as u32))
                .collect(),
            registry,
            retention,
            cache: EventCache::default(),
            next_prune: Instant::now(),
            marks: Marks::default(),
        };
        writer.migrate()?;
        writer.recover()?;
        Ok(writer)
    }

    fn error(&self, what: &str, e: rusqlite::Error) -> Error {
        store_error(&self.path, what, e)
    }

    /// Applies the migrations this database has not seen; refuses a newer schema.
    fn migrate(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| {
                store_error(
                    &self.path,
                    "cannot migrate (is another process using it?)",
                    e,
                )
            })?;
        let run = |tx: &Transaction| -> rusqlite::Result<std::result::Result<(), i64>> {
            tx.execute_batch("CREATE TABLE IF NOT EXISTS fanfare_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")?;
            let version: i64 = tx
                .query_row(
                    "SELECT value FROM fanfare_meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            if version > MIGRATIONS.len() as i64 {
                return Ok(Err(version));
            }
            for m in &MIGRATIONS[version as usize..] {
                tx.execute_batch(m)?;
            }
            tx.execute(
                "INSERT INTO fanfare_meta (key, value) VALUES ('schema_version', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [MIGRATIONS.len() as i64],
            )?;
            Ok(Ok(()))
        };
        match run(&tx).map_err(|e| store_error(&self.path, "migration failed", e))? {
            Ok(()) => tx.commit().map_err(|e| store_error(&self.path, "migration failed", e)),
            Err(version) => Err(store_error(
                &self.path,
                "written by a newer fanfare",
                format_args!(
                    "its schema version is {version}, this fanfare knows versions up to {}; upgrade fanfare",
                    MIGRATIONS.len()
                ),
            )),
        }
    }

    /// Re-queues the runs a dead process left `running`; their interrupted attempt counts.
    fn recover(&mut self) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE fanfare_runs SET status = ?1 WHERE status = ?2",
                params![QUEUED, RUNNING],
            )
            .map_err(|e| self.error("cannot re-queue interrupted runs", e))?;
        if n > 0 {
            tracing::warn!(
                runs = n,
                "fanfare: re-queued runs interrupted by a previous process"
            );
        }
        self.conn
            .execute_batch("CREATE TEMP TABLE fanfare_local (id TEXT PRIMARY KEY)")
            .map_err(|e| self.error("cannot set up", e))?;
        for def in &self.registry.defs {
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO temp.fanfare_local (id) VALUES (?1)",
                    [def.id()],
                )
                .map_err(|e| self.error("cannot set up", e))?;
        }
        Ok(())
    }

    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, max_batch: usize) {
        let mut batch = Vec::with_capacity(max_batch);
        let mut close = None;
        while close.is_none() && rx.blocking_recv_many(&mut batch, max_batch) > 0 {
            // Commands after a close are not run: their callers learn the store is closed.
            if let Some(at) = batch.iter().position(|c| matches!(c, Command::Close(_))) {
                if let Command::Close(reply) = batch.remove(at) {
                    close = Some(reply);
                }
                batch.truncate(at);
            }
            let replies = self.transaction(&mut batch);
            let (replies, commit) = match replies {
                Ok(r) => (r, Ok(())),
                Err((r, e)) => (r, Err(e)),
            };
            for reply in replies {
                reply.send(&commit);
            }
        }
        drop(rx);
        // Closes the connection, which releases the file and its lock, before answering.
        drop(self);
        if let Some(reply) = close {
            let _ = reply.send(Ok(()));
        }
    }

    /// Runs a batch of commands in one transaction; each command in a savepoint of its own,
    /// so one failing command leaves the others' work intact.
    fn transaction(
        &mut self,
        batch: &mut Vec<Command>,
    ) -> std::result::Result<Vec<Reply>, (Vec<Reply>, String)> {
        let mut replies = Vec::with_capacity(batch.len());
        let now = now_millis();
        let prune = Instant::now() >= self.next_prune;
        let mut marks = self.marks;
        let path = self.path.clone();
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                let msg = store_error(&path, "cannot begin a transaction", e).to_string();
                let replies = batch.drain(..).map(|c| failed_reply(c, &msg)).collect();
                return Err((replies, msg));
            }
        };
        let ctx = Ctx {
            registry: &self.registry,
            app: &self.app,
            functions: &self.functions,
            path: &path,
            now,
        };
        for command in batch.drain(..) {
            let mut sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => {
                    replies.push(failed_reply(
                        command,
                        &store_error(&path, "savepoint", e).to_string(),
                    ));
                    continue;
                }
            };
            let reply = match command {
                Command::Append(event, to, reply) => {
                    let r = ctx.append(&sp, event, to, &mut self.cache);
                    Reply::Append(reply, r)
                }
                Command::Claim(max, reply) => {
                    Reply::Claim(reply, ctx.claim(&sp, max, &mut self.cache))
                }
                Command::Record(outcomes, reply) => {
                    let r = ctx.record(&sp, &outcomes);
                    Reply::Record(reply, outcomes, r)
                }
                Command::Release(keys, reply) => Reply::Unit(reply, ctx.release(&sp, keys)),
                Command::Wait(key, spec, reply) => Reply::Wait(reply, ctx.wait(&sp, key, spec)),
                Command::SaveStep(key, step, reply) => {
                    Reply::Unit(reply, ctx.save_step(&sp, key, step))
                }
                Command::Runs(event, reply) => Reply::Runs(reply, ctx.runs(&sp, event)),
                Command::Close(reply) => Reply::Unit(reply, Ok(())),
            };
            let ok = match &reply {
                Reply::Append(_, r) => r.is_ok(),
                Reply::Claim(_, r) => r.is_ok(),
                Reply::Unit(_, r) | Reply::Record(_, _, r) => r.is_ok(),
                Reply::Runs(_, r) => r.is_ok(),
                Reply::Wait(_, r) => r.is_ok(),
            };
            let end = if ok {
                sp.commit()
            } else {
                sp.rollback().and_then(|()| sp.commit())
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "fanfare: SQLite savepoint failed");
            }
            replies.push(reply);
        }
        // One batch of the history per transaction at most, between the commands' work.
        let mut behind = false;
        let began = Instant::now();
        if prune {
            match tx
                .savepoint()
                .map_err(|e| store_error(&path, "savepoint", e))
                .and_then(|sp| {
                    let more = ctx.prune(&sp, self.retention, &mut marks)?;
                    sp.commit()
                        .map_err(|e| store_error(&path, "cannot prune", e))?;
                    Ok(more)
                }) {
                Ok(more) => behind = more,
                Err(e) => tracing::warn!(error = %e, "fanfare: pruning finished runs failed"),
            }
        }
        let took = began.elapsed();
        match tx.commit() {
            Ok(()) => {
                if prune {
                    self.marks = marks;
                    self.next_prune =
                        Instant::now() + retention::pause(behind, took, self.retention);
                }
                Ok(replies)
            }
            Err(e) => {
                // Nothing of this batch was stored: forget what the cache learned from it.
                self.cache.clear();
                Err((replies, store_error(&path, "commit failed", e).to_string()))
            }
        }
    }
}

fn failed_reply(command: Command, msg: &str) -> Reply {
    let e = || Error::new(ErrorKind::Store, msg);
    match command {
        Command::Append(_, _, tx) => Reply::Append(tx, Err(e())),
        Command::Claim(_, tx) => Reply::Claim(tx, Err(e())),
        Command::Record(outcomes, tx) => Reply::Record(tx, outcomes, Err(e())),
        Command::Release(_, tx) | Command::SaveStep(_, _, tx) => Reply::Unit(tx, Err(e())),
        Command::Runs(_, tx) => Reply::Runs(tx, Err(e())),
        Command::Close(tx) => Reply::Unit(tx, Err(e())),
        Command::Wait(_, _, tx) => Reply::Wait(tx, Err(e())),
    }
}

/// A due run: row id, run id, event id, function id, attempts so far, steps completed.
type ClaimRow = (i64, Vec<u8>, Vec<u8>, String, u32, u32);
/// A run as `runs` reads it: run id, function id, status, attempts, last error, output,
/// row id, suspension (1 sleeping, 2 waiting).
type RunRow = (
    Vec<u8>,
    String,
    i64,
    u32,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

/// A pending wait: run, step position, step id.
type WaitRow = (i64, u32, String);

/// What the statements of one transaction need.
struct Ctx<'a> {
    registry: &'a Registry,
    app: &'a str,
    functions: &'a HashMap<&'static str, u32>,
    path: &'a Path,
    now: u64,
}

impl Ctx<'_> {
    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        let what = what.to_owned();
        move |e| store_error(self.path, &what, e)
    }

    fn append(
        &self,
        tx: &Connection,
        event: Envelope,
        to: Option<u32>,
        cache: &mut EventCache,
    ) -> Result<usize> {
        let target;
        let subscribers = match to {
            Some(function) => {
                target = [function];
                &target[..]
            }
            None => self.registry.subscribers(&event.name),
        };
        let err = self.err("cannot store the event");
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO fanfare_events (id, name, data, ts) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    event.id.as_uuid().as_bytes(),
                    &*event.name,
                    &event.data,
                    event.ts as i64
                ])
            })
            .map_err(&err)?;
        if inserted == 0 {
            // A replayed `ctx.send`: the event and its runs were stored the first time.
            return Ok(0);
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO fanfare_runs (run_id, event_id, function_id, status, due_at) VALUES (?1, ?2, ?3, 0, ?4)",
            )
            .map_err(&err)?;
        for &f in subscribers {
            let run_id = RunId::new(event.ts);
            insert
                .execute(params![
                    run_id.as_uuid().as_bytes(),
                    event.id.as_uuid().as_bytes(),
                    self.registry.defs[f as usize].id(),
                    self.now as i64
                ])
                .map_err(&err)?;
        }
        let resolved = self.resolve_waits(tx, &event)?;
        cache.keep(event, subscribers.len());
        // Runs made due: the new ones, and waiting ones this event resumes.
        Ok(subscribers.len() + resolved)
    }

    fn claim(&self, tx: &Connection, max: usize, cache: &mut EventCache) -> Result<Claim> {
        let err = self.err("cannot claim runs");
        let mut select = tx.prepare_cached(CLAIM).map_err(&err)?;
        let rows: Vec<ClaimRow> = select
            .query_map(params![self.now as i64, max as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        let mut mark = tx
            .prepare_cached(
                "UPDATE fanfare_runs SET status = 1, attempts = attempts + 1 WHERE id = ?1",
            )
            .map_err(&err)?;
        let mut load = tx
            .prepare_cached("SELECT name, data, ts FROM fanfare_events WHERE id = ?1")
            .map_err(&err)?;
        let mut runs = Vec::with_capacity(rows.len());
        for (key, run_id, event_id, function_id, attempts, steps) in rows {
            // Only this process's functions are selected, so the lookup always succeeds.
            let Some(&function) = self.functions.get(function_id.as_str()) else {
                continue;
            };
            mark.execute([key]).map_err(&err)?;
            let event_id = EventId::from_uuid(uuid_from(&event_id)?);
            let event = match cache.take(&event_id) {
                Some(env) => env,
                None => {
                    let (name, data, ts): (String, String, i64) = load
                        .query_row([event_id.as_uuid().as_bytes()], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .map_err(&err)?;
                    Arc::new(Envelope {
                        id: event_id,
                        name: Cow::Owned(name),
                        ts: ts as u64,
                        data,
                        typed: None,
                    })
                }
            };
            let steps = if steps > 0 {
                self.steps(tx, key)?
            } else {
                Vec::new()
            };
            runs.push(ClaimedRun {
                key: key as RunKey,
                run_id: RunId::from_uuid(uuid_from(&run_id)?),
                function,
                attempt: attempts,
                event,
                steps,
            });
        }
        let next_due = if runs.is_empty() {
            let due: Option<i64> = tx
                .prepare_cached(NEXT_DUE)
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(&err)?;
            due.map(|due| {
                Instant::now() + Duration::from_millis((due as u64).saturating_sub(self.now))
            })
        } else {
            None
        };
        Ok(Claim { runs, next_due })
    }

    /// Hands `event` to the runs waiting for it; returns how many it resumed. Each wait is
    /// found through the index: those for any event of the name, and, per field some wait
    /// of the name matches on, those whose value is the event's.
    fn resolve_waits(&self, tx: &Connection, event: &Envelope) -> Result<usize> {
        let err = self.err("cannot resolve waits");
        let fields: Vec<String> = tx
            .prepare_cached("SELECT field FROM fanfare_wait_fields WHERE event = ?1")
            .and_then(|mut s| s.query_map([&*event.name], |r| r.get(0))?.collect())
            .map_err(&err)?;
        let mut keys: Vec<(Option<String>, Option<String>)> = vec![(None, None)];
        if !fields.is_empty() {
            let data: serde_json::Value =
                serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
            for field in fields {
                if let Some(value) = data.get(&field) {
                    keys.push((Some(field), Some(value.to_string())));
                }
            }
        }
        let mut waits: Vec<WaitRow> = Vec::new();
        let mut select = tx.prepare_cached(WAITS_OF).map_err(&err)?;
        for (field, value) in &keys {
            let found = select
                .query_map(params![&*event.name, field, value], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<WaitRow>>>())
                .map_err(&err)?;
            waits.extend(found);
        }
        for (run, seq, step_id) in &waits {
            let spec = WaitSpec {
                seq: *seq,
                step_id: step_id.clone(),
                event: event.name.to_string(),
                matching: None,
                deadline_ms: 0,
                since_ms: 0,
                event_id: None,
            };
            self.resolve(tx, *run, &spec, event.data.clone())?;
        }
        Ok(waits.len())
    }

    /// Ends a wait with `output` (the event's data, or `null`) and makes the run due.
    fn resolve(&self, tx: &Connection, run: i64, spec: &WaitSpec, output: String) -> Result<()> {
        let err = self.err("cannot resolve a wait");
        tx.prepare_cached("DELETE FROM fanfare_waits WHERE run = ?1 AND seq = ?2")
            .and_then(|mut s| s.execute(params![run, spec.seq]))
            .map_err(&err)?;
        let now = self.now;
        self.save_step(
            tx,
            run as RunKey,
            StepRecord {
                seq: spec.seq,
                id: spec.step_id.clone(),
                output,
                started_ms: now,
                completed_ms: now,
            },
        )?;
        tx.prepare_cached(
            "UPDATE fanfare_runs SET due_at = ?2, waiting = 0 WHERE id = ?1 AND status = 0 AND waiting = 1",
        )
        .and_then(|mut s| s.execute(params![run, now as i64]))
        .map_err(&err)?;
        Ok(())
    }

    fn wait(&self, tx: &Connection, key: RunKey, spec: WaitSpec) -> Result<WaitState> {
        let err = self.err("cannot register a wait");
        let run = key as i64;
        let done: Option<String> = tx
            .prepare_cached("SELECT output FROM fanfare_steps WHERE run = ?1 AND seq = ?2")
            .and_then(|mut s| s.query_row(params![run, spec.seq], |r| r.get(0)).optional())
            .map_err(&err)?;
        if let Some(output) = done {
            return Ok(WaitState::Resolved(output));
        }
        let pending: Option<i64> = tx
            .prepare_cached("SELECT deadline FROM fanfare_waits WHERE run = ?1 AND seq = ?2")
            .and_then(|mut s| s.query_row(params![run, spec.seq], |r| r.get(0)).optional())
            .map_err(&err)?;
        let now = self.now;
        if let Some(deadline) = pending {
            if (now as i64) < deadline {
                return Ok(WaitState::Pending(deadline as u64));
            }
            self.resolve(tx, run, &spec, "null".into())?;
            return Ok(WaitState::Resolved("null".into()));
        }
        // The lookback: the event itself when its id is known, otherwise every event of
        // the name sent since `since_ms`, earliest first.
        let candidates: Vec<String> = match spec.event_id {
            Some(id) => tx
                .prepare_cached("SELECT data FROM fanfare_events WHERE id = ?1 AND name = ?2")
                .and_then(|mut s| {
                    s.query_map(params![id.as_uuid().as_bytes(), spec.event], |r| r.get(0))?
                        .collect()
                }),
            None => tx
                .prepare_cached(
                    "SELECT data FROM fanfare_events WHERE name = ?1 AND ts >= ?2 ORDER BY ts",
                )
                .and_then(|mut s| {
                    s.query_map(params![spec.event, spec.since_ms as i64], |r| r.get(0))?
                        .collect()
                }),
        }
        .map_err(&err)?;
        if let Some(data) = candidates.into_iter().find(|d| spec.matches(d)) {
            self.resolve(tx, run, &spec, data.clone())?;
            return Ok(WaitState::Resolved(data));
        }
        if now >= spec.deadline_ms {
            self.resolve(tx, run, &spec, "null".into())?;
            return Ok(WaitState::Resolved("null".into()));
        }
        let (field, value) = match &spec.matching {
            Some((f, v)) => (Some(f.clone()), Some(v.to_string())),
            None => (None, None),
        };
        if let Some(field) = &field {
            // Sends look up waits by each field some wait of the event matches on.
            tx.prepare_cached(
                "INSERT OR IGNORE INTO fanfare_wait_fields (event, field) VALUES (?1, ?2)",
            )
            .and_then(|mut s| s.execute(params![spec.event, field]))
            .map_err(&err)?;
        }
        tx.prepare_cached(
            "INSERT INTO fanfare_waits (run, seq, step_id, event, field, value, deadline) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                run,
                spec.seq,
                spec.step_id,
                spec.event,
                field,
                value,
                spec.deadline_ms as i64
            ])
        })
        .map_err(&err)?;
        Ok(WaitState::Pending(spec.deadline_ms))
    }

    /// The completed steps of a run, in order.
    fn steps(&self, tx: &Connection, run: i64) -> Result<Vec<StepRecord>> {
        let err = self.err("cannot read steps");
        tx.prepare_cached(
            "SELECT seq, step_id, output, started_at, completed_at FROM fanfare_steps \
             WHERE run = ?1 ORDER BY seq",
        )
        .and_then(|mut s| {
            s.query_map([run], |r| {
                Ok(StepRecord {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    output: r.get(2)?,
                    started_ms: r.get::<_, i64>(3)? as u64,
                    completed_ms: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect()
        })
        .map_err(&err)
    }

    fn save_step(&self, tx: &Connection, run: RunKey, step: StepRecord) -> Result<()> {
        let err = self.err("cannot store a step");
        tx.prepare_cached(
            "INSERT OR REPLACE INTO fanfare_steps (run, seq, step_id, output, started_at, completed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                run as i64,
                step.seq,
                step.id,
                step.output,
                step.started_ms as i64,
                step.completed_ms as i64
            ])
        })
        .map_err(&err)?;
        tx.prepare_cached("UPDATE fanfare_runs SET steps = max(steps, ?2) WHERE id = ?1")
            .and_then(|mut s| s.execute(params![run as i64, step.seq + 1]))
            .map_err(&err)?;
        Ok(())
    }

    fn record(&self, tx: &Connection, outcomes: &[Outcome]) -> Result<()> {
        let err = self.err("cannot record outcomes");
        let now = self.now as i64;
        for outcome in outcomes {
            let key = outcome.key as i64;
            match &outcome.result {
                OutcomeKind::Completed(output) => {
                    let output = (!output.is_null()).then(|| output.to_string());
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 2, sleeping = 0, waiting = 0, output = ?2, finished_at = ?3 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, output, now]))
                    .map_err(&err)?;
                }
                OutcomeKind::Retry { delay, error } => {
                    let due = now + super::sql_millis(*delay);
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 0, sleeping = 0, waiting = 0, due_at = ?2, last_error = ?3 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, due, error]))
                    .map_err(&err)?;
                }
                OutcomeKind::Wait { deadline_ms, .. } => {
                    // Waiting until the deadline, unless the event came in the meantime.
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 0, attempts = attempts - 1, \
                         waiting = EXISTS (SELECT 1 FROM fanfare_waits WHERE run = ?1), \
                         due_at = CASE WHEN EXISTS (SELECT 1 FROM fanfare_waits WHERE run = ?1) \
                                  THEN ?2 ELSE ?3 END \
                         WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, *deadline_ms as i64, now]))
                    .map_err(&err)?;
                }
                OutcomeKind::Sleep { delay } => {
                    let due = now + super::sql_millis(*delay);
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 0, sleeping = 1, due_at = ?2, \
                         attempts = attempts - 1 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, due]))
                    .map_err(&err)?;
                }
                OutcomeKind::Failed(error) => {
                    tx.prepare_cached(
                        "UPDATE fanfare_runs SET status = 3, sleeping = 0, waiting = 0, last_error = ?2, finished_at = ?3 WHERE id = ?1 AND status = 1",
                    )
                    .and_then(|mut s| s.execute(params![key, error, now]))
                    .map_err(&err)?;
                }
            }
        }
        Ok(())
    }

    fn release(&self, tx: &Connection, keys: Vec<RunKey>) -> Result<()> {
        let err = self.err("cannot release runs");
        let mut s = tx
            .prepare_cached("UPDATE fanfare_runs SET status = 0, attempts = attempts - 1 WHERE id = ?1 AND status = 1")
            .map_err(&err)?;
        for key in keys {
            s.execute([key as i64]).map_err(&err)?;
        }
        Ok(())
    }

    fn runs(&self, tx: &Connection, event: EventId) -> Result<Option<Vec<RunInfo>>> {
        let err = self.err("cannot read runs");
        let known: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM fanfare_events WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([event.as_uuid().as_bytes()], |r| r.get(0))
                    .optional()
            })
            .map_err(&err)?;
        if known.is_none() {
            return Ok(None);
        }
        let mut s = tx
            .prepare_cached(
                "SELECT run_id, function_id, status, attempts, last_error, output, id, \
                 sleeping + 2 * waiting FROM fanfare_runs WHERE event_id = ?1 ORDER BY id",
            )
            .map_err(&err)?;
        let rows: Vec<RunRow> = s
            .query_map([event.as_uuid().as_bytes()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        rows.into_iter()
            .map(
                |(run_id, function_id, status, attempts, last_error, output, key, sleeping)| {
                    Ok(RunInfo {
                        run_id: RunId::from_uuid(uuid_from(&run_id)?),
                        event_id: event,
                        app: self.app.to_owned(),
                        function_id,
                        status: match status_from(status) {
                            RunStatus::Queued if sleeping == 1 => RunStatus::Sleeping,
                            RunStatus::Queued if sleeping >= 2 => RunStatus::Waiting,
                            other => other,
                        },
                        attempts,
                        last_error,
                        output: output.and_then(|o| serde_json::from_str(&o).ok()),
                        steps: self.steps(tx, key)?.iter().map(StepRecord::info).collect(),
                    })
                },
            )
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Applies the retention (see `retention`): one batch of each walk from `marks`, moved
    /// past it; returns whether more history may be waiting.
    fn prune(&self, tx: &Connection, retention: Duration, marks: &mut Marks) -> Result<bool> {
        let err = self.err("cannot prune");
        let cutoff = self.now.saturating_sub(retention.as_millis() as u64) as i64;
        let candidates: Vec<(i64, i64, Vec<u8>)> = tx
            .prepare_cached(PRUNE_RUNS)
            .and_then(|mut s| {
                s.query_map(
                    params![cutoff, marks.run.0, marks.run.1, retention::BATCH],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?
                .collect()
            })
            .map_err(&err)?;
        let mut done = tx
            .prepare_cached(
                "SELECT NOT EXISTS (SELECT 1 FROM fanfare_runs \
                 WHERE event_id = ?1 AND (status != 2 OR finished_at >= ?2))",
            )
            .map_err(&err)?;
        let mut seen = std::collections::HashSet::new();
        for (_, _, event) in &candidates {
            if seen.insert(event.as_slice())
                && done
                    .query_row(params![event, cutoff], |r| r.get::<_, bool>(0))
                    .map_err(&err)?
            {
                self.delete_event(tx, event)?;
            }
        }
        let events: Vec<(i64, Vec<u8>)> = tx
            .prepare_cached(PRUNE_EVENTS)
            .and_then(|mut s| {
                s.query_map(
                    params![
                        cutoff,
                        marks.event.0,
                        marks.event.1.as_bytes(),
                        retention::BATCH
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
            })
            .map_err(&err)?;
        tx.prepare_cached(
            "DELETE FROM fanfare_events WHERE id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM fanfare_runs WHERE event_id = ?1)",
        )
        .and_then(|mut s| {
            for (_, id) in &events {
                s.execute([id])?;
            }
            Ok(())
        })
        .map_err(&err)?;
        let last_event = match events.last() {
            Some((ts, id)) => Some((*ts, uuid_from(id)?)),
            None => None,
        };
        Ok(marks.advance(
            (
                candidates.len() as i64,
                candidates.last().map(|(at, id, _)| (*at, *id)),
            ),
            (events.len() as i64, last_event),
        ))
    }

    /// Deletes an event with its runs and their steps.
    fn delete_event(&self, tx: &Connection, event: &[u8]) -> Result<()> {
        let err = self.err("cannot prune");
        tx.prepare_cached(
            "DELETE FROM fanfare_steps WHERE run IN (SELECT id FROM fanfare_runs WHERE event_id = ?1)",
        )
        .and_then(|mut s| s.execute([event]))
        .map_err(&err)?;
        tx.prepare_cached("DELETE FROM fanfare_runs WHERE event_id = ?1")
            .and_then(|mut s| s.execute([event]))
            .map_err(&err)?;
        tx.prepare_cached("DELETE FROM fanfare_events WHERE id = ?1")
            .and_then(|mut s| s.execute([event]))
            .map_err(&err)?;
        Ok(())
    }
}

fn uuid_from(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Store,
            format_args!("a stored id is damaged: {e}"),
        )
    })
}

fn status_from(status: i64) -> RunStatus {
    match status {
        QUEUED => RunStatus::Queued,
        RUNNING => RunStatus::Running,
        COMPLETED => RunStatus::Completed,
        FAILED => RunStatus::Failed,
        _ => RunStatus::Failed,
    }
}
