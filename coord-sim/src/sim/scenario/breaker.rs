//! The circuit-breaker workload ([`Workload::Breaker`](super::Workload::Breaker)),
//! with a run of its own: [`INSTANCES`] instance nodes (each its own skewed,
//! drifting clock) call a downstream through one shared breaker, every
//! 40–100 ms, while the downstream fails in phases ([`FAILING`]: three in
//! the fault window, one after the heal); one call in five is given up
//! unrecorded (a trial then gives its slot back). The plan partitions, drops,
//! delays and pauses, and kills a random instance now and then (restarted
//! at the heal as a new process). After the heal a prober forces the
//! breaker open; the run goes on until [`END`]. The backend's journal logs
//! every trial grant, end and give-back and every transition; each process records
//! the calls it was admitted and the transitions its event stream told.
//! [`check_breaker`] then judges: trials per generation within the policy,
//! every open after the heal reaching every instance within
//! [`OPEN_BOUND`], no transition lost.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Breaker, BreakerEvent, Error, Instant};
use madsim::{
    rand::{Rng, thread_rng},
    runtime::{Handle, NodeHandle},
};

use super::{
    HEAL_AT, NodeClock, Report, SERVER, Scenario, ServerConfig, Shared, client_ip, connect,
    faults::{self, Action, Faults, Target},
    opts, serve,
};
use crate::history::{
    BreakerHistory, BreakerLog, BreakerProcess, Told, breaker_counts, check_breaker,
};

/// The breaker's name.
const NAME: &str = "downstream";
/// Instance nodes.
pub const INSTANCES: usize = 20;
/// When the downstream fails, in ms from the start of the run.
const FAILING: [(u64, u64); 4] = [
    (3_000, 6_000),
    (9_000, 11_000),
    (14_000, 17_000),
    (23_500, 25_500),
];
/// Opens from this long after the heal on are judged against the bound
/// (every instance reaches the backend again by then: its next refresh).
const SETTLE: Duration = Duration::from_secs(2);
/// When the prober forces the breaker open.
const FORCE_AT: Duration = Duration::from_millis(27_500);
/// When the run ends.
const END: Duration = Duration::from_secs(30);
/// The instances' flush and refresh intervals.
const FLUSH: Duration = Duration::from_millis(100);
const REFRESH: Duration = Duration::from_secs(1);
/// The trials' TTL.
const TRIAL_TTL: Duration = Duration::from_secs(1);
/// The contract's bound on an open reaching every instance: the flush
/// interval plus the refresh interval (the clocks drift at most 0.4 %),
/// plus round trips on the healed LAN (10 ms a hop), with room.
pub const OPEN_BOUND: Duration = Duration::from_millis(1_400);
/// Trials per half-open generation.
const TRIALS: u32 = 3;

/// Whether the downstream fails `since` the start of the run.
fn failing(since: Duration) -> bool {
    let ms = since.as_millis() as u64;
    FAILING.iter().any(|&(from, to)| from <= ms && ms < to)
}

fn breaker(client: &coord_api::Client) -> Breaker {
    client
        .breaker(NAME)
        .count_window(20)
        .minimum_calls(10)
        .failure_rate(50.0)
        .open_for(Duration::from_secs(1))
        .trials(TRIALS)
        .trial_ttl(TRIAL_TTL)
        .flush_interval(FLUSH)
        .refresh_interval(REFRESH)
        .backend_timeout(Duration::from_millis(500))
        .build()
        .expect("a valid breaker")
}

/// What the workload's nodes record.
#[derive(Clone, Default)]
struct BreakerShared {
    processes: Arc<Mutex<Vec<BreakerProcess>>>,
    /// Each instance's current process.
    current: Arc<Mutex<Vec<Option<usize>>>>,
}

/// An instance: calls the downstream through the breaker until the end,
/// recording what it was admitted and what its events told.
async fn instance(i: usize, t0: Instant, clock: NodeClock, shared: Shared, bs: BreakerShared) {
    let name = format!("i{i}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let b = breaker(&client);
    let mut events = b.events();
    let me = {
        let mut ps = bs.processes.lock().unwrap();
        ps.push(BreakerProcess {
            name: name.clone(),
            started: Instant::now(),
            killed: None,
            told: Vec::new(),
            admitted: Vec::new(),
        });
        bs.current.lock().unwrap()[i] = Some(ps.len() - 1);
        ps.len() - 1
    };
    let told = bs.processes.clone();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let seen = match e {
                BreakerEvent::Transition(t) => Told::Transition {
                    generation: t.generation,
                    from: t.from,
                    to: t.to,
                },
                BreakerEvent::Missed { .. } => Told::Missed,
                BreakerEvent::Lagged(_) => Told::Lagged,
                _ => continue,
            };
            told.lock().unwrap()[me].told.push(seen);
        }
    });
    let mut rng = thread_rng();
    loop {
        match b.permit().await {
            Ok(permit) => {
                let at = Instant::now();
                bs.processes.lock().unwrap()[me]
                    .admitted
                    .push((at, permit.is_trial()));
                tokio::time::sleep(Duration::from_millis(rng.gen_range(1..10))).await;
                if rng.gen_ratio(1, 5) {
                    // A call given up: counted nowhere; a trial gives its
                    // slot back.
                    drop(permit);
                } else {
                    permit.record(failing(Instant::now() - t0));
                }
            }
            Err(Error::CircuitOpen { .. }) => {}
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(40..100))).await;
    }
}

/// Runs the breaker workload under `scenario`'s faults and judges it.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let processes = scenario.clients;

    let mut clock = || {
        NodeClock::new(
            rng.gen_range(-10_000_000_000i64..10_000_000_000),
            rng.gen_range(-0.004..0.004),
        )
    };
    let server_clock = clock();
    let clocks: Vec<NodeClock> = (0..=processes).map(|_| clock()).collect();

    let log = BreakerLog::new();
    #[allow(unused_mut)]
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.breaker_log = Some(log.clone());
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
    let (_stop_tx, stopped) = tokio::sync::watch::channel(false);
    let shared = Shared::new(&scenario, stopped);
    let bs = BreakerShared {
        current: Arc::new(Mutex::new(vec![None; processes])),
        ..BreakerShared::default()
    };
    let nodes: Vec<NodeHandle> = (0..processes)
        .map(|i| {
            let (shared, bs, clock) = (shared.clone(), bs.clone(), clocks[i].clone());
            handle
                .create_node()
                .name(format!("i{i}"))
                .ip(client_ip(i))
                .init(move || {
                    let (shared, bs, clock) = (shared.clone(), bs.clone(), clock.clone());
                    instance(i, t0, clock, shared, bs)
                })
                .build()
        })
        .collect();

    let plan = faults::plan(&scenario, &mut rng);
    let mut faults = Faults::new(server.id(), nodes.iter().map(|n| n.id()).collect());
    let killed = |i: usize| {
        if let Some(p) = bs.current.lock().unwrap()[i] {
            bs.processes.lock().unwrap()[p].killed = Some(Instant::now());
        }
    };
    for step in plan {
        tokio::time::sleep_until(t0 + step.at).await;
        let victim = Some(rng.gen_range(0..processes));
        if let Some((done, dead)) = faults.apply(step.action, victim) {
            if let Some(i) = dead {
                killed(i);
            }
            report.faults.push(format!("{:?}: {done}", step.at));
        }
    }
    tokio::time::sleep_until(t0 + HEAL_AT).await;
    faults.heal();
    for i in 0..processes {
        faults.apply(Action::Restart(Target::Client(i)), None);
    }

    // The prober forces the breaker open; every instance must follow.
    let prober = handle
        .create_node()
        .name("prober")
        .ip(client_ip(processes))
        .build();
    let (p_clock, p_shared) = (clocks[processes].clone(), shared.clone());
    prober
        .spawn(async move {
            tokio::time::sleep_until(t0 + FORCE_AT).await;
            let client = connect("prober", &p_clock, opts(), &p_shared).await;
            let b = breaker(&client);
            while b.force_open("drill").await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
    tokio::time::sleep_until(t0 + END).await;

    let history = BreakerHistory {
        decisions: log.decisions(),
        processes: bs.processes.lock().unwrap().clone(),
        trials: TRIALS,
        trial_ttl: TRIAL_TTL,
        settled: t0 + HEAL_AT + SETTLE,
        open_bound: OPEN_BOUND,
        end: Instant::now(),
    };
    report.violations.extend(check_breaker(&history));
    let counts = breaker_counts(&history);
    report.faults.push(format!("counts: {counts:?}"));
    // The sweep's generic counts: transitions made, calls admitted.
    report.grants = counts.transitions;
    report.writes = counts.admitted;
    report.simulated = Instant::now() - t0;
    report.digest = {
        use std::hash::{Hash, Hasher};
        let mut s = std::hash::DefaultHasher::new();
        report.faults.hash(&mut s);
        format!("{:?}", history.decisions).hash(&mut s);
        report.simulated.hash(&mut s);
        s.finish()
    };
    report
}
