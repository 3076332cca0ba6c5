//! Start and shutdown: running attempts finish or are released, nothing is claimed after.

use fanfare::{function, Ctx, ErrorKind, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/held")]
struct Held;

static HELD_STARTED: Notify = Notify::const_new();
static HELD_GATE: Semaphore = Semaphore::const_new(0);
static HELD_FINISHED: AtomicU32 = AtomicU32::new(0);

#[function(trigger = "test/held")]
async fn held(_: Ctx<Held>) -> fanfare::Result<()> {
    HELD_STARTED.notify_one();
    HELD_GATE.acquire().await.unwrap().forget();
    HELD_FINISHED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_attempts_finish_and_refuses_new_sends() {
    let rt = Runtime::builder().start().await.unwrap();
    let id = rt.send(Held).await.unwrap();
    timeout(LIMIT, HELD_STARTED.notified()).await.unwrap();

    let stopping = tokio::spawn({
        let rt = rt.clone();
        async move { rt.shutdown().await }
    });
    // Once shutdown has begun, sends are refused.
    let refused = timeout(LIMIT, async {
        loop {
            match rt.send(Held).await {
                Err(e) => break e,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(refused.kind(), ErrorKind::ShutDown);
    assert!(refused.to_string().contains("shut down"), "{refused}");

    // The running attempt is still allowed to finish.
    HELD_GATE.add_permits(1);
    timeout(LIMIT, stopping).await.unwrap().unwrap().unwrap();
    assert_eq!(HELD_FINISHED.load(Ordering::SeqCst), 1);
    let runs = rt.runs(id).await.unwrap();
    assert_eq!(
        (runs[0].status, runs[0].attempts),
        (RunStatus::Completed, 1)
    );

    // A second shutdown is a no-op.
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/stuck")]
struct Stuck;

static STUCK_STARTED: Notify = Notify::const_new();

#[function(trigger = "test/stuck")]
async fn stuck(_: Ctx<Stuck>) -> fanfare::Result<()> {
    STUCK_STARTED.notify_one();
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_runs_that_outlive_the_timeout() {
    let rt = Runtime::builder()
        .shutdown_timeout(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let id = rt.send(Stuck).await.unwrap();
    timeout(LIMIT, STUCK_STARTED.notified()).await.unwrap();
    assert_eq!(rt.runs(id).await.unwrap()[0].status, RunStatus::Running);

    let began = Instant::now();
    timeout(LIMIT, rt.shutdown()).await.unwrap().unwrap();
    assert!(began.elapsed() >= Duration::from_millis(100));

    // Back in the queue, the interrupted attempt not counted.
    let runs = rt.runs(id).await.unwrap();
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

use std::future::Future as _;
