//! The counters the engine bumps as runs go: one table of relaxed atomics per function,
//! indexed by the function's position in the registry and allocated once at start, so
//! counting takes no lock, no allocation and no string.
//!
//! Each function's table is kept in a few copies (shards), and a thread bumps the copy
//! its index picks: the same function's runs finish on every worker thread, and one
//! shared table bounced its cache lines between them on each of the four counts a run
//! makes. A snapshot sums the copies.

use super::{EventsSent, FunctionMetrics, Histogram, Metrics, QueueStats};
use crate::function::{Registry, FAILURE_EVENT};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// The upper bounds of the attempt duration histogram's buckets, in microseconds: 5 ms
/// to 5 min (and `+Inf` past the last).
pub(crate) const BUCKETS_US: [u64; 15] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
];

/// The bucket of an attempt that took `took`: the first whose bound holds it.
pub(crate) fn bucket(took: Duration) -> usize {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    BUCKETS_US
        .iter()
        .position(|&le| us <= le)
        .unwrap_or(BUCKETS_US.len())
}

/// What a run's outcome counts as.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Started,
    Completed,
    Failed,
    Retried,
    Skipped,
    Cancelled,
}

/// One function's counters. Aligned to a cache line so functions executing on different
/// cores do not share one.
#[repr(align(64))]
#[derive(Default)]
struct FunctionCounters {
    /// By [`Count`].
    counts: [AtomicU64; 6],
    /// Attempts by duration bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    /// Sum of attempt durations, in microseconds.
    sum_us: AtomicU64,
}

/// This process's counters, for every function of its registry and every event name
/// they subscribe to.
pub(crate) struct Counters {
    /// `shards` copies of the functions' tables, one after the other.
    functions: Box<[FunctionCounters]>,
    shards: usize,
    /// Event names some function subscribes to, and their index in a row of `sent`.
    names: crate::hash::Map<&'static str, usize>,
    /// Events sent, by name index (the last counts every other name): `shards` rows of
    /// `sent_row` counters, a row's counters on cache lines no other row's share.
    sent: Box<[AtomicU64]>,
    sent_row: usize,
}

impl Counters {
    pub fn new(registry: &Registry) -> Counters {
        let mut names = crate::hash::Map::default();
        for def in &registry.defs {
            for &trigger in def.triggers() {
                if trigger != FAILURE_EVENT {
                    let next = names.len();
                    names.entry(trigger).or_insert(next);
                }
            }
        }
        // A few copies per core: threads take them in turn, and the blocking pool's and
        // the runtime's own threads take some too.
        let shards = std::thread::available_parallelism()
            .map_or(1, |n| n.get() * 2)
            .clamp(1, 16);
        // A row's used counters span at most two cache lines of 64 bytes; a row of whole
        // lines plus one more keeps the next row's off them.
        let sent_row = (names.len() + 1).div_ceil(8) * 8 + 8;
        Counters {
            functions: (0..shards * registry.defs.len())
                .map(|_| Default::default())
                .collect(),
            shards,
            sent: (0..shards * sent_row).map(|_| AtomicU64::new(0)).collect(),
            sent_row,
            names,
        }
    }

    /// This thread's copy of function `function`'s counters.
    fn mine(&self, function: u32) -> Option<&FunctionCounters> {
        let functions = self.functions.len() / self.shards;
        if function as usize >= functions {
            return None;
        }
        let shard = thread_index() % self.shards;
        self.functions.get(shard * functions + function as usize)
    }

    /// The copies of each function's counters, function by function.
    fn per_function(&self) -> impl Iterator<Item = Vec<&FunctionCounters>> {
        let functions = self.functions.len() / self.shards;
        (0..functions).map(move |f| {
            (0..self.shards)
                .map(|s| &self.functions[s * functions + f])
                .collect()
        })
    }

    /// Counts one `what` of function `function` (its registry index).
    pub fn count(&self, function: u32, what: Count) {
        if let Some(f) = self.mine(function) {
            f.counts[what as usize].fetch_add(1, Relaxed);
        }
    }

    /// Counts one attempt of function `function` that took `took`.
    pub fn attempt(&self, function: u32, took: Duration) {
        let Some(f) = self.mine(function) else {
            return;
        };
        f.buckets[bucket(took)].fetch_add(1, Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        f.sum_us.fetch_add(us, Relaxed);
    }

    /// Where an event of this name is counted: under its name if a function subscribes
    /// to it, else under `other`.
    pub fn event_label(&self, name: &str) -> usize {
        self.names.get(name).copied().unwrap_or(self.names.len())
    }

    /// Counts one event sent under `label` (from [`Counters::event_label`]).
    pub fn sent(&self, label: usize) {
        if label > self.names.len() {
            return;
        }
        let row = thread_index() % self.shards;
        if let Some(n) = self.sent.get(row * self.sent_row + label) {
            n.fetch_add(1, Relaxed);
        }
    }

    /// Events sent under label `label`, over every thread's row.
    fn sent_total(&self, label: usize) -> u64 {
        (0..self.shards)
            .map(|row| self.sent[row * self.sent_row + label].load(Relaxed))
            .sum()
    }

    /// A snapshot of the counters, with the store's queue statistics.
    pub fn snapshot(&self, registry: &Registry, queue: QueueStats) -> Metrics {
        let mut due: HashMap<String, (u64, Duration)> = queue
            .functions
            .into_iter()
            .map(|q| (q.function, (q.due, q.oldest_due_age)))
            .collect();
        let mut functions: Vec<FunctionMetrics> = registry
            .defs
            .iter()
            .zip(self.per_function())
            .map(|(def, c)| {
                let sum = |of: &dyn Fn(&FunctionCounters) -> &AtomicU64| {
                    c.iter().map(|f| of(f).load(Relaxed)).sum::<u64>()
                };
                let get = |what: Count| sum(&|f| &f.counts[what as usize]);
                let mut cumulative = 0;
                let buckets = BUCKETS_US
                    .iter()
                    .map(|&le| le as f64 / 1e6)
                    .chain([f64::INFINITY])
                    .enumerate()
                    .map(|(i, le)| {
                        cumulative += sum(&|f| &f.buckets[i]);
                        (le, cumulative)
                    })
                    .collect();
                let (queue_due, oldest) = due.remove(def.id()).unwrap_or_default();
                FunctionMetrics {
                    function: def.id().to_owned(),
                    started: get(Count::Started),
                    completed: get(Count::Completed),
                    failed: get(Count::Failed),
                    retried: get(Count::Retried),
                    skipped: get(Count::Skipped),
                    cancelled: get(Count::Cancelled),
                    attempt_duration: Histogram {
                        buckets,
                        sum_seconds: sum(&|f| &f.sum_us) as f64 / 1e6,
                        count: cumulative,
                    },
                    queue_due,
                    oldest_due_age: oldest,
                }
            })
            .collect();
        // Due runs of functions this process does not have (another version of the app,
        // or another program sharing the SQLite file): their queue, no counters.
        for (function, (queue_due, oldest_due_age)) in due {
            functions.push(FunctionMetrics {
                function,
                queue_due,
                oldest_due_age,
                ..FunctionMetrics::default()
            });
        }
        functions.sort_by(|a, b| a.function.cmp(&b.function));
        let mut events: Vec<EventsSent> = self
            .names
            .iter()
            .map(|(&name, &i)| EventsSent {
                event: name.to_owned(),
                sent: self.sent_total(i),
            })
            .collect();
        events.sort_by(|a, b| a.event.cmp(&b.event));
        events.push(EventsSent {
            event: super::OTHER_EVENTS.to_owned(),
            sent: self.sent_total(self.names.len()),
        });
        Metrics {
            functions,
            events_sent: events,
            queue_truncated: queue.truncated,
        }
    }
}

/// This thread's index, taken in turn when it first counts.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX
        .try_with(|i| {
            if i.get() == usize::MAX {
                i.set(NEXT.fetch_add(1, Relaxed));
            }
            i.get()
        })
        .unwrap_or(0)
}
