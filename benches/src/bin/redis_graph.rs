//! Job graphs on Redis against BullMQ flows, on the same redis-server in one
//! run.
//!
//! - **coord**: `RUNS` runs (default 500) of one graph of 11 nodes, 10 roots
//!   and a `join` after all 10 (fan-in): the shape of BullMQ's `flows`
//!   scenario (a parent after its 10 children). 64 tasks (on a runtime of
//!   two threads), each with a `GraphWorker` of its own, on `CLIENTS`
//!   clients (default 1, each a
//!   `RedisBackend`: one multiplexed connection and one pub/sub
//!   subscription), TTL 30 s (no renewal falls inside a run), take and
//!   complete per node. The bodies do nothing: a root returns 1, the join
//!   decodes its 10 parents' results (they come with the take, as BullMQ's
//!   parent reads its children's values) and returns 1. With the workers
//!   started and idle (subscribed), one task submits the runs one after
//!   another, each submit awaited, as BullMQ's `FlowProducer.add` is; the
//!   clock runs from the first submit sent until the last join's completion
//!   returned. Reported: nodes per second (11 × runs over that time) and the
//!   server's work per node from `INFO commandstats` between the two
//!   instants: EVALSHA calls (every graph operation is one EVALSHA of one
//!   script: submit, take, complete) per node, split into the submits (one
//!   per run), the completions (one per node) and the takes (the rest: one
//!   per node plus the idle ones, a take that found nothing because another
//!   worker woken by the same notification got there first), and the
//!   server's µs per call (and how much of it inside the commands the
//!   scripts called, from their own commandstats). After the clock stops every run's status is read
//!   and checked (succeeded, every node one attempt).
//! - **BullMQ**: the anchor's `bench.js PORT 40×RUNS` (`40×RUNS` jobs make
//!   `RUNS` flows of 1 parent + 10 children) in its directory
//!   (`../shared/anchors/bullmq` from the workspace, or `$BULLMQ_DIR`), after
//!   coord's part, on the same server (it FLUSHALLs it). bench.js has no
//!   switch for one scenario: by default node loads it as the module it is
//!   with the three lines of its main that run the other scenarios taken out
//!   of its text (nothing else changed; if those lines are not found it
//!   stops and says so), so only `flows` runs; `BULLMQ=all` runs the whole
//!   of bench.js and picks the flows line. Flows alone also gives the CPU
//!   the server (`INFO cpu`) and node (`process.cpuUsage()` from bullmq
//!   loaded until exit) spent on it. Skipped, saying why, when `node` or
//!   the anchor's `node_modules` is missing.
//!
//! `WORKERS=n` changes the number of workers (64, BullMQ's concurrency, by
//! default; fewer show what the idle takes cost).
//!
//! `REPS` (default 3) repetitions of coord-then-BullMQ, each with a warm-up
//! of 20 coord runs first (connections, the script cache); each
//! repetition's figures are printed, then the medians and the median of the
//! per-repetition ratios (target: coord ≥ 2× BullMQ, and at most 2 round
//! trips per node beyond the body), with the CPU each side spent per node
//! (server + client: this process for coord, node for BullMQ), which a busy
//! machine disturbs less than the rates. `PROFILE=1` (default) adds one more
//! coord pass, not counted (logging slows the server), with the server's
//! slow log recording every command (threshold 0): per operation of the
//! script (an argument of the EVALSHA; a take that wrote nothing is an idle
//! one, counted exactly here), its calls, server µs (mean, p50, p99), and
//! the commands it ran inside with their share of that time; the rest is
//! the script's own Lua and the cost of each `redis.call`.
//!
//! ```text
//! cargo build --release -p coord-benches --bin redis_graph
//! taskset -c 0 target/release/redis_graph
//! ```
//!
//! The server, this process and node all inherit the placement: on this
//! 2-vCPU VM compare runs placed alike.

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench::run());
}

#[cfg(not(madsim))]
mod bench {
    use std::{
        collections::BTreeMap,
        path::PathBuf,
        process::Command,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::{Duration, Instant},
    };

    use coord_api::{
        Client, Graph, LeaseOptions, Node, NodeContext, NodeError, NodeState, RunState,
    };
    use coord_redis::RedisBackend;
    use coord_testkit::redis::RedisServer;
    use redis::Value;
    use tokio::sync::Notify;

    const ROOTS: usize = 10;
    const NODES: usize = ROOTS + 1;
    /// BullMQ's concurrency in `flows`.
    const DEFAULT_WORKERS: usize = 64;
    const DEFAULT_RUNS: usize = 500;
    const WARMUP_RUNS: usize = 20;
    const DEFAULT_REPS: usize = 3;
    /// Long enough that no renewal (a third of it) falls inside a run.
    const TTL: Duration = Duration::from_secs(30);
    const JOIN: &str = "join";

    fn env_usize(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(default)
    }

    /// One repetition's figures.
    struct Rep {
        coord: Flows,
        bullmq: Option<Bull>,
    }

    /// coord's figures of one pass.
    struct Flows {
        nodes_per_s: f64,
        elapsed: Duration,
        nodes: usize,
        runs: usize,
        /// EVALSHA calls between the two instants.
        evalsha: u64,
        /// Their server time, µs.
        evalsha_usec: u64,
        /// Completions returned to the workers (one per node).
        completes: u64,
        /// Every other command the server ran meanwhile (those the scripts
        /// called, mostly): name -> calls.
        others: BTreeMap<String, u64>,
        /// Their server time, µs: inside a script's time, for those it
        /// called.
        others_usec: u64,
        server_cpu: f64,
        client_cpu: f64,
        /// With the slow log on: per operation of the script, (calls, µs).
        ops: Option<Ops>,
    }

    impl Flows {
        /// Takes: what is neither a submit nor a completion.
        fn takes(&self) -> u64 {
            self.evalsha
                .saturating_sub(self.runs as u64)
                .saturating_sub(self.completes)
        }

        fn idle_takes(&self) -> u64 {
            self.takes().saturating_sub(self.nodes as u64)
        }

        /// Round trips per node beyond the body: takes and completions.
        fn per_node(&self) -> f64 {
            (self.takes() + self.completes) as f64 / self.nodes as f64
        }
    }

    pub async fn run() {
        let runs = env_usize("RUNS", DEFAULT_RUNS);
        let reps = env_usize("REPS", DEFAULT_REPS).max(1);
        let workers = env_usize("WORKERS", DEFAULT_WORKERS).max(1);
        let clients = env_usize("CLIENTS", 1).clamp(1, workers);
        let profile = std::env::var("PROFILE").map_or(true, |v| v != "0");
        let server = RedisServer::start();
        println!(
            "redis_graph: redis-server on 127.0.0.1:{} (no persistence), {} vCPUs; {runs} runs of \
             {ROOTS} roots + 1 join, {workers} GraphWorkers on {clients} client(s), {reps} repetition(s)",
            server.port(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        let anchor = Anchor::find();
        match &anchor {
            Ok(a) => println!("BullMQ: {} in {}", a.version, a.dir.display()),
            Err(why) => println!("BullMQ skipped: {why}"),
        }
        let mut all = Vec::with_capacity(reps);
        for rep in 1..=reps {
            println!();
            let coord = flows(
                &server,
                &format!("flows-{rep}"),
                runs,
                workers,
                clients,
                false,
            )
            .await;
            if coord.completes != coord.nodes as u64 {
                println!(
                    "note: {} completions counted for {} nodes",
                    coord.completes, coord.nodes
                );
            }
            print_flows(rep, &coord);
            let bullmq = match &anchor {
                Ok(a) => a.flows(&server, runs),
                Err(_) => None,
            };
            if let Some(b) = &bullmq {
                let cpu = b.cpu.map_or(String::new(), |(s, n)| {
                    format!("; server CPU {s:.0} µs/node, node {n:.0} µs/node")
                });
                println!(
                    "rep {rep}: BullMQ flows {:.0} nodes/s{cpu}; coord / BullMQ = {:.2}",
                    b.nodes_per_s,
                    coord.nodes_per_s / b.nodes_per_s
                );
            }
            all.push(Rep { coord, bullmq });
        }
        summary(&all, runs);
        if profile {
            println!();
            let f = flows(&server, "flows-profile", runs, workers, clients, true).await;
            println!(
                "profile pass (the slow log records every command of the measured runs; not \
                 counted above): {:.0} nodes/s",
                f.nodes_per_s
            );
            print_ops(f.ops.as_ref().expect("profiled"), f.nodes);
        }
        drop(server);
    }

    async fn client(server: &RedisServer, name: &str) -> Client {
        let backend = RedisBackend::connect(server.config("bench"))
            .await
            .expect("connect");
        Client::builder(Arc::new(backend))
            .instance_id(name)
            .expect("instance id")
            .lease_options(LeaseOptions::default().ttl(TTL))
            .build()
    }

    fn declare(client: &Client, name: &str) -> Graph {
        let mut g = client.graph(name);
        let mut join = Node::new(JOIN);
        for i in 0..ROOTS {
            let root = format!("c{i}");
            join = join.after(&root);
            g = g.node(root.as_str());
        }
        g.node(join).build().expect("a valid graph")
    }

    async fn body(ctx: NodeContext) -> Result<u32, NodeError> {
        if ctx.node() == JOIN {
            let values = ctx.parent_results::<u32>();
            let sum: u32 = values.into_iter().filter_map(|(_, v)| v.ok()).sum();
            if sum != ROOTS as u32 {
                return Err(NodeError::msg(format!("children summed to {sum}")).permanent());
            }
        }
        Ok(1)
    }

    /// One pass: a warm-up of `WARMUP_RUNS` runs, then `runs` measured
    /// (with the slow log recording every command when `profile`).
    async fn flows(
        server: &RedisServer,
        name: &str,
        runs: usize,
        workers: usize,
        clients: usize,
        profile: bool,
    ) -> Flows {
        let mut cs = Vec::with_capacity(clients);
        for i in 0..clients {
            cs.push(client(server, &format!("bench-{i}")).await);
        }
        let graph = declare(&cs[0], name);
        let joins = Arc::new(AtomicUsize::new(0));
        let completes = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Notify::new());
        let mut tasks = Vec::with_capacity(workers);
        for w in 0..workers {
            let mut worker = declare(&cs[w % clients], name).worker();
            let (joins, completes, done) = (joins.clone(), completes.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let worked = worker.work_next(body).await.expect("work");
                    assert_eq!(worked.state, Some(NodeState::Succeeded), "{worked:?}");
                    completes.fetch_add(1, Ordering::Relaxed);
                    if worked.node == JOIN {
                        joins.fetch_add(1, Ordering::Relaxed);
                        done.notify_one();
                    }
                }
            }));
        }
        // Warm-up: every worker has taken (idle) and subscribed, the script
        // is loaded.
        submit_all(&graph, "w", WARMUP_RUNS, &joins, &done).await;
        // Let the herd of the warm-up's last notification settle.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let slowlog = profile.then(|| slowlog_on(server));
        let c0 = completes.load(Ordering::Relaxed);
        let stats0 = command_stats(server);
        let cpu0 = cpu(server);
        let elapsed = submit_all(&graph, "r", runs, &joins, &done).await;
        let stats1 = command_stats(server);
        let cpu1 = cpu(server);
        let c1 = completes.load(Ordering::Relaxed);
        let ops = slowlog.map(|old| slowlog_off(server, old));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // Every run ended once, every node in one attempt.
        for i in 0..runs {
            let st = graph
                .run(&format!("r{i}"))
                .expect("run id")
                .status()
                .await
                .expect("status");
            assert_eq!(st.state, RunState::Succeeded, "run r{i}: {st:?}");
            assert!(st.nodes.iter().all(|n| n.attempts == 1), "run r{i}: {st:?}");
        }
        let (mut evalsha, mut evalsha_usec, mut others_usec) = (0, 0, 0);
        let mut others = BTreeMap::new();
        for (name, (calls, usec)) in &stats1 {
            let (c, u) = stats0.get(name).copied().unwrap_or((0, 0));
            let (calls, usec) = (calls - c, usec - u);
            if calls == 0 || name.starts_with("info") {
                continue;
            }
            if name.starts_with("evalsha") {
                evalsha += calls;
                evalsha_usec += usec;
            } else {
                others.insert(name.clone(), calls);
                others_usec += usec;
            }
        }
        let nodes = runs * NODES;
        Flows {
            nodes_per_s: nodes as f64 / elapsed.as_secs_f64(),
            elapsed,
            nodes,
            runs,
            evalsha,
            evalsha_usec,
            completes: (c1 - c0) as u64,
            others,
            others_usec,
            server_cpu: cpu1.0 - cpu0.0,
            client_cpu: cpu1.1 - cpu0.1,
            ops,
        }
    }

    /// Submits runs `<prefix>0..` one after another and waits until every
    /// join of them completed. Returns the time from the first submit sent.
    async fn submit_all(
        graph: &Graph,
        prefix: &str,
        runs: usize,
        joins: &AtomicUsize,
        done: &Notify,
    ) -> Duration {
        let target = joins.load(Ordering::Relaxed) + runs;
        let t0 = Instant::now();
        for i in 0..runs {
            let run = graph.submit(&format!("{prefix}{i}")).await.expect("submit");
            assert!(run.was_created(), "run {prefix}{i} existed");
        }
        let deadline = t0 + Duration::from_secs(300);
        while joins.load(Ordering::Relaxed) < target {
            let wait = done.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if joins.load(Ordering::Relaxed) >= target {
                break;
            }
            tokio::select! {
                _ = wait => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            assert!(Instant::now() < deadline, "the runs did not end in 300 s");
        }
        t0.elapsed()
    }

    fn print_flows(rep: usize, f: &Flows) {
        let others: Vec<String> = f.others.iter().map(|(n, c)| format!("{n} {c}")).collect();
        println!(
            "rep {rep}: coord {} runs × {NODES} nodes in {:.3} s: {:.0} nodes/s; per node: {:.2} \
             round trips beyond the body ({:.2} takes of which {:.2} idle, {:.2} completes), \
             {:.3} submits; EVALSHA {:.1} µs of server time per call, {:.1} of them inside the \
             commands it called; server CPU {:.0} µs/node, this process {:.0} µs/node; commands \
             called (by the scripts, but for SUBSCRIBE & co): {}",
            f.runs,
            f.elapsed.as_secs_f64(),
            f.nodes_per_s,
            f.per_node(),
            f.takes() as f64 / f.nodes as f64,
            f.idle_takes() as f64 / f.nodes as f64,
            f.completes as f64 / f.nodes as f64,
            f.runs as f64 / f.nodes as f64,
            f.evalsha_usec as f64 / f.evalsha.max(1) as f64,
            f.others_usec as f64 / f.evalsha.max(1) as f64,
            f.server_cpu * 1e6 / f.nodes as f64,
            f.client_cpu * 1e6 / f.nodes as f64,
            if others.is_empty() {
                "none".to_owned()
            } else {
                others.join(", ")
            }
        );
    }

    fn median(mut v: Vec<f64>) -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    fn summary(all: &[Rep], runs: usize) {
        println!();
        println!(
            "| rep | coord nodes/s | BullMQ flows nodes/s | coord / BullMQ | coord round trips per node (idle takes) | CPU µs per node, server + client: coord | BullMQ |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (i, r) in all.iter().enumerate() {
            let (b, ratio, bcpu) = match &r.bullmq {
                Some(b) => (
                    format!("{:.0}", b.nodes_per_s),
                    format!("{:.2}", r.coord.nodes_per_s / b.nodes_per_s),
                    b.cpu
                        .map_or("-".into(), |(s, n)| format!("{s:.0} + {n:.0}")),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let per = |cpu: f64| cpu * 1e6 / r.coord.nodes as f64;
            println!(
                "| {} | {:.0} | {b} | {ratio} | {:.3} ({:.3}) | {:.0} + {:.0} | {bcpu} |",
                i + 1,
                r.coord.nodes_per_s,
                r.coord.per_node(),
                r.coord.idle_takes() as f64 / r.coord.nodes as f64,
                per(r.coord.server_cpu),
                per(r.coord.client_cpu),
            );
        }
        let coord = median(all.iter().map(|r| r.coord.nodes_per_s).collect()).expect("reps");
        let trips = median(all.iter().map(|r| r.coord.per_node()).collect()).expect("reps");
        let bullmq = median(
            all.iter()
                .filter_map(|r| r.bullmq.as_ref().map(|b| b.nodes_per_s))
                .collect(),
        );
        let ratio = median(
            all.iter()
                .filter_map(|r| {
                    r.bullmq
                        .as_ref()
                        .map(|b| r.coord.nodes_per_s / b.nodes_per_s)
                })
                .collect(),
        );
        println!();
        match (bullmq, ratio) {
            (Some(b), Some(x)) => println!(
                "median of {} reps, {runs} runs of {NODES} nodes: coord {coord:.0} nodes/s, BullMQ flows {b:.0} nodes/s, ratio {x:.2} (median of the per-rep ratios; target >= 2: {})",
                all.len(),
                verdict(x >= 2.0)
            ),
            _ => println!(
                "median of {} reps, {runs} runs of {NODES} nodes: coord {coord:.0} nodes/s (BullMQ not run)",
                all.len()
            ),
        }
        println!(
            "coord round trips per node beyond the body: median {trips:.3} (target <= 2: {})",
            verdict(trips <= 2.0)
        );
    }

    fn verdict(ok: bool) -> &'static str {
        if ok { "ok" } else { "MISSED" }
    }

    /// The BullMQ anchor: its directory and node's version.
    struct Anchor {
        dir: PathBuf,
        version: String,
    }

    impl Anchor {
        fn find() -> Result<Anchor, String> {
            let dir = std::env::var_os("BULLMQ_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors/bullmq"),
                PathBuf::from,
            );
            let dir = dir.canonicalize().map_err(|e| {
                format!(
                    "the anchor directory {} is missing ({e}); set BULLMQ_DIR",
                    dir.display()
                )
            })?;
            let version = match Command::new("node").arg("--version").output() {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                _ => {
                    return Err(format!(
                        "`node` is not installed (apt-get install -y nodejs npm; then `npm install \
                         --no-audit --no-fund` in {})",
                        dir.display()
                    ));
                }
            };
            if !dir.join("node_modules/bullmq").is_dir() {
                return Err(format!(
                    "the anchor's node_modules is missing: run `npm install --no-audit --no-fund` in {}",
                    dir.display()
                ));
            }
            Ok(Anchor {
                dir,
                version: format!("node {version}"),
            })
        }

        /// Runs the anchor on `server` (`BULLMQ=all`: the whole of
        /// bench.js; otherwise its flows scenario alone) and returns its
        /// flows line's figure, with the CPU the server and node spent (for
        /// the flows scenario alone).
        fn flows(&self, server: &RedisServer, runs: usize) -> Option<Bull> {
            let all = std::env::var("BULLMQ").is_ok_and(|v| v == "all");
            let mut cmd = Command::new("node");
            if !all {
                cmd.arg("-e")
                    .arg(FLOWS_ONLY_JS)
                    .env("COORD_SKIP", OTHER_SCENARIOS);
            }
            cmd.arg("bench.js")
                .arg(server.port().to_string())
                .arg((runs * 40).to_string())
                .current_dir(&self.dir);
            let server0 = cpu(server).0;
            let out = match cmd.output() {
                Ok(o) => o,
                Err(e) => {
                    println!("BullMQ: cannot run node: {e}");
                    return None;
                }
            };
            let server_cpu = cpu(server).0 - server0;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                println!(
                    "BullMQ: bench.js exited with {}: {stdout}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
            let line = stdout.lines().find(|l| l.starts_with("flows"))?;
            println!("BullMQ anchor said: {}", line.replace('\t', "  "));
            let nodes_per_s = (line.split('\t'))
                .find_map(|f| f.strip_suffix(" nodes/s"))
                .and_then(|v| v.trim().parse().ok())?;
            let node_cpu = (stdout.lines())
                .find_map(|l| l.strip_prefix("cpu\t"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|us| us / 1e6);
            let nodes = (runs * NODES) as f64;
            Some(Bull {
                nodes_per_s,
                cpu: (!all).then(|| {
                    (
                        server_cpu * 1e6 / nodes,
                        node_cpu.unwrap_or(f64::NAN) * 1e6 / nodes,
                    )
                }),
            })
        }
    }

    /// BullMQ's figures of one pass.
    struct Bull {
        nodes_per_s: f64,
        /// (server, node) CPU µs per node over the flows scenario, its
        /// set-up (connections, FLUSHALL) included (flows alone only).
        cpu: Option<(f64, f64)>,
    }

    /// The lines of bench.js's main that run the scenarios before `flows`.
    const OTHER_SCENARIOS: &str = "  await addSeq(Math.min(N, 5000));\n  await queueRun('q1', 1, Math.min(N, 5000));\n  await queueRun('q64', 64, N);\n";

    /// Runs bench.js as the module of the anchor's directory it is, with the
    /// lines `COORD_SKIP` names taken out of its text (and nothing else),
    /// and prints node's CPU time (µs) from the moment bullmq was loaded
    /// until it exits.
    const FLOWS_ONLY_JS: &str = r#"
const fs = require('fs'), path = require('path'), Module = require('module');
const file = path.resolve('bench.js');
const skip = process.env.COORD_SKIP;
let src = fs.readFileSync(file, 'utf8');
if (!skip || !src.includes(skip)) {
  console.error('bench.js no longer has the lines of the other scenarios: run with BULLMQ=all');
  process.exit(3);
}
src = src.replace(skip, '');
const m = new Module(file, module);
m.filename = file;
m.paths = Module._nodeModulePaths(path.dirname(file));
// Loaded now, so that the CPU counted from here leaves out node's start-up
// and the modules' loading (about 0.4 s here).
m.require('bullmq');
m.require('ioredis');
const base = process.cpuUsage();
process.on('exit', () => { const c = process.cpuUsage(base); console.log(`cpu\t${c.user + c.system}`); });
m._compile(src, file);
"#;

    /// Command name -> (calls, microseconds), from `INFO commandstats`.
    type CommandStats = BTreeMap<String, (u64, u64)>;

    fn info(server: &RedisServer, section: &str) -> String {
        match server.command(&["INFO", section]) {
            Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Value::VerbatimString { text, .. }) => text,
            other => panic!("INFO {section} replied {other:?}"),
        }
    }

    fn command_stats(server: &RedisServer) -> CommandStats {
        info(server, "commandstats")
            .lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter_map(|l| {
                let (name, rest) = l.split_once(':')?;
                let field = |f: &str| {
                    rest.split(',')
                        .find_map(|kv| kv.strip_prefix(f))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                Some((name.to_owned(), (field("calls=")?, field("usec=")?)))
            })
            .collect()
    }

    /// (the server's CPU seconds, this process's CPU seconds).
    fn cpu(server: &RedisServer) -> (f64, f64) {
        let server_s = info(server, "cpu")
            .lines()
            .filter_map(|l| {
                l.strip_prefix("used_cpu_user:")
                    .or_else(|| l.strip_prefix("used_cpu_sys:"))
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum();
        let mut client_ns = 0u64;
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
                client_ns += (stat.split(' ').next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        (server_s, client_ns as f64 / 1e9)
    }

    /// Turns the slow log on for every command; returns the settings to put
    /// back.
    fn slowlog_on(server: &RedisServer) -> (String, String) {
        let get = |k: &str| match server.command(&["CONFIG", "GET", k]) {
            Ok(Value::Array(v)) if v.len() == 2 => match &v[1] {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("CONFIG GET {k}: {other:?}"),
            },
            Ok(Value::Map(m)) if m.len() == 1 => match &m[0].1 {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("CONFIG GET {k}: {other:?}"),
            },
            other => panic!("CONFIG GET {k}: {other:?}"),
        };
        let old = (get("slowlog-log-slower-than"), get("slowlog-max-len"));
        for (k, v) in [
            ("slowlog-max-len", "1000000"),
            ("slowlog-log-slower-than", "0"),
        ] {
            server
                .command(&["CONFIG", "SET", k, v])
                .expect("CONFIG SET");
        }
        server
            .command(&["SLOWLOG", "RESET"])
            .expect("SLOWLOG RESET");
        old
    }

    /// Per operation of the graph script (`take` split by its outcome):
    /// what the slow log shows of its calls.
    type Ops = BTreeMap<String, Op>;

    #[derive(Default)]
    struct Op {
        calls: u64,
        /// Server µs, the script's run as a whole.
        usec: u64,
        /// Each call's server µs.
        each: Vec<u64>,
        /// The commands the script ran inside, by name: (calls, µs).
        inner: BTreeMap<String, (u64, u64)>,
    }

    /// Reads the slow log (every command since `slowlog_on`), then puts the
    /// settings back. A script's own commands are logged as they end, just
    /// before the EVALSHA that ran them (consecutive ids, one thread): each
    /// EVALSHA gets the commands logged since the previous one. A take that
    /// wrote nothing (no HSET) found nothing: an idle take.
    fn slowlog_off(server: &RedisServer, old: (String, String)) -> Ops {
        server
            .command(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"])
            .expect("CONFIG SET");
        let log = server
            .command(&["SLOWLOG", "GET", "-1"])
            .expect("SLOWLOG GET");
        let Value::Array(entries) = log else {
            panic!("SLOWLOG GET replied {log:?}")
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => String::new(),
        };
        // (id, µs, command, the script's operation for an EVALSHA)
        let mut parsed: Vec<(i64, u64, String, Option<String>)> = entries
            .iter()
            .filter_map(|e| {
                let Value::Array(f) = e else { return None };
                let (Some(Value::Int(id)), Some(Value::Int(usec)), Some(Value::Array(args))) =
                    (f.first(), f.get(2), f.get(3))
                else {
                    return None;
                };
                let cmd = args.first().map(text).unwrap_or_default().to_lowercase();
                // EVALSHA sha numkeys keys... op run ...
                let op = (cmd == "evalsha").then(|| {
                    let numkeys: usize = (args.get(2).map(text))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    args.get(3 + numkeys).map(text).unwrap_or_default()
                });
                Some((*id, *usec as u64, cmd, op))
            })
            .filter(|(_, _, cmd, _)| !["slowlog", "config", "info"].contains(&cmd.as_str()))
            .collect();
        parsed.sort_by_key(|e| e.0);
        let mut ops = Ops::new();
        let mut inner: Vec<(String, u64)> = Vec::new();
        for (_, usec, cmd, op) in parsed {
            let Some(op) = op else {
                inner.push((cmd, usec));
                continue;
            };
            let name = match op.as_str() {
                "take" if inner.iter().any(|(c, _)| c == "hset") => "take (took a node)".to_owned(),
                "take" => "take (idle: nothing ready)".to_owned(),
                other => other.to_owned(),
            };
            let o = ops.entry(name).or_default();
            o.calls += 1;
            o.usec += usec;
            o.each.push(usec);
            for (c, u) in inner.drain(..) {
                let e = o.inner.entry(c).or_default();
                e.0 += 1;
                e.1 += u;
            }
        }
        if !inner.is_empty() {
            let o = ops.entry("(outside scripts)".to_owned()).or_default();
            for (c, u) in inner.drain(..) {
                o.calls += 1;
                o.usec += u;
                o.each.push(u);
                let e = o.inner.entry(c).or_default();
                e.0 += 1;
                e.1 += u;
            }
        }
        server
            .command(&["CONFIG", "SET", "slowlog-log-slower-than", &old.0])
            .expect("CONFIG SET");
        server
            .command(&["CONFIG", "SET", "slowlog-max-len", &old.1])
            .expect("CONFIG SET");
        server
            .command(&["SLOWLOG", "RESET"])
            .expect("SLOWLOG RESET");
        ops
    }

    fn print_ops(ops: &Ops, nodes: usize) {
        println!(
            "| graph script operation (slow log of the measured runs) | calls | per node | server µs per call: mean / p50 / p99 | of which inside its commands (mean) | its commands per call |"
        );
        println!("|---|---:|---:|---:|---:|---|");
        for (name, o) in ops {
            let calls = o.calls.max(1) as f64;
            let inner_usec: u64 = o.inner.values().map(|(_, u)| u).sum();
            let mut inner: Vec<_> = o.inner.iter().collect();
            inner.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
            let list: Vec<String> = inner
                .iter()
                .map(|(c, (n, _))| format!("{c} {:.2}", *n as f64 / calls))
                .collect();
            let mut each = o.each.clone();
            each.sort_unstable();
            let at = |p: f64| {
                each.get(((each.len().max(1) - 1) as f64 * p) as usize)
                    .copied()
                    .unwrap_or(0)
            };
            println!(
                "| {name} | {} | {:.2} | {:.1} / {} / {} | {:.1} | {} |",
                o.calls,
                o.calls as f64 / nodes as f64,
                o.usec as f64 / calls,
                at(0.5),
                at(0.99),
                inner_usec as f64 / calls,
                list.join(", ")
            );
        }
    }
}
