//! `#[derive(Event)]`: parse `#[event(name = "…")]` → check the name → `impl Event`.

use crate::attr::EventArgs;
use crate::check::{self, Errors};
use crate::exports;
use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    match check(&input) {
        Ok(name) => expand(&input, &name),
        Err(e) => e.into_compile_error(),
    }
}

fn check(input: &DeriveInput) -> syn::Result<syn::LitStr> {
    let mut errors = Errors::default();
    let mut name = None;
    let mut seen_attr = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        if seen_attr {
            errors.spanned(
                attr,
                "duplicate `#[event(…)]` attribute\nhelp: give the name once: `#[event(name = \"…\")]`",
            );
            continue;
        }
        seen_attr = true;
        match attr.parse_args::<EventArgs>() {
            Ok(args) => {
                if let Err(e) = args.errors.finish() {
                    errors.push(e);
                }
                match args.name {
                    Some(n) => name = Some(n),
                    None => errors.spanned(
                        attr,
                        "missing `name` in `#[event(…)]`\nhelp: write `#[event(name = \"user/signup\")]`",
                    ),
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !seen_attr {
        errors.spanned(
            &input.ident,
            format_args!(
                "`#[derive(Event)]` needs the event's name\nhelp: add `#[event(name = \"…\")]` to `{}`",
                input.ident
            ),
        );
    }
    if let Some(name) = &name {
        check::name(name, "event name", &mut errors);
        if name.value().starts_with("fanfare/") {
            errors.spanned(
                name,
                "event names starting with `fanfare/` are reserved for fanfare's own events",
            );
        }
    }
    errors.finish()?;
    name.ok_or_else(|| syn::Error::new_spanned(&input.ident, "missing `#[event(name = \"…\")]`"))
}

fn expand(input: &DeriveInput, name: &syn::LitStr) -> TokenStream {
    let private = exports::private(input.ident.span());
    let ident = &input.ident;
    // A generic event is an event for the parameters that make it serializable and
    // thread-safe; a plain one gets the bounds' errors on its own name.
    let mut generics = input.generics.clone();
    if !generics.params.is_empty() {
        generics
            .make_where_clause()
            .predicates
            .push(syn::parse_quote!(Self: #private::EventBounds));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #private::Event for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
            }
        };
    }
}
