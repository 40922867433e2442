//! Invalid input (keys, TTLs, options) is `InvalidArgument` before any I/O and changes nothing.

use crate::cases::prelude::*;

/// Every entry point of every type refuses `key` with `InvalidArgument`.
async fn assert_key_refused(ctx: &Ctx<'_>, c: &Client, k: &str) {
    let caps = caps(ctx).await;
    let what = format!("key {k:?}");
    assert_invalid(c.lock(k).try_lock().await, &format!("try_lock {what}"));
    assert_invalid(at_once(c.lock(k).lock()).await, &format!("lock {what}"));
    assert_invalid(c.lock(k).holders().await, &format!("holders {what}"));
    assert_invalid(
        c.lock(k).force_release().await,
        &format!("force_release {what}"),
    );
    if caps.reentrant {
        assert_invalid(
            c.lock(k).reentrant(true).try_lock().await,
            &format!("reentrant try_lock {what}"),
        );
    }
    if caps.read_write {
        let rw = c.rwlock(k);
        assert_invalid(rw.try_read().await, &format!("try_read {what}"));
        assert_invalid(rw.try_write().await, &format!("try_write {what}"));
        assert_invalid(at_once(rw.read()).await, &format!("read {what}"));
        assert_invalid(at_once(rw.write()).await, &format!("write {what}"));
    }
    if caps.semaphore {
        let s = c.semaphore(k, 2);
        assert_invalid(s.try_acquire().await, &format!("try_acquire {what}"));
        assert_invalid(at_once(s.acquire()).await, &format!("acquire {what}"));
    }
}

/// Every type refuses a lease with `ttl` as `InvalidArgument`; the key stays
/// free.
async fn assert_ttl_refused(ctx: &Ctx<'_>, ttl: Duration) {
    let caps = caps(ctx).await;
    let a = ctx.client("a").await;
    let what = format!("ttl {ttl:?}");
    let lock = a.lock("k").ttl(ttl);
    assert_invalid(lock.try_lock().await, &format!("try_lock {what}"));
    assert_invalid(
        timeout(ms(2000), lock.lock())
            .await
            .expect("refused at once"),
        &format!("lock {what}"),
    );
    if caps.reentrant {
        assert_invalid(
            a.lock("k").ttl(ttl).reentrant(true).try_lock().await,
            &format!("reentrant {what}"),
        );
    }
    if caps.read_write {
        let rw = a.rwlock("k").ttl(ttl);
        assert_invalid(rw.try_read().await, &format!("try_read {what}"));
        assert_invalid(rw.try_write().await, &format!("try_write {what}"));
    }
    if caps.semaphore {
        let s = a.semaphore("k", 1).ttl(ttl);
        assert_invalid(s.try_acquire().await, &format!("try_acquire {what}"));
    }
    // Nothing changed: every family's "k" is free.
    let b = ctx.client("b").await;
    take(&b.lock("k"), "lock untouched")
        .await
        .release()
        .await
        .unwrap();
    if caps.read_write {
        let w = b
            .rwlock("k")
            .try_write()
            .await
            .unwrap()
            .expect("rwlock untouched");
        w.release().await.unwrap();
    }
    if caps.semaphore {
        let p = b
            .semaphore("k", 2)
            .try_acquire()
            .await
            .unwrap()
            .expect("semaphore untouched (and its N not fixed at 1)");
        p.release().await.unwrap();
    }
}

cases! {
    family: "locks", needs: [Need::Locks];

/// The empty key is `InvalidArgument` everywhere.
pub async fn empty_key_invalid(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    assert_key_refused(&ctx, &a, "").await;
}

/// A 513-byte key is `InvalidArgument` everywhere (ASCII and multi-byte), and
/// nothing is stored under its 512-byte prefix.
pub async fn oversized_key_invalid(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let ascii = "k".repeat(513);
    let multibyte = format!("{}a", "é".repeat(256));
    assert_eq!((ascii.len(), multibyte.len()), (513, 513));
    assert_key_refused(&ctx, &a, &ascii).await;
    assert_key_refused(&ctx, &a, &multibyte).await;
    let b = ctx.client("b").await;
    take(&b.lock(&ascii[..512]), "512-byte prefix untouched")
        .await
        .release()
        .await
        .unwrap();
}

/// Keys with control characters (newline, tab, NUL, DEL, C1) are
/// `InvalidArgument` everywhere, and nothing is stored under the key without
/// them.
pub async fn control_character_key_invalid(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    for k in ["a\nb", "a\tb", "a\0b", "a\u{7f}b", "a\u{85}b", "\r"] {
        assert_key_refused(&ctx, &a, k).await;
    }
    let b = ctx.client("b").await;
    for k in ["ab", "a", "b"] {
        take(&b.lock(k), "stripped key untouched")
            .await
            .release()
            .await
            .unwrap();
    }
}

/// A key of exactly 512 bytes (ASCII or multi-byte UTF-8) is accepted and
/// works like any other.
pub async fn key_of_512_bytes_accepted(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    for k in ["k".repeat(512), "é".repeat(256), "ünïcødé/ok ✓".to_owned()] {
        assert!(k.len() <= 512);
        let g = take(&a.lock(&k), "valid key").await;
        assert!(is_busy(&b.lock(&k)).await, "excludes under a long key");
        assert_eq!(g.key().as_str(), k);
        assert!(g.release().await.unwrap());
    }
}

/// A zero TTL is `InvalidArgument` and changes nothing.
pub async fn zero_ttl_invalid(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    assert_ttl_refused(&ctx, Duration::ZERO).await;
}

/// A TTL over 24 h is `InvalidArgument` and changes nothing.
pub async fn ttl_over_24h_invalid(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    assert_ttl_refused(&ctx, MAX_TTL + ms(1)).await;
}

/// The TTL bounds themselves, 1 ms and 24 h, are accepted (a 1 ms TTL with
/// a safety margin that leaves it some local validity).
pub async fn ttl_bounds_accepted(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(1000)).await;
    let short = a.lock("short").ttl(ms(1)).with_options(
        no_extend(1).safety_margin(Duration::ZERO),
    );
    let short = take(&short, "1 ms TTL").await;
    drop(short);
    let long = take(&a.lock("long").ttl(MAX_TTL), "24 h TTL").await;
    assert!(long.is_held());
    assert!(long.release().await.unwrap());
}

/// Bad options (jitter or drift out of range, zero retry delay, extension
/// interval not below the TTL) are `InvalidArgument` and change nothing.
pub async fn invalid_options_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let base = default_options();
    let bad = [
        ("retry_jitter 1.5", base.clone().retry_jitter(1.5)),
        ("retry_jitter -0.1", base.clone().retry_jitter(-0.1)),
        ("retry_jitter NaN", base.clone().retry_jitter(f64::NAN)),
        ("max_drift 0.5", base.clone().max_drift(0.5)),
        ("max_drift -0.01", base.clone().max_drift(-0.01)),
        ("retry_delay 0", base.clone().retry_delay(Duration::ZERO)),
        (
            "extend_interval 0",
            base.clone().extend_interval(Some(Duration::ZERO)),
        ),
        (
            "extend_interval = ttl",
            base.clone().extend_interval(Some(base.ttl)),
        ),
    ];
    for (what, opts) in bad {
        let lock = a.lock("k").with_options(opts.clone());
        assert_invalid(lock.try_lock().await, &format!("try_lock {what}"));
        assert_invalid(
            timeout(ms(2000), lock.lock())
                .await
                .expect("refused at once"),
            &format!("lock {what}"),
        );
        let c = ctx.client_with("c", opts).await;
        assert_invalid(
            c.lock("k").try_lock().await,
            &format!("client default {what}"),
        );
    }
    let b = ctx.client("b").await;
    take(&b.lock("k"), "nothing held after refusals")
        .await
        .release()
        .await
        .unwrap();
}

/// Options out of every range — NaN and infinite fractions, `Duration::MAX`,
/// a safety margin that leaves no local validity, a TTL too short for its
/// default renewal to come within its local validity — are `InvalidArgument`
/// naming the option, for every lease-based primitive the backend offers,
/// before any I/O; never a panic, never a lease born lost.
pub async fn options_out_of_range_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let families = ctx.families().await;
    let caps = caps(&ctx).await;
    let a = ctx.client("a").await;
    let base = default_options();
    let bad = [
        ("max_drift", base.clone().max_drift(f64::NAN)),
        ("max_drift", base.clone().max_drift(f64::INFINITY)),
        ("max_drift", base.clone().max_drift(1.5)),
        ("max_drift", base.clone().max_drift(-0.5).ttl(MAX_TTL)),
        ("retry_jitter", base.clone().retry_jitter(f64::NEG_INFINITY)),
        ("ttl", base.clone().ttl(Duration::MAX)),
        ("safety_margin", base.clone().safety_margin(base.ttl)),
        ("safety_margin", base.clone().safety_margin(Duration::MAX)),
        ("extend_interval", base.clone().extend_interval(Some(Duration::MAX))),
        // Renewed by default a third of the TTL (1 ms) after the grant, past
        // its local validity (0.97 ms): lost before its first renewal.
        ("ttl", base.clone().ttl(ms(3))),
    ];
    for (option, opts) in bad {
        let check = |res: Result<bool>, what: &str| match res {
            Err(Error::InvalidArgument { message }) => assert!(
                message.contains(option),
                "{what} with bad {option}: the error names it: {message}"
            ),
            other => panic!("{what} with bad {option}: expected InvalidArgument, got {other:?}"),
        };
        let o = || opts.clone();
        let held = |g: Result<Option<LeaseGuard>>| g.map(|g| g.is_some());
        check(held(a.lock("k").with_options(o()).try_lock().await), "try_lock");
        if caps.read_write {
            check(held(a.rwlock("k").with_options(o()).try_write().await), "try_write");
        }
        if caps.semaphore {
            let s = a.semaphore("k", 2).with_options(o());
            check(held(s.try_acquire().await), "try_acquire");
        }
        if families.elections {
            let e = a.election("e").with_options(o());
            check(e.try_campaign().await.map(|l| l.is_some()), "try_campaign");
        }
        if families.groups {
            check(a.group("g").with_options(o()).join().await.map(|_| true), "join");
        }
        if families.jobs {
            let job = a.job("j").with_options(o());
            check(job.run_once("o", |_| async {}).await.map(|_| true), "run_once");
        }
    }
    let b = ctx.client("b").await;
    take(&b.lock("k"), "nothing held after refusals")
        .await
        .release()
        .await
        .unwrap();
}
}
