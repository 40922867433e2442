//! # coord: distributed coordination for the instances of a service
//!
//! Locks, read-write locks, semaphores, leader elections, membership groups,
//! run-once jobs, barriers and latches, work queues and job graphs whose participants are separate processes: five
//! replicas of a scheduler where exactly one runs the nightly job, a payment
//! worker that must never process an order twice, and an on-call engineer
//! who can ask who holds a lock and since when. Pick the backend at start-up
//! with a URL — `redis://…` in production, `memory://` in tests — and code
//! against one set of types. The in-memory backend behaves like Redis:
//! leases expire at their TTL unless renewed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> coord::Result<()> {
//! use std::time::Duration;
//!
//! let client = coord::connect("memory://?namespace=docs").await?;
//! let lock = client.lock("jobs/nightly-report").ttl(Duration::from_secs(10));
//! if let Some(guard) = lock.try_lock().await? {
//!     // Hand the fencing token to whatever you write to: it refuses writes
//!     // carrying a smaller token than one it has already seen.
//!     println!("running the report with token {}", guard.token());
//!     assert!(guard.release().await?); // true: we still held it
//! }
//! # Ok(()) }
//! ```
//!
//! | item | what it is |
//! |---|---|
//! | [`connect`] | a [`Client`] on the backend a URL names |
//! | [`Client`], [`ClientBuilder`] | one instance's handle: [`lock`](Client::lock), [`rwlock`](Client::rwlock), [`semaphore`](Client::semaphore), [`election`](Client::election), [`group`](Client::group), [`job`](Client::job), [`barrier`](Client::barrier), [`double_barrier`](Client::double_barrier), [`latch`](Client::latch), [`queue`](Client::queue), [`graph`](Client::graph) |
//! | [`Lock`], [`RwLock`], [`Semaphore`] | the lock family; guards are [`LeaseGuard`]s with a [`FencingToken`] and a [`LostSignal`] |
//! | [`MultiLock`] | several exclusive locks at once, all or nothing; one [`MultiGuard`] |
//! | [`Election`], [`Leadership`], [`LeaderObserver`], [`LeaderRunner`] | leader elections with terms |
//! | [`Group`], [`Membership`], [`GroupObserver`] | membership groups |
//! | [`Job`], [`RunOnce`] | jobs run by one instance at a time, or once |
//! | [`Barrier`], [`DoubleBarrier`], [`Latch`] | barriers with generations whose arrivals are leases; countdown latches |
//! | [`Queue`], [`Consumer`], [`Delivery`] | work queues: typed items delivered as fenced leases, at least once, with dead letters and work stealing |
//! | [`Graph`], [`Node`], [`GraphRun`], [`GraphWorker`] | job graphs: runs of DAGs worked on by any instance, each node's dependents resolved inside the backend |
//! | [`LeaseOptions`] | TTL, waiting, retries, auto-extension, clock drift |
//! | [`Error`] | the one error type |
//! | [`contract`] | what coord promises, family by family |
//! | [`memory`] | the in-process backend |
//! | `redis` | the Redis backend (feature `redis`; absent under the madsim simulator) |
//! | [`spi`] | the backend SPI, for backend authors (`coord_api::spi`) |
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | yes | the Redis backend: `redis://`, `unix://`, `redis+unix://` URLs, `coord::redis` |
//! | `redis-tls` | no | `rediss://` (TLS by rustls with ring), on top of `redis` |
//!
//! Without `redis` the build is the client types and the in-process
//! backend only (no redis crate, no TLS stack).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod connect;

pub use connect::connect;

pub use coord_api::{
    ArrivalInfo, Backoff, Barrier, BarrierBroken, BarrierState, Blocker, BoxError, Candidate,
    CasOutcome, Client, ClientBuilder, Clock, Consumer, DeadLetter, Delivery, DoubleBarrier,
    Election, Ended, EndedGeneration, Error, FencingToken, Graph, GraphBuilder, GraphRun,
    GraphWorker, Group, GroupChange, GroupObserver, HolderId, Inside, InstanceId, ItemContext, Job,
    JobContext, Key, Latch, LatchState, LatchWait, LeaderChange, LeaderContext, LeaderInfo,
    LeaderObserver, LeaderRunner, Leadership, LeaseGuard, LeaseInfo, LeaseKind, LeaseOptions, Lock,
    LockGuard, LockSpace, LostSignal, MAX_KEY_BYTES, MAX_LATCH_COUNT, MAX_NAMESPACE_BYTES,
    MAX_PARTIES, MAX_TTL, MIN_TTL, MemberInfo, Members, Membership, MultiGuard, MultiLock,
    Namespace, Node, NodeContext, NodeError, NodeState, NodeStatus, On, OnFailure, Outcome, Permit,
    PushOptions, PushOutcome, Queue, QueueStats, Quorum, ReadGuard, Result, RunEvent, RunObserver,
    RunOnce, RunState, RunStatus, RunnerHandle, RwLock, Semaphore, SkewedClock, State, StateEvent,
    StateSpace, StateWatch, TokioClock, Trip, Tripped, Versioned, Worked, WriteGuard, contract,
    spi,
};
/// Topics: typed events, ephemeral (at most once) and durable (named
/// subscriptions, at least once, replay).
pub use coord_api::{
    Ephemeral, EphemeralListener, EventContext, EventDelivery, Next, Subscriber, Topic,
};

/// Operations: who holds what across families, stale leases, fenced and
/// audited force release, the audit trail, health; the instance presence
/// every client keeps.
pub use coord_api::{
    BackendClock, Check, Forced, Health, LeaseFilter, LeaseWalk, LiveLease, Operations,
    PresenceOptions, Status,
};

/// Circuit breakers shared by name, with no round trip per call.
pub use coord_api::{
    Breaker, BreakerBuilder, BreakerEvent, BreakerEvents, CallPermit, Unreachable,
};
/// A tower layer that puts any service behind a shared breaker.
#[cfg(feature = "tower")]
pub use coord_api::{BreakerLayer, BreakerService};

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The in-process backend: one [`MemoryStore`](memory::MemoryStore) plays the
/// server, each [`MemoryBackend`](memory::MemoryBackend) is a connection to it
/// bound to a namespace. Leases expire at their TTL as on Redis.
pub mod memory {
    use std::sync::LazyLock;

    pub use coord_memory::{MemoryBackend, MemoryStore};

    static PROCESS_STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);

    /// The store behind every `memory://` URL: one per process, like a local
    /// server, so that clients connected separately see each other's locks.
    /// Namespaces keep unrelated users of it apart.
    pub fn process_store() -> &'static MemoryStore {
        &PROCESS_STORE
    }
}

/// The Redis backend: connect with [`connect`] (`redis://`, `rediss://`,
/// `unix://`), or build a [`RedisConfig`](redis::RedisConfig) and call
/// [`RedisBackend::connect`](redis::RedisBackend::connect). Not available under
/// the madsim simulator, where the redis crate cannot run.
#[cfg(all(not(madsim), feature = "redis"))]
pub mod redis {
    pub use coord_redis::{
        CONFIG_KEYS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Endpoint, RedisBackend, RedisConfig,
        RedisConfigBuilder,
    };
}
