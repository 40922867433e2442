//! Dead letters and counts: dead items are listed in pages by id (each
//! decoded, with its attempts, reason and time of death), requeued with a
//! fresh attempt count, or removed; `stats()` counts where items are, the
//! live consumers, and the deliveries, redeliveries, steals and dead
//! letters so far.

use super::*;

cases! {
    family: "queue", needs: [Need::Queues];

/// Five dead items are listed in pages of two by id (`after` the last id
/// seen), each decoded with its one attempt, its reason and a time of
/// death in order; one requeued is ready again and delivered as attempt 1
/// under its id, no longer dead; one removed is gone (neither listed nor
/// requeued); a second requeue or removal, or one of an id never dead, is
/// `false`.
pub async fn queue_dead_letters_paged_requeued_removed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let values = [10, 11, 12, 13, 14];
    let ids: Vec<u64> = (q.push_many(&values).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    let mut consumer = q.consumer();
    for i in 0..values.len() {
        let d = within(consumer.receive(), &format!("item {i}")).await;
        let reason = format!("reason {}", d.item());
        within(d.dead_letter(reason), "dead_letter").await;
    }
    let page = |after: u64| {
        let q = q.clone();
        async move { q.dead_letters(after, 2).await.expect("dead_letters") }
    };
    let p1 = page(0).await;
    let p2 = page(ids[1]).await;
    let p3 = page(ids[3]).await;
    let page_ids = |p: &[DeadLetter<u64>]| p.iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(page_ids(&p1), ids[..2], "page 1");
    assert_eq!(page_ids(&p2), ids[2..4], "page 2");
    assert_eq!(page_ids(&p3), ids[4..], "page 3");
    assert!(page(ids[4]).await.is_empty(), "after the last");
    let all: Vec<DeadLetter<u64>> = [p1, p2, p3].concat();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    for (d, v) in all.iter().zip(values) {
        assert_eq!((&d.item, d.attempts), (&Ok(v), 1), "{d:?}");
        assert_eq!(d.reason, format!("reason {v}"));
        assert!(
            d.died_at > now - day && d.died_at < now + day,
            "the backend's time of death: {d:?}"
        );
    }
    for w in all.windows(2) {
        assert!(w[0].died_at <= w[1].died_at, "deaths in order: {w:?}");
    }
    assert!(q.requeue_dead(ids[2]).await.unwrap(), "requeued");
    assert!(!q.requeue_dead(ids[2]).await.unwrap(), "no longer dead");
    let s = stats(&c).await;
    assert_eq!(places(&s), (1, 0, 0, 4), "{s:?}");
    let d = within(consumer.receive(), "the requeued item").await;
    assert_eq!((d.id(), *d.item(), d.attempt()), (ids[2], 12, 1));
    within(d.ack(), "ack").await;
    assert!(q.remove_dead(ids[3]).await.unwrap(), "removed");
    assert!(!q.remove_dead(ids[3]).await.unwrap(), "removed twice");
    assert!(!q.requeue_dead(ids[3]).await.unwrap(), "requeue a removed one");
    let never = ids[4] + 1000;
    assert!(!q.requeue_dead(never).await.unwrap(), "requeue: never dead");
    assert!(!q.remove_dead(never).await.unwrap(), "remove: never dead");
    let left: Vec<u64> = (q.dead_letters(0, 10).await.unwrap().iter())
        .map(|d| d.id)
        .collect();
    assert_eq!(left, [ids[0], ids[1], ids[4]]);
    let s = stats(&c).await;
    assert_eq!(places(&s), (0, 0, 0, 3), "{s:?}");
    assert_eq!(s.dead_lettered, 5, "moved to dead so far: {s:?}");
    let elsewhere = c.queue::<u64>("never-used").dead_letters(0, 10).await;
    assert!(elsewhere.unwrap().is_empty(), "a queue never used");
}

/// An item that used all its attempts (2) and died, once requeued, wakes a
/// waiting consumer and is delivered as attempt 1 with its attempts given
/// again: its next nack requeues it rather than killing it.
pub async fn queue_requeued_dead_item_gets_fresh_attempts(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let q = numbers(&a);
    let id = q.push_with(&7, PushOptions::new().max_attempts(2)).await;
    let id = id.unwrap().id();
    let mut consumer = q.consumer().backoff(ms(1), ms(2));
    for attempt in 1..=2 {
        let d = within(consumer.receive(), &format!("attempt {attempt}")).await;
        let requeued = within(d.nack("failed"), "nack").await;
        assert_eq!(requeued, attempt == 1, "attempt {attempt}");
    }
    assert_eq!(places(&stats(&a).await), (0, 0, 0, 1), "dead");
    let mut waiter = q.consumer().backoff(ms(1), ms(2));
    let waiting = async { within(waiter.receive(), "woken by the requeue").await };
    let requeue = async {
        // The waiter looked once (a second consumer) before the requeue.
        stats_when(&b, "the waiter waits", |s| s.consumers.len() == 2).await;
        numbers(&b).requeue_dead(id).await.expect("requeue_dead")
    };
    let (d, requeued) = tokio::join!(waiting, requeue);
    assert!(requeued, "it was dead");
    assert_eq!((d.id(), d.attempt(), d.max_attempts()), (id, 1, 2));
    let again = within(d.nack("failed again"), "nack").await;
    assert!(again, "attempts given again: requeued, not dead");
    let d = within(waiter.receive(), "attempt 2 after the requeue").await;
    assert_eq!((d.id(), d.attempt()), (id, 2));
    within(d.ack(), "ack").await;
    let s = stats(&a).await;
    assert_eq!(places(&s), (0, 0, 0, 0), "{s:?}");
    assert_eq!(s.dead_lettered, 1, "{s:?}");
}

/// `stats()` counts, step by step: items ready, delayed, in flight and
/// dead; the live consumers (one entry each, gone once left); and the
/// deliveries (prefetched ones included), redeliveries (a nacked item
/// delivered again), steals and dead letters so far.
pub async fn queue_stats_count_places_consumers_and_deliveries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let q = numbers(&a);
    let ids: Vec<u64> = (q.push_many(&[1, 2, 3]).await.unwrap().iter())
        .map(|o| o.id())
        .collect();
    q.push_with(&4, PushOptions::new().delay(ms(60_000)))
        .await
        .unwrap();
    let s = stats(&a).await;
    assert_eq!(places(&s), (3, 1, 0, 0), "{s:?}");
    assert_eq!(counts(&s), (0, 0, 0, 0), "{s:?}");
    assert!(s.consumers.is_empty(), "{s:?}");
    let mut first = q.consumer().prefetch(2).ttl(ms(5000));
    let a1 = within(first.receive(), "a's first").await;
    let s = stats(&a).await;
    assert_eq!(places(&s), (1, 1, 2, 0), "{s:?}");
    assert_eq!((counts(&s), consumers(&s)), ((2, 0, 0, 0), vec!["a".into()]));
    let mut second = numbers(&b)
        .consumer()
        .steal(true)
        .ttl(ms(5000))
        .backoff(ms(1), ms(2));
    let b1 = within(second.receive(), "b's first: the ready one").await;
    assert_eq!((b1.id(), b1.was_stolen()), (ids[2], false));
    let b2 = within(second.receive(), "b's second: a steal").await;
    assert_eq!((b2.id(), b2.was_stolen()), (ids[1], true));
    let s = stats(&a).await;
    assert_eq!(places(&s), (0, 1, 3, 0), "{s:?}");
    assert_eq!(counts(&s), (4, 0, 1, 0), "{s:?}");
    assert_eq!(consumers(&s), ["a", "b"]);
    assert!(within(b1.nack("once"), "nack").await, "requeued");
    let b3 = within(second.receive(), "the nacked one again").await;
    assert_eq!((b3.id(), b3.attempt()), (ids[2], 2));
    within(b3.dead_letter("no more"), "dead_letter").await;
    within(a1.ack(), "ack").await;
    within(b2.ack(), "ack").await;
    let s = stats(&a).await;
    assert_eq!(places(&s), (0, 1, 0, 1), "{s:?}");
    assert_eq!(counts(&s), (5, 1, 1, 1), "{s:?}");
    assert_eq!(within(first.leave(), "leave").await, 0, "nothing held");
    let s = stats(&a).await;
    assert_eq!(consumers(&s), ["b"], "a left");
}
}
