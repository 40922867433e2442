//! The sim server's log of durable topic calls: a decorator around the
//! backend a call runs on that tells the [`TopicLog`] what it answered
//! (publishes, reads, settlements, extends and give-backs), with the (global) instant
//! and the server clock's reading, in the backend's order (as
//! `queue_log`). It sits outside a broken server's decorator: it logs what
//! clients asked and were told.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Clock, FencingToken, HolderId, Instant, Key, Namespace, Result,
    spi::{
        Call, Dispatch, Dispatched, DynBackend, Families, NewEvent, Read, ReadOptions, Reply,
        Retention, Settle, Start,
    },
};

use crate::history::{TopicEvent, TopicLog, TopicOp};

/// `inner` with its topic calls logged to `log`, stamped with `clock`.
pub(crate) fn logged(inner: DynBackend, log: TopicLog, clock: Arc<dyn Clock>) -> DynBackend {
    Arc::new(Dispatched::new(Logged { inner, log, clock }))
}

struct Logged {
    inner: DynBackend,
    log: TopicLog,
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

/// What a call was about (its subscription, its operation), read before it
/// runs.
enum Asked {
    Publish,
    Subscribe,
    Read(HolderId, ReadOptions),
    Settle(&'static str, u64, u64, Duration),
    /// An ack and a read in one step (offset, token, the read's consumer
    /// and options).
    AckRead(u64, u64, HolderId, ReadOptions),
    /// A give-back (consumer, the read's id).
    GiveBack(HolderId, u64),
}

fn asked(call: &Call) -> Option<(String, Asked)> {
    let sub = |k: &Key| k.as_str().to_owned();
    Some(match call.op().name {
        "publish" => {
            call.args::<(Key, Vec<NewEvent>, Retention)>()?;
            (String::new(), Asked::Publish)
        }
        "subscribe" => {
            let a = call.args::<(Key, Key, Start)>()?;
            (sub(&a.1), Asked::Subscribe)
        }
        "read" => {
            let a = call.args::<(Key, Key, HolderId, ReadOptions)>()?;
            (sub(&a.1), Asked::Read(a.2.clone(), a.3))
        }
        "ack" => {
            let a = call.args::<(Key, Key, u64, FencingToken)>()?;
            (
                sub(&a.1),
                Asked::Settle("ack", a.2, a.3.get(), Duration::ZERO),
            )
        }
        "ack_and_read" => {
            let a = call.args::<(Key, Key, u64, FencingToken, HolderId, ReadOptions)>()?;
            (sub(&a.1), Asked::AckRead(a.2, a.3.get(), a.4.clone(), a.5))
        }
        "nack" => {
            let a = call.args::<(Key, Key, u64, FencingToken, Duration)>()?;
            (
                sub(&a.1),
                Asked::Settle("nack", a.2, a.3.get(), Duration::ZERO),
            )
        }
        "extend" => {
            let a = call.args::<(Key, Key, u64, FencingToken, Duration)>()?;
            (sub(&a.1), Asked::Settle("extend", a.2, a.3.get(), a.4))
        }
        "dead_letter" => {
            let a = call.args::<(Key, Key, u64, FencingToken, String)>()?;
            let settle = Asked::Settle("dead_letter", a.2, a.3.get(), Duration::ZERO);
            (sub(&a.1), settle)
        }
        "give_back" => {
            let a = call.args::<(Key, Key, HolderId, u64)>()?;
            (sub(&a.1), Asked::GiveBack(a.2.clone(), a.3))
        }
        _ => return None,
    })
}

/// What a step answered, as the log's events (an ack and read: the ack's
/// settlement, then the read, as two calls one after the other would be).
fn events(asked: Asked, reply: &Reply) -> Vec<TopicOp> {
    let Asked::AckRead(offset, token, consumer, opts) = asked else {
        return event(asked, reply).into_iter().collect();
    };
    let Some((settle, read)) = reply.downcast_ref::<(Settle, Option<Read>)>() else {
        return Vec::new();
    };
    let ack = TopicOp::Settle {
        op: "ack",
        offset,
        token,
        ttl: Duration::ZERO,
        done: *settle == Settle::Done,
    };
    let read = read.as_ref().map(|r| read_op(r, &consumer, opts));
    std::iter::once(ack).chain(read).collect()
}

fn read_op(r: &Read, consumer: &HolderId, opts: ReadOptions) -> TopicOp {
    TopicOp::Read {
        consumer: consumer.to_string(),
        read_id: opts.read_id,
        delivered: (r.events.iter())
            .map(|d| (d.event.offset, d.token.get()))
            .collect(),
        missed: r.missed.iter().map(|m| (m.first, m.last)).collect(),
        ttl: opts.ttl,
    }
}

fn event(asked: Asked, reply: &Reply) -> Option<TopicOp> {
    Some(match asked {
        Asked::Publish => TopicOp::Publish(reply.downcast_ref::<Vec<u64>>()?.clone()),
        Asked::Subscribe => {
            // Only a subscribe that made the subscription marks its start.
            reply.downcast_ref::<bool>()?.then_some(())?;
            TopicOp::Subscribed
        }
        Asked::Read(consumer, opts) => read_op(
            reply.downcast_ref::<Option<Read>>()?.as_ref()?,
            &consumer,
            opts,
        ),
        Asked::GiveBack(consumer, read_id) => TopicOp::GiveBack {
            consumer: consumer.to_string(),
            read_id,
            returned: *reply.downcast_ref::<u32>()?,
        },
        Asked::Settle(op, offset, token, ttl) => TopicOp::Settle {
            op,
            offset,
            token,
            ttl,
            done: *reply.downcast_ref::<Settle>()? == Settle::Done,
        },
        Asked::AckRead(..) => return None,
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
        if call.op().family != "topics" {
            return call.run(self.inner.clone()).await;
        }
        let asked = asked(&call);
        let reply = call.run(self.inner.clone()).await?;
        if let Some((sub, asked)) = asked {
            let (at, now) = (Instant::now(), self.clock.now());
            for op in events(asked, &reply) {
                let sub = sub.clone();
                self.log.push(TopicEvent { sub, at, now, op });
            }
        }
        Ok(reply)
    }
}
