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
        full.mul_f64(rand::random_range(0.5..=1.0))
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
