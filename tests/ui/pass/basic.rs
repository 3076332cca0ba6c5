//! The contract of DESIGN.md compiles as written.
use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
    pub email: String,
}

#[function(trigger = "user/signup")]
async fn send_welcome_email(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    let _user: &UserSignup = ctx.event();
    let _ = (ctx.event_id(), ctx.run_id(), ctx.attempt());
    Ok(())
}

#[function(id = "crm-sync", trigger = "user/signup", retries = 5, on_failure = crm_failed)]
async fn sync_crm(_ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    Ok(())
}

async fn crm_failed(ctx: Ctx<fanfare::Failure<UserSignup>>) -> fanfare::Result<()> {
    let _: &str = &ctx.event().error;
    Ok(())
}

#[function(trigger = "user/signup", retries = 0,)]
async fn returns_a_value(ctx: fanfare::Ctx<UserSignup>) -> fanfare::Result<String> {
    Ok(ctx.event().email.clone())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "a.b_c-d:e/F9")]
pub enum Generic<T> {
    One(T),
}

#[function(trigger = "a.b_c-d:e/F9")]
async fn on_generic(_ctx: Ctx<Generic<u32>>) -> fanfare::Result<()> {
    Ok(())
}

#[tokio::main]
async fn main() -> fanfare::Result<()> {
    let rt = fanfare::Runtime::builder().start().await?;
    let id = rt.send(UserSignup { user_id: 1, email: "a@b.c".into() }).await?;
    fanfare::send(UserSignup { user_id: 2, email: "d@e.f".into() }).await?;
    assert_eq!(rt.wait(id).await?.len(), 3);
    let ids: Vec<_> = fanfare::functions().iter().map(|f| f.id()).collect();
    assert_eq!(
        ids,
        ["on_generic", "crm-sync:on-failure", "crm-sync", "returns_a_value", "send_welcome_email"]
    );
    rt.shutdown().await
}
