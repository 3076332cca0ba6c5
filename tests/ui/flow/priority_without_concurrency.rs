use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "crm/contact.updated")]
pub struct ContactUpdated {
    pub customer_id: u64,
    pub tags: Vec<String>,
}

#[function(trigger = "crm/contact.updated", priority = |e| if e.customer_id == 1 { 60 } else { 0 })]
async fn sync(_ctx: Ctx<ContactUpdated>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
