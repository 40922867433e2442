//! Work queues on a real redis-server, through the SPI directly, rule by
//! rule (the rules are numbered in `coord_api::spi::queues`): ids, order,
//! delays, priorities and dedup windows at push; receive order and
//! `next_in`; prefetch and attempts; stale tokens after expiry and after a
//! redelivery; expiry and dead consumers (dead letters exactly once, with
//! `lease expired` or `consumer gone`); leave; a receive's give-back;
//! stealing (never from the dead: their prefetch is returned first); nacks
//! with and without delay; dead letters listed, requeued, removed and kept
//! up to the limit; stats; wake-ups; limits refused before any I/O; one
//! EVALSHA per operation in one Cluster slot. Every test runs in a
//! namespace of its own on the shared server (tests that count commands, need cluster mode or
//! stop the server start their own).
//!
//! Waits for expiry are never guesses: a deadline is the server's clock at
//! the step plus its TTL, and the server runs on this machine's clock, so
//! sleeping past the TTL (with a margin) after the reply came back is past
//! the deadline. Waits for wake-ups are bounded; a watch that must stay
//! quiet is given a while.

// The tests, by theme; the fixtures they share are below.
mod dead_and_stats;
mod deliveries;
mod pushing;
mod steals_and_nacks;
mod watches_and_limits;

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
