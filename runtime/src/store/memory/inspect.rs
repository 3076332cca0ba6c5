//! `Runtime::list_runs` and `Runtime::replay` in the memory store: a look through every
//! run it keeps (it keeps them only for the retention), and a new run in a free slot.

use super::*;
use crate::flow::rules::flags;

impl MemoryStore {
    /// Up to `limit` runs `filter` selects, newest first.
    pub(super) fn list_runs(&self, filter: &RunFilter, limit: usize) -> Vec<RunInfo> {
        let inner = self.lock();
        let (from, below) = (filter.from(), filter.below());
        let mut found: Vec<&Run> = inner
            .runs
            .iter()
            .flatten()
            .filter(|run| {
                from.is_none_or(|from| run.id >= from)
                    && below.is_none_or(|below| run.id < below)
                    && filter.status.is_none_or(|s| s == run.status)
                    && filter.event.is_none_or(|e| e == run.event.id)
                    && filter
                        .function
                        .as_deref()
                        .is_none_or(|f| self.registry.defs[run.function as usize].id() == f)
            })
            .collect();
        found.sort_unstable_by_key(|run| std::cmp::Reverse(run.id));
        found.truncate(limit);
        found.into_iter().map(|run| self.info(run)).collect()
    }

    /// How many runs of each of `functions` the store keeps, by status.
    pub(super) fn count(&self, functions: &[String]) -> Vec<RunCounts> {
        let inner = self.lock();
        // By registry index: the ids of this runtime's functions are unique.
        let mut by_index = vec![RunCounts::default(); self.registry.defs.len()];
        for run in inner.runs.iter().flatten() {
            if let Some(counts) = by_index.get_mut(run.function as usize) {
                counts.add(run.status, 1);
            }
        }
        functions
            .iter()
            .map(|id| {
                self.registry
                    .defs
                    .iter()
                    .position(|d| d.id() == id)
                    .map(|i| by_index[i])
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Queues a new run of `run`'s function for its event (see `Store::replay`).
    pub(super) fn replay_run(&self, run: RunId) -> Replay {
        let mut inner = self.lock();
        let Some(original) = inner
            .runs
            .get(slot_of(run) as usize)
            .and_then(Option::as_ref)
            .filter(|r| r.id == run)
        else {
            return Replay::Unknown;
        };
        if !original.status.is_finished() {
            return Replay::Unfinished(original.status);
        }
        if original
            .flow
            .as_ref()
            .is_some_and(|f| f.place.flags & flags::BATCHED != 0)
        {
            return Replay::Batched;
        }
        let (event, function) = (Arc::clone(&original.event), original.function);
        let mut flow = Box::<flow::RunFlow>::default();
        flow.place.flags = flags::ADMITTED | flags::ENTERED;
        flow.replay_of = Some(run);
        let id = RunId::new(now_millis());
        let slot = inner.insert(Run::queued(id, Arc::clone(&event), function, Some(flow)));
        let Some(id) = inner.runs[slot as usize].as_ref().map(|r| r.id) else {
            return Replay::Unknown;
        };
        if let Some(entry) = inner.events.get_mut(&event.id) {
            entry.runs = entry.runs.iter().copied().chain([slot]).collect();
            entry.open += 1;
        }
        inner.ready.push_back(slot);
        Replay::Replayed(id)
    }
}

impl MemoryStore {
    /// One stored event.
    pub(super) fn stored_event(&self, id: EventId) -> Option<Arc<Envelope>> {
        let inner = self.lock();
        inner.events.get(&id).map(|e| Arc::clone(&e.envelope))
    }

    /// Up to `limit` events `filter` selects, newest first; `None` for a cursor not
    /// stored.
    pub(super) fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
    ) -> Option<Vec<Arc<Envelope>>> {
        let inner = self.lock();
        let below = match filter.after {
            Some(cursor) => Some((inner.events.get(&cursor)?.envelope.ts, cursor)),
            None => None,
        };
        let mut found: Vec<&Arc<Envelope>> = inner
            .events
            .values()
            .map(|e| &e.envelope)
            .filter(|e| {
                filter.name.as_deref().is_none_or(|n| n == &*e.name)
                    && filter.since_ms.is_none_or(|t| e.ts >= t)
                    && filter.until_ms.is_none_or(|t| e.ts < t)
                    && below.is_none_or(|b| (e.ts, e.id) < b)
            })
            .collect();
        found.sort_unstable_by_key(|e| std::cmp::Reverse((e.ts, e.id)));
        found.truncate(limit);
        Some(found.into_iter().map(Arc::clone).collect())
    }
}
