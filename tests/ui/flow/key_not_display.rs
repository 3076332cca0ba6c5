use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "crm/contact.updated")]
pub struct ContactUpdated {
    pub customer_id: u64,
    pub tags: Vec<String>,
}

#[function(trigger = "crm/contact.updated", rate_limit(limit = 1, period = "1h", key = |e| e.tags))]
async fn sync(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
