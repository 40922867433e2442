//! The checker of the job-graph family's histories: every node ends, is
//! completed at most once and only by its current attempt, starts only once
//! its upstream edges hold, and ends as the edge semantics say.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, SystemTime},
};

use coord_api::{
    Instant,
    spi::{Complete, GraphSpec, NodeResult, NodeState, NodeStatus, OnFailure, RunState, RunStatus},
};

use super::{GraphEvent, GraphHistory, WallMap};
use crate::history::Violation;

mod body;

use body::{check_body, check_writes};

/// Slack for comparing a server wall time, mapped to global time, with a
/// global instant (the mapping's rounding; every comparison it guards has
/// a network hop of at least a millisecond in its favour).
const SLACK: Duration = Duration::from_millis(1);

/// A node of a run: graph, run, node.
type NodeKey<'a> = (&'a str, &'a str, &'a str);

/// An attempt the backend handed out.
struct Take {
    attempt: u32,
    token: u64,
    at: Instant,
    /// To whom (the holder's text).
    holder: String,
    /// Given back by its take's clean-up (decision 0044): its attempt
    /// taken back.
    given_back: bool,
}

/// What the log says of one node, in the backend's order.
#[derive(Default)]
struct Track {
    takes: Vec<Take>,
    /// Recorded completions: token, state, what was sent.
    recorded: Vec<(u64, NodeState, NodeResult)>,
}

impl Track {
    /// The attempts it counts: those handed out and not given back.
    fn counted(&self) -> u32 {
        self.takes.iter().filter(|t| !t.given_back).count() as u32
    }
}

/// Judges a graph workload's history (see [`GraphHistory`]):
///
/// - `graph-stranded` (a): every run the workload submitted is known to the
///   backend and ended within the scenario's bound, every node of it in a
///   terminal state.
/// - `graph-once` (b): per node, at most one completion recorded a
///   terminal state, no token's completion recorded twice, no attempt
///   handed out after the node ended; a succeeded node's state comes from a
///   recorded `Success` of its last token.
/// - `graph-stale-complete` (b): a completion is recorded only for the
///   node's latest attempt handed out (no stale token completes).
/// - `graph-fencing` (b): the resource accepted a succeeded node's writes
///   only up to its end, and only with tokens handed out for that node.
/// - `graph-early` (c): a node that ran (or whose body started) had every
///   upstream edge satisfied by its parent's final state; a body started
///   only after each parent ended (the backend's end time, mapped to global
///   time), and the outcomes it was told satisfy its edges.
/// - `graph-parents` (c): the outcomes a body was told are its parents' in
///   edge order, and agree with how they ended (a succeeded parent's result
///   is its last attempt's, a failed one's error its last).
/// - `graph-resolution` (d): a skipped node never ran, names (`by`) the
///   parent whose unsatisfiable edge ended first, and ended in that
///   parent's step; a cancelled node names a cancelled parent (same step)
///   or its run was cancelled; a failed node failed by a recorded failure of
///   its last token or by its last attempt's lease expiring; the run's
///   state and end follow rule 7; a failed `CancelRun` node cancelled its
///   run, unless its step ended the run.
/// - `graph-complete` (d): each recorded completion left the node as rule
///   4 says (`Success` → succeeded; a failure with a retry delay and
///   attempts left → ready, otherwise failed; cancelled in a cancelled
///   run).
/// - `graph-cancel` (d): nothing of a run is taken after it was cancelled.
/// - `graph-attempts` (e): attempts numbered 1, 2, ... per node, at most
///   `max_attempts`, as many as the status says, its token the last one.
/// - `graph-tokens`: per graph, tokens strictly increase in the backend's
///   order; `graph-submit`: a run is created once; `graph-take`: every body
///   ran an attempt the backend handed out, started after it was.
/// - `graph-give-back`: a give-back (decision 0044) gave back the open
///   attempt of the holder it named, and no body ran an attempt given back
///   (its worker never saw it); an attempt given back is not counted.
pub fn check_graphs(h: &GraphHistory) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |c: &'static str, d: String| out.push(Violation::new(c, d));
    let (tracks, cancels) = replay_log(h, &mut v);
    let finals: HashMap<(&str, &str), &RunStatus> = (h.runs.iter())
        .filter_map(|r| Some(((r.graph.as_str(), r.run.as_str()), r.status.as_ref()?)))
        .collect();
    for r in &h.runs {
        let name = format!("{}/{}", r.graph, r.run);
        let Some(spec) = h.specs.get(&r.graph) else {
            v("graph-stranded", format!("{name}: no such graph declared"));
            continue;
        };
        let Some(status) = &r.status else {
            v("graph-stranded", format!("{name}: unknown to the backend"));
            continue;
        };
        if r.ended.is_none() || status.state == RunState::Running {
            v(
                "graph-stranded",
                format!("{name}: did not end in time ({:?})", status.state),
            );
        }
        let names: Vec<&str> = status.nodes.iter().map(|n| n.name.as_str()).collect();
        let declared: Vec<&str> = spec.nodes().iter().map(|n| n.name.as_str()).collect();
        if names != declared {
            v(
                "graph-stranded",
                format!("{name}: status nodes {names:?}, declared {declared:?}"),
            );
            continue;
        }
        let stranded: Vec<String> = (status.nodes.iter())
            .filter(|n| !n.state.is_terminal())
            .map(|n| format!("{} {:?}", n.name, n.state))
            .collect();
        if !stranded.is_empty() {
            v(
                "graph-stranded",
                format!("{name}: nodes not ended: {}", stranded.join(", ")),
            );
        }
        let cancel_at = check_run(h, spec, r, status, &tracks, &cancels, &mut v);
        if let Some(at) = cancel_at {
            for n in spec.nodes() {
                let key = (r.graph.as_str(), r.run.as_str(), n.name.as_str());
                for t in tracks.get(&key).map_or(&[][..], |t| &t.takes) {
                    if t.at > at + SLACK {
                        v(
                            "graph-cancel",
                            format!(
                                "{name}: {} attempt {} (token {}) taken {:?} after the run was cancelled",
                                n.name,
                                t.attempt,
                                t.token,
                                t.at - at
                            ),
                        );
                    }
                }
            }
        }
    }
    for b in &h.bodies {
        check_body(h, b, &tracks, &finals, &mut v);
    }
    check_writes(h, &tracks, &finals, &mut v);
    out
}

/// Walks the backend's log in order: tokens, attempts, completions (rules
/// 3 and 4), submissions. Returns each node's track and each run's first
/// cancellation.
#[allow(clippy::type_complexity)]
fn replay_log<'a>(
    h: &'a GraphHistory,
    v: &mut impl FnMut(&'static str, String),
) -> (
    HashMap<NodeKey<'a>, Track>,
    HashMap<(&'a str, &'a str), Instant>,
) {
    let mut tracks: HashMap<NodeKey<'a>, Track> = HashMap::new();
    let mut last_token: HashMap<&str, u64> = HashMap::new();
    let mut created: HashSet<(&str, &str)> = HashSet::new();
    let mut cancels: HashMap<(&str, &str), Instant> = HashMap::new();
    let run_cancelled: HashSet<(&str, &str)> = (h.runs.iter())
        .filter(|r| r.status.as_ref().is_some_and(|s| s.cancelled.is_some()))
        .map(|r| (r.graph.as_str(), r.run.as_str()))
        .collect();
    for e in &h.events {
        match e {
            GraphEvent::Submitted {
                graph,
                run,
                created: true,
                ..
            } => {
                if !created.insert((graph, run)) {
                    v("graph-submit", format!("{graph}/{run}: created twice"));
                }
            }
            GraphEvent::Submitted { .. } => {}
            GraphEvent::Cancelled { graph, run, at } => {
                cancels.entry((graph, run)).or_insert(*at);
            }
            GraphEvent::Taken {
                graph,
                run,
                node,
                attempt,
                token,
                holder,
                at,
            } => {
                let name = format!("{graph}/{run}/{node}");
                let last = last_token.entry(graph).or_default();
                if *token <= *last {
                    v(
                        "graph-tokens",
                        format!("{name}: token {token} handed out after token {last}"),
                    );
                }
                *last = (*last).max(*token);
                let t = tracks.entry((graph, run, node)).or_default();
                let expected = t.counted() + 1;
                if *attempt != expected {
                    v(
                        "graph-attempts",
                        format!(
                            "{name}: attempt {attempt} handed out as its take number {expected}"
                        ),
                    );
                }
                if t.recorded.iter().any(|r| r.1.is_terminal()) {
                    v(
                        "graph-once",
                        format!("{name}: attempt {attempt} (token {token}) taken after it ended"),
                    );
                }
                t.takes.push(Take {
                    attempt: *attempt,
                    token: *token,
                    at: *at,
                    holder: holder.clone(),
                    given_back: false,
                });
            }
            GraphEvent::Completed {
                graph,
                run,
                node,
                token,
                result,
                reply: Complete::Recorded { state, .. },
                ..
            } => {
                let name = format!("{graph}/{run}/{node}");
                let max = max_attempts(h, graph, node);
                let t = tracks.entry((graph, run, node)).or_default();
                let current = t.takes.last();
                if current.map(|c| c.token) != Some(*token) {
                    v(
                        "graph-stale-complete",
                        format!(
                            "{name}: completion of token {token} recorded ({state:?}) while the latest attempt handed out is {:?}",
                            current.map(|c| c.token)
                        ),
                    );
                }
                if t.recorded.iter().any(|r| r.0 == *token) {
                    v(
                        "graph-once",
                        format!("{name}: token {token} completed twice"),
                    );
                }
                if state.is_terminal() && t.recorded.iter().any(|r| r.1.is_terminal()) {
                    v(
                        "graph-once",
                        format!(
                            "{name}: completed again ({state:?}, token {token}) after it ended"
                        ),
                    );
                }
                let attempt = (t.takes.iter())
                    .find(|x| x.token == *token)
                    .map_or(0, |x| x.attempt);
                let cancelled = run_cancelled.contains(&(graph.as_str(), run.as_str()));
                let allowed: &[NodeState] = match result {
                    NodeResult::Success(_) => &[NodeState::Succeeded],
                    NodeResult::Failure {
                        retry_in: Some(_), ..
                    } if attempt < max => &[NodeState::Ready, NodeState::Cancelled],
                    _ => &[NodeState::Failed, NodeState::Cancelled],
                };
                let allowed_here =
                    allowed.contains(state) && (*state != NodeState::Cancelled || cancelled);
                if !allowed_here {
                    v(
                        "graph-complete",
                        format!(
                            "{name}: attempt {attempt} of {max} sent {} and was recorded {state:?}",
                            sent(result)
                        ),
                    );
                }
                t.recorded.push((*token, *state, result.clone()));
            }
            GraphEvent::Completed { .. } => {}
            GraphEvent::GaveBack {
                graph,
                holder,
                returned,
                ..
            } => {
                // The latest take of `holder` in the graph, unless it was
                // completed or given back. (Answered 0, it may have expired
                // first: the log does not tell deadlines.)
                let found = (tracks.iter_mut())
                    .filter(|((g, ..), _)| *g == graph.as_str())
                    .find_map(|(key, t)| {
                        let last = t.takes.last_mut()?;
                        let open = last.holder == *holder
                            && !last.given_back
                            && !t.recorded.iter().any(|r| r.0 == last.token);
                        open.then_some((*key, last))
                    });
                match (returned, found) {
                    (0, _) => {}
                    (1, Some((_, take))) => take.given_back = true,
                    (n, found) => v(
                        "graph-give-back",
                        format!(
                            "{graph}: a give-back of {holder} answered {n}; its open attempt: {:?}",
                            found.map(|(k, t)| (k, t.token))
                        ),
                    ),
                }
            }
        }
    }
    (tracks, cancels)
}

fn sent(r: &NodeResult) -> String {
    match r {
        NodeResult::Success(_) => "Success".into(),
        NodeResult::Failure { retry_in, .. } => format!("Failure (retry in {retry_in:?})"),
        _ => "another result".into(),
    }
}

fn max_attempts(h: &GraphHistory, graph: &str, node: &str) -> u32 {
    (h.specs.get(graph))
        .and_then(|s| s.nodes().get(s.index_of(node)?))
        .map_or(0, |n| n.max_attempts)
}

fn wall(map: &WallMap, w: Option<SystemTime>) -> Option<Instant> {
    w.map(|w| map.to_global(w))
}

/// The rules on one ended run's final status; returns when the run was
/// cancelled (a `cancel` or a `CancelRun` node's failure), if it was.
fn check_run(
    h: &GraphHistory,
    spec: &GraphSpec,
    r: &super::FinalRun,
    status: &RunStatus,
    tracks: &HashMap<NodeKey<'_>, Track>,
    cancels: &HashMap<(&str, &str), Instant>,
    v: &mut impl FnMut(&'static str, String),
) -> Option<Instant> {
    let name = format!("{}/{}", r.graph, r.run);
    let nodes = &status.nodes;
    let mut cancel_at = cancels.get(&(r.graph.as_str(), r.run.as_str())).copied();
    for (ns, n) in spec.nodes().iter().zip(nodes) {
        let node = format!("{name}/{}", n.name);
        let empty = Track::default();
        let t = tracks
            .get(&(r.graph.as_str(), r.run.as_str(), n.name.as_str()))
            .unwrap_or(&empty);
        // (e) attempts.
        if n.attempts > ns.max_attempts || n.attempts != t.counted() {
            v(
                "graph-attempts",
                format!(
                    "{node}: {} attempts in its status, {} handed out, max {}",
                    n.attempts,
                    t.counted(),
                    ns.max_attempts
                ),
            );
        }
        if n.token.map(|t| t.get()) != t.takes.last().map(|t| t.token) {
            v(
                "graph-attempts",
                format!(
                    "{node}: its status names token {:?}, its last attempt's is {:?}",
                    n.token,
                    t.takes.last().map(|t| t.token)
                ),
            );
        }
        // (c) a node that ran had every edge satisfied by how its parent ended.
        let ran = n.attempts > 0 || matches!(n.state, NodeState::Succeeded | NodeState::Failed);
        if ran {
            for e in &ns.after {
                let p = &nodes[e.from as usize];
                if e.on.satisfied_by(p.state) != Some(true) {
                    v(
                        "graph-early",
                        format!(
                            "{node}: ran ({} attempts, {:?}) though its parent {} ended {:?} (edge on {})",
                            n.attempts,
                            n.state,
                            p.name,
                            p.state,
                            e.on.as_str()
                        ),
                    );
                }
            }
        }
        let last = n.token.map(|t| t.get());
        let recorded_last = t.recorded.iter().find(|x| Some(x.0) == last);
        match n.state {
            NodeState::Succeeded
                if !matches!(
                    recorded_last,
                    Some((_, NodeState::Succeeded, NodeResult::Success(_)))
                ) =>
            {
                v(
                    "graph-once",
                    format!(
                        "{node}: succeeded without a recorded success of its last token {last:?}"
                    ),
                );
            }
            NodeState::Failed => {
                let by_failure = matches!(recorded_last, Some((_, NodeState::Failed, _)));
                let by_expiry = recorded_last.is_none()
                    && n.error.as_deref() == Some("lease expired")
                    && n.attempts == ns.max_attempts;
                if !by_failure && !by_expiry {
                    v(
                        "graph-resolution",
                        format!(
                            "{node}: failed after {} of {} attempts (error {:?}) without a recorded failure of its last token {last:?} nor its last lease expiring",
                            n.attempts, ns.max_attempts, n.error
                        ),
                    );
                }
                if ns.on_failure == OnFailure::CancelRun {
                    // Unless its failure ended the run (resolution ended
                    // every other node in its step): an ended run is not
                    // cancelled (rule 6).
                    if status.cancelled.is_none() && status.ended_at != n.ended_at {
                        v(
                            "graph-resolution",
                            format!(
                                "{node}: failed, its policy cancels the run, and the run was not cancelled"
                            ),
                        );
                    }
                    let at = wall(&h.wall, n.ended_at);
                    cancel_at = match (cancel_at, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            NodeState::Skipped => check_skipped(&node, ns, n, nodes, v),
            NodeState::Cancelled => {
                check_cancelled(&node, ns, n, nodes, status.cancelled.is_some(), v)
            }
            _ => {}
        }
    }
    // Rule 7: the run's state and end.
    if status.state != RunState::Running {
        let expected = if status.cancelled.is_some() {
            RunState::Cancelled
        } else if nodes.iter().any(|n| n.state == NodeState::Failed) {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        if status.state != expected {
            v(
                "graph-resolution",
                format!("{name}: ended {:?}, rule 7 says {expected:?}", status.state),
            );
        }
        let last_end = nodes.iter().filter_map(|n| n.ended_at).max();
        if status.ended_at != last_end {
            v(
                "graph-resolution",
                format!(
                    "{name}: ended at {:?}, its last node at {last_end:?}",
                    status.ended_at
                ),
            );
        }
    }
    cancel_at
}

/// A skipped node never ran and names the parent whose unsatisfiable edge
/// ended first; it ended in that parent's step.
fn check_skipped(
    node: &str,
    ns: &coord_api::spi::NodeSpec,
    n: &NodeStatus,
    nodes: &[NodeStatus],
    v: &mut impl FnMut(&'static str, String),
) {
    if n.attempts > 0 {
        v(
            "graph-resolution",
            format!("{node}: skipped after {} attempts", n.attempts),
        );
    }
    let unsatisfied: Vec<&NodeStatus> = (ns.after.iter())
        .filter(|e| e.on.satisfied_by(nodes[e.from as usize].state) == Some(false))
        .map(|e| &nodes[e.from as usize])
        .collect();
    let by = n.by.as_ref().map(|k| k.as_str());
    let Some(p) = unsatisfied.iter().find(|p| Some(p.name.as_str()) == by) else {
        v(
            "graph-resolution",
            format!(
                "{node}: skipped by {by:?}, which is not a parent whose edge it cannot satisfy ({:?})",
                unsatisfied
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
            ),
        );
        return;
    };
    if p.state == NodeState::Cancelled {
        v(
            "graph-resolution",
            format!(
                "{node}: skipped by {}, which was cancelled (it should be cancelled too)",
                p.name
            ),
        );
    }
    if let Some(q) = unsatisfied.iter().find(|q| q.ended_at < p.ended_at) {
        v(
            "graph-resolution",
            format!(
                "{node}: skipped by {}, but {}'s edge became unsatisfiable earlier",
                p.name, q.name
            ),
        );
    }
    if n.ended_at != p.ended_at {
        v(
            "graph-resolution",
            format!(
                "{node}: skipped at {:?}, not in the step that ended {} ({:?})",
                n.ended_at, p.name, p.ended_at
            ),
        );
    }
}

/// A cancelled node names a cancelled parent (and ended in its step), or
/// its run was cancelled.
fn check_cancelled(
    node: &str,
    ns: &coord_api::spi::NodeSpec,
    n: &NodeStatus,
    nodes: &[NodeStatus],
    run_cancelled: bool,
    v: &mut impl FnMut(&'static str, String),
) {
    match &n.by {
        Some(by) => {
            let p = (ns.after.iter())
                .map(|e| &nodes[e.from as usize])
                .find(|p| p.name == *by);
            match p {
                Some(p) if p.state == NodeState::Cancelled => {
                    if n.attempts > 0 || n.ended_at != p.ended_at {
                        v(
                            "graph-resolution",
                            format!(
                                "{node}: cancelled by {by} after {} attempts, at {:?} ({by} at {:?})",
                                n.attempts, n.ended_at, p.ended_at
                            ),
                        );
                    }
                }
                _ => v(
                    "graph-resolution",
                    format!("{node}: cancelled by {by}, which is not a cancelled parent"),
                ),
            }
        }
        None if !run_cancelled => v(
            "graph-resolution",
            format!("{node}: cancelled, but neither its run nor a parent was"),
        ),
        None => {}
    }
}
