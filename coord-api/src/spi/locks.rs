//! The lock family's SPI: exclusive and reentrant locks, read-write locks
//! and semaphores, all leases of one [`LeaseKind`] or another. The client
//! types built on it are [`Lock`](crate::Lock), [`RwLock`](crate::RwLock)
//! and [`Semaphore`](crate::Semaphore).

use std::time::Duration;

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{FencingToken, HolderId, Key, Result};

/// What of the lock family a backend supports. Conformance cases are chosen
/// by capability, never by backend name; an operation a backend lacks
/// returns [`Error::NotSupported`](crate::Error::NotSupported).
///
/// Build one from [`LockCapabilities::default`] (nothing) and set fields;
/// new fields default to `false`, so a backend written today keeps
/// compiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockCapabilities {
    /// [`LeaseKind::Exclusive`].
    pub exclusive: bool,
    /// [`LeaseKind::Reentrant`].
    pub reentrant: bool,
    /// [`LeaseKind::Read`] and [`LeaseKind::Write`].
    pub read_write: bool,
    /// [`LeaseKind::Permit`].
    pub semaphore: bool,
    /// [`LeaseKind::Permits`]: several permits of a semaphore in one lease.
    pub multi_permit: bool,
    /// [`LockBackend::downgrade`]: a writer's lease turned into a reader's
    /// in one step.
    pub downgrade: bool,
    /// [`LockBackend::subscribe`] fires on release.
    pub release_notifications: bool,
    /// [`LockBackend::subscribe`] fires at a lease's expiry instant too.
    pub expiry_notifications: bool,
    /// [`LockBackend::force_release`].
    pub force_release: bool,
    /// [`LockBackend::inspect`].
    pub inspect: bool,
    /// [`LockBackend::acquire_queued`] and [`LockBackend::leave_queue`]:
    /// fair (first come, first served) exclusive and reentrant locks and
    /// semaphores.
    pub fair: bool,
    /// [`LockBackend::acquire_all`]: several exclusive locks in one atomic
    /// step. Without it, [`MultiLock`](crate::MultiLock) takes them one by
    /// one in key order.
    pub acquire_all: bool,
}

impl LockCapabilities {
    /// Everything the lock family offers.
    pub fn all() -> LockCapabilities {
        LockCapabilities {
            exclusive: true,
            reentrant: true,
            read_write: true,
            semaphore: true,
            multi_permit: true,
            downgrade: true,
            release_notifications: true,
            expiry_notifications: true,
            force_release: true,
            inspect: true,
            fair: true,
            acquire_all: true,
        }
    }
}

/// The lock family's three key spaces: the lock `"a"`, the read-write lock
/// `"a"` and the semaphore `"a"` are unrelated.
///
/// Non-exhaustive: a backend answers a space it does not know with
/// [`Error::NotSupported`](crate::Error::NotSupported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LockSpace {
    /// Exclusive and reentrant locks.
    Lock,
    /// Read-write locks.
    RwLock,
    /// Counting semaphores.
    Semaphore,
}

impl LockSpace {
    /// A short lowercase name (`lock`, `rwlock`, `semaphore`), used in backend
    /// key layouts and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            LockSpace::Lock => "lock",
            LockSpace::RwLock => "rwlock",
            LockSpace::Semaphore => "semaphore",
        }
    }
}

/// The kind of lease asked for.
///
/// Non-exhaustive: a backend answers a kind it does not know with
/// [`Error::NotSupported`](crate::Error::NotSupported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseKind {
    /// At most one holder; the same holder acquiring again is refused (busy).
    Exclusive,
    /// At most one holder; the same holder acquiring again increments a hold
    /// count and keeps its token. The key frees when the count reaches 0.
    /// Exclusive and reentrant leases share one key space and exclude each other.
    Reentrant,
    /// A shared (reader) lease of a read-write lock.
    Read,
    /// The exclusive (writer) lease of a read-write lock. A writer that is
    /// refused registers an intent that makes new readers wait (writer
    /// preference) until the writer gets the lock, releases, or the intent's
    /// TTL passes.
    Write,
    /// One of `limit` permits of a semaphore.
    Permit {
        /// The number of permits; fixed while the semaphore has live permits.
        limit: u32,
    },
    /// `count` of `limit` permits of a semaphore, in one lease: granted as
    /// a whole when `count` more fit under `limit` (nothing taken
    /// otherwise), renewed and released as a whole, with one token. Leases
    /// of `Permit` and `Permits` of one key share its `limit`; a lease
    /// counts as its `count` permits wherever permits are counted, and
    /// [`LeaseInfo::holds`] shows that count. `count: 1` means `Permit`
    /// (see [`canonical`](Self::canonical)); `count` 0 or above `limit` is
    /// `InvalidArgument`. Needs [`LockCapabilities::multi_permit`].
    Permits {
        /// The number of permits; fixed while the semaphore has live permits.
        limit: u32,
        /// How many of them this lease holds.
        count: u32,
    },
}

impl LeaseKind {
    /// The key space this kind lives in.
    pub fn space(self) -> LockSpace {
        match self {
            LeaseKind::Exclusive | LeaseKind::Reentrant => LockSpace::Lock,
            LeaseKind::Read | LeaseKind::Write => LockSpace::RwLock,
            LeaseKind::Permit { .. } | LeaseKind::Permits { .. } => LockSpace::Semaphore,
        }
    }

    /// How many semaphore permits a lease of this kind holds: 1 for
    /// `Permit`, `count` for `Permits`, 0 for the other kinds.
    pub fn permits(self) -> u32 {
        match self {
            LeaseKind::Permit { .. } => 1,
            LeaseKind::Permits { count, .. } => count,
            _ => 0,
        }
    }

    /// The semaphore limit a permit kind names; `None` for the other kinds.
    pub fn permit_limit(self) -> Option<u32> {
        match self {
            LeaseKind::Permit { limit } | LeaseKind::Permits { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// The one spelling of this kind: `Permits { limit, count: 1 }` is
    /// `Permit { limit }`; every other kind is itself. Backends store and
    /// report the canonical kind.
    pub fn canonical(self) -> LeaseKind {
        match self {
            LeaseKind::Permits { limit, count: 1 } => LeaseKind::Permit { limit },
            other => other,
        }
    }

    /// A short lowercase name for traces and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Exclusive => "exclusive",
            LeaseKind::Reentrant => "reentrant",
            LeaseKind::Read => "read",
            LeaseKind::Write => "write",
            LeaseKind::Permit { .. } | LeaseKind::Permits { .. } => "permit",
        }
    }
}

/// Names one lease: what kind, on which key, for which holder.
///
/// Exhaustive on purpose: it is what a backend receives, and a field added
/// to it would change what every backend must do with a lease (a breaking
/// change of the SPI, see `docs/versioning.md`), so a backend that takes it
/// apart should stop compiling rather than silently ignore the new field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseId {
    /// The kind of lease.
    pub kind: LeaseKind,
    /// The key (within the backend's namespace).
    pub key: Key,
    /// The holder the lease is or would be granted to.
    pub holder: HolderId,
}

/// `InvalidArgument` for a lease of a kind with no fair mode (a
/// read-write lock's: there is no queue to join or leave), as
/// [`LockBackend::acquire_queued`] and [`LockBackend::leave_queue`] answer
/// one; `Ok` for a lock's or a semaphore's.
pub fn check_fair_kind(lease: &LeaseId) -> Result<()> {
    match lease.kind {
        LeaseKind::Exclusive
        | LeaseKind::Reentrant
        | LeaseKind::Permit { .. }
        | LeaseKind::Permits { .. } => Ok(()),
        other => Err(crate::Error::invalid(format!(
            "{} lease on {:?}: fair mode is for locks and semaphores",
            other.as_str(),
            lease.key.as_str()
        ))),
    }
}

/// The answer to [`LockBackend::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acquire {
    /// The lease is granted.
    Granted(Grant),
    /// Someone else holds what is needed; nothing changed except, for a
    /// [`LeaseKind::Write`] request, the writer's intent.
    Busy(Busy),
}

/// A granted lease. Built with [`Grant::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The fencing token. A reentrant re-acquisition returns the token of the
    /// first acquisition.
    pub token: FencingToken,
    /// The hold count after this acquisition (1 unless reentrant).
    pub holds: u32,
}

impl Grant {
    /// A grant of `token` with `holds` holds.
    pub fn new(token: FencingToken, holds: u32) -> Grant {
        Grant { token, holds }
    }
}

/// Why and for how long an acquisition is refused. Built with
/// [`Busy::new`] (or [`Busy::default`]: nothing known).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Busy {
    /// By the server's clock, when the lease(s) in the way will expire unless
    /// renewed: the earliest instant a retry could succeed without a release.
    /// `None` when unknown.
    pub retry_in: Option<Duration>,
}

impl Busy {
    /// A refusal that may be retried in `retry_in` (`None`: unknown).
    pub fn new(retry_in: Option<Duration>) -> Busy {
        Busy { retry_in }
    }
}

/// The most leases one [`LockBackend::acquire_all`] (and one
/// [`MultiLock`](crate::MultiLock)) takes.
pub const MAX_MULTI_LOCK_KEYS: usize = 64;

/// `InvalidArgument` unless `leases` is what [`LockBackend::acquire_all`]
/// takes: 1 to [`MAX_MULTI_LOCK_KEYS`] exclusive leases of one holder on
/// distinct keys. No I/O; the client checks before any request, backends
/// check again.
pub fn check_acquire_all(leases: &[LeaseId]) -> Result<()> {
    if leases.is_empty() {
        return Err(crate::Error::invalid(
            "a multi-lock needs at least 1 key, got none".to_string(),
        ));
    }
    if leases.len() > MAX_MULTI_LOCK_KEYS {
        return Err(crate::Error::invalid(format!(
            "a multi-lock takes at most {MAX_MULTI_LOCK_KEYS} keys, got {} (first {:?})",
            leases.len(),
            leases[0].key.as_str()
        )));
    }
    if let Some(l) = leases.iter().find(|l| l.kind != LeaseKind::Exclusive) {
        return Err(crate::Error::invalid(format!(
            "{} lease on {:?}: a multi-lock takes exclusive leases only",
            l.kind.as_str(),
            l.key.as_str()
        )));
    }
    if let Some(l) = leases.iter().find(|l| l.holder != leases[0].holder) {
        return Err(crate::Error::invalid(format!(
            "lease on {:?} held by {}, not {}: a multi-lock's leases have one holder",
            l.key.as_str(),
            l.holder,
            leases[0].holder
        )));
    }
    let mut keys: Vec<&Key> = leases.iter().map(|l| &l.key).collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(crate::Error::invalid(format!(
            "key {:?} appears twice in a multi-lock",
            w[0].as_str()
        )));
    }
    Ok(())
}

/// The most holds one reentrant lease counts: a re-entry of a lease held
/// this many times is `InvalidArgument` ([`too_many_holds`]) and changes
/// nothing (decision 0061). As Java's `ReentrantReadWriteLock` bounds its
/// holds: far beyond any real nesting, and reached only by code that
/// re-enters without releasing (a leak), which is told so early instead of
/// counting on towards an overflow.
pub const MAX_REENTRANT_HOLDS: u32 = 65_535;

/// The refusal of a re-entry of a reentrant lease on `key` that already
/// counts [`MAX_REENTRANT_HOLDS`] holds: `InvalidArgument` naming the key
/// and the limit, on every backend.
pub fn too_many_holds(key: &Key) -> crate::Error {
    crate::Error::invalid(format!(
        "reentrant lock {:?} is held {MAX_REENTRANT_HOLDS} times by this holder: a reentrant \
         lease counts at most {MAX_REENTRANT_HOLDS} holds (MAX_REENTRANT_HOLDS)",
        key.as_str()
    ))
}

/// The answer to [`LockBackend::acquire_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireAll {
    /// Every lease is granted: one grant per lease, in the order asked.
    Granted(Vec<Grant>),
    /// A lease is in the way; nothing was taken.
    Busy {
        /// Which of the leases asked for (its index) was refused: the one
        /// to wait for.
        index: usize,
        /// Why, and for how long, as [`Acquire::Busy`] says it.
        busy: Busy,
    },
}

/// The answer to [`LockBackend::release`].
///
/// Exhaustive on purpose: a release either found the holder's lease or did
/// not; there is no third answer to add, and callers may match both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The holder held the lease; `remaining` holds are left (non-zero only
    /// for a reentrant lease that was acquired several times).
    Released {
        /// Hold count left after this release.
        remaining: u32,
    },
    /// The holder did not hold the lease (never did, expired, or taken over).
    /// Nothing changed, except that a waiting writer's intent is withdrawn.
    NotHeld,
}

/// A live lease as seen by [`LockBackend::inspect`]. Built with
/// [`LeaseInfo::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The kind of lease.
    pub kind: LeaseKind,
    /// Who holds it.
    pub holder: HolderId,
    /// Its fencing token.
    pub token: FencingToken,
    /// Hold count (reentrant leases), the permits held (a semaphore's
    /// [`LeaseKind::Permits`]), else 1.
    pub holds: u32,
    /// Time left before it expires, by the server's clock.
    pub expires_in: Duration,
}

impl LeaseInfo {
    /// A lease of `kind` held by `holder` with `token`, `holds` times, for
    /// `expires_in` more.
    pub fn new(
        kind: LeaseKind,
        holder: HolderId,
        token: FencingToken,
        holds: u32,
        expires_in: Duration,
    ) -> LeaseInfo {
        LeaseInfo {
            kind,
            holder,
            token,
            holds,
            expires_in,
        }
    }
}

/// The lock family's operations. Every method is one atomic step against
/// the backend (one round trip on a remote backend). Input is validated by
/// the caller (keys by [`Key`], TTLs by [`validate_ttl`](crate::validate_ttl));
/// backends still refuse a zero TTL or a zero permit limit with
/// `InvalidArgument` rather than corrupt state.
#[async_trait]
pub trait LockBackend: Send + Sync {
    /// What this backend supports of the family.
    fn capabilities(&self) -> LockCapabilities;

    /// Tries to grant `lease` for `ttl`. Never waits for other holders.
    ///
    /// - `Exclusive`: granted when the key is free.
    /// - `Reentrant`: granted when free, or when `lease.holder` holds it
    ///   (count + 1, same token, TTL reset to `ttl`); `InvalidArgument`
    ///   ([`too_many_holds`]), changing nothing, when it holds it
    ///   [`MAX_REENTRANT_HOLDS`] times already.
    /// - `Read`: granted when no writer holds the key and no writer intent is
    ///   live.
    /// - `Write`: granted when nobody holds the key; otherwise the holder's
    ///   writer intent is registered (or refreshed) for `ttl`.
    /// - `Permit { limit }`: granted while fewer than `limit` permits are live.
    ///   `InvalidArgument` when live permits were granted with another limit.
    /// - `Permits { limit, count }`: granted, as one lease, when `count` more
    ///   permits fit under `limit` (a `Permits` lease counting as `count`);
    ///   refused as a whole otherwise. `InvalidArgument` as for `Permit`, and
    ///   when `count` is 0 or above `limit`.
    ///
    /// Every grant except a reentrant re-acquisition draws a new fencing token
    /// (see [`FencingToken::next_after`]).
    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire>;

    /// Resets the lease's TTL to `ttl` if `lease.holder` still holds it.
    /// Returns whether it did. Never revives an expired or taken lease.
    /// The lease is the holder's of the kind `lease` names: an exclusive
    /// lease is not extended through a reentrant id, nor the reverse; any
    /// permit kind names the holder's permit lease (decision 0066).
    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool>;

    /// Releases one hold of `lease` if `lease.holder` holds it (of the kind
    /// `lease` names, as for [`extend`](Self::extend)), and withdraws its
    /// writer intent if any. Wakes subscribers when the key frees.
    async fn release(&self, lease: &LeaseId) -> Result<Release>;

    /// Turns `lease`, a [`LeaseKind::Write`] lease, into a
    /// [`LeaseKind::Read`] lease of the same key and holder for `ttl`, in
    /// one atomic step, if `lease.holder` still holds the write lease:
    /// there is no instant at which the key is free, so no other writer can
    /// get in between. The read lease draws a new fencing token (a grant
    /// like any other: larger than the write lease's), which the answer
    /// carries; writer intents of other writers are kept (they keep holding
    /// new readers off). Wakes the key's subscribers (waiting readers may
    /// now enter). `None`, changing nothing, when the holder does not hold
    /// the write lease (never did, expired, force released).
    /// `InvalidArgument` for a `lease` of another kind.
    async fn downgrade(&self, lease: &LeaseId, ttl: Duration) -> Result<Option<Grant>>;

    // Fair queues (decision 0033): a key's waiters served in arrival order.

    /// [`acquire`](Self::acquire) for a fair waiter, in one atomic step
    /// on the key's wait queue (kept apart from its leases, for the
    /// `Exclusive`, `Reentrant`, `Permit` and `Permits` kinds):
    ///
    /// 1. entries whose waiter deadline passed leave the queue (a waiter
    ///    that stopped asking is skipped);
    /// 2. with `enqueue`, `lease.holder` joins the tail if absent (arrival
    ///    order: an entry keeps its place while it is refreshed) and its
    ///    waiter deadline is reset to `waiter_ttl` from now: every entry is
    ///    a lease, which its waiter renews by asking again;
    /// 3. the lease is granted, as `acquire` would, only when the holder
    ///    heads the queue (with `enqueue: false`, only when the queue is
    ///    empty: a `try_lock` never jumps it), and the grant removes its
    ///    entry in the same step; otherwise `Busy`, whose `retry_in` is at
    ///    most the head's waiter deadline.
    ///
    /// A refusal wakes the key's subscribers when the head changed (a dead
    /// head was dropped; a semaphore's head went in and more may fit).
    /// Waiters of `acquire` (not queued) are not held back by the queue:
    /// every handle on a fair key should be fair. Re-entering a reentrant
    /// lease already held goes through `acquire`. `InvalidArgument` for a
    /// read-write lock's kinds and for a `waiter_ttl` outside the TTL range;
    /// also, before step 1 and changing nothing (no place taken, whoever
    /// heads the queue), for a permit asked with another limit than the
    /// live permits' and for a re-entry of a `Reentrant` lease its holder
    /// holds [`MAX_REENTRANT_HOLDS`] times (decision 0065).
    async fn acquire_queued(
        &self,
        lease: &LeaseId,
        ttl: Duration,
        waiter_ttl: Duration,
        enqueue: bool,
    ) -> Result<Acquire>;

    /// Removes `lease.holder`'s entry from the key's wait queue (a wait
    /// cancelled or given up); returns whether there was one. Wakes the
    /// key's subscribers when it headed the queue. `InvalidArgument` for a
    /// read-write lock's kinds (no queue), as for `acquire_queued`.
    async fn leave_queue(&self, lease: &LeaseId) -> Result<bool>;

    /// Removes every lease (and writer intent) on `key` in `space`, whoever
    /// holds it; returns how many leases were removed. Tokens stay monotonic:
    /// the next grant is larger than any before.
    async fn force_release(&self, space: LockSpace, key: &Key) -> Result<usize>;

    /// Lists the live leases on `key` in `space`.
    async fn inspect(&self, space: LockSpace, key: &Key) -> Result<Vec<LeaseInfo>>;

    /// Subscribes to changes on `key` in `space`: wakes on release, force
    /// release and (with [`LockCapabilities::expiry_notifications`]) at a
    /// lease's expiry instant.
    async fn subscribe(&self, space: LockSpace, key: &Key) -> Result<Box<dyn Watch>>;

    /// [`subscribe`](LockBackend::subscribe), for the fair waiter
    /// `lease.holder` in `lease.key`'s queue (see
    /// [`acquire_queued`](LockBackend::acquire_queued)). A backend whose
    /// wake-ups reach one waiter at a time may wake this watch by name when
    /// a release leaves its holder at the head of the queue, instead of
    /// guessing which waiter heads it; a release with no live head, a
    /// force release and an expiry wake every such watch. Like every
    /// wake-up, a hint: the default is `subscribe`.
    async fn subscribe_queued(&self, lease: &LeaseId) -> Result<Box<dyn Watch>> {
        self.subscribe(lease.kind.space(), &lease.key).await
    }

    /// Grants every lease of `leases` for `ttl`, or none, in one atomic
    /// step ([`LockCapabilities::acquire_all`]): each is granted as
    /// [`acquire`](Self::acquire) would grant it alone, with a new fencing
    /// token of its key; if any is refused, nothing changes and the answer
    /// names the first refused (in the order given) with its `retry_in`.
    ///
    /// The leases are [`LeaseKind::Exclusive`] (other kinds:
    /// `InvalidArgument`), on distinct keys (a repeated key:
    /// `InvalidArgument`), one or more. They share the key space of
    /// [`acquire`](Self::acquire): each granted lease is an ordinary lease
    /// of its key afterwards, extended and released one by one.
    ///
    /// A backend that can take only some sets in one step (a Redis Cluster:
    /// keys of one slot) answers the others with
    /// [`Error::NotSupported`](crate::Error::NotSupported) before any I/O;
    /// the client then takes them one at a time.
    async fn acquire_all(&self, leases: &[LeaseId], ttl: Duration) -> Result<AcquireAll>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "locks",
        name,
    }
}

/// The lock family of `backend`, for a call of `name`.
fn locks<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn LockBackend> {
    family!(backend, locks, op(name))
}

#[async_trait]
impl<D: Dispatch> LockBackend for Dispatched<D> {
    fn capabilities(&self) -> LockCapabilities {
        self.lock_capabilities()
    }
    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        self.carry(
            op("acquire"),
            (lease.clone(), ttl),
            |b, (lease, ttl)| async move { locks(&b, "acquire")?.acquire(&lease, ttl).await },
        )
        .await
    }
    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        self.carry(
            op("extend"),
            (lease.clone(), ttl),
            |b, (lease, ttl)| async move { locks(&b, "extend")?.extend(&lease, ttl).await },
        )
        .await
    }
    async fn release(&self, lease: &LeaseId) -> Result<Release> {
        self.carry(op("release"), (lease.clone(),), |b, (lease,)| async move {
            locks(&b, "release")?.release(&lease).await
        })
        .await
    }
    async fn downgrade(&self, lease: &LeaseId, ttl: Duration) -> Result<Option<Grant>> {
        self.carry(
            op("downgrade"),
            (lease.clone(), ttl),
            |b, (lease, ttl)| async move { locks(&b, "downgrade")?.downgrade(&lease, ttl).await },
        )
        .await
    }
    async fn acquire_queued(
        &self,
        lease: &LeaseId,
        ttl: Duration,
        waiter_ttl: Duration,
        enqueue: bool,
    ) -> Result<Acquire> {
        self.carry(
            op("acquire_queued"),
            (lease.clone(), ttl, waiter_ttl, enqueue),
            |b, (lease, ttl, waiter_ttl, enqueue)| async move {
                (locks(&b, "acquire_queued")?)
                    .acquire_queued(&lease, ttl, waiter_ttl, enqueue)
                    .await
            },
        )
        .await
    }
    async fn leave_queue(&self, lease: &LeaseId) -> Result<bool> {
        self.carry(
            op("leave_queue"),
            (lease.clone(),),
            |b, (lease,)| async move { locks(&b, "leave_queue")?.leave_queue(&lease).await },
        )
        .await
    }
    async fn force_release(&self, space: LockSpace, key: &Key) -> Result<usize> {
        self.carry(
            op("force_release"),
            (space, key.clone()),
            |b, (space, key)| async move {
                locks(&b, "force_release")?.force_release(space, &key).await
            },
        )
        .await
    }
    async fn inspect(&self, space: LockSpace, key: &Key) -> Result<Vec<LeaseInfo>> {
        self.carry(
            op("inspect"),
            (space, key.clone()),
            |b, (space, key)| async move { locks(&b, "inspect")?.inspect(space, &key).await },
        )
        .await
    }
    async fn subscribe(&self, space: LockSpace, key: &Key) -> Result<Box<dyn Watch>> {
        self.carry(
            op("subscribe"),
            (space, key.clone()),
            |b, (space, key)| async move { locks(&b, "subscribe")?.subscribe(space, &key).await },
        )
        .await
    }
    async fn subscribe_queued(&self, lease: &LeaseId) -> Result<Box<dyn Watch>> {
        self.carry(
            op("subscribe_queued"),
            (lease.clone(),),
            |b, (lease,)| async move {
                locks(&b, "subscribe_queued")?
                    .subscribe_queued(&lease)
                    .await
            },
        )
        .await
    }
    async fn acquire_all(&self, leases: &[LeaseId], ttl: Duration) -> Result<AcquireAll> {
        self.carry(
            op("acquire_all"),
            (leases.to_vec(), ttl),
            |b, (leases, ttl)| async move {
                locks(&b, "acquire_all")?.acquire_all(&leases, ttl).await
            },
        )
        .await
    }
}
