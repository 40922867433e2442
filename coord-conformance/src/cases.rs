//! The cases: one behaviour of the contract each, named for it. Every case
//! starts in a fresh namespace ([`Ctx::new`]) and uses short real-time TTLs,
//! so the suite runs on a real server in seconds (and in virtual time in the
//! simulator).
//!
//! Timing rules: a case sleeps only to let time pass for expiry semantics;
//! anything it waits *for* is awaited with a bound ([`eventually`],
//! `tokio::time::timeout`), so a slow machine makes a case slower, not
//! wrong, and a broken backend makes it fail instead of hang.

use std::{
    fmt::Debug,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use coord_api::{
    Acquire, Capability, Client, Error, FencingToken, HolderId, InstanceId, Key, LeaseFamily,
    LeaseGuard, LeaseId, LeaseKind, Lock, LockOptions, MAX_TTL, Release, Result,
};
use tokio::time::{Instant, sleep, sleep_until, timeout};

mod leadership;
pub use leadership::*;

use crate::{
    Ctx, Harness,
    harness::{default_options, eventually},
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Default test options with `ttl_ms` and auto-extension off: the lease lives
/// exactly its TTL unless released.
fn no_extend(ttl_ms: u64) -> LockOptions {
    default_options().ttl(ms(ttl_ms)).auto_extend(false)
}

/// A holder id no client ever drew.
fn intruder() -> HolderId {
    HolderId::new(InstanceId::new("intruder").expect("valid instance id"))
}

fn key(k: &str) -> Key {
    Key::new(k).expect("valid key")
}

#[track_caller]
fn assert_invalid<T: Debug>(res: Result<T>, what: &str) {
    match res {
        Err(Error::InvalidArgument { .. }) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Takes `lock` at once or panics.
async fn take(lock: &Lock, what: &str) -> LeaseGuard {
    lock.try_lock()
        .await
        .unwrap_or_else(|e| panic!("{what}: try_lock failed: {e}"))
        .unwrap_or_else(|| panic!("{what}: expected the lock to be free"))
}

/// Whether `lock` is taken by someone else now (a grant is released at once).
async fn is_busy(lock: &Lock) -> bool {
    match lock.try_lock().await.expect("try_lock") {
        Some(g) => {
            g.release().await.expect("release");
            false
        }
        None => true,
    }
}

/// Polls `lock.try_lock()` until granted, for at most `within`.
async fn take_within(lock: &Lock, within: Duration) -> Option<LeaseGuard> {
    eventually(within, || async {
        lock.try_lock().await.expect("try_lock")
    })
    .await
}

/// Awaits an acquisition that must be refused without waiting.
async fn at_once<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    timeout(ms(2000), fut)
        .await
        .expect("refused at once, not waited on")
}

/// Awaits a spawned task for at most `within`; panics naming `what`.
async fn join<T>(task: tokio::task::JoinHandle<T>, within: Duration, what: &str) -> T {
    timeout(within, task)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {within:?}"))
        .unwrap_or_else(|e| panic!("{what}: task failed: {e}"))
}

async fn caps(ctx: &mut Ctx<'_>) -> Capability {
    ctx.capabilities().await
}

// ---------------------------------------------------------------------------
// Exclusive locks
// ---------------------------------------------------------------------------

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
            backend.acquire(&id, ms(1000)).await.unwrap(),
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

// ---------------------------------------------------------------------------
// Reentrant locks
// ---------------------------------------------------------------------------

/// A reentrant handle acquiring twice gets the same token; the key stays held
/// until both holds are released.
pub async fn reentrant_counts(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("reentrant_counts", "reentrant").await {
        return;
    }
    let inspect = caps(&mut ctx).await.inspect;
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
pub async fn reentrant_excludes_other_holders(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("reentrant_excludes_other_holders", "reentrant")
        .await
    {
        return;
    }
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
pub async fn reentrant_reentry_after_force_release(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("reentrant_reentry_after_force_release", "reentrant")
        .await
        || !ctx
            .require("reentrant_reentry_after_force_release", "force_release")
            .await
    {
        return;
    }
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

// ---------------------------------------------------------------------------
// Holder identity, expiry, extension, release
// ---------------------------------------------------------------------------

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
                backend.release(&id).await.unwrap(),
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
        !backend.extend(&id, ms(10_000)).await.unwrap(),
        "foreign extend refused"
    );
    let same_instance = LeaseId {
        holder: HolderId::new(*g.holder().instance()),
        ..id
    };
    assert!(
        !backend.extend(&same_instance, ms(10_000)).await.unwrap(),
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
        !backend.extend(&id, ms(5000)).await.unwrap(),
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

// ---------------------------------------------------------------------------
// Fencing tokens
// ---------------------------------------------------------------------------

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
pub async fn tokens_increase_after_force_release(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("tokens_increase_after_force_release", "force_release")
        .await
    {
        return;
    }
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

/// Permits of one semaphore and readers of one read-write lock each get a
/// strictly larger token than the grant before.
pub async fn tokens_increase_for_shared_grants(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    let caps = caps(&mut ctx).await;
    let clients = [
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    ];
    let check = |tokens: &[FencingToken], what: &str| {
        for w in tokens.windows(2) {
            assert!(w[0] < w[1], "{what} tokens not increasing: {tokens:?}");
        }
    };
    if caps.semaphore {
        let mut permits = Vec::new();
        for c in &clients {
            permits.push(
                c.semaphore("s", 3)
                    .try_acquire()
                    .await
                    .unwrap()
                    .expect("permit"),
            );
        }
        check(
            &permits.iter().map(|p| p.token()).collect::<Vec<_>>(),
            "permit",
        );
        let last = permits.last().unwrap().token();
        for p in permits {
            p.release().await.unwrap();
        }
        let p = clients[0]
            .semaphore("s", 3)
            .try_acquire()
            .await
            .unwrap()
            .unwrap();
        assert!(p.token() > last, "permit token after release");
        p.release().await.unwrap();
    } else {
        eprintln!("skipped: tokens_increase_for_shared_grants (permits) needs semaphore");
    }
    if caps.read_write {
        let mut readers = Vec::new();
        for c in &clients {
            readers.push(c.rwlock("r").try_read().await.unwrap().expect("reader"));
        }
        check(
            &readers.iter().map(|r| r.token()).collect::<Vec<_>>(),
            "reader",
        );
        let last = readers.last().unwrap().token();
        for r in readers {
            r.release().await.unwrap();
        }
        let w = clients[0].rwlock("r").try_write().await.unwrap().unwrap();
        assert!(w.token() > last, "writer token after readers");
        w.release().await.unwrap();
    } else {
        eprintln!("skipped: tokens_increase_for_shared_grants (readers) needs read_write");
    }
}

// ---------------------------------------------------------------------------
// Auto-extension and the lost signal
// ---------------------------------------------------------------------------

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
        !backend.extend(&id, ms(5000)).await.unwrap(),
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

// ---------------------------------------------------------------------------
// Drop, crash and cancellation
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Waiting limits
// ---------------------------------------------------------------------------

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
    let cases = [
        (
            "wait_timeout MAX",
            default_options().wait_timeout(Some(Duration::MAX)),
        ),
        (
            "retry_delay MAX",
            default_options().retry_delay(Duration::MAX),
        ),
    ];
    for (what, opts) in cases {
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

// ---------------------------------------------------------------------------
// Monitoring, operators, isolation
// ---------------------------------------------------------------------------

/// `holders()` shows the holder, its token, one hold and the time left; it is
/// empty once released.
pub async fn holders_show_holder_and_token(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("holders_show_holder_and_token", "inspect")
        .await
    {
        return;
    }
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
pub async fn holders_list_shared_leases(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("holders_list_shared_leases", "inspect").await {
        return;
    }
    let caps = caps(&mut ctx).await;
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
pub async fn force_release_fences_old_holder(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("force_release_fences_old_holder", "force_release")
        .await
    {
        return;
    }
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
pub async fn families_isolated(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("families_isolated", "read_write").await
        || !ctx.require("families_isolated", "semaphore").await
    {
        return;
    }
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

// ---------------------------------------------------------------------------
// Read-write locks
// ---------------------------------------------------------------------------

/// Several readers hold a read-write lock at once.
pub async fn readers_share(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("readers_share", "read_write").await {
        return;
    }
    let mut readers = Vec::new();
    for name in ["a", "b", "c"] {
        let c = ctx.client(name).await;
        readers.push(
            c.rwlock("k")
                .try_read()
                .await
                .unwrap()
                .expect("reader granted"),
        );
    }
    assert!(readers.iter().all(|r| r.is_held()));
    for r in readers {
        assert!(r.release().await.unwrap());
    }
}

/// While readers hold a read-write lock, a writer is refused.
pub async fn readers_block_writer(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("readers_block_writer", "read_write").await {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let r = a.rwlock("k").try_read().await.unwrap().expect("reader");
    assert!(
        b.rwlock("k").try_write().await.unwrap().is_none(),
        "writer refused while a reader holds"
    );
    assert!(r.release().await.unwrap());
}

/// A writer excludes readers: `try_read` is refused while it holds.
pub async fn writer_excludes_readers(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("writer_excludes_readers", "read_write").await {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let w = a.rwlock("k").try_write().await.unwrap().expect("writer");
    assert!(
        b.rwlock("k").try_read().await.unwrap().is_none(),
        "reader refused while a writer holds"
    );
    assert!(w.release().await.unwrap());
    let r = b
        .rwlock("k")
        .try_read()
        .await
        .unwrap()
        .expect("reader after");
    r.release().await.unwrap();
}

/// A writer excludes other writers.
pub async fn writer_excludes_writers(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("writer_excludes_writers", "read_write").await {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let w = a.rwlock("k").try_write().await.unwrap().expect("writer");
    assert!(
        b.rwlock("k").try_write().await.unwrap().is_none(),
        "second writer refused"
    );
    assert!(w.release().await.unwrap());
    let w2 = b
        .rwlock("k")
        .try_write()
        .await
        .unwrap()
        .expect("writer after");
    w2.release().await.unwrap();
}

/// Writer preference: once a writer waits, new readers are refused; the
/// writer gets the lock when the old reader leaves, and readers after it.
pub async fn waiting_writer_blocks_new_readers(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("waiting_writer_blocks_new_readers", "read_write")
        .await
    {
        return;
    }
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let r1 = a
        .rwlock("k")
        .try_read()
        .await
        .unwrap()
        .expect("first reader");
    let rw = b.rwlock("k");
    let writer = tokio::spawn(async move { rw.write().await });
    let readers = c.rwlock("k");
    assert_readers_blocked(&readers).await;
    assert!(!writer.is_finished(), "the writer waits for the reader");
    assert!(r1.release().await.unwrap());
    let w = join(writer, ms(1000), "writer after the reader left")
        .await
        .expect("writer granted");
    assert!(
        readers.try_read().await.unwrap().is_none(),
        "writer holds: readers refused"
    );
    assert!(w.release().await.unwrap());
    let r = take_read_within(&readers, ms(1000))
        .await
        .expect("readers admitted after the writer");
    r.release().await.unwrap();
}

/// Asserts that new readers are refused within 1 s (the writer registered its
/// intent) and stay refused on every try for the next 100 ms.
async fn assert_readers_blocked(readers: &coord_api::RwLock) {
    let blocked = eventually(ms(1000), || async {
        match readers.try_read().await.unwrap() {
            Some(r) => {
                r.release().await.unwrap();
                None
            }
            None => Some(()),
        }
    })
    .await;
    assert!(blocked.is_some(), "a waiting writer blocks new readers");
    for i in 0..5 {
        sleep(ms(20)).await;
        let r = readers.try_read().await.unwrap();
        assert!(
            r.is_none(),
            "reader admitted past a waiting writer (try {i})"
        );
    }
}

async fn take_read_within(lock: &coord_api::RwLock, within: Duration) -> Option<LeaseGuard> {
    eventually(within, || async {
        lock.try_read().await.expect("try_read")
    })
    .await
}

/// A waiting writer that is cancelled withdraws its intent: new readers get
/// in promptly, not at the intent's TTL.
pub async fn cancelled_writer_lets_readers_in(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("cancelled_writer_lets_readers_in", "read_write")
        .await
    {
        return;
    }
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let r1 = a
        .rwlock("k")
        .try_read()
        .await
        .unwrap()
        .expect("first reader");
    let rw = b.rwlock("k").ttl(ms(5000)).auto_extend(false);
    let writer = tokio::spawn(async move { rw.write().await });
    let readers = c.rwlock("k");
    assert_readers_blocked(&readers).await;
    writer.abort();
    let t0 = Instant::now();
    let r = take_read_within(&readers, ms(1500))
        .await
        .expect("readers admitted once the writer gave up");
    assert!(
        t0.elapsed() < ms(2000),
        "admitted only after {:?}",
        t0.elapsed()
    );
    r.release().await.unwrap();
    r1.release().await.unwrap();
}

/// A crashed reader (guard leaked, no renewal) frees its share at its TTL: a
/// writer gets the lock then, not before.
pub async fn reader_crash_frees_share_at_ttl(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("reader_crash_frees_share_at_ttl", "read_write")
        .await
    {
        return;
    }
    let a = ctx.client_with("a", no_extend(400)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let r = a.rwlock("k").try_read().await.unwrap().expect("reader");
    std::mem::forget(r); // crash: no release, no renewal
    let w = timeout(ms(3000), b.rwlock("k").write())
        .await
        .expect("the reader's TTL frees its share")
        .unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= ms(390),
        "writer granted after {waited:?}, before the TTL"
    );
    assert!(waited <= ms(400 + 600), "writer granted after {waited:?}");
    w.release().await.unwrap();
}

/// A writer waiting on a reader is granted promptly when the reader releases.
pub async fn reader_release_wakes_writer(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("reader_release_wakes_writer", "read_write")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let r = a
        .rwlock("k")
        .ttl(ms(5000))
        .try_read()
        .await
        .unwrap()
        .expect("reader");
    // A 3 s TTL: the writer's intent refresh (every TTL/3) cannot be what
    // wakes it.
    let rw = b.rwlock("k").ttl(ms(3000));
    let writer = tokio::spawn(async move {
        let w = rw.write().await;
        (w, Instant::now())
    });
    sleep(ms(150)).await; // let the writer start waiting
    assert!(!writer.is_finished(), "the writer waits for the reader");
    let t_release = Instant::now();
    assert!(r.release().await.unwrap());
    let (w, t_granted) = join(writer, ms(3000), "writer").await;
    let w = w.expect("writer granted");
    let lag = t_granted.saturating_duration_since(t_release);
    assert!(lag <= ms(500), "writer woke {lag:?} after the release");
    w.release().await.unwrap();
}

/// Readers waiting on a writer are granted promptly when it releases.
pub async fn writer_release_wakes_readers(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("writer_release_wakes_readers", "read_write")
        .await
    {
        return;
    }
    let a = ctx.client("a").await;
    let w = a
        .rwlock("k")
        .ttl(ms(5000))
        .try_write()
        .await
        .unwrap()
        .expect("writer");
    let mut readers = Vec::new();
    for i in 0..2 {
        let rl = ctx.client(&format!("r{i}")).await.rwlock("k");
        readers.push(tokio::spawn(async move {
            let r = rl.read().await;
            (r, Instant::now())
        }));
    }
    sleep(ms(150)).await; // let the readers start waiting
    assert!(readers.iter().all(|r| !r.is_finished()), "readers wait");
    let t_release = Instant::now();
    assert!(w.release().await.unwrap());
    let mut held = Vec::new();
    for r in readers {
        let (g, t) = join(r, ms(3000), "reader").await;
        let lag = t.saturating_duration_since(t_release);
        assert!(lag <= ms(500), "reader woke {lag:?} after the release");
        held.push(g.expect("reader granted"));
    }
    for g in held {
        assert!(g.release().await.unwrap());
    }
}

// ---------------------------------------------------------------------------
// Semaphores
// ---------------------------------------------------------------------------

/// Twelve tasks competing for a 3-permit semaphore never hold more than 3
/// permits at once.
pub async fn semaphore_never_exceeds_n(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require("semaphore_never_exceeds_n", "semaphore").await {
        return;
    }
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
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("semaphore_try_acquire_refused_at_n", "semaphore")
        .await
    {
        return;
    }
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
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("semaphore_crashed_permit_returns_at_ttl", "semaphore")
        .await
    {
        return;
    }
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
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("semaphore_different_n_invalid", "semaphore")
        .await
    {
        return;
    }
    let inspect = caps(&mut ctx).await.inspect;
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
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("semaphore_n_refixed_when_empty", "semaphore")
        .await
    {
        return;
    }
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
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("semaphore_release_wakes_waiter", "semaphore")
        .await
    {
        return;
    }
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
    let mut ctx = Ctx::new(h);
    if !ctx.require("dropped_permit_frees_slot", "semaphore").await {
        return;
    }
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
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("semaphore_zero_permits_invalid", "semaphore")
        .await
    {
        return;
    }
    let a = ctx.client("a").await;
    assert_invalid(a.semaphore("s", 0).try_acquire().await, "try_acquire N=0");
    assert_invalid(
        timeout(ms(2000), a.semaphore("s", 0).acquire())
            .await
            .expect("refused at once"),
        "acquire N=0",
    );
}

// ---------------------------------------------------------------------------
// Input validation
// ---------------------------------------------------------------------------

/// Every entry point of every type refuses `key` with `InvalidArgument`.
async fn assert_key_refused(ctx: &mut Ctx<'_>, c: &Client, k: &str) {
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

/// The empty key is `InvalidArgument` everywhere.
pub async fn empty_key_invalid(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    assert_key_refused(&mut ctx, &a, "").await;
}

/// A 513-byte key is `InvalidArgument` everywhere (ASCII and multi-byte), and
/// nothing is stored under its 512-byte prefix.
pub async fn oversized_key_invalid(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let ascii = "k".repeat(513);
    let multibyte = format!("{}a", "é".repeat(256));
    assert_eq!((ascii.len(), multibyte.len()), (513, 513));
    assert_key_refused(&mut ctx, &a, &ascii).await;
    assert_key_refused(&mut ctx, &a, &multibyte).await;
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
    let mut ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    for k in ["a\nb", "a\tb", "a\0b", "a\u{7f}b", "a\u{85}b", "\r"] {
        assert_key_refused(&mut ctx, &a, k).await;
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

/// Every type refuses a lease with `ttl` as `InvalidArgument`; the key stays
/// free.
async fn assert_ttl_refused(ctx: &mut Ctx<'_>, ttl: Duration) {
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

/// A zero TTL is `InvalidArgument` and changes nothing.
pub async fn zero_ttl_invalid(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    assert_ttl_refused(&mut ctx, Duration::ZERO).await;
}

/// A TTL over 24 h is `InvalidArgument` and changes nothing.
pub async fn ttl_over_24h_invalid(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    assert_ttl_refused(&mut ctx, MAX_TTL + ms(1)).await;
}

/// The TTL bounds themselves, 1 ms and 24 h, are accepted.
pub async fn ttl_bounds_accepted(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(1000)).await;
    let short = take(&a.lock("short").ttl(ms(1)), "1 ms TTL").await;
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

// ---------------------------------------------------------------------------
// The backend's notifications (the SPI directly)
// ---------------------------------------------------------------------------

/// A subscription on a key completes promptly when a lease on it is released.
pub async fn release_notifies_subscribers(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("release_notifies_subscribers", "release_notifications")
        .await
    {
        return;
    }
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: intruder(),
    };
    assert!(matches!(
        backend.acquire(&id, ms(5000)).await.unwrap(),
        Acquire::Granted(_)
    ));
    let mut watch = ctx
        .backend()
        .await
        .subscribe(LeaseFamily::Lock, &key("k"))
        .await
        .unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        backend.release(&id).await.unwrap(),
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
pub async fn expiry_notifies_subscribers(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("expiry_notifies_subscribers", "expiry_notifications")
        .await
    {
        return;
    }
    let backend = ctx.backend().await;
    let id = LeaseId {
        kind: LeaseKind::Exclusive,
        key: key("k"),
        holder: intruder(),
    };
    let mut watch = ctx
        .backend()
        .await
        .subscribe(LeaseFamily::Lock, &key("k"))
        .await
        .unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        backend.acquire(&id, ms(300)).await.unwrap(),
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
pub async fn watch_ignores_other_keys(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require("watch_ignores_other_keys", "release_notifications")
        .await
    {
        return;
    }
    let has_sem = caps(&mut ctx).await.semaphore;
    let backend = ctx.backend().await;
    let mut watch = ctx
        .backend()
        .await
        .subscribe(LeaseFamily::Lock, &key("watched"))
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
            backend.acquire(id, ms(5000)).await.unwrap(),
            Acquire::Granted(_)
        ));
        assert!(matches!(
            backend.release(id).await.unwrap(),
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
    let mut ctx = Ctx::new(h);
    let caps = caps(&mut ctx).await;
    let backend = ctx.backend().await;
    let holder = HolderId::new(InstanceId::new("direct").unwrap());
    let lease = |kind| LeaseId {
        kind,
        key: key("k"),
        holder: holder.clone(),
    };
    assert_invalid(
        backend
            .acquire(&lease(LeaseKind::Exclusive), Duration::ZERO)
            .await,
        "exclusive ttl 0",
    );
    if caps.semaphore {
        assert_invalid(
            backend
                .acquire(&lease(LeaseKind::Permit { limit: 0 }), ms(1000))
                .await,
            "permit limit 0",
        );
    }
    let granted = backend
        .acquire(&lease(LeaseKind::Exclusive), ms(1000))
        .await
        .unwrap();
    assert!(
        matches!(granted, Acquire::Granted(g) if g.holds == 1),
        "free after the refusal: {granted:?}"
    );
    assert_eq!(
        backend.release(&lease(LeaseKind::Exclusive)).await.unwrap(),
        Release::Released { remaining: 0 }
    );
    assert_eq!(
        backend.release(&lease(LeaseKind::Exclusive)).await.unwrap(),
        Release::NotHeld,
        "a second release finds nothing"
    );
}
