//! Looking through runs and acting on them: one run by its id (`Runtime::run`), pages of
//! runs by status, function, event and time (`Runtime::list_runs`), replay of one run
//! and of every run a filter selects, and bulk cancel. Conformance: every test runs
//! against every store.

mod common;

use common::{finished, hit, run_of, until, until_status, Store};
use fanfare::{function, Ctx, Error, ErrorKind, Event, RunFilter, RunId, RunStatus, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

conformance!(
    a_run_read_by_id_is_the_run_listed_for_its_event,
    an_unknown_run_id_is_not_found,
    runs_are_listed_newest_first_by_status_function_event_and_time,
    pages_follow_each_other_without_gaps_or_repeats,
    a_replayed_run_runs_again_from_scratch_and_the_original_stays,
    only_finished_runs_are_replayed,
    replaying_a_filter_replays_every_failed_run_of_a_function,
    cancelling_a_filter_cancels_the_runs_that_have_not_finished,
    functions_count_their_runs_by_status,
    a_waiting_run_shows_what_it_waits_for,
    a_run_keeps_each_failed_attempt_with_its_error_and_timing,
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

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "inspect/charge")]
struct Charge {
    /// A key of the test's own; the first run of each key fails, later ones complete.
    key: String,
}

#[function(trigger = "inspect/charge", retries = 0)]
async fn charge(ctx: Ctx<Charge>) -> fanfare::Result<String> {
    let steps = ctx
        .step("attempt", || async {
            Ok::<_, Error>(hit(&ctx.event().key))
        })
        .await?;
    if steps == 1 {
        return Err(Error::msg("card service down"));
    }
    Ok(ctx.event().key.clone())
}

/// A key no other test run uses.
fn key(store: Store, tag: &str) -> String {
    format!("{}-{tag}-{:08x}", store.name(), fastrand::u32(..))
}

/// Every page of `filter`'s runs.
async fn all(rt: &Runtime, filter: RunFilter) -> Vec<fanfare::RunInfo> {
    let mut runs = Vec::new();
    let mut filter = filter;
    loop {
        let page = rt.list_runs(&filter).await.unwrap();
        runs.extend(page.runs);
        match page.next {
            Some(next) => filter = filter.after(next),
            None => return runs,
        }
    }
}

async fn runs_are_listed_newest_first_by_status_function_event_and_time(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut events = Vec::new();
    for how in ["ok", "fail", "ok", "sleep", "ok"] {
        let id = rt.send(Job { how: how.into() }).await.unwrap();
        if how == "sleep" {
            until_status(&rt, id, RunStatus::Sleeping).await;
        } else {
            finished(&rt, id).await;
        }
        events.push(id);
    }
    let failing = key(store, "list");
    let charged = rt.send(Charge { key: failing }).await.unwrap();
    finished(&rt, charged).await;

    let every = rt.list_runs(&RunFilter::new()).await.unwrap();
    assert_eq!(every.runs.len(), 6, "{every:?}");
    assert_eq!(every.next, None);
    let charge = every
        .runs
        .iter()
        .find(|r| r.function_id == "charge")
        .unwrap();
    assert_eq!(charge.event_name, "inspect/charge");
    assert_eq!(charge.event_id, charged);
    let ids: Vec<RunId> = every.runs.iter().map(|r| r.run_id).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted);
    assert!(every
        .runs
        .windows(2)
        .all(|w| w[0].created_at_ms >= w[1].created_at_ms));

    let count = async |filter: RunFilter| rt.list_runs(&filter).await.unwrap().runs;
    let failed = count(RunFilter::new().status(RunStatus::Failed)).await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|r| r.status == RunStatus::Failed));
    let job_failed = count(RunFilter::new().status(RunStatus::Failed).function("job")).await;
    assert_eq!(job_failed.len(), 1);
    assert_eq!(job_failed[0].event_id, events[1]);
    assert_eq!(job_failed[0].last_error.as_deref(), Some("no such account"));
    let completed = count(
        RunFilter::new()
            .status(RunStatus::Completed)
            .function("job"),
    )
    .await;
    assert_eq!(completed.len(), 3);
    let sleeping = count(RunFilter::new().status(RunStatus::Sleeping)).await;
    assert_eq!(sleeping.len(), 1);
    assert_eq!(sleeping[0].event_id, events[3]);
    assert!(count(RunFilter::new().status(RunStatus::Queued))
        .await
        .is_empty());
    assert!(count(RunFilter::new().status(RunStatus::Cancelled))
        .await
        .is_empty());
    let of_event = count(RunFilter::new().event(events[2])).await;
    assert_eq!(of_event.len(), 1);
    assert_eq!(of_event[0].event_id, events[2]);
    assert!(count(RunFilter::new().function("no-such-function"))
        .await
        .is_empty());

    let later = SystemTime::now() + Duration::from_secs(5);
    assert_eq!(count(RunFilter::new().since(before)).await.len(), 6);
    assert!(count(RunFilter::new().since(later)).await.is_empty());
    assert!(count(RunFilter::new().until(before)).await.is_empty());
    assert_eq!(
        count(RunFilter::new().until(later).function("job"))
            .await
            .len(),
        5
    );
    rt.shutdown().await.unwrap();
}

async fn pages_follow_each_other_without_gaps_or_repeats(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let mut sent = Vec::new();
    for _ in 0..7 {
        let id = rt.send(Job { how: "ok".into() }).await.unwrap();
        finished(&rt, id).await;
        sent.push(id);
    }
    let first = rt
        .list_runs(&RunFilter::new().function("job").limit(3))
        .await
        .unwrap();
    assert_eq!(first.runs.len(), 3);
    assert_eq!(first.next, Some(first.runs[2].run_id));
    // A run created meanwhile does not shift the pages after the first: no run is
    // skipped or listed twice. (It comes later than the cursor, unless it was created in
    // the cursor's millisecond with a smaller id: then the next pages list it.)
    let late = rt.send(Job { how: "ok".into() }).await.unwrap();
    finished(&rt, late).await;
    let rest = all(
        &rt,
        RunFilter::new()
            .function("job")
            .limit(3)
            .after(first.next.unwrap()),
    )
    .await;
    let listed: Vec<_> = first.runs.iter().chain(&rest).collect();
    // Newest first: by run id, which sorts by creation time (to the millisecond).
    assert!(
        listed.windows(2).all(|w| w[0].run_id > w[1].run_id),
        "{listed:?}"
    );
    let events: HashSet<_> = listed
        .iter()
        .map(|r| r.event_id)
        .filter(|e| *e != late)
        .collect();
    assert_eq!(
        events,
        sent.into_iter().collect::<HashSet<_>>(),
        "every run"
    );
    let unique: HashSet<_> = listed.iter().map(|r| r.run_id).collect();
    assert_eq!(unique.len(), listed.len(), "once: {listed:?}");
    // Limits are brought between 1 and the largest page.
    let one = rt.list_runs(&RunFilter::new().limit(0)).await.unwrap();
    assert_eq!(one.runs.len(), 1);
    rt.shutdown().await.unwrap();
}

async fn a_replayed_run_runs_again_from_scratch_and_the_original_stays(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let key = key(store, "replay");
    let event = rt.send(Charge { key: key.clone() }).await.unwrap();
    let failed = finished(&rt, event).await;
    assert_eq!(failed.status, RunStatus::Failed);

    let replay = rt.replay(failed.run_id).await.unwrap();
    assert_ne!(replay, failed.run_id);
    until("the replay completes", async || {
        rt.run(replay).await.unwrap().status == RunStatus::Completed
    })
    .await;
    let again = rt.run(replay).await.unwrap();
    assert_eq!(again.replay_of, Some(failed.run_id));
    assert_eq!(again.output, Some(serde_json::json!(key)));
    assert_eq!(again.attempts, 1);
    // From scratch: its step ran again (the second hit), instead of the stored output.
    assert_eq!(hit(&key), 3);
    assert_eq!(again.event_id, event);
    let original = rt.run(failed.run_id).await.unwrap();
    assert_eq!(original, failed, "the original keeps its history");
    let runs = rt.runs(event).await.unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    rt.shutdown().await.unwrap();
}

async fn only_finished_runs_are_replayed(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let id = rt
        .send(Job {
            how: "sleep".into(),
        })
        .await
        .unwrap();
    until_status(&rt, id, RunStatus::Sleeping).await;
    let sleeping = run_of(&rt, id).await.run_id;
    let err = rt.replay(sleeping).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotReplayable, "{err}");
    assert!(
        err.to_string()
            .contains("has not finished (it is sleeping)"),
        "{err}"
    );
    assert_eq!(rt.runs(id).await.unwrap().len(), 1, "nothing queued");

    let unknown: RunId = "01900000-0000-7000-8000-000000000007".parse().unwrap();
    let err = rt.replay(unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RunNotFound, "{err}");

    // Cancelled, it can be replayed.
    assert_eq!(rt.cancel(sleeping).await.unwrap(), RunStatus::Cancelled);
    let replay = rt.replay(sleeping).await.unwrap();
    until("the replay sleeps", async || {
        rt.run(replay).await.unwrap().status == RunStatus::Sleeping
    })
    .await;
    rt.shutdown().await.unwrap();
}

async fn replaying_a_filter_replays_every_failed_run_of_a_function(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let mut keys = Vec::new();
    for i in 0..3 {
        let key = key(store, &format!("bulk{i}"));
        let id = rt.send(Charge { key: key.clone() }).await.unwrap();
        assert_eq!(finished(&rt, id).await.status, RunStatus::Failed);
        keys.push(key);
    }
    let ok = rt.send(Job { how: "fail".into() }).await.unwrap();
    finished(&rt, ok).await;

    let failed = RunFilter::new()
        .status(RunStatus::Failed)
        .function("charge")
        .limit(2);
    let replayed = rt.replay_matching(&failed).await.unwrap();
    assert_eq!(replayed.len(), 3, "every page: {replayed:?}");
    until("every replay completes", async || {
        let done = rt
            .list_runs(
                &RunFilter::new()
                    .status(RunStatus::Completed)
                    .function("charge"),
            )
            .await
            .unwrap();
        done.runs.len() == 3
    })
    .await;
    for new in replayed {
        let run = rt.run(new).await.unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert!(run.replay_of.is_some());
    }
    // The originals stay failed, and the other function's failure was not replayed.
    assert_eq!(all(&rt, failed).await.len(), 3);
    assert_eq!(rt.runs(ok).await.unwrap().len(), 1);
    rt.shutdown().await.unwrap();
}

async fn cancelling_a_filter_cancels_the_runs_that_have_not_finished(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let id = rt
            .send(Job {
                how: "sleep".into(),
            })
            .await
            .unwrap();
        until_status(&rt, id, RunStatus::Sleeping).await;
        sleepers.push(id);
    }
    let done = rt.send(Job { how: "ok".into() }).await.unwrap();
    finished(&rt, done).await;
    let cancelled = rt
        .cancel_matching(&RunFilter::new().function("job").limit(2))
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 3, "{cancelled:?}");
    for id in sleepers {
        assert_eq!(run_of(&rt, id).await.status, RunStatus::Cancelled);
    }
    assert_eq!(run_of(&rt, done).await.status, RunStatus::Completed);
    rt.shutdown().await.unwrap();
}

async fn functions_count_their_runs_by_status(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let before = rt.functions().await.unwrap();
    let job_info = before.iter().find(|f| f.id == "job").unwrap();
    assert_eq!(job_info.trigger.as_deref(), Some("inspect/job"));
    assert_eq!(job_info.cron, None);
    assert_eq!(job_info.counts.total(), 0);
    let mut sent = Vec::new();
    for how in ["ok", "fail", "fail", "sleep"] {
        sent.push((how, rt.send(Job { how: how.into() }).await.unwrap()));
    }
    for (how, id) in sent {
        if how == "sleep" {
            until_status(&rt, id, RunStatus::Sleeping).await;
        } else {
            finished(&rt, id).await;
        }
    }
    let functions = rt.functions().await.unwrap();
    let ids: Vec<&str> = functions.iter().map(|f| f.id.as_str()).collect();
    let registered: Vec<&str> = fanfare::functions().iter().map(|f| f.id()).collect();
    assert_eq!(ids, registered, "every registered function, in order");
    let counts = functions.iter().find(|f| f.id == "job").unwrap().counts;
    assert_eq!(counts.get(RunStatus::Completed), 1, "{counts:?}");
    assert_eq!(counts.get(RunStatus::Failed), 2, "{counts:?}");
    assert_eq!(counts.get(RunStatus::Sleeping), 1, "{counts:?}");
    assert_eq!(counts.get(RunStatus::Queued), 0, "{counts:?}");
    assert_eq!(counts.total(), 4);
    let others: u64 = functions
        .iter()
        .filter(|f| f.id != "job")
        .map(|f| f.counts.total())
        .sum();
    assert_eq!(others, 0, "runs are counted under their own function only");
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "inspect/ordered")]
struct Ordered {
    order_id: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "inspect/paid")]
struct Paid {
    order_id: u64,
}

#[function(trigger = "inspect/ordered")]
async fn await_paid(ctx: Ctx<Ordered>) -> fanfare::Result<bool> {
    let paid = ctx
        .wait_for_event::<Paid>("paid")
        .matching("order_id")
        .timeout(Duration::from_secs(3600))
        .await?;
    Ok(paid.is_some())
}

async fn a_waiting_run_shows_what_it_waits_for(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let order_id = fastrand::u64(1..1 << 40);
    let before = SystemTime::now();
    let id = rt.send(Ordered { order_id }).await.unwrap();
    until_status(&rt, id, RunStatus::Waiting).await;
    let run = run_of(&rt, id).await;
    let waiting = run.waiting_for.clone().expect("what the run waits for");
    assert_eq!(waiting.event, "inspect/paid");
    assert_eq!(
        waiting.matching,
        Some(("order_id".to_owned(), serde_json::json!(order_id)))
    );
    let in_an_hour = before + Duration::from_secs(3600);
    let at = std::time::UNIX_EPOCH + Duration::from_millis(waiting.timeout_at_ms);
    assert!(at >= in_an_hour - Duration::from_secs(1), "{waiting:?}");
    assert!(at <= in_an_hour + Duration::from_secs(60), "{waiting:?}");
    // Listed, it shows the same; resumed, nothing.
    let listed = rt
        .list_runs(
            &RunFilter::new()
                .status(RunStatus::Waiting)
                .function("await_paid"),
        )
        .await
        .unwrap();
    assert_eq!(listed.runs[0].waiting_for, Some(waiting));
    rt.send(Paid { order_id }).await.unwrap();
    let done = finished(&rt, id).await;
    assert_eq!(done.output, Some(serde_json::json!(true)));
    assert_eq!(done.waiting_for, None);
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "inspect/flaky")]
struct Flaky {
    /// A key of the test's own, counting this event's attempts.
    key: String,
    /// How many attempts fail before one completes (past 3, the run fails).
    failures: u32,
}

/// Its first attempt panics; later ones return an error, until `failures` have failed.
#[function(trigger = "inspect/flaky", retries = 2)]
async fn flaky(ctx: Ctx<Flaky>) -> fanfare::Result<()> {
    let attempt = hit(&ctx.event().key);
    if attempt > ctx.event().failures {
        return Ok(());
    }
    if attempt == 1 {
        panic!("lost the connection");
    }
    Err(Error::msg(format!("timed out on attempt {attempt}")))
}

async fn a_run_keeps_each_failed_attempt_with_its_error_and_timing(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let tag = key(store, "flaky");
    let begun = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (failures, status) in [
        (2, RunStatus::Completed),
        (3, RunStatus::Failed),
        (0, RunStatus::Completed),
    ] {
        let key = format!("{tag}-{failures}");
        let id = rt.send(Flaky { key, failures }).await.unwrap();
        let run = finished(&rt, id).await;
        assert_eq!(run.status, status, "{run:?}");
        let attempts = &run.failed_attempts;
        assert_eq!(attempts.len(), failures as usize, "{run:?}");
        for (i, a) in attempts.iter().enumerate() {
            assert_eq!(a.attempt, i as u32 + 1, "{attempts:?}");
            assert!(
                begun <= a.started_at_ms && a.started_at_ms <= a.ended_at_ms,
                "{a:?}"
            );
            if i > 0 {
                assert!(
                    attempts[i - 1].ended_at_ms <= a.started_at_ms,
                    "{attempts:?}"
                );
                assert_eq!(a.error, format!("timed out on attempt {}", i + 1));
            }
        }
        if let Some(first) = attempts.first() {
            assert!(first.error.contains("lost the connection"), "{first:?}");
            assert_eq!(
                run.last_error.as_ref(),
                Some(&attempts[attempts.len() - 1].error)
            );
        }
        // Read by its id, and listed, the run shows the same history.
        assert_eq!(rt.run(run.run_id).await.unwrap(), run);
        let listed = all(&rt, RunFilter::new().function("flaky").event(id)).await;
        assert_eq!(listed, vec![run]);
    }
    rt.shutdown().await.unwrap();
}
