//! graphile_worker (the Rust port of Graphile Worker), PostgreSQL.
//!
//! Five task kinds, `f1` … `f5`, one per function; a producer adds the event's five jobs
//! with one `WorkerUtils::add_raw_jobs` call (its batch add: one `add_jobs` statement).
//! One worker runs all five kinds. Its schema, `graphile_worker_peers`, is dropped before
//! and after each run. graphile_worker deletes a job when it completes (and keeps it,
//! with its error, when it fails), so a run is recorded complete when its job row is gone.
//!
//! - **default**: `WorkerOptions::default()` with the five jobs defined: concurrency =
//!   logical CPUs, `LISTEN/NOTIFY` on, 1 s poll interval, no local queue, each completion
//!   its own statement, a pool of 20 connections.
//! - **fastest**: the configuration of the crate's own throughput benchmark
//!   (`benches/perf_test.rs`): `concurrency(500)`, `poll_interval(5 ms)`,
//!   `complete_job_batch_delay(5 ms)` (completions flushed in batches),
//!   `local_queue(LocalQueueConfig::default().with_size(5000))` (jobs fetched in batches).

use crate::{
    measure, produce_with, share, trivial_work, BoxError, Env, Kind, Outcome, PeerConfig as Config,
};
use graphile_worker::{
    IntoTaskHandlerResult, JobSpec, LocalQueueConfig, RawJobSpec, TaskHandler, WorkerContext,
    WorkerOptions,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

const SCHEMA: &str = "graphile_worker_peers";

macro_rules! task_kinds {
    ($($name:ident = $id:literal, $index:expr);*) => {$(
        #[derive(Serialize, Deserialize, Clone, Debug)]
        struct $name {
            n: u64,
        }

        impl TaskHandler for $name {
            const IDENTIFIER: &'static str = $id;

            async fn run(self, _ctx: WorkerContext) -> impl IntoTaskHandlerResult {
                trivial_work($index, self.n);
                Ok::<(), String>(())
            }
        }
    )*};
}

task_kinds!(F1 = "f1", 0; F2 = "f2", 1; F3 = "f3", 2; F4 = "f4", 3; F5 = "f5", 4);

pub const CONFIGS: &[Config] = &[
    Config {
        label: "default (concurrency = CPUs, LISTEN)",
        kind: Kind::Default,
    },
    Config {
        label: "fastest (its perf_test: conc 500, local queue 5000)",
        kind: Kind::Fastest,
    },
];

/// An event's five jobs, one of each kind.
fn jobs_of(n: u64) -> Vec<RawJobSpec> {
    ["f1", "f2", "f3", "f4", "f5"]
        .into_iter()
        .map(|identifier| RawJobSpec {
            identifier: identifier.to_owned(),
            payload: serde_json::json!({ "n": n }),
            spec: JobSpec::default(),
        })
        .collect()
}

pub async fn run(config: &Config, events: u64, env: &Env) -> Outcome {
    crate::fresh_schema(&env.database_url, SCHEMA, false).await;
    let mut options = WorkerOptions::default()
        .database_url(&env.database_url)
        .schema(SCHEMA)
        .listen_os_shutdown_signals(false)
        .define_job::<F1>()
        .define_job::<F2>()
        .define_job::<F3>()
        .define_job::<F4>()
        .define_job::<F5>();
    if let Kind::Fastest = config.kind {
        options = options
            .concurrency(500)
            .poll_interval(Duration::from_millis(5))
            .complete_job_batch_delay(Duration::from_millis(5))
            .local_queue(LocalQueueConfig::default().with_size(5000));
    }
    let worker = Arc::new(options.init().await.expect("graphile_worker init"));
    let running = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.run().await }
    });
    let utils = worker.create_utils();
    let observer = crate::pg_pool(&env.database_url).await;
    let produce = produce_with(move |p| {
        let utils = utils.clone();
        async move {
            for n in share(p, events) {
                utils
                    .add_raw_jobs(&jobs_of(n))
                    .await
                    .map_err(|e| -> BoxError {
                        format!("graphile_worker add_raw_jobs: {e}").into()
                    })?;
            }
            Ok(())
        }
    });
    let target = events * crate::FANOUT;
    let outcome = measure(events, env.time_limit, produce, || {
        let observer = observer.clone();
        async move {
            let left = crate::count_pg(
                &observer,
                &format!("SELECT count(*) FROM {SCHEMA}._private_jobs"),
            )
            .await;
            target.saturating_sub(left)
        }
    })
    .await;
    worker.request_shutdown();
    if crate::bounded("graphile_worker", Duration::from_secs(30), running).await && outcome.finished
    {
        crate::check_exactly_once(events);
    }
    observer.close().await;
    crate::fresh_schema(&env.database_url, SCHEMA, false).await;
    outcome
}
