//! Who a fair lock's handover wakes on Redis (decisions 0033, 0041): the
//! release of a lease granted from the queue wakes the first live waiter in
//! line by name, whatever the order of the watches; a queued step that
//! finds the lock free while that waiter is on its way wakes nobody; a
//! release with no live waiter named, a plain (not fair) lease's release
//! and a force release wake every fair waiter.

use std::{sync::Arc, time::Duration};

use coord_api::{
    HolderId, InstanceId, Key,
    spi::{Acquire, DynBackend, LeaseId, LeaseKind, LockBackend, LockSpace, Watch},
};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;

fn lease(who: &str) -> LeaseId {
    LeaseId {
        kind: LeaseKind::Exclusive,
        key: Key::new("k").unwrap(),
        holder: HolderId::new(InstanceId::new(who).unwrap()),
    }
}

/// A queued attempt of `id` whose place lasts `waiter_ttl`.
async fn ask_for(b: &dyn LockBackend, id: &LeaseId, waiter_ttl: Duration) -> bool {
    let a = b
        .acquire_queued(id, Duration::from_secs(30), waiter_ttl, true)
        .await
        .expect("acquire_queued");
    matches!(a, Acquire::Granted(_))
}

async fn ask(b: &dyn LockBackend, id: &LeaseId) -> bool {
    ask_for(b, id, Duration::from_secs(30)).await
}

/// Whether `watch` fires within 300 ms.
async fn fires(watch: &mut Box<dyn Watch>) -> bool {
    tokio::time::timeout(Duration::from_millis(300), watch.changed())
        .await
        .is_ok()
}

/// Which of `watches` fire (each given its 300 ms).
async fn which(watches: &mut [Box<dyn Watch>]) -> Vec<bool> {
    let mut out = Vec::new();
    for w in watches {
        out.push(fires(w).await);
    }
    out
}

async fn backend(server: &RedisServer, ns: &str) -> DynBackend {
    Arc::new(RedisBackend::connect(server.config(ns)).await.unwrap())
}

#[tokio::test]
async fn a_fair_release_wakes_the_waiter_it_leaves_at_the_head() {
    let server = RedisServer::start();
    let b = backend(&server, "fairhead").await;
    let b = b.locks().unwrap();
    let (holder, w1, w2, w3) = (lease("h"), lease("w1"), lease("w2"), lease("w3"));
    assert!(ask(b, &holder).await, "an empty queue grants");
    for w in [&w1, &w2, &w3] {
        assert!(!ask(b, w).await, "held: {w:?} queues");
    }
    // The watches in the reverse of the queue's order: the oldest is the
    // last in line, which a wake-up for the oldest watch would pick.
    let mut watches = Vec::new();
    for w in [&w3, &w2, &w1] {
        watches.push(b.subscribe_queued(w).await.unwrap());
    }

    b.release(&holder).await.unwrap();
    assert_eq!(which(&mut watches).await, [false, false, true], "w1 heads");
    // The releaser queueing again finds the lock free with w1 on its way:
    // nobody else is woken.
    assert!(!ask(b, &holder).await, "w1 is ahead");
    assert_eq!(
        which(&mut watches).await,
        [false; 3],
        "a newcomer woke someone"
    );

    assert!(ask(b, &w1).await, "the head goes in");
    b.release(&w1).await.unwrap();
    assert_eq!(which(&mut watches).await, [false, true, false], "w2 heads");
    assert!(ask(b, &w2).await, "the head goes in");
    b.release(&w2).await.unwrap();
    assert_eq!(which(&mut watches).await, [true, false, false], "w3 heads");
    assert!(ask(b, &w3).await, "the head goes in");
    b.release(&w3).await.unwrap();
    // Behind w3 the first holder waits, queued again (no watch here).
    assert_eq!(which(&mut watches).await, [false; 3]);
}

#[tokio::test]
async fn a_fair_release_names_the_first_waiter_whose_place_is_live() {
    let server = RedisServer::start();
    let b = backend(&server, "fairlapsed").await;
    let b = b.locks().unwrap();
    let (holder, dead, next) = (lease("h"), lease("dead"), lease("next"));
    assert!(ask(b, &holder).await, "an empty queue grants");
    let short = Duration::from_millis(100);
    assert!(!ask_for(b, &dead, short).await, "held: queues");
    assert!(!ask(b, &next).await, "held: queues");
    let mut watches = vec![
        b.subscribe_queued(&dead).await.unwrap(),
        b.subscribe_queued(&next).await.unwrap(),
    ];
    // `dead` never asks again: its place lapses after its waiter TTL.
    tokio::time::sleep(3 * short).await;
    b.release(&holder).await.unwrap();
    assert_eq!(which(&mut watches).await, [false, true]);
    assert!(ask(b, &next).await, "the lapsed place was dropped");
}

#[tokio::test]
async fn with_no_waiter_named_every_fair_waiter_wakes() {
    let server = RedisServer::start();
    let b = backend(&server, "fairall").await;
    let b = b.locks().unwrap();
    let (plain, w1, w2) = (lease("plain"), lease("w1"), lease("w2"));
    let ttl = Duration::from_secs(30);
    // A lease not granted from the queue (a handle that is not fair).
    assert!(matches!(
        b.acquire(&plain, ttl).await.unwrap(),
        Acquire::Granted(_)
    ));
    for w in [&w1, &w2] {
        assert!(!ask(b, w).await, "held: {w:?} queues");
    }
    let mut watches = vec![
        b.subscribe_queued(&w2).await.unwrap(),
        b.subscribe_queued(&w1).await.unwrap(),
    ];
    b.release(&plain).await.unwrap();
    assert_eq!(which(&mut watches).await, [true, true], "a plain release");

    assert!(ask(b, &w1).await, "the head goes in");
    assert_eq!(b.force_release(LockSpace::Lock, &w1.key).await.unwrap(), 1);
    assert_eq!(which(&mut watches).await, [true, true], "a force release");

    // The last waiter's release names nobody: `released`, for any waiter
    // that came meanwhile.
    assert!(ask(b, &w2).await, "the head goes in");
    b.release(&w2).await.unwrap();
    assert_eq!(which(&mut watches).await, [true, true], "no one in line");
}
