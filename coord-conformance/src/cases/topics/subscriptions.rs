//! Subscriptions: each sees every event; one subscription's subscribers
//! share its events; a subscriber that was down gets what was published
//! meanwhile; start places, seek replays (by offset, by time); a waiting
//! subscriber is woken by a publish; unsubscribe deletes.

use super::*;

cases! {
    family: "topic", needs: [Need::Topics];

/// Two subscriptions each get every event, in order, whatever the other
/// did with it.
pub async fn topic_every_subscription_sees_every_event(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut billing = numbers(&a).subscriber("billing").start(Start::Earliest);
    let mut audit = numbers(&b).subscriber("audit").start(Start::Earliest);
    billing.subscribe().await.unwrap();
    audit.subscribe().await.unwrap();
    numbers(&a).publish_many(&[1, 2, 3, 4]).await.unwrap();
    let want = vec![(1, 1), (2, 2), (3, 3), (4, 4)];
    assert_eq!(drain(&mut billing, 4, "billing").await, want);
    assert_eq!(drain(&mut audit, 4, "audit").await, want);
}

/// Two subscribers of one subscription share its events: each event goes
/// to one of them, none to both.
pub async fn topic_subscribers_of_one_subscription_share_events(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut x = numbers(&a).subscriber("s").start(Start::Earliest);
    let mut y = numbers(&b).subscriber("s");
    x.subscribe().await.unwrap();
    numbers(&a).publish_many(&[1, 2, 3, 4]).await.unwrap();
    let mut got = Vec::new();
    for i in 0..2 {
        let dx = event(&mut x, &format!("x {i}")).await;
        let dy = event(&mut y, &format!("y {i}")).await;
        got.push(*dx.event());
        got.push(*dy.event());
        within(dx.ack(), "x ack").await;
        within(dy.ack(), "y ack").await;
    }
    got.sort();
    assert_eq!(got, vec![1, 2, 3, 4]);
    nothing(x, ms(200), "no event twice").await;
}

/// A subscriber that was down (left) gets, when it comes back, every event
/// published to its subscription meanwhile, in order.
pub async fn topic_subscriber_back_after_downtime_gets_what_it_missed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest);
    numbers(&c).publish(&1).await.unwrap();
    assert_eq!(drain(&mut sub, 1, "before").await, vec![(1, 1)]);
    within(sub.leave(), "down").await;
    numbers(&c).publish_many(&[2, 3, 4]).await.unwrap();
    let mut back = numbers(&c).subscriber("s").start(Start::Latest);
    let got = drain(&mut back, 3, "back").await;
    assert_eq!(got, vec![(2, 2), (3, 3), (4, 4)], "the place is the subscription's");
}

/// `Start::Latest` gets only what is published after the subscription is
/// made; `Start::Earliest` everything kept; `Start::Offset(o)` from `o`.
pub async fn topic_start_places_a_new_subscription(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    numbers(&c).publish_many(&[1, 2, 3]).await.unwrap();
    let mut latest = numbers(&c).subscriber("latest").start(Start::Latest);
    let mut earliest = numbers(&c).subscriber("earliest").start(Start::Earliest);
    let mut from2 = numbers(&c).subscriber("from2").start(Start::Offset(2));
    for s in [&mut latest, &mut earliest, &mut from2] {
        assert!(s.subscribe().await.unwrap(), "made");
    }
    assert!(!numbers(&c).subscriber("latest").subscribe().await.unwrap(), "exists");
    numbers(&c).publish(&4).await.unwrap();
    assert_eq!(drain(&mut latest, 1, "latest").await, vec![(4, 4)]);
    assert_eq!(drain(&mut earliest, 4, "earliest").await.len(), 4);
    let got = drain(&mut from2, 3, "from 2").await;
    assert_eq!(got, vec![(2, 2), (3, 3), (4, 4)]);
}

/// `seek` replays: from an offset (events already acked come again) and
/// from a time (the first event published at or after it).
pub async fn topic_seek_replays_from_offset_and_time(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    numbers(&c).publish_many(&[1, 2]).await.unwrap();
    // Published at least a few milliseconds later (times are kept in ms).
    sleep(ms(20)).await;
    numbers(&c).publish_many(&[3, 4]).await.unwrap();
    let first = drain(&mut sub, 4, "first pass").await;
    assert_eq!(first.len(), 4);
    assert_eq!(within(sub.seek(Start::Offset(2)), "seek 2").await, 2);
    let again = drain(&mut sub, 3, "from offset 2").await;
    assert_eq!(again, vec![(2, 2), (3, 3), (4, 4)]);
    // The time of event 3: seek there replays 3 and 4.
    sub.seek(Start::Offset(3)).await.unwrap();
    let d = event(&mut sub, "event 3").await;
    let at3 = d.published_at();
    within(d.ack(), "ack 3").await;
    drain(&mut sub, 1, "event 4").await;
    assert_eq!(within(sub.seek(Start::Time(at3)), "seek time").await, 3);
    assert_eq!(drain(&mut sub, 2, "from the time").await, vec![(3, 3), (4, 4)]);
}

/// A subscriber reading in batches of three seeks back after handling the
/// first event: the two it had buffered (leased to it, never handed out)
/// are given back, so the replay delivers all three promptly (not the
/// buffered two after their 30 s lease).
pub async fn topic_seek_gives_back_what_a_batch_buffered(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = (numbers(&c).subscriber("s").start(Start::Earliest))
        .batch(3)
        .ttl(ms(30_000));
    sub.subscribe().await.unwrap();
    numbers(&c).publish_many(&[1, 2, 3]).await.unwrap();
    let d = event(&mut sub, "the first").await;
    within(d.ack(), "ack").await;
    assert_eq!(within(sub.seek(Start::Offset(1)), "seek 1").await, 1);
    let mut again: Vec<u64> = Vec::new();
    for i in 0..3 {
        let d = event(&mut sub, &format!("replay {i} after {again:?}")).await;
        again.push(d.offset());
        within(d.ack(), "ack").await;
    }
    again.sort();
    assert_eq!(again, [1, 2, 3]);
}

/// A subscriber waiting with nothing to read is woken by a publish, well
/// before its 10 s retry delay.
pub async fn topic_waiting_subscriber_woken_by_publish(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut sub = numbers(&a).subscriber("s");
    sub.subscribe().await.unwrap();
    let publisher = async {
        sleep(ms(150)).await;
        numbers(&b).publish(&7).await.unwrap();
    };
    let (d, ()) = tokio::join!(event(&mut sub, "woken"), publisher);
    assert_eq!(*d.event(), 7);
    within(d.ack(), "ack").await;
}

/// A subscriber waiting with nothing to read is woken by another handle's
/// seek back of its subscription, well before its 10 s retry delay: the
/// replayed event comes at once (it waited for the delay).
pub async fn topic_waiting_subscriber_woken_by_a_seek(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut sub = numbers(&a).subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    numbers(&a).publish(&7).await.unwrap();
    let d = event(&mut sub, "the first delivery").await;
    within(d.ack(), "ack").await;
    let seeker = async {
        sleep(ms(150)).await;
        let mut other = numbers(&b).subscriber("s");
        within(other.seek(Start::Earliest), "seek").await;
    };
    let (d, ()) = tokio::join!(event(&mut sub, "woken by the seek"), seeker);
    assert_eq!(*d.event(), 7);
    within(d.ack(), "ack").await;
}

/// Extreme options (`wait_timeout` and `retry_delay` of `Duration::MAX`,
/// "wait for ever", notifications only) never panic: a waiting subscriber
/// gets the event published meanwhile.
pub async fn topic_extreme_durations_do_not_panic(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    for (name, opts) in extreme_waits() {
        let mut sub = numbers(&ctx.client_with(name, opts).await).subscriber(name);
        sub.subscribe().await.unwrap();
        let publisher = async {
            sleep(ms(100)).await;
            numbers(&a).publish(&7).await.unwrap();
        };
        let (d, ()) = tokio::join!(event(&mut sub, name), publisher);
        assert_eq!(*d.event(), 7);
        within(d.ack(), "ack").await;
    }
}

/// A retry delay under a millisecond (valid: above zero) never panics a
/// waiting subscriber, also when the backend told it when to look again
/// (here: when another subscriber's delivery ends).
pub async fn topic_retry_delay_under_a_millisecond_does_not_panic(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let quick = default_options().retry_delay(Duration::from_micros(100));
    let quick = ctx.client_with("quick", quick).await;
    let mut first = numbers(&a).subscriber("s").start(Start::Earliest);
    first.subscribe().await.unwrap();
    numbers(&a).publish(&1).await.unwrap();
    let held = event(&mut first, "held by the first").await;
    let other = numbers(&quick).subscriber("s");
    nothing(other, ms(200), "the only event is held").await;
    within(held.ack(), "ack").await;
}

/// A running subscriber (started at `Latest`) whose subscription another
/// handle deleted makes it again at the oldest event kept, not at its
/// start: the event published meanwhile is delivered (after the ones
/// before it, delivered again), not skipped.
pub async fn topic_subscription_found_gone_is_made_again_from_the_oldest(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s");
    sub.subscribe().await.unwrap();
    numbers(&c).publish(&1).await.unwrap();
    let d = event(&mut sub, "the first").await;
    within(d.ack(), "ack").await;
    let other = numbers(&c).subscriber("s");
    assert!(within(other.unsubscribe(), "unsubscribe").await);
    numbers(&c).publish(&2).await.unwrap();
    let mut seen = Vec::new();
    while seen.last() != Some(&2) {
        let d = event(&mut sub, &format!("after {seen:?}")).await;
        seen.push(*d.event());
        within(d.ack(), "ack").await;
    }
    assert_eq!(seen, [1, 2], "from the oldest kept");
}

/// The SPI's read passes over offsets under delivery without counting
/// them against `max`: after a seek back over two offsets in flight with
/// another subscriber, a read of two delivers the third. And a start at
/// the epoch places a subscription before the oldest event.
pub async fn topic_read_passes_over_offsets_in_flight(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub, epoch) = (key(T), key("s"), key("epoch"));
    let at_epoch = t.subscribe(&topic, &epoch, Start::Time(std::time::UNIX_EPOCH));
    assert!(at_epoch.await.unwrap(), "made at the epoch (no event yet)");
    t.subscribe(&topic, &sub, Start::Earliest).await.unwrap();
    let three = (0..3).map(|i| NewEvent::new(Tag::new("k", 1), vec![b'0' + i]));
    t.publish(&topic, three.collect(), Retention::count(100)).await.unwrap();
    let from_epoch = t.seek(&topic, &epoch, Start::Time(std::time::UNIX_EPOCH));
    assert_eq!(from_epoch.await.unwrap(), Some(1), "the epoch: before the oldest");
    let two = ReadOptions::new(ms(30_000), ms(10_000), 2);
    let a = t.read(&topic, &sub, &holder("a"), two).await.unwrap().unwrap();
    assert_eq!(a.events.len(), 2, "1 and 2 in flight for a");
    t.seek(&topic, &sub, Start::Earliest).await.unwrap();
    let c = t.read(&topic, &sub, &holder("c"), two).await.unwrap().unwrap();
    let got: Vec<u64> = c.events.iter().map(|d| d.event.offset).collect();
    assert_eq!(got, [3], "next_in {:?}", c.next_in);
}

/// A read delivers an offset once: one it takes from the retry set is
/// under delivery when its cursor passes over it (after a seek back over
/// nacked events, as a subscriber's seek gives back what it buffered), as
/// an offset in flight is.
pub async fn topic_read_delivers_a_retried_offset_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub, a) = (key(T), key("s"), holder("a"));
    t.subscribe(&topic, &sub, Start::Earliest).await.unwrap();
    let ev = || NewEvent::new(Tag::new("k", 1), b"1".to_vec());
    t.publish(&topic, vec![ev(), ev()], Retention::count(100)).await.unwrap();
    let two = ReadOptions::new(ms(10_000), ms(10_000), 2);
    for d in t.read(&topic, &sub, &a, two).await.unwrap().unwrap().events {
        let nacked = t.nack(&topic, &sub, d.event.offset, d.token, Duration::ZERO).await;
        assert_eq!(nacked.unwrap(), Settle::Done);
    }
    assert_eq!(t.seek(&topic, &sub, Start::Earliest).await.unwrap(), Some(1));
    let three = ReadOptions::new(ms(10_000), ms(10_000), 3);
    let r = t.read(&topic, &sub, &a, three).await.unwrap().unwrap();
    let got: Vec<(u64, u32)> = r.events.iter().map(|d| (d.event.offset, d.attempt)).collect();
    assert_eq!(got, [(1, 2), (2, 2)], "the retries, each once");
}

/// A read with nothing to deliver says when to look again only if
/// something is pending (the SPI's rule 4): a retry due, a delivery's
/// deadline, or the end of the presence of a consumer holding deliveries
/// (they go back then); not the reader's own presence, which it just
/// renewed, nor the presence of a consumer holding nothing.
pub async fn topic_idle_read_hints_only_what_is_pending(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub) = (key(T), key("s"));
    t.subscribe(&topic, &sub, Start::Earliest).await.unwrap();
    let short = ReadOptions::new(ms(20_000), ms(20_000), 1);
    let idle = t.read(&topic, &sub, &holder("a"), short).await.unwrap().unwrap();
    assert_eq!(idle.next_in, None, "nothing pending: a's own presence is not");
    let ev = vec![NewEvent::new(Tag::new("k", 1), b"1".to_vec())];
    t.publish(&topic, ev, Retention::count(100)).await.unwrap();
    let long = ReadOptions::new(ms(60_000), ms(40_000), 1);
    let b = t.read(&topic, &sub, &holder("b"), long).await.unwrap().unwrap();
    assert_eq!(b.events.len(), 1, "b holds the event");
    let idle = t.read(&topic, &sub, &holder("a"), short).await.unwrap().unwrap();
    let hint = idle.next_in.expect("b's delivery is pending");
    assert!(
        hint > ms(30_000) && hint <= ms(40_000),
        "b's presence (40 s) ends before its delivery (60 s), a's own (20 s) counts not: {hint:?}"
    );
}

/// A start or seek at a time places the cursor before the first event
/// published at or after it, by the times events carry (milliseconds): a
/// time a fraction of a millisecond after an event's passes over it, its
/// time exactly does not.
pub async fn topic_time_just_after_an_event_passes_over_it(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub, late) = (key(T), key("s"), key("late"));
    t.subscribe(&topic, &sub, Start::Earliest).await.unwrap();
    let ev = || vec![NewEvent::new(Tag::new("k", 1), b"1".to_vec())];
    t.publish(&topic, ev(), Retention::count(100)).await.unwrap();
    sleep(ms(20)).await; // a later millisecond
    t.publish(&topic, ev(), Retention::count(100)).await.unwrap();
    let one = ReadOptions::new(ms(10_000), ms(10_000), 1);
    let r = t.read(&topic, &sub, &holder("a"), one).await.unwrap().unwrap();
    let at1 = r.events[0].event.at;
    let just_after = at1 + Duration::from_micros(500);
    assert_eq!(t.seek(&topic, &sub, Start::Time(at1)).await.unwrap(), Some(1), "at its time");
    let seek = t.seek(&topic, &sub, Start::Time(just_after)).await.unwrap();
    assert_eq!(seek, Some(2), "just after event 1's time");
    t.subscribe(&topic, &late, Start::Time(just_after)).await.unwrap();
    let r = t.read(&topic, &late, &holder("b"), one).await.unwrap().unwrap();
    let got: Vec<u64> = r.events.iter().map(|d| d.event.offset).collect();
    assert_eq!((got, r.missed), (vec![2], vec![]), "made just after event 1's time");
}

/// A start at a time after every event kept, however far (past 2^63 ms
/// since the epoch too), places the cursor after the newest event, as
/// `Latest`: a subscription made there and one seeked there get what is
/// published from then on.
pub async fn topic_start_at_a_far_future_time_is_after_the_newest(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    numbers(&c).publish_many(&[1, 2]).await.unwrap();
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 62);
    let mut made = numbers(&c).subscriber("made").start(Start::Time(far));
    assert!(within(made.subscribe(), "subscribe").await, "made");
    let mut sought = numbers(&c).subscriber("sought").start(Start::Earliest);
    assert_eq!(within(sought.seek(Start::Time(far)), "seek").await, 3);
    numbers(&c).publish(&3).await.unwrap();
    assert_eq!(drain(&mut made, 1, "made").await, vec![(3, 3)]);
    assert_eq!(drain(&mut sought, 1, "sought").await, vec![(3, 3)]);
}

/// `unsubscribe` deletes the subscription: its stats say it does not
/// exist, and the SPI's read and seek answer `None`.
pub async fn topic_unsubscribe_deletes_the_subscription(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s");
    sub.subscribe().await.unwrap();
    assert!(sub.stats().await.unwrap().exists);
    assert!(within(sub.unsubscribe(), "unsubscribe").await);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    assert!(!t.stats(&key(T), &key("s")).await.unwrap().exists);
    let opts = ReadOptions::new(ms(1000), ms(1000), 1);
    assert_eq!(t.read(&key(T), &key("s"), &intruder(), opts).await.unwrap(), None);
    assert_eq!(t.seek(&key(T), &key("s"), Start::Earliest).await.unwrap(), None);
    assert!(!t.unsubscribe(&key(T), &key("s")).await.unwrap());
}
}
