//! Start and shutdown: running attempts finish or are released, nothing is claimed after.
//! Conformance: every test runs against every store.

mod common;

use common::{gate, Store, LIMIT};
use fanfare::{function, Ctx, ErrorKind, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::future::Future as _;
use std::time::{Duration, Instant};
use tokio::time::timeout;

conformance!(
    shutdown_lets_running_attempts_finish_and_refuses_new_sends,
    shutdown_releases_runs_that_outlive_the_timeout,
);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/held")]
struct Held {
    gate: String,
}

/// No function subscribes to it: probing sends creates no runs.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/probe")]
struct Probe;

/// Starts, then waits at its gate until the test opens it.
#[function(trigger = "test/held")]
async fn held(ctx: Ctx<Held>) -> fanfare::Result<()> {
    let gate = gate(&ctx.event().gate);
    gate.started.notify_one();
    gate.release.acquire().await.unwrap().forget();
    Ok(())
}

/// The runs of an event once `rt` is shut down. The memory store stays readable; a
/// durable store is closed by shutdown (`rt` says so), and a new runtime on the same
/// database, in this same process while `rt` is still alive, reads them.
async fn runs_after_shutdown(
    store: Store,
    builder: fanfare::Builder,
    rt: &Runtime,
    id: fanfare::EventId,
) -> Vec<fanfare::RunInfo> {
    if store == Store::Memory {
        return rt.runs(id).await.unwrap();
    }
    let err = rt.runs(id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShutDown, "{err}");
    assert!(err.to_string().contains("store is closed"), "{err}");
    let again = builder.execute(false).start().await.unwrap();
    let runs = again.runs(id).await.unwrap();
    again.shutdown().await.unwrap();
    runs
}

async fn shutdown_lets_running_attempts_finish_and_refuses_new_sends(store: Store) {
    let key = format!("finish {}", store.name());
    let builder = store.builder();
    let rt = builder.clone().start().await.unwrap();
    let id = rt.send(Held { gate: key.clone() }).await.unwrap();
    timeout(LIMIT, gate(&key).started.notified()).await.unwrap();

    let stopping = tokio::spawn({
        let rt = rt.clone();
        async move { rt.shutdown().await }
    });
    // Once shutdown has begun, sends are refused.
    let refused = timeout(LIMIT, async {
        loop {
            match rt.send(Probe).await {
                Err(e) => break e,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(refused.kind(), ErrorKind::ShutDown);
    assert!(refused.to_string().contains("shut down"), "{refused}");

    // The running attempt is still allowed to finish, and its outcome is stored.
    gate(&key).release.add_permits(1);
    timeout(LIMIT, stopping).await.unwrap().unwrap().unwrap();
    let runs = runs_after_shutdown(store, builder, &rt, id).await;
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 1)
    );

    // A second shutdown is a no-op.
    rt.shutdown().await.unwrap();
}

async fn shutdown_releases_runs_that_outlive_the_timeout(store: Store) {
    let key = format!("stuck {}", store.name());
    let builder = store.builder().shutdown_timeout(Duration::from_millis(100));
    let rt = builder.clone().start().await.unwrap();
    let id = rt.send(Held { gate: key.clone() }).await.unwrap();
    timeout(LIMIT, gate(&key).started.notified()).await.unwrap();
    assert_eq!(rt.runs(id).await.unwrap()[0].status, RunStatus::Running);

    let began = Instant::now();
    timeout(LIMIT, rt.shutdown()).await.unwrap().unwrap();
    assert!(began.elapsed() >= Duration::from_millis(100));

    // Back in the queue, the interrupted attempt not counted.
    let runs = runs_after_shutdown(store, builder, &rt, id).await;
    assert_eq!((runs[0].status, runs[0].attempts), (RunStatus::Queued, 0));
    let err = rt.wait(id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShutDown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_outside_tokio_is_refused() {
    // A future polled by something other than tokio: here, a bare executor loop.
    let result = std::thread::spawn(|| {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(Runtime::builder().start());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r.map(|_| ()),
            std::task::Poll::Pending => panic!("start should answer at once"),
        }
    })
    .join()
    .unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("within a tokio runtime"), "{err}");
}
