//! apalis 1.x with `apalis-postgres`, used as a queue is used for fan-out.
//!
//! apalis has no events: a producer pushes one job per function. Here there is one job
//! type, [`FanoutJob`], carrying a handler index, on one queue with one worker that
//! dispatches to the five handlers. That is the cheapest way apalis allows: one storage
//! takes one job type, and `push_bulk` writes a batch to one storage, so the event's five
//! jobs go in with one `push_bulk` (one multi-row `INSERT`, one transaction). Five job
//! types on five storages would take five pushes per event.
//!
//! apalis-postgres keeps everything in the `apalis` schema (fixed by the crate), which is
//! dropped before and after each run. Completed jobs are those with status `Done`.
//!
//! - **default**: `PostgresStorage::new(&pool)` and
//!   `WorkerBuilder::new(..).backend(storage).build(handler)`, as in the crate's README:
//!   batches of 10, no `LISTEN`, `PgPool::connect` (10 connections).
//! - **fastest**: the knobs the crate documents for throughput, kept where they helped
//!   here: `batch_size(1000)` ("larger batches can improve throughput by reducing the
//!   number of queue operations"; 1000 beat 100 and 500) and `with_pubsub()`
//!   (`LISTEN/NOTIFY` wakes the worker as soon as jobs are inserted, where the default
//!   worker, once idle, waits for its next heartbeat). Also tried, and left out because
//!   they were slower: `lock_tasks(false)` (no better), `.parallelize(tokio::spawn)`
//!   (slower; with `lock_tasks(false)` too, the last acknowledgements wait for the 30 s
//!   heartbeat).

use crate::{
    measure, produce_with, share, trivial_work, BoxError, Env, Kind, Outcome, PeerConfig as Config,
    FANOUT,
};
use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One function's run of one event.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct FanoutJob {
    pub n: u64,
    pub handler: u8,
}

fn f1(n: u64) {
    trivial_work(0, n)
}
fn f2(n: u64) {
    trivial_work(1, n)
}
fn f3(n: u64) {
    trivial_work(2, n)
}
fn f4(n: u64) {
    trivial_work(3, n)
}
fn f5(n: u64) {
    trivial_work(4, n)
}

/// The five handlers, by index.
pub const HANDLERS: [fn(u64); FANOUT as usize] = [f1, f2, f3, f4, f5];

/// The one worker function: runs the job's handler.
pub async fn dispatch(job: FanoutJob) -> Result<(), BoxDynError> {
    HANDLERS[job.handler as usize](job.n);
    Ok(())
}

/// An event's five jobs.
pub fn jobs_of(n: u64) -> Vec<FanoutJob> {
    (0..FANOUT as u8)
        .map(|handler| FanoutJob { n, handler })
        .collect()
}

pub const FASTEST_BATCH: usize = 1000;

pub const CONFIGS: &[Config] = &[
    Config {
        label: "default (batch 10)",
        kind: Kind::Default,
    },
    Config {
        label: "fastest (batch 1000, pubsub)",
        kind: Kind::Fastest,
    },
];

pub async fn run(config: &Config, events: u64, env: &Env) -> Outcome {
    crate::fresh_schema(&env.database_url, "apalis", false).await;
    let pool = PgPool::connect(&env.database_url)
        .await
        .expect("apalis: PostgreSQL");
    PostgresStorage::setup(&pool)
        .await
        .expect("apalis-postgres migrations");
    let ctx = WorkerContext::new("peers-apalis-postgres");
    let (storage, worker) = match config.kind {
        Kind::Default => {
            let storage = PostgresStorage::<FanoutJob>::new(&pool);
            let worker = WorkerBuilder::new(&ctx)
                .backend(storage.clone())
                .build(dispatch);
            (storage, tokio::spawn(worker.run()))
        }
        Kind::Fastest => {
            let queue = apalis_postgres::Config::default()
                .queue(std::any::type_name::<FanoutJob>())
                .batch_size(FASTEST_BATCH);
            let storage = PostgresStorage::<FanoutJob>::new(&pool).with_config(queue);
            let worker = WorkerBuilder::new(&ctx)
                .backend(storage.clone().with_pubsub())
                .build(dispatch);
            (storage, tokio::spawn(worker.run()))
        }
    };
    let observer = crate::pg_pool(&env.database_url).await;
    let produce = produce_with(move |p| {
        let mut storage = storage.clone();
        async move {
            for n in share(p, events) {
                storage
                    .push_bulk(jobs_of(n))
                    .await
                    .map_err(|e| -> BoxError { format!("apalis push_bulk: {e}").into() })?;
            }
            Ok(())
        }
    });
    let outcome = measure(events, env.time_limit, produce, || {
        let observer = observer.clone();
        async move {
            crate::count_pg(
                &observer,
                "SELECT count(*) FROM apalis.jobs WHERE status = 'Done'",
            )
            .await
        }
    })
    .await;
    let _ = ctx.stop();
    if crate::bounded("apalis-postgres worker", Duration::from_secs(30), worker).await
        && outcome.finished
    {
        crate::check_exactly_once(events);
    }
    observer.close().await;
    pool.close().await;
    crate::fresh_schema(&env.database_url, "apalis", false).await;
    outcome
}
