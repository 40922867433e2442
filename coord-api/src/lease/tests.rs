//! The engine's own tests, on a fake backend that grants everything.

use std::{sync::Arc, time::Duration};

use super::Lease;
use crate::{
    Client, FencingToken, HolderId, Key, LeaseKind, LeaseOptions,
    spi::LeaseId,
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
        );
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

/// Not so for a reentrant hold: the backend counts holds, and a second
/// release would drop one that another guard counts on.
#[tokio::test(start_paused = true)]
async fn a_cancelled_reentrant_release_is_not_repeated() {
    let backend = slow_release();
    let client = Client::new(backend.clone());
    let guard = client.lock("k").reentrant(true).try_lock().await.unwrap();
    let guard = guard.expect("the fake grants everything");
    let cancelled = tokio::time::timeout(Duration::from_millis(10), guard.release()).await;
    assert!(cancelled.is_err(), "the release answers after 1 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backend.releases(), 1);
}
