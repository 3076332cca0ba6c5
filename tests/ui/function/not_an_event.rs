use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
}

pub struct NotAnEvent;

#[function(trigger = "user/signup")]
async fn welcome(_ctx: Ctx<NotAnEvent>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
