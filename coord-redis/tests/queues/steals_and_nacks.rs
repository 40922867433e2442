//! Stealing (only from live consumers, never a dead one's prefetch) and
//! nacks with and without delay, then the dead letters.

use super::*;

/// Rule 3: with `steal`, a consumer with nothing ready takes other live
/// consumers' prefetched deliveries (never a started one, never its own),
/// each with a new token, counted as stolen.
#[tokio::test]
async fn steals_take_only_other_live_consumers_prefetched_deliveries() {
    let t = Q::new("steal").await;
    t.push(vec![item("a"), item("b"), item("c").priority(3), item("d")])
        .await;
    let r = t.receive(&t.a, 4).await;
    assert_eq!(ids(&r), [3, 1, 2, 4]);
    // Without stealing, nothing.
    assert!(t.idle(&t.c).await.is_some());
    let stolen = t.receive_with(&t.c, opts(2).steal(true)).await;
    let seen: Vec<_> = (stolen.deliveries.iter())
        .map(|d| (d.id, d.attempt, d.started, d.stolen))
        .collect();
    assert_eq!(seen, [(1, 1, true, true), (2, 1, false, true)]);
    for (d, theirs) in stolen.deliveries.iter().zip(&r.deliveries[1..]) {
        assert!(d.token > theirs.token);
        assert_eq!(t.extend(theirs, TTL).await, Settle::Stale);
    }
    // a starts its last prefetched one; nothing is left to steal (a's
    // started ones, c's own prefetched one).
    assert_eq!(t.extend(&r.deliveries[3], TTL).await, Settle::Done);
    let none = t.receive_with(&t.c, opts(5).steal(true)).await;
    assert_eq!(none.deliveries, []);
    // A third consumer steals c's prefetched one.
    let e = holder("e");
    let third = t.receive_with(&e, opts(5).steal(true)).await;
    assert_eq!(
        (
            ids(&third),
            third.deliveries[0].stolen,
            third.deliveries[0].started
        ),
        (vec![2], true, true)
    );
    assert_eq!(t.extend(&stolen.deliveries[1], TTL).await, Settle::Stale);
    let s = t.stats().await;
    assert_eq!((s.stolen, s.delivered, s.in_flight), (3, 7, 4));
    // Stolen deliveries settle like any other, and leave with their new
    // consumer.
    assert_eq!(t.ack(&stolen.deliveries[0]).await, Settle::Done);
    assert_eq!(t.qs().leave(&t.q, &e).await.unwrap(), 1);
    assert_eq!(t.places().await, (1, 0, 2, 0));
}

/// Rule 3: stealing is from live consumers only: a dead consumer's
/// prefetched deliveries are not stolen but returned (the sweep comes
/// first), so they come as ready items, uncounted as steals.
#[tokio::test]
async fn a_dead_consumers_prefetch_is_returned_not_stolen() {
    let t = Q::new("steal-dead").await;
    t.push(vec![item("a"), item("b"), item("c")]).await;
    let dying = ReceiveOptions::new(TTL, SHORT).max(3);
    assert_eq!(ids(&t.receive_with(&t.a, dying).await), [1, 2, 3]);
    sleep(SHORT + MARGIN).await;
    let r = t.receive_with(&t.c, opts(3).steal(true)).await;
    let seen: Vec<_> = (r.deliveries.iter())
        .map(|d| (d.id, d.attempt, d.started, d.stolen))
        .collect();
    assert_eq!(
        seen,
        [
            (1, 2, true, false),
            (2, 1, false, false),
            (3, 1, false, false)
        ]
    );
    let s = t.stats().await;
    assert_eq!((s.stolen, s.redelivered), (0, 1));
    assert_eq!(s.consumers, [*t.c.instance()]);
}

/// Rules 5 and 6: a nack records the error and returns the item, after its
/// retry delay; on the last attempt it moves to dead with the error.
#[tokio::test]
async fn nacks_retry_after_their_delay_then_dead_letter() {
    let t = Q::new("nack").await;
    t.push(vec![tries("x", 3)]).await;
    let mut w = t.watch().await;
    let d = t.recv(&t.a).await;
    assert_eq!(t.nack(&d, "first", BRIEF).await, Nack::Requeued);
    assert_eq!(t.places().await, (0, 1, 0, 0));
    let next = t.idle(&t.a).await.expect("a delayed item");
    assert!(next <= BRIEF, "{next:?}");
    // A nack with a delay wakes (a waiting consumer learns when it is
    // due)...
    wakes(&mut w, "a nack with a delay").await;
    sleep(BRIEF).await;
    // ...and the delay passes silently; the next step makes it ready.
    let d = t.recv(&t.a).await;
    assert_eq!(d.attempt, 2);
    wakes(&mut w, "the sweep that made it ready").await;
    assert_eq!(t.nack(&d, "second", Duration::ZERO).await, Nack::Requeued);
    wakes(&mut w, "a nack without a delay").await;
    let d = t.recv(&t.a).await;
    assert_eq!(d.attempt, 3);
    let long = "é".repeat(MAX_REASON_BYTES);
    assert_eq!(t.nack(&d, &long, SHORT).await, Nack::DeadLettered);
    assert_eq!(t.nack(&d, "again", SHORT).await, Nack::Stale);
    let dead = t.dead().await;
    assert_eq!((dead.len(), dead[0].attempts), (1, 3));
    assert!(dead[0].reason.len() <= MAX_REASON_BYTES && long.starts_with(&dead[0].reason));
    let s = t.stats().await;
    assert_eq!((s.delivered, s.redelivered, s.dead_lettered), (3, 2, 1));
    // A prefetched delivery nacked goes back at once, with no attempt used.
    t.push(vec![tries("y", 1), tries("z", 1)]).await;
    let r = t.receive(&t.a, 2).await;
    assert_eq!(
        t.nack(&r.deliveries[1], "not now", SHORT).await,
        Nack::Requeued
    );
    assert_eq!(t.places().await, (1, 0, 1, 1));
    let z = t.recv(&t.c).await;
    assert_eq!((z.id, z.attempt), (r.deliveries[1].id, 1));
}
