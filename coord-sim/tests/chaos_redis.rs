//! Chaos on a real Redis (no simulator): holder processes (`chaos_holder`)
//! contend for one lock through a loopback fault proxy that blackholes,
//! delays and resets their connections; holders are SIGKILLed mid-hold and
//! replaced; `redis-server` is restarted (no persistence: every key is lost)
//! and paused. Every holder writes to a fenced resource in this process with
//! its token. At the end the checkers judge the run:
//!
//! - (a) the resource: tokens never go back, one token belongs to one client;
//! - (b) the grants, as the holders saw them: a grant requested after another
//!   came back carries a larger token — across the restarts too;
//! - (c) no holder wrote believing it held the lock after another holder was
//!   granted it, unless a server restart in between explains it;
//! - (d) after the last heal, some holder gets the lock within a bound.
//!
//! The fault schedule comes from a seed, printed in the summary and on
//! failure; `COORD_CHAOS_SEED=<seed> cargo test -p coord-sim --test
//! chaos_redis` replays the same schedule (the timing of real processes is not
//! deterministic, the faults and their order are). `COORD_CHAOS_VERBOSE=1`
//! shows the holders' errors.
//!
//! The same holders and checkers run on a Redis Cluster whose lock slot
//! moves and whose master is killed: module [`cluster`] (in this test
//! binary, so the two runs share the machine's time instead of adding to
//! it).
#![cfg(not(madsim))]

#[path = "chaos_redis/cluster.rs"]
mod cluster;

use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use coord_sim::{
    chaos::{FaultProxy, FenceServer, Mode, TiedChild, check_holds, mono_ns},
    history::{Violation, check_liveness},
};
use coord_testkit::redis::RedisServer;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use tokio::time::{Instant, sleep};

const KEY: &str = "chaos";
const TTL_MS: u64 = 1500;
const HOLDERS: usize = 4;
/// Faults are drawn until their planned time reaches this.
const SCHEDULE: Duration = Duration::from_secs(35);
/// After the last heal, some holder gets the lock within this.
const LIVENESS: Duration = Duration::from_secs(8);
/// The whole test, start to verdict.
const WHOLE: Duration = Duration::from_secs(110);

fn verbose() -> bool {
    std::env::var_os("COORD_CHAOS_VERBOSE").is_some()
}

fn spawn_holder(redis_url: &str, fence: &FenceServer, name: &str, extra: &[&str]) -> TiedChild {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaos_holder"));
    cmd.args(["--redis", redis_url])
        .args(["--fence", &fence.addr().to_string()])
        .args(["--name", name, "--key", KEY])
        .args(["--ttl-ms", &TTL_MS.to_string()])
        .args(extra)
        // The holder exits when its stdin closes: another tie to this process.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(if verbose() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    TiedChild::spawn(cmd).expect("spawn chaos_holder")
}

/// Prints the seed if the test panics, whatever panicked.
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos_redis failed with seed {0}; replay the schedule: COORD_CHAOS_SEED={0} cargo test -p coord-sim --test chaos_redis",
                self.0
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Every connection, new ones too; healed by letting the held bytes flow
    /// (`reset: false`) or by resetting the connections.
    Blackhole {
        dur: Duration,
        reset: bool,
    },
    /// About half of the current connections.
    BlackholeSome {
        dur: Duration,
    },
    Delay {
        by: Duration,
        dur: Duration,
    },
    Reset {
        dur: Duration,
    },
    /// SIGKILL the current holder (mid-hold) and start a replacement.
    KillHolder,
    /// Kill redis-server and start it again, empty.
    RestartRedis,
    /// SIGSTOP redis-server, SIGCONT after `dur`.
    PauseRedis {
        dur: Duration,
    },
}

impl Fault {
    fn planned(&self) -> Duration {
        match *self {
            Fault::Blackhole { dur, .. }
            | Fault::BlackholeSome { dur }
            | Fault::Delay { dur, .. }
            | Fault::Reset { dur }
            | Fault::PauseRedis { dur } => dur,
            Fault::KillHolder | Fault::RestartRedis => Duration::from_millis(300),
        }
    }
}

fn ms(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..hi))
}

fn draw(rng: &mut StdRng, kind: u8) -> Fault {
    match kind {
        0 => Fault::Blackhole {
            dur: ms(rng, 500, 3000),
            reset: rng.random_bool(0.5),
        },
        1 => Fault::BlackholeSome {
            dur: ms(rng, 500, 3000),
        },
        2 => Fault::Delay {
            by: ms(rng, 20, 400),
            dur: ms(rng, 1000, 3000),
        },
        3 => Fault::Reset {
            dur: ms(rng, 100, 1000),
        },
        4 => Fault::KillHolder,
        5 => Fault::RestartRedis,
        _ => Fault::PauseRedis {
            dur: ms(rng, 300, 2500),
        },
    }
}

/// Every kind once (shuffled), then random kinds, each followed by a quiet
/// gap, until the planned time reaches [`SCHEDULE`].
fn schedule(seed: u64) -> Vec<(Fault, Duration)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds: Vec<u8> = (0..7).collect();
    kinds.shuffle(&mut rng);
    let mut out = Vec::new();
    let mut total = Duration::ZERO;
    let mut i = 0;
    while total < SCHEDULE {
        let kind = if i < kinds.len() {
            kinds[i]
        } else {
            rng.random_range(0..7)
        };
        i += 1;
        let f = draw(&mut rng, kind);
        let gap = ms(&mut rng, 300, 1500);
        total += f.planned() + gap;
        out.push((f, gap));
    }
    out
}

struct Holders {
    url: String,
    procs: Vec<(String, TiedChild)>,
    next: usize,
}

impl Holders {
    /// [`HOLDERS`] holder processes on `url`, returned once one of them was
    /// granted the lock (panics naming `what` after `within`) and a second
    /// of normal running has passed.
    async fn start(url: String, fence: &FenceServer, within: Duration, what: &str) -> Holders {
        let mut holders = Holders {
            url,
            procs: Vec::new(),
            next: 0,
        };
        for _ in 0..HOLDERS {
            holders.spawn(fence);
        }
        assert!(
            fence.grant_after(0, within).await.is_some(),
            "{what}: no holder got the lock before any fault"
        );
        sleep(Duration::from_secs(1)).await;
        holders
    }

    fn spawn(&mut self, fence: &FenceServer) {
        let name = format!("h{}", self.next);
        self.next += 1;
        let child = spawn_holder(&self.url, fence, &name, &[]);
        self.procs.push((name, child));
    }

    /// Stops every holder (SIGKILL), and lets their last lines reach the
    /// fence server.
    async fn stop(&mut self) {
        drop(std::mem::take(&mut self.procs));
        sleep(Duration::from_millis(200)).await;
    }
}

/// Prints every violation, then fails the run (naming `what`) if there is
/// any.
fn assert_none(what: &str, violations: &[Violation]) {
    for v in violations {
        println!("  {v}");
    }
    assert!(
        violations.is_empty(),
        "{what}: {} violation(s), first: {}",
        violations.len(),
        violations[0]
    );
}

/// Checkers (a), (b) and (c) on what `fence` recorded: the violations
/// when two holds may overlap only across one of the instants of
/// `explaining` (ns: a server restart, a failover), and how many
/// overlaps those instants explained.
fn safety(fence: &FenceServer, explaining: &[u64]) -> (Vec<Violation>, usize) {
    let holds = fence.holds();
    let mut violations = fence.resource().check();
    violations.extend(fence.grants().check());
    let unexplained = check_holds(&holds, explaining);
    let explained = check_holds(&holds, &[])
        .len()
        .saturating_sub(unexplained.len());
    violations.extend(unexplained);
    (violations, explained)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_real_redis() {
    let seed = match std::env::var("COORD_CHAOS_SEED") {
        Ok(s) => s.parse().expect("COORD_CHAOS_SEED is a u64"),
        Err(_) => rand::random(),
    };
    let _print = SeedOnPanic(seed);
    println!("chaos_redis: seed {seed}");
    tokio::time::timeout(WHOLE, run(seed))
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the chaos run took longer than {WHOLE:?}"));
}

async fn run(seed: u64) {
    let wall = Instant::now();
    let plan = schedule(seed);
    let redis = Arc::new(
        tokio::task::spawn_blocking(RedisServer::start)
            .await
            .unwrap(),
    );
    let proxy = FaultProxy::start(([127, 0, 0, 1], redis.port()).into())
        .await
        .unwrap();
    let fence = FenceServer::start().await.unwrap();
    let url = format!("redis://{}/0", proxy.addr());
    let mut holders = Holders::start(
        url,
        &fence,
        Duration::from_secs(10),
        &format!("seed {seed}"),
    )
    .await;

    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let (mut kills, mut kills_mid_hold) = (0, 0);
    let mut restarts: Vec<u64> = Vec::new();
    let mut log = Vec::new();
    for (fault, gap) in &plan {
        let at = wall.elapsed();
        match *fault {
            Fault::Blackhole { dur, reset } => {
                proxy.set_mode(Mode::Blackhole);
                sleep(dur).await;
                if reset {
                    proxy.set_mode(Mode::Reset);
                    sleep(Duration::from_millis(50)).await;
                }
                proxy.set_mode(Mode::Pass);
            }
            Fault::BlackholeSome { dur } => {
                let mut conns = proxy.connections();
                conns.shuffle(&mut rng);
                conns.truncate(conns.len().div_ceil(2));
                for &c in &conns {
                    proxy.set_conn_mode(c, Mode::Blackhole);
                }
                sleep(dur).await;
                for &c in &conns {
                    proxy.set_conn_mode(c, Mode::Pass);
                }
            }
            Fault::Delay { by, dur } => {
                proxy.set_mode(Mode::Delay(by));
                sleep(dur).await;
                proxy.set_mode(Mode::Pass);
            }
            Fault::Reset { dur } => {
                proxy.set_mode(Mode::Reset);
                sleep(dur).await;
                proxy.set_mode(Mode::Pass);
            }
            Fault::KillHolder => {
                // Wait (a little) for someone to hold the lock, and kill it.
                let deadline = Instant::now() + Duration::from_secs(2);
                let mut victim = fence.current_holder();
                while victim.is_none() && Instant::now() < deadline {
                    sleep(Duration::from_millis(20)).await;
                    victim = fence.current_holder();
                }
                let idx = victim
                    .as_ref()
                    .and_then(|v| holders.procs.iter().position(|(n, _)| n == v))
                    .unwrap_or_else(|| rng.random_range(0..holders.procs.len()));
                let (name, mut child) = holders.procs.remove(idx);
                child.kill9().unwrap();
                kills += 1;
                kills_mid_hold += usize::from(victim.as_deref() == Some(name.as_str()));
                log.push(format!(
                    "{:>6.2}s kill -9 {name}{}",
                    at.as_secs_f64(),
                    if victim.is_some() { " (mid-hold)" } else { "" }
                ));
                holders.spawn(&fence);
            }
            Fault::RestartRedis => {
                // Recorded before the kill: grants after it may come from the
                // new, empty server.
                restarts.push(mono_ns());
                let r = redis.clone();
                tokio::task::spawn_blocking(move || r.restart())
                    .await
                    .unwrap();
            }
            Fault::PauseRedis { dur } => {
                redis.pause();
                sleep(dur).await;
                redis.resume();
            }
        }
        if !matches!(fault, Fault::KillHolder) {
            log.push(format!("{:>6.2}s {fault:?}", at.as_secs_f64()));
        }
        sleep(*gap).await;
    }

    // Heal everything, then liveness: a fresh grant within the bound.
    proxy.set_mode(Mode::Pass);
    redis.resume();
    let healed = mono_ns();
    let got = fence.grant_after(healed, LIVENESS).await;
    // A little more normal running, then stop the holders.
    sleep(Duration::from_secs(1)).await;
    holders.stop().await;

    let stats = fence.stats();
    let holds = fence.holds();
    // Overlaps only a restart explains: the old holder still believed, the
    // empty server granted the lock again, and fencing kept them apart.
    let (mut violations, explained) = safety(&fence, &restarts);
    violations.extend(check_liveness(
        fence.instant(healed),
        got.map(|t| fence.instant(t)),
        LIVENESS,
    ));

    // The tokens rose across every restart: some grant requested after the
    // first restart exists (so checker (b) had something to judge).
    let after_restart = restarts
        .first()
        .map(|&r| holds.iter().filter(|h| h.sent > r).count())
        .unwrap_or(0);

    println!(
        "chaos_redis: seed {seed}: {} faults, wall {:.1}s\n{}",
        plan.len(),
        wall.elapsed().as_secs_f64(),
        log.join("\n")
    );
    println!(
        "chaos_redis: seed {seed}: grants {} (after the first restart {after_restart}), accepted writes {}, refused stale writes {}, leases lost {}, released {}, kills {kills} ({kills_mid_hold} mid-hold), redis restarts {} (overlapping holds they explain: {explained}), proxy {:?}, liveness: lock {} after the heal, violations {}",
        stats.grants,
        stats.accepted,
        stats.refused,
        stats.lost,
        stats.released,
        restarts.len(),
        proxy.stats(),
        got.map(|t| format!("{:.3}s", t.saturating_sub(healed) as f64 / 1e9))
            .unwrap_or_else(|| "never".into()),
        violations.len(),
    );
    assert_none(&format!("seed {seed}"), &violations);
    // Not vacuous: the run did what it claims.
    assert!(
        stats.grants >= 15,
        "seed {seed}: only {} grants",
        stats.grants
    );
    assert!(
        stats.accepted >= 50,
        "seed {seed}: only {} writes",
        stats.accepted
    );
    assert!(
        kills_mid_hold >= 1,
        "seed {seed}: no holder killed mid-hold"
    );
    assert!(!restarts.is_empty(), "seed {seed}: redis never restarted");
    assert!(after_restart >= 1, "seed {seed}: no grant after a restart");
}

/// The checkers catch a holder that ignores `lost()`: its connection is
/// blackholed mid-hold, its lease expires, another holder is granted the lock
/// — and it keeps writing with its old token. The resource refuses those
/// writes (fencing), and [`check_holds`] reports the overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_ignoring_lost_is_caught() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let upstream = ([127, 0, 0, 1], redis.port()).into();
    let good_proxy = FaultProxy::start(upstream).await.unwrap();
    let bad_proxy = FaultProxy::start(upstream).await.unwrap();
    let fence = FenceServer::start().await.unwrap();

    let bad_url = format!("redis://{}/0", bad_proxy.addr());
    let _bad = spawn_holder(
        &bad_url,
        &fence,
        "broken",
        &["--ignore-lost", "--hold-ms", "5000"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while fence.current_holder().as_deref() != Some("broken") {
        assert!(
            Instant::now() < deadline,
            "the broken holder never got the lock"
        );
        sleep(Duration::from_millis(20)).await;
    }
    let good_url = format!("redis://{}/0", good_proxy.addr());
    let _good = spawn_holder(&good_url, &fence, "good", &[]);
    sleep(Duration::from_millis(300)).await;
    bad_proxy.set_mode(Mode::Blackhole);
    // The broken holder's lease expires (TTL 1.5 s), "good" takes the lock
    // while "broken" keeps writing until its 5 s are up.
    sleep(Duration::from_millis(4000)).await;
    bad_proxy.set_mode(Mode::Pass);
    sleep(Duration::from_millis(1500)).await;

    let stats = fence.stats();
    let v = check_holds(&fence.holds(), &[]);
    println!("ignore-lost: {stats:?}; violations: {v:?}");
    assert!(
        v.iter()
            .any(|v| v.checker == "exclusion" && v.detail.contains("broken")),
        "the overlap was not reported: {v:?}; {stats:?}"
    );
    assert!(
        stats.refused >= 1,
        "the resource refused none of the stale writes: {stats:?}"
    );
    assert!(
        fence.resource().check().is_empty(),
        "fencing itself held: {:?}",
        fence.resource().check()
    );
}
