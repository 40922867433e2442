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
//! lock and the Redis script mirrors step by step. The types of the SPI
//! are in `policy.rs` (what a breaker decides by and counts) and
//! `state.rs` (what it is and did); `dispatched.rs` carries its calls as
//! values.
//!
//! # The rules, step by step (what every backend does)
//!
//! 1. **Birth, never reset.** Every operation but a peek (rule 11) names
//!    the caller's [`Policy`]. When the breaker has no record, the step makes one:
//!    closed, an empty window, that policy, a first generation, which names
//!    the record for its whole life ([`BreakerState::born`]: a record lost
//!    and born again has another, and its callers tell it). When it has
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
//!    **give_back_trial** (`generation`, `holder`) releases the trial on
//!    the same condition and counts nothing: its slot is free again.
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
//!    names (all kept ones for 0), and the generation after which every
//!    transition is kept ([`BreakerState::kept_after`]: the last one dropped
//!    from the log, 0 while none was). The caller, not the backend, decides
//!    whether it missed some ([`BreakerState::missed_after`]), with the
//!    newest generation it has seen when the reply arrives: a reply to an
//!    older request may name transitions dropped after the caller was
//!    told them. Every reply names the record ([`BreakerState::born`]).
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

mod dispatched;
mod machine;
mod policy;
mod state;
pub mod window;

use std::time::Duration;

use async_trait::async_trait;

use super::Watch;
use crate::{Error, HolderId, InstanceId, Key, Result};

pub use machine::Record;
pub use policy::{Policy, Tally, WindowKind};
pub use state::{Action, BreakerState, Cause, Manual, Phase, Reported, Transition, Trial};

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

    /// Gives `holder`'s trial of `generation` back uncounted (rule 6): its
    /// call was cancelled before any verdict on it. While `holder` holds a
    /// live trial of `generation`, the current one, the trial is released
    /// and its slot freed, counting no outcome (the reply's `counted` says
    /// whether it was given back); otherwise nothing changes. The client
    /// sends it for a trial permit dropped unrecorded before the slow-call
    /// duration, so that another trial need not wait for this one's TTL.
    ///
    /// Added after the family: the default answers `NotSupported`, so that
    /// a backend written before it keeps compiling (its dropped trials keep
    /// their slots until their TTL, as before). Every backend should
    /// implement it.
    async fn give_back_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        seen: u64,
    ) -> Result<Reported> {
        let _ = (name, policy, generation, holder, seen);
        Err(Error::NotSupported {
            operation: "breakers.give_back_trial",
            backend: "this backend".to_owned(),
        })
    }

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

#[cfg(test)]
mod tests;
