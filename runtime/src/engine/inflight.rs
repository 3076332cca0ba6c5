//! The runs executing in this process, and the task that holds each.
//!
//! A chunk's task holds up to `start::CHUNK` runs. Each run names its holder by index,
//! and the holder keeps the task's abort handle once, with a count of its runs: taking
//! or dropping an abort handle is an atomic operation on the task's header, which the
//! thread polling the task is writing too, so one per run was a measurable share of
//! the recorder's time.

use crate::hash::Map;
use crate::store::RunKey;
use tokio::task::AbortHandle;

#[derive(Default)]
pub(super) struct Inflight {
    /// The holder of each run: its chunk's task until it starts and finishes there,
    /// then its own if it awaits (`start`).
    tasks: Map<RunKey, u32>,
    holders: Vec<Holder>,
    /// Indexes of `holders` free for reuse.
    free: Vec<u32>,
    /// Runs marked cancelled, with the reason, until their outcome is recorded; an
    /// attempt reads its mark at its next step (`RunState::cancelled`).
    pub marks: Map<RunKey, String>,
    /// Slots a store reserved for runs it is claiming as it stores them (`Slots`): busy
    /// as much as executing runs are, until the runs are handed over.
    pub reserved: usize,
    /// Set once shutdown aborted every run: runs handed over later are released.
    pub closed: bool,
}

#[derive(Default)]
struct Holder {
    task: Option<AbortHandle>,
    /// Runs it holds.
    runs: u32,
}

impl Inflight {
    /// Makes `task` the holder of `keys`, in place of their holders until now.
    pub fn hold(&mut self, task: AbortHandle, keys: impl IntoIterator<Item = RunKey>) {
        let holder = match self.free.pop() {
            Some(i) => i,
            None => {
                self.holders.push(Holder::default());
                (self.holders.len() - 1) as u32
            }
        };
        let mut runs = 0;
        for key in keys {
            runs += 1;
            if let Some(before) = self.tasks.insert(key, holder) {
                self.let_go(before);
            }
        }
        if runs == 0 {
            self.free.push(holder);
            return;
        }
        self.holders[holder as usize] = Holder {
            task: Some(task),
            runs,
        };
    }

    /// Forgets a run (its outcome is recorded); whether it was here.
    pub fn remove(&mut self, key: RunKey) -> bool {
        match self.tasks.remove(&key) {
            Some(holder) => {
                self.let_go(holder);
                true
            }
            None => false,
        }
    }

    fn let_go(&mut self, holder: u32) {
        let h = &mut self.holders[holder as usize];
        h.runs -= 1;
        if h.runs == 0 {
            h.task = None;
            self.free.push(holder);
        }
    }

    pub fn contains(&self, key: RunKey) -> bool {
        self.tasks.contains_key(&key)
    }

    /// Slots taken: executing runs, and slots reserved for runs being handed over.
    pub fn busy(&self) -> usize {
        self.tasks.len() + self.reserved
    }

    pub fn keys(&self) -> impl Iterator<Item = RunKey> + '_ {
        self.tasks.keys().copied()
    }

    /// Aborts every holder and forgets every run; returns the runs.
    pub fn abort_all(&mut self) -> Vec<RunKey> {
        for h in self.holders.drain(..) {
            if let Some(task) = h.task {
                task.abort();
            }
        }
        self.free.clear();
        self.marks.clear();
        self.closed = true;
        self.tasks.drain().map(|(key, _)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_holder_lives_as_long_as_one_of_its_runs_and_is_reused() {
        let mut inflight = Inflight::default();
        let chunk = tokio::spawn(std::future::pending::<()>());
        inflight.hold(chunk.abort_handle(), [1, 2, 3]);
        // Run 2 awaits: a task of its own holds it from then on.
        let own = tokio::spawn(std::future::pending::<()>());
        inflight.hold(own.abort_handle(), [2]);
        assert!(inflight.remove(1) && inflight.remove(3));
        assert!(inflight.holders[0].task.is_none(), "the chunk holds none");
        assert_eq!(inflight.free, [0]);
        assert!(!inflight.remove(1));
        assert_eq!(inflight.busy(), 1);
        let later = tokio::spawn(std::future::pending::<()>());
        inflight.hold(later.abort_handle(), [4]);
        assert_eq!(inflight.tasks[&4], 0, "the freed holder is reused");
        let mut keys = inflight.abort_all();
        keys.sort();
        assert_eq!(keys, [2, 4]);
        assert!(own.await.unwrap_err().is_cancelled());
        assert!(later.await.unwrap_err().is_cancelled());
        chunk.abort();
    }
}
