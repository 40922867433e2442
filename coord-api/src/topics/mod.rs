//! Topics: typed events in two tiers, named for what they promise.
//!
//! | type | what it is |
//! |---|---|
//! | [`Topic`] (from [`Client::topic`]) | publish: [`publish_ephemeral`](Topic::publish_ephemeral) (at most once) and [`publish`](Topic::publish) (durable, at least once to every subscription) |
//! | [`EphemeralListener`] | hears ephemeral events while connected, and is told when it may have missed some |
//! | [`Subscriber`], [`Next`] (`subscriber.rs`) | reads a named subscription of the durable stream: deliveries under leases, replay, missed offsets, refused events |
//! | `subscriber/buffered.rs` | what a read hands a subscriber until `next` hands it out: the buffer, starting a buffered delivery, refusing an event, the presence lease, the give-back of an unanswered read |
//! | [`EventDelivery`], [`EventContext`] (`delivery.rs`) | one event under a lease: ack, nack, dead-letter |
//! | `metrics.rs` | what the family counts |
//!
//! The contract is [`contract::topics`](crate::contract::topics); the
//! backend's rules are in [`spi::topics`](crate::spi::topics).

mod delivery;
pub(crate) mod metrics;
mod subscriber;

use std::{marker::PhantomData, ops::RangeInclusive, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Client, Error, Key, Result, codec,
    spi::{
        Heard, Listener, NewEvent, Retention, Tag,
        topics::{check_publish, invalid},
    },
    trace::{self, Outcome, Site},
};

pub use delivery::{EventContext, EventDelivery};
pub use subscriber::{Next, Subscriber};

/// A topic of events of type `E`, encoded with serde (JSON) and tagged
/// with a kind and a version. Cheap to clone.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::{Next, spi::Start};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderPlaced { id: u64 }
///
/// let orders = client.topic::<OrderPlaced>("orders");
/// // Durable: kept (by retention) until every subscription read it.
/// let mut billing = orders.subscriber("billing").start(Start::Earliest);
/// let offset = orders.publish(&OrderPlaced { id: 7 }).await?;
/// if let Next::Event(d) = billing.next().await? {
///     assert_eq!(d.offset(), offset);
///     d.ack().await?;
/// }
/// // Ephemeral: only listeners connected now hear it, at most once.
/// orders.publish_ephemeral(&OrderPlaced { id: 8 }).await?;
/// # Ok(()) }
/// ```
pub struct Topic<E> {
    client: Client,
    name: std::result::Result<Key, String>,
    tag: Tag,
    reads: RangeInclusive<u32>,
    retention: Retention,
    _event: PhantomData<fn() -> E>,
}

impl<E> Clone for Topic<E> {
    fn clone(&self) -> Topic<E> {
        Topic {
            client: self.client.clone(),
            name: self.name.clone(),
            tag: self.tag.clone(),
            reads: self.reads.clone(),
            retention: self.retention,
            _event: PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for Topic<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name_str())
            .field("tag", &self.tag)
            .field("reads", &self.reads)
            .field("retention", &self.retention)
            .finish()
    }
}

/// The short name of `E` (its path's last segment, without generics): the
/// default kind of its events.
fn short_type_name<E>() -> String {
    let full = std::any::type_name::<E>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}

impl<E> Topic<E> {
    pub(crate) fn name_str(&self) -> &str {
        match &self.name {
            Ok(k) => k.as_str(),
            Err(raw) => raw,
        }
    }
}

impl<E: Serialize + DeserializeOwned + Send + 'static> Topic<E> {
    /// Retention by default: the newest 100,000 events, none older than 7
    /// days.
    pub const DEFAULT_RETENTION: Retention = Retention {
        max_len: Some(100_000),
        max_age: Some(Duration::from_secs(7 * 24 * 3600)),
    };

    pub(crate) fn new(client: Client, name: &str) -> Topic<E> {
        Topic {
            client,
            name: Key::new(name).map_err(|_| name.to_owned()),
            tag: Tag::new(short_type_name::<E>(), 1),
            reads: 1..=1,
            retention: Self::DEFAULT_RETENTION,
            _event: PhantomData,
        }
    }

    /// Tags published events with `kind` and `version` (default: the type's
    /// short name, version 1), and reads versions `1..=version` of `kind`.
    pub fn kind(mut self, kind: &str, version: u32) -> Topic<E> {
        self.tag = Tag::new(kind, version);
        self.reads = 1..=version;
        self
    }

    /// Reads (decodes) these versions of the kind; any other version, or
    /// another kind, is refused: dead-lettered with the reason.
    pub fn reads(mut self, versions: RangeInclusive<u32>) -> Topic<E> {
        self.reads = versions;
        self
    }

    /// Sets the retention applied when this handle publishes durably.
    pub fn retention(mut self, retention: Retention) -> Topic<E> {
        self.retention = retention;
        self
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        self.name_str()
    }

    /// The tag of the events this handle publishes.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    pub(crate) fn key(&self) -> Result<&Key> {
        match &self.name {
            Ok(k) => Ok(k),
            Err(raw) => Err(Key::new(raw).expect_err("validated before")),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn site<'a>(&self, op: &'static str, key: &'a Key) -> Site<'a> {
        Site {
            op,
            family: "topic",
            kind: "event",
            key,
            holder: None,
            token: None,
        }
    }

    fn encode(&self, key: &Key, event: &E) -> Result<NewEvent> {
        // (An event that does not read back would be refused by every
        // subscriber, its publisher told it was published.)
        let payload =
            codec::encode(event).map_err(|why| invalid(key, format_args!("an event {why}")))?;
        Ok(NewEvent::new(self.tag.clone(), payload))
    }

    /// Publishes `event` to the listeners connected now: **at most once**,
    /// nothing kept. A listener that is disconnected or not yet listening
    /// misses it. Returns how many listeners the backend reached (a hint).
    pub async fn publish_ephemeral(&self, event: &E) -> Result<u64> {
        let key = self.key()?;
        let event = self.encode(key, event)?;
        event.check(key)?;
        let publish = self.client.topics()?.publish_ephemeral(key, event);
        let reached = trace::call(
            &self.client,
            || self.site("publish_ephemeral", key),
            publish,
            Outcome::ok,
        )
        .await?;
        metrics::published("ephemeral", 1);
        Ok(reached)
    }

    /// Listens to ephemeral events from now on.
    pub async fn listen(&self) -> Result<EphemeralListener<E>> {
        let key = self.key()?;
        let listen = self.client.topics()?.listen(key);
        let inner = trace::call(
            &self.client,
            || self.site("listen", key),
            listen,
            |_| Outcome::Ok,
        )
        .await?;
        Ok(EphemeralListener {
            topic: self.clone(),
            inner,
        })
    }

    /// Appends `event` to the durable stream: every subscription will get
    /// it at least once (unless retention trims it first, which the
    /// subscription is then told). Its offset.
    pub async fn publish(&self, event: &E) -> Result<u64> {
        Ok(self.publish_many([event]).await?[0])
    }

    /// Appends `events` in order, in one step (at most 1,000); their
    /// offsets. Every event is checked (tag, size) with the retention
    /// before any I/O.
    ///
    /// A publish answered with a retryable error (its reply lost, a
    /// timeout) may have appended its events: sent again, they may be
    /// appended twice, and every subscription then gets both copies. It
    /// is not sent again for you; where a duplicate matters, carry an id
    /// in the event and let consumers skip one already seen (delivery is
    /// at least once anyway).
    pub async fn publish_many<'a>(
        &self,
        events: impl IntoIterator<Item = &'a E>,
    ) -> Result<Vec<u64>>
    where
        E: 'a,
    {
        let key = self.key()?;
        let batch = (events.into_iter())
            .map(|e| self.encode(key, e))
            .collect::<Result<Vec<_>>>()?;
        check_publish(key, &batch, &self.retention)?;
        // Closed (or without topics) even with nothing to publish.
        let topics = self.client.topics()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len() as u64;
        let publish = topics.publish(key, batch, self.retention);
        let offsets = trace::call(
            &self.client,
            || self.site("publish", key),
            publish,
            Outcome::ok,
        )
        .await?;
        metrics::published("durable", n);
        Ok(offsets)
    }

    /// A subscriber of the named subscription `name` (created at its first
    /// read, from [`Subscriber::start`]), with the client's lease options
    /// for its deliveries.
    pub fn subscriber(&self, name: &str) -> Subscriber<E> {
        Subscriber::new(self.clone(), name)
    }

    /// Whether this handle reads events tagged `tag`; why not, if not.
    pub(crate) fn refuses(&self, tag: &Tag) -> Option<String> {
        if tag.kind != self.tag.kind {
            return Some(format!(
                "refused: kind {:?}, this subscriber reads {:?}",
                tag.kind, self.tag.kind
            ));
        }
        if !self.reads.contains(&tag.version) {
            return Some(format!(
                "refused: version {} of {:?}, this subscriber reads versions {}..={}",
                tag.version,
                tag.kind,
                self.reads.start(),
                self.reads.end()
            ));
        }
        None
    }
}

/// What an [`EphemeralListener`] hears.
#[derive(Debug, Clone, PartialEq)]
pub enum Ephemeral<E> {
    /// An event.
    Event(E),
    /// Events may have been missed (a lost connection, a full buffer).
    MayHaveMissed,
    /// An event that does not decode as `E` or whose tag this handle does
    /// not read, with why (ephemeral events are not kept: nothing is
    /// dead-lettered).
    Refused(String),
}

/// Hears a topic's ephemeral events while it lives. **At most once**: it
/// hears only what is published while it is connected.
pub struct EphemeralListener<E> {
    topic: Topic<E>,
    inner: Box<dyn Listener>,
}

impl<E> std::fmt::Debug for EphemeralListener<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralListener")
            .field("topic", &self.topic.name_str())
            .finish_non_exhaustive()
    }
}

impl<E: Serialize + DeserializeOwned + Send + 'static> EphemeralListener<E> {
    /// The next thing heard. Cancel safe. Once the client is closed,
    /// `Error::Closed`, at once also for a `next` waiting then.
    pub async fn next(&mut self) -> Result<Ephemeral<E>> {
        let client = self.topic.client();
        let heard = tokio::select! {
            biased;
            () = client.until_closed() => return Err(client.closed()),
            heard = self.inner.next() => heard?,
        };
        match heard {
            Heard::MayHaveMissed => {
                metrics::missed_ephemeral();
                Ok(Ephemeral::MayHaveMissed)
            }
            Heard::Event(tag, payload) => {
                if let Some(why) = self.topic.refuses(&tag) {
                    return Ok(Ephemeral::Refused(why));
                }
                Ok(match serde_json::from_slice(&payload) {
                    Ok(e) => Ephemeral::Event(e),
                    Err(e) => Ephemeral::Refused(format!("decode error: {e}")),
                })
            }
        }
    }
}

/// `InvalidArgument` for a subscription that does not exist.
pub(crate) fn no_subscription(topic: &Key, sub: &Key) -> Error {
    invalid(topic, format_args!("no subscription \"{sub}\""))
}
