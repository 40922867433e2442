//! The multi-lock workload ([`Workload::MultiLock`](super::Workload::MultiLock)):
//! every worker takes a set of 2 or 3 of the [`KEYS`], named in a random
//! order, as one multi-lock; writes to each member's key of the resource
//! with that member's token while it believes it holds the set; releases
//! (also when it found the set lost), again. Even workers' clients take a
//! set in one backend step (`acquire_all`); odd workers' clients do not see
//! that capability and take the locks one by one in key order, so both
//! paths contend for the same keys. After the heal a prober must get all
//! the keys at once within [`LIVENESS_BOUND`](super::LIVENESS_BOUND).
//!
//! Judged, key by key: (c) no two clients believe they hold one key at one
//! instant, where [`Scenario::checks_exclusion`] says it applies (otherwise
//! the overlaps are only counted); (b) member tokens increase per key as
//! clients saw them. The resource's fencing and the server's token order
//! are judged per key for every workload.

use std::{collections::HashSet, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Client, Instant, LeaseOptions, MultiGuard, Namespace, PresenceOptions, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply},
};
use madsim::{
    net::Endpoint,
    rand::{Rng, seq::SliceRandom, thread_rng},
};

use super::{NodeClock, Report, Scenario, Shared, client_over, opts, sim_backend, write};

/// The keys the sets are drawn from.
const KEYS: [&str; 5] = ["m0", "m1", "m2", "m3", "m4"];

/// A client that does not see the backend's `acquire_all`.
#[derive(Debug)]
struct OneByOne {
    inner: DynBackend,
}

impl fmt::Display for OneByOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one-by-one({})", self.inner)
    }
}

#[async_trait]
impl Dispatch for OneByOne {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        let mut families = Families::of(&*self.inner);
        if let Some(locks) = families.locks.as_mut() {
            locks.acquire_all = false;
        }
        families
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        call.run(self.inner.clone()).await
    }
}

/// A client named `name` as [`connect`](super::connect) makes it, without
/// `acquire_all` when `one_by_one`.
async fn connect(
    name: &str,
    clock: &NodeClock,
    opts: LeaseOptions,
    shared: &Shared,
    one_by_one: bool,
) -> Client {
    let mut backend = sim_backend(shared).await;
    if one_by_one {
        backend = Arc::new(Dispatched::new(OneByOne { inner: backend }));
    }
    client_over(backend, name, clock, opts, PresenceOptions::default())
}

/// Each member's key and token.
fn members(guard: &MultiGuard) -> Vec<(String, u64)> {
    let tokens = guard.tokens();
    tokens.map(|(k, t)| (k.to_string(), t.get())).collect()
}

/// A worker: takes a random set, writes to each member while it believes
/// it holds the set, releases (also when it found the set lost), again.
pub(super) async fn worker(i: usize, clock: NodeClock, shared: Shared) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, opts(), &shared, i % 2 == 1).await;
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let mut rng = thread_rng();
    while !shared.stopping() {
        let n = rng.gen_range(2..=3);
        let set: Vec<&str> = KEYS.choose_multiple(&mut rng, n).copied().collect();
        let set = client.multi_lock(set);
        let sent = Instant::now();
        let mut stopped = shared.stopped.clone();
        // At the heal, waiting workers give up: only the prober waits then.
        let res = tokio::select! {
            res = set.lock() => res,
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
        let members = members(&guard);
        let until = guard.valid_until().map_or(received, |u| clock.to_global(u));
        let belief = (shared.keyed).begin(&name, &members, sent, received, until);
        shared.set_holder(i, belief);
        let hold_until = received + Duration::from_millis(rng.gen_range(50..800));
        loop {
            let now = Instant::now();
            match guard.valid_until() {
                Some(u) => shared.keyed.extend_to(belief, clock.to_global(u)),
                None => {
                    shared.keyed.end_at(belief, now);
                    break;
                }
            }
            if now >= hold_until || shared.stopping() {
                break;
            }
            for (key, token) in &members {
                let wait = Duration::from_millis(300);
                let _ = write(&ep, key, &name, *token, wait, false).await;
            }
            tokio::select! {
                _ = guard.lost() => {
                    shared.keyed.end_at(belief, Instant::now());
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(rng.gen_range(20..150))) => {}
            }
        }
        shared.keyed.end_at(belief, Instant::now());
        shared.clear_holder(i);
        let _ = guard.release().await;
    }
}

/// After the heal: waits for every key at once (woken only by
/// notifications and the server's "retry in": its fallback retry is
/// long); returns when it began waiting and when it got them.
pub(super) async fn prober(
    i: usize,
    clock: NodeClock,
    shared: Shared,
) -> Vec<(Instant, Option<Instant>)> {
    let start = Instant::now();
    let opts = opts()
        .retry_delay(Duration::from_secs(10))
        .wait_timeout(None);
    let client = connect(&format!("c{i}"), &clock, opts, &shared, false).await;
    let all = client.multi_lock(KEYS);
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up {
        let sent = Instant::now();
        match all.lock().await {
            Ok(g) => {
                let at = Instant::now();
                let until = g.valid_until().map_or(at, |u| clock.to_global(u));
                let b = shared.keyed.begin("prober", &members(&g), sent, at, until);
                shared.keyed.end_at(b, at);
                let _ = g.release().await;
                return vec![(start, Some(at))];
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    vec![(start, None)]
}

/// The member grants that reached a client, as the server log names them.
pub(super) fn known(shared: &Shared) -> HashSet<(String, u64)> {
    shared.keyed.known()
}

/// Checkers (c) and (b), key by key.
pub(super) fn judge(scenario: &Scenario, shared: &Shared, report: &mut Report) {
    let overlaps = shared.keyed.check_exclusion();
    report.belief_overlaps = overlaps.len();
    if scenario.checks_exclusion() {
        report.violations.extend(overlaps);
    }
    report.violations.extend(shared.keyed.check_tokens());
    report.grants = shared.keyed.sets();
}
