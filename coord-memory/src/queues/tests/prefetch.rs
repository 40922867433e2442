//! Prefetch (rules 3 and 4: only started deliveries count attempts) and
//! work stealing (rule 3).

use super::*;

#[tokio::test(start_paused = true)]
async fn a_receive_starts_its_first_delivery_and_prefetches_the_others() {
    let t = T::new();
    t.push(vec![tries("a", 2), tries("b", 2), tries("c", 2)])
        .await;
    let r = t.receive(&t.a, 3).await;
    let seen: Vec<_> = (r.deliveries.iter())
        .map(|d| (d.id, d.attempt, d.started, d.stolen))
        .collect();
    assert_eq!(
        seen,
        [
            (1, 1, true, false),
            (2, 1, false, false),
            (3, 1, false, false)
        ]
    );
    let s = t.stats().await;
    assert_eq!((s.in_flight, s.delivered, s.redelivered), (3, 3, 0));
    // Extend starts the second (its attempt counted) and renews from now.
    advance(SEC).await;
    assert_eq!(t.extend(&r.deliveries[1]).await, Settle::Done);
    assert_eq!(t.idle(&t.c).await, Some(TTL - SEC));
    // The third was never started: its return uses no attempt and is no
    // redelivery. The first and second were: one attempt each.
    advance(TTL - SEC).await;
    assert_eq!(t.places().await, (2, 0, 1, 0));
    advance(SEC).await;
    assert_eq!(t.places().await, (3, 0, 0, 0));
    let again = t.receive(&t.c, 3).await;
    let seen: Vec<_> = (again.deliveries.iter())
        .map(|d| (d.id, d.attempt, d.started))
        .collect();
    assert_eq!(seen, [(1, 2, true), (2, 2, false), (3, 1, false)]);
    let s = t.stats().await;
    assert_eq!((s.delivered, s.redelivered), (6, 2));
    // The second's extend starts its last attempt; the third's its first.
    for d in &again.deliveries[1..] {
        assert_eq!(t.extend(d).await, Settle::Done);
    }
    advance(TTL).await;
    let dead: Vec<_> = t.deaths().await.into_iter().map(|d| d.0).collect();
    assert_eq!(dead, [1, 2]);
    assert_eq!(t.recv(&t.a).await.attempt, 2);
}

#[tokio::test(start_paused = true)]
async fn a_returned_prefetched_delivery_uses_no_attempt() {
    let t = T::new();
    // Item 2 has one attempt; every receive below prefetches it and
    // returns it unstarted, in each of the ways a delivery returns.
    t.push(vec![tries("a", 9), tries("b", 1)]).await;
    let prefetched = |r: &Received| {
        let d = &r.deliveries[1];
        assert_eq!((d.id, d.attempt, d.started), (2, 1, false));
    };
    // Expiry.
    let r = t.receive(&t.a, 2).await;
    prefetched(&r);
    advance(TTL).await;
    assert_eq!(t.places().await, (2, 0, 0, 0));
    // A nack.
    let r = t.receive(&t.a, 2).await;
    prefetched(&r);
    assert_eq!(t.nack(&r.deliveries[1], 5 * SEC).await, Nack::Requeued);
    assert_eq!(
        t.nack(&r.deliveries[0], Duration::ZERO).await,
        Nack::Requeued
    );
    // Ready at once: a prefetched delivery goes back with no delay.
    assert_eq!(t.places().await, (2, 0, 0, 0));
    // Leave.
    let r = t.receive(&t.a, 2).await;
    prefetched(&r);
    assert_eq!(t.leave(&t.a).await, 2);
    // A dead consumer.
    let short = ReceiveOptions::new(TTL, SEC).max(2);
    let r = t.receive_with(&t.a, short).await;
    prefetched(&r);
    advance(SEC).await;
    assert_eq!(t.places().await, (2, 0, 0, 0));
    // Stolen: the thief's delivery is its first attempt.
    let r = t.receive(&t.a, 2).await;
    prefetched(&r);
    let stolen = t.steal(&t.c, 1).await;
    let d = &stolen.deliveries[0];
    assert_eq!((d.id, d.attempt, d.started, d.stolen), (2, 1, true, true));
    assert_eq!(t.deaths().await, []);
    let s = t.stats().await;
    // Item 2 was never started before a delivery: no redelivery; item 1
    // was before each of its last four.
    assert_eq!((s.delivered, s.redelivered, s.stolen), (11, 4, 1));
    assert_eq!(t.nack(d, Duration::ZERO).await, Nack::DeadLettered);
    assert_eq!(t.deaths().await, [(2, 1, "boom".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn steal_takes_only_prefetched_deliveries_of_live_consumers() {
    let t = T::new();
    let items = [0, 0, 0, 5].map(|p| item("x").priority(p));
    t.push(items.to_vec()).await;
    // a: 4 started, 1 2 3 prefetched.
    let mine = t.receive(&t.a, 4).await;
    assert_eq!(ids(&mine), [4, 1, 2, 3]);
    // Without stealing, or with something ready, nothing is taken.
    assert_eq!(t.idle(&t.c).await, Some(TTL));
    t.push1("fresh").await;
    let fresh = t.steal(&t.c, 4).await;
    assert_eq!(ids(&fresh), [5]);
    assert!(!fresh.deliveries[0].stolen);
    assert_eq!(t.stats().await.stolen, 0);
    // Nothing ready: a's prefetched ones in ready order, the first
    // started; a's started one is never taken, nor c's own.
    let stolen = t.steal(&t.c, 2).await;
    let seen: Vec<_> = (stolen.deliveries.iter())
        .map(|d| (d.id, d.attempt, d.started, d.stolen))
        .collect();
    assert_eq!(seen, [(1, 1, true, true), (2, 1, false, true)]);
    for (old, new) in mine.deliveries[1..3].iter().zip(&stolen.deliveries) {
        assert!(new.token > old.token);
        // The victim's tokens are stale.
        assert_eq!(t.extend(old).await, Settle::Stale);
    }
    let last = t.steal(&t.c, 9).await;
    assert_eq!(ids(&last), [3]);
    assert_eq!(t.steal(&t.a, 9).await.deliveries.len(), 1, "c's item 2");
    let s = t.stats().await;
    assert_eq!((s.delivered, s.stolen, s.in_flight), (9, 4, 5));
    // Now every delivery is started or the stealer's own.
    let r = t.steal(&t.c, 9).await;
    assert_eq!((ids(&r), r.next_in), (vec![], Some(TTL)));
    // Only live consumers' prefetch is stolen: a dead consumer's goes back
    // to ready (not counted as stolen).
    let t = T::new();
    t.push(vec![item("a"), item("b")]).await;
    let short = ReceiveOptions::new(TTL, SEC).max(2);
    t.receive_with(&t.a, short).await;
    advance(SEC).await;
    let r = t.steal(&t.c, 2).await;
    assert_eq!(ids(&r), [1, 2]);
    assert!(r.deliveries.iter().all(|d| !d.stolen));
    assert_eq!(t.stats().await.stolen, 0);
}
