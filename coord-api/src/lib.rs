//! # coord-api: the semantic contract of coord
//!
//! This crate is what every coord backend and every coord user agrees on.
//! Read [`contract`] first: it states, primitive by primitive, what coord
//! promises; the conformance suite (`coord-conformance`) checks it against
//! every backend.
//!
//! | module | what it holds |
//! |---|---|
//! | [`contract`] | the semantic contract, in prose |
//! | `error` | [`Error`], the one error enum, and [`Result`] |
//! | `key` | [`Key`], [`Namespace`], TTL limits ([`validate_ttl`]) |
//! | `holder` | [`InstanceId`] (interned), [`HolderId`] (instance + 128-bit nonce, counted up from a per-thread random start) |
//! | `token` | [`FencingToken`] and the rule that keeps it monotonic |
//! | `clock` | [`Clock`], [`TokioClock`], [`SkewedClock`] (offset and drift) |
//! | `backend` | the lock family's SPI: [`LeaseBackend`], [`LeaseWatch`], [`Capability`]; [`InProcessLeases`], the future-free face of an in-process backend (its clock, kept leases, [`Holding`]) |
//! | `leadership` | the SPI of elections, groups and run-once jobs: [`LeadershipBackend`] |
//! | `client` | [`Client`], [`ClientBuilder`] |
//! | `options` | [`LockOptions`] (every lease-based primitive uses them) |
//! | `lock`, `rwlock`, `semaphore` | [`Lock`], [`RwLock`], [`Semaphore`] |
//! | `lease` | [`LeaseGuard`] (and its aliases), [`LostSignal`]: a lease's local validity (one atomic word) and watchdog; or, on an in-process backend on the client's clock, a `LocalLease` the backend keeps and is asked about |
//! | `acquire` | one attempt (answered in place by an in-process backend), and the one wait loop every waiting operation shares |
//! | `renewal` | auto-extension: one renewal queue and task per client, lazily cancelled (unused by leases an in-process backend keeps) |
//! | `election`, `runner` | [`Election`], [`Leadership`], [`LeaderObserver`], [`LeaderRunner`] |
//! | `group` | [`Group`], [`Membership`], [`GroupObserver`] |
//! | `job` | [`Job`] (`run`, `run_once`), [`JobContext`] |
//! | `trace` | the `coord.backend` span around every backend call |
//!
//! Layering: backend traits (atomic steps, no defaults) → client types here
//! (waiting, retry, renewal, lost signals, tracing; written once for every
//! backend) → the `coord` facade (`connect(url)`).
#![deny(missing_docs)]

#[doc = include_str!("contract.md")]
pub mod contract {}

mod acquire;
mod backend;
mod client;
mod clock;
mod election;
mod error;
mod group;
mod handle;
mod holder;
mod job;
mod key;
mod leadership;
mod lease;
mod lock;
mod options;
mod renewal;
mod runner;
mod rwlock;
mod semaphore;
#[cfg(test)]
mod testing;
mod token;
mod trace;

pub use backend::{
    Acquire, Busy, Capability, DynLeaseBackend, Grant, Holding, InProcessLeases, LeaseBackend,
    LeaseFamily, LeaseId, LeaseInfo, LeaseKind, LeaseWatch, Release,
};
pub use client::{Client, ClientBuilder};
pub use clock::{Clock, Instant, SkewedClock, Sleep, TokioClock};
pub use election::{Election, LeaderChange, LeaderObserver, Leadership};
pub use error::{BoxError, Error, Result};
pub use group::{Group, GroupChange, GroupObserver, Membership};
pub use holder::{HolderId, InstanceId};
pub use job::{Job, JobContext, RunOnce};
pub use key::{Key, MAX_KEY_BYTES, MAX_NAMESPACE_BYTES, MAX_TTL, MIN_TTL, Namespace, validate_ttl};
pub use leadership::{
    Campaign, DynLeadershipBackend, LeaderInfo, LeadershipBackend, MemberInfo, Members, OnceBegin,
    Quorum,
};
pub use lease::{LeaseGuard, LockGuard, LostSignal, Permit, ReadGuard, WriteGuard};
pub use lock::Lock;
pub use options::LockOptions;
pub use runner::{LeaderContext, LeaderRunner, RunnerHandle};
pub use rwlock::RwLock;
pub use semaphore::Semaphore;
pub use token::FencingToken;

/// Re-exported so backends implement the traits with the same macro version.
pub use async_trait::async_trait;
