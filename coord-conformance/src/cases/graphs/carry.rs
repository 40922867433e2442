//! Completing and taking in one step: a completion that asks for the next
//! node takes it as a take would, after the resolution it made (rule 4).
//! The node so taken is fenced and leased like any other: a new token,
//! the holder named, a lease that expires unless renewed. A stale
//! completion takes nothing.

use super::*;

/// Completes `t` with `result` through the SPI, asking for the next node
/// for `holder` (lease 5 s): panics unless the completion was recorded with
/// the node in `state` and the run in `run`, and a node was taken.
async fn complete_and_take(
    g: &dyn GraphBackend,
    t: &Taken,
    result: NodeResult,
    holder: &HolderId,
    (state, run): (NodeState, RunState),
) -> Taken {
    let next = Some((holder.clone(), ms(5000)));
    let done = (g.complete(&key(G), &t.run, &t.node, t.token, result, next))
        .await
        .unwrap();
    match done {
        Complete::Recorded {
            state: s,
            run: r,
            next: Some(Take::Taken(taken)),
        } if (s, r) == (state, run) => *taken,
        other => panic!(
            "{} recorded ({state:?}, run {run:?}) and a node taken: {other:?}",
            t.node
        ),
    }
}

cases! {
    family: "graph", needs: [Need::Graphs];

/// a → b → c (c with two attempts). Completing a with a request for the
/// next node records a and takes b in the same step: attempt 1, a larger
/// token, a's result among its parents, running for the holder named, with
/// a lease (renewable; an old token neither renews nor completes it).
/// Completing b the same way takes c under a short lease that is let
/// expire: c is taken again (attempt 2, a larger token), and the late
/// completion of attempt 1 is stale and takes nothing. The last completion
/// finds nothing to take: `Idle` with no time (no lease, no delay left).
pub async fn graph_complete_takes_next_node_fenced_and_leased(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node("a")
        .node(Node::new("b").after("a"))
        .node(Node::new("c").after("b").max_attempts(2))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let g = spi(&backend);
    let (gk, rk) = (key(G), key("r"));
    let holder = |name: &str| HolderId::new(InstanceId::new(name).unwrap());
    let a = match g.take(&gk, &holder("one"), ms(5000)).await.unwrap() {
        Take::Taken(t) => *t,
        other => panic!("a: {other:?}"),
    };
    assert_eq!(a.node.as_str(), "a");
    let ok = |s: &str| NodeResult::Success(format!("{s:?}").into_bytes());
    let running = (NodeState::Succeeded, RunState::Running);
    let b = complete_and_take(g, &a, ok("A"), &holder("two"), running).await;
    assert_eq!((b.run.as_str(), b.node.as_str(), b.attempt), ("r", "b", 1));
    assert!(b.token > a.token, "{b:?} after {a:?}");
    assert_eq!(
        b.parents,
        vec![(key("a"), Outcome::Succeeded(b"\"A\"".to_vec()))]
    );
    let st = run.status().await.unwrap();
    let nb = node(&st, "b");
    assert_eq!((nb.state, nb.attempts, nb.token), (NodeState::Running, 1, Some(b.token)));
    assert_eq!(nb.worker.as_ref().map(InstanceId::as_str), Some("two"));
    assert!(
        nb.expires_in.is_some_and(|e| e > Duration::ZERO && e <= ms(5000)),
        "{nb:?}"
    );
    assert_eq!(
        g.renew(&gk, &rk, &b.node, b.token, ms(5000)).await.unwrap(),
        Renew::Renewed
    );
    assert_eq!(
        g.renew(&gk, &rk, &b.node, a.token, ms(5000)).await.unwrap(),
        Renew::Lost
    );
    let wrong = g.complete(&gk, &rk, &b.node, a.token, ok("x"), None);
    assert_eq!(
        wrong.await.unwrap(),
        Complete::Stale {
            state: Some(NodeState::Running)
        }
    );
    let short = Some((holder("one"), ms(100)));
    let done = (g.complete(&gk, &rk, &b.node, b.token, ok("B"), short.clone()))
        .await
        .unwrap();
    let Complete::Recorded {
        state: NodeState::Succeeded,
        next: Some(Take::Taken(c1)),
        ..
    } = done
    else {
        panic!("b recorded and c taken: {done:?}");
    };
    assert_eq!((c1.node.as_str(), c1.attempt), ("c", 1));
    assert!(c1.token > b.token);
    // Not renewed: c's lease ends and c is taken again.
    let c2 = take_when_takeable(&backend, &holder("two"), ms(100) + PROMPTLY).await;
    assert_eq!((c2.node.as_str(), c2.attempt), ("c", 2));
    assert!(c2.token > c1.token, "{c2:?} after {c1:?}");
    let late = g.complete(&gk, &rk, &c1.node, c1.token, ok("late"), short.clone());
    assert_eq!(
        late.await.unwrap(),
        Complete::Stale {
            state: Some(NodeState::Running)
        },
        "a stale completion takes nothing"
    );
    let last = g.complete(&gk, &rk, &c2.node, c2.token, ok("C"), short);
    assert_eq!(
        last.await.unwrap(),
        Complete::Recorded {
            state: NodeState::Succeeded,
            run: RunState::Succeeded,
            next: Some(Take::Idle { next_in: None }),
        }
    );
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(run.result::<String>("c").await.unwrap().as_deref(), Some("C"));
}

/// A stale completion that asks for the next node takes nothing: run r1's
/// node, taken by a worker that then stalls, expires and is taken again;
/// run r2's node is ready when the stalled worker's completion comes: it
/// is refused (`Stale`) and r2's node stays ready, never attempted. The
/// current attempt's completion then takes it.
pub async fn graph_stale_complete_takes_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("n").max_attempts(2))
        .build()
        .unwrap();
    let r1 = graph.submit("r1").await.unwrap();
    let backend = ctx.backend().await;
    let g = spi(&backend);
    let gk = key(G);
    let old = crash_take(&backend, ms(50)).await;
    let b = HolderId::new(InstanceId::new("b").unwrap());
    let cur = take_when_takeable(&backend, &b, ms(50) + PROMPTLY).await;
    assert_eq!((cur.run.as_str(), cur.attempt), ("r1", 2));
    let r2 = graph.submit("r2").await.unwrap();
    let ok = NodeResult::Success(b"1".to_vec());
    let next = Some((crashed(), ms(5000)));
    let stale = (g.complete(&gk, &old.run, &old.node, old.token, ok.clone(), next))
        .await
        .unwrap();
    assert_eq!(
        stale,
        Complete::Stale {
            state: Some(NodeState::Running)
        }
    );
    let n2 = node(&r2.status().await.unwrap(), "n").clone();
    assert_eq!((n2.state, n2.attempts, n2.token), (NodeState::Ready, 0, None));
    let ended = (NodeState::Succeeded, RunState::Succeeded);
    let t = complete_and_take(g, &cur, ok.clone(), &b, ended).await;
    assert_eq!((t.run.as_str(), t.node.as_str(), t.attempt), ("r2", "n", 1));
    assert!(t.token > cur.token);
    let last = g.complete(&gk, &t.run, &t.node, t.token, ok, None).await;
    assert!(matches!(last.unwrap(), Complete::Recorded { next: None, .. }));
    assert_all_ended(&r1.status().await.unwrap(), "r1");
    assert_all_ended(&r2.status().await.unwrap(), "r2");
}

/// A completion that retries its node later and asks for the next one,
/// with nothing else ready, gets `Idle` telling when the retry is due (the
/// same step's look): the node is then taken, attempt 2.
pub async fn graph_complete_and_take_idle_tells_when(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("n").max_attempts(2))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let g = spi(&backend);
    let a = HolderId::new(InstanceId::new("a").unwrap());
    let t = take_when_takeable(&backend, &a, PROMPTLY).await;
    let retry = NodeResult::Failure {
        error: "again".into(),
        retry_in: Some(ms(300)),
    };
    let next = Some((a.clone(), ms(5000)));
    let done = (g.complete(&key(G), &t.run, &t.node, t.token, retry, next))
        .await
        .unwrap();
    let Complete::Recorded {
        state: NodeState::Ready,
        run: RunState::Running,
        next: Some(Take::Idle { next_in: Some(d) }),
    } = done
    else {
        panic!("a retry and nothing taken: {done:?}");
    };
    assert!(d > Duration::ZERO && d <= ms(300), "{d:?}");
    let again = take_when_takeable(&backend, &a, ms(300) + PROMPTLY).await;
    assert_eq!((again.node.as_str(), again.attempt), ("n", 2));
    let ok = NodeResult::Success(b"1".to_vec());
    let end = (g.complete(&key(G), &again.run, &again.node, again.token, ok, None)).await;
    assert!(matches!(end.unwrap(), Complete::Recorded { .. }));
    assert_all_ended(&run.status().await.unwrap(), "r");
}
}
