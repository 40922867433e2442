//! The reading side of a topic's durable stream: a named subscription read
//! by subscribers (waiting on the topic's notification, never polling),
//! each with a presence lease, each event delivered under a lease of its
//! own; missed offsets and refused events reported, never skipped silently.
//!
//! This file holds [`Subscriber`]'s options, `subscribe`, `seek`, `next`
//! (the read and the wait), `ack_and_next`, `run`, `leave`, the counts and
//! dead events, and `unsubscribe`. What a read hands over until `next`
//! hands it out (the buffer, starting a buffered delivery, refusing an
//! event, the presence lease, the give-back of an unanswered read) is in
//! `subscriber/buffered.rs`; one delivery (its lease, settling it) in
//! `delivery.rs`.

use std::{collections::VecDeque, fmt, future::Future, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    Topic,
    delivery::{EventContext, EventDelivery, Receipt, Settling, settled},
    no_subscription,
};
use crate::{
    Backoff, Error, FencingToken, HolderId, Key, NodeError, Result,
    barriers::sleep_or_woken,
    clock::Instant,
    handle::{Handle, KeptWatch, option_setters},
    lease::{
        Guard, LeaseOptions,
        settles::Settles,
        undo::{self, granting},
        wait::{hinted_wait, jittered, later},
    },
    spi::{DeadEvent, ReadOptions, Settle, Start, SubscriptionStats, Tag, topics::check_dead_page},
    trace::{self, Outcome, Site},
};

mod buffered;

use buffered::{Pending, give_back, leave_unanswered};

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

/// Whether a subscriber made (or found) its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// Not yet: made at `start` by the first call that needs it.
    Not,
    /// Made, or found there, by this subscriber.
    Yes,
    /// Found gone (deleted, or lost with the backend's data): made again at
    /// the oldest event kept, not at `start`.
    Gone,
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
    /// Where the subscription stands for this subscriber.
    made: Made,
    presence: Option<Guard>,
    /// The settles of its deliveries on their way, which its leave waits
    /// for.
    settles: Arc<Settles>,
    pending: VecDeque<Pending>,
    /// The last ack and read found nothing: its `next_in`.
    idle: Option<Option<Duration>>,
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
            made: Made::Not,
            presence: None,
            settles: Arc::default(),
            pending: VecDeque::new(),
            idle: None,
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
    /// kept for it (by retention) even while no subscriber runs. A
    /// subscription this subscriber later finds gone (deleted, or lost with
    /// the backend's data) is made again at [`Start::Earliest`]: what was
    /// published since is delivered, not skipped.
    pub async fn subscribe(&mut self) -> Result<bool> {
        let (topic, sub, _) = self.checked()?;
        let client = self.topic.client().clone();
        // Every event a lost subscription's stream keeps was published
        // since it was lost (or deleted): `Latest`, or an offset of the old
        // stream, would skip them silently.
        let start = match self.made {
            Made::Gone => Start::Earliest,
            _ => self.start,
        };
        let subscribe = client.topics()?.subscribe(&topic, &sub, start);
        let site = || self.site("subscribe", &topic, None);
        let made = trace::call(&client, site, subscribe, Outcome::ok).await?;
        self.made = Made::Yes;
        Ok(made)
    }

    /// Moves the subscription to `start`: replays from an offset or a time
    /// (or skips ahead). Events already delivered stay delivered. What a
    /// batch read buffered in this subscriber (leased to it, not handed
    /// out) is given back first, due again at once: the replay would pass
    /// over it (in flight) until its lease ended. The offset of the next
    /// event it reads.
    ///
    /// # Cancel safety
    /// The buffered deliveries leave the subscriber as the seek begins; a
    /// seek cancelled (or failed) before every give-back was answered sends
    /// the ones left in the background (token-checked, for at most the
    /// lease TTL), so they are due again at once for any subscriber, never
    /// leased to one that no longer knows of them. A seek cancelled after
    /// that may or may not have moved the subscription.
    pub async fn seek(&mut self, start: Start) -> Result<u64> {
        let (topic, sub, opts) = self.checked()?;
        if self.made != Made::Yes {
            self.subscribe().await?;
        }
        self.idle = None;
        let client = self.topic.client().clone();
        self.give_back_buffered(&client, &topic, &sub, opts.ttl)
            .await?;
        let seek = client.topics()?.seek(&topic, &sub, start);
        let site = || self.site("seek", &topic, None);
        let next = trace::call(&client, site, seek, Outcome::ok).await?;
        next.ok_or_else(|| no_subscription(&topic, &sub))
    }

    /// The next event (or news of missed offsets, or of a refused event):
    /// a buffered one, else what the subscription has, else it waits
    /// (woken by a publish, or when a redelivery is due) up to
    /// `wait_timeout`. Creates the subscription at its first call.
    ///
    /// # Cancel safety
    /// A read cancelled in flight (or failed after it may have been
    /// applied) gives back in the background what it delivered, and
    /// nothing else: due again for any subscriber at once (decision 0044).
    /// A buffered delivery stays buffered until its start is answered. The
    /// dead-letter of a refused event, cancelled (or unanswered), is sent
    /// again in the background.
    pub async fn next(&mut self) -> Result<Next<E>> {
        let (topic, sub, opts) = self.checked()?;
        let client = self.topic.client().clone();
        let started = client.clock().now();
        let mut watching = self.watch.is_some();
        loop {
            if let Some(next) = self.take_pending(&topic, &sub, &opts).await? {
                return Ok(next);
            }
            // An ack and read that just found nothing, with the watch
            // already on: wait at once (a publish since wakes it).
            if let Some(next_in) = self.idle.take().filter(|_| watching) {
                self.wait(&topic, &sub, &opts, next_in, started).await?;
                watching = self.watch.is_some();
                continue;
            }
            if self.made != Made::Yes {
                self.subscribe().await?;
            }
            let t_sent = client.clock().now();
            let id = undo::call_id();
            let ropts = ReadOptions::new(opts.ttl, self.presence_ttl, self.batch).read_id(id);
            let read = client.topics()?.read(&topic, &sub, &self.holder, ropts);
            let site = || self.site("read", &topic, None);
            let read = trace::call(&client, site, read, |r| {
                match r.as_ref().and_then(|r| r.events.first()) {
                    Some(d) => Outcome::Granted(d.token),
                    None => Outcome::Busy,
                }
            });
            let undo = give_back(&topic, &sub, &self.holder, id);
            let read = granting(&client, opts.ttl, read, undo).await?;
            let Some(read) = read else {
                // Deleted (or lost with the backend's data): made again.
                self.made = Made::Gone;
                continue;
            };
            self.keep_presence(&client, &topic, &sub, t_sent);
            let next_in = read.next_in;
            self.buffer(read, Some(t_sent));
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
            self.wait(&topic, &sub, &opts, next_in, started).await?;
            watching = self.watch.is_some();
        }
    }

    /// Waits for a publish (the watch) or `next_in`, within the jittered
    /// retry delay and the wait timeout of a `next` that began at
    /// `started`; past that timeout, `Timeout`.
    async fn wait(
        &mut self,
        topic: &Key,
        sub: &Key,
        opts: &LeaseOptions,
        next_in: Option<Duration>,
        started: Instant,
    ) -> Result<()> {
        let client = self.topic.client().clone();
        let deadline = opts.wait_timeout.map(|w| later(started, w));
        let now = client.clock().now();
        if deadline.is_some_and(|d| now >= d) {
            let (topic, sub) = (topic.as_str(), sub.as_str());
            let what = format!("an event of topic {topic:?}, subscription {sub:?}");
            return Err(client.timed_out(what, now.saturating_duration_since(started)));
        }
        let wait = hinted_wait(opts, next_in);
        let wake = deadline.map_or(later(now, wait), |d| d.min(later(now, wait)));
        sleep_or_woken(&client, self.watch.get(), wake).await;
        Ok(())
    }

    /// Acks `delivery` (as [`EventDelivery::ack`]) and, in the same round
    /// trip, reads what the subscription has next (never waiting): a
    /// handler loop's settle-and-take-the-next, as [`run`](Self::run)
    /// does. `Ok(None)` when nothing was there: [`next`](Self::next) waits
    /// for it. With events still buffered from an earlier read, it acks
    /// alone and answers `None` (`next` hands them out). If the ack was
    /// stale (`LeaseLost`), what the read delivered waits for the next
    /// `next`.
    ///
    /// ```no_run
    /// # async fn f(client: coord_api::Client) -> coord_api::Result<()> {
    /// use coord_api::Next;
    /// let mut orders = client.topic::<u64>("orders").subscriber("billing");
    /// let mut next = None;
    /// loop {
    ///     let n = match next.take() {
    ///         Some(n) => n,
    ///         None => orders.next().await?,
    ///     };
    ///     if let Next::Event(d) = n {
    ///         println!("order {}", d.event());
    ///         next = orders.ack_and_next(d).await?;
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn ack_and_next(&mut self, delivery: EventDelivery<E>) -> Result<Option<Next<E>>> {
        self.ack_receipt_and_next(delivery.receipt).await
    }

    async fn ack_receipt_and_next(&mut self, r: Receipt) -> Result<Option<Next<E>>> {
        if !self.pending.is_empty() {
            EventDelivery {
                event: (),
                receipt: r,
            }
            .ack()
            .await?;
            return Ok(None);
        }
        let (topic, sub, opts) = self.checked()?;
        let client = self.topic.client().clone();
        let topics = client.topics()?;
        let lease = r.end(Settling::Ack);
        let t_sent = client.clock().now();
        let id = undo::call_id();
        let ropts = ReadOptions::new(opts.ttl, self.presence_ttl, self.batch).read_id(id);
        let call = topics.ack_and_read(&topic, &sub, r.offset, r.token, &self.holder, ropts);
        let call = trace::call(
            &client,
            || r.site("ack_and_read"),
            call,
            |(s, _)| settled(s),
        );
        let undo = give_back(&topic, &sub, &self.holder, id);
        let done = granting(&client, opts.ttl, call, undo).await;
        let acked = match done {
            Ok((s, read)) => {
                match read {
                    Some(read) => {
                        self.keep_presence(&client, &topic, &sub, t_sent);
                        let found = !read.events.is_empty() || !read.missed.is_empty();
                        self.idle = (!found).then_some(read.next_in);
                        // After a stale ack, the read's first is extended too.
                        let sent = (s == Settle::Done).then_some(t_sent);
                        self.buffer(read, sent);
                    }
                    None => self.made = Made::Gone,
                }
                Ok(s)
            }
            Err(e) => Err(e),
        };
        r.settled(&lease, "acked", acked)?;
        self.take_pending(&topic, &sub, &opts).await
    }

    /// Reads and handles events for ever: `handler` gets each event and its
    /// [`EventContext`]; its `Ok` acks the event (reading the next in the
    /// same step, as [`ack_and_next`](Self::ack_and_next)), its `Err` nacks it
    /// (dead-letters it when the error is permanent). Missed offsets and
    /// refused events are logged (at `warn`) and counted; the subscriber
    /// goes on. Errors the backend may recover from are waited out; any
    /// other is returned.
    pub async fn run<F, Fut>(mut self, handler: F) -> Result<()>
    where
        F: Fn(E, EventContext) -> Fut,
        Fut: Future<Output = std::result::Result<(), NodeError>>,
    {
        let mut next = None;
        loop {
            let got = match next.take() {
                Some(n) => Ok(n),
                None => self.next().await,
            };
            let res = match got {
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
                        Ok(()) => self.ack_receipt_and_next(d.receipt).await.map(|n| next = n),
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
                        .sleep_until(later(clock.now(), jittered(self.handle.opts())))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves: every event delivered to this subscriber and not settled
    /// goes back to the subscription at once; how many. A settle on its
    /// way (begun in another task, or cancelled and being sent again) is
    /// answered first, for at most the presence TTL.
    ///
    /// # Cancel safety
    /// A leave cancelled (or failed without an answer) is sent again in
    /// the background, for at most the presence TTL, as a dropped
    /// subscriber's is: what the subscriber held is not left until its
    /// presence ends.
    pub async fn leave(mut self) -> Result<u32> {
        let (topic, sub, _) = self.checked()?;
        let client = self.topic.client().clone();
        // (Cancelled here, the subscriber is dropped: its presence's
        // release waits in the background likewise, then leaves.)
        (self.settles.drained(&**client.clock(), self.presence_ttl)).await;
        self.pending.clear();
        if let Some(g) = self.presence.take() {
            g.into_lease().mark(false);
        }
        let leave = client.topics()?.leave(&topic, &sub, &self.holder);
        let site = || self.site("leave", &topic, None);
        let leave = trace::call(&client, site, leave, Outcome::ok);
        let again = leave_unanswered(&topic, &sub, &self.holder);
        granting(&client, self.presence_ttl, leave, again).await
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
    ///
    /// # Cancel safety
    /// An unsubscribe cancelled (or failed without an answer) may or may
    /// not have deleted the subscription; this subscriber leaves it in the
    /// background (for at most the presence TTL), so what it held is due
    /// again at once if the subscription is still there.
    pub async fn unsubscribe(mut self) -> Result<bool> {
        let (topic, sub, _) = self.checked()?;
        if let Some(g) = self.presence.take() {
            g.into_lease().mark(false);
        }
        let client = self.topic.client().clone();
        let gone = client.topics()?.unsubscribe(&topic, &sub);
        let site = || self.site("unsubscribe", &topic, None);
        let gone = trace::call(&client, site, gone, Outcome::ok);
        let left = leave_unanswered(&topic, &sub, &self.holder);
        granting(&client, self.presence_ttl, gone, left).await
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
