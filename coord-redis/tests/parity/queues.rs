//! Memory and Redis answer the same: random sequences of work-queue SPI
//! calls (push with priorities, delays, dedup keys and attempts; receive,
//! with prefetch, stealing and receive ids; extend, ack, ack-and-receive,
//! nack, dead-letter with the current token, an old one or another item's;
//! heartbeat, leave, give back; the dead items listed, requeued and
//! removed; the counts) by several consumers, run against a fresh
//! `MemoryStore` and against Redis, each case on a queue of its own,
//! answer by answer. Time does not pass within a case (delays, TTLs and
//! presences of 20 s and more): every answer must be the same, item ids
//! and fencing tokens compared by order (each backend's labelled by the
//! answer that first named them), times in whole seconds.

use std::time::Duration;

use coord_api::{
    FencingToken, HolderId, InstanceId, Key, Namespace,
    spi::{
        Nack, NewItem, Pushed, QueueBackend, QueueStats, ReceiveOptions, Received, Settle,
        queues::{DeadItem, MAX_REASON_BYTES},
    },
};
use coord_memory::MemoryStore;
use coord_redis::RedisBackend;
use proptest::prelude::*;

use super::{Apply, PROPERTY, compare, config, error_variant, fresh_name, secs};

const CONSUMERS: usize = 3;
const PRESENCE: Duration = Duration::from_secs(60);

/// A duration of the test: none of them passes within a case.
#[derive(Debug, Clone, Copy)]
enum Dur {
    Zero,
    S20,
    S40,
}

impl Dur {
    fn get(self) -> Duration {
        match self {
            Dur::Zero => Duration::ZERO,
            Dur::S20 => Duration::from_secs(20),
            Dur::S40 => Duration::from_secs(40),
        }
    }
}

#[derive(Debug, Clone)]
struct Item {
    payload: u8,
    priority: u8,
    attempts: u32,
    delay: Option<Dur>,
    /// A dedup key (of two) and its window.
    dedup: Option<(u8, Dur)>,
}

#[derive(Debug, Clone, Copy)]
struct Recv {
    consumer: usize,
    max: u32,
    steal: bool,
    receive_id: u64,
    ttl: Dur,
}

/// Which delivery a settle names: the n-th this side was handed (modulo
/// how many), with its own token, the token before it, or the token of
/// the next delivery.
#[derive(Debug, Clone, Copy)]
enum Token {
    Own,
    Older,
    Other,
}

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<Item>),
    Receive(Recv),
    Extend(usize, Token, Dur),
    Ack(usize, Token),
    AckAndReceive(usize, Token, Recv),
    /// Delivery, token, long error, retry delay.
    Nack(usize, Token, bool, Dur),
    DeadLetter(usize, Token, bool),
    Heartbeat(usize, Dur),
    Leave(usize),
    GiveBack(usize, u64),
    /// After the n-th dead item listed (`None`: from the start), limit.
    DeadItems(Option<usize>, u32),
    /// The n-th item id seen.
    Requeue(usize),
    Remove(usize),
    Stats,
}

fn dur() -> impl Strategy<Value = Dur> {
    prop_oneof![1 => Just(Dur::Zero), 6 => Just(Dur::S20), 6 => Just(Dur::S40)]
}

fn item() -> impl Strategy<Value = Item> {
    let priority = prop_oneof![30 => 0u8..3, 1 => Just(10u8)];
    let attempts = prop_oneof![30 => 1u32..4, 1 => Just(0u32)];
    let delay = prop_oneof![4 => Just(None), 1 => dur().prop_map(Some)];
    let dedup = prop_oneof![3 => Just(None), 1 => (0u8..2, dur()).prop_map(Some)];
    (0u8..4, priority, attempts, delay, dedup).prop_map(
        |(payload, priority, attempts, delay, dedup)| Item {
            payload,
            priority,
            attempts,
            delay,
            dedup,
        },
    )
}

fn recv() -> impl Strategy<Value = Recv> {
    let max = prop_oneof![20 => 1u32..4, 1 => Just(0u32)];
    let receive_id = prop_oneof![1 => Just(0u64), 2 => 1u64..4];
    (0..CONSUMERS, max, any::<bool>(), receive_id, dur()).prop_map(
        |(consumer, max, steal, receive_id, ttl)| Recv {
            consumer,
            max,
            steal,
            receive_id,
            ttl,
        },
    )
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![6 => Just(Token::Own), 1 => Just(Token::Older), 1 => Just(Token::Other)]
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0usize..8;
    let c = 0..CONSUMERS;
    prop_oneof![
        5 => proptest::collection::vec(item(), 1..4).prop_map(Op::Push),
        5 => recv().prop_map(Op::Receive),
        2 => (d.clone(), token(), dur()).prop_map(|(d, t, l)| Op::Extend(d, t, l)),
        3 => (d.clone(), token()).prop_map(|(d, t)| Op::Ack(d, t)),
        2 => (d.clone(), token(), recv()).prop_map(|(d, t, r)| Op::AckAndReceive(d, t, r)),
        3 => (d.clone(), token(), any::<bool>(), dur())
            .prop_map(|(d, t, long, r)| Op::Nack(d, t, long, r)),
        2 => (d.clone(), token(), any::<bool>()).prop_map(|(d, t, long)| Op::DeadLetter(d, t, long)),
        1 => (c.clone(), dur()).prop_map(|(c, t)| Op::Heartbeat(c, t)),
        1 => c.clone().prop_map(Op::Leave),
        1 => (c, 0u64..4).prop_map(|(c, id)| Op::GiveBack(c, id)),
        1 => (proptest::option::of(d.clone()), prop_oneof![4 => 1u32..4, 1 => Just(0u32)])
            .prop_map(|(a, l)| Op::DeadItems(a, l)),
        1 => d.clone().prop_map(Op::Requeue),
        1 => d.prop_map(Op::Remove),
        2 => Just(Op::Stats),
    ]
}

/// An error or reason: a short one, or one longer than an item keeps, of
/// characters of 3 bytes (cut at a character boundary).
fn reason(long: bool) -> String {
    if long {
        "€".repeat(MAX_REASON_BYTES / 3 + 10)
    } else {
        "boom".to_string()
    }
}

/// A number as one backend's order sees it: the n-th distinct value it
/// answered, in order, or one that is neither larger than every one
/// before nor one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nth {
    Nth(usize),
    OutOfOrder(u64),
}

#[derive(Default)]
struct Order(Vec<u64>);

impl Order {
    fn label(&mut self, v: u64) -> Nth {
        if let Some(i) = self.0.iter().position(|x| *x == v) {
            return Nth::Nth(i);
        }
        if self.0.last().is_some_and(|last| v < *last) {
            return Nth::OutOfOrder(v);
        }
        self.0.push(v);
        Nth::Nth(self.0.len() - 1)
    }
}

/// A delivery as compared: item, payload, attempt, attempts given, token,
/// started, stolen, priority.
type Seen = (Nth, Vec<u8>, u32, u32, Nth, bool, bool, u8);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Pushed(Vec<Result<Nth, Nth>>),
    Received(Vec<Seen>, Option<u64>),
    Settled(Settle),
    Nacked(Nack),
    AckedAndReceived(Settle, Vec<Seen>, Option<u64>),
    Unit,
    Count(u32),
    /// Item, payload, attempts, reason.
    Dead(Vec<(Nth, Vec<u8>, u32, String)>),
    Found(bool),
    Stats(QueueStats),
    Error(String),
    /// Nothing to name yet (no delivery, no item): not called.
    Skipped,
}

fn error(e: coord_api::Error) -> Answer {
    Answer::Error(error_variant(&e))
}

/// One backend under test and what it answered so far.
struct Side<'a> {
    backend: &'a dyn QueueBackend,
    queue: Key,
    consumers: &'a [HolderId],
    ids: Order,
    tokens: Order,
    /// Every delivery handed out: item id, token.
    deliveries: Vec<(u64, u64)>,
    /// Every dead item listed, in order.
    dead: Vec<u64>,
}

impl Side<'_> {
    fn new_item(&self, i: &Item) -> NewItem {
        let payload = vec![b'a' + i.payload; usize::from(i.payload) + 1];
        let dedup = i
            .dedup
            .map(|(k, w)| (Key::new(&format!("d{k}")).unwrap(), w.get()));
        NewItem::new(payload, i.attempts)
            .priority(i.priority)
            .delay(i.delay.map(Dur::get))
            .dedup(dedup)
    }

    fn opts(r: &Recv) -> ReceiveOptions {
        ReceiveOptions::new(r.ttl.get(), PRESENCE)
            .max(r.max)
            .steal(r.steal)
            .receive_id(r.receive_id)
    }

    /// The item and token a settle names, if anything was delivered.
    fn named(&self, n: usize, t: Token) -> Option<(u64, FencingToken)> {
        let len = self.deliveries.len();
        let (id, token) = *self.deliveries.get(n % len.max(1))?;
        let token = match t {
            Token::Own => token,
            Token::Older => token - 1,
            Token::Other => self.deliveries[(n + 1) % len].1,
        };
        Some((id, FencingToken(token)))
    }

    fn received(&mut self, r: Received) -> (Vec<Seen>, Option<u64>) {
        let seen = r
            .deliveries
            .into_iter()
            .map(|d| {
                self.deliveries.push((d.id, d.token.get()));
                (
                    self.ids.label(d.id),
                    d.payload,
                    d.attempt,
                    d.max_attempts,
                    self.tokens.label(d.token.get()),
                    d.started,
                    d.stolen,
                    d.priority,
                )
            })
            .collect();
        (seen, r.next_in.map(secs))
    }

    fn dead(&mut self, items: Vec<DeadItem>) -> Answer {
        let rows = items
            .into_iter()
            .map(|d| {
                if !self.dead.contains(&d.id) {
                    self.dead.push(d.id);
                }
                (self.ids.label(d.id), d.payload, d.attempts, d.reason)
            })
            .collect();
        Answer::Dead(rows)
    }

    fn item_id(&self, n: usize) -> Option<u64> {
        (!self.ids.0.is_empty()).then(|| self.ids.0[n % self.ids.0.len()])
    }
}

impl Apply for Side<'_> {
    type Op = Op;
    type Answer = Answer;

    async fn apply(&mut self, op: &Op) -> Answer {
        let (b, q) = (self.backend, &self.queue.clone());
        match op {
            Op::Push(items) => {
                let items = items.iter().map(|i| self.new_item(i)).collect();
                let pushed = match b.push(q, items).await {
                    Ok(pushed) => pushed,
                    Err(e) => return error(e),
                };
                let mut rows = Vec::new();
                for p in pushed {
                    rows.push(match p {
                        Pushed::Pushed(id) => Ok(self.ids.label(id)),
                        Pushed::Duplicate(id) => Err(self.ids.label(id)),
                        other => return Answer::Error(format!("unknown answer {other:?}")),
                    });
                }
                Answer::Pushed(rows)
            }
            Op::Receive(r) => match b
                .receive(q, &self.consumers[r.consumer], Self::opts(r))
                .await
            {
                Ok(got) => {
                    let (seen, next) = self.received(got);
                    Answer::Received(seen, next)
                }
                Err(e) => error(e),
            },
            Op::Extend(n, t, ttl) => {
                let Some((id, token)) = self.named(*n, *t) else {
                    return Answer::Skipped;
                };
                match b.extend(q, id, token, ttl.get()).await {
                    Ok(s) => Answer::Settled(s),
                    Err(e) => error(e),
                }
            }
            Op::Ack(n, t) => {
                let Some((id, token)) = self.named(*n, *t) else {
                    return Answer::Skipped;
                };
                match b.ack(q, id, token).await {
                    Ok(s) => Answer::Settled(s),
                    Err(e) => error(e),
                }
            }
            Op::AckAndReceive(n, t, r) => {
                let Some((id, token)) = self.named(*n, *t) else {
                    return Answer::Skipped;
                };
                let consumer = &self.consumers[r.consumer];
                match b
                    .ack_and_receive(q, id, token, consumer, Self::opts(r))
                    .await
                {
                    Ok((s, got)) => {
                        let (seen, next) = self.received(got);
                        Answer::AckedAndReceived(s, seen, next)
                    }
                    Err(e) => error(e),
                }
            }
            Op::Nack(n, t, long, retry) => {
                let Some((id, token)) = self.named(*n, *t) else {
                    return Answer::Skipped;
                };
                match b.nack(q, id, token, &reason(*long), retry.get()).await {
                    Ok(n) => Answer::Nacked(n),
                    Err(e) => error(e),
                }
            }
            Op::DeadLetter(n, t, long) => {
                let Some((id, token)) = self.named(*n, *t) else {
                    return Answer::Skipped;
                };
                match b.dead_letter(q, id, token, &reason(*long)).await {
                    Ok(s) => Answer::Settled(s),
                    Err(e) => error(e),
                }
            }
            Op::Heartbeat(c, ttl) => match b.heartbeat(q, &self.consumers[*c], ttl.get()).await {
                Ok(()) => Answer::Unit,
                Err(e) => error(e),
            },
            Op::Leave(c) => match b.leave(q, &self.consumers[*c]).await {
                Ok(n) => Answer::Count(n),
                Err(e) => error(e),
            },
            Op::GiveBack(c, id) => match b.give_back(q, &self.consumers[*c], *id).await {
                Ok(n) => Answer::Count(n),
                Err(e) => error(e),
            },
            Op::DeadItems(after, limit) => {
                let after = match after {
                    Some(n) if !self.dead.is_empty() => self.dead[n % self.dead.len()],
                    _ => 0,
                };
                match b.dead_items(q, after, *limit).await {
                    Ok(items) => self.dead(items),
                    Err(e) => error(e),
                }
            }
            Op::Requeue(n) => {
                let Some(id) = self.item_id(*n) else {
                    return Answer::Skipped;
                };
                match b.requeue_dead(q, id).await {
                    Ok(found) => Answer::Found(found),
                    Err(e) => error(e),
                }
            }
            Op::Remove(n) => {
                let Some(id) = self.item_id(*n) else {
                    return Answer::Skipped;
                };
                match b.remove_dead(q, id).await {
                    Ok(found) => Answer::Found(found),
                    Err(e) => error(e),
                }
            }
            Op::Stats => match b.stats(q).await {
                Ok(mut s) => {
                    s.consumers.sort();
                    Answer::Stats(s)
                }
                Err(e) => error(e),
            },
        }
    }
}

/// Runs `ops` against a fresh memory store and against `redis`, on a
/// fresh queue; the first step whose answers differ fails, naming both.
async fn run(redis: &RedisBackend, ops: &[Op]) -> Result<(), String> {
    let memory = MemoryStore::new().backend(Namespace::default());
    let queue = fresh_name();
    let consumers: Vec<HolderId> = (0..CONSUMERS)
        .map(|i| HolderId::from_parts(InstanceId::new(&format!("c{i}")).unwrap(), i as u128 + 1))
        .collect();
    let side = |backend| Side {
        backend,
        queue: queue.clone(),
        consumers: &consumers,
        ids: Order::default(),
        tokens: Order::default(),
        deliveries: Vec::new(),
        dead: Vec::new(),
    };
    let (mut m, mut r) = (side(&memory), side(redis));
    compare(&mut m, &mut r, ops).await
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn memory_and_redis_answer_the_same(ops in proptest::collection::vec(op(), 1..=40)) {
        let (rt, redis) = &*PROPERTY;
        rt.block_on(run(redis, &ops)).map_err(TestCaseError::fail)?;
    }
}
