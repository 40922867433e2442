//! Retention: a stream keeps at most its count (and age) of events; what a
//! subscription should have read and the stream trimmed first is reported
//! as missed (offsets), never skipped silently; undecodable and refused
//! events are dead-lettered and reported, and the subscription goes on.

use super::*;

cases! {
    family: "topic", needs: [Need::Topics];

/// With a retention of 3 events, a subscription at offset 0 that reads
/// after 5 were published is told it missed 1..=2, then gets 3, 4, 5.
pub async fn topic_trimmed_events_reported_missed_never_skipped(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let topic = numbers(&c).retention(Retention::count(3));
    let mut sub = topic.subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    topic.publish_many(&[1, 2, 3, 4, 5]).await.unwrap();
    match within(sub.next(), "the gap").await {
        Next::Missed { first, last } => assert_eq!((first, last), (1, 2)),
        other => panic!("expected Missed 1..=2, got {other:?}"),
    }
    assert_eq!(drain(&mut sub, 3, "kept").await, vec![(3, 3), (4, 4), (5, 5)]);
    let stats = sub.stats().await.unwrap();
    assert_eq!((stats.first_offset, stats.last_offset), (3, 5), "{stats:?}");
}

/// A delivery that expired and whose event was trimmed before it could be
/// delivered again is reported missed, not lost silently.
pub async fn topic_trimmed_redelivery_reported_missed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let topic = numbers(&c).retention(Retention::count(1));
    let mut sub = topic.subscriber("s").start(Start::Earliest).ttl(ms(60)).auto_extend(false);
    sub.subscribe().await.unwrap();
    topic.publish(&1).await.unwrap();
    let d = event(&mut sub, "event 1").await;
    topic.publish(&2).await.unwrap(); // trims 1 while it is delivered
    sleep(ms(120)).await; // the delivery expires unacked
    assert_lease_lost(d.ack().await, "the expired delivery's ack");
    match within(sub.next(), "the lost redelivery").await {
        Next::Missed { first, last } => assert_eq!((first, last), (1, 1)),
        other => panic!("expected Missed 1..=1, got {other:?}"),
    }
    assert_eq!(drain(&mut sub, 1, "event 2").await, vec![(2, 2)]);
}

/// A due retry whose event was trimmed is reported missed without taking
/// a place of the read's batch: the retries still due come first, before
/// any new event.
pub async fn topic_trimmed_retry_leaves_its_place_to_the_next_retry(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub, a) = (key(T), key("s"), holder("a"));
    t.subscribe(&topic, &sub, Start::Earliest).await.unwrap();
    let ev = || NewEvent::new(Tag::new("k", 1), b"1".to_vec());
    t.publish(&topic, vec![ev(), ev(), ev()], Retention::count(100)).await.unwrap();
    let two = ReadOptions::new(ms(10_000), ms(10_000), 2);
    let r = t.read(&topic, &sub, &a, two).await.unwrap().unwrap();
    assert_eq!(r.events.len(), 2);
    for d in &r.events {
        let nacked = t.nack(&topic, &sub, d.event.offset, d.token, Duration::ZERO).await;
        assert_eq!(nacked.unwrap(), Settle::Done);
    }
    // Trims 1 (due again), keeps 2 (due again), 3 (never read) and 4.
    t.publish(&topic, vec![ev()], Retention::count(3)).await.unwrap();
    let one = ReadOptions::new(ms(10_000), ms(10_000), 1);
    let r = t.read(&topic, &sub, &a, one).await.unwrap().unwrap();
    let got: Vec<u64> = r.events.iter().map(|d| d.event.offset).collect();
    let missed: Vec<(u64, u64)> = r.missed.iter().map(|m| (m.first, m.last)).collect();
    assert_eq!((missed, got), (vec![(1, 1)], vec![2]), "the due retry 2 before the new 3");
}

/// A read reaches the events after its subscription's cursor only with
/// room left once the due retries are in its batch, and with them the
/// offsets trimmed there: a read that the retries filled reports none of
/// them (and leaves the cursor); the next read with room reports them,
/// once.
pub async fn topic_read_full_of_retries_reports_the_trimmed_run_later(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub, a) = (key(T), key("s"), holder("a"));
    let ev = || NewEvent::new(Tag::new("k", 1), b"1".to_vec());
    // Keeps 2 alone (1 trimmed at once), then 2 and 3.
    t.publish(&topic, vec![ev(), ev()], Retention::count(1)).await.unwrap();
    t.publish(&topic, vec![ev()], Retention::count(100)).await.unwrap();
    t.subscribe(&topic, &sub, Start::Offset(1)).await.unwrap();
    let two = ReadOptions::new(ms(10_000), ms(10_000), 2);
    for d in t.read(&topic, &sub, &a, two).await.unwrap().unwrap().events {
        let nacked = t.nack(&topic, &sub, d.event.offset, d.token, Duration::ZERO).await;
        assert_eq!(nacked.unwrap(), Settle::Done);
    }
    // Back before 1 (gone): 2 and 3 are due again.
    assert_eq!(t.seek(&topic, &sub, Start::Offset(1)).await.unwrap(), Some(1));
    let offsets = |r: &coord_api::spi::Read| -> (Vec<(u64, u64)>, Vec<u64>) {
        let missed = r.missed.iter().map(|m| (m.first, m.last)).collect();
        (missed, r.events.iter().map(|d| d.event.offset).collect())
    };
    let one = ReadOptions::new(ms(10_000), ms(10_000), 1);
    let r = t.read(&topic, &sub, &a, one).await.unwrap().unwrap();
    assert_eq!(offsets(&r), (vec![], vec![2]), "the retry of 2 fills the batch");
    let r = t.read(&topic, &sub, &a, two).await.unwrap().unwrap();
    let want = (vec![(1, 1)], vec![3]);
    assert_eq!(offsets(&r), want, "the retry of 3, then room: 1 missed");
}

/// Missed offsets come as ranges in offset order, adjacent ones merged,
/// whether a retry or the read after the cursor found them trimmed: a
/// nacked event trimmed with the two after it is one notice of the three.
pub async fn topic_missed_retry_and_run_after_it_are_one_range(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let (topic, sub, a) = (key(T), key("s"), holder("a"));
    t.subscribe(&topic, &sub, Start::Earliest).await.unwrap();
    let ev = || NewEvent::new(Tag::new("k", 1), b"1".to_vec());
    t.publish(&topic, vec![ev()], Retention::count(100)).await.unwrap();
    let one = ReadOptions::new(ms(10_000), ms(10_000), 1);
    let d = t.read(&topic, &sub, &a, one).await.unwrap().unwrap().events.remove(0);
    let nacked = t.nack(&topic, &sub, d.event.offset, d.token, Duration::ZERO).await;
    assert_eq!(nacked.unwrap(), Settle::Done);
    // Keeps 4 alone: 1 (due again), 2 and 3 (never read) are trimmed.
    t.publish(&topic, vec![ev(), ev(), ev()], Retention::count(1)).await.unwrap();
    let r = t.read(&topic, &sub, &a, one).await.unwrap().unwrap();
    let got: Vec<u64> = r.events.iter().map(|d| d.event.offset).collect();
    let missed: Vec<(u64, u64)> = r.missed.iter().map(|m| (m.first, m.last)).collect();
    assert_eq!((missed, got), (vec![(1, 3)], vec![4]));
}

/// A read that found offsets missed and an event hands out the notice
/// first; the event after it is held when `next` hands it out, however long
/// the caller took in between (longer than the delivery's lease here): it
/// is started then, not counted from the read.
pub async fn topic_event_behind_a_missed_notice_is_held_when_handed_out(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let topic = numbers(&c).retention(Retention::count(1));
    let mut sub = topic.subscriber("s").start(Start::Earliest).ttl(ms(200));
    sub.subscribe().await.unwrap();
    topic.publish_many(&[1, 2]).await.unwrap(); // keeps 2 alone
    match within(sub.next(), "the notice").await {
        Next::Missed { first, last } => assert_eq!((first, last), (1, 1)),
        other => panic!("expected Missed 1..=1, got {other:?}"),
    }
    sleep(ms(400)).await;
    let d = event(&mut sub, "the event after the notice").await;
    assert!(d.is_held(), "handed out held (attempt {})", d.attempt());
    assert_eq!((d.offset(), *d.event()), (2, 2));
    within(d.ack(), "ack").await;
}

/// An event that does not decode as the subscriber's type is refused:
/// dead-lettered with the decode error, reported, and the next event
/// comes.
pub async fn topic_undecodable_event_dead_lettered_subscription_goes_on(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let texts = c.topic::<String>(T).kind("n", 1);
    let nums = c.topic::<u64>(T).kind("n", 1);
    let mut sub = nums.subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    texts.publish(&"not a number".to_owned()).await.unwrap();
    nums.publish(&5).await.unwrap();
    match within(sub.next(), "the bad event").await {
        Next::Refused { offset, reason, .. } => {
            assert_eq!(offset, 1);
            assert!(reason.contains("decode"), "{reason}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(drain(&mut sub, 1, "the next").await, vec![(2, 5)]);
    let dead = sub.dead_events(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].offset, 1);
    let kept = dead[0].event.as_ref().expect("the event is kept");
    assert_eq!(kept.payload, b"\"not a number\"".to_vec());
    assert!(dead[0].reason.contains("decode"), "{:?}", dead[0]);
}

/// A subscriber that reads versions 1..=1 refuses a version 2 event (and
/// another kind) with the reason, dead-letters it, and reads on; a
/// subscriber that reads 1..=2 takes it.
pub async fn topic_unknown_version_or_kind_refused_with_reason(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let v1 = numbers(&c).kind("order", 1);
    let v2 = numbers(&c).kind("order", 2);
    let other = numbers(&c).kind("refund", 1);
    let mut old = v1.subscriber("old").start(Start::Earliest);
    let mut new = v2.subscriber("new").start(Start::Earliest);
    old.subscribe().await.unwrap();
    new.subscribe().await.unwrap();
    v2.publish(&2).await.unwrap();
    other.publish(&3).await.unwrap();
    v1.publish(&1).await.unwrap();
    for (offset, word) in [(1, "version 2"), (2, "kind")] {
        match within(old.next(), word).await {
            Next::Refused { offset: o, reason, .. } => {
                assert_eq!(o, offset);
                assert!(reason.contains(word), "{reason}");
            }
            other => panic!("{word}: expected Refused, got {other:?}"),
        }
    }
    assert_eq!(drain(&mut old, 1, "old reads v1").await, vec![(3, 1)]);
    assert_eq!(old.dead_events(0, 10).await.unwrap().len(), 2);
    assert_eq!(drain(&mut new, 1, "new reads v2").await, vec![(1, 2)]);
}
}
