//! # coord-memory: the in-process backend
//!
//! A [`MemoryStore`] is an in-process "server": the state of every family
//! for every namespace, the server clock, and notifications. A
//! [`MemoryBackend`] is a connection to it bound to one namespace; any number
//! of clients (tasks, simulated nodes) share one store. It offers every
//! family with the same contract as every other backend (proven by the
//! conformance suite), and the client types treat it exactly as they treat
//! Redis — leases expire at their TTL and are renewed in the background — so
//! unit tests on `memory://` mean what they say about `redis://`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`table`] | the lock family's synchronous lease table (loom-checked) |
//! | `locks` | the lock family ([`LockBackend`]) on the table |
//! | `election`, `membership` | elections and groups, under one lock (a quorum election counts its group's members in the same step) |
//! | `jobs` | run-once jobs |
//! | `barriers` | cyclic and double barriers, and latches, under one lock |
//! | `graphs` | job graphs: every run of a graph, its token counter and queues, under one lock |
//! | `queues` | work queues: every item of a queue, its id and token counters and indexes, consumers' presence, dead items, under one lock |
//! | `topics` | topics: each topic's durable stream (events, offset and token counters) and its subscriptions (cursor, deliveries, retries, consumers' presence, dead events) under one lock; ephemeral events through a broadcast channel per topic |
//! | `breaker` | circuit breakers: each breaker's record (the SPI's state machine) under one lock |
//! | `ops` | operations: instance presences and audit trails under one lock; leases listed a page at a time across the families' own state; fenced revocation through each family |
//! | `state` | shared values: every entry of a space, its versions, deadlines and change log, under one lock |
//! | `watch` | notifications, one channel per watched topic, and wake-ups at expiry instants |
//! | `journal` | [`Journal`]: what the store did, in its order, for histories |
//! | `sync` | real or loom primitives under the table |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> coord_api::Result<()> {
//! use coord_api::{Client, Namespace};
//! use coord_memory::MemoryStore;
//! use std::sync::Arc;
//!
//! let store = MemoryStore::new();
//! let a = Client::new(Arc::new(store.backend(Namespace::default())));
//! let b = Client::new(Arc::new(store.backend(Namespace::default())));
//! let guard = a.lock("jobs/backup").try_lock().await?.expect("free");
//! assert!(b.lock("jobs/backup").try_lock().await?.is_none());
//! guard.release().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod barriers;
mod breaker;
mod election;
mod graphs;
mod jobs;
mod journal;
mod locks;
mod membership;
mod ops;
mod queues;
mod state;
mod sync;
pub mod table;
pub mod topics;
mod watch;

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord_api::{
    Clock, Instant, Namespace, TokioClock,
    spi::{
        Backend, BarrierBackend, BreakerBackend, ElectionBackend, GraphBackend, GroupBackend,
        JobBackend, LockBackend, OpsBackend, QueueBackend, StateBackend, TopicBackend, Watch,
    },
};

pub use journal::{BarrierEvent, BreakerEvent, Event, Journal, Leased};

use crate::{
    table::LeaseTable,
    watch::{MemoryWatch, Topic, Watchers},
};

/// The in-process server: the state of every family and namespace, its
/// clock and its notifications. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    table: LeaseTable,
    /// Elections and groups: one lock, because a quorum election counts its
    /// group's live members in the same atomic step.
    lead: Mutex<Lead>,
    jobs: Mutex<jobs::Runs>,
    /// Barriers and latches: a trip, the expiries before it and the end of
    /// its generation are one step.
    barriers: Mutex<barriers::Barriers>,
    /// Job graphs: a step on a graph (its sweep, the change it makes and
    /// the resolution that follows) is one step on all its runs.
    graphs: Mutex<graphs::Graphs>,
    /// Work queues: a step on a queue (its sweep and the change it makes)
    /// is one step on all its items and consumers.
    queues: Mutex<queues::Queues>,
    /// Topics: a step on a topic's stream and its subscriptions.
    topics: Mutex<topics::Topics>,
    /// Shared values: a step on a space (its sweep of expiries and the
    /// change it makes) is one step on all its entries and its log.
    spaces: Mutex<state::Spaces>,
    /// Circuit breakers: a step on a breaker's record.
    breakers: Mutex<breaker::Breakers>,
    /// Operations: instance presences and audit trails.
    ops: Mutex<ops::Ops>,
    watchers: Watchers,
    clock: Arc<dyn Clock>,
    journal: Option<Arc<dyn Journal>>,
}

#[derive(Default)]
struct Lead {
    elections: election::Elections,
    groups: membership::Groups,
}

impl MemoryStore {
    /// An empty store on tokio's clock.
    pub fn new() -> MemoryStore {
        MemoryStore::with_clock(Arc::new(TokioClock))
    }

    /// An empty store whose server clock is `clock` (decides expiry and the
    /// wall time mixed into fencing tokens).
    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryStore {
        MemoryStore::build(clock, None)
    }

    /// An empty store on `clock` that tells `journal` every grant, renewal
    /// and release (see [`Journal`]).
    pub fn with_journal(clock: Arc<dyn Clock>, journal: Arc<dyn Journal>) -> MemoryStore {
        MemoryStore::build(clock, Some(journal))
    }

    fn build(clock: Arc<dyn Clock>, journal: Option<Arc<dyn Journal>>) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(StoreInner {
                table: LeaseTable::new(&*clock),
                lead: Mutex::default(),
                jobs: Mutex::default(),
                barriers: Mutex::default(),
                graphs: Mutex::default(),
                queues: Mutex::default(),
                topics: Mutex::default(),
                spaces: Mutex::default(),
                breakers: Mutex::default(),
                ops: Mutex::default(),
                watchers: Watchers::default(),
                clock,
                journal,
            }),
        }
    }

    /// A connection bound to `namespace`.
    pub fn backend(&self, namespace: Namespace) -> MemoryBackend {
        MemoryBackend {
            store: self.clone(),
            ns: namespace,
        }
    }

    fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// The server's wall clock at `now` (monotonic since the store began).
    fn wall(&self, now: Instant) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.inner.table.wall_us(now))
    }

    fn lead(&self) -> MutexGuard<'_, Lead> {
        self.inner.lead.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jobs(&self) -> MutexGuard<'_, jobs::Runs> {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn barriers(&self) -> MutexGuard<'_, barriers::Barriers> {
        self.inner
            .barriers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn graphs(&self) -> MutexGuard<'_, graphs::Graphs> {
        self.inner.graphs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queues(&self) -> MutexGuard<'_, queues::Queues> {
        self.inner.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn topics(&self) -> MutexGuard<'_, topics::Topics> {
        self.inner.topics.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn spaces(&self) -> MutexGuard<'_, state::Spaces> {
        self.inner.spaces.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn breakers(&self) -> MutexGuard<'_, breaker::Breakers> {
        (self.inner.breakers.lock()).unwrap_or_else(|p| p.into_inner())
    }

    /// The journal to tell what the store did, if any.
    fn journal(&self) -> Option<&dyn Journal> {
        self.inner.journal.as_deref()
    }

    fn notify(&self, topic: impl FnOnce() -> Topic) {
        let watchers = &self.inner.watchers;
        if watchers.any() {
            watchers.notify(&topic());
        }
    }

    fn watch(&self, topic: Topic) -> Box<dyn Watch> {
        Box::new(MemoryWatch::new(self.clone(), topic))
    }

    /// The next instant after `after` at which something of `topic` expires.
    fn next_expiry(&self, topic: &Topic, after: Instant) -> Option<Instant> {
        match topic {
            Topic::Lock(key) => self.inner.table.next_expiry(key, after),
            Topic::Election(ns, key) => self.lead().elections.next_expiry(ns, key, after),
            Topic::Group(ns, key) => self.lead().groups.next_expiry(ns, key, after),
            Topic::Run(ns, job, occ) => self.jobs().next_expiry(ns, job, occ, after),
            Topic::Barrier(ns, kind, key) => self.barriers().next_expiry(ns, *kind, key, after),
            Topic::Latch(ns, key) => self.barriers().latch_expiry(ns, key, after),
            // Retry delays and lease deadlines pass without a wake-up (the
            // families' rule 9): `Take::Idle` and `Received::next_in` tell
            // when.
            Topic::GraphReady(..)
            | Topic::GraphRun(..)
            | Topic::Queue(..)
            | Topic::Events(..)
            | Topic::State(..)
            | Topic::Breaker(..) => None,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// A connection to a [`MemoryStore`], bound to one namespace. Offers every
/// family.
#[derive(Clone)]
pub struct MemoryBackend {
    store: MemoryStore,
    ns: Namespace,
}

impl MemoryBackend {
    /// A backend on a private store of its own.
    pub fn new(namespace: Namespace) -> MemoryBackend {
        MemoryStore::new().backend(namespace)
    }

    /// The store this backend talks to.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryBackend(ns={})", self.ns)
    }
}

impl fmt::Display for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memory(ns={})", self.ns)
    }
}

impl Backend for MemoryBackend {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }
    fn locks(&self) -> Option<&dyn LockBackend> {
        Some(self)
    }
    fn elections(&self) -> Option<&dyn ElectionBackend> {
        Some(self)
    }
    fn groups(&self) -> Option<&dyn GroupBackend> {
        Some(self)
    }
    fn jobs(&self) -> Option<&dyn JobBackend> {
        Some(self)
    }
    fn barriers(&self) -> Option<&dyn BarrierBackend> {
        Some(self)
    }
    fn graphs(&self) -> Option<&dyn GraphBackend> {
        Some(self)
    }
    fn queues(&self) -> Option<&dyn QueueBackend> {
        Some(self)
    }
    fn topics(&self) -> Option<&dyn TopicBackend> {
        Some(self)
    }
    fn state(&self) -> Option<&dyn StateBackend> {
        Some(self)
    }
    fn breakers(&self) -> Option<&dyn BreakerBackend> {
        Some(self)
    }
    fn ops(&self) -> Option<&dyn OpsBackend> {
        Some(self)
    }
}
