//! A take whose answer never came (its reply lost, or the call cancelled
//! after it was applied) gives back at once the attempt it made, and only
//! that (decision 0044): another worker runs the node long before the 30 s
//! lease ends, as its first attempt (a node given one attempt does not
//! fail of it); the SPI's `give_back` names one holder (instance and
//! nonce) and touches no other attempt.

use super::*;

/// The lease of every take here: far longer than [`PROMPTLY`].
const LONG: Duration = Duration::from_secs(30);

cases! {
    family: "graph", needs: [Need::Graphs];

/// A take whose reply is lost after the backend made the attempt: the
/// node is given back at once; another worker runs it as attempt 1 (its
/// only one) and the run succeeds.
pub async fn graph_take_whose_reply_is_lost_gives_back_its_attempt(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let run = once(&b).submit("r").await.unwrap();
    let wa = once(&a).worker().ttl(LONG);
    switch.losing_replies();
    let failed = wa.work_one(named).await;
    assert!(failed.is_err(), "the take's reply was lost: {failed:?}");
    switch.on();
    runs_once_more(&b, &run).await;
}

/// A take cancelled while its reply was on its way (applied; the reply
/// comes 3 s late): the attempt is given back at once, and another worker
/// runs the node as attempt 1.
pub async fn graph_cancelled_take_gives_back_its_attempt(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let run = once(&b).submit("r").await.unwrap();
    let wa = once(&a).worker().ttl(LONG);
    switch.late_replies("take", ms(3000));
    let gave_up = timeout(ms(300), wa.work_one(named)).await;
    assert!(gave_up.is_err(), "cancelled while its reply was late");
    switch.late_replies("take", Duration::ZERO);
    runs_once_more(&b, &run).await;
}

/// `give_back` through the SPI returns exactly the running attempt of the
/// holder named: not one of another holder of the same instance (another
/// nonce), nor one already completed; the node is ready at once with its
/// attempt taken back, and the given-back token completes nothing; in a
/// cancelled run it is cancelled.
pub async fn graph_give_back_returns_only_its_holders_attempt(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let c = ctx.client("c").await;
    let graph = c.graph(G).node(Node::new("x")).node(Node::new("y")).build();
    let run = graph.unwrap().submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let (g, gk, rk) = (spi(&backend), key(G), key("r"));
    let instance = InstanceId::new("w").expect("valid instance id");
    let (h1, h2, h3) = (HolderId::new(instance), HolderId::new(instance), HolderId::new(instance));
    let take = |h: HolderId| {
        let gk = gk.clone();
        async move {
            match g.take(&gk, &h, LONG).await.unwrap() {
                Take::Taken(t) => *t,
                other => panic!("expected a node, got {other:?}"),
            }
        }
    };
    let (x, y) = (take(h1.clone()).await, take(h2.clone()).await);
    assert_eq!((x.attempt, y.attempt), (1, 1));
    assert_eq!(g.give_back(&gk, &h3).await.unwrap(), 0, "h3 took nothing");
    assert_eq!(g.give_back(&gk, &h1).await.unwrap(), 1, "x");
    assert_eq!(g.give_back(&gk, &h1).await.unwrap(), 0, "given back already");
    let st = run.status().await.unwrap();
    let view = |n: &str| (state(&st, n), node(&st, n).attempts);
    assert_eq!(view(x.node.as_str()), (NodeState::Ready, 0), "{st:?}");
    assert_eq!(view(y.node.as_str()), (NodeState::Running, 1), "{st:?}");
    let done = NodeResult::Success(b"1".to_vec());
    let stale = g.complete(&gk, &rk, &x.node, x.token, done.clone(), None);
    assert!(matches!(stale.await.unwrap(), Complete::Stale { .. }));
    let again = take(h3.clone()).await;
    assert_eq!((again.node.as_str(), again.attempt), (x.node.as_str(), 1));
    for (t, holder) in [(&again, &h3), (&y, &h2)] {
        let recorded = g.complete(&gk, &rk, &t.node, t.token, done.clone(), None);
        assert!(matches!(recorded.await.unwrap(), Complete::Recorded { .. }));
        assert_eq!(g.give_back(&gk, holder).await.unwrap(), 0, "completed");
    }
    assert_all_ended(&run.status().await.unwrap(), "r");
    // In a cancelled run the attempt given back is cancelled, its attempt
    // taken back too.
    let graph = c.graph(G).node(Node::new("x")).node(Node::new("y")).build();
    let second = graph.unwrap().submit("r2").await.unwrap();
    let h4 = HolderId::new(instance);
    let x2 = take(h4.clone()).await;
    assert!(second.cancel("stop").await.unwrap());
    assert_eq!(g.give_back(&gk, &h4).await.unwrap(), 1);
    let st = second.status().await.unwrap();
    let n = node(&st, x2.node.as_str());
    assert_eq!((n.state, n.attempts), (NodeState::Cancelled, 0), "{st:?}");
    assert_eq!(st.state, RunState::Cancelled, "{st:?}");
}

/// A node handed to a worker whose client closed while the answer was on
/// its way (a take's, or a completion's that took the next node in its
/// step) was never worked on: it is given back at once, as if never taken,
/// and the worker answers `Closed`. Another worker runs it as attempt 1 (its
/// only one) long before the 30 s lease ends, and the run succeeds.
pub async fn graph_node_handed_to_a_closed_client_is_given_back(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.client("b").await;
    // A take answered after the close.
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let run = once(&b).submit("r").await.unwrap();
    let wa = once(&a).worker().ttl(LONG);
    switch.late_replies("take", ms(500));
    let closing = close_once_answered(&a, &switch, "take");
    let (worked, ()) = tokio::join!(wa.work_one(named), closing);
    assert!(
        matches!(worked, Err(Error::Closed { .. })),
        "taken after the close: {worked:?}"
    );
    runs_once_more(&b, &run).await;
    // A completion whose next node was answered after the close: `first`
    // succeeds, `n` is the node the completion took.
    let (a2, switch) = ctx.switchable_client("a2", default_options()).await;
    let two = |c: &Client| {
        let first = Node::new("first").max_attempts(1);
        let n = Node::new("n").after("first").max_attempts(1);
        c.graph(G).node(first).node(n).build().unwrap()
    };
    let run = two(&b).submit("r2").await.unwrap();
    let wa = two(&a2).worker().ttl(LONG);
    switch.late_replies("complete", ms(500));
    let closing = close_once_answered(&a2, &switch, "complete");
    let (worked, ()) = tokio::join!(wa.run(named), closing);
    assert!(
        matches!(worked, Err(Error::Closed { .. })),
        "the next node answered after the close: {worked:?}"
    );
    let mut wb = two(&b).worker();
    let worked = within(wb.work_next(named), "the next node, given back").await;
    assert_eq!(
        (worked.node.as_str(), worked.attempt, worked.state),
        ("n", 1, Some(NodeState::Succeeded))
    );
    let st = run.status().await.unwrap();
    assert_eq!(st.state, RunState::Succeeded, "{st:?}");
}
}

/// Graph `G` of one node `n` given one attempt, on `c`.
fn once(c: &Client) -> Graph {
    c.graph(G)
        .node(Node::new("n").max_attempts(1))
        .build()
        .unwrap()
}

/// Closes `c` once a call of the SPI method `name` was applied (its answer
/// held back by `switch`).
async fn close_once_answered(c: &Client, switch: &Switch, name: &'static str) {
    let applied = eventually(PROMPTLY, || async {
        (switch.answered(name) > 0).then_some(())
    });
    applied.await.unwrap_or_else(|| panic!("a {name} applied"));
    c.close().await.unwrap();
}

/// A worker on `b` runs node `n` of `run` as attempt 1 promptly (not after
/// the 30 s lease of the attempt given back), and the run succeeds.
async fn runs_once_more(b: &Client, run: &GraphRun) {
    let mut wb = once(b).worker();
    let worked = within(
        wb.work_next(|ctx| async move { Ok(ctx.attempt()) }),
        "the node, given back",
    )
    .await;
    assert_eq!(
        (worked.attempt, worked.state),
        (1, Some(NodeState::Succeeded))
    );
    let st = run.status().await.unwrap();
    assert_eq!(st.state, RunState::Succeeded, "{st:?}");
    assert_eq!(node(&st, "n").attempts, 1);
}
