//! The writer thread: every command waiting, in one transaction, answered after the
//! commit (group commit).

use super::*;

pub(super) fn failed_reply(command: Command, msg: &str) -> Reply {
    let e = || Error::new(ErrorKind::Store, msg);
    match command {
        Command::Append(_, _, tx) | Command::AppendAll(_, tx) => Reply::Append(tx, Err(e())),
        Command::Claim(_, tx) => Reply::Claim(tx, Err(e())),
        Command::Record(outcomes, tx) => Reply::Record(tx, outcomes, Err(e())),
        Command::Release(_, tx) => Reply::Unit(tx, Err(e())),
        Command::SaveStep(_, _, tx) => Reply::Saved(tx, Err(e())),
        Command::Cancel(_, _, tx) => Reply::Cancel(tx, Err(e())),
        Command::Runs(_, tx) => Reply::Runs(tx, Err(e())),
        Command::Unfinished(_, _, tx) => Reply::Unfinished(tx, Err(e())),
        Command::QueueStats(_, tx) => Reply::QueueStats(tx, Err(e())),
        Command::Run(_, tx) => Reply::Run(tx, Box::new(Err(e()))),
        Command::List(_, _, tx) => Reply::List(tx, Err(e())),
        Command::Replay(_, tx) => Reply::Replay(tx, Err(e())),
        Command::Event(_, tx) => Reply::Event(tx, Err(e())),
        Command::Events(_, _, tx) => Reply::Events(tx, Err(e())),
        Command::Count(_, tx) => Reply::Count(tx, Err(e())),
        Command::Close(tx) => Reply::Unit(tx, Err(e())),
        Command::Wait(_, _, tx) => Reply::Wait(tx, Err(e())),
    }
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, max_batch: usize) {
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

    /// Runs a batch of commands in one transaction. A batch of sends, claims and records
    /// runs first as it is (`optimistic`); if one of them fails, the transaction is
    /// rolled back and the batch run again with each command in a savepoint of its own,
    /// so one failing command leaves the others' work intact. (A savepoint per command
    /// costs: SQLite copies each page a command changes again into the savepoint's
    /// journal first.)
    pub(super) fn transaction(
        &mut self,
        batch: &mut Vec<Command>,
    ) -> std::result::Result<Vec<Reply>, (Vec<Reply>, String)> {
        let now = now_millis();
        let prune = Instant::now() >= self.next_prune;
        let mut marks = self.marks;
        let path = self.path.clone();
        let optimistic_batch = !batch.is_empty() && batch.iter().all(Command::optimistic);
        // Slots for the runs the sends store claimed (`handoff.rs`): in a batch of the
        // run loop only, whose commands have no savepoint to roll back alone.
        let mut handoff =
            crate::store::Handoff::reserve(self.attached.get(), || match optimistic_batch {
                true => self.claimable(batch, now),
                false => 0,
            });
        let mut tx = match begin(&mut self.conn, &path) {
            Ok(tx) => tx,
            Err(msg) => {
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
            positions: &self.positions,
            new_runs: Default::default(),
            waits: Default::default(),
            direct: &self.direct,
            quota: std::cell::Cell::new(handoff.reserved()),
            claimed: Default::default(),
        };
        let mut replies = None;
        if optimistic_batch {
            replies = optimistic(&ctx, &tx, &mut self.cache, batch);
            if replies.is_none() {
                // What the cache learned from the rolled back work is forgotten. (An
                // error SQLite rolled the transaction back for already ended it.)
                self.cache.clear();
                ctx.waits.set(None);
                ctx.stop_claiming();
                let _ = tx.rollback();
                let again = match self.conn.is_autocommit() {
                    true => begin(&mut self.conn, &path),
                    false => Err(format!(
                        "{}: cannot roll back a failed batch",
                        path.display()
                    )),
                };
                tx = match again {
                    Ok(tx) => tx,
                    Err(msg) => {
                        let replies = batch.drain(..).map(|c| failed_reply(c, &msg)).collect();
                        return Err((replies, msg));
                    }
                };
            }
        }
        let replies = match replies {
            Some(replies) => replies,
            None => one_by_one(&ctx, &mut tx, &mut self.cache, batch),
        };
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
        match tx.commit() {
            Ok(()) => {
                handoff.commit(ctx.claimed.take());
                self.checkpointer.after_commit(&self.conn);
                if prune {
                    // The pruning batch's time counts its commit too (the pages it changed
                    // are written there), so that it stays within its share of the writer.
                    self.marks = marks;
                    self.next_prune = Instant::now()
                        + retention::pause(behind, began.elapsed(), self.retention.completed);
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

impl Command {
    /// Whether the command is run without a savepoint of its own when its batch has only
    /// such commands (see `Writer::transaction`): the commands of the run loop.
    fn optimistic(&self) -> bool {
        matches!(
            self,
            Command::Append(..) | Command::AppendAll(..) | Command::Claim(..) | Command::Record(..)
        )
    }
}

/// What a run-loop command (`Command::optimistic`) did.
enum Done {
    Appended(usize),
    Claimed(Claim),
    Recorded,
}

/// Runs a run-loop command, which it leaves in place to be answered (or run again);
/// `None` for any other command. A batch of sends keeps what the cache learns only once
/// every event is stored.
fn run_loop(
    ctx: &Ctx<'_>,
    tx: &Connection,
    cache: &mut EventCache,
    command: &Command,
) -> Option<Result<Done>> {
    Some(match command {
        Command::Append(event, to, _) => ctx.append(tx, event, *to, cache).map(Done::Appended),
        Command::AppendAll(events, _) => {
            let mut learned = EventCache::default();
            events
                .iter()
                .try_fold(0, |n, event| {
                    Ok::<_, Error>(n + ctx.append(tx, event, None, &mut learned)?)
                })
                .map(|n| {
                    cache.absorb(learned);
                    Done::Appended(n)
                })
        }
        Command::Claim(max, _) => ctx.claim(tx, *max, cache).map(Done::Claimed),
        Command::Record(outcomes, _) => ctx.record(tx, outcomes).map(|()| Done::Recorded),
        _ => return None,
    })
}

/// The answer to a run-loop command, from what `run_loop` made of it.
fn answer(command: Command, done: Result<Done>) -> Reply {
    match (command, done) {
        (Command::Append(_, _, reply) | Command::AppendAll(_, reply), Ok(Done::Appended(n))) => {
            Reply::Append(reply, Ok(n))
        }
        (Command::Append(_, _, reply) | Command::AppendAll(_, reply), Err(e)) => {
            Reply::Append(reply, Err(e))
        }
        (Command::Claim(_, reply), Ok(Done::Claimed(claim))) => Reply::Claim(reply, Ok(claim)),
        (Command::Claim(_, reply), Err(e)) => Reply::Claim(reply, Err(e)),
        (Command::Record(outcomes, reply), Ok(Done::Recorded)) => {
            Reply::Record(reply, outcomes, Ok(()))
        }
        (Command::Record(outcomes, reply), Err(e)) => Reply::Record(reply, outcomes, Err(e)),
        (command, _) => failed_reply(command, "internal error: a reply of another command"),
    }
}

/// Runs a batch of `Command::optimistic` commands without savepoints; their replies, or
/// `None` as soon as one fails (the caller rolls the transaction back).
fn optimistic(
    ctx: &Ctx<'_>,
    tx: &Connection,
    cache: &mut EventCache,
    batch: &mut Vec<Command>,
) -> Option<Vec<Reply>> {
    let mut done = Vec::with_capacity(batch.len());
    ctx.new_runs.replace(Some(Vec::new()));
    let all = (|| {
        for command in batch.iter() {
            if !matches!(command, Command::Append(..) | Command::AppendAll(..)) {
                // A claim reads the runs sent before it.
                ctx.flush_runs(tx).ok()?;
            }
            done.push(run_loop(ctx, tx, cache, command)?.ok()?);
        }
        ctx.flush_runs(tx).ok()
    })();
    ctx.new_runs.replace(None);
    all?;
    Some(
        batch
            .drain(..)
            .zip(done)
            .map(|(command, done)| answer(command, Ok(done)))
            .collect(),
    )
}

/// Runs a command other than the run loop's (see `run_loop`).
fn other(ctx: &Ctx<'_>, sp: &Connection, command: Command) -> Reply {
    match command {
        Command::Release(keys, reply) => Reply::Unit(reply, ctx.release(sp, keys)),
        Command::Wait(key, spec, reply) => Reply::Wait(reply, ctx.wait(sp, key, spec)),
        Command::SaveStep(key, step, reply) => {
            Reply::Saved(reply, ctx.save_running_step(sp, key, step))
        }
        Command::Cancel(run, reason, reply) => Reply::Cancel(reply, ctx.cancel(sp, run, reason)),
        Command::Runs(event, reply) => Reply::Runs(reply, ctx.runs(sp, event)),
        Command::Run(run, reply) => Reply::Run(reply, Box::new(ctx.run(sp, run))),
        Command::List(filter, limit, reply) => Reply::List(reply, ctx.list(sp, &filter, limit)),
        Command::Replay(run, reply) => Reply::Replay(reply, ctx.replay(sp, run)),
        Command::Event(id, reply) => Reply::Event(reply, ctx.event(sp, id)),
        Command::Events(filter, limit, reply) => {
            Reply::Events(reply, ctx.events(sp, &filter, limit))
        }
        Command::Count(functions, reply) => Reply::Count(reply, ctx.count(sp, &functions)),
        Command::Unfinished(function, limit, reply) => {
            Reply::Unfinished(reply, ctx.unfinished(sp, function, limit))
        }
        Command::QueueStats(limit, reply) => Reply::QueueStats(reply, ctx.queue_stats(sp, limit)),
        Command::Close(reply) => Reply::Unit(reply, Ok(())),
        command => failed_reply(command, "internal error: a run-loop command"),
    }
}

/// Runs a batch of commands, each in a savepoint of its own.
fn one_by_one(
    ctx: &Ctx<'_>,
    tx: &mut rusqlite::Transaction<'_>,
    cache: &mut EventCache,
    batch: &mut Vec<Command>,
) -> Vec<Reply> {
    let path = ctx.path;
    let mut replies = Vec::with_capacity(batch.len());
    for command in batch.drain(..) {
        let mut sp = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                replies.push(failed_reply(
                    command,
                    &store_error(path, "savepoint", e).to_string(),
                ));
                continue;
            }
        };
        let reply = match run_loop(ctx, &sp, cache, &command) {
            Some(done) => answer(command, done),
            None => other(ctx, &sp, command),
        };
        let ok = match &reply {
            Reply::Append(_, r) => r.is_ok(),
            Reply::Claim(_, r) => r.is_ok(),
            Reply::Unit(_, r) | Reply::Record(_, _, r) => r.is_ok(),
            Reply::Runs(_, r) => r.is_ok(),
            Reply::Wait(_, r) => r.is_ok(),
            Reply::Saved(_, r) => r.is_ok(),
            Reply::Cancel(_, r) => r.is_ok(),
            Reply::Unfinished(_, r) => r.is_ok(),
            Reply::QueueStats(_, r) => r.is_ok(),
            Reply::Run(_, r) => r.is_ok(),
            Reply::List(_, r) => r.is_ok(),
            Reply::Replay(_, r) => r.is_ok(),
            Reply::Event(_, r) => r.is_ok(),
            Reply::Events(_, r) => r.is_ok(),
            Reply::Count(_, r) => r.is_ok(),
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
    replies
}

/// Begins the writer's transaction (`IMMEDIATE`: it holds the write lock from the start).
fn begin<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> std::result::Result<rusqlite::Transaction<'c>, String> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| store_error(path, "cannot begin a transaction", e).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on `path`, with no functions.
    fn open(path: &Path) -> Writer {
        let registry = Arc::new(Registry::new(Vec::new()).unwrap());
        Writer::open(
            path,
            SqliteSync::Normal,
            registry,
            "app".into(),
            Retention::new(Duration::from_secs(3600), Duration::from_secs(3600)),
        )
        .unwrap()
    }

    /// A new event to send.
    fn event() -> Arc<Envelope> {
        let now = now_millis();
        let id = EventId::from_uuid(crate::event::new_uuid(now));
        Arc::new(Envelope::stored(id, "w/event".into(), "{}".into(), now))
    }

    /// A command that fails in a batch run without savepoints: the batch runs again,
    /// each command in its savepoint, and only that command fails.
    #[test]
    fn a_failing_command_fails_alone() {
        let dir = TestDir::new("writer");
        let mut writer = open(&dir.file("w.db"));
        // Sends are stored, and a claim finds nothing: both succeed.
        let (a, a_rx) = oneshot::channel();
        let (c, c_rx) = oneshot::channel();
        let mut batch = vec![Command::Append(event(), None, a), Command::Claim(8, c)];
        let replies = writer
            .transaction(&mut batch)
            .unwrap_or_else(|(_, e)| panic!("{e}"));
        replies.into_iter().for_each(|r| r.send(&Ok(())));
        assert_eq!(a_rx.blocking_recv().unwrap().unwrap(), 0);
        assert!(c_rx.blocking_recv().unwrap().unwrap().runs.is_empty());
        // Now a send cannot be stored (a table it reads is gone); the claim in its batch
        // still succeeds, and the transaction commits.
        writer
            .conn
            .execute_batch("DROP TABLE fanfare_waits")
            .unwrap();
        let (c, c_rx) = oneshot::channel();
        let (a, a_rx) = oneshot::channel();
        let mut batch = vec![Command::Claim(8, c), Command::Append(event(), None, a)];
        let replies = writer
            .transaction(&mut batch)
            .unwrap_or_else(|(_, e)| panic!("{e}"));
        replies.into_iter().for_each(|r| r.send(&Ok(())));
        assert!(c_rx.blocking_recv().unwrap().unwrap().runs.is_empty());
        let err = a_rx.blocking_recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("fanfare_waits"), "{err}");
        assert!(writer.conn.is_autocommit());
        let events: i64 = writer
            .conn
            .query_row("SELECT count(*) FROM fanfare_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 1, "the failed send's event is rolled back");
        drop(writer);
    }

    /// Another connection holds the write lock (as the checkpointer's may, for an
    /// instant): the writer's next transaction waits for it and commits, instead of
    /// failing its sends with "database is locked".
    #[test]
    fn a_batch_waits_for_a_write_lock_held_by_another_connection() {
        let dir = TestDir::new("writer-busy");
        let path = dir.file("w.db");
        let mut writer = open(&path);
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            other.execute_batch("COMMIT").unwrap();
        });
        let (a, a_rx) = oneshot::channel();
        let mut batch = vec![Command::Append(event(), None, a)];
        let replies = writer
            .transaction(&mut batch)
            .unwrap_or_else(|(_, e)| panic!("{e}"));
        replies.into_iter().for_each(|r| r.send(&Ok(())));
        assert_eq!(a_rx.blocking_recv().unwrap().unwrap(), 0);
        holder.join().unwrap();
        drop(writer);
    }
}
