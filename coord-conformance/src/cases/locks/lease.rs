//! What every lock-family lease does: fencing tokens, auto-extension, the lost signal, drop, crash and cancellation, waiting limits.

use crate::cases::prelude::*;

cases! {
    family: "locks", needs: [Need::Locks];

/// Successive grants of one key (alternating clients) carry strictly
/// increasing tokens.
pub async fn tokens_increase_across_grants(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let clients = [ctx.client("a").await, ctx.client("b").await];
    let mut last: Option<FencingToken> = None;
    for i in 0..6 {
        let g = take(&clients[i % 2].lock("k"), "grant").await;
        if let Some(prev) = last {
            assert!(g.token() > prev, "token {} after {prev}", g.token());
        }
        last = Some(g.token());
        assert!(g.release().await.unwrap());
    }
}

/// A grant after the previous holder's lease expired carries a larger token.
pub async fn tokens_increase_after_expiry(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(200)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let ga = take(&a.lock("k"), "a").await;
    sleep_until(t0 + ms(200)).await;
    let gb = take_within(&b.lock("k"), ms(1000))
        .await
        .expect("free after expiry");
    assert!(
        gb.token() > ga.token(),
        "token {} after expired {}",
        gb.token(),
        ga.token()
    );
    gb.release().await.unwrap();
}

/// A grant after a force release carries a larger token than the fenced
/// holder's.
#[needs(Need::ForceRelease)]
pub async fn tokens_increase_after_force_release(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ga = take(&a.lock("k"), "a").await;
    assert_eq!(b.lock("k").force_release().await.unwrap(), 1);
    let gb = take(&b.lock("k"), "free after force release").await;
    assert!(
        gb.token() > ga.token(),
        "token {} after force-released {}",
        gb.token(),
        ga.token()
    );
    gb.release().await.unwrap();
}

/// Permits of one semaphore each get a strictly larger token than the
/// grant before, and a permit granted after they were released a larger one
/// still.
#[needs(Need::Semaphore)]
pub async fn tokens_increase_for_permits(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let mut permits = Vec::new();
    for name in ["a", "b", "c"] {
        let s = ctx.client(name).await.semaphore("s", 3);
        permits.push(s.try_acquire().await.unwrap().expect("permit"));
    }
    let tokens: Vec<_> = permits.iter().map(|p| p.token()).collect();
    assert_increasing(&tokens, "permit");
    for p in permits {
        p.release().await.unwrap();
    }
    let s = ctx.client("d").await.semaphore("s", 3);
    let p = s.try_acquire().await.unwrap().unwrap();
    assert!(p.token() > tokens[2], "permit token after release");
    p.release().await.unwrap();
}

/// Readers of one read-write lock each get a strictly larger token than the
/// grant before, and the writer after them a larger one still.
#[needs(Need::ReadWrite)]
pub async fn tokens_increase_for_readers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let mut readers = Vec::new();
    for name in ["a", "b", "c"] {
        let rw = ctx.client(name).await.rwlock("r");
        readers.push(rw.try_read().await.unwrap().expect("reader"));
    }
    let tokens: Vec<_> = readers.iter().map(|r| r.token()).collect();
    assert_increasing(&tokens, "reader");
    for r in readers {
        r.release().await.unwrap();
    }
    let rw = ctx.client("d").await.rwlock("r");
    let w = rw.try_write().await.unwrap().unwrap();
    assert!(w.token() > tokens[2], "writer token after readers");
    w.release().await.unwrap();
}

/// With auto-extension on, a lock with a 300 ms TTL is still held (and
/// refused to others) after 1 s, more than 3× its TTL.
pub async fn auto_extend_keeps_lock_past_3x_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", default_options().ttl(ms(300))).await;
    let b = ctx.client("b").await;
    let g = take(&a.lock("k"), "a").await;
    sleep(ms(1000)).await;
    assert!(g.is_held(), "renewed locally");
    assert!(is_busy(&b.lock("k")).await, "still held at the backend");
    assert!(g.release().await.unwrap(), "held until released");
}

/// When renewal becomes impossible (backend cut off) and another client takes
/// the key, the lost signal fires and `is_held()` is false.
pub async fn lost_signal_fires_when_renewal_impossible(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(600)))
        .await;
    let b = ctx.client("b").await;
    let g = take(&a.lock("k"), "a").await;
    let signal = g.lost_signal();
    assert!(!signal.is_lost());
    switch.off();
    let t_off = Instant::now();
    let lock = b.lock("k");
    let waiter = tokio::spawn(async move { lock.lock().await });
    timeout(ms(2000), g.lost())
        .await
        .expect("lost fires once renewal is impossible");
    assert!(
        t_off.elapsed() <= ms(600 + 400),
        "lost fired {:?} after the cut, TTL 600 ms",
        t_off.elapsed()
    );
    assert!(!g.is_held());
    assert!(signal.is_lost());
    timeout(ms(1000), signal.wait())
        .await
        .expect("LostSignal::wait completes");
    let gb = join(waiter, ms(3000), "b takes the key")
        .await
        .expect("b granted");
    assert!(gb.is_held());
    assert!(!g.is_held(), "still lost after the takeover");
    gb.release().await.unwrap();
}

/// Safety: the cut-off holder's local validity ends before another client is
/// granted the key.
pub async fn lost_before_takeover(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(600)))
        .await;
    let b = ctx.client("b").await;
    let g = take(&a.lock("k"), "a").await;
    switch.off();
    let lock = b.lock("k");
    let waiter = tokio::spawn(async move {
        let g = lock.lock().await;
        (g, Instant::now())
    });
    let mut deadline = g.valid_until().expect("held");
    let poll_end = Instant::now() + ms(2000);
    while let Some(until) = g.valid_until() {
        deadline = deadline.max(until);
        assert!(Instant::now() < poll_end, "never lost");
        sleep(ms(2)).await;
    }
    let (gb, t_granted) = join(waiter, ms(3000), "b takes the key").await;
    let gb = gb.expect("b granted");
    assert!(
        t_granted >= deadline,
        "b granted {:?} before a's local validity ended",
        deadline - t_granted
    );
    gb.release().await.unwrap();
}

/// Once another client took the key, the old holder's renewal fails, at the
/// client and at the backend, even after it reconnects.
pub async fn renewal_after_takeover_fails(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(400)))
        .await;
    let (b, c) = (ctx.client("b").await, ctx.client("c").await);
    let g = take(&a.lock("k"), "a").await;
    switch.off();
    let gb = timeout(ms(3000), b.lock("k").lock())
        .await
        .expect("b takes the key after a's TTL")
        .unwrap();
    switch.on();
    assert!(!g.extend().await.unwrap(), "client-side renewal refused");
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: g.holder().clone(),
    };
    assert!(
        !locks(&backend).extend(&id, ms(5000)).await.unwrap(),
        "backend renewal by the old holder refused"
    );
    assert!(!g.is_held());
    assert!(!g.release().await.unwrap(), "old holder's release is false");
    assert!(is_busy(&c.lock("k")).await, "b still holds it");
    assert!(gb.release().await.unwrap());
}

/// After `release`, the lease's `LostSignal` reports it ended and `wait`
/// completes.
pub async fn release_ends_lost_signal(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let g = take(&a.lock("k"), "a").await;
    let signal = g.lost_signal();
    assert!(!signal.is_lost());
    assert!(g.release().await.unwrap());
    assert!(signal.is_lost());
    timeout(ms(1000), signal.wait())
        .await
        .expect("wait completes after release");
}

/// A release that failed without reaching the backend (cut off) is sent
/// again in the background, as a dropped guard's is: the key is free soon
/// after the backend is reachable again, not at the TTL (9 s). The error is
/// still the caller's.
pub async fn failed_release_is_sent_again(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    let g = take(&a.lock("k"), "a").await;
    switch.off();
    let res = g.release().await;
    switch.on();
    assert!(matches!(&res, Err(e) if e.is_retryable()), "cut off: {res:?}");
    let t0 = Instant::now();
    let gb = take_within(&b.lock("k"), FREED_WITHIN).await;
    let gb = gb.unwrap_or_else(|| panic!("still held {:?} after a failed release", t0.elapsed()));
    assert!(gb.release().await.unwrap());
}

/// Dropping a guard releases in the background: another client gets the key
/// long before the 5 s TTL.
pub async fn dropped_guard_frees_key(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let b = ctx.client("b").await;
    let g = take(&a.lock("k").ttl(ms(5000)), "a").await;
    assert!(is_busy(&b.lock("k")).await);
    let t0 = Instant::now();
    drop(g);
    let gb = take_within(&b.lock("k"), ms(1500))
        .await
        .expect("a dropped guard frees the key");
    assert!(t0.elapsed() < ms(2000));
    gb.release().await.unwrap();
}

/// A holder that cannot reach the backend when it drops its guard (crashed or
/// cut off) frees the key at its TTL.
pub async fn unreachable_holder_freed_at_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", no_extend(400)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let g = take(&a.lock("k"), "a").await;
    switch.off();
    drop(g);
    let gb = timeout(ms(3000), b.lock("k").lock())
        .await
        .expect("the TTL frees the key")
        .unwrap();
    let waited = t0.elapsed();
    assert!(waited >= ms(390), "freed after {waited:?}, before the TTL");
    assert!(waited <= ms(400 + 600), "freed after {waited:?}");
    gb.release().await.unwrap();
}

/// A `lock()` cancelled while waiting leaves nothing held: once the holder
/// releases, another client gets the key at once.
pub async fn cancelled_lock_leaves_nothing_held(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let ga = take(&a.lock("k").ttl(ms(5000)), "a").await;
    let res = timeout(ms(200), b.lock("k").ttl(ms(5000)).lock()).await;
    assert!(res.is_err(), "the wait was cancelled, not granted");
    assert!(ga.release().await.unwrap());
    let gc = take_within(&c.lock("k"), ms(300))
        .await
        .expect("nothing left held by the cancelled waiter");
    gc.release().await.unwrap();
}

/// Cancelling a waiting `lock()` at moments around the holder's release never
/// leaves a lease behind.
pub async fn cancel_racing_release_leaves_nothing_held(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    for i in 0..8u64 {
        let ga = take(&a.lock("k"), "a").await;
        let lock = b.lock("k").ttl(ms(5000));
        let waiter = tokio::spawn(async move { lock.lock().await });
        sleep(ms(20)).await;
        let release = tokio::spawn(ga.release());
        sleep(Duration::from_micros(i * 400)).await;
        waiter.abort();
        assert!(join(release, ms(2000), "release").await.unwrap());
        match waiter.await {
            Ok(Ok(g)) => assert!(g.release().await.unwrap(), "b's grant was held"),
            Ok(Err(e)) => panic!("waiter failed: {e}"),
            Err(_) => {} // cancelled
        }
        let gc = take_within(&c.lock("k"), ms(1000))
            .await
            .unwrap_or_else(|| panic!("round {i}: a cancelled waiter left the key held"));
        gc.release().await.unwrap();
    }
}

/// `lock()` on a held key fails with `Error::Timeout` once `wait_timeout`
/// has passed.
pub async fn wait_timeout_returns_timeout(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ga = take(&a.lock("k").ttl(ms(5000)), "a").await;
    let t0 = Instant::now();
    let res = timeout(ms(3000), b.lock("k").wait_timeout(Some(ms(300))).lock())
        .await
        .expect("wait_timeout bounds the wait");
    let waited = t0.elapsed();
    assert!(
        matches!(res, Err(Error::Timeout { .. })),
        "expected Timeout, got {res:?}"
    );
    assert!(waited >= ms(290), "gave up after {waited:?}, before 300 ms");
    assert!(ga.is_held());
    assert!(ga.release().await.unwrap());
}

/// `wait_timeout` bounds the whole wait, a slow subscription included:
/// with the backend answering subscriptions 6 s late, `lock()` on a held
/// key still gives up with `Error::Timeout` soon after its 300 ms (not when
/// the subscription comes), and the holder keeps the lock; a fair lock's
/// too (its first subscription leaves beside its first attempt).
#[needs(Need::Exclusive)]
pub async fn wait_timeout_bounds_a_slow_subscription(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let (b, switch) = ctx.switchable_client("b", default_options()).await;
    let modes = if caps(&ctx).await.fair { &[false, true][..] } else { &[false] };
    for &fair in modes {
        let ga = take(&a.lock("k").fair(fair).ttl(ms(10_000)), "a").await;
        switch.late_replies("subscribe", ms(6000));
        switch.late_replies("subscribe_queued", ms(6000));
        let t0 = Instant::now();
        let lock = b.lock("k").fair(fair).wait_timeout(Some(ms(300)));
        let res = timeout(ms(9000), lock.lock()).await.expect("the wait ends");
        let waited = t0.elapsed();
        assert!(matches!(res, Err(Error::Timeout { .. })), "fair {fair}: {res:?}");
        assert!(
            waited < ms(3000),
            "a 300 ms wait (fair {fair}) gave up after {waited:?}: it waited for the \
             subscription (6 s late)"
        );
        assert!(ga.is_held());
        assert!(ga.release().await.unwrap());
        switch.late_replies("subscribe", Duration::ZERO);
        switch.late_replies("subscribe_queued", Duration::ZERO);
    }
}

/// A waiter subscribes and then attempts again before it sleeps: a release
/// between its refusal and its subscription (one that takes 1 s to reach
/// the backend here, so the release notification finds nobody) is not
/// missed — it gets the lock as soon as it has subscribed, not at its retry
/// delay or the holder's expiry (30 s each).
#[needs(Need::Exclusive)]
pub async fn release_before_the_subscription_is_not_missed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let opts = default_options().retry_delay(ms(30_000)).retry_jitter(0.0);
    let (b, switch) = ctx.switchable_client("b", opts).await;
    let ga = take(&a.lock("k").ttl(ms(30_000)), "a").await;
    switch.slow_requests("subscribe", ms(1000));
    let lock = b.lock("k");
    let waiter = tokio::spawn(async move { lock.lock().await });
    let on_its_way = || async { (switch.held("subscribe") == 1).then_some(()) };
    let subscribing = eventually(ms(3000), on_its_way).await;
    subscribing.expect("the waiter, refused, subscribes");
    let first = ga.token();
    assert!(ga.release().await.unwrap());
    let gb = join(waiter, ms(5000), "the waiter").await.expect("b's lock");
    assert!(gb.token() > first);
    switch.slow_requests("subscribe", Duration::ZERO);
    assert!(gb.release().await.unwrap());
}

/// `lock()` with `max_retries` gives up with `Error::Timeout` after that many
/// retries even without a wait timeout.
pub async fn max_retries_returns_timeout(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let opts = default_options()
        .retry_delay(ms(20))
        .retry_jitter(0.0)
        .max_retries(Some(3))
        .wait_timeout(None);
    let b = ctx.client_with("b", opts).await;
    let ga = take(&a.lock("k").ttl(ms(5000)), "a").await;
    let res = timeout(ms(3000), b.lock("k").lock())
        .await
        .expect("max_retries bounds the wait");
    assert!(
        matches!(res, Err(Error::Timeout { .. })),
        "expected Timeout, got {res:?}"
    );
    assert!(ga.release().await.unwrap(), "a kept the lock");
}

/// Extreme but valid-looking options (`wait_timeout` and `retry_delay` of
/// `Duration::MAX`, "wait for ever") either work or are `InvalidArgument`;
/// they never panic.
pub async fn extreme_durations_do_not_panic(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(300)).await;
    for (what, opts) in extreme_waits() {
        let t0 = Instant::now();
        let _held = take(&a.lock("k"), "a").await;
        let b = ctx.client_with("b", opts).await;
        let lock = b.lock("k");
        let waiter = tokio::spawn(async move { lock.lock().await });
        let res = timeout(ms(3000), waiter)
            .await
            .unwrap_or_else(|_| panic!("{what}: not granted after the holder's TTL"));
        match res {
            Ok(Ok(g)) => {
                assert!(t0.elapsed() >= ms(290), "{what}: granted before the TTL");
                g.release().await.unwrap();
            }
            Ok(Err(Error::InvalidArgument { .. })) => {}
            Ok(Err(e)) => panic!("{what}: unexpected error {e}"),
            Err(e) => panic!("{what}: lock() panicked: {e}"),
        }
        sleep_until(t0 + ms(350)).await;
    }
}
/// A `try_lock` or `lock` whose request the backend applied but whose reply
/// was lost leaves nothing held: the client releases what it may have been
/// granted, and the key is free again within a renewal interval, not after
/// the TTL.
pub async fn lost_acquire_reply_frees_lock(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    for (k, waiting) in [("k", false), ("w", true)] {
        let lock = a.lock(k);
        let t0 = Instant::now();
        if waiting {
            with_lost_reply(&switch, "lock", lock.lock()).await;
        } else {
            with_lost_reply(&switch, "try_lock", lock.try_lock()).await;
        }
        let g = take_within(&b.lock(k), FREED_WITHIN)
            .await
            .unwrap_or_else(|| panic!("{k}: still held {:?} after the lost reply", t0.elapsed()));
        assert!(g.release().await.unwrap());
    }
}

/// A guard leaked with `mem::forget` (with auto-extension off: a leaked
/// guard that renews keeps its key like a held one, on every backend) frees
/// its key at its TTL, and not before.
pub async fn leaked_guard_frees_key_at_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(400)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    std::mem::forget(take(&a.lock("k"), "a").await);
    let g = timeout(ms(3000), b.lock("k").lock())
        .await
        .expect("the TTL frees a leaked guard's key")
        .unwrap();
    let waited = t0.elapsed();
    assert!(waited >= ms(390), "freed after {waited:?}, before the TTL");
    assert!(waited <= ms(1000), "freed after {waited:?}");
    g.release().await.unwrap();
}
}
