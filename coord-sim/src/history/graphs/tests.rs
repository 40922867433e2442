//! Unit tests of the graph checker on made-up histories: a clean run of a
//! small graph passes, and each broken rule is reported by its checker.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use coord_api::{
    FencingToken, Key,
    spi::{
        Complete, Edge, GraphSpec, NodeResult, NodeSpec, NodeState, NodeStatus, On, OnFailure,
        Outcome, RunState, RunStatus,
    },
};

use super::*;
use crate::history::{Write, tests::t};

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// The server's wall clock `ms` after the origin of `t`.
fn w(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000) + Duration::from_millis(ms)
}

/// a → b (on success), a → c (on failure), d after b (success) and c (any).
fn spec() -> GraphSpec {
    GraphSpec::new(
        &k("g"),
        vec![
            NodeSpec::new(k("a")).max_attempts(2),
            NodeSpec::new(k("b")).after(vec![Edge::new(0, On::Success)]),
            NodeSpec::new(k("c")).after(vec![Edge::new(0, On::Failure)]),
            NodeSpec::new(k("d")).after(vec![Edge::new(1, On::Success), Edge::new(2, On::Any)]),
        ],
    )
    .unwrap()
}

fn taken(node: &str, attempt: u32, token: u64, at: u64) -> GraphEvent {
    GraphEvent::Taken {
        graph: "g".into(),
        run: "r".into(),
        node: node.into(),
        attempt,
        token,
        holder: "h".into(),
        at: t(at),
    }
}

fn completed(node: &str, token: u64, result: NodeResult, state: NodeState, at: u64) -> GraphEvent {
    GraphEvent::Completed {
        graph: "g".into(),
        run: "r".into(),
        node: node.into(),
        token,
        result,
        reply: Complete::Recorded {
            state,
            run: RunState::Running,
            next: None,
        },
        at: t(at),
    }
}

fn ok(token: u64) -> NodeResult {
    NodeResult::Success(token.to_string().into_bytes())
}

fn body(node: &str, token: u64, start: u64, parents: Vec<(&str, Outcome)>) -> Body {
    Body {
        worker: "c0".into(),
        graph: "g".into(),
        run: "r".into(),
        node: node.into(),
        attempt: 1,
        token,
        parents: parents.into_iter().map(|(p, o)| (p.into(), o)).collect(),
        start: t(start),
        end: Some(t(start + 50)),
        ended: Some(BodyEnd::Succeeded),
    }
}

fn node(name: &str, state: NodeState, token: Option<u64>, ended: u64) -> NodeStatus {
    let mut n = NodeStatus::new(k(name), state);
    n.attempts = u32::from(token.is_some());
    n.token = token.map(FencingToken);
    n.ended_at = Some(w(ended));
    n
}

/// A clean run: a succeeds, c is skipped by a, b then d succeed.
fn clean() -> GraphHistory {
    let mut c = node("c", NodeState::Skipped, None, 100);
    c.by = Some(k("a"));
    let nodes = vec![
        node("a", NodeState::Succeeded, Some(10), 100),
        node("b", NodeState::Succeeded, Some(11), 200),
        c,
        node("d", NodeState::Succeeded, Some(12), 300),
    ];
    let mut status = RunStatus::new(RunState::Succeeded, nodes, 9, w(0));
    status.ended_at = Some(w(300));
    GraphHistory {
        specs: HashMap::from([("g".to_owned(), spec())]),
        events: vec![
            GraphEvent::Submitted {
                graph: "g".into(),
                run: "r".into(),
                created: true,
                at: t(0),
            },
            taken("a", 1, 10, 10),
            completed("a", 10, ok(10), NodeState::Succeeded, 100),
            taken("b", 1, 11, 110),
            completed("b", 11, ok(11), NodeState::Succeeded, 200),
            taken("d", 1, 12, 210),
            completed("d", 12, ok(12), NodeState::Succeeded, 300),
        ],
        bodies: vec![
            body("a", 10, 12, vec![]),
            body(
                "b",
                11,
                112,
                vec![("a", Outcome::Succeeded(b"10".to_vec()))],
            ),
            body(
                "d",
                12,
                212,
                vec![
                    ("b", Outcome::Succeeded(b"11".to_vec())),
                    ("c", Outcome::Skipped(k("a"))),
                ],
            ),
        ],
        runs: vec![FinalRun {
            graph: "g".into(),
            run: "r".into(),
            status: Some(status),
            ended: Some(t(400)),
        }],
        wall: WallMap {
            global: t(0),
            wall: w(0),
            rate: WallRate(0),
        },
        writes: vec![Write {
            key: resource_key("g", "r", "d"),
            client: "c0".into(),
            token: 12,
            at: t(250),
        }],
    }
}

fn checkers(h: &GraphHistory) -> Vec<&'static str> {
    let mut v: Vec<&str> = check_graphs(h).iter().map(|v| v.checker).collect();
    v.sort();
    v.dedup();
    v
}

fn status(h: &mut GraphHistory) -> &mut RunStatus {
    h.runs[0].status.as_mut().unwrap()
}

#[test]
fn a_clean_run_passes() {
    let h = clean();
    assert!(check_graphs(&h).is_empty(), "{:?}", check_graphs(&h));
    let c = GraphCounts::of(&h, t(0));
    assert_eq!(
        (c.succeeded, c.skipped, c.attempts, c.recorded),
        (3, 1, 3, 3)
    );
    assert_eq!(c.worst_end_after_heal_ms, 300);
}

/// `d`'s completion answered `Already` (sent again after its reply was
/// lost) and a late completion of an old token answered `Stale`.
#[test]
fn a_completion_answered_again_counts_as_recorded() {
    let mut h = clean();
    let GraphEvent::Completed { reply, .. } = &mut h.events[6] else {
        panic!("d's completion")
    };
    *reply = Complete::Already {
        state: NodeState::Succeeded,
    };
    let mut late = completed("a", 9, ok(9), NodeState::Succeeded, 310);
    let GraphEvent::Completed { reply, .. } = &mut late else {
        unreachable!()
    };
    *reply = Complete::Stale {
        state: Some(NodeState::Succeeded),
    };
    h.events.push(late);
    let c = GraphCounts::of(&h, t(0));
    assert_eq!((c.recorded, c.stale), (3, 1));
}

#[test]
fn a_stranded_node_is_reported() {
    let mut h = clean();
    let s = status(&mut h);
    s.state = RunState::Running;
    s.nodes[3].state = NodeState::Running;
    h.runs[0].ended = None;
    assert!(checkers(&h).contains(&"graph-stranded"));
    h.runs[0].status = None;
    assert_eq!(checkers(&h), ["graph-stranded"]);
}

#[test]
fn a_stale_completion_and_a_second_one_are_reported() {
    let mut h = clean();
    // b's first attempt (token 11) expired and attempt 2 (token 13) runs
    // when token 11's completion is recorded; then 13 completes too.
    h.events.insert(4, taken("b", 2, 13, 150));
    h.events
        .insert(6, completed("b", 13, ok(13), NodeState::Succeeded, 205));
    let v = checkers(&h);
    assert!(v.contains(&"graph-stale-complete"), "{v:?}");
    assert!(v.contains(&"graph-once"), "{v:?}");
}

#[test]
fn a_node_started_before_its_parent_ended_is_reported() {
    let mut h = clean();
    // d's body began before b ended.
    h.bodies[2].start = t(190);
    h.events[5] = taken("d", 1, 12, 180);
    assert_eq!(checkers(&h), ["graph-early"]);
}

#[test]
fn a_node_run_though_its_edge_failed_is_reported() {
    let mut h = clean();
    // c ran (on a's success, its edge says on failure).
    let s = status(&mut h);
    s.nodes[2] = node("c", NodeState::Succeeded, Some(14), 150);
    h.events.insert(3, taken("c", 1, 14, 101));
    h.events
        .insert(4, completed("c", 14, ok(14), NodeState::Succeeded, 150));
    h.bodies[2].parents[1].1 = Outcome::Succeeded(b"14".to_vec());
    let v = checkers(&h);
    assert!(v.contains(&"graph-early"), "{v:?}");
}

#[test]
fn a_wrong_skip_is_reported() {
    let mut h = clean();
    status(&mut h).nodes[2].by = Some(k("b"));
    assert!(checkers(&h).contains(&"graph-resolution"));
    let mut h = clean();
    status(&mut h).nodes[2].ended_at = Some(w(101));
    assert!(checkers(&h).contains(&"graph-resolution"));
}

#[test]
fn the_run_state_follows_rule_7() {
    let mut h = clean();
    status(&mut h).state = RunState::Failed;
    assert_eq!(checkers(&h), ["graph-resolution"]);
    let mut h = clean();
    status(&mut h).ended_at = Some(w(250));
    assert_eq!(checkers(&h), ["graph-resolution"]);
}

#[test]
fn a_failed_cancel_run_node_cancels_the_run() {
    let mut h = clean();
    let mut s = spec();
    let nodes: Vec<NodeSpec> = (s.nodes().iter().cloned())
        .map(|n| {
            if n.name.as_str() == "a" {
                n.on_failure(OnFailure::CancelRun)
            } else {
                n
            }
        })
        .collect();
    s = GraphSpec::new(&k("g"), nodes).unwrap();
    h.specs.insert("g".into(), s);
    let fail = NodeResult::Failure {
        error: "no".into(),
        retry_in: None,
    };
    h.events[2] = completed("a", 10, fail, NodeState::Failed, 100);
    let st = status(&mut h);
    st.nodes[0].state = NodeState::Failed;
    st.state = RunState::Failed;
    let policy = |h: &GraphHistory| {
        (check_graphs(h).iter()).any(|v| v.detail.contains("its policy cancels the run"))
    };
    assert!(policy(&h));
    // A failure that ended the run (every other node ended in its step)
    // leaves it ended, not cancelled.
    status(&mut h).ended_at = Some(w(100));
    assert!(!policy(&h));
}

#[test]
fn attempts_beyond_the_maximum_are_reported() {
    let mut h = clean();
    h.events.insert(2, taken("a", 2, 20, 50));
    h.events.insert(3, taken("a", 3, 21, 60));
    let v = checkers(&h);
    assert!(v.contains(&"graph-attempts"), "{v:?}");
}

#[test]
fn completions_follow_rule_4() {
    let mut h = clean();
    // A failure with a retry delay on the last attempt left it ready.
    let fail = NodeResult::Failure {
        error: "x".into(),
        retry_in: Some(Duration::from_millis(5)),
    };
    h.events[4] = completed("b", 11, fail, NodeState::Ready, 200);
    assert!(checkers(&h).contains(&"graph-complete"));
}

#[test]
fn a_write_after_the_node_succeeded_is_reported() {
    let mut h = clean();
    h.writes.push(Write {
        key: resource_key("g", "r", "d"),
        client: "c1".into(),
        token: 12,
        at: t(320),
    });
    h.writes.push(Write {
        key: resource_key("g", "r", "b"),
        client: "c1".into(),
        token: 99,
        at: t(150),
    });
    assert_eq!(checkers(&h), ["graph-fencing"]);
    assert_eq!(check_graphs(&h).len(), 2);
}

#[test]
fn wall_times_map_to_global_time() {
    let m = WallMap {
        global: t(1_000),
        wall: w(1_000),
        rate: WallRate::of(1.001),
    };
    let d = m.to_global(w(2_001)) - t(1_000);
    assert!(d.as_micros().abs_diff(1_000_000) < 2, "{d:?}");
    assert_eq!(m.to_global(w(1_000)), t(1_000));
    assert!(m.to_global(w(0)) < t(1));
}

/// The clean run, where a take of `a` by holder `lost` (token 5) came
/// first and was given back (its answer never came): attempt 1 again.
fn given_back() -> GraphHistory {
    let mut h = clean();
    let lost = GraphEvent::Taken {
        graph: "g".into(),
        run: "r".into(),
        node: "a".into(),
        attempt: 1,
        token: 5,
        holder: "lost".into(),
        at: t(5),
    };
    let back = GraphEvent::GaveBack {
        graph: "g".into(),
        holder: "lost".into(),
        returned: 1,
        at: t(8),
    };
    h.events.splice(1..1, [lost, back]);
    h
}

#[test]
fn a_give_back_is_replayed_and_a_wrong_one_caught() {
    assert_eq!(check_graphs(&given_back()), Vec::new());
    // A give-back of a holder with no open attempt answered 1.
    let mut h = given_back();
    if let GraphEvent::GaveBack { holder, .. } = &mut h.events[2] {
        *holder = "nobody".into();
    }
    let c = checkers(&h);
    assert!(c.contains(&"graph-give-back"), "{c:?}");
    // A body ran the attempt given back.
    let mut h = given_back();
    h.bodies.push(body("a", 5, 6, vec![]));
    let c = checkers(&h);
    assert!(c.contains(&"graph-give-back"), "{c:?}");
}
