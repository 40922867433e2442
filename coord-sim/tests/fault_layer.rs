//! The fault layer on the memory backend, outside the simulator.
#![cfg(not(madsim))]

use std::{sync::Arc, time::Duration};

use coord_api::{
    Acquire, Client, Error, HolderId, InstanceId, Key, LeaseBackend, LeaseFamily, LeaseId,
    LeaseKind, Namespace,
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

#[tokio::test]
async fn display_and_unwrap_show_the_stack() {
    let store = MemoryStore::new();
    let mut f = FaultLayer::new(1).layer(store.backend(Namespace::new("x").unwrap()));
    assert_eq!(f.to_string(), "Faulty(memory(ns=x))");
    assert_eq!(f.get_ref().to_string(), "memory(ns=x)");
    assert_eq!(f.get_mut().namespace().as_str(), "x");
    assert_eq!(f.into_inner().to_string(), "memory(ns=x)");
}

#[tokio::test]
async fn error_before_changes_nothing() {
    let store = MemoryStore::new();
    let plain = store.backend(Namespace::default());
    let f = FaultLayer::new(7).error_before(1.0).layer(plain.clone());
    let err = f.acquire(&lease("a"), TTL).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(
        err.to_string().contains("Faulty(memory(ns=coord))"),
        "{err}"
    );
    assert!(
        plain
            .inspect(LeaseFamily::Lock, &Key::new("k").unwrap())
            .await
            .unwrap()
            .is_empty(),
        "nothing was applied"
    );
    assert_eq!(f.stats().errors_before, 1);
}

#[tokio::test]
async fn lost_reply_applies_the_operation() {
    let store = MemoryStore::new();
    let plain = store.backend(Namespace::default());
    let f = FaultLayer::new(7).lost_reply(1.0).layer(plain.clone());
    let a = lease("a");
    assert!(matches!(
        f.acquire(&a, TTL).await,
        Err(Error::Unavailable { .. })
    ));
    // The grant happened although the caller was told the backend was unavailable.
    let held = plain.inspect(LeaseFamily::Lock, &a.key).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].holder, a.holder);
    assert!(matches!(
        plain.acquire(&lease("b"), TTL).await.unwrap(),
        Acquire::Busy(_)
    ));
    assert_eq!(f.stats().lost_replies, 1);
}

#[tokio::test(start_paused = true)]
async fn delays_wait_before_the_operation() {
    let store = MemoryStore::new();
    let f = FaultLayer::new(3)
        .delay(1.0, Duration::from_millis(200)..Duration::from_millis(201))
        .layer(store.backend(Namespace::default()));
    let t0 = tokio::time::Instant::now();
    assert!(matches!(
        f.acquire(&lease("a"), TTL).await.unwrap(),
        Acquire::Granted(_)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(f.stats().delays, 1);
}

/// The same seed injects the same faults in the same order.
#[tokio::test]
async fn faults_follow_the_seed() {
    let pattern = |seed| async move {
        let store = MemoryStore::new();
        let f = FaultLayer::new(seed)
            .error_before(0.3)
            .lost_reply(0.3)
            .layer(store.backend(Namespace::default()));
        let mut v = Vec::new();
        for i in 0..64 {
            v.push(f.extend(&lease(&format!("h{i}")), TTL).await.is_ok());
        }
        v
    };
    let a = pattern(11).await;
    assert_eq!(a, pattern(11).await);
    assert_ne!(a, pattern(12).await);
    assert!(a.iter().any(|ok| *ok) && a.iter().any(|ok| !ok));
}

/// Client types on a faulty backend: lost acquire replies leave orphan
/// leases that the TTL frees; the lock still excludes and eventually grants.
#[tokio::test(start_paused = true)]
async fn clients_survive_a_faulty_backend() {
    let store = MemoryStore::new();
    let layer = FaultLayer::new(5)
        .error_before(0.2)
        .lost_reply(0.2)
        .delay(0.3, Duration::from_millis(1)..Duration::from_millis(30));
    let client = |name: &str| {
        Client::builder(Arc::new(layer.layer(store.backend(Namespace::default()))))
            .instance_id(name)
            .unwrap()
            .lock_options(
                coord_api::LockOptions::default()
                    .ttl(Duration::from_millis(300))
                    .retry_delay(Duration::from_millis(50)),
            )
            .build()
    };
    let (a, b) = (client("a"), client("b"));
    let plain = store.backend(Namespace::default());
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
            let held = plain.inspect(LeaseFamily::Lock, &key).await.unwrap();
            assert_eq!(held.len(), 1);
            assert_eq!(&held[0].holder, g.holder());
            let _ = g.release().await;
        }
    }
}
