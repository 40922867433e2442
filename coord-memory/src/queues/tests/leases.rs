//! Deliveries as fenced leases: settling with the current token only
//! (rules 4 and 5), returning on expiry, on a dead consumer and on leave
//! (rules 1, 6 and 7).

use super::*;

/// What a stale call must leave as it was: the counts and the dead items.
async fn snapshot(t: &T) -> (QueueStats, Vec<DeadItem>) {
    (t.stats().await, t.dead().await)
}

/// Every settling call with `d`'s id and token is stale, and changes
/// nothing.
async fn all_stale(t: &T, d: &Delivery) {
    let before = snapshot(t).await;
    assert_eq!(t.extend(d).await, Settle::Stale);
    assert_eq!(t.nack(d, Duration::ZERO).await, Nack::Stale);
    assert_eq!(t.dead_letter(d, "no").await, Settle::Stale);
    assert_eq!(t.ack(d).await, Settle::Stale);
    assert_eq!(snapshot(t).await, before);
}

#[tokio::test(start_paused = true)]
async fn a_stale_token_changes_nothing() {
    let t = T::new();
    t.push(vec![item("a"), item("b")]).await;
    let d = t.recv(&t.a).await;
    // Another token, another item, another queue.
    let mut wrong = d.clone();
    wrong.token.0 += 1;
    all_stale(&t, &wrong).await;
    let mut other = d.clone();
    other.id = 2;
    all_stale(&t, &other).await;
    other.id = 99;
    all_stale(&t, &other).await;
    let elsewhere = t.on("nope");
    all_stale(&elsewhere, &d).await;
    assert_eq!(t.places().await, (1, 0, 1, 0));
    // At its deadline the lease is gone.
    advance(TTL).await;
    all_stale(&t, &d).await;
    assert_eq!(t.places().await, (2, 0, 0, 0));
    // And after the item was delivered again.
    let again = t.recv(&t.c).await;
    assert_eq!((again.id, again.attempt), (1, 2));
    all_stale(&t, &d).await;
    // The current one still counts.
    assert_eq!(t.extend(&again).await, Settle::Done);
    assert_eq!(t.ack(&again).await, Settle::Done);
    all_stale(&t, &again).await;
    assert_eq!(t.places().await, (1, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_extension_runs_from_now() {
    let t = T::new();
    t.push1("a").await;
    let d = t.recv(&t.a).await;
    advance(TTL - MS).await;
    assert_eq!(t.extend(&d).await, Settle::Done);
    assert_eq!(t.idle(&t.c).await, Some(TTL));
    advance(TTL - MS).await;
    assert_eq!(t.places().await, (0, 0, 1, 0));
    assert_eq!(t.idle(&t.c).await, Some(MS));
    advance(MS).await;
    assert_eq!(t.places().await, (1, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_expired_delivery_returns_with_its_attempt_then_dies_once() {
    let t = T::new();
    t.push(vec![tries("a", 2)]).await;
    let first = t.recv(&t.a).await;
    assert_eq!(first.attempt, 1);
    advance(TTL - MS).await;
    assert_eq!(t.places().await, (0, 0, 1, 0));
    advance(MS).await;
    // Any step returns it: here the counts.
    assert_eq!(t.places().await, (1, 0, 0, 0));
    let second = t.recv(&t.c).await;
    assert_eq!((second.id, second.attempt), (1, 2));
    advance(TTL).await;
    assert_eq!(t.places().await, (0, 0, 0, 1));
    let dead = t.dead().await;
    assert_eq!(t.deaths().await, [(1, 2, "lease expired".into())]);
    let wall = t.b.store.wall(t.b.store.now());
    assert_eq!(dead[0].died_at, wall);
    assert_eq!(dead[0].payload, b"a");
    // Exactly once: later steps find nothing more to do.
    advance(TTL).await;
    t.idle(&t.a).await;
    let s = t.stats().await;
    assert_eq!((s.dead, s.dead_lettered, s.redelivered), (1, 1, 1));
    all_stale(&t, &second).await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_consumers_deliveries_return_before_their_deadlines() {
    let t = T::new();
    t.push(vec![tries("last", 1), tries("more", 2), tries("b", 1)])
        .await;
    // a: presence 2 s; item 1 started on its last attempt, 2 prefetched.
    let short = ReceiveOptions::new(TTL, 2 * SEC).max(2);
    let r = t.receive_with(&t.a, short).await;
    // c stays alive by heartbeats.
    let c = ReceiveOptions::new(TTL, 2 * SEC);
    let kept = t.receive_with(&t.c, c).await.deliveries.remove(0);
    advance(SEC).await;
    t.b.heartbeat(&t.q, &t.c, 2 * SEC).await.unwrap();
    let s = t.stats().await;
    assert_eq!(s.consumers, [*t.a.instance(), *t.c.instance()]);
    advance(SEC).await;
    let s = t.stats().await;
    assert_eq!((s.ready, s.in_flight, s.dead), (1, 1, 1));
    assert_eq!(s.consumers, [*t.c.instance()]);
    assert_eq!(t.deaths().await, [(1, 1, "consumer gone".into())]);
    for d in &r.deliveries {
        all_stale(&t, d).await;
    }
    assert_eq!(t.extend(&kept).await, Settle::Done);
    // A heartbeat of a forgotten consumer makes it present again.
    t.b.heartbeat(&t.q, &t.a, SEC).await.unwrap();
    assert_eq!(t.stats().await.consumers.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_return_names_what_happened_first() {
    // The lease ends before the presence: `lease expired`; the presence
    // before the lease: `consumer gone`; both at once: `lease expired`.
    for (ttl, presence, reason) in [
        (SEC, 2 * SEC, "lease expired"),
        (2 * SEC, SEC, "consumer gone"),
        (SEC, SEC, "lease expired"),
    ] {
        let t = T::new();
        t.push(vec![tries("a", 1)]).await;
        let opts = ReceiveOptions::new(ttl, presence);
        t.receive_with(&t.a, opts).await;
        advance(3 * SEC).await;
        assert_eq!(t.deaths().await, [(1, 1, reason.into())]);
    }
}

#[tokio::test(start_paused = true)]
async fn leave_returns_every_delivery_at_once() {
    let t = T::new();
    t.push(vec![tries("last", 1), item("b"), item("c"), item("d")])
        .await;
    let r = t.receive(&t.a, 3).await;
    let kept = t.recv(&t.c).await;
    assert_eq!(t.leave(&t.a).await, 3);
    // Its deliveries are back (the one on its last attempt dead), c's
    // untouched.
    let s = t.stats().await;
    assert_eq!((s.ready, s.in_flight, s.dead), (2, 1, 1));
    assert_eq!(s.consumers, [*t.c.instance()]);
    assert_eq!(t.deaths().await, [(1, 1, "consumer gone".into())]);
    for d in &r.deliveries {
        all_stale(&t, d).await;
    }
    assert_eq!(t.extend(&kept).await, Settle::Done);
    // Gone already, or never there.
    assert_eq!(t.leave(&t.a).await, 0);
    let elsewhere = t.on("nope");
    assert_eq!(elsewhere.leave(&t.a).await, 0);
}

#[tokio::test(start_paused = true)]
async fn nack_returns_after_its_delay_or_dies_on_the_last_attempt() {
    let t = T::new();
    t.push(vec![tries("a", 2)]).await;
    let d = t.recv(&t.a).await;
    assert_eq!(t.nack(&d, 5 * SEC).await, Nack::Requeued);
    assert_eq!(t.places().await, (0, 1, 0, 0));
    assert_eq!(t.idle(&t.a).await, Some(5 * SEC));
    advance(5 * SEC).await;
    let d = t.recv(&t.a).await;
    assert_eq!((d.id, d.attempt), (1, 2));
    assert_eq!(t.nack(&d, 5 * SEC).await, Nack::DeadLettered);
    assert_eq!(t.deaths().await, [(1, 2, "boom".into())]);
    // Without a delay: ready at once, counted as a redelivery.
    t.push1("b").await;
    let d = t.recv(&t.a).await;
    assert_eq!(t.nack(&d, Duration::ZERO).await, Nack::Requeued);
    assert_eq!(t.places().await, (1, 0, 0, 1));
    assert_eq!(t.recv(&t.c).await.attempt, 2);
    let s = t.stats().await;
    assert_eq!((s.delivered, s.redelivered, s.dead_lettered), (4, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn dead_letter_and_ack_settle_at_once() {
    let t = T::new();
    t.push(vec![item("a"), item("b")]).await;
    let r = t.receive(&t.a, 2).await;
    // With attempts left, and prefetched: dead with the reason given.
    assert_eq!(t.dead_letter(&r.deliveries[1], "bad").await, Settle::Done);
    assert_eq!(t.deaths().await, [(2, 0, "bad".into())]);
    assert_eq!(t.ack(&r.deliveries[0]).await, Settle::Done);
    assert_eq!(t.places().await, (0, 0, 0, 1));
    assert_eq!(t.idle(&t.a).await, None);
    let s = t.stats().await;
    assert_eq!((s.delivered, s.dead_lettered), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn an_idle_receive_names_when_a_holding_consumer_may_be_found_dead() {
    let t = T::new();
    t.push1("x").await;
    // a holds the item under a 10 s lease with a presence of 2 s.
    let short = ReceiveOptions::new(TTL, 2 * SEC);
    let _held = t.receive_with(&t.a, short).await;
    // c, idle, is told to look again when a's presence ends, not at the
    // delivery's deadline.
    assert_eq!(t.idle(&t.c).await, Some(2 * SEC));
    advance(2 * SEC).await;
    assert_eq!(t.recv(&t.c).await.id, 1);
    // A consumer holding nothing does not shorten the wait.
    assert_eq!(t.idle(&t.a).await, Some(TTL));
}
