//! A topic read's id on a real server (decision 0044): it lives with each
//! delivery the read made, as the sixth part of the deliveries hash's value
//! (an extend keeps it); `give_back` returns only that read's deliveries to
//! that consumer, due again at once with their attempt taken back, wakes
//! the topic's watchers, and leaves to its lease a delivery with no id kept
//! (one written before ids were).

use std::{sync::Arc, time::Duration};

use coord_api::{
    HolderId, InstanceId, Key,
    spi::{DynBackend, NewEvent, ReadOptions, Retention, Settle, Start, Tag, TopicBackend},
};
use coord_redis::{RedisBackend, RedisConfig};
use coord_testkit::redis::RedisServer;
use redis::Value;

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        other => format!("{other:?}"),
    }
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn holder(name: &str) -> HolderId {
    HolderId::new(InstanceId::new(name).unwrap())
}

#[tokio::test]
async fn give_back_returns_only_its_reads_deliveries() {
    let server = RedisServer::shared();
    let config = (RedisConfig::builder().with_url(server.url()))
        .namespace("tgiveback")
        .build()
        .unwrap();
    let backend: DynBackend = Arc::new(RedisBackend::connect(config).await.expect("connect"));
    let ts: &dyn TopicBackend = backend.topics().expect("topics");
    let (t, s, a, c) = (key("t"), key("s"), holder("a"), holder("c"));
    assert!(ts.subscribe(&t, &s, Start::Earliest).await.unwrap());
    let events = (1..=3u8)
        .map(|v| NewEvent::new(Tag::new("n", 1), vec![v]))
        .collect();
    ts.publish(&t, events, Retention::count(100)).await.unwrap();
    let long = Duration::from_secs(30);
    let opts = |max: u32, id: u64| ReadOptions::new(long, long, max).read_id(id);
    let first = ts.read(&t, &s, &a, opts(2, 11)).await.unwrap().unwrap();
    assert_eq!(first.events.len(), 2);
    let third = ts.read(&t, &s, &a, opts(1, 12)).await.unwrap().unwrap();
    assert_eq!(third.events[0].event.offset, 3);
    let flights = "coord:{tgiveback:topic:1:t}:1:s:f";
    let value = |o: &str| text(server.command(&["HGET", flights, o]).expect("HGET"));
    assert!(value("1").ends_with("|11"), "{}", value("1"));
    assert!(value("2").ends_with("|11"), "{}", value("2"));
    assert!(value("3").ends_with("|12"), "{}", value("3"));
    let extended = ts.extend(&t, &s, 1, first.events[0].token, long).await;
    assert_eq!(extended.unwrap(), Settle::Done);
    assert!(
        value("1").ends_with("|11"),
        "extend keeps it: {}",
        value("1")
    );
    let mut watch = ts.watch(&t).await.unwrap();
    assert_eq!(ts.give_back(&t, &s, &c, 11).await.unwrap(), 0, "not c's");
    assert_eq!(ts.give_back(&t, &s, &a, 0).await.unwrap(), 0, "0: none");
    assert_eq!(ts.give_back(&t, &s, &a, 11).await.unwrap(), 2);
    let woke = tokio::time::timeout(Duration::from_millis(500), watch.changed()).await;
    assert!(woke.is_ok(), "give_back wakes the watchers");
    let st = ts.stats(&t, &s).await.unwrap();
    assert_eq!((st.cursor, st.in_flight, st.retrying), (3, 1, 2), "{st:?}");
    for d in &first.events {
        let acked = ts.ack(&t, &s, d.event.offset, d.token).await.unwrap();
        assert_eq!(acked, Settle::Stale);
    }
    let again = ts.read(&t, &s, &c, opts(2, 13)).await.unwrap().unwrap();
    let seen: Vec<(u64, u32)> = (again.events.iter())
        .map(|d| (d.event.offset, d.attempt))
        .collect();
    assert_eq!(seen, [(1, 1), (2, 1)], "as if never delivered");
    // Offset 3's delivery as written before ids were kept: five parts.
    let old = value("3");
    let five = &old[..old.rfind('|').unwrap()];
    server.command(&["HSET", flights, "3", five]).expect("HSET");
    assert_eq!(ts.give_back(&t, &s, &a, 12).await.unwrap(), 0, "no id kept");
    let st = ts.stats(&t, &s).await.unwrap();
    assert_eq!((st.in_flight, st.retrying), (3, 0), "{st:?}");
    assert!(ts.unsubscribe(&t, &s).await.unwrap());
}

/// A consumer whose instance id holds `|` (the deliveries hash's separator;
/// instance ids may hold it): its deliveries are still told apart from the
/// read id after them, so `give_back` and `leave` find them (split on every
/// `|`, the consumer was cut short and matched nothing).
#[tokio::test]
async fn a_consumer_named_with_the_separator_gets_its_deliveries_back() {
    let server = RedisServer::shared();
    let config = (RedisConfig::builder().with_url(server.url()))
        .namespace("tpipe")
        .build()
        .unwrap();
    let backend: DynBackend = Arc::new(RedisBackend::connect(config).await.expect("connect"));
    let ts: &dyn TopicBackend = backend.topics().expect("topics");
    let (t, s, a) = (key("t"), key("s"), holder("web|7"));
    assert!(ts.subscribe(&t, &s, Start::Earliest).await.unwrap());
    let events = (1..=2u8)
        .map(|v| NewEvent::new(Tag::new("n", 1), vec![v]))
        .collect();
    ts.publish(&t, events, Retention::count(100)).await.unwrap();
    let long = Duration::from_secs(30);
    let opts = |id: u64| ReadOptions::new(long, long, 1).read_id(id);
    let first = ts.read(&t, &s, &a, opts(21)).await.unwrap().unwrap();
    assert_eq!(first.events.len(), 1);
    assert_eq!(ts.give_back(&t, &s, &a, 21).await.unwrap(), 1, "given back");
    let again = ts.read(&t, &s, &a, opts(22)).await.unwrap().unwrap();
    assert_eq!(again.events.len(), 1);
    assert_eq!(
        ts.leave(&t, &s, &a).await.unwrap(),
        1,
        "left, its delivery back"
    );
    assert!(ts.unsubscribe(&t, &s).await.unwrap());
}
