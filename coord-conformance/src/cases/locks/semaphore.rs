//! Semaphores: at most N permits, each its own lease.

use crate::cases::prelude::*;

cases! {
    family: "semaphore", needs: [Need::Locks, Need::Semaphore];

/// Twelve tasks competing for a 3-permit semaphore never hold more than 3
/// permits at once.
pub async fn semaphore_never_exceeds_n(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let grants = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let sem = ctx.client(&format!("c{i}")).await.semaphore("s", 3);
        let (inside, most, grants) = (inside.clone(), most.clone(), grants.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                let p = sem.acquire().await.expect("permit within the wait timeout");
                let n = inside.fetch_add(1, SeqCst) + 1;
                most.fetch_max(n, SeqCst);
                grants.fetch_add(1, SeqCst);
                sleep(ms(15)).await;
                inside.fetch_sub(1, SeqCst);
                assert!(p.release().await.unwrap(), "held until released");
            }
        }));
    }
    for t in tasks {
        join(t, ms(8000), "semaphore task").await;
    }
    let most = most.load(SeqCst);
    assert!(most <= 3, "{most} permits held at once, limit 3");
    assert_eq!(grants.load(SeqCst), 24);
}

/// With all N permits held, `try_acquire` is refused; a release frees one.
pub async fn semaphore_try_acquire_refused_at_n(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let pa = a
        .semaphore("s", 2)
        .try_acquire()
        .await
        .unwrap()
        .expect("1st");
    let pb = b
        .semaphore("s", 2)
        .try_acquire()
        .await
        .unwrap()
        .expect("2nd");
    assert!(
        c.semaphore("s", 2).try_acquire().await.unwrap().is_none(),
        "third permit refused"
    );
    assert!(pa.release().await.unwrap());
    let pc = c
        .semaphore("s", 2)
        .try_acquire()
        .await
        .unwrap()
        .expect("permit after a release");
    pb.release().await.unwrap();
    pc.release().await.unwrap();
}

/// A crashed permit holder (guard leaked, no renewal) gets its permit
/// reclaimed at its TTL, not before.
pub async fn semaphore_crashed_permit_returns_at_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(400)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let p = a
        .semaphore("s", 1)
        .try_acquire()
        .await
        .unwrap()
        .expect("permit");
    std::mem::forget(p); // crash: no release, no renewal
    let pb = timeout(ms(3000), b.semaphore("s", 1).acquire())
        .await
        .expect("the TTL returns the permit")
        .unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= ms(390),
        "permit back after {waited:?}, before the TTL"
    );
    assert!(waited <= ms(400 + 600), "permit back after {waited:?}");
    pb.release().await.unwrap();
}

/// Asking for a semaphore with another number of permits while it has live
/// permits is `InvalidArgument`, and changes nothing.
pub async fn semaphore_different_n_invalid(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inspect = caps(&ctx).await.inspect;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let pa = a
        .semaphore("s", 2)
        .try_acquire()
        .await
        .unwrap()
        .expect("permit");
    assert_invalid(b.semaphore("s", 3).try_acquire().await, "try_acquire N=3");
    assert_invalid(b.semaphore("s", 1).try_acquire().await, "try_acquire N=1");
    assert_invalid(
        timeout(ms(2000), b.semaphore("s", 3).acquire())
            .await
            .expect("refused at once, not waited on"),
        "acquire N=3",
    );
    if inspect {
        let hs = a.semaphore("s", 2).holders().await.unwrap();
        assert_eq!(hs.len(), 1, "refusals added no permit: {hs:?}");
    }
    let pb = b
        .semaphore("s", 2)
        .try_acquire()
        .await
        .unwrap()
        .expect("the second of 2 permits is still free");
    assert!(pa.release().await.unwrap());
    assert!(pb.release().await.unwrap());
}

/// Once a semaphore's last permit is released, the next acquirer may fix
/// another N (the contract's decision: N is fixed while permits are live).
pub async fn semaphore_n_refixed_when_empty(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let p = a
        .semaphore("s", 2)
        .try_acquire()
        .await
        .unwrap()
        .expect("N=2");
    assert_invalid(b.semaphore("s", 1).try_acquire().await, "N=1 while live");
    assert!(p.release().await.unwrap());
    let p1 = b
        .semaphore("s", 1)
        .try_acquire()
        .await
        .unwrap()
        .expect("N=1 accepted once the semaphore is empty");
    assert!(
        a.semaphore("s", 1).try_acquire().await.unwrap().is_none(),
        "the new N=1 is enforced"
    );
    assert_invalid(a.semaphore("s", 2).try_acquire().await, "N=2 now refused");
    p1.release().await.unwrap();
}

/// A waiter on a full semaphore (retry delay 10 s) gets the permit promptly
/// when a holder releases.
#[needs(Need::ReleaseNotifications)]
pub async fn semaphore_release_wakes_waiter(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let pa = a
        .semaphore("s", 1)
        .ttl(ms(5000))
        .try_acquire()
        .await
        .unwrap()
        .expect("permit");
    let sem = b.semaphore("s", 1);
    let waiter = tokio::spawn(async move {
        let p = sem.acquire().await;
        (p, Instant::now())
    });
    sleep(ms(150)).await; // let the waiter start waiting
    assert!(!waiter.is_finished(), "the waiter waits for a permit");
    let t_release = Instant::now();
    assert!(pa.release().await.unwrap());
    let (pb, t_granted) = join(waiter, ms(3000), "waiter").await;
    let pb = pb.expect("permit granted");
    let lag = t_granted.saturating_duration_since(t_release);
    assert!(lag <= ms(500), "waiter woke {lag:?} after the release");
    pb.release().await.unwrap();
}

/// A dropped permit returns in the background, long before its TTL.
pub async fn dropped_permit_frees_slot(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let p = a
        .semaphore("s", 1)
        .ttl(ms(5000))
        .try_acquire()
        .await
        .unwrap()
        .expect("permit");
    drop(p);
    let sem = b.semaphore("s", 1);
    let pb = eventually(ms(1500), || async { sem.try_acquire().await.unwrap() })
        .await
        .expect("a dropped permit frees its slot");
    pb.release().await.unwrap();
}

/// A semaphore with zero permits is `InvalidArgument`: its acquisitions
/// and its `available()`, before any I/O.
pub async fn semaphore_zero_permits_invalid(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    assert_invalid(a.semaphore("s", 0).try_acquire().await, "try_acquire N=0");
    assert_invalid(
        timeout(ms(2000), a.semaphore("s", 0).acquire())
            .await
            .expect("refused at once"),
        "acquire N=0",
    );
    // `available` counts against N: with N = 0 it is refused as the
    // acquisitions are (never `Ok(0)`, a full semaphore's answer), while
    // the semaphore is free and while permits fixed another N, before any
    // I/O.
    let (b, switch) = ctx.switchable_client("b", default_options()).await;
    assert_zero_refused(b.semaphore("s", 0).available().await, "available N=0, free");
    let p = a.semaphore("s", 2).try_acquire().await.unwrap().expect("1 of 2");
    switch.off();
    assert_zero_refused(
        at_once(b.semaphore("s", 0).available()).await,
        "available N=0, N=2 fixed, cut off",
    );
    switch.on();
    assert!(p.release().await.unwrap());
}
/// A `try_acquire` whose reply was lost after the backend applied it leaves
/// no permit held: the slot is free again within a renewal interval, not
/// after the TTL.
pub async fn lost_acquire_reply_frees_permit(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    with_lost_reply(&switch, "try_acquire", a.semaphore("s", 1).try_acquire()).await;
    let p = eventually(FREED_WITHIN, || async {
        b.semaphore("s", 1).try_acquire().await.unwrap()
    })
    .await
    .expect("permit freed after its lost reply");
    assert!(p.release().await.unwrap());
}
/// Several permits are granted together, as one guard counting them all,
/// and refused as a whole when they do not all fit: a refusal takes
/// nothing, and the permits left stay free for smaller asks.
#[needs(Need::MultiPermit)]
pub async fn semaphore_many_granted_or_refused_whole(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inspect = caps(&ctx).await.inspect;
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let three = a
        .semaphore("s", 5)
        .try_acquire_many(3)
        .await
        .unwrap()
        .expect("3 of 5 permits at once");
    assert_eq!(three.permits(), 3);
    assert!(
        b.semaphore("s", 5).try_acquire_many(3).await.unwrap().is_none(),
        "3 more do not fit in the 2 left"
    );
    assert!(
        timeout(ms(300), b.semaphore("s", 5).acquire_many(3)).await.is_err(),
        "acquire_many(3) waits while only 2 are free"
    );
    if inspect {
        let hs = a.semaphore("s", 5).holders().await.unwrap();
        assert_eq!(hs.len(), 1, "one lease for the 3 permits: {hs:?}");
        assert_eq!(hs[0].holds, 3, "the lease shows its permits: {hs:?}");
        assert_eq!(hs[0].token, three.token());
        assert_eq!(a.semaphore("s", 5).available().await.unwrap(), 2);
    }
    let two = b
        .semaphore("s", 5)
        .try_acquire_many(2)
        .await
        .unwrap()
        .expect("the 2 left, untouched by the refusals");
    assert!(two.token() > three.token(), "tokens increase across grants");
    assert!(
        c.semaphore("s", 5).try_acquire().await.unwrap().is_none(),
        "3 + 2 of 5: full"
    );
    if inspect {
        assert_eq!(c.semaphore("s", 5).available().await.unwrap(), 0);
    }
    assert!(three.release().await.unwrap());
    if inspect {
        assert_eq!(c.semaphore("s", 5).available().await.unwrap(), 3);
    }
    let again = c
        .semaphore("s", 5)
        .try_acquire_many(3)
        .await
        .unwrap()
        .expect("the 3 released together are free together");
    assert!(two.release().await.unwrap());
    assert!(again.release().await.unwrap());
    if inspect {
        assert_eq!(c.semaphore("s", 5).available().await.unwrap(), 5);
        assert!(c.semaphore("s", 5).holders().await.unwrap().is_empty());
    }
}

/// Releasing a guard of several permits frees them all at once: a waiter
/// for several (retry delay 10 s) is granted promptly, and the permits are
/// back to the limit once everything is released.
#[needs(Need::MultiPermit)]
pub async fn semaphore_many_released_together_wake_waiter(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inspect = caps(&ctx).await.inspect;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let all = a
        .semaphore("s", 3)
        .ttl(ms(5000))
        .try_acquire_many(3)
        .await
        .unwrap()
        .expect("all 3 permits");
    let sem = b.semaphore("s", 3);
    let waiter = tokio::spawn(async move {
        let p = sem.acquire_many(2).await;
        (p, Instant::now())
    });
    sleep(ms(150)).await; // let the waiter start waiting
    assert!(!waiter.is_finished(), "the waiter waits for 2 permits");
    let t_release = Instant::now();
    assert!(all.release().await.unwrap());
    let (p, t_granted) = join(waiter, ms(3000), "waiter for 2").await;
    let p = p.expect("2 permits granted");
    let lag = t_granted.saturating_duration_since(t_release);
    assert!(lag <= ms(500), "waiter woke {lag:?} after the release");
    assert_eq!(p.permits(), 2);
    if inspect {
        assert_eq!(b.semaphore("s", 3).available().await.unwrap(), 1);
    }
    assert!(p.release().await.unwrap());
    if inspect {
        assert_eq!(b.semaphore("s", 3).available().await.unwrap(), 3);
    }
}

/// A waiter for several permits does not swallow the wake-up a waiter for
/// one needs (both waiting through one client, retry delay 10 s): with one
/// permit freed, the waiter for one (which started waiting later) is
/// granted promptly, and the waiter for two once a second permit frees.
#[needs(Need::MultiPermit, Need::ReleaseNotifications)]
pub async fn semaphore_waiter_for_many_does_not_hold_back_one(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, x) = (ctx.client("a").await, ctx.client("x").await);
    let pa = a.semaphore("s", 2).ttl(ms(5000)).try_acquire().await.unwrap().expect("1st");
    let px = x.semaphore("s", 2).ttl(ms(5000)).try_acquire().await.unwrap().expect("2nd");
    // Both waiters on one client: a backend may share one release's
    // wake-up among the waiters of one connection.
    let waiters = ctx.client("waiters").await;
    let wide = waiters.semaphore("s", 2);
    let wide = tokio::spawn(async move {
        let p = wide.acquire_many(2).await;
        (p, Instant::now())
    });
    sleep(ms(150)).await; // the waiter for two waits first
    let one = waiters.semaphore("s", 2);
    let one = tokio::spawn(async move {
        let p = one.acquire().await;
        (p, Instant::now())
    });
    sleep(ms(150)).await;
    assert!(!wide.is_finished() && !one.is_finished(), "both wait");
    let t_release = Instant::now();
    assert!(pa.release().await.unwrap());
    let (p1, t1) = join(one, ms(3000), "waiter for one").await;
    let p1 = p1.expect("one permit granted");
    let lag = t1.saturating_duration_since(t_release);
    assert!(lag <= ms(500), "waiter for one woke {lag:?} after the release");
    assert!(!wide.is_finished(), "two permits are not free yet");
    let t_release = Instant::now();
    assert!(p1.release().await.unwrap());
    assert!(px.release().await.unwrap());
    let (p2, t2) = join(wide, ms(3000), "waiter for two").await;
    let p2 = p2.expect("two permits granted");
    let lag = t2.saturating_duration_since(t_release);
    assert!(lag <= ms(500), "waiter for two woke {lag:?} after the releases");
    assert!(p2.release().await.unwrap());
}

/// A guard of several permits is one lease: leaked (no renewal, no
/// release), all its permits come back together at its TTL, not before.
#[needs(Need::MultiPermit)]
pub async fn semaphore_many_expire_together(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(400)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let p = a
        .semaphore("s", 3)
        .try_acquire_many(3)
        .await
        .unwrap()
        .expect("3 permits");
    std::mem::forget(p); // crash: no release, no renewal
    assert!(
        b.semaphore("s", 3).try_acquire().await.unwrap().is_none(),
        "all 3 held"
    );
    let pb = timeout(ms(3000), b.semaphore("s", 3).acquire_many(3))
        .await
        .expect("the TTL returns all 3 permits")
        .unwrap();
    let waited = t0.elapsed();
    assert!(waited >= ms(390), "permits back after {waited:?}, before the TTL");
    pb.release().await.unwrap();
}

/// Asking for 0 permits at once, or for more than the semaphore has, is
/// `InvalidArgument` naming the key and the limit, refused before any I/O
/// (also with the backend cut off); the backend itself refuses such a
/// lease too, and nothing is taken.
#[needs(Need::MultiPermit)]
pub async fn semaphore_bad_many_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    switch.off();
    let sem = a.semaphore("exports", 3);
    for n in [0, 4] {
        match at_once(sem.try_acquire_many(n)).await {
            Err(Error::InvalidArgument { message }) => {
                assert!(
                    message.contains("exports") && message.contains('3'),
                    "the error names the key and the limit: {message}"
                );
            }
            other => panic!("try_acquire_many({n}): expected InvalidArgument, got {other:?}"),
        }
        assert_invalid(at_once(sem.acquire_many(n)).await, "acquire_many");
    }
    switch.on();
    let backend = ctx.backend().await;
    for count in [0, 4] {
        let lease = LeaseId {
            kind: LeaseKind::Permits { limit: 3, count },
            key: key("exports"),
            holder: intruder(),
        };
        assert_invalid(
            locks(&backend).acquire(&lease, ms(1000)).await,
            "the backend's acquire of a bad count",
        );
    }
    let all = sem
        .try_acquire_many(3)
        .await
        .unwrap()
        .expect("nothing was taken by the refusals");
    assert!(all.release().await.unwrap());
}
/// The operations listing shows a guard of several permits as one lease
/// whose `holds` is its permits, beside a plain permit's 1.
#[needs(Need::MultiPermit, Need::Ops)]
pub async fn semaphore_many_listed_with_their_count(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let three = a.semaphore("s", 4).try_acquire_many(3).await.unwrap().expect("3 of 4");
    let one = b.semaphore("s", 4).try_acquire().await.unwrap().expect("the 4th");
    let resource: coord_api::spi::Resource = "semaphore:s".parse().expect("resource");
    let listed = a.operations().holders(&resource).await.unwrap();
    let holds = |guard: &LeaseGuard| {
        let found: Vec<_> = listed.iter().filter(|l| l.lease.token == Some(guard.token())).collect();
        assert_eq!(found.len(), 1, "one record per guard: {listed:?}");
        (found[0].lease.holds, &found[0].lease.holder)
    };
    assert_eq!(holds(&three), (3, three.holder()));
    assert_eq!(holds(&one), (1, one.holder()));
    assert_eq!(listed.len(), 2, "nothing else: {listed:?}");
    assert!(three.release().await.unwrap());
    assert!(one.release().await.unwrap());
}

/// Two waiters for several permits and one for a single permit, on one
/// client. The second wide waiter has a short TTL and gives up; the first
/// (TTL 30 s) still waits. A released permit that the single waiter could
/// take must still wake it promptly (contract: "A waiter for several
/// permits never swallows the wake-up of a waiter for fewer that could go
/// in"): the short-lived waiter's mark must not cut the long one's short.
#[needs(Need::MultiPermit, Need::ReleaseNotifications)]
pub async fn semaphore_wide_waiter_giving_up_does_not_hold_back_one(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, x) = (ctx.client("a").await, ctx.client("x").await);
    let pa = a.semaphore("s", 2).ttl(ms(5000)).try_acquire().await.unwrap().expect("1st");
    let px = x.semaphore("s", 2).ttl(ms(5000)).try_acquire().await.unwrap().expect("2nd");
    let waiters = ctx.client("waiters").await;
    // The long wide waiter: TTL 30 s, so it re-asserts itself every 10 s.
    let long = waiters.semaphore("s", 2).ttl(ms(30_000));
    let long = tokio::spawn(async move { long.acquire_many(2).await });
    sleep(ms(150)).await;
    // A short wide waiter (TTL 300 ms) comes and goes.
    let short = waiters.semaphore("s", 2).ttl(ms(300));
    let short = tokio::spawn(async move { short.acquire_many(2).await });
    sleep(ms(150)).await;
    short.abort();
    let _ = short.await;
    // The single waiter.
    let one = waiters.semaphore("s", 2);
    let one = tokio::spawn(async move {
        let p = one.acquire().await;
        (p, Instant::now())
    });
    sleep(ms(700)).await; // past the short waiter's TTL
    assert!(!long.is_finished() && !one.is_finished(), "both wait");
    let t_release = Instant::now();
    assert!(pa.release().await.unwrap());
    let (p1, t1) = join(one, ms(8000), "waiter for one").await;
    let p1 = p1.expect("one permit granted");
    let lag = t1.saturating_duration_since(t_release);
    assert!(lag <= ms(500), "waiter for one woke {lag:?} after the release");
    assert!(p1.release().await.unwrap());
    assert!(px.release().await.unwrap());
    let p2 = join(long, ms(8000), "long wide waiter").await.expect("2 permits");
    assert!(p2.release().await.unwrap());
}

/// At the backend, a holder asking again for a permit it holds gets a new
/// grant that replaces its lease: still one lease (its own permit is not in
/// the way), of a new, larger token, gone after one release.
#[needs(Need::Inspect)]
pub async fn semaphore_same_holder_again_replaces_its_lease(h: &dyn Harness) {
    let lease = LeaseId { kind: LeaseKind::Permit { limit: 1 }, key: key("s"), holder: intruder() };
    super::asking_again_replaces(h, lease, LockSpace::Semaphore, "permit lease").await;
}

/// At the backend, a holder has one lease per semaphore (asking again
/// replaces it, whatever the count), and an id of any permit kind names
/// it: the limit and count an id carries are an acquisition's terms, not
/// the lease's name. A lease of 2 permits is extended through a one-permit
/// id (still 2 permits) and released whole through an id of another limit;
/// another holder's id names nothing (decision 0066).
#[needs(Need::MultiPermit, Need::Inspect)]
pub async fn semaphore_lease_named_by_any_permit_kind_of_its_holder(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = locks(&backend);
    let mine = holder("a");
    let id = |kind, holder: &HolderId| LeaseId { kind, key: key("s"), holder: holder.clone() };
    let two = id(LeaseKind::Permits { limit: 3, count: 2 }, &mine);
    let granted = b.acquire(&two, ms(10_000)).await.unwrap();
    assert!(matches!(granted, Acquire::Granted(_)), "2 of 3 permits: {granted:?}");
    let other = id(LeaseKind::Permit { limit: 3 }, &holder("other"));
    assert!(!b.extend(&other, ms(20_000)).await.unwrap(), "another holder's id");
    assert_eq!(b.release(&other).await.unwrap(), Release::NotHeld, "another holder's id");
    let one = id(LeaseKind::Permit { limit: 3 }, &mine);
    assert!(b.extend(&one, ms(20_000)).await.unwrap(), "extended through a one-permit id");
    let listed = b.inspect(LockSpace::Semaphore, &key("s")).await.unwrap();
    assert!(
        listed.len() == 1
            && listed[0].kind == two.kind
            && listed[0].holds == 2
            && listed[0].expires_in > ms(10_000),
        "one lease of 2 permits, extended: {listed:?}"
    );
    let another_limit = id(LeaseKind::Permit { limit: 5 }, &mine);
    assert_eq!(
        b.release(&another_limit).await.unwrap(),
        Release::Released { remaining: 0 },
        "released through an id of another limit"
    );
    let left = b.inspect(LockSpace::Semaphore, &key("s")).await.unwrap();
    assert!(left.is_empty(), "both permits released together: {left:?}");
}
}

/// `InvalidArgument` naming the semaphore `s` and its 0 permits.
#[track_caller]
fn assert_zero_refused<T: std::fmt::Debug>(res: coord_api::Result<T>, what: &str) {
    match res {
        Err(Error::InvalidArgument { message }) => assert!(
            message.contains("\"s\"") && message.contains('0'),
            "{what}: the error names the key and the 0: {message}"
        ),
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}
