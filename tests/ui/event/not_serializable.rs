use fanfare::Event;

#[derive(Event)]
#[event(name = "user/signup")]
pub struct UserSignup;

fn main() {}
