//! Topics, under one lock of their own: every durable operation is one
//! step on one topic's stream and its subscriptions, following the rules
//! of [`coord_api::spi::topics`] in their order (`stream.rs`). Ephemeral
//! events go through a broadcast channel per topic (a listener whose
//! buffer of [`EPHEMERAL_BUFFER`] events overflows is told it may have
//! missed some), and are kept nowhere.
//!
//! The store checks every limit itself, with the SPI's checks.

mod stream;

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, HolderId, Instant, Key, MAX_TTL, Namespace, Result,
    spi::{
        DeadEvent, Heard, Listener, NewEvent, Read, ReadOptions, ResourceKind, Retention, Role,
        Settle, Start, SubscriptionStats, Tag, TopicBackend, Watch,
        queues::cut_reason,
        topics::{check_dead_page, check_publish},
    },
    validate_ttl,
};
use tokio::sync::broadcast;

use self::stream::{Step, Stream};
use crate::{
    MemoryBackend,
    ops::{Listed, Visit},
    watch::Topic,
};

/// How many ephemeral events a listener may fall behind before it misses
/// some (and is told so).
pub const EPHEMERAL_BUFFER: usize = 1024;

/// An ephemeral event as the channel carries it.
type Ephemeral = (Tag, Vec<u8>);

/// Every topic of a store.
#[derive(Default)]
pub(crate) struct Topics {
    streams: HashMap<(Namespace, Key), Stream>,
    /// Each topic's ephemeral channel, made by its first listener.
    ephemeral: HashMap<(Namespace, Key), broadcast::Sender<Ephemeral>>,
}

impl MemoryBackend {
    fn topic_step(&self) -> Step {
        let now = self.store.now();
        Step {
            now,
            wall: self.store.wall(now),
            wall_us: self.store.inner.table.wall_us(now),
        }
    }

    /// A start added to the SPI after this store is `NotSupported`.
    fn known_start(&self, start: Start) -> Result<()> {
        match start {
            Start::Earliest | Start::Latest | Start::Offset(_) | Start::Time(_) => Ok(()),
            _ => Err(Error::NotSupported {
                operation: "this subscription start",
                backend: self.to_string(),
            }),
        }
    }

    /// Wakes the topic's watchers (rule 7), after the step let go of the
    /// lock.
    fn wake(&self, topic: &Key) {
        self.store
            .notify(|| Topic::Events(self.ns.clone(), topic.clone()));
    }

    /// Runs `op` on the topic's stream (made if missing), under the lock.
    fn on_stream<T>(&self, topic: &Key, op: impl FnOnce(&mut Stream, &Step) -> T) -> T {
        let step = self.topic_step();
        let mut topics = self.store.topics();
        let key = (self.ns.clone(), topic.clone());
        let stream = topics.streams.entry(key.clone()).or_default();
        let out = op(stream, &step);
        if stream.is_empty() {
            topics.streams.remove(&key);
        }
        out
    }
}

// What operations see and do: deliveries are leases.
impl Topics {
    /// Shows `visit` the live deliveries of namespace `ns`'s
    /// subscriptions (`only`: of one topic's subscription, and of one
    /// offset when it names one).
    pub(crate) fn visit(
        &self,
        ns: &Namespace,
        only: Option<(&Key, &Key, Option<u64>)>,
        now: Instant,
        visit: Visit<'_>,
    ) {
        let show = |topic: &Key, stream: &Stream, sub: &Key, offset, visit: Visit<'_>| {
            for d in stream.live(sub, offset, now) {
                let listed = Listed {
                    name: topic,
                    occurrence: None,
                    subscription: Some(sub),
                    item: Some(d.offset),
                    role: Role::Delivery,
                    holder: d.consumer,
                    token: Some(d.token.get()),
                    holds: 1,
                    since: None,
                    until: d.deadline,
                    waiters: None,
                };
                visit(ResourceKind::Topic, listed);
            }
        };
        match only {
            Some((topic, sub, offset)) => {
                let key = (ns.clone(), topic.clone());
                if let Some(((_, topic), stream)) = self.streams.get_key_value(&key) {
                    show(topic, stream, sub, offset, visit);
                }
            }
            None => {
                for ((n, topic), stream) in &self.streams {
                    if n == ns {
                        for sub in stream.subscriptions() {
                            show(topic, stream, sub, None, &mut *visit);
                        }
                    }
                }
            }
        }
    }
}

impl MemoryBackend {
    /// An operator's revocation of the delivery `token` of `offset` to
    /// `sub` of `topic` (one step): whose it was, or the token of the
    /// offset's live delivery.
    pub(crate) fn revoke_event_delivery(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
    ) -> std::result::Result<HolderId, Vec<FencingToken>> {
        let revoked = self.on_stream(topic, |s, step| s.revoke(sub, offset, token, step.now));
        if revoked.is_ok() {
            self.wake(topic);
        }
        revoked
    }
}

/// A listener to one topic's ephemeral events.
struct MemoryListener {
    rx: broadcast::Receiver<Ephemeral>,
}

#[async_trait]
impl Listener for MemoryListener {
    async fn next(&mut self) -> Result<Heard> {
        loop {
            match self.rx.recv().await {
                Ok((tag, payload)) => return Ok(Heard::Event(tag, payload)),
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(Heard::MayHaveMissed),
                // The sender lives in the store as long as the store: never.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

#[async_trait]
impl TopicBackend for MemoryBackend {
    async fn publish_ephemeral(&self, topic: &Key, event: NewEvent) -> Result<u64> {
        event.check(topic)?;
        let topics = self.store.topics();
        let reached = (topics.ephemeral)
            .get(&(self.ns.clone(), topic.clone()))
            .and_then(|tx| tx.send((event.tag, event.payload)).ok())
            .unwrap_or(0);
        Ok(reached as u64)
    }

    async fn listen(&self, topic: &Key) -> Result<Box<dyn Listener>> {
        let mut topics = self.store.topics();
        let tx = (topics.ephemeral)
            .entry((self.ns.clone(), topic.clone()))
            .or_insert_with(|| broadcast::channel(EPHEMERAL_BUFFER).0);
        Ok(Box::new(MemoryListener { rx: tx.subscribe() }))
    }

    async fn publish(
        &self,
        topic: &Key,
        events: Vec<NewEvent>,
        retention: Retention,
    ) -> Result<Vec<u64>> {
        check_publish(topic, &events, &retention)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let offsets = self.on_stream(topic, |s, step| s.publish(events, retention, step));
        self.wake(topic);
        Ok(offsets)
    }

    async fn subscribe(&self, topic: &Key, sub: &Key, start: Start) -> Result<bool> {
        self.known_start(start)?;
        Ok(self.on_stream(topic, |s, _| s.subscribe(sub, start)))
    }

    async fn seek(&self, topic: &Key, sub: &Key, start: Start) -> Result<Option<u64>> {
        self.known_start(start)?;
        let moved = self.on_stream(topic, |s, step| s.seek(sub, start, step.now));
        if moved.is_some() {
            // Rule 7: a subscriber waiting reads again from the new place.
            self.wake(topic);
        }
        Ok(moved)
    }

    async fn read(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        opts: ReadOptions,
    ) -> Result<Option<Read>> {
        opts.check(topic)?;
        Ok(self.on_stream(topic, |s, step| s.read(sub, consumer, opts, step)))
    }

    async fn extend(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle> {
        validate_ttl(topic, ttl)?;
        Ok(self.on_stream(topic, |s, step| s.extend(sub, offset, token, ttl, step.now)))
    }

    async fn ack(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
    ) -> Result<Settle> {
        Ok(self.on_stream(topic, |s, step| s.ack(sub, offset, token, step.now)))
    }

    async fn ack_and_read(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        consumer: &HolderId,
        opts: ReadOptions,
    ) -> Result<(Settle, Option<Read>)> {
        opts.check(topic)?;
        Ok(self.on_stream(topic, |s, step| {
            let acked = s.ack(sub, offset, token, step.now);
            (acked, s.read(sub, consumer, opts, step))
        }))
    }

    async fn nack(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        retry_in: Duration,
    ) -> Result<Settle> {
        let retry_in = retry_in.min(MAX_TTL);
        let settled = self.on_stream(topic, |s, step| {
            s.nack(sub, offset, token, retry_in, step.now)
        });
        if settled == Settle::Done {
            // Rule 7: a subscriber waiting looks again to learn when it is
            // due.
            self.wake(topic);
        }
        Ok(settled)
    }

    async fn dead_letter(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        reason: &str,
    ) -> Result<Settle> {
        let reason = cut_reason(reason.to_owned());
        Ok(self.on_stream(topic, |s, step| {
            s.dead_letter(sub, offset, token, reason, step)
        }))
    }

    async fn heartbeat(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        ttl: Duration,
    ) -> Result<()> {
        validate_ttl(topic, ttl)?;
        self.on_stream(topic, |s, step| s.heartbeat(sub, consumer, ttl, step.now));
        Ok(())
    }

    async fn leave(&self, topic: &Key, sub: &Key, consumer: &HolderId) -> Result<u32> {
        let left = self.on_stream(topic, |s, step| s.leave(sub, consumer, step.now));
        if left > 0 {
            // Rule 7: what it left behind is due at once.
            self.wake(topic);
        }
        Ok(left)
    }

    async fn give_back(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        read_id: u64,
    ) -> Result<u32> {
        let given = self.on_stream(topic, |s, step| {
            s.give_back(sub, consumer, read_id, step.now)
        });
        if given > 0 {
            // Rule 7: a subscriber waiting would wait for a deadline.
            self.wake(topic);
        }
        Ok(given)
    }

    async fn dead_events(
        &self,
        topic: &Key,
        sub: &Key,
        after: u64,
        limit: u32,
    ) -> Result<Vec<DeadEvent>> {
        check_dead_page(topic, limit)?;
        Ok(self.on_stream(topic, |s, _| s.dead_events(sub, after, limit)))
    }

    async fn unsubscribe(&self, topic: &Key, sub: &Key) -> Result<bool> {
        Ok(self.on_stream(topic, |s, _| s.unsubscribe(sub)))
    }

    async fn stats(&self, topic: &Key, sub: &Key) -> Result<SubscriptionStats> {
        Ok(self.on_stream(topic, |s, step| s.stats(sub, step.now)))
    }

    async fn watch(&self, topic: &Key) -> Result<Box<dyn Watch>> {
        let topic = Topic::Events(self.ns.clone(), topic.clone());
        Ok(self.store.watch(topic))
    }
}
