//! Trace context: a run's span is linked to the span that sent its event — through the
//! HTTP API's `traceparent` header, `SendOptions::traceparent`, `ctx.send` from a run,
//! and the inject hook of a process that only sends, on another process's store.

mod common;

use common::http::request;
use common::{hits, Store, LIMIT};
use fanfare::{function, Ctx, Event, EventId, RunStatus, Runtime, SendOptions, TraceParent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::timeout;

conformance!(
    a_traceparent_header_reaches_every_run_of_the_fan_out,
    an_invalid_traceparent_is_ignored_in_the_header_and_refused_in_an_event,
    ctx_send_carries_the_runs_context,
);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "trace/signup")]
struct Signup {
    tag: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "trace/first")]
struct First {
    tag: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "trace/second")]
struct Second {
    tag: String,
}

fn shown(tp: Option<TraceParent>) -> String {
    tp.map_or_else(|| "none".to_owned(), |tp| tp.to_string())
}

#[function(trigger = "trace/signup")]
async fn trace_welcome(ctx: Ctx<Signup>) -> fanfare::Result<()> {
    common::hit(format!(
        "welcome:{}:{}",
        ctx.event().tag,
        shown(ctx.traceparent())
    ));
    Ok(())
}

#[function(trigger = "trace/signup")]
async fn trace_crm(ctx: Ctx<Signup>) -> fanfare::Result<()> {
    common::hit(format!(
        "crm:{}:{}",
        ctx.event().tag,
        shown(ctx.traceparent())
    ));
    Ok(())
}

#[function(trigger = "trace/first")]
async fn trace_forward(ctx: Ctx<First>) -> fanfare::Result<()> {
    let tag = ctx.event().tag.clone();
    ctx.send("forward", Second { tag }).await?;
    Ok(())
}

#[function(trigger = "trace/second")]
async fn trace_second(ctx: Ctx<Second>) -> fanfare::Result<()> {
    common::hit(format!(
        "second:{}:{}",
        ctx.event().tag,
        shown(ctx.traceparent())
    ));
    Ok(())
}

/// The extract hook: counts each call by the span's name and the context it was given.
fn extract(span: &tracing::Span, traceparent: &str) {
    let name = span.metadata().map_or("none", |m| m.name());
    common::hit(format!("extract:{name}:{traceparent}"));
}

/// A subscriber, as a traced application has: without one, spans are disabled and
/// carry nothing.
fn subscribe() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
}

/// A traceparent no other test uses.
fn new_traceparent() -> String {
    format!(
        "00-{:032x}-{:016x}-01",
        fastrand::u128(1..),
        fastrand::u64(1..)
    )
}

fn tag(what: &str) -> String {
    format!("{what}-{:016x}", fastrand::u64(..))
}

/// Waits until every run of `id` completed; returns how many there were.
async fn completed(rt: &Runtime, id: EventId) -> usize {
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    runs.len()
}

async fn post(
    rt: &Runtime,
    traceparent: Option<&str>,
    event: serde_json::Value,
) -> common::http::Answer {
    let addr = rt.http_addr().expect("the runtime serves HTTP");
    let headers: Vec<(&str, &str)> = traceparent
        .map(|tp| ("traceparent", tp))
        .into_iter()
        .collect();
    request(addr, "POST", "/e/key", &headers, event.to_string()).await
}

async fn a_traceparent_header_reaches_every_run_of_the_fan_out(store: Store) {
    subscribe();
    let rt = store
        .fast()
        .http("127.0.0.1:0")
        .trace_extract(extract)
        .start()
        .await
        .unwrap();
    let tp = new_traceparent();
    let tag = tag("fanout");
    let answer = post(
        &rt,
        Some(&tp),
        json!({ "name": "trace/signup", "data": { "tag": tag } }),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(completed(&rt, answer.ids()[0]).await, 2);
    // Each run's span was handed to the hook with the sender's context, and the
    // functions see it.
    assert_eq!(hits(format!("extract:fanfare.run:{tp}")), 2);
    assert_eq!(hits(format!("welcome:{tag}:{tp}")), 1);
    assert_eq!(hits(format!("crm:{tag}:{tp}")), 1);

    // An event's own field is over the header.
    let own = new_traceparent();
    let tag = self::tag("own");
    let answer = post(
        &rt,
        Some(&tp),
        json!([{ "name": "trace/signup", "data": { "tag": tag }, "traceparent": own },
               { "name": "trace/signup", "data": { "tag": tag } }]),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    for id in answer.ids() {
        assert_eq!(completed(&rt, id).await, 2);
    }
    assert_eq!(hits(format!("welcome:{tag}:{own}")), 1);
    assert_eq!(hits(format!("welcome:{tag}:{tp}")), 1);
    assert_eq!(hits(format!("extract:fanfare.run:{own}")), 2);
    rt.shutdown().await.unwrap();
}

async fn an_invalid_traceparent_is_ignored_in_the_header_and_refused_in_an_event(store: Store) {
    let rt = store
        .fast()
        .http("127.0.0.1:0")
        .trace_extract(extract)
        .start()
        .await
        .unwrap();
    // Uppercase hex is not W3C: the header is ignored, the event stored without it.
    let upper = new_traceparent().to_uppercase();
    let tag = tag("invalid");
    let answer = post(
        &rt,
        Some(&upper),
        json!({ "name": "trace/signup", "data": { "tag": tag } }),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(completed(&rt, answer.ids()[0]).await, 2);
    assert_eq!(hits(format!("welcome:{tag}:none")), 1);
    assert_eq!(hits(format!("extract:fanfare.run:{upper}")), 0);

    // In an event, where fanfare's own API asked for it, it is refused.
    let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let answer = post(
        &rt,
        None,
        json!([{ "name": "trace/signup", "data": { "tag": tag } },
               { "name": "trace/signup", "data": { "tag": tag }, "traceparent": zero }]),
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.error().starts_with("event 1: `traceparent`"),
        "{}",
        answer.error()
    );
    rt.shutdown().await.unwrap();
}

async fn ctx_send_carries_the_runs_context(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let tp = new_traceparent();
    let tag = tag("chain");
    let options = SendOptions::new().traceparent(tp.parse().unwrap());
    rt.send_with(First { tag: tag.clone() }, options)
        .await
        .unwrap();
    common::until("the chained run ran", async || {
        hits(format!("second:{tag}:{tp}")) == 1
    })
    .await;
    rt.shutdown().await.unwrap();
}

/// The context a process that only sends reads at each send.
const KNOWN: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn inject_known() -> Option<String> {
    Some(KNOWN.to_owned())
}

/// Two runtimes on one schema: one sends with an inject hook, the other executes; the
/// context travels through the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_links_runs_to_a_send_of_another_process() {
    if !common::postgres_ready().await {
        return;
    }
    subscribe();
    let url = common::postgres_schema();
    let worker = Runtime::builder()
        .postgres(&url)
        .trace_extract(extract)
        .start()
        .await
        .unwrap();
    let sender = Runtime::builder()
        .postgres(&url)
        .execute(false)
        .trace_inject(inject_known)
        .start()
        .await
        .unwrap();
    let tag = tag("across");
    let id = sender.send(Signup { tag: tag.clone() }).await.unwrap();
    assert_eq!(completed(&worker, id).await, 2);
    assert_eq!(hits(format!("welcome:{tag}:{KNOWN}")), 1);
    assert_eq!(hits(format!("crm:{tag}:{KNOWN}")), 1);
    assert_eq!(hits(format!("extract:fanfare.run:{KNOWN}")), 2);
    sender.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
}
