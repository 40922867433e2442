//! Broken queue servers: a decorator around the store's backend that
//! remembers every item's latest delivery (from the replies it passes on)
//! and changes the few calls its bug is about, through the SPI alone.
//! What it remembers lives with the simulation's thread (one simulation
//! per thread).

use std::{cell::RefCell, collections::HashMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    FencingToken, HolderId, Key, Namespace, Result,
    spi::{
        Call, Dispatch, Dispatched, DynBackend, Families, Nack, QueueBackend, ReceiveOptions,
        Received, Reply, Settle,
    },
};

use super::Bug;

/// An item's latest delivery, as the replies told it.
struct Held {
    token: FencingToken,
    consumer: HolderId,
    started: bool,
    /// On its item's last attempt: a nack would dead-letter it, not steal.
    last: bool,
}

thread_local! {
    /// (queue, id) → its latest delivery not settled.
    static HELD: RefCell<HashMap<(Key, u64), Held>> = RefCell::new(HashMap::new());
}

fn held<T>(f: impl FnOnce(&mut HashMap<(Key, u64), Held>) -> T) -> T {
    HELD.with(|h| f(&mut h.borrow_mut()))
}

/// `inner` under a queue bug.
pub(super) fn around(inner: DynBackend, bug: Bug) -> DynBackend {
    Arc::new(Dispatched::new(BrokenQueues { inner, bug }))
}

#[derive(Debug)]
struct BrokenQueues {
    inner: DynBackend,
    bug: Bug,
}

impl fmt::Display for BrokenQueues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broken({:?}, {})", self.bug, self.inner)
    }
}

fn reply<T: Send + 'static>(v: T) -> Result<Reply> {
    Ok(Box::new(v))
}

/// Remembers the deliveries of `r`.
fn delivered(queue: &Key, consumer: &HolderId, r: &Received) {
    held(|h| {
        for d in &r.deliveries {
            let held = Held {
                token: d.token,
                consumer: consumer.clone(),
                started: d.started,
                last: d.attempt >= d.max_attempts,
            };
            h.insert((queue.clone(), d.id), held);
        }
    });
}

impl BrokenQueues {
    fn queues(&self) -> &dyn QueueBackend {
        self.inner.queues().expect("queues")
    }

    /// A receive, under the bug.
    async fn receive(&self, call: Call, q: Key, c: HolderId, o: ReceiveOptions) -> Result<Reply> {
        let mut r = *call
            .run(self.inner.clone())
            .await?
            .downcast::<Received>()
            .expect("a Received");
        match self.bug {
            Bug::ExpiryLosesItem => {
                // An item whose last started delivery was never settled
                // (its lease expired, or its consumer died) is dropped.
                let mut kept = Vec::new();
                for d in std::mem::take(&mut r.deliveries) {
                    let lost = held(|h| h.get(&(q.clone(), d.id)).is_some_and(|p| p.started));
                    if lost && !d.stolen {
                        held(|h| h.remove(&(q.clone(), d.id)));
                        self.queues().ack(&q, d.id, d.token).await?;
                    } else {
                        kept.push(d);
                    }
                }
                r.deliveries = kept;
            }
            Bug::StealStarted if o.steal && r.deliveries.is_empty() => {
                // Nothing ready: take another consumer's started delivery
                // (one with attempts left: a nack of its last would
                // dead-letter the item, which is no steal).
                let victim = held(|h| {
                    (h.iter())
                        .filter(|((kq, _), v)| *kq == q && v.started && !v.last && v.consumer != c)
                        .map(|((_, id), v)| (*id, v.token))
                        .min()
                });
                if let Some((id, token)) = victim {
                    let why = "stolen";
                    let back = self
                        .queues()
                        .nack(&q, id, token, why, Duration::ZERO)
                        .await?;
                    if back == Nack::Requeued {
                        let again = o.max(1).steal(false);
                        r = self.queues().receive(&q, &c, again).await?;
                        for d in r.deliveries.iter_mut().filter(|d| d.id == id) {
                            d.stolen = true;
                        }
                    } else {
                        // Settled or taken since: no longer a victim (kept,
                        // the lowest id would be picked again and again).
                        held(|h| h.remove(&(q.clone(), id)));
                    }
                }
            }
            _ => {}
        }
        delivered(&q, &c, &r);
        reply(r)
    }
}

#[async_trait]
impl Dispatch for BrokenQueues {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, mut call: Call) -> Result<Reply> {
        let op = call.op();
        if op.family != "queues" {
            return call.run(self.inner.clone()).await;
        }
        type Settled = (Key, u64, FencingToken);
        match op.name {
            "receive" => {
                type Args = (Key, HolderId, ReceiveOptions);
                if self.bug == Bug::PresenceIgnored
                    && let Some(a) = call.args_mut::<Args>()
                {
                    a.2.presence_ttl *= 20;
                }
                let (q, c, o) = call.args::<Args>().cloned().expect("receive's args");
                self.receive(call, q, c, o).await
            }
            "heartbeat" => {
                if self.bug == Bug::PresenceIgnored
                    && let Some(a) = call.args_mut::<(Key, HolderId, Duration)>()
                {
                    a.2 *= 20;
                }
                call.run(self.inner.clone()).await
            }
            "extend" => {
                type Args = (Key, u64, FencingToken, Duration);
                let (q, id, token, _) = call.args::<Args>().cloned().expect("extend's args");
                let r = call.run(self.inner.clone()).await?;
                if r.downcast_ref::<Settle>() == Some(&Settle::Done) {
                    held(|h| {
                        if let Some(d) = h.get_mut(&(q, id)).filter(|d| d.token == token) {
                            d.started = true;
                        }
                    });
                }
                Ok(r)
            }
            "ack" | "nack" | "dead_letter" => {
                let (q, id, token) = match op.name {
                    "ack" => call.args::<Settled>().cloned(),
                    "nack" => (call.args::<(Key, u64, FencingToken, String, Duration)>())
                        .map(|a| (a.0.clone(), a.1, a.2)),
                    _ => (call.args::<(Key, u64, FencingToken, String)>())
                        .map(|a| (a.0.clone(), a.1, a.2)),
                }
                .expect("a settlement's args");
                let r = call.run(self.inner.clone()).await?;
                let stale = r.downcast_ref::<Settle>() == Some(&Settle::Stale)
                    || r.downcast_ref::<Nack>() == Some(&Nack::Stale);
                if !stale {
                    held(|h| h.remove(&(q, id)));
                    return Ok(r);
                }
                if self.bug == Bug::AckIgnoresToken && op.name == "ack" {
                    // A stale ack accepted: it acks the item's current
                    // delivery, whoever holds it.
                    let current = held(|h| h.get(&(q.clone(), id)).map(|d| d.token));
                    if let Some(t) = current.filter(|t| *t != token)
                        && self.queues().ack(&q, id, t).await? == Settle::Done
                    {
                        held(|h| h.remove(&(q, id)));
                        return reply(Settle::Done);
                    }
                }
                Ok(r)
            }
            _ => call.run(self.inner.clone()).await,
        }
    }
}
