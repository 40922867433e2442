//! Unit tests of `queues`, one or more per rule of the SPI's step-by-step
//! list.
//!
//! Time is tokio's, paused: it moves only by `advance` (or when every task
//! waits on a timer), so every expiry, delay and presence here is decided,
//! not raced.

use std::time::Duration;

use coord_api::{
    Error, HolderId, InstanceId, Key, MAX_TTL, Namespace,
    spi::{
        Backend, DeadItem, Delivery, Families, MAX_BATCH, MAX_ITEM_ATTEMPTS, MAX_PAYLOAD_BYTES,
        MAX_PRIORITY, MAX_REASON_BYTES, Nack, NewItem, Pushed, QueueBackend, QueueStats,
        ReceiveOptions, Received, Settle, Watch,
    },
};
use tokio::time::advance;

use crate::{MemoryBackend, MemoryStore};

/// A delivery's lease.
const TTL: Duration = Duration::from_secs(10);
/// A consumer's presence, longer than a delivery's lease unless a test
/// says otherwise.
const PRESENCE: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// An item with payload `p` and 3 attempts.
fn item(p: &str) -> NewItem {
    NewItem::new(p.as_bytes().to_vec(), 3)
}

/// An item with `n` attempts.
fn tries(p: &str, n: u32) -> NewItem {
    NewItem::new(p.as_bytes().to_vec(), n)
}

fn ids(r: &Received) -> Vec<u64> {
    r.deliveries.iter().map(|d| d.id).collect()
}

fn pushed(ids: &[u64]) -> Vec<Pushed> {
    ids.iter().map(|&id| Pushed::Pushed(id)).collect()
}

/// A backend on a store of its own, the queue `q` the tests use, and two
/// consumers, `a` and `c`.
struct T {
    b: MemoryBackend,
    q: Key,
    a: HolderId,
    c: HolderId,
}

impl T {
    fn new() -> T {
        T {
            b: MemoryStore::new().backend(Namespace::default()),
            q: k("q"),
            a: HolderId::new(InstanceId::new("a").unwrap()),
            c: HolderId::new(InstanceId::new("c").unwrap()),
        }
    }

    /// The same store and consumers, on queue `q`.
    fn on(&self, q: &str) -> T {
        T {
            b: self.b.clone(),
            q: k(q),
            a: self.a.clone(),
            c: self.c.clone(),
        }
    }

    async fn push(&self, items: Vec<NewItem>) -> Vec<Pushed> {
        self.b.push(&self.q, items).await.unwrap()
    }

    /// Pushes one item with payload `p` and 3 attempts; its id.
    async fn push1(&self, p: &str) -> u64 {
        match self.push(vec![item(p)]).await[..] {
            [Pushed::Pushed(id)] => id,
            ref other => panic!("not pushed: {other:?}"),
        }
    }

    async fn receive_with(&self, who: &HolderId, opts: ReceiveOptions) -> Received {
        self.b.receive(&self.q, who, opts).await.unwrap()
    }

    /// Up to `max` deliveries, no stealing.
    async fn receive(&self, who: &HolderId, max: u32) -> Received {
        self.receive_with(who, ReceiveOptions::new(TTL, PRESENCE).max(max))
            .await
    }

    /// Up to `max` deliveries, stealing.
    async fn steal(&self, who: &HolderId, max: u32) -> Received {
        let opts = ReceiveOptions::new(TTL, PRESENCE).max(max).steal(true);
        self.receive_with(who, opts).await
    }

    /// One delivery, which must be there.
    async fn recv(&self, who: &HolderId) -> Delivery {
        let mut r = self.receive(who, 1).await;
        assert_eq!(r.deliveries.len(), 1, "nothing delivered: {r:?}");
        r.deliveries.remove(0)
    }

    /// `next_in` of a receive that must deliver nothing.
    async fn idle(&self, who: &HolderId) -> Option<Duration> {
        let r = self.receive(who, 1).await;
        assert_eq!(r.deliveries, [], "delivered");
        r.next_in
    }

    async fn extend(&self, d: &Delivery) -> Settle {
        (self.b.extend(&self.q, d.id, d.token, TTL)).await.unwrap()
    }

    async fn ack(&self, d: &Delivery) -> Settle {
        self.b.ack(&self.q, d.id, d.token).await.unwrap()
    }

    async fn nack(&self, d: &Delivery, retry: Duration) -> Nack {
        let nack = self.b.nack(&self.q, d.id, d.token, "boom", retry);
        nack.await.unwrap()
    }

    async fn dead_letter(&self, d: &Delivery, reason: &str) -> Settle {
        let dead = self.b.dead_letter(&self.q, d.id, d.token, reason);
        dead.await.unwrap()
    }

    async fn leave(&self, who: &HolderId) -> u32 {
        self.b.leave(&self.q, who).await.unwrap()
    }

    async fn stats(&self) -> QueueStats {
        self.b.stats(&self.q).await.unwrap()
    }

    /// Every dead item.
    async fn dead(&self) -> Vec<DeadItem> {
        (self.b.dead_items(&self.q, 0, MAX_BATCH as u32))
            .await
            .unwrap()
    }

    /// Every dead item's id, attempts and reason.
    async fn deaths(&self) -> Vec<(u64, u32, String)> {
        let dead = self.dead().await;
        dead.into_iter()
            .map(|d| (d.id, d.attempts, d.reason))
            .collect()
    }

    /// (ready, delayed, in flight, dead).
    async fn places(&self) -> (u64, u64, u64, u64) {
        let s = self.stats().await;
        (s.ready, s.delayed, s.in_flight, s.dead)
    }
}

/// Whether `w` wakes without time passing (beyond a millisecond).
async fn woke(w: &mut Box<dyn Watch>) -> bool {
    tokio::time::timeout(MS, w.changed()).await.is_ok()
}

/// The message of an `InvalidArgument`.
fn refused<T: std::fmt::Debug>(r: coord_api::Result<T>) -> String {
    match r {
        Err(Error::InvalidArgument { message }) => message,
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_memory_backend_offers_queues() {
    let t = T::new();
    assert!(t.b.queues().is_some());
    assert!(Families::of(&t.b).queues);
}

// Rule 2: push.

#[tokio::test(start_paused = true)]
async fn push_gives_ids_from_one_per_queue_and_namespace() {
    let t = T::new();
    assert_eq!(t.push(vec![]).await, []);
    let three = vec![item("a"), item("b"), item("c")];
    assert_eq!(t.push(three).await, pushed(&[1, 2, 3]));
    assert_eq!(t.push1("d").await, 4);
    // Another queue, and the same queue in another namespace, count for
    // themselves.
    let other = t.b.push(&k("other"), vec![item("x")]).await.unwrap();
    assert_eq!(other, pushed(&[1]));
    let ns = t.b.store.backend(Namespace::new("ns2").unwrap());
    assert_eq!(ns.push(&t.q, vec![item("y")]).await.unwrap(), pushed(&[1]));
    // Ids keep increasing after items are gone.
    for _ in 0..4 {
        let d = t.recv(&t.a).await;
        assert_eq!(t.ack(&d).await, Settle::Done);
    }
    assert_eq!(t.push1("e").await, 5);
    assert_eq!(t.places().await, (1, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn receive_delivers_the_highest_priority_then_the_lowest_id() {
    let t = T::new();
    let items = [0, 5, 0, MAX_PRIORITY, 5].map(|p| item(&format!("p{p}")).priority(p));
    t.push(items.to_vec()).await;
    let r = t.receive(&t.a, 10).await;
    assert_eq!(ids(&r), [4, 2, 5, 1, 3]);
    assert_eq!(r.next_in, None);
    let d = &r.deliveries[0];
    assert_eq!(
        (d.payload.as_slice(), d.priority, d.max_attempts, d.attempt),
        (&b"p9"[..], MAX_PRIORITY, 3, 1)
    );
    // Up to `max`, in that order, across receives.
    let t = T::new();
    let items = [1, 2, 1, 2].map(|p| item("x").priority(p));
    t.push(items.to_vec()).await;
    assert_eq!(ids(&t.receive(&t.a, 3).await), [2, 4, 1]);
    assert_eq!(ids(&t.receive(&t.c, 3).await), [3]);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_item_is_ready_at_its_due_time_and_next_in_says_when() {
    let t = T::new();
    // Nothing at all: nothing to wait for.
    assert_eq!(t.idle(&t.a).await, None);
    let later = item("later").delay(Some(5 * SEC)).priority(MAX_PRIORITY);
    let now = item("now").delay(Some(Duration::ZERO));
    assert_eq!(t.push(vec![later, now]).await, pushed(&[1, 2]));
    assert_eq!(t.places().await, (1, 1, 0, 0));
    let d = t.recv(&t.a).await;
    assert_eq!(d.id, 2);
    // The delayed item is due before the delivery's deadline.
    assert_eq!(t.idle(&t.c).await, Some(5 * SEC));
    advance(5 * SEC - MS).await;
    assert_eq!(t.idle(&t.c).await, Some(MS));
    advance(MS).await;
    let d1 = t.recv(&t.c).await;
    assert_eq!((d1.id, d1.attempt), (1, 1));
    // Nothing delayed: the earliest deadline.
    assert_eq!(t.idle(&t.c).await, Some(5 * SEC));
    assert_eq!(t.ack(&d).await, Settle::Done);
    assert_eq!(t.idle(&t.c).await, Some(TTL));
}

#[tokio::test(start_paused = true)]
async fn a_dedup_key_pushed_within_its_window_is_not_pushed_again() {
    let t = T::new();
    let dd = |key: &str, window: Duration| item(key).dedup(Some((k(key), window)));
    let first = vec![dd("x", 10 * SEC), dd("x", 99 * SEC), dd("y", SEC)];
    let first = t.push(first).await;
    assert_eq!(
        first,
        [Pushed::Pushed(1), Pushed::Duplicate(1), Pushed::Pushed(2)]
    );
    assert_eq!(t.places().await, (2, 0, 0, 0));
    // Gone from the queue, still within the window.
    let d = t.recv(&t.a).await;
    t.ack(&d).await;
    advance(SEC).await;
    let again = t.push(vec![dd("x", SEC), dd("y", SEC), item("z")]).await;
    assert_eq!(
        again,
        [Pushed::Duplicate(1), Pushed::Pushed(3), Pushed::Pushed(4)]
    );
    // The window is the first push's, not lengthened by a duplicate.
    advance(9 * SEC - MS).await;
    assert_eq!(t.push(vec![dd("x", SEC)]).await, [Pushed::Duplicate(1)]);
    advance(MS).await;
    assert_eq!(t.push(vec![dd("x", SEC)]).await, pushed(&[5]));
    assert_eq!(t.push(vec![dd("x", SEC)]).await, [Pushed::Duplicate(5)]);
    // Ended windows are forgotten by the next step.
    let remembered = || {
        let queues = t.b.store.queues();
        queues.map[&(Namespace::default(), t.q.clone())].dedup_keys()
    };
    assert_eq!(remembered(), (1, 1));
    advance(SEC).await;
    t.stats().await;
    assert_eq!(remembered(), (0, 0));
}

// Tokens.

#[tokio::test(start_paused = true)]
async fn tokens_follow_the_token_rule_one_counter_per_queue() {
    let t = T::new();
    let wall_us = |b: &MemoryBackend| {
        let now = b.store.now();
        b.store.inner.table.wall_us(now)
    };
    t.push(vec![item("a"), item("b")]).await;
    let r = t.receive(&t.a, 2).await;
    let (a, b) = (r.deliveries[0].token, r.deliveries[1].token);
    assert_eq!(a.get(), wall_us(&t.b));
    assert_eq!(b.get(), a.get() + 1);
    // Another queue counts for itself, from the wall clock.
    let other = k("other");
    t.b.push(&other, vec![item("c")]).await.unwrap();
    let opts = ReceiveOptions::new(TTL, PRESENCE);
    let c = t.b.receive(&other, &t.a, opts).await.unwrap();
    assert_eq!(c.deliveries[0].token, a);
    // A later delivery of the same item has a larger token.
    advance(TTL).await;
    let again = t.recv(&t.c).await;
    assert_eq!(again.id, 1);
    assert!(again.token > b);
}

// Limits.

#[tokio::test(start_paused = true)]
async fn the_store_enforces_the_limits_itself() {
    let t = T::new();
    let q = &t.q;
    let push = |items: Vec<NewItem>| t.b.push(q, items);
    let parts = |m: String, parts: &[&str]| {
        for p in parts {
            assert!(m.contains(p), "{p:?} in {m}");
        }
    };
    let big = NewItem::new(vec![0; MAX_PAYLOAD_BYTES + 1], 1);
    parts(refused(push(vec![big]).await), &["queue \"q\"", "524288"]);
    let many = vec![item("x"); MAX_BATCH + 1];
    parts(refused(push(many).await), &["queue \"q\"", "1000"]);
    let high = item("x").priority(MAX_PRIORITY + 1);
    parts(
        refused(push(vec![high]).await),
        &["queue \"q\"", "priority"],
    );
    for n in [0, MAX_ITEM_ATTEMPTS + 1] {
        let m = refused(push(vec![tries("x", n)]).await);
        parts(m, &["queue \"q\"", "max_attempts", "1..=1000"]);
    }
    let late = item("x").delay(Some(MAX_TTL + MS));
    parts(refused(push(vec![late]).await), &["queue \"q\"", "delay"]);
    for w in [Duration::ZERO, MAX_TTL + MS] {
        let dd = item("x").dedup(Some((k("d"), w)));
        parts(
            refused(push(vec![dd]).await),
            &["queue \"q\"", "dedup window"],
        );
    }
    // A refused push pushed nothing, not even the good items before it.
    let mixed = vec![item("ok"), tries("bad", 0)];
    refused(push(mixed).await);
    assert_eq!(t.places().await, (0, 0, 0, 0));
    // The largest of everything is taken.
    let full = NewItem::new(vec![7; MAX_PAYLOAD_BYTES], MAX_ITEM_ATTEMPTS)
        .priority(MAX_PRIORITY)
        .delay(Some(MAX_TTL))
        .dedup(Some((k("d"), MAX_TTL)));
    assert_eq!(push(vec![full]).await.unwrap(), pushed(&[1]));
    let most = push(vec![item("x"); MAX_BATCH]).await.unwrap();
    assert_eq!(most.len(), MAX_BATCH);
    assert_eq!(t.places().await, (MAX_BATCH as u64, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_store_enforces_the_limits_of_receives_leases_and_reasons() {
    let t = T::new();
    let q = &t.q;
    let opts = ReceiveOptions::new(TTL, PRESENCE);
    for o in [opts.max(0), opts.max(MAX_BATCH as u32 + 1)] {
        let m = refused(t.b.receive(q, &t.a, o).await);
        assert!(m.contains("queue \"q\"") && m.contains("1..=1000"), "{m}");
    }
    for o in [
        ReceiveOptions::new(Duration::ZERO, PRESENCE),
        ReceiveOptions::new(TTL, MAX_TTL + MS),
    ] {
        let m = refused(t.b.receive(q, &t.a, o).await);
        assert!(m.contains("\"q\"") && m.contains("ttl"), "{m}");
    }
    assert_eq!(t.stats().await.consumers, []);
    t.push(vec![item("a"), item("b")]).await;
    let d = t.recv(&t.a).await;
    refused(t.b.extend(q, d.id, d.token, Duration::ZERO).await);
    refused(t.b.heartbeat(q, &t.a, MAX_TTL + MS).await);
    for limit in [0, MAX_BATCH as u32 + 1] {
        let m = refused(t.b.dead_items(q, 0, limit).await);
        assert!(m.contains("queue \"q\"") && m.contains("1..=1000"), "{m}");
    }
    // A retry delay is cut to a day, errors and reasons at a character
    // boundary.
    let long = format!("x{}", "é".repeat(MAX_REASON_BYTES));
    let nack = t.b.nack(q, d.id, d.token, &long, MAX_TTL * 1_000_000);
    assert_eq!(nack.await.unwrap(), Nack::Requeued);
    let d = t.recv(&t.c).await;
    assert_eq!(t.idle(&t.a).await, Some(TTL));
    let dead = t.b.dead_letter(q, d.id, d.token, &long).await.unwrap();
    assert_eq!(dead, Settle::Done);
    assert_eq!(t.idle(&t.a).await, Some(MAX_TTL));
    let reason = t.dead().await.remove(0).reason;
    assert_eq!(reason.len(), MAX_REASON_BYTES - 1);
    assert!(long.starts_with(&reason));
    advance(MAX_TTL).await;
    let d = t.recv(&t.a).await;
    assert_eq!((d.id, d.attempt), (1, 2));
    // A nack's error is cut as well: it is the reason of its last attempt.
    let mut last = t.b.nack(q, d.id, d.token, &long, Duration::ZERO);
    assert_eq!(last.await.unwrap(), Nack::Requeued);
    let d = t.recv(&t.a).await;
    last = t.b.nack(q, d.id, d.token, &long, Duration::ZERO);
    assert_eq!(last.await.unwrap(), Nack::DeadLettered);
    let reasons: Vec<_> = t.dead().await.into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons, [reason.clone(), reason]);
}

mod dead;
mod leases;
mod prefetch;

#[tokio::test(start_paused = true)]
async fn the_client_works_on_it() {
    let t = T::new();
    let client = coord_api::Client::new(std::sync::Arc::new(t.b.clone()));
    let queue = client.queue::<u64>("q");
    queue.push_many(&[1, 2, 3]).await.unwrap();
    let mut consumer = queue.consumer().prefetch(2);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let d = consumer.receive().await.unwrap();
        seen.push((*d.item(), d.attempt()));
        d.ack().await.unwrap();
    }
    assert_eq!(seen, [(1, 1), (2, 1), (3, 1)]);
    let s = queue.stats().await.unwrap();
    assert_eq!((s.ready, s.in_flight, s.delivered), (0, 0, 3));
    assert_eq!(consumer.leave().await.unwrap(), 0);
}
