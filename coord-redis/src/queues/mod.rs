//! Work queues on Redis ([`QueueBackend`]): one EVALSHA of `queue.lua`
//! (after the prelude) per operation, so every step of the rules in
//! [`coord_api::spi::queues`] (the sweep, a push, a receive with its
//! prefetch or steals, a settlement, a consumer's end) is one atomic step on
//! the server's clock.
//!
//! Where each item is lives in sorted sets, so that every step costs
//! O(log n) plus what it moves: ready items scored `(MAX_PRIORITY -
//! priority) * 2^44 + id` (a ZPOPMIN takes the highest priority, then the
//! lowest id; exact in a double), delayed items by due time, deliveries by
//! deadline, consumers by presence deadline, and prefetched deliveries by
//! their ready score (the order stealing takes them in). Each consumer has a
//! set of the ids delivered to it, so a dead consumer's deliveries are
//! returned in O(its deliveries). An item is a hash (payload, priority,
//! attempts given and had, its current delivery's token, consumer, started
//! flag and deadline, the id of the receive that made it, last error); a dead item keeps its hash, with the
//! reason and time of death, and sits in a set by id and one by death (the
//! oldest death is dropped past [`MAX_DEAD_KEPT`]).
//!
//! The sweep of rule 1 is done in full only from the instant the queue's
//! meta hash names (`next`: at or before the earliest due time, deadline
//! and presence deadline, lowered by every step that adds an earlier one),
//! so a step with nothing due pays one HGET for it. Ids come from the meta
//! hash's counter (one HINCRBY per push), tokens from the prelude's token
//! rule (`token_after`) on the meta hash's `tok` (one draw per receive,
//! read with the hint and stored with the count of deliveries in one HSET:
//! the tokens of a batch follow each other, the counter stored at the
//! last), deadlines from `TIME` in server ms. The script is passed one key,
//! the ready set, and builds the other names from it: each key passed
//! costs the server about as much as a small command.
//!
//! [`ack_and_receive`](QueueBackend::ack_and_receive) is the script's
//! `take`: the ack, then the receive, in one step and one round trip (a
//! worker loop's settle-and-take-the-next). A step that made an item ready or delayed one PUBLISHes on the
//! queue's channel ([`watch`](QueueBackend::watch)); delays, deadlines and
//! presences pass silently: [`Received::next_in`] says when to look again.
//!
//! # Key layout
//!
//! Every key of a queue shares the tag `{<ns>:queue:<len>:<queue>}` (one
//! Redis Cluster slot per queue); `<len>`, the queue's byte length, keeps
//! queues apart whatever characters their names hold.
//!
//! ```text
//! coord:{<ns>:queue:<len>:<q>}:r              ready zset: id -> (9 - priority) * 2^44 + id
//! coord:{<ns>:queue:<len>:<q>}:w              delayed zset: id -> due (server ms)
//! coord:{<ns>:queue:<len>:<q>}:l              in-flight zset: id -> delivery deadline (server ms)
//! coord:{<ns>:queue:<len>:<q>}:p              presence zset: consumer -> presence deadline (server ms)
//! coord:{<ns>:queue:<len>:<q>}:f              prefetched zset: id -> ready score
//! coord:{<ns>:queue:<len>:<q>}:m              meta hash: id, tok (token counter), deaths, next, delivered, redelivered, stolen, dead_lettered
//! coord:{<ns>:queue:<len>:<q>}:x              dead zset: id -> id
//! coord:{<ns>:queue:<len>:<q>}:o              deaths zset: id -> order of death
//! coord:{<ns>:queue:<len>:<q>}:c              channel: an item may have become ready
//! coord:{<ns>:queue:<len>:<q>}:<id>:i         item hash (fields: see queue.lua)
//! coord:{<ns>:queue:<len>:<q>}:<consumer>:s   set: ids delivered to the consumer (`instance#nonce`)
//! coord:{<ns>:queue:<len>:<q>}:<dedup key>:k  the first id pushed with the key; PX = its window
//! ```
//!
//! **Key lifetimes.** Items live until acked or removed from the dead (or
//! dropped as the oldest death past the limit); a sorted set or consumer
//! set left empty is gone; dedup keys expire with their window. The meta
//! hash (the id and token counters and the counts) lives while the queue
//! keeps an item or a dead item, and a day and a minute after the ack or
//! removal that left it with neither (a push keeps it again): ids never
//! repeat while any item, dead item or dedup key is kept, and tokens
//! increase while it lives (were it gone, the clock alone keeps them
//! increasing).

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    FencingToken, HolderId, Key, MAX_TTL, Namespace, Result,
    spi::{
        Backend, DeadItem, Delivery, Nack, NewItem, Pushed, QueueBackend, QueueStats,
        ReceiveOptions, Received, Settle, Watch,
        queues::{check_dead_page, check_push, cut_reason},
    },
};
use redis::{Script, Value};
use tracing::Instrument;

use crate::{
    RedisBackend,
    eval::{Eval, Traced, array, bytes, int, millis, ms, script, text, ttl_ms, uint, wall},
    keys::Names,
};

pub(crate) static QUEUE: LazyLock<Script> = script!("queues/queue.lua");

/// The one key passed to the script: the ready zset, whose name without
/// its last letter is every other name's base (see `queue.lua`).
const READY: char = 'r';

/// The trace family (and key space) of work queues.
const FAMILY: &str = "queue";

/// Arguments per pushed item.
const PUSH_ARGS: usize = 6;

/// The names of `queue`'s keys and channel.
fn queue_names(ns: &Namespace, queue: &Key) -> Names {
    let len = queue.as_str().len().to_string();
    Names::new(ns, &[FAMILY, &len, queue.as_str()], &[])
}

/// `op` of the queue script on `queue`: the EVALSHA with the keys and the
/// operation written, with room for `args` more arguments of `extra` bytes.
pub(crate) fn queue_eval(
    ns: &Namespace,
    queue: &Key,
    op: &'static str,
    args: usize,
    extra: usize,
) -> Eval {
    let mut names = queue_names(ns, queue);
    let bytes = names.len() + op.len() + extra + 16;
    let mut eval = Eval::new(&QUEUE, 1, 1 + args, bytes);
    names.write(&mut eval, READY);
    eval.arg(op);
    eval
}

/// One id per item: pushed (positive) or a duplicate of (negative).
fn push_reply(v: &Value) -> Option<Vec<Pushed>> {
    array(v)?
        .iter()
        .map(|v| match int(v)? {
            id if id > 0 => Some(Pushed::Pushed(id as u64)),
            id if id < 0 => Some(Pushed::Duplicate(id.unsigned_abs())),
            _ => None,
        })
        .collect()
}

/// `{next_in ms (-1: none), then per delivery: id, payload, attempt, max
/// attempts, token, flags (1 started + 2 stolen), priority}`.
fn receive_reply(v: &Value) -> Option<Received> {
    received_from(array(v)?)
}

/// `take`'s reply: the ack's 0 or 1, then receive's.
fn take_reply(v: &Value) -> Option<(Settle, Received)> {
    let (acked, rest) = array(v)?.split_first()?;
    let settle = match int(acked)? {
        1 => Settle::Done,
        0 => Settle::Stale,
        _ => return None,
    };
    Some((settle, received_from(rest)?))
}

fn received_from(all: &[Value]) -> Option<Received> {
    let (next, rest) = all.split_first()?;
    if rest.len() % 7 != 0 {
        return None;
    }
    let deliveries = rest
        .chunks(7)
        .map(|c| {
            let [id, payload, attempt, max, tok, flags, priority] = c else {
                return None;
            };
            let flags = int(flags)?;
            let mut d = Delivery::new(
                uint(id)?,
                bytes(payload)?.to_vec(),
                uint(attempt)?,
                uint(max)?,
                FencingToken(uint(tok)?),
            );
            d.started = flags & 1 != 0;
            d.stolen = flags & 2 != 0;
            d.priority = uint(priority)?;
            Some(d)
        })
        .collect::<Option<Vec<_>>>()?;
    let next_in = if deliveries.is_empty() {
        millis(int(next)?)
    } else {
        None
    };
    Some(Received::new(deliveries, next_in))
}

/// `{id, payload, attempts, reason, died at µs}` per dead item.
fn dead_reply(v: &Value) -> Option<Vec<DeadItem>> {
    let all = array(v)?;
    if all.len() % 5 != 0 {
        return None;
    }
    all.chunks(5)
        .map(|c| {
            let [id, payload, attempts, reason, died] = c else {
                return None;
            };
            Some(DeadItem::new(
                uint(id)?,
                bytes(payload)?.to_vec(),
                uint(attempts)?,
                text(reason)?.to_owned(),
                wall(int(died)?),
            ))
        })
        .collect()
}

/// `{ready, delayed, in flight, dead, delivered, redelivered, stolen,
/// dead_lettered, consumers…}`, the consumers as stored (`instance#nonce`).
fn stats_reply(v: &Value) -> Option<(QueueStats, Vec<&str>)> {
    let [
        ready,
        delayed,
        in_flight,
        dead,
        delivered,
        redelivered,
        stolen,
        dl,
        consumers @ ..,
    ] = array(v)?
    else {
        return None;
    };
    let mut s = QueueStats::default();
    s.ready = uint(ready)?;
    s.delayed = uint(delayed)?;
    s.in_flight = uint(in_flight)?;
    s.dead = uint(dead)?;
    s.delivered = uint(delivered)?;
    s.redelivered = uint(redelivered)?;
    s.stolen = uint(stolen)?;
    s.dead_lettered = uint(dl)?;
    let consumers = consumers.iter().map(text).collect::<Option<Vec<_>>>()?;
    Some((s, consumers))
}

/// The bytes a receive's arguments take beyond the holder's, at most.
fn receive_extra(consumer: &HolderId) -> usize {
    crate::eval::holder_len(Some(consumer)) + 68
}

/// A receive's arguments (the script's `receive`, or `take`'s after the
/// ack's): consumer, ttl ms, presence ttl ms, max, steal, the receive's
/// id.
fn receive_args(eval: &mut Eval, consumer: &HolderId, opts: &ReceiveOptions) {
    eval.holder(consumer)
        .arg(ms(opts.ttl))
        .arg(ms(opts.presence_ttl))
        .arg(opts.max)
        .arg(if opts.steal { "1" } else { "0" })
        .arg(opts.receive_id);
}

/// The trace of a receive: the first delivery's token, or nothing.
fn received(v: &Value) -> (&'static str, Option<u64>) {
    match array(v) {
        Some([_, _, _, _, _, tok, ..]) => ("delivered", int(tok).map(|t| t.max(0) as u64)),
        Some([_]) => ("empty", None),
        _ => ("other", None),
    }
}

/// The trace of a take: the ack's answer.
fn taken(v: &Value) -> (&'static str, Option<u64>) {
    match array(v).and_then(|a| a.first()).and_then(int) {
        Some(1) => ("ok", None),
        Some(0) => ("stale", None),
        _ => ("other", None),
    }
}

/// The trace of a settlement: 1 done, 2 dead-lettered (a nack), 0 stale.
fn settled(v: &i64) -> (&'static str, Option<u64>) {
    let what = match v {
        1 => "ok",
        2 => "dead_lettered",
        _ => "stale",
    };
    (what, None)
}

fn traced_value(_: &Value) -> (&'static str, Option<u64>) {
    ("ok", None)
}

impl RedisBackend {
    /// Runs `eval` for `call` and decodes its reply with `decode`.
    async fn queue_call<T>(
        &self,
        call: Traced<'_>,
        eval: &Eval,
        decode: fn(&Value) -> Option<T>,
        outcome: fn(&Value) -> (&'static str, Option<u64>),
    ) -> Result<T> {
        let reply: Value = self.eval(call, eval, outcome).await?;
        decode(&reply).ok_or_else(|| self.unexpected(call, reply))
    }

    /// A settlement of `id` by `token`: `op` with `more` arguments after
    /// them; the script's 0, 1 or 2.
    async fn settle(
        &self,
        queue: &Key,
        op: &'static str,
        id: u64,
        token: FencingToken,
        more: &[&[u8]],
    ) -> Result<i64> {
        let extra = more.iter().map(|m| m.len()).sum::<usize>() + 48;
        let mut eval = queue_eval(self.namespace(), queue, op, 2 + more.len(), extra);
        eval.arg(id).arg(token.get());
        for m in more {
            eval.arg_bytes(m);
        }
        let call = Traced::new(op, FAMILY, queue);
        let reply: i64 = self.eval(call, &eval, settled).await?;
        match reply {
            0..=2 => Ok(reply),
            other => Err(self.unexpected(call, other)),
        }
    }

    /// `op` naming dead item `id`: whether there was one.
    async fn dead_op(&self, queue: &Key, op: &'static str, id: u64) -> Result<bool> {
        let mut eval = queue_eval(self.namespace(), queue, op, 1, 20);
        eval.arg(id);
        let call = Traced::new(op, FAMILY, queue);
        let reply: i64 = self.eval(call, &eval, crate::eval::done).await?;
        Ok(reply == 1)
    }
}

#[async_trait]
impl QueueBackend for RedisBackend {
    async fn push(&self, queue: &Key, items: Vec<NewItem>) -> Result<Vec<Pushed>> {
        check_push(queue, &items)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let extra = items
            .iter()
            .map(|i| i.payload.len() + i.dedup.as_ref().map_or(0, |(k, _)| k.as_str().len()) + 40)
            .sum();
        let mut eval = queue_eval(
            self.namespace(),
            queue,
            "push",
            items.len() * PUSH_ARGS,
            extra,
        );
        for item in &items {
            let delay = item.delay.map_or(0, ms);
            let (key, window) = match &item.dedup {
                Some((k, w)) => (k.as_str(), ms(*w)),
                None => ("", 0),
            };
            eval.arg_bytes(&item.payload)
                .arg(item.priority)
                .arg(item.max_attempts)
                .arg(delay)
                .arg(key)
                .arg(window);
        }
        let pushed = self
            .queue_call(
                Traced::new("push", FAMILY, queue),
                &eval,
                push_reply,
                traced_value,
            )
            .await?;
        if pushed.len() != items.len() {
            return Err(self.unexpected(Traced::new("push", FAMILY, queue), pushed));
        }
        Ok(pushed)
    }

    async fn receive(
        &self,
        queue: &Key,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<Received> {
        opts.check(queue)?;
        let mut eval = queue_eval(
            self.namespace(),
            queue,
            "receive",
            6,
            receive_extra(consumer),
        );
        receive_args(&mut eval, consumer, &opts);
        let call = Traced::new("receive", FAMILY, queue).by(consumer);
        self.queue_call(call, &eval, receive_reply, received).await
    }

    async fn ack_and_receive(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        consumer: &HolderId,
        opts: ReceiveOptions,
    ) -> Result<(Settle, Received)> {
        opts.check(queue)?;
        let extra = receive_extra(consumer) + 40;
        let mut eval = queue_eval(self.namespace(), queue, "take", 8, extra);
        eval.arg(id).arg(token.get());
        receive_args(&mut eval, consumer, &opts);
        let call = Traced::new("ack_and_receive", FAMILY, queue).by(consumer);
        self.queue_call(call, &eval, take_reply, taken).await
    }

    async fn extend(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle> {
        let ttl = ttl_ms(queue, ttl)?.to_string();
        match self
            .settle(queue, "extend", id, token, &[ttl.as_bytes()])
            .await?
        {
            1 => Ok(Settle::Done),
            _ => Ok(Settle::Stale),
        }
    }

    async fn ack(&self, queue: &Key, id: u64, token: FencingToken) -> Result<Settle> {
        match self.settle(queue, "ack", id, token, &[]).await? {
            1 => Ok(Settle::Done),
            _ => Ok(Settle::Stale),
        }
    }

    async fn nack(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        error: &str,
        retry_in: Duration,
    ) -> Result<Nack> {
        let retry = ms(retry_in.min(MAX_TTL)).to_string();
        let error = cut_reason(error.to_owned());
        let more: [&[u8]; 2] = [error.as_bytes(), retry.as_bytes()];
        Ok(match self.settle(queue, "nack", id, token, &more).await? {
            1 => Nack::Requeued,
            2 => Nack::DeadLettered,
            _ => Nack::Stale,
        })
    }

    async fn dead_letter(
        &self,
        queue: &Key,
        id: u64,
        token: FencingToken,
        reason: &str,
    ) -> Result<Settle> {
        let reason = cut_reason(reason.to_owned());
        match self
            .settle(queue, "dead", id, token, &[reason.as_bytes()])
            .await?
        {
            1 => Ok(Settle::Done),
            _ => Ok(Settle::Stale),
        }
    }

    async fn heartbeat(&self, queue: &Key, consumer: &HolderId, ttl: Duration) -> Result<()> {
        let ttl = ttl_ms(queue, ttl)?;
        let extra = crate::eval::holder_len(Some(consumer)) + 20;
        let mut eval = queue_eval(self.namespace(), queue, "beat", 2, extra);
        eval.holder(consumer).arg(ttl);
        let call = Traced::new("heartbeat", FAMILY, queue).by(consumer);
        let _: i64 = self.eval(call, &eval, crate::eval::ok).await?;
        Ok(())
    }

    async fn leave(&self, queue: &Key, consumer: &HolderId) -> Result<u32> {
        let extra = crate::eval::holder_len(Some(consumer));
        let mut eval = queue_eval(self.namespace(), queue, "leave", 1, extra);
        eval.holder(consumer);
        let call = Traced::new("leave", FAMILY, queue).by(consumer);
        let n: i64 = self.eval(call, &eval, crate::eval::ok).await?;
        Ok(crate::eval::count(n, 0))
    }

    async fn give_back(&self, queue: &Key, consumer: &HolderId, receive_id: u64) -> Result<u32> {
        if receive_id == 0 {
            return Ok(0);
        }
        let extra = crate::eval::holder_len(Some(consumer)) + 20;
        let mut eval = queue_eval(self.namespace(), queue, "giveback", 2, extra);
        eval.holder(consumer).arg(receive_id);
        let call = Traced::new("give_back", FAMILY, queue).by(consumer);
        let n: i64 = self.eval(call, &eval, crate::eval::ok).await?;
        Ok(crate::eval::count(n, 0))
    }

    async fn dead_items(&self, queue: &Key, after: u64, limit: u32) -> Result<Vec<DeadItem>> {
        check_dead_page(queue, limit)?;
        let mut eval = queue_eval(self.namespace(), queue, "list", 2, 32);
        eval.arg(after).arg(limit);
        let call = Traced::new("dead_items", FAMILY, queue);
        self.queue_call(call, &eval, dead_reply, traced_value).await
    }

    async fn requeue_dead(&self, queue: &Key, id: u64) -> Result<bool> {
        self.dead_op(queue, "requeue", id).await
    }

    async fn remove_dead(&self, queue: &Key, id: u64) -> Result<bool> {
        self.dead_op(queue, "remove", id).await
    }

    async fn stats(&self, queue: &Key) -> Result<QueueStats> {
        let eval = queue_eval(self.namespace(), queue, "stats", 0, 0);
        let call = Traced::new("stats", FAMILY, queue);
        let reply: Value = self.eval(call, &eval, traced_value).await?;
        let (mut stats, consumers) =
            stats_reply(&reply).ok_or_else(|| self.unexpected(call, &reply))?;
        stats.consumers = consumers
            .into_iter()
            .map(|c| self.stored_holder(queue, c).map(|h| *h.instance()))
            .collect::<Result<_>>()?;
        Ok(stats)
    }

    async fn watch(&self, queue: &Key) -> Result<Box<dyn Watch>> {
        let channel = queue_names(self.namespace(), queue).name('c');
        let span = self.span(&Traced::new("subscribe", FAMILY, queue));
        let watch = self.hub().subscribe(channel).instrument(span).await?;
        Ok(Box::new(watch))
    }
}

#[cfg(test)]
mod tests;
