//! The checkpointer: copies the write-ahead log into the database on a thread and a
//! connection of its own, so that the writer never waits for it.
//!
//! SQLite checkpoints on the committing connection by default, every ~1,000 WAL pages,
//! with a sync: each such commit took milliseconds, which was the p99 of send → start
//! (`bench --only sqlite`: p99 3.3–4.6 ms with p50 0.2 ms, 0.5 ms without). Here the
//! writer's automatic checkpoints are off; after a commit that leaves `NUDGE_PAGES` or more
//! in the log (the WAL hook tells), it wakes this thread, whose `PASSIVE` checkpoint runs
//! beside the writer's transactions. The log starts over once a checkpoint has caught up;
//! under a load that never lets it, the writer checkpoints itself past `WRITER_PAGES`, so
//! the log stays bounded.

use super::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// WAL pages after which the writer wakes the checkpointer (SQLite's own default).
const NUDGE_PAGES: i32 = 1_000;

/// WAL pages after which the writer checkpoints itself: the checkpointer could not
/// catch up with the writes (≈ 40 MiB of log with 4 KiB pages).
const WRITER_PAGES: i32 = 10_000;

thread_local! {
    /// Pages in the log after the writer thread's last commit, as the WAL hook saw them.
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

/// Called by SQLite on the writer's thread after each commit.
fn on_commit(_: &rusqlite::hooks::Wal, pages: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection to `path` (in WAL mode already) and starts its
    /// thread; turns the writer's automatic checkpoints off in favour of it.
    pub(super) fn start(writer: &Connection, path: &Path) -> Result<Checkpointer> {
        let fail = |e: rusqlite::Error| store_error(path, "cannot open the checkpointer", e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.execute_batch("PRAGMA busy_timeout = 1000")
            .map_err(fail)?;
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .map_err(fail)?;
        writer.wal_hook(Some(on_commit));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let shown = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("fanfare-sqlite-checkpoint".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    std::thread::park();
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(path = %shown.display(), error = %e, "fanfare: SQLite checkpoint failed");
                    }
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Store,
                    format_args!("could not start the SQLite checkpoint thread: {e}"),
                )
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// After a commit of the writer's: wakes the checkpointer once the log is long enough,
    /// or checkpoints on the writer (`conn`) when the log outgrew what it keeps up with.
    pub(super) fn after_commit(&self, conn: &Connection) {
        let pages = WAL_PAGES.with(Cell::get);
        if pages >= WRITER_PAGES {
            WAL_PAGES.with(|p| p.set(0));
            if let Err(e) = checkpoint(conn) {
                tracing::warn!(error = %e, "fanfare: SQLite checkpoint failed");
            }
        } else if pages >= NUDGE_PAGES {
            if let Some(thread) = &self.thread {
                thread.thread().unpark();
            }
        }
    }
}

/// A `PASSIVE` checkpoint: as much of the log as no reader needs, without waiting.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

impl Drop for Checkpointer {
    /// Stops the thread and closes its connection.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the writer's own checkpoints off, the log reaches the database file only
    /// through the checkpointer: commits past `NUDGE_PAGES` wake it, and it copies them.
    #[test]
    fn the_checkpointer_copies_the_log_into_the_database() {
        let dir = TestDir::new("ckpt");
        let path = dir.file("c.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (b BLOB)")
            .unwrap();
        let checkpointer = Checkpointer::start(&writer, &path).unwrap();
        let db_size = || std::fs::metadata(&path).map_or(0, |m| m.len());
        let before = db_size();
        // About 2,000 pages of 4 KiB, a commit at a time, as the writer commits.
        for _ in 0..250 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(32768))", [])
                .unwrap();
            checkpointer.after_commit(&writer);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while db_size() < before + 4_000_000 {
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {} bytes: nothing was checkpointed",
                db_size()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(checkpointer);
        drop(writer);
    }
}
