use fanfare::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "user/sign up!")]
pub struct UserSignup;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "")]
pub struct Empty;

fn main() {}
