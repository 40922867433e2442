//! Unit tests of `graphs`, one or more per rule of the SPI's step-by-step
//! list.
//!
//! Time is tokio's, paused: it moves only by `advance` (or when every task
//! waits on a timer), so every expiry and retry delay here is decided, not
//! raced.

use std::time::Duration;

use coord_api::{
    Error, HolderId, InstanceId, Key, MAX_TTL, Namespace,
    spi::{
        Backend, Cancel, Complete, Edge, Families, GraphBackend, GraphSpec, MAX_ERROR_BYTES,
        MAX_RESULT_BYTES, NodeResult, NodeSpec, NodeState, NodeStatus, On, OnFailure, Outcome,
        Renew, RunState, RunStatus, Submit, Take, Taken, Watch,
    },
};
use tokio::time::advance;

use super::run::{Queues, Run, Step};
use crate::{MemoryBackend, MemoryStore};

use NodeState::{Cancelled, Failed, Pending, Ready, Running, Skipped, Succeeded};

const TTL: Duration = Duration::from_secs(10);
const KEEP: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// A node with these upstream edges (by index).
fn node(name: &str, after: &[(u32, On)]) -> NodeSpec {
    NodeSpec::new(k(name)).after(after.iter().map(|&(i, on)| Edge::new(i, on)).collect())
}

fn spec(nodes: Vec<NodeSpec>) -> GraphSpec {
    GraphSpec::new(&k("g"), nodes).unwrap()
}

fn failure(retry_in: Option<Duration>) -> NodeResult {
    NodeResult::Failure {
        error: "boom".into(),
        retry_in,
    }
}

/// A backend on a store of its own, and the calls the tests make on graph
/// `g` as worker `w`.
struct T {
    b: MemoryBackend,
    g: Key,
    h: HolderId,
}

impl T {
    fn new() -> T {
        T {
            b: MemoryStore::new().backend(Namespace::default()),
            g: k("g"),
            h: HolderId::new(InstanceId::new("w").unwrap()),
        }
    }

    async fn submit(&self, run: &str, nodes: Vec<NodeSpec>) -> Submit {
        let spec = GraphSpec::new(&self.g, nodes).unwrap();
        self.b.submit(&self.g, &k(run), &spec, KEEP).await.unwrap()
    }

    async fn try_take(&self) -> Take {
        self.b.take(&self.g, &self.h, TTL).await.unwrap()
    }

    async fn take(&self) -> Taken {
        match self.try_take().await {
            Take::Taken(t) => *t,
            other => panic!("nothing taken: {other:?}"),
        }
    }

    /// `Take::Idle`'s `next_in`.
    async fn idle(&self) -> Option<Duration> {
        match self.try_take().await {
            Take::Idle { next_in } => next_in,
            other => panic!("took: {other:?}"),
        }
    }

    async fn complete(&self, t: &Taken, result: NodeResult) -> Complete {
        (self.b)
            .complete(&self.g, &t.run, &t.node, t.token, result, None)
            .await
            .unwrap()
    }

    async fn complete_err(&self, t: &Taken, result: NodeResult) -> Error {
        (self.b)
            .complete(&self.g, &t.run, &t.node, t.token, result, None)
            .await
            .unwrap_err()
    }

    /// Completes `t` with its node's name as the result.
    async fn ok(&self, t: &Taken) -> Complete {
        let result = NodeResult::Success(t.node.as_str().as_bytes().to_vec());
        self.complete(t, result).await
    }

    async fn fail(&self, t: &Taken, retry_in: Option<Duration>) -> Complete {
        self.complete(t, failure(retry_in)).await
    }

    async fn renew(&self, t: &Taken) -> Renew {
        (self.b)
            .renew(&self.g, &t.run, &t.node, t.token, TTL)
            .await
            .unwrap()
    }

    async fn cancel(&self, run: &str) -> Cancel {
        self.b.cancel(&self.g, &k(run), "stop").await.unwrap()
    }

    async fn status(&self, run: &str) -> RunStatus {
        self.b
            .status(&self.g, &k(run), true)
            .await
            .unwrap()
            .unwrap()
    }

    async fn states(&self, run: &str) -> Vec<NodeState> {
        let s = self.status(run).await;
        s.nodes.iter().map(|n| n.state).collect()
    }

    async fn node(&self, run: &str, name: &str) -> NodeStatus {
        let s = self.status(run).await;
        s.nodes.into_iter().find(|n| n.name == k(name)).unwrap()
    }

    /// The node's state and the upstream node it names.
    async fn by(&self, run: &str, name: &str) -> (NodeState, Option<String>) {
        let n = self.node(run, name).await;
        (n.state, n.by.map(|b| b.to_string()))
    }
}

fn recorded(state: NodeState, run: RunState) -> Complete {
    Complete::Recorded {
        state,
        run,
        next: None,
    }
}

fn by(state: NodeState, by: &str) -> (NodeState, Option<String>) {
    (state, Some(by.to_owned()))
}

/// Whether `w` wakes without time passing (beyond a millisecond).
async fn woke(w: &mut Box<dyn Watch>) -> bool {
    tokio::time::timeout(Duration::from_millis(1), w.changed())
        .await
        .is_ok()
}

// Rule 2: submit.

#[tokio::test(start_paused = true)]
async fn submit_makes_the_roots_ready_and_the_rest_pending() {
    let t = T::new();
    let diamond = || {
        vec![
            node("a", &[]),
            node("b", &[(0, On::Success)]),
            node("c", &[(0, On::Success)]),
            node("d", &[(1, On::Success), (2, On::Success)]),
            node("e", &[]),
        ]
    };
    assert_eq!(t.submit("r", diamond()).await, Submit::Created);
    let s = t.status("r").await;
    assert_eq!(
        s.nodes.iter().map(|n| n.state).collect::<Vec<_>>(),
        [Ready, Pending, Pending, Pending, Ready]
    );
    assert_eq!(
        (s.state, s.transitions, s.cancelled, s.ended_at),
        (RunState::Running, 0, None, None)
    );
    let a = &s.nodes[0];
    assert_eq!(
        (a.attempts, a.token, a.ready_in, a.expires_in),
        (0, None, Some(Duration::ZERO), None)
    );
    assert_eq!(s.nodes[1].ready_in, None);
    // An existing run is left alone, whatever was sent.
    assert_eq!(
        t.submit("r", diamond()).await,
        Submit::Exists { same_graph: true }
    );
    let mut other = diamond();
    other[4] = node("e", &[]).max_attempts(2);
    assert_eq!(
        t.submit("r", other).await,
        Submit::Exists { same_graph: false }
    );
    assert_eq!(t.status("r").await.transitions, 0);
    assert_eq!(t.submit("r2", diamond()).await, Submit::Created);
    // Nothing about a run that was never submitted.
    assert_eq!(t.b.status(&t.g, &k("nope"), false).await.unwrap(), None);
    assert_eq!(t.b.status(&k("other"), &k("r"), false).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn the_memory_backend_offers_graphs() {
    let t = T::new();
    assert!(t.b.graphs().is_some());
    assert!(Families::of(&t.b).graphs);
}

// Rule 3: take.

#[tokio::test(start_paused = true)]
async fn take_picks_the_node_ready_longest_over_every_run() {
    let t = T::new();
    // Nothing in a graph never submitted to.
    assert_eq!(t.idle().await, None);
    t.submit("r1", vec![node("a", &[])]).await;
    advance(SEC).await;
    t.submit("r2", vec![node("x", &[]), node("y", &[])]).await;
    let first = t.take().await;
    assert_eq!((first.run.as_str(), first.node.as_str()), ("r1", "a"));
    assert_eq!((first.attempt, first.parents.clone()), (1, vec![]));
    // Ready at the same instant: declaration order.
    let second = t.take().await;
    let third = t.take().await;
    assert_eq!((second.node.as_str(), third.node.as_str()), ("x", "y"));
    assert!(first.token < second.token && second.token < third.token);
    // Nothing ready: the next moment is the earliest lease deadline.
    assert_eq!(t.idle().await, Some(TTL));
    let a = t.node("r1", "a").await;
    assert_eq!(a.state, Running);
    assert_eq!(
        (a.attempts, a.token, a.worker),
        (1, Some(first.token), Some(*t.h.instance()))
    );
    assert_eq!(a.expires_in, Some(TTL));
    assert_eq!((a.ready_in, a.ended_at), (None, None));
    let submitted = t.status("r1").await.submitted_at;
    assert_eq!(a.started_at, Some(submitted + SEC));
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_its_delay_and_idle_says_how_long() {
    let t = T::new();
    t.submit("r1", vec![node("a", &[]).max_attempts(3)]).await;
    let first = t.take().await;
    assert_eq!(
        t.fail(&first, Some(5 * SEC)).await,
        recorded(Ready, RunState::Running)
    );
    let a = t.node("r1", "a").await;
    assert_eq!((a.state, a.attempts), (Ready, 1));
    assert_eq!(
        (a.ready_in, a.error.as_deref()),
        (Some(5 * SEC), Some("boom"))
    );
    assert_eq!(t.idle().await, Some(5 * SEC));
    // A node ready now goes before one whose delay has not passed.
    advance(SEC).await;
    t.submit("r2", vec![node("b", &[])]).await;
    assert_eq!(t.take().await.node.as_str(), "b");
    assert_eq!(t.idle().await, Some(4 * SEC));
    advance(4 * SEC).await;
    let second = t.take().await;
    assert_eq!((second.node.as_str(), second.attempt), ("a", 2));
    assert!(second.token > first.token);
    // The last error is kept while the retry runs, and gone with a success.
    assert_eq!(t.node("r1", "a").await.error.as_deref(), Some("boom"));
    assert_eq!(
        t.ok(&second).await,
        recorded(Succeeded, RunState::Succeeded)
    );
    assert_eq!(t.node("r1", "a").await.error, None);
}

#[tokio::test(start_paused = true)]
async fn a_failure_without_a_retry_or_attempts_left_fails_the_node() {
    let t = T::new();
    t.submit("r", vec![node("a", &[]).max_attempts(3), node("b", &[])])
        .await;
    let a = t.take().await;
    assert_eq!(t.fail(&a, None).await, recorded(Failed, RunState::Running));
    let b = t.take().await;
    assert_eq!(
        t.fail(&b, Some(SEC)).await,
        recorded(Failed, RunState::Failed)
    );
    let s = t.status("r").await;
    assert_eq!(s.nodes[0].ended_at, s.ended_at);
    assert!(s.ended_at.is_some());
}

// Rule 4: tokens.

#[tokio::test(start_paused = true)]
async fn a_stale_token_changes_nothing() {
    let t = T::new();
    t.submit("r", vec![node("a", &[]).max_attempts(2)]).await;
    let a = t.take().await;
    let mut wrong = a.clone();
    wrong.token.0 += 1;
    assert_eq!(t.renew(&wrong).await, Renew::Lost);
    assert_eq!(
        t.ok(&wrong).await,
        Complete::Stale {
            state: Some(Running)
        }
    );
    let mut elsewhere = a.clone();
    elsewhere.node = k("nope");
    assert_eq!(t.renew(&elsewhere).await, Renew::Lost);
    assert_eq!(t.ok(&elsewhere).await, Complete::Stale { state: None });
    elsewhere.run = k("nope");
    assert_eq!(t.renew(&elsewhere).await, Renew::Lost);
    assert_eq!(t.ok(&elsewhere).await, Complete::Stale { state: None });
    assert_eq!(t.status("r").await.transitions, 1);
    // At its deadline the lease is gone: the token is refused.
    advance(TTL).await;
    assert_eq!(t.renew(&a).await, Renew::Lost);
    assert_eq!(t.ok(&a).await, Complete::Stale { state: Some(Ready) });
    // And after a new attempt took the node.
    let again = t.take().await;
    assert_eq!(
        t.ok(&a).await,
        Complete::Stale {
            state: Some(Running)
        }
    );
    assert_eq!(t.renew(&a).await, Renew::Lost);
    assert_eq!(t.renew(&again).await, Renew::Renewed);
    let n = t.node("r", "a").await;
    assert_eq!(
        (n.attempts, n.token, n.error.as_deref()),
        (2, Some(again.token), Some("lease expired"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_renewal_extends_the_lease_from_now() {
    let t = T::new();
    t.submit("r", vec![node("a", &[])]).await;
    let a = t.take().await;
    advance(TTL - SEC).await;
    assert_eq!(t.renew(&a).await, Renew::Renewed);
    assert_eq!(t.node("r", "a").await.expires_in, Some(TTL));
    assert_eq!(t.idle().await, Some(TTL));
    advance(TTL - SEC).await;
    assert_eq!(t.ok(&a).await, recorded(Succeeded, RunState::Succeeded));
    // Renewing counts no transition.
    assert_eq!(t.status("r").await.transitions, 2);
}

// Rule 1: expired leases.

#[tokio::test(start_paused = true)]
async fn an_expired_lease_is_retried_with_a_larger_token_then_fails() {
    let t = T::new();
    t.submit(
        "r",
        vec![
            node("a", &[]).max_attempts(2),
            node("on_success", &[(0, On::Success)]),
            node("on_failure", &[(0, On::Failure)]),
        ],
    )
    .await;
    let first = t.take().await;
    assert_eq!(t.idle().await, Some(TTL));
    advance(TTL).await;
    // The take that notices the expiry takes the node again.
    let second = t.take().await;
    assert_eq!((second.node.as_str(), second.attempt), ("a", 2));
    assert!(second.token > first.token);
    advance(TTL).await;
    assert_eq!(t.states("r").await, [Failed, Skipped, Ready]);
    let a = t.node("r", "a").await;
    assert_eq!((a.attempts, a.error.as_deref()), (2, Some("lease expired")));
    assert_eq!(t.by("r", "on_success").await, by(Skipped, "a"));
    let handler = t.take().await;
    assert_eq!(
        handler.parents,
        [(k("a"), Outcome::Failed("lease expired".into()))]
    );
    assert_eq!(t.ok(&handler).await, recorded(Succeeded, RunState::Failed));
    // take, expiry, take, expiry (+ skip + ready), take, success.
    assert_eq!(t.status("r").await.transitions, 8);
}

// Tokens.

#[tokio::test(start_paused = true)]
async fn tokens_follow_the_token_rule_one_counter_per_graph() {
    let t = T::new();
    let wall_us = |b: &MemoryBackend| {
        let now = b.store.now();
        b.store.inner.table.wall_us(now)
    };
    t.submit("r", vec![node("a", &[]), node("b", &[])]).await;
    let (a, b) = (t.take().await, t.take().await);
    assert_eq!(a.token.get(), wall_us(&t.b));
    assert_eq!(b.token.get(), a.token.get() + 1);
    // Another graph counts for itself, from the wall clock.
    let other = k("other");
    t.b.submit(&other, &k("r"), &spec(vec![node("a", &[])]), KEEP)
        .await
        .unwrap();
    let Take::Taken(c) = t.b.take(&other, &t.h, TTL).await.unwrap() else {
        panic!("nothing taken");
    };
    assert_eq!(c.token, a.token);
}

// Limits.

#[tokio::test(start_paused = true)]
async fn the_store_enforces_the_limits_itself() {
    let t = T::new();
    t.submit("r", vec![node("a", &[]).max_attempts(2)]).await;
    let a = t.take().await;
    let big = NodeResult::Success(vec![0; MAX_RESULT_BYTES + 1]);
    let refused = t.complete_err(&a, big).await;
    let Error::InvalidArgument { message, .. } = refused else {
        panic!("not invalid: {refused:?}");
    };
    for part in ["graph \"g\"", "run \"r\"", "node \"a\"", "65536 bytes"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_eq!(t.states("r").await, [Running]);
    // A long error is cut at a character boundary; a long delay is cut.
    let long = NodeResult::Failure {
        error: format!("x{}", "é".repeat(MAX_ERROR_BYTES / 2)),
        retry_in: Some(MAX_TTL * 1_000_000),
    };
    assert_eq!(
        t.complete(&a, long).await,
        recorded(Ready, RunState::Running)
    );
    let n = t.node("r", "a").await;
    assert_eq!(n.error.map(|e| e.len()), Some(MAX_ERROR_BYTES - 1));
    assert_eq!(n.ready_in, Some(Duration::from_millis(1 << 40)));
    // The largest result is kept whole.
    t.submit("r2", vec![node("b", &[])]).await;
    let b = t.take().await;
    let full = NodeResult::Success(vec![7; MAX_RESULT_BYTES]);
    assert_eq!(
        t.complete(&b, full).await,
        recorded(Succeeded, RunState::Succeeded)
    );
    let kept = t.node("r2", "b").await.result;
    assert_eq!(kept.map(|r| r.len()), Some(MAX_RESULT_BYTES));
    // Leases and retentions are TTLs.
    assert!(t.b.take(&t.g, &t.h, Duration::ZERO).await.is_err());
    let spec = spec(vec![node("a", &[])]);
    assert!(
        t.b.submit(&t.g, &k("r3"), &spec, Duration::ZERO)
            .await
            .is_err()
    );
}

mod ends;
mod resolution;
