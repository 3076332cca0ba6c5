//! The function registry: what `#[function]` registers at link time, and the table the
//! runtime builds from it at start.

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Envelope, Event, RunId};
use crate::flow::Flow;
use crate::lifetime::{CancelOn, Lifetime};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One `#[function]`, as registered at link time.
///
/// Plain, `'static` and built in a `const`: the macro emits one per function and
/// `inventory` collects them. List them with [`functions`].
pub struct FunctionDef {
    id: &'static str,
    fn_name: &'static str,
    triggers: &'static [&'static str],
    retries: u32,
    event_type: &'static str,
    location: Location,
    call: fn(RunInput) -> HandlerResult,
    on_failure: bool,
    flow: Option<&'static Flow>,
    cron: Option<&'static str>,
    lifetime: Option<&'static Lifetime>,
}

/// Where a function is defined in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// `module_path!()` of the function.
    pub module_path: &'static str,
    /// `file!()` of the function.
    pub file: &'static str,
    /// Line of the function's name.
    pub line: u32,
    /// Column of the function's name.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl FunctionDef {
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn __new(
        id: &'static str,
        fn_name: &'static str,
        triggers: &'static [&'static str],
        retries: u32,
        event_type: &'static str,
        location: Location,
        call: fn(RunInput) -> HandlerResult,
        on_failure: bool,
        flow: Option<&'static Flow>,
        cron: Option<&'static str>,
        lifetime: Option<&'static Lifetime>,
    ) -> Self {
        FunctionDef {
            id,
            fn_name,
            triggers,
            retries,
            event_type,
            location,
            call,
            on_failure,
            flow,
            cron,
            lifetime,
        }
    }

    /// A plain function for the runtime's unit tests: `id`, triggered by `triggers`,
    /// no retries, no options, calling `call`.
    #[cfg(test)]
    pub(crate) const fn for_test(
        id: &'static str,
        triggers: &'static [&'static str],
        call: fn(RunInput) -> HandlerResult,
    ) -> Self {
        let location = Location {
            module_path: module_path!(),
            file: file!(),
            line: 0,
            column: 0,
        };
        Self::__new(
            id, id, triggers, 0, "Event", location, call, false, None, None, None,
        )
    }

    /// How the function's runs may end early: `cancel_on(…)` and `timeouts(…)`.
    pub fn lifetime(&self) -> Option<&'static Lifetime> {
        self.lifetime
    }

    /// The function's cron expression (`cron = "…"`), for a function run on a schedule.
    pub fn cron(&self) -> Option<&'static str> {
        self.cron
    }

    /// The function's flow control (`concurrency`, `throttle`, `rate_limit`, `priority`).
    pub(crate) fn flow(&self) -> Option<&'static Flow> {
        self.flow
    }

    /// Whether the function names an `on_failure` handler.
    pub fn has_on_failure(&self) -> bool {
        self.on_failure
    }

    /// The function's id: `id = "…"`, or the fn's name.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// The name of the Rust fn.
    pub fn fn_name(&self) -> &'static str {
        self.fn_name
    }

    /// The event name that runs this function (`""` for a `cron` function).
    pub fn trigger(&self) -> &'static str {
        self.triggers.first().copied().unwrap_or_default()
    }

    /// Every event name that runs this function (`trigger = ["…", "…"]`).
    pub fn triggers(&self) -> &'static [&'static str] {
        self.triggers
    }

    /// Retries after the first failed attempt.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The event type as written in `Ctx<…>`.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }

    /// Where the function is defined.
    pub fn location(&self) -> Location {
        self.location
    }

    pub(crate) fn call(&self, input: RunInput) -> HandlerResult {
        (self.call)(input)
    }

    /// `path::to::fn_name`, for messages.
    pub(crate) fn path(&self) -> String {
        format!("{}::{}", self.location.module_path, self.fn_name)
    }
}

impl fmt::Debug for FunctionDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionDef")
            .field("id", &self.id)
            .field("triggers", &self.triggers)
            .field("cron", &self.cron)
            .field("retries", &self.retries)
            .field("fn", &self.path())
            .field("location", &self.location)
            .finish()
    }
}

inventory::collect!(FunctionDef);

/// Every function linked into this program, sorted by trigger and id.
///
/// A function lives in the final binary only if the linker keeps the crate that defines
/// it, and the linker drops a crate nothing refers to. Assert in a test that the ones you
/// expect are here:
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize)]
/// # #[event(name = "user/signup")]
/// # pub struct UserSignup { pub user_id: u64 }
/// #[fanfare::function(trigger = "user/signup")]
/// async fn welcome(ctx: fanfare::Ctx<UserSignup>) -> fanfare::Result<()> { Ok(()) }
///
/// let ids: Vec<_> = fanfare::functions().iter().map(|f| f.id()).collect();
/// assert!(ids.contains(&"welcome"));
/// ```
pub fn functions() -> Vec<&'static FunctionDef> {
    let mut all: Vec<_> = inventory::iter::<FunctionDef>.into_iter().collect();
    all.sort_by_key(|f| (f.trigger(), f.id, f.location.file, f.location.line));
    all
}

/// The functions of one runtime, indexed by position and by trigger.
pub(crate) struct Registry {
    pub defs: Vec<&'static FunctionDef>,
    by_trigger: crate::hash::Map<&'static str, Box<[u32]>>,
    /// The `cancel_on` rules by the name of the event that cancels: (function, rule).
    cancellers: crate::hash::Map<&'static str, Vec<(u32, &'static CancelOn)>>,
    /// For each function, its `on_failure` handler's index.
    failure_handlers: Vec<Option<u32>>,
}

impl Registry {
    /// Builds the table from the linked functions, refusing duplicate ids.
    pub fn new(defs: Vec<&'static FunctionDef>) -> Result<Registry> {
        let mut by_id: HashMap<&str, &FunctionDef> = HashMap::new();
        let mut duplicates = Vec::new();
        for def in &defs {
            if let Some(first) = by_id.insert(def.id, def) {
                duplicates.push(format!(
                    "function id `{}` is used twice: by `{}` at {} and by `{}` at {}",
                    def.id,
                    first.path(),
                    first.location,
                    def.path(),
                    def.location
                ));
            }
        }
        if !duplicates.is_empty() {
            return Err(Error::new(
                ErrorKind::DuplicateFunction,
                format_args!(
                    "{}\nhelp: give one of them another id: `#[fanfare::function(id = \"…\", trigger = …)]`",
                    duplicates.join("\n")
                ),
            ));
        }
        let mut by_trigger: HashMap<&'static str, Vec<u32>> = HashMap::new();
        for (i, def) in defs.iter().enumerate() {
            // Failure handlers run only for their function's failures, never on a send.
            for &trigger in def.triggers {
                if trigger != FAILURE_EVENT {
                    by_trigger.entry(trigger).or_default().push(i as u32);
                }
            }
        }
        let mut cancellers: crate::hash::Map<&'static str, Vec<(u32, &'static CancelOn)>> =
            Default::default();
        for (i, def) in defs.iter().enumerate() {
            for rule in def.lifetime.map_or(&[][..], |l| l.cancel_on()) {
                cancellers
                    .entry(rule.event())
                    .or_default()
                    .push((i as u32, rule));
            }
        }
        let index: HashMap<&str, u32> = defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id, i as u32))
            .collect();
        let failure_handlers = defs
            .iter()
            .map(|d| {
                d.on_failure
                    .then(|| index.get(format!("{}:on-failure", d.id).as_str()).copied())
                    .flatten()
            })
            .collect();
        Ok(Registry {
            failure_handlers,
            cancellers,
            defs,
            by_trigger: by_trigger
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
        })
    }

    /// The index of the function with id `id`.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.defs.iter().position(|d| d.id == id).map(|i| i as u32)
    }

    /// The index of the `on_failure` handler of function `function`, if it has one.
    pub fn failure_handler(&self, function: u32) -> Option<u32> {
        self.failure_handlers
            .get(function as usize)
            .copied()
            .flatten()
    }

    /// The `cancel_on` rules that events named `event` match: (function, rule).
    pub fn cancellers(&self, event: &str) -> &[(u32, &'static CancelOn)] {
        self.cancellers.get(event).map_or(&[], |v| v)
    }

    /// Whether any function has a `cancel_on` rule (sends look for none otherwise).
    pub fn any_cancellers(&self) -> bool {
        !self.cancellers.is_empty()
    }

    /// The names of the events that cancel runs of these functions.
    pub fn cancel_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.cancellers.keys().map(|&n| n.to_owned()).collect();
        names.sort_unstable();
        names
    }

    /// Indexes of the functions triggered by `event`.
    pub fn subscribers(&self, event: &str) -> &[u32] {
        self.by_trigger.get(event).map_or(&[], |v| v)
    }

    /// The functions a stored event gets a run of: `to` alone (`Store::append_to`),
    /// else every function `event` triggers.
    pub fn targets<'a>(&'a self, event: &str, to: Option<&'a u32>) -> &'a [u32] {
        match to {
            Some(function) => std::slice::from_ref(function),
            None => self.subscribers(event),
        }
    }
}

/// A `#[function]`, as a type: the macro defines one per function, named like the fn
/// (as Rocket does for its routes), so that [`Ctx::invoke`](crate::Ctx::invoke) can name
/// the function it calls and get its event and output types checked.
///
/// Its types are not bounded here, so that a misdeclared function is reported once, at
/// the function; `invoke` requires them.
pub trait Function {
    /// The event type the function takes.
    type Event;
    /// The function's declared return type (`fanfare::Result<T>`).
    type Returns;
    /// The function's id.
    const ID: &'static str;
}

/// The name of the events that invoke a function directly (`ctx.invoke`), and of the
/// events that report an invocation's result. Never fanned out.
#[doc(hidden)]
pub const INVOKE_EVENT: &str = "fanfare/invoke";
#[doc(hidden)]
pub const INVOKE_RESULT_EVENT: &str = "fanfare/invoke-finished";

/// The name of the events that run `on_failure` handlers. Names starting with
/// `fanfare/` are reserved: user code cannot send them.
#[doc(hidden)]
pub const FAILURE_EVENT: &str = "fanfare/function-failed";

/// What an `on_failure` handler receives: the failed run and its triggering event.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
/// # #[event(name = "doc/charge")]
/// # pub struct Charge { pub cents: u64 }
/// use fanfare::{Ctx, Failure};
///
/// #[fanfare::function(trigger = "doc/charge", retries = 2, on_failure = refund)]
/// async fn charge(ctx: Ctx<Charge>) -> fanfare::Result<()> {
///     Err(fanfare::Error::msg("card declined"))
/// }
///
/// /// Runs once, after `charge` failed for good.
/// async fn refund(ctx: Ctx<Failure<Charge>>) -> fanfare::Result<()> {
///     let failure = ctx.event();
///     assert_eq!(failure.error, "card declined");
///     let _cents = failure.event.cents;
///     Ok(())
/// }
/// ```
#[derive(Serialize, serde::Deserialize, Clone, Debug)]
#[non_exhaustive]
pub struct Failure<E> {
    /// The id of the function that failed.
    pub function_id: String,
    /// The failed run.
    pub run_id: RunId,
    /// The event that triggered it.
    pub event_id: crate::EventId,
    /// The last attempt's error.
    pub error: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The triggering event itself.
    pub event: E,
}

#[diagnostic::do_not_recommend]
impl<E: Event> Event for Failure<E> {
    const NAME: &'static str = FAILURE_EVENT;
}

/// What a run hands a function's generated shim.
#[doc(hidden)]
pub struct RunInput {
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) run_id: RunId,
    pub(crate) attempt: u32,
    pub(crate) def: &'static FunctionDef,
    pub(crate) state: Arc<crate::step::RunState>,
    /// The events of the batch the run executes; empty for a run of one event.
    pub(crate) batch: Vec<Arc<Envelope>>,
}

/// A running function's future, its output serialized.
#[doc(hidden)]
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value>> + Send>>;

/// The shim's answer: the future to run, or why the event could not be handed over.
#[doc(hidden)]
pub type HandlerResult = Result<HandlerFuture>;

/// What a function may return: `fanfare::Result<T>` for any `T: Serialize`.
#[diagnostic::on_unimplemented(
    message = "a fanfare function must return `fanfare::Result<T>`, not `{Self}`",
    label = "returns `{Self}`",
    note = "return `fanfare::Result<()>`, or `fanfare::Result<T>` where `T: serde::Serialize`"
)]
pub trait IntoOutput {
    /// What the function produces when it succeeds.
    type Output;

    #[doc(hidden)]
    fn into_output(self) -> Result<serde_json::Value>;
}

impl<T: Serialize> IntoOutput for Result<T> {
    type Output = T;

    fn into_output(self) -> Result<serde_json::Value> {
        let value = self?;
        serde_json::to_value(value).map_err(|e| {
            Error::new(
                ErrorKind::Serialize,
                format_args!("the function's output could not be serialized: {e}"),
            )
            .never_retry()
        })
    }
}

/// Called by the generated shim: decodes the event, builds the context, starts the fn.
#[doc(hidden)]
pub fn call<E, F, Fut>(input: RunInput, f: F) -> HandlerResult
where
    E: Event,
    F: FnOnce(Ctx<E>) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: IntoOutput,
{
    let event = input.envelope.decode::<E>().map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format_args!(
                "function `{}` could not decode event `{}` ({}) as `{}`: {e}",
                input.def.id, input.envelope.name, input.envelope.id, input.def.event_type
            ),
        )
        .with_source(e)
        .never_retry()
    })?;
    let fut = f(Ctx::new(event, &input));
    Ok(Box::pin(async move { fut.await.into_output() }))
}

/// Compile-time check that `trigger` is one of the event type's names; on a mismatch,
/// compilation fails with a message naming both.
#[doc(hidden)]
pub const fn check_trigger(trigger: &str, names: &[&str], event_type: &str) {
    let mut i = 0;
    while i < names.len() {
        if str_eq(trigger, names[i]) {
            return;
        }
        i += 1;
    }
    let mut msg = ConstMsg::new();
    if names.len() > 1 {
        msg.push("trigger `");
        msg.push(trigger);
        msg.push("` is not a name of event union `");
        msg.push(event_type);
        msg.push("`, whose names are");
        let mut i = 0;
        while i < names.len() {
            msg.push(if i == 0 { " `" } else { ", `" });
            msg.push(names[i]);
            msg.push("`");
            i += 1;
        }
        msg.push("\nhelp: add a variant for it to the union, or remove it from `trigger`");
        panic!("{}", msg.as_str())
    }
    let event_name = if names.is_empty() { "" } else { names[0] };
    msg.push("trigger `");
    msg.push(trigger);
    msg.push("` does not match the name of event `");
    msg.push(event_type);
    msg.push("`, which is `");
    msg.push(event_name);
    msg.push("`\nhelp: write `trigger = \"");
    msg.push(event_name);
    msg.push("\"`, or take the event named `");
    msg.push(trigger);
    msg.push("` as `Ctx<…>`");
    panic!("{}", msg.as_str())
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A message assembled at compile time (`const fn`s cannot format).
struct ConstMsg {
    buf: [u8; 2048],
    len: usize,
}

impl ConstMsg {
    const fn new() -> Self {
        ConstMsg {
            buf: [0; 2048],
            len: 0,
        }
    }

    const fn push(&mut self, s: &str) {
        let s = s.as_bytes();
        let mut i = 0;
        // Names are at most 256 bytes, so the buffer is never full; stop short if it were.
        while i < s.len() && self.len < self.buf.len() {
            self.buf[self.len] = s[i];
            self.len += 1;
            i += 1;
        }
    }

    const fn as_str(&self) -> &str {
        match std::str::from_utf8(self.buf.split_at(self.len).0) {
            Ok(s) => s,
            Err(_) => "trigger does not match the event's name",
        }
    }
}
