//! Job graphs (`contract::graphs`): declaring and submitting, the order in
//! which nodes run and how edge conditions resolve them, attempts and
//! fencing, giving back what a take whose answer never came took,
//! cancellation, and what a run tells (status, results, waiting,
//! observing, retention). One file per theme, and the helpers they share.
//!
//! Every case ends with every node of its runs ended (`assert_all_ended`).
//! A crashed worker is a node taken through the SPI with a short lease and
//! never renewed nor completed.

use crate::{cases::prelude::*, runner::Case};
pub(crate) use coord_api::{
    Blocker, Graph, GraphRun, GraphWorker, Node, NodeContext, NodeError, RunEvent, Worked,
    spi::{
        Complete, GraphBackend, MAX_NODES, MAX_RESULT_BYTES, NodeResult, NodeState, NodeStatus, On,
        OnFailure, Outcome, Renew, RunState, RunStatus, Take, Taken,
    },
};
pub(crate) use std::{
    future::Future,
    pin::{Pin, pin},
    task::Poll,
};

pub mod attempts;
pub mod cancel;
pub mod carry;
pub mod declare;
pub mod edges;
pub mod fencing;
pub mod give_back;
pub mod observe;
pub mod order;
pub mod status;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        declare::cases(),
        order::cases(),
        edges::cases(),
        attempts::cases(),
        fencing::cases(),
        give_back::cases(),
        carry::cases(),
        cancel::cases(),
        status::cases(),
        observe::cases(),
    ]
    .concat()
}

/// How long a condition that a notification or one round trip brings about
/// may take (cases run with a 10 s retry delay, so only the backend's
/// notifications make things prompt).
pub(crate) const PROMPTLY: Duration = Duration::from_millis(2000);

/// How long a whole run of a case may take once workers work on it: well
/// under the 10 s retry delay, so that a run which only a worker's retry
/// delay (not the backend's notifications) moves on fails the case.
pub(crate) const RUN_WITHIN: Duration = Duration::from_secs(5);

/// The graph name every case uses.
pub(crate) const G: &str = "g";

/// `node` with retry delays of 1..4 ms, so that retries cost no time.
pub(crate) fn quick(node: Node) -> Node {
    node.backoff(ms(1), ms(4))
}

/// a → b → c: the graph of the cases that only need a few steps.
pub(crate) fn chain(c: &Client) -> Graph {
    c.graph(G)
        .node("a")
        .node(Node::new("b").after("a"))
        .node(Node::new("c").after("b"))
        .build()
        .expect("a valid graph")
}

/// A body returning its node's name.
pub(crate) async fn named(ctx: NodeContext) -> std::result::Result<String, NodeError> {
    Ok(ctx.node().to_owned())
}

/// The graph SPI of `backend` (the family's needs say it is there).
pub(crate) fn spi(backend: &DynBackend) -> &dyn GraphBackend {
    backend.graphs().expect("the backend offers job graphs")
}

/// A holder that takes nodes through the SPI and then crashes.
pub(crate) fn crashed() -> HolderId {
    HolderId::new(InstanceId::new("crashed").expect("valid instance id"))
}

/// Takes through the SPI, as a worker that then crashes, the one ready node
/// of `graph`'s runs, with a lease of `ttl`.
pub(crate) async fn crash_take(backend: &DynBackend, ttl: Duration) -> Taken {
    match spi(backend).take(&key(G), &crashed(), ttl).await.unwrap() {
        Take::Taken(t) => *t,
        other => panic!("the crashing worker's take: expected a node, got {other:?}"),
    }
}

/// Takes (through the SPI, for `holder`) a node of `graph` as soon as one
/// is takeable, for at most `within` (a lease expiring makes one so).
pub(crate) async fn take_when_takeable(
    backend: &DynBackend,
    holder: &HolderId,
    within: Duration,
) -> Taken {
    let taken = eventually(within, || async {
        match spi(backend).take(&key(G), holder, ms(5000)).await.unwrap() {
            Take::Taken(t) => Some(*t),
            _ => None,
        }
    })
    .await;
    taken.unwrap_or_else(|| panic!("nothing takeable within {within:?}"))
}

/// The node named `name` in `st`.
#[track_caller]
pub(crate) fn node<'a>(st: &'a RunStatus, name: &str) -> &'a NodeStatus {
    (st.nodes.iter())
        .find(|n| n.name.as_str() == name)
        .unwrap_or_else(|| panic!("no node {name:?} in {st:?}"))
}

/// The state of node `name` in `st`.
#[track_caller]
pub(crate) fn state(st: &RunStatus, name: &str) -> NodeState {
    node(st, name).state
}

/// `(name, state)` of every node of `st`, in declaration order.
pub(crate) fn states(st: &RunStatus) -> Vec<(String, NodeState)> {
    (st.nodes.iter())
        .map(|n| (n.name.as_str().to_owned(), n.state))
        .collect()
}

/// `[("a", Ready), ...]` as owned names, for comparisons with [`states`].
pub(crate) fn want(s: &[(&str, NodeState)]) -> Vec<(String, NodeState)> {
    s.iter().map(|(n, st)| ((*n).to_owned(), *st)).collect()
}

/// Panics unless the run ended and every node of it ended (succeeded,
/// failed, skipped or cancelled): no node is left waiting.
#[track_caller]
pub(crate) fn assert_all_ended(st: &RunStatus, what: &str) {
    assert_ne!(st.state, RunState::Running, "{what}: the run ended: {st:?}");
    assert!(
        st.ended_at.is_some(),
        "{what}: an ended run has ended_at: {st:?}"
    );
    for n in &st.nodes {
        assert!(
            n.state.is_terminal(),
            "{what}: node {:?} is {:?} in an ended run: {st:?}",
            n.name,
            n.state
        );
        assert!(n.expires_in.is_none(), "{what}: {n:?} ended with a lease");
    }
}

/// The message of an `InvalidArgument`, or a panic naming `what`.
#[track_caller]
pub(crate) fn invalid<T: Debug>(res: Result<T>, what: &str) -> String {
    match res {
        Err(Error::InvalidArgument { message }) => message,
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Panics unless `res` is `NotFound` for a graph run.
#[track_caller]
pub(crate) fn assert_not_found<T: Debug>(res: Result<T>, what: &str) {
    match res {
        Err(Error::NotFound {
            what: "graph run", ..
        }) => {}
        other => panic!("{what}: expected NotFound (graph run), got {other:?}"),
    }
}

/// A worker's loop (its `run(..)`), polled by the case's own task rather
/// than spawned: a body's failed assertion fails the case at once, with its
/// own message, and no worker outlives its case (the simulator runs every
/// case on one runtime).
pub(crate) type Loop = Pin<Box<dyn Future<Output = Result<()>>>>;

/// `n` loops of workers of `graph`, each running `body` on every node it
/// takes. (`start` builds a loop from a worker, so that the body's result
/// type stays the caller's.)
pub(crate) fn workers<Fut>(graph: &Graph, n: usize, start: impl Fn(GraphWorker) -> Fut) -> Vec<Loop>
where
    Fut: Future<Output = Result<()>> + 'static,
{
    (0..n)
        .map(|_| Box::pin(start(graph.worker())) as Loop)
        .collect()
}

/// Runs `main` while `loops` run alongside it (in this task), and returns
/// what `main` returned; the loops are dropped then. Panics if a loop
/// ended first (a worker's `run` returned: the run would never end).
pub(crate) async fn alongside<T>(main: impl Future<Output = T>, mut loops: Vec<Loop>) -> T {
    let mut main = pin!(main);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = main.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        for l in &mut loops {
            if let Poll::Ready(res) = l.as_mut().poll(cx) {
                panic!("a graph worker stopped: {res:?}");
            }
        }
        Poll::Pending
    })
    .await
}

/// Waits (bounded by [`RUN_WITHIN`]) for `run` to end while `loops` work
/// on it, and returns its final status, checked: the run and every node of
/// it ended.
pub(crate) async fn finish(run: &GraphRun, loops: Vec<Loop>) -> RunStatus {
    let ended = alongside(timeout(RUN_WITHIN, run.wait()), loops).await;
    let Ok(st) = ended else {
        let st = run.status().await;
        panic!("run {:?} not ended within {RUN_WITHIN:?}: {st:?}", run.id());
    };
    let st = st.expect("wait");
    assert_all_ended(&st, &format!("run {:?}", run.id()));
    st
}

/// Awaits `fut` (one step of a worker, a wait) for at most [`PROMPTLY`];
/// panics naming `what` if it did not finish or failed.
pub(crate) async fn within<T>(fut: impl Future<Output = Result<T>>, what: &str) -> T {
    match timeout(PROMPTLY, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:?}"),
        Err(_) => panic!("{what}: not done within {PROMPTLY:?}"),
    }
}

/// Whether `run` is still running (its status, read now).
pub(crate) async fn running(run: &GraphRun) -> bool {
    run.status().await.expect("status").state == RunState::Running
}
