use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/invited")]
pub struct UserInvited {
    pub by: u64,
}

#[derive(Event, Serialize, Deserialize)]
pub enum UserChanged {
    #[event(name = "user/signup")]
    Signup(UserSignup),
    #[event(name = "user/invited")]
    Invited(UserInvited),
}

#[function(trigger = ["user/signup", "user/deleted"])]
async fn add_to_crm(_ctx: Ctx<UserChanged>) -> fanfare::Result<()> {
    Ok(())
}
fn main() {}
