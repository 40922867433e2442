//! The lease table: the whole lock-family state machine, synchronous and
//! behind a narrow API, so that loom can check it and the simulator's server
//! can host it. Time is passed in (the server's clock, read once per
//! operation); expiry is lazy (an expired lease is dropped by the next
//! operation on its key) and notification is the async layer's job.

use std::time::Duration;

use coord_api::{
    Clock, Error, FencingToken, HolderId, Instant, Key, LeaseInfo, LeaseKind, LockSpace, Namespace,
    Result,
    spi::{
        Acquire, AcquireAll, Busy, Grant, LeaseId, MAX_REENTRANT_HOLDS, Release, ResourceKind,
        Role, too_many_holds,
    },
};

mod fair;

use crate::{
    ops::{Listed, Visit},
    sync::{AtomicU64, Lookup, Map, Ordering},
};

/// A key in the table: namespace, lock space and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    /// The namespace.
    pub ns: Namespace,
    /// The lock space (each has its own keys).
    pub space: LockSpace,
    /// The key.
    pub key: Key,
}

impl std::hash::Hash for TableKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        KeyRef::from(self).hash(state)
    }
}

/// A borrowed [`TableKey`], to look entries up without cloning.
#[derive(Clone, Copy)]
struct KeyRef<'a> {
    ns: &'a Namespace,
    space: LockSpace,
    key: &'a Key,
}

impl<'a> From<&'a TableKey> for KeyRef<'a> {
    fn from(k: &'a TableKey) -> Self {
        KeyRef {
            ns: &k.ns,
            space: k.space,
            key: &k.key,
        }
    }
}

impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ns.hash(state);
        self.space.hash(state);
        self.key.hash(state);
    }
}

impl Lookup<TableKey> for KeyRef<'_> {
    fn matches(&self, k: &TableKey) -> bool {
        k.space == self.space && k.key == *self.key && k.ns == *self.ns
    }
    fn to_key(&self) -> TableKey {
        table_key(self.ns, self.space, self.key)
    }
}

impl Lookup<TableKey> for TableKey {
    fn matches(&self, k: &TableKey) -> bool {
        self == k
    }
    fn to_key(&self) -> TableKey {
        self.clone()
    }
}

#[derive(Debug, Clone)]
struct Lease {
    holder: HolderId,
    kind: LeaseKind,
    token: u64,
    /// A reentrant lease's hold count; a semaphore lease's permits; else 1.
    holds: u32,
    /// When it expires, unless extended.
    until: Instant,
}

impl Lease {
    fn live(&self, now: Instant) -> bool {
        self.until > now
    }
}

#[derive(Debug, Default)]
struct Entry {
    leases: Vec<Lease>,
    /// Waiting writers of a read-write lock, until when their intent lasts.
    intents: Vec<(HolderId, Instant)>,
    /// A semaphore's permit count, fixed while permits are live.
    limit: Option<u32>,
    /// Fair waiters in arrival order, until when their place lasts.
    queue: Vec<(HolderId, Instant)>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.intents.is_empty() && self.queue.is_empty()
    }

    /// Drops what has expired.
    fn purge(&mut self, now: Instant) {
        // Usually nothing has expired: look before rewriting the vectors.
        if self.leases.iter().any(|l| !l.live(now)) {
            self.leases.retain(|l| l.live(now));
        }
        if self.intents.iter().any(|(_, until)| *until <= now) {
            self.intents.retain(|(_, until)| *until > now);
        }
        if self.queue.iter().any(|(_, until)| *until <= now) {
            self.queue.retain(|(_, until)| *until > now);
        }
        if self.leases.is_empty() {
            self.limit = None;
        }
    }

    /// `InvalidArgument` for a permit asked with another limit than the
    /// one its live permits fixed (call on a purged entry).
    fn check_limit(&self, id: &LeaseId) -> Result<()> {
        match (self.limit, id.kind.permit_limit()) {
            (Some(fixed), Some(limit)) if fixed != limit => Err(Error::invalid(format!(
                "semaphore {:?} has {fixed} permits; asked with {limit}",
                id.key.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// `InvalidArgument` for a re-entry of a reentrant lease that counts
    /// [`MAX_REENTRANT_HOLDS`] holds (call on a purged entry).
    fn check_holds(&self, id: &LeaseId) -> Result<()> {
        match self.leases.first() {
            Some(l)
                if id.kind.canonical() == LeaseKind::Reentrant
                    && l.kind == LeaseKind::Reentrant
                    && l.holder == id.holder
                    && l.holds >= MAX_REENTRANT_HOLDS =>
            {
                Err(too_many_holds(&id.key))
            }
            _ => Ok(()),
        }
    }

    /// The holder's lease of the kind `id` names: exclusive or reentrant,
    /// read or write; a permit lease whatever limit and count `id` names
    /// (they are the acquisition's terms, and a holder has one lease per
    /// semaphore; decision 0066).
    fn find(&mut self, id: &LeaseId) -> Option<usize> {
        let kind = id.kind.canonical();
        let permit = kind.permit_limit().is_some();
        self.leases.iter().position(|l| {
            l.holder == id.holder && (l.kind == kind || permit && l.kind.permit_limit().is_some())
        })
    }

    /// When the first lease in the way (`blocking`) expires.
    fn earliest(&self, blocking: impl Fn(&Lease) -> bool) -> Option<Instant> {
        self.leases
            .iter()
            .filter(|l| blocking(l))
            .map(|l| l.until)
            .min()
    }

    /// When the last lease expires.
    fn latest(&self) -> Option<Instant> {
        self.leases.iter().map(|l| l.until).max()
    }
}

/// What a change did to a key, for the async layer to notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freed {
    /// Nothing freed: no notification needed.
    No,
    /// Capacity freed: wake the key's waiters.
    Yes,
}

/// The lock family's state for every namespace of one store. Every method
/// is one atomic step on one key, decided at `now` by the server's clock.
pub struct LeaseTable {
    entries: Map<TableKey, Entry>,
    /// The last token granted to an election or job, for every key (one
    /// counter keeps each key's tokens strictly increasing without
    /// remembering freed keys). The lock family counts per shard instead.
    last_token: AtomicU64,
    /// The server's wall clock (µs since the Unix epoch) at `epoch_at`; the
    /// wall time of a grant is derived from the monotonic clock, which saves
    /// a clock read per grant and ignores wall-clock steps backwards.
    epoch_wall_us: u64,
    epoch_at: Instant,
}

impl LeaseTable {
    /// An empty table on a server whose clock is `clock`.
    pub fn new(clock: &dyn Clock) -> LeaseTable {
        let epoch_wall_us = clock
            .wall()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        LeaseTable {
            entries: Map::new(),
            last_token: AtomicU64::new(0),
            epoch_wall_us,
            epoch_at: clock.now(),
        }
    }

    /// The server's wall clock at `now`, in µs since the Unix epoch.
    pub(crate) fn wall_us(&self, now: Instant) -> u64 {
        self.epoch_wall_us + now.saturating_duration_since(self.epoch_at).as_micros() as u64
    }

    /// The next fencing token of a lock-family key whose shard's counter is
    /// `last` (see [`Map`]): [`FencingToken::next_after_micros`] with the
    /// wall clock at `now`, changed under the shard's lock (no atomic
    /// operation), strictly increasing for each of the shard's keys.
    fn key_token(&self, last: &mut u64, now: Instant) -> u64 {
        *last = FencingToken::next_after_micros(*last, self.wall_us(now)).get();
        *last
    }

    /// The next fencing token of this store's elections and jobs (one
    /// counter for all their keys), floored at the wall clock at `now`.
    pub(crate) fn next_token(&self, now: Instant) -> u64 {
        let wall_us = self.wall_us(now);
        let mut last = self.last_token.load(Ordering::SeqCst);
        loop {
            let next = FencingToken::next_after_micros(last, wall_us).get();
            match self
                .last_token
                .compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// [`LockBackend::acquire`](coord_api::spi::LockBackend::acquire) on `ns`.
    pub fn acquire(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        now: Instant,
    ) -> Result<Acquire> {
        check_ttl(id, ttl)?;
        check_permits(id)?;
        let key = KeyRef {
            ns,
            space: id.kind.space(),
            key: &id.key,
        };
        self.entries.update(&key, Entry::is_empty, |e, last| {
            e.purge(now);
            self.grant(ns, e, last, id, ttl, now)
        })
    }

    /// The acquisition of `id` on its purged entry `e` (whose shard counter
    /// is `last`): granted, or busy, as
    /// [`LockBackend::acquire`](coord_api::spi::LockBackend::acquire) says.
    fn grant(
        &self,
        ns: &Namespace,
        e: &mut Entry,
        last: &mut u64,
        id: &LeaseId,
        ttl: Duration,
        now: Instant,
    ) -> Result<Acquire> {
        let kind = id.kind.canonical();
        let busy = |until: Option<Instant>| {
            Ok(Acquire::Busy(Busy::new(
                until.map(|u| u.saturating_duration_since(now)),
            )))
        };
        match kind {
            LeaseKind::Exclusive | LeaseKind::Reentrant => {
                e.check_holds(id)?;
                if let Some(l) = e.leases.first_mut() {
                    if kind == LeaseKind::Reentrant
                        && l.kind == LeaseKind::Reentrant
                        && l.holder == id.holder
                    {
                        l.holds += 1;
                        l.until = now + ttl;
                        return Ok(Acquire::Granted(Grant::new(FencingToken(l.token), l.holds)));
                    }
                    return busy(Some(l.until));
                }
            }
            LeaseKind::Read => {
                // The same reader again is a new grant (below): checked like
                // any reader, its lease replaced with a new token, as on Redis.
                let is_writer = |l: &Lease| l.kind == LeaseKind::Write;
                let intent = e.intents.iter().map(|(_, u)| *u).max();
                if e.leases.iter().any(is_writer) || intent.is_some() {
                    // It can go in once the writer and every intent have
                    // ended: the latest of them.
                    let writer = e.leases.iter().filter(|l| is_writer(l)).map(|l| l.until);
                    return busy(writer.chain(intent).max());
                }
            }
            LeaseKind::Write => {
                if !e.leases.is_empty() {
                    // The writer asking again for the lease it holds waits
                    // for nothing: no intent (as on Redis), or readers
                    // would be kept out past its lease.
                    let own = |l: &Lease| l.kind == LeaseKind::Write && l.holder == id.holder;
                    if e.leases.iter().any(own) {
                        return busy(e.latest());
                    }
                    let until = now + ttl;
                    match e.intents.iter_mut().find(|(h, _)| *h == id.holder) {
                        Some((_, u)) => *u = until,
                        None => e.intents.push((id.holder.clone(), until)),
                    }
                    // The writer can go when the last lease in its way ends.
                    return busy(e.latest());
                }
                e.intents.retain(|(h, _)| *h != id.holder);
            }
            LeaseKind::Permit { limit } | LeaseKind::Permits { limit, .. } => {
                e.check_limit(id)?;
                // The same holder again replaces its lease: its own
                // permits are not in the way (as on Redis).
                let live: u64 = (e.leases.iter())
                    .filter(|l| l.holder != id.holder)
                    .map(|l| u64::from(l.holds))
                    .sum();
                if live + u64::from(kind.permits()) > u64::from(limit) {
                    return busy(e.earliest(|_| true));
                }
                e.limit = Some(limit);
            }
            // A kind added to the SPI that this store does not know yet.
            other => {
                return Err(Error::NotSupported {
                    operation: other.as_str(),
                    backend: format!("memory(ns={ns})"),
                });
            }
        }
        let token = self.key_token(last, now);
        // A semaphore's lease counts its permits in `holds`.
        let holds = kind.permits().max(1);
        let lease = Lease {
            holder: id.holder.clone(),
            kind,
            token,
            holds,
            until: now + ttl,
        };
        // Only a reader or a permit holder asking again gets here with a
        // live lease: the new grant replaces it (the SPI: a new token; one
        // lease per holder, as Redis keeps them).
        match e.leases.iter().position(|l| l.holder == id.holder) {
            Some(i) => e.leases[i] = lease,
            None => e.leases.push(lease),
        }
        Ok(Acquire::Granted(Grant::new(FencingToken(token), 1)))
    }

    /// [`LockBackend::acquire_all`](coord_api::spi::LockBackend::acquire_all)
    /// on `ns`: every key's shard locked at once, every key looked at, then
    /// every lease granted, or none.
    pub fn acquire_all(
        &self,
        ns: &Namespace,
        ids: &[LeaseId],
        ttl: Duration,
        now: Instant,
    ) -> Result<AcquireAll> {
        coord_api::spi::check_acquire_all(ids)?;
        if let Some(id) = ids.first() {
            check_ttl(id, ttl)?;
        }
        let keys: Vec<KeyRef<'_>> = ids
            .iter()
            .map(|id| KeyRef {
                ns,
                space: LockSpace::Lock,
                key: &id.key,
            })
            .collect();
        Ok(self.entries.update_all(&keys, Entry::is_empty, |locked| {
            for i in 0..ids.len() {
                let until = locked.update(i, |e, _| {
                    e.purge(now);
                    e.leases.first().map(|l| l.until)
                });
                if let Some(until) = until {
                    let busy = Busy::new(Some(until.saturating_duration_since(now)));
                    return AcquireAll::Busy { index: i, busy };
                }
            }
            let grants = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    locked.update(i, |e, last| {
                        let token = self.key_token(last, now);
                        e.leases.push(Lease {
                            holder: id.holder.clone(),
                            kind: LeaseKind::Exclusive,
                            token,
                            holds: 1,
                            until: now + ttl,
                        });
                        Grant::new(FencingToken(token), 1)
                    })
                })
                .collect();
            AcquireAll::Granted(grants)
        }))
    }

    /// [`LockBackend::extend`](coord_api::spi::LockBackend::extend) on `ns`.
    pub fn extend(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        now: Instant,
    ) -> Result<bool> {
        check_ttl(id, ttl)?;
        let key = KeyRef {
            ns,
            space: id.kind.space(),
            key: &id.key,
        };
        Ok(self.entries.update(&key, Entry::is_empty, |e, _| {
            e.purge(now);
            match e.find(id) {
                Some(i) => {
                    e.leases[i].until = now + ttl;
                    true
                }
                None => false,
            }
        }))
    }

    /// [`LockBackend::release`](coord_api::spi::LockBackend::release) on `ns`.
    pub fn release(&self, ns: &Namespace, id: &LeaseId, now: Instant) -> (Release, Freed) {
        let key = KeyRef {
            ns,
            space: id.kind.space(),
            key: &id.key,
        };
        self.entries.update(&key, Entry::is_empty, |e, _| {
            e.purge(now);
            let before = e.intents.len();
            if id.kind == LeaseKind::Write {
                e.intents.retain(|(h, _)| *h != id.holder);
            }
            let withdrew = e.intents.len() != before;
            let Some(i) = e.find(id) else {
                return (
                    Release::NotHeld,
                    if withdrew { Freed::Yes } else { Freed::No },
                );
            };
            let l = &mut e.leases[i];
            // Only a reentrant lease counts holds one release at a time (a
            // semaphore's counts its permits, all released together).
            if l.kind == LeaseKind::Reentrant && l.holds > 1 {
                l.holds -= 1;
                return (Release::Released { remaining: l.holds }, Freed::No);
            }
            e.leases.swap_remove(i);
            if e.leases.is_empty() {
                e.limit = None;
            }
            (Release::Released { remaining: 0 }, Freed::Yes)
        })
    }

    /// [`LockBackend::downgrade`](coord_api::spi::LockBackend::downgrade) on
    /// `ns`: the holder's live write lease becomes a read lease with a new
    /// token, in place.
    pub fn downgrade(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        now: Instant,
    ) -> Result<(Option<Grant>, Freed)> {
        check_ttl(id, ttl)?;
        if id.kind != LeaseKind::Write {
            return Err(Error::invalid(format!(
                "{} lease on {:?}: only a write lease downgrades",
                id.kind.as_str(),
                id.key.as_str()
            )));
        }
        let key = KeyRef {
            ns,
            space: LockSpace::RwLock,
            key: &id.key,
        };
        Ok(self.entries.update(&key, Entry::is_empty, |e, last| {
            e.purge(now);
            let Some(i) = e.find(id) else {
                return (None, Freed::No);
            };
            let token = self.key_token(last, now);
            let l = &mut e.leases[i];
            l.kind = LeaseKind::Read;
            l.token = token;
            l.until = now + ttl;
            (Some(Grant::new(FencingToken(token), 1)), Freed::Yes)
        }))
    }

    /// [`LockBackend::force_release`](coord_api::spi::LockBackend::force_release) on `ns`.
    pub fn force_release(
        &self,
        ns: &Namespace,
        space: LockSpace,
        key: &Key,
        now: Instant,
    ) -> usize {
        let key = KeyRef { ns, space, key };
        self.entries.update(&key, Entry::is_empty, |e, _| {
            e.purge(now);
            let n = e.leases.len();
            // Waiters keep their places: a force release ends leases.
            let queue = std::mem::take(&mut e.queue);
            *e = Entry::default();
            e.queue = queue;
            n
        })
    }

    /// [`LockBackend::inspect`](coord_api::spi::LockBackend::inspect) on `ns`.
    pub fn inspect(
        &self,
        ns: &Namespace,
        space: LockSpace,
        key: &Key,
        now: Instant,
    ) -> Vec<LeaseInfo> {
        let key = KeyRef { ns, space, key };
        self.entries
            .read(&key, |e| {
                let mut v: Vec<LeaseInfo> = e
                    .leases
                    .iter()
                    .filter(|l| l.live(now))
                    .map(|l| {
                        LeaseInfo::new(
                            l.kind,
                            l.holder.clone(),
                            FencingToken(l.token),
                            l.holds,
                            l.until - now,
                        )
                    })
                    .collect();
                v.sort_by_key(|i| i.token);
                v
            })
            .unwrap_or_default()
    }

    /// Removes the live lease of the key whose token is `token` (every
    /// hold of it), and nothing else: its holder and kind, or the tokens of
    /// the key's live leases. The key's counter is not touched, so its next
    /// grant draws a larger token.
    pub(crate) fn revoke(
        &self,
        ns: &Namespace,
        space: LockSpace,
        key: &Key,
        token: FencingToken,
        now: Instant,
    ) -> std::result::Result<(HolderId, LeaseKind), Vec<FencingToken>> {
        let key = KeyRef { ns, space, key };
        self.entries.update(&key, Entry::is_empty, |e, _| {
            e.purge(now);
            match e.leases.iter().position(|l| l.token == token.get()) {
                Some(i) => {
                    let l = e.leases.swap_remove(i);
                    if e.leases.is_empty() {
                        e.limit = None;
                    }
                    Ok((l.holder, l.kind))
                }
                None => {
                    let mut current: Vec<_> =
                        e.leases.iter().map(|l| FencingToken(l.token)).collect();
                    current.sort_unstable();
                    Err(current)
                }
            }
        })
    }

    /// Shows `visit` every live lease and writer intent of `ns` at `now`,
    /// one shard at a time.
    pub(crate) fn visit(&self, ns: &Namespace, now: Instant, visit: Visit<'_>) {
        self.entries.for_each(|k, e| {
            if k.ns == *ns {
                visit_entry(k.space, &k.key, e, now, &mut *visit);
            }
        });
    }

    /// Shows `visit` the live leases and writer intents of one key.
    pub(crate) fn visit_key(
        &self,
        ns: &Namespace,
        space: LockSpace,
        key: &Key,
        now: Instant,
        visit: Visit<'_>,
    ) {
        let key = KeyRef { ns, space, key };
        self.entries
            .read(&key, |e| visit_entry(space, key.key, e, now, visit));
    }

    /// The earliest instant after `after` at which anything on the key
    /// expires (lease or writer intent), by the table's clock; `None` when
    /// nothing will. (Expired entries stay until the key's next operation:
    /// asked again after they expired, this looks past them.)
    pub fn next_expiry(&self, key: &TableKey, after: Instant) -> Option<Instant> {
        self.entries
            .read(key, |e| {
                e.leases
                    .iter()
                    .map(|l| l.until)
                    .chain(e.intents.iter().map(|(_, u)| *u))
                    .chain(e.queue.iter().map(|(_, u)| *u))
                    .filter(|&at| at > after)
                    .min()
            })
            .flatten()
    }
}

/// The table key of `key` in `space` of `ns`.
pub fn table_key(ns: &Namespace, space: LockSpace, key: &Key) -> TableKey {
    TableKey {
        ns: ns.clone(),
        space,
        key: key.clone(),
    }
}

fn check_ttl(id: &LeaseId, ttl: Duration) -> Result<()> {
    coord_api::validate_ttl(&id.key, ttl)
}

/// `InvalidArgument` for a permit kind that admits nobody: a limit of 0, or
/// a count of 0 or above the limit.
fn check_permits(id: &LeaseId) -> Result<()> {
    let key = id.key.as_str();
    match id.kind {
        LeaseKind::Permit { limit: 0 } | LeaseKind::Permits { limit: 0, .. } => Err(
            Error::invalid(format!("semaphore {key:?} needs at least 1 permit, got 0")),
        ),
        LeaseKind::Permits { limit, count } if count == 0 || count > limit => {
            Err(Error::invalid(format!(
                "semaphore {key:?} has {limit} permits; asked for {count} at once (1..={limit})"
            )))
        }
        _ => Ok(()),
    }
}

/// The resource kind of a lock space.
pub(crate) fn kind_of(space: LockSpace) -> Option<ResourceKind> {
    match space {
        LockSpace::Lock => Some(ResourceKind::Lock),
        LockSpace::RwLock => Some(ResourceKind::RwLock),
        LockSpace::Semaphore => Some(ResourceKind::Semaphore),
        _ => None,
    }
}

fn visit_entry(space: LockSpace, key: &Key, e: &Entry, now: Instant, visit: Visit<'_>) {
    let Some(kind) = kind_of(space) else { return };
    let intents = e.intents.iter().filter(|(_, until)| *until > now);
    let queued = e.queue.iter().filter(|(_, until)| *until > now).count() as u32;
    let waiters = match space {
        LockSpace::RwLock => Some(intents.clone().count() as u32),
        _ => (queued > 0).then_some(queued),
    };
    let listed = |role, holder, token, holds, until| Listed {
        subscription: None,
        item: None,
        name: key,
        occurrence: None,
        role,
        holder,
        token,
        holds,
        since: None,
        until,
        waiters,
    };
    for l in e.leases.iter().filter(|l| l.live(now)) {
        let role = Role::Lock(l.kind);
        visit(
            kind,
            listed(role, &l.holder, Some(l.token), l.holds, l.until),
        );
    }
    for (holder, until) in intents {
        visit(kind, listed(Role::WriterIntent, holder, None, 1, *until));
    }
}
