//! Scenarios: a lock workload on simulated nodes under a fault plan drawn
//! from the seed, its history checked at the end; and seed sweeps that print
//! the seed and the replay command of every failure.
//!
//! One run: a sim server node (state in memory, its own clock), a fenced
//! resource node, `clients` worker nodes (each its own clock) taking the lock
//! `k`, writing to the resource while they believe they hold it, and
//! releasing; a fault window during which the plan partitions, drops,
//! delays, kills, pauses and restarts; then everything heals, the workers
//! stop, and a prober must get the lock within a bound.
//!
//! The leadership workloads ([`Workload::Leadership`],
//! [`Workload::LeaderCrash`], [`Workload::RunOnce`]: elections with fencing
//! by term, failover after a leader crash, run-once occurrences) run on the
//! same nodes, fault plans and heal; see `lead.rs`.

use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use coord_api::{Client, Instant, LeaseOptions, Namespace};
use madsim::{
    net::{Endpoint, NetSim},
    rand::{Rng, thread_rng},
    runtime::{Handle, NodeHandle, Runtime},
    task::NodeId,
};

use super::{NodeClock, ServerConfig, SimBackend, SimOptions, serve};

mod lead;

#[cfg(feature = "broken")]
pub use super::bugs::Bug;
use crate::history::{
    Beliefs, FencedResource, GrantLog, ObservedGrant, ServerLog, Violation, check_liveness,
};

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
    /// Campaign in one election; a leader writes with its term to a fenced
    /// resource, and resigns after a while (see `lead`).
    Leadership,
    /// Campaign in one election; leaders keep leading until their node is
    /// killed; failover times are measured.
    LeaderCrash,
    /// Every node runs each of a sequence of occurrences of a run-once job;
    /// bodies write with their token to a resource fenced per occurrence.
    RunOnce,
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
    /// The current holder killed (restarted later as a new process).
    pub holder_kills: bool,
    /// The current holder paused and resumed (a stop-the-world pause).
    pub holder_pauses: bool,
    /// The server killed and restarted with its state lost.
    pub server_restarts: bool,
    /// Clock drift.
    pub drift: Drift,
    /// A deliberately broken server (feature `broken`).
    #[cfg(feature = "broken")]
    pub bug: Option<Bug>,
}

impl Scenario {
    /// Every fault but server restarts, drift in bounds: checkers (a)–(d).
    pub fn partitions_in_bounds() -> Scenario {
        Scenario {
            name: "partitions_in_bounds",
            workload: Workload::Lock,
            clients: 4,
            partitions: true,
            packet_loss: true,
            latency_spikes: true,
            holder_kills: true,
            holder_pauses: true,
            server_restarts: false,
            drift: Drift::InBounds,
            #[cfg(feature = "broken")]
            bug: None,
        }
    }

    /// Every fault including server restarts that lose state: (a), (b), (d)
    /// (a server that forgets its leases lets two clients believe at once;
    /// fencing is what protects then).
    pub fn server_restarts() -> Scenario {
        Scenario {
            name: "server_restarts",
            server_restarts: true,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// Every fault but server restarts, some clocks drifting beyond
    /// `max_drift`: (a), (b), (d).
    pub fn drift_beyond_bounds() -> Scenario {
        Scenario {
            name: "drift_beyond_bounds",
            drift: Drift::Beyond,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// Leadership under partitions, packet loss, latency spikes and killed
    /// leaders, drift in bounds: one holder per term, terms increasing, no
    /// two leaders believing at once (a partitioned leader stops believing
    /// before the backend elects the next), fencing by term.
    pub fn leadership_partitions() -> Scenario {
        Scenario {
            name: "leadership_partitions",
            workload: Workload::Leadership,
            holder_pauses: false,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// The same with some clocks drifting beyond `max_drift` and leaders
    /// paused: only the term rules and fencing by term are checked.
    pub fn leadership_drift_beyond() -> Scenario {
        Scenario {
            name: "leadership_drift_beyond",
            holder_pauses: true,
            drift: Drift::Beyond,
            ..Scenario::leadership_partitions()
        }
    }

    /// Leaders killed at random instants (restarted later as new
    /// processes), a LAN otherwise: the next leader is elected within TTL
    /// plus [`FAILOVER_BOUND`]; failover times are reported.
    pub fn leader_crash() -> Scenario {
        Scenario {
            name: "leader_crash",
            workload: Workload::LeaderCrash,
            clients: 4,
            partitions: false,
            packet_loss: false,
            latency_spikes: false,
            holder_kills: true,
            holder_pauses: false,
            server_restarts: false,
            drift: Drift::InBounds,
            #[cfg(feature = "broken")]
            bug: None,
        }
    }

    /// Run-once occurrences under partitions, packet loss, latency spikes
    /// and killed runners, drift in bounds.
    pub fn run_once_faults() -> Scenario {
        Scenario {
            name: "run_once_faults",
            workload: Workload::RunOnce,
            holder_pauses: false,
            ..Scenario::partitions_in_bounds()
        }
    }

    /// With a deliberately broken server.
    #[cfg(feature = "broken")]
    pub fn with_bug(mut self, bug: Bug) -> Scenario {
        self.bug = Some(bug);
        self
    }

    /// Whether checker (c) applies: drift in bounds and a server that keeps
    /// its state.
    pub fn checks_exclusion(&self) -> bool {
        self.drift == Drift::InBounds && !self.server_restarts
    }
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
const MAX_DRIFT: f64 = 0.01;

/// What one run saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every violation found.
    pub violations: Vec<Violation>,
    /// Faults applied, in order, for the failure message.
    pub faults: Vec<String>,
    /// Grants observed by clients.
    pub grants: usize,
    /// Writes the resource accepted.
    pub writes: usize,
    /// Writes the resource refused for a stale token (fencing at work).
    pub stale_writes_refused: u64,
    /// Overlapping beliefs (reported, not a violation, when (c) does not apply).
    pub belief_overlaps: usize,
    /// Failover times (crash of a leader to the next election), in order.
    pub failovers: Vec<Duration>,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// A hash of everything that happened (faults, grants, accepted writes,
    /// simulated time): two runs of one seed must agree on it.
    pub digest: u64,
}

#[derive(Clone)]
struct Shared {
    stop: Arc<AtomicBool>,
    /// Also `true` at the heal: cuts the workers' waits short.
    stopped: tokio::sync::watch::Receiver<bool>,
    holder: Arc<Mutex<Option<usize>>>,
    /// Each worker's open belief interval, ended when its node is killed.
    open: Arc<Mutex<std::collections::HashMap<usize, usize>>>,
    resource: FencedResource,
    grants: GrantLog,
    beliefs: Beliefs,
}

const SERVER: &str = "10.0.0.1:7000";
const RESOURCE: &str = "10.0.0.2:7001";
const WRITE_TAG: u64 = 0x0077_7269_7465;

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
    if scenario.workload != Workload::Lock {
        return lead::run(scenario).await;
    }
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let resource_addr: SocketAddr = RESOURCE.parse().unwrap();

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
    #[allow(unused_mut)]
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.log = Some(log.clone());
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
    let shared = Shared {
        stop: Arc::new(AtomicBool::new(false)),
        stopped,
        holder: Arc::new(Mutex::new(None)),
        open: Arc::default(),
        resource: FencedResource::new(),
        grants: GrantLog::new(),
        beliefs: Beliefs::new(),
    };
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
                .init(move || worker(i, clock.clone(), shared.clone()))
                .build()
        })
        .collect();

    // The fault window.
    let plan = draw_plan(&scenario, &mut rng);
    let mut faults = Faults::new(server.id(), workers.iter().map(|w| w.id()).collect());
    for step in plan {
        tokio::time::sleep_until(t0 + step.at).await;
        let holder = *shared.holder.lock().unwrap();
        let Some((done, killed)) = faults.apply(step.action, holder) else {
            continue;
        };
        // A killed process believes nothing any more.
        if let Some(i) = killed {
            if let Some(b) = shared.open.lock().unwrap().remove(&i) {
                shared.beliefs.end_at(b, Instant::now());
            }
            let mut h = shared.holder.lock().unwrap();
            if *h == Some(i) {
                *h = None;
            }
        }
        report.faults.push(format!("{:?}: {done}", step.at));
    }

    // Heal: network back to normal, paused nodes resumed, a killed server
    // restarted; the workers stop; the killed holder (if any) stays dead.
    tokio::time::sleep_until(t0 + HEAL_AT).await;
    faults.heal();
    shared.stop.store(true, Ordering::SeqCst);
    stop_tx.send_replace(true);
    let healed = Instant::now();

    // The prober waits for the lock; its fallback retry is long, so only
    // notifications and the server's "retry in" get it in time.
    let prober_clock = client_clocks[scenario.clients].clone();
    let prober_shared = shared.clone();
    let prober_index = scenario.clients;
    let got = handle
        .create_node()
        .name("prober")
        .ip(client_ip(scenario.clients))
        .build()
        .spawn(async move { prober(prober_index, prober_clock, prober_shared).await })
        .await
        .unwrap();
    report
        .violations
        .extend(check_liveness(healed, got, LIVENESS_BOUND));

    // Let in-flight work settle, then judge.
    tokio::time::sleep(TTL * 2).await;
    report.violations.extend(shared.resource.check());
    report.violations.extend(log.check());
    report.violations.extend(shared.grants.check());
    let overlaps = shared.beliefs.check();
    report.belief_overlaps = overlaps.len();
    if scenario.checks_exclusion() {
        report.violations.extend(overlaps);
    }
    report.grants = shared.grants.len();
    report.writes = shared.resource.accepted().len();
    report.stale_writes_refused = shared.resource.rejected();
    report.simulated = Instant::now() - t0;
    report.digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        report.faults.hash(&mut h);
        for w in shared.resource.accepted() {
            (w.client, w.token, (w.at - t0).as_nanos()).hash(&mut h);
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

/// Applies a fault plan's steps to the server and worker nodes, and heals.
struct Faults {
    handle: Handle,
    net: Arc<NetSim>,
    server: NodeId,
    workers: Vec<NodeId>,
    dead: Vec<NodeId>,
    paused: Vec<NodeId>,
}

impl Faults {
    fn new(server: NodeId, workers: Vec<NodeId>) -> Faults {
        Faults {
            handle: Handle::current(),
            net: NetSim::current(),
            server,
            workers,
            dead: Vec::new(),
            paused: Vec::new(),
        }
    }

    /// Applies `action` (`holder`: the worker `Target::Holder` names now);
    /// returns what it did and the worker it killed, or `None` if it did
    /// nothing (no holder, already dead...).
    fn apply(&mut self, action: Action, holder: Option<usize>) -> Option<(String, Option<usize>)> {
        let (net, handle, server) = (&self.net, &self.handle, self.server);
        let target = |who: Target| match who {
            Target::Server => Some(server),
            Target::Client(i) => Some(self.workers[i]),
            Target::Holder => holder.map(|i| self.workers[i]),
        };
        let mut killed = None;
        let done = match action {
            Action::Clog(how, who) => target(who).map(|n| {
                match how {
                    Clog::Node => net.clog_node(n),
                    Clog::In => net.clog_node_in(n),
                    Clog::Out => net.clog_node_out(n),
                    Clog::ToServer => net.clog_link(n, server),
                    Clog::FromServer => net.clog_link(server, n),
                }
                format!("clog {how:?} {n}")
            }),
            Action::Unclog(how, who) => target(who).map(|n| {
                match how {
                    Clog::Node | Clog::In | Clog::Out => net.unclog_node(n),
                    Clog::ToServer => net.unclog_link(n, server),
                    Clog::FromServer => net.unclog_link(server, n),
                }
                format!("unclog {n}")
            }),
            Action::Loss(rate) => {
                net.update_config(|c| c.packet_loss_rate = rate);
                Some(format!("packet loss {rate:.2}"))
            }
            Action::Latency(max) => {
                net.update_config(|c| c.send_latency = latency(max));
                Some(format!("latency up to {max:?}"))
            }
            Action::Kill(who) => target(who).filter(|n| !self.dead.contains(n)).map(|n| {
                handle.kill(n);
                self.dead.push(n);
                killed = self.workers.iter().position(|w| *w == n);
                self.paused.retain(|p| *p != n);
                format!("kill {n}")
            }),
            Action::Restart(who) => target(who).filter(|n| self.dead.contains(n)).map(|n| {
                handle.restart(n);
                self.dead.retain(|d| *d != n);
                format!("restart {n}")
            }),
            Action::Pause(who) => target(who).filter(|n| !self.dead.contains(n)).map(|n| {
                handle.pause(n);
                self.paused.push(n);
                format!("pause {n}")
            }),
            Action::ResumeAll => {
                for n in self.paused.drain(..) {
                    handle.resume(n);
                }
                Some("resume".to_owned())
            }
        };
        done.map(|d| (d, killed))
    }

    /// Network back to normal, paused nodes resumed, a killed server
    /// restarted (killed workers stay dead).
    fn heal(&mut self) {
        let net = &self.net;
        for &n in std::iter::once(&self.server).chain(&self.workers) {
            net.unclog_node(n);
            net.unclog_link(n, self.server);
            net.unclog_link(self.server, n);
        }
        net.update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = latency(Duration::from_millis(10));
        });
        for n in self.paused.drain(..) {
            self.handle.resume(n);
        }
        if self.dead.contains(&self.server) {
            self.handle.restart(self.server);
            self.dead.retain(|d| *d != self.server);
        }
    }
}

fn latency(max: Duration) -> std::ops::Range<Duration> {
    Duration::from_millis(1)..max.max(Duration::from_millis(2))
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Server,
    Client(usize),
    /// Whoever holds the lock when the step runs.
    Holder,
}

#[derive(Debug, Clone, Copy)]
enum Clog {
    Node,
    In,
    Out,
    ToServer,
    FromServer,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Clog(Clog, Target),
    Unclog(Clog, Target),
    Loss(f64),
    Latency(Duration),
    Kill(Target),
    Restart(Target),
    Pause(Target),
    ResumeAll,
}

struct Step {
    at: Duration,
    action: Action,
}

/// Draws the fault plan: a few episodes of each enabled kind inside the
/// fault window, each undone before the heal.
fn draw_plan(s: &Scenario, rng: &mut madsim::rand::GlobalRng) -> Vec<Step> {
    let mut steps = Vec::new();
    let window = FAULTS_FROM.as_millis() as u64..(HEAL_AT.as_millis() as u64 - 500);
    let episode = |rng: &mut madsim::rand::GlobalRng, max_len_ms: u64| {
        let start = rng.gen_range(window.clone());
        let end = (start + rng.gen_range(100..max_len_ms)).min(window.end);
        (Duration::from_millis(start), Duration::from_millis(end))
    };
    let mut push = |at: Duration, action| steps.push(Step { at, action });
    if s.partitions {
        for _ in 0..rng.gen_range(2..6) {
            let (a, b) = episode(rng, 3_000);
            let how = [
                Clog::Node,
                Clog::In,
                Clog::Out,
                Clog::ToServer,
                Clog::FromServer,
            ][rng.gen_range(0..5)];
            let who = if rng.gen_bool(0.2) {
                Target::Server
            } else {
                Target::Client(rng.gen_range(0..s.clients))
            };
            let (how, who) = match (how, who) {
                // A link to the server from the server is no partition.
                (Clog::ToServer | Clog::FromServer, Target::Server) => (Clog::Node, who),
                hw => hw,
            };
            push(a, Action::Clog(how, who));
            push(b, Action::Unclog(how, who));
        }
    }
    if s.packet_loss {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 4_000);
            push(a, Action::Loss(rng.gen_range(0.05..0.4)));
            push(b, Action::Loss(0.0));
        }
    }
    if s.latency_spikes {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 3_000);
            push(
                a,
                Action::Latency(Duration::from_millis(rng.gen_range(50..300))),
            );
            push(b, Action::Latency(Duration::from_millis(10)));
        }
    }
    if s.holder_pauses {
        for _ in 0..rng.gen_range(1..4) {
            let (a, b) = episode(rng, 3_000);
            push(a, Action::Pause(Target::Holder));
            push(b, Action::ResumeAll);
        }
    }
    if s.holder_kills {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 3_000);
            // Restarted as a new process.
            push(a, Action::Kill(Target::Holder));
            for c in 0..s.clients {
                push(b, Action::Restart(Target::Client(c)));
            }
        }
    }
    if s.server_restarts {
        for _ in 0..rng.gen_range(1..3) {
            let (a, b) = episode(rng, 2_000);
            push(a, Action::Kill(Target::Server));
            push(b, Action::Restart(Target::Server));
        }
    }
    // Always: the holder dies just before the heal and stays dead, so the
    // prober has to wait for an expiry.
    if s.holder_kills {
        push(
            HEAL_AT - Duration::from_millis(200),
            Action::Kill(Target::Holder),
        );
    }
    steps.sort_by_key(|s| s.at);
    steps
}

async fn connect(i: usize, clock: &NodeClock) -> Client {
    let backend = loop {
        match SimBackend::connect(
            SERVER.parse().unwrap(),
            Namespace::default(),
            SimOptions::default(),
        )
        .await
        {
            Ok(b) => break b,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    Client::builder(backend.backend())
        .instance_id(&format!("c{i}"))
        .expect("valid id")
        .clock(clock.clock())
        .lease_options(opts())
        .build()
}

/// A worker: takes the lock, writes to the resource while it believes it
/// holds it, releases (also when it found the lease lost), again.
async fn worker(i: usize, clock: NodeClock, shared: Shared) {
    let name = format!("c{i}");
    let client = connect(i, &clock).await;
    let lock = client.lock("k");
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let mut rng = thread_rng();
    while !shared.stop.load(Ordering::SeqCst) {
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
        *shared.holder.lock().unwrap() = Some(i);
        let until = guard.valid_until().map_or(received, |u| clock.to_global(u));
        let belief = shared.beliefs.begin(&name, token, received, until);
        shared.open.lock().unwrap().insert(i, belief);
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
            if now >= hold_until || shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let req: (u64, (String, u64)) = (madsim::rand::random(), (name.clone(), token));
            let tag = req.0;
            let _ = ep
                .send_to_raw(RESOURCE.parse().unwrap(), WRITE_TAG, Box::new(req))
                .await;
            let _ = tokio::time::timeout(Duration::from_millis(500), ep.recv_from_raw(tag)).await;
            tokio::select! {
                _ = guard.lost() => {
                    shared.beliefs.end_at(belief, Instant::now());
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(rng.gen_range(20..150))) => {}
            }
        }
        shared.beliefs.end_at(belief, Instant::now());
        shared.open.lock().unwrap().remove(&i);
        {
            let mut h = shared.holder.lock().unwrap();
            if *h == Some(i) {
                *h = None;
            }
        }
        let _ = guard.release().await;
    }
}

/// Waits for the lock after the heal; returns when it got it.
async fn prober(i: usize, clock: NodeClock, shared: Shared) -> Option<Instant> {
    let client = connect(i, &clock).await;
    let lock = client.lock("k").with_options(
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
                return Some(at);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    None
}

/// The fenced resource as a node: answers each write request with whether
/// it was accepted.
async fn serve_resource(addr: SocketAddr, resource: FencedResource) {
    let ep = Endpoint::bind(addr).await.expect("bind resource");
    loop {
        let Ok((msg, from)) = ep.recv_from_raw(WRITE_TAG).await else {
            return;
        };
        let Ok(req) = msg.downcast::<(u64, (String, u64))>() else {
            continue;
        };
        let (tag, (client, token)) = *req;
        let ok = resource.write(&client, token, Instant::now());
        let _ = ep.send_to_raw(from, tag, Box::new(ok)).await;
    }
}

/// The outcome of a sweep.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    /// Seeds run.
    pub seeds: u64,
    /// Failing seeds with their violations (or panic message).
    pub failures: Vec<(u64, Vec<String>)>,
    /// Simulated time over all runs.
    pub simulated: Duration,
    /// Wall time over all runs.
    pub wall: Duration,
    /// Grants, accepted writes, refused stale writes and overlapping beliefs
    /// over all runs.
    pub grants: usize,
    /// Accepted writes.
    pub writes: usize,
    /// Writes refused by fencing.
    pub stale_writes_refused: u64,
    /// Overlapping beliefs (only violations where (c) applies).
    pub belief_overlaps: usize,
    /// Failover times over all runs.
    pub failovers: Vec<Duration>,
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seeds, {} failing; {:.0} simulated s in {:.2} wall s ({:.0}x); {} grants, {} writes accepted, {} stale writes refused, {} overlapping beliefs",
            self.seeds,
            self.failures.len(),
            self.simulated.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.simulated.as_secs_f64() / self.wall.as_secs_f64().max(1e-9),
            self.grants,
            self.writes,
            self.stale_writes_refused,
            self.belief_overlaps
        )?;
        if let Some((median, worst)) = self.failover_ttls() {
            write!(
                f,
                "; {} failovers: median {median:.3} TTL, worst {worst:.3} TTL",
                self.failovers.len()
            )?;
        }
        Ok(())
    }
}

/// The seeds to sweep: `MADSIM_TEST_SEED` (default 1) and the next
/// `MADSIM_TEST_NUM - 1` (default 200 in all).
pub fn seeds_from_env() -> std::ops::Range<u64> {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let first = var("MADSIM_TEST_SEED").unwrap_or(1);
    first..first + var("MADSIM_TEST_NUM").unwrap_or(200)
}

/// Runs `scenario` once on `seed` in a fresh simulator, in this process (on
/// a fresh thread). Exactly reproducible only as the first simulation of a
/// process: see [`sweep`].
pub fn run_seed(scenario: &Scenario, seed: u64) -> Result<Report, String> {
    let s = scenario.clone();
    std::thread::spawn(move || {
        let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.set_time_limit(Duration::from_secs(600));
        rt.block_on(run(s))
    })
    .join()
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

const CHILD: &str = "COORD_SIM_CHILD";
const REPORT_LINE: &str = "coord-sim-report:";

/// Runs `scenario` on every seed of `seeds` and prints each failure with its
/// seed, the faults applied and the one command that replays it. `test` is
/// the name of the test function calling `sweep` (with `--exact` it selects
/// that test alone).
///
/// Each seed runs in a child process (this test binary, `test` alone, the
/// seed in `MADSIM_TEST_SEED`): `tokio::select!` draws its branch order from
/// a per-thread generator that tokio seeds from a process-wide counter, so a
/// simulation is exactly reproducible only as the first one of its process.
/// The replay command starts the very same child. With
/// `MADSIM_TEST_CHECK_DETERMINISM` set, every seed runs twice and the two
/// runs must agree on everything that happened ([`Report::digest`]).
/// `MADSIM_TEST_JOBS` children run at once (default 2).
pub fn sweep(scenario: &Scenario, seeds: std::ops::Range<u64>, test: &str) -> Sweep {
    sweep_with(scenario, seeds, test, false)
}

/// [`sweep`], ending at the first failing seed when `stop_at_first`.
pub fn sweep_with(
    scenario: &Scenario,
    seeds: std::ops::Range<u64>,
    test: &str,
    stop_at_first: bool,
) -> Sweep {
    let mut out = Sweep::default();
    let wall = std::time::Instant::now();
    if std::env::var_os(CHILD).is_some() {
        // The child: one seed, in process; the parent reads the report line.
        let seed = seeds.start;
        out.seeds = 1;
        match run_seed(scenario, seed) {
            Ok(r) => {
                let failovers: String = r
                    .failovers
                    .iter()
                    .map(|f| format!(" {}", f.as_nanos()))
                    .collect();
                println!(
                    "{REPORT_LINE} {} {} {} {} {} {} {}{failovers}",
                    r.simulated.as_nanos(),
                    r.grants,
                    r.writes,
                    r.stale_writes_refused,
                    r.belief_overlaps,
                    r.violations.len(),
                    r.digest
                );
                out.add(&r);
                if !r.violations.is_empty() {
                    let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
                    eprintln!(
                        "scenario {} FAILED on seed {seed}:\n  {}\n  faults: {}",
                        scenario.name,
                        v.join("\n  "),
                        r.faults.join("; ")
                    );
                    out.failures.push((seed, v));
                }
            }
            Err(panic) => {
                eprintln!(
                    "scenario {} PANICKED on seed {seed}: {panic}",
                    scenario.name
                );
                out.failures.push((seed, vec![format!("panic: {panic}")]));
            }
        }
        out.wall = wall.elapsed();
        return out;
    }
    let check = std::env::var_os("MADSIM_TEST_CHECK_DETERMINISM").is_some();
    let jobs: usize = std::env::var("MADSIM_TEST_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2)
        .max(1);
    let seeds: Vec<u64> = seeds.collect();
    for batch in seeds.chunks(jobs) {
        let children: Vec<_> = batch
            .iter()
            .map(|&seed| {
                (
                    seed,
                    spawn_child(seed, test),
                    check.then(|| spawn_child(seed, test)),
                )
            })
            .collect();
        for (seed, first, second) in children {
            out.seeds += 1;
            let first = finish_child(first);
            let mut failure: Option<Vec<String>> = None;
            match &first {
                Ok((r, None)) => out.add(r),
                Ok((r, Some(stderr))) => {
                    out.add(r);
                    failure = Some(vec![stderr.clone()]);
                }
                Err(stderr) => failure = Some(vec![stderr.clone()]),
            }
            if let (Some(second), Ok((r1, _))) = (second, &first) {
                match finish_child(second) {
                    Ok((r2, _)) if r2.digest == r1.digest => {}
                    _ => failure
                        .get_or_insert_with(Vec::new)
                        .push(format!("non-determinism: two runs of seed {seed} differ")),
                }
            }
            if let Some(f) = failure {
                eprintln!(
                    "scenario {} FAILED on seed {seed}:\n{}\n  replay: {}",
                    scenario.name,
                    f.join("\n"),
                    replay_command(seed, test)
                );
                out.failures.push((seed, f));
            }
        }
        if stop_at_first && !out.failures.is_empty() {
            break;
        }
    }
    out.wall = wall.elapsed();
    out
}

fn spawn_child(seed: u64, test: &str) -> std::io::Result<std::process::Child> {
    std::process::Command::new(std::env::current_exe()?)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("MADSIM_TEST_SEED", seed.to_string())
        .env("MADSIM_TEST_NUM", "1")
        .env_remove("MADSIM_TEST_CHECK_DETERMINISM")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
}

/// The child's report, and its stderr if it failed; `Err(stderr)` when it
/// printed no report (it panicked outside the simulation).
fn finish_child(
    child: std::io::Result<std::process::Child>,
) -> Result<(Report, Option<String>), String> {
    let out = child
        .and_then(|c| c.wait_with_output())
        .map_err(|e| format!("could not run the child test: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(REPORT_LINE).map(|(_, r)| r))
        .ok_or_else(|| stderr.clone())?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 7 {
        return Err(format!("malformed report line {line:?}"));
    }
    let r = Report {
        simulated: Duration::from_nanos(f[0]),
        grants: f[1] as usize,
        writes: f[2] as usize,
        stale_writes_refused: f[3],
        belief_overlaps: f[4] as usize,
        digest: f[6],
        failovers: f[7..].iter().map(|&n| Duration::from_nanos(n)).collect(),
        ..Report::default()
    };
    let failed = f[5] > 0 || !out.status.success();
    Ok((r, failed.then_some(stderr)))
}

impl Sweep {
    fn add(&mut self, r: &Report) {
        self.simulated += r.simulated;
        self.grants += r.grants;
        self.writes += r.writes;
        self.stale_writes_refused += r.stale_writes_refused;
        self.belief_overlaps += r.belief_overlaps;
        self.failovers.extend(&r.failovers);
    }

    /// The median and worst failover time, in TTLs.
    pub fn failover_ttls(&self) -> Option<(f64, f64)> {
        let mut f = self.failovers.clone();
        f.sort();
        let ttls = |d: &Duration| d.as_secs_f64() / TTL.as_secs_f64();
        Some((ttls(f.get(f.len() / 2)?), ttls(f.last()?)))
    }
}

/// The one command that replays `seed` of the sweep run by test `test`.
pub fn replay_command(seed: u64, test: &str) -> String {
    let features = if cfg!(feature = "broken") {
        " --features broken"
    } else {
        ""
    };
    // The test target is this binary's name without cargo's hash suffix.
    let target = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .and_then(|s| s.rsplit_once('-').map(|(name, _)| name.to_owned()))
        .unwrap_or_else(|| "sim".to_owned());
    format!(
        "MADSIM_TEST_SEED={seed} MADSIM_TEST_NUM=1 RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test -p coord-sim{features} --test {target} -- {test} --exact --nocapture"
    )
}
