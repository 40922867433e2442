//! The client: a backend, an instance id, a clock and default options.

use std::{
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::{
    Barrier, Clock, DoubleBarrier, Election, Error, GraphBuilder, Group, InstanceId, Job, Latch,
    LeaseOptions, Lock, MultiLock, Queue, Result, RwLock, Semaphore, State, StateSpace, TokioClock,
    Topic,
    lease::{Lease, registry::Registry, renewal::Renewals, spawn_background},
    ops::{Operations, PresenceOptions, presence},
    spi::{
        BarrierBackend, DynBackend, ElectionBackend, GraphBackend, GroupBackend, JobBackend,
        LockBackend, OpsBackend, QueueBackend, StateBackend, TopicBackend,
    },
};

/// The entry point: binds a backend (already tied to a namespace) to this
/// instance's id, a clock and default lease options. Cheap to clone; clones
/// share everything.
///
/// ```
/// # async fn demo(backend: coord_api::spi::DynBackend) -> coord_api::Result<()> {
/// use coord_api::Client;
/// let client = Client::builder(backend).instance_id("scheduler-1")?.build();
/// if let Some(guard) = client.lock("jobs/backup").try_lock().await? {
///     println!("token {}", guard.token());
///     guard.release().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// This handle is [`close`](Client::close)'s own: its calls still go
    /// out once the client is closed.
    closer: bool,
}

struct Inner {
    backend: DynBackend,
    instance: InstanceId,
    clock: Arc<dyn Clock>,
    lease_options: LeaseOptions,
    /// Whether metrics carry a `key` label.
    metrics_per_key: bool,
    renewals: Renewals,
    /// The leases this client started, for `close`.
    leases: Registry,
    /// Whether the client is closed: read by every call (one atomic load).
    closed: AtomicBool,
    /// The same, turned `true` by `close` after `closed`, for waiting calls
    /// to wake on (a watch's read takes a lock: not for every call).
    closing: tokio::sync::watch::Sender<bool>,
    /// This instance's presence (started with the first call).
    presence: presence::Slot,
}

/// A client that does not keep it alive (its background tasks hold one).
#[derive(Clone)]
pub(crate) struct WeakClient(Weak<Inner>);

impl WeakClient {
    /// The client, unless every handle on it was dropped.
    pub(crate) fn upgrade(&self) -> Option<Client> {
        self.0.upgrade().map(|inner| Client {
            inner,
            closer: false,
        })
    }
}

impl Client {
    /// A client on `backend` with a generated instance id, tokio's clock and
    /// default options.
    pub fn new(backend: DynBackend) -> Client {
        Client::builder(backend).build()
    }

    /// A builder to set the instance id, clock and default options.
    pub fn builder(backend: DynBackend) -> ClientBuilder {
        ClientBuilder {
            backend,
            instance: None,
            clock: Arc::new(TokioClock),
            lease_options: LeaseOptions::default(),
            presence: PresenceOptions::default(),
            metrics_per_key: false,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &DynBackend {
        &self.inner.backend
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.inner.instance
    }

    /// The clock used for local validity and back-off.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The queue that renews this client's auto-extended leases.
    pub(crate) fn renewals(&self) -> &Renewals {
        &self.inner.renewals
    }

    /// The default options of new locks, elections, groups and jobs.
    pub fn lease_options(&self) -> &LeaseOptions {
        &self.inner.lease_options
    }

    /// Whether this client's metrics carry a `key` label (see
    /// [`ClientBuilder::metrics_per_key`]).
    pub(crate) fn metrics_per_key(&self) -> bool {
        self.inner.metrics_per_key
    }

    /// The leases this client started, as the lease engine notes them.
    pub(crate) fn leases(&self) -> Leases<'_> {
        Leases { client: self }
    }

    /// A handle on this client whose calls still go out once it is closed:
    /// [`close`](Self::close)'s own, and the background clean-ups', which
    /// only give things up (what a closing client wants done at once).
    pub(crate) fn closer(&self) -> Client {
        Client {
            inner: self.inner.clone(),
            closer: true,
        }
    }

    /// Closes the client: every lease it holds is released (locks,
    /// read-write locks, permits, reentrant holds to zero, leader terms
    /// resigned, group memberships left, run-once runs ended, a queue
    /// consumer's or a barrier party's presence), so other instances get
    /// them at once rather than at their TTL; their guards turn released
    /// and stop renewing. From the first instant of the call on, every
    /// call through this client or its clones (and through the handles,
    /// workers, consumers and subscribers made from it) fails with
    /// `Error::Closed` before any I/O, and loops that run on it end with
    /// that error. Closing again does nothing. Returns the first error a
    /// release met (the others were still tried; a lease whose release
    /// failed frees at its TTL).
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let guard = client.lock("jobs/backup").lock().await?;
    /// // Shutting down: free everything now, not at the TTLs.
    /// client.close().await?;
    /// assert!(!guard.is_held());
    /// assert!(client.lock("jobs/backup").try_lock().await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// The client is closed from the first poll on; a close cancelled
    /// before its releases answered leaves the rest to their TTLs.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.closing.send_replace(true);
        let closer = self.closer();
        let leases = self.inner.leases.take_held();
        tracing::info!(
            instance = %self.inner.instance,
            leases = leases.len(),
            backend = %self.inner.backend,
            "client closing"
        );
        // All at once: one round trip for the lot, not one per lease.
        let releases: Vec<_> = (leases.into_iter())
            .map(|lease| {
                let closer = closer.clone();
                tokio::spawn(async move { lease.close(&closer).await })
            })
            .collect();
        let mut first = Ok(());
        for release in releases {
            let res = release.await.unwrap_or_else(|e| {
                Err(Error::backend(
                    &self.inner.backend,
                    format!("a release failed: {e}"),
                ))
            });
            if first.is_ok() {
                first = res;
            }
        }
        if self.inner.presence.enabled()
            && let Ok(ops) = closer.ops_backend()
            && let Err(e) = ops.withdraw(&self.inner.instance).await
            && first.is_ok()
        {
            first = Err(e);
        }
        first
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Completes once the client is closed (never for `close`'s own
    /// handle): a waiting call selects on it, so that it ends with
    /// `Error::Closed` at once, not at its next retry.
    pub(crate) async fn until_closed(&self) {
        if self.closer {
            return std::future::pending().await;
        }
        let mut closing = self.inner.closing.subscribe();
        // (The sender lives as long as `self`: `wait_for` cannot fail.)
        let _ = closing.wait_for(|closed| *closed).await;
    }

    /// `Error::Closed` once the client is closed (but for `close`'s own
    /// calls).
    fn open(&self) -> Result<()> {
        if self.closer {
            return Ok(());
        }
        if !self.is_closed() {
            self.inner
                .presence
                .start(WeakClient(Arc::downgrade(&self.inner)));
            return Ok(());
        }
        Err(self.closed())
    }

    /// The error of every call through a closed client.
    pub(crate) fn closed(&self) -> Error {
        Error::Closed {
            instance: self.inner.instance.to_string(),
        }
    }

    /// The backend's lock family, or `NotSupported`.
    pub(crate) fn locks(&self) -> Result<&dyn LockBackend> {
        self.open()?;
        (self.inner.backend.locks()).ok_or_else(|| self.unsupported("locks"))
    }

    /// The backend's elections, or `NotSupported`.
    pub(crate) fn elections(&self) -> Result<&dyn ElectionBackend> {
        self.open()?;
        (self.inner.backend.elections()).ok_or_else(|| self.unsupported("elections"))
    }

    /// The backend's membership groups, or `NotSupported`.
    pub(crate) fn groups(&self) -> Result<&dyn GroupBackend> {
        self.open()?;
        (self.inner.backend.groups()).ok_or_else(|| self.unsupported("groups"))
    }

    /// The backend's run-once jobs, or `NotSupported`.
    pub(crate) fn jobs(&self) -> Result<&dyn JobBackend> {
        self.open()?;
        (self.inner.backend.jobs()).ok_or_else(|| self.unsupported("run-once jobs"))
    }

    /// The backend's barriers and latches, or `NotSupported`.
    pub(crate) fn barriers(&self) -> Result<&dyn BarrierBackend> {
        self.open()?;
        (self.inner.backend.barriers()).ok_or_else(|| self.unsupported("barriers"))
    }

    /// The backend's job graphs, or `NotSupported`.
    pub(crate) fn graphs(&self) -> Result<&dyn GraphBackend> {
        self.open()?;
        (self.inner.backend.graphs()).ok_or_else(|| self.unsupported("job graphs"))
    }

    /// The backend's work queues, or `NotSupported`.
    pub(crate) fn queues(&self) -> Result<&dyn QueueBackend> {
        self.open()?;
        (self.inner.backend.queues()).ok_or_else(|| self.unsupported("queues"))
    }

    /// The backend's topics, or `NotSupported`.
    pub(crate) fn topics(&self) -> Result<&dyn TopicBackend> {
        self.open()?;
        (self.inner.backend.topics()).ok_or_else(|| self.unsupported("topics"))
    }

    /// The backend's circuit breakers, or `NotSupported`.
    pub(crate) fn breakers(&self) -> Result<&dyn crate::spi::BreakerBackend> {
        self.open()?;
        (self.inner.backend.breakers()).ok_or_else(|| self.unsupported("breakers"))
    }

    /// The backend's shared values, or `NotSupported`.
    pub(crate) fn state_backend(&self) -> Result<&dyn StateBackend> {
        self.open()?;
        (self.inner.backend.state()).ok_or_else(|| self.unsupported("shared state"))
    }

    /// The backend's operations family, or `NotSupported`.
    pub(crate) fn ops_backend(&self) -> Result<&dyn OpsBackend> {
        self.open()?;
        (self.inner.backend.ops()).ok_or_else(|| self.unsupported("operations"))
    }

    /// The operator's handle: who holds what across every family, stale
    /// leases, fenced and audited force release, the audit trail, health.
    pub fn operations(&self) -> Operations {
        Operations::new(self.clone())
    }

    pub(crate) fn unsupported(&self, operation: &'static str) -> Error {
        Error::NotSupported {
            operation,
            backend: self.inner.backend.to_string(),
        }
    }

    /// A wait for `what` that ended, after `waited`, before it held.
    pub(crate) fn timed_out(&self, what: String, waited: std::time::Duration) -> Error {
        Error::Timeout {
            what,
            backend: self.inner.backend.to_string(),
            waited,
        }
    }

    /// An exclusive lock on `key`. Invalid keys are reported by the first
    /// operation, as `InvalidArgument`.
    pub fn lock(&self, key: &str) -> Lock {
        Lock::new(self.clone(), key)
    }

    /// Several exclusive locks, taken together all or nothing (see
    /// [`MultiLock`]); the keys are those of [`lock`](Self::lock), in any
    /// order.
    pub fn multi_lock<I, S>(&self, keys: I) -> MultiLock
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        MultiLock::new(self.clone(), keys)
    }

    /// A read-write lock on `key` (writer preference).
    pub fn rwlock(&self, key: &str) -> RwLock {
        RwLock::new(self.clone(), key)
    }

    /// A semaphore on `key` with `permits` permits.
    pub fn semaphore(&self, key: &str, permits: u32) -> Semaphore {
        Semaphore::new(self.clone(), key, permits)
    }

    /// A leader election named `name`.
    pub fn election(&self, name: &str) -> Election {
        Election::new(self.clone(), name)
    }

    /// A membership group named `name`.
    pub fn group(&self, name: &str) -> Group {
        Group::new(self.clone(), name)
    }

    /// A singleton job named `name` (`run` uses the lock of the same name,
    /// `run_once` the backend's run-once jobs).
    pub fn job(&self, name: &str) -> Job {
        Job::new(self.clone(), name)
    }

    /// A cyclic barrier named `name` where `parties` participants meet,
    /// round after round (1 ..= 10,000 parties).
    pub fn barrier(&self, name: &str, parties: u32) -> Barrier {
        Barrier::new(self.clone(), name, parties)
    }

    /// A double barrier named `name` (enter together, leave together) of
    /// `parties` participants.
    pub fn double_barrier(&self, name: &str, parties: u32) -> DoubleBarrier {
        DoubleBarrier::new(self.clone(), name, parties)
    }

    /// A countdown latch named `name`.
    pub fn latch(&self, name: &str) -> Latch {
        Latch::new(self.clone(), name)
    }

    /// A work queue named `name` of items of type `T` (JSON on the wire).
    /// An invalid name is reported by the first operation.
    pub fn queue<T>(&self, name: &str) -> Queue<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        Queue::new(self.clone(), name)
    }

    /// A topic named `name` of events of type `E` (JSON on the wire),
    /// ephemeral and durable. An invalid name is reported by the first
    /// operation.
    pub fn topic<E>(&self, name: &str) -> Topic<E>
    where
        E: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        Topic::new(self.clone(), name)
    }

    /// The shared value `key` of type `T` (JSON on the wire), in a space
    /// of its own. An invalid key is reported by the first operation.
    pub fn state<T>(&self, key: &str) -> State<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        State::new(self.clone(), key)
    }

    /// The space `name` of shared values of type `T`: values sharing one
    /// sequence of versions and one change log, watched by prefix.
    pub fn state_space<T>(&self, name: &str) -> StateSpace<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        StateSpace::new(self.clone(), name)
    }

    /// Declares a job graph named `name`: add nodes, then
    /// [`build`](GraphBuilder::build) it (checked before any I/O).
    pub fn graph(&self, name: &str) -> GraphBuilder {
        GraphBuilder::new(self.clone(), name)
    }

    /// The circuit breaker `name`, shared by every instance: set its policy
    /// and options, then [`build`](crate::BreakerBuilder::build) it
    /// (checked before any I/O).
    pub fn breaker(&self, name: &str) -> crate::BreakerBuilder {
        crate::BreakerBuilder::new(self.clone(), name)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("backend", &format_args!("{}", self.inner.backend))
            .field("instance", &self.inner.instance)
            .finish_non_exhaustive()
    }
}

/// The registry of a client's leases, as the lease engine notes them.
pub(crate) struct Leases<'a> {
    client: &'a Client,
}

impl Leases<'_> {
    /// Notes a lease just granted. A lease granted once the client is closed
    /// (its grant was on its way when `close` began, and `close` emptied the
    /// registry before it came) is ended at once: believed released, and
    /// released on the backend in the background through the closer, as
    /// `close` would have; and the call that was granted it answers
    /// `Error::Closed` (this error), as every call of a closed client does,
    /// rather than hand its caller a guard that is not held. Otherwise
    /// nobody would renew or release it (every call of the closed client is
    /// refused), and it would block others until its TTL. `close` sets its
    /// flag before it empties the registry, and this looks at the flag after
    /// noting: a lease is either taken by `close` or seen here (both, at
    /// worst: a second release changes nothing, releases being
    /// holder-checked).
    pub(crate) fn note(&self, lease: &Arc<Lease>) -> Result<()> {
        let client = self.client;
        client.inner.leases.note(lease);
        if client.is_closed() {
            lease.mark(false);
            let (lease, closer) = (lease.clone(), client.closer());
            spawn_background(async move {
                if let Err(e) = lease.close(&closer).await {
                    tracing::warn!(error = %e, "a lease granted after close: not released");
                }
            });
            return Err(client.closed());
        }
        Ok(())
    }
}

/// Builds a [`Client`].
#[must_use]
pub struct ClientBuilder {
    backend: DynBackend,
    instance: Option<InstanceId>,
    clock: Arc<dyn Clock>,
    lease_options: LeaseOptions,
    presence: PresenceOptions,
    metrics_per_key: bool,
}

impl ClientBuilder {
    /// Sets how this client keeps its instance presence (default: a 15 s
    /// presence renewed every 5 s; [`PresenceOptions::disabled`] keeps
    /// none, and then operators see this client's leases as stale).
    pub fn presence(mut self, presence: PresenceOptions) -> Self {
        self.presence = presence;
        self
    }

    /// Sets this instance's id (validated: 1..=128 bytes, no `#`, no control
    /// characters). Default: generated from host name and pid.
    pub fn instance_id(mut self, id: &str) -> crate::Result<Self> {
        self.instance = Some(InstanceId::new(id)?);
        Ok(self)
    }

    /// Sets the clock (tests and the simulator skew it).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the default lease options.
    pub fn lease_options(mut self, opts: LeaseOptions) -> Self {
        self.lease_options = opts;
        self
    }

    /// Adds a `key` label (the lock's, election's, group's or job's name)
    /// to the lease families' metrics: `coord_lock_*`, `coord_leases_lost_total`,
    /// `coord_election_*`, `coord_leadership_seconds`,
    /// `coord_group_changes_total`, `coord_job_runs_total`. Default off:
    /// every distinct key becomes a time series in the recorder, so turn it
    /// on only where the keys are few and fixed (a handful of named locks
    /// and elections), never for keys made from ids. A property of the
    /// whole client, because the recorder's cardinality is the
    /// application's decision, not one call site's.
    pub fn metrics_per_key(mut self, on: bool) -> Self {
        self.metrics_per_key = on;
        self
    }

    /// The client. Describes every family's metrics (names, units, help)
    /// to the `metrics` recorder installed now, if any.
    pub fn build(self) -> Client {
        crate::lease::metrics::describe();
        crate::queues::metrics::describe();
        crate::topics::metrics::describe();
        crate::graphs::metrics::describe();
        crate::state::metrics::describe();
        crate::breaker::metrics::describe();
        crate::barriers::metrics::describe();
        Client {
            inner: Arc::new(Inner {
                backend: self.backend,
                instance: self.instance.unwrap_or_else(InstanceId::generate),
                renewals: Renewals::new(self.clock.clone()),
                clock: self.clock,
                lease_options: self.lease_options,
                metrics_per_key: self.metrics_per_key,
                leases: Registry::default(),
                closed: AtomicBool::new(false),
                closing: tokio::sync::watch::Sender::new(false),
                presence: presence::Slot::new(self.presence),
            }),
            closer: false,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("backend", &format_args!("{}", self.backend))
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}
