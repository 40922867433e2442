//! Shared values on Redis ([`StateBackend`]): one EVALSHA of `state.lua`
//! (after the prelude) per operation, so every step of the rules in
//! [`coord_api::spi::state`] (the sweep of expired entries, a put or delete
//! with its expectation, a read of the log) is one atomic step on the
//! server's clock.
//!
//! A space's entries are one hash (each field the entry's version and
//! value, so a compare-and-set that loses a race, the common step under
//! contention, costs one HGET beside a look at the calls) and a sorted set of deadlines; its log is a sorted set of changes scored by version, trimmed
//! to its last [`CHANGES_KEPT`](coord_api::spi::CHANGES_KEPT) (the floor
//! raised to the last version dropped), as in memory. Versions come from the prelude's `next_token` on
//! the space's counter, floored at the head the meta hash keeps, so they
//! increase across a restart that lost everything (the clock). A TTL is a
//! deadline in the space's sorted set, not a Redis key expiry: the next
//! step on the space removes the entry and logs the expiry, and a watcher
//! reads again when [`Changes::next_expiry_in`] says (a Redis expiry would
//! pass unseen). A step that logged a change PUBLISHes on the space's
//! channel ([`watch`](StateBackend::watch)).
//!
//! # Key layout
//!
//! Every key of a space shares the tag `{<ns>:state:<len>:<space>}` (one
//! Redis Cluster slot per space, decision 0024); `<len>`, the space's byte
//! length, keeps spaces apart whatever characters their names hold.
//!
//! ```text
//! coord:{<ns>:state:<len>:<s>}:m   meta hash: head, floor
//! coord:{<ns>:state:<len>:<s>}:t   version counter (next_token), kept KEEP_MS
//! coord:{<ns>:state:<len>:<s>}:d   entries hash: key -> <version>:<value>
//! coord:{<ns>:state:<len>:<s>}:e   deadlines zset: key -> deadline (server ms)
//! coord:{<ns>:state:<len>:<s>}:l   log zset: change -> version
//! coord:{<ns>:state:<len>:<s>}:i   calls zset: a put's call -> version made
//! coord:{<ns>:state:<len>:<s>}:c   channel: a change was logged
//! ```
//!
//! **Key lifetimes.** Values live until deleted or expired (by the sweep);
//! the meta hash, the log, the calls and the counter live one `MAX_TTL`
//! past the space's last change; a call is dropped once its change left
//! the log (by the next put naming a call), and with a log born again. Were they gone, the next change births a new log
//! whose floor makes every earlier reader see a gap. Were one gone without
//! the other (an eviction under a `volatile-*` `maxmemory` policy), the
//! next step notices: a log whose newest change is not the head lost the
//! changes up to it, and the floor is raised to the head; a log without a
//! meta hash is dropped and a new one born.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Key, Namespace, Result,
    spi::{
        Backend, Change, ChangeKind, Changes, Expect, Gap, Select, StateBackend, Stored, Watch,
        Written,
        state::{check_changes, check_put, space_full},
    },
};
use redis::{Script, Value};
use tracing::Instrument;

use crate::{
    RedisBackend,
    eval::{Eval, Traced, millis, script, ttl_ms},
    keys::Names,
};

pub(crate) static STATE: LazyLock<Script> = script!("state/state.lua");

/// A space's key parts, in script order (the channel is `c`).
const PARTS: [char; 6] = ['m', 't', 'd', 'e', 'l', 'i'];

/// The trace family (and key space) of shared values.
const FAMILY: &str = "state";

/// The names of `space`'s keys and channel.
fn space_names(ns: &Namespace, space: &Key) -> Names {
    let len = space.as_str().len().to_string();
    Names::new(ns, &[FAMILY, &len, space.as_str()], &[])
}

/// `op` of the state script on `space`, with room for `args` more
/// arguments of `extra` bytes.
fn state_eval(ns: &Namespace, space: &Key, op: &'static str, args: usize, extra: usize) -> Eval {
    let mut names = space_names(ns, space);
    let bytes = PARTS.len() * names.len() + op.len() + extra + 16;
    let mut eval = Eval::new(&STATE, PARTS.len(), 1 + args, bytes);
    for p in PARTS {
        names.write(&mut eval, p);
    }
    eval.arg(op);
    eval
}

/// The expectation as the script reads it: a letter and a version.
fn expect_args(expect: Expect) -> (&'static str, u64) {
    match expect {
        Expect::Any => ("a", 0),
        Expect::Absent => ("n", 0),
        Expect::Version(v) => ("v", v),
    }
}

// Reading replies: `None` is a reply the script never gives.

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn uint(v: &Value) -> Option<u64> {
    u64::try_from(int(v)?).ok()
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn key(v: &Value) -> Option<Key> {
    Key::new(std::str::from_utf8(bytes(v)?).ok()?).ok()
}

/// `{version, value, ms left (-1: none)}`, or `{0}`: absent.
fn entry(v: &[Value]) -> Option<Option<Stored>> {
    match v {
        [zero] if int(zero)? == 0 => Some(None),
        [version, value, left] => Some(Some(Stored::new(
            bytes(value)?.to_vec(),
            uint(version)?,
            millis(int(left)?),
        ))),
        _ => None,
    }
}

fn get_reply(v: &Value) -> Option<Option<Stored>> {
    match v {
        Value::Array(a) => entry(a),
        _ => None,
    }
}

/// `{1, version}` done, `{0, entry…}` conflict, `{2}` space full, `{3}`
/// unchanged; `None` for space full (the caller's error).
fn written_reply(v: &Value) -> Option<Option<Written>> {
    let Value::Array(a) = v else { return None };
    let (first, rest) = a.split_first()?;
    Some(match (int(first)?, rest) {
        (1, [version]) => Some(Written::Done(uint(version)?)),
        (0, rest) => Some(Written::Conflict(entry(rest)?)),
        (2, []) => None,
        (3, []) => Some(Written::Unchanged),
        _ => return None,
    })
}

/// `{gap (0 | 1), head, next expiry ms (-1), oldest (-1), then per change:
/// key, version, kind, value; or with a gap per entry: key, version,
/// value, ms left}`. A gap's entries come in no order and are sorted here
/// by key (Lua would compare keys in the server's locale).
fn changes_reply(v: &Value, after: u64) -> Option<Changes> {
    let Value::Array(a) = v else { return None };
    let [gap, head, next, oldest, rest @ ..] = &a[..] else {
        return None;
    };
    if rest.len() % 4 != 0 {
        return None;
    }
    let mut out = Changes::default();
    out.head = uint(head)?;
    out.next_expiry_in = millis(int(next)?);
    if int(gap)? == 1 {
        out.gap = Some(Gap::new(after, uint(oldest)));
        out.current = rest
            .chunks(4)
            .map(|c| {
                let stored = entry(&c[1..])??;
                Some((key(&c[0])?, stored))
            })
            .collect::<Option<Vec<_>>>()?;
        out.current.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    } else {
        out.changes = rest
            .chunks(4)
            .map(|c| {
                let kind = match bytes(&c[2])? {
                    b"p" => ChangeKind::Put(bytes(&c[3])?.to_vec()),
                    b"d" => ChangeKind::Deleted,
                    b"x" => ChangeKind::Expired,
                    _ => return None,
                };
                Some(Change::new(key(&c[0])?, uint(&c[1])?, kind))
            })
            .collect::<Option<_>>()?;
    }
    Some(out)
}

fn traced(_: &Value) -> (&'static str, Option<u64>) {
    ("ok", None)
}

/// The trace of a write: done (with the version), conflict, unchanged.
fn traced_written(v: &Value) -> (&'static str, Option<u64>) {
    match written_reply(v) {
        Some(Some(Written::Done(version))) => ("ok", Some(version)),
        Some(Some(Written::Conflict(_))) => ("conflict", None),
        Some(Some(_)) => ("unchanged", None),
        Some(None) => ("space_full", None),
        None => ("other", None),
    }
}

impl RedisBackend {
    async fn state_write(
        &self,
        space: &Key,
        key: &Key,
        eval: &Eval,
        op: &'static str,
    ) -> Result<Written> {
        let call = Traced::new(op, FAMILY, key);
        let reply: Value = self.eval(call, eval, traced_written).await?;
        match written_reply(&reply) {
            Some(Some(w)) => Ok(w),
            Some(None) => Err(space_full(space, key)),
            None => Err(self.unexpected(call, reply)),
        }
    }
}

#[async_trait]
impl StateBackend for RedisBackend {
    async fn get(&self, space: &Key, key: &Key) -> Result<Option<Stored>> {
        let mut eval = state_eval(self.namespace(), space, "get", 1, key.as_str().len());
        eval.arg(key.as_str());
        let call = Traced::new("get", FAMILY, key);
        let reply: Value = self.eval(call, &eval, traced).await?;
        get_reply(&reply).ok_or_else(|| self.unexpected(call, reply))
    }

    async fn put(
        &self,
        space: &Key,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        ttl: Option<Duration>,
        call: u64,
    ) -> Result<Written> {
        check_put(space, key, &value, ttl)?;
        let ttl = match ttl {
            Some(t) => ttl_ms(key, t)?,
            None => 0,
        };
        let (letter, version) = expect_args(expect);
        let extra = key.as_str().len() + value.len() + 72;
        let mut eval = state_eval(self.namespace(), space, "put", 6, extra);
        eval.arg(key.as_str())
            .arg_bytes(&value)
            .arg(letter)
            .arg(version)
            .arg(ttl)
            .arg(call);
        self.state_write(space, key, &eval, "put").await
    }

    async fn delete(&self, space: &Key, key: &Key, expect: Expect) -> Result<Written> {
        let (letter, version) = expect_args(expect);
        let extra = key.as_str().len() + 24;
        let mut eval = state_eval(self.namespace(), space, "delete", 3, extra);
        eval.arg(key.as_str()).arg(letter).arg(version);
        self.state_write(space, key, &eval, "delete").await
    }

    async fn changes(
        &self,
        space: &Key,
        select: &Select,
        after: u64,
        limit: u32,
    ) -> Result<Changes> {
        check_changes(space, select, limit)?;
        let (letter, sel) = match select {
            Select::Key(k) => ("k", k.as_str()),
            Select::Prefix(p) => ("p", p.as_str()),
        };
        let mut eval = state_eval(self.namespace(), space, "changes", 4, sel.len() + 32);
        eval.arg(letter).arg(sel).arg(after).arg(limit);
        let call = Traced::new("changes", FAMILY, space);
        let reply: Value = self.eval(call, &eval, traced).await?;
        changes_reply(&reply, after).ok_or_else(|| self.unexpected(call, reply))
    }

    async fn watch(&self, space: &Key) -> Result<Box<dyn Watch>> {
        let channel = space_names(self.namespace(), space).name('c');
        let span = self.span(&Traced::new("subscribe", FAMILY, space));
        let watch = self.hub().subscribe(channel).instrument(span).await?;
        Ok(Box::new(watch))
    }
}

#[cfg(test)]
mod tests;
