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

/// The client end to end against a fake of the API: a server that answers canned JSON
/// by path and records what it was asked.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Status;
    use crate::client::Base;
    use crate::error::Kind;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    type Seen = Arc<Mutex<Vec<String>>>;

    /// Serves `answer(method and path with query)` → (status, body); records each request
    /// as `METHOD path?query auth`.
    async fn fake(answer: fn(&str) -> (u16, Value)) -> (Client, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let line = format!("{} {}", req.method(), req.uri());
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    log.lock().unwrap().push(format!("{line} {auth}"));
                    let (status, body) = answer(&line);
                    async move {
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        let base = Base::parse(&format!("http://{addr}/prefix")).unwrap();
        let client = Client::new(base, Some("k1".into()), Duration::from_secs(5));
        (client, seen)
    }

    fn failed_filter() -> Filter {
        Filter {
            status: Some(Status::Failed),
            function: Some("crm sync".into()),
            ..Filter::default()
        }
    }

    #[tokio::test]
    async fn a_bulk_replay_follows_the_cursor_to_the_end() {
        let (client, seen) = fake(|line| {
            if line.contains("after=r2") {
                (200, json!({"replayed": [{"run_id": "n3", "replay_of": "r3"}], "matched": 1, "next": null}))
            } else {
                (200, json!({"replayed": [{"run_id": "n1", "replay_of": "r1"}], "matched": 2, "next": "r2"}))
            }
        })
        .await;
        let outcome = bulk(&client, Bulk::Replay, &failed_filter()).await;
        assert!(outcome.failure.is_none(), "{outcome:?}");
        let out = outcome.output.unwrap();
        assert_eq!(out.json["matched"], 3);
        assert_eq!(out.json["passed_over"], 1);
        assert_eq!(out.json["pages"], 2);
        assert_eq!(out.json["replayed"][1]["replay_of"], "r3");
        assert_eq!(
            out.text,
            "replayed 2 of 3 matching run(s) (1 passed over: not finished)\n"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "POST /prefix/api/runs/replay?status=failed&function=crm%20sync&limit=100 Bearer k1",
                "POST /prefix/api/runs/replay?status=failed&function=crm%20sync&after=r2&limit=100 Bearer k1",
            ]
        );
    }

    #[tokio::test]
    async fn a_bulk_cancel_that_fails_part_way_reports_what_it_did() {
        let (client, _) = fake(|line| {
            if line.contains("after=") {
                (
                    503,
                    json!({"error": "the store is unreachable", "status": 503}),
                )
            } else {
                (
                    200,
                    json!({"cancelled": ["r1", "r2"], "matched": 2, "next": "r2"}),
                )
            }
        })
        .await;
        let outcome = bulk(&client, Bulk::Cancel, &failed_filter()).await;
        let failure = outcome.failure.expect("the second page failed");
        assert_eq!(failure.kind, Kind::Server);
        assert!(
            failure.message.contains("the store is unreachable"),
            "{failure}"
        );
        let out = outcome.output.expect("the first page is reported");
        assert_eq!(out.json["cancelled"], json!(["r1", "r2"]));
        assert_eq!(out.json["error"], failure.message.as_str());
        assert!(out.text.contains("before the error below"), "{}", out.text);
    }

    #[tokio::test]
    async fn runs_all_gathers_every_page_and_one_page_says_there_is_more() {
        fn run(id: &str) -> Value {
            json!({"run_id": id, "event_id": "e", "event_name": "a/b", "app": "x",
                   "function_id": "f", "status": "failed", "attempts": 1,
                   "last_error": "boom", "output": null, "reason": null,
                   "not_before_ms": null, "created_at_ms": 0, "replay_of": null, "steps": []})
        }
        let (client, seen) = fake(|line| {
            if line.contains("after=r1") {
                (200, json!({"runs": [run("r2")], "next": null}))
            } else {
                (200, json!({"runs": [run("r1")], "next": "r1"}))
            }
        })
        .await;
        let all = runs(&client, &Filter::default(), None, None, true)
            .await
            .unwrap();
        assert_eq!(all.json["runs"].as_array().unwrap().len(), 2);
        assert_eq!(all.json["next"], Value::Null);
        assert!(seen.lock().unwrap()[0].contains("/api/runs?limit=1000 "));
        let one = runs(&client, &Filter::default(), Some(1), None, false)
            .await
            .unwrap();
        assert_eq!(one.json["next"], "r1");
        assert!(one.text.contains("--after r1"), "{}", one.text);
    }

    #[tokio::test]
    async fn a_refused_replay_says_why() {
        let (client, seen) = fake(|_| {
            (
                409,
                json!({"error": "run r1 is sleeping, not finished", "status": 409}),
            )
        })
        .await;
        let e = replay_one(&client, "r1").await.unwrap_err();
        assert_eq!(e.kind.code(), 4);
        assert_eq!(
            e.message,
            "the run cannot be replayed: run r1 is sleeping, not finished \
             (only a finished run can be replayed)"
        );
        assert_eq!(
            seen.lock().unwrap()[0],
            "POST /prefix/api/runs/r1/replay Bearer k1"
        );
    }
}
