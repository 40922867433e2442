//! An ack and the next read in one step (`Subscriber::ack_and_next`, the
//! SPI's `ack_and_read`): the ack's rule and the read's rule, as the two
//! calls one after the other would be: a stale token changes nothing,
//! bad read options are refused before the ack, and the read reports
//! missed offsets and refused events like a plain read.

use super::*;

cases! {
    family: "topic", needs: [Need::Topics];

/// `ack_and_next` acks the delivery and, in the same step, reads the next
/// event (attempt 1, a larger token), or answers `None` when nothing is
/// there; through the SPI, read options that fail their check are refused
/// before the ack, which then still acks.
pub async fn topic_ack_and_next_acks_then_reads_the_next(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    numbers(&c).publish_many(&[1, 2, 3]).await.unwrap();
    let mut d = event(&mut sub, "the first").await;
    let mut seen = vec![(d.offset(), *d.event())];
    let mut token = d.token();
    while let Some(next) = within(sub.ack_and_next(d), "ack_and_next").await {
        let Next::Event(next) = next else {
            panic!("expected an event, got {next:?}");
        };
        assert!(next.token() > token && next.attempt() == 1, "{next:?}");
        seen.push((next.offset(), *next.event()));
        token = next.token();
        d = next;
    }
    assert_eq!(seen, [(1, 1), (2, 2), (3, 3)], "each ack read the next, in order");
    let stats = sub.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.retrying, stats.cursor), (0, 0, 3), "{stats:?}");

    numbers(&c).publish_many(&[4, 5]).await.unwrap();
    let backend = ctx.backend().await;
    let (t, s, who) = (key(T), key("s"), HolderId::new(InstanceId::new("spi").unwrap()));
    let opts = ReadOptions::new(Duration::from_secs(10), Duration::from_secs(10), 1);
    let read = spi(&backend).read(&t, &s, &who, opts).await.unwrap().unwrap();
    let d4 = &read.events[0];
    let bad = ReadOptions::new(Duration::from_secs(10), Duration::from_secs(10), 0);
    let refused = spi(&backend).ack_and_read(&t, &s, 4, d4.token, &who, bad).await;
    invalid(refused, "a read of 0 events");
    assert_eq!(sub.stats().await.unwrap().in_flight, 1, "not acked by the refused step");
    let (acked, read) = spi(&backend).ack_and_read(&t, &s, 4, d4.token, &who, opts).await.unwrap();
    assert_eq!(acked, Settle::Done);
    let read = read.expect("the subscription exists");
    assert_eq!(read.events.len(), 1, "{read:?}");
    let d5 = &read.events[0];
    assert!(d5.event.offset == 5 && d5.token > d4.token && d5.attempt == 1, "{d5:?}");
    let stats = sub.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.cursor), (1, 5), "4 acked, 5 in flight: {stats:?}");
}

/// A stale token (acked already) is refused by the step's ack, which
/// changes nothing, while its read still reads; through the client, a
/// stale `ack_and_next` is `LeaseLost`, and the event its step read is
/// not lost: the subscriber's `next` hands it out.
pub async fn topic_stale_ack_and_next_changes_nothing_keeps_what_it_read(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    numbers(&c).publish_many(&[1, 2, 3]).await.unwrap();
    let backend = ctx.backend().await;
    let (t, s, who) = (key(T), key("s"), HolderId::new(InstanceId::new("spi").unwrap()));
    let opts = ReadOptions::new(Duration::from_secs(10), Duration::from_secs(10), 1);
    let read = spi(&backend).read(&t, &s, &who, opts).await.unwrap().unwrap();
    let d1 = read.events[0].clone();
    assert_eq!(spi(&backend).ack(&t, &s, 1, d1.token).await.unwrap(), Settle::Done);
    let read = spi(&backend).read(&t, &s, &who, opts).await.unwrap().unwrap();
    let d2 = read.events[0].clone();
    // The stale ack names offset 2 with offset 1's token: 2 stays in flight.
    let (stale, read) = spi(&backend).ack_and_read(&t, &s, 2, d1.token, &who, opts).await.unwrap();
    assert_eq!(stale, Settle::Stale, "another delivery's token");
    let read = read.expect("the subscription exists");
    assert_eq!(read.events.iter().map(|d| d.event.offset).collect::<Vec<_>>(), [3]);
    let stats = sub.stats().await.unwrap();
    assert_eq!(stats.in_flight, 2, "2 (not acked) and 3: {stats:?}");
    assert_eq!(spi(&backend).ack(&t, &s, 2, d2.token).await.unwrap(), Settle::Done, "2 still held");
    let d3 = &read.events[0];
    assert_eq!(spi(&backend).ack(&t, &s, 3, d3.token).await.unwrap(), Settle::Done);

    numbers(&c).publish(&4).await.unwrap();
    let d4 = event(&mut sub, "event 4").await;
    assert_eq!(spi(&backend).ack(&t, &s, 4, d4.token()).await.unwrap(), Settle::Done);
    numbers(&c).publish(&5).await.unwrap();
    assert_lease_lost(sub.ack_and_next(d4).await, "acked already");
    let d5 = event(&mut sub, "the event the stale step read").await;
    assert_eq!((d5.offset(), *d5.event(), d5.attempt()), (5, 5, 1));
    within(d5.ack(), "ack 5").await;
    let stats = sub.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.retrying), (0, 0), "{stats:?}");
}

/// The step's read is a read: offsets trimmed before the subscription got
/// them come out of `ack_and_next` as `Missed`, and an event the
/// subscriber refuses as `Refused` (dead-lettered), the subscription going
/// on.
pub async fn topic_ack_and_next_reports_missed_and_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let topic = numbers(&c).retention(Retention::count(2));
    let mut sub = topic.subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    topic.publish(&1).await.unwrap();
    let d1 = event(&mut sub, "event 1").await;
    // 2 is trimmed by 3 and 4 (refused: version 2) before the read.
    topic.publish(&2).await.unwrap();
    topic.publish(&3).await.unwrap();
    topic.clone().kind("n", 2).publish(&4).await.unwrap();
    match within(sub.ack_and_next(d1), "ack 1 and read").await {
        Some(Next::Missed { first, last }) => assert_eq!((first, last), (2, 2)),
        other => panic!("expected Missed 2..=2, got {other:?}"),
    }
    let d3 = event(&mut sub, "event 3").await;
    assert_eq!((d3.offset(), *d3.event()), (3, 3));
    match within(sub.ack_and_next(d3), "ack 3 and read").await {
        Some(Next::Refused { offset, tag, reason }) => {
            assert_eq!((offset, tag.version), (4, 2), "{reason}");
        }
        other => panic!("expected 4 Refused, got {other:?}"),
    }
    let stats = sub.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.dead, stats.cursor), (0, 1, 4), "{stats:?}");
    let dead = sub.dead_events(0, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.offset).collect::<Vec<_>>(), [4]);
}
}
