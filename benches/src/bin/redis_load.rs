//! The Redis load tool: coord's lock + release against a hand-written
//! baseline on the same redis crate and the same server, measured in the same
//! run.
//!
//! - baseline: `SET key holder NX PX ttl` to acquire, an EVALSHA
//!   compare-and-delete to release, on one multiplexed `ConnectionManager`;
//! - coord: `client.lock(key).lock()` then `guard.release()` on a
//!   `RedisBackend` (one multiplexed connection too), default lock options
//!   (auto-extension on; `NO_EXTEND=1` turns it off);
//! - SPI: the backend alone (`acquire` + `release`, no client layer);
//! - floor: the least any lock with fencing tokens on the server's clock can
//!   send — an EVALSHA of `TIME` + `SET NX PX` returning the token as an
//!   integer (no counter for restarts, no reentrancy, no waiter wake-up),
//!   then the baseline's release. Its ratio is the ceiling for coord's.
//!
//! Fairness: the baseline's connection is set up like the backend's (same
//! `ConnectionManager` settings, TCP_NODELAY, RESP2; the baseline bounds each
//! request by the crate's response timeout, the backend by its operation
//! timeout of the same length instead, so one timer per request on both
//! sides); every contender gets a warm-up before the measured rounds; the
//! rounds rotate the order of the contenders; the figures are medians of the
//! rounds with their quartiles; the ratio to the baseline is the median over
//! the rounds of the ratio within each round. Server and client CPU per
//! operation come from the server's `INFO cpu` and this process's threads'
//! `schedstat`; the server's time inside the commands each contender sends
//! (`INFO commandstats`: a script's time includes the calls it makes; reading
//! requests and writing replies are not included) is shown per operation
//! too, with a per-command breakdown under the table.
//!
//! Scenarios: sequential on distinct keys from one task (target ≥ 0.95× the
//! baseline), 64 tasks on distinct keys (≥ 0.9×), 16 tasks contending for
//! one key (p99 wait ≤ 10 ms, most / fewest acquisitions per task ≤ 1.5).
//! `fair`: the same 16 tasks handing one lock over, a plain lock and a fair
//! one (decision 0033) in alternating rounds (`coord_benches::fair_load`;
//! fair lock targets: most / fewest ≤ 1.1, p99 wait ≤ 5 ms).
//! `ONLY=seq,par,contend,fair` picks scenarios, `ROUNDS=n` the number of rounds,
//! `WHO=coord` measures one contender alone (for profiling), `STATS=1` prints
//! the server's command statistics at the end.
//!
//! It starts its own `redis-server` (the coord-testkit fixture) and runs
//! for about a minute:
//!
//! ```text
//! taskset -c 0 cargo run --release -p coord-benches --bin redis_load
//! ```
//!
//! On a 2-vCPU VM a loopback round trip between two vCPUs can cost several
//! times one on a single vCPU, and varies from run to run: compare runs
//! placed alike (`taskset -c 0` has been the steadiest).

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(load::run());
}

#[cfg(not(madsim))]
mod load {
    use std::{
        collections::BTreeMap,
        future::Future,
        pin::Pin,
        sync::Arc,
        time::{Duration, Instant},
    };

    use coord_api::{
        Client, HolderId, InstanceId, Key, LeaseOptions,
        spi::{Acquire, DynBackend, LeaseId, LeaseKind, Release},
    };
    use coord_benches::fair_load::{TASKS, contend};
    use coord_redis::{RedisBackend, RedisConfig};
    use coord_testkit::redis::RedisServer;
    use redis::{
        IntoConnectionInfo, Script,
        aio::{ConnectionManager, ConnectionManagerConfig},
        io::tcp::TcpSettings,
    };

    const TTL: Duration = Duration::from_secs(30);
    const DEFAULT_ROUNDS: usize = 12;
    const SEQUENTIAL_TIME: Duration = Duration::from_millis(250);
    const PARALLEL_TASKS: usize = 64;
    const PARALLEL_TIME: Duration = Duration::from_millis(400);
    const WARMUP_TIME: Duration = Duration::from_millis(300);
    const CONTENTION_TIME: Duration = Duration::from_secs(2);

    /// The hand-written lock.
    #[derive(Clone)]
    struct Baseline {
        conn: ConnectionManager,
        release: Arc<Script>,
        /// The floor's acquire: a fencing token from the server's clock.
        fenced_acquire: Arc<Script>,
    }

    impl Baseline {
        /// A connection set up like `RedisBackend`'s (same manager settings,
        /// TCP_NODELAY, RESP2, the configuration's timeouts).
        async fn connect(url: &str, config: &RedisConfig) -> Baseline {
            let info = url
                .into_connection_info()
                .unwrap()
                .set_tcp_settings(TcpSettings::default().set_nodelay(true));
            let client = redis::Client::open(info).unwrap();
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout()))
                .set_response_timeout(Some(config.timeout()))
                .set_number_of_retries(3)
                .set_max_delay(Duration::from_millis(500));
            Baseline {
                conn: ConnectionManager::new_with_config(client, manager)
                    .await
                    .unwrap(),
                release: Arc::new(Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
                )),
                fenced_acquire: Arc::new(Script::new(
                    "local t = redis.call('TIME') \
                     if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
                     return t[1] * 1000000 + t[2] end return -1",
                )),
            }
        }

        /// The floor: a fenced acquire script, then the baseline's release.
        async fn fenced_lock_release(&self, key: &str, holder: &str) {
            let mut conn = self.conn.clone();
            let token: i64 = self
                .fenced_acquire
                .key(key)
                .arg(holder)
                .arg(TTL.as_millis() as u64)
                .invoke_async(&mut conn)
                .await
                .expect("fenced acquire script");
            assert!(token > 0, "floor key {key} was taken");
            self.release(&mut conn, key, holder).await;
        }

        /// The compare-and-delete release both locks here use.
        async fn release(&self, conn: &mut ConnectionManager, key: &str, holder: &str) {
            let n: i64 = self
                .release
                .key(key)
                .arg(holder)
                .invoke_async(conn)
                .await
                .expect("release script");
            assert_eq!(n, 1);
        }

        async fn lock_release(&self, key: &str, holder: &str) {
            let mut conn = self.conn.clone();
            let ok: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(holder)
                .arg("NX")
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .expect("SET NX PX");
            assert!(ok.is_some(), "baseline key {key} was taken");
            self.release(&mut conn, key, holder).await;
        }
    }

    /// The backend alone (the SPI, no client layer): one acquire, one release.
    async fn spi_lock_release(backend: &DynBackend, key: &str) {
        let lease = LeaseId {
            kind: LeaseKind::Exclusive,
            key: Key::new(key).unwrap(),
            holder: HolderId::new(InstanceId::new("spi").unwrap()),
        };
        let locks = backend.locks().expect("the lock family");
        let granted = locks.acquire(&lease, TTL).await.expect("spi acquire");
        assert!(matches!(granted, Acquire::Granted(_)));
        let released = locks.release(&lease).await.expect("spi release");
        assert_eq!(released, Release::Released { remaining: 0 });
    }

    async fn coord_lock_release(client: &Client, key: &str) {
        let guard = client.lock(key).lock().await.expect("coord lock");
        assert!(guard.release().await.expect("coord release"));
    }

    type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;
    /// One lock + release on the key named by (prefix, task, i).
    type Op = Arc<dyn Fn(String) -> BoxFut + Send + Sync>;

    /// An [`Op`] running `f` on a clone of `state` and the key.
    fn op<S, F, Fut>(state: &S, f: F) -> Op
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = state.clone();
        Arc::new(move |key: String| -> BoxFut { Box::pin(f(state.clone(), key)) })
    }

    struct Contender {
        name: &'static str,
        prefix: &'static str,
        op: Op,
        /// The commands it sends (INFO commandstats also counts those its
        /// scripts call).
        top_level: &'static [&'static str],
    }

    const BASELINE_SENDS: &[&str] = &["set", "evalsha", "script|load"];
    const COORD_SENDS: &[&str] = &["evalsha", "script|load"];

    /// One measurement: operations per second, CPU microseconds per
    /// operation spent by the server and by this process, and the server's
    /// command statistics over the measurement.
    #[derive(Clone, Debug)]
    struct Sample {
        ops: f64,
        total: u64,
        server_us: f64,
        client_us: f64,
        commands: CommandStats,
    }

    /// Command name → (calls, microseconds), from `INFO commandstats`.
    /// Top-level commands only: a script's time includes the calls it makes,
    /// which are listed too but not added again.
    type CommandStats = BTreeMap<String, (u64, u64)>;

    fn command_stats(server: &RedisServer) -> CommandStats {
        let info = match server.command(&["INFO", "commandstats"]) {
            Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(redis::Value::VerbatimString { text, .. }) => text,
            other => panic!("INFO commandstats replied {other:?}"),
        };
        info.lines()
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

    /// `after - before`, without the commands this tool sends itself.
    fn command_diff(before: &CommandStats, after: &CommandStats) -> CommandStats {
        after
            .iter()
            .filter(|(name, _)| !name.starts_with("info"))
            .map(|(name, (calls, usec))| {
                let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
                (name.clone(), (calls - c0, usec - u0))
            })
            .filter(|(_, (calls, _))| *calls > 0)
            .collect()
    }

    /// Microseconds per operation the server spent inside the commands in
    /// `top_level` (those the contender sends, as opposed to those its
    /// scripts call).
    fn command_us(commands: &CommandStats, top_level: &[&str], ops: u64) -> f64 {
        let usec: u64 = commands
            .iter()
            .filter(|(name, _)| top_level.contains(&name.as_str()))
            .map(|(_, (_, usec))| usec)
            .sum();
        usec as f64 / ops.max(1) as f64
    }

    /// The server's and this process's CPU time, in seconds.
    struct Cpu {
        server: f64,
        client: f64,
    }

    fn cpu(server: &RedisServer) -> Cpu {
        let info = match server.command(&["INFO", "cpu"]) {
            Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(redis::Value::VerbatimString { text, .. }) => text,
            other => panic!("INFO cpu replied {other:?}"),
        };
        let server_s = info
            .lines()
            .filter_map(|l| {
                l.strip_prefix("used_cpu_user:")
                    .or_else(|| l.strip_prefix("used_cpu_sys:"))
            })
            .map(|v| v.trim().parse::<f64>().unwrap())
            .sum();
        // Time on CPU of every thread of this process, in ns (the first
        // field of each thread's schedstat).
        let mut client_ns = 0u64;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
                client_ns += stat
                    .split(' ')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Cpu {
            server: server_s,
            client: client_ns as f64 / 1e9,
        }
    }

    async fn measure(
        server: &RedisServer,
        tasks: usize,
        time: Duration,
        c: &Contender,
        round: &str,
    ) -> Sample {
        let commands_before = command_stats(server);
        let before = cpu(server);
        let start = Instant::now();
        let end = start + time;
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let op = c.op.clone();
                let prefix = format!("{}:{round}:{task}", c.prefix);
                tokio::spawn(async move {
                    let mut i = 0usize;
                    while Instant::now() < end {
                        op(format!("{prefix}:{i}")).await;
                        i += 1;
                    }
                    i
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let after = cpu(server);
        let commands = command_diff(&commands_before, &command_stats(server));
        let n = total.max(1) as f64;
        Sample {
            ops: total as f64 / elapsed,
            total: total as u64,
            server_us: (after.server - before.server) * 1e6 / n,
            client_us: (after.client - before.client) * 1e6 / n,
            commands,
        }
    }

    /// Runs `contenders` for `rounds` rounds with `tasks` tasks each, after
    /// a warm-up, rotating their order every round.
    async fn scenario(
        server: &RedisServer,
        name: &str,
        tasks: usize,
        time: Duration,
        rounds: usize,
        contenders: &[Contender],
    ) -> Vec<Vec<Sample>> {
        for c in contenders {
            measure(server, tasks, WARMUP_TIME, c, &format!("{name}:warm")).await;
        }
        let mut samples = vec![Vec::new(); contenders.len()];
        for round in 0..rounds {
            for j in 0..contenders.len() {
                let idx = (round + j) % contenders.len();
                let s = measure(
                    server,
                    tasks,
                    time,
                    &contenders[idx],
                    &format!("{name}:{round}"),
                )
                .await;
                samples[idx].push(s);
            }
        }
        samples
    }

    fn report(name: &str, target: f64, contenders: &[Contender], samples: &[Vec<Sample>]) -> f64 {
        let mut ratio_coord = 0.0;
        for (c, s) in contenders.iter().zip(samples) {
            let ops: Vec<f64> = s.iter().map(|s| s.ops).collect();
            let med = median(ops.iter().copied());
            // The ratio to the baseline of the same round (the machine's
            // other load hits both alike), median over the rounds.
            let per_round: Vec<f64> = s
                .iter()
                .zip(&samples[0])
                .map(|(x, b)| x.ops / b.ops)
                .collect();
            let ratio = median(per_round.iter().copied());
            let (lo, hi) = quartiles(&per_round);
            if c.name == "coord" {
                ratio_coord = ratio;
            }
            println!(
                "| {name} | {} | {med:.0} | {:.0}–{:.0} | {ratio:.3} ({lo:.2}–{hi:.2}) | {} | {:.1} | {:.1} | {:.1} |",
                c.name,
                ops.iter().copied().fold(f64::INFINITY, f64::min),
                ops.iter().copied().fold(0.0, f64::max),
                if c.name == "coord" {
                    format!(">= {target} {}", verdict(ratio >= target))
                } else {
                    String::new()
                },
                median(s.iter().map(|s| s.server_us)),
                median(
                    s.iter()
                        .map(|s| command_us(&s.commands, c.top_level, s.total))
                ),
                median(s.iter().map(|s| s.client_us)),
            );
        }
        ratio_coord
    }

    /// Per contender, over all rounds: calls per operation and microseconds
    /// per call of every command the server ran.
    fn breakdown(name: &str, contenders: &[Contender], samples: &[Vec<Sample>]) {
        for (c, s) in contenders.iter().zip(samples) {
            let ops: u64 = s.iter().map(|s| s.total).sum();
            let mut sum = CommandStats::new();
            for sample in s {
                for (cmd, (calls, usec)) in &sample.commands {
                    let e = sum.entry(cmd.clone()).or_default();
                    e.0 += calls;
                    e.1 += usec;
                }
            }
            let parts: Vec<String> = sum
                .iter()
                .map(|(cmd, (calls, usec))| {
                    format!(
                        "{cmd}{} {:.2}/op × {:.2} µs",
                        if c.top_level.contains(&cmd.as_str()) {
                            ""
                        } else {
                            " (in scripts)"
                        },
                        *calls as f64 / ops.max(1) as f64,
                        *usec as f64 / (*calls).max(1) as f64
                    )
                })
                .collect();
            println!(
                "- {name}, {}: in commands {:.2} µs/op: {}",
                c.name,
                command_us(&sum, c.top_level, ops),
                parts.join(", ")
            );
        }
    }

    pub async fn run() {
        let server = RedisServer::start();
        let url = server.url();
        let config = server.config("load");
        let rounds = std::env::var("ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS);
        let only = std::env::var("ONLY").unwrap_or_else(|_| "seq,par,contend,fair".into());
        let baseline = Baseline::connect(&url, &config).await;
        let backend: DynBackend = Arc::new(RedisBackend::connect(config).await.unwrap());
        let client = Client::builder(backend.clone())
            .instance_id("load")
            .unwrap()
            .lease_options(
                LeaseOptions::default()
                    .ttl(TTL)
                    .auto_extend(std::env::var_os("NO_EXTEND").is_none()),
            )
            .build();
        let contenders = vec![
            Contender {
                name: "baseline",
                prefix: "bl",
                top_level: BASELINE_SENDS,
                op: op(&baseline, |b, key| async move {
                    b.lock_release(&key, "holder").await
                }),
            },
            Contender {
                name: "coord",
                prefix: "co",
                top_level: COORD_SENDS,
                op: op(&client, |c, key| async move {
                    coord_lock_release(&c, &key).await
                }),
            },
            Contender {
                name: "SPI",
                prefix: "spi",
                top_level: COORD_SENDS,
                op: op(&backend, |b, key| async move {
                    spi_lock_release(&b, &key).await
                }),
            },
            Contender {
                name: "floor",
                prefix: "fl",
                top_level: COORD_SENDS,
                op: op(&baseline, |b, key| async move {
                    b.fenced_lock_release(&key, "holder").await
                }),
            },
        ];

        // WHO=coord (or baseline, SPI, floor) measures one contender alone, for
        // profiling; the ratios are then meaningless.
        let contenders: Vec<Contender> = match std::env::var("WHO") {
            Ok(who) => contenders.into_iter().filter(|c| c.name == who).collect(),
            Err(_) => contenders,
        };
        println!(
            "redis_load: redis-server on 127.0.0.1:{} (no persistence), {} vCPUs, {rounds} rounds, auto-extension {}",
            server.port(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            if std::env::var_os("NO_EXTEND").is_none() {
                "on"
            } else {
                "off"
            },
        );
        println!();
        println!(
            "| scenario | who | ops/s (median) | ops/s min–max | / baseline: median of rounds (quartiles) | target | server µs/op | server in commands µs/op | client µs/op |"
        );
        println!("|---|---|---:|---:|---:|---|---:|---:|---:|");
        let mut breakdowns = Vec::new();
        if only.contains("seq") {
            let s = scenario(&server, "seq", 1, SEQUENTIAL_TIME, rounds, &contenders).await;
            report("sequential, distinct keys, 1 task", 0.95, &contenders, &s);
            breakdowns.push(("sequential".to_owned(), s));
        }
        if only.contains("par") {
            let s = scenario(
                &server,
                "par",
                PARALLEL_TASKS,
                PARALLEL_TIME,
                rounds,
                &contenders,
            )
            .await;
            report(
                &format!("{PARALLEL_TASKS} tasks, distinct keys"),
                0.9,
                &contenders,
                &s,
            );
            breakdowns.push((format!("{PARALLEL_TASKS} tasks"), s));
        }
        if !breakdowns.is_empty() {
            println!();
            println!("Server time in commands (INFO commandstats), all rounds:");
            for (name, s) in &breakdowns {
                breakdown(name, &contenders, s);
            }
        }
        println!();

        if only.contains("contend") {
            contend(&client, "contended", false, WARMUP_TIME).await;
            let mut p99s = Vec::new();
            println!(
                "| {TASKS} tasks, one key, round of {CONTENTION_TIME:?} | acquisitions/s | wait p50 | wait p99 | wait max | most / fewest per task |"
            );
            println!("|---|---:|---:|---:|---:|---:|");
            let mut worst_fair: f64 = 0.0;
            for round in 0..rounds.min(3) {
                let c = contend(&client, "contended", false, CONTENTION_TIME).await;
                let fair = c.spread();
                worst_fair = worst_fair.max(fair);
                println!(
                    "| round {round} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} / {} = {fair:.2} |",
                    c.total as f64 / CONTENTION_TIME.as_secs_f64(),
                    ms(c.p50),
                    ms(c.p99),
                    ms(c.max),
                    c.most,
                    c.fewest,
                );
                p99s.push(ms(c.p99));
            }
            let p99 = median(p99s.iter().copied());
            println!();
            println!(
                "contention: median p99 {p99:.2} ms (target <= 10 ms {}), worst most/fewest {worst_fair:.2} (target <= 1.5 {})",
                verdict(p99 <= 10.0),
                verdict(worst_fair <= 1.5)
            );
        }
        if only.contains("fair") {
            println!();
            coord_benches::fair_load::report(&client, rounds.min(4), &url).await;
        }
        if std::env::var_os("STATS").is_some() {
            println!("{:?}", server.command(&["INFO", "commandstats"]).unwrap());
        }
        drop(server);
    }

    fn median(v: impl Iterator<Item = f64>) -> f64 {
        let mut v: Vec<f64> = v.collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// The first and third quartiles.
    fn quartiles(v: &[f64]) -> (f64, f64) {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 4], v[(v.len() * 3) / 4])
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    fn verdict(ok: bool) -> &'static str {
        if ok { "ok" } else { "MISSED" }
    }
}
