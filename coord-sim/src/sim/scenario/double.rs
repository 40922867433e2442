//! The double barrier workload
//! ([`Workload::DoubleBarrier`](super::Workload::DoubleBarrier)): four
//! workers use the double barrier `d` of three parties. Each loops: enter
//! (every party inside, or `Broken` at its 3 s deadline, or
//! `TooManyParticipants` when three are inside already), work a while
//! inside (its membership renewed in the background), leave and wait until
//! every member left or expired; then work outside. Every enter and every
//! leave is recorded; the worker entering or inside is the one the plan
//! kills or pauses (a member killed inside must not keep the others
//! waiting past its TTL). At the heal the workers finish what they are in
//! and stop (a member inside leaves without waiting); then three probers
//! must enter and leave within [`LIVENESS_BOUND`](super::LIVENESS_BOUND).
//!
//! Judged by [`check_barriers`](crate::history::check_barriers): an entry
//! counts three live arrivals (none of a participant gone past its TTL),
//! every entrant of a generation returns as the backend decided (all
//! inside, or all broken), a leave returns only once the backend ended the
//! generation, the backend ends it only once every member left or expired,
//! no enter or leave past its deadline by more than a bound, generations
//! increasing.

use std::time::Duration;

use coord_api::{DoubleBarrier, Error, Inside, Instant, Result, spi::BarrierKind};
use madsim::rand::{Rng, thread_rng};

use super::{NodeClock, Shared, connect, opts};
use crate::history::{BarrierEvent, BarrierWait, WaitOutcome};

/// The double barrier's name.
pub(super) const BARRIER: &str = "d";
/// The parties (of four workers).
pub(super) const PARTIES: u32 = super::barriers::PARTIES;
use super::barriers::WAIT_TIMEOUT;

fn record(
    shared: &Shared,
    participant: &str,
    process: &str,
    generation: u64,
    leave: bool,
) -> usize {
    shared.waits.start(BarrierWait {
        participant: participant.to_owned(),
        process: process.to_owned(),
        kind: BarrierKind::Double,
        barrier: BARRIER.to_owned(),
        generation,
        leave,
        wait_timeout: Some(WAIT_TIMEOUT),
        start: Instant::now(),
        end: None,
        outcome: None,
    })
}

/// What an enter or a leave returned, and the generation it names.
fn outcome<T>(res: &Result<T>, inside: impl Fn(&T) -> WaitOutcome) -> (WaitOutcome, Option<u64>) {
    match res {
        Ok(v) => {
            let o = inside(v);
            let g = match &o {
                WaitOutcome::Tripped { generation, .. } => Some(*generation),
                _ => None,
            };
            (o, g)
        }
        Err(Error::Broken(b)) => (
            WaitOutcome::Broken {
                generation: b.generation,
                reason: b.reason.clone(),
            },
            Some(b.generation),
        ),
        Err(Error::StaleGeneration {
            generation,
            current,
            ..
        }) => (
            WaitOutcome::Stale {
                generation: *generation,
                current: *current,
            },
            Some(*generation),
        ),
        Err(Error::Timeout { .. }) => (WaitOutcome::Timeout, None),
        Err(e) => (WaitOutcome::Error(e.to_string()), None),
    }
}

/// One `enter`, recorded (for worker `i`, marked as the worker to target
/// until it left). The generation recorded is the one `enter` names, else
/// the current one read just before.
async fn enter(
    db: &DoubleBarrier,
    participant: &str,
    process: &str,
    shared: &Shared,
    worker: Option<usize>,
) -> Result<Inside> {
    let guess = db.state().await?.generation;
    let idx = record(shared, participant, process, guess, false);
    if let Some(i) = worker {
        shared.set_holder(i, idx);
    }
    let res = db.enter().await;
    let (o, g) = outcome(&res, |inside: &Inside| WaitOutcome::Tripped {
        generation: inside.generation(),
        by: inside
            .members()
            .last()
            .map(|k| k.to_string())
            .unwrap_or_default(),
        arrivals: inside.members().iter().map(|k| k.to_string()).collect(),
    });
    if let Some(g) = g {
        shared.waits.set_generation(idx, g);
    }
    shared.waits.end(idx, Instant::now(), o);
    if res.is_err()
        && let Some(i) = worker
    {
        shared.clear_holder(i);
    }
    if let Err(e) = &res
        && !matches!(
            e,
            Error::Broken(_)
                | Error::StaleGeneration { .. }
                | Error::Timeout { .. }
                | Error::TooManyParticipants { .. }
        )
    {
        eprintln!("{}: {participant}: enter: {e}", shared.name);
    }
    res
}

/// One `leave` of `inside`, recorded.
async fn leave(
    inside: Inside,
    participant: &str,
    process: &str,
    shared: &Shared,
    worker: Option<usize>,
) -> Result<()> {
    let idx = record(shared, participant, process, inside.generation(), true);
    if let Some(i) = worker {
        shared.set_holder(i, idx);
    }
    let res = inside.leave().await;
    let (o, _) = outcome(&res, |_| WaitOutcome::Left);
    shared.waits.end(idx, Instant::now(), o);
    if let Some(i) = worker {
        shared.clear_holder(i);
    }
    res
}

/// A worker: enter, work inside, leave, work outside, again. Finishes what
/// it is in at the heal, then stops (a member inside then leaves without
/// waiting).
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared) {
    let name = format!("c{i}");
    let client = connect(
        &name,
        &clock,
        opts().wait_timeout(Some(WAIT_TIMEOUT)),
        &shared,
    )
    .await;
    let db = client.double_barrier(BARRIER, PARTIES).participant(&name);
    let mut rng = thread_rng();
    let mut stopped = shared.stopped.clone();
    while !shared.stopping() {
        if let Ok(inside) = enter(&db, &name, &name, &shared, Some(i)).await {
            {
                let work = Duration::from_millis(rng.gen_range(0..1_500));
                let stop = tokio::select! {
                    _ = stopped.wait_for(|s| *s) => true,
                    _ = inside.lost() => false,
                    _ = tokio::time::sleep(work) => false,
                };
                if stop {
                    // Dropped: leaves without waiting.
                    shared.clear_holder(i);
                    return;
                }
                let _ = leave(inside, &name, &name, &shared, Some(i)).await;
            }
        }
        let work = Duration::from_millis(rng.gen_range(0..800));
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(work) => {}
        }
    }
}

/// After the heal (once the workers' last enters and leaves returned):
/// rounds of [`PARTIES`] probers on one node, each round entering together
/// (each retrying what is refused, and leaving at once a generation it
/// entered with others than probers, for a while) and, if they all got
/// inside one generation, leaving together; until a round does both. Woken only by notifications and renewals (the
/// fallback retry is 10 s). Returns when they began and when the last of
/// the round that made it left.
pub(super) async fn prober(clock: NodeClock, shared: Shared) -> Vec<(Instant, Option<Instant>)> {
    let client = connect(
        "prober",
        &clock,
        opts()
            .wait_timeout(Some(WAIT_TIMEOUT))
            .retry_delay(Duration::from_secs(10)),
        &shared,
    )
    .await;
    let start = Instant::now();
    let give_up = start + Duration::from_secs(30);
    let barrier = |k: u32| {
        client
            .double_barrier(BARRIER, PARTIES)
            .participant(&format!("probe-{k}"))
    };
    while Instant::now() < give_up {
        let entering: Vec<_> = (0..PARTIES)
            .map(|k| {
                let (db, shared) = (barrier(k), shared.clone());
                tokio::spawn(async move {
                    // Refused (the generation read ended before the
                    // arrival landed, or its parties are inside): again,
                    // for a while.
                    let until = Instant::now() + WAIT_TIMEOUT;
                    loop {
                        let p = format!("probe-{k}");
                        match enter(&db, &p, "prober", &shared, None).await {
                            // In with probers only: a leftover of the
                            // workers (a member killed inside) would keep
                            // the others out until it expires.
                            Ok(inside)
                                if inside
                                    .members()
                                    .iter()
                                    .all(|m| m.as_str().starts_with("probe-")) =>
                            {
                                return Some(inside);
                            }
                            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                            Err(_) if Instant::now() < until => {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            Err(_) => return None,
                        }
                    }
                })
            })
            .collect();
        let mut inside = Vec::new();
        for e in entering {
            inside.push(e.await.ok().flatten());
        }
        let generations: Vec<Option<u64>> = inside
            .iter()
            .map(|i| i.as_ref().map(Inside::generation))
            .collect();
        if generations[0].is_none() || generations.iter().any(|g| *g != generations[0]) {
            // Not one round: whoever got in leaves (without waiting).
            drop(inside);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let leaving: Vec<_> = inside
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(k, i)| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    leave(i, &format!("probe-{k}"), "prober", &shared, None)
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut all = true;
        for l in leaving {
            all &= l.await.unwrap_or(false);
        }
        if all {
            return vec![(start, Some(Instant::now()))];
        }
    }
    vec![(start, None)]
}

/// The backend's log as recorded, for the generation of waits that did
/// not name one: the latest generation the participant arrived in while
/// the wait was open.
pub(super) fn fix_generations(shared: &Shared, log: &[BarrierEvent], now: Instant) {
    for (idx, w) in shared.waits.all().into_iter().enumerate() {
        if w.kind != BarrierKind::Double || w.leave {
            continue;
        }
        if matches!(
            w.outcome,
            Some(
                WaitOutcome::Tripped { .. }
                    | WaitOutcome::Broken { .. }
                    | WaitOutcome::Stale { .. }
            )
        ) {
            continue;
        }
        let end = w.end.unwrap_or(now);
        let arrived = log.iter().rev().find_map(|e| match e {
            BarrierEvent::Arrived {
                kind: BarrierKind::Double,
                participant,
                generation,
                at,
                ..
            } if *participant == w.participant && w.start <= *at && *at <= end => Some(*generation),
            _ => None,
        });
        if let Some(g) = arrived {
            shared.waits.set_generation(idx, g);
        }
    }
}
