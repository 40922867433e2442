//! Edge conditions and their resolution inside the step that ended a
//! node: after a failure (runs only on failure), after any outcome (runs
//! after success, failure and a skip), and skips propagating downstream in
//! that same step, each naming the node that caused it.

use super::*;

cases! {
    family: "graph", needs: [Need::Graphs];

/// A node after another's failure runs only if it failed (and sees its
/// error); after a success it is skipped by that node. A node after a
/// success is skipped by a failed parent.
pub async fn graph_on_failure_edge_runs_only_on_failure(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("fails").max_attempts(1))
        .node("works")
        .node(Node::new("on_fail").after_on("fails", On::Failure))
        .node(Node::new("not_on_ok").after_on("works", On::Failure))
        .node(Node::new("on_ok").after("fails"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let ran = Arc::new(Mutex::new(Vec::<String>::new()));
    let body = {
        let ran = ran.clone();
        move |ctx: NodeContext| {
            let ran = ran.clone();
            async move {
                ran.lock()
                    .unwrap()
                    .push(format!("{} {:?}", ctx.node(), ctx.parents()));
                match ctx.node() {
                    "fails" => Err(NodeError::msg("disk full")),
                    _ => Ok(()),
                }
            }
        }
    };
    let st = finish(&run, workers(&graph, 2, |w| w.run(body.clone()))).await;
    use NodeState::*;
    let expected = [
        ("fails", Failed),
        ("works", Succeeded),
        ("on_fail", Succeeded),
        ("not_on_ok", Skipped),
        ("on_ok", Skipped),
    ];
    assert_eq!(states(&st), want(&expected), "{st:?}");
    let by = |n: &str| node(&st, n).by.as_ref().map(|k| k.as_str().to_owned());
    assert_eq!(by("not_on_ok").as_deref(), Some("works"));
    assert_eq!(by("on_ok").as_deref(), Some("fails"));
    assert_eq!(
        (node(&st, "on_ok").attempts, node(&st, "not_on_ok").attempts),
        (0, 0)
    );
    let mut ran = ran.lock().unwrap().clone();
    ran.sort();
    assert_eq!(
        ran,
        [
            "fails []",
            r#"on_fail [("fails", Failed("disk full"))]"#,
            "works []"
        ]
    );
    assert_eq!(st.state, RunState::Failed);
}

/// A node after others on any outcome runs once they ended, whether they
/// succeeded, failed or were skipped, and sees each outcome (the skipped
/// one's with the node that skipped it).
pub async fn graph_on_any_edge_runs_after_success_failure_and_skip(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node("ok")
        .node(Node::new("ko").max_attempts(1))
        .node(Node::new("skipped").after("ko"))
        .node(Node::new("any_ok").after_on("ok", On::Any))
        .node(Node::new("any_ko").after_on("ko", On::Any))
        .node(Node::new("any_skipped").after_on("skipped", On::Any))
        .node(
            Node::new("all")
                .after_on("ok", On::Any)
                .after_on("ko", On::Any)
                .after_on("skipped", On::Any),
        )
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::<(String, Vec<(Key, Outcome)>)>::new()));
    let body = {
        let seen = seen.clone();
        move |ctx: NodeContext| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((ctx.node().to_owned(), ctx.parents().to_vec()));
                match ctx.node() {
                    "ko" => Err(NodeError::msg("no")),
                    "ok" => Ok("yes".to_owned()),
                    n => Ok(n.to_owned()),
                }
            }
        }
    };
    let st = finish(&run, workers(&graph, 3, |w| w.run(body.clone()))).await;
    use NodeState::*;
    let expected = [
        ("ok", Succeeded),
        ("ko", Failed),
        ("skipped", Skipped),
        ("any_ok", Succeeded),
        ("any_ko", Succeeded),
        ("any_skipped", Succeeded),
        ("all", Succeeded),
    ];
    assert_eq!(states(&st), want(&expected), "{st:?}");
    let seen = seen.lock().unwrap().clone();
    let of = |n: &str| {
        (seen.iter())
            .find(|(m, _)| m == n)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("{n} never ran"))
    };
    let ok = (key("ok"), Outcome::Succeeded(b"\"yes\"".to_vec()));
    let ko = (key("ko"), Outcome::Failed("no".into()));
    let skipped = (key("skipped"), Outcome::Skipped(key("ko")));
    assert_eq!(of("any_ok"), std::slice::from_ref(&ok));
    assert_eq!(of("any_ko"), std::slice::from_ref(&ko));
    assert_eq!(of("any_skipped"), std::slice::from_ref(&skipped));
    assert_eq!(of("all"), [ok, ko, skipped]);
    assert_eq!(
        seen.len(),
        6,
        "every node but the skipped one ran once: {seen:?}"
    );
}

/// A failure skips its dependents and theirs, in the step that recorded
/// it (the status read right after shows them skipped, no worker having
/// looked), each `by` the node that caused it; a node after a skipped one
/// on any outcome is made ready in that same step.
pub async fn graph_skips_propagate_naming_the_cause(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("a").max_attempts(1))
        .node(Node::new("b").after("a"))
        .node(Node::new("c").after("b"))
        .node(Node::new("d").after_on("c", On::Any))
        .node(Node::new("e").after("d").after("c"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let w = graph.worker();
    let worked = within(
        w.work_one(|_| async { Err::<(), _>(NodeError::msg("a failed")) }),
        "a",
    )
    .await;
    assert_eq!(worked.expect("a is ready").state, Some(NodeState::Failed));
    let st = run.status().await.unwrap();
    use NodeState::*;
    assert_eq!(
        states(&st),
        want(&[
            ("a", Failed),
            ("b", Skipped),
            ("c", Skipped),
            ("d", Ready),
            ("e", Skipped)
        ])
    );
    let by = |n: &str| node(&st, n).by.as_ref().map(|k| k.as_str().to_owned());
    assert_eq!(
        (by("b").as_deref(), by("c").as_deref()),
        (Some("a"), Some("b")),
        "{st:?}"
    );
    assert_eq!(by("e").as_deref(), Some("c"), "{st:?}");
    for n in ["b", "c", "e"] {
        let s = node(&st, n);
        assert_eq!((s.attempts, s.started_at), (0, None), "never ran: {s:?}");
        assert!(s.ended_at.is_some(), "ended: {s:?}");
    }
    let d = within(
        w.work_one(|ctx| async move { Ok(format!("{:?}", ctx.parents())) }),
        "d",
    )
    .await;
    let d = d.expect("d is ready");
    assert_eq!((d.node.as_str(), d.state), ("d", Some(Succeeded)));
    let seen: Option<String> = run.result("d").await.unwrap();
    assert_eq!(seen.as_deref(), Some(r#"[("c", Skipped("b"))]"#));
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Failed);
}
}
