//! The in-memory store: the default. Fast; nothing survives the process.
//!
//! One mutex guards a slab of runs, a FIFO of ready runs and a heap of delayed ones.
//! Events keep their typed value, so functions of the sender's type skip serde.

use super::{
    Claim, ClaimedRun, Outcome, OutcomeKind, RunInfo, RunKey, RunStatus, Store, StoreFuture,
};
use super::{RecordFuture, StepRecord};
use crate::error::Result;
use crate::event::{Envelope, EventId, RunId};
use crate::function::Registry;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) struct MemoryStore {
    registry: Arc<Registry>,
    app: String,
    retention: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Runs by slot; `None` is a free slot, listed in `free`.
    runs: Vec<Option<Run>>,
    free: Vec<u32>,
    events: HashMap<EventId, EventEntry, BuildHasherDefault<IdHasher>>,
    ready: VecDeque<u32>,
    delayed: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Events whose runs all completed, oldest first, pruned after `retention`.
    completed: VecDeque<(Instant, EventId)>,
}

struct Run {
    id: RunId,
    event: Arc<Envelope>,
    function: u32,
    status: RunStatus,
    attempts: u32,
    last_error: Option<Box<str>>,
    output: Option<serde_json::Value>,
    steps: Vec<StepRecord>,
}

struct EventEntry {
    runs: Box<[u32]>,
    /// Runs not finished yet.
    open: u32,
    any_failed: bool,
}

impl MemoryStore {
    pub fn new(registry: Arc<Registry>, app: String, retention: Duration) -> Self {
        MemoryStore {
            registry,
            app,
            retention,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that
        // matters more than losing the store, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ready<T: Send + 'static>(value: Result<T>) -> StoreFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

impl Store for MemoryStore {
    fn append(&self, event: Envelope) -> StoreFuture<'_, usize> {
        let subscribers = self.registry.subscribers(&event.name);
        let run_ids: Vec<RunId> = subscribers.iter().map(|_| RunId::new(event.ts)).collect();
        let event = Arc::new(event);
        let mut inner = self.lock();
        if inner.events.contains_key(&event.id) {
            // A replayed `ctx.send`: the event was stored the first time.
            return ready(Ok(0));
        }
        let mut slots = Vec::with_capacity(subscribers.len());
        for (&function, id) in subscribers.iter().zip(run_ids) {
            let slot = inner.insert(Run {
                id,
                event: Arc::clone(&event),
                function,
                status: RunStatus::Queued,
                attempts: 0,
                last_error: None,
                output: None,
                steps: Vec::new(),
            });
            inner.ready.push_back(slot);
            slots.push(slot);
        }
        let n = slots.len();
        inner.events.insert(
            event.id,
            EventEntry {
                runs: slots.into_boxed_slice(),
                open: n as u32,
                any_failed: false,
            },
        );
        if n == 0 {
            inner.completed.push_back((Instant::now(), event.id));
        }
        ready(Ok(n))
    }

    fn claim(&self, max: usize) -> StoreFuture<'_, Claim> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.prune(now, self.retention);
        while let Some(Reverse((due, slot))) = inner.delayed.peek().copied() {
            if due > now {
                break;
            }
            inner.delayed.pop();
            inner.ready.push_back(slot);
        }
        let n = max.min(inner.ready.len());
        let mut runs = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(slot) = inner.ready.pop_front() else {
                break;
            };
            let Some(run) = inner.runs[slot as usize].as_mut() else {
                continue;
            };
            run.status = RunStatus::Running;
            run.attempts += 1;
            runs.push(ClaimedRun {
                key: slot as RunKey,
                run_id: run.id,
                function: run.function,
                attempt: run.attempts - 1,
                event: Arc::clone(&run.event),
                steps: run.steps.clone(),
            });
        }
        let next_due = inner.delayed.peek().map(|Reverse((due, _))| *due);
        ready(Ok(Claim { runs, next_due }))
    }

    fn record(&self, outcomes: Vec<Outcome>) -> RecordFuture<'_> {
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        for outcome in outcomes {
            let slot = outcome.key as u32;
            let Some(run) = inner.runs.get_mut(slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            let finished = match outcome.result {
                OutcomeKind::Completed(output) => {
                    run.status = RunStatus::Completed;
                    run.output = (!output.is_null()).then_some(output);
                    Some(false)
                }
                OutcomeKind::Failed(error) => {
                    run.status = RunStatus::Failed;
                    run.last_error = Some(error.into());
                    Some(true)
                }
                OutcomeKind::Sleep { delay } => {
                    run.status = RunStatus::Sleeping;
                    run.attempts -= 1;
                    inner.delayed.push(Reverse((now + delay, slot)));
                    None
                }
                OutcomeKind::Retry { delay, error } => {
                    run.status = RunStatus::Queued;
                    run.last_error = Some(error.into());
                    inner.delayed.push(Reverse((now + delay, slot)));
                    None
                }
            };
            if let Some(failed) = finished {
                let event_id = run.event.id;
                inner.finish(event_id, failed, now);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn release(&self, runs: Vec<RunKey>) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        for key in runs {
            let slot = key as u32;
            if let Some(run) = inner.runs.get_mut(slot as usize).and_then(Option::as_mut) {
                if run.status == RunStatus::Running {
                    run.status = RunStatus::Queued;
                    run.attempts -= 1;
                    inner.ready.push_back(slot);
                }
            }
        }
        ready(Ok(()))
    }

    fn save_step(&self, run: RunKey, step: StepRecord) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        if let Some(run) = inner.runs.get_mut(run as usize).and_then(Option::as_mut) {
            run.steps.retain(|s| s.seq != step.seq);
            run.steps.push(step);
            run.steps.sort_by_key(|s| s.seq);
        }
        ready(Ok(()))
    }

    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>> {
        let inner = self.lock();
        let runs = inner.events.get(&event).map(|entry| {
            entry
                .runs
                .iter()
                .filter_map(|&slot| inner.runs[slot as usize].as_ref())
                .map(|run| RunInfo {
                    run_id: run.id,
                    event_id: event,
                    app: self.app.clone(),
                    function_id: self.registry.defs[run.function as usize].id().to_owned(),
                    status: run.status,
                    attempts: run.attempts,
                    last_error: run.last_error.as_deref().map(str::to_owned),
                    output: run.output.clone(),
                    steps: run.steps.iter().map(StepRecord::info).collect(),
                })
                .collect()
        });
        ready(Ok(runs))
    }
}

impl Inner {
    fn insert(&mut self, run: Run) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.runs[slot as usize] = Some(run);
                slot
            }
            None => {
                self.runs.push(Some(run));
                (self.runs.len() - 1) as u32
            }
        }
    }

    fn finish(&mut self, event: EventId, failed: bool, now: Instant) {
        if let Some(entry) = self.events.get_mut(&event) {
            entry.open -= 1;
            entry.any_failed |= failed;
            if entry.open == 0 && !entry.any_failed {
                self.completed.push_back((now, event));
            }
        }
    }

    /// Forgets events whose runs all completed more than `retention` ago. Events with a
    /// failed run are kept: they are the dead-letter set.
    fn prune(&mut self, now: Instant, retention: Duration) {
        while let Some(&(at, event)) = self.completed.front() {
            if now.saturating_duration_since(at) < retention {
                break;
            }
            self.completed.pop_front();
            if let Some(entry) = self.events.remove(&event) {
                for &slot in entry.runs.iter() {
                    self.runs[slot as usize] = None;
                    self.free.push(slot);
                }
            }
        }
    }
}

/// Hashes an [`EventId`] by its random bits: UUIDv7s are already uniformly random there,
/// so SipHash's work would buy nothing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A UUID hashes as its 16 bytes; bytes 8..16 hold 62 random bits.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
        self.0 = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
