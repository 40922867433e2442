//! Exclusive and reentrant locks.

use std::sync::{Arc, Mutex, Weak};

use crate::{
    Acquire, Client, LeaseFamily, LeaseInfo, LeaseKind, LockGuard, Result,
    acquire::{Attempt, reenter},
    handle::{Handle, option_setters},
    lease::LeaseShared,
};

/// What locking again through a reentrant handle came to.
enum Reentry {
    /// Another hold of the same lease.
    Granted(LockGuard),
    /// Someone else holds the lock now.
    Busy,
    /// The backend had forgotten the hold: lock as a new holder.
    Afresh,
}

/// A distributed exclusive lock: at most one holder per key at any instant of
/// the backend's clock.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use std::time::Duration;
/// let lock = client.lock("jobs/nightly-backup").ttl(Duration::from_secs(10));
/// if let Some(guard) = lock.try_lock().await? {
///     // hand guard.token() to the storage you write to
///     run_backup(guard.token().get()).await;
///     guard.release().await?;
/// }
/// # Ok(()) }
/// # async fn run_backup(_: u64) {}
/// ```
///
/// In reentrant mode ([`reentrant`](Self::reentrant)) the handle is the
/// holder, like a thread in Redisson: locking again through the same handle
/// (or a clone of it) while it holds the lock increments a hold count and
/// returns another guard with the same token; the key frees when every guard
/// is released. Share such a handle only with code that may count as the same
/// holder.
#[derive(Debug, Clone)]
pub struct Lock {
    handle: Handle,
    reentrant: bool,
    /// The lease this handle holds, for reentrant re-acquisition.
    held: Arc<Mutex<Weak<LeaseShared>>>,
}

impl Lock {
    pub(crate) fn new(client: Client, key: &str) -> Lock {
        Lock {
            handle: Handle::new(client, key),
            reentrant: false,
            held: Default::default(),
        }
    }

    option_setters!();

    /// Makes this handle reentrant (see the type's docs).
    pub fn reentrant(mut self, on: bool) -> Self {
        self.reentrant = on;
        self
    }

    fn kind(&self) -> LeaseKind {
        if self.reentrant {
            LeaseKind::Reentrant
        } else {
            LeaseKind::Exclusive
        }
    }

    fn check(&self) -> Result<()> {
        let caps = self.handle.client.backend().capabilities();
        if self.reentrant && !caps.reentrant {
            return Err(self.handle.unsupported("reentrant lock"));
        }
        if !self.reentrant && !caps.exclusive {
            return Err(self.handle.unsupported("exclusive lock"));
        }
        Ok(())
    }

    /// A lease this reentrant handle holds now, if any.
    fn current(&self) -> Option<Arc<LeaseShared>> {
        if !self.reentrant {
            return None;
        }
        self.held.lock().unwrap().upgrade().filter(|s| s.is_held())
    }

    fn remember(&self, guard: &LockGuard) {
        // A reentrant hold always has shared state (see `kept_in_process`).
        if let (true, Some(shared)) = (self.reentrant, guard.shared()) {
            *self.held.lock().unwrap() = Arc::downgrade(shared);
        }
    }

    /// Takes the lock if it is free (or, reentrant, held by this handle);
    /// `Ok(None)` if someone else holds it. Never waits for other holders.
    ///
    /// # Cancel safety
    /// If cancelled after the request left, anything granted is released in
    /// the background.
    pub async fn try_lock(&self) -> Result<Option<LockGuard>> {
        self.check()?;
        if let Some(shared) = self.current() {
            // Boxed: the common path's future stays small.
            match Box::pin(self.try_reenter(shared)).await? {
                Reentry::Granted(guard) => return Ok(Some(guard)),
                Reentry::Busy => return Ok(None),
                Reentry::Afresh => {}
            }
        }
        match self.handle.attempt(self.kind()).await? {
            Attempt::Granted(guard) => {
                self.remember(&guard);
                Ok(Some(guard))
            }
            Attempt::Busy(_) => Ok(None),
        }
    }

    /// Locks again through this reentrant handle, which holds `shared`.
    async fn try_reenter(&self, shared: Arc<LeaseShared>) -> Result<Reentry> {
        let req = self
            .handle
            .request(self.kind(), Some(shared.id.holder.clone()))?;
        Ok(match req.call(&shared.id, false).await? {
            (Acquire::Granted(g), sent) if g.token == shared.token && g.holds > 1 => {
                Reentry::Granted(reenter(&shared, sent))
            }
            (Acquire::Granted(_), _) => {
                // The backend had forgotten the hold (expired or force
                // released) and granted afresh: the old guards are lost, and
                // this grant carries their holder id, so a stale guard's
                // release could free it. Give it back and take the lock as a
                // new holder.
                shared.mark(true);
                let _ = self.handle.client.backend().release(&shared.id).await;
                Reentry::Afresh
            }
            // Held by someone else now: the old guards are lost.
            (Acquire::Busy(_), _) => {
                shared.mark(true);
                Reentry::Busy
            }
        })
    }

    /// Takes the lock, waiting while someone else holds it. Waiters are woken
    /// by the backend's release and expiry notifications; the options' retry
    /// delay is only a fallback. Fails with `Error::Timeout` after
    /// `wait_timeout` or `max_retries`.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait leaves nothing held (a grant in flight is
    /// released in the background).
    pub async fn lock(&self) -> Result<LockGuard> {
        if self.current().is_some()
            && let Some(guard) = self.try_lock().await?
        {
            return Ok(guard);
        }
        self.check()?;
        let guard = self.handle.wait(self.kind()).await?;
        self.remember(&guard);
        Ok(guard)
    }

    /// Who holds the lock now (empty when free): holder, token, hold count and
    /// time left, by the backend's clock.
    pub async fn holders(&self) -> Result<Vec<LeaseInfo>> {
        self.handle.inspect(LeaseFamily::Lock).await
    }

    /// Frees the lock whoever holds it (an operator's tool). The old holder
    /// finds out at its next renewal (at once when the in-memory store keeps
    /// its lease, see the contract); the next grant gets a larger token, so a
    /// fenced resource refuses the old holder's writes. Returns how many
    /// leases were removed.
    pub async fn force_release(&self) -> Result<usize> {
        self.handle.force_release(LeaseFamily::Lock).await
    }
}
