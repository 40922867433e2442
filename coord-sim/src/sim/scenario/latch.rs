//! The latch workload ([`Workload::Latch`](super::Workload::Latch)): four
//! workers use the countdown latch `l`, round after round. Worker 0 is the
//! coordinator: it sets the count to [`COUNT`] (`try_set_count`, which
//! changes nothing while a generation is not at zero) and waits for the
//! generation to open. Workers 1 to 3 count down: each reads the latch and,
//! for a generation it has not finished (a restarted process knows none),
//! calls `count_down_in(g)`, again after every error (a lost reply, a
//! timeout: the retry must count nothing), then waits for the open too.
//! Every wait has a 3 s `wait_timeout`; the latch lives an hour
//! (`expire_after`), so expiry is not what is tested. Every count-down call
//! and every wait is recorded (participant, generation, start, end,
//! outcome), and the worker calling is the one the plan kills or pauses. At
//! the heal the workers finish the call they are in and stop; then a prober
//! counts down what the workers left open, sets a generation of its own,
//! counts it down with [`COUNT`] participants and waits: the generation must
//! open within [`LIVENESS_BOUND`](super::LIVENESS_BOUND).
//!
//! Judged by [`check_latches`] on the store's journal (its `LatchSet` and
//! `CountedDown` events) and the calls: no generation at zero before
//! [`COUNT`] distinct participants called, no wait opened before the zero,
//! each participant counted once per generation, at most the count per
//! generation with `remaining` going down by one, no wait past its deadline
//! by more than [`WAIT_BOUND`], generations strictly increasing, no
//! `Expired` (nor `NotFound` once set) from a latch that cannot vanish.

use std::time::Duration;

use coord_api::{Error, Instant, Latch, LatchWait, Result};
use madsim::rand::{Rng, thread_rng};

use super::{
    NodeClock, Report, Scenario, Shared, WAIT_BOUND, barriers::WAIT_TIMEOUT, connect, opts,
};
use crate::history::{
    BarrierEvent, Downtime, LatchCall, LatchCallKind, LatchOutcome, LatchRules, check_latches,
    latch_counts,
};

/// The latch's name.
pub(super) const LATCH: &str = "l";
/// Each generation's count: the counting workers (1 to 3).
pub(super) const COUNT: u32 = 3;
/// How long the latch lives from its latest setting: longer than the run.
const EXPIRE_AFTER: Duration = Duration::from_secs(3600);

fn latch(client: &coord_api::Client, participant: &str) -> Latch {
    client
        .latch(LATCH)
        .participant(participant)
        .expire_after(EXPIRE_AFTER)
        .wait_timeout(Some(WAIT_TIMEOUT))
}

/// What a call returned, as the history keeps it.
fn outcome<T>(res: &Result<T>, ok: impl Fn(&T) -> LatchOutcome) -> LatchOutcome {
    match res {
        Ok(v) => ok(v),
        Err(Error::StaleGeneration { current, .. }) => LatchOutcome::Stale { current: *current },
        Err(Error::NotFound { .. }) => LatchOutcome::NotFound,
        Err(Error::Timeout { .. }) => LatchOutcome::Timeout,
        Err(e) => LatchOutcome::Error(e.to_string()),
    }
}

fn record(
    shared: &Shared,
    participant: &str,
    process: &str,
    kind: LatchCallKind,
    generation: Option<u64>,
) -> usize {
    shared.latch.start(LatchCall {
        participant: participant.to_owned(),
        process: process.to_owned(),
        latch: LATCH.to_owned(),
        kind,
        generation,
        wait_timeout: (kind == LatchCallKind::Wait).then_some(WAIT_TIMEOUT),
        start: Instant::now(),
        end: None,
        outcome: None,
    })
}

/// One `count_down_in(g)`, recorded (for worker `i`, marked as the worker
/// calling now).
async fn count_down(
    l: &Latch,
    participant: &str,
    process: &str,
    g: u64,
    shared: &Shared,
    worker: Option<usize>,
) -> Result<u32> {
    let idx = record(
        shared,
        participant,
        process,
        LatchCallKind::CountDown,
        Some(g),
    );
    if let Some(i) = worker {
        shared.set_holder(i, idx);
    }
    let res = l.count_down_in(g).await;
    let o = outcome(&res, |r| LatchOutcome::Counted { remaining: *r });
    shared.latch.end(idx, Instant::now(), o);
    if let Some(i) = worker {
        shared.clear_holder(i);
    }
    res
}

/// One `wait()`, recorded (for worker `i`, marked as the worker waiting).
async fn wait(
    l: &Latch,
    participant: &str,
    process: &str,
    shared: &Shared,
    worker: Option<usize>,
) -> Result<LatchWait> {
    let idx = record(shared, participant, process, LatchCallKind::Wait, None);
    if let Some(i) = worker {
        shared.set_holder(i, idx);
    }
    let res = l.wait().await;
    let o = outcome(&res, |w| match *w {
        LatchWait::Opened { generation } => LatchOutcome::Opened { generation },
        LatchWait::Expired { generation } => LatchOutcome::Expired { generation },
        other => LatchOutcome::Error(format!("{other:?}")),
    });
    shared.latch.end(idx, Instant::now(), o);
    if let Some(i) = worker {
        shared.clear_holder(i);
    }
    if let Err(e) = &res
        && !matches!(e, Error::Timeout { .. } | Error::Unavailable { .. })
    {
        eprintln!("{}: {participant}: latch wait: {e}", shared.name);
    }
    res
}

/// A worker: the coordinator (worker 0) sets and waits; the others count
/// down once per generation and wait. Each finishes the call it is in at
/// the heal, then stops.
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared) {
    let name = format!("c{i}");
    let client = connect(
        &name,
        &clock,
        opts().wait_timeout(Some(WAIT_TIMEOUT)),
        &shared,
    )
    .await;
    let l = latch(&client, &name);
    let mut rng = thread_rng();
    let mut stopped = shared.stopped.clone();
    // The generation this counter counted down in last.
    let mut done: Option<u64> = None;
    while !shared.stopping() {
        let pause = if i == 0 {
            // Set (or find a generation not yet at zero) and wait for it.
            match l.try_set_count(COUNT).await {
                Ok(_) => {
                    let _ = wait(&l, &name, &name, &shared, Some(i)).await;
                    rng.gen_range(0..500)
                }
                Err(_) => rng.gen_range(20..200),
            }
        } else {
            match l.state().await {
                Ok(Some(st)) if st.remaining > 0 && done != Some(st.generation) => {
                    let g = st.generation;
                    // Again after every error: a retry counts nothing.
                    while !shared.stopping() {
                        match count_down(&l, &name, &name, g, &shared, Some(i)).await {
                            Ok(_) => {
                                done = Some(g);
                                break;
                            }
                            Err(Error::StaleGeneration { .. } | Error::NotFound { .. }) => break,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(rng.gen_range(10..100)))
                                    .await
                            }
                        }
                    }
                    if done == Some(g) && !shared.stopping() {
                        let _ = wait(&l, &name, &name, &shared, Some(i)).await;
                    }
                    rng.gen_range(0..800)
                }
                _ => rng.gen_range(20..150),
            }
        };
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
    }
}

/// After the heal (once the workers' last calls returned): counts down
/// what the workers left open (with participants `probe-0`..), sets a
/// generation of [`COUNT`], waits for it while `probe-0`.. count it down;
/// until a generation it set opens. Woken only by notifications (the
/// fallback retry is 10 s). Returns when it began and when its generation
/// opened.
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
    let probes: Vec<(String, Latch)> = (0..COUNT)
        .map(|k| {
            let p = format!("probe-{k}");
            let l = latch(&client, &p);
            (p, l)
        })
        .collect();
    let l = latch(&client, "prober");
    let count_all = |g: u64| {
        let shared = shared.clone();
        let probes = probes.clone();
        async move {
            for (p, l) in &probes {
                let _ = count_down(l, p, "prober", g, &shared, None).await;
            }
        }
    };
    while Instant::now() < give_up {
        match l.state().await {
            // The workers' last generation, not at zero: count it down.
            Ok(Some(st)) if st.remaining > 0 => {
                count_all(st.generation).await;
                continue;
            }
            Ok(_) => {}
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        if !matches!(l.try_set_count(COUNT).await, Ok(true)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let Ok(Some(st)) = l.state().await else {
            continue;
        };
        let g = st.generation;
        let waiting = {
            let (l, shared) = (l.clone(), shared.clone());
            tokio::spawn(async move { wait(&l, "prober", "prober", &shared, None).await })
        };
        count_all(g).await;
        if let Ok(Ok(LatchWait::Opened { generation })) = waiting.await
            && generation == g
        {
            return vec![(start, Some(Instant::now()))];
        }
    }
    vec![(start, None)]
}

/// The latch checkers on the store's journal and the calls.
pub(super) fn judge(
    scenario: &Scenario,
    shared: &Shared,
    log: &[BarrierEvent],
    downtime: &[Downtime],
    report: &mut Report,
) {
    let calls = shared.latch.all();
    let rules = LatchRules {
        wait_bound: WAIT_BOUND,
        max_drift: super::MAX_DRIFT,
        may_vanish: scenario.server_restarts,
    };
    report
        .violations
        .extend(check_latches(log, &calls, downtime, &rules));
    if std::env::var_os(super::barriers::DUMP).is_some() {
        for e in log {
            eprintln!("event {e:?}");
        }
        for c in &calls {
            eprintln!("call {c:?}");
        }
        for d in downtime {
            eprintln!("down {d:?}");
        }
    }
    let counts = latch_counts(log, &calls, downtime);
    report.grants = counts.trips;
    report.barriers = counts;
}
