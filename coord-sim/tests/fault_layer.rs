//! The fault layer on the memory backend, outside the simulator: it sees
//! every call of every family.
#![cfg(not(madsim))]

use std::{sync::Arc, time::Duration};

use coord_api::{
    Client, Error, HolderId, InstanceId, Key, LeaseKind, LeaseOptions, LockSpace, Namespace,
    spi::{Acquire, Backend, DynBackend, LeaseId},
};
use coord_memory::MemoryStore;
use coord_sim::FaultLayer;

fn lease(name: &str) -> LeaseId {
    LeaseId {
        kind: LeaseKind::Exclusive,
        key: Key::new("k").unwrap(),
        holder: HolderId::new(InstanceId::new(name).unwrap()),
    }
}

const TTL: Duration = Duration::from_secs(5);

fn memory(store: &MemoryStore) -> DynBackend {
    Arc::new(store.backend(Namespace::default()))
}

#[tokio::test]
async fn display_shows_the_stack() {
    let store = MemoryStore::new();
    let f = FaultLayer::new(1).layer(Arc::new(store.backend(Namespace::new("x").unwrap())));
    assert_eq!(f.to_string(), "Faulty(memory(ns=x))");
    assert_eq!(f.get_ref().get_ref().to_string(), "memory(ns=x)");
    assert_eq!(f.namespace().as_str(), "x");
}

#[tokio::test]
async fn error_before_changes_nothing() {
    let store = MemoryStore::new();
    let plain = memory(&store);
    let f = FaultLayer::new(7).error_before(1.0).layer(plain.clone());
    let locks = f.locks().unwrap();
    let err = locks.acquire(&lease("a"), TTL).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(
        err.to_string().contains("Faulty(memory(ns=coord))"),
        "{err}"
    );
    assert!(
        plain
            .locks()
            .unwrap()
            .inspect(LockSpace::Lock, &Key::new("k").unwrap())
            .await
            .unwrap()
            .is_empty(),
        "nothing was applied"
    );
    assert_eq!(f.get_ref().stats().errors_before, 1);
}

#[tokio::test]
async fn lost_reply_applies_the_operation() {
    let store = MemoryStore::new();
    let plain = memory(&store);
    let f = FaultLayer::new(7).lost_reply(1.0).layer(plain.clone());
    let locks = f.locks().unwrap();
    let a = lease("a");
    assert!(matches!(
        locks.acquire(&a, TTL).await,
        Err(Error::Unavailable { .. })
    ));
    // The grant happened although the caller was told the backend was unavailable.
    let held = plain
        .locks()
        .unwrap()
        .inspect(LockSpace::Lock, &a.key)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].holder, a.holder);
    assert!(matches!(
        plain
            .locks()
            .unwrap()
            .acquire(&lease("b"), TTL)
            .await
            .unwrap(),
        Acquire::Busy(_)
    ));
    assert_eq!(f.get_ref().stats().lost_replies, 1);
}

#[tokio::test(start_paused = true)]
async fn delays_wait_before_the_operation() {
    let store = MemoryStore::new();
    let f = FaultLayer::new(3)
        .delay(1.0, Duration::from_millis(200)..Duration::from_millis(201))
        .layer(memory(&store));
    let locks = f.locks().unwrap();
    let t0 = tokio::time::Instant::now();
    assert!(matches!(
        locks.acquire(&lease("a"), TTL).await.unwrap(),
        Acquire::Granted(_)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(f.get_ref().stats().delays, 1);
}

/// The same seed injects the same faults in the same order.
#[tokio::test]
async fn faults_follow_the_seed() {
    let pattern = |seed| async move {
        let store = MemoryStore::new();
        let f = FaultLayer::new(seed)
            .error_before(0.3)
            .lost_reply(0.3)
            .layer(memory(&store));
        let mut v = Vec::new();
        for i in 0..64 {
            v.push(
                f.locks()
                    .unwrap()
                    .extend(&lease(&format!("h{i}")), TTL)
                    .await
                    .is_ok(),
            );
        }
        v
    };
    let a = pattern(11).await;
    assert_eq!(a, pattern(11).await);
    assert_ne!(a, pattern(12).await);
    assert!(a.iter().any(|ok| *ok) && a.iter().any(|ok| !ok));
}

/// Client types on a faulty backend: a lost acquire reply's grant is
/// released by the client; the lock still excludes and eventually grants.
#[tokio::test(start_paused = true)]
async fn clients_survive_a_faulty_backend() {
    let store = MemoryStore::new();
    let layer = FaultLayer::new(5)
        .error_before(0.2)
        .lost_reply(0.2)
        .delay(0.3, Duration::from_millis(1)..Duration::from_millis(30));
    let client = |name: &str| {
        Client::builder(layer.layer(memory(&store)))
            .instance_id(name)
            .unwrap()
            .lease_options(
                LeaseOptions::default()
                    .ttl(Duration::from_millis(300))
                    .retry_delay(Duration::from_millis(50)),
            )
            .build()
    };
    let (a, b) = (client("a"), client("b"));
    let plain = memory(&store);
    let key = Key::new("k").unwrap();
    for _ in 0..20 {
        for c in [&a, &b] {
            // Retry what the faults refuse; each grant must be the only lease.
            let mut tries = 0;
            let g = loop {
                tries += 1;
                assert!(tries < 100, "no grant after 100 tries");
                if let Ok(g) = c.lock("k").lock().await {
                    break g;
                }
            };
            let held = plain
                .locks()
                .unwrap()
                .inspect(LockSpace::Lock, &key)
                .await
                .unwrap();
            assert_eq!(held.len(), 1);
            assert_eq!(&held[0].holder, g.holder());
            let _ = g.release().await;
        }
    }
}

/// The layer hits every family, elections too: an injected error fails a
/// campaign before it reaches the backend; a lost reply elects the candidate
/// without telling it, and the client resigns that term in the background.
#[tokio::test(start_paused = true)]
async fn faults_hit_elections() {
    let store = MemoryStore::new();
    let plain = memory(&store);
    let client = |f: DynBackend| Client::builder(f).instance_id("a").unwrap().build();
    let refused = FaultLayer::new(1).error_before(1.0).layer(plain.clone());
    let a = client(refused.clone());
    let err = a.election("e").try_campaign().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert_eq!(refused.get_ref().stats().errors_before, 1);
    let elections = plain.elections().unwrap();
    assert_eq!(
        elections
            .terms_granted(&Key::new("e").unwrap())
            .await
            .unwrap(),
        Some(0)
    );

    // Half the replies lost: campaign until one is lost after it was applied.
    let lost = FaultLayer::new(3).lost_reply(0.5).layer(plain.clone());
    let a = client(lost.clone());
    let e = Key::new("e").unwrap();
    loop {
        match a.election("e").try_campaign().await {
            Err(Error::Unavailable { .. }) => break,
            Ok(won) => drop(won), // resigned in the background
            Err(other) => panic!("{other}"),
        }
    }
    assert!(lost.get_ref().stats().lost_replies >= 1);
    assert!(
        elections.terms_granted(&e).await.unwrap() >= Some(1),
        "applied"
    );
    // The clean-ups go through the same layer and are retried until answered:
    // every term is resigned long before its 30 s TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(elections.leader(&e).await.unwrap().is_none(), "resigned");
}
