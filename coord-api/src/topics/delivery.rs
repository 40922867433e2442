//! One event delivered to a subscriber: its lease (renewed by extend,
//! given back at once when dropped unsettled) and how it is settled (one
//! settle cancelled or unanswered is sent again by the lease's release, as
//! it was asked).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::metrics;
use crate::{
    Backoff, Client, Error, FencingToken, HolderId, Key, LostSignal, Release, Result,
    lease::{BoxFuture, Guard, Lease, Tenure, released, settles::Asked},
    spi::{Settle, queues::cut_reason},
    trace::{self, Outcome, Site},
};

/// One delivery's lease: renewed by extend; a dropped delivery is given
/// back at once (a nack without delay), unless a settle of it was begun:
/// then its release is that settle, sent again (the settle was cancelled,
/// or failed without an answer; token-checked, so a repeat of one that
/// was applied is stale and changes nothing).
pub(super) struct EventLease {
    pub(super) topic: Key,
    pub(super) sub: Key,
    pub(super) offset: u64,
    pub(super) token: FencingToken,
    pub(super) holder: HolderId,
    /// The subscriber's presence, which this delivery lives inside: the
    /// backend gives a subscriber's deliveries back when it ends.
    pub(super) presence: Option<Arc<Lease>>,
    /// What a settle begun asked for, shared with the delivery's
    /// [`Receipt`] (which sets it before the settle goes out).
    pub(super) settling: Arc<Asked<Settling>>,
}

/// What a settle of a delivery asks for: recorded before it goes out, so
/// that the delivery's release, when the settle was cancelled or failed
/// without an answer, sends it again as it was asked (decision 0052).
#[derive(Debug)]
pub(super) enum Settling {
    /// Done for the subscription.
    Ack,
    /// Back, delivered again after `retry_in`.
    Nack { retry_in: Duration },
    /// Dead with `reason`.
    DeadLetter { reason: String },
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
            let (topic, sub, offset, token) = (&self.topic, &self.sub, self.offset, self.token);
            let settle = match self.settling.get() {
                None => topics.nack(topic, sub, offset, token, Duration::ZERO),
                Some(Settling::Ack) => topics.ack(topic, sub, offset, token),
                Some(Settling::Nack { retry_in }) => {
                    topics.nack(topic, sub, offset, token, *retry_in)
                }
                Some(Settling::DeadLetter { reason }) => {
                    topics.dead_letter(topic, sub, offset, token, reason)
                }
            };
            Ok(released(settle.await? == Settle::Done))
        }))
    }
    fn counted(&self) -> bool {
        false
    }
    fn within(&self) -> Option<&Arc<Lease>> {
        self.presence.as_ref()
    }
}

/// What a [`Subscriber::run`](crate::Subscriber::run) handler gets with each event.
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

pub(super) struct Receipt {
    pub(super) client: Client,
    pub(super) topic: Key,
    pub(super) sub: Key,
    pub(super) offset: u64,
    pub(super) at: SystemTime,
    pub(super) attempt: u32,
    pub(super) token: FencingToken,
    pub(super) backoff: Backoff,
    pub(super) guard: Guard,
    /// The cell its lease's release reads (see [`EventLease::settling`]).
    pub(super) settling: Arc<Asked<Settling>>,
}

/// One event delivered to this subscriber, under a lease renewed while it
/// is held. Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`dead_letter`](Self::dead_letter); one dropped unsettled is given back
/// at once.
///
/// # Cancel safety
/// A settle cancelled, or failed without an answer (its error returned),
/// is sent again in the background as it was asked (the ack, the nack with
/// its back-off, the dead-letter), also once the client is closed, while
/// the backend is unreachable, for at most the lease TTL (then the lease
/// has ended and the event is delivered again); token-checked, so a repeat
/// of one that was applied after all changes nothing. Never turned into a
/// give-back without delay. A settle refused before any I/O (`Closed`) is
/// not sent: the delivery is given back as a dropped one is.
pub struct EventDelivery<E> {
    pub(super) event: E,
    pub(super) receipt: Receipt,
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

    /// Fires when the delivery's lease is lost (a renewal refused, local
    /// validity ran out, or the subscriber's presence ended): stop; the
    /// event will be delivered again.
    pub fn lost(&self) -> LostSignal {
        self.receipt.guard.lost_signal()
    }

    /// Whether the lease is still held (as far as this process knows).
    pub fn is_held(&self) -> bool {
        self.receipt.guard.is_held()
    }

    /// Done for this subscription. `LeaseLost` (and nothing changes) if
    /// this delivery is no longer current (it expired and went back).
    /// Cancelled or unanswered, it is sent again in the background (see
    /// the type's `# Cancel safety`).
    pub async fn ack(self) -> Result<()> {
        let r = self.receipt;
        let topics = r.client.topics()?;
        let lease = r.end(Settling::Ack);
        let ack = topics.ack(&r.topic, &r.sub, r.offset, r.token);
        let done = trace::call(&r.client, || r.site("ack"), ack, settled).await;
        r.settled(&lease, "acked", done)
    }

    /// Gives it back, delivered again after the subscriber's back-off.
    /// Cancelled or unanswered, it is sent again in the background with
    /// the same back-off (see the type's `# Cancel safety`).
    pub async fn nack(self) -> Result<()> {
        let r = self.receipt;
        let retry_in = r.backoff.delay(r.attempt);
        let topics = r.client.topics()?;
        let lease = r.end(Settling::Nack { retry_in });
        let nack = topics.nack(&r.topic, &r.sub, r.offset, r.token, retry_in);
        let done = trace::call(&r.client, || r.site("nack"), nack, settled).await;
        r.settled(&lease, "nacked", done)
    }

    /// Moves it to the subscription's dead events with `reason`.
    /// Cancelled or unanswered, it is sent again in the background (see
    /// the type's `# Cancel safety`).
    pub async fn dead_letter(self, reason: impl fmt::Display) -> Result<()> {
        let r = self.receipt;
        let reason = cut_reason(reason.to_string());
        let topics = r.client.topics()?;
        let lease = r.end(Settling::DeadLetter {
            reason: reason.clone(),
        });
        let dead = topics.dead_letter(&r.topic, &r.sub, r.offset, r.token, &reason);
        let done = trace::call(&r.client, || r.site("dead_letter"), dead, settled).await;
        r.settled(&lease, "dead_lettered", done)
    }
}

pub(super) fn settled(s: &Settle) -> Outcome {
    match s {
        Settle::Done => Outcome::Ok,
        _ => Outcome::NotHeld,
    }
}

impl Receipt {
    pub(super) fn site(&self, op: &'static str) -> Site<'_> {
        Site {
            op,
            family: "topic",
            kind: "delivery",
            key: &self.topic,
            holder: Some(self.guard.holder()),
            token: Some(self.token),
        }
    }

    /// Stops renewing the lease: the settlement about to be sent, `asked`,
    /// ends it. Until its answer comes, the lease's release (a settle
    /// cancelled or unanswered drops the guard) sends `asked` again. Called
    /// once the settlement can go out (the client open): one refused before
    /// any I/O (`Closed`) is not sent in the background either.
    pub(super) fn end(&self, asked: Settling) -> Arc<Lease> {
        self.settling.ask(asked);
        let lease = self.guard.lease().clone();
        lease.mark(false);
        lease
    }

    pub(super) fn settled(
        self,
        lease: &Lease,
        outcome: &'static str,
        done: Result<Settle>,
    ) -> Result<()> {
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
