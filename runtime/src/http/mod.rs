//! The HTTP surface (feature `http`): one axum [`Router`] over a [`Runtime`], served by
//! [`Builder::http`](crate::Builder::http) or mounted in an app of yours with [`router`].
//!
//! - `POST /e/{event_key}`: the event API, Inngest's format (`events.rs`).
//! - `GET /health`: whether the store answers (`health.rs`).
//! - `/api/…`: the runs API, for people's tools and the CLI (`api.rs`).
//! - `GET /metrics`: Prometheus' text format (`metrics.rs`).
//! - `GET /`: the dashboard, behind a login with an admin key (`dashboard/`).
//!
//! Each concern adds its routes with a `routes()` function over the one state type,
//! [`AppState`]; `server.rs` binds, serves and stops; `auth.rs` checks keys; `error.rs`
//! makes the JSON errors every route answers with.

mod api;
mod auth;
mod dashboard;
mod error;
mod events;
mod health;
mod metrics;
pub(crate) mod server;

use crate::Runtime;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use auth::Keys;

/// Default of [`Builder::http_body_limit`](crate::Builder::http_body_limit): the largest
/// request body accepted, 4 MiB. Larger requests are answered `413`.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Most events one request to `POST /e/{key}` may carry; more are answered `413`.
pub const MAX_EVENTS_PER_REQUEST: usize = 5_000;

/// Default of [`Builder::http_read_timeout`](crate::Builder::http_read_timeout): how long
/// a client has to send a request's headers, and then its body, 30 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP settings a builder collected, kept by the runtime for every router made
/// from it.
#[derive(Clone)]
pub(crate) struct Settings {
    pub keys: Arc<Keys>,
    pub body_limit: usize,
    pub read_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keys: Arc::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Settings {
    /// Never the keys themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("event_keys", &self.keys.event.len())
            .field("admin_keys", &self.keys.admin.len())
            .field("body_limit", &self.body_limit)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

/// What every route's handler gets: the runtime, its keys and limits.
#[derive(Clone)]
pub(crate) struct AppState {
    pub rt: Runtime,
    pub settings: Settings,
    /// Whether `/e/{key}` takes any key: no event key is configured and the server
    /// listens on loopback only ([`Builder::http`](crate::Builder::http)).
    pub any_event_key: bool,
    /// Whether the runs API and the dashboard take requests without a key: no admin key is configured
    /// and the server listens on loopback only.
    pub any_admin_key: bool,
    /// The dashboard's login sessions.
    pub sessions: Arc<dashboard::Sessions>,
}

/// The router of fanfare's HTTP API over `rt`, to mount in an axum app of yours: the
/// event API `POST /e/{event_key}`, `GET /health` and the dashboard (`GET /`, its pages
/// and `/login`), with the keys and limits set on the runtime's builder.
///
/// ```
/// # #[tokio::main] async fn main() -> fanfare::Result<()> {
/// let rt = fanfare::Runtime::builder().event_key("evt-2f9c…").start().await?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "my app" }))
///     .nest("/fanfare", fanfare::http::router(&rt)); // POST /fanfare/e/{key}
/// # let _ = app;
/// # rt.shutdown().await }
/// ```
///
/// Mounted this way, the router cannot know which addresses your server listens on, so
/// `/e/{key}` requires one of the [event keys](crate::Builder::event_key): without any,
/// it answers every request `401`; likewise the dashboard requires a login with one of
/// the [admin keys](crate::Builder::admin_key), and without any refuses everyone. Its
/// links follow where it is nested (`/fanfare/runs`). Request headers are read by your
/// server: bound their time there.
pub fn router(rt: &Runtime) -> Router {
    routes(AppState {
        rt: rt.clone(),
        settings: rt.http_settings().clone(),
        any_event_key: false,
        any_admin_key: false,
        sessions: Arc::default(),
    })
}

/// Every route, over one state.
pub(crate) fn routes(state: AppState) -> Router {
    Router::new()
        .merge(events::routes())
        .merge(api::routes())
        .merge(metrics::routes())
        .merge(health::routes())
        .merge(dashboard::routes())
        .with_state(state)
}
