//! One function per command: call the API, and make the JSON document (`--json`) and the
//! text for people.

use crate::api::{self, decode};
use crate::cli::{Command, Filter, Target};
use crate::client::{encode, query, Client};
use crate::error::Failure;
use crate::progress::Progress;
use crate::render;
use serde_json::{json, Value};
use std::io::Read;

/// What a command prints on stdout: a JSON document, or text.
#[derive(Debug)]
pub struct Output {
    pub json: Value,
    pub text: String,
}

/// How a command ended: its output, its failure, or both (a bulk operation that failed
/// part way prints what it did before the error).
#[derive(Debug)]
pub struct Outcome {
    pub output: Option<Output>,
    pub failure: Option<Failure>,
}

impl From<Result<Output, Failure>> for Outcome {
    fn from(r: Result<Output, Failure>) -> Outcome {
        match r {
            Ok(output) => Outcome {
                output: Some(output),
                failure: None,
            },
            Err(failure) => Outcome {
                output: None,
                failure: Some(failure),
            },
        }
    }
}

/// Runs of one page of `runs --all`, and of a bulk operation's pages.
const ALL_PAGE: u32 = 1000;
const BULK_PAGE: u32 = 100;

pub async fn run(client: &Client, command: Command) -> Outcome {
    match command {
        Command::Send { name, data } => send(client, &name, data.as_deref()).await.into(),
        Command::Functions => functions(client).await.into(),
        Command::Runs {
            filter,
            limit,
            after,
            all,
        } => runs(client, &filter, limit, after, all).await.into(),
        Command::Run { id } => show_run(client, &id).await.into(),
        Command::Event { id } => event(client, &id).await.into(),
        Command::Replay(target) => match target_of(target, "replay") {
            Ok(Ok(id)) => replay_one(client, &id).await.into(),
            Ok(Err(filter)) => bulk(client, Bulk::Replay, &filter).await,
            Err(f) => Err(f).into(),
        },
        Command::Cancel(target) => match target_of(target, "cancel") {
            Ok(Ok(id)) => cancel_one(client, &id).await.into(),
            Ok(Err(filter)) => bulk(client, Bulk::Cancel, &filter).await,
            Err(f) => Err(f).into(),
        },
    }
}

/// One run's id, or a filter that is not empty.
fn target_of(target: Target, verb: &str) -> Result<Result<String, Filter>, Failure> {
    match target.id {
        Some(id) => Ok(Ok(id)),
        None if target.filter.is_empty() => Err(Failure::usage(format!(
            "{verb} what? give a run id, or a filter for many runs: --status, --function, \
             --event, --since, --until (e.g. `fanfare {verb} --status failed --since 1h`)"
        ))),
        None => Ok(Err(target.filter)),
    }
}

async fn send(client: &Client, name: &str, data: Option<&str>) -> Result<Output, Failure> {
    let text = match data {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| {
                Failure::usage(format!("cannot read the event's data from stdin: {e}"))
            })?;
            s
        }
        Some(s) => s.to_string(),
        None => "{}".to_string(),
    };
    let data: Value = serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "the event's data is not JSON ({e}): give a JSON object, e.g. '{{\"user_id\": 42}}'"
        ))
    })?;
    let answer = client
        .post("/api/send", Some(&json!({ "name": name, "data": data })))
        .await?;
    let sent: api::Sent = decode("POST /api/send", &answer)?;
    let text = sent.ids.iter().map(|id| format!("{id}\n")).collect();
    Ok(Output {
        json: json!({ "ids": sent.ids }),
        text,
    })
}

async fn functions(client: &Client) -> Result<Output, Failure> {
    let answer = client.get("/api/functions").await?;
    let f: api::Functions = decode("GET /api/functions", &answer)?;
    Ok(Output {
        text: render::functions(&f.functions),
        json: answer,
    })
}

async fn runs(
    client: &Client,
    filter: &Filter,
    limit: Option<u32>,
    mut after: Option<String>,
    all: bool,
) -> Result<Output, Failure> {
    let limit = limit.unwrap_or(if all { ALL_PAGE } else { 50 });
    let mut found: Vec<Value> = Vec::new();
    let mut typed: Vec<api::Run> = Vec::new();
    let next = loop {
        let mut params = filter.params();
        params.push(("after", after.clone()));
        params.push(("limit", Some(limit.to_string())));
        let path = format!("/api/runs{}", query(&params));
        let answer = client.get(&path).await?;
        let page: api::Runs = decode("GET /api/runs", &answer)?;
        typed.extend(page.runs);
        found.extend(answer["runs"].as_array().cloned().unwrap_or_default());
        match page.next {
            Some(next) if all => {
                if after.as_deref() == Some(next.as_str()) {
                    return Err(stuck_cursor(&next));
                }
                after = Some(next);
            }
            next => break next,
        }
    };
    let mut text = if typed.is_empty() {
        "no runs match\n".to_string()
    } else {
        render::runs(&typed)
    };
    if let Some(next) = &next {
        text.push_str(&format!(
            "… more runs: add --after {next} for the next page, or --all\n"
        ));
    }
    Ok(Output {
        json: json!({ "runs": found, "next": next }),
        text,
    })
}

fn stuck_cursor(next: &str) -> Failure {
    Failure::server(format!(
        "the runtime gave the same `next` cursor twice ({next}): stopped instead of looping"
    ))
}

async fn show_run(client: &Client, id: &str) -> Result<Output, Failure> {
    let answer = client.get(&format!("/api/runs/{}", encode(id))).await?;
    let run: api::Run = decode("GET /api/runs/{id}", &answer)?;
    Ok(Output {
        text: render::run(&run),
        json: answer,
    })
}

async fn event(client: &Client, id: &str) -> Result<Output, Failure> {
    let answer = client.get(&format!("/api/events/{}", encode(id))).await?;
    let event: api::EventWithRuns = decode("GET /api/events/{id}", &answer)?;
    Ok(Output {
        text: render::event(&event),
        json: answer,
    })
}

async fn replay_one(client: &Client, id: &str) -> Result<Output, Failure> {
    let answer = client
        .post(&format!("/api/runs/{}/replay", encode(id)), None)
        .await
        .map_err(|f| explain_refusal(f, "replayed", "only a finished run can be replayed"))?;
    let r: api::Replayed = decode("POST /api/runs/{id}/replay", &answer)?;
    Ok(Output {
        text: format!("replayed run {} as run {}\n", r.replay_of, r.run_id),
        json: answer,
    })
}

async fn cancel_one(client: &Client, id: &str) -> Result<Output, Failure> {
    let answer = client
        .post(&format!("/api/runs/{}/cancel", encode(id)), None)
        .await
        .map_err(|f| explain_refusal(f, "cancelled", "a finished run keeps its status"))?;
    let c: api::Cancelled = decode("POST /api/runs/{id}/cancel", &answer)?;
    let text = match c.status.as_str() {
        "cancelled" => format!("cancelled run {}\n", c.run_id),
        "running" => format!(
            "run {} is running: marked cancelled, it stops at its next step\n",
            c.run_id
        ),
        other => format!(
            "run {} is {other}: nothing to cancel, it keeps its status\n",
            c.run_id
        ),
    };
    Ok(Output { text, json: answer })
}

/// A `409` with the rule behind it.
fn explain_refusal(f: Failure, verb: &str, rule: &str) -> Failure {
    if f.kind == crate::error::Kind::Refused {
        Failure::new(
            f.kind,
            format!("the run cannot be {verb}: {} ({rule})", f.message),
        )
    } else {
        f
    }
}

#[derive(Clone, Copy)]
enum Bulk {
    Replay,
    Cancel,
}

impl Bulk {
    fn path(self) -> &'static str {
        match self {
            Bulk::Replay => "replay",
            Bulk::Cancel => "cancel",
        }
    }

    /// The answer's list of runs acted on, and the past participle.
    fn done(self) -> &'static str {
        match self {
            Bulk::Replay => "replayed",
            Bulk::Cancel => "cancelled",
        }
    }
}

/// A bulk replay or cancel: one page after another until `next` is null, with progress
/// on stderr, and a summary.
async fn bulk(client: &Client, op: Bulk, filter: &Filter) -> Outcome {
    let mut progress = Progress::new(op.done());
    if progress.enabled() {
        progress.set_total(estimate(client, filter).await);
        progress.update(0, 0);
    }
    let endpoint = format!("POST /api/runs/{}", op.path());
    let mut matched: u64 = 0;
    let mut done: Vec<Value> = Vec::new();
    let mut pages: u64 = 0;
    let mut after: Option<String> = None;
    let failure = loop {
        let mut params = filter.params();
        params.push(("after", after.clone()));
        params.push(("limit", Some(BULK_PAGE.to_string())));
        let path = format!("/api/runs/{}{}", op.path(), query(&params));
        let answer = match client.post(&path, None).await {
            Ok(a) => a,
            Err(f) => break Some(f),
        };
        let (acted, page_matched, next) = match op {
            Bulk::Replay => match decode::<api::ReplayPage>(&endpoint, &answer) {
                Ok(p) => (p.replayed, p.matched, p.next),
                Err(f) => break Some(f),
            },
            Bulk::Cancel => match decode::<api::CancelPage>(&endpoint, &answer) {
                Ok(p) => (p.cancelled, p.matched, p.next),
                Err(f) => break Some(f),
            },
        };
        pages += 1;
        matched += page_matched;
        done.extend(acted);
        progress.update(matched, done.len() as u64);
        match next {
            None => break None,
            Some(next) if after.as_deref() == Some(next.as_str()) => {
                break Some(stuck_cursor(&next))
            }
            Some(next) => after = Some(next),
        }
    };
    progress.finish();
    let passed_over = matched.saturating_sub(done.len() as u64);
    let mut text = format!("{} {} of {matched} matching run(s)", op.done(), done.len());
    if passed_over > 0 {
        let why = match op {
            Bulk::Replay => "not finished",
            Bulk::Cancel => "finished already",
        };
        text.push_str(&format!(" ({passed_over} passed over: {why})"));
    }
    if failure.is_some() {
        text.push_str(" before the error below");
    }
    text.push('\n');
    let mut json = json!({
        "matched": matched,
        (op.done()): done,
        "passed_over": passed_over,
        "pages": pages,
    });
    if let Some(f) = &failure {
        json["error"] = Value::String(f.message.clone());
    }
    // A failure before any page was done has nothing to report but the error.
    let output = (pages > 0 || failure.is_none()).then_some(Output { json, text });
    Outcome { output, failure }
}

/// How many runs a filter matches, for the progress bar: from the functions' counts by
/// status, when the filter is no narrower than status and function. `None` otherwise.
async fn estimate(client: &Client, filter: &Filter) -> Option<u64> {
    if filter.event.is_some() || filter.since.is_some() || filter.until.is_some() {
        return None;
    }
    let answer = client.get("/api/functions").await.ok()?;
    let f: api::Functions = decode("GET /api/functions", &answer).ok()?;
    let total = f
        .functions
        .iter()
        .filter(|f| filter.function.as_deref().is_none_or(|id| f.id == id))
        .map(|f| match filter.status {
            Some(s) => f.counts.get(s.as_str()).copied().unwrap_or(0),
            None => f.counts.values().sum(),
        })
        .sum();
    Some(total)
}
