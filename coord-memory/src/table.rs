//! The lease table: the whole lock-family state machine, synchronous and
//! behind a narrow API, so that loom can check it and the simulator's server
//! can host it. Time is passed in; expiry is lazy (an expired lease is
//! dropped by the next operation on its key) and notification is the async
//! layer's job. A lease granted *kept* (auto-extension in process, see
//! [`InProcessLeases::acquire_kept`](coord_api::InProcessLeases::acquire_kept))
//! does not expire: it lasts until released or force released, and nothing
//! about it needs the time, so a key holding only kept leases is served
//! without a clock read.

use std::time::Duration;

use coord_api::{
    Acquire, Busy, Clock, Error, FencingToken, Grant, HolderId, Holding, Instant, Key, LeaseFamily,
    LeaseId, LeaseInfo, LeaseKind, Namespace, Release, Result,
};

use crate::sync::{AtomicU64, Lookup, Map, Ordering};

/// A key in the table: namespace, family and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    /// The namespace.
    pub ns: Namespace,
    /// The family (each has its own key space).
    pub family: LeaseFamily,
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
    family: LeaseFamily,
    key: &'a Key,
}

impl<'a> From<&'a TableKey> for KeyRef<'a> {
    fn from(k: &'a TableKey) -> Self {
        KeyRef {
            ns: &k.ns,
            family: k.family,
            key: &k.key,
        }
    }
}

impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ns.hash(state);
        self.family.hash(state);
        self.key.hash(state);
    }
}

impl Lookup<TableKey> for KeyRef<'_> {
    fn matches(&self, k: &TableKey) -> bool {
        k.family == self.family && k.key == *self.key && k.ns == *self.ns
    }
    fn to_key(&self) -> TableKey {
        table_key(self.ns, self.family, self.key)
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
    holds: u32,
    expiry: Expiry,
}

/// When a lease ends by itself.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// At the instant, unless extended.
    At(Instant),
    /// Never: a kept lease lasts until released, as if renewed for `ttl` at
    /// every instant.
    Kept { ttl: Duration },
}

impl Lease {
    /// When it expires; `None` for a kept lease.
    fn until(&self) -> Option<Instant> {
        match self.expiry {
            Expiry::At(until) => Some(until),
            Expiry::Kept { .. } => None,
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.until().is_none_or(|until| until > now)
    }

    /// Extends it for `ttl` from now (a kept lease stays kept).
    fn extend(&mut self, now: &mut Now, ttl: Duration) {
        if let Expiry::At(until) = &mut self.expiry {
            *until = now.get() + ttl;
        }
    }
}

/// The server's time for one operation: given, or read from its clock at
/// most once and only when the operation needs it (nothing about a kept
/// lease does).
enum Now<'a> {
    At(Instant),
    Lazy(&'a dyn Clock, Option<Instant>),
}

impl Now<'_> {
    fn get(&mut self) -> Instant {
        match self {
            Now::At(now) => *now,
            Now::Lazy(clock, read) => *read.get_or_insert_with(|| clock.now()),
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    leases: Vec<Lease>,
    /// Waiting writers of a read-write lock, until when their intent lasts.
    intents: Vec<(HolderId, Instant)>,
    /// A semaphore's permit count, fixed while permits are live.
    limit: Option<u32>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.intents.is_empty()
    }

    /// Drops what has expired. A key with nothing that can expire (no
    /// lease, or kept ones only, and no writer intent) reads no clock.
    fn purge(&mut self, now: &mut Now) {
        if self.leases.iter().any(|l| l.until().is_some()) || !self.intents.is_empty() {
            let now = now.get();
            // Usually nothing has expired: look before rewriting the vectors.
            if self.leases.iter().any(|l| !l.live(now)) {
                self.leases.retain(|l| l.live(now));
            }
            if self.intents.iter().any(|(_, until)| *until <= now) {
                self.intents.retain(|(_, until)| *until > now);
            }
        }
        if self.leases.is_empty() {
            self.limit = None;
        }
    }

    fn find(&mut self, id: &LeaseId) -> Option<usize> {
        self.leases
            .iter()
            .position(|l| l.holder == id.holder && l.kind == id.kind)
    }

    /// When the first lease in the way (`blocking`) expires; `None` when
    /// every one of them is kept (only a release frees them).
    fn earliest(&self, blocking: impl Fn(&Lease) -> bool) -> Option<Instant> {
        self.leases
            .iter()
            .filter(|l| blocking(l))
            .filter_map(Lease::until)
            .min()
    }

    /// When the last lease expires; `None` when any is kept.
    fn latest(&self) -> Option<Instant> {
        let untils = self.leases.iter().map(Lease::until);
        untils
            .clone()
            .all(|u| u.is_some())
            .then(|| untils.flatten().max())?
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

/// The lock family's state for every namespace of one store.
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
    #[cfg(feature = "broken")]
    bug: Option<crate::Bug>,
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
            #[cfg(feature = "broken")]
            bug: None,
        }
    }

    /// An empty table with a deliberate bug (feature `broken`, tests only).
    #[cfg(feature = "broken")]
    pub fn with_bug(clock: &dyn Clock, bug: crate::Bug) -> LeaseTable {
        LeaseTable {
            bug: Some(bug),
            ..LeaseTable::new(clock)
        }
    }

    #[cfg(feature = "broken")]
    pub(crate) fn has_bug(&self, bug: crate::Bug) -> bool {
        self.bug == Some(bug)
    }

    /// The server's wall clock at `now`, in µs since the Unix epoch.
    pub(crate) fn wall_us(&self, now: Instant) -> u64 {
        self.epoch_wall_us + now.saturating_duration_since(self.epoch_at).as_micros() as u64
    }

    /// The next fencing token of a lock-family key whose shard's counter is
    /// `last` (see [`Map`]): changed under the shard's lock, so no atomic
    /// operation, and strictly increasing for each of the shard's keys. Its
    /// floor is the wall clock when the store was created: a store forgets
    /// its counters only by being created anew, and then starts above every
    /// token of the one before (unless that one granted more than a token
    /// per microsecond of its life, on one shard).
    fn key_token(&self, last: &mut u64) -> u64 {
        *last = self.token_after(*last, self.epoch_wall_us);
        *last
    }

    /// The token after `last`, floored at `wall_us` (see
    /// [`FencingToken::next_after_micros`]).
    fn token_after(&self, last: u64, wall_us: u64) -> u64 {
        #[cfg(feature = "broken")]
        if self.has_bug(crate::Bug::NoTokenFloor) {
            return last + 1;
        }
        FencingToken::next_after_micros(last, wall_us).get()
    }

    /// The next fencing token of this store's elections and jobs (one
    /// counter for all their keys), floored at the wall clock at `now`.
    pub(crate) fn next_token(&self, now: Instant) -> u64 {
        let wall_us = self.wall_us(now);
        let mut last = self.last_token.load(Ordering::SeqCst);
        loop {
            let next = self.token_after(last, wall_us);
            match self
                .last_token
                .compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// [`LeaseBackend::acquire`](coord_api::LeaseBackend::acquire) on `ns`,
    /// decided at `now` by the server's clock.
    pub fn acquire(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        now: Instant,
    ) -> Result<Acquire> {
        self.grant(ns, id, ttl, Now::At(now), false)
    }

    /// [`InProcessLeases::acquire_kept`](coord_api::InProcessLeases::acquire_kept)
    /// on `ns`: a new lease is kept. Reads `clock` only if the key holds
    /// something that can expire.
    pub fn acquire_kept(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        clock: &dyn Clock,
    ) -> Result<Acquire> {
        self.grant(ns, id, ttl, Now::Lazy(clock, None), true)
    }

    fn grant(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        mut now: Now,
        keep: bool,
    ) -> Result<Acquire> {
        check_ttl(id, ttl)?;
        if let LeaseKind::Permit { limit: 0 } = id.kind {
            return Err(Error::invalid(format!(
                "semaphore {:?} needs at least 1 permit, got 0",
                id.key.as_str()
            )));
        }
        let key = KeyRef {
            ns,
            family: id.kind.family(),
            key: &id.key,
        };
        self.entries.update(&key, Entry::is_empty, |e, last| {
            e.purge(&mut now);
            let busy = |now: &mut Now, until: Option<Instant>| {
                #[cfg(feature = "broken")]
                let until = until.filter(|_| !self.has_bug(crate::Bug::NoExpiryWake));
                Ok(Acquire::Busy(Busy {
                    retry_in: until.map(|u| u.saturating_duration_since(now.get())),
                }))
            };
            match id.kind {
                LeaseKind::Exclusive | LeaseKind::Reentrant => {
                    if let Some(l) = e.leases.first_mut() {
                        if id.kind == LeaseKind::Reentrant
                            && l.kind == LeaseKind::Reentrant
                            && l.holder == id.holder
                        {
                            l.holds += 1;
                            l.extend(&mut now, ttl);
                            return Ok(Acquire::Granted(Grant {
                                token: FencingToken(l.token),
                                holds: l.holds,
                            }));
                        }
                        return busy(&mut now, l.until());
                    }
                }
                LeaseKind::Read => {
                    if let Some(i) = e.find(id) {
                        // The same reader again: refresh, same token.
                        let l = &mut e.leases[i];
                        l.extend(&mut now, ttl);
                        return Ok(Acquire::Granted(Grant {
                            token: FencingToken(l.token),
                            holds: l.holds,
                        }));
                    }
                    let is_writer = |l: &Lease| l.kind == LeaseKind::Write;
                    let intent = e.intents.iter().map(|(_, u)| *u).min();
                    if e.leases.iter().any(is_writer) || intent.is_some() {
                        let writer = e.earliest(is_writer);
                        return busy(&mut now, writer.into_iter().chain(intent).min());
                    }
                }
                LeaseKind::Write => {
                    if !e.leases.is_empty() {
                        let until = now.get() + ttl;
                        match e.intents.iter_mut().find(|(h, _)| *h == id.holder) {
                            Some((_, u)) => *u = until,
                            None => e.intents.push((id.holder.clone(), until)),
                        }
                        // The writer can go when the last lease in its way ends.
                        return busy(&mut now, e.latest());
                    }
                    e.intents.retain(|(h, _)| *h != id.holder);
                }
                LeaseKind::Permit { limit } => {
                    if let Some(fixed) = e.limit
                        && fixed != limit
                    {
                        return Err(Error::invalid(format!(
                            "semaphore {:?} has {fixed} permits; asked with {limit}",
                            id.key.as_str()
                        )));
                    }
                    if e.leases.len() >= limit as usize {
                        return busy(&mut now, e.earliest(|_| true));
                    }
                    e.limit = Some(limit);
                }
            }
            let token = self.key_token(last);
            let expiry = match keep {
                true => Expiry::Kept { ttl },
                false => Expiry::At(now.get() + ttl),
            };
            e.leases.push(Lease {
                holder: id.holder.clone(),
                kind: id.kind,
                token,
                holds: 1,
                expiry,
            });
            Ok(Acquire::Granted(Grant {
                token: FencingToken(token),
                holds: 1,
            }))
        })
    }

    /// [`LeaseBackend::extend`](coord_api::LeaseBackend::extend) on `ns`.
    pub fn extend(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        ttl: Duration,
        clock: &dyn Clock,
    ) -> Result<bool> {
        check_ttl(id, ttl)?;
        let mut now = Now::Lazy(clock, None);
        let key = KeyRef {
            ns,
            family: id.kind.family(),
            key: &id.key,
        };
        Ok(self.entries.update(&key, Entry::is_empty, |e, _| {
            e.purge(&mut now);
            match e.find(id) {
                Some(i) => {
                    e.leases[i].extend(&mut now, ttl);
                    true
                }
                #[cfg(feature = "broken")]
                None if self.has_bug(crate::Bug::RenewAfterTakeover) => !e.leases.is_empty(),
                None => false,
            }
        }))
    }

    /// [`LeaseBackend::release`](coord_api::LeaseBackend::release) on `ns`.
    /// Reads `clock` only if the key holds something that can expire (a kept
    /// lease cannot).
    pub fn release(&self, ns: &Namespace, id: &LeaseId, clock: &dyn Clock) -> (Release, Freed) {
        let key = KeyRef {
            ns,
            family: id.kind.family(),
            key: &id.key,
        };
        self.entries.update(&key, Entry::is_empty, |e, _| {
            e.purge(&mut Now::Lazy(clock, None));
            let before = e.intents.len();
            if id.kind == LeaseKind::Write {
                e.intents.retain(|(h, _)| *h != id.holder);
            }
            let withdrew = e.intents.len() != before;
            #[cfg(feature = "broken")]
            let found = if self.has_bug(crate::Bug::ReleaseIgnoresHolder) {
                e.leases.iter().position(|l| l.kind == id.kind)
            } else {
                e.find(id)
            };
            #[cfg(not(feature = "broken"))]
            let found = e.find(id);
            let Some(i) = found else {
                return (
                    Release::NotHeld,
                    if withdrew { Freed::Yes } else { Freed::No },
                );
            };
            let l = &mut e.leases[i];
            if l.holds > 1 {
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

    /// [`InProcessLeases::holding`](coord_api::InProcessLeases::holding) on
    /// `ns`: whether the lease `id` granted with `token` is live now (a kept
    /// one reads no clock).
    pub fn holding(
        &self,
        ns: &Namespace,
        id: &LeaseId,
        token: FencingToken,
        clock: &dyn Clock,
    ) -> Holding {
        let key = KeyRef {
            ns,
            family: id.kind.family(),
            key: &id.key,
        };
        self.entries
            .read(&key, |e| {
                let l = e.leases.iter().find(|l| {
                    l.holder == id.holder && l.kind == id.kind && l.token == token.get()
                })?;
                match l.until() {
                    None => Some(Holding::UntilReleased),
                    Some(until) if until > clock.now() => Some(Holding::Until(until)),
                    Some(_) => None,
                }
            })
            .flatten()
            .unwrap_or(Holding::NotHeld)
    }

    /// [`LeaseBackend::force_release`](coord_api::LeaseBackend::force_release) on `ns`.
    pub fn force_release(
        &self,
        ns: &Namespace,
        family: LeaseFamily,
        key: &Key,
        clock: &dyn Clock,
    ) -> usize {
        self.entries
            .update(&KeyRef { ns, family, key }, Entry::is_empty, |e, _| {
                e.purge(&mut Now::Lazy(clock, None));
                let n = e.leases.len();
                *e = Entry::default();
                n
            })
    }

    /// [`LeaseBackend::inspect`](coord_api::LeaseBackend::inspect) on `ns`.
    pub fn inspect(
        &self,
        ns: &Namespace,
        family: LeaseFamily,
        key: &Key,
        clock: &dyn Clock,
    ) -> Vec<LeaseInfo> {
        let now = clock.now();
        self.entries
            .read(&KeyRef { ns, family, key }, |e| {
                let mut v: Vec<LeaseInfo> = e
                    .leases
                    .iter()
                    .filter(|l| l.live(now))
                    .map(|l| LeaseInfo {
                        kind: l.kind,
                        holder: l.holder.clone(),
                        token: FencingToken(l.token),
                        holds: l.holds,
                        expires_in: match l.expiry {
                            Expiry::At(until) => until - now,
                            Expiry::Kept { ttl } => ttl,
                        },
                    })
                    .collect();
                v.sort_by_key(|i| i.token);
                v
            })
            .unwrap_or_default()
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
                    .filter_map(Lease::until)
                    .chain(e.intents.iter().map(|(_, u)| *u))
                    .filter(|&at| at > after)
                    .min()
            })
            .flatten()
    }
}

/// The table key of `key` in `family` of `ns`.
pub fn table_key(ns: &Namespace, family: LeaseFamily, key: &Key) -> TableKey {
    TableKey {
        ns: ns.clone(),
        family,
        key: key.clone(),
    }
}

fn check_ttl(id: &LeaseId, ttl: Duration) -> Result<()> {
    coord_api::validate_ttl(&id.key, ttl)
}
