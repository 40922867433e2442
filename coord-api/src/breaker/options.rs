//! The builder of a breaker: its policy (stored on the backend when the
//! breaker is born) and the instance's own options (intervals, timeouts,
//! what to do when the backend is unreachable), all checked by `build`
//! before any I/O.

use std::time::Duration;

use super::Breaker;
use crate::{
    Client, Error, Key, MAX_TTL, MIN_TTL, Result,
    spi::{Policy, WindowKind, breaker::NEVER},
};

/// What a breaker does while the backend is unreachable (a flush, a refresh
/// or a trial failed with a retryable error, or nothing was read for
/// `max_staleness`). Every choice emits
/// [`BreakerEvent::Unreachable`](super::BreakerEvent::Unreachable), and no
/// call waits on the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Unreachable {
    /// A local breaker with the same policy decides from this instance's
    /// outcomes alone (refusing until the shared open time if the breaker
    /// was open when the backend was lost). The default.
    #[default]
    LocalFallback,
    /// Every call passes.
    FailOpen,
    /// Every call is refused.
    FailClosed,
}

/// The options of one instance's handle on a breaker (not shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) slow_call: Option<Duration>,
    pub(crate) trial_ttl: Duration,
    pub(crate) flush_interval: Duration,
    pub(crate) refresh_interval: Duration,
    pub(crate) max_staleness: Duration,
    pub(crate) backend_timeout: Duration,
    pub(crate) unreachable: Unreachable,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            slow_call: None,
            trial_ttl: Duration::from_secs(30),
            flush_interval: Duration::from_millis(100),
            refresh_interval: Duration::from_secs(1),
            max_staleness: Duration::from_secs(5),
            backend_timeout: Duration::from_secs(1),
            unreachable: Unreachable::LocalFallback,
        }
    }
}

/// Builds a [`Breaker`]: `client.breaker(name)`, options, then
/// [`build`](Self::build). The policy (window, thresholds, open time,
/// trials, quorum) is the breaker's, stored on the backend by the first
/// instance that uses it; the others (intervals, timeouts, the slow-call
/// duration, what to do when the backend is unreachable) are this
/// instance's.
///
/// ```
/// # fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use std::time::Duration;
/// use coord_api::Unreachable;
///
/// let breaker = client
///     .breaker("payments-api")
///     .count_window(50)
///     .failure_rate(50.0)
///     .minimum_calls(20)
///     .slow_calls(Duration::from_secs(2), 80.0)
///     .open_for(Duration::from_secs(10))
///     .growing_open_for(Duration::from_secs(120))
///     .trials(3)
///     .quorum(2, Duration::from_secs(60))
///     .on_unreachable(Unreachable::FailOpen)
///     .build()?;
/// # let _ = breaker; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct BreakerBuilder {
    client: Client,
    name: std::result::Result<Key, String>,
    policy: Policy,
    /// `None`: failures never open the breaker.
    failure_rate: Option<f64>,
    slow_rate: Option<f64>,
    opts: Options,
}

fn bp(name: &str, what: &str, percent: f64) -> Result<u16> {
    if !(0.0..=100.0).contains(&percent) {
        return Err(Error::invalid(format!(
            "breaker {name:?}: a {what} threshold of {percent}%; from 0 to 100"
        )));
    }
    Ok((percent * 100.0).round() as u16)
}

impl BreakerBuilder {
    pub(crate) fn new(client: Client, name: &str) -> BreakerBuilder {
        BreakerBuilder {
            client,
            name: Key::new(name).map_err(|_| name.to_owned()),
            policy: Policy::default(),
            failure_rate: Some(50.0),
            slow_rate: None,
            opts: Options::default(),
        }
    }

    /// A count window of the last `calls` calls (1..=100,000; default 100).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.policy.window = WindowKind::Count { calls };
        self
    }

    /// A time window of the calls of the last `span` (100 ms..=1 h), in ten
    /// buckets on the backend's clock.
    pub fn time_window(mut self, span: Duration) -> Self {
        self.policy.window = WindowKind::Time { span };
        self
    }

    /// The failure rate, in percent (0..=100; default 50), at or above which
    /// the window opens the breaker.
    pub fn failure_rate(mut self, percent: f64) -> Self {
        self.failure_rate = Some(percent);
        self
    }

    /// Failures never open the breaker (only slow calls may).
    pub fn ignore_failures(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// A call slower than `duration` is slow; a slow-call rate at or above
    /// `percent` opens the breaker. Off by default. Set it when calls are
    /// bounded by a timeout around them: a call cancelled after at least
    /// `duration` counts as slow (decision 0076), so a dependency that
    /// hangs until its callers give up opens the breaker; without it, a
    /// cancelled call counts nothing.
    pub fn slow_calls(mut self, duration: Duration, percent: f64) -> Self {
        self.opts.slow_call = Some(duration);
        self.slow_rate = Some(percent);
        self
    }

    /// The fewest calls in the window before it decides (default 100; a
    /// count window decides when full if smaller).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.policy.minimum_calls = calls;
        self
    }

    /// How long an open lasts (the recovery timeout; default 60 s).
    pub fn open_for(mut self, d: Duration) -> Self {
        self.policy.open_for = d;
        if self.policy.max_open_for < d {
            self.policy.max_open_for = d;
        }
        self
    }

    /// Each open after the first in a row lasts twice the one before, up to
    /// `max` (default: constant).
    pub fn growing_open_for(mut self, max: Duration) -> Self {
        self.policy.max_open_for = max;
        self
    }

    /// Trial calls of a half-open breaker, cluster-wide (1..=1,000; default
    /// 10).
    pub fn trials(mut self, n: u32) -> Self {
        self.policy.trials = n;
        self
    }

    /// The lease of a trial call: a trial not ended within it (its instance
    /// crashed) frees its slot (default 30 s).
    pub fn trial_ttl(mut self, ttl: Duration) -> Self {
        self.opts.trial_ttl = ttl;
        self
    }

    /// Opens only when at least `instances` distinct instances reported
    /// failures or slow calls within `span` (default: 1, no quorum).
    pub fn quorum(mut self, instances: u32, span: Duration) -> Self {
        self.policy.quorum = instances;
        self.policy.quorum_span = span;
        self
    }

    /// How often this instance flushes its outcomes (default 100 ms).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.opts.flush_interval = d;
        self
    }

    /// How often this instance re-reads the breaker without a notification
    /// (default 1 s): the bound on how stale its copy gets.
    pub fn refresh_interval(mut self, d: Duration) -> Self {
        self.opts.refresh_interval = d;
        self
    }

    /// After how long without a successful read the backend counts as
    /// unreachable (default 5 s).
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.opts.max_staleness = d;
        self
    }

    /// The longest any backend call may take (default 1 s).
    pub fn backend_timeout(mut self, d: Duration) -> Self {
        self.opts.backend_timeout = d;
        self
    }

    /// What to do while the backend is unreachable (default
    /// [`Unreachable::LocalFallback`]).
    pub fn on_unreachable(mut self, policy: Unreachable) -> Self {
        self.opts.unreachable = policy;
        self
    }

    /// The breaker, or `InvalidArgument` naming the breaker and the limit.
    /// No I/O: the breaker reads the backend at its first use (from within
    /// a tokio runtime).
    pub fn build(self) -> Result<Breaker> {
        let name = match self.name {
            Ok(k) => k,
            Err(raw) => return Err(Key::new(&raw).expect_err("validated before")),
        };
        let mut policy = self.policy;
        policy.failure_rate_bp = match self.failure_rate {
            None => NEVER,
            Some(percent) => bp(name.as_str(), "failure rate", percent)?,
        };
        policy.slow_rate_bp = (self.slow_rate)
            .map(|p| bp(name.as_str(), "slow-call rate", p))
            .transpose()?;
        policy.check(&name)?;
        let o = &self.opts;
        let durations = [
            ("slow-call duration", o.slow_call.unwrap_or(MIN_TTL)),
            ("trial ttl", o.trial_ttl),
            ("flush interval", o.flush_interval),
            ("refresh interval", o.refresh_interval),
            ("max staleness", o.max_staleness),
            ("backend timeout", o.backend_timeout),
        ];
        for (what, d) in durations {
            if !(MIN_TTL..=MAX_TTL).contains(&d) {
                return Err(Error::invalid(format!(
                    "breaker {name:?}: a {what} of {d:?}; from {MIN_TTL:?} to {MAX_TTL:?}"
                )));
            }
        }
        Ok(Breaker::new(self.client, name, policy, self.opts))
    }
}
