//! The questions a holder and an operator ask of a lock-family handle, one
//! call each (`is_locked`, `is_held`, `hold_count`, `remaining_ttl`,
//! `available`), and the lease options set on a handle (`lease`, the retry
//! settings).

use crate::cases::prelude::*;

cases! {
    family: "locks", needs: [Need::Locks];

/// A lock answers whether it is locked, whether this handle holds it, its
/// hold count and the time left, and stops naming a holder once released.
#[needs(Need::Inspect)]
pub async fn lock_answers_who_holds_it(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (mine, theirs) = (a.lock("k").ttl(ms(3000)), b.lock("k"));
    assert!(!mine.is_locked().await.unwrap(), "free key");
    assert!(!mine.is_held().await.unwrap());
    assert_eq!(mine.hold_count().await.unwrap(), 0);
    assert_eq!(mine.remaining_ttl().await.unwrap(), None, "free: no TTL");
    let g = take(&mine, "a").await;
    assert!(mine.is_locked().await.unwrap() && theirs.is_locked().await.unwrap());
    assert!(mine.is_held().await.unwrap(), "held by this handle");
    assert!(mine.clone().is_held().await.unwrap(), "and by its clone");
    assert!(!theirs.is_held().await.unwrap(), "not by another client's");
    assert!(!a.lock("k").is_held().await.unwrap(), "nor another handle's");
    assert_eq!(mine.hold_count().await.unwrap(), 1);
    assert_eq!(theirs.hold_count().await.unwrap(), 0);
    let left = theirs.remaining_ttl().await.unwrap().expect("held: a TTL");
    assert!(left > Duration::ZERO && left <= ms(3000), "{left:?}");
    let local = g.remaining_ttl().expect("the guard is held");
    assert!(local > Duration::ZERO && local <= ms(3000), "{local:?}");
    assert!(g.release().await.unwrap());
    assert!(!mine.is_locked().await.unwrap(), "free after release");
    assert!(!mine.is_held().await.unwrap());
    assert_eq!(mine.remaining_ttl().await.unwrap(), None);
}

/// A reentrant handle's hold count is its number of live guards; a handle
/// whose lease was force released no longer holds it, though its guard is
/// still valid by the local clock.
#[needs(Need::Inspect, Need::ForceRelease)]
pub async fn hold_count_follows_reentry_and_force_release(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let caps = caps(&ctx).await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    if caps.reentrant {
        let lock = a.lock("r").reentrant(true).ttl(ms(3000));
        let outer = take(&lock, "outer").await;
        let inner = take(&lock, "inner").await;
        assert_eq!(lock.hold_count().await.unwrap(), 2);
        assert!(inner.release().await.unwrap());
        assert_eq!(lock.hold_count().await.unwrap(), 1);
        assert!(outer.release().await.unwrap());
        assert_eq!(lock.hold_count().await.unwrap(), 0);
    }
    let lock = a.lock("k").ttl(ms(5000));
    let g = take(&lock, "a").await;
    assert_eq!(b.lock("k").force_release().await.unwrap(), 1);
    assert!(g.remaining_ttl().is_some(), "the guard has not found out yet");
    assert!(!lock.is_held().await.unwrap(), "the backend names no one");
    assert_eq!(lock.hold_count().await.unwrap(), 0);
    let gb = take(&b.lock("k"), "b").await;
    assert!(!lock.is_held().await.unwrap(), "b's grant is not a's");
    assert!(lock.is_locked().await.unwrap());
    gb.release().await.unwrap();
}

/// `lease(ttl)` is a fixed lease: never renewed, it ends at its TTL (its
/// lost signal fires, not before the TTL less the drift allowance) and the
/// key frees for others.
pub async fn fixed_lease_ends_at_its_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let lock = a.lock("k").lease(ms(300));
    assert!(!lock.options().auto_extend && lock.options().ttl == ms(300));
    let t0 = Instant::now();
    let g = take(&lock, "a").await;
    timeout(ms(2000), g.lost())
        .await
        .expect("a fixed lease ends at its TTL");
    // Local validity: the TTL less 1% drift and a 2 ms margin.
    assert!(t0.elapsed() >= ms(290), "lost after {:?}", t0.elapsed());
    assert!(!g.is_held() && g.remaining_ttl().is_none());
    let gb = take_within(&b.lock("k"), ms(2000))
        .await
        .expect("the key frees at the TTL");
    assert!(gb.token() > g.token());
    gb.release().await.unwrap();
}

/// The retry settings set on a handle are those in force: `max_retries`
/// bounds a wait with `Error::Timeout`, and a jitter out of range is
/// `InvalidArgument` before any I/O.
pub async fn handle_retry_settings_are_in_force(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ga = take(&a.lock("k").ttl(ms(5000)), "a").await;
    let waiter = b
        .lock("k")
        .wait_timeout(None)
        .retry_delay(ms(20))
        .retry_jitter(0.0)
        .max_retries(Some(3));
    let res = timeout(ms(3000), waiter.lock())
        .await
        .expect("max_retries bounds the wait");
    assert!(matches!(res, Err(Error::Timeout { .. })), "got {res:?}");
    assert_invalid(b.lock("k").retry_jitter(2.0).lock().await, "jitter 2.0");
    assert_invalid(b.lock("k").retry_delay(Duration::ZERO).try_lock().await, "delay 0");
    assert!(ga.release().await.unwrap(), "a kept the lock");
}

/// A semaphore tells how many permits are free; a read-write lock whether
/// it is locked and whether by a writer.
#[needs(Need::Inspect)]
pub async fn semaphore_and_rwlock_answer_in_one_call(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let caps = caps(&ctx).await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    if caps.semaphore {
        let slots = a.semaphore("s", 3);
        assert_eq!(slots.available().await.unwrap(), 3);
        let p1 = slots.try_acquire().await.unwrap().expect("a permit");
        let p2 = b.semaphore("s", 3).try_acquire().await.unwrap().expect("b's");
        assert_eq!(slots.available().await.unwrap(), 1);
        p1.release().await.unwrap();
        assert_eq!(b.semaphore("s", 3).available().await.unwrap(), 2);
        p2.release().await.unwrap();
        assert_eq!(slots.available().await.unwrap(), 3);
    }
    if caps.read_write {
        let rw = a.rwlock("rw");
        assert!(!rw.is_locked().await.unwrap());
        let r = rw.try_read().await.unwrap().expect("a reader");
        assert!(rw.is_locked().await.unwrap());
        assert!(!rw.is_write_locked().await.unwrap(), "a reader only");
        r.release().await.unwrap();
        let w = b.rwlock("rw").try_write().await.unwrap().expect("a writer");
        assert!(rw.is_write_locked().await.unwrap());
        w.release().await.unwrap();
        assert!(!rw.is_locked().await.unwrap());
    }
}

/// `available()` on a handle whose N differs from the N the live permits
/// fixed counts against the semaphore's N, which the live leases carry (a
/// grant with the handle's is `InvalidArgument`), not the handle's own.
#[needs(Need::Semaphore, Need::Inspect)]
pub async fn semaphore_available_counts_the_fixed_n(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let p = a.semaphore("s", 5).try_acquire().await.unwrap().expect("1 of 5");
    let avail = b.semaphore("s", 3).available().await;
    assert_invalid(b.semaphore("s", 3).try_acquire().await, "N=3 while N=5 is fixed");
    p.release().await.unwrap();
    assert!(
        matches!(avail, Ok(4)),
        "available() of a 3-permit handle on a semaphore fixed at 5 with 1 live: {avail:?}"
    );
}
}
