//! A backend decorator a case can cut off, to make renewal impossible.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Acquire, Capability, DynLeaseBackend, Error, Key, LeaseBackend, LeaseFamily, LeaseId,
    LeaseInfo, LeaseWatch, Namespace, Release, Result,
};

/// Wraps a backend; while [`off`](Switch::off), every call fails with
/// `Error::Unavailable` before reaching it. Clones share the switch.
#[derive(Clone)]
pub struct Switch {
    inner: DynLeaseBackend,
    off: Arc<AtomicBool>,
}

impl Switch {
    /// Wraps `inner`, switched on.
    pub fn new(inner: DynLeaseBackend) -> Switch {
        Switch {
            inner,
            off: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Cuts the backend off.
    pub fn off(&self) {
        self.off.store(true, Ordering::SeqCst);
    }

    /// Reconnects it.
    pub fn on(&self) {
        self.off.store(false, Ordering::SeqCst);
    }

    fn check(&self) -> Result<()> {
        if self.off.load(Ordering::SeqCst) {
            return Err(Error::unavailable(self, "switched off by the test"));
        }
        Ok(())
    }
}

impl fmt::Debug for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Switch({:?})", self.inner)
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Switch({})", self.inner)
    }
}

#[async_trait]
impl LeaseBackend for Switch {
    fn capabilities(&self) -> Capability {
        self.inner.capabilities()
    }
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        self.check()?;
        self.inner.acquire(lease, ttl).await
    }
    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        self.check()?;
        self.inner.extend(lease, ttl).await
    }
    async fn release(&self, lease: &LeaseId) -> Result<Release> {
        self.check()?;
        self.inner.release(lease).await
    }
    async fn force_release(&self, family: LeaseFamily, key: &Key) -> Result<usize> {
        self.check()?;
        self.inner.force_release(family, key).await
    }
    async fn inspect(&self, family: LeaseFamily, key: &Key) -> Result<Vec<LeaseInfo>> {
        self.check()?;
        self.inner.inspect(family, key).await
    }
    async fn subscribe(&self, family: LeaseFamily, key: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.check()?;
        self.inner.subscribe(family, key).await
    }
}
