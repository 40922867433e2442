//! # coord-memory: the in-process backend
//!
//! A [`MemoryStore`] is an in-process "server": the lock family's state for
//! every namespace, the server clock, and release/expiry notifications. A
//! [`MemoryBackend`] is a connection to it bound to one namespace; any number
//! of clients (tasks, simulated nodes) share one store. Same contract as
//! every other backend (proven by the conformance suite), so unit tests on
//! `memory://` mean what they say about `redis://`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`table`] | the synchronous lease-table state machine (loom-checked) |
//! | `watch` | release and expiry notifications for waiters |
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

#[cfg(feature = "broken")]
mod bug;
mod leadership;
mod sync;
pub mod table;
mod watch;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Acquire, Campaign, Capability, Clock, FencingToken, HolderId, Holding, InProcessLeases,
    Instant, Key, LeaderInfo, LeadershipBackend, LeaseBackend, LeaseFamily, LeaseId, LeaseInfo,
    LeaseWatch, Members, Namespace, OnceBegin, Quorum, Release, Result, TokioClock,
};

#[cfg(feature = "broken")]
pub use bug::Bug;

use crate::{
    leadership::{Leadership, Ops, Topic, TopicWatch},
    table::{Freed, LeaseTable, table_key},
    watch::Watchers,
};

/// The in-process server: lease state of every namespace, its clock and its
/// notifications. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    table: LeaseTable,
    watchers: Watchers,
    leadership: Leadership,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// An empty store on tokio's clock.
    pub fn new() -> MemoryStore {
        MemoryStore::with_clock(Arc::new(TokioClock))
    }

    /// An empty store whose server clock is `clock` (decides expiry and the
    /// wall time mixed into fencing tokens).
    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(StoreInner {
                table: LeaseTable::new(&*clock),
                watchers: Watchers::default(),
                leadership: Leadership::default(),
                clock,
            }),
        }
    }

    /// An empty store with a deliberate bug (feature `broken`, tests only).
    #[cfg(feature = "broken")]
    pub fn with_bug(clock: Arc<dyn Clock>, bug: Bug) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(StoreInner {
                table: LeaseTable::with_bug(&*clock, bug),
                watchers: Watchers::default(),
                leadership: Leadership::default(),
                clock,
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

/// A connection to a [`MemoryStore`], bound to one namespace.
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

    fn clock(&self) -> &dyn Clock {
        &*self.store.inner.clock
    }

    fn notify(&self, family: LeaseFamily, key: &Key) {
        let watchers = &self.store.inner.watchers;
        if watchers.any() {
            watchers.notify(&table_key(&self.ns, family, key));
        }
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

#[async_trait]
impl LeaseBackend for MemoryBackend {
    fn capabilities(&self) -> Capability {
        Capability::lock_family()
    }

    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        self.acquire_now(lease, ttl).map(|(acquire, _)| acquire)
    }

    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        self.extend_now(lease, ttl)
    }

    async fn release(&self, lease: &LeaseId) -> Result<Release> {
        self.release_now(lease)
    }

    async fn force_release(&self, family: LeaseFamily, key: &Key) -> Result<usize> {
        let n = self
            .store
            .inner
            .table
            .force_release(&self.ns, family, key, self.clock());
        self.notify(family, key);
        Ok(n)
    }

    async fn inspect(&self, family: LeaseFamily, key: &Key) -> Result<Vec<LeaseInfo>> {
        Ok(self
            .store
            .inner
            .table
            .inspect(&self.ns, family, key, self.clock()))
    }

    async fn subscribe(&self, family: LeaseFamily, key: &Key) -> Result<Box<dyn LeaseWatch>> {
        Ok(Box::new(watch::MemoryWatch::new(
            self.store.clone(),
            table_key(&self.ns, family, key),
        )))
    }

    fn in_process(&self) -> Option<&dyn InProcessLeases> {
        Some(self)
    }
}

/// The store answers in the caller's thread: the client types call these
/// directly, without a future.
impl InProcessLeases for MemoryBackend {
    fn clock(&self) -> &dyn Clock {
        &*self.store.inner.clock
    }

    fn acquire_now(&self, lease: &LeaseId, ttl: Duration) -> Result<(Acquire, Instant)> {
        let now = self.clock().now();
        let acquire = self.store.inner.table.acquire(&self.ns, lease, ttl, now)?;
        Ok((acquire, now))
    }

    fn acquire_kept(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        let table = &self.store.inner.table;
        table.acquire_kept(&self.ns, lease, ttl, self.clock())
    }

    fn holding(&self, lease: &LeaseId, token: FencingToken) -> Holding {
        let table = &self.store.inner.table;
        table.holding(&self.ns, lease, token, self.clock())
    }

    fn extend_now(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        self.store
            .inner
            .table
            .extend(&self.ns, lease, ttl, self.clock())
    }

    fn release_now(&self, lease: &LeaseId) -> Result<Release> {
        let (release, freed) = self
            .store
            .inner
            .table
            .release(&self.ns, lease, self.clock());
        if freed == Freed::Yes {
            self.notify(lease.kind.family(), &lease.key);
        }
        Ok(release)
    }
}

impl MemoryBackend {
    fn ops(&self) -> Ops<'_> {
        Ops {
            store: &self.store,
            ns: &self.ns,
        }
    }

    fn watch(&self, topic: Topic) -> Box<dyn LeaseWatch> {
        Box::new(TopicWatch::new(self.store.clone(), topic))
    }
}

#[async_trait]
impl LeadershipBackend for MemoryBackend {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<Campaign> {
        self.ops().campaign(election, holder, metadata, ttl, quorum)
    }

    async fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool> {
        self.ops().renew(election, holder, term, ttl, quorum)
    }

    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
        Ok(self.ops().resign(election, holder, term))
    }

    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
        Ok(self.ops().leader(election))
    }

    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
        Ok(Some(self.ops().terms_granted(election)))
    }

    async fn watch_election(&self, election: &Key) -> Result<Box<dyn LeaseWatch>> {
        Ok(self.watch(Topic::Election(self.ns.clone(), election.clone())))
    }

    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        self.ops().join(group, holder, metadata, ttl)
    }

    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        self.ops().heartbeat(group, holder, ttl)
    }

    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
        Ok(self.ops().leave(group, holder))
    }

    async fn members(&self, group: &Key) -> Result<Members> {
        Ok(self.ops().members(group))
    }

    async fn watch_group(&self, group: &Key) -> Result<Box<dyn LeaseWatch>> {
        Ok(self.watch(Topic::Group(self.ns.clone(), group.clone())))
    }

    async fn begin_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        self.ops().begin_once(job, occurrence, holder, ttl)
    }

    async fn extend_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        self.ops().extend_once(job, occurrence, holder, ttl)
    }

    async fn end_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        self.ops().end_once(job, occurrence, holder, finished)
    }

    async fn watch_once(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn LeaseWatch>> {
        Ok(self.watch(Topic::Once(
            self.ns.clone(),
            job.clone(),
            occurrence.clone(),
        )))
    }
}
