//! Reading one run by its id (`Runtime::run`): the same run `Runtime::runs` lists for
//! its event, whatever its status; an unknown id is `RunNotFound`. Conformance: every
//! test runs against every store.

mod common;

use common::{finished, run_of, until_status, Store};
use fanfare::{function, Ctx, Error, ErrorKind, Event, RunId, RunStatus};
use serde::{Deserialize, Serialize};
use std::time::Duration;

conformance!(
    a_run_read_by_id_is_the_run_listed_for_its_event,
    an_unknown_run_id_is_not_found,
);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "inspect/job")]
struct Job {
    /// "ok", "fail" or "sleep".
    how: String,
}

#[function(trigger = "inspect/job", retries = 1)]
async fn job(ctx: Ctx<Job>) -> fanfare::Result<u32> {
    let n = ctx.step("count", || async { Ok::<_, Error>(3) }).await?;
    match ctx.event().how.as_str() {
        "fail" => Err(Error::non_retriable("no such account")),
        "sleep" => {
            ctx.sleep("later", Duration::from_secs(3600)).await?;
            Ok(n)
        }
        _ => Ok(n),
    }
}

async fn a_run_read_by_id_is_the_run_listed_for_its_event(store: Store) {
    let rt = store.fast().start().await.unwrap();
    for (how, status) in [
        ("ok", RunStatus::Completed),
        ("fail", RunStatus::Failed),
        ("sleep", RunStatus::Sleeping),
    ] {
        let id = rt.send(Job { how: how.into() }).await.unwrap();
        let listed = if status == RunStatus::Sleeping {
            until_status(&rt, id, status).await;
            run_of(&rt, id).await
        } else {
            finished(&rt, id).await
        };
        assert_eq!(listed.status, status, "{listed:?}");
        let read = rt.run(listed.run_id).await.unwrap();
        assert_eq!(read, listed);
        assert_eq!(read.event_id, id);
        assert_eq!(read.function_id, "job");
        assert_eq!(read.steps[0].id, "count");
    }
    rt.shutdown().await.unwrap();
}

async fn an_unknown_run_id_is_not_found(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let hex = format!("{:032x}", fastrand::u128(..));
    let unknown: RunId = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
    .parse()
    .unwrap();
    let err = rt.run(unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RunNotFound, "{err}");
    assert!(err.to_string().contains(&unknown.to_string()), "{err}");
    rt.shutdown().await.unwrap();
}
