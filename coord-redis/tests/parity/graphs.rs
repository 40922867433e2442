//! Memory and Redis answer the same: random sequences of `GraphBackend`
//! calls (submissions of random graphs of up to four nodes, with every
//! edge condition, several attempts and both failure policies, new or
//! again with the same spec or another; takes and give-backs by three
//! workers and an earlier incarnation of one; renewals and completions
//! naming the node's latest attempt, an earlier token or one never drawn,
//! succeeding or failing with or without a retry, asking for the next node
//! or not; cancellations; statuses with and without results) run against
//! a fresh `MemoryStore` and against Redis, on one graph per case, answer
//! by answer. Leases are long (20 to 60 s) or of a millisecond, then over
//! at the next step on both backends: every answer must be the same,
//! tokens compared by order (each backend's labelled by the take that drew
//! them), instants (submitted, started, ended) by order too, times left in
//! whole seconds.
//!
//! The run waits [`STEP_WAIT`] after every step: a take picks the node
//! ready longest, and Redis keeps ready times in milliseconds (ties go to
//! the member's name) where memory keeps instants (ties go to the run
//! submitted first, then the node declared first). Runs are named in
//! submission order and nodes in declaration order, so the two agree on
//! ties within one step; the wait keeps nodes made ready by two steps in
//! two milliseconds.
//!
//! A sequence that differs is kept as a regular `#[tokio::test]` below
//! the property (replayed by `run` on a backend of its own), once fixed.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use coord_api::{
    FencingToken, HolderId, InstanceId, Key, Namespace,
    spi::{
        Cancel, Complete, Edge, GraphBackend, GraphSpec, NodeResult, NodeSpec, NodeState, On,
        OnFailure, Outcome, Renew, RunState, RunStatus, Submit, Take,
    },
};
use coord_memory::MemoryStore;
use coord_redis::RedisBackend;
use proptest::prelude::*;

use super::{Nth, PROPERTY, Seen, Ttl, config, error_variant, next_run, secs, ttl};

/// Holders 0..3 are three instances; holder 3 is holder 0's instance with
/// another nonce (an earlier incarnation).
const HOLDERS: usize = 4;

/// How long the run waits after every step (see the module's description):
/// a lease of [`Ttl::Ms1`] is over by then too.
const STEP_WAIT: Duration = Duration::from_millis(2);

/// A node: its edges (parent index below its own, condition), max
/// attempts, whether its failure cancels the run.
type NodeGen = (Vec<(u32, On)>, u32, bool);

fn on() -> impl Strategy<Value = On> {
    prop_oneof![3 => Just(On::Success), 1 => Just(On::Failure), 1 => Just(On::Any)]
}

/// A graph of 1 to 4 nodes named `n0`.. in declaration order, each with
/// edges from earlier nodes only (so no cycle).
fn spec() -> impl Strategy<Value = Vec<NodeGen>> {
    (1usize..=4).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                let parents =
                    proptest::sample::subsequence((0..i as u32).collect::<Vec<_>>(), 0..=i);
                let edges = parents.prop_flat_map(|ps| {
                    let k = ps.len();
                    (Just(ps), proptest::collection::vec(on(), k))
                        .prop_map(|(ps, ons)| ps.into_iter().zip(ons).collect::<Vec<_>>())
                });
                (
                    edges,
                    1u32..=3,
                    prop_oneof![4 => Just(false), 1 => Just(true)],
                )
            })
            .collect::<Vec<_>>()
    })
}

fn build(graph: &Key, shape: &[NodeGen]) -> GraphSpec {
    let nodes = shape
        .iter()
        .enumerate()
        .map(|(i, (edges, attempts, cancel))| {
            let after = edges
                .iter()
                .map(|&(from, on)| Edge::new(from, on))
                .collect();
            let policy = if *cancel {
                OnFailure::CancelRun
            } else {
                OnFailure::Continue
            };
            NodeSpec::new(node(i))
                .after(after)
                .max_attempts(*attempts)
                .on_failure(policy)
        });
    GraphSpec::new(graph, nodes.collect()).expect("a valid spec")
}

fn node(i: usize) -> Key {
    Key::new(&format!("n{i}")).unwrap()
}

/// A token as a call names it: the latest this side drew for the node, the
/// n-th latest of the graph, or one never drawn.
#[derive(Debug, Clone, Copy)]
enum TokRef {
    Node,
    Back(usize),
    Never,
}

fn tok_ref() -> impl Strategy<Value = TokRef> {
    prop_oneof![
        8 => Just(TokRef::Node),
        2 => (0usize..3).prop_map(TokRef::Back),
        1 => Just(TokRef::Never),
    ]
}

/// What a completion sends.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Success(u8),
    /// The error is long (over what is kept) or not; the retry delay.
    Failure(bool, Option<Ttl>),
}

fn result() -> impl Strategy<Value = Sent> {
    let retry = prop_oneof![
        2 => Just(None),
        2 => Just(Some(Ttl::Zero)),
        1 => Just(Some(Ttl::Ms1)),
        1 => Just(Some(Ttl::S60)),
    ];
    prop_oneof![
        3 => any::<u8>().prop_map(Sent::Success),
        2 => (prop_oneof![4 => Just(false), 1 => Just(true)], retry)
            .prop_map(|(long, r)| Sent::Failure(long, r)),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// A new run of this spec, kept for this retention.
    Submit(Vec<NodeGen>, Ttl),
    /// Run `i` (wrapping) submitted again, with its own spec or this one.
    Again(usize, Option<Vec<NodeGen>>),
    Take(usize, Ttl),
    GiveBack(usize),
    /// Run, node (both wrapping), token, TTL.
    Renew(usize, usize, TokRef, Ttl),
    /// Run, node, token, what it sends, the next node for a holder.
    Complete(usize, usize, TokRef, Sent, Option<(usize, Ttl)>),
    /// Run, a reason over what is kept.
    Cancel(usize, bool),
    /// Run, with results.
    Status(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let (r, n, h) = (0usize..4, 0usize..4, 0..HOLDERS);
    prop_oneof![
        4 => (spec(), ttl()).prop_map(|(s, t)| Op::Submit(s, t)),
        1 => (r.clone(), proptest::option::of(spec())).prop_map(|(r, s)| Op::Again(r, s)),
        8 => (h.clone(), ttl()).prop_map(|(h, t)| Op::Take(h, t)),
        2 => h.clone().prop_map(Op::GiveBack),
        2 => (r.clone(), n.clone(), tok_ref(), ttl()).prop_map(|(r, n, k, t)| Op::Renew(r, n, k, t)),
        8 => (r.clone(), n, tok_ref(), result(), proptest::option::of((h, ttl())))
            .prop_map(|(r, n, k, o, next)| Op::Complete(r, n, k, o, next)),
        1 => (r.clone(), any::<bool>()).prop_map(|(r, long)| Op::Cancel(r, long)),
        4 => (r, any::<bool>()).prop_map(|(r, results)| Op::Status(r, results)),
    ]
}

/// A node taken: run, node, attempt, token, parents.
type TakenRow = (Key, Key, u32, Nth, Vec<(Key, Outcome)>);

/// A node's status as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeRow {
    name: Key,
    state: NodeState,
    attempts: u32,
    token: Option<Nth>,
    worker: Option<InstanceId>,
    expires_s: Option<u64>,
    ready_s: Option<u64>,
    started: Option<Nth>,
    ended: Option<Nth>,
    error: Option<(usize, String)>,
    by: Option<Key>,
    result: Option<Vec<u8>>,
}

/// A run's status as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunRow {
    state: RunState,
    nodes: Vec<NodeRow>,
    transitions: u64,
    cancelled: Option<(usize, String)>,
    submitted: Nth,
    ended: Option<Nth>,
}

/// An answer, as comparable across backends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Created,
    Exists(bool),
    Taken(TakenRow),
    Idle(Option<u64>),
    GivenBack(u32),
    Renewed,
    RenewCancelled,
    Lost,
    Recorded(NodeState, RunState, Option<Box<Answer>>),
    Stale(Option<NodeState>),
    Already(NodeState),
    Cancelled(u32),
    AlreadyEnded(RunState),
    NotFound,
    Status(Option<RunRow>),
    /// The error's variant, or an answer this test does not know.
    Error(String),
}

fn error(e: coord_api::Error) -> Answer {
    Answer::Error(error_variant(&e))
}

fn unknown(what: impl std::fmt::Debug) -> Answer {
    Answer::Error(format!("unknown answer {what:?}"))
}

/// A text as compared: its length and first characters.
fn text(t: &str) -> (usize, String) {
    (t.len(), t.chars().take(8).collect())
}

/// One case's names and the runs submitted so far (the same on both sides).
struct Case {
    graph: Key,
    holders: Vec<HolderId>,
    runs: Vec<(Key, GraphSpec)>,
}

/// One backend under test, with what it answered so far.
struct Side<'a> {
    backend: &'a dyn GraphBackend,
    tokens: Seen<u64>,
    /// The latest token taken for each (run, node).
    latest: HashMap<(Key, Key), u64>,
    instants: Seen<SystemTime>,
}

/// A call, resolved against the case's runs (the same on both sides).
enum Call {
    Submit(Key, GraphSpec, Duration),
    Take(HolderId, Duration),
    GiveBack(HolderId),
    Renew(Key, Key, TokRef, Duration),
    Complete(Key, Key, TokRef, NodeResult, Option<(HolderId, Duration)>),
    Cancel(Key, String),
    Status(Key, bool),
}

impl Side<'_> {
    fn token(&self, run: &Key, node: &Key, r: TokRef) -> FencingToken {
        let seen = &self.tokens.0;
        FencingToken(match r {
            TokRef::Node => self
                .latest
                .get(&(run.clone(), node.clone()))
                .copied()
                .unwrap_or(1),
            TokRef::Back(n) if !seen.is_empty() => seen[seen.len() - 1 - n % seen.len()],
            _ => 1,
        })
    }

    fn take(&mut self, t: Take) -> Answer {
        match t {
            Take::Taken(t) => {
                self.latest
                    .insert((t.run.clone(), t.node.clone()), t.token.get());
                let token = self.tokens.label(t.token.get());
                Answer::Taken((t.run, t.node, t.attempt, token, t.parents))
            }
            Take::Idle { next_in } => Answer::Idle(next_in.map(secs)),
            other => unknown(other),
        }
    }

    fn status(&mut self, s: Option<RunStatus>) -> Answer {
        let Some(s) = s else {
            return Answer::Status(None);
        };
        let submitted = self.instants.label(s.submitted_at);
        let nodes = s.nodes.into_iter().map(|n| NodeRow {
            name: n.name,
            state: n.state,
            attempts: n.attempts,
            token: n.token.map(|t| self.tokens.label(t.get())),
            worker: n.worker,
            expires_s: n.expires_in.map(secs),
            ready_s: n.ready_in.map(secs),
            started: n.started_at.map(|t| self.instants.label(t)),
            ended: n.ended_at.map(|t| self.instants.label(t)),
            error: n.error.as_deref().map(text),
            by: n.by,
            result: n.result,
        });
        let nodes = nodes.collect();
        Answer::Status(Some(RunRow {
            state: s.state,
            nodes,
            transitions: s.transitions,
            cancelled: s.cancelled.as_deref().map(text),
            submitted,
            ended: s.ended_at.map(|t| self.instants.label(t)),
        }))
    }

    async fn apply(&mut self, graph: &Key, call: &Call) -> Answer {
        let b = self.backend;
        match call {
            Call::Submit(run, spec, retention) => {
                match b.submit(graph, run, spec, *retention).await {
                    Ok(Submit::Created) => Answer::Created,
                    Ok(Submit::Exists { same_graph }) => Answer::Exists(same_graph),
                    Ok(other) => unknown(other),
                    Err(e) => error(e),
                }
            }
            Call::Take(holder, ttl) => match b.take(graph, holder, *ttl).await {
                Ok(t) => self.take(t),
                Err(e) => error(e),
            },
            Call::GiveBack(holder) => b
                .give_back(graph, holder)
                .await
                .map_or_else(error, Answer::GivenBack),
            Call::Renew(run, node, r, ttl) => {
                let token = self.token(run, node, *r);
                match b.renew(graph, run, node, token, *ttl).await {
                    Ok(Renew::Renewed) => Answer::Renewed,
                    Ok(Renew::Cancelled) => Answer::RenewCancelled,
                    Ok(Renew::Lost) => Answer::Lost,
                    Ok(other) => unknown(other),
                    Err(e) => error(e),
                }
            }
            Call::Complete(run, node, r, result, next) => {
                let token = self.token(run, node, *r);
                match b
                    .complete(graph, run, node, token, result.clone(), next.clone())
                    .await
                {
                    Ok(Complete::Recorded { state, run, next }) => {
                        let next = next.map(|t| Box::new(self.take(t)));
                        Answer::Recorded(state, run, next)
                    }
                    Ok(Complete::Stale { state }) => Answer::Stale(state),
                    Ok(Complete::Already { state }) => Answer::Already(state),
                    Ok(other) => unknown(other),
                    Err(e) => error(e),
                }
            }
            Call::Cancel(run, reason) => match b.cancel(graph, run, reason).await {
                Ok(Cancel::Cancelled { running }) => Answer::Cancelled(running),
                Ok(Cancel::AlreadyEnded(state)) => Answer::AlreadyEnded(state),
                Ok(Cancel::NotFound) => Answer::NotFound,
                Ok(other) => unknown(other),
                Err(e) => error(e),
            },
            Call::Status(run, results) => match b.status(graph, run, *results).await {
                Ok(s) => self.status(s),
                Err(e) => error(e),
            },
        }
    }
}

impl Case {
    /// Run `i` (wrapping); before any submission, `r-1` (submitted again
    /// before any run, the first run: its name sorts before `r00`).
    fn run(&self, i: usize) -> Key {
        match self.runs.len() {
            0 => Key::new("r-1").unwrap(),
            n => self.runs[i % n].0.clone(),
        }
    }

    /// `op` as a call; a submission of a new run is recorded first.
    fn call(&mut self, op: &Op) -> Call {
        match op {
            Op::Submit(shape, retention) => {
                // Named in submission order (see the module's description).
                let run = Key::new(&format!("r{:02}", self.runs.len())).unwrap();
                let spec = build(&self.graph, shape);
                self.runs.push((run.clone(), spec.clone()));
                Call::Submit(run, spec, retention.get())
            }
            Op::Again(i, shape) => {
                let run = self.run(*i);
                let spec = match (shape, self.runs.is_empty()) {
                    (Some(shape), _) => build(&self.graph, shape),
                    (None, true) => build(&self.graph, &[(vec![], 1, false)]),
                    (None, false) => self.runs[i % self.runs.len()].1.clone(),
                };
                Call::Submit(run, spec, Duration::from_secs(60))
            }
            Op::Take(h, ttl) => Call::Take(self.holders[*h].clone(), ttl.get()),
            Op::GiveBack(h) => Call::GiveBack(self.holders[*h].clone()),
            Op::Renew(r, n, k, ttl) => Call::Renew(self.run(*r), node(*n), *k, ttl.get()),
            Op::Complete(r, n, k, o, next) => {
                let result = match *o {
                    Sent::Success(b) => NodeResult::Success(vec![b]),
                    Sent::Failure(long, retry) => NodeResult::Failure {
                        error: if long {
                            "é".repeat(2_100)
                        } else {
                            "boom".into()
                        },
                        retry_in: retry.map(Ttl::get),
                    },
                };
                let next = next.map(|(h, ttl)| (self.holders[h].clone(), ttl.get()));
                Call::Complete(self.run(*r), node(*n), *k, result, next)
            }
            Op::Cancel(r, long) => {
                let reason = if *long {
                    "ü".repeat(2_100)
                } else {
                    "stop".into()
                };
                Call::Cancel(self.run(*r), reason)
            }
            Op::Status(r, results) => Call::Status(self.run(*r), *results),
        }
    }
}

fn holders() -> Vec<HolderId> {
    let id = |i: usize| InstanceId::new(&format!("w{i}")).unwrap();
    let mut all: Vec<HolderId> = (0..3)
        .map(|i| HolderId::from_parts(id(i), i as u128 + 1))
        .collect();
    all.push(HolderId::from_parts(id(0), 99));
    assert_eq!(all.len(), HOLDERS);
    all
}

/// A graph for this run that no other run (of this process) uses: every
/// case starts on a fresh graph of the one Redis server.
fn fresh_graph() -> Key {
    let run = next_run();
    Key::new(&format!("parity/{run}/graph")).unwrap()
}

/// Runs `ops` against a fresh memory store and against `redis`, on a
/// fresh graph; the first step whose answers differ fails, naming both.
async fn run(redis: &RedisBackend, ops: &[Op]) -> Result<(), String> {
    let memory = MemoryStore::new().backend(Namespace::default());
    let mut case = Case {
        graph: fresh_graph(),
        holders: holders(),
        runs: Vec::new(),
    };
    let side = |backend| Side {
        backend,
        tokens: Seen(Vec::new()),
        latest: HashMap::new(),
        instants: Seen(Vec::new()),
    };
    let (mut m, mut r) = (side(&memory as &dyn GraphBackend), side(redis));
    for (step, op) in ops.iter().enumerate() {
        let graph = case.graph.clone();
        let call = case.call(op);
        let (mine, theirs) = (m.apply(&graph, &call).await, r.apply(&graph, &call).await);
        if mine != theirs {
            return Err(format!(
                "step {step}: {op:?}\n  memory: {mine:?}\n  redis:  {theirs:?}"
            ));
        }
        tokio::time::sleep(STEP_WAIT).await;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn graphs_answer_the_same(ops in proptest::collection::vec(op(), 1..=40)) {
        let (rt, redis) = &*PROPERTY;
        rt.block_on(run(redis, &ops)).map_err(TestCaseError::fail)?;
    }
}
