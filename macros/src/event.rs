//! `#[derive(Event)]`: parse `#[event(name = "…")]` → check the name → `impl Event`.
//! On an enum of newtype variants, each named with its own `#[event(name = "…")]`, an
//! event union: a value is sent under its variant's name, with its variant's data.

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
    // An enum named as a whole is one event (in serde's representation); an enum
    // whose variants are named is an event union.
    let named = input.attrs.iter().any(|a| a.path().is_ident("event"));
    if let (syn::Data::Enum(data), false) = (&input.data, named) {
        return match union(&input, data) {
            Ok(variants) => expand_union(&input, &variants),
            Err(e) => e.into_compile_error(),
        };
    }
    match check(&input) {
        Ok(name) => expand(&input, &name),
        Err(e) => e.into_compile_error(),
    }
}

/// The name in a list of attributes' `#[event(name = "…")]`, checked; `None` (reported)
/// when it is missing or wrong.
fn event_name(
    attrs: &[syn::Attribute],
    what: &dyn quote::ToTokens,
    help: &str,
    errors: &mut Errors,
) -> Option<syn::LitStr> {
    let mut name = None;
    let mut seen_attr = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
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
        errors.spanned(what, help);
    }
    if let Some(name) = &name {
        check::name(name, "event name", errors);
        if name.value().starts_with("fanfare/") {
            errors.spanned(
                name,
                "event names starting with `fanfare/` are reserved for fanfare's own events",
            );
        }
    }
    name
}

/// The variants of an event union, each with its name and its one field's type.
fn union(
    input: &DeriveInput,
    data: &syn::DataEnum,
) -> syn::Result<Vec<(syn::Ident, syn::LitStr, syn::Type)>> {
    let mut errors = Errors::default();
    if data.variants.is_empty() {
        errors.spanned(&input.ident, "an event union needs at least one variant");
    }
    if !input.generics.params.is_empty() {
        errors.spanned(&input.generics, "an event union cannot be generic");
    }
    let mut variants = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in &data.variants {
        let help = format!(
            "each variant of an event union names its event\nhelp: add `#[event(name = \"…\")]` to `{}`, \
             or name the whole enum to send it as one event",
            v.ident
        );
        let name = event_name(&v.attrs, &v.ident, &help, &mut errors);
        let ty = match &v.fields {
            syn::Fields::Unnamed(f) if f.unnamed.len() == 1 => Some(f.unnamed[0].ty.clone()),
            _ => {
                errors.spanned(
                    v,
                    format_args!(
                        "a variant of an event union holds one event: `{}(MyEvent)`",
                        v.ident
                    ),
                );
                None
            }
        };
        if let Some(name) = &name {
            if !seen.insert(name.value()) {
                errors.spanned(
                    name,
                    format_args!("two variants are named `{}`", name.value()),
                );
            }
        }
        if let (Some(name), Some(ty)) = (name, ty) {
            variants.push((v.ident.clone(), name, ty));
        }
    }
    errors.finish()?;
    Ok(variants)
}

fn expand_union(
    input: &DeriveInput,
    variants: &[(syn::Ident, syn::LitStr, syn::Type)],
) -> TokenStream {
    let private = exports::private(input.ident.span());
    let ident = &input.ident;
    let union = ident.to_string();
    let first = &variants[0].1;
    let names = variants.iter().map(|(_, n, _)| n);
    let name_arms = variants.iter().map(|(v, n, _)| quote!(Self::#v(_) => #n));
    let data_arms = variants
        .iter()
        .map(|(v, _, _)| quote!(Self::#v(value) => #private::serde_json::to_string(value)));
    let from_arms = variants
        .iter()
        .map(|(v, n, ty)| quote!(#n => #private::serde_json::from_str::<#ty>(data).map(Self::#v)));
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #private::Event for #ident {
                const NAME: &'static str = #first;
                const NAMES: &'static [&'static str] = &[#(#names),*];

                fn __fanfare_name(&self) -> &'static str {
                    match self {
                        #(#name_arms,)*
                    }
                }

                fn __fanfare_data(&self) -> #private::serde_json::Result<::std::string::String> {
                    match self {
                        #(#data_arms,)*
                    }
                }

                fn __fanfare_from(name: &str, data: &str) -> #private::serde_json::Result<Self> {
                    match name {
                        #(#from_arms,)*
                        other => ::core::result::Result::Err(#private::unknown_variant(#union, other)),
                    }
                }
            }
        };
    }
}

fn check(input: &DeriveInput) -> syn::Result<syn::LitStr> {
    let mut errors = Errors::default();
    let help = format!(
        "`#[derive(Event)]` needs the event's name\nhelp: add `#[event(name = \"…\")]` to `{}`",
        input.ident
    );
    let name = event_name(&input.attrs, &input.ident, &help, &mut errors);
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
