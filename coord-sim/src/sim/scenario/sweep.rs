//! Seed sweeps: every seed in a child process of the test binary (a
//! simulation is exactly reproducible only as the first of its process),
//! the children's reports summed, each failure printed with its seed, the
//! faults applied and the one command that replays it.

use std::{fmt, time::Duration};

use madsim::runtime::Runtime;

use super::{Report, Scenario, TTL, run};
use crate::history::{BarrierCounts, GraphCounts, QueueCounts, TopicCounts};

/// The outcome of a sweep.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    /// Seeds run.
    pub seeds: u64,
    /// Failing seeds with their violations (or panic message).
    pub failures: Vec<(u64, Vec<String>)>,
    /// Simulated time over all runs.
    pub simulated: Duration,
    /// Wall time over all runs.
    pub wall: Duration,
    /// Grants, accepted writes, refused stale writes and overlapping beliefs
    /// over all runs.
    pub grants: usize,
    /// Accepted writes.
    pub writes: usize,
    /// Writes refused by fencing.
    pub stale_writes_refused: u64,
    /// Overlapping beliefs (only violations where (c) applies).
    pub belief_overlaps: usize,
    /// Grants no client received, over all runs.
    pub orphans: usize,
    /// Of which the clean-up had to end in time (see
    /// [`Report::orphans_at_heal`]).
    pub orphans_at_heal: usize,
    /// Failover times over all runs.
    pub failovers: Vec<Duration>,
    /// What the barriers did over all runs (the worst overrun: the
    /// longest any wait took past its deadline, in any run).
    pub barriers: BarrierCounts,
    /// What the graphs did over all runs (the worst time to end after the
    /// heal: the longest in any run).
    pub graphs: GraphCounts,
    /// What the queues did over all runs (the worst times: the longest in
    /// any run).
    pub queues: QueueCounts,
    /// What the topics did over all runs.
    pub topics: TopicCounts,
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seeds, {} failing; {:.0} simulated s in {:.2} wall s ({:.0}x); {} grants, {} writes accepted, {} stale writes refused, {} overlapping beliefs, {} orphaned grants ({} near the heal)",
            self.seeds,
            self.failures.len(),
            self.simulated.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.simulated.as_secs_f64() / self.wall.as_secs_f64().max(1e-9),
            self.grants,
            self.writes,
            self.stale_writes_refused,
            self.belief_overlaps,
            self.orphans,
            self.orphans_at_heal
        )?;
        let b = &self.barriers;
        if b.trips + b.breaks > 0 {
            write!(
                f,
                "; barriers: {} trips, {} breaks, {} arrivals expired; waits {} tripped, {} broken, {} stale, {} timed out, {} other errors; worst wait past its deadline {:?}",
                b.trips,
                b.breaks,
                b.expired,
                b.tripped,
                b.broken,
                b.stale,
                b.timeouts,
                b.errors,
                b.worst_overrun
            )?;
        }
        let g = &self.graphs;
        if g.runs > 0 {
            write!(
                f,
                "; graphs: {} runs ({} cancelled), nodes {} succeeded, {} failed, {} skipped, {} cancelled; {} attempts, {} completions recorded, {} stale; {} crashes at {} kinds of step boundary, {} bodies killed; the slowest run ended {} ms after the heal",
                g.runs,
                g.runs_cancelled,
                g.succeeded,
                g.failed,
                g.skipped,
                g.cancelled,
                g.attempts,
                g.recorded,
                g.stale,
                g.crashes,
                g.boundaries.count_ones(),
                g.bodies_killed,
                g.worst_end_after_heal_ms
            )?;
        }
        let q = &self.queues;
        if q.pushed > 0 {
            write!(
                f,
                "; queues: {} pushes acknowledged ({} duplicates by dedup id), {} deliveries ({} redeliveries, {} stolen), {} acked, {} nacked, {} dead; {} leases expired, {} deliveries of dead consumers given back ({} before their lease ended, the slowest redelivered {} ms after the presence ended), {} stale settlements refused, {} duplicate handler starts after a lease ended ({} after a leave nobody asked for); {} deliveries given back by leaves nobody asked for; {} given back by receives whose answer never came; {} crashes at {} kinds of step boundary; {} acknowledged items lost to server restarts; the slowest drain {} ms after the heal",
                q.pushed,
                q.deduplicated,
                q.delivered,
                q.redelivered,
                q.stolen,
                q.acked,
                q.nacked,
                q.dead,
                q.expired,
                q.reclaimed,
                q.reclaimed_early,
                q.worst_reclaim_ms,
                q.stale,
                q.duplicates,
                q.unasked_leave_duplicates,
                q.unasked_leaves,
                q.given_back,
                q.crashes,
                q.boundaries.count_ones(),
                q.lost_to_restarts,
                q.worst_drain_ms
            )?;
        }
        let t = &self.topics;
        if t.published > 0 {
            write!(
                f,
                "; topics: {} publishes acknowledged, {} deliveries ({} redeliveries), {} acked, {} refused, {} missed, {} stale settlements refused, {} given back by reads whose answer never came",
                t.published,
                t.delivered,
                t.redelivered,
                t.acked,
                t.refused,
                t.missed,
                t.stale,
                t.given_back
            )?;
        }
        if let Some((median, worst)) = self.failover_ttls() {
            write!(
                f,
                "; {} failovers: median {median:.3} TTL, worst {worst:.3} TTL",
                self.failovers.len()
            )?;
        }
        Ok(())
    }
}

/// The seeds to sweep: `MADSIM_TEST_SEED` (default 1) and the next
/// `MADSIM_TEST_NUM - 1` (default 200 in all).
pub fn seeds_from_env() -> std::ops::Range<u64> {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let first = var("MADSIM_TEST_SEED").unwrap_or(1);
    first..first + var("MADSIM_TEST_NUM").unwrap_or(200)
}

/// Runs `scenario` once on `seed` in a fresh simulator, in this process (on
/// a fresh thread). Exactly reproducible only as the first simulation of a
/// process: see [`sweep`].
pub fn run_seed(scenario: &Scenario, seed: u64) -> Result<Report, String> {
    let s = scenario.clone();
    std::thread::spawn(move || {
        let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.set_time_limit(Duration::from_secs(600));
        rt.block_on(run(s))
    })
    .join()
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

const CHILD: &str = "COORD_SIM_CHILD";
const REPORT_LINE: &str = "coord-sim-report:";

/// Runs `scenario` on every seed of `seeds` and prints each failure with its
/// seed, the faults applied and the one command that replays it. `test` is
/// the name of the test function calling `sweep` (with `--exact` it selects
/// that test alone).
///
/// Each seed runs in a child process (this test binary, `test` alone, the
/// seed in `MADSIM_TEST_SEED`): `tokio::select!` draws its branch order from
/// a per-thread generator that tokio seeds from a process-wide counter, so a
/// simulation is exactly reproducible only as the first one of its process.
/// The replay command starts the very same child. With
/// `MADSIM_TEST_CHECK_DETERMINISM` set, every seed runs twice and the two
/// runs must agree on everything that happened ([`Report::digest`]).
/// `MADSIM_TEST_JOBS` children run at once (default 2).
pub fn sweep(scenario: &Scenario, seeds: std::ops::Range<u64>, test: &str) -> Sweep {
    sweep_with(scenario, seeds, test, false)
}

/// [`sweep`], ending at the first failing seed when `stop_at_first`.
pub fn sweep_with(
    scenario: &Scenario,
    seeds: std::ops::Range<u64>,
    test: &str,
    stop_at_first: bool,
) -> Sweep {
    let mut out = Sweep::default();
    let wall = std::time::Instant::now();
    if std::env::var_os(CHILD).is_some() {
        // The child: one seed, in process; the parent reads the report line.
        let seed = seeds.start;
        out.seeds = 1;
        match run_seed(scenario, seed) {
            Ok(r) => {
                let failovers: String = r
                    .failovers
                    .iter()
                    .map(|f| format!(" {}", f.as_nanos()))
                    .collect();
                let b = &r.barriers;
                let graphs: String = r.graphs.to_vec().iter().map(|n| format!(" {n}")).collect();
                let queues: String = r.queues.to_vec().iter().map(|n| format!(" {n}")).collect();
                let topics: String = r.topics.to_vec().iter().map(|n| format!(" {n}")).collect();
                println!(
                    "{REPORT_LINE} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}{graphs}{queues}{topics}{failovers}",
                    r.simulated.as_nanos(),
                    r.grants,
                    r.writes,
                    r.stale_writes_refused,
                    r.belief_overlaps,
                    r.violations.len(),
                    r.digest,
                    r.orphans,
                    r.orphans_at_heal,
                    b.trips,
                    b.breaks,
                    b.tripped,
                    b.broken,
                    b.stale,
                    b.timeouts,
                    b.errors,
                    b.expired,
                    b.worst_overrun.as_nanos(),
                );
                out.add(&r);
                if !r.violations.is_empty() {
                    let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
                    eprintln!(
                        "scenario {} FAILED on seed {seed}:\n  {}\n  faults: {}",
                        scenario.name,
                        v.join("\n  "),
                        r.faults.join("; ")
                    );
                    out.failures.push((seed, v));
                }
            }
            Err(panic) => {
                eprintln!(
                    "scenario {} PANICKED on seed {seed}: {panic}",
                    scenario.name
                );
                out.failures.push((seed, vec![format!("panic: {panic}")]));
            }
        }
        out.wall = wall.elapsed();
        return out;
    }
    let check = std::env::var_os("MADSIM_TEST_CHECK_DETERMINISM").is_some();
    let jobs: usize = std::env::var("MADSIM_TEST_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2)
        .max(1);
    let seeds: Vec<u64> = seeds.collect();
    for batch in seeds.chunks(jobs) {
        let children: Vec<_> = batch
            .iter()
            .map(|&seed| {
                (
                    seed,
                    spawn_child(seed, test),
                    check.then(|| spawn_child(seed, test)),
                )
            })
            .collect();
        for (seed, first, second) in children {
            out.seeds += 1;
            let first = finish_child(first);
            let mut failure: Option<Vec<String>> = None;
            match &first {
                Ok((r, None)) => out.add(r),
                Ok((r, Some(stderr))) => {
                    out.add(r);
                    failure = Some(vec![stderr.clone()]);
                }
                Err(stderr) => failure = Some(vec![stderr.clone()]),
            }
            if let (Some(second), Ok((r1, _))) = (second, &first) {
                match finish_child(second) {
                    Ok((r2, _)) if r2.digest == r1.digest => {}
                    _ => failure
                        .get_or_insert_with(Vec::new)
                        .push(format!("non-determinism: two runs of seed {seed} differ")),
                }
            }
            if let Some(f) = failure {
                eprintln!(
                    "scenario {} FAILED on seed {seed}:\n{}\n  replay: {}",
                    scenario.name,
                    f.join("\n"),
                    replay_command(seed, test)
                );
                out.failures.push((seed, f));
            }
        }
        if stop_at_first && !out.failures.is_empty() {
            break;
        }
    }
    out.wall = wall.elapsed();
    out
}

fn spawn_child(seed: u64, test: &str) -> std::io::Result<std::process::Child> {
    std::process::Command::new(std::env::current_exe()?)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("MADSIM_TEST_SEED", seed.to_string())
        .env("MADSIM_TEST_NUM", "1")
        .env_remove("MADSIM_TEST_CHECK_DETERMINISM")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
}

/// The child's report, and its stderr if it failed; `Err(stderr)` when it
/// printed no report (it panicked outside the simulation).
fn finish_child(
    child: std::io::Result<std::process::Child>,
) -> Result<(Report, Option<String>), String> {
    let out = child
        .and_then(|c| c.wait_with_output())
        .map_err(|e| format!("could not run the child test: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(REPORT_LINE).map(|(_, r)| r))
        .ok_or_else(|| stderr.clone())?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let g = 18 + GraphCounts::LEN;
    let qe = g + QueueCounts::LEN;
    let te = qe + TopicCounts::LEN;
    if f.len() < te {
        return Err(format!("malformed report line {line:?}"));
    }
    let r = Report {
        simulated: Duration::from_nanos(f[0]),
        grants: f[1] as usize,
        writes: f[2] as usize,
        stale_writes_refused: f[3],
        belief_overlaps: f[4] as usize,
        digest: f[6],
        orphans: f[7] as usize,
        orphans_at_heal: f[8] as usize,
        barriers: BarrierCounts {
            trips: f[9] as usize,
            breaks: f[10] as usize,
            tripped: f[11] as usize,
            broken: f[12] as usize,
            stale: f[13] as usize,
            timeouts: f[14] as usize,
            errors: f[15] as usize,
            expired: f[16] as usize,
            worst_overrun: Duration::from_nanos(f[17]),
        },
        graphs: GraphCounts::from_slice(&f[18..g]),
        queues: QueueCounts::from_slice(&f[g..qe]),
        topics: TopicCounts::from_slice(&f[qe..te]),
        failovers: f[te..].iter().map(|&n| Duration::from_nanos(n)).collect(),
        ..Report::default()
    };
    let failed = f[5] > 0 || !out.status.success();
    Ok((r, failed.then_some(stderr)))
}

impl Sweep {
    fn add(&mut self, r: &Report) {
        self.simulated += r.simulated;
        self.grants += r.grants;
        self.writes += r.writes;
        self.stale_writes_refused += r.stale_writes_refused;
        self.belief_overlaps += r.belief_overlaps;
        self.orphans += r.orphans;
        self.orphans_at_heal += r.orphans_at_heal;
        self.failovers.extend(&r.failovers);
        let (b, rb) = (&mut self.barriers, &r.barriers);
        b.trips += rb.trips;
        b.breaks += rb.breaks;
        b.tripped += rb.tripped;
        b.broken += rb.broken;
        b.stale += rb.stale;
        b.timeouts += rb.timeouts;
        b.errors += rb.errors;
        b.expired += rb.expired;
        b.worst_overrun = b.worst_overrun.max(rb.worst_overrun);
        self.graphs.add(&r.graphs);
        self.queues.add(&r.queues);
        self.topics.add(&r.topics);
    }

    /// The median and worst failover time, in TTLs.
    pub fn failover_ttls(&self) -> Option<(f64, f64)> {
        let mut f = self.failovers.clone();
        f.sort();
        let ttls = |d: &Duration| d.as_secs_f64() / TTL.as_secs_f64();
        Some((ttls(f.get(f.len() / 2)?), ttls(f.last()?)))
    }
}

/// The one command that replays `seed` of the sweep run by test `test`.
pub fn replay_command(seed: u64, test: &str) -> String {
    let features = if cfg!(feature = "broken") {
        " --features broken"
    } else {
        ""
    };
    // The test target is this binary's name without cargo's hash suffix.
    let target = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .and_then(|s| s.rsplit_once('-').map(|(name, _)| name.to_owned()))
        .unwrap_or_else(|| "sim".to_owned());
    format!(
        "MADSIM_TEST_SEED={seed} MADSIM_TEST_NUM=1 RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test --profile sim -p coord-sim{features} --test {target} -- {test} --exact --nocapture"
    )
}
