//! [`LeaseOptions`]: how every lease-based primitive acquires, waits and
//! keeps its leases.

use std::time::Duration;

use crate::{Error, Key, Result, validate_ttl};

/// How a lease-based primitive — a [`Lock`](crate::Lock),
/// [`RwLock`](crate::RwLock), [`Semaphore`](crate::Semaphore), an
/// [`Election`](crate::Election)'s terms, a [`Group`](crate::Group)'s
/// memberships, a [`Job`](crate::Job)'s runs — acquires, waits for and keeps
/// its leases.
///
/// ```
/// use coord_api::LeaseOptions;
/// use std::time::Duration;
/// let opts = LeaseOptions::default()
///     .ttl(Duration::from_secs(10))
///     .wait_timeout(Some(Duration::from_secs(2)))
///     .auto_extend(false);
/// assert_eq!(opts.ttl, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeaseOptions {
    /// Lease time-to-live: how long the backend keeps the lease without a
    /// renewal. Default 30 s. Range 1 ms ..= 24 h; with auto-extension on
    /// and no `extend_interval`, also long enough for a third of it to be
    /// below the local validity (with the default drift and margin, at
    /// least 3.046 ms).
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
    /// Renew the lease in the background while it is held. Default on.
    pub auto_extend: bool,
    /// How often auto-extension renews. Default `None`: a third of the TTL.
    /// Must be below the local validity ([`local_validity`](Self::local_validity)):
    /// a renewal due later would come after the lease is lost. The default
    /// is held to that rule too: a TTL too short for it is refused.
    pub extend_interval: Option<Duration>,
    /// The largest rate difference assumed between the client's and the
    /// server's clocks, as a fraction (0.01 = 1 %). The lease counts as valid
    /// locally until `t_sent + ttl * (1 - max_drift) - safety_margin`.
    /// Default 0.01; range 0..0.5.
    pub max_drift: f64,
    /// Subtracted from local validity on top of the drift allowance. Default
    /// 2 ms; it must leave some local validity (`ttl * (1 - max_drift)` above
    /// it), else a lease would be lost the moment it is granted.
    pub safety_margin: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
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

impl LeaseOptions {
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

    /// Checks every field before any of them is used; errors are
    /// `InvalidArgument` naming `key`, the option and its range.
    pub fn validate(&self, key: &Key) -> Result<()> {
        validate_ttl(key, self.ttl)?;
        let bad = |what: String| Err(Error::invalid(format!("{what} (key {key:?})")));
        // NaN fails every range check.
        if !(0.0..=1.0).contains(&self.retry_jitter) {
            return bad(format!(
                "retry_jitter {} is outside 0..=1",
                self.retry_jitter
            ));
        }
        if !(0.0..0.5).contains(&self.max_drift) {
            return bad(format!(
                "max_drift {} is outside 0..0.5 (0 inclusive, 0.5 exclusive)",
                self.max_drift
            ));
        }
        if self.retry_delay.is_zero() {
            return bad("retry_delay is zero; it must be above zero".into());
        }
        let validity = self.local_validity();
        if validity.is_zero() {
            return bad(format!(
                "safety_margin {:?} leaves no local validity for the ttl {:?} with max_drift {}: \
                 it must be below ttl * (1 - max_drift)",
                self.safety_margin, self.ttl, self.max_drift
            ));
        }
        // A renewal due at or after the local validity's end comes too
        // late: the lease is lost before it is renewed, every time.
        if let Some(every) = self.extend_interval
            && (every.is_zero() || every >= validity)
        {
            return bad(format!(
                "extend_interval {every:?} must be above zero and below the local validity \
                 {validity:?} (ttl {:?} * (1 - max_drift {}) - safety_margin {:?})",
                self.ttl, self.max_drift, self.safety_margin
            ));
        }
        // The default period is held to the same rule: with a short TTL (or
        // a large margin) a third of the TTL is not below the validity.
        let every = self.renew_every();
        if self.auto_extend && self.extend_interval.is_none() && every >= validity {
            return bad(format!(
                "ttl {:?} is too short for auto-extension with the default renewal period: \
                 a third of the ttl ({every:?}) is not below the local validity {validity:?} \
                 (ttl * (1 - max_drift {}) - safety_margin {:?}), so the lease would be lost \
                 before its first renewal; with this max_drift and safety_margin the ttl must \
                 be at least {:?} (or set an extend_interval below the local validity, or turn \
                 auto_extend off)",
                self.ttl,
                self.max_drift,
                self.safety_margin,
                self.least_auto_extended_ttl()
            ));
        }
        Ok(())
    }

    /// The shortest TTL whose default renewal period (a third of it) comes
    /// before its local validity ends: above `safety_margin / (2/3 -
    /// max_drift)`, to the microsecond above. (For a `max_drift` in range.)
    fn least_auto_extended_ttl(&self) -> Duration {
        let bound = self.safety_margin.as_secs_f64() / (2.0 / 3.0 - self.max_drift);
        let micros = (bound * 1e6).floor();
        // (Finite and positive: the margin left this TTL some validity.)
        Duration::from_micros((micros as u64).saturating_add(1))
    }

    /// The renewal period: `extend_interval`, or a third of the TTL.
    pub fn renew_every(&self) -> Duration {
        self.extend_interval.unwrap_or(self.ttl / 3)
    }

    /// How long after `t_sent` a lease granted for the TTL counts as valid
    /// locally: `ttl * (1 - max_drift) - safety_margin`, zero when that is
    /// not positive. Never panics, whatever the fields hold (a drift outside
    /// 0..1, NaN or infinite counts as no validity at all).
    pub fn local_validity(&self) -> Duration {
        let factor = 1.0 - self.max_drift;
        if !(factor > 0.0 && factor <= 1.0) {
            return Duration::ZERO;
        }
        // `ttl * factor` is at most `ttl`, but its float may round above
        // `Duration::MAX`: then it is `ttl`.
        let scaled = Duration::try_from_secs_f64(self.ttl.as_secs_f64() * factor);
        scaled
            .unwrap_or(self.ttl)
            .min(self.ttl)
            .saturating_sub(self.safety_margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_validity_never_panics() {
        for drift in [
            1.5,
            -0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.999,
            0.0,
        ] {
            let o = LeaseOptions::default().ttl(Duration::MAX).max_drift(drift);
            let _ = o.local_validity();
            assert!(o.validate(&Key::new("k").unwrap()).is_err(), "{drift}");
        }
    }

    /// An interval below the TTL but not below the local validity (1 s ×
    /// 0.99 − 2 ms = 988 ms) was accepted, and every auto-extended lease
    /// was lost before its first renewal.
    #[test]
    fn an_extend_interval_past_the_local_validity_is_refused() {
        let k = Key::new("k").unwrap();
        let o = LeaseOptions::default().ttl(Duration::from_secs(1));
        assert_eq!(o.local_validity(), Duration::from_millis(988));
        let every = |ms| o.clone().extend_interval(Some(Duration::from_millis(ms)));
        assert!(every(987).validate(&k).is_ok());
        for ms in [988, 995, 1000] {
            let e = every(ms).validate(&k).unwrap_err();
            assert!(e.to_string().contains("local validity 988ms"), "{e}");
        }
    }

    /// A TTL of 3 ms passed validation with the default renewal on: its
    /// first renewal, a third of the TTL (1 ms) after the grant, came after
    /// the local validity (3 ms × 0.99 − 2 ms = 0.97 ms) had ended, and
    /// every such lease was lost at once although it was to be renewed.
    #[test]
    fn a_ttl_too_short_for_the_default_renewal_is_refused() {
        let k = Key::new("jobs/short").unwrap();
        let ttl = |us| LeaseOptions::default().ttl(Duration::from_micros(us));
        let e = ttl(3000).validate(&k).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        for part in [
            "ttl 3ms",
            "local validity 970",
            "at least 3.046ms",
            "jobs/short",
        ] {
            assert!(msg.contains(part), "{part:?} in {msg}");
        }
        // The limit named is the limit: just below it refused, at it not.
        assert!(ttl(3045).validate(&k).is_err());
        assert!(ttl(3046).validate(&k).is_ok());
        // Without auto-extension, or with an interval that fits, it is fine.
        assert!(ttl(3000).auto_extend(false).validate(&k).is_ok());
        let fits = ttl(3000).extend_interval(Some(Duration::from_micros(500)));
        assert!(fits.validate(&k).is_ok());
        // The limit follows the margin and the drift.
        let margin = LeaseOptions::default()
            .ttl(Duration::from_millis(100))
            .safety_margin(Duration::from_millis(70));
        let msg = margin.validate(&k).unwrap_err().to_string();
        assert!(msg.contains("at least 106.599"), "{msg}");
        assert!(
            margin
                .clone()
                .ttl(Duration::from_millis(107))
                .validate(&k)
                .is_ok()
        );
    }

    #[test]
    fn a_margin_that_leaves_no_validity_is_refused() {
        let k = Key::new("k").unwrap();
        // (Not renewed: 98 ms of margin leave 1 ms, below the renewal.)
        let o = LeaseOptions::default()
            .ttl(Duration::from_millis(100))
            .auto_extend(false);
        assert!(
            o.clone()
                .safety_margin(Duration::from_millis(98))
                .validate(&k)
                .is_ok()
        );
        let e = o
            .safety_margin(Duration::from_millis(99))
            .validate(&k)
            .unwrap_err();
        assert!(e.to_string().contains("safety_margin"), "{e}");
    }
}
