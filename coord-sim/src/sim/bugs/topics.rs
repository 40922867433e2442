//! Broken topic servers: a decorator around the store's backend that
//! remembers each offset's latest delivery per subscription (from the read
//! replies it passes on) and changes the calls its bug is about, through
//! the SPI alone. What it remembers lives with the simulation's thread.

use std::{cell::RefCell, collections::HashMap, fmt, sync::Arc};

use async_trait::async_trait;
use coord_api::{
    FencingToken, HolderId, Key, Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Read, ReadOptions, Reply, Settle},
};

use super::Bug;

thread_local! {
    /// (topic, subscription, offset) → its latest token.
    static LATEST: RefCell<HashMap<(Key, Key, u64), FencingToken>> = RefCell::new(HashMap::new());
}

/// `inner` under a topic bug.
pub(super) fn around(inner: DynBackend, bug: Bug) -> DynBackend {
    Arc::new(Dispatched::new(BrokenTopics { inner, bug }))
}

#[derive(Debug)]
struct BrokenTopics {
    inner: DynBackend,
    bug: Bug,
}

impl fmt::Display for BrokenTopics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broken({:?}, {})", self.bug, self.inner)
    }
}

#[async_trait]
impl Dispatch for BrokenTopics {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let op = call.op();
        if op.family != "topics" {
            return call.run(self.inner.clone()).await;
        }
        // An ack and read is both calls in one: its read and its ack.
        let ack_read = (op.name == "ack_and_read")
            .then(|| call.args::<(Key, Key, u64, FencingToken, HolderId, ReadOptions)>())
            .flatten()
            .map(|a| (a.0.clone(), a.1.clone(), a.2, a.3));
        let read = (op.name == "read")
            .then(|| call.args::<(Key, Key, HolderId, ReadOptions)>())
            .flatten()
            .map(|a| (a.0.clone(), a.1.clone()))
            .or_else(|| ack_read.as_ref().map(|a| (a.0.clone(), a.1.clone())));
        let ack = (op.name == "ack")
            .then(|| call.args::<(Key, Key, u64, FencingToken)>())
            .flatten()
            .cloned()
            .or(ack_read);
        let mut reply = call.run(self.inner.clone()).await?;
        let read_reply = if reply.is::<(Settle, Option<Read>)>() {
            (reply.downcast_mut::<(Settle, Option<Read>)>()).and_then(|(_, r)| r.as_mut())
        } else {
            reply
                .downcast_mut::<Option<Read>>()
                .and_then(|r| r.as_mut())
        };
        if let Some((topic, sub)) = read
            && let Some(r) = read_reply
        {
            LATEST.with(|l| {
                let mut l = l.borrow_mut();
                for d in &r.events {
                    l.insert((topic.clone(), sub.clone(), d.event.offset), d.token);
                }
            });
            if self.bug == Bug::TopicSkipsMissed {
                r.missed.clear();
            }
        }
        let stale = match reply.downcast_ref::<(Settle, Option<Read>)>() {
            Some((s, _)) => *s == Settle::Stale,
            None => reply.downcast_ref::<Settle>() == Some(&Settle::Stale),
        };
        if self.bug == Bug::TopicAckIgnoresToken
            && let Some((topic, sub, offset, _)) = ack
            && stale
        {
            let latest = LATEST.with(|l| {
                l.borrow()
                    .get(&(topic.clone(), sub.clone(), offset))
                    .copied()
            });
            if let Some(token) = latest {
                let topics = self.inner.topics().expect("the store offers topics");
                let again = topics.ack(&topic, &sub, offset, token).await?;
                if let Some((s, _)) = reply.downcast_mut::<(Settle, Option<Read>)>() {
                    *s = again;
                    return Ok(reply);
                }
                return Ok(Box::new(again));
            }
        }
        Ok(reply)
    }
}
