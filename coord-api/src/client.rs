//! The client: a backend, an instance id, a clock and default options.

use std::{fmt, sync::Arc};

use crate::renewal::Renewals;

use crate::{
    Clock, DynLeadershipBackend, DynLeaseBackend, Election, Error, Group, InstanceId, Job,
    LeadershipBackend, LeaseBackend, Lock, LockOptions, Result, RwLock, Semaphore, TokioClock,
};

/// The entry point: binds a backend (already tied to a namespace) to this
/// instance's id, a clock and default lock options. Cheap to clone; clones
/// share everything.
///
/// ```
/// # async fn demo(backend: coord_api::DynLeaseBackend) -> coord_api::Result<()> {
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
}

struct Inner {
    backend: DynLeaseBackend,
    leadership: Option<DynLeadershipBackend>,
    instance: InstanceId,
    clock: Arc<dyn Clock>,
    /// Whether `clock` tells the time of the backend's in-process face, so
    /// that the instant it decides a grant at is this client's too.
    backend_clock: bool,
    lock_options: LockOptions,
    renewals: Renewals,
}

impl Client {
    /// A client on `backend` with a generated instance id, tokio's clock and
    /// default options.
    pub fn new(backend: DynLeaseBackend) -> Client {
        Client::builder(backend).build()
    }

    /// A client on a backend that offers both the lock family and
    /// leadership (elections, groups, jobs), with default settings.
    pub fn with_backend<B: LeaseBackend + LeadershipBackend>(backend: Arc<B>) -> Client {
        Client::builder_with(backend).build()
    }

    /// A builder on a backend that offers both the lock family and leadership.
    pub fn builder_with<B: LeaseBackend + LeadershipBackend>(backend: Arc<B>) -> ClientBuilder {
        let leadership: DynLeadershipBackend = backend.clone();
        Client::builder(backend).leadership(leadership)
    }

    /// A builder to set the instance id, clock and default options.
    pub fn builder(backend: DynLeaseBackend) -> ClientBuilder {
        ClientBuilder {
            backend,
            leadership: None,
            instance: None,
            clock: Arc::new(TokioClock),
            lock_options: LockOptions::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &DynLeaseBackend {
        &self.inner.backend
    }

    /// The leadership backend (elections, groups, run-once jobs), or
    /// `NotSupported` when the client was built without one.
    pub fn leadership(&self) -> Result<&DynLeadershipBackend> {
        self.inner
            .leadership
            .as_ref()
            .ok_or_else(|| Error::NotSupported {
                operation: "leadership (elections, groups, jobs)",
                backend: self.inner.backend.to_string(),
            })
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.inner.instance
    }

    /// The clock used for local validity and back-off.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Whether the backend answers in process on this client's clock (see
    /// [`InProcessLeases::clock`](crate::InProcessLeases::clock)).
    pub(crate) fn on_backend_clock(&self) -> bool {
        self.inner.backend_clock
    }

    /// The queue that renews this client's auto-extended leases.
    pub(crate) fn renewals(&self) -> &Renewals {
        &self.inner.renewals
    }

    /// The default options of new locks, read-write locks and semaphores.
    pub fn lock_options(&self) -> &LockOptions {
        &self.inner.lock_options
    }

    /// An exclusive lock on `key`. Invalid keys are reported by the first
    /// operation, as `InvalidArgument`.
    pub fn lock(&self, key: &str) -> Lock {
        Lock::new(self.clone(), key)
    }

    /// A read-write lock on `key` (writer preference).
    pub fn rwlock(&self, key: &str) -> RwLock {
        RwLock::new(self.clone(), key)
    }

    /// A leader election named `name` (needs a leadership backend).
    pub fn election(&self, name: &str) -> Election {
        Election::new(self.clone(), name)
    }

    /// A membership group named `name` (needs a leadership backend).
    pub fn group(&self, name: &str) -> Group {
        Group::new(self.clone(), name)
    }

    /// A singleton job named `name` (needs a leadership backend for
    /// `run_once`; `run` uses the lock of the same name).
    pub fn job(&self, name: &str) -> Job {
        Job::new(self.clone(), name)
    }

    /// A semaphore on `key` with `permits` permits.
    pub fn semaphore(&self, key: &str, permits: u32) -> Semaphore {
        Semaphore::new(self.clone(), key, permits)
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

/// Builds a [`Client`].
#[must_use]
pub struct ClientBuilder {
    backend: DynLeaseBackend,
    leadership: Option<DynLeadershipBackend>,
    instance: Option<InstanceId>,
    clock: Arc<dyn Clock>,
    lock_options: LockOptions,
}

impl ClientBuilder {
    /// Sets this instance's id (validated: 1..=128 bytes, no `#`, no control
    /// characters). Default: generated from host name and pid.
    pub fn instance_id(mut self, id: &str) -> crate::Result<Self> {
        self.instance = Some(InstanceId::new(id)?);
        Ok(self)
    }

    /// Sets the leadership backend (elections, groups, run-once jobs).
    pub fn leadership(mut self, backend: DynLeadershipBackend) -> Self {
        self.leadership = Some(backend);
        self
    }

    /// Sets the clock (tests and the simulator skew it).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the default lock options.
    pub fn lock_options(mut self, opts: LockOptions) -> Self {
        self.lock_options = opts;
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        let backend_clock = (self.backend.in_process())
            .is_some_and(|local| crate::clock::same_time(local.clock(), &*self.clock));
        Client {
            inner: Arc::new(Inner {
                backend: self.backend,
                leadership: self.leadership,
                instance: self.instance.unwrap_or_else(InstanceId::generate),
                renewals: Renewals::new(self.clock.clone()),
                backend_clock,
                clock: self.clock,
                lock_options: self.lock_options,
            }),
        }
    }
}
