use fanfare::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
pub struct UserSignup;

#[derive(Event, Serialize, Deserialize)]
#[event(title = "user/signup")]
pub struct Titled;

fn main() {}
