//! Consumers: one that leaves (or is dropped) gives back every delivery it
//! holds at once; a dead one's deliveries come back as soon as its
//! presence expired, before their own leases end; an idle stealing
//! consumer takes what a busy live one prefetched and has not started, and
//! never a started delivery.

use super::*;

cases! {
    family: "queue", needs: [Need::Queues];

/// `leave()` gives back at once every delivery of the consumer — the one
/// being worked on and the ones prefetched (5 s leases, far from expiry) —
/// and forgets the consumer; another consumer gets them in order, the
/// started one as attempt 2, the prefetched ones as attempt 1; the left
/// delivery is lost at once and its ack is `LeaseLost`. A dropped consumer
/// gives back its deliveries too (lost at once).
pub async fn queue_leave_gives_back_in_flight_and_prefetched_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ids: Vec<u64> = (numbers(&a).push_many(&[1, 2, 3]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut leaving = numbers(&a).consumer().prefetch(3).ttl(ms(5000));
    let d = within(leaving.receive(), "the first").await;
    let s = stats(&a).await;
    assert_eq!((places(&s), consumers(&s)), ((0, 0, 3, 0), vec!["a".into()]));
    assert_eq!(within(leaving.leave(), "leave").await, 3, "three given back");
    assert!(d.lost().is_lost(), "the left consumer's delivery is lost");
    let s = stats(&a).await;
    assert_eq!(places(&s), (3, 0, 0, 0), "ready at once: {s:?}");
    assert!(s.consumers.is_empty(), "forgotten: {s:?}");
    let mut other = numbers(&b).consumer();
    let mut again = Vec::new();
    for i in 0..3 {
        let e = within(other.receive(), &format!("again {i}")).await;
        again.push((e.id(), e.attempt()));
        within(e.ack(), "ack").await;
    }
    assert_eq!(again, [(ids[0], 2), (ids[1], 1), (ids[2], 1)]);
    assert_lease_lost(d.ack().await, "the left consumer's ack");
    numbers(&a).push_many(&[4, 5]).await.unwrap();
    let mut dropped = numbers(&a).consumer().prefetch(2).ttl(ms(5000));
    let d = within(dropped.receive(), "from the consumer to drop").await;
    drop(dropped);
    assert!(!d.is_held(), "the dropped consumer's delivery is lost");
    let s = stats_when(&a, "the dropped consumer's deliveries back", |s| {
        places(s) == (2, 0, 0, 0)
    })
    .await;
    assert_eq!(consumers(&s), ["b"], "the dropped one forgotten");
    assert_lease_lost(d.ack().await, "the dropped consumer's ack");
}

/// A consumer that crashed (it received through the SPI with 10 s leases
/// and a 100 ms presence, then never called again) is dead once its
/// presence expired: a waiting consumer gets its deliveries then — not
/// before, and long before their leases end — the started one as attempt
/// 2, the prefetched one as attempt 1; one on its last attempt goes to the
/// dead letters with `consumer gone`. The dead consumer is forgotten and
/// its tokens settle nothing.
pub async fn queue_dead_consumer_items_back_after_presence(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("b").await;
    let q = numbers(&c);
    let last = q.push_with(&0, PushOptions::new().max_attempts(1)).await;
    let last = last.unwrap().id();
    let ids: Vec<u64> = (q.push_many(&[1, 2]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let backend = ctx.backend().await;
    let (qs, qk, gone) = (spi(&backend), key(Q), crashed());
    let presence = ms(100);
    let opts = ReceiveOptions::new(ms(10_000), presence);
    let one = qs.receive(&qk, &gone, opts).await.unwrap().deliveries;
    assert_eq!(one.iter().map(|d| d.id).collect::<Vec<_>>(), [last]);
    let t0 = Instant::now();
    let two = qs.receive(&qk, &gone, opts.max(2)).await.unwrap().deliveries;
    let view: Vec<(u64, bool)> = two.iter().map(|d| (d.id, d.started)).collect();
    assert_eq!(view, [(ids[0], true), (ids[1], false)]);
    let mut consumer = q.consumer();
    let d1 = within(consumer.receive(), "the started one, back").await;
    let waited = t0.elapsed();
    assert!(waited + ms(2) >= presence, "back {waited:?} after, before death");
    let d2 = within(consumer.receive(), "the prefetched one, back").await;
    assert_eq!((d1.id(), d1.attempt()), (ids[0], 2));
    assert_eq!((d2.id(), d2.attempt()), (ids[1], 1));
    assert!(d1.token() > two[0].token && d2.token() > two[1].token);
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 2, 1), "{s:?}");
    assert_eq!(consumers(&s), ["b"], "the dead consumer forgotten");
    assert_eq!(counts(&s), (5, 1, 0, 1), "{s:?}");
    let dead_items = q.dead_letters(0, 10).await.unwrap();
    let view: Vec<(u64, u32, &str)> = (dead_items.iter())
        .map(|d| (d.id, d.attempts, d.reason.as_str()))
        .collect();
    assert_eq!(view, [(last, 1, "consumer gone")]);
    let stale = qs.ack(&qk, ids[0], two[0].token).await.unwrap();
    assert_eq!(stale, Settle::Stale, "the dead consumer's ack");
    within(d1.ack(), "ack").await;
    within(d2.ack(), "ack").await;
}

/// A consumer cut off from the backend (its client's connection switched
/// off: no heartbeat, no renewal) with a 150 ms presence is found dead
/// once its presence expired: its delivery, leased for 10 s, comes back to
/// a waiting consumer promptly as attempt 2, by when the cut-off consumer
/// knows its delivery lost (it lived inside the presence); reconnected,
/// its ack is `LeaseLost`.
pub async fn queue_partitioned_consumer_items_back_after_presence(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let id = numbers(&b).push(&1).await.unwrap().id();
    let mut cut = numbers(&a)
        .consumer()
        .ttl(ms(10_000))
        .presence_ttl(ms(150));
    let d = within(cut.receive(), "attempt 1").await;
    switch.off();
    let mut other = numbers(&b).consumer();
    let again = within(other.receive(), "back after the presence").await;
    assert_eq!((again.id(), again.attempt()), (id, 2));
    assert!(again.token() > d.token(), "{again:?} after {d:?}");
    // The cut-off consumer knows: its delivery lived inside its presence.
    assert!(!d.is_held(), "two holders of item {id}: {d:?} and {again:?}");
    assert!(d.lost().is_lost(), "the cut-off delivery's lost signal");
    let s = stats(&b).await;
    assert_eq!(consumers(&s), ["b"], "the cut-off consumer is dead: {s:?}");
    switch.on();
    assert_lease_lost(d.ack().await, "the cut-off consumer's ack");
    within(again.ack(), "ack").await;
    assert_eq!(places(&stats(&b).await), (0, 0, 0, 0));
}

/// An idle consumer with `steal(true)` takes one of the items a busy live
/// consumer prefetched (as a new delivery: stolen, attempt 1, a larger
/// token), counted as stolen; the victim's receive skips it and hands out
/// its other prefetched item; every item is handled once.
pub async fn queue_steal_takes_prefetched_and_victim_skips_it(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ids: Vec<u64> = (numbers(&a).push_many(&[1, 2, 3]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut victim = numbers(&a).consumer().prefetch(3).ttl(ms(5000));
    let v1 = within(victim.receive(), "the victim's first").await;
    assert_eq!(v1.id(), ids[0]);
    let mut thief = numbers(&b).consumer().steal(true).ttl(ms(5000));
    let t = within(thief.receive(), "a steal").await;
    assert!(t.was_stolen(), "{t:?}");
    assert!(t.id() == ids[1] || t.id() == ids[2], "a prefetched item: {t:?}");
    assert_eq!(t.attempt(), 1, "a prefetched item used no attempt");
    assert!(t.token() > v1.token(), "{t:?} after {v1:?}");
    let s = stats(&a).await;
    assert_eq!(counts(&s), (4, 0, 1, 0), "one steal: {s:?}");
    let v2 = within(victim.receive(), "the victim's next").await;
    let other = if t.id() == ids[1] { ids[2] } else { ids[1] };
    assert_eq!(v2.id(), other, "the stolen one skipped");
    assert!(!v2.was_stolen(), "{v2:?}");
    let s = stats(&a).await;
    assert_eq!(places(&s), (0, 0, 3, 0), "{s:?}");
    assert_eq!(counts(&s), (4, 0, 1, 0), "{s:?}");
    for d in [v1, t, v2] {
        within(d.ack(), "ack").await;
    }
    assert_eq!(places(&stats(&a).await), (0, 0, 0, 0));
}

/// A started delivery whose lease is valid is never stolen — neither the
/// one a receive started nor a prefetched one started when handed out —
/// while a stealing consumer waits for over two of their TTLs (renewed);
/// nothing is counted as stolen.
pub async fn queue_started_item_never_stolen(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    numbers(&a).push_many(&[1, 2]).await.unwrap();
    let ttl = ms(300);
    let mut busy = numbers(&a).consumer().prefetch(2).ttl(ttl);
    let d1 = within(busy.receive(), "started by the receive").await;
    let d2 = within(busy.receive(), "started when handed out").await;
    let mut thief = numbers(&b)
        .consumer()
        .steal(true)
        .wait_timeout(Some(ttl * 7 / 3));
    assert_timeout(thief.receive().await, "nothing to steal");
    assert!(d1.is_held() && d2.is_held(), "{d1:?} {d2:?}");
    let s = stats(&a).await;
    assert_eq!(counts(&s), (2, 0, 0, 0), "nothing stolen: {s:?}");
    within(d1.ack(), "ack").await;
    within(d2.ack(), "ack").await;
}

/// A receive that fails while it starts a prefetched delivery (the
/// extend's reply lost; a receive cancelled there is the same) keeps the
/// delivery in the consumer: the next receive hands it out, as its first
/// attempt, instead of leaving it started for nobody until its TTL.
pub async fn queue_failed_receive_keeps_its_prefetched_delivery(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let ids: Vec<u64> = (numbers(&a).push_many(&[1, 2]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut c = numbers(&a).consumer().prefetch(2).ttl(ms(5000));
    let d1 = within(c.receive(), "the first").await;
    switch.losing_replies();
    let failed = c.receive().await;
    assert!(failed.is_err(), "the extend's reply was lost: {failed:?}");
    switch.on();
    let d2 = within(c.receive(), "the prefetched one, again").await;
    assert_eq!((d2.id(), d2.attempt()), (ids[1], 1));
    within(d1.ack(), "ack 1").await;
    within(d2.ack(), "ack 2").await;
    assert_eq!(places(&stats(&a).await), (0, 0, 0, 0));
}

/// A consumer whose presence was lost locally while the backend still had
/// it (the heartbeats applied, their replies too late: a slow network, a
/// client-side timeout) renews it before it starts a prefetched delivery:
/// the delivery it hands out is held and renewed. (It was handed out
/// already lost — inside the lost presence — though the backend had
/// started it: never renewed, it expired and used an attempt for nothing.)
pub async fn queue_prefetched_delivery_started_under_a_renewed_presence(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let ids: Vec<u64> = (numbers(&a).push_many(&[1, 2]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut c = numbers(&a)
        .consumer()
        .prefetch(2)
        .ttl(ms(10_000))
        .presence_ttl(ms(3_000));
    let d1 = within(c.receive(), "the first").await;
    switch.late_replies("heartbeat", ms(30_000));
    let lost = timeout(ms(10_000), d1.lost().wait()).await;
    assert!(lost.is_ok(), "the presence lost locally");
    switch.late_replies("heartbeat", Duration::ZERO);
    let d2 = within(c.receive(), "the prefetched one").await;
    assert_eq!((d2.id(), d2.attempt()), (ids[1], 1));
    assert!(d2.is_held(), "handed out lost: {d2:?}");
    let s = stats(&a).await;
    assert_eq!(consumers(&s), ["a"], "the consumer is alive: {s:?}");
    within(d2.ack(), "ack 2").await;
    drop(d1);
}

/// A prefetched delivery whose start (an extend) was applied before the
/// client's close began and answered after: the receive answers `Closed`,
/// never a delivery that is not held, and the item is back at once for
/// another consumer, not after its 30 s lease. It comes back with the
/// attempt its start counted: close's leave, sent as close began, gave
/// back every delivery of the consumer, this one already started (the
/// contract says why it cannot go back uncounted).
pub async fn queue_prefetched_start_after_close_answers_closed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let ids: Vec<u64> = (numbers(&b).push_many(&[1, 2]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let long = ms(30_000);
    let mut c = numbers(&a).consumer().prefetch(2).ttl(long).presence_ttl(long);
    let d1 = within(c.receive(), "the first").await;
    let before = switch.answered("extend");
    switch.late_replies("extend", ms(1000));
    let close = async {
        let applied = || async { (switch.answered("extend") > before).then_some(()) };
        let applied = eventually(PROMPTLY, applied).await;
        applied.expect("the prefetched delivery's start applied");
        a.close().await
    };
    let (got, closed) = tokio::join!(timeout(ms(5000), c.receive()), close);
    let got = got.expect("the receive answered");
    assert!(matches!(got, Err(Error::Closed { .. })), "answered {got:?}");
    closed.expect("close");
    assert!(!d1.is_held(), "{d1:?}");
    let mut other = numbers(&b).consumer().ttl(long);
    for id in &ids {
        let d = within(other.receive(), "back at once").await;
        assert_eq!((d.id(), d.attempt()), (*id, 2), "its start counted");
        within(d.ack(), "ack").await;
    }
    assert_eq!(places(&stats(&b).await), (0, 0, 0, 0));
}
}
