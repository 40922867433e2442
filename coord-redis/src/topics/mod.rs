//! Topics on Redis ([`TopicBackend`]).
//!
//! **Durable tier**: a Redis Stream per topic, one EVALSHA of `topic.lua`
//! (after the prelude) per operation, so every step of the rules in
//! [`coord_api::spi::topics`] is one atomic step on the server's clock. An
//! entry's id is `<ms>-<offset>` (the ms never going backwards: the larger
//! of the server's clock and the previous entry's), so offsets are dense
//! and time-ordered at once: retention is `XTRIM MAXLEN` and `XTRIM MINID
//! <now - age>`, a replay from a time is a range on ids, and a replay from
//! an offset a binary search on the ids' ms. Each subscription is a
//! consumer group named as the subscription (`XREADGROUP` hands new
//! entries out, `XACK` settles them, `XGROUP SETID` replays), beside the
//! coord state a consumer group lacks: the cursor (so trimmed offsets are
//! reported, never skipped), each delivery's token and deadline, the retry
//! set, consumers' presence, and dead events. A publish PUBLISHes on the
//! topic's channel ([`watch`](TopicBackend::watch)). An
//! [`ack_and_read`](TopicBackend::ack_and_read) is the script's ack and
//! read in one run.
//!
//! **Ephemeral tier**: `PUBLISH` on the topic's ephemeral channel of
//! `<version>|<kind>|<payload>`; listeners share the backend's pub/sub
//! connection (a bounded buffer each; a full buffer or a lost connection
//! is told as [`Heard::MayHaveMissed`]).
//!
//! # Key layout
//!
//! Every key of a topic shares the tag `{<ns>:topic:<len>:<topic>}` (one
//! Redis Cluster slot per topic, subscriptions included).
//!
//! ```text
//! coord:{<ns>:topic:<len>:<t>}:s                  the stream; a consumer group per subscription
//! coord:{<ns>:topic:<len>:<t>}:m                  meta hash: last (offset), ms (of the last entry), dead:<sub>, due:<sub> (sweep hint)
//! coord:{<ns>:topic:<len>:<t>}:t                  token counter (next_token)
//! coord:{<ns>:topic:<len>:<t>}:g                  subscriptions hash: sub -> cursor
//! coord:{<ns>:topic:<len>:<t>}:c                  channel: an event was published
//! coord:{<ns>:topic:<len>:<t>}:e                  channel: ephemeral events
//! coord:{<ns>:topic:<len>:<t>}:<slen>:<sub>:f     deliveries hash: offset -> token|deadline|attempt|entry id|consumer|read id
//! coord:{<ns>:topic:<len>:<t>}:<slen>:<sub>:d     deadlines zset
//! coord:{<ns>:topic:<len>:<t>}:<slen>:<sub>:r     retry zset: offset -> due
//! coord:{<ns>:topic:<len>:<t>}:<slen>:<sub>:a     retry hash: offset -> attempts|entry id
//! coord:{<ns>:topic:<len>:<t>}:<slen>:<sub>:p     presence zset: consumer -> deadline
//! coord:{<ns>:topic:<len>:<t>}:<slen>:<sub>:x     dead zset: id -> id
//! coord:{<ns>:topic:<len>:<t>}:<slen>:<sub>:<id>:y  a dead event
//! ```

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, HolderId, Key, MAX_TTL, Namespace, Result,
    spi::{
        Backend, DeadEvent, Delivered, Event, Heard, Listener, Missed, NewEvent, Read, ReadOptions,
        Retention, Settle, Start, SubscriptionStats, Tag, TopicBackend, Watch,
        queues::cut_reason,
        topics::{check_dead_page, check_publish},
    },
};
use redis::{Script, Value};
use tracing::Instrument;

use crate::{
    RedisBackend,
    eval::{Eval, Request, Traced, array, bytes, int, millis, ms, script, text, uint, wall},
    keys::Names,
    pubsub::RedisListener,
};

pub(crate) static TOPIC: LazyLock<Script> = script!("topics/topic.lua");

/// The trace family (and key space) of topics.
const FAMILY: &str = "topic";

/// A topic's key parts, in script order.
const TOPIC_PARTS: [char; 4] = ['s', 'm', 't', 'g'];
/// A subscription's key parts, in script order.
const SUB_PARTS: [char; 6] = ['f', 'd', 'r', 'a', 'p', 'x'];

/// How many ephemeral events a listener may fall behind before it misses
/// some (and is told so).
const EPHEMERAL_BUFFER: usize = 1024;

fn topic_names(ns: &Namespace, topic: &Key) -> Names {
    let len = topic.as_str().len().to_string();
    Names::new(ns, &[FAMILY, &len, topic.as_str()], &[])
}

/// `op` of the topic script: the keys (of `sub`, or placeholders in the
/// topic's slot), the operation, then `sub` if any; room for `args` more.
pub(crate) fn topic_eval(
    ns: &Namespace,
    topic: &Key,
    sub: Option<&Key>,
    op: &str,
    args: usize,
) -> Eval {
    let mut names = topic_names(ns, topic);
    let len = topic.as_str().len().to_string();
    let sub_str = sub.map_or("", |s| s.as_str());
    let slen = sub_str.len().to_string();
    let mut sub_names = Names::new(ns, &[FAMILY, &len, topic.as_str()], &[&slen, sub_str]);
    let bytes = 10 * sub_names.len() + op.len() + 2 * sub_str.len() + 64;
    let mut eval = Eval::new(&TOPIC, 10, 2 + args, bytes);
    for p in TOPIC_PARTS {
        names.write(&mut eval, p);
    }
    for p in SUB_PARTS {
        sub_names.write(&mut eval, p);
    }
    eval.arg(op);
    if let Some(s) = sub {
        eval.arg(s.as_str());
    }
    eval
}

/// `kind`, `value` of a start; `None` for a start added to the SPI after
/// this backend.
fn start_args(start: Start) -> Option<(&'static str, u64)> {
    Some(match start {
        Start::Earliest => ("e", 0),
        Start::Latest => ("l", 0),
        Start::Offset(o) => ("o", o.max(1)),
        Start::Time(t) => {
            // Rounded up: events carry whole milliseconds, so one at or
            // after `t` is one at or after the next whole millisecond (an
            // event in `t`'s millisecond but before it is not). Capped at
            // 2^53 ms (some 285,000 years), after every event's time: the
            // script reads it as a double and writes `t - 1` into a stream
            // id with `%d`, which past 2^63 made an invalid id (an error
            // where memory places the cursor after the newest event).
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos().div_ceil(1_000_000));
            ("t", u64::try_from(ms).unwrap_or(u64::MAX).min(1 << 53))
        }
        _ => return None,
    })
}

fn at(ms: i64) -> std::time::SystemTime {
    wall(ms.saturating_mul(1000))
}

/// `{{offset, ms, kind, version, payload, token, attempt}…, {{first,
/// last}…}, next_in ms (-1: none)}`, or -1 for no subscription.
fn read_reply(v: &Value) -> Option<Option<Read>> {
    if int(v) == Some(-1) {
        return Some(None);
    }
    let [events, missed, next] = array(v)? else {
        return None;
    };
    let events = array(events)?
        .iter()
        .map(|e| {
            let [o, t, k, ver, p, tok, attempt] = array(e)? else {
                return None;
            };
            let tag = Tag::new(text(k)?, uint(ver)?);
            let event = Event::new(uint(o)?, at(int(t)?), tag, bytes(p)?.to_vec());
            Some(Delivered::new(
                event,
                FencingToken(uint(tok)?),
                uint(attempt)?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    let mut missed = array(missed)?
        .iter()
        .map(|m| {
            let [a, b] = array(m)? else { return None };
            Some(Missed::new(uint(a)?, uint(b)?))
        })
        .collect::<Option<Vec<_>>>()?;
    missed.sort_by_key(|m| m.first);
    let mut merged: Vec<Missed> = Vec::with_capacity(missed.len());
    for m in missed {
        match merged.last_mut() {
            Some(l) if l.last + 1 >= m.first => l.last = l.last.max(m.last),
            _ => merged.push(m),
        }
    }
    let next_in = if events.is_empty() {
        millis(int(next)?)
    } else {
        None
    };
    Some(Some(Read::new(events, merged, next_in)))
}

/// `{1 | 0 (acked or stale), a read's reply}`, or -1 for no subscription.
fn ack_and_read_reply(v: &Value) -> Option<(Settle, Option<Read>)> {
    if int(v) == Some(-1) {
        return Some((Settle::Stale, None));
    }
    let [acked, read] = array(v)? else {
        return None;
    };
    Some((settle(int(acked)?), read_reply(read)?))
}

fn dead_reply(v: &Value) -> Option<Vec<DeadEvent>> {
    array(v)?
        .iter()
        .map(|d| {
            let [id, o, t, k, ver, p, r, z] = array(d)? else {
                return None;
            };
            let offset = uint(o)?;
            let event = match int(t)? {
                -1 => None,
                t => {
                    let tag = Tag::new(text(k)?, uint(ver)?);
                    Some(Event::new(offset, at(t), tag, bytes(p)?.to_vec()))
                }
            };
            let reason = text(r)?.to_owned();
            Some(DeadEvent::new(
                uint(id)?,
                offset,
                event,
                reason,
                wall(int(z)?),
            ))
        })
        .collect()
}

fn stats_reply(v: &Value) -> Option<SubscriptionStats> {
    let n = array(v)?
        .iter()
        .map(uint::<u64>)
        .collect::<Option<Vec<_>>>()?;
    let [
        exists,
        cursor,
        last,
        first,
        in_flight,
        retrying,
        consumers,
        dead,
    ] = n[..]
    else {
        return None;
    };
    let mut stats = SubscriptionStats::default();
    stats.exists = exists == 1;
    stats.cursor = cursor;
    stats.last_offset = last;
    stats.first_offset = first;
    stats.in_flight = in_flight;
    stats.retrying = retrying;
    stats.consumers = consumers;
    stats.dead = dead;
    Some(stats)
}

fn settled(v: &i64) -> (&'static str, Option<u64>) {
    (if *v == 1 { "ok" } else { "stale" }, None)
}

fn traced_value(_: &Value) -> (&'static str, Option<u64>) {
    ("ok", None)
}

fn settle(v: i64) -> Settle {
    if v == 1 { Settle::Done } else { Settle::Stale }
}

/// What a Redis listener hears, decoded.
struct Listening(RedisListener);

#[async_trait]
impl Listener for Listening {
    async fn next(&mut self) -> Result<Heard> {
        loop {
            let Some(msg) = self.0.next().await else {
                return Ok(Heard::MayHaveMissed);
            };
            let mut parts = msg.splitn(3, |b| *b == b'|');
            let (Some(v), Some(k), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
                continue; // not an event of coord's
            };
            let version = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
            let (Some(version), Ok(kind)) = (version, std::str::from_utf8(k)) else {
                continue;
            };
            return Ok(Heard::Event(Tag::new(kind, version), p.to_vec()));
        }
    }
}

impl RedisBackend {
    fn start_args(&self, start: Start) -> Result<(&'static str, u64)> {
        start_args(start).ok_or_else(|| Error::NotSupported {
            operation: "this subscription start",
            backend: self.to_string(),
        })
    }

    async fn topic_call<T>(
        &self,
        call: Traced<'_>,
        eval: &Eval,
        decode: fn(&Value) -> Option<T>,
    ) -> Result<T> {
        let reply: Value = self.eval(call, eval, traced_value).await?;
        decode(&reply).ok_or_else(|| self.unexpected(call, reply))
    }

    async fn topic_settle(
        &self,
        topic: &Key,
        sub: &Key,
        op: &'static str,
        offset: u64,
        token: FencingToken,
        more: &[&[u8]],
    ) -> Result<Settle> {
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), op, 2 + more.len());
        eval.arg(offset).arg(token.get());
        for m in more {
            eval.arg_bytes(m);
        }
        let reply: i64 = self
            .eval(Traced::new(op, FAMILY, topic), &eval, settled)
            .await?;
        Ok(settle(reply))
    }
}

#[async_trait]
impl TopicBackend for RedisBackend {
    async fn publish_ephemeral(&self, topic: &Key, event: NewEvent) -> Result<u64> {
        event.check(topic)?;
        let channel = topic_names(self.namespace(), topic).name('e');
        let mut msg = Vec::with_capacity(event.payload.len() + event.tag.kind.len() + 12);
        msg.extend_from_slice(event.tag.version.to_string().as_bytes());
        msg.push(b'|');
        msg.extend_from_slice(event.tag.kind.as_bytes());
        msg.push(b'|');
        msg.extend_from_slice(&event.payload);
        // On a sharded cluster, to the channel's shard only.
        let mut cmd = redis::cmd(if self.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        });
        cmd.arg(&channel).arg(msg);
        let call = Traced::new("publish_ephemeral", FAMILY, topic);
        // The shared request path: bounded, and on a cluster sent again
        // where the slot lives after a MOVED (as every other request);
        // never confirmed (at most once: `reads::AT_MOST_ONCE`).
        let n: i64 = self.query(call, Request::Cmd(&cmd), &[]).await?;
        Ok(n.max(0) as u64)
    }

    async fn listen(&self, topic: &Key) -> Result<Box<dyn Listener>> {
        let channel = topic_names(self.namespace(), topic).name('e');
        let span = self.span(&Traced::new("listen", FAMILY, topic));
        let l = self
            .hub()
            .listen(channel, EPHEMERAL_BUFFER)
            .instrument(span)
            .await?;
        Ok(Box::new(Listening(l)))
    }

    async fn publish(
        &self,
        topic: &Key,
        events: Vec<NewEvent>,
        retention: Retention,
    ) -> Result<Vec<u64>> {
        check_publish(topic, &events, &retention)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len();
        let mut eval = topic_eval(self.namespace(), topic, None, "publish", 3 + 3 * n);
        eval.arg(n)
            .arg(retention.max_len.unwrap_or(0))
            .arg(retention.max_age.map_or(0, ms));
        for e in &events {
            eval.arg(e.tag.kind.as_str())
                .arg(e.tag.version)
                .arg_bytes(&e.payload);
        }
        let call = Traced::new("publish", FAMILY, topic);
        let first = self
            .topic_call(call, &eval, |v| uint::<u64>(array(v)?.first()?))
            .await?;
        Ok((first..first + n as u64).collect())
    }

    async fn subscribe(&self, topic: &Key, sub: &Key, start: Start) -> Result<bool> {
        let (kind, value) = self.start_args(start)?;
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "subscribe", 2);
        eval.arg(kind).arg(value);
        let call = Traced::new("subscribe", FAMILY, topic);
        self.topic_call(call, &eval, |v| Some(int(v)? == 1)).await
    }

    async fn seek(&self, topic: &Key, sub: &Key, start: Start) -> Result<Option<u64>> {
        let (kind, value) = self.start_args(start)?;
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "seek", 2);
        eval.arg(kind).arg(value);
        let call = Traced::new("seek", FAMILY, topic);
        self.topic_call(call, &eval, |v| match int(v)? {
            -1 => Some(None),
            n => Some(Some(u64::try_from(n).ok()?)),
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
        opts.check(topic)?;
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "read", 5);
        eval.holder(consumer)
            .arg(ms(opts.ttl))
            .arg(ms(opts.presence_ttl))
            .arg(opts.max)
            .arg(opts.read_id);
        let call = Traced::new("read", FAMILY, topic).by(consumer);
        self.topic_call(call, &eval, read_reply).await
    }

    async fn extend(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Settle> {
        coord_api::validate_ttl(topic, ttl)?;
        let ttl = ms(ttl).to_string();
        self.topic_settle(topic, sub, "extend", offset, token, &[ttl.as_bytes()])
            .await
    }

    async fn ack(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
    ) -> Result<Settle> {
        self.topic_settle(topic, sub, "ack", offset, token, &[])
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
        opts.check(topic)?;
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "ackread", 7);
        eval.arg(offset)
            .arg(token.get())
            .holder(consumer)
            .arg(ms(opts.ttl))
            .arg(ms(opts.presence_ttl))
            .arg(opts.max)
            .arg(opts.read_id);
        let call = Traced::new("ack_and_read", FAMILY, topic).by(consumer);
        self.topic_call(call, &eval, ack_and_read_reply).await
    }

    async fn nack(
        &self,
        topic: &Key,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        retry_in: Duration,
    ) -> Result<Settle> {
        let retry = ms(retry_in.min(MAX_TTL)).to_string();
        self.topic_settle(topic, sub, "nack", offset, token, &[retry.as_bytes()])
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
        let reason = cut_reason(reason.to_owned());
        self.topic_settle(topic, sub, "dead", offset, token, &[reason.as_bytes()])
            .await
    }

    async fn heartbeat(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        ttl: Duration,
    ) -> Result<()> {
        coord_api::validate_ttl(topic, ttl)?;
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "beat", 2);
        eval.holder(consumer).arg(ms(ttl));
        let call = Traced::new("heartbeat", FAMILY, topic).by(consumer);
        self.topic_call(call, &eval, |_| Some(())).await
    }

    async fn leave(&self, topic: &Key, sub: &Key, consumer: &HolderId) -> Result<u32> {
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "leave", 1);
        eval.holder(consumer);
        let call = Traced::new("leave", FAMILY, topic).by(consumer);
        self.topic_call(call, &eval, |v| uint(v).or(Some(0))).await
    }

    async fn give_back(
        &self,
        topic: &Key,
        sub: &Key,
        consumer: &HolderId,
        read_id: u64,
    ) -> Result<u32> {
        if read_id == 0 {
            return Ok(0);
        }
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "giveback", 2);
        eval.holder(consumer).arg(read_id);
        let call = Traced::new("give_back", FAMILY, topic).by(consumer);
        self.topic_call(call, &eval, |v| uint(v).or(Some(0))).await
    }

    async fn dead_events(
        &self,
        topic: &Key,
        sub: &Key,
        after: u64,
        limit: u32,
    ) -> Result<Vec<DeadEvent>> {
        check_dead_page(topic, limit)?;
        let mut eval = topic_eval(self.namespace(), topic, Some(sub), "list", 2);
        eval.arg(after).arg(limit);
        let call = Traced::new("dead_events", FAMILY, topic);
        self.topic_call(call, &eval, dead_reply).await
    }

    async fn unsubscribe(&self, topic: &Key, sub: &Key) -> Result<bool> {
        let eval = topic_eval(self.namespace(), topic, Some(sub), "unsub", 0);
        let call = Traced::new("unsubscribe", FAMILY, topic);
        self.topic_call(call, &eval, |v| Some(int(v)? == 1)).await
    }

    async fn stats(&self, topic: &Key, sub: &Key) -> Result<SubscriptionStats> {
        let eval = topic_eval(self.namespace(), topic, Some(sub), "stats", 0);
        let call = Traced::new("stats", FAMILY, topic);
        self.topic_call(call, &eval, stats_reply).await
    }

    async fn watch(&self, topic: &Key) -> Result<Box<dyn Watch>> {
        let channel = topic_names(self.namespace(), topic).name('c');
        let span = self.span(&Traced::new("subscribe", FAMILY, topic));
        let watch = self.hub().subscribe(channel).instrument(span).await?;
        Ok(Box::new(watch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{eval::written, keys::hash_tag};

    /// Every key one step touches, the subscription's included, and both
    /// channels, are in the topic's slot (one hash tag per topic).
    #[test]
    fn one_hash_tag_per_topic() {
        let ns = Namespace::new("ns").unwrap();
        let topic = Key::new("orders{eu}").unwrap();
        let sub = Key::new("billing:a}b").unwrap();
        let eval = topic_eval(&ns, &topic, Some(&sub), "read", 0);
        let args = written(&eval);
        let keys = &args[3..3 + 10];
        let tag = hash_tag(&keys[0]).to_owned();
        assert_eq!(tag, "ns:topic:10:orders{eu");
        for k in keys {
            assert_eq!(hash_tag(k), tag, "{k}");
        }
        for part in ['c', 'e'] {
            let channel = topic_names(&ns, &topic).name(part);
            assert_eq!(hash_tag(&channel), tag, "{channel}");
        }
        // Two subscriptions' keys never meet.
        let other = Key::new("billing").unwrap();
        let a = written(&topic_eval(&ns, &topic, Some(&sub), "read", 0));
        let b = written(&topic_eval(&ns, &topic, Some(&other), "read", 0));
        assert_ne!(a[7..13], b[7..13]);
        assert_eq!(a[3..7], b[3..7], "the topic's own keys are shared");
    }
}
