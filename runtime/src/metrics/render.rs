//! The Prometheus text exposition format (version 0.0.4) of a [`Metrics`] snapshot.

use super::{FunctionMetrics, Metrics};
use std::fmt::Write;

/// Reads one counter of a function's figures.
type Field = fn(&FunctionMetrics) -> u64;

/// The per-function counters: name, help, and the field each reads.
const COUNTERS: [(&str, &str, Field); 6] = [
    (
        "fanfare_runs_started_total",
        "Runs whose first attempt began executing in this process.",
        |f| f.started,
    ),
    (
        "fanfare_runs_completed_total",
        "Runs that completed in this process.",
        |f| f.completed,
    ),
    (
        "fanfare_runs_failed_total",
        "Runs that failed for good in this process.",
        |f| f.failed,
    ),
    (
        "fanfare_runs_retried_total",
        "Attempts that failed in this process and were scheduled for a retry.",
        |f| f.retried,
    ),
    (
        "fanfare_runs_skipped_total",
        "Runs skipped by flow control (rate_limit, debounce, idempotency, filter) in this process's claims.",
        |f| f.skipped,
    ),
    (
        "fanfare_runs_cancelled_total",
        "Runs cancelled by this process, or stopped by a cancellation while executing here.",
        |f| f.cancelled,
    ),
];

impl Metrics {
    /// The snapshot in the Prometheus text exposition format (0.0.4), as a `/metrics`
    /// endpoint serves it (content type [`Metrics::CONTENT_TYPE`]).
    ///
    /// ```
    /// let text = fanfare::Metrics::default().to_prometheus();
    /// assert!(text.contains("# TYPE fanfare_queue_truncated gauge\nfanfare_queue_truncated 0\n"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(1024 + 2048 * self.functions.len());
        for (name, help, field) in COUNTERS {
            header(&mut out, name, help, "counter");
            for f in &self.functions {
                sample(
                    &mut out,
                    name,
                    &[("function", &f.function)],
                    field(f) as f64,
                );
            }
        }

        let name = "fanfare_attempt_duration_seconds";
        header(
            &mut out,
            name,
            "How long this process's attempts took, until they returned, suspended or were stopped.",
            "histogram",
        );
        for f in &self.functions {
            let h = &f.attempt_duration;
            for &(le, n) in &h.buckets {
                let le = number(le);
                let labels = [("function", f.function.as_str()), ("le", le.as_str())];
                sample(&mut out, &format!("{name}_bucket"), &labels, n as f64);
            }
            let labels = [("function", f.function.as_str())];
            sample(&mut out, &format!("{name}_sum"), &labels, h.sum_seconds);
            sample(&mut out, &format!("{name}_count"), &labels, h.count as f64);
        }

        let name = "fanfare_events_sent_total";
        header(
            &mut out,
            name,
            "Events sent by this process, by name; names no function here subscribes to are counted as \"other\".",
            "counter",
        );
        for e in &self.events_sent {
            sample(&mut out, name, &[("event", &e.event)], e.sent as f64);
        }

        let name = "fanfare_queue_depth";
        header(
            &mut out,
            name,
            "Runs due now and waiting for a worker, in the store (every process's).",
            "gauge",
        );
        for f in &self.functions {
            sample(
                &mut out,
                name,
                &[("function", &f.function)],
                f.queue_due as f64,
            );
        }
        let name = "fanfare_queue_oldest_due_age_seconds";
        header(
            &mut out,
            name,
            "How long the oldest due run has been due (0 without due runs).",
            "gauge",
        );
        for f in &self.functions {
            let age = f.oldest_due_age.as_secs_f64();
            sample(&mut out, name, &[("function", &f.function)], age);
        }
        let name = "fanfare_queue_truncated";
        header(
            &mut out,
            name,
            "1 when more runs are due than a snapshot reads: queue depths are then lower bounds.",
            "gauge",
        );
        sample(
            &mut out,
            name,
            &[],
            f64::from(u8::from(self.queue_truncated)),
        );
        out
    }

    /// The content type of [`Metrics::to_prometheus`]'s text, for an HTTP response.
    ///
    /// ```
    /// assert!(fanfare::Metrics::CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    /// ```
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";
}

/// `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&number(value));
    out.push('\n');
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value or bound: `+Inf`, `-Inf`, `NaN`, else Rust's shortest round-trip form.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EventsSent, Histogram};
    use std::time::Duration;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\\y\"z\nw"), ("b", "plain")], 2.0);
        assert_eq!(out, "m{a=\"x\\\\y\\\"z\\nw\",b=\"plain\"} 2\n");
        let mut out = String::new();
        header(&mut out, "m", "back\\slash\nnew line", "gauge");
        assert_eq!(out, "# HELP m back\\\\slash\\nnew line\n# TYPE m gauge\n");
    }

    #[test]
    fn numbers_in_the_exposition_format() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(300.0), "300");
        assert_eq!(number(1.25), "1.25");
    }

    #[test]
    fn a_histogram_is_cumulative_with_inf_sum_and_count() {
        let metrics = Metrics {
            functions: vec![FunctionMetrics {
                function: "f".to_owned(),
                attempt_duration: Histogram {
                    buckets: vec![(0.005, 1), (1.0, 3), (f64::INFINITY, 4)],
                    sum_seconds: 400.5,
                    count: 4,
                },
                queue_due: 7,
                oldest_due_age: Duration::from_millis(1500),
                ..FunctionMetrics::default()
            }],
            events_sent: vec![EventsSent {
                event: "other".to_owned(),
                sent: 3,
            }],
            queue_truncated: true,
        };
        let text = metrics.to_prometheus();
        for line in [
            "# TYPE fanfare_attempt_duration_seconds histogram\n",
            "fanfare_attempt_duration_seconds_bucket{function=\"f\",le=\"0.005\"} 1\n",
            "fanfare_attempt_duration_seconds_bucket{function=\"f\",le=\"1\"} 3\n",
            "fanfare_attempt_duration_seconds_bucket{function=\"f\",le=\"+Inf\"} 4\n",
            "fanfare_attempt_duration_seconds_sum{function=\"f\"} 400.5\n",
            "fanfare_attempt_duration_seconds_count{function=\"f\"} 4\n",
            "fanfare_events_sent_total{event=\"other\"} 3\n",
            "fanfare_queue_depth{function=\"f\"} 7\n",
            "fanfare_queue_oldest_due_age_seconds{function=\"f\"} 1.5\n",
            "fanfare_queue_truncated 1\n",
            "fanfare_runs_started_total{function=\"f\"} 0\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        // Each metric's samples follow its own `# TYPE` line, once.
        assert_eq!(text.matches("# TYPE ").count(), 11);
    }

    #[test]
    fn attempts_fall_in_the_first_bucket_that_holds_them() {
        use crate::metrics::counters::bucket;
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_millis(5)), 0);
        assert_eq!(bucket(Duration::from_micros(5_001)), 1);
        assert_eq!(bucket(Duration::from_secs(1)), 7);
        assert_eq!(bucket(Duration::from_secs(300)), 14);
        assert_eq!(bucket(Duration::from_secs(301)), 15);
        assert_eq!(bucket(Duration::MAX), 15);
    }

    #[test]
    fn events_no_function_subscribes_to_count_as_other() {
        let registry = crate::function::Registry::new(Vec::new()).expect("an empty registry");
        let counters = crate::metrics::Counters::new(&registry);
        counters.sent(counters.event_label("anything"));
        counters.sent(counters.event_label("else"));
        let m = counters.snapshot(&registry, Default::default());
        assert_eq!(m.events_sent.len(), 1);
        assert_eq!(m.sent("other"), 2);
    }
}
