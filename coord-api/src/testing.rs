//! What the unit tests of the client types share: a fake backend that
//! grants every acquisition, renews every lease and counts what it is
//! asked; watches that never wake and a backend whose changes they never
//! tell (`deaf`); and a subscriber that keeps the spans made (`spans`).

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use async_trait::async_trait;

use crate::{
    Client, Error, FencingToken, Key, LeaseGuard, LeaseInfo, LockSpace, Namespace, Result,
    spi::{
        Acquire, AcquireAll, Backend, ElectionBackend, Grant, GroupBackend, JobBackend, LeaseId,
        LockBackend, LockCapabilities, Release, Watch,
    },
};

mod deaf;
mod spans;

pub(crate) use deaf::{Deaf, Never};
pub(crate) use spans::Spans;

/// Grants everything (fresh tokens, one hold), renews everything, and counts
/// renewals and releases. A release takes `release_takes` (paused time in
/// the tests) before it answers. Queued acquisitions are counted and, while
/// the queue is closed ([`Counting::with_closed_queue`]), refused until
/// [`Counting::open_queue`], which wakes the watches.
#[derive(Debug, Default)]
pub(crate) struct Counting {
    ns: Namespace,
    tokens: AtomicU64,
    extends: AtomicU64,
    releases: AtomicU64,
    release_takes: Duration,
    /// Offers fair mode (a fake made with a closed queue).
    fair: bool,
    queued: AtomicU64,
    queue_closed: std::sync::atomic::AtomicBool,
    /// How long a subscription takes to be in effect.
    subscribe_takes: Duration,
    opened: std::sync::Arc<tokio::sync::Notify>,
}

impl Counting {
    /// A fake whose releases answer after `d`.
    pub(crate) fn with_slow_release(d: Duration) -> Counting {
        Counting {
            release_takes: d,
            ..Counting::default()
        }
    }

    /// A fake refusing queued acquisitions until [`open_queue`](Self::open_queue),
    /// whose subscriptions take `subscribe_takes` to be in effect.
    pub(crate) fn with_closed_queue(subscribe_takes: Duration) -> Counting {
        Counting {
            fair: true,
            queue_closed: true.into(),
            subscribe_takes,
            ..Counting::default()
        }
    }

    /// Grants queued acquisitions from now on, and wakes the watches.
    pub(crate) fn open_queue(&self) {
        self.queue_closed.store(false, Ordering::SeqCst);
        self.opened.notify_one();
    }

    /// How many queued acquisitions were asked.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }

    pub(crate) fn extends(&self) -> u64 {
        self.extends.load(Ordering::SeqCst)
    }

    pub(crate) fn releases(&self) -> u64 {
        self.releases.load(Ordering::SeqCst)
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("counting")
    }
}

/// Offers the lock family only.
impl Backend for Counting {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }
    fn locks(&self) -> Option<&dyn LockBackend> {
        Some(self)
    }
    fn elections(&self) -> Option<&dyn ElectionBackend> {
        None
    }
    fn groups(&self) -> Option<&dyn GroupBackend> {
        None
    }
    fn jobs(&self) -> Option<&dyn JobBackend> {
        None
    }
    fn barriers(&self) -> Option<&dyn crate::spi::BarrierBackend> {
        None
    }
}

#[async_trait]
impl LockBackend for Counting {
    fn capabilities(&self) -> LockCapabilities {
        LockCapabilities {
            exclusive: true,
            reentrant: true,
            fair: self.fair,
            ..LockCapabilities::default()
        }
    }
    async fn acquire(&self, _: &LeaseId, _: Duration) -> Result<Acquire> {
        let token = self.tokens.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Acquire::Granted(Grant {
            token: FencingToken(token),
            holds: 1,
        }))
    }
    async fn extend(&self, _: &LeaseId, _: Duration) -> Result<bool> {
        self.extends.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
    async fn release(&self, _: &LeaseId) -> Result<Release> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.release_takes).await;
        Ok(Release::Released { remaining: 0 })
    }
    async fn downgrade(&self, _: &LeaseId, _: Duration) -> Result<Option<Grant>> {
        Ok(None)
    }
    async fn acquire_queued(
        &self,
        lease: &LeaseId,
        ttl: Duration,
        _: Duration,
        _: bool,
    ) -> Result<Acquire> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.queue_closed.load(Ordering::SeqCst) {
            return Ok(Acquire::Busy(crate::spi::Busy::new(None)));
        }
        self.acquire(lease, ttl).await
    }
    async fn leave_queue(&self, _: &LeaseId) -> Result<bool> {
        Ok(false)
    }
    async fn force_release(&self, _: LockSpace, _: &Key) -> Result<usize> {
        Ok(0)
    }
    async fn inspect(&self, _: LockSpace, _: &Key) -> Result<Vec<LeaseInfo>> {
        Ok(vec![])
    }
    async fn subscribe(&self, _: LockSpace, _: &Key) -> Result<Box<dyn Watch>> {
        if !self.subscribe_takes.is_zero() {
            tokio::time::sleep(self.subscribe_takes).await;
        }
        Ok(Box::new(Opened(self.opened.clone())))
    }
    async fn acquire_all(&self, _: &[LeaseId], _: Duration) -> Result<AcquireAll> {
        Err(Error::NotSupported {
            operation: "acquire_all",
            backend: "counting".into(),
        })
    }
}

/// Wakes when the fake's queue opens.
struct Opened(std::sync::Arc<tokio::sync::Notify>);

#[async_trait]
impl Watch for Opened {
    async fn changed(&mut self) -> Result<()> {
        self.0.notified().await;
        Ok(())
    }
}

/// The lock `key` with a 3 s TTL (renewed every second), taken at once.
pub(crate) async fn take(client: &Client, key: &str) -> LeaseGuard {
    let lock = client.lock(key).ttl(Duration::from_secs(3));
    lock.try_lock()
        .await
        .unwrap()
        .expect("the fake grants everything")
}
