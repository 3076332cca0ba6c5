//! Looking through the runs a store keeps, and acting on them: `Runtime::list_runs`,
//! `Runtime::replay`, and their bulk forms; `Runtime::functions` with run counts. The
//! HTTP runs API, the dashboard and the CLI are thin layers over these.

use crate::error::{Error, ErrorKind, Result};
use crate::event::{unix_millis, EventId, RunId};
use crate::store::{Replay, RunInfo, RunStatus};
use crate::Runtime;
use std::time::SystemTime;

/// Most runs one page holds ([`RunFilter::limit`]).
pub const MAX_PAGE: usize = 1000;

/// Runs a page holds unless [`RunFilter::limit`] says otherwise.
pub const DEFAULT_PAGE: usize = 50;

/// Which runs [`Runtime::list_runs`] returns: every condition set must hold. Runs come
/// newest first, a page at a time; [`RunPage::next`] continues where a page ended
/// (keyset pagination: a page costs the same however deep it is, and runs created
/// meanwhile do not shift it).
///
/// ```
/// use fanfare::{RunFilter, RunStatus};
/// use std::time::{Duration, SystemTime};
///
/// let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
/// let failed = RunFilter::new()
///     .status(RunStatus::Failed)
///     .function("send-welcome-email")
///     .since(an_hour_ago)
///     .limit(100);
/// # let _ = failed;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RunFilter {
    pub(crate) status: Option<RunStatus>,
    pub(crate) function: Option<String>,
    pub(crate) event: Option<EventId>,
    /// Created at or after, unix ms.
    pub(crate) since_ms: Option<u64>,
    /// Created before, unix ms.
    pub(crate) until_ms: Option<u64>,
    /// Older than this run (the cursor).
    pub(crate) after: Option<RunId>,
    pub(crate) limit: usize,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter {
            status: None,
            function: None,
            event: None,
            since_ms: None,
            until_ms: None,
            after: None,
            limit: DEFAULT_PAGE,
        }
    }
}

impl RunFilter {
    /// Every run, [`DEFAULT_PAGE`] at a time.
    pub fn new() -> RunFilter {
        RunFilter::default()
    }

    /// Only runs with this status.
    pub fn status(mut self, status: RunStatus) -> RunFilter {
        self.status = Some(status);
        self
    }

    /// Only runs of the function with this id (in any app).
    pub fn function(mut self, id: impl Into<String>) -> RunFilter {
        self.function = Some(id.into());
        self
    }

    /// Only the runs of this event (its fan-out).
    pub fn event(mut self, event: EventId) -> RunFilter {
        self.event = Some(event);
        self
    }

    /// Only runs created at `time` or later.
    pub fn since(mut self, time: SystemTime) -> RunFilter {
        self.since_ms = Some(unix_millis(time));
        self
    }

    /// Only runs created before `time`.
    pub fn until(mut self, time: SystemTime) -> RunFilter {
        self.until_ms = Some(unix_millis(time));
        self
    }

    /// Continues after a page: only runs older than `cursor` ([`RunPage::next`]).
    pub fn after(mut self, cursor: RunId) -> RunFilter {
        self.after = Some(cursor);
        self
    }

    /// At most `n` runs a page, between 1 and [`MAX_PAGE`] (a value outside is brought
    /// inside).
    pub fn limit(mut self, n: usize) -> RunFilter {
        self.limit = n.clamp(1, MAX_PAGE);
        self
    }

    /// The upper bound on run ids, exclusive: the older of `until` and the cursor.
    pub(crate) fn below(&self) -> Option<RunId> {
        let until = self.until_ms.map(id_at);
        match (until, self.after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The lower bound on run ids, inclusive.
    pub(crate) fn from(&self) -> Option<RunId> {
        self.since_ms.map(id_at)
    }
}

/// The smallest run id of `millis`: run ids are UUIDv7s, ordered by creation time, so a
/// time range is an id range.
fn id_at(millis: u64) -> RunId {
    RunId::from_uuid(uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid())
}

/// One page of [`Runtime::list_runs`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<RunInfo>,
    /// Where the next page starts ([`RunFilter::after`]), or `None` after the last page.
    pub next: Option<RunId>,
}

/// How many runs of a function a store keeps, by [`RunStatus`]
/// ([`FunctionInfo::counts`]).
///
/// ```
/// use fanfare::{RunCounts, RunStatus};
/// let counts = RunCounts::default();
/// assert_eq!(counts.get(RunStatus::Failed), 0);
/// assert_eq!(counts.total(), 0);
/// assert_eq!(counts.iter().count(), RunStatus::ALL.len());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// In the order of [`RunStatus::ALL`].
    counts: [u64; RunStatus::ALL.len()],
}

impl RunCounts {
    /// Runs with this status.
    pub fn get(&self, status: RunStatus) -> u64 {
        self.counts[index_of(status)]
    }

    /// Runs of any status.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every status with its count, in the order of [`RunStatus::ALL`] (zeros included).
    pub fn iter(&self) -> impl Iterator<Item = (RunStatus, u64)> + '_ {
        RunStatus::ALL.into_iter().zip(self.counts.iter().copied())
    }

    /// Counts `n` more runs with `status`.
    pub(crate) fn add(&mut self, status: RunStatus, n: u64) {
        self.counts[index_of(status)] += n;
    }
}

fn index_of(status: RunStatus) -> usize {
    RunStatus::ALL
        .iter()
        .position(|&s| s == status)
        .unwrap_or_default()
}

/// One of this process's functions, as [`Runtime::functions`] reports it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FunctionInfo {
    /// The function's id (`id = "…"`, or the fn's name).
    pub id: String,
    /// The event name that runs it, `None` for a `cron` function (the first of several
    /// for `trigger = ["…", "…"]`: see [`FunctionInfo::triggers`]).
    pub trigger: Option<String>,
    /// Every event name that runs it (empty for a `cron` function).
    pub triggers: Vec<String>,
    /// Its cron expression, for a function run on a schedule.
    pub cron: Option<String>,
    /// Its runs the store keeps, by status (of every app, on a PostgreSQL store that
    /// several apps share: as [`RunFilter::function`] selects them).
    pub counts: RunCounts,
}

impl Runtime {
    /// This process's functions (those its registry holds, sorted as
    /// [`fanfare::functions`](crate::functions) sorts them), each with how many of its
    /// runs the store keeps, by status.
    ///
    /// A count is not free: it reads the index entries and the rows of the function's
    /// runs the store keeps — completed ones for the [retention](crate::Builder::retention)
    /// (an hour by default), failed ones for the failed retention (30 days), and every
    /// run that has not finished; the memory store looks through all its runs. That
    /// suits a page someone opens, not a loop that polls it many times a second.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use fanfare::RunStatus;
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/count")]
    /// # pub struct Tick { pub n: u32 }
    /// #[fanfare::function(trigger = "doc/count", retries = 0)]
    /// async fn tick(ctx: fanfare::Ctx<Tick>) -> fanfare::Result<()> {
    ///     if ctx.event().n == 0 {
    ///         return Err(fanfare::Error::msg("zero"));
    ///     }
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// for n in 0..3 {
    ///     let id = rt.send(Tick { n }).await?;
    ///     rt.wait(id).await?;
    /// }
    /// let functions = rt.functions().await?;
    /// let tick = functions.iter().find(|f| f.id == "tick").unwrap();
    /// assert_eq!(tick.trigger.as_deref(), Some("doc/count"));
    /// assert_eq!(tick.counts.get(RunStatus::Completed), 2);
    /// assert_eq!(tick.counts.get(RunStatus::Failed), 1);
    /// # rt.shutdown().await }
    /// ```
    pub async fn functions(&self) -> Result<Vec<FunctionInfo>> {
        let defs = self.registry().defs.clone();
        let ids: Vec<String> = defs.iter().map(|d| d.id().to_owned()).collect();
        let counts = self.store().count_runs(ids).await?;
        Ok(defs
            .iter()
            .zip(
                counts
                    .into_iter()
                    .chain(std::iter::repeat(RunCounts::default())),
            )
            .map(|(def, counts)| FunctionInfo {
                id: def.id().to_owned(),
                trigger: def.triggers().first().map(|t| (*t).to_owned()),
                triggers: def.triggers().iter().map(|t| (*t).to_owned()).collect(),
                cron: def.cron().map(str::to_owned),
                counts,
            })
            .collect())
    }

    /// A page of the runs `filter` selects, newest first, with their steps.
    ///
    /// On SQLite and PostgreSQL a page is read through indexes (by function, and by
    /// status for runs that have not completed), at a cost independent of how many runs
    /// are stored; the memory store looks through its runs.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use fanfare::{RunFilter, RunStatus};
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/list")]
    /// # pub struct Ping { pub n: u32 }
    /// # #[fanfare::function(trigger = "doc/list")]
    /// # async fn pong(ctx: fanfare::Ctx<Ping>) -> fanfare::Result<u32> { Ok(ctx.event().n) }
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// for n in 0..3 {
    ///     let id = rt.send(Ping { n }).await?;
    ///     rt.wait(id).await?;
    /// }
    /// let page = rt.list_runs(&RunFilter::new().function("pong").limit(2)).await?;
    /// assert_eq!(page.runs.len(), 2);
    /// assert!(page.runs[0].created_at_ms >= page.runs[1].created_at_ms); // newest first
    /// let rest = rt.list_runs(&RunFilter::new().function("pong").after(page.next.unwrap())).await?;
    /// assert_eq!(rest.runs.len(), 1);
    /// assert_eq!(rest.next, None);
    /// # rt.shutdown().await }
    /// ```
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut runs = self.store().list(filter, limit + 1).await?;
        let next = if runs.len() > limit {
            runs.truncate(limit);
            runs.last().map(|r| r.run_id)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    /// Runs a finished run again, from scratch: a new run of the same function for the
    /// same event, queued now, that executes every step anew. The original keeps its
    /// history; the new run's [`RunInfo::replay_of`] names it. Returns the new run's id.
    ///
    /// The new run skips the function's `debounce`, `rate_limit`, `throttle`,
    /// `idempotency` and filter (it is replayed on purpose), but waits for its
    /// `concurrency` slots like any run. On PostgreSQL, a run of another app's function
    /// is executed by that app's processes.
    ///
    /// Fails with [`ErrorKind::RunNotFound`] for an unknown run, and with
    /// [`ErrorKind::NotReplayable`] for a run that has not finished (cancel it first) or
    /// that belongs to a `batch`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use std::sync::atomic::{AtomicBool, Ordering};
    /// use fanfare::RunStatus;
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/replay")]
    /// # pub struct Charge { pub cents: u32 }
    /// static FIXED: AtomicBool = AtomicBool::new(false);
    ///
    /// #[fanfare::function(trigger = "doc/replay", retries = 0)]
    /// async fn charge(ctx: fanfare::Ctx<Charge>) -> fanfare::Result<u32> {
    ///     if !FIXED.load(Ordering::SeqCst) {
    ///         return Err(fanfare::Error::msg("card service down"));
    ///     }
    ///     Ok(ctx.event().cents)
    /// }
    ///
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// let event = rt.send(Charge { cents: 1999 }).await?;
    /// let failed = rt.wait(event).await?[0].run_id;
    /// FIXED.store(true, Ordering::SeqCst); // the fix is deployed
    /// let again = rt.replay(failed).await?;
    /// let runs = rt.wait(event).await?;
    /// let replayed = runs.iter().find(|r| r.run_id == again).unwrap();
    /// assert_eq!(replayed.status, RunStatus::Completed);
    /// assert_eq!(replayed.replay_of, Some(failed));
    /// assert_eq!(rt.run(failed).await?.status, RunStatus::Failed); // history kept
    /// # rt.shutdown().await }
    /// ```
    pub async fn replay(&self, run: RunId) -> Result<RunId> {
        match self.store().replay(run).await? {
            Replay::Replayed(new) => {
                self.wake();
                Ok(new)
            }
            Replay::Unknown => Err(Error::new(
                ErrorKind::RunNotFound,
                format_args!("no run with id {run} is known to this runtime"),
            )),
            Replay::Unfinished(status) => Err(Error::new(
                ErrorKind::NotReplayable,
                format_args!(
                    "run {run} cannot be replayed: it has not finished (it is {})\nhelp: cancel it first with `Runtime::cancel`, or wait for it to finish",
                    status.as_str()
                ),
            )),
            Replay::Batched => Err(Error::new(
                ErrorKind::NotReplayable,
                format_args!(
                    "run {run} cannot be replayed: it belongs to a batch of events\nhelp: send the events again to run them in a new batch"
                ),
            )),
        }
    }

    /// Replays every finished run `filter` selects (all its pages, from the newest), and
    /// returns the new runs' ids; runs that cannot be replayed (unfinished, batched) are
    /// passed over. Runs created by the replay are not replayed again.
    ///
    /// Typical use, after deploying a fix: replay the failed runs of one function.
    ///
    /// ```no_run
    /// # async fn f(rt: fanfare::Runtime) -> fanfare::Result<()> {
    /// use fanfare::{RunFilter, RunStatus};
    /// let failed = RunFilter::new().status(RunStatus::Failed).function("charge");
    /// let replayed = rt.replay_matching(&failed).await?;
    /// println!("replayed {} runs", replayed.len());
    /// # Ok(()) }
    /// ```
    pub async fn replay_matching(&self, filter: &RunFilter) -> Result<Vec<RunId>> {
        let mut filter = filter.clone();
        let mut replayed = Vec::new();
        loop {
            let page = self.replay_page(&filter).await?;
            replayed.extend(page.done.into_iter().map(|(_, new)| new));
            match page.next {
                Some(next) => filter.after = Some(next),
                None => return Ok(replayed),
            }
        }
    }

    /// Cancels every run `filter` selects that has not finished (see
    /// [`Runtime::cancel`]), all its pages, and returns the ids of the runs cancelled or
    /// marked.
    ///
    /// ```no_run
    /// # async fn f(rt: fanfare::Runtime) -> fanfare::Result<()> {
    /// use fanfare::{RunFilter, RunStatus};
    /// // A runaway batch: stop everything `import-row` has queued.
    /// let queued = RunFilter::new().status(RunStatus::Queued).function("import-row");
    /// let cancelled = rt.cancel_matching(&queued).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_matching(&self, filter: &RunFilter) -> Result<Vec<RunId>> {
        let mut filter = filter.clone();
        let mut cancelled = Vec::new();
        loop {
            let page = self.cancel_page(&filter).await?;
            cancelled.extend(page.done);
            match page.next {
                Some(next) => filter.after = Some(next),
                None => return Ok(cancelled),
            }
        }
    }

    /// Replays the finished runs of one page of `filter` (see [`Runtime::replay`]),
    /// passing over those that cannot be replayed: the step of `replay_matching`, and of
    /// the bulk replays of the runs API and the dashboard, which go page by page.
    pub(crate) async fn replay_page(&self, filter: &RunFilter) -> Result<BulkPage<(RunId, RunId)>> {
        let page = self.list_runs(filter).await?;
        let mut done = Vec::new();
        for run in page.runs.iter().filter(|r| r.status.is_finished()) {
            match self.replay(run.run_id).await {
                Ok(new) => done.push((run.run_id, new)),
                Err(e) if matches!(e.kind(), ErrorKind::NotReplayable | ErrorKind::RunNotFound) => {
                }
                Err(e) => return Err(e),
            }
        }
        Ok(BulkPage {
            done,
            matched: page.runs.len(),
            next: page.next,
        })
    }

    /// Cancels the unfinished runs of one page of `filter` (see [`Runtime::cancel`]): the
    /// step of `cancel_matching` and of the runs API's bulk cancel. A run counts as done
    /// when it was cancelled or marked, not when it had finished meanwhile.
    pub(crate) async fn cancel_page(&self, filter: &RunFilter) -> Result<BulkPage<RunId>> {
        let page = self.list_runs(filter).await?;
        let mut done = Vec::new();
        for run in page.runs.iter().filter(|r| !r.status.is_finished()) {
            match self.cancel(run.run_id).await {
                Ok(status) if status.is_finished() && status != RunStatus::Cancelled => {}
                Ok(_) => done.push(run.run_id),
                Err(e) if e.kind() == ErrorKind::RunNotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(BulkPage {
            done,
            matched: page.runs.len(),
            next: page.next,
        })
    }
}

/// What a bulk operation did with one page of runs.
pub(crate) struct BulkPage<T> {
    /// The runs acted on: for a replay the original and the new run, for a cancel the run.
    pub done: Vec<T>,
    /// Runs in the page.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub matched: usize,
    /// Where the next page starts.
    pub next: Option<RunId>,
}
