//! Starting claimed runs: a task per chunk of runs, not per run.
//!
//! Most attempts of most functions finish in their first poll, or reach their first
//! await soon. A tokio task per run costs an allocation (the task, with the run's
//! future in it, allocated where the dispatcher runs and freed where the run ends),
//! registration with the scheduler, and a wake-up of another worker thread. So the
//! dispatcher spawns one task per [`CHUNK`] claimed runs, which polls each run once in
//! turn: a run that finishes there costs one boxed future; one that awaits something
//! still pending moves into a task of its own, as every run did before, and runs in
//! parallel with the others from then on.
//!
//! The difference from a task per run is that the runs of a chunk start one after the
//! other, so a function that blocks its thread before its first await holds back the
//! runs after it in its chunk. Hence chunks only form under load: a claim is spread over
//! at least [`SPREAD_PER_WORKER`] tasks per worker thread of the runtime, so a claim of a
//! few runs (one event's, say) starts each in a task of its own, all in parallel, and a
//! large one gives every worker thread chunks to take; and a chunk that has taken
//! [`CHUNK_TIME`] hands the runs it has not started to a new task, which another worker
//! thread can take.
//!
//! The sizes were measured (`bench --only memory`, 2 worker threads, claims of 256 runs):
//! chunks of 8 runs (32 tasks a claim) reached 0.86-0.92 of the hand-written
//! task-per-function throughput, 16 (16 tasks) 0.92-1.01, 32 (8 tasks) 1.09-1.12.
//!
//! Every run keeps an entry in the engine's in-flight map from claim to record, with
//! the handle that aborts whichever task holds it, so shutdown aborts and releases it
//! wherever it is. A run whose entry shutdown has already taken is not started. (A task
//! that is being polled when it is aborted finishes that poll: a chunk that is starting
//! runs when shutdown aborts it starts no run past its [`CHUNK_TIME`], and hands on
//! none. Its runs were released, and run again by the next process, as a released run
//! always is.)

use super::{Engine, Inflight};
use crate::store::ClaimedRun;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Most runs a chunk's task starts.
const CHUNK: usize = 32;

/// Fewest tasks a claim's runs are spread over (when it has as many runs), per worker
/// thread of the runtime.
const SPREAD_PER_WORKER: usize = 4;

/// Fewest tasks a claim's runs are spread over, on the current runtime.
pub(super) fn spread() -> usize {
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    SPREAD_PER_WORKER * workers.max(1)
}

/// How long a chunk's task starts runs before it hands the rest to another task.
const CHUNK_TIME: Duration = Duration::from_millis(1);

impl Engine {
    /// Spawns the tasks that start `runs`, a chunk each, and records in `inflight` (the
    /// locked map) which holds each run.
    pub(super) fn start(self: &Arc<Self>, inflight: &mut Inflight, runs: Vec<ClaimedRun>) {
        let size = (runs.len() / self.spread).clamp(1, CHUNK);
        let mut runs = runs.into_iter().peekable();
        while runs.peek().is_some() {
            self.spawn_chunk(inflight, runs.by_ref().take(size).collect());
        }
    }

    /// Spawns the task that starts `chunk`, and makes it the holder of its runs.
    fn spawn_chunk(self: &Arc<Self>, inflight: &mut Inflight, chunk: Vec<ClaimedRun>) {
        let keys: Vec<_> = chunk.iter().map(|r| r.key).collect();
        let task = tokio::spawn(Arc::clone(self).start_chunk(chunk));
        inflight.hold(task.abort_handle(), keys);
    }

    /// Polls each run of the chunk once; moves the runs still pending to tasks of their
    /// own, and the runs not started to a new chunk once this one took too long. The
    /// outcomes of the runs that finished here go to the recorder together, when the
    /// chunk stops: a send on the outcome channel per chunk, not per run. (The chunk
    /// never yields between its runs, so it is never aborted between an outcome and its
    /// report.)
    async fn start_chunk(self: Arc<Self>, runs: Vec<ClaimedRun>) {
        let began = Instant::now();
        let mut finished = Vec::with_capacity(runs.len());
        // The clock's last reading: when the run before ended (an attempt says when).
        let mut now = began;
        let mut runs = runs.into_iter();
        while let Some(run) = runs.next() {
            let key = run.key;
            let mut attempt: Pin<Box<_>> = Box::pin(Arc::clone(&self).execute(run, now));
            // `execute` catches the function's panics; this catches the engine's own,
            // so that one cannot take the other runs of the chunk with it.
            let polled = poll_fn(|cx| {
                Poll::Ready(std::panic::catch_unwind(AssertUnwindSafe(|| {
                    attempt.as_mut().poll(cx)
                })))
            })
            .await;
            now = match polled {
                Ok(Poll::Ready((outcome, ended))) => {
                    finished.push(outcome);
                    ended
                }
                Ok(Poll::Pending) => {
                    // Its next poll, in its own task, registers that task's waker.
                    let mut inflight = self.inflight();
                    if inflight.contains(key) {
                        let engine = Arc::clone(&self);
                        let task = tokio::spawn(async move {
                            let (outcome, _) = attempt.await;
                            engine.report(vec![outcome]);
                        });
                        inflight.hold(task.abort_handle(), [key]);
                    }
                    Instant::now()
                }
                Err(_) => {
                    tracing::error!(run = key, "fanfare: the engine panicked running a run");
                    Instant::now()
                }
            };
            if runs.len() > 0 && now.saturating_duration_since(began) >= CHUNK_TIME {
                self.hand_on(runs.collect());
                break;
            }
        }
        if !finished.is_empty() {
            self.report(finished);
        }
    }

    /// Moves runs a chunk has not started to a new chunk's task; drops those that
    /// shutdown released meanwhile.
    fn hand_on(self: &Arc<Self>, runs: Vec<ClaimedRun>) {
        let mut inflight = self.inflight();
        let runs: Vec<ClaimedRun> = runs
            .into_iter()
            .filter(|r| inflight.contains(r.key))
            .collect();
        if !runs.is_empty() {
            self.spawn_chunk(&mut inflight, runs);
        }
    }
}
