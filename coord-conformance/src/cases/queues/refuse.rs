//! Refusals before any I/O: a bad item, push, queue name, consumer option
//! or page is `InvalidArgument` naming the queue and the limit. The cases
//! make them on a client whose backend is switched off, where anything that
//! reached the backend would be `Unavailable`; once it is switched on again,
//! the queue shows that nothing was pushed nor registered.

use std::collections::BTreeMap;

use super::*;

/// Panics unless `message` names the queue and every one of `parts`.
#[track_caller]
fn names(message: &str, parts: &[&str]) {
    assert!(message.contains("\"q\""), "names the queue: {message}");
    for p in parts {
        assert!(message.contains(p), "names {p:?}: {message}");
    }
}

/// Panics unless the queue on `client` is untouched: nothing pushed, no
/// consumer, no delivery.
async fn assert_untouched(client: &Client, what: &str) {
    let s = stats(client).await;
    assert_eq!(places(&s), (0, 0, 0, 0), "{what}: {s:?}");
    assert_eq!(counts(&s), (0, 0, 0, 0), "{what}: {s:?}");
    assert!(s.consumers.is_empty(), "{what}: {s:?}");
}

cases! {
    family: "queue", needs: [Need::Queues];

/// An item JSON cannot carry back as its type (a NaN or infinite float:
/// serde_json writes `null`, which no `f64` reads) is refused before any
/// I/O, naming the queue and the type, from a push and a `push_many`
/// alike (decision 0055): it was pushed, and its first consumer
/// dead-lettered it as undecodable.
pub async fn queue_item_that_does_not_read_back_is_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = offline(&ctx).await;
    let q = c.queue::<f64>(Q);
    names(&invalid(q.push(&f64::NAN).await, "a push"), &["f64"]);
    let many = q.push_many(&[1.0, f64::INFINITY]).await;
    names(&invalid(many, "a push_many"), &["f64"]);
    switch.on();
    assert_untouched(&c, "nothing pushed").await;
}

/// A priority above 9, attempts outside 1..=1,000 (given with the push or
/// as the queue's default), a bad dedup id, a dedup window outside
/// 1 ms..=24 h and a delay above 24 h are each refused before any I/O,
/// naming the queue and the limit; a valid push on the same client does
/// reach the backend (`Unavailable` while it is off).
pub async fn queue_bad_item_options_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = offline(&ctx).await;
    let q = numbers(&c);
    let push = |opts: PushOptions| {
        let q = q.clone();
        async move { q.push_with(&1, opts).await }
    };
    let e = invalid(push(PushOptions::new().priority(10)).await, "priority 10");
    names(&e, &["priority 10", "9"]);
    let e = invalid(push(PushOptions::new().max_attempts(0)).await, "0 attempts");
    names(&e, &["max_attempts 0", "1..=1000"]);
    let over = MAX_ITEM_ATTEMPTS + 1;
    let e = invalid(push(PushOptions::new().max_attempts(over)).await, "1,001");
    names(&e, &["max_attempts 1001", "1..=1000"]);
    let zero_default = numbers(&c).max_attempts(0);
    let e = invalid(zero_default.push(&1).await, "the queue's default of 0");
    names(&e, &["max_attempts 0"]);
    let e = invalid(push(PushOptions::new().dedup("", ms(1000))).await, "empty id");
    names(&e, &["dedup id"]);
    let bell = PushOptions::new().dedup("a\u{7}b", ms(1000));
    let e = invalid(push(bell).await, "a control character in the id");
    names(&e, &["dedup id"]);
    let e = invalid(push(PushOptions::new().dedup("d", ms(0))).await, "window 0");
    names(&e, &["dedup window", "\"d\""]);
    let day = MAX_TTL + ms(1);
    let e = invalid(push(PushOptions::new().dedup("d", day)).await, "window > 24 h");
    names(&e, &["dedup window"]);
    let e = invalid(push(PushOptions::new().delay(day)).await, "delay > 24 h");
    names(&e, &["delay"]);
    match push(PushOptions::new().priority(9).max_attempts(1000)).await {
        Err(e) if e.is_retryable() => {}
        other => panic!("a valid push reaches the switched-off backend: {other:?}"),
    }
    switch.on();
    assert_untouched(&c, "after the refusals").await;
}

/// An item over 512 KiB, an item that does not encode, and a batch of
/// 1,001 items are refused before any I/O; a batch with one bad item among
/// good ones is refused whole (nothing of it pushed, even online).
pub async fn queue_oversized_or_unencodable_push_refused_whole(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = offline(&ctx).await;
    let big = "x".repeat(MAX_PAYLOAD_BYTES);
    let e = invalid(texts(&c).push(&big).await, "an item over 512 KiB");
    names(&e, &["more than the limit of 524288"]);
    let maps = c.queue::<BTreeMap<(u8, u8), u8>>(Q);
    let unencodable = BTreeMap::from([((1, 2), 3)]);
    let e = invalid(maps.push(&unencodable).await, "a map with tuple keys");
    names(&e, &["does not encode"]);
    let many: Vec<u64> = (0..=MAX_BATCH as u64).collect();
    let e = invalid(numbers(&c).push_many(&many).await, "1,001 items");
    names(&e, &["1001 items", "limit of 1000"]);
    let empty = numbers(&c).push_many(&[]).await;
    assert!(empty.expect("an empty push needs no I/O").is_empty());
    switch.on();
    let online = ctx.client("online").await;
    let q = numbers(&online);
    let batch = vec![
        (&1, PushOptions::new()),
        (&2, PushOptions::new().priority(10)),
        (&3, PushOptions::new()),
    ];
    let e = invalid(q.push_many_with(batch).await, "a bad item among good ones");
    names(&e, &["priority 10"]);
    let ok = "ok".to_owned();
    let batch = vec![(&ok, PushOptions::new()), (&big, PushOptions::new())];
    invalid(texts(&online).push_many_with(batch).await, "a large item last");
    assert_untouched(&online, "no item of a refused batch").await;
}

/// A queue name that is not a key (empty, a control character) is refused
/// by every operation of the queue and of its consumers, before any I/O.
pub async fn queue_bad_name_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, _switch) = offline(&ctx).await;
    for name in ["", "a\u{0}b"] {
        let q = c.queue::<u64>(name);
        let what = |op: &str| format!("{op} on queue {name:?}");
        assert_invalid(q.push(&1).await, &what("push"));
        assert_invalid(q.push_many(&[1, 2]).await, &what("push_many"));
        assert_invalid(q.stats().await, &what("stats"));
        assert_invalid(q.dead_letters(0, 10).await, &what("dead_letters"));
        assert_invalid(q.requeue_dead(1).await, &what("requeue_dead"));
        assert_invalid(q.remove_dead(1).await, &what("remove_dead"));
        assert_invalid(q.consumer().receive().await, &what("receive"));
        assert_invalid(q.consumer().leave().await, &what("leave"));
    }
}

/// A consumer's bad options — a lease TTL or presence TTL outside
/// 1 ms..=24 h, a prefetch outside 1..=1,000, a zero retry delay, a renewal
/// interval not below the TTL — and a dead-letter page outside 1..=1,000
/// are refused before any I/O; the consumer is not registered. A valid
/// receive on the same client reaches the backend (`Unavailable`).
pub async fn queue_bad_consumer_options_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, switch) = offline(&ctx).await;
    let q = numbers(&c);
    let day = MAX_TTL + ms(1);
    let e = invalid(q.consumer().ttl(ms(0)).receive().await, "a lease TTL of 0");
    assert!(e.contains("ttl"), "{e}");
    invalid(q.consumer().ttl(day).receive().await, "a lease TTL > 24 h");
    let e = invalid(
        q.consumer().presence_ttl(ms(0)).receive().await,
        "a presence TTL of 0",
    );
    assert!(e.contains("ttl 0ns"), "{e}");
    invalid(
        q.consumer().presence_ttl(day).receive().await,
        "a presence TTL > 24 h",
    );
    let e = invalid(q.consumer().prefetch(0).receive().await, "prefetch 0");
    names(&e, &["prefetch 0", "1..=1000"]);
    let over = MAX_BATCH as u32 + 1;
    let e = invalid(q.consumer().prefetch(over).receive().await, "prefetch 1,001");
    names(&e, &["prefetch 1001"]);
    let no_retry = default_options().retry_delay(ms(0));
    let e = invalid(
        q.consumer().with_options(no_retry).receive().await,
        "a zero retry delay",
    );
    assert!(e.contains("retry_delay"), "{e}");
    let slow = default_options().ttl(ms(100)).extend_interval(Some(ms(100)));
    let e = invalid(
        q.consumer().with_options(slow).receive().await,
        "a renewal interval equal to the TTL",
    );
    assert!(e.contains("extend_interval"), "{e}");
    let e = invalid(q.dead_letters(0, 0).await, "a page of 0");
    names(&e, &["0 dead letters", "1..=1000"]);
    invalid(q.dead_letters(0, over).await, "a page of 1,001");
    let mut valid = q.consumer().ttl(ms(10)).presence_ttl(MAX_TTL).prefetch(1000);
    match timeout(PROMPTLY, valid.receive()).await {
        Ok(Err(e)) if e.is_retryable() => {}
        other => panic!("a valid receive reaches the switched-off backend: {other:?}"),
    }
    switch.on();
    assert_untouched(&c, "after the refusals").await;
}
}
