//! The shape of a graph: nodes, edges and their conditions, checked once
//! by [`GraphSpec::new`] so that every backend may rely on a well-formed DAG.

use super::NodeState;
use crate::{Error, Key, Result};

/// The most nodes a graph may have.
pub const MAX_NODES: usize = 1_000;

/// The most attempts a node may be given.
pub const MAX_ATTEMPTS: u32 = 100;

/// When an edge lets its dependent run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum On {
    /// The upstream node succeeded (the default).
    #[default]
    Success,
    /// The upstream node failed (after its last attempt).
    Failure,
    /// The upstream node ended in any way but being cancelled: succeeded,
    /// failed or skipped.
    Any,
}

impl On {
    /// `success`, `failure` or `any`.
    pub fn as_str(self) -> &'static str {
        match self {
            On::Success => "success",
            On::Failure => "failure",
            On::Any => "any",
        }
    }

    /// Whether an upstream node that ended in `state` satisfies the edge;
    /// `None` while `state` has not ended.
    pub fn satisfied_by(self, state: NodeState) -> Option<bool> {
        if !state.is_terminal() {
            return None;
        }
        Some(match self {
            On::Success => state == NodeState::Succeeded,
            On::Failure => state == NodeState::Failed,
            On::Any => state != NodeState::Cancelled,
        })
    }
}

/// What a node's final failure does to the rest of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// Only the node's dependents are affected (by their edge conditions);
    /// independent branches go on (the default).
    #[default]
    Continue,
    /// The run is cancelled, as by [`GraphBackend::cancel`](super::GraphBackend::cancel), in the same step.
    CancelRun,
}

/// An edge into a node: the upstream node (its index in
/// [`GraphSpec::nodes`]) and the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Edge {
    /// The upstream node's index.
    pub from: u32,
    /// When the edge is satisfied.
    pub on: On,
}

impl Edge {
    /// An edge from node `from` on `on`.
    pub fn new(from: u32, on: On) -> Edge {
        Edge { from, on }
    }
}

/// One node of a [`GraphSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NodeSpec {
    /// Its name, unique in the graph.
    pub name: Key,
    /// Its upstream edges, in declaration order (the order in which the
    /// node sees its parents' outcomes).
    pub after: Vec<Edge>,
    /// How many attempts it is given (1..=[`MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// What its final failure does to the run.
    pub on_failure: OnFailure,
}

impl NodeSpec {
    /// A node with no edges, one attempt and [`OnFailure::Continue`].
    pub fn new(name: Key) -> NodeSpec {
        NodeSpec {
            name,
            after: Vec::new(),
            max_attempts: 1,
            on_failure: OnFailure::Continue,
        }
    }

    /// With these upstream edges.
    pub fn after(mut self, after: Vec<Edge>) -> NodeSpec {
        self.after = after;
        self
    }

    /// With `max_attempts` attempts.
    pub fn max_attempts(mut self, max_attempts: u32) -> NodeSpec {
        self.max_attempts = max_attempts;
        self
    }

    /// With this failure policy.
    pub fn on_failure(mut self, on_failure: OnFailure) -> NodeSpec {
        self.on_failure = on_failure;
        self
    }
}

/// The shape of a graph: its nodes in declaration order. Only
/// [`GraphSpec::new`] makes one, so a backend may rely on it being a
/// well-formed DAG.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GraphSpec {
    nodes: Vec<NodeSpec>,
}

impl GraphSpec {
    /// Checks `nodes` and makes the spec: 1..=[`MAX_NODES`] nodes, names
    /// unique, every edge naming another node by a valid index, no node
    /// listed twice as the same node's parent, attempts in
    /// 1..=[`MAX_ATTEMPTS`], and no cycle. `graph` names the graph in errors.
    pub fn new(graph: &Key, nodes: Vec<NodeSpec>) -> Result<GraphSpec> {
        let bad = |what: String| Err(Error::invalid(format!("graph \"{graph}\": {what}")));
        if nodes.is_empty() {
            return bad("has no node".into());
        }
        if nodes.len() > MAX_NODES {
            return bad(format!(
                "has {} nodes, more than the limit of {MAX_NODES}",
                nodes.len()
            ));
        }
        let mut names = std::collections::HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if names.insert(n.name.as_str(), i).is_some() {
                return bad(format!("node \"{}\" is declared twice", n.name));
            }
            if !(1..=MAX_ATTEMPTS).contains(&n.max_attempts) {
                return bad(format!(
                    "node \"{}\" has max_attempts {}, outside 1..={MAX_ATTEMPTS}",
                    n.name, n.max_attempts
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for e in &n.after {
                let Some(p) = nodes.get(e.from as usize) else {
                    return bad(format!(
                        "node \"{}\" names node index {} (the graph has {})",
                        n.name,
                        e.from,
                        nodes.len()
                    ));
                };
                if e.from as usize == i {
                    return bad(format!("node \"{}\" depends on itself", n.name));
                }
                if !seen.insert(e.from) {
                    return bad(format!(
                        "node \"{}\" lists \"{}\" as a parent twice",
                        n.name, p.name
                    ));
                }
            }
        }
        if let Some(cycle) = find_cycle(&nodes) {
            let names: Vec<&str> = cycle.iter().map(|&i| nodes[i].name.as_str()).collect();
            return bad(format!("has a cycle: {}", names.join(" -> ")));
        }
        Ok(GraphSpec { nodes })
    }

    /// The nodes, in declaration order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name.as_str() == name)
    }

    /// For each node, the indices of the nodes that depend on it (in
    /// declaration order): the direction in which resolution walks.
    pub fn children(&self) -> Vec<Vec<u32>> {
        let mut children = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for e in &n.after {
                children[e.from as usize].push(i as u32);
            }
        }
        children
    }
}

/// A cycle in `nodes`' edges (node indices, first repeated last), if any.
fn find_cycle(nodes: &[NodeSpec]) -> Option<Vec<usize>> {
    // Iterative depth-first search over parent edges; 0 unvisited, 1 on the
    // path, 2 done.
    let mut mark = vec![0u8; nodes.len()];
    for start in 0..nodes.len() {
        if mark[start] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = 1;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(e) = nodes[node].after.get(*next) {
                *next += 1;
                let p = e.from as usize;
                match mark[p] {
                    0 => {
                        mark[p] = 1;
                        path.push((p, 0));
                    }
                    1 => {
                        let from = path.iter().position(|&(n, _)| n == p).unwrap_or(0);
                        let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                        cycle.push(p);
                        // Parent edges point upstream: print it downstream.
                        cycle.reverse();
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                mark[node] = 2;
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn node(name: &str, after: &[u32]) -> NodeSpec {
        NodeSpec::new(k(name)).after(after.iter().map(|&i| Edge::new(i, On::Success)).collect())
    }

    fn err(nodes: Vec<NodeSpec>) -> String {
        GraphSpec::new(&k("g"), nodes).unwrap_err().to_string()
    }

    #[test]
    fn a_diamond_is_a_graph() {
        let spec = GraphSpec::new(
            &k("g"),
            vec![
                node("a", &[]),
                node("b", &[0]),
                node("c", &[0]),
                node("d", &[1, 2]),
            ],
        )
        .unwrap();
        assert_eq!(spec.children(), vec![vec![1, 2], vec![3], vec![3], vec![]]);
        assert_eq!(spec.index_of("d"), Some(3));
    }

    #[test]
    fn malformed_graphs_are_refused_naming_what() {
        assert!(err(vec![]).contains("no node"));
        assert!(err(vec![node("a", &[]), node("a", &[])]).contains("\"a\" is declared twice"));
        assert!(err(vec![node("a", &[3])]).contains("index 3"));
        assert!(err(vec![node("a", &[0])]).contains("depends on itself"));
        assert!(err(vec![node("a", &[]), node("b", &[0, 0])]).contains("twice"));
        let e = err(vec![node("a", &[2]), node("b", &[0]), node("c", &[1])]);
        assert!(e.contains("cycle"), "{e}");
        assert!(e.contains("a -> b -> c -> a"), "{e}");
        assert!(err(vec![node("a", &[]).max_attempts(0)]).contains("max_attempts 0"));
        let many = (0..=MAX_NODES)
            .map(|i| node(&format!("n{i}"), &[]))
            .collect();
        assert!(err(many).contains("limit of 1000"));
    }

    #[test]
    fn edge_conditions() {
        use NodeState::*;
        assert_eq!(On::Success.satisfied_by(Running), None);
        assert_eq!(On::Success.satisfied_by(Succeeded), Some(true));
        assert_eq!(On::Success.satisfied_by(Skipped), Some(false));
        assert_eq!(On::Failure.satisfied_by(Failed), Some(true));
        assert_eq!(On::Failure.satisfied_by(Succeeded), Some(false));
        assert_eq!(On::Any.satisfied_by(Skipped), Some(true));
        assert_eq!(On::Any.satisfied_by(Cancelled), Some(false));
    }
}
