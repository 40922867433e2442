//! The lock workload ([`Workload::Lock`](super::Workload::Lock)): every
//! worker takes the lock `k`, writes to the resource with its token while it
//! believes it holds the lock, and releases (also when it found the lease
//! lost), again. After the heal a prober must get the lock within
//! [`LIVENESS_BOUND`](super::LIVENESS_BOUND).
//!
//! Judged: (c) no two clients believe they hold the lock at one instant,
//! where [`Scenario::checks_exclusion`] says it applies (otherwise the
//! overlaps are only counted).

use std::{collections::HashSet, time::Duration};

use coord_api::Instant;
use madsim::{
    net::Endpoint,
    rand::{Rng, thread_rng},
};

use super::{NodeClock, Report, Scenario, Shared, connect, opts, write};
use crate::history::ObservedGrant;

/// The lock's key.
const KEY: &str = "k";

/// A worker: takes the lock, writes to the resource while it believes it
/// holds it, releases (also when it found the lease lost), again.
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let lock = client.lock(KEY);
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let mut rng = thread_rng();
    while !shared.stopping() {
        let sent = Instant::now();
        let mut stopped = shared.stopped.clone();
        // At the heal, waiting workers give up: only the prober waits then.
        let res = tokio::select! {
            res = lock.lock() => res,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let guard = match res {
            Ok(g) => g,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await;
                continue;
            }
        };
        let received = Instant::now();
        let token = guard.token().get();
        shared.grants.push(ObservedGrant {
            client: name.clone(),
            token,
            sent,
            received,
        });
        let until = guard.valid_until().map_or(received, |u| clock.to_global(u));
        let belief = shared.beliefs.begin(&name, token, received, until);
        shared.set_holder(i, belief);
        let hold_until = received + Duration::from_millis(rng.gen_range(100..1_500));
        loop {
            let now = Instant::now();
            match guard.valid_until() {
                Some(u) => shared.beliefs.extend_to(belief, clock.to_global(u)),
                None => {
                    shared.beliefs.end_at(belief, now);
                    break;
                }
            }
            if now >= hold_until || shared.stopping() {
                break;
            }
            let _ = write(&ep, KEY, &name, token, Duration::from_millis(500), false).await;
            tokio::select! {
                _ = guard.lost() => {
                    shared.beliefs.end_at(belief, Instant::now());
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(rng.gen_range(20..150))) => {}
            }
        }
        shared.beliefs.end_at(belief, Instant::now());
        shared.clear_holder(i);
        let _ = guard.release().await;
    }
}

/// After the heal: waits for the lock (woken only by notifications and the
/// server's "retry in": its fallback retry is long); returns when it began
/// waiting and when it got the lock.
pub(super) async fn prober(
    i: usize,
    clock: NodeClock,
    shared: Shared,
) -> Vec<(Instant, Option<Instant>)> {
    let start = Instant::now();
    let client = connect(&format!("c{i}"), &clock, opts(), &shared).await;
    let lock = client.lock(KEY).with_options(
        opts()
            .retry_delay(Duration::from_secs(10))
            .wait_timeout(None),
    );
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up {
        let sent = Instant::now();
        match lock.lock().await {
            Ok(g) => {
                let at = Instant::now();
                shared.grants.push(ObservedGrant {
                    client: "prober".into(),
                    token: g.token().get(),
                    sent,
                    received: at,
                });
                let until = g.valid_until().map_or(at, |u| clock.to_global(u));
                let b = shared.beliefs.begin("prober", g.token().get(), at, until);
                shared.beliefs.end_at(b, at);
                let _ = g.release().await;
                return vec![(start, Some(at))];
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    vec![(start, None)]
}

/// The grants that reached a client, as the server log names them.
pub(super) fn known(shared: &Shared) -> HashSet<(String, u64)> {
    let grants = shared.grants.all().into_iter();
    grants.map(|g| (KEY.to_owned(), g.token)).collect()
}

/// Checker (c) on the beliefs.
pub(super) fn judge(scenario: &Scenario, shared: &Shared, report: &mut Report) {
    let overlaps = shared.beliefs.check();
    report.belief_overlaps = overlaps.len();
    if scenario.checks_exclusion() {
        report.violations.extend(overlaps);
    }
    report.grants = shared.grants.len();
}
