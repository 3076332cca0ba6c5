//! `#[function]`: parse the arguments and the fn → check both → register the fn.

use crate::attr::FunctionArgs;
use crate::check::{self, Errors};
use crate::exports;
use crate::flow::Flow;
use crate::lifetime::Lifetime;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, LitStr, PathArguments, Type};

/// The default of `retries`: 4 retries, so 5 attempts, as Inngest's server.
const DEFAULT_RETRIES: u32 = 4;

pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                "`#[fanfare::function]` goes on an `async fn`\nhelp: write `async fn name(ctx: fanfare::Ctx<MyEvent>) -> fanfare::Result<()>`",
            );
            return check::with_item(item, e);
        }
    };
    let mut errors = Errors::default();
    let args = match syn::parse2::<FunctionArgs>(args) {
        Ok(args) => Some(args),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let checked = args.map(|args| Checked::new(args, &func, &mut errors));
    match (errors.finish(), checked) {
        (Ok(()), Some(Some(checked))) => expand(&func, &checked),
        (Err(e), _) => check::with_item(item, e),
        (Ok(()), _) => check::with_item(
            item,
            syn::Error::new(
                proc_macro2::Span::call_site(),
                "invalid `#[fanfare::function]`",
            ),
        ),
    }
}

/// What the expansion needs, once every check has passed.
struct Checked {
    /// The event names that run the function: one, or several of an event union.
    triggers: Vec<LitStr>,
    id: LitStr,
    retries: u32,
    /// The event type: `E` of `Ctx<E>`, or of `Ctx<Batch<E>>`.
    event: Type,
    /// What the function takes: `E`, or `Batch<E>`.
    takes: Type,
    on_failure: Option<syn::Path>,
    flow: Flow,
    /// `cron = "…"`, parsed: the function runs on its ticks instead of on events.
    cron: Option<LitStr>,
    lifetime: Lifetime,
}

/// Parses a `cron` expression as the runtime will, so a bad one does not compile.
fn cron(expr: &LitStr, errors: &mut Errors) -> Option<LitStr> {
    match fanfare_cron::Schedule::parse(&expr.value()) {
        Ok(_) => Some(expr.clone()),
        Err(e) => {
            let help = e.help().map_or_else(
                || {
                    "help: write 5 fields `minute hour day month weekday` (or 6, seconds first), \
                    optionally after `TZ=Area/City`, e.g. `TZ=Europe/Paris 0 9 * * MON-FRI`"
                        .to_owned()
                },
                |h| format!("help: {h}"),
            );
            errors.spanned(expr, format_args!("invalid `cron` schedule: {e}\n{help}"));
            None
        }
    }
}

/// The suffix of an on-failure handler's function id.
const ON_FAILURE_SUFFIX: &str = ":on-failure";

/// Event names the runtime keeps for itself.
const RESERVED_PREFIX: &str = "fanfare/";

impl Checked {
    /// Runs every check, reporting each problem to `errors`; `None` when any failed.
    fn new(mut args: FunctionArgs, func: &ItemFn, errors: &mut Errors) -> Option<Checked> {
        if let Err(e) = std::mem::take(&mut args.errors).finish() {
            errors.push(e);
        }
        let sig = &func.sig;
        if sig.asyncness.is_none() {
            errors.spanned(
                sig.fn_token,
                "`#[fanfare::function]` requires an `async fn`\nhelp: add `async` before `fn`",
            );
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.spanned(
                &sig.generics,
                "a fanfare function cannot be generic\nhelp: name the event type: `ctx: fanfare::Ctx<MyEvent>`",
            );
        }
        let event = event_type(func, errors);
        let cron = args.cron.as_ref().and_then(|expr| cron(expr, errors));
        let trigger = match (&args.trigger, &args.cron) {
            (Some(_), Some(expr)) => {
                errors.spanned(
                    expr,
                    "a function runs either on events (`trigger`) or on a schedule (`cron`), not both\n\
                     help: keep `cron` here and handle the event in a second function, or send that \
                     event from this one",
                );
                None
            }
            (None, Some(_)) => Some(Vec::new()),
            (Some(names), None) if names.is_empty() => {
                errors.at(
                    proc_macro2::Span::call_site(),
                    "`trigger = []` names no event\nhelp: name at least one: `trigger = [\"user/signup\"]`",
                );
                None
            }
            (Some(names), None) => {
                let mut seen = std::collections::HashSet::new();
                for t in names {
                    check::name(t, "trigger", errors);
                    if !seen.insert(t.value()) {
                        errors.spanned(
                            t,
                            format_args!("`{}` is listed twice in `trigger`", t.value()),
                        );
                    }
                }
                Some(names.clone())
            }
            (None, None) => {
                errors.at(
                    proc_macro2::Span::call_site(),
                    "missing `trigger`\nhelp: name the event that runs this function: `#[fanfare::function(trigger = \"user/signup\")]`, \
                     or give it a schedule: `cron = \"0 9 * * MON-FRI\"`",
                );
                None
            }
        };
        let id = match &args.id {
            Some(id) => {
                check::name(id, "function id", errors);
                id.clone()
            }
            None => LitStr::new(&sig.ident.to_string(), sig.ident.span()),
        };
        for t in trigger.iter().flatten() {
            if t.value().starts_with(RESERVED_PREFIX) {
                errors.spanned(
                    t,
                    format_args!(
                        "event names starting with `{RESERVED_PREFIX}` are reserved for fanfare's own events"
                    ),
                );
            }
        }
        if args.on_failure.is_some()
            && id.value().len() + ON_FAILURE_SUFFIX.len() > check::MAX_NAME_LEN
        {
            errors.spanned(
                &id,
                format_args!(
                    "with `on_failure`, the function id must leave room for `{ON_FAILURE_SUFFIX}` \
                     within {} bytes",
                    check::MAX_NAME_LEN
                ),
            );
        }
        let flow = Flow::check(&mut args, errors);
        let lifetime = Lifetime::check(&mut args, errors);
        let takes = event.clone();
        let event = match (event, &flow) {
            (Some(ty), Some(flow)) => batched(ty, flow.batches(), errors),
            (event, _) => event,
        };
        let retries = match args.retries {
            Some(_) => args.retries(errors)?,
            None => DEFAULT_RETRIES,
        };
        Some(Checked {
            cron: match args.cron {
                Some(_) => Some(cron?),
                None => None,
            },
            flow: flow?,
            lifetime: lifetime?,
            takes: takes?,
            triggers: trigger?,
            id,
            retries,
            event: event?,
            on_failure: args.on_failure,
        })
    }
}

/// `T` of a type written `…::Name<T>` (`Ctx<E>`, `Batch<E>`), matched by its last
/// segment, as the user may import or qualify it.
fn wrapped(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last().filter(|_| p.qself.is_none())?;
    if seg.ident != name {
        return None;
    }
    match &seg.arguments {
        PathArguments::AngleBracketed(a) if a.args.len() == 1 => match &a.args[0] {
            GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The event type of a function taking `ty`: `E` of `Batch<E>` for a `batch(…)`
/// function, `ty` otherwise; `None` (reported) when the two do not agree.
fn batched(ty: Type, batches: bool, errors: &mut Errors) -> Option<Type> {
    let inner = wrapped(&ty, "Batch");
    match (batches, inner) {
        (true, Some(inner)) => Some(inner),
        (false, None) => Some(ty),
        (true, None) => {
            errors.spanned(
                &ty,
                "a `batch` function takes the events of its batch: `Ctx<fanfare::Batch<E>>`\n\
                 help: write `ctx: fanfare::Ctx<fanfare::Batch<MyEvent>>`",
            );
            None
        }
        (false, Some(_)) => {
            errors.spanned(
                &ty,
                "`Ctx<Batch<E>>` takes the events of a batch, and this function has no `batch`\n\
                 help: add `batch(max = 100, timeout = \"2s\")`, or take `Ctx<E>`",
            );
            None
        }
    }
}

/// Extracts `E` from the single argument `ctx: Ctx<E>`.
fn event_type(func: &ItemFn, errors: &mut Errors) -> Option<Type> {
    const HELP: &str = "help: take the event through the context: `ctx: fanfare::Ctx<MyEvent>`";
    let inputs = &func.sig.inputs;
    let mut args = inputs.iter();
    let (Some(first), None) = (args.next(), args.next()) else {
        let message = format_args!(
            "a fanfare function takes exactly one argument, `Ctx<E>`, found {}\n{HELP}",
            inputs.len()
        );
        if inputs.is_empty() {
            errors.spanned(&func.sig, message);
        } else {
            errors.spanned(inputs, message);
        }
        return None;
    };
    let ty = match first {
        FnArg::Typed(arg) => &*arg.ty,
        FnArg::Receiver(recv) => {
            errors.spanned(
                recv,
                format_args!("a fanfare function cannot take `self`\n{HELP}"),
            );
            return None;
        }
    };
    let found = wrapped(ty, "Ctx");
    if found.is_none() {
        errors.spanned(
            ty,
            format_args!(
                "expected `Ctx<E>`, where `E` is the event type named by `trigger`\n{HELP}"
            ),
        );
    }
    found
}

fn expand(func: &ItemFn, c: &Checked) -> TokenStream {
    let ident = &func.sig.ident;
    let private = exports::private(ident.span());
    let Checked {
        triggers,
        id,
        retries,
        event,
        takes,
        on_failure,
        flow,
        cron,
        lifetime,
    } = c;
    let batches = flow.batches();
    let (flow_items, flow) = flow.expand(event, &exports::private(ident.span()));
    let (lifetime_items, lifetime) = lifetime.expand(event, &exports::private(ident.span()));
    let ev_private = exports::private(event.span());
    let fn_name = ident.to_string();
    let event_name = quote!(#event).to_string();
    // Each check is spanned on the user's token it is about: the trigger literal for a
    // name mismatch, the event type for "not an `Event`", the fn name for a handler
    // future that is not `Send`.
    let cron_check = cron.as_ref().map(|_| {
        quote_spanned! {event.span()=>
            const _: () = #ev_private::check_cron::<#event>();
        }
    });
    let cron = match cron {
        Some(expr) => quote!(::core::option::Option::Some(#expr)),
        None => quote!(::core::option::Option::None),
    };
    let trigger_check = triggers.iter().map(|trigger| {
        let trigger_private = exports::private(trigger.span());
        quote_spanned! {trigger.span()=>
            const _: () = #trigger_private::check_trigger(#trigger, <#event as #ev_private::Event>::NAMES, #event_name);
        }
    });
    // One identifier for the shim's parameter, so it resolves the same way wherever the
    // attribute was written (inside `macro_rules!` too).
    let input = quote::format_ident!("__fanfare_input");
    let call = if batches {
        quote_spanned! {ident.span()=>
            #private::call_batch::<#event, _, _>(#input, #ident)
        }
    } else {
        quote_spanned! {ident.span()=>
            #private::call::<#event, _, _>(#input, #ident)
        }
    };
    let location = quote_spanned! {ident.span()=>
        #private::Location {
            module_path: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            column: ::core::column!(),
        }
    };
    let has_on_failure = on_failure.is_some();
    // The handler named by `on_failure`: a function of its own, run once with a
    // `Failure<E>` when this one fails for good. Its signature is checked by the same
    // `call` bounds, spanned on the handler's path.
    let failure = on_failure.as_ref().map(|handler| {
        let span = handler.span();
        let private = exports::private(span);
        let failure_id = format!("{}{ON_FAILURE_SUFFIX}", id.value());
        let handler_name = quote!(#handler).to_string().replace(' ', "");
        let takes_name = quote!(#takes).to_string();
        let failure_event = format!("Failure<{takes_name}>");
        let call = quote_spanned! {span=>
            #private::call::<#private::Failure<#takes>, _, _>(#input, #handler)
        };
        let location = quote_spanned! {span=>
            #private::Location {
                module_path: ::core::module_path!(),
                file: ::core::file!(),
                line: ::core::line!(),
                column: ::core::column!(),
            }
        };
        quote! {
            fn __fanfare_failure_call(#input: #private::RunInput) -> #private::HandlerResult {
                #call
            }

            #private::inventory::submit! {
                #private::FunctionDef::__new(
                    #failure_id,
                    #handler_name,
                    &[#private::FAILURE_EVENT],
                    #retries,
                    #failure_event,
                    #location,
                    __fanfare_failure_call,
                    false,
                    ::core::option::Option::None,
                    ::core::option::Option::None,
                    ::core::option::Option::None,
                )
            }
        }
    });
    // The function as a type, for `ctx.invoke::<name>(…)`: a braced struct lives in the
    // type namespace only, so it sits beside the fn of the same name (as Rocket's routes),
    // with the fn's visibility, so a `pub fn` can be invoked from other crates. Its event
    // and return types are type parameters with defaults: the `Function` impl is then no
    // more visible than they are, and a `pub fn` taking a crate-private event still
    // compiles (`private_interfaces` is allowed on the type).
    let vis = &func.vis;
    let output = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => quote!(#ty),
        syn::ReturnType::Default => quote!(()),
    };
    let doc = format!("The function [`{ident}()`] as a type, for `ctx.invoke::<{ident}>(…)`.");
    // A `batch` function runs for batches of sent events only: it cannot be invoked.
    let as_type = (!batches).then(|| {
        quote! {
            #[doc = #doc]
            #[allow(non_camel_case_types, private_interfaces)]
            #vis struct #ident<__FanfareEvent = #event, __FanfareReturns = #output> {
                __fanfare: ::core::marker::PhantomData<fn(__FanfareEvent) -> __FanfareReturns>,
            }

            impl #private::Function for #ident<#event, #output> {
                type Event = #event;
                type Returns = #output;
                const ID: &'static str = #id;
            }
        }
    });
    quote! {
        #func

        #as_type

        #[doc(hidden)]
        const _: () = {
            #(#trigger_check)*
            #cron_check

            fn __fanfare_call(#input: #private::RunInput) -> #private::HandlerResult {
                #call
            }

            #private::inventory::submit! {
                #private::FunctionDef::__new(
                    #id,
                    #fn_name,
                    &[#(#triggers),*],
                    #retries,
                    #event_name,
                    #location,
                    __fanfare_call,
                    #has_on_failure,
                    #flow,
                    #cron,
                    #lifetime,
                )
            }

            #flow_items

            #lifetime_items

            #failure
        };
    }
}
