//! The lock family's SPI directly: notifications and what a backend refuses on its own.

use crate::cases::prelude::*;

cases! {
    family: "locks", needs: [Need::Locks];

/// A subscription on a key completes promptly when a lease on it is released.
#[needs(Need::ReleaseNotifications)]
pub async fn release_notifies_subscribers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: intruder(),
    };
    assert!(matches!(
        locks(&backend).acquire(&id, ms(5000)).await.unwrap(),
        Acquire::Granted(_)
    ));
    let mut watch = locks(&ctx.backend().await)
        .subscribe(LockSpace::Lock, &key("k"))
        .await
        .unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        locks(&backend).release(&id).await.unwrap(),
        Release::Released { remaining: 0 }
    ));
    timeout(ms(1000), watch.changed())
        .await
        .expect("the release notified the subscriber")
        .unwrap();
    assert!(t0.elapsed() <= ms(500), "notified after {:?}", t0.elapsed());
}

/// A subscription on a key completes near the expiry instant of a lease on
/// it, with no other access to the key.
#[needs(Need::ExpiryNotifications)]
pub async fn expiry_notifies_subscribers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: intruder(),
    };
    let mut watch = locks(&ctx.backend().await)
        .subscribe(LockSpace::Lock, &key("k"))
        .await
        .unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        locks(&backend).acquire(&id, ms(300)).await.unwrap(),
        Acquire::Granted(_)
    ));
    // A grant is not a change a waiter cares about, but a spurious wake-up
    // is allowed: wait until one lands after the expiry instant.
    let end = t0 + ms(300 + 700);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        timeout(left, watch.changed())
            .await
            .expect("the expiry notified the subscriber")
            .unwrap();
        if Instant::now() >= t0 + ms(290) {
            break;
        }
    }
}

/// A subscription never fires for another key or another family.
#[needs(Need::ReleaseNotifications)]
pub async fn watch_ignores_other_keys(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let has_sem = caps(&ctx).await.semaphore;
    let backend = ctx.backend().await;
    let mut watch = locks(&ctx.backend().await)
        .subscribe(LockSpace::Lock, &key("watched"))
        .await
        .unwrap();
    let mut leases = vec![LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("other"),
        holder: intruder(),
    }];
    if has_sem {
        leases.push(LeaseId {
            kind: LeaseKind::Permit { limit: 1 },
            key: key("watched"),
            holder: intruder(),
        });
    }
    for id in &leases {
        assert!(matches!(
            locks(&backend).acquire(id, ms(5000)).await.unwrap(),
            Acquire::Granted(_)
        ));
        assert!(matches!(
            locks(&backend).release(id).await.unwrap(),
            Release::Released { .. }
        ));
    }
    assert!(
        timeout(ms(300), watch.changed()).await.is_err(),
        "a watch on lock \"watched\" fired for another key or family"
    );
}

/// The backend itself refuses a zero TTL and a zero permit limit with
/// `InvalidArgument`, leaving the key free.
pub async fn backend_refuses_zero_ttl_and_limit(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let caps = caps(&ctx).await;
    let backend = ctx.backend().await;
    let holder = HolderId::new(InstanceId::new("direct").unwrap());
    let lease = |kind| LeaseId {
        kind,
        key: key("k"),
        holder: holder.clone(),
    };
    assert_invalid(
        locks(&backend)
            .acquire(&lease(LeaseKind::Exclusive), Duration::ZERO)
            .await,
        "exclusive ttl 0",
    );
    if caps.semaphore {
        assert_invalid(
            locks(&backend)
                .acquire(&lease(LeaseKind::Permit { limit: 0 }), ms(1000))
                .await,
            "permit limit 0",
        );
    }
    let granted = locks(&backend)
        .acquire(&lease(LeaseKind::Exclusive), ms(1000))
        .await
        .unwrap();
    assert!(
        matches!(granted, Acquire::Granted(g) if g.holds == 1),
        "free after the refusal: {granted:?}"
    );
    assert_eq!(
        locks(&backend).release(&lease(LeaseKind::Exclusive)).await.unwrap(),
        Release::Released { remaining: 0 }
    );
    assert_eq!(
        locks(&backend).release(&lease(LeaseKind::Exclusive)).await.unwrap(),
        Release::NotHeld,
        "a second release finds nothing"
    );
}

/// Two waiters of one client; the holder's release wakes the older, whose
/// `lock()` is cancelled while its attempt is on the way (never applied):
/// the wake-up it took is handed on, and the younger waiter is granted
/// promptly, not at the holder's TTL.
#[needs(Need::ReleaseNotifications)]
pub async fn lock_woken_waiter_gone_hands_its_wake_up_on(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().retry_jitter(0.0))
        .await;
    let b = ctx.client("b").await;
    let gb = take(&b.lock("k").ttl(LOST_REPLY_TTL), "b").await;
    let (l1, l2) = (a.lock("k"), a.lock("k"));
    let w1 = tokio::spawn(async move { l1.lock().await });
    sleep(ms(150)).await; // w1 waits first: the oldest watch
    let w2 = tokio::spawn(async move { l2.lock().await.map(|g| (g, Instant::now())) });
    sleep(ms(150)).await;
    assert!(!w1.is_finished() && !w2.is_finished(), "both wait while b holds");
    // The woken waiter's attempt will be held on its way ...
    switch.holding();
    assert!(gb.release().await.unwrap());
    sleep(ms(200)).await;
    // ... and the waiter cancelled meanwhile (never applied).
    w1.abort();
    let _ = w1.await;
    switch.on();
    let t_on = Instant::now();
    let (g2, at) = join(w2, ms(12_000), "second waiter")
        .await
        .expect("second waiter granted");
    let lag = at.saturating_duration_since(t_on);
    assert!(
        lag <= ms(1000),
        "the second waiter was granted {lag:?} after the key was free again (the first waiter's wake-up was lost with it)"
    );
    g2.release().await.unwrap();
}
}
