//! Job graphs on Redis against BullMQ flows, on the same redis-server in one
//! run.
//!
//! - **coord**: `RUNS` runs (default 500) of one graph of 11 nodes, 10 roots
//!   and a `join` after all 10 (fan-in): the shape of BullMQ's `flows`
//!   scenario (a parent after its 10 children). 64 tasks (on a runtime of
//!   two threads), each running `GraphWorker::run` (a worker of one
//!   `Graph` per client, so a client's workers share its ready
//!   notifications), on `CLIENTS` clients (default 1, each a
//!   `RedisBackend`: one multiplexed connection and one pub/sub
//!   subscription), TTL 30 s (no renewal falls inside a run); each
//!   completion takes the worker's next node in the same call, and a worker
//!   that found nothing takes once woken. The bodies do nothing: a root
//!   returns 1, the join decodes its 10 parents' results (they come with
//!   the take, as BullMQ's parent reads its children's values) and returns
//!   1; each body counts itself as it returns. With the workers started and
//!   idle (subscribed), one task submits the runs one after another, each
//!   submit awaited, as BullMQ's `FlowProducer.add` is; the clock runs from
//!   the first submit sent until the last join's body returned (its
//!   completion, one round trip, is then on its way). Reported: nodes per
//!   second (11 × runs over that time) and the server's work per node from
//!   `INFO commandstats` between the two instants: EVALSHA calls (every
//!   graph operation is one EVALSHA of one script: submit, take, complete)
//!   per node, split into the submits (one per run), the completions (one
//!   per node, each of which may have taken a node too) and the takes on
//!   their own (the rest: a worker woken by a notification or handed on by
//!   another, some of which find nothing), and the server's µs per call
//!   (and how much of it inside the commands the scripts called, from their
//!   own commandstats). After the clock stops every run's status is read
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
//! one, counted exactly here; a complete that took a node is not told
//! apart), its calls, server µs (mean, p50, p99), and
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
    coord_benches::redis_tool::block_on(bench::run());
}

#[cfg(not(madsim))]
mod bench {
    use std::{
        collections::BTreeMap,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::{Duration, Instant},
    };

    use coord_api::{Client, Graph, Node, NodeContext, NodeError, RunState};
    use coord_benches::redis_tool::{
        Anchor, Counter, Ops, Split, Window, client, cpu, env_usize, median, or_none, print_ops,
        profile, server_line, slowlog_off, slowlog_on, stop, verdict,
    };
    use coord_testkit::redis::RedisServer;

    const ROOTS: usize = 10;
    const NODES: usize = ROOTS + 1;
    /// BullMQ's concurrency in `flows`.
    const DEFAULT_WORKERS: usize = 64;
    const DEFAULT_RUNS: usize = 500;
    const WARMUP_RUNS: usize = 20;
    const DEFAULT_REPS: usize = 3;
    const JOIN: &str = "join";
    /// The profile's names of the takes.
    const TAKE: Split = Split {
        op: "take",
        marker: "hset",
        with: "take (took a node)",
        without: "take (idle: nothing ready)",
    };

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
        /// Bodies that returned (one per node, each then completed).
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
        /// Takes on their own: what is neither a submit nor a completion.
        fn takes(&self) -> u64 {
            self.evalsha
                .saturating_sub(self.runs as u64)
                .saturating_sub(self.completes)
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
        let profile = profile();
        let server = RedisServer::start();
        println!(
            "redis_graph: {}; {runs} runs of {ROOTS} roots + 1 join, {workers} GraphWorkers on \
             {clients} client(s), {reps} repetition(s)",
            server_line(&server),
        );
        let anchor = Anchor::announce();
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
            let bullmq = (anchor.as_ref()).and_then(|a| bullmq_flows(a, &server, runs));
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
            print_ops(
                f.ops.as_ref().expect("profiled"),
                "graph script operation (slow log of the measured runs)",
                "node",
                f.nodes,
                2,
            );
        }
        drop(server);
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
        // One graph per client: its workers share its ready notifications.
        let graphs: Vec<Graph> = cs.iter().map(|c| declare(c, name)).collect();
        let graph = graphs[0].clone();
        let joins = Arc::new(Counter::default());
        let completes = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(workers);
        for w in 0..workers {
            let worker = graphs[w % clients].worker();
            let (joins, completes) = (joins.clone(), completes.clone());
            tasks.push(tokio::spawn(async move {
                let counted = move |ctx: NodeContext| {
                    let (joins, completes) = (joins.clone(), completes.clone());
                    async move {
                        let join = ctx.node() == JOIN;
                        let out = body(ctx).await;
                        completes.fetch_add(1, Ordering::Relaxed);
                        if join {
                            joins.bump();
                        }
                        out
                    }
                };
                worker.run(counted).await.expect("work");
            }));
        }
        // Warm-up: every worker has taken (idle) and subscribed, the script
        // is loaded.
        submit_all(&graph, "w", WARMUP_RUNS, &joins).await;
        // Let the herd of the warm-up's last notification settle.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let slowlog = profile.then(|| slowlog_on(server, "1000000"));
        let c0 = completes.load(Ordering::Relaxed);
        let window = Window::open(server);
        let elapsed = submit_all(&graph, "r", runs, &joins).await;
        let work = window.close(server);
        let c1 = completes.load(Ordering::Relaxed);
        let ops = slowlog.map(|old| slowlog_off(server, old, &TAKE));
        stop(tasks).await;
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
        for (name, (calls, usec)) in work.commands {
            if name.starts_with("evalsha") {
                evalsha += calls;
                evalsha_usec += usec;
            } else {
                others.insert(name, calls);
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
            server_cpu: work.server_cpu,
            client_cpu: work.client_cpu,
            ops,
        }
    }

    /// Submits runs `<prefix>0..` one after another and waits until every
    /// join of them completed. Returns the time from the first submit sent.
    async fn submit_all(graph: &Graph, prefix: &str, runs: usize, joins: &Counter) -> Duration {
        let target = joins.get() + runs;
        let t0 = Instant::now();
        for i in 0..runs {
            let run = graph.submit(&format!("{prefix}{i}")).await.expect("submit");
            assert!(run.was_created(), "run {prefix}{i} existed");
        }
        let deadline = t0 + Duration::from_secs(300);
        let late = |_| "the runs did not end in 300 s".to_owned();
        joins.wait(target, deadline, late).await;
        t0.elapsed()
    }

    fn print_flows(rep: usize, f: &Flows) {
        let others: Vec<String> = f.others.iter().map(|(n, c)| format!("{n} {c}")).collect();
        println!(
            "rep {rep}: coord {} runs × {NODES} nodes in {:.3} s: {:.0} nodes/s; per node: {:.2} \
             round trips beyond the body ({:.2} takes on their own, {:.2} completes), \
             {:.3} submits; EVALSHA {:.1} µs of server time per call, {:.1} of them inside the \
             commands it called; server CPU {:.0} µs/node, this process {:.0} µs/node; commands \
             called (by the scripts, but for SUBSCRIBE & co): {}",
            f.runs,
            f.elapsed.as_secs_f64(),
            f.nodes_per_s,
            f.per_node(),
            f.takes() as f64 / f.nodes as f64,
            f.completes as f64 / f.nodes as f64,
            f.runs as f64 / f.nodes as f64,
            f.evalsha_usec as f64 / f.evalsha.max(1) as f64,
            f.others_usec as f64 / f.evalsha.max(1) as f64,
            f.server_cpu * 1e6 / f.nodes as f64,
            f.client_cpu * 1e6 / f.nodes as f64,
            or_none(&others),
        );
    }

    fn summary(all: &[Rep], runs: usize) {
        println!();
        println!(
            "| rep | coord nodes/s | BullMQ flows nodes/s | coord / BullMQ | coord round trips per node (takes on their own) | CPU µs per node, server + client: coord | BullMQ |"
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
                r.coord.takes() as f64 / r.coord.nodes as f64,
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

    /// Runs the anchor on `server` (`BULLMQ=all`: the whole of bench.js;
    /// otherwise its flows scenario alone) and returns its flows line's
    /// figure, with the CPU the server and node spent (for the flows
    /// scenario alone).
    fn bullmq_flows(anchor: &Anchor, server: &RedisServer, runs: usize) -> Option<Bull> {
        let all = std::env::var("BULLMQ").is_ok_and(|v| v == "all");
        let server0 = cpu(server).0;
        let stdout = anchor.bench(server.port(), runs * 40, |cmd| {
            if !all {
                cmd.arg("-e")
                    .arg(FLOWS_ONLY_JS)
                    .env("COORD_SKIP", OTHER_SCENARIOS);
            }
        })?;
        let server_cpu = cpu(server).0 - server0;
        let line = Anchor::said(&stdout, |l| l.starts_with("flows"))?;
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
}
