//! Deliveries are leases: one not acked before its deadline is delivered
//! again (attempt 2, a larger token), also when its subscriber's presence
//! expires first; a stale ack changes nothing; a nack brings the event
//! back after the back-off; a dropped delivery is given back at once.

use super::*;

/// The next event of `sub` and when it came.
async fn got(sub: &mut Subscriber<u64>, what: &str) -> (EventDelivery<u64>, Instant) {
    let e = event(sub, what).await;
    (e, Instant::now())
}

cases! {
    family: "topic", needs: [Need::Topics];

/// A delivery left to expire (TTL 60 ms, no renewal) is delivered again to
/// another subscriber with attempt 2 and a larger token; the zombie's ack
/// is `LeaseLost` and its token's SPI ack `Stale`, changing nothing.
pub async fn topic_expired_delivery_redelivered_stale_ack_changes_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut zombie = numbers(&a).subscriber("s").start(Start::Earliest).ttl(ms(60)).auto_extend(false);
    zombie.subscribe().await.unwrap();
    numbers(&a).publish(&1).await.unwrap();
    let old = event(&mut zombie, "attempt 1").await;
    let mut current = numbers(&b).subscriber("s");
    let new = event(&mut current, "attempt 2").await;
    assert_eq!((new.offset(), new.attempt()), (1, 2));
    assert!(new.token() > old.token(), "{new:?} after {old:?}");
    let backend = ctx.backend().await;
    let stale = spi(&backend).ack(&key(T), &key("s"), 1, old.token()).await.unwrap();
    assert_eq!(stale, Settle::Stale, "the zombie's token");
    assert_lease_lost(old.ack().await, "the zombie's ack");
    assert_eq!(current.stats().await.unwrap().in_flight, 1, "the current delivery stays");
    within(new.ack(), "the current ack").await;
    assert_eq!(current.stats().await.unwrap().in_flight, 0);
}

/// A subscriber that crashed (read through the SPI, then nothing) with a
/// long delivery lease but a short presence: its delivery goes to another
/// subscriber once the presence expired, before the lease's deadline.
pub async fn topic_crashed_subscriber_deliveries_redelivered_at_presence_expiry(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    numbers(&c).publish(&1).await.unwrap();
    let backend = ctx.backend().await;
    let crashed = HolderId::new(InstanceId::new("crashed").unwrap());
    let opts = ReadOptions::new(Duration::from_secs(60), ms(100), 1);
    let read = spi(&backend).read(&key(T), &key("s"), &crashed, opts).await.unwrap().unwrap();
    assert_eq!(read.events.len(), 1);
    let d = event(&mut sub, "after the crashed presence expired").await;
    assert_eq!((d.offset(), d.attempt()), (1, 2));
    within(d.ack(), "ack").await;
}

/// A subscriber cut off from the backend with a 150 ms presence: its
/// delivery (leased for 10 s) goes to another subscriber of the
/// subscription once the presence expired, by when the cut-off subscriber
/// knows it lost (the delivery lived inside its presence); reconnected,
/// its ack is `LeaseLost`.
pub async fn topic_partitioned_subscriber_delivery_lost_with_its_presence(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let mut cut = (numbers(&a).subscriber("s").start(Start::Earliest))
        .ttl(ms(10_000))
        .presence_ttl(ms(150));
    cut.subscribe().await.unwrap();
    numbers(&b).publish(&1).await.unwrap();
    let d = event(&mut cut, "attempt 1").await;
    switch.off();
    let mut other = numbers(&b).subscriber("s");
    let again = event(&mut other, "back after the presence").await;
    assert_eq!((again.offset(), again.attempt()), (1, 2));
    assert!(!d.is_held(), "two holders of offset 1: {d:?} and {again:?}");
    assert!(d.lost().is_lost(), "the cut-off delivery's lost signal");
    switch.on();
    assert_lease_lost(d.ack().await, "the cut-off subscriber's ack");
    within(again.ack(), "ack").await;
}

/// Retries due at the same instant come back lowest offset first (SPI
/// rule 4): offsets 9 and 10 expire together, and a read of one gives 9.
pub async fn topic_retries_due_together_lowest_offset_first(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub, a) = (key(T), key("s"), holder("a"));
    t.subscribe(&topic, &sub, Start::Earliest).await.unwrap();
    let ten = (0..10).map(|_| NewEvent::new(Tag::new("k", 1), b"1".to_vec()));
    t.publish(&topic, ten.collect(), Retention::count(100)).await.unwrap();
    let short = ReadOptions::new(ms(100), ms(10_000), 10);
    let r = t.read(&topic, &sub, &a, short).await.unwrap().unwrap();
    assert_eq!(r.events.len(), 10);
    for d in &r.events[..8] {
        t.ack(&topic, &sub, d.event.offset, d.token).await.unwrap();
    }
    sleep(ms(200)).await; // 9 and 10 expire, due together at the sweep
    let one = ReadOptions::new(ms(10_000), ms(10_000), 1);
    let r = t.read(&topic, &sub, &a, one).await.unwrap().unwrap();
    let got: Vec<u64> = r.events.iter().map(|d| d.event.offset).collect();
    assert_eq!(got, [9]);
}

/// A nacked event comes back (attempt 2) after the subscriber's back-off;
/// an event whose delivery was dropped unsettled comes back at once.
pub async fn topic_nacked_or_dropped_delivery_comes_back(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest).backoff(ms(50), ms(50));
    sub.subscribe().await.unwrap();
    numbers(&c).publish(&1).await.unwrap();
    let d = event(&mut sub, "first").await;
    within(d.nack(), "nack").await;
    let d = event(&mut sub, "after the nack").await;
    assert_eq!((d.offset(), d.attempt()), (1, 2));
    drop(d);
    let d = event(&mut sub, "after the drop").await;
    assert_eq!((d.offset(), d.attempt()), (1, 3));
    within(d.ack(), "ack").await;
    nothing(sub, ms(200), "acked: done").await;
}

/// An unknown token, offset, subscription or topic is refused (`Stale`)
/// by ack, nack, extend and dead-letter, and changes nothing.
pub async fn topic_unknown_token_offset_or_subscription_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    numbers(&c).publish(&1).await.unwrap();
    let d = event(&mut sub, "the event").await;
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let never = FencingToken(d.token().get() + 1_000_000);
    for (topic, s, offset, token, what) in [
        (key(T), key("s"), 1, never, "a token never issued"),
        (key(T), key("s"), 9, d.token(), "no such offset"),
        (key(T), key("other"), 1, d.token(), "no such subscription"),
        (key("nope"), key("s"), 1, d.token(), "no such topic"),
    ] {
        assert_eq!(t.ack(&topic, &s, offset, token).await.unwrap(), Settle::Stale, "ack: {what}");
        let nack = t.nack(&topic, &s, offset, token, ms(0)).await.unwrap();
        assert_eq!(nack, Settle::Stale, "nack: {what}");
        let ext = t.extend(&topic, &s, offset, token, ms(1000)).await.unwrap();
        assert_eq!(ext, Settle::Stale, "extend: {what}");
        let dead = t.dead_letter(&topic, &s, offset, token, "x").await.unwrap();
        assert_eq!(dead, Settle::Stale, "dead_letter: {what}");
    }
    assert_eq!(sub.stats().await.unwrap().in_flight, 1);
    within(d.ack(), "the real ack").await;
}

/// A `next` that fails while it starts a buffered delivery (a batch's
/// second event: the extend's reply lost; a `next` cancelled there is the
/// same) keeps the delivery in the subscriber: the next `next` hands it
/// out, as its first attempt, instead of leaving it leased to nobody until
/// its 30 s lease ends (then attempt 2).
pub async fn topic_failed_next_keeps_its_buffered_delivery(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let mut sub = (numbers(&a).subscriber("s").start(Start::Earliest))
        .batch(2)
        .ttl(ms(30_000));
    sub.subscribe().await.unwrap();
    numbers(&a).publish_many(&[1, 2]).await.unwrap();
    let d1 = event(&mut sub, "the first").await;
    switch.losing_replies();
    let failed = sub.next().await;
    assert!(failed.is_err(), "the extend's reply was lost: {failed:?}");
    switch.on();
    let d2 = event(&mut sub, "the buffered one, again").await;
    assert_eq!((d2.offset(), d2.attempt()), (2, 1));
    within(d1.ack(), "ack 1").await;
    within(d2.ack(), "ack 2").await;
}

/// A subscriber whose presence was lost locally while the backend still
/// had it (the heartbeats applied, their replies too late) renews it
/// before it starts a buffered delivery: the delivery it hands out is held
/// and renewed, not lost at birth inside the lost presence (never renewed,
/// it expired and came again as another attempt).
pub async fn topic_buffered_delivery_started_under_a_renewed_presence(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let mut sub = (numbers(&a).subscriber("s").start(Start::Earliest))
        .batch(2)
        .ttl(ms(10_000))
        .presence_ttl(ms(3_000));
    sub.subscribe().await.unwrap();
    numbers(&a).publish_many(&[1, 2]).await.unwrap();
    let d1 = event(&mut sub, "the first").await;
    switch.late_replies("heartbeat", ms(30_000));
    let lost = timeout(ms(10_000), d1.lost().wait()).await;
    assert!(lost.is_ok(), "the presence lost locally");
    switch.late_replies("heartbeat", Duration::ZERO);
    let d2 = event(&mut sub, "the buffered one").await;
    assert_eq!((d2.offset(), d2.attempt()), (2, 1));
    assert!(d2.is_held(), "handed out lost: {d2:?}");
    within(d2.ack(), "ack 2").await;
    drop(d1);
}

/// A subscriber waiting for an event gets promptly what another subscriber
/// of its subscription nacked (once due, after the other's back-off) or
/// left behind (at once): a nack and a leave wake the topic's watchers,
/// and the waiting subscriber's look says when the nacked event is due.
/// (They woke nobody: the waiting subscriber slept until its retry delay,
/// 10 s here.)
pub async fn topic_waiting_subscriber_gets_what_another_nacked_or_left(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let mut waiting = numbers(&a).subscriber("s").start(Start::Earliest);
    waiting.subscribe().await.unwrap();
    let back_off = ms(300);
    // Once `waiting` looked twice since `reads` (the second time watching):
    // it waits.
    let waits = |reads: usize, what: &'static str| {
        let switch = switch.clone();
        async move {
            let looked = || async { (switch.answered("read") >= reads + 2).then_some(()) };
            assert!(eventually(PROMPTLY, looked).await.is_some(), "{what}: it waits");
        }
    };

    // Its deliveries' deadlines far off: the waiting subscriber's look
    // says nothing is due before them.
    let mut other = (numbers(&b).subscriber("s"))
        .backoff(back_off, back_off)
        .ttl(ms(30_000));
    numbers(&b).publish(&1).await.unwrap();
    let d = event(&mut other, "the first, to nack").await;
    let reads = switch.answered("read");
    let nack = async {
        waits(reads, "nack").await;
        let t = Instant::now();
        within(d.nack(), "nack").await;
        t
    };
    let ((e, got_at), nacked_at) = tokio::join!(got(&mut waiting, "nacked"), nack);
    assert_eq!((*e.event(), e.attempt()), (1, 2));
    let after = got_at.saturating_duration_since(nacked_at);
    // Due after the back-off's jitter: half of it at the least.
    let due = back_off / 2;
    assert!(after + ms(5) >= due, "nacked: delivered {after:?} after, before due");
    within(e.ack(), "ack 1").await;

    numbers(&b).publish(&2).await.unwrap();
    let d = event(&mut other, "the second, to leave").await;
    let reads = switch.answered("read");
    let leave = async {
        waits(reads, "leave").await;
        let left = within(other.leave(), "leave").await;
        assert_eq!(left, 1, "one delivery left behind");
    };
    let ((e, _), ()) = tokio::join!(got(&mut waiting, "left behind"), leave);
    assert_eq!((*e.event(), e.attempt()), (2, 2));
    within(e.ack(), "ack 2").await;
    drop(d);
}

/// A buffered delivery whose start (an extend) was applied before the
/// client's close began and answered after: the `next` answers `Closed`,
/// never a delivery that is not held, and the event is due again at once
/// for another subscriber, not after its 30 s lease. It comes back as
/// attempt 2: close's leave, sent as close began, gave back every delivery
/// of the subscriber, this one already started (the contract says why it
/// cannot go back uncounted).
pub async fn topic_buffered_start_after_close_answers_closed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let long = ms(30_000);
    let mut sub = (numbers(&a).subscriber("s").start(Start::Earliest))
        .batch(2)
        .ttl(long)
        .presence_ttl(long);
    sub.subscribe().await.unwrap();
    numbers(&b).publish_many(&[1, 2]).await.unwrap();
    let d1 = event(&mut sub, "the first").await;
    let before = switch.answered("extend");
    switch.late_replies("extend", ms(1000));
    let close = async {
        let applied = || async { (switch.answered("extend") > before).then_some(()) };
        let applied = eventually(PROMPTLY, applied).await;
        applied.expect("the buffered delivery's start applied");
        a.close().await
    };
    let (got, closed) = tokio::join!(timeout(ms(5000), sub.next()), close);
    let got = got.expect("the next answered");
    assert!(matches!(got, Err(Error::Closed { .. })), "answered {got:?}");
    closed.expect("close");
    assert!(!d1.is_held(), "{d1:?}");
    let mut other = numbers(&b).subscriber("s").ttl(long);
    for o in 1..=2 {
        let d = event(&mut other, "back at once").await;
        assert_eq!((d.offset(), d.attempt()), (o, 2), "its start counted");
        within(d.ack(), "ack").await;
    }
}
}
