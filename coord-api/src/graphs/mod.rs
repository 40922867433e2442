//! Job graphs: runs of a DAG of named nodes, worked on by any instance,
//! each node's dependents resolved inside the backend's atomic step.
//!
//! | type | what it is |
//! |---|---|
//! | [`Graph`] (from [`Client::graph`] → [`GraphBuilder`]) | a declared, checked graph: submit runs of it, get workers for it |
//! | [`Node`] | one node's declaration: its edges ([`On`]), attempts, back-off, failure policy |
//! | [`GraphRun`] (`run.rs`) | one run: status, results, `wait`, `cancel`, `why_blocked`, [`RunObserver`] |
//! | [`GraphWorker`] (`worker.rs`) | takes ready nodes of any run and runs a body on each ([`NodeContext`], [`NodeError`], [`Worked`]) |
//! | `metrics.rs` | what the family counts |
//!
//! The contract is [`contract::graphs`](crate::contract::graphs); the
//! backend's rules are in [`spi::graphs`](crate::spi::graphs).

pub(crate) mod metrics;
mod ready;
mod run;
mod worker;

use std::{sync::Arc, time::Duration};

use crate::{
    Backoff, Client, Error, Key, Result,
    spi::{Edge, GraphSpec, NodeSpec, On, OnFailure},
};

pub use run::{Blocker, GraphRun, RunEvent, RunObserver};
pub use worker::{GraphWorker, NodeContext, NodeError, Worked};

/// One node of a graph, as declared.
///
/// ```
/// use coord_api::{Node, On, OnFailure};
/// let load = Node::new("load")
///     .after("transform")                  // runs when transform succeeded
///     .max_attempts(5)
///     .on_failure(OnFailure::CancelRun);
/// let alert = Node::new("alert").after_on("load", On::Failure);
/// # let _ = (load, alert);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    name: String,
    after: Vec<(String, On)>,
    max_attempts: u32,
    backoff: Backoff,
    on_failure: OnFailure,
}

impl Node {
    /// The default number of attempts.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

    /// A node named `name` (checked when the graph is built), with no
    /// edges, [`Self::DEFAULT_MAX_ATTEMPTS`] attempts, [`Backoff::DEFAULT`]
    /// and [`OnFailure::Continue`].
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_owned(),
            after: Vec::new(),
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::DEFAULT,
            on_failure: OnFailure::Continue,
        }
    }

    /// Runs after `parent` succeeded.
    pub fn after(self, parent: &str) -> Node {
        self.after_on(parent, On::Success)
    }

    /// Runs after `parent` ended as `on` says.
    pub fn after_on(mut self, parent: &str, on: On) -> Node {
        self.after.push((parent.to_owned(), on));
        self
    }

    /// Gives it `n` attempts (1 ..= 100): a failed attempt (or one whose
    /// worker crashed) is retried while attempts are left.
    pub fn max_attempts(mut self, n: u32) -> Node {
        self.max_attempts = n;
        self
    }

    /// Sets its retry delays.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Node {
        self.backoff = Backoff { initial, max };
        self
    }

    /// What its final failure does to the run.
    pub fn on_failure(mut self, policy: OnFailure) -> Node {
        self.on_failure = policy;
        self
    }
}

impl From<&str> for Node {
    fn from(name: &str) -> Node {
        Node::new(name)
    }
}

/// Declares a graph: nodes in order, then [`build`](Self::build), which
/// checks everything before any I/O.
#[derive(Debug, Clone)]
#[must_use]
pub struct GraphBuilder {
    client: Client,
    name: String,
    nodes: Vec<Node>,
    retention: Duration,
}

impl GraphBuilder {
    pub(crate) fn new(client: Client, name: &str) -> GraphBuilder {
        GraphBuilder {
            client,
            name: name.to_owned(),
            nodes: Vec::new(),
            retention: Graph::DEFAULT_RETENTION,
        }
    }

    /// Adds a node (a name, or a [`Node`] with its edges and options).
    pub fn node(mut self, node: impl Into<Node>) -> GraphBuilder {
        self.nodes.push(node.into());
        self
    }

    /// How long an ended run is kept (1 ms ..= 24 h, default 24 h): within
    /// it, submitting the same run id returns the ended run.
    pub fn retention(mut self, retention: Duration) -> GraphBuilder {
        self.retention = retention;
        self
    }

    /// The graph, or `InvalidArgument` naming what is wrong: a bad name, an
    /// edge to an unknown node, a cycle, a node declared twice, attempts or
    /// back-off out of range, too many nodes.
    pub fn build(self) -> Result<Graph> {
        let name = Key::new(&self.name)?;
        crate::key::check_in_ttl_range("retention", "graph", &name, self.retention)?;
        let mut index = std::collections::HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            index.entry(n.name.as_str()).or_insert(i as u32);
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let key = crate::key::part_key("graph", &name, "node name", &n.name)?;
            n.backoff
                .check(|| format!("graph \"{name}\": node \"{}\"", n.name))?;
            let mut edges = Vec::with_capacity(n.after.len());
            for (parent, on) in &n.after {
                let Some(&from) = index.get(parent.as_str()) else {
                    return Err(Error::invalid(format!(
                        "graph \"{name}\": node \"{}\" runs after \"{parent}\", which is not a node of the graph",
                        n.name
                    )));
                };
                edges.push(Edge::new(from, *on));
            }
            let spec = NodeSpec::new(key)
                .after(edges)
                .max_attempts(n.max_attempts)
                .on_failure(n.on_failure);
            nodes.push(spec);
        }
        let spec = GraphSpec::new(&name, nodes)?;
        Ok(Graph {
            client: self.client,
            name,
            spec: Arc::new(spec),
            backoff: self.nodes.iter().map(|n| n.backoff).collect(),
            retention: self.retention,
            ready: Arc::default(),
        })
    }
}

/// A declared graph: submit runs of it ([`submit`](Self::submit)), look at
/// them ([`run`](Self::run)), and work on them ([`worker`](Self::worker)).
/// Cheap to clone.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::{Node, RunState};
/// let graph = client
///     .graph("pipeline")
///     .node("extract")
///     .node(Node::new("transform").after("extract"))
///     .node(Node::new("load").after("transform"))
///     .build()?;
/// // Any instance may submit; the same run id again returns the same run.
/// let run = graph.submit("2026-12-02").await?;
/// // Any instance may work; each node runs once it may, on one worker.
/// let worker = graph.worker();
/// tokio::spawn(async move {
///     worker
///         .run(|ctx| async move {
///             println!("{} (attempt {}, token {})", ctx.node(), ctx.attempt(), ctx.token());
///             Ok(ctx.node().len())
///         })
///         .await
/// });
/// let status = run.wait().await?;
/// assert_eq!(status.state, RunState::Succeeded);
/// assert_eq!(run.result::<usize>("load").await?, Some(4));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Graph {
    client: Client,
    name: Key,
    spec: Arc<GraphSpec>,
    /// Each node's back-off, in declaration order.
    backoff: Arc<[Backoff]>,
    retention: Duration,
    /// The ready wake-ups its workers (and its clones') share.
    ready: Arc<ready::Ready>,
}

impl Graph {
    /// How long an ended run is kept by default (24 h).
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

    /// The graph's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Its checked shape.
    pub fn spec(&self) -> &GraphSpec {
        &self.spec
    }

    /// Submits run `run`: every node at once, the nodes without edges ready.
    /// Idempotent: if run `run` exists (or ended and is still kept) it is
    /// returned unchanged ([`GraphRun::was_created`] tells), unless it was
    /// submitted with a different graph, which is `InvalidArgument`.
    pub async fn submit(&self, run: &str) -> Result<GraphRun> {
        let key = Key::new(run)?;
        let graphs = self.client.graphs()?;
        let submit = graphs.submit(&self.name, &key, &self.spec, self.retention);
        let site = || crate::trace::Site::new(("graph", "run", "submit"), &self.name, None, None);
        let submitted =
            crate::trace::call(&self.client, site, submit, |_| crate::trace::Outcome::Ok).await?;
        let created = match submitted {
            crate::spi::Submit::Created => {
                metrics::runs_submitted();
                true
            }
            crate::spi::Submit::Exists { same_graph: true } => false,
            crate::spi::Submit::Exists { .. } => {
                return Err(Error::invalid(format!(
                    "graph \"{}\": run \"{run}\" exists, submitted with a different graph",
                    self.name
                )));
            }
        };
        Ok(GraphRun::new(self.clone(), key, created))
    }

    /// A handle on run `run` (no I/O; it may not exist).
    pub fn run(&self, run: &str) -> Result<GraphRun> {
        Ok(GraphRun::new(self.clone(), Key::new(run)?, false))
    }

    /// A worker for this graph's runs, with the client's lease options (the
    /// TTL of each attempt's lease, its renewal, the retry delay when idle).
    pub fn worker(&self) -> GraphWorker {
        GraphWorker::new(self.clone())
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn key(&self) -> &Key {
        &self.name
    }

    pub(crate) fn ready(&self) -> &Arc<ready::Ready> {
        &self.ready
    }

    /// The back-off of the node named `node`.
    pub(crate) fn backoff_of(&self, node: &Key) -> Backoff {
        (self.spec.index_of(node.as_str()))
            .and_then(|i| self.backoff.get(i).copied())
            .unwrap_or(Backoff::DEFAULT)
    }
}

#[cfg(test)]
mod tests;
