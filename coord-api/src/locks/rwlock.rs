//! Read-write locks with writer preference.

use super::{request::Request, require};
use crate::{
    Client, LeaseGuard, LeaseInfo, LeaseKind, LockSpace, ReadGuard, Result, WriteGuard,
    handle::{Handle, option_setters},
    lease::wait::Step,
};

/// A distributed read-write lock: many readers or one writer. Writer
/// preference: once a writer waits, new readers wait too, so writers never
/// starve. Every reader holds its own expiring lease, so a crashed reader
/// frees its share at its TTL. Not reentrant.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// let config = client.rwlock("config/routes");
/// let r = config.read().await?;   // many instances may read at once
/// r.release().await?;
/// let w = config.write().await?;  // waits for readers; new readers queue behind it
/// w.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RwLock {
    handle: Handle,
}

impl RwLock {
    pub(crate) fn new(client: Client, key: &str) -> RwLock {
        RwLock {
            handle: Handle::new(client, key),
        }
    }

    option_setters!();

    fn check(&self) -> Result<()> {
        let caps = self.handle.client.locks()?.capabilities();
        require(&self.handle, caps.read_write, "read-write lock")
    }

    async fn try_kind(&self, kind: LeaseKind) -> Result<Option<LeaseGuard>> {
        self.check()?;
        let req = Request::new(&self.handle, kind, None)?;
        match req.try_once().await? {
            Step::Done(g) => Ok(Some(g)),
            Step::Busy(_) if kind == LeaseKind::Write => {
                // The refusal registered a writer intent, which only a
                // waiting writer should leave: withdrawn before returning.
                req.withdraw().await?;
                Ok(None)
            }
            Step::Busy(_) => Ok(None),
        }
    }

    async fn wait_kind(&self, kind: LeaseKind) -> Result<LeaseGuard> {
        self.check()?;
        Request::new(&self.handle, kind, None)?.wait().await
    }

    /// A reader's lease if no writer holds or waits; `Ok(None)` otherwise.
    pub async fn try_read(&self) -> Result<Option<ReadGuard>> {
        self.try_kind(LeaseKind::Read).await
    }

    /// A reader's lease, waiting for writers (held or waiting) to finish.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait leaves nothing held.
    pub async fn read(&self) -> Result<ReadGuard> {
        self.wait_kind(LeaseKind::Read).await
    }

    /// The writer's lease if nobody holds the lock; `Ok(None)` otherwise. A
    /// refused `try_write` leaves no writer intent behind (only a waiting
    /// writer's blocks new readers): the intent its refusal registered is
    /// withdrawn before it returns, in one more round trip.
    ///
    /// # Cancel safety
    /// If cancelled after the request left, anything granted is released
    /// and any intent withdrawn in the background.
    pub async fn try_write(&self) -> Result<Option<WriteGuard>> {
        self.try_kind(LeaseKind::Write).await
    }

    /// The writer's lease, waiting for readers and other writers. While it
    /// waits, new readers wait too.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait withdraws its writer intent and leaves
    /// nothing held.
    pub async fn write(&self) -> Result<WriteGuard> {
        self.wait_kind(LeaseKind::Write).await
    }

    /// The live leases (readers or the writer).
    pub async fn holders(&self) -> Result<Vec<LeaseInfo>> {
        super::holders(&self.handle, LockSpace::RwLock).await
    }

    /// Whether anyone holds the lock now, reader or writer (one read of
    /// the backend).
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn is_locked(&self) -> Result<bool> {
        Ok(!self.holders().await?.is_empty())
    }

    /// Whether a writer holds the lock now (one read of the backend).
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn is_write_locked(&self) -> Result<bool> {
        let holders = self.holders().await?;
        Ok(holders.iter().any(|i| i.kind == LeaseKind::Write))
    }

    /// Frees every lease and writer intent on the lock (an operator's tool).
    pub async fn force_release(&self) -> Result<usize> {
        super::force_release(&self.handle, LockSpace::RwLock).await
    }
}
