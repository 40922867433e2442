//! Pushing and the order of delivery: a typed value comes back as pushed;
//! within a priority, items come in push order (ids increase per queue),
//! higher priorities first; a delayed item not before its delay; a dedup id
//! pushed again within its window pushes nothing, and a new item after it.

use super::*;

/// A typed value with text, numbers, a list and an option.
type Order = (String, u32, Vec<bool>, Option<i64>);

/// The ids of `outcomes`, each of which must be `Pushed`.
#[track_caller]
fn pushed(outcomes: &[PushOutcome], what: &str) -> Vec<u64> {
    (outcomes.iter())
        .map(|o| match o {
            PushOutcome::Pushed(id) => *id,
            other => panic!("{what}: expected Pushed, got {other:?} in {outcomes:?}"),
        })
        .collect()
}

/// Panics unless `ids` strictly increase.
#[track_caller]
fn assert_ids_increase(ids: &[u64], what: &str) {
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "{what}: ids not increasing: {ids:?}");
    }
}

cases! {
    family: "queue", needs: [Need::Queues];

/// A typed value pushed by one client comes back equal to another client's
/// consumer, with the id the push returned, attempt 1, the attempts it was
/// given (the queue's default of 5, a push's own, or the queue's own
/// default), a fencing token, not stolen, its lease held.
pub async fn queue_push_receive_round_trip_typed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let producer = a.queue::<Order>(Q);
    let order: Order = (
        "ünï 🚀 \"quoted\"\n".to_owned(),
        u32::MAX,
        vec![true, false, true],
        Some(i64::MIN),
    );
    let id = producer.push(&order).await.expect("push").id();
    let mut consumer = b.queue::<Order>(Q).consumer();
    let d = within(consumer.receive(), "the typed item").await;
    assert_eq!(d.item(), &order, "the value as pushed");
    assert_eq!((d.id(), d.attempt(), d.max_attempts()), (id, 1, 5));
    assert!(!d.was_stolen() && d.is_held(), "{d:?}");
    assert!(!d.lost().is_lost(), "{d:?}");
    within(d.ack(), "ack").await;
    let none = ("".to_owned(), 0, vec![], None);
    let opts = PushOptions::new().max_attempts(3);
    let id = producer.push_with(&none, opts).await.unwrap().id();
    let d = within(consumer.receive(), "with 3 attempts").await;
    assert_eq!((d.item(), d.id(), d.max_attempts()), (&none, id, 3));
    within(d.ack(), "ack").await;
    let twice = a.queue::<Order>(Q).max_attempts(2);
    twice.push(&order).await.unwrap();
    let d = within(consumer.receive(), "the queue's default of 2").await;
    assert_eq!((d.item(), d.max_attempts()), (&order, 2));
    within(d.ack(), "ack").await;
}

/// Items of one priority come in push order, whoever pushed them and
/// however (one by one or in batches): their ids increase per queue.
pub async fn queue_fifo_within_priority(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut ids = Vec::new();
    for v in 0..10u64 {
        let producer = if v % 2 == 0 { &a } else { &b };
        let out = numbers(producer).push(&v).await.expect("push");
        ids.extend(pushed(&[out], "one by one"));
    }
    let out = numbers(&a).push_many(&[10, 11, 12]).await.unwrap();
    ids.extend(pushed(&out, "a batch"));
    assert_ids_increase(&ids, "pushes in turn");
    let mut consumer = numbers(&b).consumer();
    let got = drain!(consumer, 13, "FIFO");
    assert_eq!(got, (0..13).collect::<Vec<u64>>(), "push order");
}

/// Higher priorities are delivered first, push order within each; an item
/// of a higher priority pushed later goes ahead of those waiting.
pub async fn queue_higher_priority_first(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = texts(&c);
    let items: Vec<(String, u8)> = [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5), ("f", 1)]
        .into_iter()
        .map(|(s, p)| (s.to_owned(), p))
        .collect();
    let batch = (items.iter())
        .map(|(s, p)| (s, PushOptions::new().priority(*p)))
        .collect();
    q.push_many_with(batch).await.expect("push");
    let mut consumer = q.consumer();
    let first = drain!(consumer, 2, "the first two");
    assert_eq!(first, ["d", "b"], "9, then the first 5");
    let late = PushOptions::new().priority(7);
    q.push_with(&"g".to_owned(), late).await.unwrap();
    let rest = drain!(consumer, 5, "the rest");
    assert_eq!(rest, ["g", "e", "f", "a", "c"], "the later 7 goes first");
}

/// A delayed item is not delivered before its delay has passed (an item
/// pushed after it without delay goes first); a consumer waiting for it is
/// told when to look (not its 10 s retry delay), and gets it as attempt 1.
pub async fn queue_delayed_item_not_delivered_before_due(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let delay = ms(300);
    let t0 = Instant::now();
    let later = q.push_with(&1, PushOptions::new().delay(delay)).await;
    let later = later.expect("push").id();
    q.push(&2).await.unwrap();
    let mut consumer = q.consumer();
    let d = within(consumer.receive(), "the item without delay").await;
    assert_eq!(*d.item(), 2, "the one not delayed first");
    within(d.ack(), "ack").await;
    let d = within(consumer.receive(), "the delayed item").await;
    let waited = t0.elapsed();
    assert_eq!((*d.item(), d.id(), d.attempt()), (1, later, 1));
    assert!(
        waited + ms(2) >= delay,
        "delivered {waited:?} after its push, before its delay of {delay:?}"
    );
    within(d.ack(), "ack").await;
}

/// A push whose dedup id was pushed within its window pushes nothing and
/// returns the first item's id as a duplicate: alone, in a batch (also a
/// repeat within one batch), and after the first item was acked. Another
/// id, or the same id in another queue, is pushed.
pub async fn queue_dedup_within_window_is_noop(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let q = texts(&a);
    let window = ms(60_000);
    let key = |id: &str| PushOptions::new().dedup(id, window);
    let text = |s: &str| s.to_owned();
    let first = q.push_with(&text("first"), key("order-7")).await.unwrap();
    let PushOutcome::Pushed(id1) = first else {
        panic!("the first push: {first:?}");
    };
    let again = texts(&b).push_with(&text("second"), key("order-7")).await;
    assert_eq!(again.unwrap(), PushOutcome::Duplicate(id1), "another client");
    let (third, other, x, y) = (text("third"), text("other"), text("x"), text("y"));
    let batch = vec![
        (&third, key("order-7")),
        (&other, key("order-8")),
        (&x, key("order-9")),
        (&y, key("order-9")),
    ];
    let out = q.push_many_with(batch).await.unwrap();
    let (id2, id3) = (out[1].id(), out[2].id());
    assert_eq!(
        out,
        [
            PushOutcome::Duplicate(id1),
            PushOutcome::Pushed(id2),
            PushOutcome::Pushed(id3),
            PushOutcome::Duplicate(id3),
        ],
        "a batch, in order"
    );
    assert_ids_increase(&[id1, id2, id3], "pushed ones");
    let s = stats(&a).await;
    assert_eq!(s.ready, 3, "three items, no duplicate: {s:?}");
    let mut consumer = q.consumer();
    let got = drain!(consumer, 3, "the pushed ones");
    assert_eq!(got, ["first", "other", "x"]);
    let after_ack = q.push_with(&text("fourth"), key("order-7")).await;
    assert_eq!(after_ack.unwrap(), PushOutcome::Duplicate(id1), "after ack");
    let another = a.queue::<String>("another");
    let elsewhere = another.push_with(&text("z"), key("order-7")).await.unwrap();
    assert!(
        matches!(elsewhere, PushOutcome::Pushed(_)),
        "another queue: {elsewhere:?}"
    );
    assert_eq!(stats(&a).await.ready, 0, "nothing pushed again");
}

/// Once a dedup id's window has passed, pushing it again pushes a new item
/// (a new id), whose own window then starts.
pub async fn queue_dedup_after_window_pushes_new_item(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let window = ms(100);
    let opts = PushOptions::new().dedup("once", window);
    let first = q.push_with(&1, opts.clone()).await.unwrap();
    let replied = Instant::now();
    let PushOutcome::Pushed(id1) = first else {
        panic!("the first push: {first:?}");
    };
    // Time passes for the window to end (a millisecond's rounding aside).
    sleep_until(replied + window + ms(5)).await;
    let second = q.push_with(&2, opts.clone()).await.unwrap();
    let PushOutcome::Pushed(id2) = second else {
        panic!("after the window: expected a new item, got {second:?}");
    };
    assert!(id2 > id1, "a new id: {id2} after {id1}");
    let third = q.push_with(&3, opts).await.unwrap();
    assert_eq!(third, PushOutcome::Duplicate(id2), "the new window");
    let mut consumer = q.consumer();
    let got = drain!(consumer, 2, "both items");
    assert_eq!(got, [1, 2]);
}

/// `push_many` pushes its items in order in one call: increasing ids, the
/// next batch's above them, delivered in that order (also when a consumer
/// prefetches).
pub async fn queue_push_many_in_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let q = numbers(&c);
    let values: Vec<u64> = (0..40).map(|i| (i * 7919) % 101).collect();
    let first = pushed(&q.push_many(&values[..25]).await.unwrap(), "first");
    let second = pushed(&q.push_many(&values[25..]).await.unwrap(), "second");
    assert_eq!((first.len(), second.len()), (25, 15));
    let ids: Vec<u64> = first.iter().chain(&second).copied().collect();
    assert_ids_increase(&ids, "two batches");
    let mut consumer = q.consumer().prefetch(8);
    let mut got = Vec::new();
    for i in 0..values.len() {
        let d = within(consumer.receive(), &format!("item {i}")).await;
        got.push((d.id(), *d.item()));
        within(d.ack(), "ack").await;
    }
    let want: Vec<(u64, u64)> = ids.into_iter().zip(values).collect();
    assert_eq!(got, want, "push order");
}
}
