//! Fair locks and semaphores: waiters served in arrival order, each place
//! in the queue a lease of its waiter (decision 0033).

use crate::cases::prelude::*;

/// A fair waiter's client, whose switch counts its queued attempts.
async fn waiter(ctx: &Ctx<'_>, name: &str) -> (Client, Switch) {
    ctx.switchable_client(name, default_options()).await
}

/// Waits until `switch`'s client has had `n` queued attempts answered: its
/// place in the queue is taken.
async fn queued(switch: &Switch, n: usize, what: &str) {
    let seen = eventually(ms(3000), || async {
        (switch.answered("acquire_queued") >= n).then_some(())
    })
    .await;
    assert!(seen.is_some(), "{what}: no queued attempt answered");
}

/// The lease `kind` on "k" for `holder`.
fn lease(kind: LeaseKind, holder: &HolderId) -> LeaseId {
    LeaseId {
        kind,
        key: key("k"),
        holder: holder.clone(),
    }
}

/// One queued attempt at the backend.
async fn ask(b: &DynBackend, id: &LeaseId, waiter_ttl: Duration, enqueue: bool) -> Acquire {
    locks(b)
        .acquire_queued(id, ms(5000), waiter_ttl, enqueue)
        .await
        .expect("acquire_queued")
}

fn granted(a: &Acquire) -> bool {
    matches!(a, Acquire::Granted(_))
}

/// Starts a task per waiter, in order, each after the one before it has
/// taken its place; each records its grant's token with its index, holds
/// for a moment and releases.
async fn five_waiters<F, Fut>(
    ctx: &Ctx<'_>,
    take: F,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Arc<Mutex<Vec<(FencingToken, usize)>>>,
)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<LeaseGuard>> + Send + 'static,
{
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (client, switch) = waiter(ctx, &format!("w{i}")).await;
        let wait = take(client);
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = wait.await.expect("granted within the wait timeout");
            order.lock().unwrap().push((g.token(), i));
            sleep(ms(5)).await;
            assert!(g.release().await.unwrap(), "held until released");
        }));
        queued(&switch, 1, &format!("waiter {i}")).await;
    }
    (tasks, order)
}

/// The waiters' indexes in grant (token) order.
fn by_token(order: &Mutex<Vec<(FencingToken, usize)>>) -> Vec<usize> {
    let mut v = order.lock().unwrap().clone();
    v.sort();
    v.into_iter().map(|(_, i)| i).collect()
}

cases! {
    family: "fair", needs: [Need::Locks, Need::Fair];

/// Five waiters of a fair lock, each queued after the one before, are
/// granted in that order once the holder releases.
#[needs(Need::Exclusive)]
pub async fn fair_lock_grants_in_arrival_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let held = take(&a.lock("k").fair(true), "holder").await;
    let (tasks, order) =
        five_waiters(&ctx, |c| async move { c.lock("k").fair(true).lock().await }).await;
    assert!(held.release().await.unwrap());
    for t in tasks {
        join(t, ms(8000), "fair waiter").await;
    }
    assert_eq!(by_token(&order), [0, 1, 2, 3, 4], "grants in arrival order");
}

/// Five waiters of a fair semaphore of 2 permits, each queued after the one
/// before, are granted in that order (by token) as permits free.
#[needs(Need::Semaphore)]
pub async fn fair_semaphore_grants_in_arrival_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let sem = a.semaphore("k", 2).fair(true);
    let p1 = sem.try_acquire().await.unwrap().expect("1st permit");
    let p2 = sem.try_acquire().await.unwrap().expect("2nd permit");
    let (tasks, order) = five_waiters(&ctx, |c| async move {
        c.semaphore("k", 2).fair(true).acquire().await
    })
    .await;
    assert!(p1.release().await.unwrap());
    assert!(p2.release().await.unwrap());
    for t in tasks {
        join(t, ms(8000), "fair waiter").await;
    }
    assert_eq!(by_token(&order), [0, 1, 2, 3, 4], "grants in arrival order");
}

/// At the backend, only the head of the queue is granted, whatever order
/// the waiters ask in after a release; each grant removes its waiter's
/// place in the same step, so the next in line goes next.
#[needs(Need::Exclusive)]
pub async fn fair_queue_serves_only_its_head(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.backend().await;
    let ids: Vec<LeaseId> = (0..5)
        .map(|i| lease(LeaseKind::Exclusive, &holder(&format!("w{i}"))))
        .collect();
    let first = lease(LeaseKind::Exclusive, &holder("h"));
    assert!(granted(&ask(&b, &first, ms(5000), true).await), "free lock");
    for id in &ids {
        assert!(!granted(&ask(&b, id, ms(5000), true).await), "queued");
    }
    locks(&b).release(&first).await.unwrap();
    for next in 0..5 {
        // The later waiters ask first: refused, they are not at the head.
        for id in ids[next + 1..].iter().rev() {
            assert!(!granted(&ask(&b, id, ms(5000), true).await), "not its turn");
        }
        assert!(granted(&ask(&b, &ids[next], ms(5000), true).await), "its turn");
        locks(&b).release(&ids[next]).await.unwrap();
    }
    // Every grant took its place away: a try goes in at once.
    let late = lease(LeaseKind::Exclusive, &holder("late"));
    assert!(granted(&ask(&b, &late, ms(5000), false).await), "queue empty");
}

/// A fair semaphore's head asking for several permits is not overtaken by
/// a later waiter for one, though one would fit.
#[needs(Need::Semaphore, Need::MultiPermit)]
pub async fn fair_semaphore_wide_head_not_overtaken(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.backend().await;
    let one = LeaseKind::Permit { limit: 3 };
    let held = lease(LeaseKind::Permits { limit: 3, count: 2 }, &holder("h"));
    let wide = lease(LeaseKind::Permits { limit: 3, count: 2 }, &holder("wide"));
    let small = lease(one, &holder("small"));
    assert!(granted(&ask(&b, &held, ms(5000), true).await), "2 of 3");
    assert!(!granted(&ask(&b, &wide, ms(5000), true).await), "2 do not fit");
    assert!(!granted(&ask(&b, &small, ms(5000), true).await), "behind the wide head");
    locks(&b).release(&held).await.unwrap();
    assert!(!granted(&ask(&b, &small, ms(5000), true).await), "still behind it");
    assert!(granted(&ask(&b, &wide, ms(5000), true).await), "the head goes in");
    assert!(granted(&ask(&b, &small, ms(5000), true).await), "then the next");
}

/// `try_lock` on a fair lock is refused while anyone waits, even when the
/// lock is free; once the queue is empty it goes in.
#[needs(Need::Exclusive)]
pub async fn fair_try_lock_never_jumps_the_queue(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.backend().await;
    let c = ctx.client("c").await;
    let blocker = lease(LeaseKind::Exclusive, &holder("h"));
    let waiting = lease(LeaseKind::Exclusive, &holder("w"));
    assert!(granted(&ask(&b, &blocker, ms(5000), true).await));
    assert!(!granted(&ask(&b, &waiting, ms(5000), true).await), "queued");
    locks(&b).release(&blocker).await.unwrap();
    let lock = c.lock("k").fair(true);
    assert!(at_once(lock.try_lock()).await.unwrap().is_none(), "lock free, queue not");
    assert!(granted(&ask(&b, &waiting, ms(5000), true).await), "the waiter's turn");
    locks(&b).release(&waiting).await.unwrap();
    let g = at_once(lock.try_lock()).await.unwrap().expect("queue empty");
    g.release().await.unwrap();
}

/// A waiter that stops renewing its place (crashed, cut off) is skipped
/// once its waiter TTL passes, not before: the next waiter is granted then,
/// on a lock and on a semaphore.
#[needs(Need::Exclusive, Need::Semaphore)]
pub async fn fair_dead_waiter_skipped_after_its_waiter_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.backend().await;
    let c = ctx.client("c").await;
    for kind in [LeaseKind::Exclusive, LeaseKind::Permit { limit: 1 }] {
        let blocker = lease(kind, &holder("h"));
        let dead = lease(kind, &holder("dead"));
        assert!(granted(&ask(&b, &blocker, ms(5000), true).await), "free");
        let t0 = Instant::now();
        // Queued for 400 ms, and never heard of again.
        assert!(!granted(&ask(&b, &dead, ms(400), true).await), "queued");
        locks(&b).release(&blocker).await.unwrap();
        let guard = match kind {
            LeaseKind::Exclusive => c.lock("k").fair(true).lock().await,
            _ => c.semaphore("k", 1).fair(true).acquire().await,
        }
        .expect("granted once the dead waiter is skipped");
        let waited = t0.elapsed();
        assert!(waited >= ms(390), "granted after {waited:?}, before the dead place lapsed");
        assert!(waited < ms(3000), "granted only after {waited:?}");
        guard.release().await.unwrap();
    }
}

/// Fairness holds among fair handles: a handle on the same key that is
/// not fair ignores the queue (its `try_` goes in while a fair waiter
/// queues, the lock or permit free), where a fair one's is refused; the
/// waiter goes in once it is released. On a lock and on a semaphore.
#[needs(Need::Exclusive, Need::Semaphore)]
pub async fn fair_queue_ignored_by_unfair_handles(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.backend().await;
    let c = ctx.client("c").await;
    for kind in [LeaseKind::Exclusive, LeaseKind::Permit { limit: 1 }] {
        let blocker = lease(kind, &holder("h"));
        let waiting = lease(kind, &holder("w"));
        assert!(granted(&ask(&b, &blocker, ms(5000), true).await), "free");
        assert!(!granted(&ask(&b, &waiting, ms(5000), true).await), "queued");
        locks(&b).release(&blocker).await.unwrap();
        let (fair, unfair) = match kind {
            LeaseKind::Exclusive => (
                at_once(c.lock("k").fair(true).try_lock()).await,
                at_once(c.lock("k").try_lock()).await,
            ),
            _ => (
                at_once(c.semaphore("k", 1).fair(true).try_acquire()).await,
                at_once(c.semaphore("k", 1).try_acquire()).await,
            ),
        };
        assert!(fair.unwrap().is_none(), "{kind:?}: a fair try waits its turn");
        let g = unfair.unwrap().expect("not fair: the queue is ignored");
        assert!(!granted(&ask(&b, &waiting, ms(5000), true).await), "{kind:?}: held");
        assert!(g.release().await.unwrap());
        assert!(granted(&ask(&b, &waiting, ms(5000), true).await), "the waiter's turn");
        locks(&b).release(&waiting).await.unwrap();
    }
}

/// The operations listing shows how many live places a fair key's queue
/// has as its holder's `waiters` (none while nobody queues), on a lock and
/// on a semaphore; a place given back is no longer counted.
#[needs(Need::Exclusive, Need::Semaphore, Need::Ops)]
pub async fn fair_queue_listed_as_waiters(h: &dyn Harness) {
    use crate::cases::ops::{LeaseFilter, Role, one, operator};
    let ctx = Ctx::new(h);
    let b = ctx.backend().await;
    let op = &operator(&ctx).await;
    for (kind, name) in [
        (LeaseKind::Exclusive, "lock:k"),
        (LeaseKind::Permit { limit: 1 }, "semaphore:k"),
    ] {
        let waiters = || async move {
            let all = op.leases(&LeaseFilter::all()).await.unwrap();
            one(&all, name, Role::Lock(kind), "h").waiters
        };
        let held = lease(kind, &holder("h"));
        assert!(granted(&ask(&b, &held, ms(5000), true).await), "free");
        assert_eq!(waiters().await, None, "{name}: nobody queues");
        let queued: Vec<LeaseId> = ["w1", "w2"].map(|w| lease(kind, &holder(w))).into();
        for id in &queued {
            assert!(!granted(&ask(&b, id, ms(5000), true).await), "queued");
        }
        assert_eq!(waiters().await, Some(2), "{name}: two places");
        assert!(locks(&b).leave_queue(&queued[0]).await.unwrap(), "had a place");
        assert_eq!(waiters().await, Some(1), "{name}: one place given back");
        assert!(locks(&b).leave_queue(&queued[1]).await.unwrap(), "had a place");
        locks(&b).release(&held).await.unwrap();
    }
}

/// A fair reentrant handle that holds the lock re-enters without queueing
/// (a waiter is queued meanwhile), and the waiter gets the lock once every
/// hold is released.
#[needs(Need::Reentrant)]
pub async fn fair_reentrant_lock_reenters_without_queueing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let lock = a.lock("k").fair(true).reentrant(true);
    let g1 = take(&lock, "first hold").await;
    let first = g1.token();
    let (w, sw) = waiter(&ctx, "w").await;
    let wait = tokio::spawn(async move { w.lock("k").fair(true).reentrant(true).lock().await });
    queued(&sw, 1, "waiter").await;
    let g2 = at_once(lock.lock()).await.expect("re-entered, not queued");
    assert_eq!((g2.token(), lock.hold_count().await.unwrap()), (first, 2));
    assert!(g2.release().await.unwrap());
    assert!(g1.release().await.unwrap());
    let g = join(wait, ms(3000), "waiter").await.expect("granted after both holds");
    assert!(g.token() > first);
    // The fair grants are listed like any other.
    let held = lock.holders().await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!((held[0].kind, held[0].token), (LeaseKind::Reentrant, g.token()));
    g.release().await.unwrap();
}

/// A cancelled wait and a timed-out wait give their places back at once:
/// the waiter behind them is granted right after the release, long before
/// their waiter TTLs (5 s) pass.
#[needs(Need::Exclusive, Need::ReleaseNotifications)]
pub async fn fair_cancelled_wait_leaves_no_place(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let held = take(&a.lock("k").fair(true).ttl(ms(5000)), "holder").await;
    let (cancelled, sw_cancelled) = waiter(&ctx, "cancelled").await;
    let lock = cancelled.lock("k").fair(true).waiter_ttl(ms(5000));
    let wait = tokio::spawn(async move { lock.lock().await });
    queued(&sw_cancelled, 1, "cancelled waiter").await;
    wait.abort();
    let (timed_out, sw_timed_out) = waiter(&ctx, "timed-out").await;
    let lock = (timed_out.lock("k").fair(true).waiter_ttl(ms(5000)))
        .wait_timeout(Some(ms(300)));
    let wait = tokio::spawn(async move { lock.lock().await });
    queued(&sw_timed_out, 1, "timed-out waiter").await;
    let res = join(wait, ms(3000), "timed-out waiter").await;
    assert!(matches!(res, Err(Error::Timeout { .. })), "{res:?}");
    let (next, sw_next) = waiter(&ctx, "next").await;
    let lock = next.lock("k").fair(true).waiter_ttl(ms(5000));
    let wait = tokio::spawn(async move { lock.lock().await });
    queued(&sw_next, 1, "next waiter").await;
    // The places are given back in the background: wait for it.
    let gone = eventually(ms(3000), || async {
        let left = |s: &Switch| s.answered("leave_queue") >= 1;
        (left(&sw_cancelled) && left(&sw_timed_out)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the cancelled and timed-out waiters gave their places back");
    let t = Instant::now();
    assert!(held.release().await.unwrap());
    let g = join(wait, ms(3000), "next waiter").await.expect("granted");
    assert!(t.elapsed() < ms(1500), "granted {:?} after the release", t.elapsed());
    g.release().await.unwrap();
}

/// A waiter TTL out of range, or a fair kind the backend does not queue,
/// is `InvalidArgument` before any I/O (from the client) and at the
/// backend, whose `leave_queue` refuses such a kind too (as one backend
/// answered `false` and the other a backend error).
pub async fn fair_bad_waiter_ttl_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = waiter(&ctx, "c").await;
    switch.off();
    for bad in [ms(1), Duration::from_secs(2 * 3600)] {
        let res = c.lock("k").fair(true).waiter_ttl(bad).try_lock().await;
        match &res {
            Err(Error::InvalidArgument { message, .. }) => {
                assert!(message.contains("\"k\"") && message.contains("waiter"), "{message}")
            }
            other => panic!("waiter_ttl {bad:?}: expected InvalidArgument, got {other:?}"),
        }
        let res = c.semaphore("k", 2).fair(true).waiter_ttl(bad).acquire().await;
        assert_invalid(res, "semaphore waiter_ttl");
    }
    // Out of fair mode, the waiter TTL is not used, and not checked.
    let res = c.lock("k").waiter_ttl(ms(1)).try_lock().await;
    assert!(matches!(res, Err(Error::Unavailable { .. })), "{res:?}");
    switch.on();
    let b = ctx.backend().await;
    let id = lease(LeaseKind::Exclusive, &holder("x"));
    let res = locks(&b).acquire_queued(&id, ms(1000), Duration::ZERO, true).await;
    assert_invalid(res, "zero waiter TTL at the backend");
    let read = lease(LeaseKind::Read, &holder("x"));
    let res = locks(&b).acquire_queued(&read, ms(1000), ms(1000), true).await;
    assert_invalid(res, "a read lease queued");
    for kind in [LeaseKind::Read, LeaseKind::Write] {
        let id = lease(kind, &holder("x"));
        let res = locks(&b).leave_queue(&id).await;
        assert_invalid(res, "a read-write lock's lease leaving a queue");
    }
}

/// Asking a fair semaphore with another N while it has live permits is
/// `InvalidArgument` at once (contract: "N is fixed while the semaphore has
/// live permits: asking with another N then is InvalidArgument"), also
/// while a fair waiter queues: neither an `Ok(None)` nor a wait.
#[needs(Need::Semaphore)]
pub async fn fair_semaphore_different_n_invalid_while_queued(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (ctx.client("a").await, ctx.client("b").await, ctx.client("c").await);
    let pa = a.semaphore("s", 1).fair(true).ttl(ms(5000)).try_acquire().await.unwrap().expect("N=1");
    let sb = b.semaphore("s", 1).fair(true);
    let waiter = tokio::spawn(async move { sb.acquire().await });
    sleep(ms(200)).await; // b queues
    assert!(!waiter.is_finished());
    let res = c.semaphore("s", 3).fair(true).try_acquire().await;
    let try_res = format!("{res:?}");
    let res = timeout(ms(1500), c.semaphore("s", 3).fair(true).acquire()).await;
    let wait_res = match res {
        Ok(r) => format!("{r:?}"),
        Err(_) => "still waiting after 1.5 s".to_string(),
    };
    assert!(pa.release().await.unwrap());
    let pb = join(waiter, ms(5000), "fair waiter").await.expect("b granted");
    assert!(pb.release().await.unwrap());
    assert!(
        try_res.contains("InvalidArgument") && wait_res.contains("InvalidArgument"),
        "another N on a fair semaphore with live permits: try_acquire -> {try_res}, \
         acquire -> {wait_res}"
    );
}
/// A fair `lock()` / `acquire()` with a short wait timeout (0, 1 ms) on a
/// free key is granted, as a handle that is not fair is: the deadline
/// bounds the first subscription, not the first attempt's answer. Before,
/// on a backend whose subscription takes a round trip (Redis), the
/// deadline cut the first attempt off and the wait gave up with `Timeout`
/// on a free key (the memory backend granted it). On a held key it still
/// gives up with `Timeout` at once, and gives its place back.
pub async fn fair_short_wait_timeout_on_a_free_key_is_granted(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    for wait in [ms(0), ms(1)] {
        let lock = a.lock("k").fair(true).wait_timeout(Some(wait));
        let g = (lock.lock().await)
            .unwrap_or_else(|e| panic!("fair lock(), wait_timeout {wait:?}, free key: {e:?}"));
        assert!(g.release().await.unwrap());
        let sem = a.semaphore("s", 2).fair(true).wait_timeout(Some(wait));
        let p = (sem.acquire().await)
            .unwrap_or_else(|e| panic!("fair acquire(), wait_timeout {wait:?}, free key: {e:?}"));
        assert!(p.release().await.unwrap());
    }
    let held = take(&b.lock("k").fair(true).ttl(ms(5000)), "holder").await;
    let lock = a.lock("k").fair(true).waiter_ttl(ms(9000));
    let res = at_once(lock.wait_timeout(Some(ms(1))).lock()).await;
    assert!(matches!(res, Err(Error::Timeout { .. })), "on a held key: {res:?}");
    assert!(held.release().await.unwrap());
    // Its place was given back: a fair try_lock goes in (not after 9 s).
    let g = eventually(ms(2000), || async {
        a.lock("k").fair(true).try_lock().await.unwrap()
    })
    .await
    .expect("the timed-out waiter's place was given back");
    assert!(g.release().await.unwrap());
}

/// A fair `lock()` on a free key is answered with its grant as soon as its
/// first attempt is, with or without a wait timeout: it does not wait for
/// its first subscription, which only a refusal needs. Before, with the
/// backend answering subscriptions 6 s late (a reconnecting pub/sub), the
/// grant came back 6 s late.
pub async fn fair_grant_does_not_wait_for_a_slow_subscription(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = ctx.switchable_client("c", default_options()).await;
    switch.late_replies("subscribe", ms(6000));
    switch.late_replies("subscribe_queued", ms(6000));
    for wait in [None, Some(ms(300))] {
        let t0 = Instant::now();
        let lock = c.lock("k").fair(true).wait_timeout(wait);
        let g = timeout(ms(9000), lock.lock()).await.expect("granted");
        let g = g.unwrap_or_else(|e| panic!("wait_timeout {wait:?}, slow subscription: {e:?}"));
        let took = t0.elapsed();
        assert!(
            took < ms(3000),
            "a fair lock() on a free key (wait_timeout {wait:?}) was answered after \
             {took:?}: it waited for the subscription (6 s late)"
        );
        assert!(g.release().await.unwrap());
    }
    switch.late_replies("subscribe", Duration::ZERO);
    switch.late_replies("subscribe_queued", Duration::ZERO);
}
}
