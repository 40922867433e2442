//! The job-graph workload ([`Workload::Graphs`](super::Workload::Graphs)),
//! with a run of its own: a submitter node submits twelve runs of three
//! graphs over the fault window (some twice, one cancelled in some seeds);
//! four worker nodes run one `GraphWorker` per graph (`run` on even
//! nodes, a `work_next` loop on odd ones) whose bodies write to the fenced
//! resource with their token and fail as each run's plan says. Workers
//! crash at step boundaries (before a take, after it before the body, in
//! the body, after it before the completion, while the completion travels,
//! after it) and come back as new processes; the plan partitions, drops,
//! delays and pauses (some pauses longer than the lease's TTL), clocks
//! skewed and drifting in bounds. At the heal every dead worker restarts
//! and a waiter waits for every run to end (within [`END_BOUND`]); then
//! [`check_graphs`] judges the server's log of graph calls, the bodies,
//! the final statuses and the resource's writes.

mod work;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::Instant;
use madsim::{
    rand::{Rng, thread_rng},
    runtime::{Handle, NodeHandle},
};
use tokio::sync::mpsc;

use super::{
    HEAL_AT, NodeClock, RESOURCE, Report, SERVER, Scenario, ServerConfig, Shared, TTL, client_ip,
    faults::{self, Action, Faults, Step, Target},
    serve, serve_resource,
};
use crate::history::{GraphCounts, GraphHistory, GraphLog, WallMap, WallRate, check_graphs};
use work::{Boundary, CrashRequest, GraphShared};

/// How long after the heal every run must have ended: the longest chain
/// (five nodes deep, each with up to three attempts, a lease's TTL lost to
/// a crashed attempt and back-offs of at most 400 ms between them) needs
/// well under half of it.
pub const END_BOUND: Duration = Duration::from_secs(60);

/// What the fault loop does at an instant.
enum Ev {
    Fault(Action),
    Kill(usize, Boundary),
    Restart(usize),
}

/// Runs the graph workload under `scenario`'s faults and judges it.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let resource_addr: SocketAddr = RESOURCE.parse().unwrap();

    // Clocks: arbitrary offsets, rates within the drift bound.
    let mut clock = || {
        NodeClock::new(
            rng.gen_range(-10_000_000_000i64..10_000_000_000),
            rng.gen_range(-0.004..0.004),
        )
    };
    let server_clock = clock();
    let clocks: Vec<NodeClock> = (0..scenario.clients + 2).map(|_| clock()).collect();
    report.faults.push(format!(
        "clocks: server rate {:.4}, clients {:?}",
        server_clock.rate(),
        clocks
            .iter()
            .map(|c| format!("{:.4}", c.rate()))
            .collect::<Vec<_>>()
    ));

    let graph_log = GraphLog::new();
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.graph_log = Some(graph_log.clone());
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

    let specs = work::specs();
    let plans = work::plans(&mut rng, &specs);
    let (crash_tx, mut crash_rx) = mpsc::unbounded_channel::<CrashRequest>();
    let g = GraphShared {
        plans: Arc::new(plans.iter().map(|p| (p.id.clone(), p.clone())).collect()),
        bodies: Default::default(),
        crash: crash_tx,
        busy: Arc::new(Mutex::new(vec![0; scenario.clients])),
        crashes: scenario.holder_kills,
    };
    let workers: Vec<NodeHandle> = (0..scenario.clients)
        .map(|i| {
            let (shared, g, clock) = (shared.clone(), g.clone(), clocks[i].clone());
            handle
                .create_node()
                .name(format!("c{i}"))
                .ip(client_ip(i))
                .init(move || work::worker(i, clock.clone(), shared.clone(), g.clone()))
                .build()
        })
        .collect();
    let submitter = handle
        .create_node()
        .name("submitter")
        .ip(client_ip(scenario.clients))
        .build();
    let (sub_clock, sub_shared) = (clocks[scenario.clients].clone(), shared.clone());
    let _submissions = submitter.spawn(work::submitter(sub_clock, sub_shared, plans.clone(), t0));

    // The fault window: the plan's faults (no kills: workers crash at step
    // boundaries instead), pauses longer than the TTL, and crashes as the
    // workers ask for them.
    let mut agenda: Vec<(Duration, Ev)> = faults::plan(
        &Scenario {
            holder_kills: false,
            ..scenario.clone()
        },
        &mut rng,
    )
    .into_iter()
    .map(|Step { at, action }| (at, Ev::Fault(action)))
    .collect();
    if scenario.holder_pauses {
        for _ in 0..rng.gen_range(1..3) {
            let at = Duration::from_millis(rng.gen_range(2_000..17_000));
            let len = TTL + Duration::from_millis(rng.gen_range(300..2_000));
            agenda.push((at, Ev::Fault(Action::Pause(Target::Holder))));
            agenda.push((at + len, Ev::Fault(Action::ResumeAll)));
        }
    }
    agenda.sort_by_key(|e| e.0);
    let mut faults = Faults::new(server.id(), workers.iter().map(|w| w.id()).collect());
    let mut dead: HashSet<usize> = HashSet::new();
    let mut doomed: HashSet<usize> = HashSet::new();
    let mut counts = GraphCounts::default();
    loop {
        let next = agenda.first().map_or(HEAL_AT, |e| e.0.min(HEAL_AT));
        let req = tokio::select! {
            biased;
            Some(req) = crash_rx.recv() => Some(req),
            _ = tokio::time::sleep_until(t0 + next) => None,
        };
        let now = Instant::now();
        if let Some(req) = req {
            // At most two workers down (or about to be) at once.
            let ok = now < t0 + HEAL_AT && !doomed.contains(&req.worker) && doomed.len() < 2;
            if let Some(ack) = req.ack {
                let _ = ack.send(ok);
            }
            if ok {
                doomed.insert(req.worker);
                let at = now - t0 + req.after;
                let back = at + Duration::from_millis(rng.gen_range(200..2_000));
                agenda.push((at, Ev::Kill(req.worker, req.boundary)));
                agenda.push((back, Ev::Restart(req.worker)));
                agenda.sort_by_key(|e| e.0);
            }
            continue;
        }
        // At the heal only the kills already promised are left to carry
        // out (their processes wait for them: a crash accepted in the last
        // millisecond before the heal was never made, and its process
        // waited for ever).
        let heal = now >= t0 + HEAL_AT;
        let Some(i) = (agenda.iter()).position(|e| !heal || matches!(e.1, Ev::Kill(..))) else {
            break;
        };
        let (at, ev) = agenda.remove(i);
        match ev {
            Ev::Fault(action) => {
                let holder = *shared.holder.lock().unwrap();
                if let Some((done, _)) = faults.apply(action, holder) {
                    report.faults.push(format!("{at:?}: {done}"));
                }
            }
            Ev::Kill(w, boundary) => {
                if let Some((done, _)) = faults.apply(Action::Kill(Target::Client(w)), None) {
                    g.killed(&shared, w, now);
                    dead.insert(w);
                    counts.crashes += 1;
                    counts.boundaries |= 1 << boundary as u64;
                    report.faults.push(format!("{at:?}: {done} ({boundary:?})"));
                }
            }
            Ev::Restart(w) => {
                if let Some((done, _)) = faults.apply(Action::Restart(Target::Client(w)), None) {
                    report.faults.push(format!("{at:?}: {done}"));
                }
                dead.remove(&w);
                doomed.remove(&w);
            }
        }
    }

    // Heal: the network back, paused workers resumed, dead ones restarted;
    // no more crashes, no more submissions.
    drop(crash_rx);
    faults.heal();
    for w in dead {
        faults.apply(Action::Restart(Target::Client(w)), None);
    }
    stop_tx.send_replace(true);
    let healed = Instant::now();

    let waiter = handle
        .create_node()
        .name("waiter")
        .ip(client_ip(scenario.clients + 1))
        .build();
    let (w_clock, w_shared) = (clocks[scenario.clients + 1].clone(), shared.clone());
    let runs = waiter
        .spawn(work::waiter(w_clock, w_shared, plans, healed + END_BOUND))
        .await
        .unwrap();

    // Let stale bodies finish their writes, then judge.
    tokio::time::sleep(TTL * 2).await;
    let history = GraphHistory {
        specs,
        events: graph_log.events(),
        bodies: g.bodies.all(),
        runs,
        wall: WallMap {
            global: Instant::now(),
            wall: server_clock.clock().wall(),
            rate: WallRate::of(server_clock.rate()),
        },
        writes: shared.resource.accepted(),
    };
    report.violations.extend(shared.resource.check());
    report.violations.extend(check_graphs(&history));
    let mut seen = GraphCounts::of(&history, healed);
    seen.crashes = counts.crashes;
    seen.boundaries = counts.boundaries;
    report.graphs = seen;
    report.grants = history.bodies.len();
    report.writes = history.writes.len();
    report.stale_writes_refused = shared.resource.rejected();
    report.simulated = Instant::now() - t0;
    report.digest = digest(&report, &history, t0);
    report
}

/// A hash of everything that happened.
fn digest(report: &Report, h: &GraphHistory, t0: Instant) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut s = std::hash::DefaultHasher::new();
    report.faults.hash(&mut s);
    for e in &h.events {
        format!("{e:?}").hash(&mut s);
    }
    for b in &h.bodies {
        let end = b.end.map(|e| (e - t0).as_nanos());
        (
            &b.worker,
            &b.run,
            &b.node,
            b.token,
            (b.start - t0).as_nanos(),
            end,
        )
            .hash(&mut s);
        format!("{:?}", b.ended).hash(&mut s);
    }
    for w in &h.writes {
        (&w.key, &w.client, w.token, (w.at - t0).as_nanos()).hash(&mut s);
    }
    for r in &h.runs {
        format!("{:?}", r.status).hash(&mut s);
    }
    report.simulated.hash(&mut s);
    s.finish()
}
