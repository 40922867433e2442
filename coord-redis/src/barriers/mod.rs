//! Barriers and latches on Redis ([`BarrierBackend`]): cyclic and double
//! barriers (`barrier.lua`, after the prelude and `lua/deadlines.lua`; one
//! script, the kind an argument) and countdown latches (`latch.lua`, after
//! the prelude). One EVALSHA per operation, so every decision (a trip, a
//! break, the end of a double barrier's generation, a count reaching zero)
//! is made inside one atomic step.
//!
//! Arrivals are leases: members of a sorted set scored by their deadline on
//! the server's clock. Every operation on a barrier first drops the arrivals
//! whose deadline passed (remembering them as expired in the generation; a
//! double barrier's tripped generation ends there once nobody is inside).
//! The end of a generation and a double barrier's trip are PUBLISHed on the
//! barrier's channel, a latch's every setting and its reaching zero on the
//! latch's; expiry publishes nothing, so watches also wake at the earliest
//! arrival deadline (barriers) or the latch's expiry (latches), which the
//! scripts' `expiry` operation reports.
//!
//! # Key layout
//!
//! Every key of one barrier or latch shares the hash tag
//! `{<ns>:<space>:<name>}` (space `barrier`, `double_barrier` or `latch`),
//! one Redis Cluster slot per barrier or latch; the three spaces are apart,
//! and, as for locks, a name holding `}` cannot make two keys collide (every
//! name ends in `}:<one letter>`, so its length decides where the barrier's
//! name ends):
//!
//! ```text
//! coord:{<ns>:<barrier|double_barrier>:<name>}:s   record hash: gen, parties, entered (cjson trip), seq,
//!                                                  kept (server ms), ended (generations, oldest first, 16),
//!                                                  e:<generation> (cjson end) for each of those
//! coord:{<ns>:<barrier|double_barrier>:<name>}:a   arrivals zset: participant -> deadline (server ms)
//! coord:{<ns>:<barrier|double_barrier>:<name>}:o   arrival order zset: participant -> seq
//! coord:{<ns>:<barrier|double_barrier>:<name>}:x   expired in this generation zset: participant -> seq
//! coord:{<ns>:<barrier|double_barrier>:<name>}:t   generation counter (next_token)
//! coord:{<ns>:<barrier|double_barrier>:<name>}:c   channel: ended / entered
//! coord:{<ns>:latch:<name>}:s                      record hash: gen, first, initial, remaining, id (of the setting call), past (earlier settings' ids),
//!                                                  before (the generation before, in the record's life); PEXPIRE = its life
//! coord:{<ns>:latch:<name>}:p                      participants counted in the generation (set)
//! coord:{<ns>:latch:<name>}:t                      generation counter (next_token)
//! coord:{<ns>:latch:<name>}:d                      the calls that counted the generation (hash: participant -> call id)
//! coord:{<ns>:latch:<name>}:e                      the same of the generation before
//! coord:{<ns>:latch:<name>}:c                      channel: set / open
//! ```
//!
//! Ended generations are stored in the record, one field each
//! (`e:<generation>`), as cjson objects whose generations are strings (cjson
//! writes numbers with 14 significant digits) and whose participants
//! round-trip whatever characters they hold; replies carry them as nested
//! arrays, never JSON. The `ended` field lists them in order, so the oldest
//! is forgotten in the step that remembers the seventeenth; finding how one
//! generation ended reads and decodes that one alone (every waiter woken by
//! a trip asks, in a step of its own, so with 16 parties a round asks 15
//! times).
//!
//! **Key lifetimes.** Every key of a barrier lives at least one `MAX_TTL`
//! (24 h, the prelude's `KEEP_MS`) past its latest arrival deadline and
//! past the last operation on the barrier (reads included), and at most an
//! hour longer (`KEEP_SLACK_MS`), then goes (a barrier used again after that
//! begins with a generation above every earlier one, by the token rule).
//! The record's `kept` is the instant (server ms) they are kept until: an
//! operation that needs them longer moves it an hour past what it needs and
//! sets every key's expiry to it, about once an hour of use; other
//! operations set no expiry but on a key they (re)made. A latch's record,
//! counted set and calls die with the latch; its counter lives `KEEP_MS`
//! longer, so a latch set again after expiring gets a greater generation.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Error, Key, Namespace, Result,
    spi::{
        ArrivalInfo, Arrive, Backend, BarrierBackend, BarrierKind, BarrierState, Break,
        BreakReason, Broken, CountDown, Ended, EndedGeneration, LatchSet, LatchState, Leave, Trip,
        Watch,
        barriers::{MAX_LATCH_COUNT, MAX_PARTIES},
    },
};
use redis::{Script, Value};

use crate::{
    RedisBackend,
    eval::{self, Eval, Traced, millis, script, ttl_ms},
    keys::Names,
};

pub(crate) static BARRIER: LazyLock<Script> = script!("lua/deadlines.lua", "barriers/barrier.lua");
pub(crate) static LATCH_SCRIPT: LazyLock<Script> = script!("barriers/latch.lua");

/// A barrier's key parts, in script order (the channel is `c`).
const BARRIER_PARTS: [char; 5] = ['s', 'a', 'o', 'x', 't'];

/// A latch's key parts, in script order (the channel is `c`).
const LATCH_PARTS: [char; 5] = ['s', 'p', 't', 'd', 'e'];

/// The trace family (and key space) of latches.
const LATCH: &str = "latch";

/// The names of barrier `name` of `kind`.
fn barrier_names(ns: &Namespace, kind: BarrierKind, name: &Key) -> Names {
    Names::new(ns, &[kind.as_str(), name.as_str()], &[])
}

/// The names of latch `name`.
fn latch_names(ns: &Namespace, name: &Key) -> Names {
    Names::new(ns, &[LATCH, name.as_str()], &[])
}

/// The kind argument of the barrier script.
fn kind_arg(kind: BarrierKind) -> Option<&'static str> {
    match kind {
        BarrierKind::Cyclic => Some("c"),
        BarrierKind::Double => Some("d"),
        _ => None,
    }
}

/// `op` of the barrier script on `name` of `kind`: the EVALSHA with the keys,
/// the operation, the channel and the kind written, with room for `extra`
/// bytes of arguments.
fn barrier_eval(
    ns: &Namespace,
    kind: BarrierKind,
    name: &Key,
    op: &'static str,
    extra: usize,
) -> Option<Eval> {
    let kind_arg = kind_arg(kind)?;
    let mut names = barrier_names(ns, kind, name);
    let bytes = (BARRIER_PARTS.len() + 1) * names.len() + extra + 32;
    let mut eval = Eval::new(&BARRIER, BARRIER_PARTS.len(), 7, bytes);
    for p in BARRIER_PARTS {
        names.write(&mut eval, p);
    }
    eval.arg(op);
    names.write(&mut eval, 'c');
    eval.arg(kind_arg);
    Some(eval)
}

/// `op` of the latch script on `name`: the EVALSHA with the keys, the
/// operation and the channel written, with room for `extra` bytes of
/// arguments.
fn latch_eval(ns: &Namespace, name: &Key, op: &'static str, extra: usize) -> Eval {
    let mut names = latch_names(ns, name);
    let bytes = (LATCH_PARTS.len() + 1) * names.len() + extra + 32;
    let mut eval = Eval::new(&LATCH_SCRIPT, LATCH_PARTS.len(), 4, bytes);
    for p in LATCH_PARTS {
        names.write(&mut eval, p);
    }
    eval.arg(op);
    names.write(&mut eval, 'c');
    eval
}

/// An optional generation as the scripts take it: `''` for none.
fn generation_arg(generation: Option<u64>) -> String {
    generation.map(|g| g.to_string()).unwrap_or_default()
}

/// The trace of a reply tagged by its first element.
fn tagged(v: &Value) -> (&'static str, Option<u64>) {
    let tag = match v {
        Value::Array(a) => a.first().and_then(text),
        _ => None,
    };
    const TAGS: [&str; 14] = [
        "waiting",
        "entered",
        "ended",
        "stale",
        "full",
        "differ",
        "unknown",
        "left",
        "not_there",
        "set",
        "busy",
        "counted",
        "already",
        "absent",
    ];
    (
        TAGS.into_iter()
            .find(|t| Some(*t) == tag)
            .unwrap_or("other"),
        None,
    )
}

// Reading replies: `None` is a reply the scripts never give.

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn generation(v: &Value) -> Option<u64> {
    u64::try_from(int(v)?).ok()
}

fn small(v: &Value) -> Option<u32> {
    u32::try_from(int(v)?).ok()
}

fn key(v: &Value) -> Option<Key> {
    Key::new(text(v)?).ok()
}

fn keys(v: &Value) -> Option<Vec<Key>> {
    array(v)?.iter().map(key).collect()
}

/// `{by, arrivals, expired}`.
fn trip(v: &Value) -> Option<Trip> {
    match array(v)? {
        [by, arrivals, expired] => Some(trip_of(by, arrivals, expired)?),
        _ => None,
    }
}

fn trip_of(by: &Value, arrivals: &Value, expired: &Value) -> Option<Trip> {
    Some(Trip::new(key(by)?, keys(arrivals)?).with_expired(keys(expired)?))
}

/// `{generation, next, 'tripped', by, arrivals, expired}` or `{generation, next,
/// 'broken', reason, by, arrived, expired, missing}`.
fn ended(v: &Value) -> Option<EndedGeneration> {
    let [g, next, how, rest @ ..] = array(v)? else {
        return None;
    };
    let ended = match (text(how)?, rest) {
        ("tripped", [by, arrivals, expired]) => Ended::Tripped(trip_of(by, arrivals, expired)?),
        ("broken", [reason, by, arrived, expired, missing]) => Ended::Broken(Broken::new(
            match text(reason)? {
                "reset" => BreakReason::Reset,
                "timeout" => BreakReason::Timeout { by: key(by)? },
                _ => return None,
            },
            keys(arrived)?,
            keys(expired)?,
            small(missing)?,
        )),
        _ => return None,
    };
    Some(EndedGeneration::new(
        generation(g)?,
        generation(next)?,
        ended,
    ))
}

/// `[tag, rest…]` of a tagged reply.
fn tag(v: &Value) -> Option<(&str, &[Value])> {
    let (first, rest) = array(v)?.split_first()?;
    Some((text(first)?, rest))
}

fn arrive_reply(v: &Value) -> Option<Arrive> {
    Some(match tag(v)? {
        ("waiting", [n]) => Arrive::Waiting { arrived: small(n)? },
        ("entered", [t]) => Arrive::Entered(trip(t)?),
        ("ended", [e]) => Arrive::Ended(ended(e)?),
        ("stale", [g]) => Arrive::Stale {
            current: generation(g)?,
        },
        ("full", [p]) => Arrive::Full { parties: small(p)? },
        ("differ", [p]) => Arrive::PartiesDiffer { parties: small(p)? },
        _ => return None,
    })
}

fn leave_reply(v: &Value) -> Option<Leave> {
    Some(match tag(v)? {
        ("left", [n]) => Leave::Left {
            remaining: small(n)?,
        },
        ("not_there", []) => Leave::NotThere,
        _ => return None,
    })
}

fn break_reply(v: &Value) -> Option<Break> {
    Some(match tag(v)? {
        ("ended", [e]) => Break::Ended(ended(e)?),
        ("entered", [t]) => Break::Entered(trip(t)?),
        ("unknown", [g]) => Break::Unknown {
            current: generation(g)?,
        },
        _ => return None,
    })
}

/// `{generation, parties (-1: none), entered trip or {}, {{participant, ms
/// left}…}, asked's end or {}}`.
fn state_reply(v: &Value) -> Option<BarrierState> {
    let [g, parties, entered, arrivals, asked] = array(v)? else {
        return None;
    };
    let arrivals = array(arrivals)?
        .iter()
        .map(|row| match array(row)? {
            [p, left] => Some(ArrivalInfo::new(
                key(p)?,
                millis(int(left)?).unwrap_or_default(),
            )),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(BarrierState::new(
        generation(g)?,
        match int(parties)? {
            -1 => None,
            _ => Some(small(parties)?),
        },
        match array(entered)? {
            [] => None,
            _ => Some(trip(entered)?),
        },
        arrivals,
        match array(asked)? {
            [] => None,
            _ => Some(ended(asked)?),
        },
    ))
}

/// `{generation, first, initial, remaining, ms left}`.
fn latch_row(row: &[Value]) -> Option<LatchState> {
    let [g, first, initial, remaining, left] = row else {
        return None;
    };
    Some(LatchState::new(
        generation(g)?,
        generation(first)?,
        small(initial)?,
        small(remaining)?,
        millis(int(left)?).unwrap_or_default(),
    ))
}

fn latch_set_reply(v: &Value) -> Option<LatchSet> {
    Some(match tag(v)? {
        ("set", [g]) => LatchSet::Set {
            generation: generation(g)?,
        },
        ("busy", [row]) => LatchSet::Busy(latch_row(array(row)?)?),
        _ => return None,
    })
}

fn count_down_reply(v: &Value) -> Option<CountDown> {
    Some(match tag(v)? {
        ("counted", [g, n]) => CountDown::Counted {
            generation: generation(g)?,
            remaining: small(n)?,
        },
        ("already", [g, n]) => CountDown::Already {
            generation: generation(g)?,
            remaining: small(n)?,
        },
        ("absent", []) => CountDown::Absent,
        ("stale", [g]) => CountDown::Stale {
            current: generation(g)?,
        },
        _ => return None,
    })
}

fn latch_state_reply(v: &Value) -> Option<Option<LatchState>> {
    match array(v)? {
        [] => Some(None),
        row => latch_row(row).map(Some),
    }
}

/// Parties 1..=[`MAX_PARTIES`], else `InvalidArgument` naming the barrier.
fn check_parties(kind: BarrierKind, name: &Key, parties: u32) -> Result<()> {
    if parties == 0 || parties > MAX_PARTIES {
        return Err(Error::invalid(format!(
            "{} {:?}: parties {parties} out of range 1..={MAX_PARTIES}",
            kind.as_str(),
            name.as_str()
        )));
    }
    Ok(())
}

/// A count 1..=[`MAX_LATCH_COUNT`], else `InvalidArgument` naming the latch.
fn check_count(name: &Key, count: u32) -> Result<()> {
    if count == 0 || count > MAX_LATCH_COUNT {
        return Err(Error::invalid(format!(
            "latch {:?}: count {count} out of range 1..={MAX_LATCH_COUNT}",
            name.as_str()
        )));
    }
    Ok(())
}

impl RedisBackend {
    /// The barrier script's `op` on `name` of `kind`, with room for `extra`
    /// bytes of arguments; a kind this backend does not know is
    /// `NotSupported`.
    fn barrier_eval(
        &self,
        kind: BarrierKind,
        name: &Key,
        op: &'static str,
        extra: usize,
    ) -> Result<Eval> {
        barrier_eval(self.namespace(), kind, name, op, extra).ok_or_else(|| Error::NotSupported {
            operation: "barrier kind",
            backend: self.to_string(),
        })
    }

    /// Runs `eval` for `call` and decodes its reply with `decode`.
    async fn decoded<T>(
        &self,
        call: Traced<'_>,
        eval: &Eval,
        decode: fn(&Value) -> Option<T>,
    ) -> Result<T> {
        let reply: Value = self.eval(call, eval, tagged).await?;
        decode(&reply).ok_or_else(|| self.unexpected(call, reply))
    }
}

#[async_trait]
impl BarrierBackend for RedisBackend {
    async fn state(
        &self,
        kind: BarrierKind,
        name: &Key,
        asked: Option<u64>,
    ) -> Result<BarrierState> {
        let asked = generation_arg(asked);
        let mut eval = self.barrier_eval(kind, name, "state", asked.len())?;
        eval.arg(asked);
        let call = Traced::new("state", kind.as_str(), name);
        let reply: Value = self.eval(call, &eval, eval::ok).await?;
        state_reply(&reply).ok_or_else(|| self.unexpected(call, reply))
    }

    async fn peek(&self, kind: BarrierKind, name: &Key) -> Result<Option<BarrierState>> {
        let eval = self.barrier_eval(kind, name, "peek", 0)?;
        let call = Traced::new("peek", kind.as_str(), name);
        let reply: Value = self.eval(call, &eval, eval::ok).await?;
        match reply {
            Value::Nil => Ok(None),
            reply => state_reply(&reply)
                .map(Some)
                .ok_or_else(|| self.unexpected(call, reply)),
        }
    }

    async fn arrive(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        parties: u32,
        ttl: Duration,
        arrival: u64,
    ) -> Result<Arrive> {
        check_parties(kind, name, parties)?;
        let ttl = ttl_ms(name, ttl)?;
        let p = participant.as_str();
        let mut eval = self.barrier_eval(kind, name, "arrive", p.len() + 72)?;
        eval.arg(p)
            .arg(generation)
            .arg(parties)
            .arg(ttl)
            .arg(arrival);
        let call = Traced::new("arrive", kind.as_str(), name);
        self.decoded(call, &eval, arrive_reply).await
    }

    async fn renew(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        ttl: Duration,
    ) -> Result<bool> {
        let ttl = ttl_ms(name, ttl)?;
        let p = participant.as_str();
        let mut eval = self.barrier_eval(kind, name, "renew", p.len() + 40)?;
        eval.arg(p).arg(generation).arg(ttl);
        let call = Traced::new("renew", kind.as_str(), name);
        Ok(self.eval(call, &eval, eval::done).await? == 1)
    }

    async fn leave(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        arrival: u64,
    ) -> Result<Leave> {
        let p = participant.as_str();
        let mut eval = self.barrier_eval(kind, name, "leave", p.len() + 44)?;
        eval.arg(p).arg(generation).arg(arrival);
        let call = Traced::new("leave", kind.as_str(), name);
        self.decoded(call, &eval, leave_reply).await
    }

    async fn break_generation(
        &self,
        kind: BarrierKind,
        name: &Key,
        generation: Option<u64>,
        reason: BreakReason,
    ) -> Result<Break> {
        let (reason, by) = match &reason {
            BreakReason::Reset => ("reset", ""),
            BreakReason::Timeout { by } => ("timeout", by.as_str()),
            _ => {
                return Err(Error::NotSupported {
                    operation: "barrier break reason",
                    backend: self.to_string(),
                });
            }
        };
        let mut eval = self.barrier_eval(kind, name, "break", by.len() + 32)?;
        eval.arg(generation_arg(generation)).arg(reason).arg(by);
        let call = Traced::new("break", kind.as_str(), name);
        self.decoded(call, &eval, break_reply).await
    }

    async fn watch(&self, kind: BarrierKind, name: &Key) -> Result<Box<dyn Watch>> {
        let expiry = self.barrier_eval(kind, name, "expiry", 0)?;
        let channel = barrier_names(self.namespace(), kind, name).name('c');
        self.expiry_watch(kind.as_str(), name, channel, expiry)
            .await
    }

    async fn latch_set(
        &self,
        name: &Key,
        count: u32,
        ttl: Duration,
        set_id: u64,
    ) -> Result<LatchSet> {
        check_count(name, count)?;
        let ttl = ttl_ms(name, ttl)?;
        let mut eval = latch_eval(self.namespace(), name, "set", 52);
        eval.arg(count).arg(ttl).arg(set_id);
        let call = Traced::new("set", LATCH, name);
        self.decoded(call, &eval, latch_set_reply).await
    }

    async fn latch_count_down(
        &self,
        name: &Key,
        participant: &Key,
        generation: Option<u64>,
        call: u64,
    ) -> Result<CountDown> {
        let p = participant.as_str();
        let mut eval = latch_eval(self.namespace(), name, "count_down", p.len() + 40);
        eval.arg(p).arg(generation_arg(generation)).arg(call);
        let call = Traced::new("count_down", LATCH, name);
        self.decoded(call, &eval, count_down_reply).await
    }

    async fn latch_state(&self, name: &Key) -> Result<Option<LatchState>> {
        let eval = latch_eval(self.namespace(), name, "state", 0);
        let call = Traced::new("state", LATCH, name);
        let reply: Value = self.eval(call, &eval, eval::ok).await?;
        latch_state_reply(&reply).ok_or_else(|| self.unexpected(call, reply))
    }

    async fn latch_watch(&self, name: &Key) -> Result<Box<dyn Watch>> {
        let expiry = latch_eval(self.namespace(), name, "expiry", 0);
        let channel = latch_names(self.namespace(), name).name('c');
        self.expiry_watch(LATCH, name, channel, expiry).await
    }
}

#[cfg(test)]
mod tests;
