use fanfare::{function, Ctx, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/signup")]
pub struct UserSignup {
    pub user_id: u64,
}

// Every problem is reported in one pass, and `welcome` still exists afterwards.
#[function(trigger = "user signup", id = "", id = "again")]
fn welcome(_ctx: Ctx<UserSignup>) -> fanfare::Result<()> {
    Ok(())
}

fn _uses_it() {
    let _ = welcome;
}
fn main() {}
