//! The signup fan-out: one `user/signup` event runs every function subscribed to it.
//!
//! ```text
//! cargo run --example signup
//! ```
//!
//! Four independent functions react to one event. `provision_workspace` fails its first
//! two attempts (a flaky dependency) and succeeds on the third; the others are not
//! affected by it. Set `RUST_LOG=fanfare=debug` to see every attempt.

use fanfare::{function, Backoff, Ctx, Event, RunStatus};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
    pub email: String,
}

#[function(trigger = "user/signup")]
async fn send_welcome_email(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    let user = ctx.event();
    println!(
        "  email      → welcome mail to {} (run {})",
        user.email,
        ctx.run_id()
    );
    Ok(())
}

#[function(id = "crm-sync", trigger = "user/signup", retries = 5)]
async fn sync_crm(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    println!("  crm        → contact {} created", ctx.event().user_id);
    Ok(())
}

#[function(trigger = "user/signup")]
async fn track_signup(ctx: Ctx<UserSignup>) -> fanfare::Result<u64> {
    println!(
        "  analytics  → signup of user {} counted",
        ctx.event().user_id
    );
    Ok(ctx.event().user_id)
}

static PROVISION_CALLS: AtomicU32 = AtomicU32::new(0);

#[function(trigger = "user/signup", retries = 3)]
async fn provision_workspace(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    PROVISION_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < 2 {
        println!(
            "  workspace  → attempt {} failed: storage busy",
            ctx.attempt()
        );
        return Err(fanfare::Error::msg("storage service busy"));
    }
    println!("  workspace  → provisioned on attempt {}", ctx.attempt());
    Ok(())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "fanfare=error".into()),
        )
        .init();

    let rt = fanfare::Runtime::builder()
        .backoff(Backoff::exponential(
            Duration::from_millis(50),
            Duration::from_secs(1),
        ))
        .start()
        .await?;

    println!("linked functions:");
    for f in fanfare::functions() {
        println!(
            "  {:<20} on {:<12} at {}",
            f.id(),
            f.trigger(),
            f.location()
        );
    }

    println!("\nsend user/signup:");
    let id = rt
        .send(UserSignup {
            user_id: 42,
            email: "ada@example.com".into(),
        })
        .await?;
    let runs = rt.wait(id).await?;

    println!("\nruns of event {id}:");
    for run in &runs {
        println!(
            "  {:<20} {:<10} attempts={} last_error={:?}",
            run.function_id,
            format!("{:?}", run.status),
            run.attempts,
            run.last_error.as_deref().unwrap_or("-"),
        );
    }
    assert!(runs.iter().all(|r| r.status == RunStatus::Completed));
    assert_eq!(PROVISION_CALLS.load(Ordering::SeqCst), 3);

    rt.shutdown().await
}
