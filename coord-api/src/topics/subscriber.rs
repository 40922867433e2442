//! The reading side of a topic's durable stream: a named subscription read
//! by subscribers (waiting on the topic's notification, never polling),
//! each with a presence lease, each event delivered under a lease of its
//! own; missed offsets and refused events reported, never skipped silently.

use std::{collections::VecDeque, fmt, future::Future, time::Duration, time::SystemTime};

use serde::{Serialize, de::DeserializeOwned};

use super::{Topic, metrics, no_subscription};
use crate::{
    Backoff, Client, Error, FencingToken, HolderId, Key, LostSignal, NodeError, Release, Result,
    barriers::sleep_or_woken,
    clock::Instant,
    handle::{Handle, KeptWatch, option_setters},
    lease::{BoxFuture, Guard, Lease, LeaseOptions, Tenure, released, wait::jittered},
    spi::{
        self, DeadEvent, Missed, ReadOptions, Settle, Start, SubscriptionStats, Tag,
        queues::cut_reason, topics::check_dead_page,
    },
    trace::{self, Outcome, Site},
};

/// One delivery's lease: renewed by extend; a dropped delivery is given
/// back at once (a nack without delay).
struct EventLease {
    topic: Key,
    sub: Key,
    offset: u64,
    token: FencingToken,
    holder: HolderId,
}

impl Tenure for EventLease {
    fn family(&self) -> &'static str {
        "topic"
    }
    fn kind(&self) -> &'static str {
        "delivery"
    }
    fn key(&self) -> &Key {
        &self.topic
    }
    fn holder(&self) -> &HolderId {
        &self.holder
    }
    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        let topics = client.topics()?;
        Ok(Box::pin(async move {
            let extend = topics.extend(&self.topic, &self.sub, self.offset, self.token, ttl);
            Ok(matches!(extend.await?, Settle::Done))
        }))
    }
    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let topics = client.topics()?;
        Ok(Box::pin(async move {
            let nack = topics.nack(
                &self.topic,
                &self.sub,
                self.offset,
                self.token,
                Duration::ZERO,
            );
            Ok(released(matches!(nack.await?, Settle::Done)))
        }))
    }
    fn counted(&self) -> bool {
        false
    }
}

/// A subscriber's presence in its subscription: renewed while it lives;
/// releasing it gives every delivery of the subscriber back.
struct Presence {
    topic: Key,
    sub: Key,
    holder: HolderId,
}

impl Tenure for Presence {
    fn family(&self) -> &'static str {
        "topic"
    }
    fn kind(&self) -> &'static str {
        "subscriber"
    }
    fn key(&self) -> &Key {
        &self.topic
    }
    fn holder(&self) -> &HolderId {
        &self.holder
    }
    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        let topics = client.topics()?;
        Ok(Box::pin(async move {
            topics
                .heartbeat(&self.topic, &self.sub, &self.holder, ttl)
                .await?;
            Ok(true)
        }))
    }
    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let topics = client.topics()?;
        Ok(Box::pin(async move {
            topics.leave(&self.topic, &self.sub, &self.holder).await?;
            Ok(released(true))
        }))
    }
    fn counted(&self) -> bool {
        false
    }
}

/// What [`Subscriber::next`] hands out: an event, or news of what the
/// subscription did not get.
#[derive(Debug)]
pub enum Next<E> {
    /// An event, under a lease: ack, nack or dead-letter it.
    Event(EventDelivery<E>),
    /// Offsets `first..=last` were trimmed by retention before this
    /// subscription got them (or before it could get them again): they are
    /// gone for it.
    Missed {
        /// The first offset missed.
        first: u64,
        /// The last offset missed.
        last: u64,
    },
    /// The event at `offset` was refused (its tag is not one this
    /// subscriber reads) or does not decode: it was moved to the
    /// subscription's dead events with `reason`, and the subscription goes
    /// on.
    Refused {
        /// The event's offset.
        offset: u64,
        /// Its tag.
        tag: Tag,
        /// Why.
        reason: String,
    },
}

/// What a [`Subscriber::run`] handler gets with each event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EventContext {
    /// The event's offset.
    pub offset: u64,
    /// When it was published (the backend's clock).
    pub at: SystemTime,
    /// Which delivery of it to this subscription (1 for the first).
    pub attempt: u32,
    /// The delivery's fencing token.
    pub token: FencingToken,
    /// Fires when the delivery's lease is lost: stop; the event will be
    /// delivered again.
    pub lost: LostSignal,
}

struct Receipt {
    client: Client,
    topic: Key,
    sub: Key,
    offset: u64,
    at: SystemTime,
    attempt: u32,
    token: FencingToken,
    backoff: Backoff,
    guard: Guard,
}

/// One event delivered to this subscriber, under a lease renewed while it
/// is held. Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`dead_letter`](Self::dead_letter); one dropped unsettled is given back
/// at once.
pub struct EventDelivery<E> {
    event: E,
    receipt: Receipt,
}

impl<E: fmt::Debug> fmt::Debug for EventDelivery<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventDelivery")
            .field("topic", &self.receipt.topic)
            .field("subscription", &self.receipt.sub)
            .field("offset", &self.receipt.offset)
            .field("attempt", &self.receipt.attempt)
            .field("token", &self.receipt.token)
            .field("event", &self.event)
            .finish()
    }
}

impl<E> EventDelivery<E> {
    /// The event.
    pub fn event(&self) -> &E {
        &self.event
    }

    /// Its offset in the stream.
    pub fn offset(&self) -> u64 {
        self.receipt.offset
    }

    /// When it was published (the backend's clock).
    pub fn published_at(&self) -> SystemTime {
        self.receipt.at
    }

    /// Which delivery of it to this subscription (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.receipt.attempt
    }

    /// The delivery's fencing token.
    pub fn token(&self) -> FencingToken {
        self.receipt.token
    }

    /// Fires when the delivery's lease is lost.
    pub fn lost(&self) -> LostSignal {
        self.receipt.guard.lost_signal()
    }

    /// Done for this subscription. `LeaseLost` (and nothing changes) if
    /// this delivery is no longer current (it expired and went back).
    pub async fn ack(self) -> Result<()> {
        let r = self.receipt;
        let lease = r.end();
        let ack = r.client.topics()?.ack(&r.topic, &r.sub, r.offset, r.token);
        let done = trace::call(&r.client, || r.site("ack"), ack, settled).await;
        r.settled(&lease, "acked", done)
    }

    /// Gives it back, delivered again after the subscriber's back-off.
    pub async fn nack(self) -> Result<()> {
        let r = self.receipt;
        let lease = r.end();
        let retry_in = r.backoff.delay(r.attempt);
        let topics = r.client.topics()?;
        let nack = topics.nack(&r.topic, &r.sub, r.offset, r.token, retry_in);
        let done = trace::call(&r.client, || r.site("nack"), nack, settled).await;
        r.settled(&lease, "nacked", done)
    }

    /// Moves it to the subscription's dead events with `reason`.
    pub async fn dead_letter(self, reason: impl fmt::Display) -> Result<()> {
        let r = self.receipt;
        let lease = r.end();
        let reason = cut_reason(reason.to_string());
        let topics = r.client.topics()?;
        let dead = topics.dead_letter(&r.topic, &r.sub, r.offset, r.token, &reason);
        let done = trace::call(&r.client, || r.site("dead_letter"), dead, settled).await;
        r.settled(&lease, "dead_lettered", done)
    }
}

fn settled(s: &Settle) -> Outcome {
    match s {
        Settle::Done => Outcome::Ok,
        _ => Outcome::NotHeld,
    }
}

impl Receipt {
    fn site(&self, op: &'static str) -> Site<'_> {
        Site {
            op,
            family: "topic",
            kind: "delivery",
            key: &self.topic,
            holder: Some(self.guard.holder()),
            token: Some(self.token),
        }
    }

    fn end(&self) -> std::sync::Arc<Lease> {
        let lease = self.guard.lease().clone();
        lease.mark(false);
        lease
    }

    fn settled(self, lease: &Lease, outcome: &'static str, done: Result<Settle>) -> Result<()> {
        let counted = done? == Settle::Done;
        let error = (!counted).then(|| Error::LeaseLost {
            key: format!("{}/{}@{}", self.topic, self.sub, self.offset),
            backend: self.client.backend().to_string(),
        });
        let _ = self.guard.into_lease();
        lease.mark(!counted);
        metrics::settled(if counted { outcome } else { "stale" });
        error.map_or(Ok(()), Err)
    }
}

enum Pending {
    Missed(Missed),
    Delivered(spi::Delivered, bool),
}

/// Reads a named subscription of a topic's durable stream: every event
/// published after the subscription's start, at least once, in offset
/// order (redeliveries aside). Several subscribers of one subscription
/// share its events (each event goes to one of them); several
/// subscriptions each see every event.
///
/// Its presence (a lease renewed in the background from its first read)
/// tells the backend it is alive; when it is dropped or
/// [`leave`](Self::leave)s, or its process dies and the presence expires,
/// the events delivered to it are delivered again.
pub struct Subscriber<E> {
    topic: Topic<E>,
    handle: Handle,
    holder: HolderId,
    presence_ttl: Duration,
    batch: u32,
    start: Start,
    backoff: Backoff,
    subscribed: bool,
    presence: Option<Guard>,
    pending: VecDeque<Pending>,
    watch: KeptWatch,
}

impl<E> fmt::Debug for Subscriber<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic.name_str())
            .field("subscription", &self.handle.key_str())
            .field("holder", &self.holder)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl<E: Serialize + DeserializeOwned + Send + 'static> Subscriber<E> {
    /// The presence TTL by default.
    pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(10);

    pub(super) fn new(topic: Topic<E>, name: &str) -> Subscriber<E> {
        let handle = Handle::new(topic.client().clone(), name);
        let holder = HolderId::new(*topic.client().instance_id());
        Subscriber {
            topic,
            handle,
            holder,
            presence_ttl: Self::DEFAULT_PRESENCE_TTL,
            batch: 1,
            start: Start::Latest,
            backoff: Backoff::DEFAULT,
            subscribed: false,
            presence: None,
            pending: VecDeque::new(),
            watch: KeptWatch::default(),
        }
    }

    option_setters!();

    /// Where the subscription starts if this subscriber creates it
    /// (default [`Start::Latest`]); an existing subscription keeps its
    /// place (move it with [`seek`](Self::seek)).
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// Sets the presence TTL (1 ms ..= 24 h; default 10 s).
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
        self
    }

    /// Reads up to `n` events per round trip (1 ..= 1,000; default 1).
    pub fn batch(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }

    /// Sets the delays before a nacked event is delivered again.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// The subscriber's holder id.
    pub fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn checked(&self) -> Result<(Key, Key, LeaseOptions)> {
        let topic = self.topic.key()?.clone();
        let (sub, opts) = self.handle.checked()?;
        crate::validate_ttl(&topic, self.presence_ttl)?;
        self.backoff
            .check(|| format!("topic \"{topic}\": the subscriber"))?;
        ReadOptions::new(opts.ttl, self.presence_ttl, self.batch).check(&topic)?;
        Ok((topic, sub.clone(), opts.clone()))
    }

    /// Creates the subscription at [`start`](Self::start) if it does not
    /// exist; `true` if this made it. Events published from then on are
    /// kept for it (by retention) even while no subscriber runs.
    pub async fn subscribe(&mut self) -> Result<bool> {
        let (topic, sub, _) = self.checked()?;
        let client = self.topic.client().clone();
        let subscribe = client.topics()?.subscribe(&topic, &sub, self.start);
        let site = || self.site("subscribe", &topic, None);
        let made = trace::call(&client, site, subscribe, Outcome::ok).await?;
        self.subscribed = true;
        Ok(made)
    }

    /// Moves the subscription to `start`: replays from an offset or a time
    /// (or skips ahead). Events already delivered stay delivered. The
    /// offset of the next event it reads.
    pub async fn seek(&mut self, start: Start) -> Result<u64> {
        let (topic, sub, _) = self.checked()?;
        if !self.subscribed {
            self.subscribe().await?;
        }
        self.pending.clear();
        let client = self.topic.client().clone();
        let seek = client.topics()?.seek(&topic, &sub, start);
        let site = || self.site("seek", &topic, None);
        let next = trace::call(&client, site, seek, Outcome::ok).await?;
        next.ok_or_else(|| no_subscription(&topic, &sub))
    }

    /// The next event (or news of missed offsets, or of a refused event):
    /// a buffered one, else what the subscription has, else it waits
    /// (woken by a publish, or when a redelivery is due) up to
    /// `wait_timeout`. Creates the subscription at its first call.
    pub async fn next(&mut self) -> Result<Next<E>> {
        let (topic, sub, opts) = self.checked()?;
        let client = self.topic.client().clone();
        let started = client.clock().now();
        let deadline = opts.wait_timeout.map(|w| started + w);
        let mut watching = self.watch.is_some();
        loop {
            while let Some(p) = self.pending.pop_front() {
                let (d, fresh) = match p {
                    Pending::Missed(m) => {
                        metrics::missed(m.last - m.first + 1);
                        tracing::warn!(topic = %topic, subscription = %sub, first = m.first, last = m.last, "events trimmed before this subscription got them");
                        return Ok(Next::Missed {
                            first: m.first,
                            last: m.last,
                        });
                    }
                    Pending::Delivered(d, fresh) => (d, fresh),
                };
                let t_sent = client.clock().now();
                if !fresh {
                    // A buffered delivery starts with an extend; refused,
                    // it expired and went back.
                    let topics = client.topics()?;
                    let extend = topics.extend(&topic, &sub, d.event.offset, d.token, opts.ttl);
                    let site = || self.site("extend", &topic, Some(d.token));
                    if trace::call(&client, site, extend, settled).await? != Settle::Done {
                        continue;
                    }
                }
                if let Some(next) = self.deliver(&topic, &sub, &opts, d, t_sent).await? {
                    return Ok(next);
                }
            }
            if !self.subscribed {
                self.subscribe().await?;
            }
            let t_sent = client.clock().now();
            let ropts = ReadOptions::new(opts.ttl, self.presence_ttl, self.batch);
            let read = client.topics()?.read(&topic, &sub, &self.holder, ropts);
            let site = || self.site("read", &topic, None);
            let read = trace::call(&client, site, read, |r| {
                match r.as_ref().and_then(|r| r.events.first()) {
                    Some(d) => Outcome::Granted(d.token),
                    None => Outcome::Busy,
                }
            })
            .await?;
            let Some(read) = read else {
                // Deleted (or lost with the backend's data): made again.
                self.subscribed = false;
                continue;
            };
            self.keep_presence(&client, &topic, &sub, t_sent);
            let next_in = read.next_in;
            self.pending
                .extend(read.missed.into_iter().map(Pending::Missed));
            let mut first = true;
            for d in read.events {
                self.pending.push_back(Pending::Delivered(d, first));
                first = false;
            }
            if !self.pending.is_empty() {
                continue;
            }
            if !watching {
                // Watch, then look again: a publish between the look and
                // the watch is not missed.
                *self.watch.get() = client.topics()?.watch(&topic).await.ok();
                watching = true;
                continue;
            }
            let now = client.clock().now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout {
                    what: format!(
                        "an event of topic {:?}, subscription {:?}",
                        topic.as_str(),
                        sub.as_str()
                    ),
                    backend: client.backend().to_string(),
                    waited: now.saturating_duration_since(started),
                });
            }
            let fallback = jittered(&opts);
            let wait = next_in.map_or(fallback, |n| n.clamp(Duration::from_millis(1), fallback));
            let wake = deadline.map_or(now + wait, |d| d.min(now + wait));
            sleep_or_woken(client.clock(), self.watch.get(), wake).await;
            watching = self.watch.is_some();
        }
    }

    fn keep_presence(&mut self, client: &Client, topic: &Key, sub: &Key, t_sent: Instant) {
        if self.presence.as_ref().is_some_and(|g| g.is_held()) {
            return;
        }
        // A presence lost locally is retired, not dropped (a drop would
        // leave, giving back what this read was just handed).
        if let Some(old) = self.presence.take() {
            old.into_lease().mark(false);
        }
        let mut opts = self.handle.opts().clone();
        opts.ttl = self.presence_ttl;
        opts.auto_extend = true;
        opts.extend_interval = None;
        let tenure = Presence {
            topic: topic.clone(),
            sub: sub.clone(),
            holder: self.holder.clone(),
        };
        let validity = opts.local_validity();
        let lease = Lease::start(client.clone(), tenure, None, &opts, validity, t_sent);
        self.presence = Some(Guard::new(lease));
    }

    /// The delivery with its lease, or `Refused` (then dead-lettered), or
    /// `None` if refusing it found the delivery no longer current (it went
    /// back, and whoever gets it next refuses it).
    async fn deliver(
        &self,
        topic: &Key,
        sub: &Key,
        opts: &LeaseOptions,
        d: spi::Delivered,
        t_sent: Instant,
    ) -> Result<Option<Next<E>>> {
        let client = self.topic.client();
        let offset = d.event.offset;
        let decoded = match self.topic.refuses(&d.event.tag) {
            Some(why) => Err(why),
            None => serde_json::from_slice::<E>(&d.event.payload).map_err(|e| {
                format!(
                    "decode error: {} does not decode as {}: {e}",
                    d.event.tag,
                    std::any::type_name::<E>()
                )
            }),
        };
        let event = match decoded {
            Ok(event) => event,
            Err(reason) => {
                let reason = cut_reason(reason);
                let dead = client
                    .topics()?
                    .dead_letter(topic, sub, offset, d.token, &reason);
                let site = || self.site("dead_letter", topic, Some(d.token));
                if trace::call(client, site, dead, settled).await? != Settle::Done {
                    metrics::settled("stale");
                    return Ok(None);
                }
                metrics::settled("refused");
                tracing::warn!(topic = %topic, subscription = %sub, offset, %reason, "event dead-lettered");
                return Ok(Some(Next::Refused {
                    offset,
                    tag: d.event.tag,
                    reason,
                }));
            }
        };
        metrics::delivered(d.attempt > 1);
        let tenure = EventLease {
            topic: topic.clone(),
            sub: sub.clone(),
            offset,
            token: d.token,
            holder: self.holder.clone(),
        };
        let validity = self.handle.validity();
        let lease = Lease::start(
            client.clone(),
            tenure,
            Some(d.token),
            opts,
            validity,
            t_sent,
        );
        Ok(Some(Next::Event(EventDelivery {
            event,
            receipt: Receipt {
                client: client.clone(),
                topic: topic.clone(),
                sub: sub.clone(),
                offset,
                at: d.event.at,
                attempt: d.attempt,
                token: d.token,
                backoff: self.backoff,
                guard: Guard::new(lease),
            },
        })))
    }

    /// Reads and handles events for ever: `handler` gets each event and its
    /// [`EventContext`]; its `Ok` acks the event, its `Err` nacks it
    /// (dead-letters it when the error is permanent). Missed offsets and
    /// refused events are logged (at `warn`) and counted; the subscriber
    /// goes on. Errors the backend may recover from are waited out; any
    /// other is returned.
    pub async fn run<F, Fut>(mut self, handler: F) -> Result<()>
    where
        F: Fn(E, EventContext) -> Fut,
        Fut: Future<Output = std::result::Result<(), NodeError>>,
    {
        loop {
            let res = match self.next().await {
                Ok(Next::Event(EventDelivery { event, receipt })) => {
                    let ctx = EventContext {
                        offset: receipt.offset,
                        at: receipt.at,
                        attempt: receipt.attempt,
                        token: receipt.token,
                        lost: receipt.guard.lost_signal(),
                    };
                    let out = handler(event, ctx).await;
                    let d = EventDelivery { event: (), receipt };
                    match out {
                        Ok(()) => d.ack().await,
                        Err(e) if e.is_permanent() => d.dead_letter(e).await,
                        Err(_) => d.nack().await,
                    }
                }
                Ok(Next::Missed { .. } | Next::Refused { .. }) => Ok(()),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) | Err(Error::LeaseLost { .. }) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!(topic = %self.topic.name_str(), error = %e, "topic subscriber: backend unreachable; waiting");
                    let clock = self.topic.client().clock().clone();
                    clock
                        .sleep_until(clock.now() + jittered(self.handle.opts()))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves: every event delivered to this subscriber and not settled
    /// goes back to the subscription at once; how many.
    pub async fn leave(mut self) -> Result<u32> {
        let (topic, sub, _) = self.checked()?;
        self.pending.clear();
        if let Some(g) = self.presence.take() {
            g.into_lease().mark(false);
        }
        let client = self.topic.client().clone();
        let leave = client.topics()?.leave(&topic, &sub, &self.holder);
        trace::call(
            &client,
            || self.site("leave", &topic, None),
            leave,
            Outcome::ok,
        )
        .await
    }

    /// The subscription's state: cursor, the stream's offsets, deliveries
    /// in flight and retrying, live subscribers, dead events.
    pub async fn stats(&self) -> Result<SubscriptionStats> {
        let (topic, sub, _) = self.checked()?;
        let client = self.topic.client();
        let stats = client.topics()?.stats(&topic, &sub);
        trace::call(
            client,
            || self.site("stats", &topic, None),
            stats,
            Outcome::ok,
        )
        .await
    }

    /// The subscription's dead events with ids above `after`, lowest first,
    /// at most `limit` (1 ..= 1,000).
    pub async fn dead_events(&self, after: u64, limit: u32) -> Result<Vec<DeadEvent>> {
        let (topic, sub, _) = self.checked()?;
        check_dead_page(&topic, limit)?;
        let client = self.topic.client();
        let list = client.topics()?.dead_events(&topic, &sub, after, limit);
        trace::call(
            client,
            || self.site("dead_events", &topic, None),
            list,
            Outcome::ok,
        )
        .await
    }

    /// Deletes the subscription (its place, deliveries and dead events);
    /// `false` if it did not exist.
    pub async fn unsubscribe(mut self) -> Result<bool> {
        let (topic, sub, _) = self.checked()?;
        if let Some(g) = self.presence.take() {
            g.into_lease().mark(false);
        }
        let client = self.topic.client().clone();
        let gone = client.topics()?.unsubscribe(&topic, &sub);
        trace::call(
            &client,
            || self.site("unsubscribe", &topic, None),
            gone,
            Outcome::ok,
        )
        .await
    }

    fn site<'a>(&'a self, op: &'static str, key: &'a Key, token: Option<FencingToken>) -> Site<'a> {
        Site {
            op,
            family: "topic",
            kind: "subscriber",
            key,
            holder: Some(&self.holder),
            token,
        }
    }
}
