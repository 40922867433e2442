//! The SPI of job graphs. The client types built on it are
//! [`Graph`](crate::Graph), [`GraphRun`](crate::GraphRun) and
//! [`GraphWorker`](crate::GraphWorker); the contract is
//! [`contract::graphs`](crate::contract::graphs).
//!
//! A *graph* is a name under which runs are submitted; a *run* (a [`Key`]
//! naming it, unique per graph) is a copy of a [`GraphSpec`]: nodes and the
//! edges between them, each edge carrying a condition ([`On`]). Every node of
//! a run has a state ([`NodeState`]):
//!
//! ```text
//! Pending ──(every edge satisfied)──▶ Ready ──take──▶ Running ──complete──▶ Succeeded
//!    │                                  ▲               │  │                Failed
//!    │                                  └──retry/expiry─┘  └──cancel────▶  Cancelled
//!    └──(an edge can no longer be satisfied)──▶ Skipped (by the upstream node)
//! ```
//!
//! Every transition happens inside one atomic step of the backend, and the
//! step that ends a node also *resolves* its dependents: a dependent whose
//! edges are all satisfied becomes ready, one whose edge cannot be satisfied
//! any more is skipped, and so on downstream, in the same step. No client
//! ever decides from counts it read.
//!
//! An edge from `p` with condition [`On::Success`] is satisfied when `p`
//! succeeded; [`On::Failure`] when `p` failed; [`On::Any`] when `p`
//! succeeded, failed or was skipped. An edge is *unsatisfiable* once `p`
//! ended otherwise; the dependent is then skipped by `p` (or cancelled, when
//! `p` was cancelled).
//!
//! A running node is a lease of its *attempt*: the fencing token drawn when
//! it was taken identifies it; [`renew`](GraphBackend::renew) and
//! [`complete`](GraphBackend::complete) name that token and change nothing
//! for any other. A lease that expires is noticed by the next operation on
//! the graph: the node is ready again (a new attempt, with a larger token)
//! while it has attempts left, and failed otherwise.
//!
//! A run *ends* when every node ended; it is then kept for the retention
//! given at submission and removed after.
//!
//! # The rules, step by step (what every backend does)
//!
//! 1. **Every step first sweeps** the graph's expired leases (a running
//!    node whose lease deadline is at or before the backend's now): in a
//!    cancelled run the node is cancelled; otherwise it is ready again at
//!    once (its error set to `lease expired`) while `attempts <
//!    max_attempts`, and failed (error `lease expired`) otherwise, which
//!    resolves its dependents (rule 5). A backend may bound the work of one
//!    sweep as long as every expired lease is swept before the node is
//!    taken, renewed, completed or reported.
//! 2. **submit** makes every node: nodes without edges ready (ready since
//!    now), the others pending. An existing or kept run with the same id is
//!    left alone ([`Submit::Exists`]).
//! 3. **take** picks, over every run of the graph, the ready node whose
//!    ready time is earliest and not in the future (ties: either), makes it
//!    running with `attempts + 1`, a token drawn by the fencing-token rule
//!    from the graph's counter, the holder's instance as its worker (the
//!    whole holder kept for a give-back, rule 4), a deadline of now + ttl
//!    and `started_at` now; it replies with its
//!    parents' outcomes in edge order. Nothing to take: [`Take::Idle`] with
//!    the time to the earliest future ready time or lease deadline.
//! 4. **renew** and **complete** act only when the node is running with
//!    that token (and, by rule 1, unexpired); otherwise [`Renew::Lost`] /
//!    [`Complete::Stale`] and nothing changes, except that a complete
//!    naming the token of the node's last attempt ended by a complete
//!    (not by an expiry or a give-back) replies [`Complete::Already`] with
//!    the state that complete left: it is that complete sent again after
//!    its reply was lost (decision 0062). renew in a cancelled run
//!    replies [`Renew::Cancelled`] without extending. complete records:
//!    - `Success(result)`: succeeded, the result kept (also in a cancelled
//!      run: the work was done).
//!    - `Failure { error, retry_in }`: the error kept; in a cancelled run,
//!      cancelled; otherwise ready again at now + `retry_in` when `retry_in`
//!      is given and `attempts < max_attempts`; otherwise failed.
//!
//!    A complete that asks for the next node (`next: Some((holder, ttl))`)
//!    and was recorded then takes, in the same step and after the
//!    resolution (rule 5), exactly as rule 3 says for `holder` and `ttl`
//!    (the node it just made ready included), and replies with what that
//!    take got in [`Complete::Recorded::next`]; a stale (or already
//!    recorded) complete takes nothing. A node taken so makes no wake-up (rule 9).
//!
//!    **give_back** undoes a take (or a complete's `next`) whose reply the
//!    worker never saw (lost, or the call cancelled): the attempt it made,
//!    if it is still running, unexpired, for exactly that holder (its
//!    instance and nonce: a worker uses a holder per take), is undone as if
//!    never made: ready again at once, `attempts - 1` (never worked on, it
//!    neither uses an attempt nor fails the node), one transition (rule 8)
//!    and a ready wake-up (rule 9); in a cancelled run it is cancelled
//!    instead (its attempt taken back too), as an expiry would. Decision
//!    0044.
//! 5. **Resolution**, in the step that ended a node `n`: each pending child
//!    `c` of `n` (in declaration order) whose edges are all satisfied becomes
//!    ready; one with an edge that can no longer be satisfied ends at once,
//!    *cancelled* by `n` if that edge's parent was cancelled, *skipped* by
//!    `n` otherwise, and is resolved in turn. A node that failed with
//!    [`OnFailure::CancelRun`] then cancels the run (reason `node "<n>"
//!    failed`).
//! 6. **cancel** (of a run neither ended nor cancelled) marks the run
//!    cancelled with the reason, cancels every pending and ready node (`by`
//!    none) and leaves running attempts to end by rule 1 or 4.
//! 7. **The run ends** in the step where its last node ends: cancelled if it
//!    was cancelled, failed if a node failed, succeeded otherwise;
//!    `ended_at` is now and it is kept for its retention.
//! 8. **Counting.** Every change of a node's state after submission counts
//!    one transition in [`RunStatus::transitions`] (taking a ready node, a
//!    retry, an expiry: each one).
//! 9. **Wake-ups.** A step that made a node ready (submit, resolution, a
//!    retry or an expiry) wakes [`watch_ready`](GraphBackend::watch_ready)
//!    watchers of the graph, unless every node it made ready was taken in
//!    the same step (a complete that asked for the next node); a step that
//!    counted a transition of a run wakes its
//!    [`watch_run`](GraphBackend::watch_run) watchers. Retry delays and
//!    lease deadlines pass without a wake-up: [`Take::Idle`] says when.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{FencingToken, HolderId, InstanceId, Key, Result};

mod spec;

pub use spec::{Edge, GraphSpec, MAX_ATTEMPTS, MAX_NODES, NodeSpec, On, OnFailure};

/// The largest result a node may complete with (its encoding, in bytes).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// The longest error text kept for a failed attempt (and reason kept for a
/// cancelled run), in bytes; longer texts are cut at a character boundary
/// ([`cut_error`]) by the client before they are sent, and by the backend,
/// which does not rely on the client.
pub const MAX_ERROR_BYTES: usize = 4 * 1024;

/// `text` cut to [`MAX_ERROR_BYTES`] at a character boundary: what is kept
/// of a failed attempt's error or a cancelled run's reason.
pub fn cut_error(text: &str) -> &str {
    let mut end = text.len().min(MAX_ERROR_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where a node of a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeState {
    /// Waiting for its upstream edges.
    Pending,
    /// May be taken (possibly not before a retry delay: see
    /// [`NodeStatus::ready_in`]).
    Ready,
    /// An attempt runs under a lease.
    Running,
    /// Its last attempt succeeded.
    Succeeded,
    /// Its last attempt failed and it has no attempt left (or the failure
    /// asked for none).
    Failed,
    /// An upstream edge became unsatisfiable ([`NodeStatus::by`] names the
    /// upstream node); it never ran.
    Skipped,
    /// Its run was cancelled before it ended.
    Cancelled,
}

impl NodeState {
    /// Whether the node has ended (succeeded, failed, skipped or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            NodeState::Succeeded | NodeState::Failed | NodeState::Skipped | NodeState::Cancelled
        )
    }

    /// `pending`, `ready`, `running`, `succeeded`, `failed`, `skipped` or
    /// `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Ready => "ready",
            NodeState::Running => "running",
            NodeState::Succeeded => "succeeded",
            NodeState::Failed => "failed",
            NodeState::Skipped => "skipped",
            NodeState::Cancelled => "cancelled",
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunState {
    /// Some node has not ended.
    Running,
    /// Every node ended, none failed or was cancelled.
    Succeeded,
    /// Every node ended and at least one failed (also one whose failure a
    /// downstream node handled); the run was not cancelled.
    Failed,
    /// The run was cancelled (by a user or by an [`OnFailure::CancelRun`]
    /// node) and every node ended.
    Cancelled,
}

impl RunState {
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

/// How an ended upstream node ended, as its dependent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded with this result (as the body encoded it).
    Succeeded(Vec<u8>),
    /// It failed; its last error.
    Failed(String),
    /// It was skipped by this upstream node.
    Skipped(Key),
    /// It was cancelled.
    Cancelled,
}

/// What a worker sends when an attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeResult {
    /// The body succeeded with this result (at most [`MAX_RESULT_BYTES`]).
    Success(Vec<u8>),
    /// The body failed with `error` (at most [`MAX_ERROR_BYTES`]). With
    /// `retry_in`, the node is ready again after that delay if it has an
    /// attempt left and its run is not cancelled; without, or otherwise, it
    /// fails.
    Failure {
        /// The error's text.
        error: String,
        /// The delay before the next attempt, if one is wanted.
        retry_in: Option<Duration>,
    },
}

/// One node of a [`RunStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node's name.
    pub name: Key,
    /// Its state.
    pub state: NodeState,
    /// Attempts started so far.
    pub attempts: u32,
    /// The token of the current (running) or last attempt.
    pub token: Option<FencingToken>,
    /// The instance of the worker that runs (or last ran) it.
    pub worker: Option<InstanceId>,
    /// Time left on the running attempt's lease.
    pub expires_in: Option<Duration>,
    /// For a ready node, the time left before it may be taken (a retry delay).
    pub ready_in: Option<Duration>,
    /// When the last attempt started (the backend's clock).
    pub started_at: Option<SystemTime>,
    /// When the node ended (the backend's clock).
    pub ended_at: Option<SystemTime>,
    /// The last attempt's error, if it failed (also while retrying).
    pub error: Option<String>,
    /// For a skipped or cancelled node, the upstream node that caused it
    /// (`None` when a run's cancellation did).
    pub by: Option<Key>,
    /// The result, for a succeeded node when asked for.
    pub result: Option<Vec<u8>>,
}

impl NodeStatus {
    /// A pending node that never ran; set the other fields as needed.
    pub fn new(name: Key, state: NodeState) -> NodeStatus {
        NodeStatus {
            name,
            state,
            attempts: 0,
            token: None,
            worker: None,
            expires_in: None,
            ready_in: None,
            started_at: None,
            ended_at: None,
            error: None,
            by: None,
            result: None,
        }
    }
}

/// A run and every node of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunStatus {
    /// The run's state.
    pub state: RunState,
    /// The nodes, in declaration order.
    pub nodes: Vec<NodeStatus>,
    /// How many node transitions the run has had: every change of a node's
    /// state (and every new attempt) counts one. An observer that saw `a`
    /// and then sees `b` missed `b - a` minus the changes it can tell.
    pub transitions: u64,
    /// Why it was cancelled, if it was.
    pub cancelled: Option<String>,
    /// When it was submitted (the backend's clock).
    pub submitted_at: SystemTime,
    /// When it ended (the backend's clock).
    pub ended_at: Option<SystemTime>,
}

impl RunStatus {
    /// A status; set the optional fields as needed.
    pub fn new(
        state: RunState,
        nodes: Vec<NodeStatus>,
        transitions: u64,
        submitted_at: SystemTime,
    ) -> RunStatus {
        RunStatus {
            state,
            nodes,
            transitions,
            cancelled: None,
            submitted_at,
            ended_at: None,
        }
    }
}

/// The reply to [`GraphBackend::submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Submit {
    /// The run was made; its nodes without edges are ready.
    Created,
    /// A run with this id exists (or ended and is still kept); nothing was
    /// changed. `same_graph` tells whether it was submitted with an equal
    /// [`GraphSpec`].
    Exists {
        /// Whether its spec equals the one just sent.
        same_graph: bool,
    },
}

/// A node a worker took: what its body needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Taken {
    /// The run.
    pub run: Key,
    /// The node's name.
    pub node: Key,
    /// Which attempt this is (1-based).
    pub attempt: u32,
    /// The attempt's fencing token.
    pub token: FencingToken,
    /// Each upstream node's outcome, in the node's edge order.
    pub parents: Vec<(Key, Outcome)>,
}

impl Taken {
    /// A taken node.
    pub fn new(
        run: Key,
        node: Key,
        attempt: u32,
        token: FencingToken,
        parents: Vec<(Key, Outcome)>,
    ) -> Taken {
        Taken {
            run,
            node,
            attempt,
            token,
            parents,
        }
    }
}

/// The reply to [`GraphBackend::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Take {
    /// A node is now running for the caller.
    Taken(Box<Taken>),
    /// Nothing can be taken now. `next_in`: the time until a node of the
    /// graph may become takeable without a notification (a retry delay
    /// ending, a running lease expiring), if any.
    Idle {
        /// Time to the next such moment.
        next_in: Option<Duration>,
    },
}

/// The reply to [`GraphBackend::renew`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renew {
    /// The lease was extended.
    Renewed,
    /// The run was cancelled: the lease was not extended; the attempt may
    /// still complete until it expires.
    Cancelled,
    /// The token is not the node's running attempt any more (its lease
    /// expired, another attempt took it, the run is gone).
    Lost,
}

/// The reply to [`GraphBackend::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Complete {
    /// The attempt's end was recorded; the node is now in `state`
    /// (`Ready` when it will be retried), and `run` is the run's state after
    /// the step (its dependents resolved in it).
    Recorded {
        /// The node's state after the step.
        state: NodeState,
        /// The run's state after the step.
        run: RunState,
        /// When the complete asked for the next node: what the take made
        /// in the same step got (a node now running for the holder named,
        /// or `Idle`); `None` when it did not ask.
        next: Option<Take>,
    },
    /// The token is not the node's running attempt: nothing changed. `state`
    /// is the node's state (`None`: no such run or node).
    Stale {
        /// The node's current state.
        state: Option<NodeState>,
    },
    /// The token's attempt already ended by a completion, the node's last
    /// one recorded (this one sent again after its reply was lost):
    /// nothing changed. `state` is the node's state that completion left
    /// (as [`Recorded`](Complete::Recorded) said it).
    Already {
        /// The node's state after the completion recorded.
        state: NodeState,
    },
}

/// The reply to [`GraphBackend::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancel {
    /// The run is cancelled: nodes that had not started are cancelled;
    /// `running` attempts are told through [`Renew::Cancelled`].
    Cancelled {
        /// How many attempts were running.
        running: u32,
    },
    /// The run had already ended, or was already cancelled; its state now
    /// (`Running` while a cancelled run's attempts end).
    AlreadyEnded(RunState),
    /// No such run.
    NotFound,
}

/// Job graphs. Every method is one atomic step (one round trip on a remote
/// backend); graphs have a key space of their own, and every run of a graph
/// lives with its graph (one hash slot on Redis).
#[async_trait]
pub trait GraphBackend: Send + Sync {
    /// Makes run `run` of `graph` from `spec`, all nodes at once, unless a
    /// run with that id exists (then nothing changes: see [`Submit`]).
    /// Once ended, the run is kept for `retention`.
    async fn submit(
        &self,
        graph: &Key,
        run: &Key,
        spec: &GraphSpec,
        retention: Duration,
    ) -> Result<Submit>;

    /// Takes the ready node of `graph` (any run) that has been ready longest
    /// (and whose retry delay has passed) for `holder`, under a lease of
    /// `ttl`: a new attempt with a new token. Expired leases of the graph
    /// are dealt with first (see the module's description).
    async fn take(&self, graph: &Key, holder: &HolderId, ttl: Duration) -> Result<Take>;

    /// Undoes what a take (or a complete's `next`) for `holder` whose
    /// reply never came made: its attempt, while it is still running,
    /// unexpired, for exactly `holder` (instance and nonce), is ready again
    /// with its attempt taken back (rule 4's give-back); how many (0 or 1).
    async fn give_back(&self, graph: &Key, holder: &HolderId) -> Result<u32>;

    /// Extends the lease of `node`'s attempt `token` by `ttl` from now.
    async fn renew(
        &self,
        graph: &Key,
        run: &Key,
        node: &Key,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Renew>;

    /// Ends `node`'s attempt `token` with `result`, and resolves its
    /// dependents in the same step. With `next` (a holder and a TTL), a
    /// recorded completion then takes for that holder as
    /// [`take`](Self::take) does, still in the same step (one round trip
    /// for a worker's end of one node and start of the next).
    async fn complete(
        &self,
        graph: &Key,
        run: &Key,
        node: &Key,
        token: FencingToken,
        result: NodeResult,
        next: Option<(HolderId, Duration)>,
    ) -> Result<Complete>;

    /// Cancels the run: no node of it starts any more; nodes that had not
    /// started are cancelled; running attempts learn it at their next
    /// renewal and end by completing or expiring (then cancelled).
    async fn cancel(&self, graph: &Key, run: &Key, reason: &str) -> Result<Cancel>;

    /// The run and each of its nodes (with succeeded nodes' results when
    /// `results`); `None` if there is no such run.
    async fn status(&self, graph: &Key, run: &Key, results: bool) -> Result<Option<RunStatus>>;

    /// Wakes when a node of `graph` (any run) may have become ready.
    async fn watch_ready(&self, graph: &Key) -> Result<Box<dyn Watch>>;

    /// Wakes when a node of `run` may have changed state.
    async fn watch_run(&self, graph: &Key, run: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "graphs",
        name,
    }
}

fn graphs<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn GraphBackend> {
    family!(backend, graphs, op(name))
}

#[async_trait]
impl<D: Dispatch> GraphBackend for Dispatched<D> {
    async fn submit(
        &self,
        graph: &Key,
        run: &Key,
        spec: &GraphSpec,
        retention: Duration,
    ) -> Result<Submit> {
        let args = (graph.clone(), run.clone(), spec.clone(), retention);
        self.carry(op("submit"), args, |b, (g, r, s, ret)| async move {
            graphs(&b, "submit")?.submit(&g, &r, &s, ret).await
        })
        .await
    }
    async fn take(&self, graph: &Key, holder: &HolderId, ttl: Duration) -> Result<Take> {
        let args = (graph.clone(), holder.clone(), ttl);
        self.carry(op("take"), args, |b, (g, h, ttl)| async move {
            graphs(&b, "take")?.take(&g, &h, ttl).await
        })
        .await
    }
    async fn renew(
        &self,
        graph: &Key,
        run: &Key,
        node: &Key,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Renew> {
        let args = (graph.clone(), run.clone(), node.clone(), token, ttl);
        self.carry(op("renew"), args, |b, (g, r, n, t, ttl)| async move {
            graphs(&b, "renew")?.renew(&g, &r, &n, t, ttl).await
        })
        .await
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
        let args = (
            graph.clone(),
            run.clone(),
            node.clone(),
            token,
            result,
            next,
        );
        self.carry(
            op("complete"),
            args,
            |b, (g, r, n, t, res, nx)| async move {
                graphs(&b, "complete")?
                    .complete(&g, &r, &n, t, res, nx)
                    .await
            },
        )
        .await
    }
    async fn give_back(&self, graph: &Key, holder: &HolderId) -> Result<u32> {
        let args = (graph.clone(), holder.clone());
        self.carry(op("give_back"), args, |b, (g, h)| async move {
            graphs(&b, "give_back")?.give_back(&g, &h).await
        })
        .await
    }
    async fn cancel(&self, graph: &Key, run: &Key, reason: &str) -> Result<Cancel> {
        let args = (graph.clone(), run.clone(), reason.to_owned());
        self.carry(op("cancel"), args, |b, (g, r, why)| async move {
            graphs(&b, "cancel")?.cancel(&g, &r, &why).await
        })
        .await
    }
    async fn status(&self, graph: &Key, run: &Key, results: bool) -> Result<Option<RunStatus>> {
        let args = (graph.clone(), run.clone(), results);
        self.carry(op("status"), args, |b, (g, r, res)| async move {
            graphs(&b, "status")?.status(&g, &r, res).await
        })
        .await
    }
    async fn watch_ready(&self, graph: &Key) -> Result<Box<dyn Watch>> {
        let args = graph.clone();
        self.carry(op("watch_ready"), args, |b, g| async move {
            graphs(&b, "watch_ready")?.watch_ready(&g).await
        })
        .await
    }
    async fn watch_run(&self, graph: &Key, run: &Key) -> Result<Box<dyn Watch>> {
        let args = (graph.clone(), run.clone());
        self.carry(op("watch_run"), args, |b, (g, r)| async move {
            graphs(&b, "watch_run")?.watch_run(&g, &r).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let c = cut_error(&long);
        assert!(c.len() <= MAX_ERROR_BYTES && c.len() >= MAX_ERROR_BYTES - 1);
        assert!(long.starts_with(c));
        assert_eq!(cut_error("short"), "short");
    }
}
