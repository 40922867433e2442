//! Topic calls carried as values ([`Dispatched`]): each method packs its
//! arguments and runs the same method on the backend the dispatcher hands
//! it.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    DeadEvent, Listener, NewEvent, Read, ReadOptions, Retention, Start, SubscriptionStats,
    TopicBackend,
};
use crate::{
    FencingToken, HolderId, Key, Result,
    spi::{
        DynBackend, Settle, Watch,
        dispatch::{Dispatch, Dispatched, Op, family},
    },
};

const fn op(name: &'static str) -> Op {
    Op {
        family: "topics",
        name,
    }
}

fn topics<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn TopicBackend> {
    family!(backend, topics, op(name))
}

#[async_trait]
impl<D: Dispatch> TopicBackend for Dispatched<D> {
    async fn publish_ephemeral(&self, topic: &Key, event: NewEvent) -> Result<u64> {
        let args = (topic.clone(), event);
        self.carry(op("publish_ephemeral"), args, |b, (t, e)| async move {
            topics(&b, "publish_ephemeral")?
                .publish_ephemeral(&t, e)
                .await
        })
        .await
    }
    async fn listen(&self, topic: &Key) -> Result<Box<dyn Listener>> {
        let args = topic.clone();
        self.carry(op("listen"), args, |b, t| async move {
            topics(&b, "listen")?.listen(&t).await
        })
        .await
    }
    async fn publish(
        &self,
        topic: &Key,
        events: Vec<NewEvent>,
        retention: Retention,
    ) -> Result<Vec<u64>> {
        let args = (topic.clone(), events, retention);
        self.carry(op("publish"), args, |b, (t, e, r)| async move {
            topics(&b, "publish")?.publish(&t, e, r).await
        })
        .await
    }
    async fn subscribe(&self, topic: &Key, sub: &Key, start: Start) -> Result<bool> {
        let args = (topic.clone(), sub.clone(), start);
        self.carry(op("subscribe"), args, |b, (t, s, st)| async move {
            topics(&b, "subscribe")?.subscribe(&t, &s, st).await
        })
        .await
    }
    async fn seek(&self, topic: &Key, sub: &Key, start: Start) -> Result<Option<u64>> {
        let args = (topic.clone(), sub.clone(), start);
        self.carry(op("seek"), args, |b, (t, s, st)| async move {
            topics(&b, "seek")?.seek(&t, &s, st).await
        })
        .await
    }
    async fn read(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        opts: ReadOptions,
    ) -> Result<Option<Read>> {
        let args = (topic.clone(), sub.clone(), consumer.clone(), opts);
        self.carry(op("read"), args, |b, (t, s, c, o)| async move {
            topics(&b, "read")?.read(&t, &s, &c, o).await
        })
        .await
    }
    async fn extend(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle> {
        let args = (topic.clone(), sub.clone(), offset, token, ttl);
        self.carry(op("extend"), args, |b, (t, s, o, tok, ttl)| async move {
            topics(&b, "extend")?.extend(&t, &s, o, tok, ttl).await
        })
        .await
    }
    async fn ack(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
    ) -> Result<Settle> {
        let args = (topic.clone(), sub.clone(), offset, token);
        self.carry(op("ack"), args, |b, (t, s, o, tok)| async move {
            topics(&b, "ack")?.ack(&t, &s, o, tok).await
        })
        .await
    }
    async fn ack_and_read(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        consumer: &HolderId,
        opts: ReadOptions,
    ) -> Result<(Settle, Option<Read>)> {
        let args = (
            topic.clone(),
            sub.clone(),
            offset,
            token,
            consumer.clone(),
            opts,
        );
        self.carry(
            op("ack_and_read"),
            args,
            |b, (t, s, o, tok, c, ro)| async move {
                topics(&b, "ack_and_read")?
                    .ack_and_read(&t, &s, o, tok, &c, ro)
                    .await
            },
        )
        .await
    }
    async fn nack(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        retry_in: Duration,
    ) -> Result<Settle> {
        let args = (topic.clone(), sub.clone(), offset, token, retry_in);
        self.carry(op("nack"), args, |b, (t, s, o, tok, r)| async move {
            topics(&b, "nack")?.nack(&t, &s, o, tok, r).await
        })
        .await
    }
    async fn dead_letter(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        reason: &str,
    ) -> Result<Settle> {
        let args = (topic.clone(), sub.clone(), offset, token, reason.to_owned());
        self.carry(
            op("dead_letter"),
            args,
            |b, (t, s, o, tok, why)| async move {
                topics(&b, "dead_letter")?
                    .dead_letter(&t, &s, o, tok, &why)
                    .await
            },
        )
        .await
    }
    async fn heartbeat(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        ttl: Duration,
    ) -> Result<()> {
        let args = (topic.clone(), sub.clone(), consumer.clone(), ttl);
        self.carry(op("heartbeat"), args, |b, (t, s, c, ttl)| async move {
            topics(&b, "heartbeat")?.heartbeat(&t, &s, &c, ttl).await
        })
        .await
    }
    async fn leave(&self, topic: &Key, sub: &Key, consumer: &HolderId) -> Result<u32> {
        let args = (topic.clone(), sub.clone(), consumer.clone());
        self.carry(op("leave"), args, |b, (t, s, c)| async move {
            topics(&b, "leave")?.leave(&t, &s, &c).await
        })
        .await
    }
    async fn give_back(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        read_id: u64,
    ) -> Result<u32> {
        let args = (topic.clone(), sub.clone(), consumer.clone(), read_id);
        self.carry(op("give_back"), args, |b, (t, s, c, id)| async move {
            topics(&b, "give_back")?.give_back(&t, &s, &c, id).await
        })
        .await
    }
    async fn dead_events(
        &self,
        topic: &Key,
        sub: &Key,
        after: u64,
        limit: u32,
    ) -> Result<Vec<DeadEvent>> {
        let args = (topic.clone(), sub.clone(), after, limit);
        self.carry(op("dead_events"), args, |b, (t, s, a, l)| async move {
            topics(&b, "dead_events")?.dead_events(&t, &s, a, l).await
        })
        .await
    }
    async fn unsubscribe(&self, topic: &Key, sub: &Key) -> Result<bool> {
        let args = (topic.clone(), sub.clone());
        self.carry(op("unsubscribe"), args, |b, (t, s)| async move {
            topics(&b, "unsubscribe")?.unsubscribe(&t, &s).await
        })
        .await
    }
    async fn stats(&self, topic: &Key, sub: &Key) -> Result<SubscriptionStats> {
        let args = (topic.clone(), sub.clone());
        self.carry(op("stats"), args, |b, (t, s)| async move {
            topics(&b, "stats")?.stats(&t, &s).await
        })
        .await
    }
    async fn watch(&self, topic: &Key) -> Result<Box<dyn Watch>> {
        let args = topic.clone();
        self.carry(op("watch"), args, |b, t| async move {
            topics(&b, "watch")?.watch(&t).await
        })
        .await
    }
}
