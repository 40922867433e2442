//! What a run tells: its status (states, attempts, tokens, workers,
//! timings, transitions), why a node waits, typed results (and results too
//! large to keep), and `NotFound` for a run that does not exist.

use super::*;

/// The blockers as `(node, state, attempts)`.
fn blocked(b: &[Blocker]) -> Vec<(&str, NodeState, u32)> {
    b.iter()
        .map(|b| (b.node.as_str(), b.state, b.attempts))
        .collect()
}

cases! {
    family: "graph", needs: [Need::Graphs];

/// `status` shows the run and every node: a new run running with no
/// transition, its root ready and the rest pending, nothing started; a
/// running node with its attempt, token, worker, lease and start; an ended
/// one with its end (after its start) and no lease; results only on
/// request; one transition per change of state (5 for a → b); the run's
/// end.
pub async fn graph_status_reports_states_attempts_tokens_workers_timings(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("w1").await;
    let graph = client
        .graph(G)
        .node("a")
        .node(Node::new("b").after("a"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let st = run.status().await.unwrap();
    use NodeState::*;
    assert_eq!(
        (st.state, st.transitions, st.ended_at, &st.cancelled),
        (RunState::Running, 0, None, &None)
    );
    assert_eq!(states(&st), want(&[("a", Ready), ("b", Pending)]));
    for n in &st.nodes {
        assert_eq!(
            (n.attempts, n.token, n.worker, n.started_at, n.ended_at),
            (0, None, None, None, None),
            "{n:?}"
        );
        assert_eq!(
            (n.expires_in, &n.error, &n.by, &n.result),
            (None, &None, &None, &None),
            "{n:?}"
        );
    }
    let w = graph.worker();
    let inside = Arc::new(Mutex::new(None));
    let seen = inside.clone();
    let r = run.clone();
    let worked = w.work_one(|ctx| async move {
        *seen.lock().unwrap() = Some((r.status().await.expect("status"), ctx.token()));
        Ok("A")
    });
    let worked = within(worked, "a").await.expect("a is ready");
    let (during, token) = inside.lock().unwrap().take().expect("the body ran");
    let a = node(&during, "a");
    assert_eq!(
        (a.state, a.attempts, a.token),
        (Running, 1, Some(token)),
        "{a:?}"
    );
    assert_eq!(a.worker.as_ref().map(InstanceId::as_str), Some("w1"));
    assert!(a.expires_in.is_some_and(|e| e <= ms(1000)), "{a:?}");
    assert!(a.started_at.is_some() && a.ended_at.is_none(), "{a:?}");
    assert_eq!((during.transitions, state(&during, "b")), (1, Pending));
    assert_eq!((worked.token, worked.attempt), (token, 1));
    let st = run.status().await.unwrap();
    let a = node(&st, "a");
    assert_eq!(
        (a.state, a.attempts, a.token, a.expires_in),
        (Succeeded, 1, Some(token), None)
    );
    assert_eq!(a.worker.as_ref().map(InstanceId::as_str), Some("w1"));
    assert!(a.ended_at.is_some() && a.ended_at >= a.started_at, "{a:?}");
    assert_eq!(a.result, None, "status() leaves results out");
    assert_eq!((st.transitions, state(&st, "b")), (3, Ready));
    within(w.work_one(|_| async { Ok::<_, NodeError>("B") }), "b")
        .await
        .expect("b is ready");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!((st.state, st.transitions), (RunState::Succeeded, 5));
    let b = node(&st, "b");
    assert!(b.started_at >= node(&st, "a").ended_at, "{st:?}");
    assert!(
        st.ended_at >= b.ended_at && st.ended_at.unwrap() >= st.submitted_at,
        "{st:?}"
    );
}

/// `why_blocked` lists the upstream nodes a pending node still waits for,
/// in its edge order, with their state and attempts; nothing for a node
/// that is ready, running or ended; `InvalidArgument` for a node the graph
/// does not have.
pub async fn graph_why_blocked_lists_unresolved_upstream(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node("p")
        .node("q")
        .node(Node::new("j").after("q").after_on("p", On::Any))
        .node(Node::new("k").after("j"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    use NodeState::*;
    let why = |n: &'static str| {
        let run = run.clone();
        async move { run.why_blocked(n).await.unwrap() }
    };
    assert_eq!(blocked(&why("j").await), [("q", Ready, 0), ("p", Ready, 0)]);
    assert_eq!(blocked(&why("k").await), [("j", Pending, 0)]);
    assert!(why("p").await.is_empty(), "a ready node waits for nothing");
    invalid(run.why_blocked("nope").await, "an unknown node");
    let w = graph.worker();
    let other = graph.worker();
    let looks = Mutex::new(Vec::new());
    let (r, looks_ref, other) = (&run, &looks, &other);
    let first = w.work_one(|ctx1| async move {
        let second = other.work_one(|ctx2| async move {
            let seen = r.why_blocked("j").await.unwrap();
            looks_ref
                .lock()
                .unwrap()
                .push((ctx2.node().to_owned(), seen));
            Ok(2)
        });
        second.await.unwrap().expect("the other root");
        let seen = r.why_blocked("j").await.unwrap();
        looks_ref
            .lock()
            .unwrap()
            .push((ctx1.node().to_owned(), seen));
        Ok(1)
    });
    within(first, "a root").await.expect("a root is ready");
    let looks = looks.into_inner().unwrap();
    let [(second, both), (first, one)] = &looks[..] else {
        panic!("two looks: {looks:?}")
    };
    let mut roots = [first.as_str(), second.as_str()];
    roots.sort();
    assert_eq!(roots, ["p", "q"]);
    let both_running = [("q", Running, 1), ("p", Running, 1)];
    assert_eq!(
        blocked(both),
        both_running,
        "both roots running, in j's edge order"
    );
    let first_running = [(first.as_str(), Running, 1)];
    assert_eq!(
        blocked(one),
        first_running,
        "{second} ended, {first} running"
    );
    assert!(why("j").await.is_empty(), "j is ready");
    assert_eq!(blocked(&why("k").await), [("j", Ready, 0)]);
    let mut w = w;
    while running(&run).await {
        within(w.work_next(named), "a node").await;
    }
    assert!(why("k").await.is_empty(), "an ended node waits for nothing");
    assert_all_ended(&run.status().await.unwrap(), "r");
}

/// `result::<T>` decodes a succeeded node's result as `T` (`None` before
/// it succeeded and for a node that failed); asking for another type is
/// `InvalidArgument`, so is asking for a node the graph does not have; a
/// child's `parent::<T>` of a parent's result that is not a `T` too.
pub async fn graph_result_decoded_as_asked_type(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node("text")
        .node("num")
        .node(Node::new("bad").max_attempts(1))
        .node(Node::new("child").after("text"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    assert_eq!(
        run.result::<String>("text").await.unwrap(),
        None,
        "not run yet"
    );
    let body = |ctx: NodeContext| async move {
        match ctx.node() {
            "text" => Ok(vec!["hello".to_owned()]),
            "num" => Ok(vec!["42".to_owned()]),
            "bad" => Err(NodeError::msg("nope")),
            _ => {
                let as_num = matches!(
                    ctx.parent::<u32>("text"),
                    Err(Error::InvalidArgument { .. })
                );
                let as_list = ctx.parent::<Vec<String>>("text").map_err(NodeError::msg)?;
                Ok(vec![format!("{as_num}"), as_list.join(",")])
            }
        }
    };
    let mut w = graph.worker();
    while running(&run).await {
        within(w.work_next(body), "a node").await;
    }
    assert_eq!(
        run.result::<Vec<String>>("text").await.unwrap(),
        Some(vec!["hello".to_owned()])
    );
    assert_eq!(
        run.result::<(String,)>("num").await.unwrap(),
        Some(("42".to_owned(),))
    );
    invalid(run.result::<u32>("text").await, "a list as a number");
    invalid(run.result::<String>("num").await, "a list as a string");
    assert_eq!(
        run.result::<String>("bad").await.unwrap(),
        None,
        "a failed node has none"
    );
    invalid(run.result::<String>("nope").await, "an unknown node");
    let child: Option<Vec<String>> = run.result("child").await.unwrap();
    assert_eq!(
        child,
        Some(vec!["true".to_owned(), "hello".to_owned()]),
        "parent::<u32> refused"
    );
    assert_all_ended(&run.status().await.unwrap(), "r");
}

/// A result over `MAX_RESULT_BYTES` (encoded), or one that does not encode,
/// fails its node for good, whatever attempts it has left, with an error
/// naming the node (and the limit); its dependent is skipped. A result of
/// exactly the limit is kept.
pub async fn graph_result_too_large_or_unencodable_fails_node_permanently(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(quick(Node::new("big").max_attempts(3)))
        .node(Node::new("after").after("big"))
        .node("fits")
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    // A JSON string: its text and two quotes.
    let body = |ctx: NodeContext| async move {
        let len = if ctx.node() == "big" {
            MAX_RESULT_BYTES - 1
        } else {
            MAX_RESULT_BYTES - 2
        };
        Ok("x".repeat(len))
    };
    let mut w = graph.worker();
    let mut worked = Vec::new();
    while running(&run).await {
        worked.push(within(w.work_next(body), "a node").await);
        assert!(worked.len() <= 2, "big was retried: {worked:?}");
    }
    let big = worked.iter().find(|w| w.node == "big").expect("big ran");
    assert_eq!((big.attempt, big.state), (1, Some(NodeState::Failed)));
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    let b = node(&st, "big");
    let error = b.error.clone().unwrap_or_default();
    assert!(
        error.contains("big") && error.contains(&MAX_RESULT_BYTES.to_string()),
        "{error}"
    );
    assert_eq!(
        (b.attempts, state(&st, "after"), state(&st, "fits")),
        (1, NodeState::Skipped, NodeState::Succeeded)
    );
    let fits: Option<String> = run.result("fits").await.unwrap();
    assert_eq!(fits.map(|s| s.len()), Some(MAX_RESULT_BYTES - 2));
    assert_eq!(st.state, RunState::Failed);
    let odd = client
        .graph("h")
        .node(quick(Node::new("odd").max_attempts(3)))
        .build()
        .unwrap();
    let run = odd.submit("r").await.unwrap();
    // JSON map keys are strings: a map keyed by pairs does not encode.
    let body = |_| async { Ok(std::collections::BTreeMap::from([((1u32, 2u32), 3u32)])) };
    let worked = within(odd.worker().work_one(body), "odd").await;
    let worked = worked.expect("odd is ready");
    assert_eq!((worked.attempt, worked.state), (1, Some(NodeState::Failed)));
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "h/r");
    let error = node(&st, "odd").error.clone().unwrap_or_default();
    assert!(error.contains("odd"), "names the node: {error}");
}

/// A run never submitted, or of another graph, is `NotFound` for
/// `status`, `result`, `why_blocked`, `cancel`, `wait` and an observer.
pub async fn graph_unknown_run_is_not_found(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = chain(&client);
    let run = graph.submit("r").await.unwrap();
    let nope = graph.run("nope").unwrap();
    assert!(!nope.was_created());
    assert_not_found(nope.status().await, "status");
    assert_not_found(nope.result::<String>("a").await, "result");
    assert_not_found(nope.why_blocked("b").await, "why_blocked");
    assert_not_found(nope.cancel("x").await, "cancel");
    assert_not_found(at_once(nope.wait()).await, "wait");
    assert_not_found(at_once(nope.observe().next()).await, "observe");
    let other = client
        .graph("h")
        .node("a")
        .node(Node::new("b").after("a"))
        .node(Node::new("c").after("b"));
    let elsewhere = other.build().unwrap().run("r").unwrap();
    assert_not_found(elsewhere.status().await, "run r of another graph");
    let mut w = graph.worker();
    while running(&run).await {
        within(w.work_next(named), "a node").await;
    }
    assert_all_ended(&run.status().await.unwrap(), "r");
}
}
