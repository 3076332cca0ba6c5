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

    /// Runs a batch of commands in one transaction; each command in a savepoint of its own,
    /// so one failing command leaves the others' work intact.
    pub(super) fn transaction(
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
                Command::AppendAll(events, reply) => {
                    // One savepoint for the batch: an error rolls all of it back. What
                    // the cache learns is kept only once every event is stored.
                    let mut learned = EventCache::default();
                    let r = events
                        .into_iter()
                        .try_fold(0, |n, event| {
                            Ok::<_, Error>(n + ctx.append(&sp, event, None, &mut learned)?)
                        })
                        .inspect(|_| self.cache.absorb(learned));
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
                    Reply::Saved(reply, ctx.save_running_step(&sp, key, step))
                }
                Command::Cancel(run, reason, reply) => {
                    Reply::Cancel(reply, ctx.cancel(&sp, run, reason))
                }
                Command::Runs(event, reply) => Reply::Runs(reply, ctx.runs(&sp, event)),
                Command::Run(run, reply) => Reply::Run(reply, Box::new(ctx.run(&sp, run))),
                Command::List(filter, limit, reply) => {
                    Reply::List(reply, ctx.list(&sp, &filter, limit))
                }
                Command::Replay(run, reply) => Reply::Replay(reply, ctx.replay(&sp, run)),
                Command::Event(id, reply) => Reply::Event(reply, ctx.event(&sp, id)),
                Command::Events(filter, limit, reply) => {
                    Reply::Events(reply, ctx.events(&sp, &filter, limit))
                }
                Command::Count(functions, reply) => Reply::Count(reply, ctx.count(&sp, &functions)),
                Command::Unfinished(function, limit, reply) => {
                    Reply::Unfinished(reply, ctx.unfinished(&sp, function, limit))
                }
                Command::QueueStats(limit, reply) => {
                    Reply::QueueStats(reply, ctx.queue_stats(&sp, limit))
                }
                Command::Close(reply) => Reply::Unit(reply, Ok(())),
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
