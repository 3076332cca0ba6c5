//! The pages: what each shows, rendered from the `Runtime` methods a Rust user calls.
//! Every string from a run, an event or a function goes through [`esc`].

use super::html::{badge, csrf_field, duration, esc, page, time, url};
use super::{check_post, Authed, CsrfForm};
use crate::error::{Error, ErrorKind};
use crate::http::AppState;
use crate::{EventId, RunFilter, RunId, RunInfo, RunStatus};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::fmt::Write;

/// An error as a page: the caller's mistake `400`/`404`/`409`, the store's `503`.
fn error_page(authed: &Authed, e: &Error) -> Response {
    let status = match e.kind() {
        ErrorKind::RunNotFound | ErrorKind::EventNotFound => StatusCode::NOT_FOUND,
        ErrorKind::NotReplayable => StatusCode::CONFLICT,
        ErrorKind::ShutDown | ErrorKind::Store => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    message_page(authed, status, &e.to_string())
}

fn message_page(authed: &Authed, status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><pre class=\"error\">{}</pre>",
        status.as_u16(),
        esc(message)
    );
    let mut response = authed.respond(page(&authed.base, "Error", Some(&authed.csrf), &body));
    *response.status_mut() = status;
    response
}

/// The login page, with a notice (an unknown key, no key configured).
pub(super) fn login(base: &str, notice: Option<&str>, _next: Option<&str>) -> String {
    let notice = notice
        .map(|n| format!("<p class=\"notice\">{}</p>", esc(n)))
        .unwrap_or_default();
    let body = format!(
        "<form class=\"login\" method=\"post\" action=\"{b}/login\"><h1>Log in</h1>{notice}\
         <label for=\"key\">Admin key</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" autofocus>\
         <button type=\"submit\">Log in</button>\
         <p class=\"muted\">The key set with <code>Builder::admin_key</code>.</p></form>",
        b = esc(base)
    );
    page(base, "Log in", None, &body)
}

/// `GET /`: every function of this process, its trigger, its runs by status.
pub(super) async fn functions(State(state): State<AppState>, authed: Authed) -> Response {
    let functions = match state.rt.functions().await {
        Ok(f) => f,
        Err(e) => return error_page(&authed, &e),
    };
    let b = esc(&authed.base);
    let mut body =
        String::from("<h1>Functions</h1><table><thead><tr><th>Function</th><th>Trigger</th>");
    for s in RunStatus::ALL {
        let _ = write!(body, "<th class=\"num\">{s}</th>");
    }
    body.push_str("<th></th></tr></thead><tbody>");
    for f in &functions {
        let id = url(&f.id);
        let trigger = match (&f.cron, f.triggers.is_empty()) {
            (Some(cron), _) => format!("cron <code>{}</code>", esc(cron)),
            (None, false) => f
                .triggers
                .iter()
                .map(|t| format!("<code>{}</code>", esc(t)))
                .collect::<Vec<_>>()
                .join(", "),
            (None, true) => String::new(),
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"{b}/runs?function={id}\">{}</a></td><td>{trigger}</td>",
            esc(&f.id)
        );
        for (status, n) in f.counts.iter() {
            let class = if n == 0 { "num zero" } else { "num" };
            let _ = write!(
                body,
                "<td class=\"{class}\"><a href=\"{b}/runs?function={id}&amp;status={status}\">{n}</a></td>"
            );
        }
        let failed = f.counts.get(RunStatus::Failed);
        body.push_str("<td>");
        if failed > 0 {
            let _ = write!(
                body,
                "<form class=\"inline\" method=\"post\" action=\"{b}/functions/{id}/replay-failed\">{}\
                 <button class=\"secondary\" title=\"Replay every failed run of this function\">Replay {failed} failed</button></form>",
                csrf_field(&authed.csrf)
            );
        }
        body.push_str("</td></tr>");
    }
    if functions.is_empty() {
        body.push_str("<tr><td colspan=\"11\" class=\"muted\">No functions are registered in this process.</td></tr>");
    }
    body.push_str("</tbody></table>");
    authed.respond(page(&authed.base, "Functions", Some(&authed.csrf), &body))
}

/// The query of `/runs`.
#[derive(serde::Deserialize, Default)]
pub(super) struct RunsQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    function: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    fragment: String,
}

/// `GET /runs?status=&function=&after=`: a page of runs, newest first, kept live.
pub(super) async fn runs(
    State(state): State<AppState>,
    authed: Authed,
    Query(q): Query<RunsQuery>,
) -> Response {
    let mut filter = RunFilter::new();
    let status = match q.status.as_str() {
        "" => None,
        s => match s.parse::<RunStatus>() {
            Ok(s) => Some(s),
            Err(e) => return message_page(&authed, StatusCode::BAD_REQUEST, &e.to_string()),
        },
    };
    if let Some(s) = status {
        filter = filter.status(s);
    }
    if !q.function.is_empty() {
        filter = filter.function(q.function.clone());
    }
    if !q.after.is_empty() {
        match q.after.parse::<RunId>() {
            Ok(after) => filter = filter.after(after),
            Err(_) => {
                return message_page(&authed, StatusCode::BAD_REQUEST, "`after` is not a run id")
            }
        }
    }
    let page_of_runs = match state.rt.list_runs(&filter).await {
        Ok(p) => p,
        Err(e) => return error_page(&authed, &e),
    };
    let b = esc(&authed.base);
    let query = |status: Option<RunStatus>, after: Option<RunId>| {
        let mut parts = Vec::new();
        if let Some(s) = status {
            parts.push(format!("status={s}"));
        }
        if !q.function.is_empty() {
            parts.push(format!("function={}", url(&q.function)));
        }
        if let Some(a) = after {
            parts.push(format!("after={a}"));
        }
        parts.join("&amp;")
    };
    let mut table = runs_table(&authed.base, &page_of_runs.runs);
    if let Some(next) = page_of_runs.next {
        let _ = write!(
            table,
            "<p class=\"more\"><a href=\"{b}/runs?{}\" rel=\"next\">Older runs →</a></p>",
            query(status, Some(next))
        );
    }
    if !q.fragment.is_empty() {
        return authed.respond(table);
    }
    let title = match (&status, q.function.is_empty()) {
        (Some(s), false) => format!("Runs of {}: {s}", q.function),
        (Some(s), true) => format!("Runs: {s}"),
        (None, false) => format!("Runs of {}", q.function),
        (None, true) => "Runs".to_owned(),
    };
    let mut body = format!("<h1>{}</h1><div class=\"filters\">", esc(&title));
    let chip = |label: &str, s: Option<RunStatus>| {
        let on = if s == status { " class=\"on\"" } else { "" };
        format!("<a{on} href=\"{b}/runs?{}\">{label}</a>", query(s, None))
    };
    body.push_str(&chip("all", None));
    for s in RunStatus::ALL {
        body.push_str(&chip(s.as_str(), Some(s)));
    }
    if !q.function.is_empty() {
        let _ = write!(
            body,
            "<span class=\"muted\">function <code>{}</code> · <a href=\"{b}/runs{}\">any function</a></span>",
            esc(&q.function),
            status.map(|s| format!("?status={s}")).unwrap_or_default()
        );
    }
    let live = format!(
        "{b}/runs?{}{}fragment=1",
        query(status, filter.after),
        if query(status, filter.after).is_empty() {
            ""
        } else {
            "&amp;"
        }
    );
    let _ = write!(
        body,
        "<span class=\"live\">live</span></div><div id=\"runs\" data-live=\"{live}\">{table}</div>"
    );
    authed.respond(page(&authed.base, &title, Some(&authed.csrf), &body))
}

/// A table of runs, one row each (also the live fragment of `/runs` and `/events/{id}`).
fn runs_table(base: &str, runs: &[RunInfo]) -> String {
    let b = esc(base);
    let mut t = String::from(
        "<table><thead><tr><th>Run</th><th>Function</th><th>Event</th><th>Status</th>\
         <th class=\"num\">Attempts</th><th>Created</th><th>Error / reason</th></tr></thead><tbody>",
    );
    for r in runs {
        let note = r
            .last_error
            .as_deref()
            .or(r.reason.as_deref())
            .unwrap_or("");
        let short: String = note.chars().take(160).collect();
        let _ = write!(
            t,
            "<tr data-run=\"{id}\"><td><a class=\"mono\" href=\"{b}/runs/{id}\">{short_id}</a></td>\
             <td><a href=\"{b}/runs?function={fid}\">{fname}</a></td>\
             <td><a href=\"{b}/events/{ev}\">{ename}</a></td><td>{status}</td>\
             <td class=\"num\">{attempts}</td><td class=\"mono\">{created}</td><td class=\"note\">{note}</td></tr>",
            id = r.run_id,
            // UUIDv7s of one millisecond share their head: their tail tells them apart.
            short_id = {
                let full = r.run_id.to_string();
                format!("…{}", &full[full.len().saturating_sub(12)..])
            },
            fid = url(&r.function_id),
            fname = esc(&r.function_id),
            ev = r.event_id,
            ename = esc(&r.event_name),
            status = badge(r.status),
            attempts = r.attempts,
            created = time(r.created_at_ms),
            note = esc(&short),
        );
    }
    if runs.is_empty() {
        t.push_str("<tr><td colspan=\"7\" class=\"muted\">No runs.</td></tr>");
    }
    t.push_str("</tbody></table>");
    t
}

/// `?fragment=1`: only the live part of a page.
#[derive(serde::Deserialize, Default)]
pub(super) struct FragmentQuery {
    #[serde(default)]
    fragment: String,
}

/// `GET /runs/{id}`: one run's timeline, its error and output, replay and cancel.
pub(super) async fn run(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    Query(q): Query<FragmentQuery>,
) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return message_page(&authed, StatusCode::NOT_FOUND, "that is not a run id");
    };
    let run = match state.rt.run(id).await {
        Ok(r) => r,
        Err(e) => return error_page(&authed, &e),
    };
    // Its replays, from its event's fan-out.
    let replays: Vec<RunInfo> = match state.rt.runs(run.event_id).await {
        Ok(runs) => runs
            .into_iter()
            .filter(|r| r.replay_of == Some(id))
            .collect(),
        Err(_) => Vec::new(),
    };
    let detail = run_detail(&authed, &run, &replays);
    if !q.fragment.is_empty() {
        return authed.respond(detail);
    }
    let b = esc(&authed.base);
    let body = format!(
        "<h1>Run <span class=\"mono\">{id}</span></h1>\
         <div id=\"run\" data-live=\"{b}/runs/{id}?fragment=1\">{detail}</div>"
    );
    authed.respond(page(
        &authed.base,
        &format!("Run {id}"),
        Some(&authed.csrf),
        &body,
    ))
}

/// A run's details: the live part of its page.
fn run_detail(authed: &Authed, run: &RunInfo, replays: &[RunInfo]) -> String {
    let b = esc(&authed.base);
    let id = run.run_id;
    let mut d = String::from("<dl>");
    let mut row = |k: &str, v: String| {
        let _ = write!(d, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row(
        "Status",
        format!("<span id=\"status\">{}</span>", badge(run.status)),
    );
    row(
        "Function",
        format!(
            "<a href=\"{b}/runs?function={}\">{}</a>",
            url(&run.function_id),
            esc(&run.function_id)
        ),
    );
    row(
        "Event",
        format!(
            "<a href=\"{b}/events/{}\">{}</a> <span class=\"mono muted\">{}</span>",
            run.event_id,
            esc(&run.event_name),
            run.event_id
        ),
    );
    row("App", esc(&run.app));
    row("Attempts", run.attempts.to_string());
    row("Created", time(run.created_at_ms));
    match run.status {
        RunStatus::Sleeping => row(
            "State",
            "sleeping (<code>ctx.sleep</code>): holds no worker until it wakes".into(),
        ),
        RunStatus::Waiting => row(
            "State",
            "waiting for an event (<code>ctx.wait_for_event</code>)".into(),
        ),
        _ => {}
    }
    if let Some(nb) = run.not_before_ms {
        row("Not before", time(nb));
    }
    if let Some(reason) = &run.reason {
        row("Reason", esc(reason));
    }
    if let Some(w) = &run.waiting_for {
        let matching = match &w.matching {
            Some((field, value)) => format!(
                " with <code>{}</code> = <code>{}</code>",
                esc(field),
                esc(&value.to_string())
            ),
            None => String::new(),
        };
        row(
            "Waiting for",
            format!(
                "<code>{}</code>{matching}, until {}",
                esc(&w.event),
                esc(&super::html::time(w.timeout_at_ms))
            ),
        );
    }
    if let Some(of) = run.replay_of {
        row(
            "Replay of",
            format!("<a class=\"mono\" href=\"{b}/runs/{of}\">{of}</a>"),
        );
    }
    if !replays.is_empty() {
        let links: Vec<String> = replays
            .iter()
            .map(|r| {
                format!(
                    "<a class=\"mono\" href=\"{b}/runs/{}\">{}</a> {}",
                    r.run_id,
                    r.run_id,
                    badge(r.status)
                )
            })
            .collect();
        row("Replayed as", links.join("<br>"));
    }
    d.push_str("</dl><div class=\"actions\">");
    let csrf = csrf_field(&authed.csrf);
    if run.status.is_finished() {
        let _ = write!(
            d,
            "<form class=\"inline\" method=\"post\" action=\"{b}/runs/{id}/replay\">{csrf}<button id=\"replay\">Replay</button></form>"
        );
    } else {
        let _ = write!(
            d,
            "<form class=\"inline\" method=\"post\" action=\"{b}/runs/{id}/cancel\">{csrf}<button id=\"cancel\" class=\"secondary\">Cancel</button></form>"
        );
    }
    d.push_str("</div>");
    if let Some(error) = &run.last_error {
        let _ = write!(
            d,
            "<h2>Last error</h2><pre class=\"error\" id=\"error\">{}</pre>",
            esc(error)
        );
    }
    if !run.failed_attempts.is_empty() {
        let _ = write!(d, "<h2>Failed attempts</h2><table id=\"attempts\"><thead><tr><th class=\"num\">Attempt</th><th>Started</th><th>Ended</th><th class=\"num\">Took</th><th>Error</th></tr></thead><tbody>");
        for a in &run.failed_attempts {
            let _ = write!(
                d,
                "<tr><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td><pre class=\"error\">{}</pre></td></tr>",
                a.attempt,
                time(a.started_at_ms),
                time(a.ended_at_ms),
                duration(a.ended_at_ms.saturating_sub(a.started_at_ms)),
                esc(&a.error)
            );
        }
        d.push_str("</tbody></table>");
    }
    if let Some(output) = &run.output {
        let text = serde_json::to_string_pretty(output).unwrap_or_default();
        let _ = write!(d, "<h2>Output</h2><pre id=\"output\">{}</pre>", esc(&text));
    }
    let _ = write!(d, "<h2>Steps</h2><table><thead><tr><th>Step</th><th>Started</th><th>Completed</th><th class=\"num\">Took</th></tr></thead><tbody>");
    for s in &run.steps {
        let _ = write!(
            d,
            "<tr><td><code>{}</code></td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.id),
            time(s.started_at_ms),
            time(s.completed_at_ms),
            duration(s.completed_at_ms.saturating_sub(s.started_at_ms))
        );
    }
    if run.steps.is_empty() {
        d.push_str("<tr><td colspan=\"4\" class=\"muted\">No step completed.</td></tr>");
    }
    d.push_str("</tbody></table>");
    d
}

/// `GET /events/{id}`: an event's fan-out, one run per subscribed function.
pub(super) async fn event(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    Query(q): Query<FragmentQuery>,
) -> Response {
    let Ok(id) = id.parse::<EventId>() else {
        return message_page(&authed, StatusCode::NOT_FOUND, "that is not an event id");
    };
    let runs = match state.rt.runs(id).await {
        Ok(r) => r,
        Err(e) => return error_page(&authed, &e),
    };
    let table = runs_table(&authed.base, &runs);
    if !q.fragment.is_empty() {
        return authed.respond(table);
    }
    let event = match state.rt.event(id).await {
        Ok(e) => e,
        Err(e) => return error_page(&authed, &e),
    };
    let b = esc(&authed.base);
    let data = serde_json::to_string_pretty(&event.data).unwrap_or_default();
    let body = format!(
        "<h1>Event <code>{}</code> <span class=\"mono muted\">{id}</span></h1>\
         <p class=\"muted\">Accepted {}.</p>\
         <h2>Data</h2><pre id=\"data\" class=\"data\">{}</pre>\
         <h2>Runs</h2>\
         <p class=\"muted\">One per subscribed function, and their replays.</p>\
         <div id=\"runs\" data-live=\"{b}/events/{id}?fragment=1\">{table}</div>",
        esc(&event.name),
        esc(&super::html::time(event.ts_ms)),
        esc(&data)
    );
    authed.respond(page(
        &authed.base,
        &format!("Event {id}"),
        Some(&authed.csrf),
        &body,
    ))
}

/// The run a `POST` about one run acts on, once the form is checked (`check_post`); the
/// answer otherwise.
fn posted_run(
    headers: &HeaderMap,
    authed: &Authed,
    csrf: &str,
    id: &str,
) -> Result<RunId, Box<Response>> {
    check_post(headers, authed, csrf).map_err(|refused| Box::new(refused.into_response()))?;
    id.parse::<RunId>().map_err(|_| {
        Box::new(message_page(
            authed,
            StatusCode::NOT_FOUND,
            "that is not a run id",
        ))
    })
}

/// `POST /runs/{id}/replay`: a new run, shown next.
pub(super) async fn replay(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let id = match posted_run(&headers, &authed, &form.csrf, &id) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    match state.rt.replay(id).await {
        Ok(new) => Redirect::to(&format!("{}/runs/{new}", authed.base)).into_response(),
        Err(e) => error_page(&authed, &e),
    }
}

/// `POST /runs/{id}/cancel`: back to the run.
pub(super) async fn cancel(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let id = match posted_run(&headers, &authed, &form.csrf, &id) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    match state.rt.cancel(id).await {
        Ok(_) => Redirect::to(&format!("{}/runs/{id}", authed.base)).into_response(),
        Err(e) => error_page(&authed, &e),
    }
}

/// `POST /functions/{id}/replay-failed`: the failed runs of a function, replayed, newest
/// first, at most [`BULK_MAX`] a press (a request stays bounded; press again for more);
/// then its runs.
pub(super) async fn replay_failed(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Path(function): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = check_post(&headers, &authed, &form.csrf) {
        return refused.into_response();
    }
    let mut failed = RunFilter::new()
        .status(RunStatus::Failed)
        .function(function.clone())
        .limit(500);
    let mut done = 0;
    while done < BULK_MAX {
        let page = match state.rt.replay_page(&failed).await {
            Ok(page) => page,
            Err(e) => return error_page(&authed, &e),
        };
        done += page.done.len();
        match page.next {
            Some(next) => failed = failed.after(next),
            None => break,
        }
    }
    Redirect::to(&format!("{}/runs?function={}", authed.base, url(&function))).into_response()
}

/// Most runs one press of "Replay failed" replays.
const BULK_MAX: usize = 5_000;
