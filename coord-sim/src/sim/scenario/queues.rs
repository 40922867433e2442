//! The work-queue workload ([`Workload::Queues`](super::Workload::Queues)),
//! with a run of its own: two producer nodes push about sixty items over
//! the fault window (single pushes and `push_many`, priorities, delays,
//! dedup ids pushed again, their own attempts); four consumer nodes work
//! them, each in a style drawn per seed (`Consumer::run`, or a receive /
//! settle loop that leaves and comes back now and then; with prefetch and
//! stealing or not), handlers writing to the fenced resource with their
//! delivery's token and failing as each item's fate says (once, twice,
//! always — dead after its attempts —, or for good). Consumers crash at
//! step boundaries (before a receive, after it, mid-handler, after the
//! handler before the ack, while the ack travels, after it), producers
//! around their pushes; all come back as new processes. The plan
//! partitions, drops, delays and pauses (some past the presence TTL, some
//! past the lease's), and loses consumer 0's delivery renewals for a while,
//! its heartbeats going through and its handlers begun then taking longer
//! than a lease (so its deliveries' leases end while it lives: the one way
//! to that rule, since a consumer cut off loses its presence first),
//! clocks skewed and drifting in bounds; with `server_restarts`, the
//! server is killed and restarts with an empty store. At the heal every
//! dead process restarts, producers stop, and a drainer waits for the
//! queue to empty (within [`DRAIN_BOUND`]) and lists its dead letters;
//! then [`check_queues`] judges the server's log of queue calls (replayed
//! through the SPI's rules), the acknowledged pushes, the handlers, the
//! resource's writes and the listing.
//!
//! With server restarts (the memory store loses everything), what is
//! judged is what the contract promises of a server that lost its data:
//! tokens keep increasing across the restart, no settlement of a delivery
//! made before it is accepted after it, every rule within each
//! incarnation, and nothing acknowledged *after the last restart* lost;
//! pushes acknowledged before a restart that it found not ended are
//! counted as lost to it, not judged.

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
    HEAL_AT, NodeClock, RESOURCE, Report, SERVER, Scenario, ServerConfig, Shared, client_ip,
    faults::{self, Action, Faults, Step, Target},
    serve, serve_resource,
};
use crate::history::{QueueHistory, QueueLog, check_queues, queue_counts};
use work::{Boundary, CrashRequest, ITEM_TTL, PRESENCE_TTL, PRODUCERS, QUEUE, QueueShared};

/// How long after the heal the queue must have drained: a delivery lost
/// in the last second of the window comes back within a lease TTL, an
/// item may need three more attempts with back-offs of at most 400 ms, a
/// delay of up to 3 s: well under half of it.
pub const DRAIN_BOUND: Duration = Duration::from_secs(30);

/// Checkers whose findings are a known bug of the client, counted in the
/// report (`QueueCounts::unasked_leaves` for `queue-leave`) instead of
/// failing the seed. None now: `queue-leave` (a consumer whose presence
/// was lost locally released the old presence when its next receive
/// started a new one, a leave that gave back what it held) was fixed in
/// `Consumer::keep_presence`, which retires the old presence instead.
pub const KNOWN_CLIENT_BUGS: &[&str] = &[];

/// What the fault loop does at an instant.
enum Ev {
    Fault(Action),
    Kill(usize, Boundary),
    Restart(usize),
}

/// Runs the queue workload under `scenario`'s faults and judges it.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let resource_addr: SocketAddr = RESOURCE.parse().unwrap();
    let consumers = scenario.clients;
    let processes = consumers + PRODUCERS;

    // Clocks: arbitrary offsets, rates within the drift bound.
    let mut clock = || {
        NodeClock::new(
            rng.gen_range(-10_000_000_000i64..10_000_000_000),
            rng.gen_range(-0.004..0.004),
        )
    };
    let server_clock = clock();
    let clocks: Vec<NodeClock> = (0..=processes).map(|_| clock()).collect();
    report.faults.push(format!(
        "clocks: server rate {:.4}, clients {:?}",
        server_clock.rate(),
        clocks
            .iter()
            .map(|c| format!("{:.4}", c.rate()))
            .collect::<Vec<_>>()
    ));

    let queue_log = QueueLog::new();
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.queue_log = Some(queue_log.clone());
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

    let plan = work::plan(&mut rng, consumers);
    report.faults.push(format!("styles: {:?}", plan.styles));
    let (crash_tx, mut crash_rx) = mpsc::unbounded_channel::<CrashRequest>();
    let q = QueueShared {
        plan: Arc::new(plan),
        t0,
        pushes: Default::default(),
        handlers: Default::default(),
        left: Default::default(),
        crash: crash_tx,
        progress: Arc::new(Mutex::new(vec![0; PRODUCERS])),
        busy: Arc::new(Mutex::new(vec![0; consumers])),
        crashes: scenario.holder_kills,
    };
    let name = |i: usize| match i.checked_sub(consumers) {
        None => format!("c{i}"),
        Some(p) => format!("p{p}"),
    };
    let nodes: Vec<NodeHandle> = (0..processes)
        .map(|i| {
            let (shared, q, clock) = (shared.clone(), q.clone(), clocks[i].clone());
            handle
                .create_node()
                .name(name(i))
                .ip(client_ip(i))
                .init(move || {
                    let (shared, q, clock) = (shared.clone(), q.clone(), clock.clone());
                    async move {
                        match i.checked_sub(consumers) {
                            None => work::consumer(i, clock, shared, q).await,
                            Some(p) => work::producer(i, p, clock, shared, q).await,
                        }
                    }
                })
                .build()
        })
        .collect();

    // The fault window: the plan's faults over every process (no kills:
    // processes crash at step boundaries instead), pauses past the
    // presence TTL and past the lease's, and crashes as processes ask.
    let mut agenda: Vec<(Duration, Ev)> = faults::plan(
        &Scenario {
            holder_kills: false,
            clients: processes,
            ..scenario.clone()
        },
        &mut rng,
    )
    .into_iter()
    .map(|Step { at, action }| (at, Ev::Fault(action)))
    .collect();
    if scenario.holder_pauses {
        for long in [false, true] {
            let at = Duration::from_millis(rng.gen_range(2_000..16_000));
            let len = if long {
                ITEM_TTL + Duration::from_millis(rng.gen_range(300..1_500))
            } else {
                PRESENCE_TTL + Duration::from_millis(rng.gen_range(200..1_500))
            };
            agenda.push((at, Ev::Fault(Action::Pause(Target::Holder))));
            agenda.push((at + len, Ev::Fault(Action::ResumeAll)));
        }
    }
    agenda.sort_by_key(|e| e.0);
    let mut faults = Faults::new(server.id(), nodes.iter().map(|n| n.id()).collect());
    let mut dead: HashSet<usize> = HashSet::new();
    let mut doomed: HashSet<usize> = HashSet::new();
    let (mut crashes, mut boundaries) = (0u64, 0u64);
    loop {
        let next = agenda.first().map_or(HEAL_AT, |e| e.0.min(HEAL_AT));
        let req = tokio::select! {
            biased;
            Some(req) = crash_rx.recv() => Some(req),
            _ = tokio::time::sleep_until(t0 + next) => None,
        };
        let now = Instant::now();
        if let Some(req) = req {
            // At most two consumers and one producer down (or about to be)
            // at once.
            let producer = req.process >= consumers;
            let kind = doomed.iter().filter(|&&d| (d >= consumers) == producer);
            let room = kind.count() < if producer { 1 } else { 2 };
            let ok = now < t0 + HEAL_AT && !doomed.contains(&req.process) && room;
            if let Some(ack) = req.ack {
                let _ = ack.send(ok);
            }
            if ok {
                doomed.insert(req.process);
                let at = now - t0 + req.after;
                let back = at + Duration::from_millis(rng.gen_range(200..2_000));
                agenda.push((at, Ev::Kill(req.process, req.boundary)));
                agenda.push((back, Ev::Restart(req.process)));
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
                    q.killed(&shared, w, &name(w), now);
                    dead.insert(w);
                    crashes += 1;
                    boundaries |= 1 << boundary as u64;
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

    // Heal: the network back, paused processes resumed, dead ones (and a
    // killed server) restarted; no more crashes, no more pushes.
    drop(crash_rx);
    faults.heal();
    for w in dead {
        faults.apply(Action::Restart(Target::Client(w)), None);
    }
    stop_tx.send_replace(true);
    let healed = Instant::now();

    let drainer = handle
        .create_node()
        .name("drainer")
        .ip(client_ip(processes))
        .build();
    let (d_clock, d_shared) = (clocks[processes].clone(), shared.clone());
    let (drained, listed) = drainer
        .spawn(async move {
            // A push sent before the heal may still be on its way.
            tokio::time::sleep(Duration::from_millis(600)).await;
            work::drainer(d_clock, d_shared, healed + DRAIN_BOUND).await
        })
        .await
        .unwrap();

    // Let stale handlers (resumed at the heal) finish their writes, then
    // judge.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = QueueHistory {
        events: queue_log.events(),
        server_now: server_clock.clock().now(),
        pushes: q.pushes.all(),
        handlers: q.handlers.all(),
        left: q.left.lock().unwrap().clone(),
        writes: shared.resource.accepted(),
        dead: vec![(QUEUE.to_owned(), listed)],
        healed,
        drained,
        drain_bound: DRAIN_BOUND,
    };
    report.violations.extend(shared.resource.check());
    let found = check_queues(&history).into_iter();
    let known = |v: &crate::history::Violation| KNOWN_CLIENT_BUGS.contains(&v.checker);
    report.violations.extend(found.filter(|v| !known(v)));
    let mut counts = queue_counts(&history);
    counts.crashes = crashes;
    counts.boundaries = boundaries;
    report.queues = counts;
    report.grants = history.handlers.len();
    report.writes = history.writes.len();
    report.stale_writes_refused = shared.resource.rejected();
    report.simulated = Instant::now() - t0;
    report.digest = digest(&report, &history, t0);
    report
}

/// A hash of everything that happened.
fn digest(report: &Report, h: &QueueHistory, t0: Instant) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut s = std::hash::DefaultHasher::new();
    report.faults.hash(&mut s);
    for e in &h.events {
        format!("{e:?}").hash(&mut s);
    }
    for x in &h.handlers {
        let end = x.end.map(|e| (e - t0).as_nanos());
        (&x.process, x.id, x.token, (x.start - t0).as_nanos(), end).hash(&mut s);
        format!("{:?}", x.ended).hash(&mut s);
    }
    for w in &h.writes {
        (&w.key, &w.client, w.token, (w.at - t0).as_nanos()).hash(&mut s);
    }
    for p in &h.pushes {
        (&p.name, p.id, (p.at - t0).as_nanos()).hash(&mut s);
    }
    format!("{:?}", h.dead).hash(&mut s);
    report.simulated.hash(&mut s);
    s.finish()
}
