use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
}

use std::rc::Rc;

async fn audit(_: u64) {}

#[function(trigger = "user/signup")]
async fn welcome(ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    let local = Rc::new(ctx.event().user_id);
    audit(*local).await;
    Ok(())
}
fn main() {}
