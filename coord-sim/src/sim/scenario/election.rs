//! The election workloads: every worker campaigns in election `e`; a leader
//! writes to the resource with its term while `is_leader()`, and campaigns
//! again once it stopped leading.
//!
//! - [`Workload::Leadership`]: a leader resigns after a while. After the
//!   heal a prober must be elected within
//!   [`LIVENESS_BOUND`](super::LIVENESS_BOUND).
//! - [`Workload::LeaderCrash`]: leaders keep leading; the leader's node is
//!   killed a few times (restarted later); each failover, from the kill to
//!   the next `Elected` a client receives, must take at most
//!   `TTL + FAILOVER_BOUND`.
//!
//! Judged: one holder per term, terms increasing in the backend's order, a
//! leader's term one the backend granted; and, with drift in bounds and no
//! pauses, no two leaders believing at one instant (otherwise the overlaps
//! are only counted).

use std::{collections::HashSet, time::Duration};

use coord_api::Instant;
use madsim::{
    net::Endpoint,
    rand::{Rng, thread_rng},
};

use super::{
    FAILOVER_BOUND, NodeClock, Report, Scenario, Shared, TTL, Workload, connect,
    exclusion_where_it_applies, opts, write,
};
use crate::history::{LeadEvent, ObservedGrant, Violation, check_failovers, failovers};

/// The election's name.
const ELECTION: &str = "e";

/// A candidate: campaigns; while leading writes with its term, and (with
/// `resign`) resigns after a while; campaigns again. Stops at the heal.
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared, resign: bool) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let election = client.election(ELECTION).metadata(name.clone());
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let mut rng = thread_rng();
    let mut stopped = shared.stopped.clone();
    while !shared.stopping() {
        let sent = Instant::now();
        let res = tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => return,
            res = election.campaign() => res,
        };
        let leadership = match res {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await;
                continue;
            }
        };
        let elected = Instant::now();
        let term = leadership.term().get();
        let idx = record(&shared, &name, term, sent, elected);
        shared.set_holder(i, idx);
        let hold_until = if resign {
            elected + Duration::from_millis(rng.gen_range(300..3_000))
        } else {
            elected + Duration::from_secs(3600)
        };
        loop {
            if !leadership.is_leader() {
                break;
            }
            if Instant::now() >= hold_until || shared.stopping() {
                break;
            }
            let pause = Duration::from_millis(rng.gen_range(20..150));
            tokio::select! {
                biased;
                _ = leadership.lost() => break,
                _ = async {
                    let wait = Duration::from_millis(400);
                    let _ = write(&ep, ELECTION, &name, term, wait, false).await;
                    tokio::time::sleep(pause).await;
                } => {}
            }
        }
        // It stops believing here: lost, or about to resign.
        shared.terms.end_at(idx, Instant::now());
        shared.clear_holder(i);
        let _ = leadership.resign().await;
    }
}

/// After the heal: campaigns (woken only by notifications and the leader's
/// expiry) until elected; returns when it started and when it was elected.
pub(super) async fn prober(clock: NodeClock, shared: Shared) -> Vec<(Instant, Option<Instant>)> {
    let name = "prober";
    let client = connect(
        "prober",
        &clock,
        opts()
            .retry_delay(Duration::from_secs(10))
            .wait_timeout(None),
        &shared,
    )
    .await;
    let election = client.election(ELECTION);
    let start = Instant::now();
    let give_up = start + Duration::from_secs(30);
    while Instant::now() < give_up {
        let sent = Instant::now();
        if let Ok(l) = election.campaign().await {
            let at = Instant::now();
            let idx = record(&shared, name, l.term().get(), sent, at);
            shared.terms.end_at(idx, at);
            let _ = l.resign().await;
            return vec![(start, Some(at))];
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    vec![(start, None)]
}

/// `client` won `term` (its campaign sent at `sent`, answered at
/// `elected`): a grant and a term begun; returns the term's index.
fn record(shared: &Shared, client: &str, term: u64, sent: Instant, elected: Instant) -> usize {
    shared.grants.push(ObservedGrant {
        client: client.to_owned(),
        token: term,
        sent,
        received: elected,
    });
    shared.terms.begin(client, term, sent, elected)
}

/// The terms that reached a client, as the server log names them.
pub(super) fn known(shared: &Shared) -> HashSet<(String, u64)> {
    let terms = shared.terms.all().into_iter();
    terms
        .map(|t| (format!("election/{ELECTION}"), t.term))
        .collect()
}

/// The term rules, exclusion between leaders where it applies, and (after
/// leader crashes) the failover bound.
pub(super) fn judge(
    scenario: &Scenario,
    shared: &Shared,
    events: &[LeadEvent],
    now: Instant,
    crashes: &[Instant],
    report: &mut Report,
) {
    exclusion_where_it_applies(scenario, report, |exclusion| {
        shared.terms.check(events, now, exclusion)
    });
    report.grants = shared.terms.all().len();
    if scenario.workload == Workload::LeaderCrash {
        let elected: Vec<Instant> = shared.terms.all().iter().map(|t| t.elected).collect();
        let f = failovers(crashes, &elected);
        report
            .violations
            .extend(check_failovers(&f, TTL + FAILOVER_BOUND));
        report.failovers = f.into_iter().flatten().collect();
        if crashes.is_empty() {
            report.violations.push(Violation::new(
                "failover",
                "no leader was ever killed".into(),
            ));
        }
    }
}
