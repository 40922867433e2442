//! `redis_load`'s measurement: rounds of lock + release by each contender
//! ([`crate::lock_contenders`]), the order rotated every round, after a
//! warm-up; per round the operations per second, the CPU the servers
//! (`INFO cpu`) and this process (its threads' schedstat) spent per
//! operation, and what the servers ran (`INFO commandstats`, every
//! command); the table of medians, the same-round ratios to other
//! contenders with targets, and the per-command breakdown.

use std::time::{Duration, Instant};

use coord_testkit::redis::RedisServer;

use crate::{
    lock_contenders::Contender,
    redis_tool::{CommandStats, command_stats, cpu, diff, verdict},
};

/// One measurement: operations per second, CPU microseconds per operation
/// spent by the servers and by this process, and what the servers ran.
#[derive(Clone, Debug)]
pub struct Sample {
    pub ops: f64,
    pub total: u64,
    pub server_us: f64,
    pub client_us: f64,
    /// Every command the servers ran (INFO excluded), summed over them.
    pub commands: CommandStats,
}

impl Sample {
    /// Server µs per operation inside the commands the contender sends
    /// (a script's time includes the calls it makes).
    pub fn command_us(&self, c: &Contender) -> f64 {
        command_us(&self.commands, c.top_level, self.total)
    }
}

/// Microseconds per operation the servers spent inside the commands in
/// `top_level` (those sent, as opposed to those scripts called).
pub fn command_us(commands: &CommandStats, top_level: &[&str], ops: u64) -> f64 {
    let usec: u64 = (commands.iter())
        .filter(|(name, _)| top_level.contains(&name.as_str()))
        .map(|(_, (_, usec))| usec)
        .sum();
    usec as f64 / ops.max(1) as f64
}

/// Every server's command counters, summed.
fn all_commands(servers: &[&RedisServer]) -> CommandStats {
    let mut sum = CommandStats::new();
    for s in servers {
        for (name, (calls, usec)) in command_stats(s) {
            let e = sum.entry(name).or_default();
            e.0 += calls;
            e.1 += usec;
        }
    }
    sum
}

/// (the servers' CPU seconds, this process's).
fn all_cpu(servers: &[&RedisServer]) -> (f64, f64) {
    let mut server = 0.0;
    let mut client = 0.0;
    for s in servers {
        let (sv, cl) = cpu(s);
        server += sv;
        client = cl;
    }
    (server, client)
}

/// `tasks` tasks doing `c`'s lock + release on keys of their own for
/// `time`, on `servers` (those whose work is counted).
pub async fn measure(
    servers: &[&RedisServer],
    tasks: usize,
    time: Duration,
    c: &Contender,
    round: &str,
) -> Sample {
    let commands_before = all_commands(servers);
    let before = all_cpu(servers);
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
        total += h.await.expect("a measuring task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = all_cpu(servers);
    let commands = diff(&commands_before, &all_commands(servers));
    let n = total.max(1) as f64;
    Sample {
        ops: total as f64 / elapsed,
        total: total as u64,
        server_us: (after.0 - before.0) * 1e6 / n,
        client_us: (after.1 - before.1) * 1e6 / n,
        commands,
    }
}

/// How long each measurement takes.
#[derive(Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub round: Duration,
    pub rounds: usize,
}

/// Runs `contenders` for `timing.rounds` rounds with `tasks` tasks each,
/// after a warm-up of each, rotating their order every round; the samples
/// per contender, in round order. `servers[i]`: the servers whose work
/// counts for `contenders[i]`.
pub async fn scenario(
    servers: &[Vec<&RedisServer>],
    name: &str,
    tasks: usize,
    timing: Timing,
    contenders: &[Contender],
) -> Vec<Vec<Sample>> {
    for (c, on) in contenders.iter().zip(servers) {
        measure(on, tasks, timing.warmup, c, &format!("{name}:warm")).await;
    }
    let mut samples = vec![Vec::new(); contenders.len()];
    for round in 0..timing.rounds {
        for j in 0..contenders.len() {
            let i = (round + j) % contenders.len();
            let round = format!("{name}:{round}");
            let s = measure(&servers[i], tasks, timing.round, &contenders[i], &round).await;
            samples[i].push(s);
        }
    }
    samples
}

/// A target of one contender: at least `min` times `of`'s operations per
/// second, as the median of the same-round ratios.
pub struct Target {
    pub who: &'static str,
    pub of: &'static str,
    pub min: f64,
}

/// The columns of the ratios, against these contenders where present.
pub const RATIO_TO: &[&str] = &["baseline", "rslock", "floor"];

/// The table's heading (its rows: [`report`]).
pub fn header() {
    let ratios: Vec<String> = RATIO_TO.iter().map(|r| format!("/ {r}")).collect();
    println!(
        "| scenario | who | ops/s (median) | ops/s min–max | {} | targets | server µs/op | server in commands µs/op | client µs/op |",
        ratios.join(" | ")
    );
    println!(
        "|---|---|---:|---:|{}---|---:|---:|---:|",
        "---:|".repeat(RATIO_TO.len())
    );
}

/// The median over the rounds of `who`'s operations per second over `of`'s
/// in the same round (the machine's other load hits both alike), with the
/// quartiles; `None` when either is missing.
pub fn ratio(
    contenders: &[Contender],
    samples: &[Vec<Sample>],
    who: &str,
    of: &str,
) -> Option<(f64, f64, f64)> {
    let at = |n: &str| contenders.iter().position(|c| c.name == n);
    let (w, o) = (at(who)?, at(of)?);
    let per_round: Vec<f64> = (samples[w].iter().zip(&samples[o]))
        .map(|(x, b)| x.ops / b.ops)
        .collect();
    let (lo, hi) = quartiles(&per_round);
    Some((median(per_round.iter().copied()), lo, hi))
}

/// A row per contender; returns the targets missed, described.
pub fn report(
    name: &str,
    targets: &[Target],
    contenders: &[Contender],
    samples: &[Vec<Sample>],
) -> Vec<String> {
    let mut met = Vec::new();
    for (c, s) in contenders.iter().zip(samples) {
        let ops: Vec<f64> = s.iter().map(|s| s.ops).collect();
        let med = median(ops.iter().copied());
        let ratios: Vec<String> = (RATIO_TO.iter())
            .map(|of| match ratio(contenders, samples, c.name, of) {
                Some((r, lo, hi)) => format!("{r:.3} ({lo:.2}–{hi:.2})"),
                None => "–".to_owned(),
            })
            .collect();
        let verdicts: Vec<String> = (targets.iter().filter(|t| t.who == c.name))
            .filter_map(|t| {
                let (r, _, _) = ratio(contenders, samples, t.who, t.of)?;
                let said = format!("{} ≥ {}× {}", t.who, t.min, t.of);
                if r < t.min {
                    met.push(format!("{name}: {said} ({r:.3})"));
                }
                Some(format!("≥ {}× {} {}", t.min, t.of, verdict(r >= t.min)))
            })
            .collect();
        println!(
            "| {name} | {} | {med:.0} | {:.0}–{:.0} | {} | {} | {:.1} | {:.1} | {:.1} |",
            c.name,
            ops.iter().copied().fold(f64::INFINITY, f64::min),
            ops.iter().copied().fold(0.0, f64::max),
            ratios.join(" | "),
            verdicts.join(", "),
            median(s.iter().map(|s| s.server_us)),
            median(s.iter().map(|s| s.command_us(c))),
            median(s.iter().map(|s| s.client_us)),
        );
    }
    met
}

/// Per contender, over all rounds: every command the server ran, calls
/// per operation and µs per call; the server's time in the commands sent
/// and its CPU (INFO cpu) per operation, and what lies outside commands.
pub fn breakdown(name: &str, contenders: &[Contender], samples: &[Vec<Sample>]) {
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
        // Commands sent less than once per 100 operations (another
        // client's background work, such as coord's presence renewals) are
        // counted together.
        let rare = |calls: u64| calls * 100 < ops;
        let rare_calls: u64 = sum.values().map(|(c, _)| *c).filter(|c| rare(*c)).sum();
        let mut parts: Vec<String> = (sum.iter())
            .filter(|(_, (calls, _))| !rare(*calls))
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
        if rare_calls > 0 {
            parts.push(format!("{rare_calls} calls of rarer commands"));
        }
        // CPU over all rounds, weighted by operations.
        let cpu_us: f64 = s.iter().map(|s| s.server_us * s.total as f64).sum::<f64>();
        let cpu_us = cpu_us / ops.max(1) as f64;
        let in_commands = command_us(&sum, c.top_level, ops);
        println!(
            "- {name}, {}: server CPU {cpu_us:.2} µs/op = in commands {in_commands:.2} + outside {:.2}: {}",
            c.name,
            cpu_us - in_commands,
            parts.join(", ")
        );
    }
}

/// Server µs per operation, `who` over `of` (medians of the rounds): INFO
/// cpu and in commands.
pub fn server_ratio(
    contenders: &[Contender],
    samples: &[Vec<Sample>],
    who: &str,
    of: &str,
) -> Option<(f64, f64)> {
    let at = |n: &str| contenders.iter().position(|c| c.name == n);
    let (w, o) = (at(who)?, at(of)?);
    let cpu = |i: usize| median(samples[i].iter().map(|s| s.server_us));
    let cmd = |i: usize| median(samples[i].iter().map(|s| s.command_us(&contenders[i])));
    Some((cpu(w) / cpu(o), cmd(w) / cmd(o)))
}

/// [`redis_tool::median`](crate::redis_tool::median) of `v`; NaN when empty.
pub fn median(v: impl Iterator<Item = f64>) -> f64 {
    crate::redis_tool::median(v.collect()).unwrap_or(f64::NAN)
}

/// The first and third quartiles.
pub fn quartiles(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[(v.len() * 3) / 4])
}
