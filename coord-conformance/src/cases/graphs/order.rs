//! The order in which nodes run: roots first, no node before its upstream
//! conditions held (seen by the outcomes it gets, the status read as it
//! starts, the order of bodies and the backend's timings), parents' results
//! in edge order (fan-in), and every node of a graph with every kind of edge
//! ending as its edges say.

use super::*;

/// Panics unless every edge of the node `ctx` runs is satisfied by the
/// parents' outcomes it was given, in `graph`'s edge order.
#[track_caller]
fn assert_upstream_held(graph: &Graph, ctx: &NodeContext) {
    let spec = graph.spec();
    let i = spec.index_of(ctx.node()).expect("a node of the graph");
    let edges = &spec.nodes()[i].after;
    let parents = ctx.parents();
    assert_eq!(
        parents.len(),
        edges.len(),
        "{}: one outcome per edge",
        ctx.node()
    );
    for (e, (name, outcome)) in edges.iter().zip(parents) {
        let from = &spec.nodes()[e.from as usize].name;
        assert_eq!(name, from, "{}: parents in edge order", ctx.node());
        let ended = match outcome {
            Outcome::Succeeded(_) => NodeState::Succeeded,
            Outcome::Failed(_) => NodeState::Failed,
            Outcome::Skipped(_) => NodeState::Skipped,
            _ => NodeState::Cancelled,
        };
        let held = e.on.satisfied_by(ended);
        assert_eq!(
            held,
            Some(true),
            "{} started with {name} {outcome:?} on {:?}",
            ctx.node(),
            e.on
        );
    }
}

/// What the mixed graph's bodies do: the nodes that fail (for good).
const FAILS: [&str; 2] = ["r2", "f1"];

/// A graph with every kind of edge: succeeding and failing roots, nodes
/// after success, failure and any outcome, skips two deep.
fn mixed(c: &Client) -> Graph {
    c.graph(G)
        .node("r1")
        .node("r2")
        .node("r3")
        .node(Node::new("s1").after("r1"))
        .node(Node::new("s2").after("r2"))
        .node(Node::new("f1").after_on("r2", On::Failure))
        .node(Node::new("f2").after_on("r1", On::Failure))
        .node(Node::new("a1").after_on("s2", On::Any))
        .node(Node::new("m1").after("s1").after_on("f1", On::Any))
        .node(Node::new("m2").after("s2").after("s1"))
        .node(Node::new("m3").after("r3").after_on("f1", On::Failure))
        .node(
            Node::new("z")
                .after_on("m2", On::Any)
                .after("a1")
                .after("m3"),
        )
        .node(Node::new("y").after("z"))
        .build()
        .expect("a valid graph")
}

/// Each node's final state by the rules, from its parents' final states in
/// declaration order (the graph declares parents first), and for a skipped
/// node the parents whose edge could no longer be satisfied (any of them
/// may be the one named).
fn model(graph: &Graph) -> Vec<(NodeState, Vec<String>)> {
    let spec = graph.spec();
    let mut out: Vec<(NodeState, Vec<String>)> = Vec::new();
    for n in spec.nodes() {
        let unsat: Vec<String> = (n.after.iter())
            .filter(|e| e.on.satisfied_by(out[e.from as usize].0) == Some(false))
            .map(|e| spec.nodes()[e.from as usize].name.as_str().to_owned())
            .collect();
        let st = if !unsat.is_empty() {
            NodeState::Skipped
        } else if FAILS.contains(&n.name.as_str()) {
            NodeState::Failed
        } else {
            NodeState::Succeeded
        };
        out.push((st, unsat));
    }
    out
}

cases! {
    family: "graph", needs: [Need::Graphs];

/// Only roots are ready at first; while both roots run, nothing else can be
/// taken (their dependents wait); once they succeeded, their dependents are.
pub async fn graph_roots_run_first(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let graph = |cl: &Client| {
        cl.graph(G)
            .node(Node::new("b").after("a"))
            .node("a")
            .node(Node::new("y").after("x").after("b"))
            .node("x")
            .build()
            .unwrap()
    };
    let run = graph(&a).submit("r").await.unwrap();
    let st = run.status().await.unwrap();
    use NodeState::*;
    assert_eq!(
        states(&st),
        want(&[("b", Pending), ("a", Ready), ("y", Pending), ("x", Ready)])
    );
    let (w1, w2, w3) = (graph(&a).worker(), graph(&b).worker(), graph(&c).worker());
    let roots = Mutex::new(Vec::new());
    let (w2, w3, seen) = (&w2, &w3, &roots);
    let first = w1.work_one(|ctx1| async move {
        seen.lock().unwrap().push(ctx1.node().to_owned());
        let second = w2.work_one(|ctx2| async move {
            seen.lock().unwrap().push(ctx2.node().to_owned());
            let third = w3.work_one(|_| async { Ok("ran early") }).await;
            assert_eq!(third.unwrap(), None, "nothing ready while the roots run");
            Ok(2)
        });
        let second = second.await.unwrap().expect("the other root is ready");
        assert_eq!(second.state, Some(Succeeded));
        Ok(1)
    });
    let first = within(first, "the first root")
        .await
        .expect("a root is ready");
    assert_eq!(first.state, Some(Succeeded));
    let mut roots = roots.into_inner().unwrap();
    roots.sort();
    assert_eq!(roots, ["a", "x"], "the roots ran first");
    let st = run.status().await.unwrap();
    assert_eq!(
        states(&st),
        want(&[
            ("b", Ready),
            ("a", Succeeded),
            ("y", Pending),
            ("x", Succeeded)
        ])
    );
    let mut w = graph(&b).worker();
    let next = within(
        w.work_next(|ctx| async move { Ok(ctx.node().to_owned()) }),
        "b",
    )
    .await;
    assert_eq!(next.node, "b");
    let last = within(
        w.work_next(|ctx| async move { Ok(ctx.node().to_owned()) }),
        "y",
    )
    .await;
    assert_eq!(last.node, "y");
    assert_all_ended(&run.status().await.unwrap(), "r");
}

/// A diamond on three workers (a → b, c → d, and e after d's failure): no
/// node starts before each of its parents ended as its edge asks — seen by
/// the parents' outcomes it gets, by the run's status read as it starts,
/// by the order of bodies, and by the backend's timings. b is slow, so d
/// would start early if it waited for c alone.
pub async fn graph_diamond_no_node_before_its_upstream(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node("a")
        .node(Node::new("b").after("a"))
        .node(Node::new("c").after("a"))
        .node(Node::new("d").after("b").after("c"))
        .node(Node::new("e").after_on("d", On::Failure))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let log = Arc::new(Mutex::new(Vec::<(String, &'static str)>::new()));
    let body = {
        let (graph, run, log) = (graph.clone(), run.clone(), log.clone());
        move |ctx: NodeContext| {
            let (graph, run, log) = (graph.clone(), run.clone(), log.clone());
            async move {
                log.lock().unwrap().push((ctx.node().to_owned(), "start"));
                assert_upstream_held(&graph, &ctx);
                let st = run.status().await.expect("status");
                let i = graph.spec().index_of(ctx.node()).unwrap();
                for e in &graph.spec().nodes()[i].after {
                    let p = &st.nodes[e.from as usize];
                    assert_eq!(
                        e.on.satisfied_by(p.state),
                        Some(true),
                        "{} started: {st:?}",
                        ctx.node()
                    );
                }
                if matches!(ctx.node(), "a" | "b") {
                    sleep(ms(30)).await;
                }
                log.lock().unwrap().push((ctx.node().to_owned(), "end"));
                Ok(ctx.node().to_owned())
            }
        }
    };
    let st = finish(&run, workers(&graph, 3, |w| w.run(body.clone()))).await;
    use NodeState::*;
    let expected = [
        ("a", Succeeded),
        ("b", Succeeded),
        ("c", Succeeded),
        ("d", Succeeded),
        ("e", Skipped),
    ];
    assert_eq!(states(&st), want(&expected), "{st:?}");
    assert_eq!(st.state, RunState::Succeeded, "a skip is not a failure");
    let log = log.lock().unwrap().clone();
    let at = |n: &str, what: &str| {
        log.iter()
            .position(|(m, w)| m == n && *w == what)
            .unwrap_or_else(|| panic!("{n} {what}: {log:?}"))
    };
    for (parent, child) in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")] {
        assert!(
            at(parent, "end") < at(child, "start"),
            "{child} started before {parent} ended: {log:?}"
        );
        let (p, c) = (node(&st, parent), node(&st, child));
        assert!(
            c.started_at >= p.ended_at,
            "backend timings: {p:?} then {c:?}"
        );
    }
    assert_eq!(
        log.iter().filter(|(_, w)| *w == "start").count(),
        4,
        "each ran once: {log:?}"
    );
    assert_eq!(node(&st, "e").by.as_ref().map(Key::as_str), Some("d"));
}

/// A node sees its parents' outcomes in its edge order (not declaration or
/// completion order): `parents`, `parent_results` and `parent::<T>`; a
/// node after others on any outcome sees the failed one's error; asking
/// for a parent that is not one, did not succeed, or as the wrong type is
/// `InvalidArgument`.
pub async fn graph_fan_in_sees_parents_in_edge_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node("p1")
        .node("p2")
        .node("p3")
        .node(Node::new("bad").max_attempts(1))
        .node(Node::new("sum").after("p3").after("p1").after("p2"))
        .node(
            Node::new("tolerant")
                .after_on("p1", On::Any)
                .after_on("bad", On::Any),
        )
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let body = {
        let seen = seen.clone();
        move |ctx: NodeContext| {
            let seen = seen.clone();
            async move {
                let note = |s: String| seen.lock().unwrap().push(s);
                match ctx.node() {
                    "p1" => Ok(10u32),
                    "p2" => Ok(20),
                    "p3" => Ok(30),
                    "bad" => Err(NodeError::msg("bad input")),
                    "sum" => {
                        let names: Vec<&str> =
                            ctx.parents().iter().map(|(k, _)| k.as_str()).collect();
                        note(format!("sum parents {names:?}"));
                        note(format!("sum results {:?}", ctx.parent_results::<u32>()));
                        note(format!("sum p2 {:?}", ctx.parent::<u32>("p2").ok()));
                        note(format!(
                            "sum nope {}",
                            is_invalid(ctx.parent::<u32>("nope"))
                        ));
                        note(format!(
                            "sum p1 as text {}",
                            is_invalid(ctx.parent::<String>("p1"))
                        ));
                        let all = ctx.parent_results::<u32>();
                        Ok(all.into_iter().map(|(_, r)| r.unwrap_or(0)).sum())
                    }
                    _ => {
                        note(format!(
                            "tolerant results {:?}",
                            ctx.parent_results::<u32>()
                        ));
                        note(format!("tolerant bad {:?}", ctx.outcome("bad")));
                        note(format!(
                            "tolerant bad as u32 {}",
                            is_invalid(ctx.parent::<u32>("bad"))
                        ));
                        Ok(1)
                    }
                }
            }
        }
    };
    let st = finish(&run, workers(&graph, 2, |w| w.run(body.clone()))).await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let expected = [
        r#"sum nope true"#.to_owned(),
        r#"sum p1 as text true"#.to_owned(),
        r#"sum p2 Some(20)"#.to_owned(),
        r#"sum parents ["p3", "p1", "p2"]"#.to_owned(),
        r#"sum results [("p3", Ok(30)), ("p1", Ok(10)), ("p2", Ok(20))]"#.to_owned(),
        r#"tolerant bad Some(Failed("bad input"))"#.to_owned(),
        r#"tolerant bad as u32 true"#.to_owned(),
        r#"tolerant results [("p1", Ok(10)), ("bad", Err("bad input"))]"#.to_owned(),
    ];
    assert_eq!(seen, expected);
    assert_eq!(run.result::<u32>("sum").await.unwrap(), Some(60));
    assert_eq!(state(&st, "tolerant"), NodeState::Succeeded);
    assert_eq!(st.state, RunState::Failed, "a node failed: {st:?}");
}

/// A graph with every kind of edge, on three workers: every node ends, as
/// the rules say from its parents' ends (run, or skipped by one of the
/// parents whose edge could not be satisfied); each node that runs runs
/// once and starts with its upstream conditions held.
pub async fn graph_every_node_ends_as_its_edges_say(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = mixed(&client);
    let run = graph.submit("r").await.unwrap();
    let ran = Arc::new(Mutex::new(Vec::<String>::new()));
    let body = {
        let (graph, ran) = (graph.clone(), ran.clone());
        move |ctx: NodeContext| {
            let (graph, ran) = (graph.clone(), ran.clone());
            async move {
                assert_upstream_held(&graph, &ctx);
                ran.lock().unwrap().push(ctx.node().to_owned());
                if FAILS.contains(&ctx.node()) {
                    return Err(NodeError::msg(format!("{} failed", ctx.node())).permanent());
                }
                Ok(ctx.attempt())
            }
        }
    };
    let st = finish(&run, workers(&graph, 3, |w| w.run(body.clone()))).await;
    let model = model(&graph);
    let mut expect_ran = Vec::new();
    for (n, (want_state, unsat)) in st.nodes.iter().zip(&model) {
        assert_eq!(n.state, *want_state, "node {:?}: {st:?}", n.name);
        match n.state {
            NodeState::Skipped => {
                let by = n.by.as_ref().map(|k| k.as_str().to_owned());
                assert!(
                    by.as_ref().is_some_and(|b| unsat.contains(b)),
                    "{n:?} skipped by one of {unsat:?}"
                );
                assert_eq!(n.attempts, 0, "{n:?}");
            }
            _ => {
                assert_eq!(n.attempts, 1, "{n:?}");
                expect_ran.push(n.name.as_str().to_owned());
            }
        }
    }
    let mut ran = ran.lock().unwrap().clone();
    ran.sort();
    expect_ran.sort();
    assert_eq!(ran, expect_ran, "each node that could run ran once");
    assert_eq!(st.state, RunState::Failed, "{st:?}");
}
}

/// Whether `res` is `InvalidArgument`.
fn is_invalid<T>(res: Result<T>) -> bool {
    matches!(res, Err(Error::InvalidArgument { .. }))
}
