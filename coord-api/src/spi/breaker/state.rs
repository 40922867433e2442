//! What a breaker is and did: its [`Phase`], its [`Transition`]s and their
//! [`Cause`]s, manual [`Action`]s, and the replies of its steps
//! ([`BreakerState`], [`Reported`], [`Trial`]).

use std::time::Duration;

use super::{Policy, Tally};
use crate::FencingToken;

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
    /// The generation after which every transition is still kept (0: every
    /// one since the breaker was born): the last one the backend dropped
    /// from its log. A caller that has seen generation `g` missed some
    /// transitions exactly when `g` is older
    /// ([`missed_after`](Self::missed_after)); it decides with the newest
    /// generation it has seen when the reply arrives, which may be newer
    /// than the one its request named (replies to concurrent requests
    /// cross).
    pub kept_after: u64,
    /// Which record this is: the generation it was born with (0: not
    /// told, a backend written before the field). A record lost and born
    /// again (on Redis: unused for a day, or a restart without
    /// persistence) has another, drawn on the backend's clock; its
    /// generations and log say nothing of the lost one's, and may even be
    /// below them (a clock behind), so a caller that followed another
    /// record cannot be told what happened in between: it missed some
    /// ([`reborn_since`](Self::reborn_since)).
    pub born: u64,
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
            kept_after: 0,
            born: 0,
        }
    }

    /// Whether transitions after generation `seen` are no longer all kept
    /// (`seen` older than [`kept_after`](Self::kept_after)): a caller that
    /// has seen `seen` cannot be told some of them. Never for 0, a caller
    /// that has seen nothing.
    pub fn missed_after(&self, seen: u64) -> bool {
        seen != 0 && seen < self.kept_after
    }

    /// Whether this is another record than the one born at `born` (see
    /// [`born`](Self::born)): that one was lost, and this one born since,
    /// unless this reply is older than the one that named `born` (replies
    /// to concurrent calls cross: the caller orders them). Never when
    /// either is 0, not told.
    pub fn reborn_since(&self, born: u64) -> bool {
        born != 0 && self.born != 0 && self.born != born
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
