//! Dead items (rule 8), counts, wake-ups (rule 9) and the store's sweep.

use coord_api::spi::MAX_DEAD_KEPT;

use super::*;

/// Pushes `n` items and dead-letters each, in the order of `order` (ids).
async fn kill(t: &T, order: impl IntoIterator<Item = u64>) {
    let mut held = std::collections::HashMap::new();
    loop {
        let r = t.receive(&t.a, MAX_BATCH as u32).await;
        if r.deliveries.is_empty() {
            break;
        }
        held.extend(r.deliveries.into_iter().map(|d| (d.id, d)));
    }
    for id in order {
        let d = &held[&id];
        assert_eq!(t.dead_letter(d, &format!("r{id}")).await, Settle::Done);
    }
}

/// The ids of the dead items listed with `after` and `limit`.
async fn page(t: &T, after: u64, limit: u32) -> Vec<u64> {
    let items = t.b.dead_items(&t.q, after, limit).await.unwrap();
    items.into_iter().map(|d| d.id).collect()
}

#[tokio::test(start_paused = true)]
async fn dead_items_are_listed_by_id_after_an_id_and_up_to_a_limit() {
    let t = T::new();
    t.push((0..5).map(|i| item(&format!("p{i}"))).collect())
        .await;
    kill(&t, [3, 1, 5, 2, 4]).await;
    let page = |after, limit| page(&t, after, limit);
    assert_eq!(page(0, 10).await, [1, 2, 3, 4, 5]);
    assert_eq!(page(0, 2).await, [1, 2]);
    assert_eq!(page(2, 2).await, [3, 4]);
    assert_eq!(page(4, 2).await, [5]);
    assert_eq!(page(5, 2).await, [0u64; 0]);
    assert_eq!(page(u64::MAX, 2).await, [0u64; 0]);
    let d = &t.dead().await[2];
    assert_eq!((d.id, d.payload.as_slice()), (3, &b"p2"[..]));
    assert_eq!((d.attempts, d.reason.as_str()), (0, "r3"));
    // Nothing in a queue never used.
    assert_eq!(t.on("nope").dead().await, []);
}

#[tokio::test(start_paused = true)]
async fn a_requeued_dead_item_is_ready_with_its_id_and_a_fresh_attempt_count() {
    let t = T::new();
    let last = tries("a", 2).priority(3);
    t.push(vec![last, item("b"), item("c")]).await;
    for _ in 0..2 {
        let d = t.recv(&t.a).await;
        t.nack(&d, Duration::ZERO).await;
    }
    assert_eq!(t.deaths().await, [(1, 2, "boom".into())]);
    assert!(t.b.requeue_dead(&t.q, 1).await.unwrap());
    assert_eq!(t.deaths().await, []);
    assert_eq!(t.places().await, (3, 0, 0, 0));
    // Its priority and attempts are kept; its attempts start again.
    let d = t.recv(&t.a).await;
    assert_eq!((d.id, d.attempt, d.max_attempts, d.priority), (1, 1, 2, 3));
    assert_eq!(t.nack(&d, Duration::ZERO).await, Nack::Requeued);
    // Requeue and remove only what is dead.
    assert!(!t.b.requeue_dead(&t.q, 1).await.unwrap());
    assert!(!t.b.remove_dead(&t.q, 1).await.unwrap());
    assert!(!t.b.requeue_dead(&t.q, 99).await.unwrap());
    assert!(!t.b.remove_dead(&k("nope"), 1).await.unwrap());
    let d = t.recv(&t.a).await;
    assert_eq!((d.id, d.attempt), (1, 2));
    assert_eq!(t.dead_letter(&d, "again").await, Settle::Done);
    assert!(t.b.remove_dead(&t.q, 1).await.unwrap());
    assert!(!t.b.remove_dead(&t.q, 1).await.unwrap());
    assert!(!t.b.requeue_dead(&t.q, 1).await.unwrap());
    assert_eq!(t.places().await, (2, 0, 0, 0));
    assert_eq!(t.stats().await.dead_lettered, 2);
}

#[tokio::test(start_paused = true)]
async fn the_oldest_dead_items_are_dropped_past_the_limit() {
    let t = T::new();
    let n = MAX_DEAD_KEPT as u64 + 2;
    for from in (0..n).step_by(MAX_BATCH) {
        let batch = (from..n.min(from + MAX_BATCH as u64)).map(|_| item("x"));
        t.push(batch.collect()).await;
    }
    // Item 1 dies last, item 3 first: the oldest deaths go, whatever
    // their ids.
    kill(&t, (3..=n).chain([2, 1])).await;
    let s = t.stats().await;
    assert_eq!((s.dead, s.dead_lettered), (MAX_DEAD_KEPT as u64, n));
    assert_eq!(page(&t, 0, 3).await, [1, 2, 5]);
    // A removal or a requeue leaves room: nothing else is dropped.
    assert!(t.b.remove_dead(&t.q, 1).await.unwrap());
    assert!(t.b.requeue_dead(&t.q, 2).await.unwrap());
    let d = t.recv(&t.a).await;
    t.dead_letter(&d, "again").await;
    assert_eq!(t.stats().await.dead, MAX_DEAD_KEPT as u64 - 1);
}

#[tokio::test(start_paused = true)]
async fn stats_count_every_place_and_every_delivery() {
    let t = T::new();
    assert_eq!(t.stats().await, QueueStats::default());
    let later = item("later").delay(Some(SEC));
    t.push(vec![tries("a", 1), item("b"), item("c"), later, item("e")])
        .await;
    let r = t.receive(&t.a, 2).await; // 1 started, 2 prefetched
    t.recv(&t.c).await; // 3
    t.steal(&t.c, 9).await; // 5: something was ready
    t.nack(&r.deliveries[0], Duration::ZERO).await; // 1 dead
    t.steal(&t.c, 9).await; // 2 stolen
    let s = t.stats().await;
    assert_eq!((s.ready, s.delayed, s.in_flight, s.dead), (0, 1, 3, 1));
    assert_eq!(s.consumers, [*t.a.instance(), *t.c.instance()]);
    assert_eq!(
        (s.delivered, s.redelivered, s.stolen, s.dead_lettered),
        (5, 0, 1, 1)
    );
    advance(TTL).await;
    let s = t.stats().await;
    assert_eq!((s.ready, s.delayed, s.in_flight), (4, 0, 0));
    let r = t.receive(&t.a, 9).await;
    assert_eq!(ids(&r), [2, 3, 4, 5]);
    let s = t.stats().await;
    assert_eq!((s.delivered, s.redelivered), (9, 3));
    // Presence past: no consumer.
    advance(PRESENCE).await;
    assert_eq!(t.stats().await.consumers, []);
}

#[tokio::test(start_paused = true)]
async fn watches_wake_when_a_step_made_an_item_ready() {
    let t = T::new();
    let mut w = t.b.watch(&t.q).await.unwrap();
    let mut other = t.b.watch(&k("other")).await.unwrap();
    let dd = || tries("x", 9).dedup(Some((k("d"), TTL)));
    t.push(vec![dd()]).await;
    assert!(woke(&mut w).await, "push");
    t.push(vec![dd()]).await;
    assert!(!woke(&mut w).await, "a duplicate");
    t.push(vec![item("x").delay(Some(SEC))]).await;
    // A delayed push wakes (a waiting consumer learns when it is due)...
    assert!(woke(&mut w).await, "a delayed push");
    // ...and the delay passes without one; the step that sweeps it wakes.
    assert!(tokio::time::timeout(2 * SEC, w.changed()).await.is_err());
    t.stats().await;
    assert!(woke(&mut w).await, "a sweep");
    let r = t.receive(&t.a, 2).await;
    assert!(!woke(&mut w).await, "receive");
    assert_eq!(t.nack(&r.deliveries[0], SEC).await, Nack::Requeued);
    assert!(woke(&mut w).await, "a nack with a delay");
    assert_eq!(t.extend(&r.deliveries[1]).await, Settle::Done);
    assert_eq!(
        t.nack(&r.deliveries[1], Duration::ZERO).await,
        Nack::Requeued
    );
    assert!(woke(&mut w).await, "a nack without a delay");
    let d = t.recv(&t.a).await;
    assert_eq!(t.dead_letter(&d, "x").await, Settle::Done);
    assert!(!woke(&mut w).await, "a dead letter");
    assert!(t.b.requeue_dead(&t.q, d.id).await.unwrap());
    assert!(woke(&mut w).await, "a requeue");
    let d = t.recv(&t.a).await;
    assert_eq!(t.ack(&d).await, Settle::Done);
    assert!(!woke(&mut w).await, "an ack");
    advance(SEC).await;
    t.recv(&t.a).await;
    woke(&mut w).await;
    assert_eq!(t.leave(&t.a).await, 1);
    assert!(woke(&mut w).await, "a leave");
    t.recv(&t.a).await;
    // A lease's deadline passes without a wake-up.
    assert!(tokio::time::timeout(TTL + SEC, w.changed()).await.is_err());
    t.b.heartbeat(&t.q, &t.c, SEC).await.unwrap();
    assert!(woke(&mut w).await, "the expiry swept");
    assert!(!woke(&mut other).await, "another queue");
}

#[tokio::test(start_paused = true)]
async fn the_store_forgets_idle_empty_queues_in_its_sweep() {
    let t = T::new();
    // q1 had an item, q0 keeps one, the others only saw a consumer (one
    // step each that may make a record: the store sweeps at the 257th).
    let q1 = t.on("q1");
    q1.push1("x").await;
    let d = q1.recv(&t.a).await;
    assert_eq!(q1.ack(&d).await, Settle::Done);
    t.on("q0").push1("x").await;
    for i in 2..256 {
        let q = k(&format!("q{i}"));
        t.b.heartbeat(&q, &t.a, SEC).await.unwrap();
    }
    assert_eq!(t.b.store.queues().map.len(), 256);
    advance(MAX_TTL + SEC).await;
    t.push1("y").await;
    // q0 keeps its item; the others are forgotten, their ids with them.
    assert_eq!(t.b.store.queues().map.len(), 2);
    assert_eq!(t.on("q0").push1("z").await, 2);
    assert_eq!(t.on("q1").push1("z").await, 1);
}
