//! The backend SPI: what a backend implements. A root trait, [`Backend`],
//! bound to one [`Namespace`], hands out one trait per family of primitives;
//! each family trait is a handful of small atomic operations (one round trip
//! on a remote backend) with no default bodies, so that a backend cannot
//! silently inherit a wrong behaviour. Only the root trait's family
//! accessors have defaults (`None`: the family is not offered), so that a
//! family added later does not break existing backends (see
//! `docs/versioning.md` and decision 0019). Everything that is the same
//! for every backend (waiting, retry, renewal, lost signals, tracing) lives
//! in the client types instead, written once.
//!
//! | module | family | reached through |
//! |---|---|---|
//! | [`locks`] | exclusive and reentrant locks, read-write locks, semaphores | [`Backend::locks`] |
//! | [`election`] | leader elections | [`Backend::elections`] |
//! | [`membership`] | membership groups | [`Backend::groups`] |
//! | [`jobs`] | run-once jobs | [`Backend::jobs`] |
//! | [`barriers`] | cyclic and double barriers, countdown latches | [`Backend::barriers`] |
//! | [`graphs`] | job graphs: runs of DAGs of nodes, resolved inside the backend | [`Backend::graphs`] |
//! | [`queues`] | work queues: items delivered as fenced leases, dead letters, work stealing | [`Backend::queues`] |
//! | [`topics`] | typed events: ephemeral pub/sub (at most once) and durable streams read through named subscriptions (at least once, replay) | [`Backend::topics`] |
//! | [`state`] | shared values: versioned entries of spaces, compare-and-set, a change log read by watches | [`Backend::state`] |
//! | [`breaker`] | circuit breakers: a phase, a generation and a sliding window per name, trial calls as leases | [`Backend::breakers`] |
//! | [`ops`] | operations: instance presence, leases listed across families, fenced revocation, the audit trail, health probes | [`Backend::ops`] |
//! | [`dispatch`] | every family at once, for decorators and transports: a call carried as a value ([`Call`]) | [`Dispatched`] |
//!
//! A backend that offers only some families answers `None` for the others;
//! the client types then return [`Error::NotSupported`](crate::Error) and
//! the conformance suite reports those families' cases as ignored.
//!
//! A decorator (a kill switch, a fault layer, a network transport) does not
//! implement the family traits: it implements [`Dispatch`], one method that
//! receives every call of every family as a [`Call`], and [`Dispatched`]
//! turns it into a [`Backend`]. Adding a method to a family trait changes
//! the trait, its carrying in [`Dispatched`] (next to the trait), and the
//! backends; no decorator or transport.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::{Namespace, Result};

pub mod barriers;
pub mod breaker;
pub mod dispatch;
pub mod election;
pub mod graphs;
pub mod jobs;
pub mod locks;
pub mod membership;
pub mod ops;
pub mod queues;
pub mod state;
pub mod topics;

pub use barriers::{
    ArrivalInfo, Arrive, BarrierBackend, BarrierKind, BarrierState, Break, BreakReason, Broken,
    CountDown, ENDED_KEPT, Ended, EndedGeneration, LATCH_SETS_KEPT, LatchSet, LatchState, Leave,
    MAX_LATCH_COUNT, MAX_PARTIES, Trip,
};
pub use breaker::{
    Action, BreakerBackend, BreakerState, Cause, Manual, Phase, Policy, Reported, Tally,
    Transition, Trial, WindowKind,
};
pub use dispatch::{Call, Dispatch, Dispatched, Op, Reply};
pub use election::{
    Campaign, Candidate, ElectionBackend, LeaderInfo, MAX_LEADER_METADATA_BYTES, Quorum,
};
pub use graphs::{
    Cancel, Complete, Edge, GraphBackend, GraphSpec, MAX_ATTEMPTS, MAX_ERROR_BYTES, MAX_NODES,
    MAX_RESULT_BYTES, NodeResult, NodeSpec, NodeState, NodeStatus, On, OnFailure, Outcome, Renew,
    RunState, RunStatus, Submit, Take, Taken,
};
pub use jobs::{JobBackend, OnceBegin, OnceState};
pub use locks::{
    Acquire, AcquireAll, Busy, Grant, LeaseId, LeaseInfo, LeaseKind, LockBackend, LockCapabilities,
    LockSpace, MAX_MULTI_LOCK_KEYS, MAX_REENTRANT_HOLDS, Release, check_acquire_all,
    too_many_holds,
};
pub use membership::{GroupBackend, MAX_MEMBER_METADATA_BYTES, MemberInfo, Members};
pub use ops::{
    AUDIT_KEPT, AuditRecord, Cursor, LeaseRecord, MAX_PAGE, OpsBackend, Page, Presence, Probe,
    Resource, ResourceKind, Revoked, Role,
};
pub use queues::{
    DeadItem, Delivery, MAX_BATCH, MAX_DEAD_KEPT, MAX_ITEM_ATTEMPTS, MAX_PAYLOAD_BYTES,
    MAX_PRIORITY, MAX_REASON_BYTES, Nack, NewItem, Pushed, QueueBackend, QueueStats,
    ReceiveOptions, Received, Settle,
};
pub use state::{
    CHANGES_KEPT, Change, ChangeKind, Changes, Expect, Gap, MAX_CHANGES_PAGE, MAX_SPACE_KEYS,
    MAX_VALUE_BYTES, Select, StateBackend, Stored, Written,
};
pub use topics::{
    DeadEvent, Delivered, Event, Heard, Listener, MAX_DEAD_EVENTS_KEPT, MAX_EVENT_BATCH,
    MAX_EVENT_BYTES, MAX_KIND_BYTES, MAX_RETAINED, MAX_RETENTION_AGE, Missed, NewEvent, Read,
    ReadOptions, Retention, Start, SubscriptionStats, Tag, TopicBackend,
};

/// A backend bound to one [`Namespace`]: the root from which each family's
/// operations are reached. Used as `Arc<dyn Backend>` ([`DynBackend`]).
///
/// Every accessor answers the same for the backend's whole life.
///
/// The family accessors answer `None` (family not offered) unless
/// overridden, so that adding a family to coord is not a breaking change for
/// backends: an existing backend keeps compiling and does not offer the new
/// family. A backend (or a wrapper that forwards to one) should still write
/// out every accessor it offers; only [`namespace`](Self::namespace) is
/// required.
pub trait Backend: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// The namespace every key of this backend lives in.
    fn namespace(&self) -> &Namespace;
    /// Locks, read-write locks and semaphores. `None` unless overridden.
    fn locks(&self) -> Option<&dyn LockBackend> {
        None
    }
    /// Leader elections. `None` unless overridden.
    fn elections(&self) -> Option<&dyn ElectionBackend> {
        None
    }
    /// Membership groups. `None` unless overridden.
    fn groups(&self) -> Option<&dyn GroupBackend> {
        None
    }
    /// Run-once jobs. `None` unless overridden.
    fn jobs(&self) -> Option<&dyn JobBackend> {
        None
    }
    /// Barriers and latches. `None` unless overridden.
    fn barriers(&self) -> Option<&dyn BarrierBackend> {
        None
    }
    /// Job graphs. `None` unless overridden.
    fn graphs(&self) -> Option<&dyn GraphBackend> {
        None
    }
    /// Work queues. `None` unless overridden.
    fn queues(&self) -> Option<&dyn QueueBackend> {
        None
    }
    /// Topics: ephemeral and durable events. `None` unless overridden.
    fn topics(&self) -> Option<&dyn TopicBackend> {
        None
    }
    /// Shared values. `None` unless overridden.
    fn state(&self) -> Option<&dyn StateBackend> {
        None
    }
    /// Circuit breakers. `None` unless overridden.
    fn breakers(&self) -> Option<&dyn BreakerBackend> {
        None
    }
    /// Operations: instance presence, listing across families, fenced
    /// revocation, the audit trail, health probes. `None` unless overridden.
    fn ops(&self) -> Option<&dyn OpsBackend> {
        None
    }
}

/// A backend shared by many clients.
pub type DynBackend = Arc<dyn Backend>;

// Forwards every accessor explicitly: with the defaults above, a forwarding
// impl that left one out would hide that family of the backend behind it.
macro_rules! forward_backend {
    ($($ptr:ident),*) => {$(
        impl<T: Backend + ?Sized> Backend for $ptr<T> {
            fn namespace(&self) -> &Namespace {
                (**self).namespace()
            }
            fn locks(&self) -> Option<&dyn LockBackend> {
                (**self).locks()
            }
            fn elections(&self) -> Option<&dyn ElectionBackend> {
                (**self).elections()
            }
            fn groups(&self) -> Option<&dyn GroupBackend> {
                (**self).groups()
            }
            fn jobs(&self) -> Option<&dyn JobBackend> {
                (**self).jobs()
            }
            fn barriers(&self) -> Option<&dyn BarrierBackend> {
                (**self).barriers()
            }
            fn graphs(&self) -> Option<&dyn GraphBackend> {
                (**self).graphs()
            }
            fn queues(&self) -> Option<&dyn QueueBackend> {
                (**self).queues()
            }
            fn topics(&self) -> Option<&dyn TopicBackend> {
                (**self).topics()
            }
            fn state(&self) -> Option<&dyn StateBackend> {
                (**self).state()
            }
            fn breakers(&self) -> Option<&dyn BreakerBackend> {
                (**self).breakers()
            }
            fn ops(&self) -> Option<&dyn OpsBackend> {
                (**self).ops()
            }
        }
    )*};
}

forward_backend!(Arc, Box);

/// Which families a backend offers, with each family's capabilities.
///
/// Build one from [`Families::default`] (nothing) and set fields, or read a
/// backend's with [`Families::of`]. New fields default to "not offered", so
/// code written today keeps compiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Families {
    /// The lock family and what of it, if offered.
    pub locks: Option<LockCapabilities>,
    /// Leader elections.
    pub elections: bool,
    /// Membership groups.
    pub groups: bool,
    /// Run-once jobs.
    pub jobs: bool,
    /// Barriers and latches.
    pub barriers: bool,
    /// Job graphs.
    pub graphs: bool,
    /// Work queues.
    pub queues: bool,
    /// Topics.
    pub topics: bool,
    /// Shared values.
    pub state: bool,
    /// Circuit breakers.
    pub breakers: bool,
    /// Operations (presence, listing, revocation, audit, probes).
    pub ops: bool,
}

impl Families {
    /// What `backend` offers.
    pub fn of(backend: &dyn Backend) -> Families {
        Families {
            locks: backend.locks().map(|l| l.capabilities()),
            elections: backend.elections().is_some(),
            groups: backend.groups().is_some(),
            jobs: backend.jobs().is_some(),
            barriers: backend.barriers().is_some(),
            graphs: backend.graphs().is_some(),
            queues: backend.queues().is_some(),
            topics: backend.topics().is_some(),
            state: backend.state().is_some(),
            breakers: backend.breakers().is_some(),
            ops: backend.ops().is_some(),
        }
    }

    /// Every family, with every capability of the lock family.
    pub fn all() -> Families {
        Families {
            locks: Some(LockCapabilities::all()),
            elections: true,
            groups: true,
            jobs: true,
            barriers: true,
            graphs: true,
            queues: true,
            topics: true,
            state: true,
            breakers: true,
            ops: true,
        }
    }
}

/// Wakes a waiter when something may have changed on what it watches (a
/// lock's key, an election, a group, a run, a barrier, a latch). Obtained *before* the look it
/// follows, so a change between the look and the wait is not missed.
#[async_trait]
pub trait Watch: Send {
    /// Completes when something changed since the watch was made or since
    /// the previous call returned. May complete spuriously; never for
    /// something it was not asked about. A backend without notifications
    /// returns a watch that never completes (waiters then fall back on their
    /// retry delay).
    async fn changed(&mut self) -> Result<()>;

    /// The wake-up [`changed`](Self::changed) returned last was used: the
    /// attempt it woke was answered (granted or refused). A watch that
    /// shares each wake-up among waiters (one release, one waiter woken)
    /// hands a wake-up taken but never used on to another waiter when it is
    /// dropped (its owner cancelled or failed before its attempt landed).
    /// The default does nothing.
    fn used(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend written before every family existed: only the namespace.
    #[derive(Debug)]
    struct Bare(Namespace);

    impl fmt::Display for Bare {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bare")
        }
    }

    impl Backend for Bare {
        fn namespace(&self) -> &Namespace {
            &self.0
        }
    }

    #[test]
    fn family_accessors_default_to_not_offered() {
        let bare: DynBackend = Arc::new(Bare(Namespace::new("ns").unwrap()));
        assert_eq!(Families::of(&bare), Families::default());
        assert_eq!(Families::of(&Box::new(bare)), Families::default());
    }
}
