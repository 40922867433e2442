//! The checks of the bodies as their workers ran them, against the
//! backend's log and the final statuses (checkers `graph-take`,
//! `graph-parents`, `graph-early`), and of the resource's writes
//! (`graph-fencing`).

use std::collections::HashMap;

use coord_api::spi::{NodeState, NodeStatus, On, Outcome, RunStatus};

use super::{NodeKey, SLACK, Track, wall};
use crate::history::graphs::{Body, GraphHistory, resource_key};

/// A body ran an attempt handed out, after it was; its parents' outcomes
/// as told satisfy its edges, agree with how the parents ended, and the
/// parents ended before it started.
pub(super) fn check_body(
    h: &GraphHistory,
    b: &Body,
    tracks: &HashMap<NodeKey<'_>, Track>,
    finals: &HashMap<(&str, &str), &RunStatus>,
    v: &mut impl FnMut(&'static str, String),
) {
    let name = format!(
        "{}/{}/{} attempt {} (token {}, {})",
        b.graph, b.run, b.node, b.attempt, b.token, b.worker
    );
    let take = (tracks.get(&(b.graph.as_str(), b.run.as_str(), b.node.as_str())))
        .and_then(|t| t.takes.iter().find(|t| t.token == b.token));
    match take {
        Some(t) if t.given_back => v(
            "graph-give-back",
            format!("{name}: its take was given back (its worker never saw it)"),
        ),
        Some(t) if t.attempt == b.attempt && t.at <= b.start => {}
        Some(t) => v(
            "graph-take",
            format!(
                "{name}: handed out as attempt {} at {:?}, the body started at {:?}",
                t.attempt, t.at, b.start
            ),
        ),
        None => v("graph-take", format!("{name}: never handed out")),
    }
    let Some(spec) = h.specs.get(&b.graph) else {
        return;
    };
    let Some(ns) = spec.index_of(&b.node).map(|i| &spec.nodes()[i]) else {
        v("graph-take", format!("{name}: no such node"));
        return;
    };
    let parents: Vec<&str> = (ns.after.iter())
        .map(|e| spec.nodes()[e.from as usize].name.as_str())
        .collect();
    let told: Vec<&str> = b.parents.iter().map(|(k, _)| k.as_str()).collect();
    if parents != told {
        v(
            "graph-parents",
            format!("{name}: told parents {told:?}, its edges name {parents:?}"),
        );
    }
    let status = finals.get(&(b.graph.as_str(), b.run.as_str()));
    for (e, p) in ns.after.iter().zip(parents) {
        let ps = status.and_then(|s| s.nodes.get(e.from as usize));
        // Every declared parent ended before the body began, whatever it
        // was told.
        if let Some(ps) = ps {
            match wall(&h.wall, ps.ended_at) {
                Some(end) if end <= b.start + SLACK => {}
                end => v(
                    "graph-early",
                    format!(
                        "{name}: started at {:?}, before its parent {p} ended ({end:?})",
                        b.start
                    ),
                ),
            }
        }
        let Some((_, outcome)) = b.parents.iter().find(|(k, _)| k == p) else {
            continue;
        };
        let satisfies = match (e.on, outcome) {
            (_, Outcome::Cancelled) => false,
            (On::Success, Outcome::Succeeded(_)) | (On::Failure, Outcome::Failed(_)) => true,
            (On::Any, _) => true,
            _ => false,
        };
        if !satisfies {
            v(
                "graph-early",
                format!(
                    "{name}: started told its parent {p} {}, edge on {}",
                    outcome_text(outcome),
                    e.on.as_str()
                ),
            );
        }
        let Some(ps) = ps else { continue };
        let agrees = match outcome {
            Outcome::Succeeded(bytes) => {
                ps.state == NodeState::Succeeded
                    && serde_json_u64(bytes).is_some()
                    && serde_json_u64(bytes) == ps.token.map(|t| t.get())
            }
            Outcome::Failed(error) => {
                ps.state == NodeState::Failed && ps.error.as_ref() == Some(error)
            }
            Outcome::Skipped(by) => ps.state == NodeState::Skipped && ps.by.as_ref() == Some(by),
            _ => ps.state == NodeState::Cancelled,
        };
        if !agrees {
            v(
                "graph-parents",
                format!(
                    "{name}: told its parent {p} {}, which ended {:?} (token {:?}, error {:?}, by {:?})",
                    outcome_text(outcome),
                    ps.state,
                    ps.token,
                    ps.error,
                    ps.by
                ),
            );
        }
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Succeeded(b) => format!("succeeded ({})", String::from_utf8_lossy(b)),
        Outcome::Failed(e) => format!("failed ({e})"),
        Outcome::Skipped(by) => format!("skipped (by {by})"),
        _ => "cancelled".into(),
    }
}

/// A body's result: its token, as JSON.
fn serde_json_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// The resource took a node's writes only with its tokens, and a
/// succeeded node's only up to its end.
pub(super) fn check_writes(
    h: &GraphHistory,
    tracks: &HashMap<NodeKey<'_>, Track>,
    finals: &HashMap<(&str, &str), &RunStatus>,
    v: &mut impl FnMut(&'static str, String),
) {
    let mut keys: HashMap<String, (NodeKey<'_>, Option<&NodeStatus>)> = HashMap::new();
    for ((g, r), s) in finals {
        for n in &s.nodes {
            let key = (*g, *r, n.name.as_str());
            keys.insert(resource_key(g, r, n.name.as_str()), (key, Some(n)));
        }
    }
    for w in &h.writes {
        let Some(((g, r, n), status)) = keys.get(&w.key) else {
            continue;
        };
        let ours =
            (tracks.get(&(*g, *r, *n))).is_some_and(|t| t.takes.iter().any(|t| t.token == w.token));
        if !ours {
            v(
                "graph-fencing",
                format!(
                    "{}: write by {} with token {}, never handed out for it",
                    w.key, w.client, w.token
                ),
            );
        }
        if let Some(s) = status.filter(|s| s.state == NodeState::Succeeded)
            && let Some(end) = wall(&h.wall, s.ended_at)
            && w.at > end + SLACK
        {
            v(
                "graph-fencing",
                format!(
                    "{}: write by {} with token {} accepted {:?} after the node succeeded",
                    w.key,
                    w.client,
                    w.token,
                    w.at - end
                ),
            );
        }
    }
}
