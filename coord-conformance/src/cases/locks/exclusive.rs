//! Exclusive and reentrant locks: exclusion, holder identity, expiry, extension, release and the wake-ups that follow.

use crate::cases::prelude::*;

cases! {
    family: "locks", needs: [Need::Locks];

/// Two clients on one key: while one holds the lock the other's `try_lock`
/// is refused; after release it succeeds.
pub async fn exclusion(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ga = a
        .lock("k")
        .try_lock()
        .await
        .unwrap()
        .expect("free lock is granted");
    assert!(
        b.lock("k").try_lock().await.unwrap().is_none(),
        "second holder refused"
    );
    assert!(ga.release().await.unwrap());
    let gb = b
        .lock("k")
        .try_lock()
        .await
        .unwrap()
        .expect("granted after release");
    gb.release().await.unwrap();
}

/// `try_lock` on a held key answers `None` at once, without waiting for the
/// holder or the (10 s) retry delay.
pub async fn try_lock_does_not_wait(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ga = take(&a.lock("k").ttl(ms(5000)), "a").await;
    let t0 = Instant::now();
    let res = timeout(ms(2000), b.lock("k").try_lock())
        .await
        .expect("try_lock answers without waiting");
    assert!(res.unwrap().is_none(), "held key refused");
    assert!(t0.elapsed() < ms(1000), "try_lock took {:?}", t0.elapsed());
    assert!(ga.release().await.unwrap());
}

/// A non-reentrant lock is refused to a second acquisition by the same
/// handle, and by the same holder id at the backend.
pub async fn exclusive_same_holder_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let lock = a.lock("k");
    let g = take(&lock, "first").await;
    assert!(
        lock.try_lock().await.unwrap().is_none(),
        "same handle refused"
    );
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: g.holder().clone(),
    };
    assert!(
        matches!(
            locks(&backend).acquire(&id, ms(1000)).await.unwrap(),
            Acquire::Busy(_)
        ),
        "same holder id refused at the backend"
    );
    assert!(g.release().await.unwrap(), "still held once");
    assert!(
        !is_busy(&ctx.client("b").await.lock("k")).await,
        "one release frees an exclusive lock"
    );
}

/// Six clients looping lock/release never overlap, and the tokens they see
/// strictly increase in grant order.
pub async fn exclusion_under_contention(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::<FencingToken>::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let lock = ctx.client(&format!("c{i}")).await.lock("k");
        let (inside, most, tokens) = (inside.clone(), most.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let g = lock.lock().await.expect("granted within the wait timeout");
                let n = inside.fetch_add(1, SeqCst) + 1;
                most.fetch_max(n, SeqCst);
                tokens.lock().unwrap().push(g.token());
                sleep(ms(5)).await;
                inside.fetch_sub(1, SeqCst);
                assert!(g.release().await.unwrap(), "held until released");
            }
        }));
    }
    for t in tasks {
        join(t, ms(8000), "contender").await;
    }
    assert_eq!(most.load(SeqCst), 1, "two holders at once");
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 18);
    for w in tokens.windows(2) {
        assert!(w[0] < w[1], "tokens not increasing: {:?}", *tokens);
    }
}

/// A reentrant handle acquiring twice gets the same token; the key stays held
/// until both holds are released.
#[needs(Need::Reentrant)]
pub async fn reentrant_counts(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inspect = caps(&ctx).await.inspect;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let lock = a.lock("k").reentrant(true);
    let g1 = timeout(ms(2000), lock.lock())
        .await
        .expect("free lock")
        .unwrap();
    let g2 = timeout(ms(2000), lock.lock())
        .await
        .expect("re-entry does not wait")
        .unwrap();
    assert_eq!(g1.token(), g2.token(), "re-entry keeps the token");
    assert_eq!(g1.holder(), g2.holder(), "re-entry is the same holder");
    if inspect {
        let hs = lock.holders().await.unwrap();
        assert_eq!(hs.len(), 1, "{hs:?}");
        assert_eq!(hs[0].holds, 2, "{hs:?}");
        assert_eq!(hs[0].token, g1.token());
    }
    assert!(g2.release().await.unwrap(), "inner release");
    assert!(g1.is_held(), "outer guard still held");
    assert!(
        is_busy(&b.lock("k")).await,
        "still held after one of two releases"
    );
    if inspect {
        let hs = lock.holders().await.unwrap();
        assert_eq!(hs.len(), 1, "{hs:?}");
        assert_eq!(hs[0].holds, 1, "{hs:?}");
    }
    assert!(g1.is_held(), "outer guard still held");
    assert!(g1.release().await.unwrap(), "outer release");
    let gb = take(&b.lock("k"), "free after the last release").await;
    gb.release().await.unwrap();
}

/// A reentrant lock excludes other holders: another reentrant handle and an
/// exclusive lock on the same key are refused.
#[needs(Need::Reentrant)]
pub async fn reentrant_excludes_other_holders(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let g = take(&a.lock("k").reentrant(true), "reentrant").await;
    assert!(
        a.lock("k")
            .reentrant(true)
            .try_lock()
            .await
            .unwrap()
            .is_none(),
        "another reentrant handle is another holder"
    );
    assert!(
        b.lock("k")
            .reentrant(true)
            .try_lock()
            .await
            .unwrap()
            .is_none(),
        "another client's reentrant handle refused"
    );
    assert!(is_busy(&b.lock("k")).await, "exclusive lock refused");
    assert!(g.release().await.unwrap());
    let ge = take(&b.lock("k"), "exclusive after reentrant release").await;
    assert!(
        a.lock("k")
            .reentrant(true)
            .try_lock()
            .await
            .unwrap()
            .is_none(),
        "an exclusive holder blocks reentrant handles"
    );
    ge.release().await.unwrap();
}

/// A reentrant handle re-entering after its lease was force released gets a
/// fresh grant (a larger token than the fenced one) or nothing, never a guard
/// carrying the fenced token.
#[needs(Need::Reentrant, Need::ForceRelease)]
pub async fn reentrant_reentry_after_force_release(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let lock = a.lock("k").reentrant(true).ttl(ms(5000));
    let g1 = take(&lock, "first hold").await;
    assert_eq!(b.lock("k").force_release().await.unwrap(), 1);
    if let Some(g2) = lock.try_lock().await.unwrap() {
        assert!(
            g2.token() > g1.token(),
            "re-entry after a force release returned token {} (the fenced token was {})",
            g2.token(),
            g1.token()
        );
        assert!(g2.release().await.unwrap());
    }
    assert!(!g1.extend().await.unwrap(), "the fenced hold stays fenced");
}

/// Releasing with a foreign holder id (another instance, or the same instance
/// with another nonce) is `NotHeld` and leaves the lease in place.
pub async fn non_holder_release_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let g = take(&a.lock("k"), "a").await;
    let backend = ctx.backend().await;
    for holder in [intruder(), HolderId::new(*g.holder().instance())] {
        for kind in [LeaseKind::Exclusive, LeaseKind::Reentrant] {
            let id = LeaseId {
                kind,
                key: key("k"),
                holder: holder.clone(),
            };
            assert_eq!(
                locks(&backend).release(&id).await.unwrap(),
                Release::NotHeld,
                "{kind:?} release by {holder}"
            );
        }
    }
    assert!(
        is_busy(&ctx.client("b").await.lock("k")).await,
        "still held after foreign releases"
    );
    assert!(g.extend().await.unwrap(), "the holder still holds it");
    assert!(g.release().await.unwrap());
}

/// Extending with a foreign holder id returns false and does not prolong the
/// lease: it still expires at its own TTL.
pub async fn non_holder_extend_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(400)).await;
    let t0 = Instant::now();
    let g = take(&a.lock("k"), "a").await;
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: intruder(),
    };
    assert!(
        !locks(&backend).extend(&id, ms(10_000)).await.unwrap(),
        "foreign extend refused"
    );
    let same_instance = LeaseId {
        holder: HolderId::new(*g.holder().instance()),
        ..id
    };
    assert!(
        !locks(&backend).extend(&same_instance, ms(10_000)).await.unwrap(),
        "extend by another nonce of the same instance refused"
    );
    sleep_until(t0 + ms(400)).await;
    let b = ctx.client("b").await;
    let gb = take_within(&b.lock("k"), ms(1500))
        .await
        .expect("the lease expired at its own TTL despite the foreign extends");
    assert!(!g.is_held());
    gb.release().await.unwrap();
}

/// With auto-extension off, a lease expires at its TTL and the key is free
/// for another client; before that it is held.
pub async fn ttl_expiry_frees_key(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(300)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let g = take(&a.lock("k"), "a").await;
    let busy = is_busy(&b.lock("k")).await;
    if t0.elapsed() < ms(250) {
        assert!(busy, "held before its TTL");
    }
    sleep_until(t0 + ms(300)).await;
    let gb = take_within(&b.lock("k"), ms(1000))
        .await
        .expect("free once the TTL passed");
    assert!(!g.is_held(), "the expired guard knows it");
    gb.release().await.unwrap();
}

/// A holder's `extend` resets the TTL: the lease outlives its first TTL.
pub async fn extend_resets_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(600)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let g = take(&a.lock("k"), "a").await;
    sleep_until(t0 + ms(300)).await;
    let t_ext = Instant::now();
    assert!(g.extend().await.unwrap(), "holder extends");
    sleep_until(t0 + ms(750)).await;
    // Past the first TTL, within the extended one.
    let busy = is_busy(&b.lock("k")).await;
    if t_ext.elapsed() < ms(550) {
        assert!(busy, "held past its first TTL after an extend");
        assert!(g.is_held());
    }
    assert!(g.release().await.unwrap());
}

/// Once a lease expired, its holder's `extend` returns false and does not
/// revive it.
pub async fn extend_after_expiry_fails(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(200)).await;
    let t0 = Instant::now();
    let g = take(&a.lock("k"), "a").await;
    sleep_until(t0 + ms(350)).await;
    assert!(
        !g.extend().await.unwrap(),
        "an expired lease is not revived"
    );
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: g.holder().clone(),
    };
    assert!(
        !locks(&backend).extend(&id, ms(5000)).await.unwrap(),
        "the backend does not revive it either"
    );
    assert!(!g.is_held());
    let b = ctx.client("b").await;
    let gb = take(&b.lock("k"), "free after expiry").await;
    gb.release().await.unwrap();
}

/// `release` after the lease expired returns false.
pub async fn release_after_expiry_returns_false(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(200)).await;
    let t0 = Instant::now();
    let g = take(&a.lock("k"), "a").await;
    sleep_until(t0 + ms(350)).await;
    assert!(!g.release().await.unwrap(), "expired: not held at release");
    let b = ctx.client("b").await;
    take(&b.lock("k"), "free").await.release().await.unwrap();
}

/// `release` after expiry and a takeover returns false and leaves the new
/// holder's lease in place.
pub async fn release_after_takeover_returns_false(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(200)).await;
    let (b, c) = (ctx.client("b").await, ctx.client("c").await);
    let t0 = Instant::now();
    let ga = take(&a.lock("k"), "a").await;
    sleep_until(t0 + ms(200)).await;
    let gb = take_within(&b.lock("k"), ms(1000))
        .await
        .expect("b takes over after the TTL");
    assert!(!ga.release().await.unwrap(), "a no longer holds it");
    assert!(gb.is_held());
    assert!(
        is_busy(&c.lock("k")).await,
        "b's lease survived a's release"
    );
    assert!(gb.release().await.unwrap(), "b still held it");
}

/// A waiter whose retry delay is 10 s gets the lock within 50 ms of the
/// holder's release (woken by the release notification).
#[needs(Need::ReleaseNotifications)]
pub async fn release_wakes_waiter_within_50ms(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let b = ctx
        .client_with("b", default_options().retry_jitter(0.0))
        .await;
    let ga = take(&a.lock("k").ttl(ms(5000)), "a").await;
    let lock = b.lock("k");
    let waiter = tokio::spawn(async move {
        let g = lock.lock().await;
        (g, Instant::now())
    });
    sleep(ms(200)).await; // let the waiter start waiting
    assert!(!waiter.is_finished(), "the waiter waits while a holds");
    let t_release = Instant::now();
    assert!(ga.release().await.unwrap());
    let (gb, t_granted) = join(waiter, ms(3000), "waiter").await;
    let gb = gb.expect("waiter granted");
    let lag = t_granted.saturating_duration_since(t_release);
    assert!(lag <= ms(50), "waiter woke {lag:?} after the release");
    gb.release().await.unwrap();
}

/// A waiter whose retry delay is 10 s gets the lock near the holder's expiry
/// instant, not before it and not at its retry delay.
pub async fn expiry_wakes_waiter_promptly(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(500)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let _ga = take(&a.lock("k"), "a").await;
    let t1 = Instant::now();
    let lock = b.lock("k");
    let waiter = tokio::spawn(async move {
        let g = lock.lock().await;
        (g, Instant::now())
    });
    let (gb, t_granted) = join(waiter, ms(3000), "waiter").await;
    let gb = gb.expect("waiter granted");
    assert!(
        t_granted >= t0 + ms(490),
        "granted {:?} after a's acquire, before its 500 ms TTL",
        t_granted - t0
    );
    assert!(
        t_granted <= t1 + ms(500 + 300),
        "granted {:?} after a's acquire: expiry did not wake the waiter",
        t_granted - t0
    );
    gb.release().await.unwrap();
}

/// At the backend, an id names its holder's lease of the kind it names
/// alone: exclusive and reentrant leases exclude each other at acquire, so
/// an exclusive lease is not extended or released through a reentrant id
/// of its holder, nor a reentrant hold through an exclusive id (`false`,
/// `NotHeld`, the lease and its holds left as they were; decision 0066).
pub async fn lock_extended_and_released_through_its_own_kind_alone(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = locks(&backend);
    let mine = holder("a");
    let id = |kind| LeaseId {
        kind,
        key: key("k"),
        holder: mine.clone(),
    };
    let (exclusive, reentrant) = (id(LeaseKind::Exclusive), id(LeaseKind::Reentrant));
    let other = LeaseId {
        holder: holder("other"),
        ..exclusive.clone()
    };
    for (held, through, holds) in [(&exclusive, &reentrant, 1), (&reentrant, &exclusive, 2)] {
        let what = format!("the {} lease", held.kind.as_str());
        for _ in 0..holds {
            let granted = b.acquire(held, ms(10_000)).await.unwrap();
            assert!(matches!(granted, Acquire::Granted(_)), "{what}: {granted:?}");
        }
        assert!(
            !b.extend(through, ms(20_000)).await.unwrap(),
            "{what} extended through a {} id",
            through.kind.as_str()
        );
        assert_eq!(
            b.release(through).await.unwrap(),
            Release::NotHeld,
            "{what} released through a {} id",
            through.kind.as_str()
        );
        let busy = b.acquire(&other, ms(1000)).await.unwrap();
        assert!(matches!(busy, Acquire::Busy(_)), "{what} still held: {busy:?}");
        for remaining in (0..holds).rev() {
            assert_eq!(
                b.release(held).await.unwrap(),
                Release::Released { remaining },
                "{what}: its holds as they were"
            );
        }
    }
}
}
