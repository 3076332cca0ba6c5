//! The HTTP event API (`Builder::http`, `fanfare::http::router`), through a real HTTP
//! client: events posted as Inngest's SDKs post them run the subscribed functions;
//! every bad request is refused with its reason and stores nothing.

mod common;

use common::http::{request, Answer};
use common::{hits, Store, LIMIT};
use fanfare::{function, Ctx, ErrorKind, Event, EventId, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

conformance!(
    posted_events_run_their_functions,
    a_batch_with_a_bad_event_stores_none,
    an_id_sent_twice_runs_once,
);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "http/signup")]
struct Signup {
    user: String,
}

#[function(trigger = "http/signup")]
async fn http_welcome(ctx: Ctx<Signup>) -> fanfare::Result<()> {
    common::hit(format!("welcome:{}", ctx.event().user));
    Ok(())
}

#[function(trigger = "http/signup")]
async fn http_crm(ctx: Ctx<Signup>) -> fanfare::Result<()> {
    common::hit(format!("crm:{}", ctx.event().user));
    Ok(())
}

/// A name no other test uses.
fn user(tag: &str) -> String {
    format!("{tag}-{:016x}", fastrand::u64(..))
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> Answer {
    request(addr, "POST", path, &[], body.to_string()).await
}

fn addr(rt: &Runtime) -> SocketAddr {
    rt.http_addr().expect("the runtime serves HTTP")
}

/// Waits until both functions ran the event to completion.
async fn completed(rt: &Runtime, id: EventId) {
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A signup event as Inngest's Python SDK posts it: `id`, `ts`, `user` and `v` set.
fn signup(user: &str) -> Value {
    json!({ "name": "http/signup", "data": { "user": user }, "id": "", "ts": now_ms(), "user": {}, "v": null })
}

// --- every store -----------------------------------------------------------------------

async fn posted_events_run_their_functions(store: Store) {
    let rt = store.fast().http("127.0.0.1:0").start().await.unwrap();
    let (one, two, three) = (user("one"), user("two"), user("three"));

    // One event object.
    let answer = post(addr(&rt), "/e/any-key", &signup(&one)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["status"], 200);
    let [id] = answer.ids()[..] else {
        panic!("{answer:?}")
    };
    assert_eq!(timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap().len(), 2);

    // An array, as the SDKs send.
    let answer = post(
        addr(&rt),
        "/e/any-key",
        &json!([signup(&two), signup(&three)]),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let ids = answer.ids();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for id in ids {
        let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
        assert!(
            runs.iter().all(|r| r.status == RunStatus::Completed),
            "{runs:?}"
        );
    }
    for u in [&one, &two, &three] {
        assert_eq!(
            (hits(format!("welcome:{u}")), hits(format!("crm:{u}"))),
            (1, 1)
        );
    }
    rt.shutdown().await.unwrap();
}

async fn a_batch_with_a_bad_event_stores_none(store: Store) {
    let rt = store
        .fast()
        .http("127.0.0.1:0")
        .max_event_size(1024)
        .start()
        .await
        .unwrap();
    let tag = user("atomic");
    let good = |n: u32| json!({ "name": "http/signup", "data": { "user": format!("{tag}-{n}") }, "id": format!("{tag}-{n}") });
    let bad_thirds = [
        (
            json!({ "name": "not a name" }),
            "event 2: invalid event name",
        ),
        (json!({ "data": {} }), "event 2: `name` is missing"),
        (
            json!({ "name": "http/signup", "data": [1] }),
            "event 2: `data` is an array",
        ),
        (
            json!({ "name": "http/signup", "data": { "blob": "x".repeat(2048) } }),
            "event 2: event `http/signup` is",
        ),
    ];
    for (bad, says) in bad_thirds {
        let answer = post(addr(&rt), "/e/k", &json!([good(1), good(2), bad])).await;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert_eq!(answer.body["status"], 400);
        assert!(answer.error().starts_with(says), "{answer:?}");
        for n in [1, 2] {
            let err = rt
                .runs(EventId::from_key(&format!("{tag}-{n}")))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::EventNotFound, "event {n} was stored");
        }
    }
    // The same first two, alone, are stored and run.
    let answer = post(addr(&rt), "/e/k", &json!([good(1), good(2)])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    for id in answer.ids() {
        timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    }
    assert_eq!(hits(format!("welcome:{tag}-1")), 1);
    assert_eq!(hits(format!("welcome:{tag}-2")), 1);
    rt.shutdown().await.unwrap();
}

async fn an_id_sent_twice_runs_once(store: Store) {
    let rt = store.fast().http("127.0.0.1:0").start().await.unwrap();
    let u = user("dedup");
    let event =
        json!({ "name": "http/signup", "data": { "user": u }, "id": format!("{u}/signup") });
    let first = post(addr(&rt), "/e/k", &event).await;
    // Twice in one request, and again in another.
    let again = post(addr(&rt), "/e/k", &json!([event, event])).await;
    assert_eq!((first.status, again.status), (200, 200), "{again:?}");
    let id = EventId::from_key(&format!("{u}/signup"));
    assert_eq!(first.ids(), [id]);
    assert_eq!(again.ids(), [id, id]);
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(hits(format!("welcome:{u}")), 1);
    rt.shutdown().await.unwrap();
}

// --- the memory store ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_ts_delays_the_runs_and_a_past_one_does_not() {
    let rt = Store::Memory
        .fast()
        .http("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let (later, now) = (user("later"), user("now"));
    let in_an_hour = now_ms() + 3_600_000;
    let mut delayed = signup(&later);
    delayed["ts"] = json!(in_an_hour);
    let mut past = signup(&now);
    past["ts"] = json!(now_ms() - 60_000);
    let answer = post(addr(&rt), "/e/k", &json!([delayed, past])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let ids = answer.ids();
    let done = timeout(LIMIT, rt.wait(ids[1])).await.unwrap().unwrap();
    assert!(done.iter().all(|r| r.status == RunStatus::Completed));
    for run in rt.runs(ids[0]).await.unwrap() {
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(run.not_before_ms, Some(in_an_hour), "{run:?}");
    }
    assert_eq!(hits(format!("welcome:{later}")), 0);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_seed_header_dedupes_a_retried_request() {
    let rt = Store::Memory
        .fast()
        .http("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let (a, b) = (user("seed-a"), user("seed-b"));
    let body = json!([signup(&a), signup(&b)]).to_string();
    let seed = [("x-inngest-event-id-seed", "1732872000000,q83vEjRWeJA=")];
    let first = request(addr(&rt), "POST", "/e/k", &seed, body.clone()).await;
    // The SDK timed out waiting and sends the same request again.
    let retry = request(addr(&rt), "POST", "/e/k", &seed, body.clone()).await;
    assert_eq!((first.status, retry.status), (200, 200), "{retry:?}");
    assert_eq!(first.ids(), retry.ids());
    assert_ne!(first.ids()[0], first.ids()[1]);
    for id in first.ids() {
        timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    }
    assert_eq!(
        (hits(format!("welcome:{a}")), hits(format!("welcome:{b}"))),
        (1, 1)
    );
    // Another seed is another request.
    let other = [("x-inngest-event-id-seed", "1732872000001,AAAAAAAAAAA=")];
    let third = request(addr(&rt), "POST", "/e/k", &other, body).await;
    assert_ne!(third.ids(), first.ids());
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_their_reason() {
    let rt = Store::Memory
        .builder()
        .http("127.0.0.1:0")
        .event_key("key-1")
        .max_event_size(1024)
        .http_body_limit(64 * 1024)
        .start()
        .await
        .unwrap();
    let a = addr(&rt);
    let refused = |answer: &Answer, status: u16, says: &str| {
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.body["status"], status, "{answer:?}");
        assert!(answer.error().contains(says), "{says:?} in {answer:?}");
    };
    let cases: [(&str, &str, &str); 8] = [
        ("{\"name\": ", "the body is not valid JSON", "bad JSON"),
        (
            "\"http/signup\"",
            "the body is a string, not an event object",
            "not an event",
        ),
        ("{\"data\": {}}", "event 0: `name` is missing", "no name"),
        (
            "{\"name\": \"a b\"}",
            "event 0: invalid event name \"a b\"",
            "bad name",
        ),
        ("{\"name\": \"fanfare/cron\"}", "reserved", "reserved name"),
        (
            "{\"name\": \"x\", \"data\": 3}",
            "event 0: `data` is a number, not a JSON object",
            "data",
        ),
        (
            "[{\"name\": \"x\"}, {\"name\": \"x\", \"ts\": 1.5}]",
            "event 1: `ts` is 1.5",
            "ts",
        ),
        (
            "{\"name\": \"x\", \"id\": 7}",
            "event 0: `id` is a number, not a string",
            "id",
        ),
    ];
    for (body, says, what) in cases {
        let answer = request(a, "POST", "/e/key-1", &[], body).await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        refused(&answer, 400, says);
    }
    let big = json!({ "name": "x", "data": { "blob": "x".repeat(2048) } });
    refused(
        &post(a, "/e/key-1", &big).await,
        400,
        "event 0: event `x` is",
    );
    refused(
        &post(a, "/e/key-1", &big).await,
        400,
        "over the limit of 1024 bytes",
    );

    // Keys.
    refused(
        &post(a, "/e/key-2", &signup("x")).await,
        401,
        "unknown event key",
    );
    refused(&post(a, "/e/", &signup("x")).await, 401, "no event key");
    refused(
        &post(a, "/e/key-1x", &signup("x")).await,
        401,
        "unknown event key",
    );

    // Sizes: the body limit, and events per request.
    let huge = json!([{ "name": "x", "data": { "blob": "x".repeat(70 * 1024) } }]);
    refused(
        &post(a, "/e/key-1", &huge).await,
        413,
        "over the limit of 65536 bytes",
    );
    let many = Value::Array(vec![
        json!({ "name": "x" });
        fanfare::http::MAX_EVENTS_PER_REQUEST + 1
    ]);
    refused(
        &post(a, "/e/key-1", &many).await,
        413,
        "5001 events in one request",
    );

    // What axum answers: an unknown path, a wrong method.
    assert_eq!(post(a, "/nowhere", &json!({})).await.status, 404);
    assert_eq!(request(a, "GET", "/e/key-1", &[], "").await.status, 405);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_are_valid_at_once_for_a_rotation() {
    let rt = Store::Memory
        .fast()
        .http("127.0.0.1:0")
        .event_key("old-key")
        .event_key("new-key")
        .start()
        .await
        .unwrap();
    for key in ["old-key", "new-key"] {
        let u = user(key);
        let answer = post(addr(&rt), &format!("/e/{key}"), &signup(&u)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        completed(&rt, answer.ids()[0]).await;
    }
    assert_eq!(
        post(addr(&rt), "/e/other-key", &signup("x")).await.status,
        401
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_need_an_event_key() {
    let err = Runtime::builder()
        .http("0.0.0.0:0")
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("without an event key"), "{err}");
    assert!(
        err.to_string()
            .contains("help: set a key with `.event_key(…)`"),
        "{err}"
    );

    let rt = Runtime::builder()
        .http("0.0.0.0:0")
        .event_key("k")
        .start()
        .await
        .unwrap();
    assert!(rt.http_addr().unwrap().ip().is_unspecified());
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = taken.local_addr().unwrap().to_string();
    let err = Runtime::builder().http(&at).start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen on {at}: ")),
        "{err}"
    );
    let err = Runtime::builder()
        .http("no-port")
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid HTTP address \"no-port\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_the_store_does() {
    let rt = Store::Sqlite.builder().start().await.unwrap();
    // Mounted in an app of the user's.
    let app = axum::Router::new().nest("/fanfare", fanfare::http::router(&rt));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ok = request(a, "GET", "/fanfare/health", &[], "").await;
    assert_eq!(
        (ok.status, ok.body.clone()),
        (200, json!({ "status": "ok" }))
    );
    rt.shutdown().await.unwrap();
    let down = request(a, "GET", "/fanfare/health", &[], "").await;
    assert_eq!(down.status, 503, "{down:?}");
    assert!(
        down.body["error"].as_str().unwrap().contains("shut down"),
        "{down:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_router_needs_a_key_it_was_given() {
    let open = Store::Memory.builder().start().await.unwrap();
    let keyed = Store::Memory.fast().event_key("k1").start().await.unwrap();
    let app = axum::Router::new()
        .nest("/open", fanfare::http::router(&open))
        .nest("/keyed", fanfare::http::router(&keyed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let refused = post(a, "/open/e/anything", &signup("x")).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused.error().contains("no event key is configured"),
        "{refused:?}"
    );
    let u = user("mounted");
    let answer = post(a, "/keyed/e/k1", &signup(&u)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    completed(&keyed, answer.ids()[0]).await;
    assert_eq!(hits(format!("welcome:{u}")), 1);
    open.shutdown().await.unwrap();
    keyed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let rt = Store::Memory
        .builder()
        .http("127.0.0.1:0")
        .http_read_timeout(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    // Headers that never end: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(addr(&rt)).await.unwrap();
    slow.write_all(b"POST /e/k HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    timeout(LIMIT, slow.read_to_end(&mut rest))
        .await
        .expect("the connection stayed open")
        .unwrap_or_default();
    // A body that never ends: 408.
    let mut slow = tokio::net::TcpStream::connect(addr(&rt)).await.unwrap();
    slow.write_all(b"POST /e/k HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"name\"")
        .await
        .unwrap();
    let mut answer = vec![0; 1024];
    let n = timeout(LIMIT, slow.read(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 200ms"), "{answer}");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_server() {
    let rt = Store::Memory
        .fast()
        .http("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let a = addr(&rt);
    let u = user("before");
    let answer = post(a, "/e/k", &signup(&u)).await;
    completed(&rt, answer.ids()[0]).await;
    assert_eq!(request(a, "GET", "/health", &[], "").await.status, 200);
    rt.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(a).await.is_err(),
        "still listening"
    );
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "http/trial.started")]
struct TrialStarted {
    user: String,
}

#[function(
    trigger = "http/trial.started",
    cancel_on(event = "http/trial.ended", matching = "user")
)]
async fn http_trial_reminder(ctx: Ctx<TrialStarted>) -> fanfare::Result<()> {
    common::hit(format!("reminder:{}", ctx.event().user));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_a_batch_cancels_the_runs_it_matches() {
    let rt = Store::Memory
        .fast()
        .http("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let (ends, stays) = (user("ends"), user("stays"));
    let in_an_hour = now_ms() + 3_600_000;
    let started =
        |u: &str| json!({ "name": "http/trial.started", "data": { "user": u }, "ts": in_an_hour });
    let answer = post(addr(&rt), "/e/k", &json!([started(&ends), started(&stays)])).await;
    let [ends_id, stays_id] = answer.ids()[..] else {
        panic!("{answer:?}")
    };
    // The cancelling event is the second of a batch; it is applied before the answer.
    let ended = json!({ "name": "http/trial.ended", "data": { "user": ends } });
    let answer = post(addr(&rt), "/e/k", &json!([signup(&user("other")), ended])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let runs = rt.runs(ends_id).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Cancelled, "{runs:?}");
    let runs = rt.runs(stays_id).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Queued, "{runs:?}");
    rt.shutdown().await.unwrap();
}
