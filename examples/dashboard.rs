//! The dashboard: a runtime on SQLite serving `http://127.0.0.1:8288/`, with runs in
//! every state to look at — completed, failed, sleeping, waiting for an event.
//!
//! ```text
//! cargo run --example dashboard
//! FANFARE_HTTP=127.0.0.1:9000 FANFARE_ADMIN_KEY=secret cargo run --example dashboard
//! ```
//!
//! Without `FANFARE_ADMIN_KEY` the dashboard opens without a login (the server listens on
//! loopback only); with it, log in with that key. Stop with Ctrl-C.

use fanfare::{function, Ctx, Error, Event, Runtime};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
    pub email: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "user/verified")]
pub struct UserVerified {
    pub user_id: u64,
}

/// Completes, after two steps.
#[function(trigger = "user/signup")]
async fn send_welcome(ctx: Ctx<UserSignup>) -> fanfare::Result<String> {
    let body = ctx
        .step("render", || async {
            Ok::<_, Error>(format!("Welcome, {}!", ctx.event().email))
        })
        .await?;
    ctx.step("send", || async {
        tokio::time::sleep(Duration::from_millis(120)).await;
        Ok::<_, Error>(())
    })
    .await?;
    Ok(body)
}

/// Fails for every third user, after a retry.
#[function(trigger = "user/signup", retries = 1)]
async fn sync_crm(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    if ctx.event().user_id.is_multiple_of(3) {
        return Err(Error::msg(format!(
            "CRM answered 503 for user {} <{}>",
            ctx.event().user_id,
            ctx.event().email
        )));
    }
    Ok(())
}

/// Sleeps a day before its reminder.
#[function(trigger = "user/signup")]
async fn trial_reminder(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    ctx.step("schedule", || async { Ok::<_, Error>(()) })
        .await?;
    ctx.sleep("one-day", Duration::from_secs(86_400)).await?;
    Ok(())
}

/// Waits for the user to verify their address (odd users never do, here).
#[function(trigger = "user/signup")]
async fn await_verification(ctx: Ctx<UserSignup>) -> fanfare::Result<bool> {
    let verified = ctx
        .wait_for_event::<UserVerified>("verified")
        .matching("user_id")
        .timeout(Duration::from_secs(7 * 86_400))
        .await?;
    Ok(verified.is_some())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    let addr = std::env::var("FANFARE_HTTP").unwrap_or_else(|_| "127.0.0.1:8288".to_owned());
    let admin_key = std::env::var("FANFARE_ADMIN_KEY").unwrap_or_default();
    let db = std::env::temp_dir().join("fanfare-dashboard-example.db");
    let rt = Runtime::builder()
        .sqlite(&db)
        .http(addr)
        .admin_key(admin_key.clone())
        .start()
        .await?;
    for user_id in 1..=6 {
        let email = format!("user{user_id}@example.com");
        rt.send(UserSignup { user_id, email }).await?;
    }
    rt.send(UserVerified { user_id: 2 }).await?;
    let Some(bound) = rt.http_addr() else {
        return Err(Error::msg("the runtime serves no HTTP"));
    };
    println!("dashboard: http://{bound}/  (database {})", db.display());
    if admin_key.is_empty() {
        println!("no FANFARE_ADMIN_KEY: open without a login, on loopback only");
    } else {
        println!("log in with the admin key from FANFARE_ADMIN_KEY");
    }
    println!("Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    rt.shutdown().await
}
