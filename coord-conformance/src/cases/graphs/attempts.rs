//! Attempts and fencing: a failing node is retried up to its
//! `max_attempts` with increasing attempt numbers and tokens; a permanent
//! failure is not retried; a node whose worker crashed (taken through the
//! SPI and never renewed, or an attempt whose lease was let expire) is taken
//! again after its lease expired, with the next attempt and a larger token;
//! only the current attempt's token completes or renews a node.

use super::*;

/// Takes through the SPI, as a worker that then crashes, the one ready node
/// of `graph`'s runs, with a lease of `ttl`.
async fn crash_take(backend: &DynBackend, ttl: Duration) -> Taken {
    match spi(backend).take(&key(G), &crashed(), ttl).await.unwrap() {
        Take::Taken(t) => *t,
        other => panic!("the crashing worker's take: expected a node, got {other:?}"),
    }
}

/// Takes (through the SPI, for `holder`) a node of `graph` as soon as one
/// is takeable, for at most `within` (a lease expiring makes one so).
async fn take_when_takeable(backend: &DynBackend, holder: &HolderId, within: Duration) -> Taken {
    let taken = eventually(within, || async {
        match spi(backend).take(&key(G), holder, ms(5000)).await.unwrap() {
            Take::Taken(t) => Some(*t),
            _ => None,
        }
    })
    .await;
    taken.unwrap_or_else(|| panic!("nothing takeable within {within:?}"))
}

cases! {
    family: "graph", needs: [Need::Graphs];

/// A node whose body fails is retried (after its back-off) until its
/// `max_attempts`: attempts 1, 2, 3 with increasing tokens, ready again
/// after each failure but the last, then failed with the last error, its
/// dependent skipped. A node that fails once and then succeeds ends
/// succeeded on attempt 2.
pub async fn graph_failed_node_retried_up_to_max_attempts(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(quick(Node::new("flaky").max_attempts(3)))
        .node(quick(Node::new("lucky").max_attempts(3)))
        .node(Node::new("after").after("flaky"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let mut w = graph.worker();
    let body = |ctx: NodeContext| async move {
        match (ctx.node(), ctx.attempt()) {
            ("lucky", 2) => Ok(ctx.attempt()),
            (n, a) => Err(NodeError::msg(format!("{n} failed attempt {a}"))),
        }
    };
    let mut worked = Vec::new();
    while running(&run).await {
        worked.push(within(w.work_next(body), "a retry").await);
        assert!(worked.len() <= 5, "more attempts than allowed: {worked:?}");
    }
    let of = |n: &str| {
        worked
            .iter()
            .filter(|w| w.node == n)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (flaky, lucky) = (of("flaky"), of("lucky"));
    let attempts: Vec<u32> = flaky.iter().map(|w| w.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "{worked:?}");
    let tokens: Vec<FencingToken> = flaky.iter().map(|w| w.token).collect();
    assert_increasing(&tokens, "flaky's attempts");
    let ends: Vec<Option<NodeState>> = flaky.iter().map(|w| w.state).collect();
    use NodeState::*;
    assert_eq!(ends, [Some(Ready), Some(Ready), Some(Failed)], "{worked:?}");
    let lucky: Vec<(u32, Option<NodeState>)> = lucky.iter().map(|w| (w.attempt, w.state)).collect();
    assert_eq!(lucky, [(1, Some(Ready)), (2, Some(Succeeded))]);
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    let f = node(&st, "flaky");
    assert_eq!(
        (f.state, f.attempts, f.token),
        (Failed, 3, Some(tokens[2])),
        "{f:?}"
    );
    assert_eq!(
        f.error.as_deref(),
        Some("flaky failed attempt 3"),
        "the last error kept"
    );
    assert_eq!(
        (state(&st, "lucky"), node(&st, "lucky").attempts),
        (Succeeded, 2)
    );
    assert_eq!(run.result::<u32>("lucky").await.unwrap(), Some(2));
    let after = node(&st, "after");
    assert_eq!(
        (after.state, after.by.as_ref().map(Key::as_str)),
        (Skipped, Some("flaky"))
    );
    assert_eq!(st.state, RunState::Failed);
}

/// A permanent failure fails the node at once, whatever attempts it has
/// left: one attempt, its error kept, nothing to take after it.
pub async fn graph_permanent_failure_not_retried(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(quick(Node::new("p").max_attempts(5)))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let w = graph.worker();
    let body = |_| async { Err::<(), _>(NodeError::msg("no such file").permanent()) };
    let worked = within(w.work_one(body), "p").await.expect("p is ready");
    assert_eq!((worked.attempt, worked.state), (1, Some(NodeState::Failed)));
    let again = w.work_one(|_| async { Ok::<_, NodeError>("ran again") });
    assert_eq!(within(again, "another take").await, None, "not retried");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    let p = node(&st, "p");
    assert_eq!((p.state, p.attempts), (NodeState::Failed, 1));
    assert!(
        p.error
            .as_deref()
            .is_some_and(|e| e.contains("no such file")),
        "{p:?}"
    );
    assert_eq!(st.state, RunState::Failed);
}

/// A node whose worker crashed mid-attempt (taken through the SPI with a
/// 150 ms lease, never renewed) stays running with that worker until the
/// lease expires; then another worker takes it, as attempt 2 with a larger
/// token, not before, and the run goes on.
pub async fn graph_crashed_worker_node_taken_again_after_lease_expiry(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let graph = |c: &Client| {
        c.graph(G)
            .node(Node::new("n").max_attempts(3))
            .node(Node::new("m").after("n"))
            .build()
            .unwrap()
    };
    let run = graph(&a).submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let t0 = Instant::now();
    let first = crash_take(&backend, ms(150)).await;
    assert_eq!((first.node.as_str(), first.attempt), ("n", 1));
    let st = run.status().await.unwrap();
    let n = node(&st, "n");
    assert_eq!(
        (n.state, n.attempts, n.token),
        (NodeState::Running, 1, Some(first.token))
    );
    assert_eq!(n.worker.as_ref().map(InstanceId::as_str), Some("crashed"));
    assert!(n.expires_in.is_some_and(|e| e <= ms(150)), "{n:?}");
    let started = Arc::new(Mutex::new(None));
    let mut wb = graph(&b).worker();
    let body = {
        let started = started.clone();
        move |ctx: NodeContext| {
            *started.lock().unwrap() = Some(Instant::now());
            async move { Ok(ctx.attempt()) }
        }
    };
    let second = timeout(ms(150) + PROMPTLY, wb.work_next(&body)).await;
    let second = second
        .expect("taken again after the lease expired")
        .unwrap();
    let at = started.lock().unwrap().expect("the body ran");
    assert!(
        at >= t0 + ms(140),
        "taken again {:?} after the crash, before its lease of 150 ms expired",
        at - t0
    );
    assert_eq!((second.node.as_str(), second.attempt), ("n", 2));
    assert!(
        second.token > first.token,
        "{:?} after {:?}",
        second.token,
        first.token
    );
    assert_eq!(second.state, Some(NodeState::Succeeded));
    let st = run.status().await.unwrap();
    let n = node(&st, "n");
    assert_eq!((n.attempts, n.token), (2, Some(second.token)));
    assert_eq!(n.worker.as_ref().map(InstanceId::as_str), Some("b"));
    let m = within(wb.work_next(&body), "m").await;
    assert_eq!((m.node.as_str(), m.attempt), ("m", 1));
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Succeeded);
}

/// A crashed attempt that was the node's last fails it once its lease
/// expired (error `lease expired`), seen by the next status; its
/// dependents resolve as after any failure. Before the expiry it runs.
pub async fn graph_expired_last_attempt_fails_node(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("once").max_attempts(1))
        .node(Node::new("next").after("once"))
        .node(Node::new("cleanup").after_on("once", On::Failure))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let taken = crash_take(&backend, ms(100)).await;
    assert_eq!(taken.node.as_str(), "once");
    let st = run.status().await.unwrap();
    assert_eq!(
        state(&st, "once"),
        NodeState::Running,
        "before its lease expired"
    );
    let failed = eventually(ms(100) + PROMPTLY, || async {
        let st = run.status().await.unwrap();
        (state(&st, "once") != NodeState::Running).then_some(st)
    })
    .await
    .expect("the expired attempt ended");
    use NodeState::*;
    assert_eq!(
        states(&failed),
        want(&[("once", Failed), ("next", Skipped), ("cleanup", Ready)])
    );
    let once = node(&failed, "once");
    assert!(
        once.error
            .as_deref()
            .is_some_and(|e| e.contains("lease expired")),
        "{once:?}"
    );
    assert_eq!((once.attempts, once.token), (1, Some(taken.token)));
    let w = graph.worker();
    let cleanup = within(w.work_one(|_| async { Ok::<_, NodeError>(()) }), "cleanup").await;
    assert_eq!(cleanup.map(|c| c.node), Some("cleanup".to_owned()));
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Failed);
}

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
/// nothing (states, attempts, tokens, transitions, result); so is a second
/// completion of the current attempt once recorded, and one for a run that
/// does not exist.
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
        g.complete(&gk, &rk, &nk, old.token, late.clone())
            .await
            .unwrap(),
        running
    );
    let fail = NodeResult::Failure {
        error: "late".into(),
        retry_in: None,
    };
    assert_eq!(
        g.complete(&gk, &rk, &nk, old.token, fail.clone())
            .await
            .unwrap(),
        running
    );
    let never = FencingToken(cur.token.get() + 1_000_000);
    assert_eq!(
        g.complete(&gk, &rk, &nk, never, late.clone())
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
    let done = g.complete(&gk, &rk, &nk, cur.token, fresh).await.unwrap();
    let recorded = Complete::Recorded {
        state: NodeState::Succeeded,
        run: RunState::Running,
    };
    assert_eq!(done, recorded);
    let succeeded = Complete::Stale {
        state: Some(NodeState::Succeeded),
    };
    assert_eq!(
        g.complete(&gk, &rk, &nk, cur.token, late.clone())
            .await
            .unwrap(),
        succeeded,
        "again"
    );
    assert_eq!(
        g.complete(&gk, &rk, &nk, old.token, fail).await.unwrap(),
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
        .complete(&gk, &key("nope"), &nk, cur.token, late)
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

/// An attempt whose body's future is dropped (the worker stopped
/// mid-body) is ended as failed at once, to be retried at once: another
/// worker takes attempt 2 well before the dropped attempt's 5 s lease
/// would have expired.
pub async fn graph_dropped_attempt_retried_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let graph = |c: &Client| {
        c.graph(G)
            .node(Node::new("n").max_attempts(3))
            .build()
            .unwrap()
    };
    let run = graph(&a).submit("r").await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut wa = graph(&a).worker().ttl(ms(5000));
    let stuck = wa.work_next(|ctx| async move {
        tx.send(ctx.token()).unwrap();
        std::future::pending::<()>().await;
        Ok(())
    });
    // The body runs until it started; then its future is dropped.
    let first = tokio::select! {
        res = stuck => panic!("the stuck body ended: {res:?}"),
        first = timeout(PROMPTLY, rx.recv()) => first.expect("attempt 1 started").unwrap(),
    };
    let t0 = Instant::now();
    let mut wb = graph(&b).worker();
    let second = within(
        wb.work_next(|ctx| async move { Ok(ctx.attempt()) }),
        "attempt 2",
    )
    .await;
    assert!(
        t0.elapsed() < ms(4000),
        "taken again only after {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (second.attempt, second.state),
        (2, Some(NodeState::Succeeded))
    );
    assert!(second.token > first, "{second:?} after {first:?}");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(node(&st, "n").attempts, 2);
}
}
