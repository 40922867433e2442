//! A job graph with a crash: extract → three transforms in parallel → load,
//! worked on by three workers, one of which is killed in the middle of a
//! transform. The killed worker's attempt is not withdrawn (a dead process
//! withdraws nothing): its lease expires, the node is ready again with a
//! second attempt and a larger fencing token, another worker takes it, and
//! the run completes. The load node reads the three transforms' results in
//! their declaration order (fan-in).
//!
//! ```text
//! cargo run -p coord --example pipeline                      # in-process
//! cargo run -p coord --example pipeline -- --url redis://127.0.0.1:6379
//! ```
//!
//! Each worker is a thread with its own tokio runtime, its own
//! `coord::connect` (instance ids `worker-1`..`worker-3`) and its own
//! declaration of the graph, as separate processes would have, running
//! `GraphWorker::run`. The first transform to start tells the main thread so
//! (an event, not a timer); the main thread then kills that worker: its
//! work is forgotten and its runtime dropped without running another line
//! of it, like `kill -9`, so neither a completion nor a release nor a
//! renewal of its attempt is ever sent, and its Redis connection closes.
//! (Aborting the worker's task instead would not be a crash: dropping an
//! attempt completes it as a failure to be retried at once.) The main
//! thread then follows the run with a `RunObserver`, which shows the
//! expiry (the node's error `lease expired` as attempt 2 starts), and at
//! the end prints every node's worker, attempt and token from
//! `GraphRun::status` and the load node's result. It ends in about the
//! attempt TTL, one second. `coord/tests/examples.rs` runs [`run`] on
//! `memory://`.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord::{
    Client, Graph, GraphRun, NodeContext, NodeError, NodeState, Result, RunEvent, RunState,
    RunStatus, connect,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, sleep, timeout},
};

const USAGE: &str = "usage: pipeline [--url <url>]   (default memory://)";
/// An attempt's lease: a crashed worker's node is taken again this long
/// after its last renewal at most.
const TTL: Duration = Duration::from_secs(1);
/// A node's work.
const WORK: Duration = Duration::from_millis(50);
/// The work of the transform whose worker is killed: far longer than the
/// kill takes, so that it is killed inside it (were it not, the attempt
/// would succeed and the example would report no second attempt).
const KILLED_WORK: Duration = Duration::from_secs(60);
/// The most the run may take.
const BOUND: Duration = Duration::from_secs(30);
const WORKERS: [&str; 3] = ["worker-1", "worker-2", "worker-3"];
const EXTRACT: &str = "extract";
const TRANSFORMS: [&str; 3] = ["transform-a", "transform-b", "transform-c"];
const LOAD: &str = "load";
/// What extract reads: twelve order amounts (whole euros), a shard of four
/// for each transform.
const ORDERS: [u64; 12] = [12, 7, 30, 5, 41, 8, 19, 3, 27, 66, 2, 14];
const SHARD: usize = ORDERS.len() / TRANSFORMS.len();

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let url = match parse_args(std::env::args().skip(1)) {
        Ok(url) => url,
        Err(msg) => {
            eprintln!("{msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&url).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut url = "memory://".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "-h" | "--help" => return Err("coord pipeline example".into()),
            other => match other.strip_prefix("--url=") {
                Some(u) => url = u.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(url)
}

fn instance_url(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}instance={name}")
}

/// Prints a line stamped with the time since the start.
#[derive(Clone, Copy)]
struct Log(Instant);

impl Log {
    fn say(&self, line: impl AsRef<str>) {
        println!(
            "[{:5.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            line.as_ref()
        );
    }
}

/// The graph, as every instance declares it.
fn declare(client: &Client, name: &str) -> Result<Graph> {
    let mut graph = client
        .graph(name)
        .retention(Duration::from_secs(3600))
        .node(EXTRACT);
    for t in TRANSFORMS {
        graph = graph.node(coord::Node::new(t).after(EXTRACT));
    }
    let mut load = coord::Node::new(LOAD);
    for t in TRANSFORMS {
        load = load.after(t);
    }
    graph.node(load).build()
}

/// What the load node writes: every order in cents, shard after shard in
/// the transforms' declaration order.
pub fn expected_load() -> Vec<u64> {
    ORDERS.iter().map(|e| e * 100).collect()
}

/// One node's line of the final status.
#[derive(Debug, Clone)]
pub struct Row {
    /// The node.
    pub node: String,
    /// Its final state.
    pub state: NodeState,
    /// The instance id of the worker that ran its last attempt.
    pub worker: String,
    /// Attempts it took.
    pub attempts: u32,
    /// Its last attempt's fencing token.
    pub token: u64,
}

/// What [`run`] saw.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The run's final state.
    pub state: RunState,
    /// Every node, in declaration order.
    pub nodes: Vec<Row>,
    /// The worker killed mid-transform.
    pub killed: String,
    /// The transform it was killed in.
    pub killed_node: String,
    /// The killed attempt's token.
    pub killed_token: u64,
    /// The load node's result.
    pub load: Vec<u64>,
}

/// The first transform to start, as it tells the main thread.
struct Started {
    worker: &'static str,
    node: String,
    attempt: u32,
    token: u64,
}

/// The slot the first transform to start takes its sender from (only one
/// does: later transforms, and the retried one, find it empty).
type FirstStarted = Arc<Mutex<Option<oneshot::Sender<Started>>>>;

/// How a worker thread is stopped.
enum Stop {
    /// Like `kill -9`: nothing of it runs again.
    Kill,
    /// The example is over: its work is dropped (it was idle).
    Quit,
}

struct Worker {
    name: &'static str,
    stop: oneshot::Sender<Stop>,
    thread: thread::JoinHandle<()>,
}

fn start_worker(
    url: String,
    graph: Arc<str>,
    name: &'static str,
    first: FirstStarted,
    failed: mpsc::UnboundedSender<(&'static str, coord::Error)>,
    log: Log,
) -> Worker {
    let (stop, mut stop_rx) = oneshot::channel();
    let thread = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let killed = rt.block_on(async {
            let mut work = Box::pin(async move {
                if let Err(e) = worker(&url, &graph, name, first, log).await {
                    let _ = failed.send((name, e));
                }
            });
            let stop = tokio::select! {
                _ = &mut work => None,
                Ok(stop) = &mut stop_rx => Some(stop),
            };
            match stop {
                Some(Stop::Kill) => {
                    // Its attempt is neither completed nor released: the
                    // lease must expire.
                    std::mem::forget(work);
                    true
                }
                _ => false,
            }
        });
        if killed {
            // Its renewals, its connection: gone without another word.
            rt.shutdown_background();
        }
    });
    Worker { name, stop, thread }
}

/// A worker's life: connect, declare the graph, work on it for ever.
async fn worker(
    url: &str,
    graph: &str,
    me: &'static str,
    first: FirstStarted,
    log: Log,
) -> Result<()> {
    let client = connect(&instance_url(url, me)).await?;
    let worker = declare(&client, graph)?.worker().ttl(TTL);
    worker
        .run(|ctx| {
            let first = first.clone();
            async move { body(ctx, me, &first, log).await }
        })
        .await
}

/// The nodes' work. Every node returns rows (amounts): extract the orders,
/// a transform its shard in cents, load everything it loaded.
async fn body(
    ctx: NodeContext,
    me: &'static str,
    first: &FirstStarted,
    log: Log,
) -> std::result::Result<Vec<u64>, NodeError> {
    log.say(format!(
        "{me}: {} (attempt {}, token {})",
        ctx.node(),
        ctx.attempt(),
        ctx.token()
    ));
    let node = ctx.node().to_owned();
    if node == EXTRACT {
        sleep(WORK).await;
        return Ok(ORDERS.to_vec());
    }
    if let Some(shard) = TRANSFORMS.iter().position(|t| *t == node) {
        let orders: Vec<u64> = ctx.parent(EXTRACT)?;
        let taken = first.lock().expect("the slot").take();
        let work = match taken {
            Some(tx) => {
                let _ = tx.send(Started {
                    worker: me,
                    node: node.clone(),
                    attempt: ctx.attempt(),
                    token: ctx.token().get(),
                });
                KILLED_WORK
            }
            None => WORK,
        };
        sleep(work).await;
        let rows = orders.chunks(SHARD).nth(shard).unwrap_or_default();
        return Ok(rows.iter().map(|e| e * 100).collect());
    }
    // load: the three shards, in the order load declared its parents.
    let mut loaded = Vec::new();
    for (parent, shard) in ctx.parent_results::<Vec<u64>>() {
        let shard = shard.map_err(|e| NodeError::msg(format!("{parent}: {e}")).permanent())?;
        loaded.extend(shard);
    }
    sleep(WORK).await;
    Ok(loaded)
}

/// Runs the example on `url`: prints its log and the final table, returns
/// what it saw.
pub async fn run(url: &str) -> Result<Summary> {
    let log = Log(Instant::now());
    println!(
        "coord pipeline on {url}: {EXTRACT} -> {} -> {LOAD}, on {} workers; the first \
         worker to start a transform is killed in it\n",
        TRANSFORMS.join(" | "),
        WORKERS.len()
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Fresh per run, so that a previous run's dead attempts on a shared
    // server do not meet this one.
    let name: Arc<str> = format!("example/pipeline-{}-{nanos}", std::process::id()).into();
    let submitter = connect(&instance_url(url, "submitter")).await?;
    let graph = declare(&submitter, &name)?;

    let (first_tx, first_rx) = oneshot::channel();
    let first: FirstStarted = Arc::new(Mutex::new(Some(first_tx)));
    let (failed_tx, mut failed) = mpsc::unbounded_channel();
    let mut workers: Vec<Worker> = WORKERS
        .iter()
        .map(|w| {
            start_worker(
                url.to_owned(),
                name.clone(),
                w,
                first.clone(),
                failed_tx.clone(),
                log,
            )
        })
        .collect();
    drop(failed_tx);

    let run = graph.submit("batch-1").await?;
    log.say(format!(
        "submitted run {:?} of graph {:?} (attempt TTL {} ms)",
        run.id(),
        graph.name(),
        TTL.as_millis()
    ));

    // The kill, on the event of the first transform starting.
    let started = tokio::select! {
        s = first_rx => s.map_err(|_| coord::Error::invalid("no transform started"))?,
        Some((who, e)) = failed.recv() => return Err(worker_failed(who, e)),
        _ = sleep(BOUND) => return Err(timed_out("a transform to start")),
    };
    let at = (workers.iter())
        .position(|w| w.name == started.worker)
        .expect("one of ours");
    let victim = workers.remove(at);
    let _ = victim.stop.send(Stop::Kill);
    let _ = victim.thread.join();
    log.say(format!(
        "{} KILLED inside {} (attempt {}, token {}): its lease must expire",
        started.worker, started.node, started.attempt, started.token
    ));

    let status = tokio::select! {
        s = timeout(BOUND, follow(&run, log)) => s.map_err(|_| timed_out("the run to end"))??,
        Some((who, e)) = failed.recv() => return Err(worker_failed(who, e)),
    };
    log.say(format!(
        "run {:?} ended: {}",
        run.id(),
        status.state.as_str()
    ));
    for w in workers {
        let _ = w.stop.send(Stop::Quit);
        let _ = w.thread.join();
    }

    let load: Vec<u64> = run.result(LOAD).await?.unwrap_or_default();
    let nodes: Vec<Row> = (status.nodes.iter())
        .map(|n| Row {
            node: n.name.as_str().to_owned(),
            state: n.state,
            worker: n.worker.map_or_else(|| "-".to_owned(), |w| w.to_string()),
            attempts: n.attempts,
            token: n.token.map_or(0, |t| t.get()),
        })
        .collect();
    println!();
    println!("| node | state | worker | attempt | token | earlier attempts |");
    println!("|---|---|---|---:|---:|---|");
    for r in &nodes {
        let earlier = if r.node == started.node {
            format!(
                "{}: {}, token {}, killed (its lease expired)",
                started.attempt, started.worker, started.token
            )
        } else {
            "-".to_owned()
        };
        println!(
            "| {} | {} | {} | {} | {} | {earlier} |",
            r.node,
            r.state.as_str(),
            r.worker,
            r.attempts,
            r.token
        );
    }
    println!();
    println!(
        "{LOAD} result: {} rows in cents, in the transforms' order: {load:?} (total {})",
        load.len(),
        load.iter().sum::<u64>()
    );
    Ok(Summary {
        state: status.state,
        nodes,
        killed: started.worker.to_owned(),
        killed_node: started.node,
        killed_token: started.token,
        load,
    })
}

/// Follows the run from now on, printing what its observer sees, until it
/// ends: its final status.
async fn follow(run: &GraphRun, log: Log) -> Result<RunStatus> {
    let mut observer = run.observe();
    loop {
        for event in observer.next().await? {
            match event {
                RunEvent::Node {
                    node,
                    from,
                    to,
                    attempts,
                    status,
                } => {
                    let error =
                        (status.error.as_ref()).map_or(String::new(), |e| format!(", error {e:?}"));
                    log.say(format!(
                        "observer: {node} {} -> {} (attempts {attempts}{error})",
                        from.as_str(),
                        to.as_str()
                    ));
                }
                RunEvent::Missed { transitions } => log.say(format!(
                    "observer: {transitions} more transition(s), too quick to see"
                )),
                RunEvent::Ended(status) => return Ok(status),
                _ => {}
            }
        }
    }
}

fn worker_failed(who: &str, e: coord::Error) -> coord::Error {
    println!("{who} failed: {e}");
    e
}

fn timed_out(what: &str) -> coord::Error {
    coord::Error::Timeout {
        what: what.to_owned(),
        backend: "example".into(),
        waited: BOUND,
    }
}
