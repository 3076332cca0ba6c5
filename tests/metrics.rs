//! Metrics (`Runtime::metrics`, `Metrics::to_prometheus`): counters per function and
//! outcome, the attempt histogram, events sent, and the queue gauges, read through the
//! public API and through a Prometheus text parser. Conformance: every store.

mod common;

use common::{gate, started, until, Store};
use fanfare::{function, Ctx, Error, Event, Metrics, RunStatus, SendOptions};
use prometheus_parse::{Scrape, Value};
use serde::{Deserialize, Serialize};
use std::time::Duration;

conformance!(
    counters_count_each_outcome_per_function,
    queue_depth_counts_due_runs_and_the_oldest_ages,
);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "metrics/ok")]
struct Done {
    n: u32,
}

#[function(trigger = "metrics/ok")]
async fn m_ok(_ctx: Ctx<Done>) -> fanfare::Result<()> {
    Ok(())
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "metrics/flaky")]
struct Flaky {}

#[function(trigger = "metrics/flaky", retries = 2)]
async fn m_flaky(_ctx: Ctx<Flaky>) -> fanfare::Result<()> {
    Err(Error::msg("down"))
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "metrics/login")]
struct Login {
    n: u32,
}

#[function(trigger = "metrics/login", rate_limit(limit = 1, period = "1h"))]
async fn m_limited(_ctx: Ctx<Login>) -> fanfare::Result<()> {
    Ok(())
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "metrics/later")]
struct Later {}

#[function(trigger = "metrics/later")]
async fn m_later(_ctx: Ctx<Later>) -> fanfare::Result<()> {
    Ok(())
}

/// No function subscribes to it: counted under `event="other"`.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "metrics/unheard")]
struct Unheard {}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "metrics/many")]
struct Many {
    n: u32,
}

#[function(trigger = "metrics/many")]
async fn m_many(_ctx: Ctx<Many>) -> fanfare::Result<()> {
    Ok(())
}

/// Runs finish on both worker threads, and each thread counts in its own copy of the
/// counters: the metrics add every copy up, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_made_on_every_worker_thread_add_up() {
    const RUNS: u32 = 2_000;
    let rt = fanfare::Runtime::builder().start().await.unwrap();
    // Sent from tasks on both worker threads, so the sends are counted on both too.
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let rt = rt.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in (t..RUNS).step_by(8) {
                    ids.push(rt.send(Many { n }).await.unwrap());
                    tokio::task::yield_now().await;
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for sender in senders {
        ids.extend(sender.await.unwrap());
    }
    common::all_finished(&rt, ids).await;
    let m = rt.metrics().await.unwrap();
    let f = m.function("m_many").unwrap();
    assert_eq!(
        (f.started, f.completed, f.failed),
        (u64::from(RUNS), u64::from(RUNS), 0)
    );
    assert_eq!(f.attempt_duration.count, u64::from(RUNS));
    let events = m
        .events_sent
        .iter()
        .find(|e| e.event == "metrics/many")
        .unwrap();
    assert_eq!(events.sent, u64::from(RUNS));
    rt.shutdown().await.unwrap();
}

/// The text, parsed.
fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the text parses")
}

/// The value of the counter or gauge sample `metric` whose label `label` is `value`.
fn sample(scrape: &Scrape, metric: &str, label: &str, value: &str) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && s.labels.get(label) == Some(value))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a counter or gauge: {:?}", s.value),
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{metric}{{{label}={value:?}}} in {:?}",
        scrape.samples
    );
    found[0]
}

async fn counters_count_each_outcome_per_function(store: Store) {
    let rt = store.fast().start().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..2 {
        ids.push(rt.send(Done { n }).await.unwrap());
    }
    ids.push(rt.send(Flaky {}).await.unwrap());
    for n in 0..3 {
        ids.push(rt.send(Login { n }).await.unwrap());
    }
    let later = SendOptions::new().delay(Duration::from_secs(3600));
    let id = rt.send_with(Later {}, later).await.unwrap();
    let run = common::run_of(&rt, id).await;
    assert_eq!(rt.cancel(run.run_id).await.unwrap(), RunStatus::Cancelled);
    rt.send(Unheard {}).await.unwrap();
    common::all_finished(&rt, ids).await;
    // A skip is counted by the dispatcher once its claim returns, which may be just
    // after `wait` sees the skipped run.
    until("both skips are counted", async || {
        rt.metrics()
            .await
            .unwrap()
            .function("m_limited")
            .unwrap()
            .skipped
            == 2
    })
    .await;

    let m = rt.metrics().await.unwrap();
    let f = |id: &str| m.function(id).unwrap().clone();
    let figures = |id: &str| {
        let f = f(id);
        [
            f.started,
            f.completed,
            f.failed,
            f.retried,
            f.skipped,
            f.cancelled,
        ]
    };
    // started, completed, failed, retried, skipped, cancelled
    assert_eq!(figures("m_ok"), [2, 2, 0, 0, 0, 0]);
    assert_eq!(figures("m_flaky"), [1, 0, 1, 2, 0, 0]);
    assert_eq!(figures("m_limited"), [1, 1, 0, 0, 2, 0]);
    assert_eq!(figures("m_later"), [0, 0, 0, 0, 0, 1]);
    assert_eq!(f("m_ok").attempt_duration.count, 2);
    assert_eq!(f("m_flaky").attempt_duration.count, 3);
    let h = f("m_flaky").attempt_duration;
    assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, 3)));
    assert!(h
        .buckets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    assert_eq!(
        (
            m.sent("metrics/ok"),
            m.sent("metrics/flaky"),
            m.sent("metrics/login")
        ),
        (2, 1, 3)
    );
    assert_eq!((m.sent("metrics/later"), m.sent("other")), (1, 1));
    assert!(m.events_sent.iter().all(|e| !e.event.contains("unheard")));
    assert_eq!(f("m_ok").queue_due, 0);

    // The same figures, through a Prometheus text parser.
    let text = m.to_prometheus();
    let scrape = parse(&text);
    for (metric, expected) in [
        ("fanfare_runs_started_total", 1.0),
        ("fanfare_runs_failed_total", 1.0),
        ("fanfare_runs_retried_total", 2.0),
        ("fanfare_runs_completed_total", 0.0),
        ("fanfare_attempt_duration_seconds_count", 3.0),
    ] {
        assert_eq!(
            sample(&scrape, metric, "function", "m_flaky"),
            expected,
            "{metric}"
        );
    }
    assert_eq!(
        sample(
            &scrape,
            "fanfare_runs_skipped_total",
            "function",
            "m_limited"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &scrape,
            "fanfare_runs_cancelled_total",
            "function",
            "m_later"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &scrape,
            "fanfare_events_sent_total",
            "event",
            "metrics/login"
        ),
        3.0
    );
    assert_eq!(
        sample(&scrape, "fanfare_events_sent_total", "event", "other"),
        1.0
    );
    assert!(text.contains("# TYPE fanfare_attempt_duration_seconds histogram\n"));
    let histogram = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "fanfare_attempt_duration_seconds"
                && s.labels.get("function") == Some("m_flaky")
        })
        .expect("m_flaky's histogram parses");
    let Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {:?}", histogram.value);
    };
    let parsed: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
    let expected: Vec<(f64, f64)> = h.buckets.iter().map(|&(le, n)| (le, n as f64)).collect();
    assert_eq!(parsed, expected);
    rt.shutdown().await.unwrap();
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "metrics/block")]
struct Block {
    tag: String,
}

#[function(trigger = "metrics/block")]
async fn m_blocked(ctx: Ctx<Block>) -> fanfare::Result<()> {
    let g = gate(&ctx.event().tag);
    g.started.notify_one();
    let _permit = g.release.acquire().await;
    Ok(())
}

fn due(m: &Metrics) -> (u64, Duration) {
    let f = m.function("m_blocked").unwrap();
    (f.queue_due, f.oldest_due_age)
}

async fn queue_depth_counts_due_runs_and_the_oldest_ages(store: Store) {
    // One worker: while the first run holds it, the others wait, due.
    let rt = store.builder().concurrency(1).start().await.unwrap();
    let tag = format!("queue {}", store.name());
    let block = || Block { tag: tag.clone() };
    let mut ids = vec![rt.send(block()).await.unwrap()];
    started(&tag).await;
    for _ in 0..3 {
        ids.push(rt.send(block()).await.unwrap());
    }
    let m = rt.metrics().await.unwrap();
    let (depth, first_age) = due(&m);
    assert_eq!(depth, 3);
    assert!(!m.queue_truncated);
    let scrape = parse(&m.to_prometheus());
    assert_eq!(
        sample(&scrape, "fanfare_queue_depth", "function", "m_blocked"),
        3.0
    );
    assert_eq!(
        sample(&scrape, "fanfare_queue_depth", "function", "m_ok"),
        0.0
    );
    let truncated = scrape
        .samples
        .iter()
        .find(|s| s.metric == "fanfare_queue_truncated");
    assert_eq!(truncated.map(|s| &s.value), Some(&Value::Gauge(0.0)));
    // The oldest due run grows older while it waits.
    until("the oldest due run ages", async || {
        due(&rt.metrics().await.unwrap()).1 > first_age + Duration::from_millis(20)
    })
    .await;
    let age = sample(
        &parse(&rt.metrics().await.unwrap().to_prometheus()),
        "fanfare_queue_oldest_due_age_seconds",
        "function",
        "m_blocked",
    );
    assert!(age > first_age.as_secs_f64(), "{age}");

    gate(&tag).release.add_permits(4);
    common::all_finished(&rt, ids).await;
    let m = rt.metrics().await.unwrap();
    assert_eq!(due(&m), (0, Duration::ZERO));
    assert_eq!(m.function("m_blocked").unwrap().completed, 4);
    rt.shutdown().await.unwrap();
}
