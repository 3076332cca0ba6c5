use fanfare::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
pub enum UserChanged {
    #[event(name = "user/signup")]
    Signup { user_id: u64 },
    #[event(name = "user/deleted")]
    Deleted,
}
fn main() {}
