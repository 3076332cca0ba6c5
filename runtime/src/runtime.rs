//! [`Runtime`]: the handle users start, send through, inspect and shut down.

use crate::backoff::Backoff;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Envelope, Event, EventId, RunId};
use crate::function::{functions, Registry};
use crate::metrics::Metrics;
use crate::send_options::{JsonEvent, SendOptions};
use crate::store::memory::MemoryStore;
#[cfg(feature = "postgres")]
use crate::store::postgres::PgStore;
use crate::store::retention::Retention;
#[cfg(feature = "sqlite")]
use crate::store::sqlite::{SqliteStore, SqliteSync};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::store::StoreOptions;
use crate::store::{RunInfo, RunStatus, Store};
#[cfg(feature = "sqlite")]
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Configures and starts a [`Runtime`]; made by [`Runtime::builder`].
///
/// ```
/// # #[tokio::main] async fn main() -> fanfare::Result<()> {
/// use std::time::Duration;
///
/// let rt = fanfare::Runtime::builder()
///     .backoff(fanfare::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(60)))
///     .concurrency(256)
///     .max_event_size(64 * 1024)
///     .shutdown_timeout(Duration::from_secs(10))
///     .start()
///     .await?;
/// rt.shutdown().await
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `.start().await`"]
pub struct Builder {
    backoff: Backoff,
    concurrency: usize,
    max_event_size: usize,
    shutdown_timeout: Duration,
    retention: Duration,
    failed_retention: Duration,
    group_commit: bool,
    app: Option<String>,
    lease: Duration,
    execute: bool,
    store: StoreConfig,
    trace: crate::trace::Hooks,
    /// Where `Builder::http` serves, if it was called.
    #[cfg(feature = "http")]
    http_addr: Option<String>,
    #[cfg(feature = "http")]
    http: crate::http::Settings,
}

/// Which store a runtime uses.
#[derive(Clone, Debug)]
enum StoreConfig {
    Memory,
    #[cfg(feature = "sqlite")]
    Sqlite {
        path: PathBuf,
        sync: SqliteSync,
    },
    #[cfg(feature = "postgres")]
    Postgres {
        url: String,
    },
}

/// Default of [`Builder::concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 1024;
/// Default of [`Builder::max_event_size`]: 512 KiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 512 * 1024;
/// Default of [`Builder::retention`]: an hour.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
/// Default of [`Builder::failed_retention`]: 30 days.
pub const DEFAULT_FAILED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for Builder {
    fn default() -> Self {
        Builder {
            backoff: Backoff::default(),
            concurrency: DEFAULT_CONCURRENCY,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            shutdown_timeout: Duration::from_secs(30),
            retention: DEFAULT_RETENTION,
            failed_retention: DEFAULT_FAILED_RETENTION,
            group_commit: true,
            app: None,
            lease: Duration::from_secs(30),
            execute: true,
            store: StoreConfig::Memory,
            trace: crate::trace::Hooks::default(),
            #[cfg(feature = "http")]
            http_addr: None,
            #[cfg(feature = "http")]
            http: crate::http::Settings::default(),
        }
    }
}

impl Builder {
    /// The delay between a failed attempt and the next ([`Backoff::default`]: 1 s doubling
    /// to 10 min, with jitter). A function's `Error::retry_after` overrides it per attempt.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Most runs this process executes at once (default 1024). Runs beyond it wait in
    /// the queue. Must be at least 1.
    pub fn concurrency(mut self, runs: usize) -> Self {
        self.concurrency = runs;
        self
    }

    /// Largest accepted event, in bytes of its JSON serialization (default 512 KiB).
    /// `send` refuses larger events with [`ErrorKind::EventTooLarge`].
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// How long [`Runtime::shutdown`] lets running attempts finish before it aborts them
    /// and puts their runs back in the queue (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a store keeps an event once all its runs completed (or were cancelled,
    /// or skipped), for [`Runtime::runs`] and [`Runtime::run`] (default 1 hour,
    /// [`DEFAULT_RETENTION`]); then the event, its runs and their steps are deleted. An
    /// event with a failed run is kept longer: see [`Builder::failed_retention`].
    ///
    /// Every store prunes, the memory store included. Durable stores prune in small
    /// batches, walking their indexes in time order: a batch costs the same however large
    /// the history, and holds no lock a claim needs. While the history is behind, batches
    /// follow each other, taking at most a fifth of the store's time, so the workload
    /// keeps the rest.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// use std::time::Duration;
    ///
    /// let rt = fanfare::Runtime::builder()
    ///     .retention(Duration::from_secs(24 * 3600))
    ///     .start()
    ///     .await?;
    /// # rt.shutdown().await
    /// # }
    /// ```
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long a store keeps an event with a failed run — the dead-letter set, where
    /// [`Runtime::runs`] shows each failed run with its attempts and last error (default
    /// 30 days, [`DEFAULT_FAILED_RETENTION`]).
    ///
    /// Such an event is deleted, with all its runs and their steps, once all its runs
    /// finished, its last failed run finished more than `failed_retention` ago and its
    /// other runs more than the [`retention`](Builder::retention) ago. A failed retention
    /// shorter than the retention is raised to it: a failed event is never deleted before
    /// a completed one would be.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// use std::time::Duration;
    ///
    /// // Completed events for an hour (the default), failed ones for a week.
    /// let rt = fanfare::Runtime::builder()
    ///     .failed_retention(Duration::from_secs(7 * 24 * 3600))
    ///     .start()
    ///     .await?;
    /// # rt.shutdown().await
    /// # }
    /// ```
    pub fn failed_retention(mut self, failed_retention: Duration) -> Self {
        self.failed_retention = failed_retention;
        self
    }

    /// Uses the embedded SQLite store at `path` (created if missing): events and runs
    /// survive the process. One process uses a database file at a time.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("fanfare-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let rt = fanfare::Runtime::builder().sqlite(dir.join("app.db")).start().await?;
    /// # rt.shutdown().await
    /// # }
    /// ```
    ///
    /// A file that is not a SQLite database, a database of another program, or one
    /// written by a newer fanfare is refused with [`ErrorKind::Store`], the file untouched.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, path: impl AsRef<Path>) -> Self {
        let sync = match &self.store {
            StoreConfig::Sqlite { sync, .. } => *sync,
            _ => SqliteSync::default(),
        };
        self.store = StoreConfig::Sqlite {
            path: path.as_ref().to_owned(),
            sync,
        };
        self
    }

    /// How durable a SQLite commit is (default [`SqliteSync::Full`]); see [`SqliteSync`].
    /// Applies to the store chosen with [`Builder::sqlite`].
    #[cfg(feature = "sqlite")]
    pub fn sqlite_sync(mut self, level: SqliteSync) -> Self {
        if let StoreConfig::Sqlite { sync, .. } = &mut self.store {
            *sync = level;
        }
        self
    }

    /// Uses the PostgreSQL store at `url`: any number of processes, on any number of
    /// hosts, share the database's events and runs.
    ///
    /// Each process registers its functions under its [app](Builder::app) at start; an
    /// event sent by any process runs the subscribed functions of every app. Replicas of
    /// one app share its runs: each run is claimed by one of them, under a lease that a
    /// replica that dies lets expire for the others to take over.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder()
    ///     .postgres("postgres://postgres@127.0.0.1:5432/app")
    ///     .app("billing")
    ///     .start()
    ///     .await?;
    /// # rt.shutdown().await
    /// # }
    /// ```
    ///
    /// The schema (tables prefixed `fanfare_`, in the connection's `search_path`) is
    /// created or migrated at start. `start` fails with [`ErrorKind::Store`] when the
    /// database is unreachable or was written by a newer fanfare.
    #[cfg(feature = "postgres")]
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.store = StoreConfig::Postgres { url: url.into() };
        self
    }

    /// How long a claimed run stays this process's without word from it (default 30 s;
    /// PostgreSQL store). A running process renews the leases of its runs every third of
    /// it; when a process dies, its runs go to other processes once their lease expires.
    /// Shorter means faster takeover, and more renewals.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How a send reads the current trace context: `inject` returns it as a W3C
    /// `traceparent` (or `None` outside a trace), and every event sent from this
    /// process is stored with it — [`send`](Runtime::send), the batch sends and
    /// [`Ctx::send`](crate::Ctx::send) (inside a run, the run's span is the current
    /// one). A value that is not a valid [`TraceParent`](crate::TraceParent) is
    /// dropped. An event that already carries a context (the HTTP API's
    /// `traceparent` header) keeps it.
    ///
    /// Without this hook, events sent from Rust carry no context, except those a run
    /// sends, which carry the run's own event's (so a chain shares one trace). Called
    /// once per event sent; with no hook, a send pays nothing for tracing.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder()
    ///     // With `tracing-opentelemetry`, read the current span's context here
    ///     // (README: "Tracing across services").
    ///     .trace_inject(|| Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()))
    ///     .start()
    ///     .await?;
    /// rt.shutdown().await
    /// # }
    /// ```
    pub fn trace_inject(mut self, inject: fn() -> Option<String>) -> Self {
        self.trace.inject = Some(inject);
        self
    }

    /// How a run's span is made a child of its event's context: before each attempt,
    /// for a run whose event was stored with a `traceparent`, `extract` is called with
    /// the attempt's `fanfare.run` span and that `traceparent` (with
    /// `tracing-opentelemetry`: `span.set_parent(…)`). Whatever the hook, the span
    /// records the context in its `traceparent` and `trace_id` fields, so logs can be
    /// correlated with plain `tracing`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder()
    ///     .trace_extract(|span, traceparent| {
    ///         // With `tracing-opentelemetry`:
    ///         // span.set_parent(propagator.extract(&HashMap::from([("traceparent", …)])))
    ///         let _ = (span, traceparent);
    ///     })
    ///     .start()
    ///     .await?;
    /// rt.shutdown().await
    /// # }
    /// ```
    pub fn trace_extract(mut self, extract: fn(&tracing::Span, &str)) -> Self {
        self.trace.extract = Some(extract);
        self
    }

    /// Whether this process executes runs (default `true`). A process built with
    /// `execute(false)` only sends: a web front end whose functions run in worker
    /// processes. On PostgreSQL it neither registers its app's functions nor claims runs;
    /// on SQLite the runs it creates wait for the next process that opens the file to
    /// execute. The in-memory store refuses it: nothing else could run its runs.
    pub fn execute(mut self, execute: bool) -> Self {
        self.execute = execute;
        self
    }

    /// The app this process belongs to (default: the executable's file name, without
    /// extension). Function ids are unique per app; replicas of one service use the
    /// same app and share its runs, different services use different apps, so both
    /// may have a function called `audit`. Names follow the event-name rules.
    pub fn app(mut self, name: impl Into<String>) -> Self {
        self.app = Some(name.into());
        self
    }

    /// Whether concurrent sends share a database transaction (default `true`).
    ///
    /// With group commit, a durable store commits every send waiting at that moment in
    /// one transaction, so durability costs one log write per batch instead of one per
    /// event; each `send` still returns only after its event is committed. `false`
    /// commits every store call alone: only useful to measure what group commit buys.
    pub fn group_commit(mut self, enabled: bool) -> Self {
        self.group_commit = enabled;
        self
    }

    /// Serves fanfare's HTTP API on `addr` (`host:port`; port 0 picks a free one, see
    /// [`Runtime::http_addr`]) from [`start`](Builder::start) until
    /// [`Runtime::shutdown`], which stops it gracefully: the event API
    /// `POST /e/{event_key}` (Inngest's format) and `GET /health`. The same routes can be
    /// mounted in an app of yours instead, with [`crate::http::router`].
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder()
    ///     .http("127.0.0.1:0") // Inngest's dev-server port is 8288
    ///     .start()
    ///     .await?;
    /// let addr = rt.http_addr().expect("the server is listening");
    /// assert!(addr.ip().is_loopback() && addr.port() != 0);
    /// rt.shutdown().await // stops the server too
    /// # }
    /// ```
    ///
    /// Without an [event key](Builder::event_key), `/e/{key}` takes any key, and `start`
    /// refuses any address but a loopback one with [`ErrorKind::Config`]: anyone who
    /// reached the server could send events. `start` fails with [`ErrorKind::Config`]
    /// too when the address cannot be listened on (a port in use). Clients get
    /// [`http_read_timeout`](Builder::http_read_timeout) to send a request's headers,
    /// and again its body. The server holds a handle to the runtime until `shutdown`.
    #[cfg(feature = "http")]
    pub fn http(mut self, addr: impl Into<String>) -> Self {
        self.http_addr = Some(addr.into());
        self
    }

    /// Adds a key that `POST /e/{event_key}` accepts. Call it once per valid key: during
    /// a rotation, the old key and the new one are both accepted. Keys are compared in
    /// constant time, and apply to [`crate::http::router`] as well.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// # let (old, new) = ("evt-old", "evt-new");
    /// // let old = std::env::var("FANFARE_EVENT_KEY_OLD")?;
    /// let rt = fanfare::Runtime::builder()
    ///     .http("0.0.0.0:0") // reachable from other hosts: a key is required
    ///     .event_key(old)
    ///     .event_key(new)
    ///     .start()
    ///     .await?;
    /// # rt.shutdown().await }
    /// ```
    ///
    /// An empty key is ignored.
    #[cfg(feature = "http")]
    pub fn event_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if !key.is_empty() {
            self.http_keys().event.push(key);
        }
        self
    }

    /// Adds a key for the APIs that read and change runs: the dashboard's login (at
    /// `/login`) and the runs API to come; the event API does not take it. Without one,
    /// the dashboard opens without a login only on a loopback address. Several may be valid at once, as for
    /// [`event_key`](Builder::event_key). An empty key is ignored.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder()
    ///     .http("127.0.0.1:0")
    ///     .admin_key("adm-7c1e…") // from a secret: std::env::var("FANFARE_ADMIN_KEY")?
    ///     .start()
    ///     .await?;
    /// # rt.shutdown().await }
    /// ```
    #[cfg(feature = "http")]
    pub fn admin_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if !key.is_empty() {
            self.http_keys().admin.push(key);
        }
        self
    }

    /// The largest HTTP request body accepted, in bytes (default
    /// [`DEFAULT_BODY_LIMIT`](crate::http::DEFAULT_BODY_LIMIT), 4 MiB); larger requests
    /// are answered `413`. Each event is also held to
    /// [`max_event_size`](Builder::max_event_size), and a request to at most
    /// [`MAX_EVENTS_PER_REQUEST`](crate::http::MAX_EVENTS_PER_REQUEST) events.
    #[cfg(feature = "http")]
    pub fn http_body_limit(mut self, bytes: usize) -> Self {
        self.http.body_limit = bytes;
        self
    }

    /// How long an HTTP client has to send a request's headers, and then its body
    /// (default [`DEFAULT_READ_TIMEOUT`](crate::http::DEFAULT_READ_TIMEOUT), 30 s): a slow
    /// or stalled client is disconnected (headers) or answered `408` (body).
    #[cfg(feature = "http")]
    pub fn http_read_timeout(mut self, timeout: Duration) -> Self {
        self.http.read_timeout = timeout;
        self
    }

    #[cfg(feature = "http")]
    fn http_keys(&mut self) -> &mut crate::http::Keys {
        // Builders are cloned rarely, and keys set once: copying them here is cheap.
        Arc::make_mut(&mut self.http.keys)
    }

    /// Builds the function table, starts the workers, and makes this runtime the one
    /// [`crate::send`] uses.
    ///
    /// Fails with [`ErrorKind::DuplicateFunction`] when two linked functions share an id
    /// (the message names both places), and with [`ErrorKind::Config`] for a concurrency
    /// of 0 or when called outside a tokio runtime.
    pub async fn start(self) -> Result<Runtime> {
        if self.concurrency == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "concurrency must be at least 1\nhelp: `Runtime::builder().concurrency(n)` sets how many runs execute at once",
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                "`Runtime::start` must be called from within a tokio runtime\nhelp: run it inside `#[tokio::main]`",
            ));
        }
        let registry = Arc::new(Registry::new(functions())?);
        for def in &registry.defs {
            tracing::info!(
                function = def.id(),
                trigger = def.trigger(),
                cron = def.cron(),
                retries = def.retries(),
                at = %def.location(),
                "fanfare: registered function"
            );
        }
        if self.lease < Duration::from_millis(100) {
            return Err(Error::new(
                ErrorKind::Config,
                format_args!(
                    "a lease of {:?} is too short to renew in time\nhelp: `Builder::lease` takes 100 ms or more; the default is 30 s",
                    self.lease
                ),
            ));
        }
        if !self.execute && matches!(self.store, StoreConfig::Memory) {
            return Err(Error::new(
                ErrorKind::Config,
                "a runtime that does not execute runs needs a durable store\nhelp: use `.sqlite(…)` or `.postgres(…)` with `.execute(false)`, or drop `.execute(false)`",
            ));
        }
        let app = match self.app {
            Some(app) => app,
            None => default_app(),
        };
        check_app(&app)?;
        // Listening first: an address that cannot be used fails before the store opens.
        #[cfg(feature = "http")]
        let listener = match &self.http_addr {
            Some(addr) => {
                Some(crate::http::server::bind(addr, !self.http.keys.event.is_empty()).await?)
            }
            None => None,
        };
        let wake = Arc::new(Notify::new());
        let retention = Retention::new(self.retention, self.failed_retention);
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        let options = StoreOptions {
            app: app.clone(),
            retention,
            group_commit: self.group_commit,
            lease: self.lease,
            execute: self.execute,
        };
        let store: Arc<dyn Store> = match self.store {
            StoreConfig::Memory => Arc::new(MemoryStore::new(
                Arc::clone(&registry),
                app.clone(),
                retention,
            )),
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { path, sync } => {
                Arc::new(SqliteStore::open(path, sync, Arc::clone(&registry), options).await?)
            }
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { url } => Arc::new(
                PgStore::open(&url, Arc::clone(&registry), options, Arc::clone(&wake)).await?,
            ),
        };
        let concurrency = if self.execute { self.concurrency } else { 0 };
        let (engine, outcomes) = Engine::new(
            store,
            registry,
            self.backoff,
            concurrency,
            self.max_event_size,
            wake,
            self.trace,
        );
        if concurrency > 0 {
            let slots: std::sync::Weak<dyn crate::store::Slots> = Arc::downgrade(&engine) as _;
            engine.store.attach(slots);
        }
        let dispatcher = tokio::spawn(Arc::clone(&engine).dispatch());
        let recorder = tokio::spawn(Arc::clone(&engine).record(outcomes));
        let heartbeat = tokio::spawn(Arc::clone(&engine).heartbeat());
        let watch = tokio::spawn(Arc::clone(&engine).watch_cancels());
        // Every executing process schedules the app's cron ticks; the store keeps one run
        // of each tick.
        let cron = (0..engine.registry.defs.len() as u32)
            .filter(|&f| concurrency > 0 && engine.registry.defs[f as usize].cron().is_some())
            .map(|f| tokio::spawn(crate::cron::schedule(Arc::clone(&engine), app.clone(), f)))
            .collect();
        let inner = Arc::new(Inner {
            engine,
            max_event_size: self.max_event_size,
            shutdown_timeout: self.shutdown_timeout,
            tasks: Mutex::new(Some(Tasks {
                dispatcher,
                recorder,
                heartbeat,
                watch,
                cron,
                #[cfg(feature = "http")]
                http: None,
            })),
            #[cfg(feature = "http")]
            http_addr: listener.as_ref().and_then(|l| l.local_addr().ok()),
            #[cfg(feature = "http")]
            http: self.http,
        });
        #[cfg(feature = "http")]
        if let Some(listener) = listener {
            let rt = Runtime {
                inner: Arc::clone(&inner),
            };
            let settings = inner.http.clone();
            let router = crate::http::routes(crate::http::AppState {
                rt,
                // Loopback only (`bind` refused anything else without a key).
                any_event_key: settings.keys.event.is_empty(),
                // Without an admin key, the runs API and the dashboard are open on loopback only.
                any_admin_key: settings.keys.admin.is_empty()
                    && inner.http_addr.is_some_and(|a| a.ip().is_loopback()),
                sessions: std::sync::Arc::default(),
                settings: settings.clone(),
            });
            let server =
                crate::http::server::Server::spawn(listener, router, settings.read_timeout);
            tracing::info!(addr = ?inner.http_addr, "fanfare: HTTP API listening");
            if let Some(tasks) = inner
                .tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                tasks.http = Some(server);
            }
        }
        *AMBIENT.write().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&inner);
        tracing::info!(
            functions = inner.engine.registry.defs.len(),
            concurrency = self.concurrency,
            "fanfare: runtime started"
        );
        Ok(Runtime { inner })
    }
}

/// A running fanfare runtime: a cheap handle (`Clone + Send + Sync`) to share with every
/// request handler.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
/// #[event(name = "doc/signup")]
/// pub struct UserSignup { pub user_id: u64 }
///
/// #[fanfare::function(trigger = "doc/signup")]
/// async fn welcome(ctx: fanfare::Ctx<UserSignup>) -> fanfare::Result<()> { Ok(()) }
///
/// # #[tokio::main] async fn main() -> fanfare::Result<()> {
/// let rt = fanfare::Runtime::builder().start().await?;
/// let id = rt.send(UserSignup { user_id: 1 }).await?;
/// let runs = rt.wait(id).await?;
/// assert_eq!(runs[0].function_id, "welcome");
/// assert_eq!(runs[0].status, fanfare::RunStatus::Completed);
/// rt.shutdown().await
/// # }
/// ```
///
/// Dropping the last handle stops the workers without waiting; call
/// [`Runtime::shutdown`] to let running attempts finish.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    max_event_size: usize,
    shutdown_timeout: Duration,
    tasks: Mutex<Option<Tasks>>,
    /// Where the HTTP server listens (`Builder::http`).
    #[cfg(feature = "http")]
    http_addr: Option<std::net::SocketAddr>,
    #[cfg(feature = "http")]
    http: crate::http::Settings,
}

struct Tasks {
    dispatcher: JoinHandle<()>,
    recorder: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    /// Looks for other processes' events that cancel this process's runs (`cancel_on`).
    watch: JoinHandle<()>,
    /// One task per `cron` function.
    cron: Vec<JoinHandle<()>>,
    /// The HTTP server (`Builder::http`).
    #[cfg(feature = "http")]
    http: Option<crate::http::server::Server>,
}

/// The runtime `fanfare::send` uses: the last one started.
static AMBIENT: RwLock<Weak<Inner>> = RwLock::new(Weak::new());

impl Runtime {
    /// A builder with the in-memory store and default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Sends an event: creates one run for every function whose `trigger` is the event's
    /// name and returns the event's id once they are stored.
    ///
    /// An event that no function subscribes to is accepted with zero runs.
    ///
    /// Fails with [`ErrorKind::EventTooLarge`] over the size limit,
    /// [`ErrorKind::Serialize`] if the event does not serialize, and
    /// [`ErrorKind::ShutDown`] after [`Runtime::shutdown`].
    pub async fn send<E: Event>(&self, event: E) -> Result<EventId> {
        let envelope = Envelope::typed(event, self.inner.max_event_size)?;
        self.append(envelope).await
    }

    /// Sends an event with [`SendOptions`]: an id of your own (an event already stored
    /// under it runs nothing, and its id is returned), a time before which its runs do
    /// not start. Otherwise as [`send`](Runtime::send).
    pub async fn send_with<E: Event>(&self, event: E, options: SendOptions) -> Result<EventId> {
        let mut envelope = Envelope::typed(event, self.inner.max_event_size)?;
        options.apply(&mut envelope);
        self.append(envelope).await
    }

    /// Sends an event given by name and JSON data, for events that come from outside
    /// Rust (a webhook, another language).
    ///
    /// The name is checked with the rules of `#[event(name)]`
    /// ([`ErrorKind::InvalidEventName`]). Data that does not deserialize into a
    /// subscribed function's event type fails that function's run, without retries,
    /// and leaves the other runs alone.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// let id = rt.send_json("doc/webhook", serde_json::json!({ "user_id": 7 })).await?;
    /// assert!(rt.runs(id).await?.is_empty()); // nothing subscribes to it here
    /// # rt.shutdown().await }
    /// ```
    pub async fn send_json(
        &self,
        name: impl Into<String>,
        data: serde_json::Value,
    ) -> Result<EventId> {
        let envelope = Envelope::json(name.into(), &data, self.inner.max_event_size)?;
        self.append(envelope).await
    }

    /// Sends several events given by name and JSON data, **all or none**: every event is
    /// checked first (name, size), then all are stored in one transaction with their
    /// runs. Returns their ids, in order.
    ///
    /// Each event is sent as [`send_json`](Runtime::send_json) sends one, with its own
    /// [`SendOptions`]: an event whose id is already stored (or appears earlier in the
    /// batch) runs nothing, and its id is returned. An error names the event by its
    /// position: `event 2: invalid event name …`
    /// ([`ErrorKind::InvalidEventName`], [`ErrorKind::EventTooLarge`]); nothing of the
    /// batch is stored then.
    ///
    /// ```
    /// use fanfare::{EventId, JsonEvent, SendOptions};
    /// use serde_json::json;
    ///
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// let ids = rt
    ///     .send_json_batch([
    ///         JsonEvent::new("doc/import.row", json!({ "row": 1 })),
    ///         JsonEvent::new("doc/import.row", json!({ "row": 2 }))
    ///             .options(SendOptions::new().id(EventId::from_key("import-7/row-2"))),
    ///     ])
    ///     .await?;
    /// assert_eq!(ids[1], EventId::from_key("import-7/row-2"));
    ///
    /// let refused = rt
    ///     .send_json_batch([
    ///         JsonEvent::new("doc/import.row", json!({ "row": 3 })),
    ///         JsonEvent::new("not a name", json!({})),
    ///     ])
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(refused.kind(), fanfare::ErrorKind::InvalidEventName);
    /// assert!(refused.to_string().starts_with("event 1: "));
    /// # rt.shutdown().await }
    /// ```
    pub async fn send_json_batch(
        &self,
        events: impl IntoIterator<Item = JsonEvent>,
    ) -> Result<Vec<EventId>> {
        let events = events.into_iter();
        let mut ids = Vec::with_capacity(events.size_hint().0);
        let mut envelopes = Vec::with_capacity(events.size_hint().0);
        let mut seen = std::collections::HashSet::new();
        for (i, event) in events.enumerate() {
            let envelope = event
                .envelope(self.inner.max_event_size)
                .map_err(|e| Error::new(e.kind(), format_args!("event {i}: {e}")))?;
            ids.push(envelope.id);
            // An id twice in one batch is one event, as when sent twice.
            if seen.insert(envelope.id) {
                envelopes.push(envelope);
            }
        }
        if envelopes.len() == 1 {
            // One event is a plain send: it shares a group commit with concurrent sends.
            self.append(envelopes.remove(0)).await?;
        } else if !envelopes.is_empty() {
            self.inner.engine.append_all(envelopes).await?;
        }
        Ok(ids)
    }

    async fn append(&self, envelope: Envelope) -> Result<EventId> {
        self.inner.engine.append(envelope).await
    }

    /// The store, for the operations that read or change runs directly (`inspect`).
    pub(crate) fn store(&self) -> &dyn crate::store::Store {
        &*self.inner.engine.store
    }

    /// This runtime's functions.
    pub(crate) fn registry(&self) -> &crate::function::Registry {
        &self.inner.engine.registry
    }

    /// Tells the dispatcher that runs were queued.
    pub(crate) fn wake(&self) {
        self.inner.engine.wake.notify_one();
    }

    /// One run: its event, function, status, attempts, last error, output, steps, and why
    /// it is held, skipped or cancelled.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(fanfare::Event, Serialize, Deserialize)]
    /// # #[event(name = "doc/run")]
    /// # pub struct Ping { pub n: u32 }
    /// # #[fanfare::function(trigger = "doc/run")]
    /// # async fn pong(ctx: fanfare::Ctx<Ping>) -> fanfare::Result<u32> { Ok(ctx.event().n) }
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// let event = rt.send(Ping { n: 7 }).await?;
    /// let run_id = rt.wait(event).await?[0].run_id;
    /// let run = rt.run(run_id).await?;
    /// assert_eq!((run.event_id, run.output), (event, Some(serde_json::json!(7))));
    /// # rt.shutdown().await }
    /// ```
    ///
    /// Fails with [`ErrorKind::RunNotFound`] for an id this runtime's store does not know
    /// (never created, or pruned after the [retention](Builder::retention) or the
    /// [failed retention](Builder::failed_retention)).
    pub async fn run(&self, run: RunId) -> Result<RunInfo> {
        self.inner.engine.store.run(run).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::RunNotFound,
                format_args!("no run with id {run} is known to this runtime"),
            )
        })
    }

    /// The runs of an event: function id, status, attempts, last error, output.
    ///
    /// Fails with [`ErrorKind::EventNotFound`] for an id this runtime never accepted, or
    /// that was pruned: its runs all completed longer ago than the
    /// [retention](Builder::retention), or, with a failed run, the
    /// [failed retention](Builder::failed_retention).
    pub async fn runs(&self, event: EventId) -> Result<Vec<RunInfo>> {
        self.inner.engine.store.runs(event).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::EventNotFound,
                format_args!("no event with id {event} is known to this runtime"),
            )
        })
    }

    /// A snapshot of the metrics: this process's counters (runs started, completed,
    /// failed, retried, skipped and cancelled by function, an attempt duration histogram,
    /// events sent) and the store's queue (due runs and the age of the oldest, by
    /// function: every process's). [`Metrics::to_prometheus`] renders it for a
    /// `/metrics` endpoint. See [`Metrics`] for what each figure means.
    ///
    /// The counters cost the hot path a few relaxed atomic adds; the queue is one store
    /// query reading at most [`QUEUE_SCAN`](crate::QUEUE_SCAN) due runs, oldest first
    /// (SQLite: a command on the writer thread; PostgreSQL: one pooled connection).
    /// Fails with [`ErrorKind::ShutDown`] once a durable store is closed.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// let text = rt.metrics().await?.to_prometheus();
    /// assert!(text.contains("# TYPE fanfare_runs_started_total counter\n"));
    /// # rt.shutdown().await }
    /// ```
    pub async fn metrics(&self) -> Result<Metrics> {
        let engine = &self.inner.engine;
        let queue = engine.store.queue_stats(crate::metrics::QUEUE_SCAN).await?;
        Ok(engine.metrics.snapshot(&engine.registry, queue))
    }

    /// Cancels a run (its id from [`Runtime::runs`]) and returns its status after the
    /// call:
    /// - [`RunStatus::Cancelled`] for a run that was queued (delayed, waiting to retry,
    ///   held back by flow control), sleeping or waiting for an event: it is cancelled at
    ///   once and never executes again. Its pending `wait_for_event` is dropped: the event
    ///   resumes nothing.
    /// - [`RunStatus::Running`] for a run whose attempt is executing now: it is marked,
    ///   and stops at its next step or suspension point (`ctx.step`, `ctx.sleep`,
    ///   `ctx.wait_for_event`, `ctx.invoke`, `ctx.send`): that call does not start, and a
    ///   step that was executing when the mark came has its result discarded. Its status
    ///   becomes `Cancelled` then. An attempt that returns `Ok` before reaching such a
    ///   point is recorded `Completed` (its work was done); one that fails for good is
    ///   `Failed`. On PostgreSQL the run may execute in another process: that process
    ///   learns of the mark at its next step, outcome or lease renewal.
    /// - the status of a run that had finished, unchanged. Cancelling twice is harmless.
    ///
    /// [`RunInfo::reason`] of a cancelled run is "cancelled by `Runtime::cancel`". Its
    /// `on_failure` handler does **not** run (it did not fail); the concurrency slots it
    /// held go to the runs waiting for them; a `ctx.invoke` waiting for it fails with
    /// [`ErrorKind::Invoked`]. (On PostgreSQL, a run held back by the flow control of a
    /// function that only another app's processes have is marked, and shows `Queued`
    /// until a process of that app takes it and cancels it, without executing it.)
    ///
    /// Fails with [`ErrorKind::RunNotFound`] for an id this runtime's store does not know
    /// (never created, or pruned after the [retention](Builder::retention) or the
    /// [failed retention](Builder::failed_retention)).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use fanfare::{RunStatus, SendOptions};
    /// use std::time::Duration;
    ///
    /// #[derive(fanfare::Event, Serialize, Deserialize)]
    /// #[event(name = "doc/trial.started")]
    /// pub struct TrialStarted { pub user_id: u64 }
    ///
    /// #[fanfare::function(trigger = "doc/trial.started")]
    /// async fn trial_reminder(ctx: fanfare::Ctx<TrialStarted>) -> fanfare::Result<()> {
    ///     Ok(()) // … email the user
    /// }
    ///
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().start().await?;
    /// let in_13_days = SendOptions::new().delay(Duration::from_secs(13 * 86_400));
    /// let id = rt.send_with(TrialStarted { user_id: 7 }, in_13_days).await?;
    /// // The user upgraded before the trial ended: no reminder.
    /// let run = rt.runs(id).await?[0].run_id;
    /// assert_eq!(rt.cancel(run).await?, RunStatus::Cancelled);
    /// let runs = rt.runs(id).await?;
    /// assert_eq!(runs[0].status, RunStatus::Cancelled);
    /// assert_eq!(runs[0].reason.as_deref(), Some("cancelled by `Runtime::cancel`"));
    /// # rt.shutdown().await }
    /// ```
    pub async fn cancel(&self, run: RunId) -> Result<RunStatus> {
        let reason = "cancelled by `Runtime::cancel`".to_owned();
        self.inner.engine.cancel(run, reason).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::RunNotFound,
                format_args!("no run with id {run} is known to this runtime"),
            )
        })
    }

    /// Waits until every run of the event has finished (completed or failed), and
    /// returns the runs. Bound it with `tokio::time::timeout` where a run may retry long.
    ///
    /// Runs executed by this process are seen as soon as they are recorded; runs of
    /// other processes (PostgreSQL) are looked up every 200 ms.
    pub async fn wait(&self, event: EventId) -> Result<Vec<RunInfo>> {
        let mut progress = self.inner.engine.progress.subscribe();
        loop {
            progress.borrow_and_update();
            let runs = self.runs(event).await?;
            if runs.iter().all(|r| r.status.is_finished()) {
                return Ok(runs);
            }
            if self.inner.engine.stopping.load(Ordering::Acquire) {
                return Err(shut_down());
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() {
                    return Err(shut_down());
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Stops claiming runs, lets running attempts finish for up to the shutdown timeout,
    /// then aborts the rest and puts their runs back in the queue. Sends fail afterwards.
    ///
    /// Calling it again, or on a clone, returns at once.
    pub async fn shutdown(&self) -> Result<()> {
        let Some(tasks) = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(());
        };
        // No new requests; those in progress send before the engine stops.
        #[cfg(feature = "http")]
        let tasks = {
            let mut tasks = tasks;
            if let Some(server) = tasks.http.take() {
                server.stop(self.inner.shutdown_timeout).await;
            }
            tasks
        };
        let engine = &self.inner.engine;
        engine.stopping.store(true, Ordering::Release);
        engine.wake.notify_one();
        for task in tasks.cron.iter().chain([&tasks.watch]) {
            task.abort();
        }
        let _ = tasks.dispatcher.await;
        let mut progress = engine.progress.subscribe();
        let drained = tokio::time::timeout(self.inner.shutdown_timeout, async {
            while engine.busy() > 0 {
                if progress.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        let released = engine.abort_inflight();
        tasks.recorder.abort();
        tasks.heartbeat.abort();
        if drained.is_err() {
            tracing::warn!(
                runs = released.len(),
                "fanfare: shutdown timed out; releasing runs still running"
            );
        }
        if !released.is_empty() {
            engine.store.release(released).await?;
        }
        // The database file, its lock and the connections are free from here on.
        engine.store.close().await?;
        // Gone once shutdown returns: none of the engine's own tasks outlives it.
        for task in [tasks.recorder, tasks.heartbeat, tasks.watch]
            .into_iter()
            .chain(tasks.cron)
        {
            let _ = task.await;
        }
        // Wakes `wait` callers, which now see `stopping`.
        engine.progress.send_modify(|n| *n += 1);
        tracing::info!("fanfare: runtime shut down");
        Ok(())
    }

    /// The address the HTTP server listens on ([`Builder::http`]), with the port it got
    /// when asked for port 0; `None` without a server.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> fanfare::Result<()> {
    /// let rt = fanfare::Runtime::builder().http("127.0.0.1:0").start().await?;
    /// let url = format!("http://{}/e/any-key", rt.http_addr().unwrap());
    /// # let _ = url; rt.shutdown().await }
    /// ```
    #[cfg(feature = "http")]
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.http_addr
    }

    #[cfg(feature = "http")]
    pub(crate) fn http_settings(&self) -> &crate::http::Settings {
        &self.inner.http
    }

    /// Whether the store answers (a cheap read), for health checks.
    #[cfg(feature = "http")]
    pub(crate) async fn ping(&self) -> Result<()> {
        if self.inner.engine.stopping.load(Ordering::Acquire) {
            return Err(shut_down());
        }
        let nil = EventId::from_uuid(uuid::Uuid::nil());
        self.inner.engine.store.runs(nil).await.map(drop)
    }

    pub(crate) fn ambient() -> Result<Runtime> {
        AMBIENT
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
            .map(|inner| Runtime { inner })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NoRuntime,
                    "no fanfare runtime is running\nhelp: start one with `fanfare::Runtime::builder().start().await?` before `fanfare::send`",
                )
            })
    }
}

/// The executable's file stem, or `app` when it has none that fits the naming rules.
fn default_app() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| crate::event::name_problem(s).is_none())
        .unwrap_or_else(|| "app".to_owned())
}

fn check_app(app: &str) -> Result<()> {
    match crate::event::name_problem(app) {
        None => Ok(()),
        Some(problem) => Err(Error::new(
            ErrorKind::Config,
            format_args!(
                "invalid app name {app:?}: {problem}\nhelp: app names are {}",
                crate::event::NAME_RULES
            ),
        )),
    }
}

fn shut_down() -> Error {
    Error::new(ErrorKind::ShutDown, "the runtime is shut down")
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.engine.stopping.store(true, Ordering::Release);
        self.engine.wake.notify_one();
        if let Some(tasks) = self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            tasks.recorder.abort();
            tasks.heartbeat.abort();
            for task in tasks.cron.iter().chain([&tasks.watch]) {
                task.abort();
            }
            #[cfg(feature = "http")]
            if let Some(server) = &tasks.http {
                server.abort();
            }
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("functions", &self.inner.engine.registry.defs.len())
            .field("concurrency", &self.inner.engine.concurrency)
            .finish_non_exhaustive()
    }
}
