//! Job graphs on a real redis-server, through the SPI directly, rule by rule
//! (the rules are numbered in `coord_api::spi::graphs`): roots ready at
//! submission, takes oldest first across runs, retry delays and `Idle`,
//! fenced renewals and completions, lease expiry (again ready, then failed),
//! edge conditions and skips two levels down, cancellation (by a user and by
//! a `CancelRun` failure) with attempts still running, transitions,
//! retention, idempotent submission, wake-ups, graphs of 1000 nodes, one
//! EVALSHA per operation in one Cluster slot, and what the idle workers of
//! one `Graph` cost per notification (`workers.rs`). Every test runs in a namespace
//! of its own on the shared server (tests that count commands or need
//! cluster mode start their own).
//!
//! Waits for expiry are never guesses: a lease's deadline (or a retry's
//! ready time) is the server's clock at the step plus its TTL, and the
//! server runs on this machine's clock, so sleeping past the TTL (with a
//! margin) after the reply came back is past the deadline. Waits for
//! wake-ups are bounded; a watch that must stay quiet is given a while.

// The tests, by theme; the fixtures they share are below.
mod edges_and_cancel;
mod limits;
mod submissions_and_watches;
mod taking;
mod workers;

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
    Complete::Recorded {
        state,
        run,
        next: None,
    }
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
            .complete(&self.graph, &t.run, &t.node, token, r, None)
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
