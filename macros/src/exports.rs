//! Every path that generated code names, in one place (as Rocket's `exports.rs`).
//!
//! Generated code reaches the runtime only through `::fanfare::__private`, so a user's
//! crate depends on `fanfare` alone.

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;

pub fn private(span: Span) -> TokenStream {
    quote_spanned!(span=> ::fanfare::__private)
}
