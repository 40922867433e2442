//! At the limits and on the wire: graphs of 1000 nodes, results over the
//! size limit, one EVALSHA per operation in one Cluster slot.

use super::*;

/// Graphs at the limit: 1000 nodes, one of them with 999 parents, taken
/// with every parent's outcome; a cancellation of 1000 nodes; status of all.
#[tokio::test]
async fn graphs_of_a_thousand_nodes() {
    let b = backend("big").await;
    let g = G::new(&b, "g");
    let n = coord_api::spi::MAX_NODES as u32;
    let mut nodes: Vec<NodeSpec> = (0..n - 1).map(|i| node(&format!("n{i}"), &[])).collect();
    nodes.push(
        NodeSpec::new(key("sink")).after((0..n - 1).map(|i| Edge::new(i, On::Any)).collect()),
    );
    let big = spec(nodes);
    g.submit("r", &big).await;
    g.submit("cancelled", &big).await;
    assert_eq!(
        g.cancel("cancelled", "stop").await,
        Cancel::Cancelled { running: 0 }
    );
    let s = g.status("cancelled").await;
    assert_eq!(s.state, RunState::Cancelled);
    assert_eq!(s.transitions, u64::from(n));
    let mut taken = std::collections::HashSet::new();
    for _ in 0..n - 1 {
        let t = g.take().await;
        assert_eq!(t.run.as_str(), "r");
        let i = t.node.as_str().strip_prefix('n').unwrap().to_owned();
        assert!(taken.insert(i.clone()));
        g.complete(&t, NodeResult::Success(i.into_bytes())).await;
    }
    let sink = g.take_named("r", "sink").await;
    assert_eq!(sink.parents.len(), n as usize - 1);
    assert_eq!(
        sink.parents[998],
        (key("n998"), Outcome::Succeeded(b"998".to_vec()))
    );
    g.complete(&sink, success("")).await;
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Succeeded);
    assert_eq!(s.nodes.len(), n as usize);
    assert_eq!(s.nodes[5].result.as_deref(), Some(&b"5"[..]));
}

/// Results over the limit are refused before any I/O.
#[tokio::test]
async fn results_over_the_limit_are_refused() {
    let b = backend("limits").await;
    let g = G::new(&b, "g");
    g.submit("r", &spec(vec![node("x", &[])])).await;
    let t = g.take().await;
    let err =
        g.g.complete(
            &g.graph,
            &t.run,
            &t.node,
            t.token,
            NodeResult::Success(vec![1; MAX_RESULT_BYTES + 1]),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, coord_api::Error::InvalidArgument { .. }));
    let text = err.to_string();
    assert!(text.contains("\"r\"") && text.contains("\"x\"") && text.contains("65536"));
    assert_eq!(at(&g.status("r").await, "x").state, NodeState::Running);
    assert_eq!(
        g.complete(&t, NodeResult::Success(vec![1; MAX_RESULT_BYTES]))
            .await,
        recorded(NodeState::Succeeded, RunState::Succeeded)
    );
}

/// Every operation is one EVALSHA, and every key of a graph, all runs
/// included, is in one Redis Cluster slot (a cluster server refuses a
/// script that touches two).
#[tokio::test]
async fn one_evalsha_per_operation_in_one_cluster_slot() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    server
        .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(server.command(&["CLUSTER", "INFO"]).unwrap()).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "single-node cluster never ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = backend_on(&server, "slots").await;
    let g = G::new(&b, "x}{y");
    // Warm up: loads the script.
    g.try_status("warm").await;
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let mut ops = 0;
    for run in ["{r1}", "r2}"] {
        g.submit(run, &diamond()).await;
        ops += 1;
    }
    let a = g.take().await;
    assert_eq!(g.renew(&a, TTL).await, Renew::Renewed);
    g.complete(&a, success("A")).await;
    let b_ = g.take().await;
    g.complete(&b_, success("B")).await;
    ops += 5;
    // Takes cross from one run to the other.
    let mut runs = vec![a.run.as_str().to_owned(), b_.run.as_str().to_owned()];
    while let Take::Taken(t) = g.try_take(TTL).await {
        ops += 1;
        runs.push(t.run.as_str().to_owned());
    }
    ops += 1;
    assert!(
        runs.iter().any(|r| r == "r2}") && runs.iter().any(|r| r == "{r1}"),
        "{runs:?}"
    );
    g.cancel("{r1}", "stop").await;
    g.status("{r1}").await;
    ops += 2;
    server.assert_evalsha_only(ops);
}
