//! What a backend provides to the suite, and the per-case context.

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Capability, Client, DynLeadershipBackend, DynLeaseBackend, LockOptions, Namespace,
};

use crate::faults::Switch;

/// A backend under test. Every call to [`open`](Harness::open) returns a new,
/// independent connection (its own client state, like another process) to
/// the one backend all calls share.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Opens an independent backend connection bound to `namespace`.
    async fn open(&self, namespace: &Namespace) -> coord_api::Result<DynLeaseBackend>;

    /// Opens an independent leadership connection (elections, groups,
    /// run-once jobs) bound to `namespace`, if the backend has one. The
    /// leadership cases are skipped when this returns `None` (the default).
    async fn open_leadership(
        &self,
        namespace: &Namespace,
    ) -> coord_api::Result<Option<DynLeadershipBackend>> {
        let _ = namespace;
        Ok(None)
    }
}

/// One case's world: a fresh random namespace on the harness's backend.
pub struct Ctx<'h> {
    harness: &'h dyn Harness,
    namespace: Namespace,
    caps: Option<Capability>,
    has_leadership: Option<bool>,
}

impl<'h> Ctx<'h> {
    /// A fresh namespace `conf-<random>`.
    pub fn new(harness: &'h dyn Harness) -> Ctx<'h> {
        let namespace = Namespace::new(&format!("conf-{:016x}", rand::random::<u64>()))
            .expect("valid namespace");
        Ctx {
            harness,
            namespace,
            caps: None,
            has_leadership: None,
        }
    }

    /// The case's namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// A new independent backend connection in the case's namespace.
    pub async fn backend(&self) -> DynLeaseBackend {
        self.harness
            .open(&self.namespace)
            .await
            .expect("harness opens a backend")
    }

    /// A new independent client (instance id `name`) with `opts` as defaults.
    pub async fn client_with(&self, name: &str, opts: LockOptions) -> Client {
        let mut builder = Client::builder(self.backend().await);
        if let Some(leadership) = self.leadership().await {
            builder = builder.leadership(leadership);
        }
        builder
            .instance_id(name)
            .expect("valid instance id")
            .lock_options(opts)
            .build()
    }

    /// A new independent leadership connection in the case's namespace, if
    /// the backend has leadership.
    pub async fn leadership(&self) -> Option<DynLeadershipBackend> {
        self.harness
            .open_leadership(&self.namespace)
            .await
            .expect("harness opens a leadership backend")
    }

    /// A new independent client with short test-friendly defaults: TTL 1 s,
    /// retry delay 10 s (so only notifications wake waiters quickly), wait
    /// timeout 10 s, auto-extension on.
    pub async fn client(&self, name: &str) -> Client {
        self.client_with(name, default_options()).await
    }

    /// A client whose backend can be cut off: while the returned
    /// [`Switch`] is off, every call fails with `Unavailable`. When the
    /// backend has leadership, the client's leadership backend goes through
    /// the same switch.
    pub async fn switchable_client(&self, name: &str, opts: LockOptions) -> (Client, Switch) {
        let switch = Switch::with_leadership(self.backend().await, self.leadership().await);
        let backend: DynLeaseBackend = Arc::new(switch.clone());
        let mut builder = Client::builder(backend);
        if switch.has_leadership() {
            let leadership: DynLeadershipBackend = Arc::new(switch.clone());
            builder = builder.leadership(leadership);
        }
        let client = builder
            .instance_id(name)
            .expect("valid instance id")
            .lock_options(opts)
            .build();
        (client, switch)
    }

    /// Whether the backend has the capability named `cap` (a field of
    /// [`Capability`]: `exclusive`, `reentrant`, `read_write`, `semaphore`,
    /// `release_notifications`, `expiry_notifications`, `force_release`,
    /// `inspect`). When it lacks it, prints `skipped: <case> needs <cap>` to
    /// stderr, and the case returns without checking anything.
    pub async fn require(&mut self, case: &str, cap: &str) -> bool {
        let has = has_capability(&self.capabilities().await, cap);
        if !has {
            eprintln!("skipped: {case} needs {cap}");
        }
        has
    }

    /// Whether the backend has leadership (elections, groups, run-once jobs:
    /// [`Harness::open_leadership`] gives one). When it has not, prints
    /// `skipped: <case> needs leadership` to stderr, and the case returns
    /// without checking anything.
    pub async fn require_leadership(&mut self, case: &str) -> bool {
        if self.has_leadership.is_none() {
            self.has_leadership = Some(self.leadership().await.is_some());
        }
        let has = self.has_leadership == Some(true);
        if !has {
            eprintln!("skipped: {case} needs leadership");
        }
        has
    }

    /// The backend's capabilities (asked once).
    pub async fn capabilities(&mut self) -> Capability {
        if self.caps.is_none() {
            self.caps = Some(self.backend().await.capabilities());
        }
        self.caps.expect("set above")
    }
}

/// The options [`Ctx::client`] uses.
pub fn default_options() -> LockOptions {
    LockOptions::default()
        .ttl(std::time::Duration::from_secs(1))
        .retry_delay(std::time::Duration::from_secs(10))
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
}

/// Whether `caps` has the capability named `cap` (a field name of
/// [`Capability`]). Panics on an unknown name, so a typo cannot skip a case.
pub fn has_capability(caps: &Capability, cap: &str) -> bool {
    match cap {
        "exclusive" => caps.exclusive,
        "reentrant" => caps.reentrant,
        "read_write" => caps.read_write,
        "semaphore" => caps.semaphore,
        "release_notifications" => caps.release_notifications,
        "expiry_notifications" => caps.expiry_notifications,
        "force_release" => caps.force_release,
        "inspect" => caps.inspect,
        other => panic!("unknown capability {other:?}"),
    }
}

/// Polls `probe` every 5 ms until it returns `Some`, for at most `within`;
/// `None` if it never did. Cases wait for conditions with this instead of
/// sleeping a fixed time and hoping.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
