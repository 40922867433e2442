//! The backend traits (the SPI): small, atomic, object-safe operations with no
//! default bodies. Everything that is the same for every backend (waiting,
//! retry, renewal, lost signals, tracing) lives in the client types instead.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::{Clock, FencingToken, HolderId, Key, Namespace, Result, clock::Instant};

/// What a backend can do. Conformance cases are chosen by capability, never by
/// backend name; an operation a backend lacks returns
/// [`Error::NotSupported`](crate::Error::NotSupported).
///
/// Build one from [`Capability::default`] (nothing) and set fields; new fields
/// default to `false`, so a backend written today keeps compiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capability {
    /// [`LeaseKind::Exclusive`].
    pub exclusive: bool,
    /// [`LeaseKind::Reentrant`].
    pub reentrant: bool,
    /// [`LeaseKind::Read`] and [`LeaseKind::Write`].
    pub read_write: bool,
    /// [`LeaseKind::Permit`].
    pub semaphore: bool,
    /// [`LeaseBackend::subscribe`] fires on release.
    pub release_notifications: bool,
    /// [`LeaseBackend::subscribe`] fires at a lease's expiry instant too.
    pub expiry_notifications: bool,
    /// [`LeaseBackend::force_release`].
    pub force_release: bool,
    /// [`LeaseBackend::inspect`].
    pub inspect: bool,
}

impl Capability {
    /// Everything the lock family offers.
    pub fn lock_family() -> Capability {
        Capability {
            exclusive: true,
            reentrant: true,
            read_write: true,
            semaphore: true,
            release_notifications: true,
            expiry_notifications: true,
            force_release: true,
            inspect: true,
        }
    }
}

/// Each family has its own key space: the lock `"a"` and the semaphore `"a"`
/// are unrelated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseFamily {
    /// Exclusive and reentrant locks.
    Lock,
    /// Read-write locks.
    RwLock,
    /// Counting semaphores.
    Semaphore,
}

impl LeaseFamily {
    /// A short lowercase name (`lock`, `rwlock`, `semaphore`), used in backend
    /// key layouts and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseFamily::Lock => "lock",
            LeaseFamily::RwLock => "rwlock",
            LeaseFamily::Semaphore => "semaphore",
        }
    }
}

/// The kind of lease asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

impl LeaseKind {
    /// The key space this kind lives in.
    pub fn family(self) -> LeaseFamily {
        match self {
            LeaseKind::Exclusive | LeaseKind::Reentrant => LeaseFamily::Lock,
            LeaseKind::Read | LeaseKind::Write => LeaseFamily::RwLock,
            LeaseKind::Permit { .. } => LeaseFamily::Semaphore,
        }
    }

    /// A short lowercase name for traces and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Exclusive => "exclusive",
            LeaseKind::Reentrant => "reentrant",
            LeaseKind::Read => "read",
            LeaseKind::Write => "write",
            LeaseKind::Permit { .. } => "permit",
        }
    }
}

/// Names one lease: what kind, on which key, for which holder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseId {
    /// The kind of lease.
    pub kind: LeaseKind,
    /// The key (within the backend's namespace).
    pub key: Key,
    /// The holder the lease is or would be granted to.
    pub holder: HolderId,
}

/// The answer to [`LeaseBackend::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The lease is granted.
    Granted(Grant),
    /// Someone else holds what is needed; nothing changed except, for a
    /// [`LeaseKind::Write`] request, the writer's intent.
    Busy(Busy),
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token. A reentrant re-acquisition returns the token of the
    /// first acquisition.
    pub token: FencingToken,
    /// The hold count after this acquisition (1 unless reentrant).
    pub holds: u32,
}

/// Why and for how long an acquisition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Busy {
    /// By the server's clock, when the lease(s) in the way will expire unless
    /// renewed: the earliest instant a retry could succeed without a release.
    /// `None` when unknown, or when only a release can free it (leases kept
    /// by an in-process backend).
    pub retry_in: Option<Duration>,
}

/// The answer to [`LeaseBackend::release`].
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

/// A live lease as seen by [`LeaseBackend::inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The kind of lease.
    pub kind: LeaseKind,
    /// Who holds it.
    pub holder: HolderId,
    /// Its fencing token.
    pub token: FencingToken,
    /// Hold count (reentrant leases), else 1.
    pub holds: u32,
    /// Time left before it expires, by the server's clock.
    pub expires_in: Duration,
}

/// Wakes a waiter when something may have freed on a key. Obtained from
/// [`LeaseBackend::subscribe`] *before* the attempt it follows, so a release
/// between the attempt and the wait is not missed.
#[async_trait]
pub trait LeaseWatch: Send {
    /// Completes when a lease on the key was released, expired or force
    /// released since the subscription was made or since the previous call
    /// returned. May complete spuriously; never fires for a key it was not
    /// asked about. A backend without notifications returns a watch that
    /// never completes (the client types then fall back on their retry delay).
    async fn changed(&mut self) -> Result<()>;
}

/// The lease operations of a backend, bound to one [`Namespace`].
///
/// Every method is one atomic step against the backend (one round trip on a
/// remote backend). Input is validated by the caller (keys by [`Key`], TTLs by
/// [`validate_ttl`](crate::validate_ttl)); backends still refuse a zero TTL or
/// a zero permit limit with `InvalidArgument` rather than corrupt state.
#[async_trait]
pub trait LeaseBackend: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// What this backend supports.
    fn capabilities(&self) -> Capability;

    /// The namespace every key of this backend lives in.
    fn namespace(&self) -> &Namespace;

    /// Tries to grant `lease` for `ttl`. Never waits for other holders.
    ///
    /// - `Exclusive`: granted when the key is free.
    /// - `Reentrant`: granted when free, or when `lease.holder` holds it
    ///   (count + 1, same token, TTL reset to `ttl`).
    /// - `Read`: granted when no writer holds the key and no writer intent is
    ///   live.
    /// - `Write`: granted when nobody holds the key; otherwise the holder's
    ///   writer intent is registered (or refreshed) for `ttl`.
    /// - `Permit { limit }`: granted while fewer than `limit` permits are live.
    ///   `InvalidArgument` when live permits were granted with another limit.
    ///
    /// Every grant except a reentrant re-acquisition draws a new fencing token
    /// (see [`FencingToken::next_after`]).
    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire>;

    /// Resets the lease's TTL to `ttl` if `lease.holder` still holds it.
    /// Returns whether it did. Never revives an expired or taken lease.
    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool>;

    /// Releases one hold of `lease` if `lease.holder` holds it, and withdraws
    /// its writer intent if any. Wakes subscribers when the key frees.
    async fn release(&self, lease: &LeaseId) -> Result<Release>;

    /// Removes every lease (and writer intent) on `key` in `family`, whoever
    /// holds it; returns how many leases were removed. Tokens stay monotonic:
    /// the next grant is larger than any before.
    async fn force_release(&self, family: LeaseFamily, key: &Key) -> Result<usize>;

    /// Lists the live leases on `key` in `family`.
    async fn inspect(&self, family: LeaseFamily, key: &Key) -> Result<Vec<LeaseInfo>>;

    /// Subscribes to changes on `key` in `family`.
    async fn subscribe(&self, family: LeaseFamily, key: &Key) -> Result<Box<dyn LeaseWatch>>;

    /// This backend's synchronous face, when it answers in the caller's
    /// thread without I/O (an in-process store): the client types then call
    /// it instead of `acquire`, `extend` and `release`, which saves a boxed
    /// future and a poll per call. A backend that talks to a server returns
    /// `None`, and so must a decorator that has to see every call (fault
    /// injection, metrics, a switch that cuts the backend off).
    fn in_process(&self) -> Option<&dyn InProcessLeases>;
}

/// The lease operations of a backend that answers without I/O, with exactly
/// the semantics of the [`LeaseBackend`] methods of the same names (a backend
/// that offers this face implements those methods by calling it). Obtained
/// from [`LeaseBackend::in_process`].
pub trait InProcessLeases: Send + Sync {
    /// The backend's (the server's) clock, which decides expiry. A client on
    /// the same clock takes the instant `acquire_now` returns as the moment
    /// its request left, and reads no clock of its own.
    fn clock(&self) -> &dyn Clock;
    /// [`LeaseBackend::acquire`], answered at once, with the instant (by
    /// [`clock`](Self::clock)) at which it was decided.
    fn acquire_now(&self, lease: &LeaseId, ttl: Duration) -> Result<(Acquire, Instant)>;
    /// [`acquire_now`](Self::acquire_now), except that a new lease is
    /// *kept*: it does not expire but lasts until released or force released
    /// (the client types ask for that in place of auto-extension: renewing a
    /// lease that lives in the caller's own memory would only prove that the
    /// process is alive, and a guard's drop releases it at once). `ttl` is
    /// what [`LeaseInfo::expires_in`] reports for it. Nothing about a kept
    /// lease needs the time, so no instant is returned, and a backend may
    /// grant it without reading its clock. A reentrant re-acquisition leaves
    /// the lease as it was.
    fn acquire_kept(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire>;
    /// Whether `lease`, granted with `token`, is live now, and until when.
    fn holding(&self, lease: &LeaseId, token: FencingToken) -> Holding;
    /// [`LeaseBackend::extend`], answered at once.
    fn extend_now(&self, lease: &LeaseId, ttl: Duration) -> Result<bool>;
    /// [`LeaseBackend::release`], answered at once (subscribers are woken
    /// before it returns when the key frees).
    fn release_now(&self, lease: &LeaseId) -> Result<Release>;
}

/// Whether a lease is live, as an in-process backend knows it now
/// ([`InProcessLeases::holding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Released, expired, force released, or never granted.
    NotHeld,
    /// Live until the instant (by the backend's clock) unless extended.
    Until(Instant),
    /// Kept: live until released or force released.
    UntilReleased,
}

macro_rules! forward_lease_backend {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: LeaseBackend + ?Sized> LeaseBackend for $ptr<T> {
            fn capabilities(&self) -> Capability {
                (**self).capabilities()
            }
            fn namespace(&self) -> &Namespace {
                (**self).namespace()
            }
            async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
                (**self).acquire(lease, ttl).await
            }
            async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
                (**self).extend(lease, ttl).await
            }
            async fn release(&self, lease: &LeaseId) -> Result<Release> {
                (**self).release(lease).await
            }
            async fn force_release(&self, family: LeaseFamily, key: &Key) -> Result<usize> {
                (**self).force_release(family, key).await
            }
            async fn inspect(&self, family: LeaseFamily, key: &Key) -> Result<Vec<LeaseInfo>> {
                (**self).inspect(family, key).await
            }
            async fn subscribe(&self, family: LeaseFamily, key: &Key) -> Result<Box<dyn LeaseWatch>> {
                (**self).subscribe(family, key).await
            }
            fn in_process(&self) -> Option<&dyn InProcessLeases> {
                (**self).in_process()
            }
        }
    )*};
}

forward_lease_backend!(Arc, Box);

/// A backend shared by many clients: `Arc<dyn LeaseBackend>`.
pub type DynLeaseBackend = Arc<dyn LeaseBackend>;
