//! Retry delays that double up to a bound, with jitter: a graph node's
//! retries and a queue consumer's nacks.

use std::time::Duration;

use crate::{Error, Result};

/// Retry delays: the `n`-th retry waits about `initial * 2^(n-1)`, at most
/// `max`, each scaled by a random factor in 0.5..=1.0 so that the retries
/// of many runs or items spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The default: 200 ms, doubling, at most 30 s.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(30),
    };

    /// The delay before the attempt after attempt `attempt` (1-based), with
    /// its jitter.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = doubled.min(self.max);
        scaled(full, rand::random_range(0.5..=1.0))
    }

    /// `InvalidArgument` naming `what` unless `initial` is above zero and at
    /// most `max`.
    pub(crate) fn check(&self, what: impl FnOnce() -> String) -> Result<()> {
        if self.initial.is_zero() || self.initial > self.max {
            return Err(Error::invalid(format!(
                "{} has back-off {:?}..{:?}; it must be above zero and initial <= max",
                what(),
                self.initial,
                self.max
            )));
        }
        Ok(())
    }
}

/// `full` scaled by `factor` (0.5..=1.0), at most `full`: `mul_f64` panics
/// when the product rounds past `Duration::MAX` (a maximal back-off drawn
/// at 1.0).
fn scaled(full: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(full.as_secs_f64() * factor).map_or(full, |d| d.min(full))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jitter's factor never takes a delay past the back-off's bound,
    /// even a bound of `Duration::MAX` drawn at 1.0 (where `mul_f64`
    /// panicked: a topic nack's, queue item's or graph node's retry).
    #[test]
    fn a_scaled_delay_stays_within_its_bound() {
        assert_eq!(scaled(Duration::MAX, 1.0), Duration::MAX);
        assert!(scaled(Duration::MAX, 0.5) < Duration::MAX);
        let ms = Duration::from_millis;
        assert_eq!(scaled(ms(200), 0.5), ms(100));
        assert_eq!(scaled(ms(200), 1.0), ms(200));
        let most = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
        };
        assert!(most.delay(3) >= Duration::MAX / 3);
    }
}
