//! Deliveries are leases: only the item's current delivery, before its
//! deadline, settles or extends it (a zombie's ack, nack or extend is
//! `LeaseLost` and changes nothing); an unrenewed delivery is redelivered
//! after its expiry (on its last attempt, dead with `lease expired`); one
//! renewed by auto-extension is never redelivered, so without faults there
//! are no duplicates; a dropped delivery is given back at once; and the
//! lost signal fires when the lease is lost.

use super::*;

cases! {
    family: "queue", needs: [Need::Queues];

/// Two deliveries let expire (TTL 60 ms, no renewal) are redelivered to
/// another consumer with larger tokens; the zombie's extend, ack and nack
/// are `LeaseLost`, its token's dead-letter and extend through the SPI
/// `Stale`, and none changes anything: the counts are the same, and the
/// current deliveries ack.
pub async fn queue_zombie_settlements_lease_lost_change_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    numbers(&a).push_many(&[1, 2]).await.unwrap();
    let mut zombie = numbers(&a).consumer().ttl(ms(60)).auto_extend(false);
    let old_x = within(zombie.receive(), "x, attempt 1").await;
    let old_y = within(zombie.receive(), "y, attempt 1").await;
    let mut current = numbers(&b).consumer();
    let mut new = Vec::new();
    for what in ["first redelivery", "second redelivery"] {
        new.push(within(current.receive(), what).await);
    }
    new.sort_by_key(|d| d.id());
    let (new_x, new_y) = (&new[0], &new[1]);
    for (old, cur) in [(&old_x, new_x), (&old_y, new_y)] {
        assert_eq!((cur.id(), cur.attempt()), (old.id(), 2));
        assert!(cur.token() > old.token(), "{cur:?} after {old:?}");
    }
    let before = stats(&a).await;
    assert_eq!(places(&before), (0, 0, 2, 0), "{before:?}");
    assert_lease_lost(old_x.extend().await, "the zombie's extend");
    let (y_id, y_token) = (old_y.id(), old_y.token());
    assert_lease_lost(old_x.ack().await, "the zombie's ack");
    assert_lease_lost(old_y.nack("late").await, "the zombie's nack");
    let backend = ctx.backend().await;
    let q = spi(&backend);
    let dead = q.dead_letter(&key(Q), y_id, y_token, "late").await;
    assert_eq!(dead.unwrap(), Settle::Stale, "the zombie's dead-letter");
    let extend = q.extend(&key(Q), y_id, y_token, ms(5000)).await;
    assert_eq!(extend.unwrap(), Settle::Stale, "the zombie's extend");
    let after = stats(&a).await;
    assert_eq!(places(&after), places(&before), "changed nothing: {after:?}");
    assert_eq!(counts(&after), counts(&before), "changed nothing: {after:?}");
    for d in new {
        assert!(d.is_held(), "{d:?}");
        within(d.ack(), "the current delivery's ack").await;
    }
    assert_eq!(places(&stats(&a).await), (0, 0, 0, 0));
}

/// A token never issued, an item that does not exist and a queue that does
/// not exist are refused (`Stale`, `false`) by every settlement and by
/// extend, and change nothing.
pub async fn queue_unknown_token_item_or_queue_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let id = numbers(&c).push(&1).await.unwrap().id();
    let mut consumer = numbers(&c).consumer();
    let d = within(consumer.receive(), "the item").await;
    let backend = ctx.backend().await;
    let q = spi(&backend);
    let never = FencingToken(d.token().get() + 1_000_000);
    let before = stats(&c).await;
    for (queue, id, token, what) in [
        (key(Q), id, never, "a token never issued"),
        (key(Q), id + 1000, d.token(), "no such item"),
        (key("nope"), id, d.token(), "no such queue"),
    ] {
        let ack = q.ack(&queue, id, token).await.unwrap();
        assert_eq!(ack, Settle::Stale, "ack: {what}");
        let nack = q.nack(&queue, id, token, "x", ms(0)).await.unwrap();
        assert_eq!(nack, Nack::Stale, "nack: {what}");
        let dead = q.dead_letter(&queue, id, token, "x").await.unwrap();
        assert_eq!(dead, Settle::Stale, "dead_letter: {what}");
        let extend = q.extend(&queue, id, token, ms(5000)).await.unwrap();
        assert_eq!(extend, Settle::Stale, "extend: {what}");
    }
    let after = stats(&c).await;
    assert_eq!(places(&after), places(&before), "{after:?}");
    assert_eq!(counts(&after), counts(&before), "{after:?}");
    within(d.ack(), "the real delivery").await;
}

/// A delivery past its deadline settles nothing even before anyone took
/// the item again: its ack is `LeaseLost`, and the item is returned (its
/// attempt counted) rather than removed.
pub async fn queue_ack_after_deadline_lease_lost_before_redelivery(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let id = numbers(&c).push(&1).await.unwrap().id();
    let ttl = ms(50);
    let mut consumer = numbers(&c).consumer().ttl(ttl).auto_extend(false);
    let d = within(consumer.receive(), "the item").await;
    let received = Instant::now();
    fires(&d.lost(), "the local lease ends").await;
    // Time passes for the backend's deadline too.
    sleep_until(received + ttl + ms(5)).await;
    assert_lease_lost(d.ack().await, "an ack after the deadline");
    let s = stats(&c).await;
    assert_eq!(places(&s), (1, 0, 0, 0), "returned, not removed: {s:?}");
    let mut other = numbers(&c).consumer();
    let again = within(other.receive(), "the item again").await;
    assert_eq!((again.id(), again.attempt()), (id, 2));
    within(again.ack(), "ack").await;
}

/// A delivery not renewed (auto-extension off, TTL 50 ms) is redelivered
/// to another consumer after its expiry — not before — as attempt 2 with
/// a larger token, counted as a redelivery; the first delivery is lost by
/// then and its ack is `LeaseLost`.
pub async fn queue_unrenewed_delivery_redelivered_after_expiry(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let id = numbers(&a).push(&1).await.unwrap().id();
    let ttl = ms(50);
    let mut first = numbers(&a).consumer().ttl(ttl).auto_extend(false);
    let t0 = Instant::now();
    let d1 = within(first.receive(), "attempt 1").await;
    let mut second = numbers(&b).consumer();
    let d2 = within(second.receive(), "attempt 2").await;
    let waited = t0.elapsed();
    assert!(waited + ms(2) >= ttl, "redelivered {waited:?} after, before expiry");
    assert_eq!((d2.id(), d2.attempt()), (id, 2));
    assert!(d2.token() > d1.token(), "{d2:?} after {d1:?}");
    assert!(d1.lost().is_lost() && !d1.is_held(), "{d1:?}");
    let s = stats(&a).await;
    assert_eq!(counts(&s), (2, 1, 0, 0), "{s:?}");
    assert_lease_lost(d1.ack().await, "the expired delivery's ack");
    within(d2.ack(), "ack").await;
}

/// An unrenewed delivery on the item's last attempt that expires moves the
/// item to the dead letters, once, with `lease expired`; it is not
/// delivered again.
pub async fn queue_unrenewed_last_attempt_dead_lease_expired(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let opts = PushOptions::new().max_attempts(1);
    let id = numbers(&c).push_with(&1, opts).await.unwrap().id();
    let mut consumer = numbers(&c).consumer().ttl(ms(50)).auto_extend(false);
    let d = within(consumer.receive(), "the only attempt").await;
    let s = stats_when(&c, "dead after expiry", |s| s.dead == 1).await;
    assert_eq!(places(&s), (0, 0, 0, 1), "{s:?}");
    assert_eq!(s.dead_lettered, 1, "{s:?}");
    let dead = numbers(&c).dead_letters(0, 10).await.unwrap();
    let view: Vec<(u64, u32, &str)> = (dead.iter())
        .map(|d| (d.id, d.attempts, d.reason.as_str()))
        .collect();
    assert_eq!(view, [(id, 1, "lease expired")]);
    assert_lease_lost(d.ack().await, "the expired delivery's ack");
    let mut other = numbers(&c).consumer().wait_timeout(Some(ms(100)));
    assert_timeout(other.receive().await, "not delivered again");
    assert_eq!(stats(&c).await.dead_lettered, 1, "once");
}

/// A delivery held for three times its TTL (300 ms) under auto-extension
/// is never redelivered: another consumer waiting meanwhile gets nothing,
/// the lease stays held and its ack counts.
pub async fn queue_auto_extended_long_handler_not_redelivered(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    numbers(&a).push(&1).await.unwrap();
    let ttl = ms(300);
    let mut worker = numbers(&a).consumer().ttl(ttl);
    let d = within(worker.receive(), "the item").await;
    let mut idle = numbers(&b).consumer().wait_timeout(Some(ttl * 3));
    // The long handler: time passes while the lease is renewed.
    let (waited, ()) = tokio::join!(idle.receive(), sleep(ttl * 3));
    assert_timeout(waited, "the other consumer while the item is worked on");
    assert!(d.is_held() && !d.lost().is_lost(), "{d:?}");
    within(d.ack(), "ack after the long handler").await;
    let s = stats(&a).await;
    assert_eq!(counts(&s), (1, 0, 0, 0), "no redelivery: {s:?}");
}

/// Without faults there are no duplicates: four consumers (two prefetching
/// two items, two stealing) handle 40 items, some for over two TTLs under
/// auto-extension; each item is handled exactly once and none redelivered
/// (a prefetched item stolen or expired before it was handed out is
/// skipped by its first consumer).
pub async fn queue_no_duplicates_without_faults(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let producer = ctx.client("p").await;
    let values: Vec<u64> = (0..40).collect();
    numbers(&producer).push_many(&values).await.unwrap();
    let ttl = ms(300);
    let handled = Arc::new(Mutex::new(Vec::new()));
    let mut loops = Loops::new();
    for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let c = ctx.client(name).await;
        let consumer = numbers(&c).consumer().ttl(ttl);
        let consumer = if i < 2 {
            consumer.prefetch(2)
        } else {
            consumer.steal(true)
        };
        let handled = handled.clone();
        loops.spawn(consumer.run(move |v: u64, _| {
            let handled = handled.clone();
            async move {
                if v.is_multiple_of(10) {
                    sleep(ttl * 7 / 3).await;
                }
                handled.lock().unwrap().push(v);
                Ok(())
            }
        }));
    }
    let done = eventually(ms(10_000), || async {
        let s = stats(&producer).await;
        (places(&s) == (0, 0, 0, 0) && handled.lock().unwrap().len() >= 40).then_some(s)
    })
    .await;
    loops.assert_running();
    let s = done.unwrap_or_else(|| panic!("40 items not all handled: {handled:?}"));
    let mut seen = handled.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, values, "each item exactly once");
    assert_eq!(s.redelivered, 0, "no redelivery: {s:?}");
    // Prefetched deliveries stolen, or expired while their consumer was
    // busy, are delivered again unstarted: more deliveries, no redelivery.
    assert!(s.delivered >= 40, "{s:?}");
}

/// A delivery dropped unsettled is given back at once (well before its
/// 5 s TTL): another waiting consumer is woken and gets it as attempt 2
/// (the dropped attempt counted) with a larger token.
pub async fn queue_dropped_delivery_given_back_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let id = numbers(&a).push(&1).await.unwrap().id();
    let mut first = numbers(&a).consumer().ttl(ms(5000));
    let d1 = within(first.receive(), "attempt 1").await;
    let token = d1.token();
    let mut second = numbers(&b).consumer();
    let waiting = async { within(second.receive(), "given back at once").await };
    let dropping = async {
        // The other consumer looked once (and waits) before the drop.
        stats_when(&a, "both consumers", |s| s.consumers.len() == 2).await;
        drop(d1);
    };
    let (d2, ()) = tokio::join!(waiting, dropping);
    assert_eq!((d2.id(), d2.attempt()), (id, 2));
    assert!(d2.token() > token, "{d2:?} after {token}");
    assert_eq!(stats(&a).await.redelivered, 1);
    within(d2.ack(), "ack").await;
}

/// The lost signal fires when the backend no longer has the delivery (its
/// consumer was made to leave through the SPI): at the next renewal
/// (every 200 ms), long before local validity (about 3 s) would run out;
/// the delivery is no longer held, its ack is `LeaseLost`, and another
/// consumer gets the item as attempt 2.
pub async fn queue_lost_signal_fires_when_lease_lost(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let id = numbers(&a).push(&1).await.unwrap().id();
    let opts = default_options()
        .ttl(ms(3000))
        .extend_interval(Some(ms(200)));
    let mut consumer = numbers(&a).consumer().with_options(opts);
    let d = within(consumer.receive(), "the item").await;
    let lost = d.lost();
    assert!(!lost.is_lost(), "held");
    let backend = ctx.backend().await;
    let t0 = Instant::now();
    let left = spi(&backend).leave(&key(Q), consumer.holder()).await;
    assert_eq!(left.unwrap(), 1, "its delivery given back");
    fires(&lost, "the lost signal").await;
    let after = t0.elapsed();
    assert!(after < ms(1500), "fired {after:?} after the loss");
    assert!(lost.is_lost() && !d.is_held(), "{d:?}");
    let mut other = numbers(&b).consumer();
    let again = within(other.receive(), "the item again").await;
    assert_eq!((again.id(), again.attempt()), (id, 2));
    assert_lease_lost(d.ack().await, "the lost delivery's ack");
    within(again.ack(), "ack").await;
}
}
