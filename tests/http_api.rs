//! The runs API (`/api/…`) and `/metrics` through a real HTTP client: filters and pages,
//! one run, replay and cancel of one run and of a filter's pages, events and an event's
//! fan-out, sends; the admin key; every malformed parameter named in a `400`.

mod common;

use common::http::{request, Answer};
use common::{hit, until, LIMIT};
use fanfare::{function, Ctx, Error, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::timeout;

const ADMIN: &str = "admin-key-for-tests";

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "api/charge")]
struct Charge {
    /// The first run of each key fails, later ones complete.
    key: String,
}

#[function(trigger = "api/charge", retries = 0)]
async fn api_charge(ctx: Ctx<Charge>) -> fanfare::Result<String> {
    if hit(&ctx.event().key) == 1 {
        return Err(Error::msg("card declined: <b>insufficient funds</b>"));
    }
    Ok(ctx.event().key.clone())
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "api/nap")]
struct Nap {
    n: u32,
}

#[function(trigger = "api/nap")]
async fn api_nap(ctx: Ctx<Nap>) -> fanfare::Result<()> {
    ctx.sleep("nap", Duration::from_secs(3600)).await?;
    Ok(())
}

fn key(tag: &str) -> String {
    format!("{tag}-{:016x}", fastrand::u64(..))
}

async fn start() -> Runtime {
    Runtime::builder()
        .sqlite(common::temp_db())
        .http("127.0.0.1:0")
        .admin_key(ADMIN)
        .start()
        .await
        .unwrap()
}

fn addr(rt: &Runtime) -> SocketAddr {
    rt.http_addr().expect("the runtime serves HTTP")
}

const BEARER: &str = "Bearer admin-key-for-tests";

async fn get(rt: &Runtime, path: &str) -> Answer {
    request(addr(rt), "GET", path, &[("authorization", BEARER)], "").await
}

async fn post(rt: &Runtime, path: &str, body: Value) -> Answer {
    request(
        addr(rt),
        "POST",
        path,
        &[("authorization", BEARER)],
        body.to_string(),
    )
    .await
}

/// Sends a charge that fails, and waits for the failure.
async fn failed_charge(rt: &Runtime, key: &str) -> (String, String) {
    let sent = post(
        rt,
        "/api/send",
        json!({ "name": "api/charge", "data": { "key": key } }),
    )
    .await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    let event = sent.body["ids"][0].as_str().unwrap().to_owned();
    let runs = timeout(LIMIT, rt.wait(event.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    (event, runs[0].run_id.to_string())
}

fn run_ids(page: &Answer) -> Vec<String> {
    page.body["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs: {:?}", page.body))
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_read_replayed_and_cancelled() {
    let rt = start().await;
    let k = key("one");
    let (event, failed) = failed_charge(&rt, &k).await;

    // The failed run, by filter, and in full.
    let page = get(&rt, "/api/runs?status=failed&function=api_charge").await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(run_ids(&page), vec![failed.clone()]);
    assert_eq!(page.body["next"], Value::Null);
    let run = get(&rt, &format!("/api/runs/{failed}")).await;
    assert_eq!(run.body["status"], "failed");
    assert_eq!(run.body["event_id"], event.as_str());
    assert_eq!(run.body["event_name"], "api/charge");
    assert_eq!(run.body["function_id"], "api_charge");
    assert_eq!(
        run.body["last_error"],
        "card declined: <b>insufficient funds</b>"
    );
    assert!(run.body["created_at_ms"].as_u64().unwrap() > 0);
    // Its one attempt, with its error and timing.
    let attempts = run.body["failed_attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{:?}", run.body);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["error"], run.body["last_error"]);
    let started = attempts[0]["started_at_ms"].as_u64().unwrap();
    assert!(started <= attempts[0]["ended_at_ms"].as_u64().unwrap());

    // The functions, with their runs by status.
    let functions = get(&rt, "/api/functions").await;
    let charge = functions.body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "api_charge")
        .unwrap_or_else(|| panic!("{:?}", functions.body));
    assert_eq!(charge["trigger"], "api/charge");
    assert_eq!(charge["counts"]["failed"], 1);
    assert_eq!(charge["counts"]["completed"], 0);

    // The event and its fan-out.
    let ev = get(&rt, &format!("/api/events/{event}")).await;
    assert_eq!(ev.body["event"]["name"], "api/charge");
    assert_eq!(ev.body["event"]["data"]["key"], k.as_str());
    assert_eq!(ev.body["runs"].as_array().unwrap().len(), 1);
    let events = get(&rt, "/api/events?name=api/charge").await;
    assert_eq!(events.body["events"][0]["id"], event.as_str());

    // Replay: a new run that completes, linked to the original, which stays failed.
    let replay = post(&rt, &format!("/api/runs/{failed}/replay"), json!(null)).await;
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.body["replay_of"], failed.as_str());
    let new = replay.body["run_id"].as_str().unwrap().to_owned();
    until("the replay completes", async || {
        get(&rt, &format!("/api/runs/{new}")).await.body["status"] == "completed"
    })
    .await;
    let again = get(&rt, &format!("/api/runs/{new}")).await;
    assert_eq!(again.body["replay_of"], failed.as_str());
    assert_eq!(again.body["output"], k.as_str());
    assert_eq!(
        get(&rt, &format!("/api/runs/{failed}")).await.body["status"],
        "failed"
    );

    // Cancel a sleeping run; a finished one keeps its status.
    let nap = rt.send(Nap { n: 1 }).await.unwrap();
    until("the nap sleeps", async || {
        rt.runs(nap).await.unwrap()[0].status == RunStatus::Sleeping
    })
    .await;
    let sleeping = get(&rt, "/api/runs?status=sleeping").await;
    let napping = run_ids(&sleeping);
    assert_eq!(napping.len(), 1);
    let cancel = post(
        &rt,
        &format!("/api/runs/{}/cancel", napping[0]),
        json!(null),
    )
    .await;
    assert_eq!(cancel.body["status"], "cancelled", "{:?}", cancel.body);
    let cancel = post(&rt, &format!("/api/runs/{new}/cancel"), json!(null)).await;
    assert_eq!(cancel.body["status"], "completed");

    // Replaying an unfinished run is a conflict; unknown ids are 404.
    let nap = rt.send(Nap { n: 2 }).await.unwrap();
    until("the nap sleeps", async || {
        rt.runs(nap).await.unwrap()[0].status == RunStatus::Sleeping
    })
    .await;
    let sleeping = rt.runs(nap).await.unwrap()[0].run_id;
    let conflict = post(&rt, &format!("/api/runs/{sleeping}/replay"), json!(null)).await;
    assert_eq!(conflict.status, 409, "{:?}", conflict.body);
    assert!(
        conflict.error().contains("has not finished"),
        "{}",
        conflict.error()
    );
    let unknown = "01900000-0000-7000-8000-000000000001";
    for path in [
        format!("/api/runs/{unknown}"),
        format!("/api/events/{unknown}"),
    ] {
        let a = get(&rt, &path).await;
        assert_eq!(a.status, 404, "{path}: {:?}", a.body);
        assert!(a.error().contains(unknown), "{}", a.error());
    }
    let a = post(&rt, &format!("/api/runs/{unknown}/replay"), json!(null)).await;
    assert_eq!(a.status, 404);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_their_cursor_and_bulk_replay_goes_page_by_page() {
    let rt = start().await;
    let mut failed = Vec::new();
    for i in 0..5 {
        failed.push(failed_charge(&rt, &key(&format!("bulk{i}"))).await.1);
    }
    // Pages of two: 2 + 2 + 1, newest first, each run once.
    let mut seen = Vec::new();
    let mut path = "/api/runs?status=failed&limit=2".to_owned();
    loop {
        let page = get(&rt, &path).await;
        seen.extend(run_ids(&page));
        match page.body["next"].as_str() {
            Some(next) => path = format!("/api/runs?status=failed&limit=2&after={next}"),
            None => break,
        }
    }
    let mut expected = failed.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected);

    // Bulk replay, one page a request, following `next`.
    let mut replayed = 0;
    let mut path = "/api/runs/replay?status=failed&function=api_charge&limit=2".to_owned();
    loop {
        let page = post(&rt, &path, json!(null)).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        replayed += page.body["replayed"].as_array().unwrap().len();
        match page.body["next"].as_str() {
            Some(next) => {
                path = format!(
                    "/api/runs/replay?status=failed&function=api_charge&limit=2&after={next}"
                )
            }
            None => break,
        }
    }
    assert_eq!(replayed, 5);
    until("every replay completes", async || {
        let page = get(&rt, "/api/runs?status=completed&function=api_charge").await;
        run_ids(&page).len() == 5
    })
    .await;

    // Bulk cancel of the sleeping runs.
    for n in 0..3 {
        let id = rt.send(Nap { n }).await.unwrap();
        until("the nap sleeps", async || {
            rt.runs(id).await.unwrap()[0].status == RunStatus::Sleeping
        })
        .await;
    }
    let cancelled = post(&rt, "/api/runs/cancel?function=api_nap", json!(null)).await;
    assert_eq!(cancelled.body["cancelled"].as_array().unwrap().len(), 3);
    assert_eq!(
        run_ids(&get(&rt, "/api/runs?status=cancelled").await).len(),
        3
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_is_required_and_bad_parameters_are_named() {
    let rt = start().await;
    for (headers, why) in [
        (vec![], "no admin key"),
        (vec![("authorization", "Bearer wrong")], "unknown admin key"),
    ] {
        for path in ["/api/runs", "/metrics"] {
            let a = request(addr(&rt), "GET", path, &headers, "").await;
            assert_eq!(a.status, 401, "{path}: {:?}", a.body);
            assert!(a.error().contains(why), "{}", a.error());
        }
    }
    for (path, parameter) in [
        ("/api/runs?status=broken", "`status`"),
        ("/api/runs?limit=0", "`limit`"),
        ("/api/runs?limit=5000", "`limit`"),
        ("/api/runs?since=yesterday", "`since`"),
        ("/api/runs?after=nope", "`after`"),
        ("/api/runs?event=nope", "`event`"),
        ("/api/runs?colour=red", "`colour`"),
        ("/api/events?until=x", "`until`"),
        ("/api/runs/not-an-id", "not-an-id"),
    ] {
        let a = get(&rt, path).await;
        assert_eq!(a.status, 400, "{path}: {:?}", a.body);
        assert!(a.error().contains(parameter), "{path}: {}", a.error());
    }
    let a = get(&rt, "/api/runs?status=broken").await;
    assert!(
        a.error().contains("expected one of `queued`"),
        "{}",
        a.error()
    );
    for (body, why) in [
        (json!({ "data": {} }), "`name` is missing"),
        (
            json!({ "name": "api/nap", "data": [1] }),
            "`data` must be a JSON object",
        ),
        (json!([]), "the array is empty"),
        (
            json!({ "name": "no spaces allowed", "data": {} }),
            "event name",
        ),
    ] {
        let a = post(&rt, "/api/send", body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {:?}", a.body);
        assert!(a.error().contains(why), "{body}: {}", a.error());
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let rt = start().await;
    let k = key("metrics");
    failed_charge(&rt, &k).await;
    let res = request(
        addr(&rt),
        "GET",
        "/metrics",
        &[("authorization", BEARER)],
        "",
    )
    .await;
    assert_eq!(res.status, 200);
    assert!(
        res.header("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        res.headers
    );
    let text = res.text;
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).unwrap();
    let failed = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "fanfare_runs_failed_total"
                && s.labels.get("function") == Some("api_charge")
        })
        .unwrap_or_else(|| panic!("no failed counter in:\n{text}"));
    assert_eq!(failed.value, prometheus_parse::Value::Counter(1.0));
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_key_a_loopback_server_is_open_and_a_mounted_router_closed() {
    let rt = Runtime::builder()
        .http("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let a = request(addr(&rt), "GET", "/api/runs", &[], "").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // Mounted in an app, the router cannot know where it listens: closed without a key.
    let app = axum::Router::new().nest("/fanfare", fanfare::http::router(&rt));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mounted = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let a = request(mounted, "GET", "/fanfare/api/runs", &[], "").await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    assert!(
        a.error().contains("no admin key is configured"),
        "{}",
        a.error()
    );
    rt.shutdown().await.unwrap();
}
