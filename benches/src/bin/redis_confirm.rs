//! Confirmed writes on Redis (decision 0079): lock-and-release cycles per
//! second of one client with `confirm_replicas=1`, against the same client
//! without confirmation, on one master with one replica of its own, in one
//! run.
//!
//! - **seq**: one task, `try_lock` then `release` of one key, in a loop.
//! - **par**: `TASKS` tasks (default 16) of the same client, each on a key
//!   of its own: the writes of one backend at once, which before decision
//!   0079 queued behind each other's `WAIT` on the backend's one
//!   connection.
//!
//! Each pass runs `SECS` seconds (default 3) after 100 warm-up cycles;
//! `REPS` (default 3) repetitions, each repetition's figures and the ratio
//! confirmed / plain, then the medians.
//!
//! ```text
//! cargo build --release -p coord-benches --bin redis_confirm
//! target/release/redis_confirm
//! ```

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    coord_benches::redis_tool::block_on(bench::run());
}

#[cfg(not(madsim))]
mod bench {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicU64, Ordering},
        },
        time::{Duration, Instant},
    };

    use coord_api::Client;
    use coord_benches::redis_tool::{client_with, env_usize, median, server_line};
    use coord_redis::RedisConfig;
    use coord_testkit::redis::RedisServer;

    pub async fn run() {
        let secs = Duration::from_secs(env_usize("SECS", 3) as u64);
        let reps = env_usize("REPS", 3);
        let tasks = env_usize("TASKS", 16);
        let master = RedisServer::start();
        let port = master.port().to_string();
        let _replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        while master.command(&["WAIT", "1", "100"]).ok() != Some(redis::Value::Int(1)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("{}, one replica", server_line(&master));
        let url = |query: &str| format!("redis://127.0.0.1:{port}/0?namespace=cf&{query}");
        let config = |query: &str| RedisConfig::from_url(&url(query)).expect("bench URL");
        let plain = client_with(config(""), "plain").await;
        let confirmed =
            client_with(config("confirm_replicas=1&confirm_timeout=1s"), "confirmed").await;
        let mut ratios: [Vec<f64>; 2] = Default::default();
        for rep in 1..=reps {
            for (i, (name, n)) in [("seq", 1), ("par", tasks)].into_iter().enumerate() {
                let p = cycles(&plain, n, secs).await;
                let c = cycles(&confirmed, n, secs).await;
                println!(
                    "rep {rep} {name:>3} ({n:>2} tasks): plain {p:>8.0}/s  confirmed {c:>8.0}/s  confirmed/plain {:.3}",
                    c / p
                );
                ratios[i].push(c / p);
            }
        }
        for (name, r) in ["seq", "par"].into_iter().zip(ratios) {
            let m = median(r).unwrap_or(f64::NAN);
            println!("median {name}: confirmed/plain {m:.3}");
        }
    }

    /// Lock-and-release cycles per second of `n` tasks of `client` over
    /// `secs`, each on its own key, after 100 warm-up cycles each.
    async fn cycles(client: &Client, n: usize, secs: Duration) -> f64 {
        let (stop, done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let start = Arc::new(tokio::sync::Barrier::new(n + 1));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (client, stop, done, start) =
                    (client.clone(), stop.clone(), done.clone(), start.clone());
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    let lock = client.lock(&key);
                    let cycle = || async {
                        let g = lock.try_lock().await.expect("lock").expect("free");
                        g.release().await.expect("release");
                    };
                    for _ in 0..100 {
                        cycle().await;
                    }
                    start.wait().await;
                    while !stop.load(Ordering::Relaxed) {
                        cycle().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        start.wait().await;
        let began = Instant::now();
        tokio::time::sleep(secs).await;
        let counted = done.load(Ordering::Relaxed);
        let elapsed = began.elapsed();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.await.expect("task");
        }
        counted as f64 / elapsed.as_secs_f64()
    }
}
