//! The consumer side of a queue: receiving (waiting on the queue's
//! notification, never polling the backend), the consumer's presence lease,
//! prefetching (a prefetched delivery started as `receive` hands it out) and
//! stealing, items that do not decode, `ack_and_next`, `run` and `leave`.
//! A delivery itself (its lease, settling it) is in `delivery.rs`.

use std::{collections::VecDeque, fmt, future::Future, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    Queue,
    delivery::{Delivery, ItemContext, ItemLease, Receipt, Settling, settled},
    metrics,
};
use crate::{
    Backoff, Client, Error, FencingToken, HolderId, Key, NodeError, Release, Result,
    barriers::sleep_or_woken,
    clock::Instant,
    handle::{Handle, KeptWatch, option_setters},
    lease::{
        BoxFuture, Guard, Lease, LeaseOptions, Tenure, released,
        settles::{Asked, Settles},
        undo::{self, MakeUndo, granting},
        wait::{hinted_wait, jittered, later},
    },
    spi::{self, ReceiveOptions, Settle, queues::cut_reason},
    trace::{self, Outcome, Site},
};

/// A consumer's presence in its queue: renewed by heartbeats while the
/// consumer lives; releasing it (a dropped consumer) gives every delivery
/// of the consumer back, once the settles on their way are answered (or
/// the TTL passed): an ack overtaken would give back the item it settled.
struct Presence {
    queue: Key,
    holder: HolderId,
    ttl: Duration,
    settles: Arc<Settles>,
}

impl Tenure for Presence {
    fn family(&self) -> &'static str {
        "queue"
    }
    fn kind(&self) -> &'static str {
        "consumer"
    }
    fn key(&self) -> &Key {
        &self.queue
    }
    fn holder(&self) -> &HolderId {
        &self.holder
    }
    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        let queues = client.queues()?;
        Ok(Box::pin(async move {
            queues.heartbeat(&self.queue, &self.holder, ttl).await?;
            Ok(true)
        }))
    }
    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let queues = client.queues()?;
        Ok(Box::pin(async move {
            self.settles.drained(&**client.clock(), self.ttl).await;
            queues.leave(&self.queue, &self.holder).await?;
            Ok(released(true))
        }))
    }
    fn counted(&self) -> bool {
        false
    }
}

/// Receives a queue's items. Its presence in the queue (a lease renewed in
/// the background from its first receive) tells other consumers it is
/// alive; when it is dropped or [`leave`](Self::leave)s, or its process
/// dies and the presence expires, the items delivered to it go back to the
/// queue. Keep it alive while its deliveries are being worked on.
pub struct Consumer<T> {
    queue: Queue<T>,
    handle: Handle,
    holder: HolderId,
    presence_ttl: Duration,
    prefetch: u32,
    steal: bool,
    backoff: Backoff,
    presence: Option<Guard>,
    /// The settles of its deliveries on their way, which its leave waits
    /// for.
    settles: Arc<Settles>,
    /// Prefetched deliveries not started yet, in delivery order.
    buffer: VecDeque<spi::Delivery>,
    watch: KeptWatch,
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue.name_str())
            .field("holder", &self.holder)
            .field("prefetch", &self.prefetch)
            .field("steal", &self.steal)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Consumer<T> {
    /// The presence TTL by default: a consumer whose process died is known
    /// dead (and its deliveries given back) this long after its last
    /// heartbeat.
    pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(10);

    pub(super) fn new(queue: Queue<T>) -> Consumer<T> {
        let handle = Handle::new(queue.client().clone(), queue.name_str());
        let holder = HolderId::new(*queue.client().instance_id());
        Consumer {
            queue,
            handle,
            holder,
            presence_ttl: Self::DEFAULT_PRESENCE_TTL,
            prefetch: 1,
            steal: false,
            backoff: Backoff::DEFAULT,
            presence: None,
            settles: Arc::default(),
            buffer: VecDeque::new(),
            watch: KeptWatch::default(),
        }
    }

    option_setters!();

    /// Sets the presence TTL (1 ms ..= 24 h; default 10 s).
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
        self
    }

    /// Receives up to `n` items per round trip (1 ..= 1,000; default 1);
    /// the ones not yet worked on are *prefetched* and may be stolen by an
    /// idle consumer that [`steal`](Self::steal)s.
    pub fn prefetch(mut self, n: u32) -> Self {
        self.prefetch = n;
        self
    }

    /// When nothing is ready, takes items other live consumers prefetched
    /// but have not started (never one being worked on).
    pub fn steal(mut self, on: bool) -> Self {
        self.steal = on;
        self
    }

    /// Sets the delays before a nacked item is delivered again.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// The consumer's holder id (its instance and a nonce of its own).
    pub fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn checked(&self) -> Result<(Key, LeaseOptions)> {
        let (key, opts) = self.handle.checked()?;
        crate::validate_ttl(key, self.presence_ttl)?;
        self.backoff
            .check(|| format!("queue \"{key}\": the consumer"))?;
        if self.prefetch == 0 || self.prefetch as usize > spi::MAX_BATCH {
            return Err(Error::invalid(format!(
                "queue \"{key}\": prefetch {}, outside 1..={}",
                self.prefetch,
                spi::MAX_BATCH
            )));
        }
        Ok((key.clone(), opts.clone()))
    }

    /// The next delivery: a prefetched one, else what the queue has, else
    /// it waits (woken by a push, or when a delayed item or an expired
    /// delivery is due) up to `wait_timeout`. Items that do not decode as
    /// `T` are moved to the dead letters with the decode error, and the
    /// consumer goes on.
    ///
    /// # Cancel safety
    /// A prefetched delivery stays with the consumer until its start is
    /// answered: a receive cancelled (or failed) meanwhile leaves it for
    /// the next. A request for new items cancelled in flight (or failed
    /// after it may have been applied) gives back in the background what
    /// it delivered, and nothing else: ready for any consumer at once. The
    /// dead-letter of an item that does not decode, cancelled (or
    /// unanswered), is sent again in the background.
    pub async fn receive(&mut self) -> Result<Delivery<T>> {
        let (key, opts) = self.checked()?;
        let client = self.queue.client().clone();
        let started = client.clock().now();
        let deadline = opts.wait_timeout.map(|w| later(started, w));
        let mut subscribed = self.watch.is_some();
        loop {
            while let Some(&spi::Delivery { id, token, .. }) = self.buffer.front() {
                self.renew_lost_presence(&client, &key).await?;
                // A prefetched delivery starts with an extend; refused, it
                // was stolen (or expired) and is someone else's now. It
                // leaves the buffer once the extend answered: a receive
                // cancelled meanwhile (or failed) leaves it for the next
                // (an extend again starts it once).
                let t_sent = client.clock().now();
                let extend = client.queues()?.extend(&key, id, token, opts.ttl);
                let site = || self.site("extend", &key, Some(token));
                let extended = trace::call(&client, site, extend, settled).await?;
                let d = self.buffer.pop_front().expect("looked at above");
                if extended == Settle::Done
                    && let Some(d) = self.deliver(&key, &opts, d, t_sent).await?
                {
                    return Ok(d);
                }
            }
            let t_sent = client.clock().now();
            let call = undo::call_id();
            let receive_opts = self.receive_options(&opts).receive_id(call);
            let receive = client.queues()?.receive(&key, &self.holder, receive_opts);
            let site = || self.site("receive", &key, None);
            let receive = trace::call(&client, site, receive, |r| match r.deliveries.first() {
                Some(d) => Outcome::Granted(d.token),
                None => Outcome::Busy,
            });
            let undo = give_back(&key, &self.holder, call);
            let received = granting(&client, opts.ttl, receive, undo).await?;
            self.keep_presence(&client, &key, t_sent);
            let next_in = received.next_in;
            let mut deliveries = received.deliveries.into_iter();
            if let Some(first) = deliveries.next() {
                self.buffer.extend(deliveries);
                if let Some(d) = self.deliver(&key, &opts, first, t_sent).await? {
                    return Ok(d);
                }
                continue;
            }
            if !subscribed {
                // Subscribe, then look again: a push between the look and
                // the subscription is not missed.
                *self.watch.get() = client.queues()?.watch(&key).await.ok();
                subscribed = true;
                continue;
            }
            let now = client.clock().now();
            if deadline.is_some_and(|d| now >= d) {
                let what = format!("an item of queue {:?}", key.as_str());
                return Err(client.timed_out(what, now.saturating_duration_since(started)));
            }
            let wait = hinted_wait(&opts, next_in);
            let wake = deadline.map_or(later(now, wait), |d| d.min(later(now, wait)));
            sleep_or_woken(&client, self.watch.get(), wake).await;
            subscribed = self.watch.is_some();
        }
    }

    /// Acks `delivery` (as [`Delivery::ack`]) and, in the same round trip,
    /// receives the next item if one is ready (never waiting): a worker
    /// loop's settle-and-take-the-next, as [`run`](Self::run) does.
    /// `Ok(None)` when nothing was ready (or it did not decode and went to
    /// the dead letters): [`receive`](Self::receive) waits for the next.
    /// With prefetched deliveries still buffered, it acks alone and answers
    /// `None`: `receive` starts the next of them. If the ack was stale
    /// (`LeaseLost`), what the receive delivered waits in the buffer for the
    /// next `receive`.
    ///
    /// ```no_run
    /// # async fn f(client: coord_api::Client) -> coord_api::Result<()> {
    /// let mut consumer = client.queue::<u64>("jobs").consumer();
    /// let mut next = None;
    /// loop {
    ///     let d = match next.take() {
    ///         Some(d) => d,
    ///         None => consumer.receive().await?,
    ///     };
    ///     println!("job {}", d.item());
    ///     next = consumer.ack_and_next(d).await?;
    /// }
    /// # }
    /// ```
    pub async fn ack_and_next(&mut self, delivery: Delivery<T>) -> Result<Option<Delivery<T>>> {
        self.ack_receipt_and_next(delivery.receipt).await
    }

    async fn ack_receipt_and_next(&mut self, r: Receipt) -> Result<Option<Delivery<T>>> {
        if !self.buffer.is_empty() {
            Delivery {
                item: (),
                receipt: r,
            }
            .ack()
            .await?;
            return Ok(None);
        }
        let (key, opts) = self.checked()?;
        let client = self.queue.client().clone();
        let queues = client.queues()?;
        let lease = r.end(Settling::Ack);
        let t_sent = client.clock().now();
        let id = undo::call_id();
        let receive_opts = self.receive_options(&opts).receive_id(id);
        let call = queues.ack_and_receive(&r.queue, r.id, r.token, &self.holder, receive_opts);
        let site = || r.site("ack_and_receive");
        let call = trace::call(&client, site, call, |(s, _)| settled(s));
        let undo = give_back(&key, &self.holder, id);
        let done = granting(&client, opts.ttl, call, undo).await;
        let (acked, mut deliveries) = match done {
            Ok((s, received)) => {
                self.keep_presence(&client, &key, t_sent);
                (Ok(s == Settle::Done), received.deliveries)
            }
            Err(e) => (Err(e), Vec::new()),
        };
        let counted = matches!(acked, Ok(true));
        let first = if counted && !deliveries.is_empty() {
            Some(deliveries.remove(0))
        } else {
            None
        };
        self.buffer.extend(deliveries);
        r.settled(&lease, "acked", acked)?;
        match first {
            Some(d) => self.deliver(&key, &opts, d, t_sent).await,
            None => Ok(None),
        }
    }

    /// What a receive asks for.
    fn receive_options(&self, opts: &LeaseOptions) -> ReceiveOptions {
        ReceiveOptions::new(opts.ttl, self.presence_ttl)
            .max(self.prefetch)
            .steal(self.steal)
    }

    /// Starts the presence lease after the first receive (which registered
    /// the consumer), renewed in the background.
    fn keep_presence(&mut self, client: &Client, key: &Key, t_sent: Instant) {
        if self.presence.as_ref().is_some_and(|g| g.is_held()) {
            return;
        }
        // A presence lost locally (a pause, a partition) is retired, not
        // dropped: dropping it would release it, and a release is a leave,
        // which would give back what this very receive was just handed.
        if let Some(old) = self.presence.take() {
            old.into_lease().mark(false);
        }
        let mut opts = self.handle.opts().clone();
        opts.ttl = self.presence_ttl;
        opts.auto_extend = true;
        opts.extend_interval = None;
        let tenure = Presence {
            queue: key.clone(),
            holder: self.holder.clone(),
            ttl: self.presence_ttl,
            settles: Arc::clone(&self.settles),
        };
        let validity = opts.local_validity();
        // `Closed` (the client closed while the receive was on its way):
        // none, and the delivery answers `Closed`.
        let lease = Lease::start(client.clone(), tenure, None, &opts, validity, t_sent);
        self.presence = lease.ok().map(Guard::new);
    }

    /// Renews a presence lost locally (its heartbeats' answers too late, a
    /// pause) before a prefetched delivery starts: a delivery lives inside
    /// it, and one started under a lost presence would be lost at once,
    /// never renewed, the attempt its start counted used for nothing. A
    /// consumer the backend forgot meanwhile is registered again; the
    /// deliveries it held were given back, and their extends are refused.
    async fn renew_lost_presence(&mut self, client: &Client, key: &Key) -> Result<()> {
        if self.presence.as_ref().is_some_and(|g| g.is_held()) {
            return Ok(());
        }
        let t_sent = client.clock().now();
        let beat = (client.queues()?).heartbeat(key, &self.holder, self.presence_ttl);
        let site = || self.site("heartbeat", key, None);
        trace::call(client, site, beat, Outcome::ok).await?;
        self.keep_presence(client, key, t_sent);
        Ok(())
    }

    /// A delivery with its lease, or `None` if its item does not decode
    /// (then it was moved to the dead letters).
    async fn deliver(
        &self,
        key: &Key,
        opts: &LeaseOptions,
        d: spi::Delivery,
        t_sent: Instant,
    ) -> Result<Option<Delivery<T>>> {
        let client = self.queue.client();
        let item = match serde_json::from_slice::<T>(&d.payload) {
            Ok(item) => item,
            Err(e) => {
                let reason = cut_reason(format!(
                    "decode error: the item does not decode as {}: {e}",
                    std::any::type_name::<T>()
                ));
                let dead = client.queues()?.dead_letter(key, d.id, d.token, &reason);
                let site = || self.site("dead_letter", key, Some(d.token));
                let dead = trace::call(client, site, dead, settled);
                // Cancelled or unanswered, it is sent again in the
                // background: the item would stay started for nobody.
                let again = dead_letter_unanswered(key, d.id, d.token, &reason);
                granting(client, opts.ttl, dead, again).await?;
                metrics::settled("undecodable");
                tracing::warn!(queue = %key, id = d.id, %reason, "queue item dead-lettered");
                return Ok(None);
            }
        };
        metrics::delivered(d.attempt > 1, d.stolen);
        let settling = Asked::new(&self.settles);
        let tenure = ItemLease {
            queue: key.clone(),
            id: d.id,
            token: d.token,
            holder: self.holder.clone(),
            presence: self.presence.as_ref().map(|g| g.lease().clone()),
            settling: Arc::clone(&settling),
        };
        let validity = self.handle.validity();
        let lease = Lease::start(
            client.clone(),
            tenure,
            Some(d.token),
            opts,
            validity,
            t_sent,
        )?;
        Ok(Some(Delivery {
            item,
            receipt: Receipt {
                client: client.clone(),
                queue: key.clone(),
                id: d.id,
                attempt: d.attempt,
                max_attempts: d.max_attempts,
                token: d.token,
                stolen: d.stolen,
                backoff: self.backoff,
                guard: Guard::new(lease),
                settling,
            },
        }))
    }

    /// Receives and handles items for ever: `handler` gets each item and
    /// its [`ItemContext`]; its `Ok` acks the item, its `Err` nacks it
    /// (dead-letters it when the error is permanent). A quiet queue is
    /// waited on past the options' `wait_timeout`; errors the backend may
    /// recover from are logged and waited out; any other is returned.
    pub async fn run<F, Fut>(mut self, handler: F) -> Result<()>
    where
        F: Fn(T, ItemContext) -> Fut,
        Fut: Future<Output = std::result::Result<(), NodeError>>,
    {
        // The item an ack brought with it (one round trip for both).
        let mut next: Option<Delivery<T>> = None;
        loop {
            let got = match next.take() {
                Some(d) => Ok(d),
                // (A quiet queue is no reason to stop: `wait_timeout`
                // bounds one receive, not the consumer's life.)
                None => match self.receive().await {
                    Err(Error::Timeout { .. }) => continue,
                    got => got,
                },
            };
            let res = match got {
                Ok(Delivery { item, receipt }) => {
                    let ctx = ItemContext {
                        id: receipt.id,
                        attempt: receipt.attempt,
                        max_attempts: receipt.max_attempts,
                        token: receipt.token,
                        stolen: receipt.stolen,
                        lost: receipt.guard.lost_signal(),
                    };
                    let out = handler(item, ctx).await;
                    match out {
                        Ok(()) => self.ack_receipt_and_next(receipt).await.map(|n| next = n),
                        Err(e) if e.is_permanent() => {
                            Delivery { item: (), receipt }.dead_letter(e).await
                        }
                        Err(e) => Delivery { item: (), receipt }.nack(e).await.map(drop),
                    }
                }
                Err(e) => Err(e),
            };
            match res {
                Ok(()) | Err(Error::LeaseLost { .. }) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!(queue = %self.queue.name_str(), error = %e, "queue consumer: backend unreachable; waiting");
                    let clock = self.queue.client().clock().clone();
                    clock
                        .sleep_until(later(clock.now(), jittered(self.handle.opts())))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves the queue: every item delivered to this consumer and not
    /// settled (prefetched ones too) goes back to the queue at once; how
    /// many. A settle on its way (begun in another task, or cancelled and
    /// being sent again) is answered first, for at most the presence TTL.
    ///
    /// # Cancel safety
    /// A leave cancelled (or failed without an answer) is sent again in
    /// the background, for at most the presence TTL, as a dropped
    /// consumer's is: what the consumer held is not left until its
    /// presence ends.
    pub async fn leave(mut self) -> Result<u32> {
        let key = self.handle.key()?.clone();
        let client = self.queue.client().clone();
        // (Cancelled here, the consumer is dropped: its presence's release
        // waits in the background likewise, then leaves.)
        (self.settles.drained(&**client.clock(), self.presence_ttl)).await;
        self.buffer.clear();
        if let Some(g) = self.presence.take() {
            g.into_lease().mark(false);
        }
        let leave = client.queues()?.leave(&key, &self.holder);
        let site = || self.site("leave", &key, None);
        let leave = trace::call(&client, site, leave, |_| Outcome::Ok);
        let again = leave_unanswered(&key, &self.holder);
        granting(&client, self.presence_ttl, leave, again).await
    }

    fn site<'a>(&'a self, op: &'static str, key: &'a Key, token: Option<FencingToken>) -> Site<'a> {
        Site {
            op,
            family: "queue",
            kind: "consumer",
            key,
            holder: Some(&self.holder),
            token,
        }
    }
}

/// The clean-up of receive `id` of `consumer`, whose answer never came:
/// gives back what it delivered, and only that (decision 0044).
fn give_back(queue: &Key, consumer: &HolderId, id: u64) -> impl MakeUndo {
    let args = (queue.clone(), consumer.clone());
    undo::calling(args, move |client, (queue, consumer)| async move {
        let give_back = client.queues()?.give_back(&queue, &consumer, id);
        let site = || {
            Site::new(
                ("queue", "consumer", "give_back"),
                &queue,
                Some(&consumer),
                None,
            )
        };
        trace::call(&client, site, give_back, Outcome::ok)
            .await
            .map(drop)
    })
}

/// The clean-up of a leave of `consumer` whose answer never came: sent
/// again in the background, as a dropped consumer's presence sends it, or
/// what the consumer held would stay with it until its presence ended.
/// Holder-checked: a repeat changes nothing.
fn leave_unanswered(queue: &Key, consumer: &HolderId) -> impl MakeUndo {
    let args = (queue.clone(), consumer.clone());
    undo::calling(args, move |client, (queue, consumer)| async move {
        let leave = client.queues()?.leave(&queue, &consumer);
        let site = || {
            Site::new(
                ("queue", "consumer", "leave"),
                &queue,
                Some(&consumer),
                None,
            )
        };
        trace::call(&client, site, leave, Outcome::ok)
            .await
            .map(drop)
    })
}

/// The clean-up of the dead-letter of item `id` (delivery `token`) that
/// does not decode, whose answer never came (the receive cancelled
/// meanwhile, or a reply lost): sent again in the background, or the
/// item would stay started for nobody until its lease ended, then be
/// delivered again, an attempt spent. Token-checked: a repeat of one that
/// counted is stale and changes nothing.
fn dead_letter_unanswered(
    queue: &Key,
    id: u64,
    token: FencingToken,
    reason: &str,
) -> impl MakeUndo {
    let args = (queue.clone(), reason.to_owned());
    undo::calling(args, move |client, (queue, reason)| async move {
        let dead = client.queues()?.dead_letter(&queue, id, token, &reason);
        let site = || {
            Site::new(
                ("queue", "delivery", "dead_letter"),
                &queue,
                None,
                Some(token),
            )
        };
        trace::call(&client, site, dead, settled).await.map(drop)
    })
}
