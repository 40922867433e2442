//! One item delivered to a consumer: its lease (renewed by extend, living
//! inside the consumer's presence, given back at once when dropped
//! unsettled), what a [`Consumer::run`](crate::Consumer::run) handler gets
//! with it, and how it is settled (ack, nack, dead-letter; one cancelled or
//! unanswered is sent again by the lease's release, as it was asked).

use std::{fmt, sync::Arc, time::Duration};

use super::metrics;
use crate::{
    Backoff, Client, Error, FencingToken, HolderId, Key, LostSignal, Release, Result,
    lease::{BoxFuture, Guard, Lease, Tenure, released, settles::Asked},
    spi::{Nack, Settle, queues::cut_reason},
    trace::{self, Outcome, Site},
};

/// One delivery's lease: renewed by extend; a dropped delivery is given
/// back at once (a nack without delay), unless a settle of it was begun:
/// then its release is that settle, sent again (the settle was cancelled,
/// or failed without an answer; token-checked, so a repeat of one that
/// was applied is stale and changes nothing). It lives inside the
/// consumer's presence: the backend gives every delivery of a consumer
/// back when its presence ends, so the delivery is lost when the presence
/// is.
pub(super) struct ItemLease {
    pub(super) queue: Key,
    pub(super) id: u64,
    pub(super) token: FencingToken,
    pub(super) holder: HolderId,
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
    /// The item is done.
    Ack,
    /// Back with `error`, delivered again after `retry_in` (or dead on its
    /// last attempt).
    Nack { error: String, retry_in: Duration },
    /// Dead with `reason`.
    DeadLetter { reason: String },
}

impl Tenure for ItemLease {
    fn family(&self) -> &'static str {
        "queue"
    }
    fn kind(&self) -> &'static str {
        "delivery"
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
            let extend = queues.extend(&self.queue, self.id, self.token, ttl);
            Ok(matches!(extend.await?, Settle::Done))
        }))
    }
    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let queues = client.queues()?;
        Ok(Box::pin(async move {
            let (queue, id, token) = (&self.queue, self.id, self.token);
            let held = match self.settling.get() {
                None => {
                    let why = "dropped: the delivery was neither acked nor nacked";
                    let nack = queues.nack(queue, id, token, why, Duration::ZERO);
                    nack.await? != Nack::Stale
                }
                Some(Settling::Ack) => queues.ack(queue, id, token).await? == Settle::Done,
                Some(Settling::Nack { error, retry_in }) => {
                    queues.nack(queue, id, token, error, *retry_in).await? != Nack::Stale
                }
                Some(Settling::DeadLetter { reason }) => {
                    let dead = queues.dead_letter(queue, id, token, reason);
                    dead.await? == Settle::Done
                }
            };
            Ok(released(held))
        }))
    }
    fn counted(&self) -> bool {
        false
    }
    fn within(&self) -> Option<&Arc<Lease>> {
        self.presence.as_ref()
    }
}

/// What a [`Consumer::run`](crate::Consumer::run) handler gets with each item.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ItemContext {
    /// The item's id.
    pub id: u64,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// The attempts the item is given.
    pub max_attempts: u32,
    /// The delivery's fencing token: pass it to everything the handler
    /// writes.
    pub token: FencingToken,
    /// Whether it was taken from another consumer's prefetch.
    pub stolen: bool,
    /// Fires when the delivery's lease is lost: stop; the item will be
    /// delivered again.
    pub lost: LostSignal,
}

/// What settling a delivery needs, apart from its item.
pub(super) struct Receipt {
    pub(super) client: Client,
    pub(super) queue: Key,
    pub(super) id: u64,
    pub(super) attempt: u32,
    pub(super) max_attempts: u32,
    pub(super) token: FencingToken,
    pub(super) stolen: bool,
    pub(super) backoff: Backoff,
    pub(super) guard: Guard,
    /// The cell its lease's release reads (see [`ItemLease::settling`]).
    pub(super) settling: Arc<Asked<Settling>>,
}

/// One item delivered to this consumer, under a lease renewed while it is
/// held. Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`dead_letter`](Self::dead_letter); a delivery dropped unsettled is given
/// back at once (and counts its attempt).
///
/// # Cancel safety
/// A settle cancelled, or failed without an answer (its error returned),
/// is sent again in the background as it was asked (the ack, the nack with
/// its error and back-off, the dead-letter), also once the client is
/// closed, while the backend is unreachable, for at most the lease TTL
/// (then the lease has ended and the item is delivered again);
/// token-checked, so a repeat of one that was applied after all changes
/// nothing. Never turned into a give-back without delay: an item acked
/// after its work is not worked on again at once because the ack's answer
/// was lost. A settle refused before any I/O (`Closed`) is not sent: the
/// delivery is given back as a dropped one is.
pub struct Delivery<T> {
    pub(super) item: T,
    pub(super) receipt: Receipt,
}

impl<T: fmt::Debug> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.receipt.queue)
            .field("id", &self.receipt.id)
            .field("attempt", &self.receipt.attempt)
            .field("token", &self.receipt.token)
            .field("item", &self.item)
            .finish()
    }
}

impl<T> Delivery<T> {
    /// The item.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The item's id.
    pub fn id(&self) -> u64 {
        self.receipt.id
    }

    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.receipt.attempt
    }

    /// The attempts the item is given.
    pub fn max_attempts(&self) -> u32 {
        self.receipt.max_attempts
    }

    /// The delivery's fencing token: pass it to everything the handler
    /// writes.
    pub fn token(&self) -> FencingToken {
        self.receipt.token
    }

    /// Whether this consumer took it from another consumer's prefetch.
    pub fn was_stolen(&self) -> bool {
        self.receipt.stolen
    }

    /// Fires when the delivery's lease is lost (a renewal refused, or local
    /// validity ran out): stop; the item will be delivered again.
    pub fn lost(&self) -> LostSignal {
        self.receipt.guard.lost_signal()
    }

    /// Whether the lease is still held (as far as this process knows).
    pub fn is_held(&self) -> bool {
        self.receipt.guard.is_held()
    }

    /// Renews the lease now. `LeaseLost` if the backend no longer has it.
    pub async fn extend(&self) -> Result<()> {
        match self.receipt.guard.extend().await? {
            true => Ok(()),
            false => Err(self.receipt.lost()),
        }
    }

    /// The item is done: removed from the queue. `LeaseLost` (and nothing
    /// changes) if this delivery is no longer the item's current one.
    /// Cancelled or unanswered, it is sent again in the background (see
    /// the type's `# Cancel safety`).
    pub async fn ack(self) -> Result<()> {
        let r = self.receipt;
        let queues = r.client.queues()?;
        let lease = r.end(Settling::Ack);
        let ack = queues.ack(&r.queue, r.id, r.token);
        let done = trace::call(&r.client, || r.site("ack"), ack, settled).await;
        r.settled(&lease, "acked", done.map(|s| s == Settle::Done))
    }

    /// Gives the item back with `error`: delivered again after the
    /// consumer's back-off, or moved to the dead letters if this was its
    /// last attempt (then `Ok(false)`). `LeaseLost` if this delivery is no
    /// longer the item's current one. Cancelled or unanswered, it is sent
    /// again in the background with the same error and back-off (see the
    /// type's `# Cancel safety`).
    pub async fn nack(self, error: impl fmt::Display) -> Result<bool> {
        let r = self.receipt;
        let error = cut_reason(error.to_string());
        let retry_in = r.backoff.delay(r.attempt);
        let queues = r.client.queues()?;
        let lease = r.end(Settling::Nack {
            error: error.clone(),
            retry_in,
        });
        let nack = queues.nack(&r.queue, r.id, r.token, &error, retry_in);
        let classify = |n: &Nack| match n {
            Nack::Stale => Outcome::NotHeld,
            _ => Outcome::Ok,
        };
        let done = trace::call(&r.client, || r.site("nack"), nack, classify).await;
        let requeued = matches!(done, Ok(Nack::Requeued));
        let outcome = if requeued { "nacked" } else { "dead_lettered" };
        r.settled(&lease, outcome, done.map(|n| n != Nack::Stale))?;
        Ok(requeued)
    }

    /// Moves the item to the dead letters with `reason`, whatever attempts
    /// it has left. `LeaseLost` if this delivery is no longer the item's
    /// current one. Cancelled or unanswered, it is sent again in the
    /// background (see the type's `# Cancel safety`).
    pub async fn dead_letter(self, reason: impl fmt::Display) -> Result<()> {
        let r = self.receipt;
        let reason = cut_reason(reason.to_string());
        let queues = r.client.queues()?;
        let lease = r.end(Settling::DeadLetter {
            reason: reason.clone(),
        });
        let dead = queues.dead_letter(&r.queue, r.id, r.token, &reason);
        let done = trace::call(&r.client, || r.site("dead_letter"), dead, settled).await;
        r.settled(&lease, "dead_lettered", done.map(|s| s == Settle::Done))
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
            family: "queue",
            kind: "delivery",
            key: &self.queue,
            holder: Some(self.guard.holder()),
            token: Some(self.token),
        }
    }

    fn lost(&self) -> Error {
        Error::LeaseLost {
            key: format!("{}#{}", self.queue, self.id),
            backend: self.client.backend().to_string(),
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

    /// The settlement's answer: `Ok` if it counted, `LeaseLost` if it was
    /// stale.
    pub(super) fn settled(
        self,
        lease: &Lease,
        outcome: &'static str,
        done: Result<bool>,
    ) -> Result<()> {
        let counted = done?;
        let error = (!counted).then(|| self.lost());
        let _ = self.guard.into_lease();
        lease.mark(!counted);
        metrics::settled(if counted { outcome } else { "stale" });
        error.map_or(Ok(()), Err)
    }
}
