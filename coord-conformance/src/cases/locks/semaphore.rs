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

/// A semaphore with zero permits is `InvalidArgument`.
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
}
