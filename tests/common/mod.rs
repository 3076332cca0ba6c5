//! Shared by the conformance suite: one behavioural test, run against every store.
//!
//! `conformance!(a, b)` turns each `async fn a(store: Store)` of the including file into
//! one `#[tokio::test]` per backend: `memory::a`, `sqlite::a`, `postgres::a`. Tests of
//! different backends run at the same time in one process, so what a test counts it
//! counts under a key of its own (the event id, or a name in the event).

#![allow(dead_code)]

use fanfare::{Backoff, Builder, Runtime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Longest a test waits for runs before it fails.
pub const LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Memory,
    Sqlite,
}

impl Store {
    /// A builder on a fresh, empty store of this kind.
    pub fn builder(self) -> Builder {
        match self {
            Store::Memory => Runtime::builder(),
            Store::Sqlite => Runtime::builder().sqlite(temp_db()),
        }
    }

    /// A fresh store with a retry backoff of a few milliseconds.
    pub fn fast(self) -> Builder {
        self.builder().backoff(Backoff::exponential(
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
    }

    pub fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Sqlite => "sqlite",
        }
    }
}

/// A path for a new SQLite database under the target directory.
pub fn temp_db() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fanfare-tests");
    std::fs::create_dir_all(&dir).expect("cannot create the test directory");
    dir.join(format!(
        "{}-{:016x}.db",
        std::process::id(),
        fastrand::u64(..)
    ))
}

fn counters() -> &'static Mutex<HashMap<String, u32>> {
    static C: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Counts one call under `key`.
pub fn hit(key: impl std::fmt::Display) -> u32 {
    let mut c = counters().lock().unwrap();
    let n = c.entry(key.to_string()).or_default();
    *n += 1;
    *n
}

/// Calls counted under `key`.
pub fn hits(key: impl std::fmt::Display) -> u32 {
    counters()
        .lock()
        .unwrap()
        .get(&key.to_string())
        .copied()
        .unwrap_or(0)
}

/// A named meeting point between a test and a function it started.
pub struct Gate {
    pub started: Notify,
    pub release: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            started: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

pub fn gate(key: &str) -> Arc<Gate> {
    static G: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
    let mut gates = G.get_or_init(Default::default).lock().unwrap();
    Arc::clone(gates.entry(key.to_owned()).or_default())
}

#[macro_export]
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Store::Memory).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Store::Sqlite).await
                }
            )*
        }
    };
}
