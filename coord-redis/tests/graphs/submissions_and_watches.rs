//! Idempotent submission and retention (rules 2 and 7), wake-ups (rule 9).

use super::*;

/// Rules 2 and 7: a submission of an existing or kept run changes nothing
/// and says whether its spec is the same; an ended run is kept for its
/// retention, then gone, and made anew by the next submission.
#[tokio::test]
async fn submissions_are_idempotent_and_ended_runs_kept_for_their_retention() {
    let server = RedisServer::shared();
    let b = backend_on(server, "retain").await;
    let g = G::new(&b, "g");
    let one = spec(vec![node("x", &[])]);
    let kept = Duration::from_millis(1000);
    assert_eq!(g.submit_kept("r", &one, kept).await, Submit::Created);
    assert_eq!(
        g.submit_kept("r", &one, kept).await,
        Submit::Exists { same_graph: true }
    );
    assert_eq!(
        g.submit_kept("r", &diamond(), kept).await,
        Submit::Exists { same_graph: false }
    );
    // Nothing changed: still one ready node.
    let s = g.status("r").await;
    assert_eq!(states(&s), [("x", NodeState::Ready)]);
    let record = "coord:{retain:graph:1:g}:r:h";
    assert_eq!(int(server.command(&["PTTL", record]).unwrap()), -1);
    let t = g.take().await;
    // The layout the module documents: the running member and the node's
    // fields in the run's record.
    let running = server
        .command(&["ZRANGE", "coord:{retain:graph:1:g}:l", "0", "-1"])
        .unwrap();
    assert_eq!(
        running,
        Value::Array(vec![Value::BulkString(b"1:r/x".to_vec())])
    );
    let d = text(server.command(&["HGET", record, "d:x"]).unwrap());
    assert!(d.starts_with(&format!("U 1 0 {} ", t.token)), "{d}");
    g.complete(&t, success("done")).await;
    let pttl = int(server.command(&["PTTL", record]).unwrap());
    assert!(pttl > 0 && pttl <= 1000, "{pttl}");
    // Nothing of it is left in the graph's sets.
    for set in ["q", "l"] {
        let k = format!("coord:{{retain:graph:1:g}}:{set}");
        assert_eq!(int(server.command(&["EXISTS", &k]).unwrap()), 0);
    }
    assert_eq!(g.status("r").await.state, RunState::Succeeded);
    assert_eq!(
        g.submit_kept("r", &one, kept).await,
        Submit::Exists { same_graph: true }
    );
    tokio::time::sleep(kept + MARGIN).await;
    assert_eq!(g.try_status("r").await, None);
    assert_eq!(g.submit_kept("r", &diamond(), kept).await, Submit::Created);
    assert_eq!(g.status("r").await.nodes.len(), 4);
    let x = g.take().await;
    assert!(x.token > t.token);
}

/// Rule 9: watch_ready wakes on a step that made a node ready, watch_run on
/// a step that changed one of the run's nodes.
#[tokio::test]
async fn watches_wake_on_the_right_steps() {
    let b = backend("watch").await;
    let g = G::new(&b, "g");
    let mut ready = g.watch_ready().await;
    let mut run = g.watch_run("r").await;
    let mut other_run = g.watch_run("other").await;
    g.submit(
        "r",
        &spec(vec![
            NodeSpec::new(key("a")).max_attempts(2),
            node("b", &[(0, On::Success)]),
        ]),
    )
    .await;
    wakes(&mut ready).await;
    wakes(&mut run).await;
    // A take makes nothing ready but changes a node of the run.
    let a = g.take().await;
    wakes(&mut run).await;
    stays_quiet(&mut ready).await;
    // A renewal changes no state.
    g.renew(&a, TTL).await;
    stays_quiet(&mut run).await;
    // A retry makes a ready.
    g.complete(&a, failure("x", Some(Duration::from_secs(1))))
        .await;
    wakes(&mut ready).await;
    wakes(&mut run).await;
    tokio::time::sleep(Duration::from_secs(1) + MARGIN).await;
    let a = g.take().await;
    wakes(&mut run).await;
    // Resolution makes b ready.
    g.complete(&a, success("")).await;
    wakes(&mut ready).await;
    wakes(&mut run).await;
    let bt = g.take().await;
    wakes(&mut run).await;
    // The end of a leaf makes nothing ready.
    g.complete(&bt, success("")).await;
    wakes(&mut run).await;
    stays_quiet(&mut ready).await;
    stays_quiet(&mut other_run).await;
}
