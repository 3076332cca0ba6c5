//! The server [`Builder::http`](crate::Builder::http) starts: binding (loopback only
//! without an event key), serving HTTP/1 with bounded header reads, and stopping
//! gracefully on [`Runtime::shutdown`](crate::Runtime::shutdown).

use crate::error::{Error, ErrorKind, Result};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server: stopped by [`Server::stop`].
pub(crate) struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Listens on `addr` (`host:port`). Without an event key (`open`), only a loopback
/// address is allowed: anyone who reaches the server could send events.
pub(crate) async fn bind(addr: &str, has_event_key: bool) -> Result<TcpListener> {
    let config = |message: std::fmt::Arguments<'_>| Error::new(ErrorKind::Config, message);
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(addr).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            return Err(config(format_args!(
                "invalid HTTP address {addr:?}: {e}\nhelp: `Builder::http` takes `host:port`, such as \"127.0.0.1:8288\""
            ))
            .with_source(e))
        }
    };
    if !has_event_key {
        if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(config(format_args!(
                "refusing to serve the event API on {open} without an event key: anyone who reaches it could send events\n\
                 help: set a key with `.event_key(…)` (from a secret such as FANFARE_EVENT_KEY), or listen on loopback only, such as \"127.0.0.1:8288\""
            )));
        }
    }
    let mut last = None;
    for a in &addrs {
        match TcpListener::bind(a).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((a, e)),
        }
    }
    Err(match last {
        Some((a, e)) => config(format_args!(
            "cannot listen on {a}: {e}\nhelp: another process may listen there; choose another port with `Builder::http` (port 0 picks a free one)"
        ))
        .with_source(e),
        None => config(format_args!(
            "HTTP address {addr:?} resolves to no address\nhelp: `Builder::http` takes `host:port`, such as \"127.0.0.1:8288\""
        )),
    })
}

impl Server {
    /// Serves `router` on `listener` in a task of its own. A client gets `read_timeout`
    /// to send a request's headers (its body is bounded by the handlers).
    pub fn spawn(listener: TcpListener, router: Router, read_timeout: Duration) -> Server {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, router, read_timeout, stopped));
        Server { stop, task }
    }

    /// Stops accepting connections, lets requests in progress finish for up to
    /// `timeout`, then drops the connections left.
    pub async fn stop(self, timeout: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            tracing::warn!("fanfare: HTTP requests still running at shutdown were dropped");
            task.abort();
        }
    }

    /// Stops at once, without waiting (the runtime was dropped).
    pub fn abort(&self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    router: Router,
    read_timeout: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    let mut accept_errors = 0u32;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_errors = 0;
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors, a connection reset before it was
                    // accepted: wait a little, and go on.
                    accept_errors = (accept_errors + 1).min(10);
                    tracing::warn!(error = %e, "fanfare: accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(5 << accept_errors)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "fanfare: HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    // Idle connections close at once, busy ones after their request.
    graceful.shutdown().await;
}
