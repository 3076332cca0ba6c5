//! The API's answers as text for people.

use crate::api::{EventWithRuns, Function, Run};
use crate::table::{truncate, Table};
use crate::time::{format_duration_ms, format_ms};
use serde_json::Value;

/// The statuses in the order a run goes through them, as the counts' columns.
pub const STATUSES: [&str; 8] = [
    "queued",
    "running",
    "sleeping",
    "waiting",
    "completed",
    "failed",
    "skipped",
    "cancelled",
];

/// [`STATUSES`] as column headers.
const COLUMNS: [&str; 8] = [
    "QUEUED",
    "RUNNING",
    "SLEEPING",
    "WAITING",
    "COMPLETED",
    "FAILED",
    "SKIPPED",
    "CANCELLED",
];

/// `fanfare functions`: id, app, trigger or cron, then a column per status.
pub fn functions(functions: &[Function]) -> String {
    if functions.is_empty() {
        return "no functions: the runtime links no #[function]\n".into();
    }
    let mut headers = vec!["ID", "APP", "TRIGGER"];
    headers.extend(COLUMNS);
    let mut t = Table::new(&headers);
    for f in functions {
        let trigger = match (&f.trigger, &f.cron) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) => format!("cron {c}"),
            (None, None) => "-".into(),
        };
        let mut row = vec![f.id.clone(), f.app.clone().unwrap_or_default(), trigger];
        row.extend(
            STATUSES
                .iter()
                .map(|s| f.counts.get(*s).copied().unwrap_or(0).to_string()),
        );
        t.row(row);
    }
    t.render()
}

/// How much of a last error a runs table shows.
const ERROR_WIDTH: usize = 60;

/// `fanfare runs`: one line per run.
pub fn runs(runs: &[Run]) -> String {
    let mut t = Table::new(&[
        "RUN ID",
        "FUNCTION",
        "STATUS",
        "ATTEMPTS",
        "CREATED (UTC)",
        "LAST ERROR",
    ]);
    for r in runs {
        t.row(vec![
            r.run_id.clone(),
            r.function_id.clone(),
            r.status.clone(),
            r.attempts.to_string(),
            format_ms(r.created_at_ms),
            r.last_error
                .as_deref()
                .map(|e| truncate(e, ERROR_WIDTH))
                .unwrap_or_default(),
        ]);
    }
    t.render()
}

/// `fanfare run ID`: every field, the failed attempts, then the steps with their timing.
pub fn run(r: &Run) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        out.push_str(&format!("{name:<11}{value}\n"));
    };
    field("run", &r.run_id);
    let app = r
        .app
        .as_deref()
        .map(|a| format!(" (app {a})"))
        .unwrap_or_default();
    field("function", &format!("{}{app}", r.function_id));
    field("status", &r.status);
    let name = r.event_name.as_deref().unwrap_or("?");
    field("event", &format!("{name} {}", r.event_id));
    field("attempts", &r.attempts.to_string());
    field("created", &format_ms(r.created_at_ms));
    if let Some(t) = r.not_before_ms {
        field("not before", &format_ms(t));
    }
    if let Some(of) = &r.replay_of {
        field("replay of", of);
    }
    if let Some(reason) = &r.reason {
        field("reason", reason);
    }
    if let Some(e) = &r.last_error {
        field("error", &indent(e));
    }
    if let Some(o) = &r.output {
        field("output", &indent(&pretty(o)));
    }
    if !r.failed_attempts.is_empty() {
        out.push_str("failed attempts\n");
        let mut t = Table::new(&["  #", "STARTED (UTC)", "TOOK", "ERROR"]);
        for a in &r.failed_attempts {
            t.row(vec![
                format!("  {}", a.attempt),
                format_ms(a.started_at_ms),
                format_duration_ms(a.ended_at_ms - a.started_at_ms),
                a.error.replace('\n', " "),
            ]);
        }
        out.push_str(&t.render());
    }
    if r.steps.is_empty() {
        out.push_str("steps      none\n");
    } else {
        out.push_str("steps\n");
        let mut t = Table::new(&["  ID", "STARTED (UTC)", "COMPLETED (UTC)", "TOOK"]);
        for s in &r.steps {
            let took = match (s.started_at_ms, s.completed_at_ms) {
                (Some(a), Some(b)) => format_duration_ms(b - a),
                _ => String::new(),
            };
            t.row(vec![
                format!("  {}", s.id),
                s.started_at_ms.map(format_ms).unwrap_or_default(),
                s.completed_at_ms
                    .map(format_ms)
                    .unwrap_or_else(|| "-".into()),
                took,
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

/// `fanfare event ID`: the event, then its runs (its fan-out).
pub fn event(e: &EventWithRuns) -> String {
    let ev = &e.event;
    let mut out = format!(
        "event      {}\nname       {}\ntime       {}\ndata       {}\n\n",
        ev.id,
        ev.name,
        format_ms(ev.ts),
        indent(&pretty(&ev.data)),
    );
    if e.runs.is_empty() {
        out.push_str("no runs: no function is subscribed to it (or they were pruned)\n");
    } else {
        out.push_str(&format!("{} run(s):\n", e.runs.len()));
        out.push_str(&runs(&e.runs));
    }
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Lines after the first indented under a field's value.
fn indent(s: &str) -> String {
    s.trim_end().replace('\n', "\n           ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{decode, Functions};
    use serde_json::json;

    fn run_json() -> Value {
        json!({
            "run_id": "0193-run", "event_id": "0193-ev", "event_name": "user/signup",
            "app": "shop", "function_id": "welcome", "status": "failed", "attempts": 5,
            "last_error": "the CRM answered 503\nretry later", "output": null,
            "reason": null, "not_before_ms": null, "created_at_ms": 1_769_850_000_000i64,
            "replay_of": "0192-old",
            "failed_attempts": [
                {"attempt": 1, "started_at_ms": 1_769_849_990_000i64, "ended_at_ms": 1_769_849_990_300i64,
                 "error": "the CRM answered 503\nretry later"}
            ],
            "steps": [
                {"id": "charge", "started_at_ms": 1_769_850_000_000i64, "completed_at_ms": 1_769_850_002_400i64},
                {"id": "email", "started_at_ms": 1_769_850_002_500i64, "completed_at_ms": null}
            ]
        })
    }

    #[test]
    fn a_runs_table_has_one_line_per_run() {
        let r: Run = decode("test", &run_json()).unwrap();
        assert_eq!(
            runs(&[r]),
            "RUN ID    FUNCTION  STATUS  ATTEMPTS  CREATED (UTC)         LAST ERROR\n\
             0193-run  welcome   failed  5         2026-01-31 09:00:00Z  the CRM answered 503 retry later\n"
        );
    }

    #[test]
    fn a_run_shows_every_field_and_its_steps() {
        let r: Run = decode("test", &run_json()).unwrap();
        let text = run(&r);
        for want in [
            "function   welcome (app shop)",
            "event      user/signup 0193-ev",
            "replay of  0192-old",
            "error      the CRM answered 503\n           retry later\n",
            "  charge  2026-01-31 09:00:00Z  2026-01-31 09:00:02Z  2.4s",
            "  email   2026-01-31 09:00:02Z  -",
            "failed attempts\n",
            "  1  2026-01-31 08:59:50Z  300ms  the CRM answered 503 retry later\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn functions_show_trigger_or_cron_and_counts() {
        let f: Functions = decode(
            "test",
            &json!({"functions": [
                {"id": "welcome", "app": "shop", "trigger": "user/signup", "cron": null,
                 "counts": {"queued": 1, "failed": 2}},
                {"id": "report", "app": "shop", "trigger": null, "cron": "0 * * * *", "counts": {}}
            ]}),
        )
        .unwrap();
        let text = functions(&f.functions);
        assert_eq!(
            text,
            "ID       APP   TRIGGER         QUEUED  RUNNING  SLEEPING  WAITING  COMPLETED  FAILED  SKIPPED  CANCELLED\n\
             welcome  shop  user/signup     1       0        0         0        0          2       0        0\n\
             report   shop  cron 0 * * * *  0       0        0         0        0          0       0        0\n"
        );
    }

    #[test]
    fn an_answer_that_is_not_the_apis_is_a_server_error() {
        let e = decode::<Run>("GET /api/runs/x", &json!({"nope": 1})).unwrap_err();
        assert_eq!(e.kind.code(), 6);
        assert!(e.message.contains("GET /api/runs/x"), "{}", e.message);
    }
}
