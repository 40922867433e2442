//! Cancellation and failure policies: a cancelled run starts no node, its
//! running attempts see their lost signal fire and `is_cancelled`, and it
//! ends cancelled; cancelling an ended run is `false`, an unknown one
//! `NotFound`; a node failing with `OnFailure::CancelRun` cancels the run
//! (its siblings included), one with `Continue` lets independent branches
//! finish.

use super::*;

/// Options whose renewals come every 50 ms (TTL 1 s), so that a running
/// attempt learns of a cancellation promptly while its lease has long left.
fn renewing() -> LeaseOptions {
    default_options().extend_interval(Some(ms(50)))
}

cases! {
    family: "graph", needs: [Need::Graphs];

/// Cancelling a run while its root runs: `cancel` is `true` and the nodes
/// that had not started are cancelled at once (`by` none, never started);
/// the running body's lost signal fires with `is_cancelled`; its success
/// is still recorded (the work was done) but nothing starts after it, and
/// the run ends cancelled with the reason. Cancelling again is `false`.
pub async fn graph_cancel_stops_new_nodes_and_signals_running(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client_with("a", renewing()).await;
    let graph = client
        .graph(G)
        .node("root")
        .node(Node::new("b").after("root"))
        .node(Node::new("c").after_on("root", On::Any))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let started = &tokio::sync::Notify::new();
    let mut w = graph.worker();
    let working = w.work_next(|ctx| async move {
        started.notify_one();
        let fired = timeout(PROMPTLY, ctx.lost().wait()).await.is_ok();
        Ok((fired, ctx.is_cancelled()))
    });
    let cancelling = async {
        timeout(PROMPTLY, started.notified())
            .await
            .expect("root started");
        assert!(
            run.cancel("operator asked").await.unwrap(),
            "this call cancelled it"
        );
        let st = run.status().await.unwrap();
        use NodeState::*;
        assert_eq!(
            states(&st),
            want(&[("root", Running), ("b", Cancelled), ("c", Cancelled)])
        );
        assert_eq!(
            st.state,
            RunState::Running,
            "a cancelled run ends once its attempts end"
        );
        assert_eq!(st.cancelled.as_deref(), Some("operator asked"));
        for n in ["b", "c"] {
            let s = node(&st, n);
            assert_eq!((s.attempts, &s.by, s.started_at), (0, &None, None), "{s:?}");
        }
        assert!(!run.cancel("again").await.unwrap(), "already cancelled");
    };
    let (worked, ()) = timeout(RUN_WITHIN, async { tokio::join!(working, cancelling) })
        .await
        .expect("the running body ends");
    let worked = worked.unwrap();
    assert_eq!(
        worked.state,
        Some(NodeState::Succeeded),
        "a success in a cancelled run is kept"
    );
    let st = within(run.wait(), "wait").await;
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Cancelled);
    assert_eq!(
        st.cancelled.as_deref(),
        Some("operator asked"),
        "the first reason"
    );
    assert_eq!(
        run.result::<(bool, bool)>("root").await.unwrap(),
        Some((true, true)),
        "lost fired, is_cancelled"
    );
    let other = graph.worker();
    let none = other.work_one(|_| async { Ok::<_, NodeError>("started after cancel") });
    assert_eq!(
        within(none, "a take after cancel").await,
        None,
        "nothing starts"
    );
    for n in ["b", "c"] {
        assert_eq!(node(&st, n).attempts, 0, "{n} never started");
    }
}

/// A running attempt that fails after its run was cancelled ends
/// cancelled, not retried even with attempts left; a run cancelled before
/// anything started ends at once (every node cancelled) and `wait`
/// returns at once.
pub async fn graph_cancelled_run_ends_without_retries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client_with("a", renewing()).await;
    let graph = client
        .graph(G)
        .node(quick(Node::new("n").max_attempts(5)))
        .node(Node::new("m").after("n"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let started = &tokio::sync::Notify::new();
    let mut w = graph.worker();
    let working = w.work_next(|ctx| async move {
        started.notify_one();
        let _ = timeout(PROMPTLY, ctx.lost().wait()).await;
        Err::<(), _>(NodeError::msg("interrupted"))
    });
    let cancelling = async {
        timeout(PROMPTLY, started.notified())
            .await
            .expect("n started");
        assert!(run.cancel("stop").await.unwrap());
    };
    let (worked, ()) = timeout(RUN_WITHIN, async { tokio::join!(working, cancelling) })
        .await
        .expect("the running body ends");
    let worked = worked.unwrap();
    assert_eq!(
        worked.state,
        Some(NodeState::Cancelled),
        "a failure in a cancelled run"
    );
    let st = within(run.wait(), "wait").await;
    assert_all_ended(&st, "r");
    assert_eq!(
        states(&st),
        want(&[("n", NodeState::Cancelled), ("m", NodeState::Cancelled)])
    );
    assert_eq!(
        (st.state, node(&st, "n").attempts),
        (RunState::Cancelled, 1)
    );
    let fresh = graph.submit("r2").await.unwrap();
    assert!(fresh.cancel("before it started").await.unwrap());
    let st = at_once(fresh.status()).await.unwrap();
    assert_all_ended(&st, "r2");
    assert_eq!(st.state, RunState::Cancelled);
    assert!(
        st.nodes
            .iter()
            .all(|n| n.state == NodeState::Cancelled && n.by.is_none()),
        "{st:?}"
    );
    assert_eq!(
        at_once(fresh.wait()).await.unwrap().state,
        RunState::Cancelled
    );
    let other = graph.worker();
    let none = other.work_one(|_| async { Ok::<_, NodeError>(()) });
    assert_eq!(within(none, "a take").await, None);
}

/// A cancel's reason is kept cut to 4 KiB at a character boundary (as
/// queue errors are), whatever its length — also by the backend itself,
/// for a cancel sent at the SPI, uncut.
pub async fn graph_cancel_reason_cut_to_4_kib(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client.graph(G).node("only").build().unwrap();
    let long = "é".repeat(10_000);
    let backend = ctx.backend().await;
    for (name, by_client) in [("r", true), ("raw", false)] {
        let run = graph.submit(name).await.unwrap();
        if by_client {
            assert!(within(run.cancel(&long), "cancel").await);
        } else {
            let cancelled = spi(&backend).cancel(&key(G), &key(name), &long).await.unwrap();
            assert!(
                matches!(cancelled, coord_api::spi::Cancel::Cancelled { .. }),
                "{cancelled:?}"
            );
        }
        let why = run.status().await.unwrap().cancelled.expect("a reason");
        assert!((4094..=4096).contains(&why.len()), "{name}: {} bytes", why.len());
        assert!(long.starts_with(why.as_str()), "{name}");
    }
}

/// Cancelling a run that ended is `false` and changes nothing (it stays
/// succeeded, no reason recorded); cancelling a run that does not exist is
/// `NotFound`.
pub async fn graph_cancel_of_ended_run_is_false(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client.graph(G).node("only").build().unwrap();
    let run = graph.submit("r").await.unwrap();
    let w = graph.worker();
    within(w.work_one(|_| async { Ok::<_, NodeError>(1) }), "only")
        .await
        .expect("ready");
    let ended = run.status().await.unwrap();
    assert_all_ended(&ended, "r");
    assert!(
        !run.cancel("too late").await.unwrap(),
        "an ended run is not cancelled"
    );
    let st = run.status().await.unwrap();
    assert_eq!(
        (st.state, &st.cancelled, st.transitions),
        (RunState::Succeeded, &None, ended.transitions)
    );
    assert_eq!(state(&st, "only"), NodeState::Succeeded);
    assert_not_found(
        graph.run("nope").unwrap().cancel("x").await,
        "cancel an unknown run",
    );
}

/// A node that fails for good with `OnFailure::CancelRun` cancels its run
/// in the same step: a sibling's running attempt sees its lost signal fire
/// with `is_cancelled` and ends cancelled, the nodes that had not started
/// are cancelled (even the one after the failure, which that step made
/// ready), and the run ends cancelled, the reason naming the node.
pub async fn graph_on_failure_cancel_run_cancels_siblings(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client_with("a", renewing()).await;
    let graph = client
        .graph(G)
        .node("slow")
        .node(
            Node::new("boom")
                .max_attempts(3)
                .on_failure(OnFailure::CancelRun),
        )
        .node(Node::new("later").after("slow"))
        .node(Node::new("handler").after_on("boom", On::Failure))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let slow_running = Arc::new(tokio::sync::Notify::new());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let body = {
        let (slow_running, seen) = (slow_running.clone(), seen.clone());
        move |ctx: NodeContext| {
            let (slow_running, seen) = (slow_running.clone(), seen.clone());
            async move {
                match ctx.node() {
                    "slow" => {
                        slow_running.notify_one();
                        let fired = timeout(PROMPTLY, ctx.lost().wait()).await.is_ok();
                        seen.lock().unwrap().push(format!(
                            "slow lost {fired} cancelled {}",
                            ctx.is_cancelled()
                        ));
                        Err(NodeError::msg("interrupted"))
                    }
                    "boom" => {
                        timeout(PROMPTLY, slow_running.notified())
                            .await
                            .expect("slow runs");
                        Err(NodeError::msg("boom").permanent())
                    }
                    n => {
                        seen.lock().unwrap().push(format!("{n} ran"));
                        Ok(())
                    }
                }
            }
        }
    };
    let st = finish(&run, workers(&graph, 2, |w| w.run(body.clone()))).await;
    use NodeState::*;
    let expected = [
        ("slow", Cancelled),
        ("boom", Failed),
        ("later", Cancelled),
        ("handler", Cancelled),
    ];
    assert_eq!(states(&st), want(&expected), "{st:?}");
    assert_eq!(st.state, RunState::Cancelled);
    let reason = st.cancelled.clone().unwrap_or_default();
    assert!(
        reason.contains("boom"),
        "the reason names the node: {reason:?}"
    );
    assert_eq!(node(&st, "boom").attempts, 1);
    for n in ["later", "handler"] {
        assert_eq!(
            (node(&st, n).attempts, &node(&st, n).by),
            (0, &None),
            "{st:?}"
        );
    }
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["slow lost true cancelled true"]
    );
}

/// A node that fails for good with `OnFailure::Continue` (the default)
/// affects only its dependents (skipped by it); an independent branch
/// runs to its end and the run ends failed.
pub async fn graph_on_failure_continue_lets_branches_finish(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("boom").max_attempts(1))
        .node(Node::new("child").after("boom"))
        .node("x")
        .node(Node::new("y").after("x"))
        .node(Node::new("z").after("y"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let body = |ctx: NodeContext| async move {
        match ctx.node() {
            "boom" => Err(NodeError::msg("boom")),
            "x" => {
                sleep(ms(20)).await; // still running when boom fails
                Ok(1)
            }
            _ => Ok(2),
        }
    };
    let st = finish(&run, workers(&graph, 2, |w| w.run(body))).await;
    use NodeState::*;
    let expected = [
        ("boom", Failed),
        ("child", Skipped),
        ("x", Succeeded),
        ("y", Succeeded),
        ("z", Succeeded),
    ];
    assert_eq!(states(&st), want(&expected), "{st:?}");
    assert_eq!(
        (st.state, st.cancelled.as_deref()),
        (RunState::Failed, None)
    );
    assert_eq!(
        node(&st, "child").by.as_ref().map(Key::as_str),
        Some("boom")
    );
}
}
