//! The SPI of work queues. The client types built on it are
//! [`Queue`](crate::Queue) and [`Consumer`](crate::Consumer); the contract
//! is [`contract::queues`](crate::contract::queues).
//!
//! A *queue* is a name holding *items*: an opaque payload (the client's
//! encoding of a typed value), an id the backend gives it at push (`u64`,
//! increasing per queue), a priority, the attempts it was given and has had,
//! and its last error. Every item is in exactly one place:
//!
//! ```text
//!            push (delay)                    due
//!   ───────▶ delayed ───────────────────────────────▶ ready ◀──────────────┐
//!   ───────▶ ready   (push without delay)              │                   │
//!                                               receive│        nack (retry)│ expiry /
//!                                                      ▼                   │ dead consumer /
//!                                                  in flight ─────────────┘ leave / steal
//!                                                      │  ack ──────▶ (gone)
//!                                                      └─ dead_letter, or the last attempt
//!                                                         failed or expired ──▶ dead
//! ```
//!
//! A *delivery* is a lease on one item for one consumer: a fencing token
//! drawn from the queue's counter by the token rule (so a later delivery of
//! the same item has a larger token), a deadline on the backend's clock,
//! and whether the consumer *started* it (the first delivery of a receive
//! is started; the others are *prefetched* until the consumer extends
//! them). Only the token of an item's current delivery extends, acks,
//! nacks or dead-letters it, and only before its deadline.
//!
//! A *consumer* is a [`HolderId`] with a presence lease in the queue
//! (renewed by every receive and by [`QueueBackend::heartbeat`]). A
//! consumer whose presence expired is dead: its deliveries go back to ready
//! at the next step, even if their own deadlines have not passed (work
//! stealing from the dead).
//!
//! # The rules, step by step (what every backend does)
//!
//! 1. **Every step first sweeps** the queue: delayed items whose time came
//!    become ready; deliveries whose deadline passed, and every delivery of
//!    a consumer whose presence expired (that consumer is then forgotten),
//!    are *returned* (rule 6). A backend may bound one sweep's work as long
//!    as everything due is swept before the item concerned is received,
//!    settled or reported.
//! 2. **push** gives each item the next id and puts it in ready (or delayed
//!    until now + delay). An item with a dedup key whose key was pushed
//!    within its window is not pushed: the reply names the first item's id.
//!    Items of one push are pushed in order, in one step.
//! 3. **receive** renews the consumer's presence for `presence_ttl`, then
//!    delivers up to `max` ready items, highest priority first, then lowest
//!    id: each gets a new token, the consumer and a deadline of now +
//!    `ttl`; the first is started, the others prefetched. An item's
//!    `attempts` count its *started* deliveries: starting one (here, or by
//!    extend) adds one, and a delivery's `attempt` is the number it has (or
//!    will have, once started). With
//!    `steal` and nothing ready, it may instead take *prefetched* (never
//!    started) deliveries of other live consumers, each as a new delivery
//!    with a new token, counted as stolen. It replies with the deliveries,
//!    or, when there are none, the time until the next of: a delayed item
//!    due, a delivery's deadline, the presence deadline of a consumer
//!    holding deliveries (if it is not renewed, they are given back then).
//! 4. **extend** (current token, unexpired) sets the deadline to now +
//!    `ttl` and marks the delivery started.
//! 5. **ack** removes the item. **nack** records the error and returns the
//!    item (rule 6) with its retry delay; **dead_letter** moves it to dead
//!    with the reason. With any other token, or after the deadline:
//!    [`Settle::Stale`], and nothing changes.
//! 6. **Returning** an item (expiry, dead consumer, nack, leave): a
//!    prefetched delivery simply goes back to ready (it used no attempt);
//!    a started one, if the item has had `max_attempts` attempts, moves to
//!    dead with its last error
//!    (`lease expired` for an expiry, `consumer gone` for a dead consumer,
//!    [`REVOKED`] for a delivery an operator revoked),
//!    exactly once; otherwise it is ready again (delayed by a nack's retry
//!    delay), counted as redelivered when delivered again.
//! 7. **leave** returns every delivery of the consumer (rule 6) and forgets
//!    it. **heartbeat** renews its presence. **give_back** undoes one
//!    receive whose reply the consumer never saw (lost, or the call
//!    cancelled): a receive carries a random id
//!    ([`ReceiveOptions::receive_id`], 0 for none) kept with each delivery
//!    it makes; `give_back` returns every delivery that is still the
//!    current, unexpired delivery of its item to that consumer with that id
//!    (an ack, nack, expiry, leave or steal ended the others: they are not
//!    touched, nor is any delivery of another receive) as if it had never
//!    been made: ready again at once, and the attempt its start counted
//!    taken back (never worked on, it neither uses an attempt nor dies of
//!    it). An id of 0 gives nothing back (decision 0044).
//! 8. **Dead items** are kept (up to [`MAX_DEAD_KEPT`] per queue, the
//!    oldest dropped first) with their payload, attempts, last error and
//!    the time they died; they can be listed, and requeued (ready again
//!    with a fresh attempt count) or removed.
//! 9. **Wake-ups.** A step that made an item ready (push, a sweep, a nack
//!    without delay, a requeue, a leave) or delayed one (a push with a
//!    delay, a nack with a retry delay) wakes the queue's watchers: one
//!    waiting since before knows nothing of a delayed item, and looks
//!    again to learn when it is due. Delays and deadlines pass without a
//!    wake-up: [`Received::next_in`] says when.
//!
//! # Limits (what every backend enforces)
//!
//! A backend checks every argument itself, before any change, and does not
//! rely on the client having checked (the client checks the same, with the
//! same functions, before any I/O). A refusal is `InvalidArgument` naming
//! the queue and the limit:
//!
//! - a push: [`check_push`] (at most [`MAX_BATCH`] items, each within
//!   [`NewItem::check`]: payload, priority, attempts, delay, dedup window);
//!   a refused push pushes none of its items;
//! - a receive: [`ReceiveOptions::check`] (both TTLs, and `max`);
//! - extend and heartbeat: their TTL within [`validate_ttl`];
//! - a page of dead items: [`check_dead_page`].
//!
//! Two arguments are cut rather than refused: an error or reason longer
//! than [`MAX_REASON_BYTES`] is cut at a character boundary
//! ([`cut_reason`]), and a retry delay over [`MAX_TTL`](crate::MAX_TTL) is cut to it.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{FencingToken, HolderId, InstanceId, Key, Result, validate_ttl};

mod input;

use input::invalid;
pub use input::{
    MAX_BATCH, MAX_DEAD_KEPT, MAX_ITEM_ATTEMPTS, MAX_PAYLOAD_BYTES, MAX_PRIORITY, MAX_REASON_BYTES,
    NewItem, REVOKED, check_dead_page, check_push, cut_reason,
};

/// What a push did with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// Pushed with this id.
    Pushed(u64),
    /// Not pushed: its dedup key was pushed within its window, as this id.
    Duplicate(u64),
}

/// A delivery of an item to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The item's id.
    pub id: u64,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Which attempt this is (1-based).
    pub attempt: u32,
    /// The attempts it is given.
    pub max_attempts: u32,
    /// The delivery's token.
    pub token: FencingToken,
    /// Whether it is started (false: prefetched; extend starts it).
    pub started: bool,
    /// Whether it was taken from another live consumer's prefetch.
    pub stolen: bool,
    /// Its priority.
    pub priority: u8,
}

impl Delivery {
    /// A started, not stolen delivery.
    pub fn new(
        id: u64,
        payload: Vec<u8>,
        attempt: u32,
        max_attempts: u32,
        token: FencingToken,
    ) -> Delivery {
        Delivery {
            id,
            payload,
            attempt,
            max_attempts,
            token,
            started: true,
            stolen: false,
            priority: 0,
        }
    }
}

/// The reply to [`QueueBackend::receive`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Received {
    /// The deliveries, in delivery order (empty: nothing to deliver).
    pub deliveries: Vec<Delivery>,
    /// With no delivery: the time until a delayed item is due, a
    /// delivery's deadline passes, or a consumer holding deliveries may be
    /// found dead, if any.
    pub next_in: Option<Duration>,
}

impl Received {
    /// A reply with these deliveries.
    pub fn new(deliveries: Vec<Delivery>, next_in: Option<Duration>) -> Received {
        Received {
            deliveries,
            next_in,
        }
    }
}

/// How a receive delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveOptions {
    /// Each delivery's lease.
    pub ttl: Duration,
    /// The consumer's presence lease.
    pub presence_ttl: Duration,
    /// At most this many deliveries (1 ..= [`MAX_BATCH`]).
    pub max: u32,
    /// Take other live consumers' prefetched deliveries when nothing is
    /// ready.
    pub steal: bool,
    /// The receive's id, kept with each delivery it makes, which
    /// [`QueueBackend::give_back`] names (rule 7); 0: none (nothing it
    /// delivers can be given back that way).
    pub receive_id: u64,
}

impl ReceiveOptions {
    /// One delivery of `ttl`, presence `presence_ttl`, no stealing.
    pub fn new(ttl: Duration, presence_ttl: Duration) -> ReceiveOptions {
        ReceiveOptions {
            ttl,
            presence_ttl,
            max: 1,
            steal: false,
            receive_id: 0,
        }
    }

    /// Up to `max` deliveries.
    pub fn max(mut self, max: u32) -> ReceiveOptions {
        self.max = max;
        self
    }

    /// Stealing on or off.
    pub fn steal(mut self, steal: bool) -> ReceiveOptions {
        self.steal = steal;
        self
    }

    /// With the receive's id (rule 7).
    pub fn receive_id(mut self, id: u64) -> ReceiveOptions {
        self.receive_id = id;
        self
    }

    /// Checks the options against the limits every backend enforces at
    /// receive: both TTLs within [`validate_ttl`], and `max` in
    /// 1..=[`MAX_BATCH`]. `queue` names the queue in errors.
    pub fn check(&self, queue: &Key) -> Result<()> {
        validate_ttl(queue, self.ttl)?;
        validate_ttl(queue, self.presence_ttl)?;
        if self.max == 0 || self.max as usize > MAX_BATCH {
            let n = self.max;
            return Err(invalid(
                queue,
                format_args!("a receive of {n} items, outside 1..={MAX_BATCH}"),
            ));
        }
        Ok(())
    }
}

/// The reply to ack, dead-letter and extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settle {
    /// Done.
    Done,
    /// The token is not the item's current, unexpired delivery: nothing
    /// changed.
    Stale,
}

/// The reply to [`QueueBackend::nack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nack {
    /// Ready again (after the retry delay).
    Requeued,
    /// It had no attempt left: moved to dead, with the error.
    DeadLettered,
    /// The token is not the item's current, unexpired delivery: nothing
    /// changed.
    Stale,
}

/// A dead item.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadItem {
    /// Its id.
    pub id: u64,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The attempts it had.
    pub attempts: u32,
    /// Why it died: its last error, the reason given, `lease expired`,
    /// `consumer gone`, or a decode error.
    pub reason: String,
    /// When (the backend's clock).
    pub died_at: SystemTime,
}

impl DeadItem {
    /// A dead item.
    pub fn new(
        id: u64,
        payload: Vec<u8>,
        attempts: u32,
        reason: String,
        died_at: SystemTime,
    ) -> DeadItem {
        DeadItem {
            id,
            payload,
            attempts,
            reason,
            died_at,
        }
    }
}

/// A queue's counts, as one step saw them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Items ready.
    pub ready: u64,
    /// Items delayed.
    pub delayed: u64,
    /// Items delivered and not settled.
    pub in_flight: u64,
    /// Dead items kept.
    pub dead: u64,
    /// Live consumers (instance of each, one entry per consumer).
    pub consumers: Vec<InstanceId>,
    /// Deliveries ever made.
    pub delivered: u64,
    /// Deliveries of an item that had been started before.
    pub redelivered: u64,
    /// Deliveries taken from a live consumer's prefetch.
    pub stolen: u64,
    /// Items moved to dead.
    pub dead_lettered: u64,
}

/// Work queues. Every method is one atomic step (one round trip on a remote
/// backend); queues have a key space of their own, and everything of one
/// queue lives together (one hash slot on Redis).
#[async_trait]
pub trait QueueBackend: Send + Sync {
    /// Pushes `items` in order (rule 2), one reply per item.
    async fn push(&self, queue: &Key, items: Vec<NewItem>) -> Result<Vec<Pushed>>;

    /// Delivers up to `opts.max` items to `consumer` (rule 3).
    async fn receive(
        &self,
        queue: &Key,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<Received>;

    /// Extends delivery `token` of item `id` by `ttl` and starts it (rule 4).
    async fn extend(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle>;

    /// Acknowledges delivery `token` of item `id`: the item is done (rule 5).
    async fn ack(&self, queue: &Key, id: u64, token: FencingToken) -> Result<Settle>;

    /// [`ack`](Self::ack), then [`receive`](Self::receive) for `consumer`,
    /// whatever the ack's answer: a consumer's settle-and-take-the-next (as
    /// a worker loop does), one round trip instead of two on a remote
    /// backend, which runs both in one step. `opts` is checked before
    /// anything changes. It must be indistinguishable from the two calls,
    /// one after the other.
    async fn ack_and_receive(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<(Settle, Received)>;

    /// Gives item `id` back with `error`, ready again after `retry_in` if it
    /// has attempts left (rules 5, 6).
    async fn nack(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        error: &str,
        retry_in: Duration,
    ) -> Result<Nack>;

    /// Moves item `id` to dead with `reason` (rule 5).
    async fn dead_letter(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        reason: &str,
    ) -> Result<Settle>;

    /// Renews `consumer`'s presence for `ttl` (rule 7).
    async fn heartbeat(&self, queue: &Key, consumer: &HolderId, ttl: Duration) -> Result<()>;

    /// Returns every delivery of `consumer` and forgets it; how many
    /// (rule 7).
    async fn leave(&self, queue: &Key, consumer: &HolderId) -> Result<u32>;

    /// Returns, as if never delivered, every delivery that receive
    /// `receive_id` (its [`ReceiveOptions::receive_id`]) made to `consumer`
    /// and that is still the current, unexpired delivery of its item; how
    /// many (rule 7). Nothing else changes; an id of 0 gives nothing back.
    async fn give_back(&self, queue: &Key, consumer: &HolderId, receive_id: u64) -> Result<u32>;

    /// Dead items with ids above `after`, lowest first, at most `limit`.
    async fn dead_items(&self, queue: &Key, after: u64, limit: u32) -> Result<Vec<DeadItem>>;

    /// Makes dead item `id` ready again with a fresh attempt count; `false`
    /// if there is no such dead item.
    async fn requeue_dead(&self, queue: &Key, id: u64) -> Result<bool>;

    /// Removes dead item `id`; `false` if there is no such dead item.
    async fn remove_dead(&self, queue: &Key, id: u64) -> Result<bool>;

    /// The queue's counts.
    async fn stats(&self, queue: &Key) -> Result<QueueStats>;

    /// Wakes when an item of the queue may have become ready.
    async fn watch(&self, queue: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "queues",
        name,
    }
}

fn queues<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn QueueBackend> {
    family!(backend, queues, op(name))
}

#[async_trait]
impl<D: Dispatch> QueueBackend for Dispatched<D> {
    async fn push(&self, queue: &Key, items: Vec<NewItem>) -> Result<Vec<Pushed>> {
        let args = (queue.clone(), items);
        self.carry(op("push"), args, |b, (q, items)| async move {
            queues(&b, "push")?.push(&q, items).await
        })
        .await
    }
    async fn receive(
        &self,
        queue: &Key,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<Received> {
        let args = (queue.clone(), consumer.clone(), opts);
        self.carry(op("receive"), args, |b, (q, c, o)| async move {
            queues(&b, "receive")?.receive(&q, &c, o).await
        })
        .await
    }
    async fn extend(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle> {
        let args = (queue.clone(), id, token, ttl);
        self.carry(op("extend"), args, |b, (q, id, t, ttl)| async move {
            queues(&b, "extend")?.extend(&q, id, t, ttl).await
        })
        .await
    }
    async fn ack(&self, queue: &Key, id: u64, token: FencingToken) -> Result<Settle> {
        let args = (queue.clone(), id, token);
        self.carry(op("ack"), args, |b, (q, id, t)| async move {
            queues(&b, "ack")?.ack(&q, id, t).await
        })
        .await
    }
    /// Carried as the two calls it stands for, `ack` then `receive`: what
    /// sees every call (a decorator, the simulator's log and broken
    /// servers) sees the ones it knows.
    async fn ack_and_receive(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<(Settle, Received)> {
        opts.check(queue)?;
        let settle = self.ack(queue, id, token).await?;
        Ok((settle, self.receive(queue, consumer, opts).await?))
    }
    async fn nack(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        error: &str,
        retry_in: Duration,
    ) -> Result<Nack> {
        let args = (queue.clone(), id, token, error.to_owned(), retry_in);
        self.carry(op("nack"), args, |b, (q, id, t, e, r)| async move {
            queues(&b, "nack")?.nack(&q, id, t, &e, r).await
        })
        .await
    }
    async fn dead_letter(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        reason: &str,
    ) -> Result<Settle> {
        let args = (queue.clone(), id, token, reason.to_owned());
        self.carry(op("dead_letter"), args, |b, (q, id, t, why)| async move {
            queues(&b, "dead_letter")?
                .dead_letter(&q, id, t, &why)
                .await
        })
        .await
    }
    async fn heartbeat(&self, queue: &Key, consumer: &HolderId, ttl: Duration) -> Result<()> {
        let args = (queue.clone(), consumer.clone(), ttl);
        self.carry(op("heartbeat"), args, |b, (q, c, ttl)| async move {
            queues(&b, "heartbeat")?.heartbeat(&q, &c, ttl).await
        })
        .await
    }
    async fn leave(&self, queue: &Key, consumer: &HolderId) -> Result<u32> {
        let args = (queue.clone(), consumer.clone());
        self.carry(op("leave"), args, |b, (q, c)| async move {
            queues(&b, "leave")?.leave(&q, &c).await
        })
        .await
    }
    async fn give_back(&self, queue: &Key, consumer: &HolderId, receive_id: u64) -> Result<u32> {
        let args = (queue.clone(), consumer.clone(), receive_id);
        self.carry(op("give_back"), args, |b, (q, c, id)| async move {
            queues(&b, "give_back")?.give_back(&q, &c, id).await
        })
        .await
    }
    async fn dead_items(&self, queue: &Key, after: u64, limit: u32) -> Result<Vec<DeadItem>> {
        let args = (queue.clone(), after, limit);
        self.carry(op("dead_items"), args, |b, (q, after, limit)| async move {
            queues(&b, "dead_items")?.dead_items(&q, after, limit).await
        })
        .await
    }
    async fn requeue_dead(&self, queue: &Key, id: u64) -> Result<bool> {
        let args = (queue.clone(), id);
        self.carry(op("requeue_dead"), args, |b, (q, id)| async move {
            queues(&b, "requeue_dead")?.requeue_dead(&q, id).await
        })
        .await
    }
    async fn remove_dead(&self, queue: &Key, id: u64) -> Result<bool> {
        let args = (queue.clone(), id);
        self.carry(op("remove_dead"), args, |b, (q, id)| async move {
            queues(&b, "remove_dead")?.remove_dead(&q, id).await
        })
        .await
    }
    async fn stats(&self, queue: &Key) -> Result<QueueStats> {
        let args = queue.clone();
        self.carry(op("stats"), args, |b, q| async move {
            queues(&b, "stats")?.stats(&q).await
        })
        .await
    }
    async fn watch(&self, queue: &Key) -> Result<Box<dyn Watch>> {
        let args = queue.clone();
        self.carry(op("watch"), args, |b, q| async move {
            queues(&b, "watch")?.watch(&q).await
        })
        .await
    }
}
