//! How runs end early: `cancel_on(…)` events and `timeouts(start, finish)`.
//!
//! - A cancelling event sent through this process cancels the matching runs of this
//!   process's functions before `send` returns (`Engine::cancel_matching`); on
//!   PostgreSQL, each process also watches the events other processes send
//!   (`Engine::watch_cancels`), and looks back for them before a run starts.
//! - `start` is checked before a run's first attempt; `finish` bounds every attempt with a
//!   timer and caps its sleeps and waits, so a suspended run wakes at the deadline and
//!   is cancelled then.

use super::Engine;
use crate::event::{now_millis, Envelope, EventId};
use crate::function::FunctionDef;
use crate::lifetime::CancelOn;
use crate::store::{field_of, OutcomeKind, Unfinished};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Most unfinished runs of a function a cancelling event is matched against.
const MAX_RUNS: usize = 100_000;

/// Most events read per look at other processes' sends.
const PAGE: usize = 1_000;

/// How often a process looks for other processes' cancelling events (PostgreSQL).
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// How far back each look reaches before the latest event seen: events are stamped by
/// their senders' clocks, and a send commits a little after its stamp.
const SKEW_MS: u64 = 10_000;

/// When a run started: what `timeouts` measure from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Started {
    /// The run never started before this attempt.
    pub fresh: bool,
    /// Its first start (unix ms): its earliest step's, or this attempt's.
    pub first_ms: u64,
}

/// Whether `cancel` (an event named by `rule`) cancels a run of `trigger`: sent after
/// it, within the rule's timeout, with the same value of the matched field.
fn cancels(rule: &CancelOn, trigger: &Envelope, cancel: &Envelope) -> bool {
    if cancel.ts < trigger.ts {
        return false;
    }
    if let Some(timeout) = rule.timeout() {
        if cancel.ts > trigger.ts.saturating_add(timeout.as_millis() as u64) {
            return false;
        }
    }
    let Some(field) = rule.matching() else {
        return true;
    };
    matches!(
        (field_of(&trigger.data, field), field_of(&cancel.data, field)),
        (Some(a), Some(b)) if a == b
    )
}

/// `10m`, `2h`, `1500ms`: a duration as written in `timeouts(…)`.
fn written(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

fn cancelled_by(event: &Envelope) -> String {
    format!("cancelled by event `{}` ({})", event.name, event.id)
}

impl Engine {
    /// Cancels the unfinished runs of this process's functions that `events` cancel
    /// (`cancel_on`). Called once they are stored, outside any store call.
    pub(crate) async fn cancel_matching(&self, events: &[Arc<Envelope>]) {
        // (function, rule) → the events of the rule's name.
        let mut work: HashMap<u32, Vec<(&'static CancelOn, &Envelope)>> = HashMap::new();
        for event in events {
            for &(function, rule) in self.registry.cancellers(&event.name) {
                work.entry(function).or_default().push((rule, event));
            }
        }
        for (function, rules) in work {
            let runs: Vec<Unfinished> = match self.store.unfinished(function, MAX_RUNS).await {
                Ok(runs) => runs,
                Err(e) => {
                    tracing::error!(error = %e, function = self.registry.defs[function as usize].id(), "fanfare: cannot look for runs to cancel");
                    continue;
                }
            };
            for run in runs {
                let Some((_, event)) = rules
                    .iter()
                    .find(|(rule, event)| cancels(rule, &run.event, event))
                else {
                    continue;
                };
                if let Err(e) = self.cancel(run.run_id, cancelled_by(event)).await {
                    tracing::error!(error = %e, run_id = %run.run_id, "fanfare: cannot cancel a run");
                }
            }
        }
    }

    /// Why a run must not start this attempt, if it must not: a start timeout or the
    /// `finish` deadline (from [`Engine::finish_deadline`]) passed, or (on a store shared with other processes) a cancelling event was sent
    /// since its event.
    pub(super) async fn ends_before(
        &self,
        def: &FunctionDef,
        event: &Envelope,
        started: Started,
        finish: Option<&(u64, String)>,
    ) -> Option<String> {
        let lifetime = def.lifetime()?;
        let now = now_millis();
        if let Some(start) = lifetime.start() {
            if started.fresh && now > event.ts.saturating_add(start.as_millis() as u64) {
                return Some(format!("timed out: not started within {}", written(start)));
            }
        }
        if let Some((deadline_ms, reason)) = finish {
            if now >= *deadline_ms {
                return Some(reason.clone());
            }
        }
        let rules = lifetime.cancel_on();
        if rules.is_empty() || self.store.lease().is_none() {
            // Every event of an embedded store passed through this process, and
            // cancelled its runs as it was sent.
            return None;
        }
        let names: Vec<String> = rules.iter().map(|r| r.event().to_owned()).collect();
        let sent = match self.store.events_named(names, event.ts, PAGE).await {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(error = %e, "fanfare: cannot look for cancelling events");
                return None;
            }
        };
        sent.iter().find_map(|cancel| {
            rules
                .iter()
                .any(|rule| rule.event() == cancel.name && cancels(rule, event, cancel))
                .then(|| cancelled_by(cancel))
        })
    }

    /// The `finish` deadline of a run (unix ms), if its function has one.
    pub(super) fn finish_deadline(def: &FunctionDef, started: Started) -> Option<(u64, String)> {
        let finish = def.lifetime()?.finish()?;
        Some((
            started.first_ms.saturating_add(finish.as_millis() as u64),
            format!("timed out: not finished within {}", written(finish)),
        ))
    }

    /// A sleep or a wait past the run's `finish` deadline wakes at the deadline instead,
    /// to be cancelled then.
    pub(super) fn cap(result: OutcomeKind, deadline_ms: Option<u64>) -> OutcomeKind {
        let Some(deadline_ms) = deadline_ms else {
            return result;
        };
        match result {
            OutcomeKind::Sleep { delay } => OutcomeKind::Sleep {
                delay: delay.min(Duration::from_millis(
                    deadline_ms.saturating_sub(now_millis()),
                )),
            },
            OutcomeKind::Wait {
                deadline_ms: d,
                seq,
            } => OutcomeKind::Wait {
                deadline_ms: d.min(deadline_ms),
                seq,
            },
            other => other,
        }
    }

    /// Watches the events other processes send for those that cancel runs of this
    /// process's functions (stores shared between processes), until shutdown.
    pub async fn watch_cancels(self: Arc<Self>) {
        let names = self.registry.cancel_names();
        if names.is_empty() || self.store.lease().is_none() || self.concurrency == 0 {
            return;
        }
        // From the start: a cancelling event sent while no process ran still cancels
        // the sleeping and waiting runs it matches.
        let mut since = 0u64;
        let mut seen: HashMap<EventId, u64> = HashMap::new();
        // After a full page, the next one starts at its last event (not `SKEW_MS` before).
        let mut more = false;
        loop {
            let from = if more {
                since
            } else {
                since.saturating_sub(SKEW_MS)
            };
            let page = match self.store.events_named(names.clone(), from, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "fanfare: cannot look for cancelling events");
                    tokio::time::sleep(WATCH_EVERY).await;
                    continue;
                }
            };
            more = page.len() == PAGE;
            let new: Vec<Arc<Envelope>> = page
                .into_iter()
                .filter(|e| seen.insert(e.id, e.ts).is_none())
                .collect();
            since = new.iter().map(|e| e.ts).fold(since, u64::max);
            seen.retain(|_, ts| *ts + SKEW_MS >= since);
            if !new.is_empty() {
                self.cancel_matching(&new).await;
            }
            if !more {
                tokio::time::sleep(WATCH_EVERY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: u64, data: &str) -> Envelope {
        Envelope::stored(EventId::from_key(data), "e".into(), data.into(), ts)
    }

    #[test]
    fn a_later_event_with_the_same_field_cancels() {
        let rule = CancelOn::__new("order/cancelled", Some("order_id"), Some(60_000));
        let placed = event(1_000, r#"{"order_id":7,"total":3}"#);
        assert!(cancels(&rule, &placed, &event(2_000, r#"{"order_id":7}"#)));
        assert!(!cancels(&rule, &placed, &event(2_000, r#"{"order_id":8}"#)));
        assert!(!cancels(&rule, &placed, &event(2_000, r#"{"id":7}"#)));
        assert!(
            !cancels(&rule, &placed, &event(999, r#"{"order_id":7}"#)),
            "sent before"
        );
        assert!(
            !cancels(&rule, &placed, &event(61_001, r#"{"order_id":7}"#)),
            "past timeout"
        );
        let any = CancelOn::__new("order/cancelled", None, None);
        assert!(cancels(&any, &placed, &event(5_000, "{}")));
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(written(Duration::from_secs(600)), "10m");
        assert_eq!(written(Duration::from_secs(7200)), "2h");
        assert_eq!(written(Duration::from_millis(1500)), "1500ms");
        assert_eq!(written(Duration::from_secs(86_400)), "1d");
    }
}
