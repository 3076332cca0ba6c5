//! Every flow-control key, in each of its forms, compiles.
use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "crm/contact.updated")]
pub struct ContactUpdated {
    pub customer_id: u64,
    pub email: String,
    pub paid: bool,
}

#[function(
    trigger = "crm/contact.updated",
    concurrency(limit = 1, key = |e| e.customer_id),
    throttle(limit = 10, period = "1s"),
)]
async fn sync_crm(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}

// A `String` field as the key, with no `.clone()`; a typed closure parameter.
#[function(trigger = "crm/contact.updated", rate_limit(limit = 1, period = "1h", key = |e: &ContactUpdated| e.email))]
async fn notify(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}

#[function(
    trigger = "crm/contact.updated",
    concurrency = 4,
    concurrency(limit = 1, key = |e| format!("{}:{}", e.customer_id, e.email)),
    throttle(limit = 100, period = "500ms", key = |e| e.customer_id),
    priority = |e| if e.paid { 60 } else { 0 },
)]
async fn render(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}

#[function(
    trigger = "crm/contact.updated",
    filter = |e| !e.email.is_empty(),
    idempotency = |e| e.customer_id,
)]
async fn welcome_once(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}

#[function(trigger = "crm/contact.updated", concurrency = 1, priority = |e| e.customer_id)]
async fn by_id(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}

fn main() {
    let ids: Vec<_> = fanfare::functions().iter().map(|f| f.id()).collect();
    for id in ["sync_crm", "notify", "render", "by_id"] {
        assert!(ids.contains(&id));
    }
}
