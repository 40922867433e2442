//! Compare-and-set throughput on Redis: 16 clients incrementing one
//! counter, coord's `State::update` against a hand-written optimistic loop
//! with WATCH / MULTI / EXEC, on the same redis-server in one run.
//!
//! - **coord**: 16 tasks, each with a client of its own (a `RedisBackend`:
//!   one multiplexed connection), each calling `update(|n| n + 1)` on the
//!   value `counter` in a loop. One `update` reads once, then writes by
//!   compare-and-set; a conflict answers with the value that won, so each
//!   retry is one round trip (one EVALSHA).
//! - **raw+b**: the same loop with `State::update`'s default back-off
//!   after each conflict (a wait drawn from 0..1 ms, doubling up to 16 ms;
//!   under half a millisecond: none), to show what the back-off alone does
//!   for a hand-written loop.
//! - **raw**: 16 tasks, each on a connection of its own (WATCH is a
//!   connection's state), the best hand-written loop: `WATCH k` + `GET k`
//!   pipelined (one round trip), then `MULTI` / `SET k n+1` / `EXEC`
//!   pipelined (one more); a nil `EXEC` (another client changed `k`) starts
//!   again.
//!
//! Each pass runs `SECS` seconds (default 3) after a warm-up of 200
//! updates; reported: successful updates per second, attempts per update
//! (retries included) and the counter checked against the updates counted
//! (an update lost would show there). `REPS` (default 3) repetitions; each
//! repetition's figures and the ratio coord / raw, then the medians and the
//! target (coord ≥ 1.5× raw).
//!
//! ```text
//! cargo build --release -p coord-benches --bin redis_state
//! taskset -c 0 target/release/redis_state
//! ```
//!
//! The server and this process inherit the placement: on this 2-vCPU VM
//! compare runs placed alike.

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

    use coord_benches::redis_tool::{
        Window, Work, client, env_usize, median, server_line, verdict,
    };
    use coord_testkit::redis::RedisServer;

    const CLIENTS: usize = 16;
    const WARMUP: u64 = 200;
    const TARGET: f64 = 1.5;

    /// One pass: successful updates and their attempts in the window
    /// counted, its length, the counter's end and every update counted.
    struct Pass {
        updates: u64,
        attempts: u64,
        elapsed: Duration,
        end: u64,
        total: u64,
        /// The server's commands and both sides' CPU in the window.
        work: Work,
    }

    impl Pass {
        fn per_sec(&self) -> f64 {
            self.updates as f64 / self.elapsed.as_secs_f64()
        }

        fn line(&self, name: &str) -> String {
            format!(
                "{name:>5}: {:>8.0} updates/s, {:.2} attempts per update; counter {} after {} updates: {}",
                self.per_sec(),
                self.attempts as f64 / self.updates.max(1) as f64,
                self.end,
                self.total,
                if self.end == self.total {
                    "exact"
                } else {
                    "LOST UPDATES"
                },
            ) + &self.costs()
        }

        /// Server and client CPU per update, and the commands per update.
        fn costs(&self) -> String {
            let n = self.updates.max(1) as f64;
            let commands: Vec<String> = (self.work.commands.iter())
                .map(|(c, (calls, usec))| {
                    format!(
                        "{c} {:.2}/update ({:.1} µs each)",
                        *calls as f64 / n,
                        *usec as f64 / (*calls).max(1) as f64
                    )
                })
                .collect();
            format!(
                "\n       server CPU {:.0} µs/update, client CPU {:.0} µs/update; {}",
                self.work.server_cpu * 1e6 / n,
                self.work.client_cpu * 1e6 / n,
                commands.join(", ")
            )
        }
    }

    /// Counts of the tasks, and the switches that start and end the
    /// window counted.
    #[derive(Default)]
    struct Tally {
        counting: AtomicBool,
        stopped: AtomicBool,
        /// Every successful update, warm-up and tail included.
        total: AtomicU64,
        updates: AtomicU64,
        attempts: AtomicU64,
    }

    impl Tally {
        fn done(&self, attempts: u64) {
            self.total.fetch_add(1, Ordering::Relaxed);
            if self.counting.load(Ordering::Relaxed) {
                self.updates.fetch_add(1, Ordering::Relaxed);
                self.attempts.fetch_add(attempts, Ordering::Relaxed);
            }
        }

        fn go_on(&self) -> bool {
            !self.stopped.load(Ordering::Relaxed)
        }
    }

    /// Lets the tasks warm up, counts for `secs`, then lets every task end
    /// its update and stop.
    async fn measure(
        server: &RedisServer,
        tally: &Arc<Tally>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
        secs: u64,
    ) -> (u64, u64, Duration, Work) {
        while tally.total.load(Ordering::Relaxed) < WARMUP {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let window = Window::open(server);
        let start = Instant::now();
        tally.counting.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        tally.counting.store(false, Ordering::Relaxed);
        let elapsed = start.elapsed();
        let work = window.close(server);
        tally.stopped.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("a task");
        }
        let updates = tally.updates.load(Ordering::Relaxed);
        (
            updates,
            tally.attempts.load(Ordering::Relaxed),
            elapsed,
            work,
        )
    }

    async fn coord_pass(server: &RedisServer, key: &str, secs: u64) -> Pass {
        let tally = Arc::new(Tally::default());
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let c = client(server, &format!("cas-{i}")).await;
            let tally = tally.clone();
            let key = key.to_owned();
            tasks.push(tokio::spawn(async move {
                let counter = c.state::<u64>(&key).max_attempts(10_000);
                while tally.go_on() {
                    let mut attempts = 0;
                    counter
                        .update(|n| {
                            attempts += 1;
                            n.copied().unwrap_or(0) + 1
                        })
                        .await
                        .expect("update");
                    tally.done(attempts);
                }
            }));
        }
        let (updates, attempts, elapsed, work) = measure(server, &tally, tasks, secs).await;
        let c = client(server, "reader").await;
        let end = c
            .state::<u64>(key)
            .get()
            .await
            .unwrap()
            .map_or(0, |v| v.value);
        let total = tally.total.load(Ordering::Relaxed);
        Pass {
            updates,
            attempts,
            elapsed,
            end,
            total,
            work,
        }
    }

    async fn raw_pass(server: &RedisServer, key: &str, secs: u64, backoff: bool) -> Pass {
        let tally = Arc::new(Tally::default());
        let url = format!("redis://127.0.0.1:{}/", server.port());
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let client = redis::Client::open(url.as_str()).expect("client");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let tally = tally.clone();
            let key = key.to_owned();
            tasks.push(tokio::spawn(async move {
                while tally.go_on() {
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let (n,): (Option<u64>,) = redis::pipe()
                            .cmd("WATCH")
                            .arg(&key)
                            .ignore()
                            .get(&key)
                            .query_async(&mut conn)
                            .await
                            .expect("watch + get");
                        let done: Option<()> = redis::pipe()
                            .atomic()
                            .set(&key, n.unwrap_or(0) + 1)
                            .ignore()
                            .query_async(&mut conn)
                            .await
                            .expect("multi + set + exec");
                        if done.is_some() {
                            break;
                        }
                        if backoff {
                            conflict_wait(attempts).await;
                        }
                    }
                    tally.done(attempts);
                }
            }));
        }
        let (updates, attempts, elapsed, work) = measure(server, &tally, tasks, secs).await;
        let end: u64 = match server.command(&["GET", key]) {
            Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).parse().unwrap(),
            other => panic!("GET {key}: {other:?}"),
        };
        let total = tally.total.load(Ordering::Relaxed);
        Pass {
            updates,
            attempts,
            elapsed,
            end,
            total,
            work,
        }
    }

    /// The wait `State::update` makes after its `conflicts`-th conflict in
    /// a row (its default back-off), for the raw loop given the same.
    async fn conflict_wait(conflicts: u64) {
        let cap = Duration::from_millis(1 << (conflicts - 1).min(4));
        let wait = cap.mul_f64(rand::random_range(0.0..1.0));
        if wait >= Duration::from_micros(500) {
            tokio::time::sleep(wait).await;
        }
    }

    pub async fn run() {
        let server = RedisServer::start();
        let secs = env_usize("SECS", 3) as u64;
        let reps = env_usize("REPS", 3);
        println!("{}", server_line(&server));
        println!(
            "compare-and-set: {CLIENTS} clients incrementing one counter for {secs} s per pass, {reps} repetitions\n"
        );
        let mut ratios = Vec::new();
        let (mut coord, mut raw, mut raw_backoff) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let c = coord_pass(&server, &format!("counter-{rep}"), secs).await;
            let r = raw_pass(&server, &format!("raw-counter-{rep}"), secs, false).await;
            let rb = raw_pass(&server, &format!("raw-backoff-{rep}"), secs, true).await;
            let ratio = c.per_sec() / r.per_sec();
            println!(
                "repetition {}:\n{}\n{}\n{}\n  ratio coord / raw: {ratio:.2} (coord / raw with coord's back-off: {:.2})",
                rep + 1,
                c.line("coord"),
                r.line("raw"),
                rb.line("raw+b"),
                c.per_sec() / rb.per_sec(),
            );
            raw_backoff.push(rb.per_sec());
            coord.push(c.per_sec());
            raw.push(r.per_sec());
            ratios.push(ratio);
        }
        let ratio = median(ratios).unwrap_or(f64::NAN);
        println!(
            "\nmedians: coord {:.0} updates/s, raw WATCH/MULTI/EXEC {:.0} updates/s (with coord's back-off {:.0}), ratio {ratio:.2} (target >= {TARGET}: {})",
            median(coord).unwrap_or(f64::NAN),
            median(raw).unwrap_or(f64::NAN),
            median(raw_backoff).unwrap_or(f64::NAN),
            verdict(ratio >= TARGET),
        );
    }
}
