//! [`Backoff`]: how long a failed run waits before its next attempt.

use std::time::Duration;

/// Delay before a retry: exponential, capped, with jitter.
///
/// Attempt `n` (0 for the first try) that failed waits a random time between half and
/// all of `min × 2ⁿ`, capped at `max`. The randomness spreads the retries of many runs
/// that failed together (an outage) instead of sending them back at one instant.
///
/// ```
/// use std::time::Duration;
/// use fanfare::Backoff;
///
/// let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));
/// let d = b.delay(3); // up to 800 ms
/// assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
/// assert!(b.delay(30) <= Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min` and doubles per failed attempt up to `max`. A `max` below `min` is
    /// raised to `min`.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
        }
    }

    /// The delay after attempt `attempt` (0-based) failed, jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let full = self.min.saturating_mul(factor).min(self.max);
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// The delay before the first retry, without jitter.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }
}

impl Default for Backoff {
    /// One second, doubling to at most ten minutes.
    fn default() -> Self {
        Backoff::exponential(Duration::from_secs(1), Duration::from_secs(600))
    }
}
