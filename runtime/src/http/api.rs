//! The runs API under `/api` (admin key as `Authorization: Bearer …`): functions with
//! their run counts, runs by filter
//! with keyset pages, one run, replay and cancel of one run or of a page of a filter,
//! events and an event's fan-out, and a send. A thin layer over `Runtime`'s methods
//! (`list_runs`, `run`, `replay`, `cancel`, `events`, `event`, `runs`,
//! `send_json_batch`): what it adds is parsing, and JSON.

use super::error::ApiError;
use super::AppState;
use crate::error::ErrorKind;
use crate::event::{EventId, RunId};
use crate::inspect::RunFilter;
use crate::send_options::JsonEvent;
use crate::store::{RunInfo, RunStatus};
use crate::stored_events::{EventFilter, EventInfo};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/functions", get(functions))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/replay", post(replay_page))
        .route("/api/runs/cancel", post(cancel_page))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/replay", post(replay))
        .route("/api/runs/{id}/cancel", post(cancel))
        .route("/api/events", get(list_events))
        .route("/api/events/{id}", get(event))
        .route("/api/send", post(send))
}

type Answer = Result<Json<Value>, ApiError>;
type Params = Query<HashMap<String, String>>;

/// Refuses a request without a valid admin key (`Authorization: Bearer …`).
pub(crate) fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.any_admin_key {
        return Ok(());
    }
    let keys = &state.settings.keys;
    if keys.admin.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no admin key is configured, so the runs API is closed here: set one with `Builder::admin_key`",
        ));
    }
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(key) if keys.is_admin_key(key.trim()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown admin key")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no admin key: send `Authorization: Bearer <admin key>`",
        )),
    }
}

/// An error of `Runtime` as an answer, with the kinds the API adds: unknown ids `404`,
/// a run that cannot be replayed `409`.
fn api_error(e: crate::Error) -> ApiError {
    match e.kind() {
        ErrorKind::RunNotFound | ErrorKind::EventNotFound => {
            ApiError::new(StatusCode::NOT_FOUND, e)
        }
        ErrorKind::NotReplayable => ApiError::new(StatusCode::CONFLICT, e),
        _ => e.into(),
    }
}

/// Reads one query parameter with `parse`, naming it in the error.
fn param<T>(
    params: &HashMap<String, String>,
    name: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => parse(v).map(Some).ok_or_else(|| {
            ApiError::bad_request(format_args!("invalid `{name}`: `{v}` is not {what}"))
        }),
    }
}

fn time(v: &str) -> Option<std::time::SystemTime> {
    v.parse::<u64>()
        .ok()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

fn limit(params: &HashMap<String, String>) -> Result<Option<usize>, ApiError> {
    param(params, "limit", "a number from 1 to 1000", |v| {
        v.parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::inspect::MAX_PAGE).contains(n))
    })
}

/// The runs filter of the query: `status`, `function`, `event`, `since`, `until` (ms),
/// `after` (a run id), `limit`.
fn run_filter(params: &HashMap<String, String>) -> Result<RunFilter, ApiError> {
    let known = [
        "status", "function", "event", "since", "until", "after", "limit",
    ];
    if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format_args!(
            "unknown parameter `{unknown}`: expected one of `status`, `function`, `event`, `since`, `until`, `after`, `limit`"
        )));
    }
    let mut filter = RunFilter::new();
    if let Some(v) = params.get("status").filter(|v| !v.is_empty()) {
        let status: RunStatus = v
            .parse()
            .map_err(|e| ApiError::bad_request(format_args!("invalid `status`: {e}")))?;
        filter = filter.status(status);
    }
    if let Some(f) = params.get("function").filter(|v| !v.is_empty()) {
        filter = filter.function(f.clone());
    }
    if let Some(e) = param(params, "event", "an event id", |v| v.parse().ok())? {
        filter = filter.event(e);
    }
    if let Some(t) = param(params, "since", "a time in ms since the Unix epoch", time)? {
        filter = filter.since(t);
    }
    if let Some(t) = param(params, "until", "a time in ms since the Unix epoch", time)? {
        filter = filter.until(t);
    }
    if let Some(c) = param(params, "after", "a run id", |v| v.parse::<RunId>().ok())? {
        filter = filter.after(c);
    }
    if let Some(n) = limit(params)? {
        filter = filter.limit(n);
    }
    Ok(filter)
}

/// A run as JSON.
pub(crate) fn run_json(run: &RunInfo) -> Value {
    json!({
        "run_id": run.run_id,
        "event_id": run.event_id,
        "event_name": run.event_name,
        "app": run.app,
        "function_id": run.function_id,
        "status": run.status.as_str(),
        "attempts": run.attempts,
        "last_error": run.last_error,
        "failed_attempts": run.failed_attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "started_at_ms": a.started_at_ms,
            "ended_at_ms": a.ended_at_ms,
            "error": a.error,
        })).collect::<Vec<_>>(),
        "output": run.output,
        "reason": run.reason,
        "not_before_ms": run.not_before_ms,
        "created_at_ms": run.created_at_ms,
        "replay_of": run.replay_of,
        "waiting_for": run.waiting_for.as_ref().map(|w| json!({
            "event": w.event,
            "matching": w.matching.as_ref().map(|(field, value)| json!({ "field": field, "value": value })),
            "timeout_at_ms": w.timeout_at_ms,
        })),
        "steps": run.steps.iter().map(|s| json!({
            "id": s.id,
            "started_at_ms": s.started_at_ms,
            "completed_at_ms": s.completed_at_ms,
        })).collect::<Vec<_>>(),
    })
}

fn event_json(event: &EventInfo) -> Value {
    json!({ "id": event.id, "name": event.name, "data": event.data, "ts": event.ts_ms })
}

fn path_id<T: std::str::FromStr>(id: &str, what: &str) -> Result<T, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format_args!("`{id}` is not {what}")))
}

/// This process's functions with their runs by status.
async fn functions(State(s): State<AppState>, headers: HeaderMap) -> Answer {
    admin(&s, &headers)?;
    let functions = s.rt.functions().await.map_err(api_error)?;
    let functions: Vec<Value> = functions
        .iter()
        .map(|f| {
            let counts: serde_json::Map<String, Value> = f
                .counts
                .iter()
                .map(|(status, n)| (status.as_str().to_owned(), json!(n)))
                .collect();
            json!({
                "id": f.id,
                "trigger": f.trigger,
                "triggers": f.triggers,
                "cron": f.cron,
                "counts": counts,
            })
        })
        .collect();
    Ok(Json(json!({ "functions": functions })))
}

async fn list_runs(State(s): State<AppState>, headers: HeaderMap, Query(q): Params) -> Answer {
    admin(&s, &headers)?;
    let page = s.rt.list_runs(&run_filter(&q)?).await.map_err(api_error)?;
    Ok(Json(json!({
        "runs": page.runs.iter().map(run_json).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn run(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    admin(&s, &headers)?;
    let run =
        s.rt.run(path_id(&id, "a run id")?)
            .await
            .map_err(api_error)?;
    Ok(Json(run_json(&run)))
}

async fn replay(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    admin(&s, &headers)?;
    let original: RunId = path_id(&id, "a run id")?;
    let new = s.rt.replay(original).await.map_err(api_error)?;
    Ok(Json(json!({ "run_id": new, "replay_of": original })))
}

async fn cancel(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    admin(&s, &headers)?;
    let run: RunId = path_id(&id, "a run id")?;
    let status = s.rt.cancel(run).await.map_err(api_error)?;
    Ok(Json(json!({ "run_id": run, "status": status.as_str() })))
}

/// Replays the finished runs of one page of the filter; the client follows `next`.
async fn replay_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Params) -> Answer {
    admin(&s, &headers)?;
    let page =
        s.rt.replay_page(&run_filter(&q)?)
            .await
            .map_err(api_error)?;
    let replayed: Vec<Value> = page
        .done
        .iter()
        .map(|(original, new)| json!({ "run_id": new, "replay_of": original }))
        .collect();
    Ok(Json(json!({
        "replayed": replayed,
        "matched": page.matched,
        "next": page.next,
    })))
}

/// Cancels the unfinished runs of one page of the filter; the client follows `next`.
async fn cancel_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Params) -> Answer {
    admin(&s, &headers)?;
    let page =
        s.rt.cancel_page(&run_filter(&q)?)
            .await
            .map_err(api_error)?;
    Ok(Json(json!({
        "cancelled": page.done,
        "matched": page.matched,
        "next": page.next,
    })))
}

async fn list_events(State(s): State<AppState>, headers: HeaderMap, Query(q): Params) -> Answer {
    admin(&s, &headers)?;
    let known = ["name", "since", "until", "after", "limit"];
    if let Some(unknown) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format_args!(
            "unknown parameter `{unknown}`: expected one of `name`, `since`, `until`, `after`, `limit`"
        )));
    }
    let mut filter = EventFilter::new();
    if let Some(name) = q.get("name").filter(|v| !v.is_empty()) {
        filter = filter.name(name.clone());
    }
    if let Some(t) = param(&q, "since", "a time in ms since the Unix epoch", time)? {
        filter = filter.since(t);
    }
    if let Some(t) = param(&q, "until", "a time in ms since the Unix epoch", time)? {
        filter = filter.until(t);
    }
    if let Some(c) = param(&q, "after", "an event id", |v| v.parse::<EventId>().ok())? {
        filter = filter.after(c);
    }
    if let Some(n) = limit(&q)? {
        filter = filter.limit(n);
    }
    let page = s.rt.events(&filter).await.map_err(api_error)?;
    Ok(Json(json!({
        "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn event(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    admin(&s, &headers)?;
    let id: EventId = path_id(&id, "an event id")?;
    let event = s.rt.event(id).await.map_err(api_error)?;
    let runs = s.rt.runs(id).await.map_err(api_error)?;
    Ok(Json(json!({
        "event": event_json(&event),
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    })))
}

/// `{name, data}` or an array of them, stored all or none.
async fn send(State(s): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Answer {
    admin(&s, &headers)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format_args!("the body is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("no event: the array is empty"));
    }
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut fields) = item else {
            return Err(ApiError::bad_request(format_args!(
                "event {i}: expected an object `{{\"name\": …, \"data\": {{…}}}}`"
            )));
        };
        let Some(Value::String(name)) = fields.remove("name") else {
            return Err(ApiError::bad_request(format_args!(
                "event {i}: `name` is missing or not a string"
            )));
        };
        let data = fields.remove("data").unwrap_or_else(|| json!({}));
        if !data.is_object() {
            return Err(ApiError::bad_request(format_args!(
                "event {i}: `data` must be a JSON object"
            )));
        }
        events.push(JsonEvent::new(name, data));
    }
    let ids = s.rt.send_json_batch(events).await.map_err(api_error)?;
    Ok(Json(json!({ "ids": ids, "status": 200 })))
}
