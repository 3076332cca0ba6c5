//! Durable steps: the state one attempt of a run shares with its [`Ctx`](crate::Ctx).
//!
//! A run's function is executed again from the top on every attempt (a retry, a resume
//! after a sleep or a crash). Each `ctx.step` call takes the next position; if the run
//! completed a step at that position before, its stored output is returned and the step
//! is not executed. Positions and ids must agree with the first execution: code that calls
//! its steps in another order is detected and the run fails instead of receiving another
//! step's output.
//!
//! A run cancelled while an attempt executes is marked here ([`RunState::cancel`]): its
//! next step call does not start, and a step that was executing when the mark came has
//! its result discarded. Either way the attempt stops as a suspension does: the engine
//! drops its future.

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{now_millis, RunId};
use crate::store::{RunKey, Saved, StepRecord};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// What one attempt knows of its run's steps.
pub(crate) struct RunState {
    pub key: RunKey,
    pub run_id: RunId,
    pub engine: Arc<Engine>,
    memo: Vec<StepRecord>,
    cursor: Mutex<Cursor>,
    /// Set when a step suspends the run; `suspended_signal` tells the engine.
    suspend: Mutex<Option<Suspend>>,
    suspended_signal: Notify,
    /// Why the run was cancelled, once it is: set by the engine (a cancellation in this
    /// process, or one another process wrote, seen by the heartbeat) or by a refused step.
    cancel: OnceLock<String>,
}

#[derive(Default)]
struct Cursor {
    next: u32,
    /// How many times each id was used, for the `:n` suffixes.
    uses: HashMap<String, u32>,
}

/// Why and until when (unix ms) a step suspends its run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// `ctx.sleep`: resume at this time.
    Sleep(u64),
    /// `ctx.wait_for_event`: resume when the event arrives, or at this deadline; the
    /// waiting step's position.
    Wait { deadline_ms: u64, seq: u32 },
    /// The run is cancelled ([`RunState::cancelled`] says why): stop here.
    Cancel,
}

/// Where a step call stands.
pub(crate) enum Slot {
    /// Completed in an earlier attempt: here is its record.
    Done(StepRecord),
    /// To execute now, at this position and under this id.
    New { seq: u32, id: String },
}

impl RunState {
    pub fn new(key: RunKey, run_id: RunId, engine: Arc<Engine>, memo: Vec<StepRecord>) -> Self {
        RunState {
            key,
            run_id,
            engine,
            memo,
            cursor: Mutex::new(Cursor::default()),
            suspend: Mutex::new(None),
            suspended_signal: Notify::new(),
            cancel: OnceLock::new(),
        }
    }

    /// Marks the run cancelled: the attempt stops at its next step or suspension point.
    /// The first reason stays.
    pub fn cancel(&self, reason: String) {
        let _ = self.cancel.set(reason);
    }

    /// Why the run was cancelled, if it was.
    pub fn cancelled(&self) -> Option<&str> {
        if self.cancel.get().is_none() {
            // Marked by the engine (a cancellation here, or seen by the heartbeat).
            if let Some(reason) = self.engine.mark_of(self.key) {
                let _ = self.cancel.set(reason);
            }
        }
        self.cancel.get().map(String::as_str)
    }

    /// Stops the attempt of a cancelled run: the engine drops its future here, so this
    /// never resolves.
    async fn stop<T>(&self) -> T {
        self.suspend(Suspend::Cancel);
        std::future::pending().await
    }

    /// Takes the next step position for `id`, as [`RunState::next`], unless the run is
    /// cancelled: then the step does not start and the attempt stops.
    pub async fn enter(&self, id: &str) -> Result<Slot> {
        if self.cancelled().is_some() {
            return self.stop().await;
        }
        self.next(id)
    }

    /// Takes the next step position for `id`.
    pub fn next(&self, id: &str) -> Result<Slot> {
        if id.is_empty() {
            return Err(
                Error::new(ErrorKind::Function, "a step id must not be empty").never_retry(),
            );
        }
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let uses = cursor.uses.entry(id.to_owned()).or_default();
        let key = if *uses == 0 {
            id.to_owned()
        } else {
            format!("{id}:{uses}")
        };
        *uses += 1;
        let seq = cursor.next;
        cursor.next += 1;
        match self.memo.iter().find(|s| s.seq == seq) {
            None => Ok(Slot::New { seq, id: key }),
            Some(done) if done.id == key => Ok(Slot::Done(done.clone())),
            Some(done) => Err(Error::new(
                ErrorKind::NonDeterministic,
                format_args!(
                    "step #{seq} of run {} is `{key}` now but was `{}` when it first ran: the \
                     function must call its steps in the same order on every attempt\n\
                     help: keep step calls out of branches on time, randomness or external \
                     state, or put those inside a step",
                    self.run_id, done.id
                ),
            )
            .never_retry()),
        }
    }

    /// Stores a step's output; the run goes on only once it is durable. A step of a run
    /// cancelled while it executed is not stored, and the attempt stops.
    pub async fn save(&self, seq: u32, id: String, output: String, started_ms: u64) -> Result<()> {
        if self.cancelled().is_some() {
            return self.stop().await;
        }
        let record = StepRecord {
            seq,
            id,
            output,
            started_ms,
            completed_ms: now_millis(),
        };
        match self.engine.store.save_step(self.key, record).await? {
            Saved::Stored => Ok(()),
            Saved::Cancelled(reason) => {
                self.cancel(reason);
                self.stop().await
            }
        }
    }

    /// Asks the engine to stop this attempt and queue the run again.
    pub fn suspend(&self, why: Suspend) {
        *self.suspend.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.suspended_signal.notify_one();
    }

    /// Resolves once a step asked to suspend. (A `Notify` and a `Mutex`, not a
    /// channel: every attempt makes one of these, and neither allocates.)
    pub async fn suspended(&self) -> Suspend {
        loop {
            let signal = self.suspended_signal.notified();
            if let Some(why) = *self.suspend.lock().unwrap_or_else(|p| p.into_inner()) {
                return why;
            }
            signal.await;
        }
    }
}
