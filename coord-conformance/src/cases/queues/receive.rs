//! Receiving: a waiting consumer is woken by a push (not by polling), a
//! wait ends with `Timeout`, prefetched deliveries are started when handed
//! out, and an item that does not decode is dead-lettered while the
//! consumer goes on.

use super::*;

cases! {
    family: "queue", needs: [Need::Queues];

/// A consumer waiting on an empty queue is woken by another client's push
/// and gets the item promptly: well within its 10 s retry delay, so by the
/// queue's notification, not by polling.
pub async fn queue_receive_woken_by_push(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut consumer = numbers(&a).consumer();
    let waiting = async {
        let d = consumer.receive().await;
        (d, Instant::now())
    };
    let push = async {
        // The consumer looked once (and is registered) before the push.
        stats_when(&b, "the consumer registered", |s| !s.consumers.is_empty()).await;
        let t = Instant::now();
        numbers(&b).push(&7).await.expect("push");
        t
    };
    let both = timeout(PROMPTLY * 2, async { tokio::join!(waiting, push) }).await;
    let ((d, got_at), pushed_at) = both.expect("the waiting receive returned");
    let d = d.expect("receive");
    assert_eq!((*d.item(), d.attempt()), (7, 1));
    let after = got_at.saturating_duration_since(pushed_at);
    assert!(after < PROMPTLY, "woken {after:?} after the push");
    within(d.ack(), "ack").await;
}

/// A receive waiting on an empty queue gets an item pushed meanwhile with
/// a delay once it is due, promptly: the push tells the waiting consumer
/// to look again, and the look says when the item is due. (The delayed
/// push woke nobody: the consumer slept, the item ready, until its own
/// heartbeat swept it, 3.3 s after.)
pub async fn queue_waiting_receive_gets_a_delayed_push_when_due(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let mut consumer = numbers(&a).consumer();
    let delay = ms(300);
    let waiting = async {
        let d = consumer.receive().await;
        (d, Instant::now())
    };
    let push = async {
        // The consumer looked twice (the second time watching): it waits.
        let looked = eventually(PROMPTLY, || async { (switch.answered("receive") >= 2).then_some(()) });
        assert!(looked.await.is_some(), "the consumer waits");
        let t = Instant::now();
        let opts = PushOptions::new().delay(delay);
        numbers(&b).push_with(&7, opts).await.expect("push");
        t
    };
    let both = timeout(PROMPTLY * 2, async { tokio::join!(waiting, push) }).await;
    let ((d, got_at), pushed_at) = both.expect("the waiting receive returned");
    let d = d.expect("receive");
    assert_eq!((*d.item(), d.attempt()), (7, 1));
    let after = got_at.saturating_duration_since(pushed_at);
    assert!(after + ms(5) >= delay, "delivered {after:?} after the push, before due");
    assert!(after < delay + PROMPTLY, "delivered {after:?} after the push");
    within(d.ack(), "ack").await;
}

/// A receive on an empty queue waits `wait_timeout` and ends with
/// `Timeout`; so does one whose only item is delayed past the wait, which
/// stays delayed.
pub async fn queue_receive_times_out_on_empty_queue(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let wait = ms(150);
    let mut consumer = q.consumer().wait_timeout(Some(wait));
    let t0 = Instant::now();
    let res = timeout(PROMPTLY, consumer.receive()).await;
    let waited = t0.elapsed();
    assert_timeout(res.expect("returned"), "an empty queue");
    assert!(waited + ms(2) >= wait, "waited only {waited:?}");
    let delayed = PushOptions::new().delay(ms(60_000));
    q.push_with(&1, delayed).await.unwrap();
    let res = timeout(PROMPTLY, consumer.receive()).await;
    assert_timeout(res.expect("returned"), "an item delayed by a minute");
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 1, 0, 0), "still delayed: {s:?}");
    assert_eq!(s.delivered, 0, "{s:?}");
}

/// A retry delay under a millisecond (valid: above zero) never panics a
/// waiting consumer, also when the backend told it when to look again
/// (here: when another consumer's delivery ends): it waits out its
/// `wait_timeout` with `Timeout`.
pub async fn queue_retry_delay_under_a_millisecond_does_not_panic(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let quick = default_options().retry_delay(Duration::from_micros(100));
    let quick = ctx.client_with("quick", quick).await;
    numbers(&a).push(&1).await.unwrap();
    let mut first = numbers(&a).consumer();
    let held = within(first.receive(), "the first receive").await;
    let mut other = numbers(&quick).consumer().wait_timeout(Some(ms(200)));
    let res = timeout(PROMPTLY, other.receive()).await;
    assert_timeout(res.expect("returned"), "the only item is held");
    within(held.ack(), "ack").await;
}

/// With `prefetch(3)` one receive brings three deliveries (all in flight
/// at once); the first is started, each other is started when `receive`
/// hands it out: given back afterwards (the consumer leaves), the two
/// handed out count an attempt (delivered again as attempt 2) and the one
/// never handed out does not (attempt 1 again).
pub async fn queue_prefetch_started_when_handed_out(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let q = numbers(&a);
    let ids: Vec<u64> = (q.push_many(&[1, 2, 3]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut prefetcher = q.consumer().prefetch(3).ttl(ms(5000));
    let d1 = within(prefetcher.receive(), "the first").await;
    let s = stats(&a).await;
    assert_eq!(places(&s), (0, 0, 3, 0), "three in flight: {s:?}");
    assert_eq!(s.delivered, 3, "in one receive: {s:?}");
    let d2 = within(prefetcher.receive(), "the second, prefetched").await;
    assert_eq!((d1.id(), d2.id()), (ids[0], ids[1]), "delivery order");
    assert_eq!((d1.attempt(), d2.attempt()), (1, 1));
    assert_eq!(stats(&a).await.delivered, 3, "handed out, not delivered again");
    let back = within(prefetcher.leave(), "leave").await;
    assert_eq!(back, 3, "every delivery given back");
    let mut other = numbers(&b).consumer();
    let mut again = Vec::new();
    for i in 0..3 {
        let d = within(other.receive(), &format!("again {i}")).await;
        again.push((d.id(), d.attempt()));
        within(d.ack(), "ack").await;
    }
    assert_eq!(
        again,
        [(ids[0], 2), (ids[1], 2), (ids[2], 1)],
        "attempts of the started ones counted, not the prefetched one's"
    );
    let s = stats(&a).await;
    assert_eq!(counts(&s), (6, 2, 0, 0), "two redeliveries: {s:?}");
    assert_lease_lost(d1.ack().await, "the left consumer's delivery");
}

/// An item that does not decode as the consumer's type is moved to the
/// dead letters with the decode error, and the same receive goes on to the
/// next item; the dead letter lists the value for a type it decodes as.
pub async fn queue_undecodable_item_dead_lettered_consumer_goes_on(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let bad = texts(&c).push(&"not a number".to_owned()).await.unwrap().id();
    let good = numbers(&c).push(&7).await.unwrap().id();
    let mut consumer = numbers(&c).consumer();
    let d = within(consumer.receive(), "the next item that decodes").await;
    assert_eq!((d.id(), *d.item(), d.attempt()), (good, 7, 1));
    within(d.ack(), "ack").await;
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 0, 1), "{s:?}");
    assert_eq!(s.dead_lettered, 1, "{s:?}");
    let dead = numbers(&c).dead_letters(0, 10).await.expect("dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, bad);
    assert!(
        dead[0].reason.contains("decode"),
        "the decode error: {:?}",
        dead[0].reason
    );
    assert!(dead[0].item.is_err(), "not a u64: {:?}", dead[0].item);
    let as_text = texts(&c).dead_letters(0, 10).await.unwrap();
    assert_eq!(as_text[0].item.as_deref(), Ok("not a number"));
}
}
