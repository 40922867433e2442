//! Fair queues on Redis (decision 0033): `fair.lua`, which runs ahead of the
//! lock and semaphore scripts, keeps each key's waiters in arrival order.
//!
//! ```text
//! coord:{<ns>:<space>:<key>}:q   queue zset: holder -> arrival (server µs)
//! coord:{<ns>:<space>:<key>}:d   places zset: holder -> deadline (server ms)
//! ```
//!
//! (`space` `lock` or `semaphore`.) Both expire with the latest place and
//! are deleted when empty. A lease granted from the queue is marked (its
//! kind in upper case), and its release (`lock.lua`, passed both keys)
//! publishes `next <holder>` for the first waiter in line whose place is
//! live: the hub wakes that waiter's watch (`subscribe_queued`) and no
//! other fair waiter's (decision 0041). With nobody to name it publishes
//! `released`, which, like `forced`, wakes every fair waiter. A step after
//! which someone else heads the queue (a lapsed head dropped, a waiter
//! leaving) publishes `freed`. A fair semaphore waiter keeps the
//! semaphore's wide-waiter mark up for its waiter TTL, so that releases
//! wake every waiter.

use std::time::Duration;

use coord_api::{
    HolderId, Key, Namespace, Result,
    spi::{LeaseId, LeaseKind, LockSpace, locks::check_fair_kind},
};

use super::{names, parts, script};
use crate::{
    eval::{Eval, holder_len, ttl_ms},
    keys::Names,
};

/// The queue and places keys of `key` in `space` (with the space's own
/// keys first when `with_lease_keys`), `op` written; `holder` sizes the
/// arguments to come.
fn queue_eval(
    ns: &Namespace,
    space: LockSpace,
    key: &Key,
    holder: Option<&HolderId>,
    op: &'static str,
    with_lease_keys: bool,
) -> (Eval, Names) {
    let mut names = names(ns, space, key);
    let lease_keys = if with_lease_keys { parts(space) } else { &[] };
    let keys = lease_keys.len() + 2;
    let bytes = (keys + 2) * names.len() + 2 * holder_len(holder) + 64;
    let mut eval = Eval::new(script(space), keys, 12, bytes);
    for p in lease_keys.iter().chain(&['q', 'd']) {
        names.write(&mut eval, *p);
    }
    eval.arg(op);
    (eval, names)
}

/// Appends the five arguments `fair.lua` reads last.
fn tail(eval: &mut Eval, names: &mut Names, lease: &LeaseId, waiter_ttl: u64, enqueue: bool) {
    names.write(eval, 'c');
    eval.holder(&lease.holder)
        .arg(waiter_ttl)
        .arg(if enqueue { "1" } else { "0" })
        .arg(match lease.kind.space() {
            LockSpace::Semaphore => "s",
            _ => "l",
        });
}

/// The EVALSHA of a queued acquisition of `lease`: the space's acquire
/// arguments (a semaphore's count always given), then the tail. `InvalidArgument` for a kind with no fair mode
/// or a waiter TTL out of range.
pub(super) fn queued_eval(
    ns: &Namespace,
    lease: &LeaseId,
    ttl: u64,
    waiter_ttl: Duration,
    enqueue: bool,
) -> Result<Eval> {
    let waiter_ttl = ttl_ms(&lease.key, waiter_ttl)?;
    let (space, holder) = (lease.kind.space(), Some(&lease.holder));
    check_fair_kind(lease)?;
    let (mut eval, mut names) = queue_eval(ns, space, &lease.key, holder, "queued", true);
    match lease.kind {
        LeaseKind::Exclusive | LeaseKind::Reentrant => {
            let kind = if lease.kind == LeaseKind::Exclusive {
                "e"
            } else {
                "r"
            };
            eval.holder(&lease.holder).arg(ttl).arg(kind);
        }
        LeaseKind::Permit { limit } | LeaseKind::Permits { limit, .. } => {
            names.write(&mut eval, 'c');
            eval.holder(&lease.holder)
                .arg(ttl)
                .arg(limit)
                .arg(lease.kind.permits());
        }
        _ => unreachable!("refused by check_fair_kind"),
    }
    tail(&mut eval, &mut names, lease, waiter_ttl, enqueue);
    Ok(eval)
}

/// The EVALSHA of `lease`'s holder giving its place back; `InvalidArgument`
/// for a kind with no fair mode.
pub(super) fn leave_eval(ns: &Namespace, lease: &LeaseId) -> Result<Eval> {
    check_fair_kind(lease)?;
    let (space, holder) = (lease.kind.space(), Some(&lease.holder));
    let (mut eval, mut names) = queue_eval(ns, space, &lease.key, holder, "leave", false);
    tail(&mut eval, &mut names, lease, 0, false);
    Ok(eval)
}

/// The EVALSHA of the operations listing's read of `key` in `space` (a
/// lock's or a semaphore's): the rows of the script's `inspect`, then
/// `{'q', '', 0, n, 0, 0}` when `n` places in the queue are live.
pub(crate) fn list_eval(ns: &Namespace, space: LockSpace, key: &Key) -> Eval {
    queue_eval(ns, space, key, None, "list", true).0
}
