//! The Redis load tool: coord's lock + release against a hand-written
//! baseline on the same redis crate and the same server, measured in the same
//! run (rounds alternate so drift hits both alike).
//!
//! - baseline: `SET key holder NX PX ttl` to acquire, an EVALSHA
//!   compare-and-delete to release, on one multiplexed `ConnectionManager`;
//! - coord: `client.lock(key).lock()` then `guard.release()` on a
//!   `RedisBackend` (one multiplexed connection too), default lock options.
//!
//! Scenarios: sequential on distinct keys from one task (target ≥ 0.95× the
//! baseline), 64 tasks on distinct keys (≥ 0.9×), 16 tasks contending for
//! one key (p99 wait ≤ 10 ms, most / fewest acquisitions per task ≤ 1.5).
//!
//! It starts its own `redis-server` (the coord-redis test fixture) and runs
//! for well under a minute:
//!
//! ```text
//! taskset -c 0,1 cargo run --release -p coord-benches --bin redis_load
//! ```
//!
//! On a 2-vCPU VM a loopback round trip costs about twice as much when
//! client and server run on different vCPUs: compare runs placed alike.

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
        sync::Arc,
        time::{Duration, Instant},
    };

    use coord_api::{
        Acquire, Client, DynLeaseBackend, HolderId, InstanceId, Key, LeaseId, LeaseKind,
        LockOptions, Release,
    };
    use coord_redis::{RedisBackend, testing::RedisServer};
    use redis::{AsyncCommands, Script, aio::ConnectionManager};

    const TTL: Duration = Duration::from_secs(30);
    const ROUNDS: usize = 3;
    const SEQUENTIAL_OPS: usize = 3_000;
    const PARALLEL_TASKS: usize = 64;
    const PARALLEL_TIME: Duration = Duration::from_millis(1_500);
    const CONTENDERS: usize = 16;
    const CONTENTION_TIME: Duration = Duration::from_secs(4);

    /// The hand-written lock.
    #[derive(Clone)]
    struct Baseline {
        conn: ConnectionManager,
        release: Arc<Script>,
    }

    impl Baseline {
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
            let n: i64 = self
                .release
                .key(key)
                .arg(holder)
                .invoke_async(&mut conn)
                .await
                .expect("release script");
            assert_eq!(n, 1);
        }
    }

    /// The backend alone (the SPI, no client layer): one acquire, one release.
    async fn spi_lock_release(backend: &DynLeaseBackend, key: &str) {
        let lease = LeaseId {
            kind: LeaseKind::Exclusive,
            key: Key::new(key).unwrap(),
            holder: HolderId::from_parts(InstanceId::new("spi").unwrap(), 7),
        };
        let granted = backend.acquire(&lease, TTL).await.expect("spi acquire");
        assert!(matches!(granted, Acquire::Granted(_)));
        let released = backend.release(&lease).await.expect("spi release");
        assert_eq!(released, Release::Released { remaining: 0 });
    }

    async fn coord_lock_release(client: &Client, key: &str) {
        let guard = client.lock(key).lock().await.expect("coord lock");
        assert!(guard.release().await.expect("coord release"));
    }

    pub async fn run() {
        let server = RedisServer::start();
        let url = server.url();
        let baseline = {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut conn = ConnectionManager::new(client).await.unwrap();
            let _: () = conn.set("warm", "up").await.unwrap();
            Baseline {
                conn,
                release: Arc::new(Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
                )),
            }
        };
        let backend: DynLeaseBackend =
            Arc::new(RedisBackend::connect(server.config("load")).await.unwrap());
        let client = Client::builder(backend.clone())
            .instance_id("load")
            .unwrap()
            .lock_options(
                LockOptions::default()
                    .ttl(TTL)
                    .auto_extend(std::env::var_os("NO_EXTEND").is_none()),
            )
            .build();
        // Warm both up (scripts loaded, connections open).
        baseline.lock_release("bl:warm", "h").await;
        coord_lock_release(&client, "warm").await;

        println!(
            "redis_load: redis-server on 127.0.0.1:{} (no persistence), {} vCPUs",
            server.port(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!();

        // 1. Sequential, distinct keys, one task.
        let (mut base_seq, mut coord_seq, mut spi_seq) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let t = Instant::now();
            for i in 0..SEQUENTIAL_OPS {
                baseline
                    .lock_release(&format!("bl:seq:{round}:{i}"), "h")
                    .await;
            }
            base_seq.push(SEQUENTIAL_OPS as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for i in 0..SEQUENTIAL_OPS {
                coord_lock_release(&client, &format!("seq:{round}:{i}")).await;
            }
            coord_seq.push(SEQUENTIAL_OPS as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for i in 0..SEQUENTIAL_OPS {
                spi_lock_release(&backend, &format!("spi:{round}:{i}")).await;
            }
            spi_seq.push(SEQUENTIAL_OPS as f64 / t.elapsed().as_secs_f64());
        }

        // 2. 64 tasks, distinct keys.
        let (mut base_par, mut coord_par, mut spi_par) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            base_par.push(
                parallel({
                    let b = baseline.clone();
                    move |task, i| {
                        let b = b.clone();
                        async move {
                            b.lock_release(&format!("bl:par:{round}:{task}:{i}"), "h")
                                .await
                        }
                    }
                })
                .await,
            );
            coord_par.push(
                parallel({
                    let c = client.clone();
                    move |task, i| {
                        let c = c.clone();
                        async move { coord_lock_release(&c, &format!("par:{round}:{task}:{i}")).await }
                    }
                })
                .await,
            );
            spi_par.push(
                parallel({
                    let b = backend.clone();
                    move |task, i| {
                        let b = b.clone();
                        async move { spi_lock_release(&b, &format!("spi:par:{round}:{task}:{i}")).await }
                    }
                })
                .await,
            );
        }

        // 3. 16 tasks contending for one key.
        let contention = contend(&client).await;

        let seq_ratio = median(&coord_seq) / median(&base_seq);
        let par_ratio = median(&coord_par) / median(&base_par);
        println!(
            "| scenario | baseline ops/s | coord ops/s | coord / baseline | target | backend alone (SPI) ops/s | SPI / baseline |"
        );
        println!("|---|---:|---:|---:|---|---:|---:|");
        println!(
            "| sequential, distinct keys, 1 task | {:.0} | {:.0} | {:.3} | >= 0.95 {} | {:.0} | {:.3} |",
            median(&base_seq),
            median(&coord_seq),
            seq_ratio,
            verdict(seq_ratio >= 0.95),
            median(&spi_seq),
            median(&spi_seq) / median(&base_seq),
        );
        println!(
            "| {PARALLEL_TASKS} tasks, distinct keys | {:.0} | {:.0} | {:.3} | >= 0.9 {} | {:.0} | {:.3} |",
            median(&base_par),
            median(&coord_par),
            par_ratio,
            verdict(par_ratio >= 0.9),
            median(&spi_par),
            median(&spi_par) / median(&base_par),
        );
        println!();
        println!(
            "(medians of {ROUNDS} alternating rounds; per-round ops/s: baseline seq {base_seq:.0?}, coord seq {coord_seq:.0?}, baseline par {base_par:.0?}, coord par {coord_par:.0?})"
        );
        println!();
        let c = contention;
        println!("| {CONTENDERS} tasks, one key, {CONTENTION_TIME:?} | value | target |");
        println!("|---|---:|---|");
        println!(
            "| acquisitions | {} ({:.0}/s) | |",
            c.total,
            c.total as f64 / CONTENTION_TIME.as_secs_f64()
        );
        println!("| wait p50 | {:.2} ms | |", ms(c.p50));
        println!(
            "| wait p99 | {:.2} ms | <= 10 ms {} |",
            ms(c.p99),
            verdict(c.p99 <= Duration::from_millis(10))
        );
        println!("| wait max | {:.2} ms | |", ms(c.max));
        println!(
            "| acquisitions per task, most / fewest | {} / {} = {:.2} | <= 1.5 {} |",
            c.most,
            c.fewest,
            c.most as f64 / c.fewest.max(1) as f64,
            verdict(c.most as f64 <= 1.5 * c.fewest as f64)
        );
        if std::env::var_os("STATS").is_some() {
            println!("{:?}", server.command(&["INFO", "commandstats"]).unwrap());
        }
        drop(server);
    }

    /// Ops per second of `PARALLEL_TASKS` tasks each running `op(task, i)` in
    /// a loop for `PARALLEL_TIME`.
    async fn parallel<F, Fut>(op: F) -> f64
    where
        F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let start = Instant::now();
        let end = start + PARALLEL_TIME;
        let tasks: Vec<_> = (0..PARALLEL_TASKS)
            .map(|task| {
                let op = op.clone();
                tokio::spawn(async move {
                    let mut i = 0;
                    while Instant::now() < end {
                        op(task, i).await;
                        i += 1;
                    }
                    i
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total as f64 / start.elapsed().as_secs_f64()
    }

    struct Contention {
        total: usize,
        p50: Duration,
        p99: Duration,
        max: Duration,
        most: usize,
        fewest: usize,
    }

    async fn contend(client: &Client) -> Contention {
        let end = Instant::now() + CONTENTION_TIME;
        let mut tasks = Vec::new();
        for _ in 0..CONTENDERS {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let lock = c.lock("contended");
                let mut waits = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    let guard = lock.lock().await.expect("contended lock");
                    waits.push(t.elapsed());
                    assert!(guard.release().await.expect("release"));
                }
                waits
            }));
        }
        let mut all = Vec::new();
        let mut counts = Vec::new();
        for t in tasks {
            let w = t.await.unwrap();
            counts.push(w.len());
            all.extend(w);
        }
        all.sort();
        let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
        Contention {
            total: all.len(),
            p50: pct(0.5),
            p99: pct(0.99),
            max: *all.last().unwrap(),
            most: *counts.iter().max().unwrap(),
            fewest: *counts.iter().min().unwrap(),
        }
    }

    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    fn verdict(ok: bool) -> &'static str {
        if ok { "ok" } else { "MISSED" }
    }
}
