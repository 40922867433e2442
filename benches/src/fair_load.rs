//! `redis_load`'s `fair` scenario: [`TASKS`] tasks hand one lock over to
//! each other, a plain lock and a fair one (decision 0033) in turn, rounds
//! alternating, on the same client and server in the same run: wait p50,
//! p99 and max, and the most / fewest acquisitions a task made (a fair lock
//! serves the waiters in turn: the ratio should be close to 1).
//!
//! Targets for the fair lock: most / fewest ≤ 1.1, p99 wait ≤ 5 ms on
//! loopback.

use std::time::{Duration, Instant};

use coord_api::Client;

use crate::{
    handover::{Log, Mark},
    lock_rounds::median,
    redis_tool::{ms, verdict},
};

/// Contending tasks.
pub const TASKS: usize = 16;
/// One round of contention.
pub const ROUND: Duration = Duration::from_secs(2);

/// What one round of contention saw.
#[derive(Debug, Clone, Copy)]
pub struct Contention {
    /// Acquisitions, all tasks.
    pub total: usize,
    /// Wait percentiles and the longest wait.
    pub p50: Duration,
    /// 99th percentile of the waits.
    pub p99: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The most acquisitions one task made.
    pub most: usize,
    /// The fewest.
    pub fewest: usize,
}

impl Contention {
    /// Most / fewest acquisitions per task.
    pub fn spread(&self) -> f64 {
        self.most as f64 / self.fewest.max(1) as f64
    }
}

/// [`TASKS`] tasks taking and releasing the lock `key` (fair or not) for
/// `time`.
pub async fn contend(client: &Client, key: &str, fair: bool, time: Duration) -> Contention {
    contend_logged(client, key, fair, time, None).await
}

/// [`contend`], marking in `log` when each `lock()` returned.
async fn contend_logged(
    client: &Client,
    key: &str,
    fair: bool,
    time: Duration,
    log: Option<Log>,
) -> Contention {
    let end = Instant::now() + time;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let lock = client.lock(key).fair(fair);
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                let guard = lock.lock().await.expect("contended lock");
                waits.push(t.elapsed());
                if let Some(log) = &log {
                    log.mark(Mark::Returned);
                }
                assert!(guard.release().await.expect("release"));
            }
            waits
        }));
    }
    let mut all = Vec::new();
    let mut counts = Vec::new();
    for t in tasks {
        let w = t.await.expect("a contending task");
        counts.push(w.len());
        all.extend(w);
    }
    all.sort();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
    Contention {
        total: all.len(),
        p50: pct(0.5),
        p99: pct(0.99),
        max: *all.last().expect("acquisitions"),
        most: *counts.iter().max().expect("tasks"),
        fewest: *counts.iter().min().expect("tasks"),
    }
}

/// Runs `rounds` rounds of the plain and the fair lock in turn (after a
/// warm-up of each) and prints a table and the fair lock's verdicts; with
/// `BREAKDOWN` set, then one more fair round, traced, and where its
/// handovers went (see [`crate::handover`]; `url` is the server's).
pub async fn report(client: &Client, rounds: usize, url: &str) {
    contend(client, "handover-plain", false, Duration::from_millis(300)).await;
    contend(client, "handover-fair", true, Duration::from_millis(300)).await;
    println!(
        "| {TASKS} tasks, one key, handover, round of {ROUND:?} | lock | acquisitions/s | wait p50 | wait p99 | wait max | most / fewest per task |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let (mut plain, mut fair) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so that neither always runs warmer.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_fair in order {
            let key = if is_fair {
                "handover-fair"
            } else {
                "handover-plain"
            };
            let c = contend(client, key, is_fair, ROUND).await;
            println!(
                "| round {round} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} / {} = {:.2} |",
                if is_fair { "fair" } else { "plain" },
                c.total as f64 / ROUND.as_secs_f64(),
                ms(c.p50),
                ms(c.p99),
                ms(c.max),
                c.most,
                c.fewest,
                c.spread(),
            );
            if is_fair { &mut fair } else { &mut plain }.push(c);
        }
    }
    let med = |v: &[Contention], f: fn(&Contention) -> f64| median(v.iter().map(f));
    println!();
    for (name, v) in [("plain", &plain), ("fair", &fair)] {
        println!(
            "handover, {name}: median {:.0} acquisitions/s, median p99 {:.2} ms, worst most/fewest {:.2}",
            med(v, |c| c.total as f64 / ROUND.as_secs_f64()),
            med(v, |c| ms(c.p99)),
            v.iter().map(Contention::spread).fold(0.0, f64::max),
        );
    }
    let p99 = med(&fair, |c| ms(c.p99));
    let spread = fair.iter().map(Contention::spread).fold(0.0, f64::max);
    println!(
        "fair lock: median p99 {p99:.2} ms (target <= 5 ms {}), worst most/fewest {spread:.2} (target <= 1.1 {})",
        verdict(p99 <= 5.0),
        verdict(spread <= 1.1)
    );
    if std::env::var_os("BREAKDOWN").is_some() {
        let log = crate::handover::start(url, "handover-fair").await;
        contend_logged(client, "handover-fair", true, ROUND / 4, Some(log.clone())).await;
        log.clear();
        let c = contend_logged(client, "handover-fair", true, ROUND, Some(log.clone())).await;
        println!();
        println!(
            "traced fair round: {:.0} acquisitions/s, p50 {:.2} ms, p99 {:.2} ms",
            c.total as f64 / ROUND.as_secs_f64(),
            ms(c.p50),
            ms(c.p99)
        );
        log.report();
    }
}
