//! The barrier workload ([`Workload::Barrier`](super::Workload::Barrier)):
//! four workers meet at the cyclic barrier `b`, which waits for three
//! parties (so a generation can trip without one of them, and the one left
//! out is told its generation is over). Each worker loops: arrive in the
//! generation it knows (`wait_in`, the `next` of its last trip; after a
//! break, a stale generation or an error it reads the current one again),
//! with a 3 s `wait_timeout` and a 1 s TTL, then works a while. Every wait
//! is recorded (participant, generation, start, end, outcome), and the
//! worker waiting is the one the plan kills or pauses. At the heal the
//! workers finish the wait they are in (nothing is cancelled) and stop;
//! then a prober round (three participants on a healed network) must trip
//! within [`LIVENESS_BOUND`](super::LIVENESS_BOUND).
//!
//! Judged by [`check_barriers`] on the store's journal and the waits: no
//! trip early or counting a participant past its TTL since its process last
//! waited (kills and pauses are known), all-or-none per generation, no wait
//! past its deadline by more than [`WAIT_BOUND`], generations strictly
//! increasing. With server restarts
//! ([`Scenario::barrier_server_restarts`](super::Scenario::barrier_server_restarts))
//! everything is judged the same way: generations must stay increasing
//! across the restart (the record made anew starts above every generation
//! drawn before), a generation still ends at most once and its waiters
//! never return some `Tripped` and some `Broken`; the one rule that no
//! longer applies as such is that a waiter counted in a trip (or of a
//! generation that broke) is not told `StaleGeneration` while the backend
//! remembers the end: a restart forgets every end, so across one a stale
//! answer is what the contract allows.
//!
//! Replaying a seed with `COORD_SIM_DUMP=1` prints the history judged.

use std::time::Duration;

use coord_api::{Barrier, Error, Instant, LeaseOptions, Result, Tripped, spi::BarrierKind};
use madsim::rand::{Rng, thread_rng};

use super::{NodeClock, Report, Scenario, Shared, SimOptions, TTL, connect, opts};
use crate::history::{
    BarrierCounts, BarrierEvent, BarrierRules, BarrierWait, Downtime, WaitOutcome, WakeRule,
    check_barriers,
};

/// The barrier's name.
pub(super) const BARRIER: &str = "b";
/// The parties each generation waits for (of four workers).
pub(super) const PARTIES: u32 = 3;
/// Every wait's deadline.
pub(super) const WAIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How far past its `wait_timeout` a wait may return, whatever it returns
/// (its generation's outcome, or `Error::Timeout` when it could not reach
/// the backend to break the generation): at its deadline it abandons the
/// call in flight and sends one break, bounded by the operation timeout
/// (the sim transport's, 500 ms); the connection is ordered, so the break
/// leaves once the abandoned request has (up to the longest latency a plan
/// draws, 300 ms); 50 ms for scheduling. The contract's bound: the
/// operation timeout plus one delivery.
pub const WAIT_BOUND: Duration = Duration::from_millis(850);
/// The same bound for a wait that returned `Error::Timeout`.
pub const UNREACHABLE_BOUND: Duration = WAIT_BOUND;
/// How long after its process last waited an arrival may still be counted
/// beyond its TTL: a request already sent travels up to the longest
/// latency of a spike (300 ms), and a margin.
pub const DEAD_BOUND: Duration = Duration::from_millis(350);

fn barrier_opts() -> LeaseOptions {
    opts().wait_timeout(Some(WAIT_TIMEOUT))
}

/// What a wait returned, as the history keeps it.
fn outcome(res: &Result<Tripped>) -> WaitOutcome {
    match res {
        Ok(t) => WaitOutcome::Tripped {
            generation: t.generation,
            by: t.by.to_string(),
            arrivals: t.arrivals.iter().map(|k| k.to_string()).collect(),
        },
        Err(Error::Broken(b)) => WaitOutcome::Broken {
            generation: b.generation,
            reason: b.reason.clone(),
        },
        Err(Error::StaleGeneration {
            generation,
            current,
            ..
        }) => WaitOutcome::Stale {
            generation: *generation,
            current: *current,
        },
        Err(Error::Timeout { .. }) => WaitOutcome::Timeout,
        Err(e) => WaitOutcome::Error(e.to_string()),
    }
}

/// One `wait_in(g)` of `participant` on process `process`, recorded (and,
/// for worker `i`, marked as the worker waiting now).
async fn one_wait(
    barrier: &Barrier,
    participant: &str,
    process: &str,
    g: u64,
    shared: &Shared,
    worker: Option<usize>,
) -> Result<Tripped> {
    let idx = shared.waits.start(BarrierWait {
        participant: participant.to_owned(),
        process: process.to_owned(),
        kind: BarrierKind::Cyclic,
        barrier: BARRIER.to_owned(),
        generation: g,
        leave: false,
        wait_timeout: Some(WAIT_TIMEOUT),
        start: Instant::now(),
        end: None,
        outcome: None,
    });
    if let Some(i) = worker {
        shared.set_holder(i, idx);
    }
    let res = barrier.wait_in(g).await;
    shared.waits.end(idx, Instant::now(), outcome(&res));
    if let Some(i) = worker {
        shared.clear_holder(i);
    }
    if let Err(e) = &res
        && !matches!(
            e,
            Error::Broken(_) | Error::StaleGeneration { .. } | Error::Timeout { .. }
        )
    {
        eprintln!("{}: {participant}: wait_in({g}): {e}", shared.name);
    }
    res
}

/// A worker: waits round after round (in the `next` generation of its
/// last trip, else the current one), working a while between rounds.
/// Finishes the wait it is in at the heal, then stops.
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, barrier_opts(), &shared).await;
    let barrier = client.barrier(BARRIER, PARTIES).participant(&name);
    let mut rng = thread_rng();
    let mut next: Option<u64> = None;
    let mut stopped = shared.stopped.clone();
    while !shared.stopping() {
        let g = match next.take() {
            Some(g) => g,
            None => match barrier.generation().await {
                Ok(g) => g,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await;
                    continue;
                }
            },
        };
        if let Ok(trip) = one_wait(&barrier, &name, &name, g, &shared, Some(i)).await {
            next = Some(trip.next);
        }
        // Work; arrivals spread over more than a TTL.
        let work = Duration::from_millis(rng.gen_range(0..1_200));
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(work) => {}
        }
    }
}

/// After the heal (and once the workers' last waits returned): rounds of
/// [`PARTIES`] participants on one node, each round reading the current
/// generation and waiting in it, until one round trips for all of them.
/// Woken only by notifications and renewals (the fallback retry is 10 s).
/// Returns when it began and when the round tripped.
pub(super) async fn prober(clock: NodeClock, shared: Shared) -> Vec<(Instant, Option<Instant>)> {
    let client = connect(
        "prober",
        &clock,
        barrier_opts().retry_delay(Duration::from_secs(10)),
        &shared,
    )
    .await;
    let start = Instant::now();
    let give_up = start + Duration::from_secs(30);
    while Instant::now() < give_up {
        let Ok(g) = client.barrier(BARRIER, PARTIES).generation().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let round: Vec<_> = (0..PARTIES)
            .map(|k| {
                let p = format!("probe-{k}");
                let barrier = client.barrier(BARRIER, PARTIES).participant(&p);
                let shared = shared.clone();
                tokio::spawn(async move {
                    one_wait(&barrier, &p, "prober", g, &shared, None)
                        .await
                        .is_ok_and(|t| t.generation == g)
                })
            })
            .collect();
        let mut all = true;
        for r in round {
            all &= r.await.unwrap_or(false);
        }
        if all {
            return vec![(start, Some(Instant::now()))];
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    vec![(start, None)]
}

/// The rules every barrier scenario is judged by, for a server clock
/// running at `server_rate`.
pub(super) fn rules(scenario: &Scenario, t0: Instant, server_rate: f64) -> BarrierRules {
    // With notifications lost a waiter reads again at its renewal period
    // (a third of the TTL, on a clock up to 0.4 % slow) and needs a round
    // trip. Trips are not judged from a bound before the plans' last second
    // of lost answers until a call sent in it has timed out (500 ms) and
    // been sent again (the first backoff, 20 ms) after it.
    let wake = scenario.lost_notifications.then(|| {
        let bound = (TTL / 3).mul_f64(1.01) + Duration::from_millis(60);
        let deaf_until = super::HEAL_AT - Duration::from_millis(500);
        let deaf_from = deaf_until - Duration::from_secs(1);
        let answered_again = SimOptions::default().call_timeout + Duration::from_millis(100);
        WakeRule {
            bound,
            except: (t0 + deaf_from - bound, t0 + deaf_until + answered_again),
        }
    });
    BarrierRules {
        wake,
        parties: PARTIES,
        expiry: TTL.div_f64(server_rate),
        dead_bound: DEAD_BOUND,
        wait_bound: WAIT_BOUND,
        unreachable_bound: UNREACHABLE_BOUND,
        max_drift: super::MAX_DRIFT,
    }
}

/// Set (to anything) when replaying a seed, prints the barrier history the
/// checkers judged: the store's events, the waits, the processes' downtime.
pub const DUMP: &str = "COORD_SIM_DUMP";

/// The barrier checkers on the store's journal and the waits (of either
/// kind of barrier).
pub(super) fn judge(
    scenario: &Scenario,
    shared: &Shared,
    log: &[BarrierEvent],
    downtime: &[Downtime],
    t0: Instant,
    server_rate: f64,
    report: &mut Report,
) {
    if scenario.workload == super::Workload::DoubleBarrier {
        super::double::fix_generations(shared, log, Instant::now());
    }
    let waits = shared.waits.all();
    report.violations.extend(check_barriers(
        log,
        &waits,
        downtime,
        &rules(scenario, t0, server_rate),
    ));
    if std::env::var_os(DUMP).is_some() {
        for e in log {
            eprintln!("event {e:?}");
        }
        for w in &waits {
            eprintln!("wait {w:?}");
        }
        for d in downtime {
            eprintln!("down {d:?}");
        }
    }
    let counts = BarrierCounts::of(log, &waits, downtime);
    report.grants = counts.trips;
    report.barriers = counts;
}
