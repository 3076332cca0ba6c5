//! Cron schedules: `#[function(cron = "…")]` runs once per tick, per app.
//!
//! Every executing process of the app computes the function's ticks and, at each, stores
//! an event of that tick for that function alone (`Store::append_to`). The event's id is
//! derived from the app, the function and the tick, so the processes that store it at
//! the same moment (replicas, a restart) store it once: one run per tick, whatever the
//! deployment. Ticks that pass while no process runs are not replayed.

use crate::engine::Engine;
use crate::event::{unix_millis, Envelope, Event, EventId};
use fanfare_cron::Schedule;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The name of the events that start cron runs. Never fanned out.
pub(crate) const CRON_EVENT: &str = "fanfare/cron";

/// A tick later than this is counted as missed (the process was suspended, the store
/// was down): it is not run late.
const MISSED_AFTER: Duration = Duration::from_secs(60);

/// Longest sleep between two looks at the wall clock, so a clock change is noticed.
const LOOK_EVERY: Duration = Duration::from_secs(30);

/// What a cron function receives: the tick its run is for.
///
/// ```
/// use fanfare::{Cron, Ctx};
///
/// /// Every weekday at 9:00, Paris time.
/// #[fanfare::function(cron = "TZ=Europe/Paris 0 9 * * MON-FRI")]
/// async fn morning_report(ctx: Ctx<Cron>) -> fanfare::Result<()> {
///     let tick = ctx.event().scheduled_at; // the tick this run is for
///     let _ = tick;
///     Ok(())
/// }
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(into = "Stored", from = "Stored")]
#[non_exhaustive]
pub struct Cron {
    /// The tick this run is for (whole seconds), whenever the run actually starts.
    pub scheduled_at: SystemTime,
    /// The function's cron expression.
    pub schedule: String,
}

/// A tick as stored: its time in milliseconds since the Unix epoch.
#[derive(Serialize, Deserialize, Clone)]
struct Stored {
    scheduled_at_ms: u64,
    schedule: String,
}

impl From<Cron> for Stored {
    fn from(c: Cron) -> Stored {
        Stored {
            scheduled_at_ms: unix_millis(c.scheduled_at),
            schedule: c.schedule,
        }
    }
}

impl From<Stored> for Cron {
    fn from(s: Stored) -> Cron {
        Cron {
            scheduled_at: UNIX_EPOCH + Duration::from_millis(s.scheduled_at_ms),
            schedule: s.schedule,
        }
    }
}

#[diagnostic::do_not_recommend]
impl Event for Cron {
    const NAME: &'static str = CRON_EVENT;
}

/// Compile-time check that a `cron` function takes `Ctx<fanfare::Cron>`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a `cron` function takes `Ctx<fanfare::Cron>`, not `Ctx<{Self}>`",
    label = "not `fanfare::Cron`",
    note = "write `ctx: fanfare::Ctx<fanfare::Cron>`; `ctx.event().scheduled_at` is the tick"
)]
pub trait CronEvent {}
impl CronEvent for Cron {}

#[doc(hidden)]
pub const fn check_cron<E: CronEvent>() {}

/// Schedules the ticks of function `function` until shutdown.
pub(crate) async fn schedule(engine: Arc<Engine>, app: String, function: u32) {
    let def = engine.registry.defs[function as usize];
    let Some(expr) = def.cron() else { return };
    let schedule = match Schedule::parse(expr) {
        Ok(schedule) => schedule,
        Err(e) => {
            // The macro parsed it already; a different tz database at run time may not.
            tracing::error!(function = def.id(), cron = expr, error = %e, "fanfare: cron schedule refused; the function will not run");
            return;
        }
    };
    let mut last = SystemTime::now();
    loop {
        let Some(tick) = schedule.next_after(last) else {
            tracing::warn!(
                function = def.id(),
                cron = expr,
                "fanfare: cron schedule has no next tick"
            );
            return;
        };
        while let Ok(left) = tick.duration_since(SystemTime::now()) {
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(LOOK_EVERY)).await;
        }
        last = tick;
        if engine.stopping.load(Ordering::Acquire) {
            return;
        }
        let late = SystemTime::now().duration_since(tick).unwrap_or_default();
        if late > MISSED_AFTER {
            tracing::warn!(function = def.id(), cron = expr, late = ?late, "fanfare: cron tick missed");
            continue;
        }
        let tick_ms = unix_millis(tick);
        let data = serde_json::json!({ "scheduled_at_ms": tick_ms, "schedule": expr });
        let id = EventId::from_key(&format!("{CRON_EVENT}\0{app}\0{}\0{tick_ms}", def.id()));
        let envelope = Envelope::internal(CRON_EVENT, data.to_string(), id);
        tracing::debug!(function = def.id(), tick_ms, "fanfare: cron tick");
        engine
            .store_internal(envelope, Some(function), "a cron tick")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_round_trips_through_json() {
        let tick = Cron {
            scheduled_at: UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            schedule: "0 9 * * *".into(),
        };
        let json = serde_json::to_string(&tick).unwrap();
        assert_eq!(
            json,
            r#"{"scheduled_at_ms":1790000000000,"schedule":"0 9 * * *"}"#
        );
        assert_eq!(serde_json::from_str::<Cron>(&json).unwrap(), tick);
    }
}
