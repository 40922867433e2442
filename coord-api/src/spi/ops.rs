//! The SPI of operations: what an operator (`coordctl`, a dashboard, a
//! health probe) asks of a backend across every family. The client type
//! built on it is [`Operations`](crate::Operations) (from
//! [`Client::operations`](crate::Client::operations)).
//!
//! Rules (decision 0028; the contract's `operations` section names the cases):
//!
//! 1. **Instance presence is a lease.** [`announce`](OpsBackend::announce)
//!    records (or refreshes) an instance's [`Presence`] for a TTL, on the
//!    backend's clock; [`withdraw`](OpsBackend::withdraw) removes it. Every
//!    client keeps its own while it lives. A listed lease whose holder's
//!    instance has no live presence is **stale**.
//! 2. **Listing walks a cursor.** [`leases`](OpsBackend::leases) and
//!    [`instances`](OpsBackend::instances) answer one bounded page
//!    (1..=[`MAX_PAGE`] records) and the [`Cursor`] of the next; a walk
//!    from [`Cursor::start`] to the end sees every record that was live for
//!    the whole walk exactly once, and never one that had expired before it
//!    began. A page holds at most `limit` records and may hold fewer (even
//!    none) before the end. No step holds more than one page in memory.
//!    Records may come in any order within a page (the client sorts each
//!    by [`LeaseRecord::listing_cmp`], decision 0068).
//! 3. **Revocation is fenced.** [`revoke`](OpsBackend::revoke) removes the
//!    live lease of `resource` whose token is `token`, and nothing else: a
//!    newer holder's lease is left alone. It is one atomic step; the next
//!    grant of the resource draws a larger token (the family's token rule);
//!    the old holder's next renewal is refused, so its lost signal fires.
//!    Waiters are woken as by a release. A queue's delivery is revoked
//!    by naming its item (`queue:orders@17`): the item is returned as an
//!    expired delivery is (the queue SPI's rule 6: ready again, or dead on
//!    its last started attempt), its error [`REVOKED`](super::queues::REVOKED).
//!    A topic subscription's delivery is revoked by naming its event's
//!    offset (`topic:payments@billing@42`): the offset goes to the retry
//!    set, due at once, keeping its attempt (the topic SPI's rule 1, as an
//!    expiry).
//! 4. **The audit trail is append-only.** [`record`](OpsBackend::record)
//!    appends an [`AuditRecord`] stamped with the backend's time;
//!    [`audit`](OpsBackend::audit) pages through them, newest first. The
//!    backend keeps at least the last [`AUDIT_KEPT`].
//!
//! What each family provides to this SPI (a family added later adds a
//! [`ResourceKind`] and these three): its live leases as [`LeaseRecord`]s
//! (resource, holder, token, time left, waiters where recorded), a fenced
//! revocation of one of them where its leases carry tokens, and its metric
//! names in its contract section.

use std::{
    cmp::Ordering,
    fmt,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use super::{
    DynBackend, LeaseKind,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{Error, FencingToken, HolderId, InstanceId, Result};

mod resource;

pub use resource::{Resource, ResourceKind};

/// The most records one page may ask for.
pub const MAX_PAGE: u32 = 1_000;
/// The fewest audit records a backend keeps (older ones may go).
pub const AUDIT_KEPT: u32 = 10_000;
/// The longest reason (and operator name) an audit record takes, in bytes.
pub const MAX_REASON_BYTES: usize = 1_024;
/// The longest presence metadata, in bytes.
pub const MAX_PRESENCE_BYTES: usize = 4_096;

/// What a listed lease is, within its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A lease of the lock family (exclusive, reentrant, read, write, permit).
    Lock(LeaseKind),
    /// A waiting writer's intent on a read-write lock (no token of its own).
    WriterIntent,
    /// A leader's term.
    Leader,
    /// A group member's heartbeat.
    Member,
    /// A run of a run-once job's occurrence.
    Run,
    /// A delivery its consumer works on: a queue item's (started), a
    /// topic event's.
    Delivery,
    /// A queue item's delivery prefetched by its consumer (not started:
    /// it used no attempt, and another consumer may steal it).
    Prefetched,
}

impl Role {
    /// A short lowercase name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lock(kind) => kind.as_str(),
            Role::WriterIntent => "writer-intent",
            Role::Leader => "leader",
            Role::Member => "member",
            Role::Run => "run",
            Role::Delivery => "delivery",
            Role::Prefetched => "prefetched",
        }
    }
}

impl Role {
    /// Its place among one holder's leases of one resource in a listing's
    /// order ([`LeaseRecord::listing_cmp`]): the lock family's kinds
    /// (exclusive, reentrant, read, write, permits), writer intent,
    /// leader, member, run, delivery, prefetched.
    pub fn listing_rank(self) -> u8 {
        match self {
            Role::Lock(LeaseKind::Exclusive) => 0,
            Role::Lock(LeaseKind::Reentrant) => 1,
            Role::Lock(LeaseKind::Read) => 2,
            Role::Lock(LeaseKind::Write) => 3,
            Role::Lock(LeaseKind::Permit { .. } | LeaseKind::Permits { .. }) => 4,
            Role::WriterIntent => 6,
            Role::Leader => 7,
            Role::Member => 8,
            Role::Run => 9,
            Role::Delivery => 10,
            Role::Prefetched => 11,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One live lease as a backend lists it. Built with [`LeaseRecord::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseRecord {
    /// The primitive it is a lease of.
    pub resource: Resource,
    /// What it is there.
    pub role: Role,
    /// Its holder (the holder's instance names the process).
    pub holder: HolderId,
    /// Its fencing token (`None` for members and writer intents).
    pub token: Option<FencingToken>,
    /// How many times it is held (reentrant locks), the permits it holds
    /// (a semaphore's lease of several), 1 otherwise.
    pub holds: u32,
    /// When it was granted, by the backend's wall clock, when the backend
    /// records it (terms, members); otherwise `None` and the token tells
    /// (see [`LeaseRecord::acquired_at`]).
    pub since: Option<SystemTime>,
    /// Time left before it expires, by the backend's clock.
    pub expires_in: Duration,
    /// How many waiters the backend records for the resource (writer
    /// intents; candidates); `None` where waiters are not recorded (a
    /// plain lock's waiters wait on a notification and are not counted).
    pub waiters: Option<u32>,
}

impl LeaseRecord {
    /// A lease `role` of `resource`, held by `holder` with `token`, for
    /// `expires_in` more (1 hold, no `since`, waiters not recorded).
    pub fn new(
        resource: Resource,
        role: Role,
        holder: HolderId,
        token: Option<FencingToken>,
        expires_in: Duration,
    ) -> LeaseRecord {
        LeaseRecord {
            resource,
            role,
            holder,
            token,
            holds: 1,
            since: None,
            expires_in,
            waiters: None,
        }
    }

    /// With `holds` holds.
    pub fn holds(mut self, holds: u32) -> LeaseRecord {
        self.holds = holds;
        self
    }

    /// Granted at `since` by the backend's clock.
    pub fn since(mut self, since: SystemTime) -> LeaseRecord {
        self.since = Some(since);
        self
    }

    /// With `waiters` recorded waiters.
    pub fn waiters(mut self, waiters: u32) -> LeaseRecord {
        self.waiters = Some(waiters);
        self
    }

    /// The order of a listing's records within a page, on every backend
    /// (and the memory backend's whole walk): the resource's kind (in
    /// [`ResourceKind::ALL`]'s order), its name, occurrence or
    /// subscription and item, then the holder (its instance, then its
    /// nonce), the role ([`Role::listing_rank`]) and the token. None of
    /// these changes while a lease lives.
    pub fn listing_cmp(&self, other: &LeaseRecord) -> Ordering {
        self.listing_key().cmp(&other.listing_key())
    }

    #[allow(clippy::type_complexity)]
    fn listing_key(&self) -> (ResourceKind, &str, &str, u64, &str, u128, u8, u64) {
        let r = &self.resource;
        (
            r.kind,
            r.name.as_str(),
            (r.occurrence.as_ref().or(r.subscription.as_ref())).map_or("", |k| k.as_str()),
            r.item.unwrap_or(0),
            self.holder.instance().as_str(),
            self.holder.nonce(),
            self.role.listing_rank(),
            self.token.map_or(0, |t| t.get()),
        )
    }

    /// When it was granted: `since` when recorded, otherwise read from the
    /// token (tokens are the server's wall clock in microseconds at the
    /// grant, or one more than the last token when that is larger; see
    /// [`FencingToken::next_after`]), so the instant is exact unless the
    /// resource saw several grants within one microsecond or the server's
    /// clock stepped back, and never earlier than the grant.
    pub fn acquired_at(&self) -> Option<SystemTime> {
        self.since.or_else(|| {
            let micros = self.token?.get();
            // Counter-only tokens (a backend without a clock) are not times.
            (micros >= 1_000_000_000_000_000)
                .then(|| SystemTime::UNIX_EPOCH + Duration::from_micros(micros))
        })
    }
}

/// An instance's presence: who it is, as it announced itself. Built with
/// [`Presence::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Presence {
    /// The instance.
    pub instance: InstanceId,
    /// Its process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// Anything else it published (a version, an address).
    pub metadata: String,
    /// When it first announced itself, by the backend's clock (set by the
    /// backend; what an announcement carries here is ignored).
    pub since: SystemTime,
    /// Time left on its presence lease (set by the backend).
    pub expires_in: Duration,
}

impl Presence {
    /// The presence of `instance`, process `pid` on `host`.
    pub fn new(
        instance: InstanceId,
        pid: u32,
        host: impl Into<String>,
        metadata: impl Into<String>,
    ) -> Presence {
        Presence {
            instance,
            pid,
            host: host.into(),
            metadata: metadata.into(),
            since: SystemTime::UNIX_EPOCH,
            expires_in: Duration::ZERO,
        }
    }

    /// With the backend's `since` and `expires_in`.
    pub fn live(mut self, since: SystemTime, expires_in: Duration) -> Presence {
        self.since = since;
        self.expires_in = expires_in;
        self
    }

    /// `InvalidArgument` when host and metadata exceed
    /// [`MAX_PRESENCE_BYTES`].
    pub fn check(&self) -> Result<()> {
        if self.host.len() + self.metadata.len() > MAX_PRESENCE_BYTES {
            return Err(Error::invalid(format!(
                "presence of {}: host and metadata are {} bytes, the limit is {MAX_PRESENCE_BYTES}",
                self.instance,
                self.host.len() + self.metadata.len()
            )));
        }
        Ok(())
    }
}

/// Where a walk of a listing stands: [`Cursor::start`], then each page's
/// `next`. Opaque (each backend writes its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Cursor(String);

impl Cursor {
    /// The beginning of a listing.
    pub fn start() -> Cursor {
        Cursor(String::new())
    }

    /// A backend's cursor from its text.
    pub fn from_text(text: impl Into<String>) -> Cursor {
        Cursor(text.into())
    }

    /// The cursor's text (the backend's own).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the beginning.
    pub fn is_start(&self) -> bool {
        self.0.is_empty()
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The records (at most the page's limit; may be empty before the end).
    pub items: Vec<T>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// `items`, then `next`.
    pub fn new(items: Vec<T>, next: Option<Cursor>) -> Page<T> {
        Page { items, next }
    }
}

/// What [`OpsBackend::revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The lease was live with that token and is gone; it was `holder`'s.
    Released {
        /// Whose lease it was.
        holder: HolderId,
    },
    /// No live lease of the resource has that token; nothing changed.
    /// `current` are the tokens of its live leases (empty: none).
    NotFound {
        /// The tokens the resource's live leases carry.
        current: Vec<FencingToken>,
    },
}

/// One entry of the audit trail. Built with [`AuditRecord::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When, by the backend's clock (set by the backend).
    pub at: SystemTime,
    /// Who: the operator as they named themselves (`user@host`).
    pub operator: String,
    /// The instance that made the call.
    pub instance: InstanceId,
    /// What was done (`force-release`).
    pub action: String,
    /// To what.
    pub resource: Resource,
    /// The token aimed at.
    pub token: FencingToken,
    /// Why, as the operator said.
    pub reason: String,
    /// What came of it: `released <holder>`, `not found (live tokens: 7,
    /// 9)` or `not found (no live lease)`, or `unknown: no answer (…)` when
    /// the revocation was left unanswered.
    pub outcome: String,
}

impl AuditRecord {
    /// A record of `action` on `resource` aimed at `token`, by `operator`
    /// through `instance`, because `reason`, with `outcome` (`at` is set by
    /// the backend).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        operator: impl Into<String>,
        instance: InstanceId,
        action: impl Into<String>,
        resource: Resource,
        token: FencingToken,
        reason: impl Into<String>,
        outcome: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord {
            at: SystemTime::UNIX_EPOCH,
            operator: operator.into(),
            instance,
            action: action.into(),
            resource,
            token,
            reason: reason.into(),
            outcome: outcome.into(),
        }
    }

    /// Stamped at `at`.
    pub fn at(mut self, at: SystemTime) -> AuditRecord {
        self.at = at;
        self
    }

    /// `InvalidArgument` when the operator or the reason is empty or longer
    /// than [`MAX_REASON_BYTES`].
    pub fn check(&self) -> Result<()> {
        for (what, text) in [("operator", &self.operator), ("reason", &self.reason)] {
            if text.trim().is_empty() || text.len() > MAX_REASON_BYTES {
                return Err(Error::invalid(format!(
                    "audit of {}: the {what} must be 1..={MAX_REASON_BYTES} bytes (got {})",
                    self.resource,
                    text.len()
                )));
            }
        }
        Ok(())
    }
}

/// What a health probe learns from one call. Built with [`Probe::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// The backend's wall clock when it answered.
    pub server_time: SystemTime,
    /// Whether everything the backend needs server-side is in place
    /// (Redis: its scripts are loaded); `None` when nothing is needed.
    pub ready: Option<bool>,
    /// What the server is, for operators (Redis: its version and the
    /// optional commands it has); `None` when there is nothing to say.
    pub server: Option<String>,
    /// Whether the server accepts writes: `Some(Err(reason))` when it
    /// refused the probe's write (Redis: a replica's READONLY, OOM, MISCONF,
    /// NOREPLICAS), `Some(Ok(()))` when it took it, `None` when the backend
    /// has nothing to check (in memory).
    pub writable: Option<std::result::Result<(), String>>,
}

impl Probe {
    /// The backend answered at `server_time`; `ready` as [`Probe::ready`].
    pub fn new(server_time: SystemTime, ready: Option<bool>) -> Probe {
        Probe {
            server_time,
            ready,
            server: None,
            writable: None,
        }
    }

    /// The same, saying whether the server took a write
    /// ([`Probe::writable`]).
    pub fn with_writable(mut self, writable: std::result::Result<(), String>) -> Probe {
        self.writable = Some(writable);
        self
    }

    /// The same, saying what the server is ([`Probe::server`]).
    pub fn with_server(mut self, server: impl Into<String>) -> Probe {
        self.server = Some(server.into());
        self
    }
}

/// `InvalidArgument` unless `limit` is within 1..=[`MAX_PAGE`].
pub fn check_limit(what: &str, limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::invalid(format!(
            "{what}: a page holds 1..={MAX_PAGE} records (asked for {limit})"
        )));
    }
    Ok(())
}

/// The operations family. Every method is one atomic step (a listing page
/// is one step per page).
#[async_trait]
pub trait OpsBackend: Send + Sync {
    /// Records or refreshes `presence` for `ttl` (rule 1). A refresh keeps
    /// the first `since`.
    async fn announce(&self, presence: &Presence, ttl: Duration) -> Result<()>;

    /// Removes `instance`'s presence; whether it was live.
    async fn withdraw(&self, instance: &InstanceId) -> Result<bool>;

    /// The live presence of each of `instances` (in that order; `None`:
    /// none live). At most [`MAX_PAGE`] at once.
    async fn presence(&self, instances: &[InstanceId]) -> Result<Vec<Option<Presence>>>;

    /// One page of live instances (rule 2).
    async fn instances(&self, cursor: &Cursor, limit: u32) -> Result<Page<Presence>>;

    /// One page of live leases of `kind` (every kind when `None`) whose
    /// resource name starts with `prefix` (rule 2).
    async fn leases(
        &self,
        kind: Option<ResourceKind>,
        prefix: &str,
        cursor: &Cursor,
        limit: u32,
    ) -> Result<Page<LeaseRecord>>;

    /// The live leases of one resource (and its writer intents).
    async fn describe(&self, resource: &Resource) -> Result<Vec<LeaseRecord>>;

    /// Removes `resource`'s live lease whose token is `token`, and nothing
    /// else (rule 3). `InvalidArgument` for a resource whose leases carry
    /// no token.
    async fn revoke(&self, resource: &Resource, token: FencingToken) -> Result<Revoked>;

    /// Appends `record` to the audit trail, stamped with the backend's
    /// time (rule 4).
    async fn record(&self, record: &AuditRecord) -> Result<()>;

    /// One page of the audit trail, newest first.
    async fn audit(&self, cursor: &Cursor, limit: u32) -> Result<Page<AuditRecord>>;

    /// The backend's clock and readiness, for health checks.
    async fn probe(&self) -> Result<Probe>;

    /// The backend's wall clock now, alone: what the ages of listed leases
    /// are measured on ([`Operations::backend_clock`](crate::Operations::backend_clock),
    /// read once per listing). A read, changing nothing: unlike
    /// [`probe`](Self::probe), it checks no script and writes no key.
    ///
    /// Added after the family: the default is [`probe`](Self::probe)'s
    /// `server_time`, so that a backend written before it keeps compiling.
    async fn server_time(&self) -> Result<SystemTime> {
        Ok(self.probe().await?.server_time)
    }
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "operations",
        name,
    }
}

fn ops<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn OpsBackend> {
    family!(backend, ops, op(name))
}

#[async_trait]
impl<D: Dispatch> OpsBackend for Dispatched<D> {
    async fn announce(&self, presence: &Presence, ttl: Duration) -> Result<()> {
        self.carry(
            op("announce"),
            (presence.clone(), ttl),
            |b, (p, ttl)| async move { ops(&b, "announce")?.announce(&p, ttl).await },
        )
        .await
    }
    async fn withdraw(&self, instance: &InstanceId) -> Result<bool> {
        self.carry(op("withdraw"), (*instance,), |b, (i,)| async move {
            ops(&b, "withdraw")?.withdraw(&i).await
        })
        .await
    }
    async fn presence(&self, instances: &[InstanceId]) -> Result<Vec<Option<Presence>>> {
        self.carry(
            op("presence"),
            (instances.to_vec(),),
            |b, (i,)| async move { ops(&b, "presence")?.presence(&i).await },
        )
        .await
    }
    async fn instances(&self, cursor: &Cursor, limit: u32) -> Result<Page<Presence>> {
        self.carry(
            op("instances"),
            (cursor.clone(), limit),
            |b, (c, l)| async move { ops(&b, "instances")?.instances(&c, l).await },
        )
        .await
    }
    async fn leases(
        &self,
        kind: Option<ResourceKind>,
        prefix: &str,
        cursor: &Cursor,
        limit: u32,
    ) -> Result<Page<LeaseRecord>> {
        let args = (kind, prefix.to_owned(), cursor.clone(), limit);
        self.carry(op("leases"), args, |b, (k, p, c, l)| async move {
            ops(&b, "leases")?.leases(k, &p, &c, l).await
        })
        .await
    }
    async fn describe(&self, resource: &Resource) -> Result<Vec<LeaseRecord>> {
        self.carry(op("describe"), (resource.clone(),), |b, (r,)| async move {
            ops(&b, "describe")?.describe(&r).await
        })
        .await
    }
    async fn revoke(&self, resource: &Resource, token: FencingToken) -> Result<Revoked> {
        self.carry(
            op("revoke"),
            (resource.clone(), token),
            |b, (r, t)| async move { ops(&b, "revoke")?.revoke(&r, t).await },
        )
        .await
    }
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        self.carry(op("record"), (record.clone(),), |b, (r,)| async move {
            ops(&b, "record")?.record(&r).await
        })
        .await
    }
    async fn audit(&self, cursor: &Cursor, limit: u32) -> Result<Page<AuditRecord>> {
        self.carry(
            op("audit"),
            (cursor.clone(), limit),
            |b, (c, l)| async move { ops(&b, "audit")?.audit(&c, l).await },
        )
        .await
    }
    async fn server_time(&self) -> Result<SystemTime> {
        self.carry(op("server_time"), (), |b, ()| async move {
            ops(&b, "server_time")?.server_time().await
        })
        .await
    }
    async fn probe(&self) -> Result<Probe> {
        self.carry(op("probe"), (), |b, ()| async move {
            ops(&b, "probe")?.probe().await
        })
        .await
    }
}

#[cfg(test)]
mod tests;
