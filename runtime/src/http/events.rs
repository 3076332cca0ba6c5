//! `POST /e/{event_key}`: Inngest's event API.
//!
//! The body is one event or a JSON array of events,
//! `{name, data, id?, ts?, user?, v?, traceparent?}`;
//! the answer `200 {"ids": […], "status": 200}`. Every event is checked before any is
//! stored, and all are stored in one transaction ([`Runtime::send_json_batch`]): a
//! rejected request stores nothing.
//!
//! [`Runtime::send_json_batch`]: crate::Runtime::send_json_batch

use super::error::ApiError;
use super::{AppState, MAX_EVENTS_PER_REQUEST};
use crate::event::{now_millis, EventId};
use crate::send_options::{JsonEvent, SendOptions};
use crate::trace::TraceParent;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use std::time::{Duration, UNIX_EPOCH};

/// The header an Inngest SDK sends so that a retried request creates no duplicates: an
/// event without an id gets one derived from the seed and its position.
pub(crate) const SEED_HEADER: &str = "x-inngest-event-id-seed";

/// The W3C Trace Context header: the caller's span, the parent of the events' runs.
pub(crate) const TRACEPARENT_HEADER: &str = "traceparent";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/e/{key}", post(send))
        .route("/e/", post(no_key))
        .route("/e", post(no_key))
}

async fn no_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "no event key: post events to /e/{event_key}",
    )
}

async fn send(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    if !state.any_event_key && !state.settings.keys.is_event_key(&key) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            if state.settings.keys.event.is_empty() {
                "no event key is configured, so no key is valid here: set one with `Builder::event_key`"
            } else {
                "unknown event key"
            },
        ));
    }
    let seed = match headers.get(SEED_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request(format_args!("the `{SEED_HEADER}` header is not text"))
        })?),
    };
    // An invalid header is ignored, as the W3C specification asks: the runs start a
    // trace of their own.
    let trace = headers
        .get(TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| TraceParent::parse(v.trim()));
    let bytes = read_body(body, &headers, &state).await?;
    let events = parse(&bytes, seed, now_millis())?;
    let events = events.into_iter().map(|e| match trace {
        Some(parent) => e.with_default_trace(parent),
        None => e,
    });
    let ids = state.rt.send_json_batch(events).await?;
    Ok(Json(serde_json::json!({ "ids": ids, "status": 200 })))
}

/// The body, within the size limit and the read timeout.
async fn read_body(body: Body, headers: &HeaderMap, state: &AppState) -> Result<Vec<u8>, ApiError> {
    let limit = state.settings.body_limit;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format_args!("the request body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let timeout = state.settings.read_timeout;
    let read = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format_args!("the request body did not arrive within {timeout:?}"),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format_args!(
            "the request body could not be read: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
    }
}

/// The events of a request body, each checked, with the options their fields ask for.
/// `now` (unix ms) tells a `ts` in the future from one in the past.
fn parse(body: &[u8], seed: Option<&str>, now: u64) -> Result<Vec<JsonEvent>, ApiError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format_args!("the body is not valid JSON: {e}")))?;
    let items = match body {
        Value::Array(items) => items,
        Value::Object(_) => vec![body],
        other => {
            return Err(ApiError::bad_request(format_args!(
                "the body is {}, not an event object or an array of events",
                kind(&other)
            )))
        }
    };
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format_args!(
                "{} events in one request, over the limit of {MAX_EVENTS_PER_REQUEST}",
                items.len()
            ),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| event(i, item, seed, now))
        .collect()
}

/// Event `i` of a request.
fn event(i: usize, item: Value, seed: Option<&str>, now: u64) -> Result<JsonEvent, ApiError> {
    let bad =
        |what: std::fmt::Arguments<'_>| ApiError::bad_request(format_args!("event {i}: {what}"));
    let Value::Object(mut fields) = item else {
        return Err(bad(format_args!("{}, not an object", kind(&item))));
    };
    let name = match fields.remove("name") {
        Some(Value::String(name)) => name,
        None | Some(Value::Null) => return Err(bad(format_args!("`name` is missing"))),
        Some(other) => {
            return Err(bad(format_args!(
                "`name` is {}, not a string",
                kind(&other)
            )))
        }
    };
    let data = match fields.remove("data") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(data @ Value::Object(_)) => data,
        Some(other) => {
            return Err(bad(format_args!(
                "`data` is {}, not a JSON object",
                kind(&other)
            )))
        }
    };
    let id = match fields.get("id") {
        // Inngest's SDKs send `""` for no id.
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.is_empty() => None,
        Some(Value::String(id)) => Some(EventId::from_key(id)),
        Some(other) => return Err(bad(format_args!("`id` is {}, not a string", kind(other)))),
    };
    let id =
        id.or_else(|| seed.map(|seed| EventId::from_key(&format!("{SEED_HEADER}:{seed}:{i}"))));
    let mut options = SendOptions::new();
    if let Some(id) = id {
        options = options.id(id);
    }
    let ts = match fields.get("ts") {
        None | Some(Value::Null) => None,
        Some(Value::Number(ts)) => ts.as_u64(),
        Some(_) => None,
    };
    match (ts, fields.get("ts")) {
        // Inngest's SDKs send 0 for no time; a past time runs at once.
        (Some(ts), _) if ts > now => {
            options = options.not_before(UNIX_EPOCH + Duration::from_millis(ts));
        }
        (Some(_), _) | (None, None | Some(Value::Null)) => {}
        (None, Some(other)) => {
            return Err(bad(format_args!(
                "`ts` is {}, not milliseconds since the Unix epoch (an integer of 0 or more)",
                describe(other)
            )))
        }
    }
    // fanfare's own field, over the header: refused when invalid, as the request's
    // author wrote it for fanfare.
    match fields.get("traceparent") {
        None | Some(Value::Null) => {}
        Some(Value::String(tp)) => match TraceParent::parse(tp) {
            Some(parent) => options = options.traceparent(parent),
            None => {
                return Err(bad(format_args!(
                    "`traceparent` {tp:?}: {}",
                    crate::InvalidTraceParent
                )))
            }
        },
        Some(other) => {
            return Err(bad(format_args!(
                "`traceparent` is {}, not a string",
                kind(other)
            )))
        }
    }
    // `user` and `v` are accepted and not kept.
    Ok(JsonEvent::new(name, data).options(options))
}

/// A JSON value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number as itself, anything else by its kind.
fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => kind(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> String {
        parse(body.as_bytes(), None, 1_000).unwrap_err().message
    }

    #[test]
    fn bad_events_are_named_by_position() {
        assert!(message("{").starts_with("the body is not valid JSON"));
        assert_eq!(
            message("7"),
            "the body is a number, not an event object or an array of events"
        );
        assert_eq!(
            message(r#"[{"name":"a"}, 3]"#),
            "event 1: a number, not an object"
        );
        assert_eq!(message(r#"[{"data":{}}]"#), "event 0: `name` is missing");
        assert_eq!(
            message(r#"{"name":1}"#),
            "event 0: `name` is a number, not a string"
        );
        assert_eq!(
            message(r#"[{"name":"a"},{"name":"a","data":[1]}]"#),
            "event 1: `data` is an array, not a JSON object"
        );
        assert_eq!(
            message(r#"{"name":"a","id":5}"#),
            "event 0: `id` is a number, not a string"
        );
        assert!(message(r#"{"name":"a","ts":-1}"#).starts_with("event 0: `ts` is -1, not"));
        assert!(message(r#"{"name":"a","ts":"now"}"#).starts_with("event 0: `ts` is a string"));
    }

    #[test]
    fn inngest_defaults_mean_nothing() {
        let events = parse(
            br#"[{"name":"a","id":"","ts":0,"user":{},"v":"1"},{"name":"b","ts":999}]"#,
            None,
            1_000,
        )
        .unwrap();
        assert_eq!(
            events,
            [
                JsonEvent::new("a", serde_json::json!({})),
                JsonEvent::new("b", serde_json::json!({}))
            ]
        );
    }
}
