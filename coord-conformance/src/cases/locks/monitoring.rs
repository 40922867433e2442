//! Who holds a lock (`holders()`), force release, and isolation between namespaces and lock spaces.

use crate::cases::prelude::*;

cases! {
    family: "locks", needs: [Need::Locks];

/// `holders()` shows the holder, its token, one hold and the time left; it is
/// empty once released.
#[needs(Need::Inspect)]
pub async fn holders_show_holder_and_token(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let b = ctx.client("b").await;
    let lock = b.lock("k");
    assert!(lock.holders().await.unwrap().is_empty(), "free key");
    let g = take(&a.lock("k").ttl(ms(2000)), "a").await;
    let hs = lock.holders().await.unwrap();
    assert_eq!(hs.len(), 1, "{hs:?}");
    assert_eq!(&hs[0].holder, g.holder());
    assert_eq!(hs[0].token, g.token());
    assert_eq!(hs[0].holds, 1);
    assert_eq!(hs[0].kind, LeaseKind::Exclusive);
    assert!(
        hs[0].expires_in > Duration::ZERO && hs[0].expires_in <= ms(2000),
        "expires_in {:?}",
        hs[0].expires_in
    );
    assert!(g.release().await.unwrap());
    assert!(
        lock.holders().await.unwrap().is_empty(),
        "empty after release"
    );
}

/// `holders()` of a read-write lock lists each reader with its own holder and
/// token, and of a semaphore each permit.
#[needs(Need::Inspect)]
pub async fn holders_list_shared_leases(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let caps = caps(&ctx).await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    if caps.read_write {
        let ra = a.rwlock("k").try_read().await.unwrap().expect("reader a");
        let rb = b.rwlock("k").try_read().await.unwrap().expect("reader b");
        let mut hs = a.rwlock("k").holders().await.unwrap();
        hs.sort_by_key(|i| i.token);
        assert_eq!(hs.len(), 2, "{hs:?}");
        assert!(hs.iter().all(|i| i.kind == LeaseKind::Read), "{hs:?}");
        assert_eq!((&hs[0].holder, hs[0].token), (ra.holder(), ra.token()));
        assert_eq!((&hs[1].holder, hs[1].token), (rb.holder(), rb.token()));
        ra.release().await.unwrap();
        rb.release().await.unwrap();
    }
    if caps.semaphore {
        let pa = a.semaphore("k", 2).try_acquire().await.unwrap().unwrap();
        let pb = b.semaphore("k", 2).try_acquire().await.unwrap().unwrap();
        let mut hs = a.semaphore("k", 2).holders().await.unwrap();
        hs.sort_by_key(|i| i.token);
        assert_eq!(hs.len(), 2, "{hs:?}");
        assert_eq!((&hs[0].holder, hs[0].token), (pa.holder(), pa.token()));
        assert_eq!((&hs[1].holder, hs[1].token), (pb.holder(), pb.token()));
        pa.release().await.unwrap();
        pb.release().await.unwrap();
        assert!(a.semaphore("k", 2).holders().await.unwrap().is_empty());
    }
}

/// Force release frees a held key for another client; the old holder's
/// `extend` then returns false and its guard is no longer held.
#[needs(Need::ForceRelease)]
pub async fn force_release_fences_old_holder(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let ga = take(&a.lock("k").ttl(ms(5000)), "a").await;
    assert_eq!(
        c.lock("k").force_release().await.unwrap(),
        1,
        "one lease removed"
    );
    let gb = take(&b.lock("k"), "free after force release").await;
    assert!(!ga.extend().await.unwrap(), "old holder's renewal refused");
    assert!(!ga.is_held());
    assert!(
        !ga.release().await.unwrap(),
        "old holder's release is false"
    );
    assert!(is_busy(&c.lock("k")).await, "b still holds it");
    assert!(gb.release().await.unwrap());
    assert_eq!(
        c.lock("k").force_release().await.unwrap(),
        0,
        "nothing left"
    );
}

/// The same key in two namespaces is two locks: both are granted.
pub async fn namespaces_isolated(h: &dyn Harness) {
    let ctx1 = Ctx::new(h);
    let ctx2 = Ctx::new(h);
    assert_ne!(ctx1.namespace(), ctx2.namespace());
    let (a, b) = (ctx1.client("a").await, ctx2.client("b").await);
    let ga = take(&a.lock("k"), "namespace 1").await;
    let gb = take(&b.lock("k"), "namespace 2").await;
    assert!(ga.release().await.unwrap());
    assert!(
        is_busy(&ctx2.client("c").await.lock("k")).await,
        "ns 2 still held"
    );
    assert!(gb.release().await.unwrap());
}

/// A lock, a read-write lock and a semaphore named alike are unrelated: all
/// three are granted at once.
#[needs(Need::ReadWrite, Need::Semaphore)]
pub async fn families_isolated(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let g = take(&a.lock("k"), "lock").await;
    let w = b
        .rwlock("k")
        .try_write()
        .await
        .unwrap()
        .expect("write lock");
    let p = c
        .semaphore("k", 1)
        .try_acquire()
        .await
        .unwrap()
        .expect("permit");
    for x in [g, w, p] {
        assert!(x.release().await.unwrap());
    }
}
/// `holders()` tells the time left by the backend's clock: it counts down
/// between renewals, and a renewal sets it back to the TTL.
#[needs(Need::Inspect)]
pub async fn holders_count_ttl_down(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    // Auto-extension on, renewing every second: the look below comes first.
    let g = take(&a.lock("k").ttl(ms(3000)), "a").await;
    let left = |hs: Vec<coord_api::LeaseInfo>| {
        assert_eq!(hs.len(), 1, "{hs:?}");
        hs[0].expires_in
    };
    let first = left(a.lock("k").holders().await.unwrap());
    sleep(ms(500)).await;
    let later = left(a.lock("k").holders().await.unwrap());
    assert!(
        later + ms(300) <= first,
        "counts down: {first:?}, then {later:?} half a second later"
    );
    assert!(g.extend().await.unwrap());
    let renewed = left(a.lock("k").holders().await.unwrap());
    assert!(
        renewed >= later + ms(300),
        "a renewal sets it back: {later:?}, then {renewed:?}"
    );
    assert!(g.release().await.unwrap());
}
}
