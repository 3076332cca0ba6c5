//! Opening a database: refusing what is not a fanfare database, versioned migrations,
//! re-queueing the runs a dead process left running.

use super::*;

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
    // Flow control (`flow::rules`): a run's flags (`rules::flags`), its concurrency key,
    // its rank (arrival minus priority), its batch and, while held (status 4) or
    // delayed, or once skipped (status 2 with the flag), why. Held runs wait per function
    // and key (stage 1) or per function (stage 2), in rank order, or in their batch
    // (stage 3). The rules' states per function, kind and key.
    r#"
ALTER TABLE fanfare_runs ADD COLUMN flow INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fanfare_runs ADD COLUMN ckey TEXT;
ALTER TABLE fanfare_runs ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fanfare_runs ADD COLUMN hold INTEGER;
ALTER TABLE fanfare_runs ADD COLUMN reason TEXT;
ALTER TABLE fanfare_runs ADD COLUMN batch INTEGER;
CREATE INDEX fanfare_runs_batch ON fanfare_runs (batch, id) WHERE batch IS NOT NULL;
CREATE INDEX fanfare_runs_held_key ON fanfare_runs (function_id, ckey, rank, id) WHERE status = 4 AND hold = 1;
CREATE INDEX fanfare_runs_held_function ON fanfare_runs (function_id, rank, id) WHERE status = 4 AND hold = 2;
CREATE TABLE fanfare_flow (
    function_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    key TEXT NOT NULL,
    tat INTEGER NOT NULL,
    active INTEGER NOT NULL,
    run INTEGER NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (function_id, kind, key)
) WITHOUT ROWID;
"#,
    // Cancellation (`Store::cancel`): runs are found by their id; status 5 is cancelled,
    // with who or what cancelled it in `reason`; `cancel` holds the reason of a run
    // marked while running, until it stops. Pruning walks cancelled runs as completed ones.
    r#"
ALTER TABLE fanfare_runs ADD COLUMN cancel TEXT;
CREATE INDEX fanfare_runs_run_id ON fanfare_runs (run_id);
DROP INDEX fanfare_runs_finished;
CREATE INDEX fanfare_runs_finished ON fanfare_runs (finished_at, id) WHERE status IN (2, 5);
"#,
    // Retention of failed runs (`store::retention`): pruning walks failed runs by
    // `(finished_at, id)` past the failed retention, apart from completed ones.
    r#"
CREATE INDEX IF NOT EXISTS fanfare_runs_failed ON fanfare_runs (finished_at, id) WHERE status = 3;
"#,
    // Listing runs (`Store::list`), newest first through the run id index: failed, held,
    // cancelled, sleeping, waiting and skipped runs have partial indexes of their own,
    // each written only when a run comes to that state, and each with its state as an
    // exact condition (SQLite uses a partial index only for a query that repeats its
    // condition). No index every run writes: one by function alone cost a quarter of
    // SQLite's throughput, and one on `status IN (3, 4, 5)` a third (measured with
    // `bench --only sqlite`). `replay_of` links a replayed run to its original.
    r#"
ALTER TABLE fanfare_runs ADD COLUMN replay_of BLOB;
CREATE INDEX fanfare_runs_failed_runs ON fanfare_runs (run_id) WHERE status = 3;
CREATE INDEX fanfare_runs_held_runs ON fanfare_runs (run_id) WHERE status = 4;
CREATE INDEX fanfare_runs_cancelled_runs ON fanfare_runs (run_id) WHERE status = 5;
CREATE INDEX fanfare_runs_sleeping ON fanfare_runs (run_id) WHERE sleeping = 1;
CREATE INDEX fanfare_runs_waiting_runs ON fanfare_runs (run_id) WHERE waiting = 1;
CREATE INDEX fanfare_runs_skipped ON fanfare_runs (run_id) WHERE flow & 32 <> 0;
"#,
    // Trace context (`trace.rs`): the W3C `traceparent` an event was sent in, if any.
    r#"
ALTER TABLE fanfare_events ADD COLUMN traceparent TEXT;
"#,
    // A run's history (`RunInfo::failed_attempts`): each attempt that failed, written
    // only then (a run that completes first time writes nothing here), pruned with it.
    r#"
CREATE TABLE fanfare_attempts (
    run INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (run, attempt)
) WITHOUT ROWID;
"#,
    // Positions (`position.rs`): a run's row id is its position and its run id says it;
    // an event's row records its runs' positions. The indexes by run id and by event
    // keep the runs stored before (row ids below `position::LEGACY`), and replayed runs.
    r#"
ALTER TABLE fanfare_events ADD COLUMN first_run INTEGER;
ALTER TABLE fanfare_events ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
DROP INDEX fanfare_runs_run_id;
CREATE INDEX fanfare_runs_run_id ON fanfare_runs (run_id) WHERE id < 1125899906842624;
DROP INDEX fanfare_runs_event;
CREATE INDEX fanfare_runs_event ON fanfare_runs (event_id)
    WHERE (id < 1125899906842624 OR replay_of IS NOT NULL);
"#,
];

/// SQLite's page cache, in KiB as `PRAGMA cache_size` takes it (negative): 64 MiB, where
/// SQLite's default is 2 MiB. With millions of runs kept, the indexes a claim, a send and
/// the pruner walk stay in memory instead of being read again from the OS on every batch.
const CACHE_KIB: i64 = -64 * 1024;

/// How many prepared statements the writer keeps.
const STATEMENTS: usize = 64;

/// How long the writer waits for another connection's lock on the file (ms).
const BUSY_MS: u32 = 5_000;

pub(super) const IN_USE: &str =
    "cannot open: another process is using it (a SQLite database serves one \
    process at a time; use PostgreSQL to share work between processes)";

impl Writer {
    pub(super) fn open(
        path: &Path,
        sync: SqliteSync,
        registry: Arc<Registry>,
        app: String,
        retention: Retention,
    ) -> Result<Writer> {
        let fail = |what: &str, e: rusqlite::Error| store_error(path, what, e);
        // One process (one runtime) at a time: an exclusive lock on the file, held until
        // the writer is gone. (Not SQLite's `locking_mode = EXCLUSIVE`, which would keep
        // the checkpointer's connection out too.)
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| store_error(path, "cannot open", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(store_error(path, IN_USE, "the file is locked"))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(store_error(path, "cannot lock the file", e))
            }
        }
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
        // `temp_store = MEMORY`: a savepoint's journal (the writer's slow path, pruning)
        // is kept in memory instead of a temporary file, which cost a sixth of the
        // writer's time in system calls (`bench --only sqlite`, perf).
        // `busy_timeout`: another connection to the file may hold its write lock for an
        // instant (the checkpointer's, as SQLite's WAL code reads, when it finds the log's
        // index mid-update and checks it); the writer then waits instead of failing the batch.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
             PRAGMA busy_timeout = {BUSY_MS}; PRAGMA cache_size = {CACHE_KIB}; PRAGMA temp_store = MEMORY;"
        ))
        .map_err(|e| fail(IN_USE, e))?;
        configure(&conn).map_err(|e| fail("cannot open", e))?;
        // The writer's statements stay prepared: the run loop's alone are about 16, the
        // cache's default size.
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        let checkpointer = super::checkpoint::Checkpointer::start(&conn, path)?;
        let direct = registry
            .defs
            .iter()
            .map(|d| crate::store::claimed_at_send(d))
            .collect();
        let mut writer = Writer {
            conn,
            checkpointer,
            lock,
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
            positions: super::position::Positions::empty(),
            direct,
            attached: Default::default(),
        };
        writer.migrate()?;
        writer.positions = super::position::Positions::after(&writer.conn)
            .map_err(|e| store_error(path, "cannot open", e))?;
        writer.recover()?;
        Ok(writer)
    }

    /// Applies the migrations this database has not seen; refuses a newer schema.
    pub(super) fn migrate(&mut self) -> Result<()> {
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
    pub(super) fn recover(&mut self) -> Result<()> {
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
}

/// What the store's connection needs besides its pragmas (the plan guard test opens its
/// connection with it too):
/// - the query planner stability guarantee: a statement's plan does not depend on the
///   values bound to it. Without it, SQLite weighed a bound value against the partial
///   indexes' conditions when planning the held-runs query, and so planned it again
///   (`sqlite3Reprepare`) each time its key changed: a sixth of the writer's time under
///   keyed concurrency. Every status the queries select on is written into their text,
///   so the partial indexes serve them as before;
/// - `rarray(?)`: one statement marks or finishes a batch of runs (`ids`).
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    rusqlite::vtab::array::load_module(conn)
}
