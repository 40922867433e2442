//! Exclusive and reentrant locks.

use std::sync::{Arc, Mutex, Weak};

use super::{
    fair::FairMode,
    request::{Request, release_once},
    require, site,
};
use crate::{
    Acquire, Client, LeaseId, LeaseInfo, LeaseKind, LockGuard, LockSpace, Release, Result,
    handle::{Handle, option_setters},
    lease::{
        Lease,
        undo::{self, Undo},
        wait::Step,
    },
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
///
/// The questions a holder and an operator ask take one call each:
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use std::time::Duration;
/// // A fixed lease: 10 s from the grant, never renewed.
/// let lock = client.lock("reports/monthly").lease(Duration::from_secs(10));
/// let guard = lock.lock().await?;
/// assert!(lock.is_locked().await?);
/// assert!(lock.is_held().await?, "by this handle");
/// assert_eq!(lock.hold_count().await?, 1);
/// let left = lock.remaining_ttl().await?.expect("held");
/// assert!(left <= Duration::from_secs(10));
/// guard.release().await?;
/// assert!(!lock.is_held().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    handle: Handle,
    reentrant: bool,
    fair: FairMode,
    /// The lease this handle took last: for reentrant re-acquisition, and
    /// to answer whether this handle holds the lock.
    held: Arc<Mutex<Option<Weak<Lease>>>>,
}

impl Lock {
    pub(crate) fn new(client: Client, key: &str) -> Lock {
        Lock {
            handle: Handle::new(client, key),
            reentrant: false,
            fair: FairMode::default(),
            held: Default::default(),
        }
    }

    option_setters!();

    /// Makes this handle reentrant (see the type's docs). A lease counts at
    /// most [`MAX_REENTRANT_HOLDS`](crate::spi::MAX_REENTRANT_HOLDS) holds: a
    /// re-entry beyond is `InvalidArgument` naming the key and the limit,
    /// and changes nothing.
    pub fn reentrant(mut self, on: bool) -> Self {
        self.reentrant = on;
        self
    }

    /// Makes this handle fair (first come, first served): waiters of
    /// [`lock`](Self::lock) are granted the lock in the order they began
    /// to wait, and [`try_lock`](Self::try_lock) never jumps the queue (it
    /// is refused while anyone waits, even when the lock is free). Every
    /// handle on the key should be fair: a handle that is not ignores the
    /// queue. A waiter's place lasts [`waiter_ttl`](Self::waiter_ttl) and
    /// is renewed while it waits, so a waiter that dies (its client crashed
    /// or cut off, its future dropped) is skipped within that time and
    /// never stalls the others; a cancelled or timed-out wait gives its
    /// place back at once. Reentrant re-entry through a handle that holds
    /// the lock does not queue. Needs the backend's
    /// [`fair`](crate::spi::LockCapabilities::fair) capability
    /// (`NotSupported` otherwise).
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// use std::time::Duration;
    /// let lock = client
    ///     .lock("ledger/append")
    ///     .fair(true)
    ///     .waiter_ttl(Duration::from_secs(2));
    /// let guard = lock.lock().await?; // after everyone who waited before
    /// guard.release().await?; // the next waiter in line goes in
    /// # Ok(()) }
    /// ```
    pub fn fair(mut self, on: bool) -> Self {
        self.fair.on = on;
        self
    }

    /// How long a fair waiter's place in the queue lasts unless renewed
    /// (default [`DEFAULT_WAITER_TTL`](crate::DEFAULT_WAITER_TTL), 3 s): a
    /// waiter renews it at every third of it while it waits, and a waiter
    /// that stops (crashed, cut off) is skipped once it passes. From
    /// [`MIN_WAITER_TTL`](crate::MIN_WAITER_TTL) to
    /// [`MAX_WAITER_TTL`](crate::MAX_WAITER_TTL); anything else makes the
    /// lock calls fail with `InvalidArgument` before any I/O. Used only
    /// with [`fair`](Self::fair).
    pub fn waiter_ttl(mut self, waiter_ttl: std::time::Duration) -> Self {
        self.fair.waiter_ttl = waiter_ttl;
        self
    }

    fn kind(&self) -> LeaseKind {
        if self.reentrant {
            LeaseKind::Reentrant
        } else {
            LeaseKind::Exclusive
        }
    }

    /// The capabilities this handle needs; its fair mode's waiter TTL.
    fn check(&self) -> Result<Option<std::time::Duration>> {
        let caps = self.handle.client.locks()?.capabilities();
        let fair = self.fair.checked(&self.handle)?;
        match self.reentrant {
            true => require(&self.handle, caps.reentrant, "reentrant lock"),
            false => require(&self.handle, caps.exclusive, "exclusive lock"),
        }?;
        Ok(fair)
    }

    /// The lease this handle took last, if it is still held as far as
    /// this client can tell.
    fn last_held(&self) -> Option<Arc<Lease>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()?.upgrade().filter(|l| l.is_held())
    }

    /// A reentrant lease this reentrant handle holds now, if any (not the
    /// exclusive lease of a plain handle it was cloned from: that one is
    /// not re-entered, and its refusal must not end it).
    fn current(&self) -> Option<Arc<Lease>> {
        let held = self.reentrant.then(|| self.last_held()).flatten();
        held.filter(|l| l.tenure.counted())
    }

    fn remember(&self, guard: &LockGuard) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = Some(Arc::downgrade(guard.lease()));
    }

    /// Takes the lock if it is free (or, reentrant, held by this handle);
    /// `Ok(None)` if someone else holds it, or, [`fair`](Self::fair), if
    /// anyone waits for it. Never waits for other holders.
    ///
    /// # Cancel safety
    /// If cancelled after the request left, anything granted is released in
    /// the background.
    pub async fn try_lock(&self) -> Result<Option<LockGuard>> {
        let fair = self.check()?;
        if let Some(lease) = self.current() {
            // Boxed: the common path's future stays small.
            match Box::pin(self.try_reenter(lease)).await? {
                Reentry::Granted(guard) => return Ok(Some(guard)),
                Reentry::Busy => return Ok(None),
                Reentry::Afresh => {}
            }
        }
        match Request::new(&self.handle, self.kind(), None)?
            .fair(fair)
            .try_once()
            .await?
        {
            Step::Done(guard) => {
                self.remember(&guard);
                Ok(Some(guard))
            }
            Step::Busy(_) => Ok(None),
        }
    }

    /// Locks again through this reentrant handle, which holds `lease`.
    async fn try_reenter(&self, lease: Arc<Lease>) -> Result<Reentry> {
        let holder = lease.tenure.holder().clone();
        let req = Request::new(&self.handle, self.kind(), Some(holder))?;
        // The lease's own TTL, not this handle's (a clone may have another):
        // the backend sets the lease's expiry to what a re-entry asks, and
        // the lease's validity and renewals go by its own TTL.
        let opts = req.opts.clone().ttl(lease.ttl());
        let client = &self.handle.client;
        let req = Request::with_id(client, req.id, &opts, self.handle.validity());
        // Unanswered (reply lost, cancelled), the re-entry may have added a
        // hold to the lease (the last guard's release drops it), or, if
        // the backend had forgotten the lease, granted afresh to its
        // holder: a lease the old guards would go on renewing (a renewal
        // names the holder, not the token), fenced token and all, for
        // ever. Looked at in the background, and given back if so.
        let verify = undo::calling((lease.clone(), req.id.clone()), |client, (lease, id)| {
            verify_reentry(client, lease, id)
        });
        let mut unanswered = Undo::new(client, lease.ttl(), verify);
        let answer = req.call(&req.id, false).await;
        if !matches!(&answer, Err(e) if e.is_retryable()) {
            unanswered.disarm();
        }
        Ok(match answer? {
            (Acquire::Granted(g), t_sent) if Some(g.token) == lease.token && g.holds > 1 => {
                lease.renewed(t_sent);
                let ttl = lease.ttl();
                match LockGuard::joining(lease, self.kind(), g.token) {
                    Some(guard) => Reentry::Granted(guard),
                    None => {
                        // The lease ended while the re-entry was on its
                        // way (another task released its last guard, or
                        // it was lost): no guard of it, whose caller would
                        // go on as the holder of a key the last release
                        // frees. The hold it added is given back with any
                        // other the backend counts, and the lock taken as
                        // a new holder.
                        give_back_every_hold(client, &req.id, ttl).await;
                        Reentry::Afresh
                    }
                }
            }
            (Acquire::Granted(_), _) => {
                // The backend had forgotten the hold (expired or force
                // released) and granted afresh: the old guards are lost, and
                // this grant carries their holder id, so a stale guard's
                // release could free it (and its renewals keep it). Give
                // it back, every hold of it (an unanswered re-entry may
                // have added one), and take the lock as a new holder.
                lease.mark(true);
                give_back_every_hold(client, &req.id, lease.ttl()).await;
                Reentry::Afresh
            }
            // Held by someone else now: the old guards are lost.
            (Acquire::Busy(_), _) => {
                lease.mark(true);
                Reentry::Busy
            }
        })
    }

    /// Takes the lock, waiting while someone else holds it. Waiters are woken
    /// by the backend's release and expiry notifications; the options' retry
    /// delay is only a fallback. Fails with `Error::Timeout` after
    /// `wait_timeout` or `max_retries`. A [`fair`](Self::fair) lock is
    /// granted to its waiters in the order they began to wait.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait leaves nothing held (a grant in flight is
    /// released in the background) and, fair, gives its place in the queue
    /// back (in the background).
    pub async fn lock(&self) -> Result<LockGuard> {
        if self.current().is_some()
            && let Some(guard) = self.try_lock().await?
        {
            return Ok(guard);
        }
        let fair = self.check()?;
        let guard = Request::new(&self.handle, self.kind(), None)?
            .fair(fair)
            .wait()
            .await?;
        self.remember(&guard);
        Ok(guard)
    }

    /// Who holds the lock now (empty when free): holder, token, hold count and
    /// time left, by the backend's clock.
    pub async fn holders(&self) -> Result<Vec<LeaseInfo>> {
        super::holders(&self.handle, LockSpace::Lock).await
    }

    /// Whether anyone holds the lock now (one read of the backend).
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn is_locked(&self) -> Result<bool> {
        Ok(!self.holders().await?.is_empty())
    }

    /// The backend's record of this handle's hold: the lease it took last,
    /// still valid here, and named by the backend with the same token.
    /// No I/O when this handle holds nothing here.
    async fn mine(&self) -> Result<Option<LeaseInfo>> {
        let Some(lease) = self.last_held() else {
            return Ok(None);
        };
        let holder = lease.tenure.holder();
        let holders = self.holders().await?;
        let mine = |i: &LeaseInfo| &i.holder == holder && Some(i.token) == lease.token;
        Ok(holders.into_iter().find(mine))
    }

    /// Whether this handle (or a clone of it) holds the lock: its last
    /// grant is still valid by this client's clock and the backend's
    /// record names it, with the same token (one read; none when this
    /// handle holds nothing). A guard answers the local half alone, with
    /// no I/O: [`LeaseGuard::is_held`](crate::LeaseGuard::is_held).
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn is_held(&self) -> Result<bool> {
        Ok(self.mine().await?.is_some())
    }

    /// How many holds this handle has on the lock: 0 when it holds none,
    /// 1 for a plain lock, the number of live guards of a reentrant one
    /// (by the backend's count).
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn hold_count(&self) -> Result<u32> {
        Ok(self.mine().await?.map_or(0, |i| i.holds))
    }

    /// The time left on the lock's lease by the backend's clock, whoever
    /// holds it; `None` when it is free. An auto-extended lease is renewed
    /// before it runs out; a fixed one ([`lease`](Self::lease)) ends then.
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn remaining_ttl(&self) -> Result<Option<std::time::Duration>> {
        Ok(self.holders().await?.iter().map(|i| i.expires_in).max())
    }

    /// Frees the lock whoever holds it (an operator's tool). The old holder
    /// finds out at its next renewal; the next grant gets a larger token, so
    /// a fenced resource refuses the old holder's writes. Returns how many
    /// leases were removed.
    pub async fn force_release(&self) -> Result<usize> {
        super::force_release(&self.handle, LockSpace::Lock).await
    }
}

/// Releases every hold of the reentrant lease `id`, until the backend
/// counts none.
async fn release_every_hold(client: &Client, id: &LeaseId) -> Result<()> {
    while let Release::Released { remaining } = release_once(client, id).await? {
        if remaining == 0 {
            break;
        }
    }
    Ok(())
}

/// Releases every hold of the reentrant lease `id` (see
/// [`release_every_hold`]); failed or cancelled, sent again in the
/// background for at most `ttl`.
async fn give_back_every_hold(client: &Client, id: &LeaseId, ttl: std::time::Duration) {
    let again = undo::calling(id.clone(), |client, id| async move {
        release_every_hold(&client, &id).await
    });
    let mut on_exit = Undo::new(client, ttl, again);
    if release_every_hold(client, id).await.is_ok() {
        on_exit.disarm();
    }
}

/// For an [`Undo`]: after a re-entry of `lease` (its holder, as `id`) that
/// got no answer, looks whether the backend now holds a lease of that
/// holder with another token than `lease`'s: a fresh grant (the lease
/// had been force released or had expired), which `lease`'s renewals
/// would otherwise keep. If so, `lease` is lost and that grant is given
/// back, every hold of it. Needs the backend's `inspect` (without it, the
/// grant is freed by the last guard's release, or at its TTL).
async fn verify_reentry(client: Client, lease: Arc<Lease>, id: LeaseId) -> Result<()> {
    let locks = client.locks()?;
    if !locks.capabilities().inspect {
        return Ok(());
    }
    let inspect = locks.inspect(LockSpace::Lock, &id.key);
    let site = || site("inspect", LockSpace::Lock, &id.key);
    let listed = crate::trace::call(&client, site, inspect, crate::trace::Outcome::ok).await?;
    let fresh = |i: &LeaseInfo| i.holder == id.holder && Some(i.token) != lease.token;
    if listed.iter().any(fresh) {
        lease.mark(true);
        release_every_hold(&client, &id).await?;
    }
    Ok(())
}
