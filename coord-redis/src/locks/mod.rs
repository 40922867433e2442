//! The lock family on Redis ([`LockBackend`]): exclusive and reentrant locks
//! (`lock.lua`), read-write locks (`rwlock.lua`) and semaphores
//! (`semaphore.lua`), several locks at once (`multi.lua`, in `multi`),
//! each script after the shared prelude (the rwlock and
//! semaphore scripts also after `lua/deadlines.lua`). One EVALSHA per
//! operation; a release or force release PUBLISHes on the key's channel,
//! expiry publishes nothing (waiters also wake at the `Busy::retry_in` the
//! refusal carried).
//!
//! # Key layout
//!
//! All keys of one lock, read-write lock or semaphore share the hash tag
//! `{<ns>:<space>:<key>}` (space `lock`, `rwlock` or `semaphore`), so they
//! live in one Redis Cluster slot:
//!
//! ```text
//! coord:{<ns>:lock:<key>}:l        the lease: 'kind|holds|token|holder', PX = its TTL
//! coord:{<ns>:lock:<key>}:t        token counter, kept an hour past the lease
//! coord:{<ns>:rwlock:<key>}:w      writer hash {holder, token}, PEXPIRE = its lease
//! coord:{<ns>:rwlock:<key>}:r      readers zset: holder -> deadline (server ms)
//! coord:{<ns>:rwlock:<key>}:s      reader tokens hash: holder -> token
//! coord:{<ns>:rwlock:<key>}:i      writer intents zset: holder -> deadline
//! coord:{<ns>:rwlock:<key>}:t      token counter
//! coord:{<ns>:semaphore:<key>}:p   permit leases zset: holder -> deadline
//! coord:{<ns>:semaphore:<key>}:s   permit tokens hash: holder -> token
//! coord:{<ns>:semaphore:<key>}:n   the limit the live permits were granted with
//! coord:{<ns>:semaphore:<key>}:t   token counter
//! coord:{<ns>:semaphore:<key>}:k   permit counts hash: holder -> permits, for
//!                                  a lease of several (absent: one)
//! coord:{<ns>:semaphore:<key>}:w   a waiter for several permits was refused
//!                                  (PX one TTL): releases then wake every waiter
//! coord:{<ns>:<space>:<key>}:c     channel: released / freed / forced
//! coord:{<ns>:<space>:<key>}:q, :d  a fair lock's or semaphore's waiters
//!                                  (see `fair`)
//! ```
//!
//! Sets and hashes expire with their latest deadline and are deleted when
//! empty; a token counter lives an hour past the lease it was drawn for
//! (`LOCK_COUNTER_KEEP_MS` in the prelude), so an unused key leaves nothing
//! behind after that.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Error, HolderId, Key, Namespace, Result,
    spi::{
        Acquire, AcquireAll, Backend, Busy, Grant, LeaseId, LeaseInfo, LeaseKind, LockBackend,
        LockCapabilities, LockSpace, Release, Watch, too_many_holds,
    },
};
use redis::{Script, Value};
use tracing::Instrument;

pub(crate) mod multi;

use crate::{
    RedisBackend,
    eval::{self, Eval, Outcome, Traced, count, holder_len, millis, script, token, ttl_ms},
    keys::Names,
    pubsub::Wake,
};

pub(crate) mod fair;

pub(crate) static LOCK: LazyLock<Script> = script!("locks/fair.lua", "locks/lock.lua");
pub(crate) static RWLOCK: LazyLock<Script> = script!("lua/deadlines.lua", "locks/rwlock.lua");
pub(crate) static SEMAPHORE: LazyLock<Script> =
    script!("lua/deadlines.lua", "locks/fair.lua", "locks/semaphore.lua");

/// The script of `space`.
fn script(space: LockSpace) -> &'static Script {
    match space {
        LockSpace::Lock => &LOCK,
        LockSpace::RwLock => &RWLOCK,
        LockSpace::Semaphore => &SEMAPHORE,
        _ => unreachable!("a key space this backend does not know is refused first (known_space)"),
    }
}

/// The key parts of `space`, in script order (the channel is `c`).
fn parts(space: LockSpace) -> &'static [char] {
    match space {
        LockSpace::Lock => &['l', 't'],
        LockSpace::RwLock => &['w', 'r', 's', 'i', 't'],
        LockSpace::Semaphore => &['p', 's', 'n', 't', 'k', 'w'],
        _ => unreachable!("a key space this backend does not know is refused first (known_space)"),
    }
}

/// The names of `key` in `space`.
fn names(ns: &Namespace, space: LockSpace, key: &Key) -> Names {
    Names::new(ns, &[space.as_str(), key.as_str()], &[])
}

/// The keys an operation other than `acquire` and `release` passes: the
/// lock script's other operations touch only the lease (every key passed
/// costs the server time); the other scripts' take every key.
pub(crate) fn besides_acquire(space: LockSpace) -> &'static [char] {
    match space {
        LockSpace::Lock => &['l'],
        _ => parts(space),
    }
}

/// The keys a release passes: a lock's lease, then its fair queue and
/// places (`fair.rs`), read when the lease was granted from the queue; the
/// other scripts' every key.
fn release_parts(space: LockSpace) -> &'static [char] {
    match space {
        LockSpace::Lock => &['l', 'q', 'd'],
        _ => parts(space),
    }
}

/// Appends the kind argument the scripts take.
fn kind_arg(eval: &mut Eval, kind: LeaseKind) {
    match kind {
        LeaseKind::Exclusive => eval.arg("e"),
        LeaseKind::Reentrant | LeaseKind::Read => eval.arg("r"),
        LeaseKind::Write => eval.arg("w"),
        LeaseKind::Permit { limit } => eval.arg(limit),
        LeaseKind::Permits { limit, count } => eval.arg(limit).arg(count),
        _ => unreachable!("a lease kind this backend does not know is refused first (known_kind)"),
    };
}

/// An acquire reply as `[status, token or retry ms or stored limit, holds]`:
/// an integer is a fresh lock grant (its token, one hold); arrays are
/// `[1, token, holds]`, `[0, retry ms]`, `[-1, stored limit]` or `[-2,
/// holds]` (a re-entry at `MAX_REENTRANT_HOLDS`).
fn acquire_reply(v: &Value) -> Option<[i64; 3]> {
    match v {
        Value::Int(tok) => Some([1, *tok, 1]),
        Value::Array(a) => match a.as_slice() {
            [Value::Int(1), Value::Int(tok), Value::Int(holds)] => Some([1, *tok, *holds]),
            [Value::Int(s), Value::Int(x)] if *s <= 0 => Some([*s, *x, 0]),
            _ => None,
        },
        _ => None,
    }
}

/// The trace of an acquire reply.
fn acquire_outcome(v: &Value) -> (&'static str, Option<u64>) {
    match acquire_reply(v) {
        Some([1, tok, _]) => ("granted", Some(token(tok).get())),
        Some([0, _, _]) => ("busy", None),
        _ => ("refused", None),
    }
}

/// The kind a stored lease row names, in `space` (`limit` and the lease's
/// `holds`, its permits, for a semaphore's).
pub(crate) fn stored_kind(
    space: LockSpace,
    kind: &str,
    limit: i64,
    holds: i64,
) -> Option<LeaseKind> {
    Some(match (space, kind) {
        (LockSpace::Lock, "e") => LeaseKind::Exclusive,
        (LockSpace::Lock, "r") => LeaseKind::Reentrant,
        (LockSpace::RwLock, "r") => LeaseKind::Read,
        (LockSpace::RwLock, "w") => LeaseKind::Write,
        (LockSpace::Semaphore, "p") => LeaseKind::Permits {
            limit: count(limit, 0),
            count: count(holds, 1),
        }
        .canonical(),
        _ => return None,
    })
}

/// `op` of `space`'s script on `key`, passing the first `keys` of its keys:
/// the EVALSHA with the keys and the operation written, and the names (to
/// write the channel with).
pub(crate) fn lock_eval(
    ns: &Namespace,
    space: LockSpace,
    key: &Key,
    keys: &[char],
    op: &'static str,
    holder: Option<&HolderId>,
) -> (Eval, Names) {
    let mut names = names(ns, space, key);
    // The keys, the channel; op, holder, ttl, kind.
    let bytes = (keys.len() + 1) * names.len() + holder_len(holder) + 32;
    let mut eval = Eval::new(script(space), keys.len(), 5, bytes);
    for p in keys {
        names.write(&mut eval, *p);
    }
    eval.arg(op);
    (eval, names)
}

impl RedisBackend {
    /// `NotSupported` for a lease kind this backend does not know (a kind
    /// added to the SPI after it was written); every lease operation asks
    /// first.
    fn known_kind(&self, kind: LeaseKind) -> Result<()> {
        match kind {
            LeaseKind::Exclusive
            | LeaseKind::Reentrant
            | LeaseKind::Read
            | LeaseKind::Write
            | LeaseKind::Permit { .. }
            | LeaseKind::Permits { .. } => self.known_space(kind.space()),
            other => Err(Error::NotSupported {
                operation: other.as_str(),
                backend: self.to_string(),
            }),
        }
    }

    /// `NotSupported` for a key space this backend does not know; every
    /// operation on a space asks first.
    fn known_space(&self, space: LockSpace) -> Result<()> {
        match space {
            LockSpace::Lock | LockSpace::RwLock | LockSpace::Semaphore => Ok(()),
            other => Err(Error::NotSupported {
                operation: other.as_str(),
                backend: self.to_string(),
            }),
        }
    }

    /// A watch on the channel of `call`'s key in `space`, woken as `wake`
    /// says.
    async fn watch(
        &self,
        space: LockSpace,
        call: Traced<'_>,
        wake: Wake,
    ) -> Result<Box<dyn Watch>> {
        let channel = names(self.namespace(), space, call.key).name('c');
        let span = self.span(&call);
        let watch = self
            .hub()
            .subscribe_with(channel, wake)
            .instrument(span)
            .await?;
        Ok(Box::new(watch))
    }

    /// Runs `op` on a lease of `lease`'s space with what `args` appends after
    /// the operation.
    async fn lease_call<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        lease: &LeaseId,
        keys: &[char],
        args: impl FnOnce(&mut Eval, &mut Names),
        outcome: Outcome<T>,
    ) -> Result<T> {
        self.known_kind(lease.kind)?;
        let space = lease.kind.space();
        let (mut eval, mut names) = lock_eval(
            self.namespace(),
            space,
            &lease.key,
            keys,
            op,
            Some(&lease.holder),
        );
        args(&mut eval, &mut names);
        let call = Traced::new(op, space.as_str(), &lease.key).by(&lease.holder);
        self.eval(call, &eval, outcome).await
    }
}

/// `InvalidArgument` for a permit kind that admits nobody.
fn check_permits(lease: &LeaseId) -> Result<()> {
    let key = lease.key.as_str();
    match lease.kind {
        LeaseKind::Permit { limit: 0 } | LeaseKind::Permits { limit: 0, .. } => {
            Err(Error::invalid(format!(
                "semaphore {key:?}: a permit limit of 0 admits nobody"
            )))
        }
        LeaseKind::Permits { limit, count } if count == 0 || count > limit => {
            Err(Error::invalid(format!(
                "semaphore {key:?} has {limit} permits; asked for {count} at once (1..={limit})"
            )))
        }
        _ => Ok(()),
    }
}

impl RedisBackend {
    /// The answer an acquire `reply` (see [`acquire_reply`]) gives `lease`.
    fn acquired(&self, lease: &LeaseId, reply: Value) -> Result<Acquire> {
        let space = lease.kind.space();
        match acquire_reply(&reply) {
            Some([1, tok, holds]) => Ok(Acquire::Granted(Grant::new(token(tok), count(holds, 1)))),
            Some([0, retry_ms, _]) => Ok(Acquire::Busy(Busy::new(millis(retry_ms)))),
            Some([-2, _, _]) => Err(too_many_holds(&lease.key)),
            Some([-1, stored, _]) => Err(Error::invalid(format!(
                "semaphore {:?} has live permits granted with limit {stored}; asked with limit {}",
                lease.key.as_str(),
                lease.kind.permit_limit().unwrap_or(0)
            ))),
            _ => Err(self.unexpected(Traced::new("acquire", space.as_str(), &lease.key), reply)),
        }
    }
}

#[async_trait]
impl LockBackend for RedisBackend {
    fn capabilities(&self) -> LockCapabilities {
        let mut caps = LockCapabilities::all();
        // TTL expiry publishes nothing; waiters wake at `Busy::retry_in`.
        caps.expiry_notifications = false;
        // On a cluster several locks live in several slots: no one step.
        caps.acquire_all = !self.is_cluster();
        caps
    }

    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        check_permits(lease)?;
        self.known_kind(lease.kind)?;
        let space = lease.kind.space();
        let ttl = ttl_ms(&lease.key, ttl)?;
        // The lock script answers a fresh grant with its token alone;
        // everything else is an array.
        let reply: Value = self
            .lease_call(
                "acquire",
                lease,
                parts(space),
                |eval, names| {
                    if space != LockSpace::Lock {
                        names.write(eval, 'c');
                    }
                    eval.holder(&lease.holder).arg(ttl);
                    kind_arg(eval, lease.kind);
                },
                acquire_outcome,
            )
            .await?;
        self.acquired(lease, reply)
    }

    async fn acquire_queued(
        &self,
        lease: &LeaseId,
        ttl: Duration,
        waiter_ttl: Duration,
        enqueue: bool,
    ) -> Result<Acquire> {
        check_permits(lease)?;
        self.known_kind(lease.kind)?;
        let ttl = ttl_ms(&lease.key, ttl)?;
        let eval = fair::queued_eval(self.namespace(), lease, ttl, waiter_ttl, enqueue)?;
        let space = lease.kind.space();
        let call = Traced::new("acquire_queued", space.as_str(), &lease.key).by(&lease.holder);
        let reply: Value = self.eval(call, &eval, acquire_outcome).await?;
        self.acquired(lease, reply)
    }

    async fn leave_queue(&self, lease: &LeaseId) -> Result<bool> {
        self.known_kind(lease.kind)?;
        let eval = fair::leave_eval(self.namespace(), lease)?;
        let space = lease.kind.space();
        let call = Traced::new("leave_queue", space.as_str(), &lease.key).by(&lease.holder);
        let had: i64 = self.eval(call, &eval, eval::done).await?;
        Ok(had == 1)
    }

    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        self.known_kind(lease.kind)?;
        let space = lease.kind.space();
        let ttl = ttl_ms(&lease.key, ttl)?;
        let held: i64 = self
            .lease_call(
                "extend",
                lease,
                besides_acquire(space),
                |eval, names| {
                    // The lock script takes no channel.
                    if space != LockSpace::Lock {
                        names.write(eval, 'c');
                    }
                    eval.holder(&lease.holder).arg(ttl);
                    kind_arg(eval, lease.kind);
                },
                eval::done,
            )
            .await?;
        Ok(held == 1)
    }

    async fn release(&self, lease: &LeaseId) -> Result<Release> {
        self.known_kind(lease.kind)?;
        let space = lease.kind.space();
        let remaining: i64 = self
            .lease_call(
                "release",
                lease,
                release_parts(space),
                |eval, names| {
                    if space == LockSpace::Lock {
                        eval.holder(&lease.holder);
                        names.write(eval, 'c');
                        kind_arg(eval, lease.kind);
                    } else {
                        names.write(eval, 'c');
                        eval.holder(&lease.holder).arg(0);
                        kind_arg(eval, lease.kind);
                    }
                },
                |r: &i64| (if *r >= 0 { "ok" } else { "not_held" }, None),
            )
            .await?;
        Ok(match u32::try_from(remaining) {
            Ok(remaining) => Release::Released { remaining },
            Err(_) => Release::NotHeld,
        })
    }

    async fn downgrade(&self, lease: &LeaseId, ttl: Duration) -> Result<Option<Grant>> {
        if lease.kind != LeaseKind::Write {
            return Err(Error::invalid(format!(
                "{} lease on {:?}: only a write lease downgrades",
                lease.kind.as_str(),
                lease.key.as_str()
            )));
        }
        let ttl = ttl_ms(&lease.key, ttl)?;
        let reply: Vec<i64> = self
            .lease_call(
                "downgrade",
                lease,
                parts(LockSpace::RwLock),
                |eval, names| {
                    names.write(eval, 'c');
                    eval.holder(&lease.holder).arg(ttl);
                    kind_arg(eval, lease.kind);
                },
                |r: &Vec<i64>| match r.as_slice() {
                    [1, tok] => ("granted", Some(token(*tok).get())),
                    _ => ("not_held", None),
                },
            )
            .await?;
        match reply.as_slice() {
            [1, tok] => Ok(Some(Grant::new(token(*tok), 1))),
            [0] => Ok(None),
            _ => Err(self.unexpected(
                Traced::new("downgrade", LockSpace::RwLock.as_str(), &lease.key),
                &reply,
            )),
        }
    }

    async fn force_release(&self, space: LockSpace, key: &Key) -> Result<usize> {
        self.known_space(space)?;
        let (mut eval, mut names) = lock_eval(
            self.namespace(),
            space,
            key,
            besides_acquire(space),
            "force",
            None,
        );
        names.write(&mut eval, 'c');
        let n: i64 = self
            .eval(Traced::new("force", space.as_str(), key), &eval, eval::ok)
            .await?;
        Ok(n.max(0) as usize)
    }

    async fn inspect(&self, space: LockSpace, key: &Key) -> Result<Vec<LeaseInfo>> {
        self.known_space(space)?;
        let (eval, _) = lock_eval(
            self.namespace(),
            space,
            key,
            besides_acquire(space),
            "inspect",
            None,
        );
        type Row = (String, String, i64, i64, i64, i64);
        let call = Traced::new("inspect", space.as_str(), key);
        let rows: Vec<Row> = self.eval(call, &eval, eval::ok).await?;
        rows.into_iter()
            .map(|(kind, holder, tok, holds, left_ms, limit)| {
                let Some(kind) = stored_kind(space, &kind, limit, holds) else {
                    return Err(Error::backend(
                        self,
                        format!("unknown lease kind {kind:?} stored for {:?}", key.as_str()),
                    ));
                };
                Ok(LeaseInfo::new(
                    kind,
                    self.stored_holder(key, &holder)?,
                    token(tok),
                    count(holds, 1),
                    millis(left_ms).unwrap_or(Duration::ZERO),
                ))
            })
            .collect()
    }

    async fn subscribe(&self, space: LockSpace, key: &Key) -> Result<Box<dyn Watch>> {
        self.known_space(space)?;
        // A release frees room for one more exclusive holder or permit:
        // wake one waiter per release. Readers all go in together.
        let wake = match space {
            LockSpace::Lock | LockSpace::Semaphore => Wake::One,
            LockSpace::RwLock => Wake::All,
            _ => unreachable!(
                "a key space this backend does not know is refused first (known_space)"
            ),
        };
        let call = Traced::new("subscribe", space.as_str(), key);
        self.watch(space, call, wake).await
    }

    async fn subscribe_queued(&self, lease: &LeaseId) -> Result<Box<dyn Watch>> {
        self.known_kind(lease.kind)?;
        let space = lease.kind.space();
        if space != LockSpace::Lock {
            // A fair semaphore's releases wake every waiter (fair.lua).
            return self.subscribe(space, &lease.key).await;
        }
        // The release of a lease granted from the queue names the waiter it
        // leaves at the head (lock.lua), as `Eval::holder` spells it.
        let holder = lease.holder.to_string().into_bytes().into_boxed_slice();
        let call = Traced::new("subscribe_queued", space.as_str(), &lease.key).by(&lease.holder);
        self.watch(space, call, Wake::Queued(holder)).await
    }

    async fn acquire_all(&self, leases: &[LeaseId], ttl: Duration) -> Result<AcquireAll> {
        self.acquire_all_leases(leases, ttl).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{PREFIX, hash_tag};

    const SPACES: [LockSpace; 3] = [LockSpace::Lock, LockSpace::RwLock, LockSpace::Semaphore];

    /// Every name of `key` in `space`: its keys, then its channel.
    fn layout(ns: &Namespace, space: LockSpace, key: &Key) -> Vec<String> {
        let mut n = names(ns, space, key);
        let mut all: Vec<String> = parts(space).iter().map(|p| n.name(*p)).collect();
        all.push(n.name('c'));
        all
    }

    #[test]
    fn one_slot_per_primitive() {
        let ns = Namespace::new("ns").unwrap();
        for key in ["a", "x}y", "{weird}", "ü/1"] {
            let key = Key::new(key).unwrap();
            for space in SPACES {
                let l = layout(&ns, space, &key);
                let tag = hash_tag(&l[0]);
                assert!(tag.starts_with(&format!("ns:{}:", space.as_str())), "{tag}");
                assert!(l.iter().all(|k| hash_tag(k) == tag));
                assert!(l.iter().all(|k| k.starts_with(PREFIX)));
            }
        }
        let l = layout(&ns, LockSpace::Lock, &Key::new("jobs/backup").unwrap());
        assert_eq!(
            l,
            [
                "coord:{ns:lock:jobs/backup}:l",
                "coord:{ns:lock:jobs/backup}:t",
                "coord:{ns:lock:jobs/backup}:c"
            ]
        );
    }

    #[test]
    fn lock_evals_write_what_the_layout_spells() {
        let ns = Namespace::new("ns").unwrap();
        for key in ["a", "x}y", "ü/1", &"k".repeat(512)] {
            let key = Key::new(key).unwrap();
            for space in SPACES {
                let all = parts(space).len();
                let (mut eval, mut names) =
                    lock_eval(&ns, space, &key, parts(space), "acquire", None);
                names.write(&mut eval, 'c');
                let mut expected = layout(&ns, space, &key);
                expected.insert(all, "acquire".into());
                assert_eq!(
                    eval::written(&eval)[2..],
                    [&[all.to_string()], &expected[..]].concat()
                );
                assert!(
                    expected
                        .iter()
                        .all(|n| n == "acquire" || n.len() == names.len())
                );
                // The other operations of the lock script pass the lease alone.
                let (eval, _) = lock_eval(&ns, space, &key, besides_acquire(space), "x", None);
                let n = if space == LockSpace::Lock { 1 } else { all };
                assert_eq!(
                    eval::written(&eval)[2..4],
                    [n.to_string(), expected[0].clone()]
                );
                // A lock's release passes the lease, then the fair queue and
                // places as fair.lua names them.
                let (eval, _) = lock_eval(&ns, space, &key, release_parts(space), "x", None);
                let queue = eval::written(&fair::list_eval(&ns, space, &key));
                let keys = if space == LockSpace::Lock {
                    [&expected[..1], &queue[3 + all..5 + all]].concat()
                } else {
                    expected[..all].to_vec()
                };
                assert_eq!(
                    eval::written(&eval)[2..3 + keys.len()],
                    [&[keys.len().to_string()], &keys[..]].concat()
                );
            }
        }
    }

    #[test]
    fn stored_kinds_decode_per_space() {
        assert_eq!(
            stored_kind(LockSpace::Lock, "r", 0, 2),
            Some(LeaseKind::Reentrant)
        );
        assert_eq!(
            stored_kind(LockSpace::RwLock, "r", 0, 1),
            Some(LeaseKind::Read)
        );
        assert_eq!(
            stored_kind(LockSpace::Semaphore, "p", 3, 1),
            Some(LeaseKind::Permit { limit: 3 })
        );
        assert_eq!(
            stored_kind(LockSpace::Semaphore, "p", 3, 2),
            Some(LeaseKind::Permits { limit: 3, count: 2 })
        );
        assert_eq!(stored_kind(LockSpace::Semaphore, "e", 3, 1), None);
    }
}
