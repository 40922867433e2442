//! The SPI of topics: typed events in two tiers. The client types built on
//! it are [`Topic`](crate::Topic) and [`Subscriber`](crate::Subscriber); the
//! contract is [`contract::topics`](crate::contract::topics).
//!
//! # Two tiers, named for what they promise
//!
//! - **Ephemeral** ([`TopicBackend::publish_ephemeral`],
//!   [`TopicBackend::listen`]): pub/sub. An event reaches the listeners
//!   connected at that instant and is not kept: a listener that is
//!   disconnected, slow past its buffer, or not yet listening misses it.
//!   At most once. A listener is told when it may have missed events
//!   ([`Heard::MayHaveMissed`]) where the backend can tell (a lost
//!   connection, a full buffer), never which ones.
//! - **Durable** (everything else): a *stream* of events with *offsets*
//!   (`u64`, 1, 2, 3... per topic, never reused while the stream lives),
//!   kept under a bounded [`Retention`], read through named
//!   *subscriptions*, each of which sees every event: at least once, with
//!   acks.
//!
//! Every event carries a [`Tag`] (a kind and a version) so that a reader
//! can refuse what it cannot read: refused and undecodable events are
//! dead-lettered by the reader ([`TopicBackend::dead_letter`]) with the
//! reason, and the subscription goes on.
//!
//! # The durable rules, step by step (what every backend does)
//!
//! A subscription has a *cursor* (the offset of the last event it was
//! handed for the first time), *deliveries* (an offset leased to one
//! consumer: a token drawn from the topic's counter by the token rule, a
//! deadline on the backend's clock, the attempt), a *retry set* (offsets
//! whose delivery ended without an ack, each with the time it is due
//! again), *consumers* (a [`HolderId`] with a presence lease) and *dead
//! events*.
//!
//! 1. **Every step on a subscription first sweeps** it: a delivery whose
//!    deadline passed, and every delivery of a consumer whose presence
//!    expired (the consumer is then forgotten), goes to the retry set, due
//!    at once, keeping its attempt count.
//! 2. **publish** appends the events in order, in one step: each gets the
//!    next offset and the backend's time; then the stream is trimmed to
//!    the retention given (at most `max_len` events, none older than
//!    `max_age`), oldest first. It wakes the topic's watchers. The reply
//!    is the offsets.
//! 3. **subscribe** creates the subscription if it does not exist, with
//!    its cursor placed by [`Start`] (`Earliest`: before the oldest event
//!    kept; `Latest`: after the newest; `Offset(o)`: before `o`; `Time(t)`:
//!    before the first event published at or after `t`), and does nothing
//!    to one that exists. **seek** moves an existing subscription's cursor
//!    the same way (replay), keeping its deliveries and retry set.
//! 4. **read** renews the consumer's presence for `presence_ttl`, then
//!    delivers up to `max` events: first offsets of the retry set that are
//!    due (lowest due time, then lowest offset), then, while the batch has
//!    room, events after the cursor in offset order, skipping offsets
//!    under delivery (the cursor moves past every event handed out, and
//!    stays where it is when the retries filled the batch). Each delivery gets a new token, a
//!    deadline of now + `ttl` and its attempt (1 for the first). An offset
//!    the subscription should deliver but the stream no longer keeps
//!    (trimmed by retention first) is not skipped silently: the reply's
//!    [`Read::missed`] names it (as ranges), the cursor moves past it, and
//!    it leaves the retry set. With nothing to deliver, the reply says when
//!    to look again ([`Read::next_in`]): the next retry due, delivery
//!    deadline or presence deadline of a consumer holding deliveries.
//! 5. **extend** (current token, unexpired) sets the delivery's deadline
//!    to now + `ttl`. **ack** ends it: the event is done for this
//!    subscription. **nack** ends it and puts the offset in the retry set,
//!    due after `retry_in`. **dead_letter** ends it and keeps the event
//!    (its offset alone if retention trimmed it meanwhile) with the reason
//!    among the subscription's dead events (at most
//!    [`MAX_DEAD_EVENTS_KEPT`], the oldest dropped first). With any other token,
//!    or after the deadline: [`Settle::Stale`], and nothing changes.
//!    **ack_and_read** is an ack then a read in one step, the read made
//!    whatever the ack answered.
//! 6. **leave** puts every delivery of the consumer in the retry set (due
//!    at once) and forgets it; **heartbeat** renews its presence.
//!    **give_back** undoes one read whose reply the consumer never saw
//!    (lost, or the call cancelled): a read carries a random id
//!    ([`ReadOptions::read_id`], 0 for none) kept with each delivery it
//!    makes, and `give_back` puts in the retry set, due at once, every
//!    delivery that is still the current, unexpired delivery of its offset
//!    to that consumer with that id (an ack, nack, dead letter, expiry or
//!    leave ended the others: they are not touched, nor is any delivery of
//!    another read), the attempt it counted taken back (never worked on,
//!    it uses no attempt). The cursor does not move back. An id of 0 gives
//!    nothing back (decision 0044).
//! 7. **Wake-ups.** A publish, a nack, a seek, a leave that left anything
//!    behind and a give-back that gave anything back wake the topic's
//!    watchers (a subscriber waiting since before knows nothing of them:
//!    it looks again, and rule 4's `next_in` says when a nacked event is
//!    due); a sweep does not (`next_in` said when).
//! 8. **unsubscribe** deletes the subscription, its deliveries and its dead
//!    events. The stream is kept (by retention) whether or not anyone
//!    subscribes.
//!
//! # Limits (what every backend enforces)
//!
//! A backend checks every argument itself, before any change, and does not
//! rely on the client having checked (the client checks the same, with the
//! same functions, before any I/O). A refusal is `InvalidArgument` naming
//! the topic and the limit: a publish, [`check_publish`] (at most
//! [`MAX_EVENT_BATCH`] events, each within [`NewEvent::check`], and the
//! [`Retention::check`]); a read, [`ReadOptions::check`]; extend and
//! heartbeat, [`validate_ttl`]; a page of dead events,
//! [`check_dead_page`]. A nack's delay is never refused: zero makes the
//! event due at once (the client's drop and seek rely on it) and a delay
//! past [`MAX_TTL`](crate::MAX_TTL) is cut to it. A reason longer than
//! [`MAX_REASON_BYTES`](super::MAX_REASON_BYTES) is cut at a character
//! boundary ([`cut_reason`](super::queues::cut_reason)).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Settle, Watch};
use crate::{Error, FencingToken, HolderId, Key, Result, validate_ttl};

mod carried;

/// The largest payload of an event, in bytes.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The longest kind in an event's tag, in bytes.
pub const MAX_KIND_BYTES: usize = 128;

/// The most events one publish or one read may carry.
pub const MAX_EVENT_BATCH: usize = 1_000;

/// The most events a retention may keep.
pub const MAX_RETAINED: u64 = 10_000_000;

/// The longest age a retention may keep events for (30 days).
pub const MAX_RETENTION_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The most dead events a backend keeps per subscription, at least.
pub const MAX_DEAD_EVENTS_KEPT: usize = 10_000;

/// What an event is: a kind (its type's name, 1..=[`MAX_KIND_BYTES`]
/// bytes, no control characters) and a version of that kind's encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Tag {
    /// The kind, e.g. `OrderPlaced`.
    pub kind: String,
    /// The version of its encoding (from 1).
    pub version: u32,
}

impl Tag {
    /// A tag.
    pub fn new(kind: impl Into<String>, version: u32) -> Tag {
        Tag {
            kind: kind.into(),
            version,
        }
    }

    /// Checks the tag: a kind of 1..=[`MAX_KIND_BYTES`] bytes without
    /// control characters or `|`, and a version of at least 1.
    pub fn check(&self, topic: &Key) -> Result<()> {
        let k = &self.kind;
        if k.is_empty() || k.len() > MAX_KIND_BYTES || k.chars().any(|c| c.is_control() || c == '|')
        {
            return Err(invalid(
                topic,
                format_args!(
                    "event kind {k:?}: 1..={MAX_KIND_BYTES} bytes, no control character or '|'"
                ),
            ));
        }
        if self.version == 0 {
            return Err(invalid(topic, format_args!("event version 0, below 1")));
        }
        Ok(())
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.kind, self.version)
    }
}

/// An event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewEvent {
    /// What it is.
    pub tag: Tag,
    /// The encoded value (at most [`MAX_EVENT_BYTES`]).
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// An event.
    pub fn new(tag: Tag, payload: Vec<u8>) -> NewEvent {
        NewEvent { tag, payload }
    }

    /// Checks the event: its tag ([`Tag::check`]) and a payload of at most
    /// [`MAX_EVENT_BYTES`].
    pub fn check(&self, topic: &Key) -> Result<()> {
        self.tag.check(topic)?;
        let size = self.payload.len();
        if size > MAX_EVENT_BYTES {
            return Err(invalid(
                topic,
                format_args!("an event of {size} bytes, more than the limit of {MAX_EVENT_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// How much of a stream is kept: at most `max_len` events and none older
/// than `max_age` (at least one of the two). Trimming happens when events
/// are published, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// At most this many events (1..=[`MAX_RETAINED`]).
    pub max_len: Option<u64>,
    /// None older than this (1 s..=[`MAX_RETENTION_AGE`]).
    pub max_age: Option<Duration>,
}

impl Retention {
    /// The newest `n` events.
    pub fn count(n: u64) -> Retention {
        Retention {
            max_len: Some(n),
            max_age: None,
        }
    }

    /// The events of the last `age`.
    pub fn age(age: Duration) -> Retention {
        Retention {
            max_len: None,
            max_age: Some(age),
        }
    }

    /// At most `n` events, none older than `age`.
    pub fn count_and_age(n: u64, age: Duration) -> Retention {
        Retention {
            max_len: Some(n),
            max_age: Some(age),
        }
    }

    /// Checks the retention: at least one bound, `max_len` in
    /// 1..=[`MAX_RETAINED`], `max_age` in 1 s..=[`MAX_RETENTION_AGE`].
    pub fn check(&self, topic: &Key) -> Result<()> {
        if self.max_len.is_none() && self.max_age.is_none() {
            return Err(invalid(
                topic,
                format_args!("a retention needs a count or an age (unbounded streams are refused)"),
            ));
        }
        if let Some(n) = self.max_len
            && !(1..=MAX_RETAINED).contains(&n)
        {
            return Err(invalid(
                topic,
                format_args!("a retention of {n} events, outside 1..={MAX_RETAINED}"),
            ));
        }
        if let Some(age) = self.max_age
            && !(Duration::from_secs(1)..=MAX_RETENTION_AGE).contains(&age)
        {
            return Err(invalid(
                topic,
                format_args!("a retention age of {age:?}, outside 1s..={MAX_RETENTION_AGE:?}"),
            ));
        }
        Ok(())
    }
}

/// Checks a publish: at most [`MAX_EVENT_BATCH`] events, each within
/// [`NewEvent::check`], and the retention.
pub fn check_publish(topic: &Key, events: &[NewEvent], retention: &Retention) -> Result<()> {
    if events.len() > MAX_EVENT_BATCH {
        let n = events.len();
        return Err(invalid(
            topic,
            format_args!("a publish of {n} events, more than the limit of {MAX_EVENT_BATCH}"),
        ));
    }
    retention.check(topic)?;
    events.iter().try_for_each(|e| e.check(topic))
}

/// Checks the size of a page of dead events: 1..=[`MAX_EVENT_BATCH`].
pub fn check_dead_page(topic: &Key, limit: u32) -> Result<()> {
    if limit == 0 || limit as usize > MAX_EVENT_BATCH {
        return Err(invalid(
            topic,
            format_args!("a page of {limit} dead events, outside 1..={MAX_EVENT_BATCH}"),
        ));
    }
    Ok(())
}

/// `InvalidArgument` naming `topic` and what is wrong.
pub(crate) fn invalid(topic: &Key, what: std::fmt::Arguments<'_>) -> Error {
    Error::invalid(format!("topic \"{topic}\": {what}"))
}

/// Where a subscription starts reading (or a seek moves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Start {
    /// The oldest event the stream keeps.
    Earliest,
    /// Only events published from now on.
    Latest,
    /// At this offset (older ones trimmed: reported missed at the read).
    Offset(u64),
    /// At the first event published at or after this time (the backend's
    /// clock).
    Time(SystemTime),
}

/// An event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Its offset.
    pub offset: u64,
    /// When it was published (the backend's clock, millisecond precision).
    pub at: SystemTime,
    /// What it is.
    pub tag: Tag,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Event {
    /// The event at `offset`, published at `at`.
    pub fn new(offset: u64, at: SystemTime, tag: Tag, payload: Vec<u8>) -> Event {
        Event {
            offset,
            at,
            tag,
            payload,
        }
    }
}

/// An event delivered to a consumer of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The event.
    pub event: Event,
    /// The delivery's token.
    pub token: FencingToken,
    /// Which delivery of this event to this subscription (1 for the first).
    pub attempt: u32,
}

impl Delivered {
    /// Delivery `attempt` of `event` under `token`.
    pub fn new(event: Event, token: FencingToken, attempt: u32) -> Delivered {
        Delivered {
            event,
            token,
            attempt,
        }
    }
}

/// Offsets `first..=last` that a subscription should have delivered but
/// the stream no longer kept (trimmed by retention first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Missed {
    /// The first offset missed.
    pub first: u64,
    /// The last offset missed.
    pub last: u64,
}

impl Missed {
    /// Offsets `first..=last`.
    pub fn new(first: u64, last: u64) -> Missed {
        Missed { first, last }
    }
}

/// The reply to [`TopicBackend::read`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Read {
    /// The deliveries, in delivery order.
    pub events: Vec<Delivered>,
    /// What the subscription missed to trimming, in offset order.
    pub missed: Vec<Missed>,
    /// With no delivery: when to look again, if anything is pending.
    pub next_in: Option<Duration>,
}

impl Read {
    /// A reply with these deliveries and missed ranges.
    pub fn new(events: Vec<Delivered>, missed: Vec<Missed>, next_in: Option<Duration>) -> Read {
        Read {
            events,
            missed,
            next_in,
        }
    }
}

/// How a read delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// Each delivery's lease.
    pub ttl: Duration,
    /// The consumer's presence lease.
    pub presence_ttl: Duration,
    /// At most this many deliveries (1..=[`MAX_EVENT_BATCH`]).
    pub max: u32,
    /// The read's id, kept with each delivery it makes, which
    /// [`TopicBackend::give_back`] names (rule 6); 0: none (nothing it
    /// delivers can be given back that way).
    pub read_id: u64,
}

impl ReadOptions {
    /// Up to `max` deliveries of `ttl`, presence `presence_ttl`.
    pub fn new(ttl: Duration, presence_ttl: Duration, max: u32) -> ReadOptions {
        ReadOptions {
            ttl,
            presence_ttl,
            max,
            read_id: 0,
        }
    }

    /// With the read's id (rule 6).
    pub fn read_id(mut self, id: u64) -> ReadOptions {
        self.read_id = id;
        self
    }

    /// Checks both TTLs ([`validate_ttl`]) and `max` in 1..=[`MAX_EVENT_BATCH`].
    pub fn check(&self, topic: &Key) -> Result<()> {
        validate_ttl(topic, self.ttl)?;
        validate_ttl(topic, self.presence_ttl)?;
        if self.max == 0 || self.max as usize > MAX_EVENT_BATCH {
            let n = self.max;
            return Err(invalid(
                topic,
                format_args!("a read of {n} events, outside 1..={MAX_EVENT_BATCH}"),
            ));
        }
        Ok(())
    }
}

/// A dead event of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadEvent {
    /// Its place among the subscription's dead events (increasing).
    pub id: u64,
    /// The event's offset.
    pub offset: u64,
    /// The event, unless retention trimmed it before it was dead-lettered.
    pub event: Option<Event>,
    /// Why: a decode error, a refused tag, or the reason given.
    pub reason: String,
    /// When (the backend's clock).
    pub died_at: SystemTime,
}

impl DeadEvent {
    /// Dead event `id`, the event at `offset` (`None`: trimmed first).
    pub fn new(
        id: u64,
        offset: u64,
        event: Option<Event>,
        reason: String,
        died_at: SystemTime,
    ) -> DeadEvent {
        DeadEvent {
            id,
            offset,
            event,
            reason,
            died_at,
        }
    }
}

/// A subscription's state, as one step saw it. Built from
/// [`Default`] (no subscription, an empty stream), its fields then set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Whether the subscription exists.
    pub exists: bool,
    /// The offset of the last event handed out for the first time.
    pub cursor: u64,
    /// The newest offset of the stream (0: none yet).
    pub last_offset: u64,
    /// The oldest offset the stream keeps (0: it keeps none).
    pub first_offset: u64,
    /// Deliveries not settled.
    pub in_flight: u64,
    /// Offsets waiting to be delivered again.
    pub retrying: u64,
    /// Live consumers.
    pub consumers: u64,
    /// Dead events kept.
    pub dead: u64,
}

/// What an ephemeral listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Heard {
    /// An event.
    Event(Tag, Vec<u8>),
    /// Events may have been missed here (a lost connection, a full
    /// buffer): which, the ephemeral tier cannot tell.
    MayHaveMissed,
}

/// A listener to a topic's ephemeral events.
#[async_trait]
pub trait Listener: Send {
    /// The next thing heard. Cancel safe.
    async fn next(&mut self) -> Result<Heard>;
}

/// Topics. Every method is one atomic step (one round trip on a remote
/// backend); everything of one topic lives together (one hash slot on
/// Redis).
#[async_trait]
pub trait TopicBackend: Send + Sync {
    /// Publishes `event` to the listeners connected now (at most once); how
    /// many were reached, as far as the backend can tell.
    async fn publish_ephemeral(&self, topic: &Key, event: NewEvent) -> Result<u64>;

    /// Listens to the topic's ephemeral events, from the moment this
    /// returns.
    async fn listen(&self, topic: &Key) -> Result<Box<dyn Listener>>;

    /// Appends `events` and trims the stream to `retention` (rule 2); their
    /// offsets.
    async fn publish(
        &self,
        topic: &Key,
        events: Vec<NewEvent>,
        retention: Retention,
    ) -> Result<Vec<u64>>;

    /// Creates subscription `sub` at `start` if it does not exist (rule 3);
    /// `true` if it made it.
    async fn subscribe(&self, topic: &Key, sub: &Key, start: Start) -> Result<bool>;

    /// Moves `sub`'s cursor to `start` (rule 3); the offset of the next
    /// event it will read, or `None` if `sub` does not exist.
    async fn seek(&self, topic: &Key, sub: &Key, start: Start) -> Result<Option<u64>>;

    /// Delivers up to `opts.max` events of `sub` to `consumer` (rule 4);
    /// `None` if `sub` does not exist (nothing changed).
    async fn read(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        opts: ReadOptions,
    ) -> Result<Option<Read>>;

    /// Extends delivery `token` of `offset` by `ttl` (rule 5).
    async fn extend(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle>;

    /// Acknowledges delivery `token` of `offset` (rule 5).
    async fn ack(&self, topic: &Key, sub: &Key, offset: u64, token: FencingToken)
    -> Result<Settle>;

    /// [`ack`](Self::ack), then [`read`](Self::read) for `consumer`,
    /// whatever the ack's answer, in one step (one round trip on a remote
    /// backend): a subscriber's settle-and-take-the-next. `opts` is checked
    /// before anything changes. Indistinguishable from the two calls one
    /// after the other with nothing in between (rule 5's ack, then rule
    /// 4's read, each with its sweep); `None` if `sub` does not exist
    /// (the ack is then `Stale`).
    async fn ack_and_read(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        consumer: &HolderId,
        opts: ReadOptions,
    ) -> Result<(Settle, Option<Read>)>;

    /// Ends delivery `token` of `offset`, to be delivered again after
    /// `retry_in` (rule 5).
    async fn nack(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        retry_in: Duration,
    ) -> Result<Settle>;

    /// Ends delivery `token` of `offset` and keeps the event among the dead
    /// with `reason` (rule 5).
    async fn dead_letter(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        reason: &str,
    ) -> Result<Settle>;

    /// Renews `consumer`'s presence for `ttl` (rule 6).
    async fn heartbeat(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        ttl: Duration,
    ) -> Result<()>;

    /// Puts every delivery of `consumer` in the retry set and forgets it;
    /// how many (rule 6).
    async fn leave(&self, topic: &Key, sub: &Key, consumer: &HolderId) -> Result<u32>;

    /// Puts in the retry set, due at once and as if never delivered, every
    /// delivery that read `read_id` (its [`ReadOptions::read_id`]) of `sub`
    /// made to `consumer` and that is still the current, unexpired delivery
    /// of its offset; how many (rule 6). Nothing else changes; an id of 0
    /// gives nothing back.
    async fn give_back(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        read_id: u64,
    ) -> Result<u32>;

    /// Dead events of `sub` with ids above `after`, lowest first, at most
    /// `limit`.
    async fn dead_events(
        &self,
        topic: &Key,
        sub: &Key,
        after: u64,
        limit: u32,
    ) -> Result<Vec<DeadEvent>>;

    /// Deletes `sub` (rule 8); `false` if it did not exist.
    async fn unsubscribe(&self, topic: &Key, sub: &Key) -> Result<bool>;

    /// `sub`'s state (`exists: false` and the stream's offsets if it does
    /// not exist).
    async fn stats(&self, topic: &Key, sub: &Key) -> Result<SubscriptionStats>;

    /// Wakes when an event may have been published to the topic's stream.
    async fn watch(&self, topic: &Key) -> Result<Box<dyn Watch>>;
}
