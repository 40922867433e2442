//! Fencing: only the current attempt's token completes or renews a node. A
//! late completion (an attempt whose lease expired and whose node another
//! attempt took), a duplicate one, or one with a token never issued changes
//! nothing and says so; a completion sent again after its reply was lost
//! is told it was recorded (`Already`).

use super::*;

cases! {
    family: "graph", needs: [Need::Graphs];

/// An attempt whose lease is let expire (TTL 100 ms, no renewal) loses the
/// node: its lost signal fires, another worker takes it as attempt 2 with a
/// larger token, and the first attempt's late result is refused
/// (`Worked::state` `None`) and changes nothing: the run keeps attempt 2's.
pub async fn graph_unrenewed_attempt_loses_node_and_late_result_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let graph = |c: &Client| {
        c.graph(G)
            .node(Node::new("n").max_attempts(2))
            .build()
            .unwrap()
    };
    let run = graph(&a).submit("r").await.unwrap();
    let (first_started, second_started) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
    let lost_fired = AtomicUsize::new(0);
    let (tx_first, rx_first) = tokio::sync::oneshot::channel::<Worked>();
    let mut wa = graph(&a).worker().ttl(ms(100)).auto_extend(false);
    let mut wb = graph(&b).worker();
    let (first_started, second_started, fired) = (&first_started, &second_started, &lost_fired);
    let first = async {
        let body = |ctx: NodeContext| async move {
            first_started.notify_one();
            if timeout(PROMPTLY, ctx.lost().wait()).await.is_ok() {
                fired.fetch_add(1, SeqCst);
            }
            timeout(PROMPTLY, second_started.notified())
                .await
                .expect("attempt 2 started");
            Ok("late")
        };
        let worked = wa.work_next(body).await.expect("work_next");
        tx_first
            .send(worked.clone())
            .expect("the second body waits");
        worked
    };
    let second = async {
        first_started.notified().await;
        let body = |ctx: NodeContext| async move {
            second_started.notify_one();
            let first = timeout(PROMPTLY, rx_first)
                .await
                .expect("the late completion")
                .unwrap();
            Ok((ctx.attempt(), first.attempt, first.state.is_none()))
        };
        wb.work_next(body).await.expect("work_next")
    };
    let both = timeout(RUN_WITHIN, async { tokio::join!(first, second) }).await;
    let (first, second) = both.expect("both attempts ended");
    assert_eq!(
        (first.attempt, first.state),
        (1, None),
        "the late result was refused"
    );
    assert_eq!(
        (second.attempt, second.state),
        (2, Some(NodeState::Succeeded))
    );
    assert!(second.token > first.token, "{second:?} after {first:?}");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    let n = node(&st, "n");
    assert_eq!(
        (n.state, n.attempts, n.token),
        (NodeState::Succeeded, 2, Some(second.token))
    );
    assert_eq!(n.worker.as_ref().map(InstanceId::as_str), Some("b"));
    let kept: Option<(u32, u32, bool)> = run.result("n").await.unwrap();
    assert_eq!(
        kept,
        Some((2, 1, true)),
        "attempt 2's result, which saw attempt 1 refused"
    );
    assert_eq!(lost_fired.load(SeqCst), 1, "attempt 1's lost signal fired");
}

/// A completion or renewal with an old token (an attempt that expired and
/// was taken again) or a token never issued is `Stale` / `Lost` and changes
/// nothing (states, attempts, tokens, transitions, result); so is one for
/// a run that does not exist. A second completion of the current attempt
/// once recorded changes nothing either, and is answered `Already`.
pub async fn graph_stale_token_complete_and_renew_change_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("n").max_attempts(2))
        .node(Node::new("m").after("n"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let g = spi(&backend);
    let (gk, rk, nk) = (key(G), key("r"), key("n"));
    let old = crash_take(&backend, ms(50)).await;
    let b = HolderId::new(InstanceId::new("b").unwrap());
    let cur = take_when_takeable(&backend, &b, ms(50) + PROMPTLY).await;
    assert_eq!((cur.node.as_str(), cur.attempt), ("n", 2));
    assert!(cur.token > old.token, "{cur:?} after {old:?}");
    let before = run.status().await.unwrap();
    let late = NodeResult::Success(b"\"late\"".to_vec());
    let running = Complete::Stale {
        state: Some(NodeState::Running),
    };
    assert_eq!(
        g.complete(&gk, &rk, &nk, old.token, late.clone(), None)
            .await
            .unwrap(),
        running
    );
    let fail = NodeResult::Failure {
        error: "late".into(),
        retry_in: None,
    };
    assert_eq!(
        g.complete(&gk, &rk, &nk, old.token, fail.clone(), None)
            .await
            .unwrap(),
        running
    );
    let never = FencingToken(cur.token.get() + 1_000_000);
    assert_eq!(
        g.complete(&gk, &rk, &nk, never, late.clone(), None)
            .await
            .unwrap(),
        running
    );
    assert_eq!(
        g.renew(&gk, &rk, &nk, old.token, ms(5000)).await.unwrap(),
        Renew::Lost
    );
    assert_eq!(
        g.renew(&gk, &rk, &nk, never, ms(5000)).await.unwrap(),
        Renew::Lost
    );
    let after = run.status().await.unwrap();
    let view = |st: &RunStatus| {
        let n = node(st, "n");
        (states(st), st.transitions, n.attempts, n.token, n.worker)
    };
    assert_eq!(view(&after), view(&before), "stale calls changed nothing");
    let fresh = NodeResult::Success(b"\"fresh\"".to_vec());
    let done = g.complete(&gk, &rk, &nk, cur.token, fresh, None).await.unwrap();
    let recorded = Complete::Recorded {
        state: NodeState::Succeeded,
        run: RunState::Running,
        next: None,
    };
    assert_eq!(done, recorded);
    assert_eq!(
        g.complete(&gk, &rk, &nk, cur.token, late.clone(), None)
            .await
            .unwrap(),
        Complete::Already {
            state: NodeState::Succeeded
        },
        "again"
    );
    let succeeded = Complete::Stale {
        state: Some(NodeState::Succeeded),
    };
    assert_eq!(
        g.complete(&gk, &rk, &nk, old.token, fail, None).await.unwrap(),
        succeeded
    );
    assert_eq!(
        g.renew(&gk, &rk, &nk, cur.token, ms(5000)).await.unwrap(),
        Renew::Lost
    );
    assert_eq!(
        run.result::<String>("n").await.unwrap().as_deref(),
        Some("fresh")
    );
    let nope = g
        .complete(&gk, &key("nope"), &nk, cur.token, late, None)
        .await
        .unwrap();
    assert_eq!(nope, Complete::Stale { state: None }, "no such run");
    assert_eq!(
        g.renew(&gk, &key("nope"), &nk, cur.token, ms(50))
            .await
            .unwrap(),
        Renew::Lost
    );
    let w = graph.worker();
    within(w.work_one(|_| async { Ok::<_, NodeError>(()) }), "m")
        .await
        .expect("m is ready");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Succeeded);
}

/// A completion sent again after its reply was lost (the same token) is
/// answered `Already` with the state it left the node in, and changes
/// nothing: a failure to be retried (`Ready`), also once another attempt
/// took the node; the token of an attempt that ended by its lease's
/// expiry stays `Stale`, and the current attempt still completes.
pub async fn graph_completion_sent_again_answers_already(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = (client.graph(G))
        .node(quick(Node::new("n").max_attempts(3)))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let g = spi(&backend);
    let (gk, rk, nk) = (key(G), key("r"), key("n"));
    let first = crash_take(&backend, ms(50)).await;
    let again = NodeResult::Failure {
        error: "again".into(),
        retry_in: Some(Duration::ZERO),
    };
    let done = g.complete(&gk, &rk, &nk, first.token, again.clone(), None);
    let recorded = Complete::Recorded {
        state: NodeState::Ready,
        run: RunState::Running,
        next: None,
    };
    assert_eq!(done.await.unwrap(), recorded);
    let ready = Complete::Already {
        state: NodeState::Ready,
    };
    let next = Some((holder("next"), ms(5000)));
    let repeat = g.complete(&gk, &rk, &nk, first.token, again.clone(), next);
    assert_eq!(repeat.await.unwrap(), ready, "sent again (taking nothing)");
    let before = run.status().await.unwrap();
    let n = node(&before, "n");
    assert_eq!((n.state, n.attempts), (NodeState::Ready, 1), "{before:?}");
    let expiring = crash_take(&backend, ms(50)).await;
    assert_eq!(expiring.attempt, 2);
    let repeat = g.complete(&gk, &rk, &nk, first.token, again.clone(), None);
    assert_eq!(repeat.await.unwrap(), ready, "sent again, the node taken again");
    let last = take_when_takeable(&backend, &holder("b"), ms(50) + PROMPTLY).await;
    assert_eq!(last.attempt, 3);
    let late = g.complete(&gk, &rk, &nk, expiring.token, again, None);
    assert_eq!(
        late.await.unwrap(),
        Complete::Stale {
            state: Some(NodeState::Running)
        },
        "an expired attempt's completion"
    );
    let ok = NodeResult::Success(b"1".to_vec());
    let done = g.complete(&gk, &rk, &nk, last.token, ok, None).await.unwrap();
    assert!(matches!(done, Complete::Recorded { .. }), "{done:?}");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(node(&st, "n").attempts, 3);
}
}
