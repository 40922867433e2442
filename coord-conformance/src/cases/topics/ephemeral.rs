//! The ephemeral tier: at most once. A listener hears what is published
//! while it listens, not what came before; nothing is kept for the
//! durable subscriptions; a listener that fell behind its buffer is told
//! it may have missed events.

use super::*;

cases! {
    family: "topic", needs: [Need::Topics];

/// A listener hears an ephemeral event published while it listens; one
/// that starts listening later does not hear it (but hears the next); a
/// durable subscription never sees ephemeral events.
pub async fn topic_ephemeral_reaches_only_connected_listeners(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut durable = numbers(&a).subscriber("s").start(Start::Earliest);
    durable.subscribe().await.unwrap();
    let mut early = within(numbers(&a).listen(), "listen").await;
    let reached = numbers(&b).publish_ephemeral(&1).await.unwrap();
    assert!(reached >= 1, "reached {reached}");
    assert_eq!(within(early.next(), "early hears 1").await, Ephemeral::Event(1));
    let mut late = within(numbers(&a).listen(), "listen late").await;
    numbers(&b).publish_ephemeral(&2).await.unwrap();
    assert_eq!(within(late.next(), "late hears 2, not 1").await, Ephemeral::Event(2));
    assert_eq!(within(early.next(), "early hears 2").await, Ephemeral::Event(2));
    nothing(durable, ms(200), "ephemeral events are not kept").await;
}

/// An ephemeral event of another kind is refused by the listener with the
/// reason, and the listener goes on.
pub async fn topic_ephemeral_refuses_other_kinds(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("a").await;
    let mut l = within(numbers(&c).kind("n", 1).listen(), "listen").await;
    numbers(&c).kind("n", 2).publish_ephemeral(&1).await.unwrap();
    numbers(&c).kind("n", 1).publish_ephemeral(&2).await.unwrap();
    match within(l.next(), "v2").await {
        Ephemeral::Refused(why) => assert!(why.contains("version 2"), "{why}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(within(l.next(), "v1").await, Ephemeral::Event(2));
}

/// A listener that does not read while more events are published than its
/// buffer holds (1,024 by the contract; 2,000 here) loses some, and is told
/// so (`MayHaveMissed`) before it has heard them all; then it goes on
/// hearing new events.
pub async fn topic_ephemeral_full_buffer_tells_may_have_missed(h: &dyn Harness) {
    const SENT: u64 = 2_000;
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut l = within(numbers(&a).listen(), "listen").await;
    for i in 0..SENT {
        numbers(&b).publish_ephemeral(&i).await.unwrap();
    }
    let (mut heard, mut told) = (0, false);
    // Everything the listener still has, up to the notice; nothing new comes.
    while !told {
        match timeout(ms(500), l.next()).await {
            Ok(Ok(Ephemeral::Event(_))) => heard += 1,
            Ok(Ok(Ephemeral::MayHaveMissed)) => told = true,
            Ok(other) => panic!("after {heard} events: {other:?}"),
            Err(_) => break,
        }
    }
    assert!(told, "heard {heard} of {SENT} events and was never told it may have missed some");
    assert!(heard < SENT, "told it may have missed events after hearing all {SENT}");
    // The listener goes on: what it still buffers, then a new event. Events
    // still on their way when the notice came (a remote backend delivers
    // them after `publish` returned) may fill the buffer again: another
    // notice, never an event that was not sent.
    loop {
        match timeout(ms(300), l.next()).await {
            Ok(Ok(Ephemeral::Event(n))) => assert!(n < SENT, "{n}"),
            Ok(Ok(Ephemeral::MayHaveMissed)) => {}
            Ok(other) => panic!("the buffered events: {other:?}"),
            Err(_) => break,
        }
    }
    numbers(&b).publish_ephemeral(&SENT).await.unwrap();
    let next = within(l.next(), "the listener goes on").await;
    assert_eq!(next, Ephemeral::Event(SENT));
}

/// A listener waiting for an ephemeral event when its client is closed
/// ends at once with `Error::Closed`, as every family's waits do
/// (`common`), and so does every later `next`.
pub async fn topic_listener_waiting_ends_at_once_when_its_client_closes(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.client("b").await;
    let mut l = within(numbers(&b).listen(), "listen").await;
    let task = tokio::spawn(async move {
        let first = l.next().await.map(drop);
        (first, l.next().await.map(drop))
    });
    // Long enough to wait (a close before that would pass vacuously).
    sleep(ms(300)).await;
    assert!(!task.is_finished(), "waiting before the close");
    at_once(b.close()).await.expect("close");
    let (first, then) = join(task, ms(2000), "the listener").await;
    assert!(matches!(first, Err(Error::Closed { .. })), "{first:?}");
    assert!(matches!(then, Err(Error::Closed { .. })), "then: {then:?}");
}
}
