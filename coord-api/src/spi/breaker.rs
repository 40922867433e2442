//! The SPI of circuit breakers. The client type built on it is
//! [`Breaker`](crate::Breaker); the contract is
//! [`contract::breaker`](crate::contract::breaker); why it is built this
//! way is decision 0027.
//!
//! A breaker is one record per name on the backend: its [`Phase`], a
//! *generation* that every transition bumps (drawn by the fencing-token
//! rule, so it only increases, also across a restart that lost the record),
//! the [`Policy`] it was born with, its sliding [`window`], the live trial
//! calls of a half-open generation (each a lease), the last manual action
//! and the last [`TRANSITIONS_KEPT`] transitions. Instances decide from a
//! cached copy; the backend is reached only to flush outcomes in batches,
//! to take and finish a trial, for manual actions, and to refresh the copy.
//!
//! The record's rules are written once, as the pure state machine
//! [`Record`] (in `machine.rs`), which the memory backend runs under its
//! lock and the Redis script mirrors step by step.
//!
//! # The rules, step by step (what every backend does)
//!
//! 1. **Birth, never reset.** Every operation but a peek (rule 11) names
//!    the caller's [`Policy`]. When the breaker has no record, the step makes one:
//!    closed, an empty window, that policy, a first generation. When it has
//!    one, the caller's policy is ignored (a joining instance never resets
//!    the shared state, nor changes its policy); every reply carries the
//!    policy in force. Only a manual reset adopts the caller's policy.
//! 2. **Every step first sweeps**, on the backend's clock: a time window
//!    drops its buckets older than its span; an open breaker whose open
//!    time has passed becomes half-open (a transition, rule 7); a trial
//!    whose lease passed its deadline is dropped (its slot is free again).
//! 3. **report** (`generation`, `instance`, a [`Tally`]): counted only when
//!    `generation` is the current one and the breaker is closed
//!    (outcomes of an older generation, of an open, half-open, forced-open
//!    or disabled breaker change nothing: [`Reported::counted`] false).
//!    Counted outcomes are added to the window; when the window then
//!    [trips](window::Window::trips) the policy, and, with a quorum of
//!    `k > 1`, at least `k` distinct instances reported failures or slow
//!    calls within the quorum span, the breaker opens (rule 7) in the same step.
//! 4. **Open** lasts `open_for * 2^(opens - 1)`, at most `max_open_for`,
//!    where `opens` counts the opens since the breaker last closed. While
//!    open, [`BreakerState::retry_after`] is the time left.
//! 5. **trial** (`holder`, `ttl`): in a half-open breaker with a free slot
//!    (`trials` minus live trials minus finished trials of this
//!    generation), grants the holder a trial: a lease with a deadline
//!    `now + ttl` and a fencing token. Otherwise refused, with the state.
//!    Never more than `trials` live trials at once, nor more than `trials`
//!    counted, per generation. **renew_trial** (`generation`, `holder`,
//!    `ttl`) moves the deadline of the live trial `holder` has in
//!    `generation`, the current one; otherwise it is refused, changing
//!    nothing: a renewal never takes a slot (not of a later half-open
//!    generation, nor the one its own trial's end freed, nor a lapsed one).
//! 6. **trial_done** (`generation`, `holder`, a tally of one call): counted
//!    only when `holder` holds a live trial of the current generation; the
//!    trial is released. Once `trials` trials are counted, the breaker
//!    closes when their failure and slow-call rates are below the
//!    thresholds (a fresh window, `opens` back to 0), else opens again.
//! 7. **Transitions.** Each is one step: the generation becomes
//!    `max(generation + 1, server wall clock in µs)`, the trial leases and
//!    finished trials are cleared, the window is cleared, a [`Transition`]
//!    (from, to, cause, new generation, server time) is kept in the log of
//!    the last [`TRANSITIONS_KEPT`], and the breaker's watchers are woken.
//! 8. **manual** (`action`, `by`, `why`): force-open, disable, or reset
//!    (closed, a fresh window, `opens` 0, and the caller's policy adopted),
//!    recorded as [`Manual`] with who, why and when, and a transition
//!    (caused by the action) even from the same phase. `why` is at most
//!    [`MAX_WHY_BYTES`].
//! 9. **Replies.** Every operation replies the [`BreakerState`] after its
//!    step, with the transitions after the generation `seen` the caller
//!    names (all kept ones for 0), and whether some were no longer kept.
//! 10. **Wake-ups.** Every transition wakes the breaker's watchers (a hint:
//!     they read the state, rule 9). An open time passes without a wake-up:
//!     [`BreakerState::retry_after`] says when.
//! 11. **peek** (`seen`): a look that never births. With no record it
//!     answers none and changes nothing, so the breaker is still born with
//!     the policy of its first real user (rule 1), not with whatever a
//!     look would have named. With a record it is the `state` step (the
//!     sweep of rule 2 included: what time alone decided), except that it
//!     does not extend how long an unused record is kept.
//!
//! # Limits (checked by every backend before any change, with [`Policy::check`])
//!
//! A count window of 1..=[`MAX_WINDOW_CALLS`] calls, a time window of
//! [`MIN_WINDOW_SPAN`]..=[`MAX_WINDOW_SPAN`], thresholds of at most 10,000
//! basis points or exactly 10,001 (never), 1..=[`MAX_TRIALS`] trials, a
//! quorum of 1..=[`MAX_QUORUM`], open times and the quorum span of 1 ms to
//! 24 h with `max_open_for >= open_for`, a tally of at most
//! [`MAX_TALLY_CALLS`] calls with failures and slow calls at most its calls
//! ([`Tally::check`]), a trial's outcome of one
//! call ([`Tally::check_one`]).

mod machine;
pub mod window;

use std::time::Duration;

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{Error, FencingToken, HolderId, InstanceId, Key, MAX_TTL, MIN_TTL, Result};

pub use machine::Record;

/// The most calls a count window holds.
pub const MAX_WINDOW_CALLS: u32 = 100_000;
/// The shortest time window.
pub const MIN_WINDOW_SPAN: Duration = Duration::from_millis(100);
/// The longest time window.
pub const MAX_WINDOW_SPAN: Duration = Duration::from_secs(3600);
/// The most trial calls of a half-open generation.
pub const MAX_TRIALS: u32 = 1_000;
/// The largest quorum of failing instances.
pub const MAX_QUORUM: u32 = 1_000;
/// The most calls one tally (a report's) may count: 2^36, so that the
/// Redis script's arithmetic on doubles stays exact.
pub const MAX_TALLY_CALLS: u64 = 1 << 36;
/// The longest reason of a manual action, in bytes.
pub const MAX_WHY_BYTES: usize = 256;
/// How many transitions a backend keeps per breaker (the last ones).
pub const TRANSITIONS_KEPT: usize = 16;
/// A threshold that is never reached.
pub const NEVER: u16 = 10_001;

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

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are refused until the open time passes.
    Open,
    /// A limited number of trial calls pass; their outcomes decide.
    HalfOpen,
    /// Forced open by hand: every call refused until a reset.
    ForcedOpen,
    /// Disabled by hand: every call passes, nothing counted, until a reset.
    Disabled,
}

impl Phase {
    /// `closed`, `open`, `half_open`, `forced_open`, `disabled`: the name
    /// in traces and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half_open",
            Phase::ForcedOpen => "forced_open",
            Phase::Disabled => "disabled",
        }
    }
}

/// A manual action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Open, and refuse every call, until a reset.
    ForceOpen,
    /// Let every call pass, counting nothing, until a reset.
    Disable,
    /// Closed with a fresh window, and the caller's policy adopted.
    Reset,
}

impl Action {
    /// `force_open`, `disable`, `reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ForceOpen => "force_open",
            Action::Disable => "disable",
            Action::Reset => "reset",
        }
    }
}

/// A manual action as recorded: what, by whom, why, when.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Manual {
    /// The action.
    pub action: Action,
    /// The instance that took it.
    pub by: String,
    /// Why, as given.
    pub why: String,
    /// The backend's wall clock, µs since the Unix epoch.
    pub at_us: u64,
}

impl Manual {
    /// `action` taken by `by` for `why` at `at_us`.
    pub fn new(action: Action, by: String, why: String, at_us: u64) -> Manual {
        Manual {
            action,
            by,
            why,
            at_us,
        }
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The window tripped the policy: what it counted.
    Tripped(Tally),
    /// The open time passed.
    OpenElapsed,
    /// The trials of a half-open generation passed: what they counted.
    TrialsPassed(Tally),
    /// The trials of a half-open generation failed: what they counted.
    TrialsFailed(Tally),
    /// A manual action.
    Manual(Manual),
}

/// One transition of a breaker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Transition {
    /// The generation it began.
    pub generation: u64,
    /// The phase before.
    pub from: Phase,
    /// The phase after.
    pub to: Phase,
    /// Why.
    pub cause: Cause,
    /// The backend's wall clock, µs since the Unix epoch.
    pub at_us: u64,
}

impl Transition {
    /// A transition from `from` to `to` beginning `generation`.
    pub fn new(generation: u64, from: Phase, to: Phase, cause: Cause, at_us: u64) -> Transition {
        Transition {
            generation,
            from,
            to,
            cause,
            at_us,
        }
    }
}

/// A breaker as one step left it (rule 9).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerState {
    /// The current generation.
    pub generation: u64,
    /// The phase.
    pub phase: Phase,
    /// While open: the time until it becomes half-open.
    pub retry_after: Option<Duration>,
    /// What the window counts (closed only; empty otherwise).
    pub window: Tally,
    /// Live trials of a half-open generation.
    pub trials_live: u32,
    /// Finished trials of a half-open generation: what they counted.
    pub trials_done: Tally,
    /// Opens since the breaker last closed.
    pub opens: u32,
    /// The policy in force.
    pub policy: Policy,
    /// The last manual action, if any.
    pub manual: Option<Manual>,
    /// The transitions after the generation the caller had seen, oldest
    /// first.
    pub transitions: Vec<Transition>,
    /// Whether some transitions after it are no longer kept.
    pub missed: bool,
}

impl BreakerState {
    /// A state at `generation` in `phase`, under `policy`, with nothing
    /// else (fields set one by one after).
    pub fn new(generation: u64, phase: Phase, policy: Policy) -> BreakerState {
        BreakerState {
            generation,
            phase,
            retry_after: None,
            window: Tally::default(),
            trials_live: 0,
            trials_done: Tally::default(),
            opens: 0,
            policy,
            manual: None,
            transitions: Vec::new(),
            missed: false,
        }
    }
}

/// What a report or a trial's end did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reported {
    /// Whether the outcomes were counted (rules 3, 6).
    pub counted: bool,
    /// The breaker after the step.
    pub state: BreakerState,
}

impl Reported {
    /// Counted or not, and the state after.
    pub fn new(counted: bool, state: BreakerState) -> Reported {
        Reported { counted, state }
    }
}

/// What asking for a trial did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trial {
    /// A trial of the state's (half-open) generation, with its token.
    Granted {
        /// Its fencing token.
        token: FencingToken,
        /// The breaker after the grant.
        state: BreakerState,
    },
    /// No trial: not half-open, or no free slot.
    Refused(BreakerState),
}

/// `InvalidArgument` for a reason over [`MAX_WHY_BYTES`].
pub fn check_why(name: &Key, why: &str) -> Result<()> {
    if why.len() > MAX_WHY_BYTES {
        return Err(Error::invalid(format!(
            "breaker {name:?}: a reason of {} bytes; at most {MAX_WHY_BYTES}",
            why.len()
        )));
    }
    Ok(())
}

/// Circuit breakers. Every method is one atomic step on one breaker (one
/// round trip on a remote backend), following the rules of the module's
/// documentation; each but [`peek`](Self::peek) first births the breaker
/// with `policy` if it has no record (rule 1), each sweeps it (rule 2), and
/// replies the transitions after `seen` (rule 9).
#[async_trait]
pub trait BreakerBackend: Send + Sync {
    /// The breaker's state (rules 1, 2, 9).
    async fn state(&self, name: &Key, policy: &Policy, seen: u64) -> Result<BreakerState>;

    /// The breaker's state as [`state`](Self::state) would reply it, or
    /// `None`, changing nothing, when it has no record: never births it
    /// (rule 11). For operators and dashboards, whose look must not choose
    /// the breaker's policy.
    ///
    /// Added after the family: the default answers `NotSupported`, so that
    /// a backend written before it keeps compiling (and its users get no
    /// look rather than a birth). Every backend should implement it.
    async fn peek(&self, name: &Key, seen: u64) -> Result<Option<BreakerState>> {
        let _ = (name, seen);
        Err(Error::NotSupported {
            operation: "breakers.peek",
            backend: "this backend".to_owned(),
        })
    }

    /// Counts `tally`, `instance`'s outcomes in `generation` (rule 3).
    async fn report(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        instance: &InstanceId,
        tally: Tally,
        seen: u64,
    ) -> Result<Reported>;

    /// A trial for `holder`, a lease of `ttl` (rule 5).
    async fn trial(
        &self,
        name: &Key,
        policy: &Policy,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial>;

    /// Renews `holder`'s trial of `generation` for `ttl` (rule 5): as
    /// [`trial`](Self::trial) while `generation` is the current one and
    /// `holder` holds a live trial in it, and otherwise refused, changing
    /// nothing. The client renews a trial's slot with it while the trial's
    /// permit lives: a renewal must take no slot (of a later half-open
    /// generation, where its outcome would never count; or the one its
    /// trial's end just freed, when the renewal was answered after it),
    /// or the slot would stay taken until its TTL.
    ///
    /// Added after the family: the default is [`trial`](Self::trial),
    /// without the generation check, so that a backend written before it
    /// keeps compiling. Every backend should implement it.
    async fn renew_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        let _ = generation;
        self.trial(name, policy, holder, ttl, seen).await
    }

    /// The end of `holder`'s trial in `generation`, and its outcome, one
    /// call's (rule 6; another tally is `InvalidArgument`,
    /// [`Tally::check_one`]).
    async fn trial_done(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        outcome: Tally,
        seen: u64,
    ) -> Result<Reported>;

    /// A manual action by `by` for `why` (rule 8).
    async fn manual(
        &self,
        name: &Key,
        policy: &Policy,
        action: Action,
        by: &InstanceId,
        why: &str,
        seen: u64,
    ) -> Result<BreakerState>;

    /// Wakes at every transition of the breaker (rule 10).
    async fn watch(&self, name: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "breakers",
        name,
    }
}

fn breakers<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn BreakerBackend> {
    family!(backend, breakers, op(name))
}

#[async_trait]
impl<D: Dispatch> BreakerBackend for Dispatched<D> {
    async fn state(&self, name: &Key, policy: &Policy, seen: u64) -> Result<BreakerState> {
        let args = (name.clone(), *policy, seen);
        self.carry(op("state"), args, |b, (n, p, s)| async move {
            breakers(&b, "state")?.state(&n, &p, s).await
        })
        .await
    }
    async fn peek(&self, name: &Key, seen: u64) -> Result<Option<BreakerState>> {
        self.carry(op("peek"), (name.clone(), seen), |b, (n, s)| async move {
            breakers(&b, "peek")?.peek(&n, s).await
        })
        .await
    }
    async fn report(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        instance: &InstanceId,
        tally: Tally,
        seen: u64,
    ) -> Result<Reported> {
        let args = (name.clone(), *policy, generation, *instance, tally, seen);
        self.carry(op("report"), args, |b, (n, p, g, i, t, s)| async move {
            breakers(&b, "report")?.report(&n, &p, g, &i, t, s).await
        })
        .await
    }
    async fn trial(
        &self,
        name: &Key,
        policy: &Policy,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        let args = (name.clone(), *policy, holder.clone(), ttl, seen);
        self.carry(op("trial"), args, |b, (n, p, h, t, s)| async move {
            breakers(&b, "trial")?.trial(&n, &p, &h, t, s).await
        })
        .await
    }
    async fn renew_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        let args = (name.clone(), *policy, generation, holder.clone(), ttl, seen);
        self.carry(
            op("renew_trial"),
            args,
            |b, (n, p, g, h, t, s)| async move {
                breakers(&b, "renew_trial")?
                    .renew_trial(&n, &p, g, &h, t, s)
                    .await
            },
        )
        .await
    }
    async fn trial_done(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        outcome: Tally,
        seen: u64,
    ) -> Result<Reported> {
        let args = (
            name.clone(),
            *policy,
            generation,
            holder.clone(),
            outcome,
            seen,
        );
        self.carry(op("trial_done"), args, |b, (n, p, g, h, o, s)| async move {
            breakers(&b, "trial_done")?
                .trial_done(&n, &p, g, &h, o, s)
                .await
        })
        .await
    }
    async fn manual(
        &self,
        name: &Key,
        policy: &Policy,
        action: Action,
        by: &InstanceId,
        why: &str,
        seen: u64,
    ) -> Result<BreakerState> {
        let args = (name.clone(), *policy, action, *by, why.to_owned(), seen);
        self.carry(op("manual"), args, |b, (n, p, a, by, w, s)| async move {
            breakers(&b, "manual")?.manual(&n, &p, a, &by, &w, s).await
        })
        .await
    }
    async fn watch(&self, name: &Key) -> Result<Box<dyn Watch>> {
        self.carry(op("watch"), (name.clone(),), |b, (n,)| async move {
            breakers(&b, "watch")?.watch(&n).await
        })
        .await
    }
}

#[cfg(test)]
mod tests;
