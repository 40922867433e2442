//! Declaring a graph and submitting runs of it. A bad declaration, node or
//! run id is `InvalidArgument` before any I/O: the cases make them on a
//! client whose backend is switched off, where anything that reached the
//! backend would be `Unavailable`. A submission makes every node at once
//! and is idempotent under its run id.

use super::*;

/// A client whose backend is switched off, and its switch.
async fn offline(ctx: &Ctx<'_>) -> (Client, Switch) {
    let (c, switch) = ctx.switchable_client("offline", default_options()).await;
    switch.off();
    (c, switch)
}

/// extract → (t1, t2) → load: the graph the submission cases submit.
fn pipeline(c: &Client) -> Graph {
    c.graph(G)
        .node("extract")
        .node(Node::new("t1").after("extract"))
        .node(Node::new("t2").after("extract"))
        .node(Node::new("load").after("t1").after("t2"))
        .build()
        .expect("a valid graph")
}

/// Each node's body: its name's length.
async fn length(ctx: NodeContext) -> std::result::Result<usize, NodeError> {
    Ok(ctx.node().len())
}

/// The status of a run just submitted: every node there, the roots ready,
/// the others pending, nothing started, no transition counted.
#[track_caller]
fn assert_fresh(st: &RunStatus, what: &str) {
    use NodeState::*;
    let expected = [
        ("extract", Ready),
        ("t1", Pending),
        ("t2", Pending),
        ("load", Pending),
    ];
    assert_eq!(states(st), want(&expected), "{what}: {st:?}");
    assert_eq!(st.state, RunState::Running, "{what}");
    assert_eq!(st.transitions, 0, "{what}: {st:?}");
    for n in &st.nodes {
        assert_eq!(
            (n.attempts, n.token, n.worker),
            (0, None, None),
            "{what}: {n:?}"
        );
    }
}

cases! {
    family: "graph", needs: [Need::Graphs];

/// A cycle (of three nodes, of one node through itself, or behind a valid
/// root) is `InvalidArgument` naming it, before any I/O.
pub async fn graph_cycle_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, _switch) = offline(&ctx).await;
    let three = c
        .graph(G)
        .node(Node::new("a").after("c"))
        .node(Node::new("b").after("a"))
        .node(Node::new("c").after("b"))
        .build();
    let e = invalid(three, "a -> b -> c -> a");
    assert!(e.contains("cycle"), "names the cycle: {e}");
    for step in ["a ->", "b ->", "c ->"] {
        assert!(e.contains(step), "names every node of the cycle: {e}");
    }
    let own = c.graph(G).node("x").node(Node::new("a").after("a")).build();
    let e = invalid(own, "a node after itself");
    assert!(e.contains("\"a\""), "names the node: {e}");
    let behind = c
        .graph(G)
        .node("root")
        .node(Node::new("p").after("root").after("q"))
        .node(Node::new("q").after("p"))
        .build();
    let e = invalid(behind, "p -> q -> p behind a root");
    assert!(e.contains("cycle"), "{e}");
}

/// An edge to a node the graph does not have is `InvalidArgument` naming
/// it, before any I/O; an edge to a node declared further down is fine.
pub async fn graph_unknown_parent_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, _switch) = offline(&ctx).await;
    let unknown = c
        .graph(G)
        .node("a")
        .node(Node::new("b").after("nope"))
        .build();
    let e = invalid(unknown, "an edge to an unknown node");
    assert!(e.contains("nope") && e.contains("\"b\""), "names both: {e}");
    let typo = c
        .graph(G)
        .node("a")
        .node(Node::new("b").after_on("A", On::Any));
    invalid(typo.build(), "names are case-sensitive");
    let forward = c.graph(G).node(Node::new("b").after("a")).node("a").build();
    let spec = forward.expect("a forward edge is fine");
    let names: Vec<&str> = spec
        .spec()
        .nodes()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(names, ["b", "a"], "declaration order kept");
}

/// A node declared twice, or a parent listed twice by the same node, is
/// `InvalidArgument` naming it, before any I/O.
pub async fn graph_duplicate_node_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, _switch) = offline(&ctx).await;
    let twice = c
        .graph(G)
        .node("a")
        .node("b")
        .node(Node::new("a").after("b"));
    let e = invalid(twice.build(), "node a declared twice");
    assert!(e.contains("\"a\""), "names the node: {e}");
    let parent_twice = c
        .graph(G)
        .node("a")
        .node(Node::new("b").after("a").after_on("a", On::Any));
    let e = invalid(parent_twice.build(), "a parent listed twice");
    assert!(e.contains("\"a\"") && e.contains("\"b\""), "{e}");
}

/// Bad names are `InvalidArgument` before any I/O: the graph's (empty, a
/// control character, over 512 bytes), a node's, a run id at `submit` and
/// `run`; so is a graph without nodes. A valid run id on the same
/// switched-off client does reach for the backend (`Unavailable`).
pub async fn graph_bad_names_and_run_ids_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, _switch) = offline(&ctx).await;
    let long = "n".repeat(513);
    for bad in ["", "a\nb", "tab\there", long.as_str()] {
        invalid(
            c.graph(bad).node("a").build(),
            &format!("graph name {bad:?}"),
        );
        let node = c.graph(G).node("a").node(Node::new(bad).after("a")).build();
        invalid(node, &format!("node name {bad:?}"));
    }
    invalid(c.graph(G).build(), "a graph without nodes");
    let graph = c.graph(G).node("a").build().expect("valid");
    for bad in ["", "r\n1", long.as_str()] {
        invalid(
            at_once(graph.submit(bad)).await,
            &format!("submit run id {bad:?}"),
        );
        invalid(graph.run(bad), &format!("run({bad:?})"));
    }
    match at_once(graph.submit("r1")).await {
        Err(e) if e.is_retryable() => {}
        other => panic!("a valid run id reaches the (switched-off) backend: {other:?}"),
    }
}

/// `max_attempts` outside 1..=100, a back-off of zero or with initial over
/// max, a retention outside 1 ms..=24 h and more than 1,000 nodes are
/// `InvalidArgument` before any I/O; the bounds themselves are fine.
pub async fn graph_limits_out_of_range_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (c, _switch) = offline(&ctx).await;
    let one = |n: Node| c.graph(G).node(n).build();
    let e = invalid(one(Node::new("a").max_attempts(0)), "max_attempts 0");
    assert!(e.contains("\"a\"") && e.contains("max_attempts"), "{e}");
    invalid(one(Node::new("a").max_attempts(101)), "max_attempts 101");
    one(Node::new("a").max_attempts(1)).expect("max_attempts 1");
    one(Node::new("a").max_attempts(100)).expect("max_attempts 100");
    invalid(
        one(Node::new("a").backoff(Duration::ZERO, ms(10))),
        "back-off 0",
    );
    invalid(
        one(Node::new("a").backoff(ms(20), ms(10))),
        "initial over max",
    );
    one(Node::new("a").backoff(ms(10), ms(10))).expect("initial == max");
    let kept = |d: Duration| c.graph(G).node("a").retention(d).build();
    for (bad, what) in [(Duration::ZERO, "retention 0"), (MAX_TTL + ms(1), "over 24 h")] {
        // Named as the retention of the graph, not as a lease's TTL.
        let e = invalid(kept(bad), what);
        assert!(e.contains("retention") && e.contains("graph \"g\""), "{e}");
        assert!(!e.contains("ttl"), "{e}");
    }
    kept(ms(1)).expect("retention 1 ms");
    kept(MAX_TTL).expect("retention 24 h");
    let many = |n: usize| (0..n).fold(c.graph(G), |g, i| g.node(Node::new(&format!("n{i}"))));
    many(MAX_NODES).build().expect("1,000 nodes");
    let e = invalid(many(MAX_NODES + 1).build(), "1,001 nodes");
    assert!(e.contains(&MAX_NODES.to_string()), "names the limit: {e}");
}

/// Submitting a run id again (from another instance, with an equal graph
/// declared there) returns the same run, `was_created` false, unchanged:
/// while it is new, while it runs, and after it ended. Another id is
/// another run.
pub async fn graph_submit_idempotent_under_run_id(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (ga, gb) = (pipeline(&a), pipeline(&b));
    let first = ga.submit("r").await.unwrap();
    assert!(first.was_created(), "the first submission makes the run");
    assert_eq!(first.id(), "r");
    let st = first.status().await.unwrap();
    assert_fresh(&st, "submitted");
    let again = gb.submit("r").await.unwrap();
    assert!(!again.was_created(), "the same id again: the existing run");
    let st2 = again.status().await.unwrap();
    assert_fresh(&st2, "submitted twice");
    assert_eq!(st2.submitted_at, st.submitted_at, "the same run");
    let mut w = ga.worker();
    let worked = within(w.work_next(length), "extract").await;
    assert_eq!(
        (worked.node.as_str(), worked.state),
        ("extract", Some(NodeState::Succeeded))
    );
    let mid = first.status().await.unwrap();
    assert!(
        !gb.submit("r").await.unwrap().was_created(),
        "while it runs"
    );
    let after = first.status().await.unwrap();
    assert_eq!(
        (states(&after), after.transitions),
        (states(&mid), mid.transitions),
        "unchanged"
    );
    while running(&first).await {
        within(w.work_next(length), "the next node").await;
    }
    let ended = first.status().await.unwrap();
    assert_all_ended(&ended, "worked");
    assert_eq!(ended.state, RunState::Succeeded, "{ended:?}");
    let late = ga.submit("r").await.unwrap();
    assert!(!late.was_created(), "ended and kept: the existing run");
    let st = late.status().await.unwrap();
    assert_eq!(
        (st.state, st.transitions),
        (RunState::Succeeded, ended.transitions)
    );
    let other = gb.submit("r2").await.unwrap();
    assert!(other.was_created(), "another id, another run");
    assert_fresh(&other.status().await.unwrap(), "r2");
    assert_eq!(
        ga.run("r").unwrap().status().await.unwrap().state,
        RunState::Succeeded
    );
}

/// Submitting a run id that exists with a different graph (other nodes,
/// another edge condition, other attempts) is `InvalidArgument`, and the
/// run is left alone; the same id under another graph name is another run.
pub async fn graph_submit_other_graph_under_same_id_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let run = pipeline(&a).submit("r").await.unwrap();
    assert!(run.was_created());
    let before = run.status().await.unwrap();
    let others = [
        b.graph(G)
            .node("extract")
            .node(Node::new("t1").after("extract")),
        pipeline_with(&b, Node::new("load").after("t1").after_on("t2", On::Any)),
        pipeline_with(
            &b,
            Node::new("load").after("t1").after("t2").max_attempts(7),
        ),
        pipeline_with(&b, Node::new("load").after("t2").after("t1")),
    ];
    for (i, other) in others.into_iter().enumerate() {
        let graph = other.build().expect("a valid graph");
        let e = invalid(graph.submit("r").await, &format!("other graph {i}"));
        assert!(e.contains("\"r\""), "names the run: {e}");
    }
    let after = run.status().await.unwrap();
    assert_eq!(
        (states(&after), after.submitted_at),
        (states(&before), before.submitted_at)
    );
    let elsewhere = b.graph("h").node("only").build().unwrap();
    let other = elsewhere.submit("r").await.unwrap();
    assert!(other.was_created(), "run ids are per graph");
    let st = other.status().await.unwrap();
    assert_eq!(states(&st), want(&[("only", NodeState::Ready)]));
    within(elsewhere.worker().work_next(length), "only").await;
    let mut w = pipeline(&b).worker();
    while running(&run).await {
        within(w.work_next(length), "a node of r").await;
    }
    assert_all_ended(&run.status().await.unwrap(), "r");
    assert_all_ended(&other.status().await.unwrap(), "h/r");
}

/// A submission whose reply is lost was applied whole: the run has every
/// node (roots ready, the rest pending), and submitting again returns it
/// (`was_created` false) rather than a second run.
pub async fn graph_submit_lost_reply_then_retry_finds_whole_run(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (s, switch) = ctx.switchable_client("s", default_options()).await;
    let graph = pipeline(&s);
    with_lost_reply(&switch, "submit", graph.submit("r")).await;
    let run = graph.run("r").unwrap();
    assert!(!run.was_created());
    assert_fresh(&run.status().await.unwrap(), "after the lost reply");
    let again = graph.submit("r").await.unwrap();
    assert!(!again.was_created(), "the retry finds the run");
    assert_fresh(&again.status().await.unwrap(), "after the retry");
    let mut w = graph.worker();
    let mut n = 0;
    while running(&run).await {
        within(w.work_next(length), "a node").await;
        n += 1;
    }
    assert_eq!(n, 4, "each node ran once");
    assert_all_ended(&run.status().await.unwrap(), "r");
}

/// Eight instances submit one run id at the same time: exactly one makes
/// it, the others get that run, whole.
pub async fn graph_concurrent_submits_make_one_run(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let graph = pipeline(&ctx.client(&format!("c{i}")).await);
        tasks.push(tokio::spawn(async move { graph.submit("r").await }));
    }
    let mut created = 0;
    for t in tasks {
        let run = join(t, PROMPTLY, "submit").await.unwrap();
        created += usize::from(run.was_created());
        assert_fresh(&run.status().await.unwrap(), "submitted concurrently");
    }
    assert_eq!(created, 1, "exactly one submission made the run");
    let graph = pipeline(&ctx.client("w").await);
    let run = graph.run("r").unwrap();
    let mut w = graph.worker();
    while running(&run).await {
        within(w.work_next(length), "a node").await;
    }
    assert_all_ended(&run.status().await.unwrap(), "r");
}
}

/// The pipeline with its last node (`load`) declared as `load`.
fn pipeline_with(c: &Client, load: Node) -> coord_api::GraphBuilder {
    c.graph(G)
        .node("extract")
        .node(Node::new("t1").after("extract"))
        .node(Node::new("t2").after("extract"))
        .node(load)
}
