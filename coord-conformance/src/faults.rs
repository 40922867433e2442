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
    Acquire, Campaign, Capability, DynLeadershipBackend, DynLeaseBackend, Error, FencingToken,
    HolderId, Key, LeaderInfo, LeadershipBackend, LeaseBackend, LeaseFamily, LeaseId, LeaseInfo,
    LeaseWatch, Members, Namespace, OnceBegin, Quorum, Release, Result,
};

/// Wraps a backend (and, optionally, its leadership backend); while
/// [`off`](Switch::off), every call of either fails with
/// `Error::Unavailable` before reaching it. Clones share the switch.
#[derive(Clone)]
pub struct Switch {
    inner: DynLeaseBackend,
    leadership: Option<DynLeadershipBackend>,
    off: Arc<AtomicBool>,
}

impl Switch {
    /// Wraps `inner`, switched on.
    pub fn new(inner: DynLeaseBackend) -> Switch {
        Switch {
            inner,
            leadership: None,
            off: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Wraps `inner` and the leadership backend `leadership` behind one
    /// switch, switched on. Without `leadership`, the leadership calls are
    /// `NotSupported`.
    pub fn with_leadership(
        inner: DynLeaseBackend,
        leadership: Option<DynLeadershipBackend>,
    ) -> Switch {
        Switch {
            leadership,
            ..Switch::new(inner)
        }
    }

    /// Whether it wraps a leadership backend.
    pub fn has_leadership(&self) -> bool {
        self.leadership.is_some()
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

    /// The leadership backend, once the switch is on.
    fn lead(&self) -> Result<&DynLeadershipBackend> {
        self.check()?;
        self.leadership.as_ref().ok_or_else(|| Error::NotSupported {
            operation: "leadership (elections, groups, jobs)",
            backend: self.to_string(),
        })
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

    /// Never: every call must see whether the switch is off.
    fn in_process(&self) -> Option<&dyn coord_api::InProcessLeases> {
        None
    }
}

#[async_trait]
impl LeadershipBackend for Switch {
    fn namespace(&self) -> &Namespace {
        match &self.leadership {
            Some(l) => l.namespace(),
            None => self.inner.namespace(),
        }
    }
    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<Campaign> {
        (self.lead()?)
            .campaign(election, holder, metadata, ttl, quorum)
            .await
    }
    async fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool> {
        (self.lead()?)
            .renew(election, holder, term, ttl, quorum)
            .await
    }
    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
        self.lead()?.resign(election, holder, term).await
    }
    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
        self.lead()?.leader(election).await
    }
    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
        self.lead()?.terms_granted(election).await
    }
    async fn watch_election(&self, election: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.lead()?.watch_election(election).await
    }
    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        self.lead()?.join(group, holder, metadata, ttl).await
    }
    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        self.lead()?.heartbeat(group, holder, ttl).await
    }
    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
        self.lead()?.leave(group, holder).await
    }
    async fn members(&self, group: &Key) -> Result<Members> {
        self.lead()?.members(group).await
    }
    async fn watch_group(&self, group: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.lead()?.watch_group(group).await
    }
    async fn begin_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        (self.lead()?)
            .begin_once(job, occurrence, holder, ttl)
            .await
    }
    async fn extend_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        (self.lead()?)
            .extend_once(job, occurrence, holder, ttl)
            .await
    }
    async fn end_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        (self.lead()?)
            .end_once(job, occurrence, holder, finished)
            .await
    }
    async fn watch_once(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn LeaseWatch>> {
        self.lead()?.watch_once(job, occurrence).await
    }
}
