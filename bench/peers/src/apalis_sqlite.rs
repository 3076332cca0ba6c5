//! apalis 1.x with `apalis-sqlite`: the same fan-out as `apalis_pg` (one job type with a
//! handler index, five jobs per event in one `push_bulk`), on a fresh SQLite file.
//!
//! `SqliteStorage::setup` itself sets `journal_mode = WAL` and `synchronous = OFF` (on the
//! connection it runs on; the pool's other connections keep SQLite's default, FULL).
//! Completed jobs are those with status `Done`.
//!
//! - **default**: `SqlitePool::connect`, `SqliteStorage::new(&pool)`, a plain worker, as
//!   the crate's README "Basic Worker": batches of 10, no update hook.
//! - **fastest**: the README's "Event-Driven Worker (Hooked)" (`connect_with_callback`:
//!   an SQLite update hook wakes the worker on every insert, plus its 500 ms interval),
//!   with `batch_size(1000)`, as for PostgreSQL.

use crate::apalis_pg::{dispatch, jobs_of, FanoutJob, FASTEST_BATCH};
use crate::{measure, produce_with, share, BoxError, Env, Kind, Outcome, PeerConfig as Config};
use apalis::prelude::*;
use apalis_sqlite::{SqlitePool, SqliteStorage};
use futures::StreamExt;
use std::time::Duration;

pub const CONFIGS: &[Config] = &[
    Config {
        label: "default (batch 10)",
        kind: Kind::Default,
    },
    Config {
        label: "fastest (batch 1000, update hook)",
        kind: Kind::Fastest,
    },
];

pub async fn run(config: &Config, events: u64, env: &Env) -> Outcome {
    let path = crate::temp_db("apalis");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let ctx = WorkerContext::new("peers-apalis-sqlite");
    let (pool, storage, worker) = match config.kind {
        Kind::Default => {
            let pool = SqlitePool::connect(&url).await.expect("apalis: SQLite");
            SqliteStorage::setup(&pool)
                .await
                .expect("apalis-sqlite migrations");
            let storage = SqliteStorage::<FanoutJob>::new(&pool);
            let worker = WorkerBuilder::new(&ctx)
                .backend(storage.clone())
                .build(dispatch);
            (pool, storage, tokio::spawn(worker.run()))
        }
        Kind::Fastest => {
            let (pool, listener) =
                SqliteStorage::connect_with_callback(&url).expect("apalis: SQLite");
            SqliteStorage::setup(&pool)
                .await
                .expect("apalis-sqlite migrations");
            let queue = apalis_sqlite::Config::default()
                .queue(std::any::type_name::<FanoutJob>())
                .batch_size(FASTEST_BATCH);
            let strategy = Strategy::new()
                .stream(listener.ready_chunks(FASTEST_BATCH))
                .interval(Duration::from_millis(500));
            let storage = SqliteStorage::<FanoutJob>::new(&pool).with_config(queue);
            let worker = WorkerBuilder::new(&ctx)
                .backend(storage.clone().poll_with_strategy(strategy))
                .build(dispatch);
            (pool, storage, tokio::spawn(worker.run()))
        }
    };
    let observer = crate::sqlite_pool(&path).await;
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
            crate::count_sqlite(&observer, "SELECT count(*) FROM Jobs WHERE status = 'Done'").await
        }
    })
    .await;
    let _ = ctx.stop();
    if crate::bounded("apalis-sqlite worker", Duration::from_secs(30), worker).await
        && outcome.finished
    {
        crate::check_exactly_once(events);
    }
    observer.close().await;
    pool.close().await;
    crate::remove_db(&path);
    outcome
}
