use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "crm/contact.updated")]
pub struct ContactUpdated {
    pub customer_id: u64,
    pub tags: Vec<String>,
}

#[function(trigger = "crm/contact.updated", concurrency(limit = 1, key = |e| e.customer))]
async fn sync(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
