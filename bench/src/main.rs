//! `cargo run --release -p fanfare-bench -- [--events N] [--samples N] [--queued N]`
//!
//! Measures, in one process, fanfare against the same work written by hand:
//!
//! 1. **Throughput**: N events × 5 trivial functions, sent by 64 concurrent producers.
//!    Baseline: one `tokio::spawn` per function per event. Reported: completed runs/s of
//!    each and their ratio.
//! 2. **Latency**: single events, one at a time: time from calling `send` to the start of
//!    the function's body, p50 and p99. Baseline: `tokio::spawn` to task start.
//! 3. **Memory per queued run**: bytes allocated per run that waits in the queue (all
//!    workers busy), counted by a counting global allocator.

use fanfare::{function, Ctx, Event, Runtime};
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

// --- a counting allocator, for memory per queued run ---------------------------------

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// --- throughput: five trivial functions on one event ---------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/fanout")]
struct Fanout {
    n: u64,
}

static DONE: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static ALL_DONE: Notify = Notify::const_new();

/// The body every benchmarked function (fanfare's and the baseline's) runs.
fn trivial_work(n: u64) {
    std::hint::black_box(n);
    if DONE.fetch_add(1, Ordering::Relaxed) + 1 == TARGET.load(Ordering::Relaxed) {
        ALL_DONE.notify_one();
    }
}

macro_rules! trivial_functions {
    ($($name:ident),*) => {$(
        #[function(trigger = "bench/fanout")]
        async fn $name(ctx: Ctx<Fanout>) -> fanfare::Result<()> {
            trivial_work(ctx.event().n);
            Ok(())
        }
    )*};
}

trivial_functions!(f1, f2, f3, f4, f5);

const PRODUCERS: u64 = 64;
const FANOUT: u64 = 5;

fn arm(target: u64) {
    DONE.store(0, Ordering::SeqCst);
    TARGET.store(target, Ordering::SeqCst);
}

async fn baseline_throughput(events: u64) -> Duration {
    arm(events * FANOUT);
    let began = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(async move {
                for i in (p..events).step_by(PRODUCERS as usize) {
                    let event = Arc::new(Fanout { n: i });
                    for _ in 0..FANOUT {
                        let event = Arc::clone(&event);
                        tokio::spawn(async move { trivial_work(event.n) });
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer panicked");
    }
    ALL_DONE.notified().await;
    began.elapsed()
}

async fn fanfare_throughput(rt: &Runtime, events: u64) -> Duration {
    arm(events * FANOUT);
    let began = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let rt = rt.clone();
            tokio::spawn(async move {
                for i in (p..events).step_by(PRODUCERS as usize) {
                    rt.send(Fanout { n: i }).await.expect("send failed");
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer panicked");
    }
    ALL_DONE.notified().await;
    began.elapsed()
}

// --- latency: send → start of the body -----------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/latency")]
struct Ping;

static STARTED: OnceLock<Mutex<Option<tokio::sync::oneshot::Sender<Instant>>>> = OnceLock::new();

fn report_start() {
    let now = Instant::now();
    if let Some(tx) = STARTED.get_or_init(Default::default).lock().unwrap().take() {
        let _ = tx.send(now);
    }
}

#[function(trigger = "bench/latency")]
async fn on_ping(_: Ctx<Ping>) -> fanfare::Result<()> {
    report_start();
    Ok(())
}

fn expect_start() -> tokio::sync::oneshot::Receiver<Instant> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    *STARTED.get_or_init(Default::default).lock().unwrap() = Some(tx);
    rx
}

async fn latency<F, Fut>(samples: usize, mut start_one: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut all = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = expect_start();
        let t0 = Instant::now();
        start_one().await;
        let t1 = started.await.expect("the function never started");
        all.push(t1 - t0);
    }
    all.sort();
    (all[samples / 2], all[samples * 99 / 100])
}

// --- memory per queued run -----------------------------------------------------------

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench/queued")]
struct UserSignup {
    user_id: u64,
    email: String,
}

static GATE: Semaphore = Semaphore::const_new(0);

macro_rules! gated_functions {
    ($($name:ident),*) => {$(
        #[function(trigger = "bench/queued")]
        async fn $name(_: Ctx<UserSignup>) -> fanfare::Result<()> {
            GATE.acquire().await.expect("gate closed").forget();
            Ok(())
        }
    )*};
}

gated_functions!(q1, q2, q3, q4, q5);

async fn bytes_per_queued_run(queued_events: u64) -> fanfare::Result<f64> {
    // One worker slot, taken by the first run, which waits at the gate: every other
    // run stays queued.
    let rt = Runtime::builder().concurrency(1).start().await?;
    rt.send(UserSignup {
        user_id: 0,
        email: "warm@example.com".into(),
    })
    .await?;
    let before = ALLOCATED.load(Ordering::SeqCst);
    for i in 0..queued_events {
        rt.send(UserSignup {
            user_id: i,
            email: format!("user{i}@example.com"),
        })
        .await?;
    }
    let after = ALLOCATED.load(Ordering::SeqCst);
    GATE.add_permits(Semaphore::MAX_PERMITS / 2);
    drop(rt);
    Ok((after - before) as f64 / (queued_events * FANOUT) as f64)
}

// --- the program -----------------------------------------------------------------------

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a whole number, got {v:?}"))
        })
        .unwrap_or(default)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    let events = arg("--events", 200_000);
    let samples = arg("--samples", 5_000) as usize;
    let queued = arg("--queued", 100_000);
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    println!("fanfare bench: {events} events x {FANOUT} functions, {PRODUCERS} producers, {threads} tokio worker threads\n");

    let rt = Runtime::builder().start().await?;
    // Warm both paths up (allocator, thread pool) before measuring.
    baseline_throughput(events / 10).await;
    fanfare_throughput(&rt, events / 10).await;

    let base = baseline_throughput(events).await;
    let ours = fanfare_throughput(&rt, events).await;
    let runs = (events * FANOUT) as f64;
    let (base_rate, our_rate) = (runs / base.as_secs_f64(), runs / ours.as_secs_f64());
    println!("throughput (completed runs/s)");
    println!("  hand-written tokio::spawn   {base_rate:>12.0}");
    println!("  fanfare (memory store)      {our_rate:>12.0}");
    println!(
        "  ratio                       {:>12.2}   (target >= 0.50)\n",
        our_rate / base_rate
    );

    let (b50, b99) = latency(samples, || async {
        tokio::spawn(async { report_start() });
    })
    .await;
    let (f50, f99) = latency(samples, || async {
        rt.send(Ping).await.expect("send failed");
    })
    .await;
    println!("latency, send -> function start ({samples} single events)");
    println!(
        "  hand-written tokio::spawn   p50 {:>7.1} us   p99 {:>7.1} us",
        us(b50),
        us(b99)
    );
    println!(
        "  fanfare (memory store)      p50 {:>7.1} us   p99 {:>7.1} us   (target p50 <= 50 us)\n",
        us(f50),
        us(f99)
    );
    rt.shutdown().await?;

    let per_run = bytes_per_queued_run(queued).await?;
    println!("memory per queued run ({queued} events x {FANOUT} runs waiting, small event)");
    println!("  {per_run:.0} bytes                   (target <= 1024)");
    Ok(())
}
