//! The fair lock workload ([`Workload::Fair`](super::Workload::Fair)), with a
//! run of its own: [`WAITERS`] worker nodes (each its own skewed, drifting
//! clock) wait for one fair lock with a short waiter TTL ([`WAITER_TTL`]),
//! write to the fenced resource with their token while they hold it, and
//! release, again. Each worker's connection records its queued attempts
//! (`locks.acquire_queued`: sent, answered, granted or refused). The plan
//! kills some workers for good (waiting or holding), pauses others and cuts
//! others off from the server for a while. After the heal a prober must get
//! the lock within [`LIVENESS`].
//!
//! Judged: `fair-order` ([`check_fair`]: a waiter that queued before
//! another began and kept its place was granted first), the server's token
//! order, the clients' grants, the resource's fencing, and liveness; two
//! holders at once are counted (pauses make them possible).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Client, Instant, Namespace, PresenceOptions, Result,
    spi::{Acquire, Call, Dispatch, Dispatched, DynBackend, Families, LeaseId, Reply},
};
use madsim::{
    net::{Endpoint, NetSim},
    rand::{Rng, thread_rng},
    runtime::{Handle, NodeHandle},
};

use super::{
    NodeClock, Report, SERVER, Scenario, ServerConfig, Shared, TTL, client_ip, opts,
    resource::{RESOURCE, serve_resource, write},
    serve,
};
use crate::history::{
    FairLog, FairRules, ObservedGrant, QueuedAttempt, ServerLog, check_fair, check_liveness,
};

/// Worker nodes.
pub const WAITERS: usize = 6;
/// The waiters' waiter TTL: a dead waiter holds the queue up this long.
pub const WAITER_TTL: Duration = Duration::from_millis(600);
/// How long after the heal the prober may wait: a killed holder's lease
/// (its TTL) and a dead waiter's place (its waiter TTL) on a server clock
/// up to 0.4 % slow, a call cut off at the heal (its timeout), round trips.
pub const LIVENESS: Duration = Duration::from_millis(2_800);
/// The lock's key.
const KEY: &str = "fair";
/// Faults start and end.
const FAULTS: (u64, u64) = (1_000, 14_000);
/// When everything heals and the workers stop.
const HEAL_AT: Duration = Duration::from_secs(15);

/// A connection that records every queued attempt into the log.
#[derive(Debug)]
struct Recorded {
    inner: DynBackend,
    process: String,
    log: FairLog,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recorded({})", self.inner)
    }
}

#[async_trait]
impl Dispatch for Recorded {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let op = call.op();
        let sent = Instant::now();
        match (op.family, op.name) {
            ("locks", "acquire_queued") => {}
            ("locks", "leave_queue") => {
                // A place given back ends the wait's place when sent: recorded
                // as an attempt without an answer.
                if let Some(holder) = call.args::<(LeaseId,)>().map(|a| a.0.holder.to_string()) {
                    let gone = QueuedAttempt {
                        sent,
                        returned: sent,
                        answer: None,
                    };
                    self.log.push(&self.process, &holder, gone);
                }
                return call.run(self.inner.clone()).await;
            }
            _ => return call.run(self.inner.clone()).await,
        }
        type Args = (LeaseId, Duration, Duration, bool);
        let holder = call.args::<Args>().map(|a| a.0.holder.to_string());
        // An attempt dropped before its answer (its caller cancelled it) is
        // recorded too, as unanswered: the wait gives its place back after it.
        let mut pending = Pending {
            log: &self.log,
            process: &self.process,
            holder,
            sent,
        };
        let reply = call.run(self.inner.clone()).await;
        if let Some(holder) = pending.holder.take() {
            let answer = match &reply {
                Ok(r) => r.downcast_ref::<Acquire>().map(|a| match a {
                    Acquire::Granted(g) => Some(g.token.get()),
                    _ => None,
                }),
                Err(_) => None,
            };
            let attempt = QueuedAttempt {
                sent,
                returned: Instant::now(),
                answer,
            };
            self.log.push(&self.process, &holder, attempt);
        }
        reply
    }
}

/// A queued attempt in flight: recorded as unanswered if dropped.
struct Pending<'a> {
    log: &'a FairLog,
    process: &'a str,
    /// Taken when the answer is recorded.
    holder: Option<String>,
    sent: Instant,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(holder) = self.holder.take() {
            let attempt = QueuedAttempt {
                sent: self.sent,
                returned: Instant::now(),
                answer: None,
            };
            self.log.push(self.process, &holder, attempt);
        }
    }
}

/// A client named `name` on the current node, its queued attempts recorded.
async fn connect(name: &str, clock: &NodeClock, shared: &Shared, log: &FairLog) -> Client {
    let recorded = Recorded {
        inner: super::sim_backend(shared).await,
        process: name.to_owned(),
        log: log.clone(),
    };
    let opts = opts().wait_timeout(Some(Duration::from_secs(10)));
    let backend = Arc::new(Dispatched::new(recorded));
    super::client_over(backend, name, clock, opts, PresenceOptions::default())
}

/// A worker: waits for the fair lock, writes while it holds it, releases,
/// again, until the heal.
async fn worker(i: usize, clock: NodeClock, shared: Shared, log: FairLog) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, &shared, &log).await;
    let lock = client.lock(KEY).fair(true).waiter_ttl(WAITER_TTL);
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let mut rng = thread_rng();
    while !shared.stopping() {
        let sent = Instant::now();
        let mut stopped = shared.stopped.clone();
        let res = tokio::select! {
            res = lock.lock() => res,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let Ok(guard) = res else {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await;
            continue;
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
        let hold_until = received + Duration::from_millis(rng.gen_range(10..150));
        while guard.is_held() && Instant::now() < hold_until {
            let _ = write(&ep, KEY, &name, token, Duration::from_millis(300), false).await;
            if let Some(u) = guard.valid_until() {
                shared.beliefs.extend_to(belief, clock.to_global(u));
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
        }
        shared.beliefs.end_at(belief, Instant::now());
        shared.clear_holder(i);
        let _ = guard.release().await;
    }
}

/// The fault plan's kinds.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Pause,
    Clog,
}

/// Runs the fair lock workload and judges it.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let net = NetSim::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let resource_addr: SocketAddr = RESOURCE.parse().unwrap();
    let workers = scenario.clients;

    let mut clock = || {
        NodeClock::new(
            rng.gen_range(-10_000_000_000i64..10_000_000_000),
            rng.gen_range(-0.004..0.004),
        )
    };
    let server_clock = clock();
    let clocks: Vec<NodeClock> = (0..=workers).map(|_| clock()).collect();
    let server_log = ServerLog::new();
    #[allow(unused_mut)]
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.log = Some(server_log.clone());
    #[cfg(feature = "broken")]
    {
        cfg.bug = scenario.bug;
    }
    let _server = handle
        .create_node()
        .name("server")
        .ip(server_addr.ip())
        .init(move || serve(cfg.clone()))
        .build();
    let (stop_tx, stopped) = tokio::sync::watch::channel(false);
    let shared = Shared::new(&scenario, stopped);
    let res = shared.resource.clone();
    handle
        .create_node()
        .name("resource")
        .ip(resource_addr.ip())
        .init(move || serve_resource(resource_addr, res.clone()))
        .build();
    let log = FairLog::new();
    let nodes: Vec<NodeHandle> = (0..workers)
        .map(|i| {
            let (shared, clock, log) = (shared.clone(), clocks[i].clone(), log.clone());
            handle
                .create_node()
                .name(format!("c{i}"))
                .ip(client_ip(i))
                .init(move || {
                    let (shared, clock, log) = (shared.clone(), clock.clone(), log.clone());
                    async move {
                        worker(i, clock, shared, log).await;
                        // Stopped, not gone: background clean-up goes on.
                        std::future::pending::<()>().await
                    }
                })
                .build()
        })
        .collect();

    // The plan: per worker, up to two faults; a kill is for good.
    let mut events: Vec<(Duration, usize, Fault, bool)> = Vec::new();
    for i in 0..workers {
        for _ in 0..rng.gen_range(0..=2) {
            let fault = match rng.gen_range(0..10) {
                0..=1 if scenario.holder_kills => Fault::Kill,
                2..=5 if scenario.holder_pauses => Fault::Pause,
                6..=9 if scenario.partitions => Fault::Clog,
                _ => continue,
            };
            let at = Duration::from_millis(rng.gen_range(FAULTS.0..FAULTS.1 - 3_000));
            events.push((at, i, fault, true));
            if !matches!(fault, Fault::Kill) {
                let lasts = Duration::from_millis(rng.gen_range(100..2_500));
                events.push((at + lasts, i, fault, false));
            }
        }
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut dead = vec![false; workers];
    let mut depth = vec![(0u32, 0u32); workers];
    for (at, i, fault, begins) in events {
        tokio::time::sleep_until(t0 + at).await;
        if dead[i] {
            continue;
        }
        let node = nodes[i].id();
        let (paused, clogged) = &mut depth[i];
        match (fault, begins) {
            (Fault::Kill, _) => {
                handle.kill(node);
                dead[i] = true;
                shared.killed(i);
            }
            (Fault::Pause, true) => {
                *paused += 1;
                handle.pause(node);
            }
            (Fault::Pause, false) => {
                *paused -= 1;
                if *paused == 0 {
                    handle.resume(node);
                }
            }
            (Fault::Clog, true) => {
                *clogged += 1;
                net.clog_node(node);
            }
            (Fault::Clog, false) => {
                *clogged -= 1;
                if *clogged == 0 {
                    net.unclog_node(node);
                }
            }
        }
        report.faults.push(format!(
            "{at:?}: c{i} {fault:?} {}",
            if begins { "begins" } else { "ends" }
        ));
    }

    // Heal (what is left paused or cut off) and stop the workers.
    tokio::time::sleep_until(t0 + HEAL_AT).await;
    for (i, node) in nodes.iter().enumerate() {
        if !dead[i] {
            handle.resume(node.id());
            net.unclog_node(node.id());
        }
    }
    stop_tx.send_replace(true);
    let healed = Instant::now();

    // The prober waits for the fair lock; its fallback retry is long.
    let prober = handle
        .create_node()
        .name("prober")
        .ip(client_ip(workers))
        .build();
    let (p_clock, p_log, p_shared) = (clocks[workers].clone(), log.clone(), shared.clone());
    let got = prober
        .spawn(async move {
            let client = connect("prober", &p_clock, &p_shared, &p_log).await;
            let lock = (client.lock(KEY).fair(true).waiter_ttl(WAITER_TTL)).with_options(
                opts()
                    .retry_delay(Duration::from_secs(10))
                    .wait_timeout(None),
            );
            let give_up = Instant::now() + Duration::from_secs(30);
            while Instant::now() < give_up {
                if let Ok(g) = lock.lock().await {
                    let at = Instant::now();
                    let _ = g.release().await;
                    return Some(at);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        })
        .await
        .unwrap();
    report
        .violations
        .extend(check_liveness(healed, got, LIVENESS));

    tokio::time::sleep(TTL * 2).await;
    report.violations.extend(server_log.check());
    report.violations.extend(shared.grants.check());
    report.violations.extend(shared.resource.check());
    let overlaps = shared.beliefs.check();
    report.belief_overlaps = overlaps.len();
    if scenario.checks_exclusion() && !scenario.holder_pauses {
        report.violations.extend(overlaps);
    }
    let waits = log.waits();
    let rules = FairRules {
        waiter_ttl: WAITER_TTL,
        margin: Duration::from_millis(20),
        until: healed,
    };
    let (violations, counts) = check_fair(&waits, &rules);
    report.violations.extend(violations);
    report.faults.push(format!("counts: {counts:?}"));
    report.grants = counts.ordered_pairs;
    report.writes = shared.resource.accepted().len();
    report.stale_writes_refused = shared.resource.rejected();
    report.simulated = Instant::now() - t0;
    report.digest = {
        use std::hash::{Hash, Hasher};
        let mut s = std::hash::DefaultHasher::new();
        report.faults.hash(&mut s);
        for w in &waits {
            w.holder.hash(&mut s);
            for a in &w.attempts {
                (
                    (a.sent - t0).as_nanos(),
                    (a.returned - t0).as_nanos(),
                    a.answer,
                )
                    .hash(&mut s);
            }
        }
        for w in shared.resource.accepted() {
            (w.key, w.client, w.token, (w.at - t0).as_nanos()).hash(&mut s);
        }
        report.simulated.hash(&mut s);
        s.finish()
    };
    report
}
