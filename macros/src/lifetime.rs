//! How a run of `#[function]` may end early: `cancel_on(…)` (an event cancels it) and
//! `timeouts(start, finish)`. Checked here (event names, durations, the matched field
//! against the event type); expanded into the function's `Lifetime` record.

use crate::attr::FunctionArgs;
use crate::check::{self, Errors};
use crate::flow::duration;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{LitStr, Type};

/// What the expansion needs of `cancel_on` and `timeouts`, once checked.
#[derive(Default)]
pub struct Lifetime {
    cancel_on: Vec<CancelOn>,
    start_ms: Option<u64>,
    finish_ms: Option<u64>,
}

struct CancelOn {
    event: LitStr,
    matching: Option<LitStr>,
    timeout_ms: Option<u64>,
}

/// Event names the runtime keeps for itself.
const RESERVED_PREFIX: &str = "fanfare/";

impl Lifetime {
    /// Checks the keys, reporting each problem; `None` when any failed.
    pub fn check(args: &mut FunctionArgs, errors: &mut Errors) -> Option<Lifetime> {
        let mut ok = true;
        let mut lifetime = Lifetime::default();
        for c in std::mem::take(&mut args.cancel_on) {
            let Some(event) = c.event else {
                errors.at(
                    c.span,
                    "`cancel_on` needs the `event` that cancels the run\n\
                     help: write `cancel_on(event = \"order/cancelled\", matching = \"order_id\")`",
                );
                ok = false;
                continue;
            };
            let before = errors.count();
            check::name(&event, "cancel_on event", errors);
            if event.value().starts_with(RESERVED_PREFIX) {
                errors.spanned(
                    &event,
                    format_args!(
                        "event names starting with `{RESERVED_PREFIX}` are reserved for fanfare's own events"
                    ),
                );
            }
            if let Some(field) = &c.matching {
                if syn::parse_str::<syn::Ident>(&field.value()).is_err() {
                    errors.spanned(
                        field,
                        format_args!(
                            "`matching` names a field of the event, `{}` is not a field name\n\
                             help: write the field both events carry: `matching = \"order_id\"`",
                            field.value()
                        ),
                    );
                }
            }
            let timeout_ms = match &c.timeout {
                Some(lit) => duration(lit, errors),
                None => None,
            };
            ok &= errors.count() == before;
            lifetime.cancel_on.push(CancelOn {
                event,
                matching: c.matching,
                timeout_ms,
            });
        }
        if let Some(t) = args.timeouts.take() {
            if t.start.is_none() && t.finish.is_none() {
                errors.at(
                    t.span,
                    "`timeouts` needs `start`, `finish` or both\n\
                     help: write `timeouts(start = \"10m\", finish = \"2h\")`",
                );
                ok = false;
            }
            let before = errors.count();
            lifetime.start_ms = t.start.as_ref().and_then(|lit| duration(lit, errors));
            lifetime.finish_ms = t.finish.as_ref().and_then(|lit| duration(lit, errors));
            ok &= errors.count() == before;
        }
        ok.then_some(lifetime)
    }

    fn is_empty(&self) -> bool {
        self.cancel_on.is_empty() && self.start_ms.is_none() && self.finish_ms.is_none()
    }

    /// The items to emit (the record, the field checks), and the expression naming the
    /// record for `FunctionDef::__new`.
    pub fn expand(&self, event: &Type, private: &TokenStream) -> (TokenStream, TokenStream) {
        if self.is_empty() {
            return (TokenStream::new(), quote!(::core::option::Option::None));
        }
        let option = |v: Option<u64>| match v {
            Some(ms) => quote!(::core::option::Option::Some(#ms)),
            None => quote!(::core::option::Option::None),
        };
        let rules = self.cancel_on.iter().map(|c| {
            let event = &c.event;
            let matching = match &c.matching {
                Some(field) => quote!(::core::option::Option::Some(#field)),
                None => quote!(::core::option::Option::None),
            };
            let timeout = option(c.timeout_ms);
            quote!(#private::CancelOn::__new(#event, #matching, #timeout))
        });
        // The matched field must be one of the trigger event's: a read of it, spanned
        // on the string, fails to compile naming the type otherwise.
        let fields = self.cancel_on.iter().filter_map(|c| {
            let field = c.matching.as_ref()?;
            let ident = syn::Ident::new(&field.value(), field.span());
            Some(quote_spanned! {field.span()=>
                const _: fn(&#event) = |__fanfare_event| {
                    let _ = &__fanfare_event.#ident;
                };
            })
        });
        let (start, finish) = (option(self.start_ms), option(self.finish_ms));
        let items = quote! {
            #(#fields)*
            const __FANFARE_LIFETIME: #private::Lifetime =
                #private::Lifetime::__new(&[#(#rules),*], #start, #finish);
        };
        (
            items,
            quote!(::core::option::Option::Some(&__FANFARE_LIFETIME)),
        )
    }
}
