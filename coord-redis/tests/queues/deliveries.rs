//! Deliveries as fenced leases: prefetch and attempts, stale tokens,
//! expiry to the dead letters exactly once, dead consumers, leave, a
//! receive's give-back.

use super::*;

/// Rules 3 and 4: a receive starts its first delivery and prefetches the
/// others; attempts count started deliveries only, and a returned
/// prefetched delivery is no redelivery.
#[tokio::test]
async fn prefetched_deliveries_count_no_attempt_until_started() {
    let t = Q::new("prefetch").await;
    t.push(vec![tries("a", 2), tries("b", 2), tries("c", 2)])
        .await;
    let short = ReceiveOptions::new(BRIEF, PRESENCE).max(3);
    let r = t.receive_with(&t.a, short).await;
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
    // The second is started by its extend.
    assert_eq!(t.extend(&r.deliveries[1], BRIEF).await, Settle::Done);
    sleep(BRIEF + MARGIN).await;
    assert_eq!(t.places().await, (3, 0, 0, 0));
    let again = t.receive_with(&t.c, short).await;
    let seen: Vec<_> = (again.deliveries.iter())
        .map(|d| (d.id, d.attempt, d.started))
        .collect();
    assert_eq!(seen, [(1, 2, true), (2, 2, false), (3, 1, false)]);
    let s = t.stats().await;
    assert_eq!((s.delivered, s.redelivered), (6, 2));
    // Their extends start the second's last attempt and the third's first.
    for d in &again.deliveries[1..] {
        assert_eq!(t.extend(d, BRIEF).await, Settle::Done);
    }
    sleep(BRIEF + MARGIN).await;
    let dead: Vec<_> = t.deaths().await;
    assert_eq!(
        dead,
        [
            (1, 2, "lease expired".to_owned()),
            (2, 2, "lease expired".to_owned())
        ]
    );
    let third = t.recv(&t.a).await;
    assert_eq!((third.id, third.attempt), (3, 2));
    // An extend renews from now, and a started delivery's extend starts
    // nothing more.
    assert_eq!(t.extend(&third, TTL).await, Settle::Done);
    assert_eq!(t.ack(&third).await, Settle::Done);
    assert_eq!(t.places().await, (0, 0, 0, 2));
}

/// Rules 4 and 5: a token settles nothing once its deadline passed or once
/// the item was delivered again; a later delivery has a larger token.
#[tokio::test]
async fn stale_tokens_change_nothing() {
    let t = Q::new("stale").await;
    t.push(vec![tries("x", 5)]).await;
    let short = ReceiveOptions::new(SHORT, PRESENCE);
    let old = t.receive_with(&t.a, short).await.deliveries.remove(0);
    sleep(SHORT + MARGIN).await;
    assert_eq!(t.ack(&old).await, Settle::Stale);
    assert_eq!(t.extend(&old, TTL).await, Settle::Stale);
    assert_eq!(t.nack(&old, "late", Duration::ZERO).await, Nack::Stale);
    assert_eq!(t.dead_letter(&old, "late").await, Settle::Stale);
    assert_eq!(t.places().await, (1, 0, 0, 0));
    let new = t.recv(&t.c).await;
    assert!(new.token > old.token);
    assert_eq!(new.attempt, 2);
    for stale in [
        FencingToken(old.token.get()),
        FencingToken(new.token.get() + 1),
        FencingToken(0),
    ] {
        assert_eq!(
            t.qs().ack(&t.q, new.id, stale).await.unwrap(),
            Settle::Stale
        );
    }
    assert_eq!(
        t.qs().ack(&t.q, 99, new.token).await.unwrap(),
        Settle::Stale,
        "no such item"
    );
    assert_eq!(t.places().await, (0, 0, 1, 0));
    assert_eq!(t.ack(&new).await, Settle::Done);
    assert_eq!(t.ack(&new).await, Settle::Stale);
    assert_eq!(t.places().await, (0, 0, 0, 0));
    // On a queue that never was, too.
    let none = Q {
        q: key("never"),
        ..Q::on(t.b.clone())
    };
    assert_eq!(none.ack(&new).await, Settle::Stale);
    assert_eq!(none.nack(&new, "x", Duration::ZERO).await, Nack::Stale);
}

/// Rule 6: an expired started delivery is ready again until its last
/// attempt, then dead with `lease expired`, exactly once.
#[tokio::test]
async fn expiry_retries_then_moves_to_dead_exactly_once() {
    let t = Q::new("expiry").await;
    t.push(vec![tries("x", 2)]).await;
    let short = ReceiveOptions::new(SHORT, PRESENCE);
    let first = t.receive_with(&t.a, short).await.deliveries.remove(0);
    sleep(SHORT + MARGIN).await;
    let second = t.receive_with(&t.a, short).await.deliveries.remove(0);
    assert_eq!((second.id, second.attempt), (first.id, 2));
    sleep(SHORT + MARGIN).await;
    assert_eq!(t.idle(&t.a).await, None);
    assert_eq!(t.deaths().await, [(1, 2, "lease expired".to_owned())]);
    let d = &t.dead().await[0];
    assert_eq!(d.payload, b"x");
    let age = std::time::SystemTime::now()
        .duration_since(d.died_at)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(5), "{age:?}");
    for _ in 0..3 {
        t.stats().await;
    }
    let s = t.stats().await;
    assert_eq!(
        (s.dead, s.dead_lettered, s.delivered, s.redelivered),
        (1, 1, 2, 1)
    );
    assert_eq!(t.ack(&second).await, Settle::Stale);
    assert_eq!(t.deaths().await.len(), 1);
}

/// Rules 1 and 6: a consumer whose presence expired is dead; its
/// deliveries go back before their own deadlines (the started one on its
/// last attempt to dead with `consumer gone`, the prefetched one ready
/// with no attempt used), and it is forgotten.
#[tokio::test]
async fn a_dead_consumers_deliveries_return_before_their_deadlines() {
    let t = Q::new("dead-consumer").await;
    t.push(vec![tries("last", 1), tries("more", 1), tries("spare", 2)])
        .await;
    let brief = ReceiveOptions::new(TTL, BRIEF).max(2);
    let held = t.receive_with(&t.a, brief).await;
    assert_eq!(ids(&held), [1, 2]);
    let spare = t
        .receive_with(&t.a, ReceiveOptions::new(TTL, BRIEF))
        .await
        .deliveries
        .remove(0);
    assert_eq!(spare.id, 3);
    assert_eq!(t.stats().await.consumers, [*t.a.instance()]);
    // c is told to look again when a's presence ends, not at the leases'
    // deadlines.
    let next = t.idle(&t.c).await.unwrap();
    assert!(next <= BRIEF, "{next:?}");
    sleep(BRIEF + MARGIN).await;
    // The prefetched one (2) is ready with its one attempt intact; the
    // started ones: 1 dead on its last attempt, 3 ready for its second.
    let r = t.receive(&t.c, 5).await;
    let seen: Vec<_> = (r.deliveries.iter())
        .map(|d| (d.id, d.attempt, d.started))
        .collect();
    assert_eq!(seen, [(2, 1, true), (3, 2, false)]);
    assert_eq!(t.deaths().await, [(1, 1, "consumer gone".to_owned())]);
    for d in held.deliveries.iter().chain([&spare]) {
        assert_eq!(t.ack(d).await, Settle::Stale);
    }
    assert_eq!(t.stats().await.consumers, [*t.c.instance()]);
    // A heartbeat keeps a consumer alive past its first presence.
    t.push1("kept").await;
    let kept = t
        .receive_with(&t.a, ReceiveOptions::new(TTL, BRIEF))
        .await
        .deliveries
        .remove(0);
    for _ in 0..4 {
        sleep(BRIEF / 3).await;
        t.qs().heartbeat(&t.q, &t.a, BRIEF).await.unwrap();
    }
    assert_eq!(t.ack(&kept).await, Settle::Done);
}

/// Rule 7: leave returns every delivery of the consumer at once and
/// forgets it; an unknown consumer leaves nothing.
#[tokio::test]
async fn leave_returns_every_delivery() {
    let t = Q::new("leave").await;
    t.push(vec![tries("a", 1), tries("b", 2), tries("c", 2)])
        .await;
    let r = t.receive(&t.a, 2).await;
    let third = t.recv(&t.a).await;
    assert_eq!(third.id, 3);
    let mut w = t.watch().await;
    assert_eq!(t.qs().leave(&t.q, &t.a).await.unwrap(), 3);
    wakes(&mut w, "leave").await;
    assert_eq!(t.deaths().await, [(1, 1, "consumer gone".to_owned())]);
    assert_eq!(t.places().await, (2, 0, 0, 1));
    assert_eq!(t.stats().await.consumers, []);
    for d in r.deliveries.iter().chain([&third]) {
        assert_eq!(t.ack(d).await, Settle::Stale);
    }
    let seen: Vec<_> = (t.receive(&t.c, 5).await.deliveries.iter())
        .map(|d| (d.id, d.attempt))
        .collect();
    assert_eq!(seen, [(2, 1), (3, 2)]);
    assert_eq!(t.qs().leave(&t.q, &t.a).await.unwrap(), 0);
    assert_eq!(t.qs().leave(&key("never"), &t.a).await.unwrap(), 0);
}

/// Rule 7's give-back: a receive's id lives with each delivery it made
/// (the item hash's `g`, written by every delivery); `give_back` returns
/// only that receive's current deliveries to that consumer, ready at once
/// with the started attempt taken back, and wakes the watchers; a
/// delivery with no id (made before ids were kept) is left to its lease.
#[tokio::test]
async fn give_back_returns_only_its_receives_deliveries() {
    let t = Q::new("giveback").await;
    t.push(vec![item("a"), item("b"), item("c")]).await;
    let first = t.receive_with(&t.a, opts(2).receive_id(11)).await;
    assert_eq!(ids(&first), [1, 2]);
    let third = t.receive_with(&t.a, opts(1).receive_id(12)).await;
    assert_eq!(ids(&third), [3]);
    let item_key = |id: u64| format!("coord:{{giveback:queue:1:q}}:{id}:i");
    let g = |id: u64| {
        let v = RedisServer::shared().command(&["HGET", &item_key(id), "g"]);
        text(v.expect("HGET"))
    };
    assert_eq!([g(1), g(2), g(3)], ["11", "11", "12"]);
    let mut w = t.watch().await;
    let qs = t.qs();
    assert_eq!(qs.give_back(&t.q, &t.c, 11).await.unwrap(), 0, "not c's");
    assert_eq!(qs.give_back(&t.q, &t.a, 0).await.unwrap(), 0, "0: none");
    assert_eq!(qs.give_back(&t.q, &t.a, 11).await.unwrap(), 2);
    wakes(&mut w, "give_back").await;
    assert_eq!(t.places().await, (2, 0, 1, 0));
    for d in &first.deliveries {
        assert_eq!(t.ack(d).await, Settle::Stale);
    }
    let again = t.receive(&t.c, 2).await;
    let seen: Vec<_> = (again.deliveries.iter())
        .map(|d| (d.id, d.attempt))
        .collect();
    assert_eq!(seen, [(1, 1), (2, 1)]);
    assert_eq!(t.stats().await.redelivered, 0);
    let hdel = RedisServer::shared().command(&["HDEL", &item_key(3), "g"]);
    hdel.expect("HDEL");
    assert_eq!(qs.give_back(&t.q, &t.a, 12).await.unwrap(), 0, "no id kept");
    assert_eq!(t.places().await, (0, 0, 3, 0));
}
