//! Several exclusive locks at once ([`MultiLock`](coord_api::MultiLock)):
//! all or nothing, in the key space of single locks, one guard that
//! releases and loses them together, no deadlock between overlapping sets
//! asked in different orders, and bad input refused before any I/O. The
//! client cases run whether or not the backend takes a set in one step
//! (`acquire_all`); the SPI case checks that step itself.

use std::collections::HashMap;

use coord_api::{MultiGuard, spi::AcquireAll};

use crate::cases::prelude::*;

/// Takes `keys` together at once or panics.
async fn take_all(c: &Client, keys: &[&str], what: &str) -> MultiGuard {
    c.multi_lock(keys)
        .try_lock()
        .await
        .unwrap_or_else(|e| panic!("{what}: try_lock failed: {e}"))
        .unwrap_or_else(|| panic!("{what}: expected every lock to be free"))
}

/// Whether anyone holds the lock `k` (one read).
async fn locked(c: &Client, k: &str) -> bool {
    c.lock(k).is_locked().await.expect("is_locked")
}

cases! {
    family: "locks", needs: [Need::Locks, Need::Exclusive];

/// One member held elsewhere refuses the whole set, and none of the others
/// is taken (read back); once it frees, the set is granted whole.
#[needs(Need::Inspect)]
pub async fn multi_lock_is_all_or_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let gb = take(&b.lock("k2"), "b").await;
    let set = a.multi_lock(["k3", "k1", "k2"]);
    assert!(set.try_lock().await.unwrap().is_none(), "k2 is held by b");
    assert!(!locked(&a, "k1").await && !locked(&a, "k3").await, "none taken");
    let holders = b.lock("k2").holders().await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(&holders[0].holder, gb.holder(), "k2 is still b's alone");
    gb.release().await.unwrap();
    let g = set.try_lock().await.unwrap().expect("every member free");
    for k in ["k1", "k2", "k3"] {
        let holders = a.lock(k).holders().await.unwrap();
        assert_eq!(holders.len(), 1, "{k} is held once");
        assert_eq!(&holders[0].holder, g.holder(), "{k} by the guard's holder");
        assert_eq!(Some(holders[0].token), g.token(k), "{k} with its token");
    }
    let keys: Vec<&str> = g.tokens().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["k1", "k2", "k3"], "tokens in key order");
    assert!(g.release().await.unwrap());
}

/// A granted set excludes the single lock of each member, and a single
/// lock held excludes every set it is a member of.
pub async fn multi_lock_shares_the_key_space_of_locks(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let g = take_all(&a, &["x", "y"], "a").await;
    for k in ["x", "y"] {
        assert!(is_busy(&b.lock(k)).await, "{k} is held by the set");
    }
    assert!(
        b.multi_lock(["y", "z"]).try_lock().await.unwrap().is_none(),
        "an overlapping set is refused"
    );
    let gz = take(&b.lock("z"), "z was not taken by the refused set").await;
    gz.release().await.unwrap();
    g.release().await.unwrap();
    let gy = take(&b.lock("y"), "b").await;
    assert!(
        a.multi_lock(["x", "y"]).try_lock().await.unwrap().is_none(),
        "a set with a held member is refused"
    );
    assert!(!is_busy(&b.lock("x")).await, "x was not taken by the refused set");
    gy.release().await.unwrap();
}

/// One release frees every member; the guard says they were all held, and
/// stops counting as held.
pub async fn multi_release_frees_every_key(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let keys = ["m/1", "m/2", "m/3", "m/4"];
    let g = take_all(&a, &keys, "a").await;
    assert!(g.is_held());
    let signal = g.lost_signal();
    assert!(!signal.is_lost());
    assert!(g.release().await.unwrap(), "every member was held");
    assert!(signal.is_lost(), "released: the signal has fired");
    for k in keys {
        let gk = take(&b.lock(k), k).await;
        gk.release().await.unwrap();
    }
    // A guard dropped releases in the background.
    drop(take_all(&a, &keys, "again").await);
    let all = b.multi_lock(keys);
    let again = eventually(ms(3000), || async { all.try_lock().await.unwrap() }).await;
    again.expect("freed by the drop").release().await.unwrap();
}

/// Each member's token is larger than every earlier grant of its key, and
/// the next grant of a key is larger than the set's.
pub async fn multi_tokens_exceed_earlier_grants(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let mut before = HashMap::new();
    for k in ["t1", "t2", "t3"] {
        // Two grants, so that the keys' counters differ.
        for _ in 0..2 {
            let g = take(&a.lock(k), k).await;
            before.insert(k, g.token());
            g.release().await.unwrap();
        }
    }
    let g = take_all(&a, &["t1", "t2", "t3"], "set").await;
    let mine: HashMap<String, FencingToken> =
        g.tokens().map(|(k, t)| (k.to_string(), t)).collect();
    for (k, t) in &before {
        assert!(mine[*k] > *t, "{k}: {:?} not above {t:?}", mine[*k]);
    }
    g.release().await.unwrap();
    for k in ["t1", "t2", "t3"] {
        let after = take(&a.lock(k), k).await;
        assert!(after.token() > mine[k], "{k}: the next grant is larger");
        after.release().await.unwrap();
    }
}

/// Two clients taking overlapping sets in opposite orders, concurrently,
/// round after round, both finish (no deadlock), and no key ever has two
/// holders at once.
pub async fn multi_overlapping_sets_never_deadlock(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let sets: [&[&str]; 3] = [&["a", "b", "c"], &["c", "b", "a"], &["c", "d", "a"]];
    let inside: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, set) in sets.into_iter().enumerate() {
        let set = ctx.client(&format!("c{i}")).await.multi_lock(set);
        let (inside, most) = (inside.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..8 {
                let g = set.lock().await.expect("granted within the wait timeout");
                for (k, _) in g.tokens() {
                    let mut inside = inside.lock().unwrap();
                    let n = inside.entry(k.to_string()).or_default();
                    *n += 1;
                    most.fetch_max(*n, SeqCst);
                }
                sleep(ms(2)).await;
                for (k, _) in g.tokens() {
                    *inside.lock().unwrap().get_mut(k.as_str()).unwrap() -= 1;
                }
                assert!(g.release().await.unwrap(), "held until released");
            }
        }));
    }
    for t in tasks {
        join(t, ms(20000), "contender").await;
    }
    assert_eq!(most.load(SeqCst), 1, "a key had two holders at once");
}

/// `lock()` waits while a member is held and is woken when it frees;
/// with a wait timeout it gives up with `Timeout`, holding nothing.
#[needs(Need::Inspect)]
pub async fn multi_lock_waits_for_the_member_in_the_way(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let gb = take(&b.lock("w2"), "b").await;
    let short = a.multi_lock(["w1", "w2"]).wait_timeout(Some(ms(200)));
    match at_once(short.lock()).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(!locked(&a, "w1").await, "a timed-out wait holds nothing");
    let set = a.multi_lock(["w1", "w2"]);
    let waiter = tokio::spawn(async move { set.lock().await });
    sleep(ms(100)).await;
    assert!(!waiter.is_finished(), "waits while w2 is held");
    gb.release().await.unwrap();
    // The retry delay is 10 s: only the release's notification (or the
    // expiry of what was in the way) wakes the waiter this soon.
    let g = join(waiter, ms(5000), "waiter").await.expect("granted");
    assert!(g.is_held());
    g.release().await.unwrap();
}

/// A waiting `lock()` follows the member in the way: when the one it waits
/// for frees and another member is held by then, it waits for that one and
/// is woken within 50 ms of its release. The retry delay is 10 s and the
/// holders renew a 5 s TTL: only the notification of the member now in the
/// way wakes the waiter this soon.
#[needs(Need::ReleaseNotifications)]
pub async fn multi_lock_wait_follows_the_member_in_the_way(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx
        .client_with("a", default_options().retry_jitter(0.0))
        .await;
    let (b, c) = (ctx.client("b").await, ctx.client("c").await);
    let gb = take(&b.lock("f2").ttl(ms(5000)), "b").await;
    let set = a.multi_lock(["f2", "f1"]);
    let waiter = tokio::spawn(async move {
        let g = set.lock().await;
        (g, Instant::now())
    });
    sleep(ms(200)).await; // the waiter waits for f2
    let gc = take(&c.lock("f1").ttl(ms(5000)), "c, while the waiter sleeps").await;
    assert!(gb.release().await.unwrap());
    sleep(ms(200)).await; // woken, refused by f1: now waits for f1
    assert!(!waiter.is_finished(), "waits while f1 is held");
    let t_release = Instant::now();
    assert!(gc.release().await.unwrap());
    let (g, t_granted) = join(waiter, ms(3000), "waiter").await;
    let g = g.expect("granted");
    let lag = t_granted.saturating_duration_since(t_release);
    assert!(lag <= ms(50), "the waiter woke {lag:?} after f1's release");
    assert!(g.release().await.unwrap());
}

/// `wait_timeout` bounds the whole wait of a multi-lock, a slow
/// subscription included (as for a single lock): with the backend
/// answering subscriptions 6 s late, `lock()` on a set with a held member
/// gives up with `Error::Timeout` soon after its 300 ms, holding nothing,
/// not when the subscription comes.
pub async fn multi_lock_wait_timeout_bounds_a_slow_subscription(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.client("b").await;
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let gb = take(&b.lock("s2").ttl(ms(10_000)), "b").await;
    switch.late_replies("subscribe", ms(6000));
    let set = a.multi_lock(["s1", "s2"]).wait_timeout(Some(ms(300)));
    let t0 = Instant::now();
    let res = timeout(ms(9000), set.lock()).await.expect("the wait ends");
    let waited = t0.elapsed();
    switch.late_replies("subscribe", Duration::ZERO);
    assert!(matches!(res, Err(Error::Timeout { .. })), "{res:?}");
    assert!(
        waited < ms(3000),
        "a 300 ms multi-lock wait gave up after {waited:?}: it waited for the \
         subscription (6 s late)"
    );
    assert!(!locked(&b, "s1").await, "a timed-out wait holds nothing");
    assert!(gb.is_held());
    assert!(gb.release().await.unwrap());
}

/// A member lease lost (force released, so its renewal is refused) fires
/// the guard's lost signal; the guard no longer counts as held.
#[needs(Need::ForceRelease)]
pub async fn multi_lost_member_fires_the_guard_lost(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", default_options().ttl(ms(600))).await;
    let b = ctx.client("b").await;
    let g = take_all(&a, &["l1", "l2", "l3"], "a").await;
    let signal = g.lost_signal();
    assert!(!signal.is_lost());
    assert_eq!(b.lock("l2").force_release().await.unwrap(), 1);
    timeout(ms(3000), g.lost())
        .await
        .expect("the lost signal fires at the next renewal");
    timeout(ms(1000), signal.wait())
        .await
        .expect("the 'static signal too");
    assert!(signal.is_lost() && !g.is_held());
    assert!(!g.release().await.unwrap(), "not every member was held");
    for k in ["l1", "l2", "l3"] {
        let gk = take_within(&b.lock(k), ms(3000)).await;
        gk.unwrap_or_else(|| panic!("{k} frees")).release().await.unwrap();
    }
}

/// An empty set, a repeated key, a bad key, too many keys or a bad TTL is
/// `InvalidArgument` before any I/O (the backend is cut off).
pub async fn multi_lock_refuses_bad_input_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    switch.off();
    let none: [&str; 0] = [];
    assert_invalid(a.multi_lock(none).try_lock().await, "no key");
    assert_invalid(a.multi_lock(["k", "j", "k"]).try_lock().await, "k twice");
    assert_invalid(at_once(a.multi_lock(["k", "k"]).lock()).await, "lock k twice");
    assert_invalid(a.multi_lock(["k", ""]).try_lock().await, "empty key");
    let max = coord_api::spi::MAX_MULTI_LOCK_KEYS;
    let many: Vec<String> = (0..=max).map(|i| format!("k{i}")).collect();
    assert_invalid(a.multi_lock(&many).try_lock().await, "too many keys");
    assert_invalid(
        a.multi_lock(["k", "j"]).ttl(Duration::ZERO).try_lock().await,
        "zero ttl",
    );
    let err = a.multi_lock(["k", "j", "k"]).try_lock().await.unwrap_err();
    assert!(err.to_string().contains("\"k\""), "names the key: {err}");
    let err = a.multi_lock(&many).try_lock().await.unwrap_err();
    assert!(err.to_string().contains(&max.to_string()), "names the limit: {err}");
    switch.on();
    let full: Vec<String> = (0..max).map(|i| format!("k{i}")).collect();
    let g = a.multi_lock(&full).try_lock().await.unwrap();
    g.expect("the limit itself is allowed").release().await.unwrap();
}

/// Without a one-step `acquire_all` (a Redis Cluster, whose keys lie in
/// several slots), the client takes the members one by one and, when one
/// is busy, releases those it took and tries again. A release of an
/// earlier attempt that reaches the backend late (its caller answered
/// `Unavailable`, the request still on its way) frees nothing a later
/// attempt took: every attempt asks as a holder of its own. On a backend
/// with the one step nothing is released between attempts, and the case
/// checks only that the set is taken.
pub async fn multi_late_release_frees_nothing_taken_later(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let one_step = ctx.families().await.locks.is_some_and(|l| l.acquire_all);
    let (c, switch) = ctx.switchable_client("c", default_options()).await;
    let (o, p) = (ctx.client("o").await, ctx.client("p").await);
    let in_the_way = take(&o.lock("late-b"), "o").await;
    switch.late_requests("release", ms(2000));
    let set = c.multi_lock(["late-a", "late-b"]);
    let waiter = tokio::spawn(async move { set.lock().await });
    if !one_step {
        // The first attempt took late-a, found late-b busy and sent late-a's
        // release, which is on its way.
        let sent = || std::future::ready((switch.held("release") > 0).then_some(()));
        assert!(eventually(ms(3000), sent).await.is_some(), "no release sent");
    }
    switch.late_requests("release", Duration::ZERO);
    in_the_way.release().await.unwrap();
    let g = join(waiter, ms(5000), "waiter").await.expect("granted");
    // The late release arrives (within 2 s of its sending).
    let arrived = || std::future::ready((switch.held("release") == 0).then_some(()));
    assert!(eventually(ms(5000), arrived).await.is_some(), "the late release never arrived");
    assert!(
        p.lock("late-a").try_lock().await.unwrap().is_none(),
        "a late release of an earlier attempt freed late-a, which the set holds"
    );
    assert!(g.is_held());
    g.release().await.unwrap();
}

/// The SPI's `acquire_all` is one step: all granted with a token each, or
/// nothing taken and the first refused lease named; leases of two holders
/// are refused.
#[needs(Need::AcquireAll, Need::Inspect)]
pub async fn multi_acquire_all_grants_all_or_names_the_busy_one(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let locks = locks(&backend);
    let (mine, theirs) = (holder("a"), holder("b"));
    let lease = |k: &str, h: &HolderId| LeaseId {
        kind: LeaseKind::Exclusive,
        key: key(k),
        holder: h.clone(),
    };
    let theirs_b = lease("b", &theirs);
    assert!(matches!(
        locks.acquire(&theirs_b, ms(3000)).await.unwrap(),
        Acquire::Granted(_)
    ));
    let set = [lease("a", &mine), lease("b", &mine), lease("c", &mine)];
    match locks.acquire_all(&set, ms(3000)).await.unwrap() {
        AcquireAll::Busy { index, busy } => {
            assert_eq!(index, 1, "b is in the way");
            let left = busy.retry_in.expect("the backend knows b's expiry");
            assert!(left <= ms(3000), "{left:?}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    for k in ["a", "c"] {
        assert!(locks.inspect(LockSpace::Lock, &key(k)).await.unwrap().is_empty());
    }
    locks.release(&theirs_b).await.unwrap();
    let AcquireAll::Granted(grants) = locks.acquire_all(&set, ms(3000)).await.unwrap() else {
        panic!("every key is free");
    };
    assert_eq!(grants.len(), 3);
    for (l, g) in set.iter().zip(&grants) {
        let info = locks.inspect(LockSpace::Lock, &l.key).await.unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!((&info[0].holder, info[0].token), (&mine, g.token));
        assert_eq!(info[0].kind, LeaseKind::Exclusive);
        assert!(locks.extend(l, ms(3000)).await.unwrap(), "an ordinary lease");
    }
    assert!(matches!(
        locks.acquire(&lease("a", &theirs), ms(3000)).await.unwrap(),
        Acquire::Busy(_)
    ));
    for l in &set {
        assert_eq!(locks.release(l).await.unwrap(), Release::Released { remaining: 0 });
    }
    let twice = [lease("a", &mine), lease("a", &mine)];
    assert_invalid(locks.acquire_all(&twice, ms(3000)).await, "a key twice");
    assert_invalid(locks.acquire_all(&[], ms(3000)).await, "no lease");
    let reentrant = [LeaseId { kind: LeaseKind::Reentrant, ..lease("a", &mine) }];
    assert_invalid(locks.acquire_all(&reentrant, ms(3000)).await, "a reentrant lease");
    let two_holders = [lease("a", &mine), lease("b", &theirs)];
    assert_invalid(locks.acquire_all(&two_holders, ms(3000)).await, "two holders");
}
}
