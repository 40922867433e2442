//! Checks of what the contract's "Failover" section (coord-api's
//! `contract/common.md`) says survives a failover and what is lost, shared
//! by the tests that fail a Redis master over through Sentinel and inside a
//! Cluster.

use coord_api::{Client, FencingToken, HolderId, LockGuard};

/// A resource that keeps the highest fencing token it accepted and
/// refuses smaller ones (what the contract asks of a fenced resource).
#[derive(Debug, Default)]
pub struct Fenced {
    highest: u64,
}

impl Fenced {
    /// A write with `token`: accepted (true) unless a larger token was.
    pub fn write(&mut self, token: FencingToken) -> bool {
        if token.0 < self.highest {
            return false;
        }
        self.highest = token.0;
        true
    }
}

/// A release the promoted replica never saw is undone: lock `name` is held
/// again by its last holder `by` with its `token` (until its TTL), and
/// refused to `other`.
pub async fn release_was_undone(other: &Client, name: &str, by: &HolderId, token: FencingToken) {
    let lock = other.lock(name);
    assert!(lock.try_lock().await.unwrap().is_none(), "{name} is free");
    let holders = lock.holders().await.unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!((&holders[0].holder, holders[0].token), (by, token));
}

/// A grant the promoted replica had survived: `kept` (a guard of lock
/// `name`) is still held and refused to `other`, its release works on the
/// new master, and `other`'s next grant carries a larger token. Returns
/// that grant.
pub async fn replicated_lease_survived(other: &Client, name: &str, kept: LockGuard) -> LockGuard {
    let lock = other.lock(name);
    assert!(lock.try_lock().await.unwrap().is_none(), "{name} is free");
    assert!(kept.is_held());
    let kept_token = kept.token();
    assert!(kept.release().await.unwrap(), "released on the new master");
    let next = lock.try_lock().await.unwrap().expect("free once released");
    assert!(
        next.token() > kept_token,
        "{} after {kept_token}",
        next.token()
    );
    next
}
