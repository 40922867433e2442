//! The client side of job graphs without a backend: declarations checked
//! before any I/O, back-off, and what an observer reports. The backends'
//! behaviour is the conformance suite's (`coord-conformance`, cases `graph_*`).

use std::{sync::Arc, time::Duration};

use super::*;
use crate::{
    spi::{Cancel, Complete, NodeState, NodeStatus, Renew, RunState, RunStatus, Submit, Take},
    testing::{Counting, Spans},
};

fn client() -> Client {
    Client::new(Arc::new(Counting::default()))
}

fn err(b: GraphBuilder) -> String {
    b.build().unwrap_err().to_string()
}

#[test]
fn a_declared_graph_keeps_declaration_order_and_edges() {
    let g = client()
        .graph("etl")
        .node("extract")
        .node(Node::new("t1").after("extract"))
        .node(Node::new("t2").after("extract"))
        .node(
            Node::new("load")
                .after("t1")
                .after_on("t2", On::Any)
                .max_attempts(5),
        )
        .build()
        .unwrap();
    let names: Vec<&str> = g.spec().nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["extract", "t1", "t2", "load"]);
    let load = &g.spec().nodes()[3];
    assert_eq!(load.max_attempts, 5);
    assert_eq!(
        load.after,
        vec![
            crate::spi::Edge::new(1, On::Success),
            crate::spi::Edge::new(2, On::Any)
        ]
    );
}

#[test]
fn bad_declarations_name_the_graph_and_the_node() {
    let c = client();
    let e = err(c.graph("g").node(Node::new("b").after("a")));
    assert!(
        e.contains("graph \"g\"") && e.contains("\"a\", which is not a node"),
        "{e}"
    );
    let e = err(c.graph("g").node("a").node("a"));
    assert!(e.contains("declared twice"), "{e}");
    let e = err(c.graph("g").node(""));
    assert!(e.contains("graph \"g\": node name"), "{e}");
    let e = err(c.graph("").node("a"));
    assert!(e.contains("invalid"), "{e}");
    let e = err(c
        .graph("g")
        .node(Node::new("a").after("b"))
        .node(Node::new("b").after("a")));
    assert!(e.contains("cycle"), "{e}");
    let e = err(c.graph("g").node(Node::new("a").max_attempts(101)));
    assert!(e.contains("outside 1..=100"), "{e}");
    let e = err(c
        .graph("g")
        .node(Node::new("a").backoff(Duration::from_secs(2), Duration::from_secs(1))));
    assert!(e.contains("back-off"), "{e}");
    let e = err(c
        .graph("g")
        .node("a")
        .retention(Duration::from_secs(25 * 3600)));
    assert!(e.contains("retention") && !e.contains("ttl"), "{e}");
    assert!(err(c.graph("g")).contains("no node"));
}

#[test]
fn backoff_doubles_up_to_its_max_with_jitter() {
    let b = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    for _ in 0..100 {
        let d1 = b.delay(1);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d3 = b.delay(3);
        assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
        let d9 = b.delay(90);
        assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_secs(1));
    }
}

fn node(name: &str, state: NodeState, attempts: u32) -> NodeStatus {
    let mut n = NodeStatus::new(crate::Key::new(name).unwrap(), state);
    n.attempts = attempts;
    n
}

fn status(nodes: Vec<NodeStatus>, transitions: u64) -> RunStatus {
    RunStatus::new(
        RunState::Running,
        nodes,
        transitions,
        std::time::SystemTime::UNIX_EPOCH,
    )
}

#[test]
fn an_observer_counts_what_it_could_not_show() {
    use NodeState::*;
    let a = status(vec![node("x", Ready, 0), node("y", Pending, 0)], 0);
    // x went ready -> running -> ready (expired) -> running: 3
    // transitions, seen as one change (attempts 0 -> 2).
    let b = status(vec![node("x", Running, 2), node("y", Pending, 0)], 3);
    let events = run::diff(&a, &b);
    assert!(
        matches!(&events[0], RunEvent::Node { node, from: Ready, to: Running, attempts: 2, .. } if node == "x")
    );
    assert_eq!(events[1], RunEvent::Missed { transitions: 2 });
    // Nothing changed, nothing happened: nothing to report.
    assert!(run::diff(&b, &b).is_empty());
}

#[test]
fn blocked_nodes_name_their_unended_parents() {
    use NodeState::*;
    let g = client()
        .graph("g")
        .node("a")
        .node("b")
        .node(Node::new("c").after("a").after_on("b", On::Any))
        .build()
        .unwrap();
    let s = status(
        vec![
            node("a", Succeeded, 1),
            node("b", Running, 2),
            node("c", Pending, 0),
        ],
        4,
    );
    let blockers = run::blockers(g.spec(), &s, 2);
    assert_eq!(blockers.len(), 1);
    assert_eq!(
        (
            blockers[0].node.as_str(),
            blockers[0].state,
            blockers[0].attempts
        ),
        ("b", Running, 2)
    );
    // A node that is not pending is blocked by nothing.
    assert!(run::blockers(g.spec(), &s, 1).is_empty());
}

#[test]
fn long_errors_are_cut_at_a_character_boundary() {
    let s = "é".repeat(3000); // 6000 bytes
    let cut = worker::truncate(s, 4097);
    assert_eq!(cut.len(), 4096);
    assert!(cut.chars().all(|c| c == 'é'));
}

/// Workers and runs go into `tokio::spawn`: their futures are `Send`.
#[allow(dead_code, clippy::manual_async_fn)]
fn futures_are_send(graph: Graph, mut worker: GraphWorker, run: GraphRun) {
    fn send<T: Send>(_: T) {}
    let body = |_ctx: NodeContext| async { Ok::<_, NodeError>(()) };
    send(worker.clone().run(body));
    send(worker.work_one(body));
    send(worker.work_next(body));
    send(graph.submit("r"));
    send(run.wait());
    send(run.observe().next());
}

/// A worker woken to take that got a node hands on to one more worker;
/// when no other worker waits at that moment (one is between a take that
/// found nothing and its wait, the step's notification already taken by
/// the first), the hand-on waits for the next worker to wait: it looks
/// again at once instead of sleeping to its deadline while a node is
/// ready.
#[tokio::test(start_paused = true)]
async fn a_hand_on_while_no_worker_waits_wakes_the_next_to_wait() {
    let client = client();
    let ready = Arc::new(ready::Ready::default());
    drop(ready.owed());
    let until = crate::lease::wait::later(client.clock().now(), Duration::from_secs(60));
    assert_eq!(ready.wait(&client, until).await, ready::Woken::Notified);
}

/// A backend of job graphs alone whose first take loses its reply and the
/// others find nothing, which counts give-backs, and whose watches never
/// wake; nothing else answers.
#[derive(Debug, Default)]
struct LostTakes {
    ns: crate::Namespace,
    takes: std::sync::atomic::AtomicU32,
    given_back: std::sync::atomic::AtomicU32,
}

impl std::fmt::Display for LostTakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lost-takes")
    }
}

impl crate::spi::Backend for LostTakes {
    fn namespace(&self) -> &crate::Namespace {
        &self.ns
    }
    fn locks(&self) -> Option<&dyn crate::spi::LockBackend> {
        None
    }
    fn elections(&self) -> Option<&dyn crate::spi::ElectionBackend> {
        None
    }
    fn groups(&self) -> Option<&dyn crate::spi::GroupBackend> {
        None
    }
    fn jobs(&self) -> Option<&dyn crate::spi::JobBackend> {
        None
    }
    fn barriers(&self) -> Option<&dyn crate::spi::BarrierBackend> {
        None
    }
    fn graphs(&self) -> Option<&dyn crate::spi::GraphBackend> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl crate::spi::GraphBackend for LostTakes {
    async fn submit(&self, _: &Key, _: &Key, _: &GraphSpec, _: Duration) -> Result<Submit> {
        Err(Error::unavailable(self, "down"))
    }
    async fn take(&self, _: &Key, _: &crate::HolderId, _: Duration) -> Result<Take> {
        match self.takes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Err(Error::unavailable(self, "the take's reply was lost")),
            _ => Ok(Take::Idle { next_in: None }),
        }
    }
    async fn give_back(&self, _: &Key, _: &crate::HolderId) -> Result<u32> {
        self.given_back
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(1)
    }
    async fn renew(
        &self,
        _: &Key,
        _: &Key,
        _: &Key,
        _: crate::FencingToken,
        _: Duration,
    ) -> Result<Renew> {
        Err(Error::unavailable(self, "down"))
    }
    async fn complete(
        &self,
        _: &Key,
        _: &Key,
        _: &Key,
        _: crate::FencingToken,
        _: crate::spi::NodeResult,
        _: Option<(crate::HolderId, Duration)>,
    ) -> Result<Complete> {
        Err(Error::unavailable(self, "down"))
    }
    async fn cancel(&self, _: &Key, _: &Key, _: &str) -> Result<Cancel> {
        Err(Error::unavailable(self, "down"))
    }
    async fn status(&self, _: &Key, _: &Key, _: bool) -> Result<Option<RunStatus>> {
        Err(Error::unavailable(self, "down"))
    }
    async fn watch_ready(&self, _: &Key) -> Result<Box<dyn crate::Watch>> {
        Ok(Box::new(crate::testing::Never))
    }
    async fn watch_run(&self, _: &Key, _: &Key) -> Result<Box<dyn crate::Watch>> {
        Ok(Box::new(crate::testing::Never))
    }
}

/// Every backend call of the family is inside a `coord.backend` span with
/// family `graph`, its kind and the graph's name: also the give-back of a
/// take whose reply was lost (made in the background) and the
/// subscriptions of idle workers (`watch_ready`) and of observers
/// (`watch_run`), which had none.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn give_backs_and_watches_are_traced_as_graph_calls() {
    let (spans, _traced) = Spans::install();
    let backend = Arc::new(LostTakes::default());
    let client = Client::new(backend.clone());
    let graph = client.graph("g").node("a").build().unwrap();
    let lost = graph.worker().work_one(|_| async { Ok(()) }).await;
    assert!(lost.is_err(), "{lost:?}");
    while backend.given_back.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let graph_node = [
        "coord.backend",
        "family=\"graph\"",
        "kind=\"node\"",
        "key=g",
    ];
    let take = [&graph_node[..], &["op=\"take\""]].concat();
    spans.assert_has(&take);
    let give_back = [&graph_node[..], &["op=\"give_back\"", "holder="]].concat();
    spans.assert_has(&give_back);
    let mut idle = graph.worker();
    let waited = tokio::time::timeout(Duration::from_secs(5), idle.work_next(|_| async { Ok(()) }));
    assert!(waited.await.is_err(), "nothing to take");
    let watch_ready = [&graph_node[..], &["op=\"watch_ready\""]].concat();
    spans.assert_has(&watch_ready);
    let _ = graph.run("r").unwrap().observe().next().await;
    let watch_run = [
        "coord.backend",
        "family=\"graph\"",
        "kind=\"run\"",
        "op=\"watch_run\"",
    ];
    spans.assert_has(&watch_run);
}
