//! Reentrant holds as the client counts them: the last guard's release ends
//! the lease (marked first, sent again if cancelled, every hold the backend
//! still counts dropped); a hold's failed release leaves the others; a
//! re-entry keeps the lease's own TTL.

use coord_api::spi::MAX_REENTRANT_HOLDS;

use crate::cases::prelude::*;

cases! {
    family: "locks", needs: [Need::Locks];

/// A re-entry whose reply was lost (applied: the backend counts a hold no
/// guard owns) is dropped with the last guard's release: the key is free
/// again within a renewal interval, as after any lost grant
/// (`lost_acquire_reply_frees_lock`), not at the TTL.
pub async fn reentrant_lost_reentry_reply_freed_with_the_last_guard(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    let lock = a.lock("k").reentrant(true);
    let g1 = take(&lock, "first hold").await;
    // The re-entry reaches the backend (holds 2) but its reply is lost.
    with_lost_reply(&switch, "re-entry try_lock", lock.try_lock()).await;
    // The caller got an error and holds one guard: it releases it.
    assert!(g1.release().await.unwrap(), "the first hold was held");
    let t0 = Instant::now();
    let g = take_within(&b.lock("k").reentrant(true), FREED_WITHIN)
        .await
        .unwrap_or_else(|| {
            panic!(
                "still held {:?} after every guard was released (holders: left to the TTL)",
                t0.elapsed()
            )
        });
    assert!(g.release().await.unwrap());
}

/// The last guard's release, cancelled before it reached the backend, is
/// sent again from the guard's drop, as a plain lock's is: the key is free
/// at once, not at the TTL.
pub async fn reentrant_last_guards_cancelled_release_sent_again(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    for reentrant in [false, true] {
        let k = if reentrant { "r" } else { "e" };
        let g = take(&a.lock(k).reentrant(reentrant), "a").await;
        switch.holding();
        assert!(
            timeout(ms(100), g.release()).await.is_err(),
            "{k}: the release is held by the switch"
        );
        switch.on();
        let t0 = Instant::now();
        let g = take_within(&b.lock(k).reentrant(reentrant), FREED_WITHIN)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{k} (reentrant {reentrant}): still held {:?} after its only guard's release was cancelled",
                    t0.elapsed()
                )
            });
        assert!(g.release().await.unwrap());
    }
}

/// A re-entry through a clone with another TTL (`lock.clone().ttl(..)`, a
/// clone is the same holder) asks for the lease's own TTL: the backend's
/// expiry and the lease's local validity and renewals agree, and nobody
/// else is granted the key while the guards say held.
pub async fn reentrant_clone_with_another_ttl_keeps_the_leases(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", default_options().ttl(ms(3000))).await;
    let b = ctx.client("b").await;
    let lock = a.lock("k").reentrant(true);
    let g1 = take(&lock, "first hold").await;
    let short = lock.clone().ttl(ms(200));
    let g2 = take(&short, "re-entry through the clone").await;
    assert_eq!(g1.token(), g2.token(), "a re-entry keeps the token");
    sleep(ms(400)).await;
    if let Some(gb) = b.lock("k").try_lock().await.unwrap() {
        let a_believes = g1.is_held() || g2.is_held();
        assert!(
            !a_believes,
            "two holders: b was granted token {} while a's guards (token {}) say held",
            gb.token(),
            g1.token()
        );
        gb.release().await.unwrap();
    }
    drop(g2);
    drop(g1);
}

/// A reentrant clone of a plain handle that holds the lock is refused (an
/// exclusive lease is not re-entered), and the plain guard stays held.
pub async fn reentrant_clone_of_a_plain_handle_leaves_its_guard(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let plain = a.lock("k");
    let g = take(&plain, "exclusive").await;
    let reentrant = plain.clone().reentrant(true);
    // Refused (an exclusive lease is not re-entered): fine.
    let again = reentrant.try_lock().await.unwrap();
    assert!(again.is_none(), "an exclusive lease is not re-entered");
    assert!(
        g.is_held(),
        "the exclusive guard turned lost because a reentrant clone was refused"
    );
    g.release().await.unwrap();
}

/// A hold's release that fails (reply lost) while another guard holds
/// leaves the lease to that guard: still held, renewed, counted.
pub async fn reentrant_failed_release_of_one_hold_keeps_the_others(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let lock = a.lock("k").reentrant(true);
    let g1 = take(&lock, "first hold").await;
    let g2 = take(&lock, "second hold").await;
    switch.losing_replies();
    let res = g2.release().await;
    switch.on();
    assert!(res.is_err(), "reply lost: {res:?}");
    // Past several TTLs (1 s) with the backend reachable.
    sleep(ms(2500)).await;
    assert!(g1.is_held(), "the guard that was not released is no longer held");
    assert_eq!(lock.hold_count().await.unwrap(), 1, "the other hold is still counted");
    g1.release().await.unwrap();
}

/// The release of a lock's only guard, plain or reentrant, stops believing
/// in the lease before the request leaves: while its reply is on the way
/// (held back 500 ms after the backend applied it), another client may be
/// granted the key, and the first guard's lost signal has fired.
pub async fn last_release_stops_believing_before_it_leaves(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    switch.late_replies("release", ms(500));
    let b = ctx.client("b").await;
    for reentrant in [false, true] {
        let k = if reentrant { "r" } else { "e" };
        let g = take(&a.lock(k).reentrant(reentrant), "a").await;
        let signal = g.lost_signal();
        let releasing = tokio::spawn(async move { g.release().await });
        let gb = take_within(&b.lock(k), ms(400))
            .await
            .expect("the release was applied at once");
        assert!(
            signal.is_lost(),
            "{k} (reentrant {reentrant}): b holds token {} while a's only guard, whose release left, still counts as held",
            gb.token()
        );
        gb.release().await.unwrap();
        let _ = releasing.await;
    }
}
/// A re-entry that got no answer (its reply lost, or cancelled in flight)
/// after the lease was force released was granted afresh to the old
/// holder: that grant is given back at once, and the fenced guard turns
/// lost. Before, the old guard's renewals (which name the holder, not the
/// token) kept the fresh grant alive for ever, the guard believing it held
/// with its fenced token and the key never free.
#[needs(Need::Reentrant, Need::ForceRelease, Need::Inspect)]
pub async fn reentrant_unanswered_reentry_after_force_release_frees_the_key(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let (b, op) = (ctx.client("b").await, ctx.client("op").await);
    for cancelled in [false, true] {
        let lock = a.lock("k").reentrant(true);
        let g1 = take(&lock, "first hold").await;
        assert_eq!(op.lock("k").force_release().await.unwrap(), 1);
        if cancelled {
            // Applied at once, answered a second later: cancelled before.
            switch.late_replies("acquire", ms(1000));
            let res = timeout(ms(300), lock.lock()).await;
            switch.late_replies("acquire", Duration::ZERO);
            assert!(res.is_err(), "the re-entry was cancelled in flight: {res:?}");
        } else {
            with_lost_reply(&switch, "re-entry", lock.lock()).await;
        }
        let gb = eventually(FREED_WITHIN, || async {
            b.lock("k").try_lock().await.unwrap()
        })
        .await;
        let held = g1.is_held();
        let holders = op.lock("k").holders().await.unwrap();
        let gb = gb.unwrap_or_else(|| {
            panic!(
                "cancelled {cancelled}: the key stays held after an unanswered re-entry \
                 (old guard held: {held}): {holders:?}"
            )
        });
        assert!(!held, "cancelled {cancelled}: the fenced guard believes it holds");
        assert!(gb.release().await.unwrap());
    }
}

/// A re-entry through a clone of the handle (another task) that reaches
/// the backend while the last guard is being released, and whose answer
/// comes after that release, gets no guard of the ended lease: it holds
/// the key (a guard that is held, and the backend names it) or gets
/// nothing. Before, it answered a guard of the released lease
/// (`is_held()` false) while the last release dropped the hold it had
/// added: its caller went on as the holder of a key that was free.
#[needs(Need::Reentrant, Need::Inspect)]
pub async fn reentry_racing_the_last_release_gets_no_dead_guard(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let op = ctx.client("op").await;
    let lock = a.lock("k").reentrant(true);
    let g1 = take(&lock, "first hold").await;
    // The re-entry is applied at once (two holds), answered later.
    switch.late_replies("acquire", ms(400));
    let clone = lock.clone();
    let reentry = tokio::spawn(async move { clone.try_lock().await });
    let counted = eventually(ms(3000), || async {
        let hs = op.lock("k").holders().await.unwrap();
        (hs.len() == 1 && hs[0].holds == 2).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the re-entry reached the backend");
    switch.late_replies("acquire", Duration::ZERO);
    // Meanwhile the first task releases its guard, the lease's last here.
    assert!(g1.release().await.unwrap(), "the first hold was held");
    let got = join(reentry, ms(3000), "re-entry").await.unwrap();
    let holders = op.lock("k").holders().await.unwrap();
    if let Some(g) = got {
        assert!(
            g.is_held(),
            "the re-entry answered a guard that is not held (backend: {holders:?})"
        );
        assert!(
            holders.iter().any(|i| i.token == g.token()),
            "the re-entry's guard is held by its token: {holders:?}"
        );
        assert!(g.release().await.unwrap());
    }
}

/// Two guards of one reentrant lease released at once, from two tasks:
/// the one that is not the last reaches the backend late, after the last
/// guard's release dropped every hold. Both were held until their
/// releases, and both say so. Before, the first answered `false`, as if
/// its hold had been lost (force released, expired): the holds had been
/// dropped by its own lease's last release.
pub async fn reentrant_holds_released_out_of_order_both_say_held(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let op = ctx.client("op").await;
    let lock = a.lock("k").reentrant(true);
    let g1 = take(&lock, "first hold").await;
    let g2 = take(&lock, "second hold").await;
    // g1's release, not the last, reaches the backend 400 ms late.
    switch.slow_requests("release", ms(400));
    let first = tokio::spawn(async move { g1.release().await });
    let on_way = eventually(ms(3000), || async { (switch.held("release") == 1).then_some(()) });
    assert!(on_way.await.is_some(), "the first release is on its way");
    switch.slow_requests("release", Duration::ZERO);
    // g2's, the last, arrives first and drops every hold.
    assert!(g2.release().await.unwrap(), "the last hold was held");
    assert!(op.lock("k").holders().await.unwrap().is_empty(), "free");
    let first = join(first, ms(3000), "first release").await;
    assert!(
        first.unwrap(),
        "a hold dropped by its own lease's last release was held until then"
    );
}

/// A reentrant lease counts at most `MAX_REENTRANT_HOLDS` holds: a
/// re-entry beyond is `InvalidArgument` naming the key and the limit, at
/// the backend and through the handle, and changes nothing (the holds, the
/// token and the guard stay). The holds are counted up through the SPI as
/// the handle's holder.
#[needs(Need::Reentrant, Need::Inspect, Need::ForceRelease)]
pub async fn reentrant_holds_beyond_their_limit_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (lock, g, backend, lease) = held_to_the_limit(&ctx).await;
    refused("the backend's acquire", locks(&backend).acquire(&lease, ms(30_000)).await.map(drop));
    assert!(g.is_held(), "the guard is held, its handle re-enters");
    refused("try_lock", lock.try_lock().await.map(drop));
    refused("lock", at_once(lock.lock()).await.map(drop));
    let after = locks(&backend).inspect(LockSpace::Lock, &key("k")).await.unwrap();
    assert!(
        after.len() == 1 && after[0].holds == MAX_REENTRANT_HOLDS && after[0].token == g.token(),
        "the refusals changed nothing: {after:?}"
    );
    assert!(g.is_held(), "the guard is still held");
    // (Its release would drop every hold one by one: freed at once.)
    assert_eq!(lock.force_release().await.unwrap(), 1);
}

/// A queued re-entry (`acquire_queued`) of a lease held
/// `MAX_REENTRANT_HOLDS` times is refused before the queue, as a
/// semaphore's other N is: `InvalidArgument` naming the key and the
/// limit, also while another waiter heads the queue, and it takes no
/// place, so the waiters are not held up behind a place nobody uses: once
/// the lease ends, the waiter in line is granted, and after it a `try_`
/// finds the queue empty.
#[needs(Need::Reentrant, Need::Fair, Need::Inspect, Need::ForceRelease)]
pub async fn fair_reentry_refused_at_the_limit_takes_no_place(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (lock, g, backend, lease) = held_to_the_limit(&ctx).await;
    // A waiter TTL far longer than the case: a place left behind stays.
    let queued = |id: LeaseId, enqueue: bool| {
        let backend = backend.clone();
        async move {
            (locks(&backend))
                .acquire_queued(&id, ms(30_000), ms(30_000), enqueue)
                .await
        }
    };
    refused("a queued re-entry", queued(lease.clone(), true).await.map(drop));
    let waiter = LeaseId {
        holder: holder("waiter"),
        ..lease.clone()
    };
    let res = queued(waiter.clone(), true).await;
    assert!(matches!(res, Ok(Acquire::Busy(_))), "the waiter queues: {res:?}");
    refused(
        "a queued re-entry behind a waiter",
        queued(lease.clone(), true).await.map(drop),
    );
    let after = locks(&backend).inspect(LockSpace::Lock, &key("k")).await.unwrap();
    assert!(
        after.len() == 1 && after[0].holds == MAX_REENTRANT_HOLDS && after[0].token == g.token(),
        "the refusals changed no hold: {after:?}"
    );
    assert_eq!(lock.force_release().await.unwrap(), 1);
    let res = queued(waiter.clone(), true).await;
    assert!(
        matches!(res, Ok(Acquire::Granted(_))),
        "the waiter is next in line once the lease ended (no place of the refused \
         re-entries ahead of it): {res:?}"
    );
    locks(&backend).release(&waiter).await.unwrap();
    let late = LeaseId {
        holder: holder("late"),
        ..lease
    };
    let res = queued(late.clone(), false).await;
    assert!(
        matches!(res, Ok(Acquire::Granted(_))),
        "nobody queues: a try goes in: {res:?}"
    );
    locks(&backend).release(&late).await.unwrap();
}
}

/// A reentrant lease of "k" held `MAX_REENTRANT_HOLDS` times: the handle
/// (with a TTL that a renewal held up by the re-entries does not end), its
/// first guard, the backend and the lease, counted up through the SPI as
/// the handle's holder.
async fn held_to_the_limit(ctx: &Ctx<'_>) -> (Lock, LeaseGuard, DynBackend, LeaseId) {
    let a = ctx
        .client_with("a", default_options().ttl(ms(30_000)))
        .await;
    let lock = a.lock("k").reentrant(true);
    let g = take(&lock, "first hold").await;
    let backend = ctx.backend().await;
    let lease = LeaseId {
        kind: LeaseKind::Reentrant,
        key: key("k"),
        holder: g.holder().clone(),
    };
    // From several tasks at once (as many round trips: in the simulator,
    // about 20 s of its time); a re-entry left unanswered (a fault) may or
    // may not have counted: the holds are then read and topped up to the
    // limit (one that counts late meets the limit).
    let (tasks, more) = (16, MAX_REENTRANT_HOLDS - 1);
    let reenter = |backend: DynBackend, lease: LeaseId, token, n| async move {
        for _ in 0..n {
            match locks(&backend).acquire(&lease, ms(30_000)).await {
                Ok(Acquire::Granted(r)) if r.token == token => {}
                Err(e) if e.is_retryable() => {}
                Err(Error::InvalidArgument { .. }) if n == 1 => {}
                other => panic!("a re-entry below the limit: {other:?}"),
            }
        }
    };
    let mut counting = Vec::new();
    for i in 0..tasks {
        let n = more / tasks + u32::from(i < more % tasks);
        let count = reenter(backend.clone(), lease.clone(), g.token(), n);
        counting.push(tokio::spawn(count));
    }
    for t in counting {
        join(t, ms(300_000), "re-entries").await;
    }
    let listed = loop {
        let listed = locks(&backend)
            .inspect(LockSpace::Lock, &key("k"))
            .await
            .unwrap();
        match listed.as_slice() {
            [l] if l.token == g.token() && l.holds < MAX_REENTRANT_HOLDS => {
                for _ in l.holds..MAX_REENTRANT_HOLDS {
                    reenter(backend.clone(), lease.clone(), g.token(), 1).await;
                }
            }
            _ => break listed,
        }
    };
    assert!(
        listed.len() == 1 && listed[0].holds == MAX_REENTRANT_HOLDS,
        "every re-entry counted: {listed:?}"
    );
    (lock, g, backend, lease)
}

/// `res` is the refusal of a re-entry past the limit, naming the key and
/// the limit; `what` names the call.
fn refused(what: &str, res: Result<()>) {
    match res {
        Err(Error::InvalidArgument { message }) => assert!(
            message.contains("\"k\"") && message.contains(&MAX_REENTRANT_HOLDS.to_string()),
            "{what}: the error names the key and the limit: {message}"
        ),
        other => panic!("{what} past the limit: expected InvalidArgument, got {other:?}"),
    }
}
