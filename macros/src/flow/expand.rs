//! The expansion of the flow-control keys: the function's `Flow` record, and one fn that
//! decodes the event once and computes every key with the user's closures.

use super::{Batch, Debounce, Flow, Rate};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ExprClosure, Type};

impl Flow {
    /// Items defining `__FANFARE_FLOW` (when there is flow control), and the expression
    /// that hands it to the registration: `Some(&__FANFARE_FLOW)` or `None`.
    pub fn expand(&self, event: &Type, private: &TokenStream) -> (TokenStream, TokenStream) {
        if self.is_empty() {
            return (TokenStream::new(), quote!(::core::option::Option::None));
        }
        let e = quote::format_ident!("__fanfare_e");
        let key = |k: Option<&ExprClosure>| match k {
            Some(k) => key_call(k, &e, private),
            None => quote!(::core::option::Option::None),
        };
        let rate = |r: &Option<Rate>| match r {
            Some(Rate {
                limit, period_ms, ..
            }) => quote! {
                ::core::option::Option::Some(#private::Rate { limit: #limit, period_ms: #period_ms })
            },
            None => quote!(::core::option::Option::None),
        };
        let concurrency = option(self.concurrency);
        let keyed = option(self.keyed.as_ref().map(|(l, _)| *l));
        let (throttle, rate_limit) = (rate(&self.throttle), rate(&self.rate_limit));
        let keyed_key = key(self.keyed.as_ref().map(|(_, k)| k));
        let throttle_key = key(self.throttle.as_ref().and_then(|r| r.key.as_ref()));
        let rate_key = key(self.rate_limit.as_ref().and_then(|r| r.key.as_ref()));
        let debounce_key = key(self.debounce.as_ref().and_then(|d| d.key.as_ref()));
        let batch_key = key(self.batch.as_ref().and_then(|b| b.key.as_ref()));
        let debounce = match &self.debounce {
            Some(Debounce {
                period_ms,
                timeout_ms,
                ..
            }) => {
                let timeout = match timeout_ms {
                    Some(t) => quote!(::core::option::Option::Some(#t)),
                    None => quote!(::core::option::Option::None),
                };
                quote! {
                    ::core::option::Option::Some(#private::Debounce { period_ms: #period_ms, timeout_ms: #timeout })
                }
            }
            None => quote!(::core::option::Option::None),
        };
        let batch = match &self.batch {
            Some(Batch {
                max, timeout_ms, ..
            }) => quote! {
                ::core::option::Option::Some(#private::BatchRule { max: #max, timeout_ms: #timeout_ms })
            },
            None => quote!(::core::option::Option::None),
        };
        let idempotency_key = key(self.idempotency.as_ref());
        let filtered = match &self.filter {
            Some(f) => {
                let (pat, body) = parts(f);
                quote!(!#private::filter_of(#e, |#pat| #body))
            }
            None => quote!(false),
        };
        let has_filter = self.filter.is_some();
        let has_idempotency = self.idempotency.is_some();
        let priority = match &self.priority {
            Some(p) => {
                let (pat, body) = parts(p);
                let span = p.body.span();
                let at = crate::exports::private(span);
                let clamp = quote_spanned!(span=> #at::priority(&(#body)));
                quote!(#private::key_of(#e, |#pat| #clamp))
            }
            None => quote!(0),
        };
        let items = quote! {
            fn __fanfare_flow_keys(
                __fanfare_event: &#private::Envelope,
            ) -> #private::Result<#private::FlowKeys> {
                #private::flow_keys::<#event, _>(__fanfare_event, |#e| #private::FlowKeys {
                    concurrency: #keyed_key,
                    throttle: #throttle_key,
                    rate_limit: #rate_key,
                    debounce: #debounce_key,
                    batch: #batch_key,
                    priority: #priority,
                    filtered: #filtered,
                    idempotency: #idempotency_key,
                })
            }

            const __FANFARE_FLOW: #private::Flow = #private::Flow {
                concurrency: #concurrency,
                keyed_concurrency: #keyed,
                throttle: #throttle,
                rate_limit: #rate_limit,
                debounce: #debounce,
                batch: #batch,
                filter: #has_filter,
                idempotency: #has_idempotency,
                keys: __fanfare_flow_keys,
            };
        };
        (items, quote!(::core::option::Option::Some(&__FANFARE_FLOW)))
    }
}

fn option(v: Option<u32>) -> TokenStream {
    match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// `Some(key)`, computed by the user's closure: its body is borrowed (so `|e| e.name`
/// works for a `String` field) and turned into a string through `Display`, with any
/// error spanned on the body.
fn key_call(k: &ExprClosure, e: &syn::Ident, private: &TokenStream) -> TokenStream {
    let (pat, body) = parts(k);
    let span = k.body.span();
    let at = crate::exports::private(span);
    let string = quote_spanned!(span=> #at::key_string(&(#body)));
    quote!(::core::option::Option::Some(#private::key_of(#e, |#pat| #string)))
}

/// The closure's one parameter pattern and its body.
fn parts(k: &ExprClosure) -> (&syn::Pat, &syn::Expr) {
    (&k.inputs[0], &k.body)
}
