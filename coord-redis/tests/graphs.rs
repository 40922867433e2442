//! Job graphs on a real redis-server, through the SPI directly, rule by rule
//! (the rules are numbered in `coord_api::spi::graphs`): roots ready at
//! submission, takes oldest first across runs, retry delays and `Idle`,
//! fenced renewals and completions, lease expiry (again ready, then failed),
//! edge conditions and skips two levels down, cancellation (by a user and by
//! a `CancelRun` failure) with attempts still running, transitions,
//! retention, idempotent submission, wake-ups, graphs of 1000 nodes, one
//! EVALSHA per operation in one Cluster slot. Every test runs in a namespace
//! of its own on the shared server (tests that count commands or need
//! cluster mode start their own).
//!
//! Waits for expiry are never guesses: a lease's deadline (or a retry's
//! ready time) is the server's clock at the step plus its TTL, and the
//! server runs on this machine's clock, so sleeping past the TTL (with a
//! margin) after the reply came back is past the deadline. Waits for
//! wake-ups are bounded; a watch that must stay quiet is given a while.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use coord_api::{
    FencingToken, HolderId, InstanceId, Key,
    spi::{
        Backend, Cancel, Complete, Edge, GraphBackend, GraphSpec, MAX_RESULT_BYTES, NodeResult,
        NodeSpec, NodeState, NodeStatus, On, OnFailure, Outcome, Renew, RunState, RunStatus,
        Submit, Take, Taken, Watch,
    },
};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;
use redis::Value;

const TTL: Duration = Duration::from_secs(30);
const RETAIN: Duration = Duration::from_secs(3600);
/// Past a short lease or delay: its length and this margin.
const MARGIN: Duration = Duration::from_millis(60);
/// How long a watch that must wake is given.
const WAKE: Duration = Duration::from_secs(5);

async fn backend_on(server: &RedisServer, ns: &str) -> Arc<RedisBackend> {
    Arc::new(
        RedisBackend::connect(server.config(ns))
            .await
            .expect("connect"),
    )
}

async fn backend(ns: &str) -> Arc<RedisBackend> {
    backend_on(RedisServer::shared(), ns).await
}

fn graphs(b: &RedisBackend) -> &dyn GraphBackend {
    b.graphs().expect("graphs")
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn holder(instance: &str) -> HolderId {
    HolderId::new(InstanceId::new(instance).unwrap())
}

fn node(name: &str, after: &[(u32, On)]) -> NodeSpec {
    NodeSpec::new(key(name)).after(after.iter().map(|&(i, on)| Edge::new(i, on)).collect())
}

fn spec(nodes: Vec<NodeSpec>) -> GraphSpec {
    GraphSpec::new(&key("g"), nodes).unwrap()
}

fn success(r: &str) -> NodeResult {
    NodeResult::Success(r.as_bytes().to_vec())
}

fn failure(e: &str, retry_in: Option<Duration>) -> NodeResult {
    NodeResult::Failure {
        error: e.to_owned(),
        retry_in,
    }
}

fn recorded(state: NodeState, run: RunState) -> Complete {
    Complete::Recorded { state, run }
}

/// One graph of a backend, with the calls the tests make.
struct G<'a> {
    g: &'a dyn GraphBackend,
    graph: Key,
    worker: HolderId,
}

impl<'a> G<'a> {
    fn new(b: &'a RedisBackend, graph: &str) -> G<'a> {
        G {
            g: graphs(b),
            graph: key(graph),
            worker: holder("w-1"),
        }
    }

    async fn submit(&self, run: &str, spec: &GraphSpec) -> Submit {
        self.submit_kept(run, spec, RETAIN).await
    }

    async fn submit_kept(&self, run: &str, spec: &GraphSpec, retention: Duration) -> Submit {
        self.g
            .submit(&self.graph, &key(run), spec, retention)
            .await
            .unwrap()
    }

    async fn try_take(&self, ttl: Duration) -> Take {
        self.g.take(&self.graph, &self.worker, ttl).await.unwrap()
    }

    /// Takes a node, which must be there.
    async fn take_ttl(&self, ttl: Duration) -> Taken {
        match self.try_take(ttl).await {
            Take::Taken(t) => *t,
            other => panic!("nothing taken: {other:?}"),
        }
    }

    async fn take(&self) -> Taken {
        self.take_ttl(TTL).await
    }

    /// Takes a node, which must be `run`'s `name`.
    async fn take_named(&self, run: &str, name: &str) -> Taken {
        let t = self.take().await;
        assert_eq!((t.run.as_str(), t.node.as_str()), (run, name), "took {t:?}");
        t
    }

    async fn idle(&self) -> Option<Duration> {
        match self.try_take(TTL).await {
            Take::Idle { next_in } => next_in,
            other => panic!("not idle: {other:?}"),
        }
    }

    async fn complete(&self, t: &Taken, result: NodeResult) -> Complete {
        self.complete_token(t, t.token, result).await
    }

    async fn complete_token(&self, t: &Taken, token: FencingToken, r: NodeResult) -> Complete {
        self.g
            .complete(&self.graph, &t.run, &t.node, token, r)
            .await
            .unwrap()
    }

    async fn renew(&self, t: &Taken, ttl: Duration) -> Renew {
        self.g
            .renew(&self.graph, &t.run, &t.node, t.token, ttl)
            .await
            .unwrap()
    }

    async fn cancel(&self, run: &str, reason: &str) -> Cancel {
        self.g.cancel(&self.graph, &key(run), reason).await.unwrap()
    }

    async fn try_status(&self, run: &str) -> Option<RunStatus> {
        self.g.status(&self.graph, &key(run), true).await.unwrap()
    }

    async fn status(&self, run: &str) -> RunStatus {
        self.try_status(run).await.expect("the run exists")
    }

    async fn watch_ready(&self) -> Box<dyn Watch> {
        self.g.watch_ready(&self.graph).await.unwrap()
    }

    async fn watch_run(&self, run: &str) -> Box<dyn Watch> {
        self.g.watch_run(&self.graph, &key(run)).await.unwrap()
    }
}

fn at<'s>(s: &'s RunStatus, name: &str) -> &'s NodeStatus {
    s.nodes
        .iter()
        .find(|n| n.name.as_str() == name)
        .unwrap_or_else(|| panic!("no node {name} in {s:?}"))
}

fn states(s: &RunStatus) -> Vec<(&str, NodeState)> {
    s.nodes.iter().map(|n| (n.name.as_str(), n.state)).collect()
}

async fn wakes(w: &mut Box<dyn Watch>) {
    tokio::time::timeout(WAKE, w.changed())
        .await
        .expect("the watch woke")
        .unwrap();
}

async fn stays_quiet(w: &mut Box<dyn Watch>) {
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w.changed())
            .await
            .is_err(),
        "the watch woke"
    );
}

fn diamond() -> GraphSpec {
    use On::Success as S;
    spec(vec![
        node("a", &[]),
        node("b", &[(0, S)]),
        node("c", &[(0, S)]),
        node("d", &[(2, S), (1, S)]),
    ])
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        other => format!("{other:?}"),
    }
}

fn int(v: Value) -> i64 {
    match v {
        Value::Int(i) => i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// Rules 2, 3, 5, 7, 8: a diamond from submission to its end.
#[tokio::test]
async fn a_diamond_runs_from_its_root_to_its_end() {
    let b = backend("diamond").await;
    let g = G::new(&b, "etl");
    let before = SystemTime::now() - Duration::from_millis(5);
    assert_eq!(g.submit("r1", &diamond()).await, Submit::Created);
    let s = g.status("r1").await;
    assert_eq!(s.state, RunState::Running);
    assert_eq!(s.transitions, 0);
    assert!(s.submitted_at >= before && s.submitted_at <= SystemTime::now());
    assert_eq!(s.ended_at, None);
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Ready),
            ("b", NodeState::Pending),
            ("c", NodeState::Pending),
            ("d", NodeState::Pending),
        ]
    );
    assert_eq!(at(&s, "a").ready_in, Some(Duration::ZERO));
    assert_eq!(at(&s, "b").ready_in, None);
    assert_eq!(at(&s, "a").token, None);

    let a = g.take_named("r1", "a").await;
    assert_eq!((a.attempt, a.parents.clone()), (1, vec![]));
    let s = g.status("r1").await;
    let na = at(&s, "a");
    assert_eq!(na.state, NodeState::Running);
    assert_eq!(na.attempts, 1);
    assert_eq!(na.token, Some(a.token));
    assert_eq!(na.worker.as_ref().map(|w| w.as_str()), Some("w-1"));
    assert!(na.expires_in.unwrap() > TTL - Duration::from_secs(5) && na.expires_in <= Some(TTL));
    assert!(na.started_at.unwrap() >= before);
    assert_eq!(s.transitions, 1);
    // Nothing else is ready: idle until a's lease would expire.
    let next = g.idle().await.unwrap();
    assert!(
        next > TTL - Duration::from_secs(5) && next <= TTL,
        "{next:?}"
    );

    assert_eq!(
        g.complete(&a, success("A")).await,
        recorded(NodeState::Succeeded, RunState::Running)
    );
    let s = g.status("r1").await;
    assert_eq!(s.transitions, 4, "a ended, b and c ready");
    assert_eq!(at(&s, "a").result.as_deref(), Some(&b"A"[..]));
    assert!(at(&s, "a").ended_at.is_some());
    assert_eq!(at(&s, "a").expires_in, None);
    let (x, y) = (g.take().await, g.take().await);
    let mut names = [x.node.as_str(), y.node.as_str()];
    names.sort();
    assert_eq!(names, ["b", "c"]);
    assert!(x.token > a.token && y.token > a.token && x.token != y.token);
    assert_eq!(
        x.parents,
        [(key("a"), Outcome::Succeeded(b"A".to_vec()))],
        "the parent's result"
    );
    let (b_, c_) = if x.node.as_str() == "b" {
        (x, y)
    } else {
        (y, x)
    };
    g.complete(&c_, success("C")).await;
    assert_eq!(g.status("r1").await.nodes[3].state, NodeState::Pending);
    assert_eq!(
        g.idle().await.map(|d| d > Duration::from_secs(20)),
        Some(true)
    );
    assert_eq!(
        g.complete(&b_, success("B")).await,
        recorded(NodeState::Succeeded, RunState::Running)
    );
    let d = g.take_named("r1", "d").await;
    // In d's edge order: c, then b.
    assert_eq!(
        d.parents,
        [
            (key("c"), Outcome::Succeeded(b"C".to_vec())),
            (key("b"), Outcome::Succeeded(b"B".to_vec())),
        ]
    );
    assert_eq!(
        g.complete(&d, success("")).await,
        recorded(NodeState::Succeeded, RunState::Succeeded)
    );
    let s = g.status("r1").await;
    assert_eq!(s.state, RunState::Succeeded);
    // Takes: 4; ends: 4; made ready: 3.
    assert_eq!(s.transitions, 11);
    assert!(s.ended_at.unwrap() >= s.submitted_at);
    assert!(s.nodes.iter().all(|n| n.attempts == 1 && n.error.is_none()));
    assert_eq!(g.idle().await, None);
    // Results only when asked for.
    let lean =
        g.g.status(&g.graph, &key("r1"), false)
            .await
            .unwrap()
            .unwrap();
    assert!(lean.nodes.iter().all(|n| n.result.is_none()));
}

/// Rule 3: the earliest ready time first, over every run of the graph;
/// tokens from the graph's one counter.
#[tokio::test]
async fn takes_go_oldest_first_across_runs() {
    let b = backend("order").await;
    let g = G::new(&b, "g");
    let one = spec(vec![node("x", &[])]);
    for run in ["r1", "r2", "r3"] {
        g.submit(run, &one).await;
        // A later server millisecond for the next run's root.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut last = FencingToken(0);
    for run in ["r1", "r2", "r3"] {
        let t = g.take_named(run, "x").await;
        assert!(t.token > last);
        last = t.token;
    }
    // Another graph is another queue.
    let other = G::new(&b, "g2");
    assert_eq!(other.idle().await, None);
    other.submit("r1", &one).await;
    other.take_named("r1", "x").await;
}

/// Rules 3 and 4: a failure with a retry delay is ready again after it; a
/// take before says when; without a delay, or out of attempts, it fails.
#[tokio::test]
async fn retries_wait_their_delay_and_attempts_run_out() {
    let b = backend("retry").await;
    let g = G::new(&b, "g");
    // Long enough that the reads below come before it passes, even on a
    // loaded machine.
    let delay = Duration::from_millis(800);
    g.submit("r", &spec(vec![NodeSpec::new(key("n")).max_attempts(3)]))
        .await;
    let t1 = g.take().await;
    assert_eq!(
        g.complete(&t1, failure("flaky", Some(delay))).await,
        recorded(NodeState::Ready, RunState::Running)
    );
    let s = g.status("r").await;
    let n = at(&s, "n");
    assert_eq!((n.state, n.attempts), (NodeState::Ready, 1));
    assert_eq!(n.error.as_deref(), Some("flaky"));
    assert!(n.ready_in.unwrap() > Duration::ZERO && n.ready_in.unwrap() <= delay);
    assert_eq!(s.transitions, 2);
    let next = g.idle().await.unwrap();
    assert!(next > Duration::ZERO && next <= delay, "{next:?}");
    tokio::time::sleep(next + MARGIN).await;
    let t2 = g.take().await;
    assert_eq!(t2.attempt, 2);
    assert!(t2.token > t1.token);
    // The old attempt is fenced off.
    assert_eq!(
        g.complete(&t1, success("late")).await,
        Complete::Stale {
            state: Some(NodeState::Running)
        }
    );
    assert_eq!(
        g.complete(&t2, failure("again", Some(Duration::ZERO)))
            .await,
        recorded(NodeState::Ready, RunState::Running)
    );
    let t3 = g.take().await;
    assert_eq!(t3.attempt, 3);
    // The last attempt fails even though it asks for a retry.
    assert_eq!(
        g.complete(&t3, failure("final", Some(Duration::ZERO)))
            .await,
        recorded(NodeState::Failed, RunState::Failed)
    );
    let s = g.status("r").await;
    assert_eq!(at(&s, "n").error.as_deref(), Some("final"));
    assert_eq!(at(&s, "n").attempts, 3);
    assert_eq!(s.transitions, 6);

    // Without a delay, a failure fails at once, attempts left or not.
    g.submit("r2", &spec(vec![NodeSpec::new(key("n")).max_attempts(5)]))
        .await;
    let t = g.take().await;
    assert_eq!(
        g.complete(&t, failure("no retry", None)).await,
        recorded(NodeState::Failed, RunState::Failed)
    );
}

/// Rule 4: only the running attempt's token acts; anything else is lost or
/// stale and changes nothing.
#[tokio::test]
async fn stale_tokens_change_nothing() {
    let b = backend("stale").await;
    let g = G::new(&b, "g");
    g.submit("r", &diamond()).await;
    let a = g.take().await;
    let wrong = FencingToken(a.token.get() - 1);
    assert_eq!(
        g.complete_token(&a, wrong, success("x")).await,
        Complete::Stale {
            state: Some(NodeState::Running)
        }
    );
    assert_eq!(
        g.g.renew(&g.graph, &a.run, &a.node, wrong, TTL)
            .await
            .unwrap(),
        Renew::Lost
    );
    // Nothing changed.
    let s = g.status("r").await;
    assert_eq!(s.transitions, 1);
    assert_eq!(at(&s, "a").state, NodeState::Running);
    // A pending node, an unknown node, an unknown run.
    let pending = Taken::new(key("r"), key("b"), 1, a.token, vec![]);
    assert_eq!(
        g.complete(&pending, success("x")).await,
        Complete::Stale {
            state: Some(NodeState::Pending)
        }
    );
    let unknown = Taken::new(key("r"), key("zz"), 1, a.token, vec![]);
    assert_eq!(
        g.complete(&unknown, success("x")).await,
        Complete::Stale { state: None }
    );
    let elsewhere = Taken::new(key("nope"), key("a"), 1, a.token, vec![]);
    assert_eq!(
        g.complete(&elsewhere, success("x")).await,
        Complete::Stale { state: None }
    );
    assert_eq!(g.renew(&elsewhere, TTL).await, Renew::Lost);
    // Renewal extends the lease.
    assert_eq!(g.renew(&a, Duration::from_secs(90)).await, Renew::Renewed);
    let left = at(&g.status("r").await, "a").expires_in.unwrap();
    assert!(left > Duration::from_secs(80), "{left:?}");
    // Completed: the token is spent.
    g.complete(&a, success("A")).await;
    assert_eq!(
        g.complete(&a, success("again")).await,
        Complete::Stale {
            state: Some(NodeState::Succeeded)
        }
    );
    assert_eq!(g.renew(&a, TTL).await, Renew::Lost);
    assert_eq!(
        at(&g.status("r").await, "a").result.as_deref(),
        Some(&b"A"[..])
    );
}

/// Rule 1: an expired lease is ready again with a new attempt and a larger
/// token while attempts last, then failed, which resolves its dependents;
/// its tokens are stale from the moment it expired.
#[tokio::test]
async fn expired_leases_retry_then_fail_and_resolve() {
    let b = backend("expiry").await;
    let g = G::new(&b, "g");
    let short = Duration::from_millis(150);
    g.submit(
        "r",
        &spec(vec![
            NodeSpec::new(key("a")).max_attempts(2),
            node("b", &[(0, On::Success)]),
            node("c", &[(0, On::Failure)]),
        ]),
    )
    .await;
    let t1 = g.take_ttl(short).await;
    let next = g.idle().await.unwrap();
    assert!(next <= short, "{next:?}");
    let mut ready = g.watch_ready().await;
    tokio::time::sleep(short + MARGIN).await;
    // Noticed by the next step, whichever: here a renewal.
    assert_eq!(g.renew(&t1, TTL).await, Renew::Lost);
    wakes(&mut ready).await;
    let s = g.status("r").await;
    let a = at(&s, "a");
    assert_eq!((a.state, a.attempts), (NodeState::Ready, 1));
    assert_eq!(a.error.as_deref(), Some("lease expired"));
    assert_eq!(a.ready_in, Some(Duration::ZERO));
    assert_eq!(a.expires_in, None);
    assert_eq!(s.transitions, 2);
    assert_eq!(
        g.complete(&t1, success("late")).await,
        Complete::Stale {
            state: Some(NodeState::Ready)
        }
    );
    let t2 = g.take_ttl(short).await;
    assert_eq!(t2.attempt, 2);
    assert!(t2.token > t1.token);
    tokio::time::sleep(short + MARGIN).await;
    // Out of attempts: failed; b skipped by it, c ready.
    let s = g.status("r").await;
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Failed),
            ("b", NodeState::Skipped),
            ("c", NodeState::Ready),
        ]
    );
    assert_eq!(at(&s, "a").error.as_deref(), Some("lease expired"));
    assert_eq!(at(&s, "b").by, Some(key("a")));
    assert_eq!(s.transitions, 6);
    let c = g.take_named("r", "c").await;
    assert_eq!(
        c.parents,
        [(key("a"), Outcome::Failed("lease expired".into()))]
    );
    assert_eq!(
        g.complete(&c, success("handled")).await,
        recorded(NodeState::Succeeded, RunState::Failed)
    );
}

/// Rule 5: edge conditions, a skip carried two levels down with `by`
/// naming the node that decided it, and `Any` satisfied by a skip.
#[tokio::test]
async fn edge_conditions_skip_and_propagate() {
    use On::{Any, Failure, Success};
    let b = backend("edges").await;
    let g = G::new(&b, "g");
    g.submit(
        "r",
        &spec(vec![
            node("a", &[]),
            node("ok", &[(0, Success)]),                 // skipped by a
            node("onfail", &[(0, Failure)]),             // ready
            node("any", &[(0, Any)]),                    // ready
            node("deep", &[(1, Success)]),               // skipped by ok
            node("after", &[(1, Any)]),                  // ready: ok was skipped
            node("deeper", &[(4, Failure)]),             // skipped by deep
            node("both", &[(2, Success), (1, Success)]), // skipped by ok
        ]),
    )
    .await;
    let a = g.take().await;
    assert_eq!(
        g.complete(&a, failure("boom", None)).await,
        recorded(NodeState::Failed, RunState::Running)
    );
    let s = g.status("r").await;
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Failed),
            ("ok", NodeState::Skipped),
            ("onfail", NodeState::Ready),
            ("any", NodeState::Ready),
            ("deep", NodeState::Skipped),
            ("after", NodeState::Ready),
            ("deeper", NodeState::Skipped),
            ("both", NodeState::Skipped),
        ]
    );
    let by = |n: &str| at(&s, n).by.clone().map(|k| k.as_str().to_owned());
    assert_eq!(by("ok").as_deref(), Some("a"));
    assert_eq!(by("deep").as_deref(), Some("ok"));
    assert_eq!(by("deeper").as_deref(), Some("deep"));
    assert_eq!(by("both").as_deref(), Some("ok"));
    assert_eq!(by("onfail"), None);
    assert!(at(&s, "deep").ended_at.is_some());
    // a's end, 4 skips, 3 ready.
    assert_eq!(s.transitions, 1 + 1 + 4 + 3);
    let mut seen = vec![];
    for _ in 0..3 {
        let t = g.take().await;
        match t.node.as_str() {
            "onfail" => assert_eq!(t.parents, [(key("a"), Outcome::Failed("boom".into()))]),
            "any" => assert_eq!(t.parents, [(key("a"), Outcome::Failed("boom".into()))]),
            "after" => assert_eq!(t.parents, [(key("ok"), Outcome::Skipped(key("a")))]),
            other => panic!("took {other}"),
        }
        seen.push(t.node.as_str().to_owned());
        let last = seen.len() == 3;
        assert_eq!(
            g.complete(&t, success("")).await,
            recorded(
                NodeState::Succeeded,
                if last {
                    RunState::Failed
                } else {
                    RunState::Running
                }
            )
        );
    }
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Failed);
    assert_eq!(s.cancelled, None);
}

/// Rules 4 and 6: a cancelled run cancels what has not started; running
/// attempts learn it when renewing and end as they complete or expire.
#[tokio::test]
async fn cancel_leaves_running_attempts_to_end() {
    let b = backend("cancel").await;
    let g = G::new(&b, "g");
    // Long enough to outlive the steps up to the cancellation.
    let short = Duration::from_millis(500);
    g.submit(
        "r",
        &spec(vec![
            node("a", &[]),
            node("b", &[]),
            node("c", &[]),
            node("d", &[]),
            node("e", &[(0, On::Any)]),
            node("f", &[]),
        ]),
    )
    .await;
    let ta = g.take().await;
    let tb = g.take().await;
    let tc = g.take_ttl(short).await;
    let td = g.take().await;
    assert_eq!(
        [&ta, &tb, &tc, &td].map(|t| t.node.as_str()),
        ["a", "b", "c", "d"]
    );
    let mut run_watch = g.watch_run("r").await;
    assert_eq!(
        g.cancel("r", "by the operator").await,
        Cancel::Cancelled { running: 4 }
    );
    wakes(&mut run_watch).await;
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Running);
    assert_eq!(s.cancelled.as_deref(), Some("by the operator"));
    assert_eq!(at(&s, "e").state, NodeState::Cancelled);
    assert_eq!(at(&s, "f").state, NodeState::Cancelled);
    assert_eq!(
        (at(&s, "e").by.clone(), at(&s, "f").by.clone()),
        (None, None)
    );
    assert!(at(&s, "f").ended_at.is_some());
    assert_eq!(s.transitions, 4 + 2);
    // Nothing of it is taken any more.
    assert!(matches!(g.try_take(TTL).await, Take::Idle { .. }));
    assert_eq!(
        g.cancel("r", "again").await,
        Cancel::AlreadyEnded(RunState::Running)
    );
    assert_eq!(g.renew(&ta, TTL).await, Renew::Cancelled);
    // Not extended.
    let left = at(&g.status("r").await, "a").expires_in.unwrap();
    assert!(left <= TTL);
    assert_eq!(
        g.complete(&ta, success("done anyway")).await,
        recorded(NodeState::Succeeded, RunState::Running)
    );
    assert_eq!(
        g.complete(&tb, failure("broke", Some(Duration::ZERO)))
            .await,
        recorded(NodeState::Cancelled, RunState::Running)
    );
    tokio::time::sleep(short + MARGIN).await;
    let s = g.status("r").await;
    assert_eq!(at(&s, "c").state, NodeState::Cancelled);
    assert_eq!(at(&s, "c").error, None);
    assert_eq!(at(&s, "b").error.as_deref(), Some("broke"));
    assert_eq!(at(&s, "a").result.as_deref(), Some(&b"done anyway"[..]));
    // e, after a, was cancelled with the run (by none) and stays so once a
    // succeeded: in a cancelled run nothing is pending any more.
    assert_eq!(
        (at(&s, "e").state, at(&s, "e").by.clone()),
        (NodeState::Cancelled, None)
    );
    assert_eq!(s.state, RunState::Running);
    assert_eq!(
        g.complete(&td, failure("x", None)).await,
        recorded(NodeState::Cancelled, RunState::Cancelled)
    );
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Cancelled);
    assert!(s.ended_at.is_some());
    assert_eq!(s.transitions, 6 + 4);
    assert_eq!(
        g.cancel("r", "again").await,
        Cancel::AlreadyEnded(RunState::Cancelled)
    );
    assert_eq!(g.cancel("nope", "x").await, Cancel::NotFound);
    // A run with nothing running ends at once.
    g.submit("r2", &diamond()).await;
    assert_eq!(
        g.cancel("r2", "stop").await,
        Cancel::Cancelled { running: 0 }
    );
    let s = g.status("r2").await;
    assert_eq!(s.state, RunState::Cancelled);
    assert!(s.nodes.iter().all(|n| n.state == NodeState::Cancelled));
}

/// Rule 5: a `CancelRun` failure cancels the run in its step; the nodes it
/// could not cancel end as they would in a cancelled run.
#[tokio::test]
async fn a_cancel_run_failure_cancels_the_run() {
    let b = backend("cancel_run").await;
    let g = G::new(&b, "g");
    g.submit(
        "r",
        &spec(vec![
            NodeSpec::new(key("a")).on_failure(OnFailure::CancelRun),
            node("b", &[]),
            node("c", &[(1, On::Success)]),
            node("d", &[(0, On::Failure)]),
        ]),
    )
    .await;
    let ta = g.take_named("r", "a").await;
    let tb = g.take_named("r", "b").await;
    assert_eq!(
        g.complete(&ta, failure("fatal", None)).await,
        recorded(NodeState::Failed, RunState::Running)
    );
    let s = g.status("r").await;
    assert_eq!(s.cancelled.as_deref(), Some("node \"a\" failed"));
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Failed),
            ("b", NodeState::Running),
            ("c", NodeState::Cancelled),
            // Made ready by a's failure, then cancelled with the run.
            ("d", NodeState::Cancelled),
        ]
    );
    assert_eq!(g.renew(&tb, TTL).await, Renew::Cancelled);
    assert_eq!(
        g.complete(&tb, success("B")).await,
        recorded(NodeState::Succeeded, RunState::Cancelled)
    );
    assert_eq!(g.idle().await, None);

    // The last node failing ends the run, failed: nothing is left to cancel.
    g.submit(
        "single",
        &spec(vec![
            NodeSpec::new(key("a")).on_failure(OnFailure::CancelRun),
        ]),
    )
    .await;
    let t = g.take().await;
    assert_eq!(
        g.complete(&t, failure("fatal", None)).await,
        recorded(NodeState::Failed, RunState::Failed)
    );
    assert_eq!(g.status("single").await.cancelled, None);
}

/// Rules 2 and 7: a submission of an existing or kept run changes nothing
/// and says whether its spec is the same; an ended run is kept for its
/// retention, then gone, and made anew by the next submission.
#[tokio::test]
async fn submissions_are_idempotent_and_ended_runs_kept_for_their_retention() {
    let server = RedisServer::shared();
    let b = backend_on(server, "retain").await;
    let g = G::new(&b, "g");
    let one = spec(vec![node("x", &[])]);
    let kept = Duration::from_millis(1000);
    assert_eq!(g.submit_kept("r", &one, kept).await, Submit::Created);
    assert_eq!(
        g.submit_kept("r", &one, kept).await,
        Submit::Exists { same_graph: true }
    );
    assert_eq!(
        g.submit_kept("r", &diamond(), kept).await,
        Submit::Exists { same_graph: false }
    );
    // Nothing changed: still one ready node.
    let s = g.status("r").await;
    assert_eq!(states(&s), [("x", NodeState::Ready)]);
    let record = "coord:{retain:graph:1:g}:r:h";
    assert_eq!(int(server.command(&["PTTL", record]).unwrap()), -1);
    let t = g.take().await;
    // The layout the module documents: the running member and the node's
    // fields in the run's record.
    let running = server
        .command(&["ZRANGE", "coord:{retain:graph:1:g}:l", "0", "-1"])
        .unwrap();
    assert_eq!(
        running,
        Value::Array(vec![Value::BulkString(b"1:r/x".to_vec())])
    );
    let d = text(server.command(&["HGET", record, "d:x"]).unwrap());
    assert!(d.starts_with(&format!("U 1 0 {} ", t.token)), "{d}");
    g.complete(&t, success("done")).await;
    let pttl = int(server.command(&["PTTL", record]).unwrap());
    assert!(pttl > 0 && pttl <= 1000, "{pttl}");
    // Nothing of it is left in the graph's sets.
    for set in ["q", "l"] {
        let k = format!("coord:{{retain:graph:1:g}}:{set}");
        assert_eq!(int(server.command(&["EXISTS", &k]).unwrap()), 0);
    }
    assert_eq!(g.status("r").await.state, RunState::Succeeded);
    assert_eq!(
        g.submit_kept("r", &one, kept).await,
        Submit::Exists { same_graph: true }
    );
    tokio::time::sleep(kept + MARGIN).await;
    assert_eq!(g.try_status("r").await, None);
    assert_eq!(g.submit_kept("r", &diamond(), kept).await, Submit::Created);
    assert_eq!(g.status("r").await.nodes.len(), 4);
    let x = g.take().await;
    assert!(x.token > t.token);
}

/// Rule 9: watch_ready wakes on a step that made a node ready, watch_run on
/// a step that changed one of the run's nodes.
#[tokio::test]
async fn watches_wake_on_the_right_steps() {
    let b = backend("watch").await;
    let g = G::new(&b, "g");
    let mut ready = g.watch_ready().await;
    let mut run = g.watch_run("r").await;
    let mut other_run = g.watch_run("other").await;
    g.submit(
        "r",
        &spec(vec![
            NodeSpec::new(key("a")).max_attempts(2),
            node("b", &[(0, On::Success)]),
        ]),
    )
    .await;
    wakes(&mut ready).await;
    wakes(&mut run).await;
    // A take makes nothing ready but changes a node of the run.
    let a = g.take().await;
    wakes(&mut run).await;
    stays_quiet(&mut ready).await;
    // A renewal changes no state.
    g.renew(&a, TTL).await;
    stays_quiet(&mut run).await;
    // A retry makes a ready.
    g.complete(&a, failure("x", Some(Duration::from_secs(1))))
        .await;
    wakes(&mut ready).await;
    wakes(&mut run).await;
    tokio::time::sleep(Duration::from_secs(1) + MARGIN).await;
    let a = g.take().await;
    wakes(&mut run).await;
    // Resolution makes b ready.
    g.complete(&a, success("")).await;
    wakes(&mut ready).await;
    wakes(&mut run).await;
    let bt = g.take().await;
    wakes(&mut run).await;
    // The end of a leaf makes nothing ready.
    g.complete(&bt, success("")).await;
    wakes(&mut run).await;
    stays_quiet(&mut ready).await;
    stays_quiet(&mut other_run).await;
}

/// Graphs at the limit: 1000 nodes, one of them with 999 parents, taken
/// with every parent's outcome; a cancellation of 1000 nodes; status of all.
#[tokio::test]
async fn graphs_of_a_thousand_nodes() {
    let b = backend("big").await;
    let g = G::new(&b, "g");
    let n = coord_api::spi::MAX_NODES as u32;
    let mut nodes: Vec<NodeSpec> = (0..n - 1).map(|i| node(&format!("n{i}"), &[])).collect();
    nodes.push(
        NodeSpec::new(key("sink")).after((0..n - 1).map(|i| Edge::new(i, On::Any)).collect()),
    );
    let big = spec(nodes);
    g.submit("r", &big).await;
    g.submit("cancelled", &big).await;
    assert_eq!(
        g.cancel("cancelled", "stop").await,
        Cancel::Cancelled { running: 0 }
    );
    let s = g.status("cancelled").await;
    assert_eq!(s.state, RunState::Cancelled);
    assert_eq!(s.transitions, u64::from(n));
    let mut taken = std::collections::HashSet::new();
    for _ in 0..n - 1 {
        let t = g.take().await;
        assert_eq!(t.run.as_str(), "r");
        let i = t.node.as_str().strip_prefix('n').unwrap().to_owned();
        assert!(taken.insert(i.clone()));
        g.complete(&t, NodeResult::Success(i.into_bytes())).await;
    }
    let sink = g.take_named("r", "sink").await;
    assert_eq!(sink.parents.len(), n as usize - 1);
    assert_eq!(
        sink.parents[998],
        (key("n998"), Outcome::Succeeded(b"998".to_vec()))
    );
    g.complete(&sink, success("")).await;
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Succeeded);
    assert_eq!(s.nodes.len(), n as usize);
    assert_eq!(s.nodes[5].result.as_deref(), Some(&b"5"[..]));
}

/// Results over the limit are refused before any I/O.
#[tokio::test]
async fn results_over_the_limit_are_refused() {
    let b = backend("limits").await;
    let g = G::new(&b, "g");
    g.submit("r", &spec(vec![node("x", &[])])).await;
    let t = g.take().await;
    let err =
        g.g.complete(
            &g.graph,
            &t.run,
            &t.node,
            t.token,
            NodeResult::Success(vec![1; MAX_RESULT_BYTES + 1]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, coord_api::Error::InvalidArgument { .. }));
    let text = err.to_string();
    assert!(text.contains("\"r\"") && text.contains("\"x\"") && text.contains("65536"));
    assert_eq!(at(&g.status("r").await, "x").state, NodeState::Running);
    assert_eq!(
        g.complete(&t, NodeResult::Success(vec![1; MAX_RESULT_BYTES]))
            .await,
        recorded(NodeState::Succeeded, RunState::Succeeded)
    );
}

/// Every operation is one EVALSHA, and every key of a graph, all runs
/// included, is in one Redis Cluster slot (a cluster server refuses a
/// script that touches two).
#[tokio::test]
async fn one_evalsha_per_operation_in_one_cluster_slot() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    server
        .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(server.command(&["CLUSTER", "INFO"]).unwrap()).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "single-node cluster never ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = backend_on(&server, "slots").await;
    let g = G::new(&b, "x}{y");
    // Warm up: loads the script.
    g.try_status("warm").await;
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let mut ops = 0;
    for run in ["{r1}", "r2}"] {
        g.submit(run, &diamond()).await;
        ops += 1;
    }
    let a = g.take().await;
    assert_eq!(g.renew(&a, TTL).await, Renew::Renewed);
    g.complete(&a, success("A")).await;
    let b_ = g.take().await;
    g.complete(&b_, success("B")).await;
    ops += 5;
    // Takes cross from one run to the other.
    let mut runs = vec![a.run.as_str().to_owned(), b_.run.as_str().to_owned()];
    while let Take::Taken(t) = g.try_take(TTL).await {
        ops += 1;
        runs.push(t.run.as_str().to_owned());
    }
    ops += 1;
    assert!(
        runs.iter().any(|r| r == "r2}") && runs.iter().any(|r| r == "{r1}"),
        "{runs:?}"
    );
    g.cancel("{r1}", "stop").await;
    g.status("{r1}").await;
    ops += 2;
    let info = text(server.command(&["INFO", "commandstats"]).unwrap());
    let evalsha = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("calls=")))
        .map(|n| n.parse::<i64>().unwrap());
    assert_eq!(evalsha, Some(ops));
    assert!(
        !info.contains("cmdstat_script") && !info.contains("cmdstat_eval:"),
        "{info}"
    );
}
