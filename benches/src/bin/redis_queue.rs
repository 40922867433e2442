//! Work queues on Redis against BullMQ and a raw Redis list queue, on the
//! same redis-server in one run.
//!
//! The scenario is BullMQ's `q1` / `q64` (the anchor's `bench.js`): a
//! producer and the consumers run together, the producer pushing the jobs
//! in batches of 500 (each batch awaited before the next, every job stamped
//! with the time its batch was made), the consumers doing nothing with a
//! job but settle it. Reported: end-to-end jobs per second (the jobs over
//! the time from the first push sent until the last completion returned)
//! and push-to-completion latency p50 / p99 (from the stamp to the
//! completion returned, so a job's wait in the queue counts).
//!
//! - **coord**: `Queue<u64>::push_many` of 500 (one round trip each) from a
//!   client of its own; `C` consumers (1, then 64), each a
//!   `Consumer` with the default options (prefetch 1, no steal, presence
//!   10 s) doing `receive` then `ack`, as tasks sharing `CLIENTS` clients
//!   (default 1: one multiplexed connection and one pub/sub subscription,
//!   as BullMQ's one `Worker` with `concurrency` 64). Lease TTL 30 s: no
//!   renewal falls inside the run. The jobs: `min(N, 5000)` at 1, `N` at
//!   64 (default N = 20000), as `bench.js` does. Before the clock starts,
//!   500 jobs of warm-up (connections, the script cache, every consumer
//!   registered and subscribed).
//! - **raw** (64 only): the reliable-queue pattern with no leases, no
//!   tokens, no ids, the redis crate directly: `LPUSH` of 500 values per
//!   batch; 64 consumers, each on a connection of its own (a blocking
//!   command holds its connection), `BLMOVE queue processing:<i> RIGHT LEFT`
//!   then `LREM processing:<i> 1 value`.
//! - **BullMQ**: `node bench.js PORT N` in the anchor's directory
//!   (`../shared/anchors/bullmq` from the workspace, or `$BULLMQ_DIR`),
//!   after coord's and the raw part, on the same server (it FLUSHALLs it).
//!   The anchor runs all its scenarios (it has no switch for one); its `q1`
//!   and `q64` lines are the ones compared. Skipped, saying why, when
//!   `node` or the anchor's `node_modules` is missing.
//!
//! Round trips per job come from `INFO commandstats` between the clock's
//! two instants: every coord queue operation is one EVALSHA of one script
//! (push, receive, ack, and the consumers' heartbeats), so EVALSHA calls
//! per job are coord's round trips per job, split into the pushes (one per
//! 500), the acks (one per job) and the receives (the rest: one per job
//! plus the idle ones, a receive that found nothing because another
//! consumer woken by the same notification got there first; the rare
//! heartbeat is counted among them). The commands the scripts called are
//! listed apart (they are no round trips). For raw, its own commands.
//! CPU per job is the server's (`INFO cpu`) and this process's (its
//! threads' schedstat) between the same instants; on a machine whose CPUs
//! are the limit (this 2-vCPU VM), raw's CPU per job over coord's is what
//! the coord / raw jobs/s ratio comes to, whatever the noise.
//!
//! `REPS` (default 3) repetitions of coord q1, coord q64, raw 64, then
//! BullMQ; each repetition's figures and ratios are printed, then a table
//! and the medians, with the targets: coord ≥ 2× BullMQ's jobs/s at 1 and
//! 64, coord's p99 below BullMQ's, coord ≥ 0.5× raw at 64. `PROFILE=1`
//! (default) adds one more coord pass at 64 and at 1, not counted, with the
//! server's slow log recording every command (threshold 0): calls per job
//! and server µs of each operation of the script (the operation is an
//! argument of the EVALSHA; a receive that delivered is told from an idle
//! one by its SADD), and the commands each ran.
//!
//! ```text
//! cargo build --release -p coord-benches --bin redis_queue
//! taskset -c 0 target/release/redis_queue
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
        sync::Arc,
        time::{Duration, Instant},
    };

    use coord_api::Queue;
    use coord_benches::redis_tool::{
        Anchor, CommandStats, Completions, Costs, Ops, Split, Window, client, env_usize, median,
        now_us, or_none, pct_ms, print_ops, profile, server_line, slowlog_off, slowlog_on, stop,
        verdict,
    };
    use coord_testkit::redis::RedisServer;
    use redis::AsyncCommands;

    const DEFAULT_JOBS: usize = 20_000;
    /// `bench.js` runs `q1` on `min(N, 5000)` jobs.
    const Q1_MAX_JOBS: usize = 5_000;
    const BATCH: usize = 500;
    const WARMUP_JOBS: usize = 500;
    const DEFAULT_REPS: usize = 3;
    const RAW_CONSUMERS: usize = 64;
    /// The profile's names of the receives.
    const RECEIVE: Split = Split {
        op: "receive",
        marker: "sadd",
        with: "receive (delivered)",
        without: "receive (idle: nothing ready)",
    };

    /// One pass's figures (coord or raw).
    struct Pass {
        jobs: usize,
        elapsed: Duration,
        /// Push-to-completion latencies, µs, sorted.
        latencies: Vec<u64>,
        /// Command name -> (calls, µs) between the clock's instants.
        commands: CommandStats,
        server_cpu: f64,
        client_cpu: f64,
        /// With the slow log on: per operation of the script.
        ops: Option<Ops>,
    }

    impl Pass {
        /// Server and client CPU per job, µs.
        fn cpu_per_job(&self) -> f64 {
            (self.server_cpu + self.client_cpu) * 1e6 / self.jobs as f64
        }

        fn jobs_per_s(&self) -> f64 {
            self.jobs as f64 / self.elapsed.as_secs_f64()
        }

        fn pct_ms(&self, p: f64) -> f64 {
            pct_ms(&self.latencies, p)
        }

        fn calls(&self, name: &str) -> u64 {
            self.commands.get(name).map_or(0, |c| c.0)
        }

        fn per_job(&self, n: u64) -> f64 {
            n as f64 / self.jobs as f64
        }

        /// EVALSHA calls (coord's round trips).
        fn evalsha(&self) -> u64 {
            self.calls("evalsha")
        }

        fn pushes(&self) -> u64 {
            self.jobs.div_ceil(BATCH) as u64
        }

        /// Receives (and heartbeats): what is neither a push nor an ack.
        fn receives(&self) -> u64 {
            self.evalsha()
                .saturating_sub(self.pushes())
                .saturating_sub(self.jobs as u64)
        }

        fn idle_receives(&self) -> u64 {
            self.receives().saturating_sub(self.jobs as u64)
        }

        /// Top-level commands of the raw pass.
        fn raw_round_trips(&self) -> u64 {
            ["lpush", "blmove", "lrem"]
                .iter()
                .map(|c| self.calls(c))
                .sum()
        }
    }

    /// BullMQ's line of one scenario.
    #[derive(Clone, Copy)]
    struct Bull {
        jobs_per_s: f64,
        p50_ms: f64,
        p99_ms: f64,
    }

    /// One repetition's figures.
    struct Rep {
        c1: Pass,
        c64: Pass,
        raw: Pass,
        bull: Option<(Bull, Bull)>,
    }

    pub async fn run() {
        let jobs = env_usize("N", DEFAULT_JOBS).max(BATCH);
        let q1_jobs = jobs.min(Q1_MAX_JOBS);
        let reps = env_usize("REPS", DEFAULT_REPS).max(1);
        let clients = env_usize("CLIENTS", 1).clamp(1, 64);
        let profile = profile();
        let server = RedisServer::start();
        println!(
            "redis_queue: {}; q1: {q1_jobs} jobs at concurrency 1, q64: {jobs} jobs at 64; coord \
             consumers on {clients} client(s); pushes in batches of {BATCH}; {reps} repetition(s)",
            server_line(&server),
        );
        let anchor = Anchor::announce();
        let mut all = Vec::with_capacity(reps);
        for rep in 1..=reps {
            println!();
            let c1 = coord(&server, &format!("q1-{rep}"), 1, q1_jobs, clients, false).await;
            print_coord(rep, "q1", 1, &c1);
            let c64 = coord(&server, &format!("q64-{rep}"), 64, jobs, clients, false).await;
            print_coord(rep, "q64", 64, &c64);
            let raw = raw(&server, &format!("raw-{rep}"), jobs).await;
            print_raw(rep, &raw);
            let bull = (anchor.as_ref()).and_then(|a| bullmq(a, server.port(), jobs));
            if let Some((b1, b64)) = bull {
                println!(
                    "rep {rep}: BullMQ q1 {:.0} jobs/s, p50 {} ms, p99 {} ms; q64 {:.0} jobs/s, \
                     p50 {} ms, p99 {} ms",
                    b1.jobs_per_s, b1.p50_ms, b1.p99_ms, b64.jobs_per_s, b64.p50_ms, b64.p99_ms
                );
            }
            let r = Rep { c1, c64, raw, bull };
            print_ratios(rep, &r);
            all.push(r);
        }
        summary(&all);
        if profile {
            for (c, n) in [(64, jobs), (1, q1_jobs)] {
                println!();
                let p = coord(&server, &format!("profile-{c}"), c, n, clients, true).await;
                println!(
                    "profile pass at concurrency {c} (the slow log records every command; not \
                     counted above): {:.0} jobs/s, p50 {:.1} ms, p99 {:.1} ms",
                    p.jobs_per_s(),
                    p.pct_ms(0.5),
                    p.pct_ms(0.99)
                );
                print_ops(
                    p.ops.as_ref().expect("profiled"),
                    "queue script operation (slow log of the measured jobs)",
                    "job",
                    p.jobs,
                    3,
                );
            }
            println!();
            op_costs(&server).await;
        }
        drop(server);
    }

    /// Each operation's server time alone: one client, one call at a time,
    /// `INFO commandstats` around each kind (no slow log to weigh on it),
    /// and an EVALSHA of `return 1` with the same 9 keys and 3 arguments
    /// (what any script call costs the server at least).
    async fn op_costs(server: &RedisServer) {
        const K: usize = 2_000;
        let c = client(server, "costs").await;
        let q = c.queue::<u64>("bench/costs");
        let mut consumer = q.consumer();
        let mut costs = Costs::start(server);
        for i in 0..K as u64 {
            q.push(&i).await.expect("push");
        }
        costs.row(server, "push (1 item)");
        let batch = vec![0u64; BATCH];
        // Enough for the receives and the ack_and_receives after them.
        for _ in 0..2 * K / BATCH {
            q.push_many(&batch).await.expect("push");
        }
        costs.row(server, &format!("push_many ({BATCH} items)"));
        let mut held = Vec::with_capacity(K);
        for _ in 0..K {
            held.push(consumer.receive().await.expect("receive"));
        }
        costs.row(server, &format!("receive (delivered; {K} ready)"));
        let last = held.pop().expect("held");
        for d in held {
            d.ack().await.expect("ack");
        }
        costs.row(server, "ack");
        let mut d = last;
        for _ in 0..K {
            d = consumer.ack_and_next(d).await.expect("ack").expect("next");
        }
        costs.row(server, &format!("ack_and_receive (delivered; {K} ready)"));
        let keys = vec!["coord:{bench:queue:11:bench/costs}:r".to_owned()];
        let label = "EVALSHA of `return 1`, 1 key, 3 args";
        let args = ["ack", "1", "1"];
        costs.evalsha_floor(server, label, &keys, &args, K).await;
        costs.print("each operation alone (one client, one call at a time)");
    }

    /// Pushes `jobs` stamped jobs in batches of `BATCH`, each awaited.
    async fn push_all(queue: &Queue<u64>, jobs: usize) {
        let mut left = jobs;
        while left > 0 {
            let n = left.min(BATCH);
            let stamp = now_us();
            let batch = vec![stamp; n];
            let pushed = queue.push_many(&batch).await.expect("push");
            assert_eq!(pushed.len(), n);
            left -= n;
        }
    }

    /// One coord pass at `concurrency`: a warm-up, then `jobs` measured
    /// (with the slow log recording every command when `profile`).
    async fn coord(
        server: &RedisServer,
        name: &str,
        concurrency: usize,
        jobs: usize,
        clients: usize,
        profile: bool,
    ) -> Pass {
        let producer = client(server, "producer").await;
        let mut cs = Vec::with_capacity(clients);
        for i in 0..clients {
            cs.push(client(server, &format!("consumers-{i}")).await);
        }
        let queue = producer.queue::<u64>(&format!("bench/{name}"));
        let done = Arc::new(Completions::default());
        let mut tasks = Vec::with_capacity(concurrency);
        for c in 0..concurrency {
            let mut consumer = cs[c % clients]
                .queue::<u64>(&format!("bench/{name}"))
                .consumer();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                // Each ack brings the next item when one is ready
                // (ack_and_next: one round trip), else receive waits.
                let mut next = None;
                loop {
                    let d = match next.take() {
                        Some(d) => d,
                        None => consumer.receive().await.expect("receive"),
                    };
                    let stamp = *d.item();
                    next = consumer.ack_and_next(d).await.expect("ack");
                    done.record(stamp);
                }
            }));
        }
        // Warm-up: every consumer has received (registered, subscribed),
        // the script is loaded.
        push_all(&queue, WARMUP_JOBS).await;
        done.wait(WARMUP_JOBS, "warm-up").await;
        // Let the herd of the warm-up's last notification settle.
        tokio::time::sleep(Duration::from_millis(100)).await;
        done.take_latencies();
        let slowlog = profile.then(|| slowlog_on(server, "2000000"));
        let window = Window::open(server);
        let t0 = Instant::now();
        push_all(&queue, jobs).await;
        done.wait(WARMUP_JOBS + jobs, name).await;
        let elapsed = t0.elapsed();
        let work = window.close(server);
        let ops = slowlog.map(|old| slowlog_off(server, old, &RECEIVE));
        stop(tasks).await;
        let stats = queue.stats().await.expect("stats");
        assert_eq!(
            (stats.ready, stats.delayed, stats.dead),
            (0, 0, 0),
            "{name}: {stats:?}"
        );
        assert_eq!(stats.redelivered, 0, "{name}: no fault, no duplicate");
        let mut latencies = done.take_latencies();
        latencies.sort_unstable();
        assert_eq!(latencies.len(), jobs, "{name}: every job once");
        Pass {
            jobs,
            elapsed,
            latencies,
            commands: work.commands,
            server_cpu: work.server_cpu,
            client_cpu: work.client_cpu,
            ops,
        }
    }

    /// The raw pass at 64: LPUSH, BLMOVE, LREM.
    async fn raw(server: &RedisServer, name: &str, jobs: usize) -> Pass {
        let client = redis::Client::open(server.url()).expect("url");
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        let connect = || async {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .expect("connect")
        };
        let key = format!("raw:{name}");
        let mut producer = connect().await;
        let done = Arc::new(Completions::default());
        let mut tasks = Vec::with_capacity(RAW_CONSUMERS);
        for i in 0..RAW_CONSUMERS {
            let mut con = connect().await;
            let (key, processing) = (key.clone(), format!("raw:{name}:processing:{i}"));
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let v: Option<String> = redis::cmd("BLMOVE")
                        .arg(&key)
                        .arg(&processing)
                        .arg("RIGHT")
                        .arg("LEFT")
                        .arg(1)
                        .query_async(&mut con)
                        .await
                        .expect("BLMOVE");
                    let Some(v) = v else { continue };
                    let removed: i64 = con.lrem(&processing, 1, &v).await.expect("LREM");
                    assert_eq!(removed, 1);
                    done.record(v.parse().expect("a stamp"));
                }
            }));
        }
        let push = |n: usize| {
            let stamp = now_us().to_string();
            let batch = vec![stamp; n];
            let key = key.clone();
            let mut con = producer.clone();
            async move {
                let _: i64 = con.lpush(&key, batch).await.expect("LPUSH");
            }
        };
        let push_all = |jobs: usize| {
            let push = &push;
            async move {
                let mut left = jobs;
                while left > 0 {
                    let n = left.min(BATCH);
                    push(n).await;
                    left -= n;
                }
            }
        };
        push_all(WARMUP_JOBS).await;
        done.wait(WARMUP_JOBS, "raw warm-up").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        done.take_latencies();
        let window = Window::open(server);
        let t0 = Instant::now();
        push_all(jobs).await;
        done.wait(WARMUP_JOBS + jobs, name).await;
        let elapsed = t0.elapsed();
        let work = window.close(server);
        stop(tasks).await;
        let left: i64 = producer.llen(&key).await.expect("LLEN");
        assert_eq!(left, 0);
        let mut latencies = done.take_latencies();
        latencies.sort_unstable();
        assert_eq!(latencies.len(), jobs, "{name}: every job once");
        Pass {
            jobs,
            elapsed,
            latencies,
            commands: work.commands,
            server_cpu: work.server_cpu,
            client_cpu: work.client_cpu,
            ops: None,
        }
    }

    fn others(p: &Pass, top: &[&str]) -> String {
        let list: Vec<String> = (p.commands.iter())
            .filter(|(n, _)| !top.contains(&n.as_str()))
            .map(|(n, (c, _))| format!("{n} {:.2}", p.per_job(*c)))
            .collect();
        or_none(&list)
    }

    fn print_coord(rep: usize, scenario: &str, c: usize, p: &Pass) {
        let (calls, usec) = p.commands.get("evalsha").copied().unwrap_or((0, 0));
        let inner_usec: u64 = (p.commands.iter())
            .filter(|(n, _)| n.as_str() != "evalsha")
            .map(|(_, (_, u))| u)
            .sum();
        println!(
            "rep {rep}: coord {scenario} ({c} consumer(s)): {} jobs in {:.3} s: {:.0} jobs/s, \
             p50 {:.1} ms, p99 {:.1} ms; per job {:.2} round trips ({:.2} receives of which \
             {:.2} idle, 1 ack, {:.3} pushes); EVALSHA {:.1} µs of server time per call, {:.1} of \
             them inside the commands it called; server CPU {:.1} µs/job, this process {:.1} \
             µs/job; per job, commands the scripts called (but for SUBSCRIBE & co): {}",
            p.jobs,
            p.elapsed.as_secs_f64(),
            p.jobs_per_s(),
            p.pct_ms(0.5),
            p.pct_ms(0.99),
            p.per_job(p.evalsha()),
            p.per_job(p.receives()),
            p.per_job(p.idle_receives()),
            p.per_job(p.pushes()),
            usec as f64 / calls.max(1) as f64,
            inner_usec as f64 / calls.max(1) as f64,
            p.server_cpu * 1e6 / p.jobs as f64,
            p.client_cpu * 1e6 / p.jobs as f64,
            others(p, &["evalsha"]),
        );
    }

    fn print_raw(rep: usize, p: &Pass) {
        let usec = |c: &str| {
            let (n, u) = p.commands.get(c).copied().unwrap_or((0, 0));
            u as f64 / n.max(1) as f64
        };
        println!(
            "rep {rep}: raw 64 (LPUSH + BLMOVE + LREM): {} jobs in {:.3} s: {:.0} jobs/s, p50 \
             {:.1} ms, p99 {:.1} ms; per job {:.2} round trips (BLMOVE {:.2}, LREM {:.2}, LPUSH \
             {:.3}); server µs per call: BLMOVE {:.1}, LREM {:.1}, LPUSH {:.1}; server CPU {:.1} \
             µs/job, this process {:.1} µs/job; other commands per job: {}",
            p.jobs,
            p.elapsed.as_secs_f64(),
            p.jobs_per_s(),
            p.pct_ms(0.5),
            p.pct_ms(0.99),
            p.per_job(p.raw_round_trips()),
            p.per_job(p.calls("blmove")),
            p.per_job(p.calls("lrem")),
            p.per_job(p.calls("lpush")),
            usec("blmove"),
            usec("lrem"),
            usec("lpush"),
            p.server_cpu * 1e6 / p.jobs as f64,
            p.client_cpu * 1e6 / p.jobs as f64,
            others(p, &["lpush", "blmove", "lrem"]),
        );
    }

    fn print_ratios(rep: usize, r: &Rep) {
        let raw = r.c64.jobs_per_s() / r.raw.jobs_per_s();
        println!(
            "rep {rep}: CPU per job at 64, server + this process: coord {:.0} µs, raw {:.0} µs; \
             raw / coord = {:.2} (the jobs/s ratio a CPU-bound machine tends to)",
            r.c64.cpu_per_job(),
            r.raw.cpu_per_job(),
            r.raw.cpu_per_job() / r.c64.cpu_per_job()
        );
        let Some((b1, b64)) = r.bull else {
            println!(
                "rep {rep}: coord / raw at 64 = {raw:.2} (target ≥ 0.5: {})",
                verdict(raw >= 0.5)
            );
            return;
        };
        let (x1, x64) = (
            r.c1.jobs_per_s() / b1.jobs_per_s,
            r.c64.jobs_per_s() / b64.jobs_per_s,
        );
        println!(
            "rep {rep}: coord / BullMQ jobs/s: q1 {x1:.2}, q64 {x64:.2} (target ≥ 2: {}, {}); \
             p99 coord vs BullMQ: q1 {:.1} vs {} ms, q64 {:.1} vs {} ms (target below: {}, {}); \
             coord / raw at 64 = {raw:.2} (target ≥ 0.5: {})",
            verdict(x1 >= 2.0),
            verdict(x64 >= 2.0),
            r.c1.pct_ms(0.99),
            b1.p99_ms,
            r.c64.pct_ms(0.99),
            b64.p99_ms,
            verdict(r.c1.pct_ms(0.99) < b1.p99_ms),
            verdict(r.c64.pct_ms(0.99) < b64.p99_ms),
            verdict(raw >= 0.5),
        );
    }

    fn summary(all: &[Rep]) {
        println!();
        println!(
            "| rep | coord q1 jobs/s | BullMQ q1 | ×  | coord q64 jobs/s | BullMQ q64 | × | raw 64 jobs/s | coord / raw | p99 ms q1 coord / BullMQ | p99 ms q64 coord / BullMQ | p50 ms q1 coord / BullMQ | p50 ms q64 coord / BullMQ | round trips per job q1 / q64 / raw |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let f = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
        for (i, r) in all.iter().enumerate() {
            let b1 = r.bull.map(|b| b.0);
            let b64 = r.bull.map(|b| b.1);
            println!(
                "| {} | {:.0} | {} | {} | {:.0} | {} | {} | {:.0} | {:.2} | {:.1} / {} | {:.1} / {} | {:.1} / {} | {:.1} / {} | {:.2} / {:.2} / {:.2} |",
                i + 1,
                r.c1.jobs_per_s(),
                f(b1.map(|b| b.jobs_per_s), 0),
                f(b1.map(|b| r.c1.jobs_per_s() / b.jobs_per_s), 2),
                r.c64.jobs_per_s(),
                f(b64.map(|b| b.jobs_per_s), 0),
                f(b64.map(|b| r.c64.jobs_per_s() / b.jobs_per_s), 2),
                r.raw.jobs_per_s(),
                r.c64.jobs_per_s() / r.raw.jobs_per_s(),
                r.c1.pct_ms(0.99),
                f(b1.map(|b| b.p99_ms), 0),
                r.c64.pct_ms(0.99),
                f(b64.map(|b| b.p99_ms), 0),
                r.c1.pct_ms(0.5),
                f(b1.map(|b| b.p50_ms), 0),
                r.c64.pct_ms(0.5),
                f(b64.map(|b| b.p50_ms), 0),
                r.c1.per_job(r.c1.evalsha()),
                r.c64.per_job(r.c64.evalsha()),
                r.raw.per_job(r.raw.raw_round_trips()),
            );
        }
        let m = |g: &dyn Fn(&Rep) -> Option<f64>| median(all.iter().filter_map(g).collect());
        let c1 = m(&|r| Some(r.c1.jobs_per_s()));
        let c64 = m(&|r| Some(r.c64.jobs_per_s()));
        let raw = m(&|r| Some(r.raw.jobs_per_s()));
        let b1 = m(&|r| r.bull.map(|b| b.0.jobs_per_s));
        let b64 = m(&|r| r.bull.map(|b| b.1.jobs_per_s));
        let x1 = m(&|r| r.bull.map(|b| r.c1.jobs_per_s() / b.0.jobs_per_s));
        let x64 = m(&|r| r.bull.map(|b| r.c64.jobs_per_s() / b.1.jobs_per_s));
        let xraw = m(&|r| Some(r.c64.jobs_per_s() / r.raw.jobs_per_s()));
        let p99c1 = m(&|r| Some(r.c1.pct_ms(0.99)));
        let p99c64 = m(&|r| Some(r.c64.pct_ms(0.99)));
        let p99b1 = m(&|r| r.bull.map(|b| b.0.p99_ms));
        let p99b64 = m(&|r| r.bull.map(|b| b.1.p99_ms));
        let p50c1 = m(&|r| Some(r.c1.pct_ms(0.5)));
        let p50c64 = m(&|r| Some(r.c64.pct_ms(0.5)));
        let p50b1 = m(&|r| r.bull.map(|b| b.0.p50_ms));
        let p50b64 = m(&|r| r.bull.map(|b| b.1.p50_ms));
        let rt1 = m(&|r| Some(r.c1.per_job(r.c1.evalsha())));
        let rt64 = m(&|r| Some(r.c64.per_job(r.c64.evalsha())));
        let rtraw = m(&|r| Some(r.raw.per_job(r.raw.raw_round_trips())));
        println!(
            "| median | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} / {} |",
            f(c1, 0),
            f(b1, 0),
            f(x1, 2),
            f(c64, 0),
            f(b64, 0),
            f(x64, 2),
            f(raw, 0),
            f(xraw, 2),
            f(p99c1, 1),
            f(p99b1, 0),
            f(p99c64, 1),
            f(p99b64, 0),
            f(p50c1, 1),
            f(p50b1, 0),
            f(p50c64, 1),
            f(p50b64, 0),
            f(rt1, 2),
            f(rt64, 2),
            f(rtraw, 2),
        );
        let cpu = m(&|r| Some(r.raw.cpu_per_job() / r.c64.cpu_per_job()));
        println!(
            "\nmedian CPU per job at 64 (server + this process): coord {} µs, raw {} µs; raw / \
             coord {}",
            f(m(&|r| Some(r.c64.cpu_per_job())), 0),
            f(m(&|r| Some(r.raw.cpu_per_job())), 0),
            f(cpu, 2),
        );
        println!();
        let ok = |v: Option<bool>| v.map_or("n/a (no BullMQ figures)", verdict);
        println!(
            "targets (medians of the per-repetition ratios): coord / BullMQ q1 {} ≥ 2: {}; q64 {} \
             ≥ 2: {}; p99 below BullMQ's: q1 {} < {}: {}, q64 {} < {}: {}; coord / raw at 64 {} ≥ \
             0.5: {}",
            f(x1, 2),
            ok(x1.map(|x| x >= 2.0)),
            f(x64, 2),
            ok(x64.map(|x| x >= 2.0)),
            f(p99c1, 1),
            f(p99b1, 0),
            ok(p99c1.zip(p99b1).map(|(c, b)| c < b)),
            f(p99c64, 1),
            f(p99b64, 0),
            ok(p99c64.zip(p99b64).map(|(c, b)| c < b)),
            f(xraw, 2),
            verdict(xraw.is_some_and(|x| x >= 0.5)),
        );
    }

    /// Runs the whole anchor on the server at `port` (it has no switch for
    /// one scenario) and returns its `q1` and `q64` lines.
    fn bullmq(anchor: &Anchor, port: u16, jobs: usize) -> Option<(Bull, Bull)> {
        let stdout = anchor.bench(port, jobs, |_| {})?;
        let line = |name: &str| {
            parse_bull(Anchor::said(&stdout, |l| {
                l.split('\t').next() == Some(name)
            })?)
        };
        Some((line("q1")?, line("q64")?))
    }

    /// `q64\tconcurrency=64\t1234 jobs/s\tp50=5ms p99=20ms`.
    fn parse_bull(line: &str) -> Option<Bull> {
        let mut fields = line.split('\t');
        let jobs_per_s = fields
            .nth(2)?
            .strip_suffix(" jobs/s")?
            .trim()
            .parse()
            .ok()?;
        let lat = fields.next()?;
        let ms = |key: &str| -> Option<f64> {
            lat.split(' ')
                .find_map(|f| f.strip_prefix(key))?
                .strip_suffix("ms")?
                .parse()
                .ok()
        };
        Some(Bull {
            jobs_per_s,
            p50_ms: ms("p50=")?,
            p99_ms: ms("p99=")?,
        })
    }
}
