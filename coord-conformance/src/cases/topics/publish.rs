//! Publishing: every event, retention and name checked before any I/O,
//! by the client and by the backend itself; offsets in publish order.

use super::*;

cases! {
    family: "topic", needs: [Need::Topics];

/// A bad topic name, an event over the size limit, a bad kind or version,
/// a retention with no bound or out of range, and a publish of too many
/// events are `InvalidArgument` naming the topic and the limit, from the
/// client and from the backend's SPI alike; nothing is published.
pub async fn topic_bad_input_refused_naming_topic_and_limit(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    assert_invalid(c.topic::<u64>("").publish(&1).await, "empty name");
    assert_invalid(c.topic::<u64>("bad\u{1}").publish_ephemeral(&1).await, "control char");
    let big = "x".repeat(MAX_EVENT_BYTES + 1);
    let msg = invalid(c.topic::<String>(T).publish(&big).await, "event too big");
    assert!(msg.contains("\"t\"") && msg.contains(&MAX_EVENT_BYTES.to_string()), "{msg}");
    let msg = invalid(c.topic::<String>(T).publish_ephemeral(&big).await, "ephemeral too big");
    assert!(msg.contains(&MAX_EVENT_BYTES.to_string()), "{msg}");
    let mut unbounded = Retention::count(1);
    unbounded.max_len = None;
    for (r, what) in [
        (unbounded, "no bound"),
        (Retention::count(0), "count 0"),
        (Retention::age(ms(10)), "age under a second"),
    ] {
        let msg = invalid(numbers(&c).retention(r).publish(&1).await, what);
        assert!(msg.contains("topic \"t\"") && msg.contains("retention"), "{what}: {msg}");
    }
    assert_invalid(numbers(&c).kind("", 1).publish(&1).await, "empty kind");
    assert_invalid(numbers(&c).kind("k", 0).publish(&1).await, "version 0");
    let many: Vec<u64> = (0..=MAX_EVENT_BATCH as u64).collect();
    let msg = invalid(numbers(&c).publish_many(&many).await, "too many");
    assert!(msg.contains(&MAX_EVENT_BATCH.to_string()), "{msg}");
    // The backend checks by itself too.
    let backend = ctx.backend().await;
    let t = spi(&backend);
    let tag = Tag::new("u64", 1);
    let huge = NewEvent::new(tag.clone(), vec![b'1'; MAX_EVENT_BYTES + 1]);
    assert_invalid(t.publish(&key(T), vec![huge.clone()], Retention::count(10)).await, "spi: too big");
    assert_invalid(t.publish_ephemeral(&key(T), huge).await, "spi: ephemeral too big");
    let one = NewEvent::new(tag, b"1".to_vec());
    assert_invalid(t.publish(&key(T), vec![one], unbounded).await, "spi: unbounded");
    let opts = ReadOptions::new(ms(1000), ms(1000), 0);
    assert_invalid(t.read(&key(T), &key("s"), &intruder(), opts).await, "spi: a read of 0");
    let stats = t.stats(&key(T), &key("s")).await.unwrap();
    assert_eq!(stats.last_offset, 0, "nothing published: {stats:?}");
}

/// An event JSON cannot carry back as its type (a NaN or infinite float:
/// serde_json writes `null`, which no `f64` reads) is refused before any
/// I/O, naming the topic and the type, from `publish`, `publish_many` and
/// `publish_ephemeral` alike (decision 0055): it was published, and every
/// subscriber refused it.
pub async fn topic_event_that_does_not_read_back_is_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = ctx.switchable_client("offline", default_options()).await;
    switch.off();
    let t = c.topic::<f64>(T);
    for (res, what) in [
        (t.publish(&f64::NAN).await.map(drop), "publish"),
        (t.publish_many(&[1.0, f64::INFINITY]).await.map(drop), "publish_many"),
        (t.publish_ephemeral(&f64::NEG_INFINITY).await.map(drop), "publish_ephemeral"),
    ] {
        let msg = invalid(res, what);
        assert!(msg.contains("topic \"t\"") && msg.contains("f64"), "{what}: {msg}");
    }
    switch.on();
    let stats = spi(&ctx.backend().await).stats(&key(T), &key("s")).await.unwrap();
    assert_eq!(stats.last_offset, 0, "nothing published: {stats:?}");
}

/// Offsets are 1, 2, 3... in publish order, a batch's consecutive, and
/// every subscription reads events in offset order.
pub async fn topic_offsets_follow_publish_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut sub = numbers(&c).subscriber("s").start(Start::Earliest);
    sub.subscribe().await.unwrap();
    assert_eq!(numbers(&c).publish(&10).await.unwrap(), 1);
    assert_eq!(numbers(&c).publish_many(&[11, 12, 13]).await.unwrap(), vec![2, 3, 4]);
    assert_eq!(numbers(&c).publish(&14).await.unwrap(), 5);
    let got = drain(&mut sub, 5, "in order").await;
    assert_eq!(got, vec![(1, 10), (2, 11), (3, 12), (4, 13), (5, 14)]);
}
}
