use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "crm/contact.updated")]
pub struct ContactUpdated {
    pub customer_id: u64,
    pub tags: Vec<String>,
}

#[function(
    trigger = "crm/contact.updated",
    concurrency = 2,
    concurrency(limit = 5, key = |e| e.customer_id),
)]
async fn sync(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
