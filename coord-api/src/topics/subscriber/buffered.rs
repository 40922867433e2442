//! What a read hands a subscriber until `next` hands it out: the buffer
//! (missed ranges and deliveries, in order), starting a buffered delivery
//! (a read's first is started by the read, the others by an extend, under
//! a presence renewed first if it was lost locally), decoding or refusing
//! it (a refused event is dead-lettered), and the subscriber's presence
//! lease that every delivery lives inside. Also the give-back that undoes a
//! read whose answer never came (decision 0044), and a seek's give-back of
//! what the buffer holds (decision 0049).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::{Serialize, de::DeserializeOwned};

use super::{Next, Subscriber};
use crate::{
    Client, FencingToken, HolderId, Key, Release, Result,
    clock::Instant,
    lease::{
        BoxFuture, Guard, Lease, LeaseOptions, Tenure, may_not_have_arrived, released,
        settles::{Asked, Settles},
        undo::{self, MakeUndo, Undo, granting},
    },
    spi::{self, Missed, Read, Settle, queues::cut_reason},
    topics::{
        delivery::{EventDelivery, EventLease, Receipt, settled},
        metrics,
    },
    trace::{self, Outcome, Site},
};

/// A subscriber's presence in its subscription: renewed while it lives;
/// releasing it (a dropped subscriber) gives every delivery of the
/// subscriber back, once the settles on their way are answered (or the TTL
/// passed): an ack overtaken would give back the event it settled.
struct Presence {
    topic: Key,
    sub: Key,
    holder: HolderId,
    ttl: Duration,
    settles: Arc<Settles>,
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
            self.settles.drained(&**client.clock(), self.ttl).await;
            topics.leave(&self.topic, &self.sub, &self.holder).await?;
            Ok(released(true))
        }))
    }
    fn counted(&self) -> bool {
        false
    }
}

/// One thing a read handed over, waiting for `next` to hand it out.
pub(super) enum Pending {
    Missed(Missed),
    /// A delivery, and when the read that made it was sent if it is the
    /// read's first (the others start with an extend).
    Delivered(spi::Delivered, Option<Instant>),
}

impl<E: Serialize + DeserializeOwned + Send + 'static> Subscriber<E> {
    /// The next buffered thing, never waiting: news of missed offsets, or
    /// a delivery (a read's first as it came, the others after an extend;
    /// one found expired is skipped, it went back). A delivery to extend
    /// leaves the buffer once the extend answered: a `next` cancelled
    /// meanwhile (or failed) leaves it for the next (the queue consumer's
    /// rule), instead of leasing it to nobody until its TTL.
    pub(super) async fn take_pending(
        &mut self,
        topic: &Key,
        sub: &Key,
        opts: &LeaseOptions,
    ) -> Result<Option<Next<E>>> {
        let client = self.topic.client().clone();
        while let Some(p) = self.pending.front() {
            let to_extend = match p {
                Pending::Delivered(d, None) => Some((d.event.offset, d.token)),
                _ => None,
            };
            let extended = match to_extend {
                Some((offset, token)) => {
                    self.renew_lost_presence(&client, topic, sub).await?;
                    let t_sent = client.clock().now();
                    let topics = client.topics()?;
                    let extend = topics.extend(topic, sub, offset, token, opts.ttl);
                    let site = || self.site("extend", topic, Some(token));
                    let done = trace::call(&client, site, extend, settled).await?;
                    Some((done == Settle::Done, t_sent))
                }
                None => None,
            };
            let (d, t_sent) = match (self.pending.pop_front().expect("looked at"), extended) {
                (Pending::Missed(m), _) => {
                    metrics::missed(m.last - m.first + 1);
                    tracing::warn!(topic = %topic, subscription = %sub, first = m.first, last = m.last, "events trimmed before this subscription got them");
                    return Ok(Some(Next::Missed {
                        first: m.first,
                        last: m.last,
                    }));
                }
                (Pending::Delivered(_, None), Some((false, _))) => continue,
                (Pending::Delivered(d, None), Some((true, t_sent))) => (d, t_sent),
                (Pending::Delivered(d, Some(t_sent)), _) => (d, t_sent),
                (Pending::Delivered(_, None), None) => unreachable!("extended above"),
            };
            if let Some(next) = self.deliver(topic, sub, opts, d, t_sent).await? {
                return Ok(Some(next));
            }
        }
        Ok(None)
    }

    /// Renews a presence lost locally (its heartbeats' answers too late, a
    /// pause) before a buffered delivery starts: a delivery lives inside
    /// it, and one handed out under a lost presence would be lost at once,
    /// never renewed, its attempt used for nothing. A subscriber the
    /// backend forgot meanwhile is registered again; the deliveries it held
    /// went back, and their extends are refused.
    async fn renew_lost_presence(&mut self, client: &Client, topic: &Key, sub: &Key) -> Result<()> {
        if self.presence.as_ref().is_some_and(|g| g.is_held()) {
            return Ok(());
        }
        let t_sent = client.clock().now();
        let topics = client.topics()?;
        let beat = topics.heartbeat(topic, sub, &self.holder, self.presence_ttl);
        let site = || self.site("heartbeat", topic, None);
        trace::call(client, site, beat, Outcome::ok).await?;
        self.keep_presence(client, topic, sub, t_sent);
        Ok(())
    }

    /// Empties the buffer, giving back each delivery in it with a nack
    /// (no delay), in order: they are this subscriber's at the backend
    /// until then. The give-backs not answered when this ends (cancelled,
    /// or one failed without an answer, which stops it) are sent again in
    /// the background, within the lease `ttl` ([`nack_unanswered`]).
    /// Missed notices are dropped: a seek places the subscription anew.
    pub(super) async fn give_back_buffered(
        &mut self,
        client: &Client,
        topic: &Key,
        sub: &Key,
        ttl: Duration,
    ) -> Result<()> {
        let buffered: Arc<[(u64, FencingToken)]> = (std::mem::take(&mut self.pending).into_iter())
            .filter_map(|p| match p {
                Pending::Delivered(d, _) => Some((d.event.offset, d.token)),
                Pending::Missed(_) => None,
            })
            .collect();
        if buffered.is_empty() {
            return Ok(());
        }
        let left = Left {
            buffered,
            answered: Arc::new(AtomicUsize::new(0)),
        };
        let mut undo = Undo::new(client, ttl, nack_unanswered(topic, sub, &left));
        while let Some((offset, token)) = left.next() {
            let nack = client
                .topics()?
                .nack(topic, sub, offset, token, Duration::ZERO);
            let site = || self.site("nack", topic, Some(token));
            match trace::call(client, site, nack, settled).await {
                Err(e) if may_not_have_arrived(&e) => return Ok(()),
                // Done; or stale (it expired and went back) or refused:
                // nothing more to send.
                _ => left.answered(),
            }
        }
        undo.disarm();
        Ok(())
    }

    /// Buffers what a read gave: the missed ranges, then the deliveries,
    /// the first stamped `sent` (if given, and no missed range is before
    /// it) and the others to be extended.
    pub(super) fn buffer(&mut self, read: Read, sent: Option<Instant>) {
        // Behind a missed notice even the first waits for a later `next`,
        // whenever its caller comes back: it starts then, with an extend, as
        // the others do (counted from the read it could be lost at birth).
        let mut sent = sent.filter(|_| read.missed.is_empty());
        self.pending
            .extend(read.missed.into_iter().map(Pending::Missed));
        for d in read.events {
            self.pending.push_back(Pending::Delivered(d, sent.take()));
        }
    }

    pub(super) fn keep_presence(
        &mut self,
        client: &Client,
        topic: &Key,
        sub: &Key,
        t_sent: Instant,
    ) {
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
            ttl: self.presence_ttl,
            settles: Arc::clone(&self.settles),
        };
        let validity = opts.local_validity();
        // `Closed` (the client closed while the receive was on its way):
        // none, and the delivery answers `Closed`.
        let lease = Lease::start(client.clone(), tenure, None, &opts, validity, t_sent);
        self.presence = lease.ok().map(Guard::new);
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
                let dead = trace::call(client, site, dead, settled);
                // Cancelled or unanswered, it is sent again in the
                // background: the event would stay leased to nobody.
                let again = dead_letter_unanswered(topic, sub, offset, d.token, &reason);
                if granting(client, opts.ttl, dead, again).await? != Settle::Done {
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
        let settling = Asked::new(&self.settles);
        let tenure = EventLease {
            topic: topic.clone(),
            sub: sub.clone(),
            offset,
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
                settling,
            },
        })))
    }
}

/// The clean-up of read `id` of `consumer` in `sub`, whose answer never
/// came: gives back what it delivered, and only that (decision 0044).
pub(super) fn give_back(topic: &Key, sub: &Key, consumer: &HolderId, id: u64) -> impl MakeUndo {
    let args = (topic.clone(), sub.clone(), consumer.clone());
    undo::calling(args, move |client, (topic, sub, consumer)| async move {
        let give_back = client.topics()?.give_back(&topic, &sub, &consumer, id);
        let site = || {
            Site::new(
                ("topic", "subscriber", "give_back"),
                &topic,
                Some(&consumer),
                None,
            )
        };
        trace::call(&client, site, give_back, Outcome::ok)
            .await
            .map(drop)
    })
}

/// The clean-up of a leave (or an unsubscribe) of `consumer` whose answer
/// never came: the leave, sent in the background as a dropped subscriber's
/// presence sends it, or what the subscriber held would stay with it until
/// its presence ended. Holder-checked: a repeat changes nothing.
pub(super) fn leave_unanswered(topic: &Key, sub: &Key, consumer: &HolderId) -> impl MakeUndo {
    let args = (topic.clone(), sub.clone(), consumer.clone());
    undo::calling(args, move |client, (topic, sub, consumer)| async move {
        let leave = client.topics()?.leave(&topic, &sub, &consumer);
        let site = || {
            Site::new(
                ("topic", "subscriber", "leave"),
                &topic,
                Some(&consumer),
                None,
            )
        };
        trace::call(&client, site, leave, Outcome::ok)
            .await
            .map(drop)
    })
}

/// The clean-up of the dead-letter of the event at `offset` (delivery
/// `token`) refused by this subscriber, whose answer never came (the
/// `next` cancelled meanwhile, or a reply lost): sent again in the
/// background, or the event would stay leased to nobody until its lease
/// ended, then be delivered again. Token-checked: a repeat of one that
/// counted is stale and changes nothing.
fn dead_letter_unanswered(
    topic: &Key,
    sub: &Key,
    offset: u64,
    token: FencingToken,
    reason: &str,
) -> impl MakeUndo {
    let args = (topic.clone(), sub.clone(), reason.to_owned());
    undo::calling(args, move |client, (topic, sub, reason)| async move {
        let dead = client
            .topics()?
            .dead_letter(&topic, &sub, offset, token, &reason);
        let site = || {
            Site::new(
                ("topic", "delivery", "dead_letter"),
                &topic,
                None,
                Some(token),
            )
        };
        trace::call(&client, site, dead, settled).await.map(drop)
    })
}

/// A seek's give-backs: the buffered deliveries (offset, token), in order,
/// and how many of them were answered (by the seek, or by the clean-up
/// after it, which goes on from there).
#[derive(Clone)]
struct Left {
    buffered: Arc<[(u64, FencingToken)]>,
    answered: Arc<AtomicUsize>,
}

impl Left {
    fn next(&self) -> Option<(u64, FencingToken)> {
        let i = self.answered.load(Ordering::SeqCst);
        self.buffered.get(i).copied()
    }

    fn answered(&self) {
        self.answered.fetch_add(1, Ordering::SeqCst);
    }
}

/// The clean-up of a seek cancelled (or failed) before every give-back of
/// what its buffer held was answered: the nacks left, sent in the
/// background, or the events would stay leased to a subscriber that no
/// longer knows of them until their leases end. Token-checked: a repeat of
/// one that was applied after all is stale and changes nothing.
fn nack_unanswered(topic: &Key, sub: &Key, left: &Left) -> impl MakeUndo {
    let args = (topic.clone(), sub.clone(), left.clone());
    undo::calling(args, move |client, (topic, sub, left)| async move {
        let topics = client.topics()?;
        while let Some((offset, token)) = left.next() {
            let nack = topics.nack(&topic, &sub, offset, token, Duration::ZERO);
            let site = || Site::new(("topic", "delivery", "nack"), &topic, None, Some(token));
            match trace::call(&client, site, nack, settled).await {
                Err(e) if may_not_have_arrived(&e) => return Err(e),
                _ => left.answered(),
            }
        }
        Ok(())
    })
}
