//! fanfare, the reference: one `send` per event, five functions subscribed to it.
//!
//! PostgreSQL: a fresh schema `fanfare_peers` per run (selected with `search_path` in the
//! URL, as fanfare's own bench does). SQLite: a fresh file per run. Completed runs are
//! counted by the store (`Runtime::functions`, which reads the runs table).

use crate::{measure, produce_with, share, trivial_work, Env, Outcome};
use fanfare::{function, Ctx, Event, RunStatus, Runtime};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/fanout")]
struct Fanout {
    n: u64,
}

macro_rules! trivial_functions {
    ($($name:ident = $index:expr),*) => {$(
        #[function(trigger = "bench/fanout")]
        async fn $name(ctx: Ctx<Fanout>) -> fanfare::Result<()> {
            trivial_work($index, ctx.event().n);
            Ok(())
        }
    )*};
}

trivial_functions!(f1 = 0, f2 = 1, f3 = 2, f4 = 3, f5 = 4);

pub enum Store {
    Postgres,
    Sqlite(fanfare::SqliteSync),
}

pub struct Config {
    pub system: &'static str,
    pub label: &'static str,
    store: Store,
}

/// The two systems, by store; the first configuration of each is its default, which the
/// peers are compared with.
pub const PG: &str = "fanfare PG";
pub const SQLITE: &str = "fanfare SQLite";

pub const CONFIGS: &[Config] = &[
    Config {
        system: PG,
        label: "default",
        store: Store::Postgres,
    },
    Config {
        system: SQLITE,
        label: "default (synchronous=FULL)",
        store: Store::Sqlite(fanfare::SqliteSync::Full),
    },
    Config {
        system: SQLITE,
        label: "sqlite_sync(Normal)",
        store: Store::Sqlite(fanfare::SqliteSync::Normal),
    },
];

const SCHEMA: &str = "fanfare_peers";

pub async fn server_version(url: &str) -> String {
    let pool = crate::pg_pool(url).await;
    let version = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .expect("server_version");
    pool.close().await;
    version
}

pub async fn run(config: &Config, events: u64, env: &Env) -> Outcome {
    match config.store {
        Store::Postgres => {
            crate::fresh_schema(&env.database_url, SCHEMA, true).await;
            let sep = if env.database_url.contains('?') {
                '&'
            } else {
                '?'
            };
            let url = format!("{}{sep}options=-csearch_path%3D{SCHEMA}", env.database_url);
            let rt = Runtime::builder()
                .postgres(&url)
                .app("peers")
                .start()
                .await
                .expect("fanfare (PostgreSQL) did not start");
            let outcome = go(&rt, events, env).await;
            finish(rt, events, outcome).await;
            crate::fresh_schema(&env.database_url, SCHEMA, false).await;
            outcome
        }
        Store::Sqlite(sync) => {
            let path = crate::temp_db("fanfare");
            let rt = Runtime::builder()
                .sqlite(&path)
                .sqlite_sync(sync)
                .start()
                .await
                .expect("fanfare (SQLite) did not start");
            let outcome = go(&rt, events, env).await;
            finish(rt, events, outcome).await;
            crate::remove_db(&path);
            outcome
        }
    }
}

async fn go(rt: &Runtime, events: u64, env: &Env) -> Outcome {
    let observer = rt.clone();
    let completed = move || {
        let rt = observer.clone();
        async move { completed(&rt).await }
    };
    let rt = rt.clone();
    let produce = async move {
        produce_with(|p| {
            let rt = rt.clone();
            async move {
                for n in share(p, events) {
                    rt.send(Fanout { n }).await?;
                }
                Ok(())
            }
        })
        .await
    };
    measure(events, env.time_limit, produce, completed).await
}

async fn finish(rt: Runtime, events: u64, outcome: Outcome) {
    rt.shutdown().await.expect("fanfare shutdown");
    if outcome.finished {
        crate::check_exactly_once(events);
    }
}

/// Completed runs, as the store records them (`Runtime::functions`: its run counts per
/// function). The SQLite store holds its file exclusively, so this asks the runtime.
async fn completed(rt: &Runtime) -> u64 {
    rt.functions()
        .await
        .expect("fanfare: run counts")
        .iter()
        .map(|f| f.counts.get(RunStatus::Completed))
        .sum()
}
