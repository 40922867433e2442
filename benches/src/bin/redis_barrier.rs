//! Barriers and latches on Redis: how long a round of a cyclic barrier takes
//! to reach every waiter, and how fast a large latch is counted down.
//!
//! - **barrier rounds**: 16 participants meet at one cyclic barrier, round
//!   after round (`ROUNDS`, default 300, after 20 rounds of warm-up), each
//!   with `wait_in(next)`. Per round, 15 of them arrive first (the tool
//!   waits until the record shows their 15 live arrivals, and 5 ms more so
//!   that each is asleep on its watch), then the 16th is released; the clock
//!   starts the instant before its `wait_in` is called (it sends the arrive
//!   request next) and stops when the last of the 16 has returned
//!   `Tripped`: the arrival that trips, the PUBLISH of the generation's end,
//!   and every waiter's wake-up, arrival again (a wake-up is a hint) and
//!   return. One clock (`std::time::Instant`) for every participant.
//!   Reported: that time's p50 / p99 / max over the rounds (target p99
//!   ≤ 3 ms on loopback), and apart the tripping participant's own `wait_in`
//!   and the first waiter's return. Each participant has a `RedisBackend` of
//!   its own (its own connection and pub/sub subscription), as separate
//!   processes would: on a shared backend the 15 wake-ups would be one
//!   message on one subscription and one multiplexed connection, which is
//!   not what a deployment sees (`SHARED=1` measures that, for comparison).
//! - **latch**: a latch set to 1000 is counted down by 1000 participants
//!   (distinct ids), from 64 tasks (each on a `RedisBackend` of its own,
//!   about 16 count-downs each, one after another), while one more client
//!   waits on it; `LATCH_REPS` times (default 5; the latch is set again at
//!   zero, a new generation). Reported: count-downs per second (1000 over the
//!   time from the first count-down sent to the last reply), the time to open
//!   (from the first count-down sent until the waiter returned `Opened`) and
//!   the waiter's lag behind the last reply. Every count-down's `remaining`
//!   is checked: together they are 0..1000, each once.
//!
//! `ONLY=barrier,latch` picks scenarios. It starts its own `redis-server`
//! (the coord-testkit fixture) and runs for a few seconds:
//!
//! ```text
//! taskset -c 0 cargo run --release -p coord-benches --bin redis_barrier
//! ```
//!
//! As for `redis_load`: on a 2-vCPU VM a loopback round trip between two
//! vCPUs costs several times one on a single vCPU and varies from run to
//! run; compare runs placed alike (`taskset -c 0` has been the steadiest).

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
        sync::Arc,
        time::{Duration, Instant},
    };

    use coord_api::{Client, LatchWait, LeaseOptions, spi::DynBackend};
    use coord_benches::redis_tool::{ms, verdict};
    use coord_redis::RedisBackend;
    use coord_testkit::redis::RedisServer;
    use tokio::sync::{mpsc, watch};

    const PARTIES: usize = 16;
    const DEFAULT_ROUNDS: usize = 300;
    const WARMUP_ROUNDS: usize = 20;
    /// Long enough that no renewal (a third of it) falls inside a round.
    const TTL: Duration = Duration::from_secs(30);
    const SETTLE: Duration = Duration::from_millis(5);
    const LATCH_COUNT: usize = 1000;
    const LATCH_TASKS: usize = 64;
    const DEFAULT_LATCH_REPS: usize = 5;

    async fn client(server: &RedisServer, name: &str) -> Client {
        let backend = RedisBackend::connect(server.config("bench"))
            .await
            .expect("connect");
        client_on(Arc::new(backend), name)
    }

    fn client_on(backend: DynBackend, name: &str) -> Client {
        Client::builder(backend)
            .instance_id(name)
            .expect("instance id")
            .lease_options(
                LeaseOptions::default()
                    .ttl(TTL)
                    .wait_timeout(Some(Duration::from_secs(10))),
            )
            .build()
    }

    fn env_usize(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(default)
    }

    pub async fn run() {
        let server = RedisServer::start();
        let only = std::env::var("ONLY").unwrap_or_else(|_| "barrier,latch".into());
        println!(
            "redis_barrier: redis-server on 127.0.0.1:{} (no persistence), {} vCPUs",
            server.port(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        if only.contains("barrier") {
            barrier_rounds(&server, env_usize("ROUNDS", DEFAULT_ROUNDS)).await;
        }
        if only.contains("latch") {
            latch(&server, env_usize("LATCH_REPS", DEFAULT_LATCH_REPS)).await;
        }
        drop(server);
    }

    /// What a participant reports per round.
    struct Returned {
        who: usize,
        round: usize,
        at: Instant,
        generation: u64,
        next: u64,
        tripped_by_last: bool,
        arrivals: usize,
    }

    async fn barrier_rounds(server: &RedisServer, rounds: usize) {
        let name = "rounds";
        let total = WARMUP_ROUNDS + rounds;
        // SHARED=1: every participant on one backend (one connection, one
        // subscription), for comparison.
        let shared = std::env::var("SHARED").is_ok_and(|v| v == "1");
        let one: DynBackend = Arc::new(
            RedisBackend::connect(server.config("bench"))
                .await
                .expect("connect"),
        );
        let mut clients = Vec::with_capacity(PARTIES);
        for i in 0..PARTIES {
            let name = format!("p-{i:02}");
            clients.push(if shared {
                client_on(one.clone(), &name)
            } else {
                client(server, &name).await
            });
        }
        let observer = client(server, "observer").await;
        let first = observer
            .barrier(name, PARTIES as u32)
            .generation()
            .await
            .expect("state");
        let (tx, mut returns) = mpsc::unbounded_channel::<Returned>();
        // Per round (its number): the go of the first 15, then the last's.
        // Nobody arrives in the next round before the tool has every return
        // of this one, so a round's figure is its own.
        let (start_tx, start_rx) = watch::channel(0usize);
        let (last_tx, last_rx) = watch::channel(0usize);
        let tripper = format!("p-{:02}", PARTIES - 1);
        let mut tasks = Vec::new();
        for (i, c) in clients.into_iter().enumerate() {
            let tx = tx.clone();
            let mut go = if i == PARTIES - 1 {
                last_rx.clone()
            } else {
                start_rx.clone()
            };
            let tripper = tripper.clone();
            tasks.push(tokio::spawn(async move {
                let barrier = c
                    .barrier(name, PARTIES as u32)
                    .participant(&format!("p-{i:02}"));
                let mut generation = first;
                for round in 1..=total {
                    go.wait_for(|r| *r >= round).await.expect("go");
                    let trip = barrier.wait_in(generation).await.expect("tripped");
                    let at = Instant::now();
                    generation = trip.next;
                    let _ = tx.send(Returned {
                        who: i,
                        round,
                        at,
                        generation: trip.generation,
                        next: trip.next,
                        tripped_by_last: trip.by.as_str() == tripper,
                        arrivals: trip.arrivals.len(),
                    });
                }
            }));
        }
        drop(tx);
        let state = observer.barrier(name, PARTIES as u32);
        let mut all = Vec::with_capacity(rounds);
        let mut tripped = Vec::with_capacity(rounds);
        let mut first_waiter = Vec::with_capacity(rounds);
        let mut commands = (CommandStats::new(), CommandStats::new());
        let mut generation = first;
        for round in 1..=total {
            start_tx.send(round).expect("participants");
            // 15 arrived, and asleep on their watch.
            loop {
                let st = state.state().await.expect("state");
                assert!(st.generation == generation, "the round is open");
                if st.arrivals.len() == PARTIES - 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            tokio::time::sleep(SETTLE).await;
            let measured = round > WARMUP_ROUNDS;
            let before = if measured {
                command_stats(server)
            } else {
                CommandStats::new()
            };
            let t0 = Instant::now();
            last_tx.send(round).expect("the last participant");
            let mut waiters = Vec::with_capacity(PARTIES - 1);
            let mut tripper_back = t0;
            let mut next = generation;
            for _ in 0..PARTIES {
                let r = returns.recv().await.expect("a participant's return");
                assert_eq!(r.round, round);
                assert_eq!(r.generation, generation);
                assert_eq!(r.arrivals, PARTIES, "a trip counts every party");
                assert!(r.tripped_by_last, "the last arrival trips");
                assert!(r.next > generation, "generations increase");
                next = r.next;
                if r.who == PARTIES - 1 {
                    tripper_back = r.at;
                } else {
                    waiters.push(r.at);
                }
            }
            generation = next;
            if measured {
                add(&mut commands, before, command_stats(server));
                let latest = waiters.iter().copied().max().expect("15 waiters");
                all.push(latest.max(tripper_back) - t0);
                first_waiter.push(*waiters.iter().min().expect("15 waiters") - t0);
                tripped.push(tripper_back - t0);
            }
        }
        for t in tasks {
            t.await.expect("participant");
        }
        println!();
        println!(
            "barrier, {PARTIES} participants ({}), {rounds} rounds after {WARMUP_ROUNDS} of warm-up:",
            if shared {
                "one RedisBackend shared (SHARED=1)"
            } else {
                "one RedisBackend each"
            }
        );
        println!("| from the last arrival sent until | p50 | p99 | max |");
        println!("|---|---:|---:|---:|");
        for (what, v) in [
            ("every participant returned", &mut all),
            ("the tripping arrival returned", &mut tripped),
            ("the first of the 15 waiters returned", &mut first_waiter),
        ] {
            v.sort();
            println!(
                "| {what} | {:.2} ms | {:.2} ms | {:.2} ms |",
                ms(pct(v, 0.5)),
                ms(pct(v, 0.99)),
                ms(*v.last().expect("rounds"))
            );
        }
        print_commands(&commands.0, &commands.1, rounds, "round");
        let p99 = ms(pct(&all, 0.99));
        println!();
        println!(
            "barrier round: p99 {p99:.2} ms until every participant returned (target <= 3 ms {})",
            verdict(p99 <= 3.0)
        );
    }

    /// Adds `after - before` to the running (before, after) pair.
    fn add(sum: &mut (CommandStats, CommandStats), before: CommandStats, after: CommandStats) {
        for (name, (calls, usec)) in before {
            let e = sum.0.entry(name).or_default();
            e.0 += calls;
            e.1 += usec;
        }
        for (name, (calls, usec)) in after {
            let e = sum.1.entry(name).or_default();
            e.0 += calls;
            e.1 += usec;
        }
    }

    async fn latch(server: &RedisServer, reps: usize) {
        let name = "big";
        let mut clients = Vec::with_capacity(LATCH_TASKS);
        for i in 0..LATCH_TASKS {
            clients.push(client(server, &format!("t-{i:02}")).await);
        }
        let setter = client(server, "setter").await;
        let waiter = client(server, "waiter").await;
        let mut rates = Vec::new();
        let mut opens = Vec::new();
        let mut lags = Vec::new();
        let mut commands = (CommandStats::new(), CommandStats::new());
        println!();
        println!(
            "latch of {LATCH_COUNT}, counted down by {LATCH_COUNT} participants from {LATCH_TASKS} tasks (one RedisBackend each), one waiter:"
        );
        println!("| rep | count-downs/s | time to open | waiter after the last reply |");
        println!("|---|---:|---:|---:|");
        for rep in 0..=reps {
            let latch = setter.latch(name);
            assert!(
                latch.try_set_count(LATCH_COUNT as u32).await.expect("set"),
                "the latch is absent or at zero"
            );
            let wait = {
                let w = waiter.latch(name);
                tokio::spawn(async move {
                    let res = w.wait().await;
                    (res, Instant::now())
                })
            };
            // The waiter is subscribed and asleep.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let before = command_stats(server);
            let start = Instant::now();
            let tasks: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(t, c)| {
                    let c = c.clone();
                    tokio::spawn(async move {
                        let mut remaining = Vec::new();
                        for p in (t..LATCH_COUNT).step_by(LATCH_TASKS) {
                            let latch = c.latch(name).participant(&format!("p-{p:04}"));
                            remaining.push(latch.count_down().await.expect("count down"));
                        }
                        (remaining, Instant::now())
                    })
                })
                .collect();
            let mut remaining = Vec::with_capacity(LATCH_COUNT);
            let mut last_reply = start;
            for t in tasks {
                let (r, at) = t.await.expect("task");
                remaining.extend(r);
                last_reply = last_reply.max(at);
            }
            let (res, opened_at) = wait.await.expect("waiter");
            if rep > 0 {
                add(&mut commands, before, command_stats(server));
            }
            assert!(
                matches!(res, Ok(LatchWait::Opened { .. })),
                "waiter: {res:?}"
            );
            remaining.sort_unstable();
            assert!(
                remaining.iter().copied().eq(0..LATCH_COUNT as u32),
                "every count-down counted once"
            );
            let rate = LATCH_COUNT as f64 / (last_reply - start).as_secs_f64();
            let open = opened_at - start;
            let lag = opened_at.saturating_duration_since(last_reply);
            if rep == 0 {
                // Warm-up: connections, scripts.
                continue;
            }
            println!(
                "| {rep} | {rate:.0} | {:.2} ms | {:.2} ms |",
                ms(open),
                ms(lag)
            );
            rates.push(rate);
            opens.push(open);
            lags.push(lag);
        }
        print_commands(&commands.0, &commands.1, reps, "latch");
        rates.sort_by(f64::total_cmp);
        opens.sort();
        lags.sort();
        println!();
        println!(
            "latch: median {:.0} count-downs/s, time to open median {:.2} ms (worst {:.2} ms), waiter {:.2} ms after the last reply (median)",
            rates[rates.len() / 2],
            ms(opens[opens.len() / 2]),
            ms(*opens.last().expect("reps")),
            ms(lags[lags.len() / 2])
        );
    }

    /// Command name -> (calls, microseconds), from `INFO commandstats`.
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

    /// What the server ran between two snapshots, per `per` (a round, a
    /// latch): calls and microseconds per call of each command.
    fn print_commands(before: &CommandStats, after: &CommandStats, per: usize, what: &str) {
        let parts: Vec<String> = after
            .iter()
            .filter(|(name, _)| !name.starts_with("info"))
            .filter_map(|(name, (calls, usec))| {
                let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
                let calls = calls - c0;
                (calls > 0).then(|| {
                    format!(
                        "{name} {:.1}/{what} × {:.1} µs",
                        calls as f64 / per.max(1) as f64,
                        (usec - u0) as f64 / calls as f64
                    )
                })
            })
            .collect();
        println!("server commands (INFO commandstats): {}", parts.join(", "));
    }

    fn pct(v: &[Duration], p: f64) -> Duration {
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}
