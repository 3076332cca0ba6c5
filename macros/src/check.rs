//! Cross-cutting checks shared by both macros: error accumulation and name rules.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::LitStr;

/// Collects every error of one expansion, so the user sees them all at once
/// (serde's `Ctxt`).
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// How many errors were reported so far.
    pub fn count(&self) -> usize {
        self.0.as_ref().map_or(0, |e| e.clone().into_iter().count())
    }

    /// `Ok(())` when nothing was reported.
    pub fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Longest event name or function id, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The characters allowed in event names and function ids besides ASCII letters and digits.
pub const NAME_PUNCTUATION: &str = "/._-:";

/// Checks an event name or function id written as a string literal, pointing into the
/// literal at the first offending character when it can.
pub fn name(lit: &LitStr, what: &str, errors: &mut Errors) {
    let value = lit.value();
    if value.is_empty() {
        errors.spanned(lit, format_args!("{what} must not be empty"));
        return;
    }
    if value.len() > MAX_NAME_LEN {
        errors.spanned(
            lit,
            format_args!(
                "{what} is {} bytes long, longer than the limit of {MAX_NAME_LEN}",
                value.len()
            ),
        );
        return;
    }
    if let Some((at, bad)) = value
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(*c)))
    {
        // +1 skips the opening quote; `subspan` is `None` on stable for some literals,
        // in which case the whole literal is underlined.
        let span = lit
            .token()
            .subspan(at + 1..at + 1 + bad.len_utf8())
            .unwrap_or_else(|| lit.span());
        errors.at(
            span,
            format_args!(
                "{what} contains {bad:?}, which is not allowed\n\
                 help: use ASCII letters, digits and `/`, `.`, `_`, `-`, `:` (as in \"user/signup\")"
            ),
        );
    }
}

/// Re-emits `item` with the errors after it, so the item still exists for the rest of
/// the crate (no "cannot find function" follow-on errors) and the IDE keeps working.
pub fn with_item(item: TokenStream, error: syn::Error) -> TokenStream {
    let mut out = item;
    out.extend(error.into_compile_error());
    out
}
