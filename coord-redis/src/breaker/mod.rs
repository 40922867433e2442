//! Circuit breakers on Redis ([`BreakerBackend`]): one EVALSHA of
//! `breaker.lua` (after the prelude) per operation, so every step of the
//! rules in [`coord_api::spi::breaker`] (birth, the sweep, a report, a
//! trial's grant, end and give-back, a manual action, each with the transitions it
//! makes; a peek, which births nothing) is one atomic step on the server's clock (`TIME`, in µs, as the
//! SPI's [`Record`](coord_api::spi::breaker::Record) counts). The script
//! mirrors the SPI's pure state machine (`spi/breaker/machine.rs` and
//! `window.rs`) step by step in the same integer arithmetic; the unit tests
//! run both side by side on one virtual clock and compare every reply.
//!
//! The record is one hash (generation, phase, the policy it was born with,
//! opens, the open's end, the window's total, the finished trials' total,
//! the last trial token, the log's floor, the last manual action, the
//! generation it was born with); the
//! window's parts are a list (the tallies of a count window, oldest first;
//! the buckets of a time window); live trials a sorted set of lease
//! deadlines; failure reports of instances (kept only with a quorum) a
//! sorted set of instants; the last 16 transitions a list. A transition
//! PUBLISHes on the breaker's channel ([`watch`](BreakerBackend::watch)).
//! The hot path, a closed breaker's batched report, costs one HMGET, a push
//! on the window (and a look at its front when a count window trims), one
//! HSET of the totals and the keys' lifetimes.
//!
//! # Key layout
//!
//! Every key of a breaker shares the tag `{<ns>:breaker:<len>:<name>}` (one
//! Redis Cluster slot per breaker); `<len>`, the name's byte length, keeps
//! names apart whatever characters they hold.
//!
//! ```text
//! coord:{<ns>:breaker:<len>:<b>}:h   record hash
//! coord:{<ns>:breaker:<len>:<b>}:w   window list: <bucket>:<calls>:<failures>:<slow>
//! coord:{<ns>:breaker:<len>:<b>}:l   transition log list (the last 16)
//! coord:{<ns>:breaker:<len>:<b>}:t   trials zset: holder -> lease deadline (µs)
//! coord:{<ns>:breaker:<len>:<b>}:q   failing zset: instance -> last failure report (µs)
//! coord:{<ns>:breaker:<len>:<b>}:c   channel: a transition
//! ```
//!
//! **Key lifetimes.** The record, its window and its log live one
//! `MAX_TTL` (24 h) past the breaker's last operation (an instance in use
//! refreshes its copy every second); the trials and failure reports one
//! `MAX_TTL` past their last write (every lease and span in them is at most
//! that long). A breaker whose keys are gone (unused for a day, or a restart
//! without persistence; or its hash alone, evicted, whose other keys the
//! birth deletes) is born again at its next operation: closed, from
//! nothing, with a generation above every one before (the clock), and another
//! [`born`](BreakerState::born), by which an instance that followed the
//! lost record knows it missed what happened in between.

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    HolderId, InstanceId, Key, Namespace, Result,
    spi::{
        Action, Backend, BreakerBackend, BreakerState, Cause, Manual, Phase, Policy, Reported,
        Tally, Transition, Trial, Watch, WindowKind, breaker::check_why,
    },
};
use redis::{Script, Value};
use tracing::Instrument;

use crate::{
    RedisBackend,
    eval::{Eval, Traced, array, bytes, holder_len, int, text, token, uint},
    keys::Names,
};

pub(crate) static BREAKER: LazyLock<Script> = crate::eval::script!("breaker/breaker.lua");

/// A breaker's key parts, in script order (the channel is `c`).
const PARTS: [char; 5] = ['h', 'w', 'l', 't', 'q'];

/// The trace family (and key space) of breakers.
const FAMILY: &str = "breaker";

/// The names of `name`'s keys and channel.
fn breaker_names(ns: &Namespace, name: &Key) -> Names {
    let len = name.as_str().len().to_string();
    Names::new(ns, &[FAMILY, &len, name.as_str()], &[])
}

/// One operation of the script, with its own arguments.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    State,
    /// `state` of a breaker that exists; nothing (a nil reply) otherwise.
    Peek,
    Report {
        generation: u64,
        instance: &'a InstanceId,
        tally: Tally,
    },
    /// A trial; a renewal names its generation (refused in another).
    Trial {
        holder: &'a HolderId,
        ttl: Duration,
        generation: Option<u64>,
    },
    TrialDone {
        generation: u64,
        holder: &'a HolderId,
        outcome: Tally,
    },
    /// A trial given back uncounted.
    GiveBackTrial {
        generation: u64,
        holder: &'a HolderId,
    },
    Manual {
        action: Action,
        by: &'a InstanceId,
        why: &'a str,
    },
}

impl Step<'_> {
    fn op(&self) -> &'static str {
        match self {
            Step::State => "state",
            Step::Peek => "peek",
            Step::Report { .. } => "report",
            Step::Trial { .. } => "trial",
            Step::TrialDone { .. } => "trial_done",
            Step::GiveBackTrial { .. } => "give_back_trial",
            Step::Manual { .. } => "manual",
        }
    }
}

/// Every operation a [`Step`] is traced as ([`Step::op`]'s answers, kept
/// in step with it): the reads classification test checks each, since
/// its scan of the sources sees no operation computed at run time.
#[cfg(test)]
pub(crate) const STEP_OPS: &[&str] = &[
    "state",
    "peek",
    "report",
    "trial",
    "trial_done",
    "give_back_trial",
    "manual",
];

/// A policy as the script reads (and stores) it:
/// `c|t:<calls | span ns>:<failure bp>:<slow bp | n>:<minimum>:<open ns>:<max open ns>:<trials>:<quorum>:<quorum span ns>`.
fn policy_arg(p: &Policy) -> String {
    let (kind, size) = match p.window {
        WindowKind::Count { calls } => ('c', u64::from(calls)),
        WindowKind::Time { span } => ('t', nanos(span)),
    };
    let slow = p
        .slow_rate_bp
        .map_or_else(|| "n".to_owned(), |bp| bp.to_string());
    format!(
        "{kind}:{size}:{}:{slow}:{}:{}:{}:{}:{}:{}",
        p.failure_rate_bp,
        p.minimum_calls,
        nanos(p.open_for),
        nanos(p.max_open_for),
        p.trials,
        p.quorum,
        nanos(p.quorum_span),
    )
}

/// Whole nanoseconds (every duration of a checked policy is at most 24 h).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn parse_policy(s: &str) -> Option<Policy> {
    let mut f = s.split(':');
    let mut next = || f.next();
    let kind = next()?;
    let size: u64 = next()?.parse().ok()?;
    let window = match kind {
        "c" => WindowKind::Count {
            calls: u32::try_from(size).ok()?,
        },
        "t" => WindowKind::Time {
            span: Duration::from_nanos(size),
        },
        _ => return None,
    };
    let failure_rate_bp = next()?.parse().ok()?;
    let slow_rate_bp = match next()? {
        "n" => None,
        bp => Some(bp.parse().ok()?),
    };
    let minimum_calls = next()?.parse().ok()?;
    let mut duration = || Some(Duration::from_nanos(next()?.parse().ok()?));
    let open_for = duration()?;
    let max_open_for = duration()?;
    let trials = next()?.parse().ok()?;
    let quorum = next()?.parse().ok()?;
    let quorum_span = Duration::from_nanos(next()?.parse().ok()?);
    Some(Policy {
        window,
        failure_rate_bp,
        slow_rate_bp,
        minimum_calls,
        open_for,
        max_open_for,
        trials,
        quorum,
        quorum_span,
    })
}

fn phase_of(letter: &[u8]) -> Option<Phase> {
    Some(match letter {
        b"c" => Phase::Closed,
        b"o" => Phase::Open,
        b"h" => Phase::HalfOpen,
        b"f" => Phase::ForcedOpen,
        b"d" => Phase::Disabled,
        _ => return None,
    })
}

fn action_letter(action: Action) -> &'static str {
    match action {
        Action::ForceOpen => "f",
        Action::Disable => "d",
        _ => "r",
    }
}

/// `<action>:<at µs>:<by's length>:<by><why>`.
fn parse_manual(s: &str) -> Option<Manual> {
    let mut f = s.splitn(4, ':');
    let action = match f.next()? {
        "f" => Action::ForceOpen,
        "d" => Action::Disable,
        "r" => Action::Reset,
        _ => return None,
    };
    let at_us = f.next()?.parse().ok()?;
    let by_len: usize = f.next()?.parse().ok()?;
    let rest = f.next()?;
    let (by, why) = (rest.get(..by_len)?, rest.get(by_len..)?);
    Some(Manual::new(action, by.to_owned(), why.to_owned(), at_us))
}

/// `<calls>:<failures>:<slow>`.
fn parse_tally(s: &str) -> Option<Tally> {
    let mut f = s.split(':').map(|n| n.parse::<u64>().ok());
    let t = Tally::new(f.next()??, f.next()??, f.next()??);
    f.next().is_none().then_some(t)
}

/// `<generation>:<at µs>:<from>:<to>:<cause>:<tally | manual action>`.
fn parse_transition(s: &str) -> Option<Transition> {
    let mut f = s.splitn(6, ':');
    let generation = f.next()?.parse().ok()?;
    let at_us = f.next()?.parse().ok()?;
    let from = phase_of(f.next()?.as_bytes())?;
    let to = phase_of(f.next()?.as_bytes())?;
    let kind = f.next()?;
    let rest = f.next()?;
    let cause = match kind {
        "t" => Cause::Tripped(parse_tally(rest)?),
        "e" => Cause::OpenElapsed,
        "p" => Cause::TrialsPassed(parse_tally(rest)?),
        "x" => Cause::TrialsFailed(parse_tally(rest)?),
        "m" => Cause::Manual(parse_manual(rest)?),
        _ => return None,
    };
    Some(Transition::new(generation, from, to, cause, at_us))
}

/// `{flag, generation, phase, retry after µs (-1), window calls, failures,
/// slow, live trials, finished calls, failures, slow, opens, policy,
/// manual ('' none), kept after, born, transitions…}`: the flag (1 done or counted,
/// a trial's token, 0 not counted or refused) and the state.
fn state_reply(v: &Value) -> Option<(i64, BreakerState)> {
    let a = array(v)?;
    let [
        flag,
        generation,
        phase,
        retry,
        wc,
        wf,
        ws,
        live,
        dc,
        df,
        ds,
        opens,
        policy,
        manual,
        kept_after,
        born,
        log @ ..,
    ] = a
    else {
        return None;
    };
    let mut s = BreakerState::new(
        uint(generation)?,
        phase_of(bytes(phase)?)?,
        parse_policy(text(policy)?)?,
    );
    s.retry_after = u64::try_from(int(retry)?).ok().map(Duration::from_micros);
    s.window = Tally::new(uint(wc)?, uint(wf)?, uint(ws)?);
    s.trials_live = uint(live)?;
    s.trials_done = Tally::new(uint(dc)?, uint(df)?, uint(ds)?);
    s.opens = uint(opens)?;
    s.manual = match text(manual)? {
        "" => None,
        m => Some(parse_manual(m)?),
    };
    s.kept_after = uint(kept_after)?;
    s.born = uint(born)?;
    s.transitions = log
        .iter()
        .map(|t| parse_transition(text(t)?))
        .collect::<Option<_>>()?;
    Some((int(flag)?, s))
}

/// The trace of a step: done, counted or granted (with the token), or not
/// counted or refused.
fn traced(v: &Value) -> (&'static str, Option<u64>) {
    if let Value::Nil = v {
        return ("absent", None);
    }
    match array(v).and_then(|a| int(a.first()?)) {
        Some(0) => ("not_counted", None),
        Some(1) => ("ok", None),
        Some(t) => ("granted", u64::try_from(t).ok()),
        None => ("other", None),
    }
}

/// The `EVALSHA` of `step` on `name` by `script`: the keys, then op,
/// policy (empty for a peek, which names none), seen, and the step's
/// arguments.
fn step_eval(
    script: &'static Script,
    ns: &Namespace,
    name: &Key,
    policy: Option<&Policy>,
    seen: u64,
    step: Step<'_>,
) -> Eval {
    let mut names = breaker_names(ns, name);
    let policy = policy.map(policy_arg).unwrap_or_default();
    let extra = match step {
        Step::Manual { by, why, .. } => by.as_str().len() + why.len(),
        Step::Report { instance, .. } => instance.as_str().len(),
        Step::Trial { holder, .. }
        | Step::TrialDone { holder, .. }
        | Step::GiveBackTrial { holder, .. } => holder_len(Some(holder)),
        Step::State | Step::Peek => 0,
    };
    let bytes = PARTS.len() * names.len() + policy.len() + extra + 96;
    let mut eval = Eval::new(script, PARTS.len(), 8, bytes);
    for p in PARTS {
        names.write(&mut eval, p);
    }
    eval.arg(step.op()).arg(policy).arg(seen);
    match step {
        Step::State | Step::Peek => {}
        Step::Report {
            generation,
            instance,
            tally,
        } => {
            eval.arg(generation).arg(instance.as_str());
            eval.arg(tally.calls).arg(tally.failures).arg(tally.slow);
        }
        Step::Trial {
            holder,
            ttl,
            generation,
        } => {
            let us = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX);
            let generation = generation.map(|g| g.to_string()).unwrap_or_default();
            eval.holder(holder).arg(us).arg(generation);
        }
        Step::TrialDone {
            generation,
            holder,
            outcome,
        } => {
            eval.arg(generation).holder(holder);
            eval.arg(outcome.calls)
                .arg(outcome.failures)
                .arg(outcome.slow);
        }
        Step::GiveBackTrial { generation, holder } => {
            eval.arg(generation).holder(holder);
        }
        Step::Manual { action, by, why } => {
            eval.arg(action_letter(action)).arg(by.as_str()).arg(why);
        }
    }
    eval
}

impl RedisBackend {
    /// Runs `eval` (the step `call` traces) and reads its reply: `None`
    /// for a peek of a breaker with no record.
    async fn breaker_run(
        &self,
        eval: &Eval,
        call: Traced<'_>,
    ) -> Result<Option<(i64, BreakerState)>> {
        let reply: Value = self.eval(call, eval, traced).await?;
        match reply {
            Value::Nil if call.op == "peek" => Ok(None),
            reply => state_reply(&reply)
                .map(Some)
                .ok_or_else(|| self.unexpected(call, reply)),
        }
    }

    /// `step` on `name`, after checking `policy` (rule 1's limits).
    async fn breaker_step(
        &self,
        name: &Key,
        policy: &Policy,
        seen: u64,
        step: Step<'_>,
    ) -> Result<(i64, BreakerState)> {
        policy.check(name)?;
        let holder = match step {
            Step::Trial { holder, .. }
            | Step::TrialDone { holder, .. }
            | Step::GiveBackTrial { holder, .. } => Some(holder),
            _ => None,
        };
        let eval = step_eval(&BREAKER, self.namespace(), name, Some(policy), seen, step);
        let mut call = Traced::new(step.op(), FAMILY, name);
        if let Some(h) = holder {
            call = call.by(h);
        }
        (self.breaker_run(&eval, call).await?).ok_or_else(|| self.unexpected(call, Value::Nil))
    }

    /// A trial for `holder` (rule 5), in `generation` only when one is
    /// named (a renewal).
    async fn trial_step(
        &self,
        name: &Key,
        policy: &Policy,
        generation: Option<u64>,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        coord_api::validate_ttl(name, ttl)?;
        let step = Step::Trial {
            holder,
            ttl,
            generation,
        };
        let (granted, state) = self.breaker_step(name, policy, seen, step).await?;
        Ok(if granted > 0 {
            Trial::Granted {
                token: token(granted),
                state,
            }
        } else {
            Trial::Refused(state)
        })
    }
}

#[async_trait]
impl BreakerBackend for RedisBackend {
    async fn state(&self, name: &Key, policy: &Policy, seen: u64) -> Result<BreakerState> {
        let (_, s) = self.breaker_step(name, policy, seen, Step::State).await?;
        Ok(s)
    }

    async fn peek(&self, name: &Key, seen: u64) -> Result<Option<BreakerState>> {
        let eval = step_eval(&BREAKER, self.namespace(), name, None, seen, Step::Peek);
        let call = Traced::new("peek", FAMILY, name);
        Ok(self.breaker_run(&eval, call).await?.map(|(_, s)| s))
    }

    async fn report(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        instance: &InstanceId,
        tally: Tally,
        seen: u64,
    ) -> Result<Reported> {
        tally.check(name)?;
        let step = Step::Report {
            generation,
            instance,
            tally,
        };
        let (counted, s) = self.breaker_step(name, policy, seen, step).await?;
        Ok(Reported::new(counted == 1, s))
    }

    async fn trial(
        &self,
        name: &Key,
        policy: &Policy,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        self.trial_step(name, policy, None, holder, ttl, seen).await
    }

    async fn renew_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        (self.trial_step(name, policy, Some(generation), holder, ttl, seen)).await
    }

    async fn trial_done(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        outcome: Tally,
        seen: u64,
    ) -> Result<Reported> {
        outcome.check_one(name)?;
        let step = Step::TrialDone {
            generation,
            holder,
            outcome,
        };
        let (counted, s) = self.breaker_step(name, policy, seen, step).await?;
        Ok(Reported::new(counted == 1, s))
    }

    async fn give_back_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        seen: u64,
    ) -> Result<Reported> {
        let step = Step::GiveBackTrial { generation, holder };
        let (given, s) = self.breaker_step(name, policy, seen, step).await?;
        Ok(Reported::new(given == 1, s))
    }

    async fn manual(
        &self,
        name: &Key,
        policy: &Policy,
        action: Action,
        by: &InstanceId,
        why: &str,
        seen: u64,
    ) -> Result<BreakerState> {
        check_why(name, why)?;
        let step = Step::Manual { action, by, why };
        let (_, s) = self.breaker_step(name, policy, seen, step).await?;
        Ok(s)
    }

    async fn watch(&self, name: &Key) -> Result<Box<dyn Watch>> {
        let channel = breaker_names(self.namespace(), name).name('c');
        let span = self.span(&Traced::new("subscribe", FAMILY, name));
        let watch = self.hub().subscribe(channel).instrument(span).await?;
        Ok(Box::new(watch))
    }
}

#[cfg(test)]
mod tests;
