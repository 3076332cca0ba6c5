//! The SQLite store: embedded and durable.
//!
//! One connection, owned by one thread (the *writer*). Every store call is a command sent
//! to it; the writer takes all the commands waiting, runs them in **one transaction**, and
//! answers each after the commit. Concurrent sends therefore share a commit (group
//! commit), and claims and outcomes ride along in the same transaction.
//!
//! The database is in WAL mode; an exclusive lock on the file (`flock`) keeps a second
//! runtime out while one runs. A second connection, on a thread of its own, checkpoints
//! the log (`checkpoint.rs`). Runs left `running` by a process that died are re-queued at
//! open. A batch of sends stores the runs the engine has free slots for already running
//! and hands them over once committed (`handoff.rs`).

mod cancel;
mod checkpoint;
mod claim;
mod events;
mod flow;
mod handoff;
mod position;
mod prune;
mod queue;
mod record;
mod runs;
mod schema;
mod send;
mod waits;
mod writer;

#[cfg(test)]
pub(crate) use {
    cancel::FIND,
    claim::{CLAIM, MARK, NEXT_DUE},
    flow::{BATCH_EVENTS, FINISH_BATCH, HELD_BY_FUNCTION, HELD_BY_KEY},
    position::{of_event, BY_RUN_ID},
    prune::{EXPIRED, PRUNE_EVENTS, PRUNE_FAILED, PRUNE_RUNS},
    queue::QUEUE_STATS,
    record::COMPLETE,
    runs::list_sql,
    schema::{configure, MIGRATIONS},
    send::WAITS_OF,
};

use super::retention::{self, Marks, Retention};
use super::{AttemptInfo, EventFilter, Replay, RunCounts, RunFilter, StatusWhere};
use super::{
    Cancel, Claim, ClaimedRun, Outcome, OutcomeKind, QueueStats, RunInfo, RunKey, RunStatus, Saved,
    Slots, Store, StoreFuture, Unfinished,
};
use super::{EventCache, RecordError, RecordFuture, StepRecord, StoreOptions, WaitSpec, WaitState};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{now_millis, Envelope, EventId, RunId};
use crate::function::Registry;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
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

/// Most commands run in one transaction.
const MAX_BATCH: usize = 2048;

const QUEUED: i64 = 0;

const RUNNING: i64 = 1;

const COMPLETED: i64 = 2;

const FAILED: i64 = 3;

const CANCELLED: i64 = 5;

pub(crate) struct SqliteStore {
    commands: mpsc::UnboundedSender<Command>,
    /// Set by `close`: the writer thread is gone and the file released.
    closed: std::sync::atomic::AtomicBool,
    /// The engine's slots, once attached: the writer's sends claim runs for them.
    attached: Arc<std::sync::OnceLock<super::Attached>>,
}

enum Command {
    Append(Arc<Envelope>, Option<u32>, oneshot::Sender<Result<usize>>),
    /// Several events, all stored or none.
    AppendAll(Vec<Arc<Envelope>>, oneshot::Sender<Result<usize>>),
    Claim(usize, oneshot::Sender<Result<Claim>>),
    Record(
        Vec<Outcome>,
        oneshot::Sender<std::result::Result<(), RecordError>>,
    ),
    Release(Vec<RunKey>, oneshot::Sender<Result<()>>),
    SaveStep(RunKey, StepRecord, oneshot::Sender<Result<Saved>>),
    Cancel(RunId, String, oneshot::Sender<Result<Cancel>>),
    Wait(RunKey, WaitSpec, oneshot::Sender<Result<WaitState>>),
    Runs(EventId, oneshot::Sender<Result<Option<Vec<RunInfo>>>>),
    Unfinished(u32, usize, oneshot::Sender<Result<Vec<Unfinished>>>),
    QueueStats(usize, oneshot::Sender<Result<QueueStats>>),
    Run(RunId, oneshot::Sender<Result<Option<RunInfo>>>),
    List(RunFilter, usize, oneshot::Sender<Result<Vec<RunInfo>>>),
    Replay(RunId, oneshot::Sender<Result<Replay>>),
    Event(EventId, oneshot::Sender<Result<Option<Arc<Envelope>>>>),
    Events(
        EventFilter,
        usize,
        oneshot::Sender<Result<Option<Vec<Arc<Envelope>>>>>,
    ),
    Count(Vec<String>, oneshot::Sender<Result<Vec<RunCounts>>>),
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
    Saved(oneshot::Sender<Result<Saved>>, Result<Saved>),
    Cancel(oneshot::Sender<Result<Cancel>>, Result<Cancel>),
    Unfinished(
        oneshot::Sender<Result<Vec<Unfinished>>>,
        Result<Vec<Unfinished>>,
    ),
    QueueStats(oneshot::Sender<Result<QueueStats>>, Result<QueueStats>),
    Run(
        oneshot::Sender<Result<Option<RunInfo>>>,
        Box<Result<Option<RunInfo>>>,
    ),
    List(oneshot::Sender<Result<Vec<RunInfo>>>, Result<Vec<RunInfo>>),
    Replay(oneshot::Sender<Result<Replay>>, Result<Replay>),
    Event(
        oneshot::Sender<Result<Option<Arc<Envelope>>>>,
        Result<Option<Arc<Envelope>>>,
    ),
    Events(
        oneshot::Sender<Result<Option<Vec<Arc<Envelope>>>>>,
        Result<Option<Vec<Arc<Envelope>>>>,
    ),
    Count(
        oneshot::Sender<Result<Vec<RunCounts>>>,
        Result<Vec<RunCounts>>,
    ),
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
            Reply::Saved(tx, r) => answer(tx, r, commit),
            Reply::Cancel(tx, r) => answer(tx, r, commit),
            Reply::Unfinished(tx, r) => answer(tx, r, commit),
            Reply::QueueStats(tx, r) => answer(tx, r, commit),
            Reply::Run(tx, r) => answer(tx, *r, commit),
            Reply::List(tx, r) => answer(tx, r, commit),
            Reply::Replay(tx, r) => answer(tx, r, commit),
            Reply::Event(tx, r) => answer(tx, r, commit),
            Reply::Events(tx, r) => answer(tx, r, commit),
            Reply::Count(tx, r) => answer(tx, r, commit),
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
        let attached = Arc::new(std::sync::OnceLock::new());
        let slots = Arc::clone(&attached);
        std::thread::Builder::new()
            .name("fanfare-sqlite".into())
            .spawn(move || {
                match Writer::open(&path, sync, registry, options.app, options.retention) {
                    Ok(mut writer) => {
                        writer.attached = slots;
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
            attached,
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
        self.call(|tx| Command::Append(Arc::new(event), None, tx))
    }

    fn append_to(&self, event: Envelope, function: u32) -> StoreFuture<'_, usize> {
        self.call(|tx| Command::Append(Arc::new(event), Some(function), tx))
    }

    fn append_all(&self, events: Vec<Envelope>) -> StoreFuture<'_, usize> {
        let events = events.into_iter().map(Arc::new).collect();
        self.call(|tx| Command::AppendAll(events, tx))
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

    fn save_step(&self, run: RunKey, step: StepRecord) -> StoreFuture<'_, Saved> {
        self.call(|tx| Command::SaveStep(run, step, tx))
    }

    fn cancel(&self, run: RunId, reason: String) -> StoreFuture<'_, Cancel> {
        self.call(|tx| Command::Cancel(run, reason, tx))
    }

    fn wait(&self, run: RunKey, spec: WaitSpec) -> StoreFuture<'_, WaitState> {
        self.call(|tx| Command::Wait(run, spec, tx))
    }

    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>> {
        self.call(|tx| Command::Runs(event, tx))
    }

    fn unfinished(&self, function: u32, limit: usize) -> StoreFuture<'_, Vec<Unfinished>> {
        self.call(|tx| Command::Unfinished(function, limit, tx))
    }

    fn queue_stats(&self, limit: usize) -> StoreFuture<'_, QueueStats> {
        self.call(|tx| Command::QueueStats(limit, tx))
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, Option<RunInfo>> {
        self.call(|tx| Command::Run(run, tx))
    }

    fn list<'a>(&'a self, filter: &'a RunFilter, limit: usize) -> StoreFuture<'a, Vec<RunInfo>> {
        let filter = filter.clone();
        self.call(move |tx| Command::List(filter, limit, tx))
    }

    fn replay(&self, run: RunId) -> StoreFuture<'_, Replay> {
        self.call(|tx| Command::Replay(run, tx))
    }

    fn event(&self, id: EventId) -> StoreFuture<'_, Option<Arc<Envelope>>> {
        self.call(|tx| Command::Event(id, tx))
    }

    fn events<'a>(
        &'a self,
        filter: &'a EventFilter,
        limit: usize,
    ) -> StoreFuture<'a, Option<Vec<Arc<Envelope>>>> {
        let filter = filter.clone();
        self.call(move |tx| Command::Events(filter, limit, tx))
    }

    fn count_runs(&self, functions: Vec<String>) -> StoreFuture<'_, Vec<RunCounts>> {
        self.call(|tx| Command::Count(functions, tx))
    }

    fn attach(&self, slots: std::sync::Weak<dyn Slots>) {
        if let Some(attached) = super::Attached::new(slots) {
            let _ = self.attached.set(attached);
        }
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
    /// Closed after `conn`: it checkpoints beside the writer (`checkpoint.rs`).
    checkpointer: checkpoint::Checkpointer,
    app: String,
    path: PathBuf,
    registry: Arc<Registry>,
    functions: HashMap<&'static str, u32>,
    retention: Retention,
    /// Events sent by this process whose runs are not all claimed yet, with the number
    /// of runs left to claim: their typed values spare the functions a deserialization.
    cache: EventCache,
    /// When to prune next, and where pruning got to.
    next_prune: Instant,
    marks: Marks,
    /// The next runs' positions (`position.rs`).
    positions: position::Positions,
    /// Per function (registry index): whether it has no flow control, so that a send
    /// may store its run claimed (`handoff.rs`).
    direct: Vec<bool>,
    /// The engine's slots, once attached.
    attached: Arc<std::sync::OnceLock<super::Attached>>,
    /// The lock that keeps a second runtime off the file; dropped last, once both
    /// connections are closed (closing another descriptor of the file while SQLite
    /// holds its locks would release them).
    #[allow(dead_code)]
    lock: std::fs::File,
}

impl Writer {
    fn error(&self, what: &str, e: rusqlite::Error) -> Error {
        store_error(&self.path, what, e)
    }
}

/// What the statements of one transaction need.
struct Ctx<'a> {
    registry: &'a Registry,
    app: &'a str,
    functions: &'a HashMap<&'static str, u32>,
    path: &'a Path,
    now: u64,
    positions: &'a position::Positions,
    /// The runs of this batch's sends, while the writer gathers them to insert together
    /// (`Some`: in a batch of run-loop commands, see `writer::optimistic`); `None`: each
    /// send inserts its runs.
    new_runs: std::cell::RefCell<Option<Vec<send::NewRun>>>,
    /// Whether `fanfare_waits` has rows, once this transaction looked (or stored one):
    /// sends skip resolving waits while there are none.
    waits: std::cell::Cell<Option<bool>>,
    /// `Writer::direct`.
    direct: &'a [bool],
    /// How many more runs this batch's sends may store claimed (`handoff.rs`)…
    quota: std::cell::Cell<usize>,
    /// …and those they did, to start once the batch commits.
    claimed: std::cell::RefCell<Vec<ClaimedRun>>,
}

impl Ctx<'_> {
    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        let what = what.to_owned();
        move |e| store_error(self.path, &what, e)
    }
}

/// Row ids as one `rarray(?)` parameter: a statement then marks or finishes a batch of
/// runs at once, where a statement per run opened a cursor on each of the runs table's
/// indexes every time.
fn ids(keys: impl IntoIterator<Item = i64>) -> rusqlite::vtab::array::Array {
    std::rc::Rc::new(
        keys.into_iter()
            .map(rusqlite::types::Value::Integer)
            .collect(),
    )
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
        QUEUED | flow::HELD => RunStatus::Queued,
        RUNNING => RunStatus::Running,
        COMPLETED => RunStatus::Completed,
        FAILED => RunStatus::Failed,
        CANCELLED => RunStatus::Cancelled,
        _ => RunStatus::Failed,
    }
}

/// A fresh directory for a unit test's database files, removed with everything in it
/// when it goes (declare it first, so that it goes after the connections).
#[cfg(test)]
struct TestDir(PathBuf);

#[cfg(test)]
impl TestDir {
    fn new(tag: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("fanfare-{tag}-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("cannot create the test directory");
        TestDir(dir)
    }

    /// The path of a file in it.
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
