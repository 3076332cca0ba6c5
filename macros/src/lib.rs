//! Procedural macros for [fanfare](https://docs.rs/fanfare).
//!
//! Do not depend on this crate directly: use `fanfare::function` and `fanfare::Event`,
//! which re-export these macros and the runtime items their expansion names.
//!
//! Each entry point runs *parse → check → expand*. Every problem found is collected
//! (see [`check::Errors`]) and reported in one pass; on error the user's item is
//! emitted unchanged next to the `compile_error!`s, so no follow-on errors appear.

mod attr;
mod check;
mod event;
mod expand;
mod exports;
mod flow;
mod lifetime;

use proc_macro::TokenStream;

/// Registers an async fn as a fanfare function, run once for every event named by `trigger`.
///
/// ```ignore
/// #[fanfare::function(id = "crm-sync", trigger = "user/signup", retries = 5)]
/// async fn sync_crm(ctx: fanfare::Ctx<UserSignup>) -> fanfare::Result<()> { Ok(()) }
/// ```
///
/// Keys: `trigger` (required), `id` (defaults to the fn name), `retries` (0 to 20, default 4),
/// `on_failure`, and flow control: `concurrency = N`, `concurrency(limit = N, key = |e| …)`,
/// `throttle(limit = N, period = "1s", key = …)`, `rate_limit(…)` (same keys), and
/// `priority = |e| seconds`. See the `fanfare` crate's documentation.
#[proc_macro_attribute]
pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::function(args.into(), item.into()).into()
}

/// Implements `fanfare::Event` for a struct or enum named with `#[event(name = "…")]`.
///
/// ```ignore
/// #[derive(fanfare::Event, serde::Serialize, serde::Deserialize)]
/// #[event(name = "user/signup")]
/// pub struct UserSignup { pub user_id: u64 }
/// ```
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(item: TokenStream) -> TokenStream {
    event::derive(item.into()).into()
}
