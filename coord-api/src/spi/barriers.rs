//! The SPI of barriers and latches. The client types built on it are
//! [`Barrier`](crate::Barrier), [`DoubleBarrier`](crate::DoubleBarrier) and
//! [`Latch`](crate::Latch); the contract is
//! [`contract::barriers`](crate::contract::barriers).
//!
//! **Barriers** (cyclic and double) are one record per name and kind: the
//! current *generation* (drawn by the fencing-token rule when the record is
//! made, and again at every end of a generation, so generations only
//! increase, also across a restart that lost the record), the number of
//! parties the generation waits for, and its *arrivals*: each a lease of a
//! participant (a [`Key`] naming it) with a deadline on the backend's clock.
//! An arrival whose deadline passed is dropped by the next operation on the
//! record and remembered as *expired* in its generation. When the live
//! arrivals of a generation reach its parties, the arrival that completed
//! the count *trips* it, in the same step. A generation ends once, either
//! tripped or broken (a timed-out waiter or a reset breaks it), and the
//! backend remembers how the last [`ENDED_KEPT`] generations ended.
//!
//! A *double* barrier's generation trips the same way (everyone *entered*),
//! then stays: its arrivals, now *inside*, keep their leases until each
//! leaves (or expires); the generation ends when the last one is gone.
//!
//! **Latches** are one record per name: a count set once per generation
//! ([`BarrierBackend::latch_set`], only when the latch is absent or at
//! zero) with the id of the call that set it, the participants that counted
//! it down (each counts once), and a deadline after which the whole record
//! is gone.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{Key, Result};

/// How many ended generations a backend remembers per barrier, at least.
pub const ENDED_KEPT: usize = 16;

/// The most parties a barrier may wait for.
pub const MAX_PARTIES: u32 = 10_000;

/// The largest count of a latch.
pub const MAX_LATCH_COUNT: u32 = 1_000_000;

/// How many of a latch's settings a backend knows by their call's id
/// (the current one and those before it in the record's life): the retry
/// of any of them is answered as it was ([`BarrierBackend::latch_set`]).
pub const LATCH_SETS_KEPT: usize = 16;

/// Which barrier: the key spaces of the two kinds are apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BarrierKind {
    /// A cyclic barrier: a generation ends when it trips.
    Cyclic,
    /// A double barrier: a generation trips when every party entered, and
    /// ends when every party left.
    Double,
}

impl BarrierKind {
    /// `barrier` or `double_barrier`: the name in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            BarrierKind::Cyclic => "barrier",
            BarrierKind::Double => "double_barrier",
        }
    }
}

/// A live arrival (a participant present in the current generation).
/// Built with [`ArrivalInfo::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArrivalInfo {
    /// Who arrived.
    pub participant: Key,
    /// Time left on its lease.
    pub expires_in: Duration,
}

impl ArrivalInfo {
    /// `participant`'s arrival, with `expires_in` left on its lease.
    pub fn new(participant: Key, expires_in: Duration) -> ArrivalInfo {
        ArrivalInfo {
            participant,
            expires_in,
        }
    }
}

/// Why a generation broke.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakReason {
    /// A waiter's deadline passed first; `by` is that waiter.
    Timeout {
        /// The participant whose wait timed out.
        by: Key,
    },
    /// Someone reset the barrier.
    Reset,
}

/// A trip: every party arrived (a double barrier's: every party entered).
/// Built with [`Trip::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Trip {
    /// The arrival that completed the count.
    pub by: Key,
    /// The participants counted, in arrival order (`by` last).
    pub arrivals: Vec<Key>,
    /// Who had arrived in this generation and then expired, and did not
    /// arrive again (as [`Broken::expired`]): not counted in the trip. A
    /// waiter whose arrival's reply was lost learns from it that its
    /// arrival had reached the generation (it does not move on).
    pub expired: Vec<Key>,
}

impl Trip {
    /// A trip completed by `by`, counting `arrivals` (in arrival order,
    /// `by` last), nobody expired.
    pub fn new(by: Key, arrivals: Vec<Key>) -> Trip {
        Trip {
            by,
            arrivals,
            expired: Vec::new(),
        }
    }

    /// The trip with `expired` those who arrived and expired before it.
    pub fn with_expired(mut self, expired: Vec<Key>) -> Trip {
        self.expired = expired;
        self
    }
}

/// A generation that broke before every party arrived. Built with
/// [`Broken::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Broken {
    /// Why.
    pub reason: BreakReason,
    /// Who had arrived (alive) when it broke.
    pub arrived: Vec<Key>,
    /// Who had arrived and then expired (crashed, or cut off past its TTL)
    /// in this generation, and did not arrive again: by deadline, then
    /// arrival order.
    pub expired: Vec<Key>,
    /// How many more arrivals it needed (0 for a double barrier reset
    /// after its parties entered).
    pub missing: u32,
}

impl Broken {
    /// A break for `reason`, with `arrived` alive, `expired` gone, and
    /// `missing` arrivals short.
    pub fn new(reason: BreakReason, arrived: Vec<Key>, expired: Vec<Key>, missing: u32) -> Broken {
        Broken {
            reason,
            arrived,
            expired,
            missing,
        }
    }
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// Every party arrived (a double barrier's: entered, then every member
    /// left or expired).
    Tripped(Trip),
    /// It broke (a double barrier's: before every party entered, or by a
    /// reset).
    Broken(Broken),
}

/// One ended generation. Built with [`EndedGeneration::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndedGeneration {
    /// The generation.
    pub generation: u64,
    /// The generation that followed it.
    pub next: u64,
    /// How it ended.
    pub ended: Ended,
}

impl EndedGeneration {
    /// `generation` ended as `ended`, and `next` followed it.
    pub fn new(generation: u64, next: u64, ended: Ended) -> EndedGeneration {
        EndedGeneration {
            generation,
            next,
            ended,
        }
    }
}

/// A barrier's record as one read saw it. Built with [`BarrierState::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BarrierState {
    /// The current generation.
    pub generation: u64,
    /// The parties the current generation waits for, once its first arrival
    /// set them (`None` before).
    pub parties: Option<u32>,
    /// A double barrier's current generation once it tripped: the trip as
    /// it was (who entered); the members still inside are `arrivals`.
    /// Always `None` for a cyclic barrier.
    pub entered: Option<Trip>,
    /// The live arrivals of the current generation, in arrival order.
    pub arrivals: Vec<ArrivalInfo>,
    /// How the generation asked about ended, if it ended and the backend
    /// still remembers it.
    pub asked: Option<EndedGeneration>,
}

impl BarrierState {
    /// The record at `generation`, waiting for `parties`, `entered` (a
    /// double barrier's trip), with live `arrivals` and the end `asked`
    /// about.
    pub fn new(
        generation: u64,
        parties: Option<u32>,
        entered: Option<Trip>,
        arrivals: Vec<ArrivalInfo>,
        asked: Option<EndedGeneration>,
    ) -> BarrierState {
        BarrierState {
            generation,
            parties,
            entered,
            arrivals,
            asked,
        }
    }
}

/// What an arrival found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Arrive {
    /// Counted in the generation (or counted before: arrivals are
    /// idempotent per participant, and arriving again renews the lease),
    /// which has not tripped; `arrived` live arrivals now.
    Waiting {
        /// Live arrivals now.
        arrived: u32,
    },
    /// A double barrier's generation tripped (possibly by this arrival)
    /// with this participant inside; its lease is renewed.
    Entered(Trip),
    /// The generation ended (possibly by this very arrival: a cyclic
    /// barrier's trip): how. Whether the participant was counted in a trip
    /// is in its `arrivals`.
    Ended(EndedGeneration),
    /// The generation asked for is not the current one and the backend
    /// remembers no end of it (or it is ahead of the current one).
    Stale {
        /// The current generation.
        current: u64,
    },
    /// A double barrier's generation already has every party inside, and
    /// this participant is not one of them.
    Full {
        /// The parties.
        parties: u32,
    },
    /// The generation's first arrival set another number of parties.
    PartiesDiffer {
        /// The generation's parties.
        parties: u32,
    },
}

/// What breaking a generation found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Break {
    /// The generation has ended: by this break, or by an end that came
    /// first.
    Ended(EndedGeneration),
    /// A double barrier's generation that tripped (its parties entered) is
    /// not broken by a timeout: only a reset ends it early.
    Entered(Trip),
    /// The generation is neither current nor remembered.
    Unknown {
        /// The current generation.
        current: u64,
    },
}

/// What leaving found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Leave {
    /// The participant's arrival was removed; `remaining` live arrivals
    /// (members inside, for a double barrier) are left. When none remain
    /// in a double barrier's tripped generation, it ended.
    Left {
        /// Live arrivals left.
        remaining: u32,
    },
    /// The participant had no live arrival in that generation (never
    /// arrived, expired, or the generation ended), or its latest arrival
    /// was another wait's.
    NotThere,
}

/// A latch's record as one read saw it. Built with [`LatchState::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatchState {
    /// The current generation (drawn by the token rule at each set).
    pub generation: u64,
    /// The first generation of this record's life: a waiter of a
    /// generation at or after it and before `generation` knows its
    /// generation reached zero (a latch is set again only at zero).
    pub first_generation: u64,
    /// The count the generation was set to.
    pub initial: u32,
    /// What is left to count down (0: open).
    pub remaining: u32,
    /// Time left before the latch is gone.
    pub expires_in: Duration,
}

impl LatchState {
    /// The latch at `generation` (its life began at `first_generation`),
    /// set to `initial` with `remaining` left, gone in `expires_in`.
    pub fn new(
        generation: u64,
        first_generation: u64,
        initial: u32,
        remaining: u32,
        expires_in: Duration,
    ) -> LatchState {
        LatchState {
            generation,
            first_generation,
            initial,
            remaining,
            expires_in,
        }
    }
}

/// What setting a latch's count did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LatchSet {
    /// The count is set, in a new generation (or was, by this call's id:
    /// a retry).
    Set {
        /// The new generation.
        generation: u64,
    },
    /// The latch exists with a count above zero: unchanged.
    Busy(LatchState),
}

/// What counting a latch down did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CountDown {
    /// Counted: `remaining` left in `generation`.
    Counted {
        /// The generation counted in.
        generation: u64,
        /// What is left.
        remaining: u32,
    },
    /// Nothing changed: this participant had counted down in this
    /// generation already, or the generation is at zero, or the call is the
    /// retry of the participant's count of the generation before (which it
    /// names, at 0).
    Already {
        /// The generation.
        generation: u64,
        /// What is left.
        remaining: u32,
    },
    /// There is no latch of that name (never set, or expired).
    Absent,
    /// The generation asked for is not the current one.
    Stale {
        /// The current generation.
        current: u64,
    },
}

/// Barriers and latches. Every method is one atomic step (one round trip
/// on a remote backend). Cyclic barriers, double barriers and latches have
/// key spaces of their own.
#[async_trait]
pub trait BarrierBackend: Send + Sync {
    /// The barrier's record, made (with a first generation) if there was
    /// none; `asked`: a generation whose end to report. A record lives at
    /// least a day (`MAX_TTL`) past its latest arrival deadline or
    /// operation, reads included (a backend may keep it a little longer:
    /// Redis up to an hour, to refresh key expiries seldom).
    async fn state(
        &self,
        kind: BarrierKind,
        name: &Key,
        asked: Option<u64>,
    ) -> Result<BarrierState>;

    /// The barrier's record as [`state`](Self::state) reads it, or `None`
    /// when there is none (never used, or forgotten a day after its last
    /// use): it never makes one. For operators, whose look at a mistyped
    /// name must not make a barrier that answers "generation 1, nobody
    /// arrived". Arrivals whose lease passed are dropped first, as by every
    /// operation on the record.
    ///
    /// Added after the family: the default answers `NotSupported`, so that
    /// a backend written before it keeps compiling (and its users get no
    /// look rather than a barrier made). Every backend should implement it.
    async fn peek(&self, kind: BarrierKind, name: &Key) -> Result<Option<BarrierState>> {
        let _ = (kind, name);
        Err(crate::Error::NotSupported {
            operation: "barriers.peek",
            backend: "this backend".to_owned(),
        })
    }

    /// `participant` arrives in `generation` waiting for `parties`, with a
    /// lease of `ttl`: counted once (again: its lease renewed), and trips
    /// the generation if the live arrivals reach the parties. `arrival`
    /// names the wait that arrives (the client draws one per wait): the
    /// backend keeps the latest with the arrival, and a [`leave`] naming
    /// another one changes nothing (a wait given up, whose withdrawal
    /// comes late, does not withdraw the next wait's arrival).
    ///
    /// [`leave`]: BarrierBackend::leave
    #[allow(clippy::too_many_arguments)]
    async fn arrive(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        parties: u32,
        ttl: Duration,
        arrival: u64,
    ) -> Result<Arrive>;

    /// Renews `participant`'s arrival in `generation` for `ttl`; `false`
    /// if it has none (expired, left, or the generation ended; a double
    /// barrier's member inside is renewed until it leaves).
    async fn renew(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        ttl: Duration,
    ) -> Result<bool>;

    /// Removes `participant`'s arrival in `generation` (a wait given up, or
    /// a double barrier's member leaving) if its latest arrival was made by
    /// the wait `arrival` names ([`Leave::NotThere`] otherwise).
    async fn leave(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        arrival: u64,
    ) -> Result<Leave>;

    /// Breaks `generation` (the current one when `None`) for `reason`,
    /// unless it ended already (or, for a timeout, unless a double barrier's
    /// generation tripped): its arrivals are dropped and the next
    /// generation begins. See [`Break`].
    async fn break_generation(
        &self,
        kind: BarrierKind,
        name: &Key,
        generation: Option<u64>,
        reason: BreakReason,
    ) -> Result<Break>;

    /// Wakes when a generation of the barrier ends, and at the next
    /// arrival deadline.
    async fn watch(&self, kind: BarrierKind, name: &Key) -> Result<Box<dyn Watch>>;

    /// Sets the latch's count to `count` in a new generation, the record
    /// to live `ttl` from now, if the latch is absent or at zero; the
    /// generation keeps `set_id`. `set_id` names the call (the client draws
    /// one per call and sends it again when it retries a call left
    /// unanswered; 0 names none): when one of the live latch's last
    /// [`LATCH_SETS_KEPT`] generations (the current one or one before it
    /// in the record's life) was set with this same id, nothing changes
    /// and the answer is [`LatchSet::Set`] with that generation, whatever
    /// is left to count (the retry of a set whose reply was lost is
    /// answered as the first was, and never sets the latch again, also
    /// when others set it since).
    async fn latch_set(
        &self,
        name: &Key,
        count: u32,
        ttl: Duration,
        set_id: u64,
    ) -> Result<LatchSet>;

    /// `participant` counts the latch down in `generation` (the current one
    /// when `None`), once per participant and generation. `call` names the
    /// call (the client draws one per call and sends it again when it
    /// retries a call left unanswered; 0 names none), kept with the count:
    /// when `participant` counted the generation before the current one in
    /// the record's life by this same call (and `generation` is `None` or
    /// names that one), nothing changes and the answer is
    /// [`CountDown::Already`] with that generation and 0 left (the retry of
    /// a count-down whose reply was lost, sent after the latch was set
    /// again, does not count the new generation).
    async fn latch_count_down(
        &self,
        name: &Key,
        participant: &Key,
        generation: Option<u64>,
        call: u64,
    ) -> Result<CountDown>;

    /// The latch's record, `None` if absent (never set, or expired).
    async fn latch_state(&self, name: &Key) -> Result<Option<LatchState>>;

    /// Wakes when the latch reaches zero, is set, and when it expires.
    async fn latch_watch(&self, name: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "barriers",
        name,
    }
}

fn barriers<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn BarrierBackend> {
    family!(backend, barriers, op(name))
}

#[async_trait]
impl<D: Dispatch> BarrierBackend for Dispatched<D> {
    async fn state(
        &self,
        kind: BarrierKind,
        name: &Key,
        asked: Option<u64>,
    ) -> Result<BarrierState> {
        let args = (kind, name.clone(), asked);
        self.carry(op("state"), args, |b, (kind, n, asked)| async move {
            barriers(&b, "state")?.state(kind, &n, asked).await
        })
        .await
    }
    async fn peek(&self, kind: BarrierKind, name: &Key) -> Result<Option<BarrierState>> {
        self.carry(
            op("peek"),
            (kind, name.clone()),
            |b, (kind, n)| async move { barriers(&b, "peek")?.peek(kind, &n).await },
        )
        .await
    }
    async fn arrive(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        parties: u32,
        ttl: Duration,
        arrival: u64,
    ) -> Result<Arrive> {
        let args = (
            kind,
            name.clone(),
            participant.clone(),
            generation,
            parties,
            ttl,
            arrival,
        );
        self.carry(
            op("arrive"),
            args,
            |b, (kind, n, p, g, parties, ttl, a)| async move {
                (barriers(&b, "arrive")?)
                    .arrive(kind, &n, &p, g, parties, ttl, a)
                    .await
            },
        )
        .await
    }
    async fn renew(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        ttl: Duration,
    ) -> Result<bool> {
        let args = (kind, name.clone(), participant.clone(), generation, ttl);
        self.carry(op("renew"), args, |b, (kind, n, p, g, ttl)| async move {
            barriers(&b, "renew")?.renew(kind, &n, &p, g, ttl).await
        })
        .await
    }
    async fn leave(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        arrival: u64,
    ) -> Result<Leave> {
        let args = (kind, name.clone(), participant.clone(), generation, arrival);
        self.carry(op("leave"), args, |b, (kind, n, p, g, a)| async move {
            barriers(&b, "leave")?.leave(kind, &n, &p, g, a).await
        })
        .await
    }
    async fn break_generation(
        &self,
        kind: BarrierKind,
        name: &Key,
        generation: Option<u64>,
        reason: BreakReason,
    ) -> Result<Break> {
        let args = (kind, name.clone(), generation, reason);
        self.carry(
            op("break_generation"),
            args,
            |b, (kind, n, g, r)| async move {
                (barriers(&b, "break_generation")?)
                    .break_generation(kind, &n, g, r)
                    .await
            },
        )
        .await
    }
    async fn watch(&self, kind: BarrierKind, name: &Key) -> Result<Box<dyn Watch>> {
        let args = (kind, name.clone());
        self.carry(op("watch"), args, |b, (kind, n)| async move {
            barriers(&b, "watch")?.watch(kind, &n).await
        })
        .await
    }
    async fn latch_set(
        &self,
        name: &Key,
        count: u32,
        ttl: Duration,
        set_id: u64,
    ) -> Result<LatchSet> {
        let args = (name.clone(), count, ttl, set_id);
        self.carry(op("latch_set"), args, |b, (n, count, ttl, id)| async move {
            (barriers(&b, "latch_set")?)
                .latch_set(&n, count, ttl, id)
                .await
        })
        .await
    }
    async fn latch_count_down(
        &self,
        name: &Key,
        participant: &Key,
        generation: Option<u64>,
        call: u64,
    ) -> Result<CountDown> {
        let args = (name.clone(), participant.clone(), generation, call);
        self.carry(op("latch_count_down"), args, |b, (n, p, g, c)| async move {
            (barriers(&b, "latch_count_down")?)
                .latch_count_down(&n, &p, g, c)
                .await
        })
        .await
    }
    async fn latch_state(&self, name: &Key) -> Result<Option<LatchState>> {
        self.carry(op("latch_state"), (name.clone(),), |b, (n,)| async move {
            barriers(&b, "latch_state")?.latch_state(&n).await
        })
        .await
    }
    async fn latch_watch(&self, name: &Key) -> Result<Box<dyn Watch>> {
        self.carry(op("latch_watch"), (name.clone(),), |b, (n,)| async move {
            barriers(&b, "latch_watch")?.latch_watch(&n).await
        })
        .await
    }
}
