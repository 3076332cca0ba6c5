//! The HTTP event API's cost: events/s accepted by `POST /e/{key}` (answered `200`, so
//! stored with their run), from 64 concurrent keep-alive clients, against the same
//! requests answered by a bare axum handler that only parses the JSON body (the
//! ceiling of HTTP and JSON on this machine). Single events, and batches of 100; on the
//! memory and SQLite stores. Clients run in the same process in both cases; fanfare also
//! executes the runs it accepts (one trivial function per event), the bare handler
//! nothing. The median of 3 alternated rounds of each.

use crate::{temp_db, ROUNDS};
use bytes::Bytes;
use fanfare::{function, Ctx, Event, Runtime};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Concurrent clients, each with one keep-alive connection.
const CLIENTS: u64 = 64;

/// Events per batch request.
const BATCH: u64 = 100;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/http")]
struct Posted {
    n: u64,
}

#[function(trigger = "bench/http")]
async fn posted(ctx: Ctx<Posted>) -> fanfare::Result<()> {
    std::hint::black_box(ctx.event().n);
    Ok(())
}

/// The body of request `r`: one event, or `batch` of them.
fn body(r: u64, batch: u64) -> Bytes {
    let event = |n: u64| format!(r#"{{"name":"bench/http","data":{{"n":{n},"user":"u-{n}"}}}}"#);
    if batch == 1 {
        return event(r).into();
    }
    let events: Vec<String> = (r * batch..(r + 1) * batch).map(event).collect();
    format!("[{}]", events.join(",")).into()
}

/// Posts `requests` requests from `CLIENTS` keep-alive connections; returns the time
/// they took.
async fn post_all(addr: SocketAddr, requests: u64, batch: u64) -> Duration {
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(conn);
                for r in (c..requests).step_by(CLIENTS as usize) {
                    let req = hyper::Request::post("/e/bench-key")
                        .header("host", "127.0.0.1")
                        .header("content-type", "application/json")
                        .body(Full::new(body(r, batch)))
                        .expect("request");
                    sender.ready().await.expect("connection closed");
                    let res = sender.send_request(req).await.expect("no answer");
                    let status = res.status();
                    let answer = res.into_body().collect().await.expect("body").to_bytes();
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client panicked");
    }
    start.elapsed()
}

/// A bare axum server that parses each body as JSON and answers `200`.
async fn ceiling_server() -> SocketAddr {
    async fn parse_only(body: Bytes) -> axum::Json<serde_json::Value> {
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("bad JSON");
        std::hint::black_box(&parsed);
        axum::Json(serde_json::json!({ "ids": [], "status": 200 }))
    }
    let app = axum::Router::new().route("/e/{key}", axum::routing::post(parse_only));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Events/s accepted by fanfare's server on a fresh runtime of `builder`.
async fn fanfare_rate(
    builder: fanfare::Builder,
    requests: u64,
    batch: u64,
) -> fanfare::Result<f64> {
    let rt: Runtime = builder
        .http("127.0.0.1:0")
        .event_key("bench-key")
        .start()
        .await?;
    let addr = rt.http_addr().expect("listening");
    let took = post_all(addr, requests, batch).await;
    rt.shutdown().await?;
    Ok((requests * batch) as f64 / took.as_secs_f64())
}

/// The median of a few rates.
fn middle(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

pub(crate) async fn run(requests: u64, sqlite_requests: u64) -> fanfare::Result<()> {
    let ceiling = ceiling_server().await;
    // Warm up both paths.
    post_all(ceiling, requests / 10, 1).await;
    fanfare_rate(Runtime::builder(), requests / 10, 1).await?;

    for (batch, requests, sqlite_requests) in [
        (1, requests, sqlite_requests),
        (BATCH, requests / BATCH * 2, sqlite_requests / BATCH * 2),
    ] {
        let what = if batch == 1 {
            "single events".to_owned()
        } else {
            format!("batches of {batch}")
        };
        // Alternated rounds, the median of each: neither side gains from going first.
        let (mut bares, mut memories, mut sqlites) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let took = post_all(ceiling, requests, batch).await;
            bares.push((requests * batch) as f64 / took.as_secs_f64());
            memories.push(fanfare_rate(Runtime::builder(), requests, batch).await?);
            let sqlite = Runtime::builder().sqlite(temp_db("http"));
            sqlites.push(fanfare_rate(sqlite, sqlite_requests, batch).await?);
        }
        let (bare, memory, sqlite) = (middle(bares), middle(memories), middle(sqlites));
        println!("HTTP POST /e/{{key}}: events accepted/s, {what}, {CLIENTS} keep-alive clients");
        println!("  bare axum handler (parse only)    {bare:>10.0}");
        println!(
            "  fanfare, memory store             {memory:>10.0}   ratio {:.2}{}",
            memory / bare,
            if batch == 1 {
                "   (target >= 0.50)"
            } else {
                ""
            }
        );
        println!(
            "  fanfare, SQLite store (FULL)      {sqlite:>10.0}   ratio {:.2}\n",
            sqlite / bare
        );
    }
    Ok(())
}
