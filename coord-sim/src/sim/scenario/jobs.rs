//! The run-once workload ([`Workload::RunOnce`](super::Workload::RunOnce)):
//! every worker runs occurrences `occ-0`, `occ-1`, ... of job `j` in turn
//! with `Job::run_once`; a body writes with its token to the resource,
//! fenced per occurrence (each write retried until acknowledged, the
//! resource applying each write once), and stops when `ctx.lost` fires.
//! After the heal a prober runs every occurrence: each must be finished or
//! run within [`LIVENESS_BOUND`](super::LIVENESS_BOUND) of waiting.
//!
//! Judged: every occurrence ends up finished; a run whose lease was lost
//! never counts as finished, nothing begins and no write lands after the
//! finish; and, with drift in bounds, no two runs of one occurrence
//! overlap.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Error, Instant, RunOnce};
use madsim::{
    net::Endpoint,
    rand::{Rng, thread_rng},
};

use super::{
    NodeClock, Report, Scenario, Shared, connect, exclusion_where_it_applies, opts, write,
};
use crate::history::{LeadEvent, OnceOutcome, Violation};

/// The job's name.
const JOB: &str = "j";
/// Occurrences of the job.
const OCCURRENCES: usize = 12;
/// How long a body waits for the resource's answer before resending.
const WRITE_WAIT: Duration = Duration::from_millis(400);

/// One run-once call of occurrence `occ`; returns what it did (`None`: an
/// error) after recording its run's outcome. A cancelled call ends its run
/// as interrupted.
async fn run_occurrence(
    name: &str,
    job: &coord_api::Job,
    occ: &str,
    shared: &Shared,
    i: usize,
) -> Option<RunOnce<()>> {
    let cell: Arc<Mutex<Option<usize>>> = Arc::default();
    let (body_cell, body_shared, body_name) = (cell.clone(), shared.clone(), name.to_owned());
    let body = move |ctx: coord_api::JobContext| async move {
        let shared = body_shared;
        let idx = shared.runs.start(
            &body_name,
            occ,
            ctx.token.get(),
            ctx.attempt,
            Instant::now(),
        );
        *body_cell.lock().unwrap() = Some(idx);
        shared.set_holder(i, idx);
        let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
        let mut rng = thread_rng();
        let mut interrupted = false;
        for _ in 0..rng.gen_range(1..6) {
            tokio::select! {
                biased;
                _ = ctx.lost.wait() => { interrupted = true; break }
                _ = write(&ep, occ, &body_name, ctx.token.get(), WRITE_WAIT, true) => {}
            }
            tokio::select! {
                biased;
                _ = ctx.lost.wait() => { interrupted = true; break }
                _ = tokio::time::sleep(Duration::from_millis(rng.gen_range(50..500))) => {}
            }
        }
        shared.runs.end(idx, Instant::now(), interrupted);
        shared.clear_holder(i);
    };
    let mut stopped = shared.stopped.clone();
    let res = tokio::select! {
        biased;
        _ = stopped.wait_for(|s| *s), if name != "prober" => None,
        res = job.run_once(occ, body) => Some(res),
    };
    let idx = *cell.lock().unwrap();
    match res {
        None => {
            // Cancelled at the heal: the body was dropped.
            if let Some(idx) = idx {
                shared.runs.end(idx, Instant::now(), true);
                shared.clear_holder(i);
            }
            None
        }
        Some(Ok(RunOnce::Ran(()))) => {
            shared
                .runs
                .outcome(idx.expect("a body ran"), OnceOutcome::Ran);
            Some(RunOnce::Ran(()))
        }
        Some(Ok(RunOnce::AlreadyFinished)) => Some(RunOnce::AlreadyFinished),
        Some(Ok(other)) => panic!(
            "{}: {name}: run_once({occ}) answered {other:?}, which this scenario does not know",
            shared.name
        ),
        Some(Err(e)) => {
            if let Some(idx) = idx {
                shared.runs.outcome(idx, OnceOutcome::NotFinished);
            }
            if !matches!(
                e,
                Error::Unavailable { .. } | Error::Timeout { .. } | Error::LeaseLost { .. }
            ) {
                eprintln!("{}: {name}: run_once({occ}): {e}", shared.name);
            }
            None
        }
    }
}

/// A runner: runs occurrence after occurrence (retrying one until it ran
/// here or finished elsewhere). Stops at the heal.
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let job = client.job(JOB);
    let mut rng = thread_rng();
    let mut k = 0;
    while k < OCCURRENCES && !shared.stopping() {
        let occ = format!("occ-{k}");
        match run_occurrence(&name, &job, &occ, &shared, i).await {
            Some(_) => k += 1,
            None => tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await,
        }
    }
}

/// After the heal: every occurrence, in turn, must be finished or run here
/// after waiting at most the liveness bound; returns, per occurrence, when
/// the wait began and when it ended (`None`: it failed).
pub(super) async fn prober(
    i: usize,
    clock: NodeClock,
    shared: Shared,
) -> Vec<(Instant, Option<Instant>)> {
    let client = connect(
        "prober",
        &clock,
        opts()
            .retry_delay(Duration::from_secs(10))
            .wait_timeout(Some(Duration::from_secs(10))),
        &shared,
    )
    .await;
    let job = client.job(JOB);
    let mut out = Vec::new();
    for k in 0..OCCURRENCES {
        let occ = format!("occ-{k}");
        let start = Instant::now();
        let runs_before = shared.runs.all().len();
        let res = run_occurrence("prober", &job, &occ, &shared, i).await;
        // The wait ends when the body starts (a run here) or at the answer.
        let waited_until = match res {
            Some(RunOnce::Ran(())) => shared.runs.all()[runs_before..]
                .iter()
                .find(|r| r.client == "prober")
                .map(|r| r.start),
            Some(RunOnce::AlreadyFinished) => Some(Instant::now()),
            Some(other) => unreachable!("run_occurrence passes on no other answer: {other:?}"),
            None => None,
        };
        out.push((start, waited_until));
    }
    out
}

/// The runs that reached a client (their bodies started), as the server
/// log names them.
pub(super) fn known(shared: &Shared) -> HashSet<(String, u64)> {
    let runs = shared.runs.all().into_iter();
    runs.map(|r| (format!("once/{JOB}/{}", r.occurrence), r.token))
        .collect()
}

/// Every occurrence finished; the run rules, and exclusion between runs
/// where it applies.
pub(super) fn judge(
    scenario: &Scenario,
    shared: &Shared,
    events: &[LeadEvent],
    now: Instant,
    report: &mut Report,
) {
    for k in 0..OCCURRENCES {
        let occ = format!("occ-{k}");
        let done = events.iter().any(|e| {
            matches!(e, LeadEvent::OnceEnded { occurrence, finished: true, .. } if *occurrence == occ)
        });
        if !done {
            report
                .violations
                .push(Violation::new("liveness", format!("{occ} never finished")));
        }
    }
    let writes = shared.resource.accepted();
    exclusion_where_it_applies(scenario, report, |exclusion| {
        shared.runs.check(events, &writes, now, exclusion)
    });
    report.grants = shared.runs.all().len();
}
