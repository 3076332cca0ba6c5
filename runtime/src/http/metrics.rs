//! `GET /metrics`: [`Runtime::metrics`](crate::Runtime::metrics) in Prometheus' text
//! format. Open like `/health` on a loopback server without an admin key; otherwise
//! scraped with the admin key as a bearer token.

use super::error::ApiError;
use super::AppState;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    super::api::admin(&state, &headers)?;
    let text = state.rt.metrics().await?.to_prometheus();
    Ok(([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], text))
}
