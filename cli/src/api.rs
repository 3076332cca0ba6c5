//! The API's answers as the tables need them. `--json` prints the answers as they came,
//! so fields added to the API later reach scripts without a change here.

use crate::error::Failure;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Reads `value` as `T`, or says the answer is not the API's.
pub fn decode<T: DeserializeOwned>(what: &str, value: &Value) -> Result<T, Failure> {
    T::deserialize(value).map_err(|e| {
        Failure::server(format!(
            "unexpected answer to {what}: {e} — is the runtime a fanfare version with the runs API?"
        ))
    })
}

#[derive(Debug, Deserialize)]
pub struct Functions {
    pub functions: Vec<Function>,
}

#[derive(Debug, Deserialize)]
pub struct Function {
    pub id: String,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
pub struct Runs {
    pub runs: Vec<Run>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Run {
    pub run_id: String,
    pub event_id: String,
    #[serde(default)]
    pub event_name: Option<String>,
    #[serde(default)]
    pub app: Option<String>,
    pub function_id: String,
    pub status: String,
    #[serde(default)]
    pub attempts: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub not_before_ms: Option<i64>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub replay_of: Option<String>,
    #[serde(default)]
    pub failed_attempts: Vec<Attempt>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
pub struct Attempt {
    pub attempt: u64,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub error: String,
}

#[derive(Debug, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(default)]
    pub started_at_ms: Option<i64>,
    #[serde(default)]
    pub completed_at_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct EventWithRuns {
    pub event: Event,
    #[serde(default)]
    pub runs: Vec<Run>,
}

#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub data: Value,
    pub ts: i64,
}

#[derive(Debug, Deserialize)]
pub struct Sent {
    pub ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Replayed {
    pub run_id: String,
    pub replay_of: String,
}

#[derive(Debug, Deserialize)]
pub struct Cancelled {
    pub run_id: String,
    pub status: String,
}

/// One page of a bulk replay.
#[derive(Debug, Deserialize)]
pub struct ReplayPage {
    pub replayed: Vec<Value>,
    pub matched: u64,
    #[serde(default)]
    pub next: Option<String>,
}

/// One page of a bulk cancel.
#[derive(Debug, Deserialize)]
pub struct CancelPage {
    pub cancelled: Vec<Value>,
    pub matched: u64,
    #[serde(default)]
    pub next: Option<String>,
}
