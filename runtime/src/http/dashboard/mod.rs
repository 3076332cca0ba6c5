//! The dashboard at `/` (server-rendered HTML): functions with their run counts, runs
//! by status and function, a run's timeline, an event's fan-out; replay, cancel and bulk
//! replay. `pages.rs` renders, `html.rs` escapes, `assets.rs` holds the CSS and the
//! live-update script; this file routes, authenticates and sets the security headers.
//!
//! **Sessions.** `POST /login` with an admin key (compared in constant time) opens a
//! session: a random 256-bit id (from the OS, `getrandom`) kept in memory with its CSRF
//! token and expiry, sent as an `HttpOnly; SameSite=Strict; Path=/` cookie. The key
//! itself is never in the cookie; a restart or logout ends the sessions. Without an
//! admin key, the dashboard is open only on a server that [`Builder::http`] bound to a
//! loopback address (a session is opened at the first visit); a router mounted with
//! [`router`](crate::http::router), or a server reachable from other hosts, refuses.
//!
//! **Changes** (replay, cancel, bulk replay, logout) are `POST` forms carrying the
//! session's CSRF token, compared in constant time; a request whose `Sec-Fetch-Site`
//! says cross-site, or whose `Origin` is not this host, is refused `403` first. `GET`s
//! change nothing. Every page is sent with a `Content-Security-Policy` that allows
//! only this server's script and style, `X-Frame-Options: DENY` and
//! `X-Content-Type-Options: nosniff`.
//!
//! [`Builder::http`]: crate::Builder::http

mod assets;
mod html;
mod pages;

use super::auth::constant_time_eq;
use super::AppState;
use axum::extract::{FromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
const COOKIE: &str = "fanfare_session";

/// How long a session lasts after login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::functions))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/replay", post(pages::replay))
        .route("/runs/{id}/cancel", post(pages::cancel))
        .route("/functions/{id}/replay-failed", post(pages::replay_failed))
        .route("/events/{id}", get(pages::event))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/dashboard.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
}

/// The dashboard's sessions, kept in memory (one set per router).
#[derive(Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

impl Sessions {
    /// A new session: its cookie value and its CSRF token.
    fn open(&self) -> Result<(String, String), Refused> {
        let (id, csrf) = (random_token()?, random_token()?);
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        by_id.retain(|_, s| s.expires > now);
        if by_id.len() >= MAX_SESSIONS {
            if let Some(oldest) = by_id
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                by_id.remove(&oldest);
            }
        }
        by_id.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    /// The live session with this id. The map is keyed by a 256-bit random id: looking
    /// it up tells an attacker nothing a guess could use.
    fn get(&self, id: &str) -> Option<Session> {
        let by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id
            .get(id)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    fn close(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// 32 random bytes from the OS, in hex.
fn random_token() -> Result<String, Refused> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "fanfare: no randomness for a dashboard session");
        Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness is available for a session",
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The value of cookie `name` in a request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(id: &str, max_age: u64) -> String {
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}")
}

/// Where the dashboard is mounted: `""` at the root, `"/fanfare"` when nested there.
fn base_of(parts: &Parts) -> String {
    let original = parts
        .extensions
        .get::<OriginalUri>()
        .map(|o| o.0.path().to_owned())
        .unwrap_or_default();
    original
        .strip_suffix(parts.uri.path())
        .unwrap_or_default()
        .to_owned()
}

/// Whether the dashboard may be used without an admin key: none is configured and the
/// server listens on loopback only (`AppState::any_admin_key`).
fn open(state: &AppState) -> bool {
    state.any_admin_key && state.settings.keys.admin.is_empty()
}

/// A signed-in request: the session's CSRF token, where the dashboard is mounted, and
/// the cookie to set when the session was opened by this request (open dashboard).
pub(crate) struct Authed {
    pub csrf: String,
    pub base: String,
    set_cookie: Option<String>,
}

impl Authed {
    /// `body` as a page, with the session cookie if this request opened the session.
    pub fn respond(&self, body: String) -> Response {
        let mut response = Html(body).into_response();
        if let Some(c) = &self.set_cookie {
            if let Ok(v) = HeaderValue::from_str(c) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
        }
        response
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let base = base_of(parts);
        if let Some(s) = cookie(&parts.headers, COOKIE).and_then(|id| state.sessions.get(id)) {
            return Ok(Authed {
                csrf: s.csrf,
                base,
                set_cookie: None,
            });
        }
        if open(state) {
            let (id, csrf) = state.sessions.open().map_err(IntoResponse::into_response)?;
            return Ok(Authed {
                csrf,
                base,
                set_cookie: Some(set_cookie(&id, SESSION_TTL.as_secs())),
            });
        }
        Err(Redirect::to(&format!("{base}/login")).into_response())
    }
}

/// A state-changing request: from this site (`Sec-Fetch-Site`, `Origin`) and carrying
/// the session's CSRF token. Refused `403` otherwise.
pub(crate) fn check_post(headers: &HeaderMap, authed: &Authed, token: &str) -> Result<(), Refused> {
    same_origin(headers)?;
    if constant_time_eq(authed.csrf.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Refused(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        ))
    }
}

/// Refuses a request a browser marks as coming from another site.
fn same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return Err(Refused(
                StatusCode::FORBIDDEN,
                "a cross-site request cannot change anything here",
            ));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if origin == "null" || origin_host != host {
            return Err(Refused(
                StatusCode::FORBIDDEN,
                "a request from another origin cannot change anything here",
            ));
        }
    }
    Ok(())
}

/// A request refused before it reached a page: its status and why.
pub(crate) struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = format!(
            "<h1>{}</h1><p>{}</p>",
            self.0.canonical_reason().unwrap_or("Refused"),
            html::esc(self.1)
        );
        (self.0, Html(html::page("", "Refused", None, &body))).into_response()
    }
}

/// The fields of a form that only carries its CSRF token.
#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    key: String,
}

/// What the login page says when no key can open the dashboard.
const NO_KEY: &str = "No admin key is configured, and this server is not on a loopback address only: \
    set one with Builder::admin_key (from a secret such as FANFARE_ADMIN_KEY) to use the dashboard.";

/// Where the dashboard is mounted, and the request's headers.
struct Req {
    base: String,
    headers: HeaderMap,
}

impl<S: Sync> FromRequestParts<S> for Req {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Req {
            base: base_of(parts),
            headers: parts.headers.clone(),
        })
    }
}

async fn login_page(State(state): State<AppState>, Req { base, .. }: Req) -> Response {
    if open(&state) {
        return Redirect::to(&format!("{base}/")).into_response();
    }
    Html(pages::login(
        &base,
        state.settings.keys.admin.is_empty().then_some(NO_KEY),
        None,
    ))
    .into_response()
}

async fn login(
    State(state): State<AppState>,
    Req { base, headers }: Req,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(refused) = same_origin(&headers) {
        return refused.into_response();
    }
    if !super::auth::any_equal(&state.settings.keys.admin, &form.key) {
        let (status, notice) = if state.settings.keys.admin.is_empty() {
            (StatusCode::FORBIDDEN, NO_KEY)
        } else {
            (StatusCode::UNAUTHORIZED, "That is not an admin key.")
        };
        return (status, Html(pages::login(&base, Some(notice), None))).into_response();
    }
    match state.sessions.open() {
        Ok((id, _)) => {
            let mut response = Redirect::to(&format!("{base}/")).into_response();
            if let Ok(v) = HeaderValue::from_str(&set_cookie(&id, SESSION_TTL.as_secs())) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn logout(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = check_post(&headers, &authed, &form.csrf) {
        return refused.into_response();
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.close(id);
    }
    let mut response = Redirect::to(&format!("{}/login", authed.base)).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie("", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        assets::CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        assets::JS,
    )
}

/// The headers every dashboard answer carries.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
