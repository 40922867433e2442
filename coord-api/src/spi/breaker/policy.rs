//! What a breaker decides by ([`Policy`], its [`WindowKind`], and the
//! limits [`Policy::check`] enforces) and what it counts ([`Tally`]).

use std::time::Duration;

use super::{
    MAX_QUORUM, MAX_TALLY_CALLS, MAX_TRIALS, MAX_WINDOW_CALLS, MAX_WINDOW_SPAN, MIN_WINDOW_SPAN,
    NEVER,
};
use crate::{Error, Key, MAX_TTL, MIN_TTL, Result};

/// The kind and size of a breaker's sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// The last `calls` calls.
    Count {
        /// How many.
        calls: u32,
    },
    /// The calls of the last `span`, in ten buckets.
    Time {
        /// How long.
        span: Duration,
    },
}

/// What a breaker decides by. Stored when the breaker is born (rule 1);
/// every operation carries the caller's, and replies the one in force.
/// Exhaustive on purpose (decision 0019): a field added here is something
/// every backend must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// The sliding window.
    pub window: WindowKind,
    /// The failure rate that opens the breaker, in basis points (5,000:
    /// 50 %); [`NEVER`]: failures never open it.
    pub failure_rate_bp: u16,
    /// The slow-call rate that opens the breaker, in basis points; `None`:
    /// slow calls never open it.
    pub slow_rate_bp: Option<u16>,
    /// The fewest calls in the window before it decides (capped at a count
    /// window's size).
    pub minimum_calls: u32,
    /// How long the first open lasts.
    pub open_for: Duration,
    /// The longest an open lasts: each open after the first in a row lasts
    /// twice the one before, up to this (equal to `open_for`: constant).
    pub max_open_for: Duration,
    /// Trial calls of a half-open generation.
    pub trials: u32,
    /// Distinct instances that must have reported failures within
    /// `quorum_span` for the breaker to open (1: no quorum).
    pub quorum: u32,
    /// How recent a failure report must be to count in the quorum.
    pub quorum_span: Duration,
}

impl Default for Policy {
    /// resilience4j's defaults: a count window of 100 calls, 50 %
    /// failures, slow calls off, 100 calls at least, open for 60 s, 10
    /// trials; no quorum (span 60 s).
    fn default() -> Policy {
        Policy {
            window: WindowKind::Count { calls: 100 },
            failure_rate_bp: 5_000,
            slow_rate_bp: None,
            minimum_calls: 100,
            open_for: Duration::from_secs(60),
            max_open_for: Duration::from_secs(60),
            trials: 10,
            quorum: 1,
            quorum_span: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// `InvalidArgument` naming the breaker and the limit, for a policy
    /// out of the SPI's limits.
    pub fn check(&self, name: &Key) -> Result<()> {
        let bad = |what: String| Err(Error::invalid(format!("breaker {name:?}: {what}")));
        match self.window {
            WindowKind::Count { calls } if calls == 0 || calls > MAX_WINDOW_CALLS => {
                return bad(format!(
                    "a count window of {calls} calls; it holds 1 to {MAX_WINDOW_CALLS}"
                ));
            }
            WindowKind::Time { span } if !(MIN_WINDOW_SPAN..=MAX_WINDOW_SPAN).contains(&span) => {
                return bad(format!(
                    "a time window of {span:?}; it spans {MIN_WINDOW_SPAN:?} to {MAX_WINDOW_SPAN:?}"
                ));
            }
            _ => {}
        }
        for (what, bp) in [
            ("failure rate", Some(self.failure_rate_bp)),
            ("slow-call rate", self.slow_rate_bp),
        ] {
            if let Some(bp) = bp.filter(|&bp| bp > NEVER) {
                return bad(format!(
                    "a {what} threshold of {bp} basis points; at most 10000 (100%), or {NEVER} for never"
                ));
            }
        }
        if self.trials == 0 || self.trials > MAX_TRIALS {
            return bad(format!(
                "{} trial calls; from 1 to {MAX_TRIALS}",
                self.trials
            ));
        }
        if self.quorum == 0 || self.quorum > MAX_QUORUM {
            return bad(format!(
                "a quorum of {}; from 1 to {MAX_QUORUM}",
                self.quorum
            ));
        }
        for (what, d) in [
            ("open time", self.open_for),
            ("longest open time", self.max_open_for),
            ("quorum span", self.quorum_span),
        ] {
            if !(MIN_TTL..=MAX_TTL).contains(&d) {
                return bad(format!(
                    "a {what} of {d:?}; from {MIN_TTL:?} to {MAX_TTL:?}"
                ));
            }
        }
        if self.max_open_for < self.open_for {
            return bad(format!(
                "a longest open time of {:?} below the open time of {:?}",
                self.max_open_for, self.open_for
            ));
        }
        Ok(())
    }
}

/// Outcomes counted together: calls, how many failed, how many were slow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Tally {
    /// Calls.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls slower than the slow-call duration (failed or not).
    pub slow: u64,
}

impl Tally {
    /// `calls` calls of which `failures` failed and `slow` were slow.
    pub const fn new(calls: u64, failures: u64, slow: u64) -> Tally {
        Tally {
            calls,
            failures,
            slow,
        }
    }

    /// One call.
    pub const fn one(failed: bool, slow: bool) -> Tally {
        Tally::new(1, failed as u64, slow as u64)
    }

    /// Both counted together.
    pub fn plus(self, o: Tally) -> Tally {
        Tally::new(
            self.calls.saturating_add(o.calls),
            self.failures.saturating_add(o.failures),
            self.slow.saturating_add(o.slow),
        )
    }

    /// `o` taken out (never below zero).
    pub fn minus(self, o: Tally) -> Tally {
        Tally::new(
            self.calls.saturating_sub(o.calls),
            self.failures.saturating_sub(o.failures),
            self.slow.saturating_sub(o.slow),
        )
    }

    /// `n` of these calls (`n <= calls`), with failures and slow calls in
    /// proportion, rounded down.
    pub fn part(self, n: u64) -> Tally {
        let share = |x: u64| (u128::from(x) * u128::from(n) / u128::from(self.calls.max(1))) as u64;
        Tally::new(n, share(self.failures), share(self.slow))
    }

    /// `InvalidArgument` unless this is the outcome of one call, as a
    /// trial's end carries (rule 6): a tally of no call would free the
    /// trial's slot counting nothing (more trials than permitted in the
    /// generation), one of several would decide it with fewer trials.
    pub fn check_one(&self, name: &Key) -> Result<()> {
        if self.calls != 1 {
            return Err(Error::invalid(format!(
                "breaker {name:?}: a trial's outcome of {} calls; a trial is one call",
                self.calls
            )));
        }
        self.check(name)
    }

    /// `InvalidArgument` unless the calls are at most [`MAX_TALLY_CALLS`]
    /// and failures and slow calls at most the calls.
    pub fn check(&self, name: &Key) -> Result<()> {
        if self.calls > MAX_TALLY_CALLS {
            return Err(Error::invalid(format!(
                "breaker {name:?}: a tally of {} calls; at most {MAX_TALLY_CALLS}",
                self.calls
            )));
        }
        if self.failures > self.calls || self.slow > self.calls {
            return Err(Error::invalid(format!(
                "breaker {name:?}: a tally of {} calls with {} failures and {} slow; each at most the calls",
                self.calls, self.failures, self.slow
            )));
        }
        Ok(())
    }
}
