//! The lock family's client types: [`Lock`] (exclusive or reentrant),
//! [`RwLock`] (writer preference), [`Semaphore`], and the guard they all
//! hand out, [`LeaseGuard`]. Their leases are kept by the lease engine; this
//! module tells it how to renew and release one ([`LeaseKind`] is the
//! tenure).
//!
//! | module | what it holds |
//! |---|---|
//! | `request` | one acquisition (attempt, or wait), and the clean-up of an unanswered one |
//! | `fair` | fair mode: queued attempts, waiter TTLs, giving a place back |
//! | `lock`, `rwlock`, `semaphore` | the handles |
//! | `multi` | several exclusive locks at once, and their one guard |

mod fair;
mod lock;
mod multi;
mod request;
mod rwlock;
mod semaphore;

use std::{sync::Arc, time::Duration};

pub use fair::{DEFAULT_WAITER_TTL, MAX_WAITER_TTL, MIN_WAITER_TTL};
pub use lock::Lock;
pub use multi::{MultiGuard, MultiLock};
pub use rwlock::RwLock;
pub use semaphore::Semaphore;

use crate::{
    Client, Error, FencingToken, HolderId, Key, LeaseId, LeaseInfo, LeaseKind, LockSpace,
    LostSignal, Release, Result,
    clock::Instant,
    handle::Handle,
    lease::{BoxFuture, Guard, Lease, Tenure, undo::granting},
    trace::{self, Outcome, Site},
};

/// A lock-family lease is named, renewed and released by its id: kind, key
/// and holder.
impl Tenure for LeaseId {
    fn family(&self) -> &'static str {
        self.kind.space().as_str()
    }

    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    fn key(&self) -> &Key {
        &self.key
    }

    fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        Ok(client.locks()?.extend(self, ttl))
    }

    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        Ok(client.locks()?.release(self))
    }

    fn counted(&self) -> bool {
        self.kind == LeaseKind::Reentrant
    }
}

/// A guard for a held lease: a lock, a read or write lock, or a permit.
///
/// - [`token`](Self::token) is the fencing token to hand to the protected
///   resource;
/// - [`is_held`](Self::is_held) and [`lost`](Self::lost) tell whether the
///   holder can still rely on the lease: it stops being held at its local
///   validity deadline unless renewed, when renewal is refused, or on release;
/// - [`release`](Self::release) says whether the lease was still held;
///   dropping the guard releases in the background (and if that cannot happen,
///   the TTL frees the key).
#[must_use = "if unused the lease is released immediately"]
pub struct LeaseGuard {
    guard: Guard,
    kind: LeaseKind,
    token: FencingToken,
}

/// The guard of an exclusive or reentrant [`Lock`].
pub type LockGuard = LeaseGuard;
/// The guard of a reader of a [`RwLock`].
pub type ReadGuard = LeaseGuard;
/// The guard of the writer of a [`RwLock`].
pub type WriteGuard = LeaseGuard;
/// One permit of a [`Semaphore`].
pub type Permit = LeaseGuard;

impl LeaseGuard {
    /// A guard on `lease`, a lock-family lease of `kind` granted with `token`.
    pub(crate) fn new(lease: Arc<Lease>, kind: LeaseKind, token: FencingToken) -> LeaseGuard {
        LeaseGuard {
            guard: Guard::new(lease),
            kind,
            token,
        }
    }

    /// Another guard of `lease` (a reentrant re-entry granted with
    /// `token`), unless its last guard let go of it or it ended meanwhile
    /// (see `Guard::joining`).
    pub(crate) fn joining(
        lease: Arc<Lease>,
        kind: LeaseKind,
        token: FencingToken,
    ) -> Option<LeaseGuard> {
        Some(LeaseGuard {
            guard: Guard::joining(lease)?,
            kind,
            token,
        })
    }

    pub(crate) fn lease(&self) -> &Arc<Lease> {
        self.guard.lease()
    }

    /// The fencing token of this grant.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The key of the lease.
    pub fn key(&self) -> &Key {
        self.guard.key()
    }

    /// The holder the lease was granted to.
    pub fn holder(&self) -> &HolderId {
        self.guard.holder()
    }

    /// The kind of lease.
    pub fn kind(&self) -> LeaseKind {
        self.kind
    }

    /// Whether the lease is still held as far as this client can tell: not
    /// released, not refused on renewal, and within its local validity.
    pub fn is_held(&self) -> bool {
        self.guard.is_held()
    }

    /// Until when the lease counts as valid locally (by the client's clock),
    /// or `None` once it is no longer held.
    pub fn valid_until(&self) -> Option<Instant> {
        self.guard.valid_until()
    }

    /// The time left before the lease stops counting as valid here (by
    /// the client's clock, the TTL less drift and margin from the last
    /// renewal), or `None` once it is no longer held. No I/O; an
    /// auto-extended lease is renewed before it runs out.
    pub fn remaining_ttl(&self) -> Option<Duration> {
        let now = self.lease().client.clock().now();
        Some(self.valid_until()?.saturating_duration_since(now))
    }

    /// Completes when the lease is lost (it completes at once if it already
    /// is). Fires at the local validity deadline even when the backend cannot
    /// be reached.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future changes nothing.
    pub async fn lost(&self) {
        self.guard.lost().await
    }

    /// A `'static` handle on the lost signal, to hand to a task.
    pub fn lost_signal(&self) -> LostSignal {
        self.guard.lost_signal()
    }

    /// Renews the lease now for its TTL. Returns whether it is still held; a
    /// `false` marks it lost. Auto-extension calls this for you.
    pub async fn extend(&self) -> Result<bool> {
        self.guard.extend().await
    }

    /// Releases the lease (one hold of a reentrant lock). Returns whether the
    /// lease was still held by this holder on the backend.
    ///
    /// # Cancel safety
    /// If cancelled, the release goes on in the background.
    pub async fn release(self) -> Result<bool> {
        self.guard.release().await
    }
}

impl LeaseGuard {
    /// How many semaphore permits this guard holds: `n` for a guard of
    /// [`Semaphore::acquire_many`]`(n)`, 1 for a permit, 0 for a lock's or
    /// a read-write lock's guard.
    pub fn permits(&self) -> u32 {
        self.kind.permits()
    }

    /// Turns this writer's guard ([`RwLock::write`]) into a reader's, in one
    /// atomic step of the backend: the write lease becomes a read lease of
    /// the same holder, so the lock is never free in between and no other
    /// writer can get in. Waiting readers may then enter too, unless a
    /// writer waits (writer preference holds: its intent keeps new readers
    /// off, and it gets the lock once every reader, this one included, has
    /// released).
    ///
    /// The read lease is a new grant: the guard then carries a new fencing
    /// token, larger than the write lease's, and the lost signals taken
    /// from it before fire (the write lease has ended; a task writing under
    /// it must stop). The guard keeps its options (TTL, auto-extension).
    ///
    /// Errors that leave the backend as it was and this guard as it was:
    /// `InvalidArgument` for a guard that is not a writer's; `LeaseLost`
    /// when the lease is no longer valid here (no request is sent);
    /// `NotHeld` when the backend no longer holds the write lease for this
    /// holder (expired, force released: the guard is lost); `NotSupported`
    /// without the backend's
    /// [`downgrade`](crate::spi::LockCapabilities::downgrade) capability.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let config = client.rwlock("config/routes");
    /// let mut guard = config.write().await?;
    /// // ... write the new routes ...
    /// guard.downgrade().await?; // no writer can get in between
    /// // ... read them back, alongside other readers ...
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// If cancelled after the request left (or if it fails without an
    /// answer: a retryable error), the step may have run: the guard lets go
    /// of its lease (no longer held, its lost signals fired), and both the
    /// write lease and the read lease it may have become are released in the
    /// background: nothing stays held.
    pub async fn downgrade(&mut self) -> Result<()> {
        let lease = self.lease().clone();
        let client = &lease.client;
        if self.kind != LeaseKind::Write {
            return Err(Error::invalid(format!(
                "{} lease on {:?}: only a write lease downgrades",
                self.kind.as_str(),
                self.key().as_str()
            )));
        }
        let locks = client.locks()?;
        if !locks.capabilities().downgrade {
            return Err(client.unsupported("read-write lock downgrade"));
        }
        if !self.is_held() {
            return Err(Error::LeaseLost {
                key: self.key().to_string(),
                backend: client.backend().to_string(),
            });
        }
        let write = LeaseId {
            kind: LeaseKind::Write,
            key: self.key().clone(),
            holder: self.holder().clone(),
        };
        let read = LeaseId {
            kind: LeaseKind::Read,
            ..write.clone()
        };
        let site = || Site {
            op: "downgrade",
            family: LockSpace::RwLock.as_str(),
            kind: LeaseKind::Write.as_str(),
            key: &write.key,
            holder: Some(&write.holder),
            token: Some(self.token),
        };
        let classify = |g: &Option<crate::spi::Grant>| match g {
            Some(g) => Outcome::Granted(g.token),
            None => Outcome::NotHeld,
        };
        let t_sent = client.clock().now();
        let call = trace::call(client, site, locks.downgrade(&write, lease.ttl()), classify);
        // Unanswered, the step may have run: the read lease it would have
        // granted is released in the background, and the write lease by
        // this guard letting go of it (also if this is cancelled).
        let undo = || {
            let read = read.clone();
            move |client: Client| {
                let read = read.clone();
                async move { request::release_once(&client, &read).await.map(drop) }
            }
        };
        let mut unanswered = LetGo(Some(&mut self.guard));
        let answer = granting(client, lease.ttl(), call, undo).await;
        let guard = unanswered.0.take().expect("armed until the answer");
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                if e.is_retryable() {
                    guard.abandon();
                }
                return Err(e);
            }
        };
        let Some(grant) = answer else {
            lease.mark(true);
            return Err(Error::NotHeld {
                key: write.key.to_string(),
                backend: client.backend().to_string(),
            });
        };
        let successor = match lease.successor(read, Some(grant.token), t_sent) {
            Ok(successor) => successor,
            // Closed while on its way: the write lease became the read
            // lease, which is released in the background.
            Err(e) => {
                lease.mark(false);
                return Err(e);
            }
        };
        // The write lease became the read lease: ended here, not released.
        std::mem::replace(guard, Guard::new(successor))
            .into_lease()
            .mark(false);
        (self.kind, self.token) = (LeaseKind::Read, grant.token);
        Ok(())
    }
}

/// Lets go of a guard's lease when dropped armed (a downgrade cancelled
/// before its answer).
struct LetGo<'a>(Option<&'a mut Guard>);

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        if let Some(guard) = self.0.take() {
            guard.abandon();
        }
    }
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("kind", &self.kind)
            .field("key", self.key())
            .field("holder", self.holder())
            .field("token", &self.token)
            .field("held", &self.is_held())
            .finish()
    }
}

/// The site of a call about `key` in `space` that concerns no one lease.
fn site<'a>(op: &'static str, space: LockSpace, key: &'a Key) -> Site<'a> {
    Site {
        op,
        family: space.as_str(),
        kind: "",
        key,
        holder: None,
        token: None,
    }
}

/// Who holds `handle`'s key in `space`.
async fn holders(handle: &Handle, space: LockSpace) -> Result<Vec<LeaseInfo>> {
    let key = handle.key()?;
    let client = &handle.client;
    let locks = client.locks()?;
    require(handle, locks.capabilities().inspect, "inspect (holders)")?;
    let inspect = locks.inspect(space, key);
    trace::call(client, || site("inspect", space, key), inspect, Outcome::ok).await
}

/// Frees `handle`'s key in `space` whoever holds it.
async fn force_release(handle: &Handle, space: LockSpace) -> Result<usize> {
    let key = handle.key()?;
    let client = &handle.client;
    let locks = client.locks()?;
    require(handle, locks.capabilities().force_release, "force release")?;
    let force = locks.force_release(space, key);
    let site = || site("force_release", space, key);
    let n = trace::call(client, site, force, Outcome::ok).await?;
    tracing::info!(key = %key, family = space.as_str(), removed = n, "force released");
    Ok(n)
}

/// `NotSupported` unless the backend's lock family has `cap`.
fn require(handle: &Handle, cap: bool, what: &'static str) -> Result<()> {
    if cap {
        Ok(())
    } else {
        Err(handle.client.unsupported(what))
    }
}
