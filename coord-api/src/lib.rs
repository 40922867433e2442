//! # coord-api: the semantic contract of coord
//!
//! This crate is what every coord backend and every coord user agrees on.
//! Read [`contract`] first: it states, family by family, what coord promises,
//! each promise naming the conformance cases (`coord-conformance`) that check
//! it against every backend.
//!
//! | module | what it holds |
//! |---|---|
//! | [`contract`] | the contract, one section per family |
//! | `error`, `key`, `holder`, `token`, `clock` | [`Error`]; [`Key`], [`Namespace`], TTL limits; [`InstanceId`], [`HolderId`]; [`FencingToken`]; [`Clock`], [`SkewedClock`] |
//! | [`spi`] | what a backend implements: the root [`spi::Backend`], one trait per family, and [`spi::Dispatch`] for decorators and transports |
//! | `lease` | the lease engine, knowing no family: [`LeaseOptions`], local validity, renewal, [`LostSignal`], waiting, the clean-up of unanswered acquisitions |
//! | `client` | [`Client`], [`ClientBuilder`] |
//! | `locks` | [`Lock`], [`RwLock`], [`Semaphore`], their [`LeaseGuard`] |
//! | `election` | [`Election`], [`Leadership`], [`LeaderObserver`], [`LeaderRunner`] |
//! | `membership` | [`Group`], [`Membership`], [`GroupObserver`] |
//! | `jobs` | [`Job`] (`run`, `run_once`), [`JobContext`] |
//! | `barriers` | [`Barrier`], [`DoubleBarrier`] and its [`Inside`], [`Latch`]; the family's metrics |
//! | `queues` | work queues: [`Queue`], [`PushOptions`], [`Consumer`], [`Delivery`], [`DeadLetter`]; the family's metrics |
//! | `topics` | typed events: [`Topic`] (ephemeral publish at most once, durable publish), [`EphemeralListener`], [`Subscriber`] of a named subscription and its [`EventDelivery`]s; the family's metrics |
//! | `state` | shared values: [`State`], [`StateSpace`], [`Versioned`], [`CasOutcome`], [`StateWatch`] and its [`StateEvent`]s; the family's metrics |
//! | `breaker` | circuit breakers shared by name: [`Breaker`] (from [`BreakerBuilder`]), its [`CallPermit`]s, [`Unreachable`], [`BreakerEvents`] of [`BreakerEvent`]s; the family's metrics |
//! | `backoff` | [`Backoff`]: doubling retry delays with jitter (graph nodes, queue nacks) |
//! | `graphs` | job graphs: [`Graph`] (declared with [`Node`]s), [`GraphRun`], [`GraphWorker`] and its [`NodeContext`]; the family's metrics |
//! | `ops` | operations: [`Operations`] (who holds what across families, [`LiveLease`]s and stale ones, fenced and audited force release, the audit trail, [`Health`]); [`PresenceOptions`] of the instance presence every client keeps |
//! | [`url`] | [`url::BackendUrl`]: the one parser of backend URLs (every scheme), whose errors never echo a password |
//! | `handle`, `trace`, `codec` | what every family's handle is made of; the `coord.backend` span around every backend call; values as JSON, checked to read back |
//!
//! Layering: the SPI (atomic steps; the family traits have no defaults) → the lease engine and the
//! client types here (waiting, retry, renewal, lost signals, tracing;
//! written once for every backend) → the `coord` facade (`connect(url)`).
#![deny(missing_docs)]

pub mod contract;
pub mod spi;
pub mod url;

mod backoff;
mod barriers;
mod breaker;
mod client;
mod clock;
mod codec;
mod election;
mod error;
mod graphs;
mod handle;
mod holder;
mod jobs;
mod key;
mod lease;
mod locks;
mod membership;
mod ops;
mod queues;
mod state;
#[cfg(test)]
mod testing;
mod token;
mod topics;
mod trace;

pub use backoff::Backoff;
pub use barriers::{Barrier, DoubleBarrier, Inside, Latch, LatchWait, Tripped};
pub use breaker::{Breaker, BreakerBuilder, BreakerEvent, BreakerEvents, CallPermit, Unreachable};
#[cfg(feature = "tower")]
pub use breaker::{BreakerLayer, BreakerService};
pub use client::{Client, ClientBuilder};
pub use clock::{Clock, Instant, SkewedClock, Sleep, TokioClock};
pub use election::{
    Election, LeaderChange, LeaderContext, LeaderObserver, LeaderRunner, Leadership, RunnerHandle,
};
pub use error::{BarrierBroken, BoxError, Error, Result};
pub use graphs::{
    Blocker, Graph, GraphBuilder, GraphRun, GraphWorker, Node, NodeContext, NodeError, RunEvent,
    RunObserver, Worked,
};
pub use holder::{HolderId, InstanceId};
pub use jobs::{Job, JobContext, RunOnce};
pub use key::{Key, MAX_KEY_BYTES, MAX_NAMESPACE_BYTES, MAX_TTL, MIN_TTL, Namespace, validate_ttl};
pub use lease::{LeaseOptions, LostSignal};
pub use locks::{
    DEFAULT_WAITER_TTL, LeaseGuard, Lock, LockGuard, MAX_WAITER_TTL, MIN_WAITER_TTL, MultiGuard,
    MultiLock, Permit, ReadGuard, RwLock, Semaphore, WriteGuard,
};
pub use membership::{Group, GroupChange, GroupObserver, Membership};
pub use ops::{
    BackendClock, Check, Forced, Health, LeaseFilter, LeaseWalk, LiveLease, Operations,
    PresenceOptions, Status,
};
pub use queues::{Consumer, DeadLetter, Delivery, ItemContext, PushOptions, PushOutcome, Queue};
/// What the client types hand back about a backend's state: who holds a
/// lease, who leads, who is a member (defined with the SPI, used by both).
pub use spi::{
    ArrivalInfo, BarrierState, Candidate, Ended, EndedGeneration, LatchState, LeaderInfo,
    LeaseInfo, LeaseKind, LockSpace, MAX_LATCH_COUNT, MAX_LEADER_METADATA_BYTES,
    MAX_MEMBER_METADATA_BYTES, MAX_PARTIES, MemberInfo, Members, NodeState, NodeStatus, On,
    OnFailure, Outcome, QueueStats, Quorum, RunState, RunStatus, Trip,
};
pub use state::{
    CasOutcome, MAX_UPDATE_ATTEMPTS, State, StateEvent, StateSpace, StateWatch, UPDATE_RESENDS,
    Versioned,
};
pub use token::FencingToken;
pub use topics::{
    Ephemeral, EphemeralListener, EventContext, EventDelivery, Next, Subscriber, Topic,
};

/// Re-exported so backends implement the traits with the same macro version.
pub use async_trait::async_trait;

/// The SPI's types the client types use, at the crate's root for them.
pub(crate) use spi::{Acquire, Campaign, LeaseId, OnceBegin, Release, Watch};
