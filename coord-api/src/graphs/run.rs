//! One run of a graph: its status and results, waiting for its end,
//! cancelling it, asking why a node waits, and observing its transitions.

use serde::de::DeserializeOwned;

use super::{Graph, worker::decode};
use crate::{
    Error, Key, Result, Watch,
    barriers::sleep_or_woken,
    lease::wait::{jittered, later},
    spi::{Cancel, NodeState, NodeStatus, RunState, RunStatus},
    trace::{self, Outcome, Site},
};

/// A run of a [`Graph`]: from [`Graph::submit`] or [`Graph::run`].
#[derive(Debug, Clone)]
pub struct GraphRun {
    graph: Graph,
    run: Key,
    created: bool,
}

/// An upstream node a node still waits for (see [`GraphRun::why_blocked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Blocker {
    /// The upstream node.
    pub node: String,
    /// Where it is (not ended).
    pub state: NodeState,
    /// How many attempts it has had.
    pub attempts: u32,
}

impl GraphRun {
    pub(super) fn new(graph: Graph, run: Key, created: bool) -> GraphRun {
        GraphRun {
            graph,
            run,
            created,
        }
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        self.run.as_str()
    }

    /// Whether [`Graph::submit`] made the run (false: it existed already,
    /// or this handle came from [`Graph::run`]).
    pub fn was_created(&self) -> bool {
        self.created
    }

    fn site(&self, op: &'static str) -> Site<'_> {
        Site::new(("graph", "run", op), self.graph.key(), None, None)
    }

    fn not_found(&self) -> Error {
        Error::NotFound {
            what: "graph run",
            key: format!("{}/{}", self.graph.name(), self.run),
            backend: self.graph.client().backend().to_string(),
        }
    }

    async fn fetch(&self, results: bool) -> Result<RunStatus> {
        let client = self.graph.client();
        let status = client
            .graphs()?
            .status(self.graph.key(), &self.run, results);
        let status = trace::call(client, || self.site("status"), status, |_| Outcome::Ok).await?;
        status.ok_or_else(|| self.not_found())
    }

    /// The run and each node: state, attempts, token, worker, timings,
    /// errors. `NotFound` if there is no such run (never submitted, or
    /// ended longer ago than the graph's retention).
    pub async fn status(&self) -> Result<RunStatus> {
        self.fetch(false).await
    }

    /// Node `node`'s result decoded as `T`: `None` while it has not
    /// succeeded (or if it never will). `InvalidArgument` if the graph has
    /// no such node or the result is not a `T`.
    pub async fn result<T: DeserializeOwned>(&self, node: &str) -> Result<Option<T>> {
        self.node_index(node)?;
        let status = self.fetch(true).await?;
        let found = status.nodes.iter().find(|n| n.name.as_str() == node);
        match found.and_then(|n| n.result.as_deref()) {
            Some(bytes) => decode(&self.run, node, bytes).map(Some),
            None => Ok(None),
        }
    }

    fn node_index(&self, node: &str) -> Result<usize> {
        self.graph.spec().index_of(node).ok_or_else(|| {
            Error::invalid(format!(
                "graph \"{}\" has no node \"{node}\"",
                self.graph.name()
            ))
        })
    }

    /// A watch on the run's notifications, traced; `None` when the backend
    /// could not make one (waiters then wake at their retry delay).
    async fn watch(&self) -> Result<Option<Box<dyn Watch>>> {
        let client = self.graph.client();
        let watch = client.graphs()?.watch_run(self.graph.key(), &self.run);
        let watch = trace::call(client, || self.site("watch_run"), watch, Outcome::ok);
        Ok(watch.await.ok())
    }

    /// Waits until the run ended and returns its final status. Woken by the
    /// run's notifications; a missed one delays it by at most the client's
    /// retry delay.
    pub async fn wait(&self) -> Result<RunStatus> {
        let client = self.graph.client();
        let mut watch: Option<Box<dyn Watch>> = None;
        let mut subscribed = false;
        loop {
            let status = self.fetch(false).await?;
            if status.state != RunState::Running {
                return Ok(status);
            }
            if !subscribed {
                watch = self.watch().await?;
                subscribed = true;
                continue;
            }
            let wake = later(client.clock().now(), jittered(client.lease_options()));
            sleep_or_woken(client, &mut watch, wake).await;
            subscribed = watch.is_some();
        }
    }

    /// Cancels the run with `reason`: no node of it starts any more; running
    /// attempts see their lost signal fire (and
    /// [`NodeContext::is_cancelled`](super::NodeContext::is_cancelled)) at
    /// their next renewal. Returns whether this call cancelled it (false: it
    /// had already ended or been cancelled); `NotFound` if there is no such
    /// run. The reason is kept cut to 4 KiB (as queue errors are).
    pub async fn cancel(&self, reason: &str) -> Result<bool> {
        let client = self.graph.client();
        let reason = crate::spi::graphs::cut_error(reason);
        let cancel = client.graphs()?.cancel(self.graph.key(), &self.run, reason);
        let cancel = trace::call(client, || self.site("cancel"), cancel, |_| Outcome::Ok).await?;
        match cancel {
            Cancel::Cancelled { .. } => Ok(true),
            Cancel::AlreadyEnded(_) => Ok(false),
            Cancel::NotFound => Err(self.not_found()),
        }
    }

    /// Why node `node` has not started: the upstream nodes it still waits
    /// for (not ended yet), in its edge order. Empty when it is not pending
    /// (it is ready, running or ended). `InvalidArgument` for a node the
    /// graph does not have.
    pub async fn why_blocked(&self, node: &str) -> Result<Vec<Blocker>> {
        let i = self.node_index(node)?;
        let status = self.fetch(false).await?;
        Ok(blockers(self.graph.spec(), &status, i))
    }

    /// Follows the run's node transitions (see [`RunObserver`]).
    pub fn observe(&self) -> RunObserver {
        RunObserver {
            run: self.clone(),
            last: None,
            watch: None,
            subscribed: false,
            ended: false,
        }
    }
}

/// The blockers of node `i` in `status`.
pub(super) fn blockers(spec: &crate::spi::GraphSpec, status: &RunStatus, i: usize) -> Vec<Blocker> {
    let Some(n) = status.nodes.get(i) else {
        return Vec::new();
    };
    if n.state != NodeState::Pending {
        return Vec::new();
    }
    (spec.nodes()[i].after.iter())
        .filter_map(|e| status.nodes.get(e.from as usize))
        .filter(|p| !p.state.is_terminal())
        .map(|p| Blocker {
            node: p.name.as_str().to_owned(),
            state: p.state,
            attempts: p.attempts,
        })
        .collect()
}

/// What a [`RunObserver`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunEvent {
    /// The run as first seen: every node's state.
    Started(RunStatus),
    /// A node changed (its state, or its attempt: a retry) since the last
    /// look.
    Node {
        /// The node.
        node: String,
        /// Its state at the last look.
        from: NodeState,
        /// Its state now.
        to: NodeState,
        /// Its attempts now.
        attempts: u32,
        /// Its status now (error, worker, token, `by`...).
        status: Box<NodeStatus>,
    },
    /// Transitions happened between two looks that the changes above do not
    /// show (a node went through states faster than the observer looked):
    /// how many.
    Missed {
        /// Transitions not shown.
        transitions: u64,
    },
    /// The run ended; the observer yields nothing more.
    Ended(RunStatus),
}

/// Follows a run: each [`next`](Self::next) returns the next change,
/// woken by the run's notifications. It compares what it sees with what it
/// saw, and says how many transitions it could not show
/// ([`RunEvent::Missed`]), so nothing is skipped silently.
pub struct RunObserver {
    run: GraphRun,
    last: Option<RunStatus>,
    watch: Option<Box<dyn Watch>>,
    subscribed: bool,
    ended: bool,
}

impl std::fmt::Debug for RunObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunObserver")
            .field("run", &self.run.id())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl RunObserver {
    /// The next events (one look's worth), or an empty list once the run
    /// ended (after [`RunEvent::Ended`]). Waits while nothing changed.
    pub async fn next(&mut self) -> Result<Vec<RunEvent>> {
        if self.ended {
            return Ok(Vec::new());
        }
        let client = self.run.graph.client().clone();
        loop {
            if !self.subscribed {
                self.watch = self.run.watch().await?;
                self.subscribed = true;
            }
            let now = self.run.fetch(false).await?;
            let events = match &self.last {
                None => vec![RunEvent::Started(now.clone())],
                Some(last) => diff(last, &now),
            };
            let ended = now.state != RunState::Running;
            let mut events = events;
            if ended {
                events.push(RunEvent::Ended(now.clone()));
                self.ended = true;
            }
            self.last = Some(now);
            if !events.is_empty() {
                return Ok(events);
            }
            let wake = later(client.clock().now(), jittered(client.lease_options()));
            sleep_or_woken(&client, &mut self.watch, wake).await;
            self.subscribed = self.watch.is_some();
        }
    }
}

/// The changes from `a` to `b`, and what they do not explain.
pub(super) fn diff(a: &RunStatus, b: &RunStatus) -> Vec<RunEvent> {
    let mut events = Vec::new();
    let mut shown = 0u64;
    for (x, y) in a.nodes.iter().zip(&b.nodes) {
        if x.state == y.state && x.attempts == y.attempts {
            continue;
        }
        shown += 1;
        events.push(RunEvent::Node {
            node: y.name.as_str().to_owned(),
            from: x.state,
            to: y.state,
            attempts: y.attempts,
            status: Box::new(y.clone()),
        });
    }
    let happened = b.transitions.saturating_sub(a.transitions);
    if happened > shown {
        events.push(RunEvent::Missed {
            transitions: happened - shown,
        });
    }
    events
}
