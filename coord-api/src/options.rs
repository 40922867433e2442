//! Options of the lock family's client types.

use std::time::Duration;

use crate::{Error, Key, Result, validate_ttl};

/// How a [`Lock`](crate::Lock), [`RwLock`](crate::RwLock) or
/// [`Semaphore`](crate::Semaphore) acquires and keeps its leases.
///
/// ```
/// use coord_api::LockOptions;
/// use std::time::Duration;
/// let opts = LockOptions::default()
///     .ttl(Duration::from_secs(10))
///     .wait_timeout(Some(Duration::from_secs(2)))
///     .auto_extend(false);
/// assert_eq!(opts.ttl, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LockOptions {
    /// Lease time-to-live: how long the backend keeps the lease without a
    /// renewal. Default 30 s. Range 1 ms ..= 24 h.
    pub ttl: Duration,
    /// How long `lock()` / `read()` / `write()` / `acquire()` wait before
    /// `Error::Timeout`. `None` (the default) waits for ever.
    pub wait_timeout: Option<Duration>,
    /// Fallback retry period while waiting. Waiters are woken by the backend's
    /// release and expiry notifications; this only bounds how long a missed
    /// notification can delay them. Default 1 s.
    pub retry_delay: Duration,
    /// Each retry delay is scaled by a random factor in `1 ± retry_jitter`
    /// so that waiters do not retry in lock-step. Default 0.2; range 0..=1.
    pub retry_jitter: f64,
    /// Give up with `Error::Timeout` after this many failed retries. Default
    /// `None` (no limit).
    pub max_retries: Option<u32>,
    /// Renew the lease in the background while it is held. Default on. (A
    /// client on the in-memory backend's own clock has the backend keep its
    /// locks, read-write locks and permits until released instead: nothing to
    /// renew. Reentrant holds are renewed as everywhere.)
    pub auto_extend: bool,
    /// How often auto-extension renews. Default `None`: a third of the TTL.
    pub extend_interval: Option<Duration>,
    /// The largest rate difference assumed between the client's and the
    /// server's clocks, as a fraction (0.01 = 1 %). The lease counts as valid
    /// locally until `t_sent + ttl * (1 - max_drift) - safety_margin`.
    /// Default 0.01; range 0..0.5.
    pub max_drift: f64,
    /// Subtracted from local validity on top of the drift allowance. Default 2 ms.
    pub safety_margin: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(30),
            wait_timeout: None,
            retry_delay: Duration::from_secs(1),
            retry_jitter: 0.2,
            max_retries: None,
            auto_extend: true,
            extend_interval: None,
            max_drift: 0.01,
            safety_margin: Duration::from_millis(2),
        }
    }
}

impl LockOptions {
    /// Sets [`ttl`](Self::ttl).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// Sets [`wait_timeout`](Self::wait_timeout).
    pub fn wait_timeout(mut self, wait: Option<Duration>) -> Self {
        self.wait_timeout = wait;
        self
    }
    /// Sets [`retry_delay`](Self::retry_delay).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }
    /// Sets [`retry_jitter`](Self::retry_jitter).
    pub fn retry_jitter(mut self, jitter: f64) -> Self {
        self.retry_jitter = jitter;
        self
    }
    /// Sets [`max_retries`](Self::max_retries).
    pub fn max_retries(mut self, max: Option<u32>) -> Self {
        self.max_retries = max;
        self
    }
    /// Sets [`auto_extend`](Self::auto_extend).
    pub fn auto_extend(mut self, on: bool) -> Self {
        self.auto_extend = on;
        self
    }
    /// Sets [`extend_interval`](Self::extend_interval).
    pub fn extend_interval(mut self, every: Option<Duration>) -> Self {
        self.extend_interval = every;
        self
    }
    /// Sets [`max_drift`](Self::max_drift).
    pub fn max_drift(mut self, drift: f64) -> Self {
        self.max_drift = drift;
        self
    }
    /// Sets [`safety_margin`](Self::safety_margin).
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = margin;
        self
    }

    /// Checks every field; errors name `key` and the limit broken.
    pub fn validate(&self, key: &Key) -> Result<()> {
        validate_ttl(key, self.ttl)?;
        let bad = |what: String| Err(Error::invalid(format!("{what} (key {key:?})")));
        if !(0.0..=1.0).contains(&self.retry_jitter) {
            return bad(format!(
                "retry_jitter {} is outside 0..=1",
                self.retry_jitter
            ));
        }
        if !(0.0..0.5).contains(&self.max_drift) {
            return bad(format!("max_drift {} is outside 0..0.5", self.max_drift));
        }
        if self.retry_delay.is_zero() {
            return bad("retry_delay is zero".into());
        }
        if let Some(every) = self.extend_interval
            && (every.is_zero() || every >= self.ttl)
        {
            return bad(format!(
                "extend_interval {every:?} must be above zero and below the ttl {:?}",
                self.ttl
            ));
        }
        Ok(())
    }

    /// The renewal period: `extend_interval`, or a third of the TTL.
    pub fn renew_every(&self) -> Duration {
        self.extend_interval.unwrap_or(self.ttl / 3)
    }

    /// How long after `t_sent` a lease granted for `ttl` counts as valid
    /// locally: `ttl * (1 - max_drift) - safety_margin` (zero at least).
    pub fn local_validity(&self, ttl: Duration) -> Duration {
        ttl.mul_f64(1.0 - self.max_drift)
            .saturating_sub(self.safety_margin)
    }
}
