//! The sim server's log of queue calls: a decorator around the backend a
//! call runs on that tells the [`QueueLog`] what it answered to every call
//! that changes a queue, with the (global) instant and the server clock's
//! reading. The store's steps are atomic, answered in one poll (simulated
//! time does not move inside it: the clock read here is the one the step
//! ran at), and each in turn, so the log is in the backend's order. It
//! sits outside a broken server's decorator: it logs what clients asked
//! and were told.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Clock, FencingToken, HolderId, Instant, Key, Namespace, Result,
    spi::{
        Call, Dispatch, Dispatched, DynBackend, Families, Nack, NewItem, Pushed, ReceiveOptions,
        Received, Reply, Settle,
    },
};

use crate::history::{Delivered, PushedItem, QueueEvent, QueueLog, QueueOp};

/// `inner` with its queue calls logged to `log`, stamped with `clock`
/// (the server's).
pub(crate) fn logged(inner: DynBackend, log: QueueLog, clock: Arc<dyn Clock>) -> DynBackend {
    Arc::new(Dispatched::new(Logged { inner, log, clock }))
}

struct Logged {
    inner: DynBackend,
    log: QueueLog,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Logged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logged")
            .field("inner", &self.inner)
            .finish()
    }
}

impl fmt::Display for Logged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

type Settled = (Key, u64, FencingToken);

/// What a call was about, read before it runs (the call is consumed).
enum Asked {
    Push(Vec<NewItem>),
    Receive(HolderId, ReceiveOptions),
    Extend(u64, u64, Duration),
    Ack(u64, u64),
    Nack(u64, u64, Duration),
    DeadLetter(u64, u64),
    Heartbeat(HolderId, Duration),
    Leave(HolderId),
    GiveBack(HolderId, u64),
    RequeueDead(u64),
    RemoveDead(u64),
}

fn asked(call: &Call) -> Option<(Key, Asked)> {
    let op = call.op();
    let settled = |c: &Call| c.args::<Settled>().map(|a| (a.0.clone(), a.1, a.2.get()));
    Some(match op.name {
        "push" => {
            let a = call.args::<(Key, Vec<NewItem>)>()?;
            (a.0.clone(), Asked::Push(a.1.clone()))
        }
        "receive" => {
            let a = call.args::<(Key, HolderId, ReceiveOptions)>()?;
            (a.0.clone(), Asked::Receive(a.1.clone(), a.2))
        }
        "extend" => {
            let a = call.args::<(Key, u64, FencingToken, Duration)>()?;
            (a.0.clone(), Asked::Extend(a.1, a.2.get(), a.3))
        }
        "ack" => settled(call).map(|(q, id, t)| (q, Asked::Ack(id, t)))?,
        "nack" => {
            let a = call.args::<(Key, u64, FencingToken, String, Duration)>()?;
            (a.0.clone(), Asked::Nack(a.1, a.2.get(), a.4))
        }
        "dead_letter" => {
            let a = call.args::<(Key, u64, FencingToken, String)>()?;
            (a.0.clone(), Asked::DeadLetter(a.1, a.2.get()))
        }
        "heartbeat" => {
            let a = call.args::<(Key, HolderId, Duration)>()?;
            (a.0.clone(), Asked::Heartbeat(a.1.clone(), a.2))
        }
        "leave" => {
            let a = call.args::<(Key, HolderId)>()?;
            (a.0.clone(), Asked::Leave(a.1.clone()))
        }
        "give_back" => {
            let a = call.args::<(Key, HolderId, u64)>()?;
            (a.0.clone(), Asked::GiveBack(a.1.clone(), a.2))
        }
        "requeue_dead" => {
            let a = call.args::<(Key, u64)>()?;
            (a.0.clone(), Asked::RequeueDead(a.1))
        }
        "remove_dead" => {
            let a = call.args::<(Key, u64)>()?;
            (a.0.clone(), Asked::RemoveDead(a.1))
        }
        _ => return None,
    })
}

/// The payload as text: the workload's items are JSON strings.
fn name(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload)
        .trim_matches('"')
        .to_owned()
}

/// The event for `asked`, answered `reply`; `None` when the reply is not
/// what the call answers.
fn event(asked: Asked, reply: &Reply) -> Option<QueueOp> {
    let done = |r: &Reply| r.downcast_ref::<Settle>().map(|s| *s == Settle::Done);
    Some(match asked {
        Asked::Push(items) => {
            let replies = reply.downcast_ref::<Vec<Pushed>>()?;
            let items = (items.into_iter().zip(replies))
                .map(|(i, r)| PushedItem {
                    name: name(&i.payload),
                    priority: i.priority,
                    delay: i.delay,
                    max_attempts: i.max_attempts,
                    dedup: i.dedup.map(|(k, w)| (k.as_str().to_owned(), w)),
                    reply: *r,
                })
                .collect();
            QueueOp::Push(items)
        }
        Asked::Receive(consumer, o) => {
            let r = reply.downcast_ref::<Received>()?;
            let deliveries = (r.deliveries.iter())
                .map(|d| Delivered {
                    id: d.id,
                    token: d.token.get(),
                    attempt: d.attempt,
                    max_attempts: d.max_attempts,
                    started: d.started,
                    stolen: d.stolen,
                    priority: d.priority,
                })
                .collect();
            QueueOp::Receive {
                consumer: consumer.to_string(),
                max: o.max,
                steal: o.steal,
                ttl: o.ttl,
                presence_ttl: o.presence_ttl,
                receive_id: o.receive_id,
                deliveries,
                next_in: r.next_in,
            }
        }
        Asked::Extend(id, token, ttl) => QueueOp::Extend {
            id,
            token,
            ttl,
            done: done(reply)?,
        },
        Asked::Ack(id, token) => QueueOp::Ack {
            id,
            token,
            done: done(reply)?,
        },
        Asked::Nack(id, token, retry_in) => QueueOp::Nack {
            id,
            token,
            retry_in,
            reply: *reply.downcast_ref::<Nack>()?,
        },
        Asked::DeadLetter(id, token) => QueueOp::DeadLetter {
            id,
            token,
            done: done(reply)?,
        },
        Asked::Heartbeat(consumer, ttl) => {
            reply.downcast_ref::<()>()?;
            QueueOp::Heartbeat {
                consumer: consumer.to_string(),
                ttl,
            }
        }
        Asked::Leave(consumer) => QueueOp::Leave {
            consumer: consumer.to_string(),
            returned: *reply.downcast_ref::<u32>()?,
        },
        Asked::GiveBack(consumer, receive_id) => QueueOp::GiveBack {
            consumer: consumer.to_string(),
            receive_id,
            returned: *reply.downcast_ref::<u32>()?,
        },
        Asked::RequeueDead(id) => QueueOp::RequeueDead {
            id,
            done: *reply.downcast_ref::<bool>()?,
        },
        Asked::RemoveDead(id) => QueueOp::RemoveDead {
            id,
            done: *reply.downcast_ref::<bool>()?,
        },
    })
}

#[async_trait]
impl Dispatch for Logged {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        if call.op().family != "queues" {
            return call.run(self.inner.clone()).await;
        }
        let asked = asked(&call);
        let reply = call.run(self.inner.clone()).await?;
        if let Some((queue, asked)) = asked
            && let Some(op) = event(asked, &reply)
        {
            self.log.push(QueueEvent {
                queue: queue.as_str().to_owned(),
                at: Instant::now(),
                now: self.clock.now(),
                op,
            });
        }
        Ok(reply)
    }
}
