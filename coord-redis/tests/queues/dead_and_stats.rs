//! Dead letters listed, requeued, removed and kept up to the limit; stats
//! counting every place and every delivery.

use super::*;

/// Rules 5 and 8: dead letters are listed by id after an id, up to a limit,
/// requeued with their id and a fresh attempt count, or removed.
#[tokio::test]
async fn dead_letters_are_listed_requeued_and_removed() {
    let t = Q::new("dead").await;
    let items = (0..5).map(|i| tries(&format!("p{i}"), 2).priority(3));
    t.push(items.collect()).await;
    let r = t.receive(&t.a, 5).await;
    for d in &r.deliveries {
        assert_eq!(t.dead_letter(d, &format!("r{}", d.id)).await, Settle::Done);
        assert_eq!(t.dead_letter(d, "again").await, Settle::Stale);
    }
    let page = |after: u64, limit: u32| {
        let t = &t;
        async move {
            let list = t.qs().dead_items(&t.q, after, limit).await.unwrap();
            list.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(0, 10).await, [1, 2, 3, 4, 5]);
    assert_eq!(page(0, 2).await, [1, 2]);
    assert_eq!(page(2, 2).await, [3, 4]);
    assert_eq!(page(5, 2).await, [0u64; 0]);
    assert_eq!(page(u64::MAX, 2).await, [0u64; 0]);
    let dead = t.dead().await;
    // The first was started (one attempt), the others prefetched (none).
    assert_eq!(
        (dead[0].attempts, dead[2].attempts, dead[2].reason.as_str()),
        (1, 0, "r3")
    );
    assert_eq!(dead[2].payload, b"p2");
    let mut w = t.watch().await;
    assert!(t.qs().requeue_dead(&t.q, 1).await.unwrap());
    wakes(&mut w, "a requeue").await;
    assert!(!t.qs().requeue_dead(&t.q, 1).await.unwrap());
    assert!(!t.qs().remove_dead(&t.q, 1).await.unwrap());
    assert!(t.qs().remove_dead(&t.q, 2).await.unwrap());
    assert!(!t.qs().remove_dead(&t.q, 2).await.unwrap());
    assert!(!t.qs().requeue_dead(&t.q, 99).await.unwrap());
    assert!(!t.qs().requeue_dead(&key("never"), 1).await.unwrap());
    assert_eq!(page(0, 10).await, [3, 4, 5]);
    let d = t.recv(&t.c).await;
    assert_eq!(
        (
            d.id,
            d.attempt,
            d.max_attempts,
            d.priority,
            d.payload.as_slice()
        ),
        (1, 1, 2, 3, &b"p0"[..])
    );
    assert_eq!(t.nack(&d, "boom", Duration::ZERO).await, Nack::Requeued);
    let d = t.recv(&t.c).await;
    assert_eq!(
        t.nack(&d, "boom again", Duration::ZERO).await,
        Nack::DeadLettered
    );
    assert_eq!(t.deaths().await[0], (1, 2, "boom again".to_owned()));
    assert_eq!(t.stats().await.dead_lettered, 6);
    assert!(t.qs().dead_items(&t.q, 0, 0).await.is_err());
    let over = MAX_BATCH as u32 + 1;
    assert!(t.qs().dead_items(&t.q, 0, over).await.is_err());
}

/// Rule 8: past MAX_DEAD_KEPT dead items, the oldest deaths are dropped.
#[tokio::test]
async fn the_oldest_dead_items_are_dropped_past_the_limit() {
    let t = Q::new("dead-limit").await;
    let n = MAX_DEAD_KEPT as u64 + 2;
    // Items 1 and 2 die last of all, so the first two deaths (3 and 4)
    // are the ones dropped.
    let mut pushed = 0;
    while pushed < n {
        let batch = (n - pushed).min(MAX_BATCH as u64);
        let items = (0..batch).map(|i| item(&format!("{}", pushed + i + 1)));
        t.push(items.collect()).await;
        pushed += batch;
    }
    let mut first_two = Vec::new();
    loop {
        let r = t.receive(&t.a, MAX_BATCH as u32).await;
        if r.deliveries.is_empty() {
            break;
        }
        for d in r.deliveries {
            if d.id <= 2 {
                first_two.push(d);
            } else {
                assert_eq!(t.dead_letter(&d, "x").await, Settle::Done);
            }
        }
    }
    for d in &first_two {
        assert_eq!(t.dead_letter(d, "last").await, Settle::Done);
    }
    let s = t.stats().await;
    assert_eq!((s.dead, s.dead_lettered), (MAX_DEAD_KEPT as u64, n));
    let first: Vec<_> = (t.qs().dead_items(&t.q, 0, 3).await.unwrap().into_iter())
        .map(|d| d.id)
        .collect();
    assert_eq!(first, [1, 2, 5]);
    // Their items are gone with them.
    let server = RedisServer::shared();
    let base = "coord:{dead-limit:queue:1:q}:";
    let exists = |id: u64| {
        let v = server
            .command(&["EXISTS", &format!("{base}{id}:i")])
            .unwrap();
        v == Value::Int(1)
    };
    assert!(exists(1) && exists(5) && !exists(3) && !exists(4));
}

/// Stats: every place, the live consumers and every count.
#[tokio::test]
async fn stats_count_every_place_and_every_delivery() {
    let t = Q::new("stats").await;
    assert_eq!(t.stats().await, QueueStats::default());
    t.push(vec![
        item("a"),
        item("b"),
        item("c"),
        tries("d", 1),
        item("e").delay(Some(Duration::from_secs(60))),
    ])
    .await;
    let r = t.receive(&t.a, 2).await;
    let d = t.recv(&t.c).await;
    let last = t.recv(&t.c).await;
    assert_eq!(t.nack(&last, "x", Duration::ZERO).await, Nack::DeadLettered);
    let s = t.stats().await;
    assert_eq!((s.ready, s.delayed, s.in_flight, s.dead), (0, 1, 3, 1));
    assert_eq!(s.consumers, [*t.a.instance(), *t.c.instance()]);
    assert_eq!(
        (s.delivered, s.redelivered, s.stolen, s.dead_lettered),
        (4, 0, 0, 1)
    );
    t.qs().leave(&t.q, &t.a).await.unwrap();
    t.nack(&d, "again", Duration::ZERO).await;
    let r2 = t.receive(&t.c, 5).await;
    assert_eq!(ids(&r2), [1, 2, 3]);
    let s = t.stats().await;
    // 1 (started by a) and 3 (started by c) are redeliveries; 2 was only
    // prefetched.
    assert_eq!((s.delivered, s.redelivered), (7, 2));
    assert_eq!(s.consumers, [*t.c.instance()]);
    drop(r);
}

/// The meta hash (id and token counters, counts) of a queue left with no
/// item and no dead item expires a day and a minute after the ack that
/// emptied it, as the memory backend forgets an idle empty queue; a push
/// keeps it again, and while an item or a dead item is kept it never
/// expires. (Queues named per tenant or per job left a key each for
/// ever.)
#[tokio::test]
async fn an_empty_queue_forgets_its_counters_a_day_after() {
    let t = Q::new("idle-meta").await;
    let server = RedisServer::shared();
    let meta = "coord:{idle-meta:queue:1:q}:m";
    let pttl = || match server.command(&["PTTL", meta]).unwrap() {
        Value::Int(ms) => ms,
        other => panic!("PTTL: {other:?}"),
    };
    t.push1("a").await;
    t.push(vec![tries("b", 1)]).await;
    assert_eq!(pttl(), -1, "kept while items are");
    let d = t.recv(&t.a).await;
    assert_eq!(t.ack(&d).await, Settle::Done);
    assert_eq!(pttl(), -1, "one item left");
    let last = t.recv(&t.a).await;
    assert_eq!(t.nack(&last, "x", Duration::ZERO).await, Nack::DeadLettered);
    assert_eq!(pttl(), -1, "a dead item is kept");
    let dead = t.dead().await;
    let removed = t.qs().remove_dead(&t.q, dead[0].id).await.unwrap();
    assert!(removed, "the dead item removed");
    let day = 86_400_000;
    assert!((day..=day + 60_000).contains(&pttl()), "{}", pttl());
    let id = t.push1("c").await;
    assert_eq!(pttl(), -1, "a push keeps it again");
    assert!(id > dead[0].id, "ids go on");
    let d = t.recv(&t.a).await;
    assert_eq!(t.ack(&d).await, Settle::Done);
    assert!((day..=day + 60_000).contains(&pttl()), "emptied by an ack");
}
