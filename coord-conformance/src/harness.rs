//! What a backend provides to the suite ([`Harness`]), and each case's world
//! ([`Ctx`]): a fresh namespace and independent clients in it.

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Client, LeaseOptions, Namespace, PresenceOptions,
    spi::{Dispatched, DynBackend, Families},
};

use crate::switch::Switch;

/// A backend under test. Every call to [`open`](Harness::open) returns a new,
/// independent connection (its own client state, like another process) to
/// the one backend all calls share.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Opens an independent connection bound to `namespace`.
    async fn open(&self, namespace: &Namespace) -> coord_api::Result<DynBackend>;
}

/// One case's world: a fresh random namespace on the harness's backend.
pub struct Ctx<'h> {
    harness: &'h dyn Harness,
    namespace: Namespace,
}

impl<'h> Ctx<'h> {
    /// A fresh namespace `conf-<random>`.
    pub fn new(harness: &'h dyn Harness) -> Ctx<'h> {
        let namespace = Namespace::new(&format!("conf-{:016x}", rand::random::<u64>()))
            .expect("valid namespace");
        Ctx { harness, namespace }
    }

    /// The case's namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// A new independent backend connection in the case's namespace.
    pub async fn backend(&self) -> DynBackend {
        self.harness
            .open(&self.namespace)
            .await
            .expect("harness opens a backend")
    }

    /// What the backend offers.
    pub async fn families(&self) -> Families {
        Families::of(&*self.backend().await)
    }

    /// A new independent client (instance id `name`) with `opts` as defaults.
    pub async fn client_with(&self, name: &str, opts: LeaseOptions) -> Client {
        client_on(self.backend().await, name, opts)
    }

    /// A new independent client (instance id `name`) with `opts` as
    /// defaults that keeps its instance presence as `presence` says.
    pub async fn client_with_presence(
        &self,
        name: &str,
        opts: LeaseOptions,
        presence: PresenceOptions,
    ) -> Client {
        Client::builder(self.backend().await)
            .instance_id(name)
            .expect("valid instance id")
            .lease_options(opts)
            .presence(presence)
            .build()
    }

    /// A new independent client with short test-friendly defaults: TTL 1 s,
    /// retry delay 10 s (so only notifications wake waiters quickly), wait
    /// timeout 10 s, auto-extension on.
    pub async fn client(&self, name: &str) -> Client {
        self.client_with(name, default_options()).await
    }

    /// A client whose backend can be cut off or made to lose its replies
    /// (see [`Switch`]), for every family.
    pub async fn switchable_client(&self, name: &str, opts: LeaseOptions) -> (Client, Switch) {
        let switch = Switch::new(self.backend().await);
        let backend: DynBackend = Arc::new(Dispatched::new(switch.clone()));
        (client_on(backend, name, opts), switch)
    }
}

fn client_on(backend: DynBackend, name: &str, opts: LeaseOptions) -> Client {
    Client::builder(backend)
        .instance_id(name)
        .expect("valid instance id")
        .lease_options(opts)
        .build()
}

/// The options [`Ctx::client`] uses.
pub fn default_options() -> LeaseOptions {
    LeaseOptions::default()
        .ttl(Duration::from_secs(1))
        .retry_delay(Duration::from_secs(10))
        .wait_timeout(Some(Duration::from_secs(10)))
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
