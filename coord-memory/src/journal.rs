//! What the store did, told as it does it: for histories. The simulator's
//! server gives its store a [`Journal`] and its checkers judge a run by what
//! the store granted, renewed and released, and by what became of barriers
//! and latches (arrivals counted and expired, trips, ends of generations,
//! count-downs), in the store's own order.

use coord_api::{
    FencingToken, HolderId, Key, LeaseKind,
    spi::{BarrierKind, EndedGeneration, Transition, Trip},
};

/// Told every grant, renewal and release of a lease with a token (lock-family
/// leases, election terms, job runs) and every change of a barrier or latch
/// that a checker needs ([`BarrierEvent`]), in the store's order, as the
/// store decides it (while it holds the lock that orders the key's
/// operations). Must not call back into the store.
pub trait Journal: Send + Sync + 'static {
    /// One event.
    fn record(&self, event: Event<'_>);
}

/// A lease the store keeps, as a [`Journal`] is told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased<'a> {
    /// A lock-family lease.
    Lock {
        /// Its kind.
        kind: LeaseKind,
        /// Its key.
        key: &'a Key,
    },
    /// An election's term.
    Term {
        /// The election.
        election: &'a Key,
    },
    /// A run of an occurrence of a run-once job.
    Run {
        /// The job.
        job: &'a Key,
        /// The occurrence.
        occurrence: &'a Key,
    },
}

/// What the store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// It granted `lease` to `holder` with `token`.
    Granted {
        /// The lease.
        lease: Leased<'a>,
        /// Its holder.
        holder: &'a HolderId,
        /// Its fencing token.
        token: FencingToken,
    },
    /// It answered a renewal of `lease` by `holder`: `held` whether it still
    /// held it (and extended it).
    Renewed {
        /// The lease.
        lease: Leased<'a>,
        /// Who asked.
        holder: &'a HolderId,
        /// Whether the renewal succeeded.
        held: bool,
    },
    /// It answered a release (a resignation, the end of a run) of `lease` by
    /// `holder`: `released` whether `holder` held it; `finished` whether a
    /// run ended marked finished.
    Released {
        /// The lease.
        lease: Leased<'a>,
        /// Who asked.
        holder: &'a HolderId,
        /// Whether `holder` held it.
        released: bool,
        /// A run that ended marked finished.
        finished: bool,
    },
    /// A barrier or latch changed.
    Barrier(BarrierEvent<'a>),
    /// A circuit breaker granted or ended a trial, or changed phase.
    Breaker(BreakerEvent<'a>),
}

/// What became of a circuit breaker, told while the store holds the lock of
/// every breaker (the store's order). Trials dropped at their deadline are
/// not told: a checker counts a trial live until its grant's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerEvent<'a> {
    /// A trial of `generation` granted to `holder`.
    TrialGranted {
        /// The breaker.
        breaker: &'a Key,
        /// The half-open generation.
        generation: u64,
        /// Who holds the trial.
        holder: &'a HolderId,
        /// The trial's token.
        token: FencingToken,
    },
    /// `holder`'s trial of `generation` ended and was counted.
    TrialEnded {
        /// The breaker.
        breaker: &'a Key,
        /// Its generation.
        generation: u64,
        /// Whose trial.
        holder: &'a HolderId,
    },
    /// `holder`'s trial of `generation` was given back uncounted (its
    /// call cancelled): its slot is free again.
    TrialGivenBack {
        /// The breaker.
        breaker: &'a Key,
        /// Its generation.
        generation: u64,
        /// Whose trial.
        holder: &'a HolderId,
    },
    /// A transition, with the generation it began.
    Transitioned {
        /// The breaker.
        breaker: &'a Key,
        /// The transition.
        transition: &'a Transition,
    },
}

/// What became of a barrier or latch. Told while the store holds the lock of
/// every barrier and latch, so the order is the store's: the expiries a step
/// noticed come before the trip or end they led to. Plain renewals, reads
/// and withdrawals (a wait given up, a member leaving) are not told; an end
/// they cause is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierEvent<'a> {
    /// `participant` was newly counted in `generation` (not an idempotent
    /// repeat, which only renews its lease).
    Arrived {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: &'a Key,
        /// Who arrived.
        participant: &'a Key,
        /// The generation it counts in.
        generation: u64,
    },
    /// `participant`'s arrival in `generation` was dropped at its deadline
    /// (noticed by the next operation on the barrier).
    Expired {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: &'a Key,
        /// Whose arrival.
        participant: &'a Key,
        /// Its generation.
        generation: u64,
    },
    /// `participant` withdrew its arrival in `generation` (a wait given up
    /// or cancelled, a double barrier's member leaving).
    Left {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: &'a Key,
        /// Whose arrival.
        participant: &'a Key,
        /// Its generation.
        generation: u64,
    },
    /// A double barrier's `generation` tripped: every party entered.
    Entered {
        /// The double barrier.
        barrier: &'a Key,
        /// The generation.
        generation: u64,
        /// Who completed the count, and who is inside.
        trip: &'a Trip,
    },
    /// `generation` ended: a cyclic barrier's trip, a break, or the last
    /// member of a double barrier gone (left or expired).
    Ended {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: &'a Key,
        /// The generation that ended.
        generation: u64,
        /// How, and the generation after it.
        ended: &'a EndedGeneration,
    },
    /// `latch` was set to `count` in a new `generation`.
    LatchSet {
        /// The latch.
        latch: &'a Key,
        /// The new generation.
        generation: u64,
        /// Its count.
        count: u32,
    },
    /// `participant` counted `latch` down in `generation`, `remaining` left
    /// (not a repeat, which changes nothing).
    CountedDown {
        /// The latch.
        latch: &'a Key,
        /// Who counted down.
        participant: &'a Key,
        /// The generation.
        generation: u64,
        /// What is left.
        remaining: u32,
    },
}
