//! The engine's own tests, on a fake backend that grants everything.

use std::{sync::Arc, time::Duration};

use super::{BoxFuture, Guard, Lease, LostSignal, Tenure};
use crate::{
    Client, FencingToken, HolderId, Key, LeaseKind, LeaseOptions, Result,
    spi::{LeaseId, Release},
    testing::{Counting, take},
};

/// Once a lease has ended nothing makes it held again: a renewal whose
/// answer is read after the release (or the expiry) changes nothing,
/// however the threads interleave.
#[test]
fn an_ended_lease_stays_ended_whatever_races_it() {
    let client = Client::new(Arc::new(Counting::default()));
    let opts = LeaseOptions::default().auto_extend(false);
    for round in 0..200 {
        let id = LeaseId {
            kind: LeaseKind::Exclusive,
            key: Key::new("k").unwrap(),
            holder: HolderId::new(*client.instance_id()),
        };
        let (now, validity) = (client.clock().now(), opts.local_validity());
        let lease = Lease::start(
            client.clone(),
            id,
            Some(FencingToken(1)),
            &opts,
            validity,
            now,
        )
        .unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..500 {
                    lease.renewed(client.clock().now());
                }
            });
            s.spawn(|| lease.mark(round % 2 == 0));
            s.spawn(|| {
                let mut ended = false;
                for _ in 0..500 {
                    let held = lease.is_held();
                    assert!(!(ended && held), "held again after it ended");
                    ended |= !held;
                }
            });
        });
        assert!(!lease.is_held());
    }
}

fn slow_release() -> Arc<Counting> {
    Arc::new(Counting::with_slow_release(Duration::from_secs(1)))
}

/// A release cancelled before its answer goes on in the background: the
/// guard's drop sends it again (harmless twice: the lease ended either way).
#[tokio::test(start_paused = true)]
async fn a_cancelled_release_is_sent_again_in_the_background() {
    let backend = slow_release();
    let client = Client::new(backend.clone());
    let guard = take(&client, "k").await;
    let lost = guard.lost_signal();
    let cancelled = tokio::time::timeout(Duration::from_millis(10), guard.release()).await;
    assert!(cancelled.is_err(), "the release answers after 1 s");
    assert!(lost.is_lost(), "a release ends the lease before it is sent");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backend.releases(), 2);
}

/// Not so for a reentrant hold that leaves another guard: the backend
/// counts holds, and a second release would drop the one the other guard
/// counts on. The last guard's release is sent again, as any other.
#[tokio::test(start_paused = true)]
async fn a_cancelled_reentrant_release_is_repeated_only_by_the_last_guard() {
    let backend = slow_release();
    let client = Client::new(backend.clone());
    let id = LeaseId {
        kind: LeaseKind::Reentrant,
        key: Key::new("k").unwrap(),
        holder: HolderId::new(*client.instance_id()),
    };
    let (opts, now) = (LeaseOptions::default(), client.clock().now());
    let lease = Lease::start(client.clone(), id, None, &opts, opts.local_validity(), now).unwrap();
    let (first, second) = (Guard::new(lease.clone()), Guard::new(lease.clone()));
    drop(lease);
    let cancelled = tokio::time::timeout(Duration::from_millis(10), second.release()).await;
    assert!(cancelled.is_err(), "the release answers after 1 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backend.releases(), 1, "not repeated: the first guard holds");
    assert!(first.is_held(), "the first guard's hold is not ended by it");
    let cancelled = tokio::time::timeout(Duration::from_millis(10), first.release()).await;
    assert!(cancelled.is_err());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backend.releases(), 3, "the last guard's release sent again");
}

/// A lease that lives inside another (a queue delivery inside its
/// consumer's presence): a lock lease with an outer one.
struct Inside {
    id: LeaseId,
    outer: Arc<Lease>,
}

impl Tenure for Inside {
    fn family(&self) -> &'static str {
        self.id.family()
    }
    fn kind(&self) -> &'static str {
        self.id.kind()
    }
    fn key(&self) -> &Key {
        self.id.key()
    }
    fn holder(&self) -> &HolderId {
        self.id.holder()
    }
    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        self.id.renew(client, ttl)
    }
    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        self.id.release(client)
    }
    fn counted(&self) -> bool {
        false
    }
    fn within(&self) -> Option<&Arc<Lease>> {
        Some(&self.outer)
    }
}

/// A lease inside another is lost the moment the outer one ends: its status
/// says so, and a task waiting on its lost signal is woken then (not at its
/// own local validity, 30 s later).
#[tokio::test(start_paused = true)]
async fn a_lease_inside_another_is_lost_with_it() {
    let client = Client::new(Arc::new(Counting::default()));
    let opts = LeaseOptions::default()
        .ttl(Duration::from_secs(30))
        .auto_extend(false);
    let id = |k: &str| LeaseId {
        kind: LeaseKind::Exclusive,
        key: Key::new(k).unwrap(),
        holder: HolderId::new(*client.instance_id()),
    };
    let (now, validity) = (client.clock().now(), opts.local_validity());
    let outer = Lease::start(client.clone(), id("presence"), None, &opts, validity, now).unwrap();
    let inside = Inside {
        id: id("delivery"),
        outer: outer.clone(),
    };
    let inner = Lease::start(client.clone(), inside, None, &opts, validity, now).unwrap();
    let signal = LostSignal::one(&inner);
    let waiter = tokio::spawn(async move { signal.wait().await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(inner.is_held() && !waiter.is_finished());
    outer.mark(true);
    let woken = tokio::time::timeout(Duration::from_secs(1), waiter).await;
    woken.expect("woken by the outer lease's end").unwrap();
    assert!(!inner.is_held());
}
