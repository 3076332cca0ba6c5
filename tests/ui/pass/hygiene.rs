//! The macros expand inside `macro_rules!`, next to shadowed std names, and in a module
//! that imports nothing but the event.
#![no_implicit_prelude]

struct Result;
struct Option;
struct Box;
struct Vec;
struct Send;
mod core {}
mod std {}
mod inventory {}

mod events {
    #[derive(::fanfare::Event, ::serde::Serialize, ::serde::Deserialize)]
    #[event(name = "hygiene/ping")]
    pub struct Ping;
}

macro_rules! make_function {
    ($name:ident) => {
        #[::fanfare::function(trigger = "hygiene/ping")]
        async fn $name(_ctx: ::fanfare::Ctx<events::Ping>) -> ::fanfare::Result<()> {
            ::core::result::Result::Ok(())
        }
    };
}

make_function!(from_a_macro);

mod nested {
    #[::fanfare::function(trigger = "hygiene/ping")]
    async fn in_a_module(_ctx: ::fanfare::Ctx<super::events::Ping>) -> ::fanfare::Result<()> {
        ::core::result::Result::Ok(())
    }
}

fn main() {
    let _ = (Result, Option, Box, Vec, Send);
    let fns = ::fanfare::functions();
    ::std::assert_eq!(fns.len(), 2);
}
