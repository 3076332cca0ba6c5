use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
}

#[function(trigger = ["user/signup", "user/signup"])]
async fn welcome(_ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
