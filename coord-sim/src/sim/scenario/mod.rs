//! Scenarios: a workload of one family on simulated nodes under a fault plan
//! drawn from the seed, its history checked at the end; and seed sweeps that
//! print the seed and the replay command of every failure.
//!
//! One run: a sim server node (state in memory, its own clock), a fenced
//! resource node, `clients` worker nodes (each its own clock) running the
//! family's workload and writing to the resource with their tokens; a fault
//! window during which the plan partitions, drops, delays, kills, pauses and
//! restarts (and, last, loses the server's answers for a second: grants no
//! client receives, just before the heal); then everything heals, the
//! workers stop (their processes stay up), and a prober must get what it
//! waits for within a bound. Then the checkers judge the history: every
//! family's (the resource's fencing, the server's token order, the clients'
//! grants, orphaned grants) and the workload's own.
//!
//! | module | what |
//! |---|---|
//! | `locks` | [`Workload::Lock`]: take the lock `k`, write, release |
//! | `multi` | [`Workload::MultiLock`]: take 2 or 3 of five locks at once, write to each, release |
//! | `election` | [`Workload::Leadership`], [`Workload::LeaderCrash`]: campaign in election `e`, write with the term, resign (or lead until killed) |
//! | `jobs` | [`Workload::RunOnce`]: run occurrences of job `j`, bodies writing with their run's token |
//! | `barriers` | [`Workload::Barrier`]: meet at the cyclic barrier `b`, round after round |
//! | `double` | [`Workload::DoubleBarrier`]: enter the double barrier `d` together, work inside, leave together |
//! | `latch` | [`Workload::Latch`]: a coordinator sets the latch `l`, three workers count it down once per generation, everyone waits for the open |
//! | `graphs` | [`Workload::Graphs`]: runs of three job graphs submitted, worked on by `GraphWorker`s that crash at every step boundary, waited for after the heal (its own run: see there) |
//! | `queues` | [`Workload::Queues`]: items pushed by producers and worked on by consumers that crash at every step boundary, drained after the heal (its own run: see there) |
//! | `topics` | [`Workload::Topics`]: durable events published by publishers, read by subscribers of two subscriptions that are killed and come back, drained after the heal (its own run: see there) |
//! | `state` | [`Workload::State`]: a counter incremented through `update` by updaters and watched by watchers that resume from their checkpoints, caught up after the heal (its own run: see there) |
//! | `breaker` | [`Workload::Breaker`]: twenty instances call a downstream that fails in phases through one shared breaker, an open forced after the heal (its own run: see there) |
//! | `fair` | [`Workload::Fair`]: wait for the fair lock `fair` (waiters crashed, cut off, paused), write, release; grants judged against the queue (its own run: see there) |
//! | `ops` | [`Workload::Ops`]: eight holders keep an instance presence and fixed leases; some are killed, paused or cut off; an operator lists every live lease with its holder's liveness (its own run: see there) |
//! | `report` | [`Report`]: what one run saw |
//! | `resource` | the fenced resource's node and the write bodies send it |
//! | `catalog` | the scenarios: [`Scenario`]'s constructors |
//! | `client` | the workloads' clients: each its own node's clock, reaching the sim server (deaf or broken as the scenario says) |
//! | `faults` | the fault plans and their application, the heal |
//! | `sweep` | seed sweeps in child processes, the replay command |

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Instant, LeaseOptions};
use madsim::{
    net::NetSim,
    rand::{Rng, thread_rng},
    runtime::{Handle, NodeHandle},
};

use super::{NodeClock, ServerConfig, SimOptions, serve};

mod barriers;
mod breaker;
mod catalog;
mod client;
mod double;
mod election;
mod fair;
mod faults;
mod graphs;
mod jobs;
mod latch;
mod locks;
mod multi;
mod ops;
mod queues;
mod report;
mod resource;
mod state;
mod sweep;
mod topics;

#[cfg(feature = "broken")]
pub use super::bugs::Bug;
pub use barriers::{DEAD_BOUND, UNREACHABLE_BOUND, WAIT_BOUND};
pub use breaker::{INSTANCES, OPEN_BOUND};
pub use fair::{LIVENESS as FAIR_LIVENESS, WAITER_TTL as FAIR_WAITER_TTL, WAITERS as FAIR_WAITERS};
pub use graphs::END_BOUND;
pub use queues::{DRAIN_BOUND, KNOWN_CLIENT_BUGS};
pub use report::Report;
pub use state::{CATCH_UP_BOUND, WATCHERS};
pub use sweep::{Sweep, replay_command, run_seed, seeds_from_env, sweep, sweep_with};
pub use topics::DRAIN_BOUND as TOPIC_DRAIN_BOUND;

use crate::history::{
    BarrierLog, BarrierWaits, Beliefs, Downtime, FencedResource, GrantLog, KeyedBeliefs,
    LatchCalls, LeadLog, Leaderships, OnceRuns, OrphanRule, ServerLog, Violation, check_liveness,
    orphans,
};
use client::{client_over, connect, connect_with, sim_backend};
use faults::{Action, Faults, Target, latency};
use resource::{RESOURCE, serve_resource, write};

/// How clocks run relative to the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// Every client's clock runs at most `max_drift` slower than the
    /// server's (offsets are arbitrary): the contract's exclusion holds.
    InBounds,
    /// Some clients' clocks run 3–30 % slow: they believe they hold a lease
    /// after the server let it go; only fencing protects the resource.
    Beyond,
}

/// What the client nodes do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Take the lock `k`, write to a fenced resource, release.
    Lock,
    /// Take a multi-lock on 2 or 3 of five keys, write to each member's
    /// key of the resource, release.
    MultiLock,
    /// Campaign in one election; a leader writes with its term to a fenced
    /// resource, and resigns after a while.
    Leadership,
    /// Campaign in one election; leaders keep leading until their node is
    /// killed; failover times are measured.
    LeaderCrash,
    /// Every node runs each of a sequence of occurrences of a run-once job;
    /// bodies write with their token to the resource, fenced per occurrence.
    RunOnce,
    /// Four workers meet at a cyclic barrier of three parties, round after
    /// round; nothing is written to the resource (no grants, no tokens).
    Barrier,
    /// Four workers enter a double barrier of three parties together,
    /// work inside, and leave together, again.
    DoubleBarrier,
    /// A coordinator sets a countdown latch to three, three workers count
    /// it down once per generation (retrying after errors), everyone waits
    /// for it to open; round after round.
    Latch,
    /// Runs of job graphs submitted over the window; workers (crashing at
    /// step boundaries when `holder_kills`) run their nodes, bodies writing
    /// with their attempt's token; every run must end after the heal.
    Graphs,
    /// Producers push items, consumers (crashing at step boundaries when
    /// `holder_kills`) work them, handlers writing with their delivery's
    /// token; the queue must drain after the heal.
    Queues,
    /// Publishers publish durable events, subscribers of two subscriptions
    /// (killed and restarted when `holder_kills`) read, ack, nack or drop
    /// them; every acknowledged event must be acked, dead-lettered or
    /// reported missed for each subscription once drained.
    Topics,
    /// Updaters increment a shared counter through `State::update`,
    /// watchers watch it; no acknowledged update lost, no change skipped
    /// silently, every watcher caught up after the heal.
    State,
    /// Instances call a downstream through one shared circuit breaker
    /// while the downstream fails in phases; trials bounded per
    /// generation, opens reaching every instance in time once healed, no
    /// transition lost.
    Breaker,
    /// Holders keep an instance presence and fixed leases while some are
    /// killed, paused or cut off; an operator's listings must list every
    /// lease, and as stale exactly those of holders gone for longer than
    /// their presence TTL.
    Ops,
    /// Waiters wait for one fair lock while some are killed, paused or cut
    /// off; grants must follow the queue for every waiter that kept its
    /// place, tokens increase at the fenced resource.
    Fair,
}

/// A scenario: the workload and which faults its plans may draw.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name (also the test's name, for replay commands).
    pub name: &'static str,
    /// What the clients do.
    pub workload: Workload,
    /// Worker nodes.
    pub clients: usize,
    /// Partitions: whole node, one link, one direction.
    pub partitions: bool,
    /// Windows of packet loss.
    pub packet_loss: bool,
    /// Windows of high latency.
    pub latency_spikes: bool,
    /// The current holder killed (restarted later as a new process); in
    /// the graph workload, workers crash at step boundaries instead.
    pub holder_kills: bool,
    /// The current holder paused and resumed (a stop-the-world pause).
    pub holder_pauses: bool,
    /// The server killed and restarted with its state lost.
    pub server_restarts: bool,
    /// Clock drift.
    pub drift: Drift,
    /// Every client's notifications lost: its watches never wake, so its
    /// waiters learn only by reading again (their renewals, their retries).
    pub lost_notifications: bool,
    /// A deliberately broken server or client (feature `broken`).
    #[cfg(feature = "broken")]
    pub bug: Option<Bug>,
}

/// How much longer than the TTL a failover may take in
/// [`Scenario::leader_crash`]: the server's clock running up to 0.4 % slow
/// (4 ms of a 1 s TTL), the expiry notification's long-poll answer and the
/// winning campaign's round trip (LAN: up to 10 ms a hop), with room.
pub const FAILOVER_BOUND: Duration = Duration::from_millis(100);

/// Lease TTL of the workload.
pub const TTL: Duration = Duration::from_secs(1);
/// When the fault window opens.
const FAULTS_FROM: Duration = Duration::from_secs(1);
/// When everything heals and the workers stop.
pub const HEAL_AT: Duration = Duration::from_secs(21);
/// How long after the heal the prober may wait for the lock: the TTL of a
/// lease left by a killed holder (on a server clock up to 0.4 % fast or
/// slow), a lost long poll's timeout, and round trips.
pub const LIVENESS_BOUND: Duration = Duration::from_millis(2_500);
/// How long after the later of its grant and the heal an orphaned grant
/// (granted by the server, received by no client) may last: a quarter of
/// the TTL.
///
/// What a correct client needs: the plans end every network fault and
/// pause at least 500 ms before the heal (the fault window closes then; the
/// holder killed 200 ms before the heal cleans nothing up and is exempt). A
/// clean-up that began before the network healed may have sent its release
/// into it and waits out that call's timeout (500 ms), then its retry
/// backoff (10 ms, then 20 ms: with a 1 s TTL it gives up before longer
/// pauses), then one round trip on the healed LAN (≤ 20 ms): done by
/// about 50 ms after the heal. A call cancelled at the heal releases at
/// once: one round trip. So 250 ms leaves a wide margin over what the
/// clean-up needs, and is far below what an orphan left alone lasts (its
/// TTL: every orphan granted in the last 750 ms before the heal, or after
/// it, breaks the bound without the clean-up).
pub const ORPHAN_BOUND: Duration = Duration::from_millis(250);
const MAX_DRIFT: f64 = 0.01;

/// What every node of a run shares: the stop signal, who holds now, and
/// the histories the workloads record.
#[derive(Clone)]
struct Shared {
    /// The scenario's name, for messages.
    name: &'static str,
    workload: Workload,
    /// `true` from the heal on: the workers stop, their waits cut short.
    stopped: tokio::sync::watch::Receiver<bool>,
    /// The worker holding the lock, leading or running a body now
    /// (`Target::Holder`).
    holder: Arc<Mutex<Option<usize>>>,
    /// Each worker's open belief, term or run (its index), ended when the
    /// worker's node is killed.
    open: Arc<Mutex<HashMap<usize, usize>>>,
    /// Every write, fenced per key (the lock's key, the election, the
    /// occurrence).
    resource: FencedResource,
    /// Lock grants and terms, as the clients saw them.
    grants: GrantLog,
    /// Lock holders' beliefs.
    beliefs: Beliefs,
    /// Multi-lock holders' beliefs and grants, per key.
    keyed: KeyedBeliefs,
    /// Terms as their leaders saw them.
    terms: Leaderships,
    /// Run-once bodies' runs.
    runs: OnceRuns,
    /// Barrier waits as their participants saw them.
    waits: BarrierWaits,
    /// Latch count-downs and waits as their participants saw them.
    latch: LatchCalls,
    /// Clients' watches never wake ([`Scenario::lost_notifications`]).
    lost_notifications: bool,
    /// A deliberately broken client (feature `broken`).
    #[cfg(feature = "broken")]
    bug: Option<Bug>,
}

impl Shared {
    /// Empty histories for `scenario`, stopping when `stopped` turns true.
    fn new(scenario: &Scenario, stopped: tokio::sync::watch::Receiver<bool>) -> Shared {
        Shared {
            name: scenario.name,
            workload: scenario.workload,
            stopped,
            holder: Arc::default(),
            open: Arc::default(),
            resource: FencedResource::new(),
            grants: GrantLog::new(),
            beliefs: Beliefs::new(),
            keyed: KeyedBeliefs::new(),
            terms: Leaderships::new(),
            runs: OnceRuns::new(),
            waits: BarrierWaits::new(),
            latch: LatchCalls::new(),
            lost_notifications: scenario.lost_notifications,
            #[cfg(feature = "broken")]
            bug: scenario.bug,
        }
    }

    fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Worker `i` holds now; `idx`: its open belief, term or run.
    fn set_holder(&self, i: usize, idx: usize) {
        *self.holder.lock().unwrap() = Some(i);
        self.open.lock().unwrap().insert(i, idx);
    }

    fn clear_holder(&self, i: usize) {
        let mut open = self.open.lock().unwrap();
        open.remove(&i);
        let mut h = self.holder.lock().unwrap();
        if *h == Some(i) {
            // Barrier waiters wait side by side: the next one waiting is
            // the one the plan targets.
            *h = match self.workload {
                Workload::Barrier | Workload::DoubleBarrier | Workload::Latch => {
                    open.keys().min().copied()
                }
                _ => None,
            };
        }
    }

    /// Worker `i`'s process was killed: it believes and runs nothing more.
    fn killed(&self, i: usize) {
        if let Some(idx) = self.open.lock().unwrap().remove(&i) {
            let now = Instant::now();
            match self.workload {
                Workload::Lock | Workload::Fair => self.beliefs.end_at(idx, now),
                Workload::MultiLock => self.keyed.end_at(idx, now),
                Workload::RunOnce => self.runs.end(idx, now, false),
                Workload::Leadership | Workload::LeaderCrash => self.terms.end_at(idx, now),
                Workload::Barrier | Workload::DoubleBarrier => self.waits.killed(idx, now),
                Workload::Latch => self.latch.killed(idx, now),
                // Graph bodies and handlers are closed by their own runs.
                Workload::Graphs
                | Workload::Queues
                | Workload::Topics
                | Workload::State
                | Workload::Breaker
                | Workload::Ops => {}
            }
        }
        let open = self.open.lock().unwrap();
        let mut h = self.holder.lock().unwrap();
        if *h == Some(i) {
            *h = match self.workload {
                Workload::Barrier | Workload::DoubleBarrier | Workload::Latch => {
                    open.keys().min().copied()
                }
                _ => None,
            };
        }
    }
}

const SERVER: &str = "10.0.0.1:7000";

fn client_ip(i: usize) -> std::net::IpAddr {
    format!("10.0.1.{}", i + 1).parse().unwrap()
}

fn opts() -> LeaseOptions {
    LeaseOptions::default()
        .ttl(TTL)
        .wait_timeout(Some(Duration::from_secs(5)))
        .retry_delay(Duration::from_secs(1))
        .max_drift(MAX_DRIFT)
}

/// Runs one scenario in the current simulation and checks its history.
pub async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let resource_addr: SocketAddr = RESOURCE.parse().unwrap();
    let workload = scenario.workload;
    match workload {
        Workload::Graphs => return graphs::run(scenario).await,
        Workload::Queues => return queues::run(scenario).await,
        Workload::Topics => return topics::run(scenario).await,
        Workload::State => return state::run(scenario).await,
        Workload::Breaker => return breaker::run(scenario).await,
        Workload::Ops => return ops::run(scenario).await,
        Workload::Fair => return fair::run(scenario).await,
        _ => {}
    }
    if workload == Workload::LeaderCrash {
        // A LAN: the failover bound is about the backend, not the network.
        NetSim::current().update_config(|c| c.send_latency = latency(Duration::from_millis(10)));
    }

    // Clocks: arbitrary offsets; rates in or beyond the drift bound.
    let offset =
        |rng: &mut madsim::rand::GlobalRng| rng.gen_range(-10_000_000_000i64..10_000_000_000);
    let server_clock = NodeClock::new(offset(&mut rng), rng.gen_range(-0.004..0.004));
    let client_clocks: Vec<NodeClock> = (0..=scenario.clients)
        .map(|i| {
            let drift = match scenario.drift {
                Drift::Beyond if i < scenario.clients && rng.gen_bool(0.5) => {
                    rng.gen_range(-0.3..-0.03)
                }
                _ => rng.gen_range(-0.004..0.004),
            };
            NodeClock::new(offset(&mut rng), drift)
        })
        .collect();
    report.faults.push(format!(
        "clocks: server rate {:.4}, clients {:?}",
        server_clock.rate(),
        client_clocks
            .iter()
            .map(|c| format!("{:.4}", c.rate()))
            .collect::<Vec<_>>()
    ));

    let log = ServerLog::new();
    let lead_log = LeadLog::new();
    let barrier_log = BarrierLog::new();
    #[allow(unused_mut)]
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.log = Some(log.clone());
    cfg.lead_log = Some(lead_log.clone());
    cfg.barrier_log = Some(barrier_log.clone());
    #[cfg(feature = "broken")]
    {
        cfg.bug = scenario.bug;
    }
    let server = handle
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

    let workers: Vec<NodeHandle> = (0..scenario.clients)
        .map(|i| {
            let shared = shared.clone();
            let clock = client_clocks[i].clone();
            handle
                .create_node()
                .name(format!("c{i}"))
                .ip(client_ip(i))
                .init(move || {
                    let (shared, clock) = (shared.clone(), clock.clone());
                    async move {
                        match workload {
                            Workload::Lock => locks::worker(i, clock, shared).await,
                            Workload::MultiLock => multi::worker(i, clock, shared).await,
                            Workload::Leadership => election::worker(i, clock, shared, true).await,
                            Workload::LeaderCrash => {
                                election::worker(i, clock, shared, false).await
                            }
                            Workload::RunOnce => jobs::worker(i, clock, shared).await,
                            Workload::Barrier => barriers::worker(i, clock, shared).await,
                            Workload::DoubleBarrier => double::worker(i, clock, shared).await,
                            Workload::Latch => latch::worker(i, clock, shared).await,
                            Workload::Graphs
                            | Workload::Queues
                            | Workload::Topics
                            | Workload::State
                            | Workload::Breaker
                            | Workload::Ops
                            | Workload::Fair => {
                                unreachable!("their own runs")
                            }
                        }
                        // Stopped, not gone: the process stays up (a node
                        // whose first task returns exits, its other tasks
                        // with it), so what the client still does in the
                        // background (releasing what a call cancelled at
                        // the heal may have been granted) goes on.
                        std::future::pending::<()>().await
                    }
                })
                .build()
        })
        .collect();

    // The fault window.
    let plan = faults::plan(&scenario, &mut rng);
    let mut faults = Faults::new(server.id(), workers.iter().map(|w| w.id()).collect());
    let mut crashes = Vec::new();
    let mut kills: Vec<(String, Instant)> = Vec::new();
    // When each worker's process could send nothing (paused, or killed
    // until restarted).
    let mut downtime: Vec<Downtime> = Vec::new();
    for step in plan {
        tokio::time::sleep_until(t0 + step.at).await;
        let holder = *shared.holder.lock().unwrap();
        let Some((done, killed)) = faults.apply(step.action, holder) else {
            continue;
        };
        let now = Instant::now();
        match step.action {
            Action::Pause(Target::Holder) => downtime.extend(holder.map(|i| Downtime {
                process: format!("c{i}"),
                from: now,
                to: None,
                killed: false,
            })),
            Action::ResumeAll => downtime
                .iter_mut()
                .filter(|d| !d.killed && d.to.is_none())
                .for_each(|d| d.to = Some(now)),
            Action::Restart(Target::Client(c)) => downtime
                .iter_mut()
                .filter(|d| d.killed && d.to.is_none() && d.process == format!("c{c}"))
                .for_each(|d| d.to = Some(now)),
            _ => {}
        }
        // A killed process believes nothing any more.
        if let Some(i) = killed {
            shared.killed(i);
            kills.push((format!("c{i}"), now));
            // A pause ends with its process (a restart runs unpaused).
            downtime
                .iter_mut()
                .filter(|d| !d.killed && d.to.is_none() && d.process == format!("c{i}"))
                .for_each(|d| d.to = Some(now));
            downtime.push(Downtime {
                process: format!("c{i}"),
                from: now,
                to: None,
                killed: true,
            });
            if holder == Some(i) {
                crashes.push(now);
            }
        }
        report.faults.push(format!("{:?}: {done}", step.at));
    }

    // Heal: network back to normal, paused nodes resumed, a killed server
    // restarted; the workers stop; the killed holder (if any) stays dead.
    tokio::time::sleep_until(t0 + HEAL_AT).await;
    faults.heal();
    stop_tx.send_replace(true);
    let healed = Instant::now();
    downtime
        .iter_mut()
        .filter(|d| !d.killed && d.to.is_none())
        .for_each(|d| d.to = Some(healed));
    if matches!(
        workload,
        Workload::Barrier | Workload::DoubleBarrier | Workload::Latch
    ) {
        // The workers finish the waits they are in (bounded by their
        // deadline); the prober's round comes after. A wait may begin
        // after the heal, behind a read sent before it: give that read its
        // timeout first.
        tokio::time::sleep(SimOptions::default().call_timeout).await;
        let until = healed + barriers::WAIT_TIMEOUT + Duration::from_secs(3);
        while shared.waits.open() + shared.latch.open() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The prober waits; its fallback retry is long, so only notifications
    // and the server's "retry in" get it there in time.
    if workload != Workload::LeaderCrash {
        let clock = client_clocks[scenario.clients].clone();
        let prober_shared = shared.clone();
        let i = scenario.clients;
        let node = handle.create_node().name("prober").ip(client_ip(i)).build();
        let waits = node
            .spawn(async move {
                match workload {
                    Workload::Lock => locks::prober(i, clock, prober_shared).await,
                    Workload::MultiLock => multi::prober(i, clock, prober_shared).await,
                    Workload::RunOnce => jobs::prober(i, clock, prober_shared).await,
                    Workload::Barrier => barriers::prober(clock, prober_shared).await,
                    Workload::DoubleBarrier => double::prober(clock, prober_shared).await,
                    Workload::Latch => latch::prober(clock, prober_shared).await,
                    _ => election::prober(clock, prober_shared).await,
                }
            })
            .await
            .unwrap();
        for (start, got) in waits {
            report
                .violations
                .extend(check_liveness(start, got, LIVENESS_BOUND));
        }
    }

    // Let in-flight work settle, then judge: what every family shares...
    tokio::time::sleep(TTL * 2).await;
    let now = Instant::now();
    report.violations.extend(log.check());
    report.violations.extend(shared.grants.check());
    report.violations.extend(shared.resource.check());
    let known: HashSet<(String, u64)> = match workload {
        Workload::Lock => locks::known(&shared),
        Workload::MultiLock => multi::known(&shared),
        Workload::Leadership | Workload::LeaderCrash => election::known(&shared),
        Workload::RunOnce => jobs::known(&shared),
        // Barriers grant no leases with tokens: nothing can be orphaned.
        Workload::Barrier | Workload::DoubleBarrier | Workload::Latch => HashSet::new(),
        Workload::Graphs
        | Workload::Queues
        | Workload::Topics
        | Workload::State
        | Workload::Breaker
        | Workload::Ops
        | Workload::Fair => {
            unreachable!("their own runs")
        }
    };
    let orphans = orphans(&log.events(), &known, TTL.div_f64(server_clock.rate()));
    let rule = OrphanRule {
        heal: healed,
        bound: ORPHAN_BOUND,
        in_flight: SimOptions::default().call_timeout,
    };
    report.violations.extend(rule.check(&orphans, &kills));
    report.orphans = orphans.len();
    report.orphans_at_heal = orphans
        .iter()
        .filter(|o| rule.constrains(o, &kills))
        .count();
    report.writes = shared.resource.accepted().len();
    report.stale_writes_refused = shared.resource.rejected();
    // ... and the workload's own.
    let events = lead_log.events();
    match workload {
        Workload::Lock => locks::judge(&scenario, &shared, &mut report),
        Workload::MultiLock => multi::judge(&scenario, &shared, &mut report),
        Workload::Leadership | Workload::LeaderCrash => {
            election::judge(&scenario, &shared, &events, now, &crashes, &mut report)
        }
        Workload::RunOnce => jobs::judge(&scenario, &shared, &events, now, &mut report),
        Workload::Barrier | Workload::DoubleBarrier => barriers::judge(
            &scenario,
            &shared,
            &barrier_log.events(),
            &downtime,
            t0,
            server_clock.rate(),
            &mut report,
        ),
        Workload::Latch => latch::judge(
            &scenario,
            &shared,
            &barrier_log.events(),
            &downtime,
            &mut report,
        ),
        Workload::Graphs
        | Workload::Queues
        | Workload::Topics
        | Workload::State
        | Workload::Breaker
        | Workload::Ops
        | Workload::Fair => {
            unreachable!("their own runs")
        }
    }
    report.simulated = Instant::now() - t0;
    report.digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        report.faults.hash(&mut h);
        for t in shared.terms.all() {
            let end = t.end.map(|e| (e - t0).as_nanos());
            (t.client, t.term, (t.elected - t0).as_nanos(), end).hash(&mut h);
        }
        for r in shared.runs.all() {
            let end = r.end.map(|e| (e - t0).as_nanos());
            (
                r.client,
                r.occurrence,
                r.token,
                (r.start - t0).as_nanos(),
                end,
            )
                .hash(&mut h);
        }
        for w in shared.resource.accepted() {
            (w.key, w.client, w.token, (w.at - t0).as_nanos()).hash(&mut h);
        }
        for w in shared.waits.all() {
            let end = w.end.map(|e| (e - t0).as_nanos());
            let outcome = w.outcome.map(|o| format!("{o:?}"));
            (
                w.participant,
                w.generation,
                (w.start - t0).as_nanos(),
                end,
                outcome,
            )
                .hash(&mut h);
        }
        for c in shared.latch.all() {
            let end = c.end.map(|e| (e - t0).as_nanos());
            (
                c.participant,
                c.kind,
                c.generation,
                (c.start - t0).as_nanos(),
                end,
                c.outcome,
            )
                .hash(&mut h);
        }
        for e in barrier_log.events() {
            format!("{e:?}").hash(&mut h);
        }
        for b in shared.beliefs.all() {
            (
                b.client,
                b.token,
                (b.start - t0).as_nanos(),
                (b.end - t0).as_nanos(),
            )
                .hash(&mut h);
        }
        report.simulated.hash(&mut h);
        h.finish()
    };
    report
}

/// Runs a workload's checker without and with its exclusion rule (no two
/// terms or runs at one instant): the rule's findings are violations where
/// it applies (drift in bounds, a server that keeps its state, no pauses),
/// and only counted as overlaps elsewhere.
fn exclusion_where_it_applies(
    scenario: &Scenario,
    report: &mut Report,
    check: impl Fn(bool) -> Vec<Violation>,
) {
    let base = check(false);
    let full = check(true);
    report.belief_overlaps = full.len() - base.len();
    let applies = scenario.checks_exclusion() && !scenario.holder_pauses;
    report.violations.extend(if applies { full } else { base });
}
