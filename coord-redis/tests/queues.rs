//! Work queues on a real redis-server, through the SPI directly, rule by
//! rule (the rules are numbered in `coord_api::spi::queues`): ids, order,
//! delays, priorities and dedup windows at push; receive order and
//! `next_in`; prefetch and attempts; stale tokens after expiry and after a
//! redelivery; expiry and dead consumers (dead letters exactly once, with
//! `lease expired` or `consumer gone`); leave; stealing (never from the
//! dead: their prefetch is returned first); nacks with and without delay;
//! dead letters listed, requeued, removed and kept up to the limit; stats;
//! wake-ups; limits refused before any I/O; one EVALSHA per operation in
//! one Cluster slot. Every test runs in a namespace of its own
//! on the shared server (tests that count commands, need cluster mode or
//! stop the server start their own).
//!
//! Waits for expiry are never guesses: a deadline is the server's clock at
//! the step plus its TTL, and the server runs on this machine's clock, so
//! sleeping past the TTL (with a margin) after the reply came back is past
//! the deadline. Waits for wake-ups are bounded; a watch that must stay
//! quiet is given a while.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{
    Error, FencingToken, HolderId, InstanceId, Key,
    spi::{
        Backend, DeadItem, Delivery, MAX_BATCH, MAX_DEAD_KEPT, MAX_PAYLOAD_BYTES, MAX_PRIORITY,
        MAX_REASON_BYTES, Nack, NewItem, Pushed, QueueBackend, QueueStats, ReceiveOptions,
        Received, Settle, Watch,
    },
};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;
use redis::Value;

/// A delivery's lease when the test does not wait for it.
const TTL: Duration = Duration::from_secs(30);
/// A consumer's presence when the test does not wait for it.
const PRESENCE: Duration = Duration::from_secs(60);
/// A lease, presence or delay the test waits out, when nothing needs to
/// happen before it ends.
const SHORT: Duration = Duration::from_millis(150);
/// A lease, presence, delay or window the test waits out after some steps
/// that must come before it ends (with room for a loaded machine).
const BRIEF: Duration = Duration::from_millis(1000);
/// Past a short lease or delay: its length and this margin.
const MARGIN: Duration = Duration::from_millis(60);
/// How long a watch that must wake is given.
const WAKE: Duration = Duration::from_secs(5);

async fn backend_on(server: &RedisServer, ns: &str) -> Arc<RedisBackend> {
    Arc::new(
        RedisBackend::connect(server.config(ns))
            .await
            .expect("connect"),
    )
}

async fn backend(ns: &str) -> Arc<RedisBackend> {
    backend_on(RedisServer::shared(), ns).await
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn holder(instance: &str) -> HolderId {
    HolderId::new(InstanceId::new(instance).unwrap())
}

/// An item with payload `p` and `n` attempts.
fn tries(p: &str, n: u32) -> NewItem {
    NewItem::new(p.as_bytes().to_vec(), n)
}

fn item(p: &str) -> NewItem {
    tries(p, 3)
}

fn ids(r: &Received) -> Vec<u64> {
    r.deliveries.iter().map(|d| d.id).collect()
}

fn pushed(ids: &[u64]) -> Vec<Pushed> {
    ids.iter().map(|&id| Pushed::Pushed(id)).collect()
}

fn opts(max: u32) -> ReceiveOptions {
    ReceiveOptions::new(TTL, PRESENCE).max(max)
}

/// One queue of a backend, two consumers `a` and `c`, and the calls the
/// tests make.
struct Q {
    b: Arc<RedisBackend>,
    q: Key,
    a: HolderId,
    c: HolderId,
}

impl Q {
    async fn new(ns: &str) -> Q {
        Q::on(backend(ns).await)
    }

    fn on(b: Arc<RedisBackend>) -> Q {
        Q {
            b,
            q: key("q"),
            a: holder("a"),
            c: holder("c"),
        }
    }

    fn qs(&self) -> &dyn QueueBackend {
        self.b.queues().expect("queues")
    }

    async fn push(&self, items: Vec<NewItem>) -> Vec<Pushed> {
        self.qs().push(&self.q, items).await.unwrap()
    }

    async fn push1(&self, p: &str) -> u64 {
        match self.push(vec![item(p)]).await[..] {
            [Pushed::Pushed(id)] => id,
            ref other => panic!("not pushed: {other:?}"),
        }
    }

    async fn receive_with(&self, who: &HolderId, o: ReceiveOptions) -> Received {
        self.qs().receive(&self.q, who, o).await.unwrap()
    }

    async fn receive(&self, who: &HolderId, max: u32) -> Received {
        self.receive_with(who, opts(max)).await
    }

    /// One delivery, which must be there.
    async fn recv(&self, who: &HolderId) -> Delivery {
        let mut r = self.receive(who, 1).await;
        assert_eq!(r.deliveries.len(), 1, "nothing delivered: {r:?}");
        r.deliveries.remove(0)
    }

    /// Nothing delivered: the reply's `next_in`.
    async fn idle(&self, who: &HolderId) -> Option<Duration> {
        let r = self.receive(who, 1).await;
        assert_eq!(r.deliveries, [], "delivered");
        r.next_in
    }

    async fn extend(&self, d: &Delivery, ttl: Duration) -> Settle {
        self.qs().extend(&self.q, d.id, d.token, ttl).await.unwrap()
    }

    async fn ack(&self, d: &Delivery) -> Settle {
        self.qs().ack(&self.q, d.id, d.token).await.unwrap()
    }

    async fn nack(&self, d: &Delivery, error: &str, retry: Duration) -> Nack {
        (self.qs().nack(&self.q, d.id, d.token, error, retry))
            .await
            .unwrap()
    }

    async fn dead_letter(&self, d: &Delivery, reason: &str) -> Settle {
        (self.qs().dead_letter(&self.q, d.id, d.token, reason))
            .await
            .unwrap()
    }

    async fn stats(&self) -> QueueStats {
        self.qs().stats(&self.q).await.unwrap()
    }

    /// (ready, delayed, in flight, dead).
    async fn places(&self) -> (u64, u64, u64, u64) {
        let s = self.stats().await;
        (s.ready, s.delayed, s.in_flight, s.dead)
    }

    async fn dead(&self) -> Vec<DeadItem> {
        self.qs().dead_items(&self.q, 0, 1000).await.unwrap()
    }

    /// (id, attempts, reason) of every dead item.
    async fn deaths(&self) -> Vec<(u64, u32, String)> {
        let dead = self.dead().await;
        dead.into_iter()
            .map(|d| (d.id, d.attempts, d.reason))
            .collect()
    }

    async fn watch(&self) -> Box<dyn Watch> {
        self.qs().watch(&self.q).await.unwrap()
    }
}

async fn wakes(w: &mut Box<dyn Watch>, what: &str) {
    tokio::time::timeout(WAKE, w.changed())
        .await
        .unwrap_or_else(|_| panic!("the watch did not wake: {what}"))
        .unwrap();
}

async fn stays_quiet(w: &mut Box<dyn Watch>, what: &str) {
    let woke = tokio::time::timeout(Duration::from_millis(300), w.changed()).await;
    assert!(woke.is_err(), "the watch woke: {what}");
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        other => format!("{other:?}"),
    }
}

/// Rules 2 and 3: ids in push order; highest priority first, then lowest
/// id; every delivery's fields.
#[tokio::test]
async fn pushes_get_ids_in_order_and_receives_go_by_priority_then_id() {
    let t = Q::new("order").await;
    let items = vec![
        item("a"),
        item("b").priority(5),
        tries("c", 7),
        item("d").priority(MAX_PRIORITY),
        item("e").priority(5),
    ];
    assert_eq!(t.push(items).await, pushed(&[1, 2, 3, 4, 5]));
    assert_eq!(t.push1("f").await, 6);
    let mut order = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let d = t.recv(&t.a).await;
        assert_eq!((d.attempt, d.started, d.stolen), (1, true, false));
        order.push((d.id, d.payload.clone(), d.priority, d.max_attempts));
        tokens.push(d.token);
    }
    let want = [
        (4, "d", 9, 3),
        (2, "b", 5, 3),
        (5, "e", 5, 3),
        (1, "a", 0, 3),
        (3, "c", 0, 7),
        (6, "f", 0, 3),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|&(id, p, pr, n)| (id, p.as_bytes().to_vec(), pr, n))
        .collect();
    assert_eq!(order, want);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    // Held and unsettled: the next thing due is the first deadline.
    let next = t.idle(&t.a).await.expect("a deadline");
    assert!(
        next <= TTL && next >= TTL - Duration::from_secs(1),
        "{next:?}"
    );
    // Another queue of the same namespace counts its own ids.
    let other = Q {
        q: key("other"),
        ..Q::on(t.b.clone())
    };
    assert_eq!(other.push1("x").await, 1);
    // An empty push is no step at all.
    assert_eq!(t.push(vec![]).await, []);
}

/// Rules 2 and 3: a delayed item is ready once due, and an idle receive
/// says when; then the next deadline.
#[tokio::test]
async fn delayed_items_wait_and_an_idle_receive_says_when() {
    let t = Q::new("delay").await;
    assert_eq!(t.idle(&t.a).await, None);
    t.push(vec![item("later").delay(Some(BRIEF))]).await;
    let next = t.idle(&t.a).await.expect("a delayed item");
    assert!(next <= BRIEF && next > Duration::ZERO, "{next:?}");
    assert_eq!(t.places().await, (0, 1, 0, 0));
    sleep(BRIEF + MARGIN).await;
    let d = t.recv(&t.a).await;
    assert_eq!((d.id, d.payload.as_slice()), (1, &b"later"[..]));
    // Now the delivery's deadline is the next thing due: c is told of it
    // (a holds it, and a's presence lasts longer than the lease).
    let next = t.idle(&t.c).await.expect("a deadline");
    assert!(
        next <= TTL && next >= TTL - Duration::from_secs(1),
        "{next:?}"
    );
    // A zero delay is none.
    t.push(vec![item("now").delay(Some(Duration::ZERO))]).await;
    assert_eq!(t.recv(&t.c).await.id, 2);
}

/// Rule 1: the sweep is done whatever set made the step due first: a
/// short lease after a delay of an hour, a short presence after both.
#[tokio::test]
async fn a_step_sweeps_whatever_fell_due_first() {
    let t = Q::new("sweep").await;
    t.push(vec![item("far").delay(Some(Duration::from_secs(3600)))])
        .await;
    t.push1("x").await;
    let short = ReceiveOptions::new(SHORT, PRESENCE);
    let d = t.receive_with(&t.a, short).await.deliveries.remove(0);
    sleep(SHORT + MARGIN).await;
    assert_eq!(t.places().await, (1, 1, 0, 0));
    assert_eq!(t.ack(&d).await, Settle::Stale);
    let long = ReceiveOptions::new(TTL, BRIEF);
    let d = t.receive_with(&t.c, long).await.deliveries.remove(0);
    assert_eq!(d.attempt, 2);
    assert_eq!(t.places().await, (0, 1, 1, 0));
    sleep(BRIEF + MARGIN).await;
    assert_eq!(t.places().await, (1, 1, 0, 0));
    assert_eq!(t.stats().await.consumers, [*t.a.instance()]);
}

/// Rule 2: a dedup key pushed within its window pushes nothing and names
/// the first id, in one push or across pushes; ids stay consecutive.
#[tokio::test]
async fn dedup_keys_hold_their_first_id_for_their_window() {
    let t = Q::new("dedup").await;
    let d = |p: &str, k: &str, w: Duration| item(p).dedup(Some((key(k), w)));
    let long = Duration::from_secs(60);
    let out = t
        .push(vec![
            d("a", "k1", long),
            d("b", "k1", long),
            item("c"),
            d("e", "k2", BRIEF),
        ])
        .await;
    assert_eq!(
        out,
        [
            Pushed::Pushed(1),
            Pushed::Duplicate(1),
            Pushed::Pushed(2),
            Pushed::Pushed(3)
        ]
    );
    assert_eq!(
        t.push(vec![d("x", "k1", long), d("y", "k2", long), item("z")])
            .await,
        [
            Pushed::Duplicate(1),
            Pushed::Duplicate(3),
            Pushed::Pushed(4)
        ]
    );
    // Acked or not, the key holds for its window.
    let first = t.recv(&t.a).await;
    assert_eq!(t.ack(&first).await, Settle::Done);
    assert_eq!(
        t.push(vec![d("again", "k1", long)]).await,
        [Pushed::Duplicate(1)]
    );
    sleep(BRIEF + MARGIN).await;
    assert_eq!(
        t.push(vec![d("later", "k2", long)]).await,
        [Pushed::Pushed(5)]
    );
    assert_eq!(t.places().await, (4, 0, 0, 0));
}

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
    stays_quiet(&mut w, "a nack with a delay").await;
    sleep(BRIEF).await;
    // The delay passed silently; the next step makes the item ready.
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

/// Rules 5 and 8: dead letters are listed by id after an id, up to a limit,
/// requeued with their id and a fresh attempt count, or removed.
#[tokio::test]
async fn dead_letters_are_listed_requeued_and_removed() {
    let t = Q::new("dead").await;
    let items = (0..5).map(|i| tries(&format!("p{i}"), 2).priority(3));
    t.push(items.collect()).await;
    let r = t.receive(&t.a, 5).await;
    for d in &r.deliveries {
        assert_eq!(t.dead_letter(d, &format!("r{}", d.id)).await, Settle::Done);
        assert_eq!(t.dead_letter(d, "again").await, Settle::Stale);
    }
    let page = |after: u64, limit: u32| {
        let t = &t;
        async move {
            let list = t.qs().dead_items(&t.q, after, limit).await.unwrap();
            list.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(0, 10).await, [1, 2, 3, 4, 5]);
    assert_eq!(page(0, 2).await, [1, 2]);
    assert_eq!(page(2, 2).await, [3, 4]);
    assert_eq!(page(5, 2).await, [0u64; 0]);
    assert_eq!(page(u64::MAX, 2).await, [0u64; 0]);
    let dead = t.dead().await;
    // The first was started (one attempt), the others prefetched (none).
    assert_eq!(
        (dead[0].attempts, dead[2].attempts, dead[2].reason.as_str()),
        (1, 0, "r3")
    );
    assert_eq!(dead[2].payload, b"p2");
    let mut w = t.watch().await;
    assert!(t.qs().requeue_dead(&t.q, 1).await.unwrap());
    wakes(&mut w, "a requeue").await;
    assert!(!t.qs().requeue_dead(&t.q, 1).await.unwrap());
    assert!(!t.qs().remove_dead(&t.q, 1).await.unwrap());
    assert!(t.qs().remove_dead(&t.q, 2).await.unwrap());
    assert!(!t.qs().remove_dead(&t.q, 2).await.unwrap());
    assert!(!t.qs().requeue_dead(&t.q, 99).await.unwrap());
    assert!(!t.qs().requeue_dead(&key("never"), 1).await.unwrap());
    assert_eq!(page(0, 10).await, [3, 4, 5]);
    let d = t.recv(&t.c).await;
    assert_eq!(
        (
            d.id,
            d.attempt,
            d.max_attempts,
            d.priority,
            d.payload.as_slice()
        ),
        (1, 1, 2, 3, &b"p0"[..])
    );
    assert_eq!(t.nack(&d, "boom", Duration::ZERO).await, Nack::Requeued);
    let d = t.recv(&t.c).await;
    assert_eq!(
        t.nack(&d, "boom again", Duration::ZERO).await,
        Nack::DeadLettered
    );
    assert_eq!(t.deaths().await[0], (1, 2, "boom again".to_owned()));
    assert_eq!(t.stats().await.dead_lettered, 6);
    assert!(t.qs().dead_items(&t.q, 0, 0).await.is_err());
    let over = MAX_BATCH as u32 + 1;
    assert!(t.qs().dead_items(&t.q, 0, over).await.is_err());
}

/// Rule 8: past MAX_DEAD_KEPT dead items, the oldest deaths are dropped.
#[tokio::test]
async fn the_oldest_dead_items_are_dropped_past_the_limit() {
    let t = Q::new("dead-limit").await;
    let n = MAX_DEAD_KEPT as u64 + 2;
    // Items 1 and 2 die last of all, so the first two deaths (3 and 4)
    // are the ones dropped.
    let mut pushed = 0;
    while pushed < n {
        let batch = (n - pushed).min(MAX_BATCH as u64);
        let items = (0..batch).map(|i| item(&format!("{}", pushed + i + 1)));
        t.push(items.collect()).await;
        pushed += batch;
    }
    let mut first_two = Vec::new();
    loop {
        let r = t.receive(&t.a, MAX_BATCH as u32).await;
        if r.deliveries.is_empty() {
            break;
        }
        for d in r.deliveries {
            if d.id <= 2 {
                first_two.push(d);
            } else {
                assert_eq!(t.dead_letter(&d, "x").await, Settle::Done);
            }
        }
    }
    for d in &first_two {
        assert_eq!(t.dead_letter(d, "last").await, Settle::Done);
    }
    let s = t.stats().await;
    assert_eq!((s.dead, s.dead_lettered), (MAX_DEAD_KEPT as u64, n));
    let first: Vec<_> = (t.qs().dead_items(&t.q, 0, 3).await.unwrap().into_iter())
        .map(|d| d.id)
        .collect();
    assert_eq!(first, [1, 2, 5]);
    // Their items are gone with them.
    let server = RedisServer::shared();
    let base = "coord:{dead-limit:queue:1:q}:";
    let exists = |id: u64| {
        let v = server
            .command(&["EXISTS", &format!("{base}{id}:i")])
            .unwrap();
        v == Value::Int(1)
    };
    assert!(exists(1) && exists(5) && !exists(3) && !exists(4));
}

/// Stats: every place, the live consumers and every count.
#[tokio::test]
async fn stats_count_every_place_and_every_delivery() {
    let t = Q::new("stats").await;
    assert_eq!(t.stats().await, QueueStats::default());
    t.push(vec![
        item("a"),
        item("b"),
        item("c"),
        tries("d", 1),
        item("e").delay(Some(Duration::from_secs(60))),
    ])
    .await;
    let r = t.receive(&t.a, 2).await;
    let d = t.recv(&t.c).await;
    let last = t.recv(&t.c).await;
    assert_eq!(t.nack(&last, "x", Duration::ZERO).await, Nack::DeadLettered);
    let s = t.stats().await;
    assert_eq!((s.ready, s.delayed, s.in_flight, s.dead), (0, 1, 3, 1));
    assert_eq!(s.consumers, [*t.a.instance(), *t.c.instance()]);
    assert_eq!(
        (s.delivered, s.redelivered, s.stolen, s.dead_lettered),
        (4, 0, 0, 1)
    );
    t.qs().leave(&t.q, &t.a).await.unwrap();
    t.nack(&d, "again", Duration::ZERO).await;
    let r2 = t.receive(&t.c, 5).await;
    assert_eq!(ids(&r2), [1, 2, 3]);
    let s = t.stats().await;
    // 1 (started by a) and 3 (started by c) are redeliveries; 2 was only
    // prefetched.
    assert_eq!((s.delivered, s.redelivered), (7, 2));
    assert_eq!(s.consumers, [*t.c.instance()]);
    drop(r);
}

/// Rule 9: a step that made an item ready wakes the queue's watchers; other
/// steps do not.
#[tokio::test]
async fn watches_wake_when_a_step_made_an_item_ready() {
    let t = Q::new("watch").await;
    let mut w = t.watch().await;
    let dd = |p: &str| item(p).dedup(Some((key("k"), Duration::from_secs(60))));
    t.push(vec![dd("a")]).await;
    wakes(&mut w, "a push").await;
    t.push(vec![dd("a again")]).await;
    stays_quiet(&mut w, "a duplicate").await;
    t.push(vec![item("later").delay(Some(SHORT))]).await;
    stays_quiet(&mut w, "a delayed push").await;
    // The delayed item's due time passes silently; the next step sweeps it.
    t.stats().await;
    wakes(&mut w, "a sweep").await;
    let r = t.receive(&t.a, 2).await;
    stays_quiet(&mut w, "a receive").await;
    assert_eq!(t.extend(&r.deliveries[1], TTL).await, Settle::Done);
    assert_eq!(t.dead_letter(&r.deliveries[1], "x").await, Settle::Done);
    stays_quiet(&mut w, "a dead letter").await;
    assert_eq!(t.ack(&r.deliveries[0]).await, Settle::Done);
    stays_quiet(&mut w, "an ack").await;
    // Another queue's steps wake nobody here.
    let other = Q {
        q: key("other"),
        ..Q::on(t.b.clone())
    };
    other.push1("x").await;
    stays_quiet(&mut w, "another queue").await;
}

/// Every limit is refused before any I/O: with the server gone, each call
/// is `InvalidArgument` naming the queue, never `Unavailable`.
#[tokio::test]
async fn limits_are_refused_before_any_io() {
    let server = RedisServer::start();
    let t = Q::on(backend_on(&server, "limits").await);
    t.push1("warm").await;
    server.stop();
    let invalid = |r: Result<(), Error>, what: &str| {
        let err = r.expect_err(what);
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("\"q\""), "{what}: {err}");
    };
    let q = t.qs();
    let (name, a) = (&t.q, &t.a);
    let push = move |items: Vec<NewItem>| async move { q.push(name, items).await.map(drop) };
    invalid(
        push(vec![NewItem::new(vec![0; MAX_PAYLOAD_BYTES + 1], 1)]).await,
        "payload",
    );
    invalid(
        push(vec![item("x").priority(MAX_PRIORITY + 1)]).await,
        "priority",
    );
    invalid(push(vec![tries("x", 0)]).await, "attempts");
    let many = (0..=MAX_BATCH).map(|_| item("x")).collect();
    invalid(push(many).await, "batch");
    let recv = move |o: ReceiveOptions| async move { q.receive(name, a, o).await.map(drop) };
    invalid(recv(opts(0)).await, "receive of 0");
    invalid(
        recv(opts(MAX_BATCH as u32 + 1)).await,
        "receive of too many",
    );
    invalid(
        recv(ReceiveOptions::new(Duration::ZERO, PRESENCE)).await,
        "ttl",
    );
    invalid(
        recv(ReceiveOptions::new(TTL, Duration::from_secs(200_000))).await,
        "presence",
    );
    invalid(
        q.extend(&t.q, 1, FencingToken(1), Duration::ZERO)
            .await
            .map(drop),
        "extend ttl",
    );
    invalid(
        q.heartbeat(&t.q, &t.a, Duration::ZERO).await,
        "heartbeat ttl",
    );
    invalid(q.dead_items(&t.q, 0, 0).await.map(drop), "page");
    // A valid call does reach for the server.
    let err = q.push(&t.q, vec![item("x")]).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

/// Big batches: a push of MAX_BATCH items and a receive of all of them.
#[tokio::test]
async fn a_full_batch_goes_in_and_out_in_one_step_each() {
    let t = Q::new("batch").await;
    let items = (0..MAX_BATCH).map(|i| item(&i.to_string()).priority((i % 10) as u8));
    let out = t.push(items.collect()).await;
    assert_eq!(out.len(), MAX_BATCH);
    let r = t.receive(&t.a, MAX_BATCH as u32).await;
    assert_eq!(r.deliveries.len(), MAX_BATCH);
    assert!(r.deliveries[0].started && !r.deliveries[1].started);
    let order: Vec<_> = r
        .deliveries
        .iter()
        .map(|d| (9 - d.priority, d.id))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    let tokens: Vec<_> = r.deliveries.iter().map(|d| d.token).collect();
    assert!(tokens.windows(2).all(|w| w[1].get() == w[0].get() + 1));
    // The counter stands at the last token: the next draw is above it.
    t.push1("next").await;
    let next = t.recv(&t.c).await;
    assert!(next.token > *tokens.last().unwrap());
    assert_eq!(t.qs().leave(&t.q, &t.a).await.unwrap(), MAX_BATCH as u32);
    assert_eq!(t.places().await, (MAX_BATCH as u64, 0, 1, 0));
}

/// Every operation is one EVALSHA, and every key of a queue is in one
/// Redis Cluster slot (a cluster server refuses a script that touches
/// another).
#[tokio::test]
async fn one_evalsha_per_operation_in_one_cluster_slot() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    server
        .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(server.command(&["CLUSTER", "INFO"]).unwrap()).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "single-node cluster never ok");
        sleep(Duration::from_millis(20)).await;
    }
    let t = Q {
        q: key("x}{y"),
        ..Q::on(backend_on(&server, "slots").await)
    };
    // Warm up: loads the script.
    t.stats().await;
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let dd = Some((key("d}{"), Duration::from_secs(60)));
    t.push(vec![
        item("a").dedup(dd.clone()),
        item("b"),
        item("c").delay(Some(SHORT)),
    ])
    .await;
    t.push(vec![item("a").dedup(dd)]).await;
    let r = t.receive(&t.a, 2).await;
    let stolen = t.receive_with(&t.c, opts(1).steal(true)).await;
    assert_eq!(stolen.deliveries.len(), 1);
    t.extend(&r.deliveries[0], TTL).await;
    t.nack(&r.deliveries[0], "x", Duration::ZERO).await;
    let d = t.recv(&t.a).await;
    t.dead_letter(&d, "y").await;
    t.ack(&stolen.deliveries[0]).await;
    t.qs().heartbeat(&t.q, &t.a, PRESENCE).await.unwrap();
    t.dead().await;
    t.qs().requeue_dead(&t.q, d.id).await.unwrap();
    let d = t.recv(&t.a).await;
    t.dead_letter(&d, "z").await;
    t.qs().remove_dead(&t.q, d.id).await.unwrap();
    sleep(SHORT + MARGIN).await;
    t.qs().leave(&t.q, &t.a).await.unwrap();
    t.stats().await;
    let ops = 17;
    let info = text(server.command(&["INFO", "commandstats"]).unwrap());
    let evalsha = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("calls=")))
        .map(|n| n.parse::<i64>().unwrap());
    assert_eq!(evalsha, Some(ops));
    assert!(
        !info.contains("cmdstat_script") && !info.contains("cmdstat_eval:"),
        "{info}"
    );
    // Nothing failed in there.
    let line = info.lines().find(|l| l.starts_with("cmdstat_evalsha:"));
    assert!(line.is_some_and(|l| l.contains("failed_calls=0")), "{info}");
}
