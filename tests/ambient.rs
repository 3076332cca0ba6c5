//! `fanfare::send`: the ambient runtime. Its own test binary, so no other test's runtime
//! is ambient.

use fanfare::{function, Ctx, ErrorKind, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::timeout;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/ambient")]
struct Ping {
    n: u32,
}

#[function(trigger = "test/ambient")]
async fn pong(ctx: Ctx<Ping>) -> fanfare::Result<u32> {
    Ok(ctx.event().n + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambient_send_uses_the_running_runtime_and_fails_clearly_without_one() {
    let err = fanfare::send(Ping { n: 0 }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRuntime);
    assert!(
        err.to_string().contains("no fanfare runtime is running"),
        "{err}"
    );

    let rt = Runtime::builder().start().await.unwrap();
    let id = fanfare::send(Ping { n: 41 }).await.unwrap();
    let runs = timeout(Duration::from_secs(10), rt.wait(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].output, Some(serde_json::json!(42)));

    // From a spawned task too: request handlers do this.
    let id = tokio::spawn(fanfare::send(Ping { n: 1 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rt.wait(id).await.unwrap()[0].output,
        Some(serde_json::json!(2))
    );

    rt.shutdown().await.unwrap();
    let err = fanfare::send(Ping { n: 0 }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShutDown);

    // Once every handle is gone, there is no ambient runtime.
    drop(rt);
    let err = fanfare::send(Ping { n: 0 }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRuntime);
}
