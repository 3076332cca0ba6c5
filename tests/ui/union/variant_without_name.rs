use fanfare::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
}

#[derive(Event, Serialize, Deserialize)]
pub enum UserChanged {
    Signup(UserSignup),
}
fn main() {}
