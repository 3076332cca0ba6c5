//! The in-memory store: the default. Fast; nothing survives the process.
//!
//! One mutex guards a slab of runs, a FIFO of ready runs and a heap of delayed ones.
//! Events keep their typed value, so functions of the sender's type skip serde.

use super::retention::Retention;
use super::{
    Cancel, Claim, ClaimedRun, FunctionQueue, Outcome, OutcomeKind, QueueStats, RunInfo, RunKey,
    RunStatus, Store, StoreFuture,
};
use super::{EventFilter, Replay, RunCounts, RunFilter};
use super::{RecordFuture, Saved, StepRecord, Unfinished, WaitSpec, WaitState};
use crate::error::Result;
use crate::error::{Error, ErrorKind};
use crate::event::now_millis;
use crate::event::{Envelope, EventId, RunId};
use crate::function::Registry;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod cancel;
mod flow;
mod inbox;
mod inspect;

pub(crate) struct MemoryStore {
    registry: Arc<Registry>,
    app: String,
    retention: Retention,
    inner: crate::padded::Padded<Mutex<Inner>>,
    /// Events sent while `inner` was taken, stored by its next holder.
    inbox: crate::padded::Padded<inbox::Inbox>,
}

#[derive(Default)]
struct Inner {
    /// Runs by slot; `None` is a free slot, listed in `free` with the generation of its
    /// next run.
    runs: Vec<Option<Run>>,
    free: Vec<(u32, u32)>,
    events: HashMap<EventId, EventEntry, BuildHasherDefault<IdHasher>>,
    ready: VecDeque<u32>,
    /// Delayed runs: (due, slot, the run's generation). An entry a run left behind (a
    /// wait resolved early, a cancelled sleep) wakes no later run of its slot.
    delayed: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Events whose runs all finished, by when the last did, oldest first: each keeps its
    /// event for the retention (`Retention::completed`).
    completed: VecDeque<(Instant, EventId)>,
    /// Failed runs' events, by when the run failed, oldest first: each keeps its event for
    /// the failed retention (`Retention::failed`).
    failed: VecDeque<(Instant, EventId)>,
    /// Pending `wait_for_event`s by awaited event name.
    waits: HashMap<String, NameWaits>,
    /// Flow control's states and held runs.
    book: flow::Book,
}

struct Run {
    id: RunId,
    /// Which of its slot's runs it is.
    gen: u32,
    event: Arc<Envelope>,
    function: u32,
    status: RunStatus,
    attempts: u32,
    last_error: Option<Box<str>>,
    output: Option<serde_json::Value>,
    steps: Vec<StepRecord>,
    /// Flow control's part, for runs of functions that have it, and a cancellation's
    /// reason (boxed: most runs have neither, and a queued run stays small).
    flow: Option<Box<flow::RunFlow>>,
}

impl Run {
    /// A new run of `function` for `event`, queued, not attempted yet.
    fn queued(
        id: RunId,
        event: Arc<Envelope>,
        function: u32,
        flow: Option<Box<flow::RunFlow>>,
    ) -> Run {
        Run {
            id,
            gen: 0,
            event,
            function,
            status: RunStatus::Queued,
            attempts: 0,
            last_error: None,
            output: None,
            steps: Vec::new(),
            flow,
        }
    }

    /// Why the run is cancelled: the mark of a running one, or the reason of a
    /// `Cancelled` one.
    fn cancelled(&self) -> Option<&str> {
        self.flow.as_ref()?.cancel.as_deref()
    }

    /// Marks or cancels the run for `reason`, unless it already was.
    fn set_cancel(&mut self, reason: &str) {
        let f = self.flow.get_or_insert_with(Default::default);
        f.cancel.get_or_insert_with(|| reason.into());
    }
}

/// A run id that carries its slot in its last four bytes (random bits of its UUIDv7), so
/// that `cancel` finds the run without an index.
fn with_slot(id: RunId, slot: u32) -> RunId {
    let mut bytes = *id.as_uuid().as_bytes();
    bytes[12..].copy_from_slice(&slot.to_be_bytes());
    RunId::from_uuid(uuid::Uuid::from_bytes(bytes))
}

/// The slot a run id names (see [`with_slot`]).
fn slot_of(id: RunId) -> u32 {
    let bytes = *id.as_uuid().as_bytes();
    u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

/// The pending waits for one event name, found by what they match: an event reaches the
/// waits it resolves without reading the others.
#[derive(Default)]
struct NameWaits {
    /// Waits for any event of the name: (run slot, what it waits for).
    any: Vec<(u32, WaitSpec)>,
    /// Waits matching on a field: field → the value's JSON → waits.
    by_field: HashMap<String, HashMap<String, Vec<(u32, WaitSpec)>>>,
}

impl NameWaits {
    /// Where a wait of this matching is kept.
    fn bucket(&mut self, spec: &WaitSpec) -> &mut Vec<(u32, WaitSpec)> {
        match &spec.matching {
            None => &mut self.any,
            Some((field, value)) => self
                .by_field
                .entry(field.clone())
                .or_default()
                .entry(value.to_string())
                .or_default(),
        }
    }

    /// The waits of this matching, if any are kept.
    fn find(&self, spec: &WaitSpec) -> Option<&Vec<(u32, WaitSpec)>> {
        match &spec.matching {
            None => Some(&self.any),
            Some((field, value)) => self.by_field.get(field)?.get(&value.to_string()),
        }
    }

    /// Takes the waits an event's data matches.
    fn take_matching(&mut self, data: &str) -> Vec<(u32, WaitSpec)> {
        let mut hit = std::mem::take(&mut self.any);
        if !self.by_field.is_empty() {
            let data: serde_json::Value =
                serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
            self.by_field.retain(|field, values| {
                if let Some(value) = data.get(field) {
                    hit.extend(values.remove(&value.to_string()).unwrap_or_default());
                }
                !values.is_empty()
            });
        }
        hit
    }

    fn is_empty(&self) -> bool {
        self.any.is_empty() && self.by_field.is_empty()
    }
}

struct EventEntry {
    envelope: Arc<Envelope>,
    runs: Box<[u32]>,
    /// Runs not finished yet.
    open: u32,
    /// Entries of `completed` and `failed` naming the event whose time has not passed:
    /// the event goes when none is left and all its runs finished (`store::retention`).
    keeps: u32,
}

impl MemoryStore {
    pub fn new(registry: Arc<Registry>, app: String, retention: Retention) -> Self {
        MemoryStore {
            registry,
            app,
            retention,
            inner: crate::padded::Padded(Mutex::new(Inner::default())),
            inbox: Default::default(),
        }
    }

    /// The store's state, with the events senders left in the inbox stored first.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that
        // matters more than losing the store, so a poisoned lock is used as is.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.store_inbox(&mut inner);
        inner
    }

    fn store_inbox(&self, inner: &mut Inner) {
        for sent in self.inbox.take() {
            let subscribers = self
                .registry
                .targets(&sent.event.event.name, sent.to.as_ref());
            Self::insert_locked(inner, sent.event, subscribers);
        }
    }
}

fn ready<T: Send + 'static>(value: Result<T>) -> StoreFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

impl Inner {
    /// Moves the delayed runs due by `now` to the ready queue (an entry a run left
    /// behind moves nothing).
    fn promote_due(&mut self, now: Instant) {
        while let Some(Reverse((due, slot, gen))) = self.delayed.peek().copied() {
            if due > now {
                break;
            }
            self.delayed.pop();
            if self.runs[slot as usize]
                .as_ref()
                .is_some_and(|r| r.gen == gen)
            {
                self.ready.push_back(slot);
            }
        }
    }
}

impl MemoryStore {
    /// Stores the event with one queued run per function of `subscribers` (`to`, or
    /// every function its name triggers); 0 if an event with its id is already stored.
    /// When another thread holds the lock, leaves it in the inbox, and counts its runs
    /// as new.
    fn insert_event(&self, event: Envelope, to: Option<u32>) -> usize {
        let subscribers = self.registry.targets(&event.name, to.as_ref());
        let event = NewEvent::new(event, subscribers);
        let mut inner = match self.inner.try_lock() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let n = subscribers.len();
                self.inbox.push(inbox::Sent { event, to });
                return n;
            }
        };
        self.store_inbox(&mut inner);
        Self::insert_locked(&mut inner, event, subscribers)
    }

    /// As `insert_event`, under the lock the caller holds.
    fn insert_locked(inner: &mut Inner, new: NewEvent, subscribers: &[u32]) -> usize {
        let NewEvent {
            event,
            run_ids,
            wait,
            now,
            mut slots,
        } = new;
        if inner.events.contains_key(&event.id) {
            // A replayed `ctx.send`: the event was stored the first time.
            return 0;
        }
        for (&function, id) in subscribers.iter().zip(run_ids) {
            let slot = inner.insert(Run::queued(id, Arc::clone(&event), function, None));
            match wait {
                Some(wait) => {
                    let gen = inner.runs[slot as usize].as_ref().map_or(0, |r| r.gen);
                    inner.delayed.push(Reverse((later(now, wait), slot, gen)))
                }
                None => inner.ready.push_back(slot),
            }
            slots.push(slot);
        }
        let n = slots.len();
        inner.events.insert(
            event.id,
            EventEntry {
                envelope: Arc::clone(&event),
                runs: slots.into_boxed_slice(),
                open: n as u32,
                keeps: u32::from(n == 0),
            },
        );
        if n == 0 {
            inner.completed.push_back((now, event.id));
        }
        if !inner.waits.is_empty() {
            inner.resolve_waits(&event);
        }
        n
    }
}

/// An event about to be stored, with what its runs need that does not need the lock:
/// made before taking it, so that senders hold the lock for less.
struct NewEvent {
    event: Arc<Envelope>,
    run_ids: Vec<RunId>,
    /// A delayed send's: how long its runs wait.
    wait: Option<Duration>,
    now: Instant,
    /// Room for its runs' slots.
    slots: Vec<u32>,
}

impl NewEvent {
    fn new(event: Envelope, subscribers: &[u32]) -> NewEvent {
        let wait = event
            .not_before
            .map(|at| Duration::from_millis(at.saturating_sub(now_millis())))
            .filter(|w| !w.is_zero());
        NewEvent {
            run_ids: subscribers.iter().map(|_| RunId::new(event.ts)).collect(),
            event: Arc::new(event),
            wait,
            now: Instant::now(),
            slots: Vec::with_capacity(subscribers.len()),
        }
    }
}

impl Store for MemoryStore {
    fn append(&self, event: Envelope) -> StoreFuture<'_, usize> {
        ready(Ok(self.insert_event(event, None)))
    }

    fn append_to(&self, event: Envelope, function: u32) -> StoreFuture<'_, usize> {
        ready(Ok(self.insert_event(event, Some(function))))
    }

    fn append_all(&self, events: Vec<Envelope>) -> StoreFuture<'_, usize> {
        let events: Vec<(NewEvent, &[u32])> = events
            .into_iter()
            .map(|event| {
                let subscribers = self.registry.subscribers(&event.name);
                (NewEvent::new(event, subscribers), subscribers)
            })
            .collect();
        // Under one lock: no claim sees part of the batch.
        let mut inner = self.lock();
        let runs = events
            .into_iter()
            .map(|(event, subscribers)| Self::insert_locked(&mut inner, event, subscribers))
            .sum();
        ready(Ok(runs))
    }

    fn claim(&self, max: usize) -> StoreFuture<'_, Claim> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.prune(now, self.retention);
        inner.promote_due(now);
        inner.prune_flow();
        let mut runs = Vec::with_capacity(max.min(inner.ready.len()));
        let mut skipped = Vec::new();
        while runs.len() < max {
            let Some(slot) = inner.ready.pop_front() else {
                break;
            };
            let Some(run) = inner.runs[slot as usize].as_mut() else {
                continue;
            };
            // A slot can be queued twice (a wait resolved while a deadline was pending):
            // only a run that is waiting for a worker is claimed.
            if !matches!(
                run.status,
                RunStatus::Queued | RunStatus::Sleeping | RunStatus::Waiting
            ) {
                continue;
            }
            let def = self.registry.defs[run.function as usize];
            if let Some(flow) = def.flow() {
                if !inner.gate(slot, flow, def.id(), now) {
                    if let Some(run) = inner.runs[slot as usize].as_ref() {
                        if run.status == RunStatus::Skipped {
                            skipped.push(run.function);
                        }
                    }
                    continue;
                }
            }
            let Some(run) = inner.runs[slot as usize].as_mut() else {
                continue;
            };
            run.status = RunStatus::Running;
            run.attempts += 1;
            let mut claimed = ClaimedRun {
                key: slot as RunKey,
                run_id: run.id,
                function: run.function,
                attempt: run.attempts - 1,
                event: Arc::clone(&run.event),
                steps: run.steps.clone(),
                batch: Vec::new(),
                // Marked while running, then released (shutdown): cancelled unexecuted.
                cancel: run.cancelled().map(str::to_owned),
            };
            if def.flow().is_some_and(|f| f.batch.is_some()) {
                claimed.batch = inner.batch_events(slot);
            }
            runs.push(claimed);
        }
        let next_due = inner.delayed.peek().map(|Reverse((due, _, _))| *due);
        ready(Ok(Claim {
            runs,
            next_due,
            skipped,
        }))
    }

    fn record(&self, outcomes: Vec<Outcome>) -> RecordFuture<'_> {
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        for outcome in outcomes {
            let slot = outcome.key as u32;
            let def = self.registry.defs[outcome.function as usize];
            if let Some(flow) = def.flow() {
                inner.free_slots(slot, flow, def.id());
            }
            let Some(run) = inner.runs.get_mut(slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(error) = outcome.result.failure() {
                let attempt = crate::store::AttemptInfo {
                    attempt: run.attempts,
                    started_at_ms: outcome.started_ms,
                    ended_at_ms: outcome.ended_ms,
                    error: error.to_owned(),
                };
                let f = run.flow.get_or_insert_with(Default::default);
                f.failed_attempts.push(attempt);
            }
            let result = match run.cancelled() {
                Some(reason) if outcome.result.resumes() => OutcomeKind::Cancelled(reason.into()),
                _ => outcome.result,
            };
            let finished = match result {
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
                OutcomeKind::Wait { deadline_ms, seq } => {
                    run.attempts -= 1;
                    // Resolving a wait stores its step: without one, it is still pending.
                    let pending = !run.steps.iter().any(|s| s.seq == seq);
                    if pending {
                        run.status = RunStatus::Waiting;
                        let wait = Duration::from_millis(deadline_ms.saturating_sub(now_millis()));
                        inner
                            .delayed
                            .push(Reverse((later(now, wait), slot, run.gen)));
                    } else {
                        // The event arrived while the attempt was winding down.
                        run.status = RunStatus::Queued;
                        inner.ready.push_back(slot);
                    }
                    None
                }
                OutcomeKind::Sleep { delay } => {
                    run.status = RunStatus::Sleeping;
                    run.attempts -= 1;
                    inner
                        .delayed
                        .push(Reverse((later(now, delay), slot, run.gen)));
                    None
                }
                OutcomeKind::Retry { delay, error } => {
                    run.status = RunStatus::Queued;
                    run.last_error = Some(error.into());
                    inner
                        .delayed
                        .push(Reverse((later(now, delay), slot, run.gen)));
                    None
                }
                OutcomeKind::Cancelled(reason) => {
                    run.status = RunStatus::Cancelled;
                    run.set_cancel(&reason);
                    // A wait it registered before it stopped resumes nothing.
                    inner.drop_waits(slot);
                    Some(false)
                }
            };
            if let Some(failed) = finished {
                let Some(run) = inner.runs[slot as usize].as_ref() else {
                    continue;
                };
                let event_id = run.event.id;
                let end = match run.status {
                    RunStatus::Failed => flow::End::Failed(run.last_error.clone()),
                    RunStatus::Cancelled => flow::End::Cancelled(run.cancelled().map(Into::into)),
                    _ => flow::End::Completed,
                };
                inner.finish(event_id, failed, now);
                if def.flow().is_some_and(|f| f.batch.is_some()) {
                    inner.finish_batch(slot, end, now);
                }
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

    fn wait(&self, run: RunKey, spec: WaitSpec) -> StoreFuture<'_, WaitState> {
        let slot = run as u32;
        let now = now_millis();
        let mut inner = self.lock();
        let Some(r) = inner.runs.get(slot as usize).and_then(Option::as_ref) else {
            return ready(Err(Error::new(ErrorKind::Store, "the waiting run is gone")));
        };
        // Resolved while the run was between attempts.
        if let Some(done) = r.steps.iter().find(|s| s.seq == spec.seq) {
            return ready(Ok(WaitState::Resolved(done.output.clone())));
        }
        let existing = inner.waits.get(&spec.event).and_then(|w| {
            let bucket = w.find(&spec)?;
            bucket
                .iter()
                .position(|(s, w)| *s == slot && w.seq == spec.seq)
                .map(|i| (i, bucket[i].1.deadline_ms))
        });
        if let Some((i, deadline)) = existing {
            if now < deadline {
                return ready(Ok(WaitState::Pending(deadline)));
            }
            if let Some(w) = inner.waits.get_mut(&spec.event) {
                w.bucket(&spec).remove(i);
                w.by_field.retain(|_, values| {
                    values.retain(|_, waits| !waits.is_empty());
                    !values.is_empty()
                });
                if w.is_empty() {
                    inner.waits.remove(&spec.event);
                }
            }
            inner.save(slot, &spec, "null".to_owned());
            return ready(Ok(WaitState::Resolved("null".to_owned())));
        }
        // The lookback: the event itself when its id is known, otherwise the earliest
        // matching event sent since `since_ms`.
        let found = match spec.event_id {
            Some(id) => inner
                .events
                .get(&id)
                .map(|e| &e.envelope)
                .filter(|e| e.name == spec.event && spec.matches(&e.data))
                .map(|e| e.data.clone()),
            None => inner
                .events
                .values()
                .map(|e| &e.envelope)
                .filter(|e| e.name == spec.event && e.ts >= spec.since_ms && spec.matches(&e.data))
                .min_by_key(|e| (e.ts, e.id))
                .map(|e| e.data.clone()),
        };
        if let Some(data) = found {
            inner.save(slot, &spec, data.clone());
            return ready(Ok(WaitState::Resolved(data)));
        }
        if now >= spec.deadline_ms {
            inner.save(slot, &spec, "null".to_owned());
            return ready(Ok(WaitState::Resolved("null".to_owned())));
        }
        let deadline = spec.deadline_ms;
        if let Some(r) = inner.runs.get_mut(slot as usize).and_then(Option::as_mut) {
            r.flow.get_or_insert_with(Default::default).waiting_for =
                Some(crate::store::WaitingFor {
                    event: spec.event.clone(),
                    matching: spec.matching.clone(),
                    timeout_at_ms: deadline,
                });
        }
        inner
            .waits
            .entry(spec.event.clone())
            .or_default()
            .bucket(&spec)
            .push((slot, spec));
        ready(Ok(WaitState::Pending(deadline)))
    }

    fn save_step(&self, run: RunKey, step: StepRecord) -> StoreFuture<'_, Saved> {
        let mut inner = self.lock();
        if let Some(run) = inner.runs.get_mut(run as usize).and_then(Option::as_mut) {
            if let Some(reason) = run.cancelled() {
                return ready(Ok(Saved::Cancelled(reason.to_string())));
            }
            run.steps.retain(|s| s.seq != step.seq);
            run.steps.push(step);
            run.steps.sort_by_key(|s| s.seq);
        }
        ready(Ok(Saved::Stored))
    }

    fn cancel(&self, run: RunId, reason: String) -> StoreFuture<'_, Cancel> {
        let mut inner = self.lock();
        ready(Ok(inner.cancel(
            &self.registry,
            run,
            reason,
            Instant::now(),
        )))
    }

    fn queue_stats(&self, limit: usize) -> StoreFuture<'_, QueueStats> {
        let now_ms = now_millis();
        let mut inner = self.lock();
        inner.promote_due(Instant::now());
        // By function: due runs, and the earliest due time among first attempts.
        let mut by: HashMap<u32, (u64, Option<u64>)> = HashMap::new();
        let mut read = 0;
        let mut truncated = false;
        for &slot in &inner.ready {
            let Some(run) = inner.runs[slot as usize].as_ref() else {
                continue;
            };
            if !matches!(
                run.status,
                RunStatus::Queued | RunStatus::Sleeping | RunStatus::Waiting
            ) {
                continue;
            }
            if read == limit {
                truncated = true;
                break;
            }
            read += 1;
            let (due, oldest) = by.entry(run.function).or_default();
            *due += 1;
            // The ready queue keeps no times: a first attempt is due since its event
            // (or its delay); a retried or woken run's due time is not known here.
            if run.attempts == 0 && run.steps.is_empty() {
                let at = run.event.not_before.unwrap_or(0).max(run.event.ts);
                *oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
        }
        let functions = by
            .into_iter()
            .map(|(function, (due, oldest))| FunctionQueue {
                function: self.registry.defs[function as usize].id().to_owned(),
                due,
                oldest_due_age: Duration::from_millis(
                    oldest.map_or(0, |o| now_ms.saturating_sub(o)),
                ),
            })
            .collect();
        ready(Ok(QueueStats {
            functions,
            truncated,
        }))
    }

    fn unfinished(&self, function: u32, limit: usize) -> StoreFuture<'_, Vec<Unfinished>> {
        let inner = self.lock();
        let mut runs: Vec<Unfinished> = inner
            .runs
            .iter()
            .flatten()
            .filter(|run| run.function == function && !run.status.is_finished())
            .map(|run| Unfinished {
                run_id: run.id,
                event: Arc::clone(&run.event),
            })
            .collect();
        // Slots are reused: order by the runs' ids (UUIDv7, by creation time).
        runs.sort_unstable_by_key(|r| r.run_id);
        runs.truncate(limit);
        ready(Ok(runs))
    }

    fn runs(&self, event: EventId) -> StoreFuture<'_, Option<Vec<RunInfo>>> {
        let inner = self.lock();
        let runs = inner.events.get(&event).map(|entry| {
            entry
                .runs
                .iter()
                .filter_map(|&slot| inner.runs[slot as usize].as_ref())
                .map(|run| self.info(run))
                .collect()
        });
        ready(Ok(runs))
    }

    fn list<'a>(&'a self, filter: &'a RunFilter, limit: usize) -> StoreFuture<'a, Vec<RunInfo>> {
        ready(Ok(self.list_runs(filter, limit)))
    }

    fn replay(&self, run: RunId) -> StoreFuture<'_, Replay> {
        ready(Ok(self.replay_run(run)))
    }

    fn event(&self, id: EventId) -> StoreFuture<'_, Option<Arc<Envelope>>> {
        ready(Ok(self.stored_event(id)))
    }

    fn events<'a>(
        &'a self,
        filter: &'a EventFilter,
        limit: usize,
    ) -> StoreFuture<'a, Option<Vec<Arc<Envelope>>>> {
        ready(Ok(self.list_events(filter, limit)))
    }

    fn count_runs(&self, functions: Vec<String>) -> StoreFuture<'_, Vec<RunCounts>> {
        ready(Ok(self.count(&functions)))
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, Option<RunInfo>> {
        let inner = self.lock();
        // The id names its slot; the slot may hold a later run by now.
        let found = inner
            .runs
            .get(slot_of(run) as usize)
            .and_then(Option::as_ref)
            .filter(|r| r.id == run)
            .map(|r| self.info(r));
        ready(Ok(found))
    }
}

impl MemoryStore {
    /// A run as `Runtime::runs` and `Runtime::run` report it.
    fn info(&self, run: &Run) -> RunInfo {
        let def = self.registry.defs[run.function as usize];
        RunInfo {
            run_id: run.id,
            event_id: run.event.id,
            event_name: run.event.name.to_string(),
            app: self.app.clone(),
            function_id: def.id().to_owned(),
            status: run.status,
            attempts: run.attempts,
            last_error: run.last_error.as_deref().map(str::to_owned),
            failed_attempts: run
                .flow
                .as_ref()
                .map_or_else(Vec::new, |f| f.failed_attempts.clone()),
            output: run.output.clone(),
            steps: run.steps.iter().map(StepRecord::info).collect(),
            reason: match run.status {
                RunStatus::Cancelled => run.cancelled().map(str::to_owned),
                _ => run.flow.as_ref().and_then(|f| f.reason(def.flow())),
            },
            not_before_ms: run
                .flow
                .as_ref()
                .and_then(|f| f.not_before_ms)
                .or(run.event.not_before)
                .filter(|&t| t > now_millis() && run.status == RunStatus::Queued),
            created_at_ms: run.id.created_ms(),
            replay_of: run.flow.as_ref().and_then(|f| f.replay_of),
            waiting_for: run
                .flow
                .as_ref()
                .and_then(|f| f.waiting_for.clone())
                .filter(|_| run.status == RunStatus::Waiting),
        }
    }
}

impl Inner {
    /// Stores a wait's outcome as its step.
    fn save(&mut self, slot: u32, spec: &WaitSpec, output: String) {
        if let Some(run) = self.runs.get_mut(slot as usize).and_then(Option::as_mut) {
            let now = now_millis();
            run.steps.retain(|s| s.seq != spec.seq);
            run.steps.push(StepRecord {
                seq: spec.seq,
                id: spec.step_id.clone(),
                output,
                started_ms: now,
                completed_ms: now,
            });
            run.steps.sort_by_key(|s| s.seq);
        }
    }

    /// Hands `event` to the runs waiting for it, and queues those that are suspended.
    fn resolve_waits(&mut self, event: &Envelope) {
        let Some(waits) = self.waits.get_mut(&*event.name) else {
            return;
        };
        let hit = waits.take_matching(&event.data);
        if waits.is_empty() {
            self.waits.remove(&*event.name);
        }
        for (slot, spec) in hit {
            self.save(slot, &spec, event.data.clone());
            if let Some(run) = self.runs.get_mut(slot as usize).and_then(Option::as_mut) {
                if run.status == RunStatus::Waiting {
                    run.status = RunStatus::Queued;
                    self.ready.push_back(slot);
                }
            }
        }
    }

    /// Puts a run in a free slot, its id tagged with the slot (see [`with_slot`]).
    fn insert(&mut self, mut run: Run) -> u32 {
        let slot = match self.free.pop() {
            Some((slot, gen)) => {
                run.gen = gen;
                slot
            }
            None => {
                self.runs.push(None);
                (self.runs.len() - 1) as u32
            }
        };
        run.id = with_slot(run.id, slot);
        self.runs[slot as usize] = Some(run);
        slot
    }

    fn finish(&mut self, event: EventId, failed: bool, now: Instant) {
        if let Some(entry) = self.events.get_mut(&event) {
            entry.open -= 1;
            if failed {
                entry.keeps += 1;
                self.failed.push_back((now, event));
            }
            if entry.open == 0 {
                entry.keeps += 1;
                self.completed.push_back((now, event));
            }
        }
    }

    /// Applies the retention (`store::retention`): forgets each event whose runs all
    /// finished, the last more than `retention.completed` ago and the last failed one
    /// more than `retention.failed` ago.
    fn prune(&mut self, now: Instant, retention: Retention) {
        for failed in [false, true] {
            let keep = retention.keep(failed);
            loop {
                let queue = if failed {
                    &mut self.failed
                } else {
                    &mut self.completed
                };
                let Some(&(at, event)) = queue.front() else {
                    break;
                };
                if now.saturating_duration_since(at) < keep {
                    break;
                }
                queue.pop_front();
                self.expire(event);
            }
        }
    }

    /// One of the event's keeps has passed: forgets it if that was the last and all its
    /// runs finished.
    fn expire(&mut self, event: EventId) {
        let Some(entry) = self.events.get_mut(&event) else {
            return;
        };
        entry.keeps -= 1;
        if entry.keeps > 0 || entry.open > 0 {
            return;
        }
        if let Some(entry) = self.events.remove(&event) {
            for &slot in entry.runs.iter() {
                let gen = self.runs[slot as usize]
                    .take()
                    .map_or(0, |run| run.gen.wrapping_add(1));
                self.free.push((slot, gen));
            }
        }
    }
}

/// `now + delay`, for any delay a user can write (an `Instant` overflows past a few
/// centuries): far-future times become a hundred years.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
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
