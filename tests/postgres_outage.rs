//! The database goes away while a runtime runs: sends fail with a clear error, workers
//! reconnect when it is back, and no accepted event loses a run.
//!
//! The outage is a TCP proxy between the runtime and PostgreSQL that the test cuts (every
//! connection dropped, new ones refused) and restores on the same port, so the shared
//! server keeps serving the other tests.

mod common;

use common::{hit, hits, postgres_ready, postgres_schema, LIMIT};
use fanfare::{function, Backoff, Ctx, ErrorKind, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Forwards a local port to PostgreSQL until cut.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Proxy {
            addr,
            upstream,
            tasks: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream;
        self.tasks = Some(tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    break;
                };
                conns.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Drops every connection and stops listening: the database is unreachable.
    async fn cut(&mut self) {
        if let Some(task) = self.tasks.take() {
            task.abort();
            let _ = task.await; // the JoinSet of connections is dropped with it
        }
    }

    /// Listens again on the same port.
    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/outage")]
struct Job {
    n: u32,
}

#[function(trigger = "test/outage")]
async fn job(ctx: Ctx<Job>) -> fanfare::Result<u32> {
    hit(format!("job {}", ctx.event_id()));
    tokio::time::sleep(Duration::from_millis(30)).await;
    Ok(ctx.event().n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_sends_clearly_and_loses_no_accepted_run() {
    if !postgres_ready().await {
        return;
    }
    let direct = postgres_schema();
    let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let mut proxy = Proxy::start(upstream).await;
    let url = direct.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    assert_ne!(
        url, direct,
        "the test server must be 127.0.0.1:5432 for this test"
    );
    let rt = Runtime::builder()
        .postgres(&url)
        .concurrency(4)
        .lease(Duration::from_secs(2))
        .backoff(Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .start()
        .await
        .unwrap();

    // Work in flight when the database goes away.
    let mut accepted = Vec::new();
    for n in 0..40 {
        accepted.push(rt.send(Job { n }).await.unwrap());
    }
    // Cut as soon as runs execute: 40 runs of 30 ms, 4 at a time, cannot all be done.
    timeout(LIMIT, async {
        while !accepted.iter().any(|id| hits(format!("job {id}")) > 0) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("no run started");
    proxy.cut().await;

    // Sends fail, clearly, and quickly.
    let err = timeout(LIMIT, rt.send(Job { n: 999 }))
        .await
        .expect("send hung during the outage")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let msg = err.to_string();
    assert!(msg.contains("PostgreSQL 127.0.0.1:"), "{msg}");

    // The outage lasts a moment; then the database comes back, and workers reconnect
    // and finish every accepted event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore().await;
    for id in &accepted {
        let runs = timeout(LIMIT, rt.wait(*id)).await.unwrap().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Completed, "{runs:?}");
        assert!(hits(format!("job {id}")) >= 1);
    }
    // And sending works again.
    let id = rt.send(Job { n: 1000 }).await.unwrap();
    let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
    assert_eq!(runs[0].output, Some(serde_json::json!(1000)));
    rt.shutdown().await.unwrap();
}
