//! The graph workload's parts: the graphs declared, each run's plan (when
//! it is submitted, again, cancelled; which attempts fail), the workers
//! (their bodies and crash points), the submitter and the waiter.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{
    Client, Error, Graph, GraphWorker, Instant, Node, NodeContext, NodeError, On, OnFailure,
    spi::GraphSpec,
};
use madsim::{
    net::Endpoint,
    rand::{Rng, thread_rng},
};
use tokio::sync::{mpsc, oneshot};

use super::super::{NodeClock, Shared, connect, opts, write};
use crate::history::{Bodies, Body, BodyEnd, FinalRun, resource_key};

/// The graphs, by name.
pub(super) const GRAPHS: [&str; 3] = ["diamond", "etl", "chain"];
/// Runs per seed.
const RUNS: usize = 12;
/// How long a body waits for the resource's answer before resending.
const WRITE_WAIT: Duration = Duration::from_millis(400);
/// The chance that a worker crashes at a step boundary it passes.
const CRASH_CHANCE: f64 = 0.015;

/// Declares graph `name` on `client`: a diamond with a node on `d`'s
/// failure and one after anything; extract → three transforms → load, the
/// third transform's failure cancelling the run, a node on extract's
/// failure; a chain whose skips propagate to a node after anything, and a
/// node on the first one's failure and the second's any end.
pub(super) fn declare(client: &Client, name: &str) -> Graph {
    let n = |name: &str, attempts: u32| {
        Node::new(name)
            .max_attempts(attempts)
            .backoff(Duration::from_millis(50), Duration::from_millis(400))
    };
    let g = client.graph(name).retention(Duration::from_secs(3600));
    let g = match name {
        "diamond" => g
            .node(n("a", 3))
            .node(n("b", 2).after("a"))
            .node(n("c", 2).after("a"))
            .node(n("d", 3).after("b").after("c"))
            .node(n("alert", 2).after_on("d", On::Failure))
            .node(
                n("finally", 2)
                    .after_on("d", On::Any)
                    .after_on("alert", On::Any),
            ),
        "etl" => g
            .node(n("extract", 3))
            .node(n("t1", 2).after("extract"))
            .node(n("t2", 2).after("extract"))
            .node(n("t3", 2).after("extract").on_failure(OnFailure::CancelRun))
            .node(n("load", 3).after("t1").after("t2").after("t3"))
            .node(n("notify", 1).after_on("extract", On::Failure)),
        "chain" => g
            .node(n("x", 2))
            .node(n("y", 2).after("x"))
            .node(n("z", 2).after("y"))
            .node(n("audit", 2).after_on("z", On::Any))
            .node(
                n("rescue", 2)
                    .after_on("x", On::Failure)
                    .after_on("y", On::Any),
            ),
        other => panic!("no graph {other}"),
    };
    g.build().expect("a valid graph")
}

/// Every graph's shape, by name (declared on a client of a local store:
/// declaring needs no I/O).
pub(super) fn specs() -> HashMap<String, GraphSpec> {
    let backend = coord_memory::MemoryBackend::new(coord_api::Namespace::default());
    let client = Client::builder(Arc::new(backend)).build();
    (GRAPHS.iter())
        .map(|g| (g.to_string(), declare(&client, g).spec().clone()))
        .collect()
}

/// What one attempt's body does at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Succeed,
    /// Fail, to be retried.
    Fail,
    /// Fail for good.
    FailForGood,
}

/// One run of the workload.
#[derive(Debug, Clone)]
pub(super) struct RunPlan {
    pub(super) graph: &'static str,
    pub(super) id: String,
    /// When it is submitted (after the start), and again (idempotent).
    pub(super) submit_at: Vec<Duration>,
    /// When it is cancelled, if it is.
    pub(super) cancel_at: Option<Duration>,
    /// Per node, each attempt's fate (later attempts succeed).
    pub(super) fates: HashMap<String, Vec<Fate>>,
}

/// The runs of a seed: graphs in turn, submitted over the fault window
/// (a third twice), one cancelled in some seeds; attempts fail at random,
/// and in a quarter of the runs one node fails every attempt.
pub(super) fn plans(
    rng: &mut madsim::rand::GlobalRng,
    specs: &HashMap<String, GraphSpec>,
) -> Vec<RunPlan> {
    let mut plans = Vec::new();
    for k in 0..RUNS {
        let spec = &specs[GRAPHS[k % GRAPHS.len()]];
        let at = Duration::from_millis(rng.gen_range(300..20_000));
        let mut submit_at = vec![at];
        if rng.gen_bool(0.33) {
            submit_at.push(at + Duration::from_millis(rng.gen_range(0..3_000)));
        }
        let doomed = rng
            .gen_bool(0.25)
            .then(|| rng.gen_range(0..spec.nodes().len()));
        let mut fates = HashMap::new();
        for (i, n) in spec.nodes().iter().enumerate() {
            let f: Vec<Fate> = (0..n.max_attempts)
                .map(|_| {
                    if doomed == Some(i) {
                        return Fate::Fail;
                    }
                    match rng.gen_range(0..100) {
                        0..20 => Fate::Fail,
                        20..24 => Fate::FailForGood,
                        _ => Fate::Succeed,
                    }
                })
                .collect();
            fates.insert(n.name.as_str().to_owned(), f);
        }
        plans.push(RunPlan {
            graph: GRAPHS[k % GRAPHS.len()],
            id: format!("r{k}"),
            submit_at,
            cancel_at: None,
            fates,
        });
    }
    if rng.gen_bool(0.4) {
        let k = rng.gen_range(0..RUNS);
        let p = &mut plans[k];
        p.cancel_at = Some(p.submit_at[0] + Duration::from_millis(rng.gen_range(300..4_000)));
    }
    plans
}

/// The step boundaries a worker crashes at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Boundary {
    /// Before asking for a node (a `work_next` loop).
    BeforeTake,
    /// The node taken, its body not begun.
    AfterTake,
    /// After the body's first write.
    MidBody,
    /// The body done, its completion not sent.
    AfterBody,
    /// A moment after the body returned: before, while or after its
    /// completion travels (or, for `run`, while the next take does).
    DuringComplete,
    /// The completion answered (a `work_next` loop).
    AfterComplete,
}

/// A worker asking to be killed (`after` from now; `ack`: answered whether
/// it will be, when it waits for it).
pub(super) struct CrashRequest {
    pub(super) worker: usize,
    pub(super) boundary: Boundary,
    pub(super) after: Duration,
    pub(super) ack: Option<oneshot::Sender<bool>>,
}

/// What the workers share besides [`Shared`].
#[derive(Clone)]
pub(super) struct GraphShared {
    pub(super) plans: Arc<HashMap<String, RunPlan>>,
    pub(super) bodies: Bodies,
    pub(super) crash: mpsc::UnboundedSender<CrashRequest>,
    /// Bodies running per worker, for the pause plan's target.
    pub(super) busy: Arc<Mutex<Vec<usize>>>,
    /// Whether workers crash at step boundaries.
    pub(super) crashes: bool,
}

impl GraphShared {
    fn fate(&self, run: &str, node: &str, attempt: u32) -> Fate {
        (self.plans.get(run))
            .and_then(|p| p.fates.get(node))
            .and_then(|f| f.get(attempt as usize - 1).copied())
            .unwrap_or(Fate::Succeed)
    }

    /// Worker `i` began or ended a body: the pause plan targets a worker
    /// running one.
    fn busy(&self, shared: &Shared, i: usize, began: bool) {
        let mut busy = self.busy.lock().unwrap();
        if began {
            busy[i] += 1;
        } else {
            busy[i] = busy[i].saturating_sub(1);
        }
        let mut h = shared.holder.lock().unwrap();
        if began {
            *h = Some(i);
        } else if *h == Some(i) && busy[i] == 0 {
            *h = busy.iter().position(|&b| b > 0);
        }
    }

    /// Worker `i`'s process was killed: it runs nothing any more.
    pub(super) fn killed(&self, shared: &Shared, i: usize, at: Instant) {
        self.bodies.killed(&format!("c{i}"), at);
        let mut busy = self.busy.lock().unwrap();
        busy[i] = 0;
        let mut h = shared.holder.lock().unwrap();
        if *h == Some(i) {
            *h = busy.iter().position(|&b| b > 0);
        }
    }
}

/// One worker task's surroundings.
struct Env {
    i: usize,
    name: String,
    graph: &'static str,
    shared: Shared,
    g: GraphShared,
}

impl Env {
    /// Crashes here, perhaps: asks to be killed now and waits for it.
    async fn crash_point(&self, boundary: Boundary) {
        if !self.g.crashes || self.shared.stopping() || !thread_rng().gen_bool(CRASH_CHANCE) {
            return;
        }
        let (ack, answer) = oneshot::channel();
        let req = CrashRequest {
            worker: self.i,
            boundary,
            after: Duration::ZERO,
            ack: Some(ack),
        };
        if self.g.crash.send(req).is_ok() && matches!(answer.await, Ok(true)) {
            std::future::pending::<()>().await;
        }
    }

    /// Crashes a moment from now, perhaps, without waiting for it.
    fn crash_soon(&self, boundary: Boundary) {
        let mut rng = thread_rng();
        if !self.g.crashes || self.shared.stopping() || !rng.gen_bool(CRASH_CHANCE) {
            return;
        }
        let _ = self.g.crash.send(CrashRequest {
            worker: self.i,
            boundary,
            after: Duration::from_millis(rng.gen_range(0..25)),
            ack: None,
        });
    }
}

/// A node's body: writes to the resource with its token (one to three
/// times, stopping when the lost signal fires; a careless one looks only
/// at its end), then ends as the plan says; crash points before, inside
/// and after it. Its result is its token.
async fn body(env: Arc<Env>, ctx: NodeContext) -> Result<u64, NodeError> {
    env.crash_point(Boundary::AfterTake).await;
    let token = ctx.token().get();
    let idx = env.g.bodies.start(Body {
        worker: env.name.clone(),
        graph: env.graph.to_owned(),
        run: ctx.run().to_owned(),
        node: ctx.node().to_owned(),
        attempt: ctx.attempt(),
        token,
        parents: (ctx.parents().iter())
            .map(|(k, o)| (k.as_str().to_owned(), o.clone()))
            .collect(),
        start: Instant::now(),
        end: None,
        ended: None,
    });
    env.g.busy(&env.shared, env.i, true);
    let key = resource_key(env.graph, ctx.run(), ctx.node());
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let writes = thread_rng().gen_range(1..4);
    // A careless body writes and sleeps without looking at its lost signal
    // (it looks only at its end): after a pause past its lease only
    // fencing stops it. Every write is resent until answered, so a body
    // that succeeds has landed its writes before it completes.
    let careless = thread_rng().gen_bool(0.3);
    let mut lost = false;
    for k in 0..writes {
        let pause = Duration::from_millis(thread_rng().gen_range(20..250));
        if careless {
            write(&ep, &key, &env.name, token, WRITE_WAIT, true).await;
            if k == 0 {
                env.crash_point(Boundary::MidBody).await;
            }
            tokio::time::sleep(pause).await;
            continue;
        }
        tokio::select! {
            biased;
            _ = ctx.lost().wait() => { lost = true; break }
            _ = write(&ep, &key, &env.name, token, WRITE_WAIT, true) => {}
        }
        if k == 0 {
            env.crash_point(Boundary::MidBody).await;
        }
        tokio::select! {
            biased;
            _ = ctx.lost().wait() => { lost = true; break }
            _ = tokio::time::sleep(pause) => {}
        }
    }
    lost |= careless && ctx.lost().is_lost();
    let fate = env.g.fate(ctx.run(), ctx.node(), ctx.attempt());
    let what = format!(
        "planned failure of {} attempt {}",
        ctx.node(),
        ctx.attempt()
    );
    let (ended, out) = match fate {
        _ if lost => (BodyEnd::Lost, Err(NodeError::msg("the lease was lost"))),
        Fate::Succeed => (BodyEnd::Succeeded, Ok(token)),
        Fate::Fail => (BodyEnd::Failed, Err(NodeError::msg(what))),
        Fate::FailForGood => (
            BodyEnd::FailedPermanently,
            Err(NodeError::msg(what).permanent()),
        ),
    };
    env.g.bodies.end(idx, Instant::now(), ended);
    env.g.busy(&env.shared, env.i, false);
    env.crash_point(Boundary::AfterBody).await;
    env.crash_soon(Boundary::DuringComplete);
    out
}

/// A worker node: one worker per graph, by `GraphWorker::run` (even
/// nodes) or a `work_next` loop with crash points before each take and
/// after each completion (odd nodes). Runs until the simulation ends.
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared, g: GraphShared) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let mut tasks = Vec::new();
    for graph in GRAPHS {
        let env = Arc::new(Env {
            i,
            name: name.clone(),
            graph,
            shared: shared.clone(),
            g: g.clone(),
        });
        let w = declare(&client, graph).worker();
        tasks.push(tokio::spawn(async move {
            if i.is_multiple_of(2) {
                by_run(env, w).await
            } else {
                by_work_next(env, w).await
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn by_run(env: Arc<Env>, w: GraphWorker) {
    loop {
        let e = env.clone();
        if let Err(err) = w.clone().run(move |ctx| body(e.clone(), ctx)).await {
            eprintln!(
                "{}: {}: graph worker {}: {err}",
                env.shared.name, env.name, env.graph
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn by_work_next(env: Arc<Env>, mut w: GraphWorker) {
    loop {
        env.crash_point(Boundary::BeforeTake).await;
        let e = env.clone();
        match w.work_next(move |ctx| body(e, ctx)).await {
            Ok(_) => env.crash_point(Boundary::AfterComplete).await,
            Err(err) if err.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => {
                eprintln!(
                    "{}: {}: graph worker {}: {err}",
                    env.shared.name, env.name, env.graph
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Retries `f` while the backend is unreachable, until `stop` says so.
async fn retried<T, F, Fut>(mut f: F, stop: impl Fn() -> bool) -> Option<Result<T, Error>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    loop {
        match f().await {
            Err(e) if e.is_retryable() => {
                if stop() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Some(other),
        }
    }
}

/// The submitter: submits each run when its plan says (again for some),
/// cancels the one planned, each retried until answered or the heal.
pub(super) async fn submitter(clock: NodeClock, shared: Shared, plans: Vec<RunPlan>, t0: Instant) {
    let client = connect("submitter", &clock, opts(), &shared).await;
    let graphs: HashMap<&str, Graph> = GRAPHS.iter().map(|g| (*g, declare(&client, g))).collect();
    let mut tasks = Vec::new();
    for p in plans {
        let graph = graphs[p.graph].clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut events: Vec<(Duration, bool)> =
                p.submit_at.iter().map(|&a| (a, false)).collect();
            events.extend(p.cancel_at.map(|a| (a, true)));
            events.sort();
            for (at, cancel) in events {
                tokio::time::sleep_until(t0 + at).await;
                let stop = || shared.stopping();
                let res = if cancel {
                    let run = graph.run(&p.id).expect("a valid run id");
                    retried(|| run.cancel("the plan cancels it"), stop)
                        .await
                        .map(|r| r.map(drop))
                } else {
                    retried(|| graph.submit(&p.id), stop)
                        .await
                        .map(|r| r.map(drop))
                };
                match res {
                    Some(Err(e)) if !matches!(e, Error::NotFound { .. }) => {
                        eprintln!("{}: submitter: {}/{}: {e}", shared.name, p.graph, p.id)
                    }
                    _ => {}
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// After the heal: submits every run again (idempotent: a run whose
/// submission never got through is made now), then waits for each to end
/// until `deadline`. Returns every run's end.
pub(super) async fn waiter(
    clock: NodeClock,
    shared: Shared,
    plans: Vec<RunPlan>,
    deadline: Instant,
) -> Vec<FinalRun> {
    let client = connect("waiter", &clock, opts(), &shared).await;
    let graphs: HashMap<&str, Graph> = GRAPHS.iter().map(|g| (*g, declare(&client, g))).collect();
    let late = || Instant::now() >= deadline;
    let mut out = Vec::new();
    for p in &plans {
        let graph = &graphs[p.graph];
        let _ = retried(|| graph.submit(&p.id), late).await;
    }
    for p in &plans {
        let run = graphs[p.graph].run(&p.id).expect("a valid run id");
        let left = deadline.saturating_duration_since(Instant::now());
        let waited = tokio::time::timeout(left, retried(|| run.wait(), late)).await;
        let (status, ended) = match waited {
            Ok(Some(Ok(s))) => (Some(s), Some(Instant::now())),
            _ => (
                retried(|| run.status(), || true).await.and_then(|r| r.ok()),
                None,
            ),
        };
        out.push(FinalRun {
            graph: p.graph.to_owned(),
            run: p.id.clone(),
            status,
            ended,
        });
    }
    out
}
