//! Job graphs on Redis ([`GraphBackend`]): one EVALSHA of `graph.lua` (after
//! the prelude) per operation, so every step of the rules in
//! [`coord_api::spi::graphs`] (the sweep of expired leases, a take, a
//! completion and the resolution of every dependent it decides, a
//! cancellation, the end of a run) is one atomic step on the server's clock.
//!
//! A graph keeps two sorted sets over all its runs, both of members
//! `<run's byte length>:<run>/<node>`: the ready nodes by ready time and the
//! running attempts by lease deadline. A take pops the first ready member (it
//! goes back when its time is still to come), a sweep first looks at the
//! earliest deadline alone: O(log n) each, never a walk over nodes. A run is
//! one hash: its counters, its spec as submitted, and per node (fields named
//! by the node) a static field (attempts, failure policy, parents, children
//! with their edge conditions) and a state field that also counts the node's
//! edges not yet satisfied, so that ending a node resolves each child in O(1)
//! (no parent is read again), and a completion reads its run and node in one
//! HMGET. Results, errors, workers (and the holder of the latest take, which
//! a give-back names, and the token and state the last completion left,
//! which tell that completion sent again) and the skipping node's name are
//! fields of their own, so a take reads its parents' outcomes with one HMGET. A step
//! writes each run it changed with one HSET at its end. Tokens come from the
//! prelude's `next_token` on the graph's counter (every run of the graph
//! draws from it), timestamps from `TIME` (µs), deadlines and ready times in
//! server ms.
//!
//! A step that made a node ready PUBLISHes on the graph's channel
//! ([`watch_ready`](GraphBackend::watch_ready)), unless it took every node
//! it made ready (a completion that took the next node); a step that
//! changed a node of a run PUBLISHes on the run's channel
//! ([`watch_run`](GraphBackend::watch_run)). Retry delays and lease
//! deadlines pass silently: [`Take::Idle`] says when to look again. Every
//! watch wakes on every message (rule 9); the workers of one `Graph` in a
//! process share one watch and wake each other one at a time (coord-api's
//! `graphs/ready.rs`), so a message costs one take per process, not one
//! per idle worker.
//!
//! A sweep handles every due lease of the graph in its step (no bound): a
//! step never sees an expired lease as running.
//!
//! # Key layout
//!
//! Every key of a graph, all its runs included, shares the tag
//! `{<ns>:graph:<len>:<graph>}` (one Redis Cluster slot per graph, so a take
//! spans runs); `<len>`, the graph's byte length, keeps `(graph, run)` pairs
//! apart whatever characters they hold, as for jobs.
//!
//! ```text
//! coord:{<ns>:graph:<len>:<graph>}:q         ready zset: <run len>:<run>/<node> -> ready time (server ms)
//! coord:{<ns>:graph:<len>:<graph>}:l         running zset: <run len>:<run>/<node> -> lease deadline (server ms)
//! coord:{<ns>:graph:<len>:<graph>}:t         token counter (next_token), kept KEEP_MS past a take's lease
//! coord:{<ns>:graph:<len>:<graph>}:c         channel: a node may have become ready
//! coord:{<ns>:graph:<len>:<graph>}:<run>:h   run record hash (fields: see graph.lua); PEXPIRE = retention once ended
//! coord:{<ns>:graph:<len>:<graph>}:<run>:c   channel: a node of the run changed
//! ```
//!
//! **Key lifetimes.** A run's record lives while the run does and for its
//! retention after it ended (its nodes leave both sorted sets as they end,
//! and a sorted set left empty is gone); a submission after that makes the
//! run anew. The token counter lives one `MAX_TTL` past the latest take's
//! lease (a renewal does not move it, as for locks; were it gone, the clock
//! alone keeps tokens increasing).
//!
//! **The spec's encoding** is canonical (equal specs, equal bytes), which is
//! what [`Submit::Exists`]'s `same_graph` compares: per node, in declaration
//! order, `<name>\t<max attempts>\t<c|r>\t<edges>\n`, the edges
//! `<parent index><s|f|a>` joined by `,` (names hold no control character).

use std::{sync::LazyLock, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, HolderId, InstanceId, Key, Namespace, Result,
    spi::{
        Backend, Cancel, Complete, GraphBackend, GraphSpec, MAX_RESULT_BYTES, NodeResult,
        NodeState, NodeStatus, On, OnFailure, Outcome, Renew, RunState, RunStatus, Submit, Take,
        Taken, Watch, graphs::cut_error,
    },
};
use redis::{Script, Value};
use tracing::Instrument;

use crate::{
    RedisBackend,
    eval::{Eval, Traced, millis, script, ttl_ms, wall},
    keys::Names,
};

pub(crate) static GRAPH: LazyLock<Script> = script!("graphs/graph.lua");

/// A graph's key parts, in script order (the graph's channel is `c`); a
/// run's record (`h`) follows them for the operations naming a run.
const PARTS: [char; 3] = ['q', 'l', 't'];

/// The trace family (and key space) of job graphs.
const FAMILY: &str = "graph";

/// The longest retry delay passed to the script (about 35 years): server
/// milliseconds stay exact in Lua's doubles.
const MAX_RETRY_MS: u64 = 1 << 40;

/// The names of `graph`'s own keys and channel.
fn graph_names(ns: &Namespace, graph: &Key) -> Names {
    let len = graph.as_str().len().to_string();
    Names::new(ns, &[FAMILY, &len, graph.as_str()], &[])
}

/// The names of run `run` of `graph`.
fn run_names(ns: &Namespace, graph: &Key, run: &Key) -> Names {
    let len = graph.as_str().len().to_string();
    Names::new(ns, &[FAMILY, &len, graph.as_str()], &[run.as_str()])
}

/// `op` of the graph script on `graph` (and `run`, whose record is then the
/// fourth key): the EVALSHA with the keys, the operation and the run written,
/// with room for `args` more arguments of `extra` bytes.
fn graph_eval(
    ns: &Namespace,
    graph: &Key,
    run: Option<&Key>,
    op: &'static str,
    args: usize,
    extra: usize,
) -> Eval {
    let mut names = graph_names(ns, graph);
    let mut run_keys = run.map(|r| run_names(ns, graph, r));
    let run_len = run.map_or(0, |r| r.as_str().len());
    let keys = PARTS.len() + usize::from(run.is_some());
    let bytes =
        PARTS.len() * names.len() + run_keys.as_ref().map_or(0, Names::len) + run_len + extra + 16;
    let mut eval = Eval::new(&GRAPH, keys, 2 + args, bytes);
    for p in PARTS {
        names.write(&mut eval, p);
    }
    if let Some(r) = &mut run_keys {
        r.write(&mut eval, 'h');
    }
    eval.arg(op).arg(run.map_or("", Key::as_str));
    eval
}

/// The canonical encoding of `spec` (see the module's description); `None`
/// when it holds an edge condition or a failure policy this backend does not
/// know.
fn encode_spec(spec: &GraphSpec) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut out = Vec::with_capacity(spec.nodes().len() * 24);
    for n in spec.nodes() {
        let policy = match n.on_failure {
            OnFailure::Continue => 'c',
            OnFailure::CancelRun => 'r',
            _ => return None,
        };
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}\t{}\t{policy}\t", n.name, n.max_attempts);
        for (k, e) in n.after.iter().enumerate() {
            let on = match e.on {
                On::Success => 's',
                On::Failure => 'f',
                On::Any => 'a',
                _ => return None,
            };
            let sep = if k == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{}{on}", e.from);
        }
        out.push(b'\n');
    }
    Some(out)
}

/// A retry delay in whole milliseconds, rounded up.
fn retry_ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .min(MAX_RETRY_MS)
}

/// A result no larger than [`MAX_RESULT_BYTES`], else `InvalidArgument`
/// naming the graph, run, node and limit.
fn check_result(graph: &Key, run: &Key, node: &Key, result: &NodeResult) -> Result<()> {
    if let NodeResult::Success(bytes) = result
        && bytes.len() > MAX_RESULT_BYTES
    {
        return Err(Error::invalid(format!(
            "graph {:?} run {:?} node {:?}: a result of {} bytes is over the limit of \
             {MAX_RESULT_BYTES} bytes",
            graph.as_str(),
            run.as_str(),
            node.as_str(),
            bytes.len()
        )));
    }
    Ok(())
}

// Reading replies: `None` is a reply the script never gives.

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

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(v)?).ok()
}

fn key(v: &Value) -> Option<Key> {
    Key::new(text(v)?).ok()
}

/// A text field that may be absent (`Nil`).
fn opt_text(v: &Value) -> Option<Option<String>> {
    match v {
        Value::Nil => Some(None),
        v => text(v).map(|s| Some(s.to_owned())),
    }
}

fn node_state(letter: &str) -> Option<NodeState> {
    Some(match letter {
        "P" => NodeState::Pending,
        "R" => NodeState::Ready,
        "U" => NodeState::Running,
        "S" => NodeState::Succeeded,
        "F" => NodeState::Failed,
        "K" => NodeState::Skipped,
        "C" => NodeState::Cancelled,
        _ => return None,
    })
}

fn run_state(letter: &str) -> Option<RunState> {
    Some(match letter {
        "R" => RunState::Running,
        "S" => RunState::Succeeded,
        "F" => RunState::Failed,
        "C" => RunState::Cancelled,
        _ => return None,
    })
}

/// `[tag, rest…]` of a tagged reply.
fn tag(v: &Value) -> Option<(&str, &[Value])> {
    let (first, rest) = array(v)?.split_first()?;
    Some((text(first)?, rest))
}

/// The trace of a reply tagged by its first element.
fn tagged(v: &Value) -> (&'static str, Option<u64>) {
    const TAGS: [&str; 8] = [
        "created",
        "exists",
        "idle",
        "recorded",
        "stale",
        "cancelled",
        "ended",
        "absent",
    ];
    match tag(v) {
        Some(("taken", [_, _, _, t, ..])) => ("taken", int(t).map(|t| t.max(0) as u64)),
        Some((t, _)) => (TAGS.into_iter().find(|x| *x == t).unwrap_or("other"), None),
        None => ("other", None),
    }
}

fn submit_reply(v: &Value) -> Option<Submit> {
    Some(match tag(v)? {
        ("created", []) => Submit::Created,
        ("exists", [same]) => Submit::Exists {
            same_graph: int(same)? == 1,
        },
        _ => return None,
    })
}

/// `{name, state letter, detail}` per parent, flattened.
fn outcomes(v: &Value) -> Option<Vec<(Key, Outcome)>> {
    array(v)?
        .chunks(3)
        .map(|c| match c {
            [name, st, detail] => Some((
                key(name)?,
                match text(st)? {
                    "S" => Outcome::Succeeded(bytes(detail)?.to_vec()),
                    "F" => Outcome::Failed(text(detail)?.to_owned()),
                    "K" => Outcome::Skipped(key(detail)?),
                    "C" => Outcome::Cancelled,
                    _ => return None,
                },
            )),
            _ => None,
        })
        .collect()
}

fn take_reply(v: &Value) -> Option<Take> {
    Some(match tag(v)? {
        ("taken", [run, node, attempt, tok, parents]) => Take::Taken(Box::new(Taken::new(
            key(run)?,
            key(node)?,
            u32::try_from(int(attempt)?).ok()?,
            FencingToken(u64::try_from(int(tok)?).ok()?),
            outcomes(parents)?,
        ))),
        ("idle", [next]) => Take::Idle {
            next_in: millis(int(next)?),
        },
        _ => return None,
    })
}

fn complete_reply(v: &Value) -> Option<Complete> {
    Some(match tag(v)? {
        ("recorded", [node, run, next @ ..]) => Complete::Recorded {
            state: node_state(text(node)?)?,
            run: run_state(text(run)?)?,
            next: match next {
                [] => None,
                [take] => Some(take_reply(take)?),
                _ => return None,
            },
        },
        ("already", [node]) => Complete::Already {
            state: node_state(text(node)?)?,
        },
        ("stale", [node]) => Complete::Stale {
            state: match text(node)? {
                "" => None,
                s => Some(node_state(s)?),
            },
        },
        _ => return None,
    })
}

fn cancel_reply(v: &Value) -> Option<Cancel> {
    Some(match tag(v)? {
        ("cancelled", [n]) => Cancel::Cancelled {
            running: u32::try_from(int(n)?).ok()?,
        },
        ("ended", [st]) => Cancel::AlreadyEnded(run_state(text(st)?)?),
        ("absent", []) => Cancel::NotFound,
        _ => return None,
    })
}

/// A server instant in µs, `None` for 0 (never).
fn instant(v: &Value) -> Option<Option<std::time::SystemTime>> {
    Some(match int(v)? {
        0 => None,
        us => Some(wall(us)),
    })
}

/// `{name, state, attempts, token (0: none), worker, ms to expiry (-1),
/// ms until takeable (-1), started µs (0), ended µs (0), error, by,
/// result}`.
fn node_row(v: &Value) -> Option<NodeStatus> {
    let [
        name,
        st,
        attempts,
        tok,
        worker,
        expires,
        ready,
        started,
        ended,
        error,
        by,
        result,
    ] = array(v)?
    else {
        return None;
    };
    let mut n = NodeStatus::new(key(name)?, node_state(text(st)?)?);
    n.attempts = u32::try_from(int(attempts)?).ok()?;
    n.token = match int(tok)? {
        0 => None,
        t => Some(FencingToken(u64::try_from(t).ok()?)),
    };
    n.worker = match opt_text(worker)? {
        None => None,
        Some(w) => Some(InstanceId::new(&w).ok()?),
    };
    n.expires_in = millis(int(expires)?);
    n.ready_in = millis(int(ready)?);
    n.started_at = instant(started)?;
    n.ended_at = instant(ended)?;
    n.error = opt_text(error)?;
    n.by = match opt_text(by)? {
        None => None,
        Some(b) => Some(Key::new(&b).ok()?),
    };
    n.result = match result {
        Value::Nil => None,
        r => Some(bytes(r)?.to_vec()),
    };
    Some(n)
}

/// `{}` (no run) or `{state, transitions, reason, submitted µs, ended µs
/// (0), node rows…}`.
fn status_reply(v: &Value) -> Option<Option<RunStatus>> {
    let all = array(v)?;
    if all.is_empty() {
        return Some(None);
    }
    let [st, tr, why, submitted, ended, rows @ ..] = all else {
        return None;
    };
    let nodes = rows.iter().map(node_row).collect::<Option<Vec<_>>>()?;
    let mut s = RunStatus::new(
        run_state(text(st)?)?,
        nodes,
        u64::try_from(int(tr)?).ok()?,
        instant(submitted)??,
    );
    s.cancelled = opt_text(why)?;
    s.ended_at = instant(ended)?;
    Some(Some(s))
}

impl RedisBackend {
    /// Runs `eval` for `call` and decodes its reply with `decode`.
    async fn graph_call<T>(
        &self,
        call: Traced<'_>,
        eval: &Eval,
        decode: fn(&Value) -> Option<T>,
    ) -> Result<T> {
        let reply: Value = self.eval(call, eval, tagged).await?;
        decode(&reply).ok_or_else(|| self.unexpected(call, reply))
    }

    fn unknown_variant(&self, what: &'static str) -> Error {
        Error::NotSupported {
            operation: what,
            backend: self.to_string(),
        }
    }

    /// A plain watch on `channel` (the steps PUBLISH every change it is
    /// about; nothing passes by expiry alone).
    async fn graph_watch(&self, graph: &Key, channel: String) -> Result<Box<dyn Watch>> {
        let span = self.span(&Traced::new("subscribe", FAMILY, graph));
        let watch = self.hub().subscribe(channel).instrument(span).await?;
        Ok(Box::new(watch))
    }
}

#[async_trait]
impl GraphBackend for RedisBackend {
    async fn submit(
        &self,
        graph: &Key,
        run: &Key,
        spec: &GraphSpec,
        retention: Duration,
    ) -> Result<Submit> {
        let retention = ttl_ms(run, retention)?;
        let spec = encode_spec(spec).ok_or_else(|| self.unknown_variant("graph spec"))?;
        let mut eval = graph_eval(
            self.namespace(),
            graph,
            Some(run),
            "submit",
            2,
            spec.len() + 20,
        );
        eval.arg_bytes(&spec).arg(retention);
        self.graph_call(Traced::new("submit", FAMILY, graph), &eval, submit_reply)
            .await
    }

    async fn take(&self, graph: &Key, holder: &HolderId, ttl: Duration) -> Result<Take> {
        let ttl = ttl_ms(graph, ttl)?;
        let worker = holder.instance().as_str();
        let extra = worker.len() + crate::eval::holder_len(Some(holder)) + 20;
        let mut eval = graph_eval(self.namespace(), graph, None, "take", 3, extra);
        eval.arg(worker).arg(ttl).holder(holder);
        let call = Traced::new("take", FAMILY, graph).by(holder);
        self.graph_call(call, &eval, take_reply).await
    }

    async fn renew(
        &self,
        graph: &Key,
        run: &Key,
        node: &Key,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Renew> {
        let ttl = ttl_ms(graph, ttl)?;
        let n = node.as_str();
        let mut eval = graph_eval(self.namespace(), graph, Some(run), "renew", 3, n.len() + 40);
        eval.arg(n).arg(token.get()).arg(ttl);
        let call = Traced::new("renew", FAMILY, graph);
        let reply: i64 = self
            .eval(call, &eval, |r: &i64| {
                let what = match r {
                    1 => "renewed",
                    2 => "cancelled",
                    _ => "lost",
                };
                (what, None)
            })
            .await?;
        match reply {
            1 => Ok(Renew::Renewed),
            2 => Ok(Renew::Cancelled),
            0 => Ok(Renew::Lost),
            other => Err(self.unexpected(call, other)),
        }
    }

    async fn complete(
        &self,
        graph: &Key,
        run: &Key,
        node: &Key,
        token: FencingToken,
        result: NodeResult,
        next: Option<(HolderId, Duration)>,
    ) -> Result<Complete> {
        check_result(graph, run, node, &result)?;
        let next = match &next {
            Some((holder, ttl)) => Some((holder, ttl_ms(graph, *ttl)?)),
            None => None,
        };
        let n = node.as_str();
        let (kind, payload, retry): (&str, &[u8], String) = match &result {
            NodeResult::Success(bytes) => ("s", bytes, String::new()),
            NodeResult::Failure { error, retry_in } => (
                "f",
                cut_error(error).as_bytes(),
                retry_in
                    .map(|d| retry_ms(d).to_string())
                    .unwrap_or_default(),
            ),
            _ => return Err(self.unknown_variant("node result")),
        };
        let taker = next.map_or(0, |(h, _)| {
            h.instance().as_str().len() + crate::eval::holder_len(Some(h)) + 20
        });
        let extra = n.len() + payload.len() + retry.len() + 24 + taker;
        let args = if next.is_some() { 8 } else { 5 };
        let mut eval = graph_eval(self.namespace(), graph, Some(run), "complete", args, extra);
        eval.arg(n)
            .arg(token.get())
            .arg(kind)
            .arg_bytes(payload)
            .arg(retry);
        if let Some((holder, ttl)) = next {
            eval.arg(holder.instance().as_str()).arg(ttl).holder(holder);
        }
        self.graph_call(
            Traced::new("complete", FAMILY, graph),
            &eval,
            complete_reply,
        )
        .await
    }

    async fn give_back(&self, graph: &Key, holder: &HolderId) -> Result<u32> {
        let extra = crate::eval::holder_len(Some(holder));
        let mut eval = graph_eval(self.namespace(), graph, None, "giveback", 1, extra);
        eval.holder(holder);
        let call = Traced::new("give_back", FAMILY, graph).by(holder);
        let n: i64 = self.eval(call, &eval, crate::eval::ok).await?;
        Ok(crate::eval::count(n, 0))
    }

    async fn cancel(&self, graph: &Key, run: &Key, reason: &str) -> Result<Cancel> {
        let reason = cut_error(reason);
        let mut eval = graph_eval(
            self.namespace(),
            graph,
            Some(run),
            "cancel",
            1,
            reason.len(),
        );
        eval.arg(reason);
        self.graph_call(Traced::new("cancel", FAMILY, graph), &eval, cancel_reply)
            .await
    }

    async fn status(&self, graph: &Key, run: &Key, results: bool) -> Result<Option<RunStatus>> {
        let mut eval = graph_eval(self.namespace(), graph, Some(run), "status", 1, 1);
        eval.arg(if results { "1" } else { "0" });
        self.graph_call(Traced::new("status", FAMILY, graph), &eval, status_reply)
            .await
    }

    async fn watch_ready(&self, graph: &Key) -> Result<Box<dyn Watch>> {
        let channel = graph_names(self.namespace(), graph).name('c');
        self.graph_watch(graph, channel).await
    }

    async fn watch_run(&self, graph: &Key, run: &Key) -> Result<Box<dyn Watch>> {
        let channel = run_names(self.namespace(), graph, run).name('c');
        self.graph_watch(graph, channel).await
    }
}

#[cfg(test)]
mod tests;
