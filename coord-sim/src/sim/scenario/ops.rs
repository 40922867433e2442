//! The operations workload ([`Workload::Ops`](super::Workload::Ops)), with a
//! run of its own: [`HOLDERS`] holder nodes (each its own skewed, drifting
//! clock) keep an instance presence of [`PRESENCE`] and hold two fixed
//! leases each (their own lock, and a read lease of one shared read-write
//! lock) for longer than the run. The plan kills some holders for good,
//! pauses others and cuts others off from the server for a while. Each
//! also works on one item of a queue of its own and one event of a topic
//! of its own (deliveries, listed as `queue:h<i>/q@1` and
//! `topic:h<i>/t@s@1`, whose consumers' presences and leases outlast the
//! run, as the locks' do). An
//! operator node, never faulted, lists every live lease every 250 ms with
//! whether its holder lives. [`check_ops`] then judges every listing:
//! exactly the held leases listed; a holder down for longer than its
//! presence TTL listed stale; a holder up for a renewal's worth not.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Instant, LeaseFilter, Next, PresenceOptions, PushOptions, spi::Start};
use madsim::{
    net::NetSim,
    rand::{Rng, thread_rng},
    runtime::{Handle, NodeHandle},
};

use super::{
    NodeClock, Report, SERVER, Scenario, ServerConfig, Shared, client_ip, connect_with, opts, serve,
};
use crate::{
    history::{HolderRecord, Listing, OpsHistory, OpsRules, check_ops},
    sim::SimOptions,
};

/// Holder nodes.
pub const HOLDERS: usize = 8;
/// Each holder's presence TTL (renewed every third of it).
pub const PRESENCE: Duration = Duration::from_secs(3);
/// The holders' fixed leases: longer than the run, so every lease is live
/// for all of it.
const LEASE: Duration = Duration::from_secs(60);
/// Faults start and end.
const FAULTS: (u64, u64) = (3_000, 18_000);
/// When the run ends.
const END: Duration = Duration::from_secs(24);
/// How often the operator lists.
const EVERY: Duration = Duration::from_millis(250);

/// What a holder's resources are listed as: its lock, the shared
/// read-write lock, and the delivery of the one item of its queue.
fn resources(i: usize) -> Vec<String> {
    vec![
        format!("lock:h{i}/a"),
        "rwlock:shared".to_owned(),
        format!("queue:h{i}/q@1"),
        format!("topic:h{i}/t@s@1"),
    ]
}

/// Retries `call` every 100 ms until it succeeds (a holder's setup through
/// faults).
async fn retried<T, F: std::future::Future<Output = coord_api::Result<T>>>(
    mut call: impl FnMut() -> F,
) -> T {
    loop {
        match call().await {
            Ok(v) => return v,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A holder: announces itself, takes its three leases, and holds them.
async fn holder(i: usize, clock: NodeClock, shared: Shared, recs: Arc<Mutex<Vec<HolderRecord>>>) {
    let presence = PresenceOptions::default()
        .ttl(PRESENCE)
        .expect("a valid presence TTL");
    let client = connect_with(&format!("h{i}"), &clock, opts(), &shared, presence).await;
    let lock = client.lock(&format!("h{i}/a")).lease(LEASE);
    let lock = retried(|| lock.lock()).await;
    let rw = client.rwlock("shared").lease(LEASE);
    let read = retried(|| rw.read()).await;
    // One item (pushed once however often the push is retried), then its
    // delivery: item 1.
    let queue = client.queue::<u64>(&format!("h{i}/q"));
    let once = PushOptions::new().dedup("the one", LEASE);
    let item = i as u64;
    retried(|| queue.push_with(&item, once.clone())).await;
    let mut consumer = queue.consumer().ttl(LEASE).presence_ttl(LEASE);
    let delivery = loop {
        match consumer.receive().await {
            Ok(d) => break d,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(delivery.id(), 1, "the queue's one item");
    // And the first event of a topic of its own, to its subscription (a
    // publish retried may publish twice: the first is offset 1).
    let topic = client.topic::<u64>(&format!("h{i}/t"));
    let mut sub = topic
        .subscriber("s")
        .start(Start::Earliest)
        .ttl(LEASE)
        .presence_ttl(LEASE);
    while sub.subscribe().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    retried(|| topic.publish(&item)).await;
    let event = loop {
        match sub.next().await {
            Ok(Next::Event(e)) => break e,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(event.offset(), 1, "the topic's first event");
    recs.lock().unwrap()[i].holding_from = Some(Instant::now());
    // Held until the node dies (a kill drops them without a release).
    std::future::pending::<()>().await;
    drop((lock, read, delivery, consumer, event, sub));
}

/// Runs the operations workload and judges it.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let net = NetSim::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let holders = scenario.clients;

    let mut clock = || {
        NodeClock::new(
            rng.gen_range(-10_000_000_000i64..10_000_000_000),
            rng.gen_range(-0.004..0.004),
        )
    };
    let server_clock = clock();
    let clocks: Vec<NodeClock> = (0..=holders).map(|_| clock()).collect();
    let cfg = ServerConfig::new(server_addr, server_clock.clock());
    let _server = handle
        .create_node()
        .name("server")
        .ip(server_addr.ip())
        .init(move || serve(cfg.clone()))
        .build();
    let (_stop_tx, stopped) = tokio::sync::watch::channel(false);
    let shared = Shared::new(&scenario, stopped);
    let recs = Arc::new(Mutex::new(
        (0..holders)
            .map(|i| HolderRecord {
                instance: format!("h{i}"),
                resources: resources(i),
                down: Vec::new(),
                holding_from: None,
            })
            .collect::<Vec<_>>(),
    ));
    let nodes: Vec<NodeHandle> = (0..holders)
        .map(|i| {
            let (shared, recs, clock) = (shared.clone(), recs.clone(), clocks[i].clone());
            handle
                .create_node()
                .name(format!("h{i}"))
                .ip(client_ip(i))
                .init(move || holder(i, clock.clone(), shared.clone(), recs.clone()))
                .build()
        })
        .collect();

    // The plan: per holder, killed for good, paused, cut off, or left alone.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        Kill,
        Pause,
        Clog,
    }
    let mut steps: Vec<(Duration, usize, Fault, Option<Duration>)> = Vec::new();
    for i in 0..holders {
        let fault = match rng.gen_range(0..10) {
            0..=2 => Fault::Kill,
            3..=5 => Fault::Pause,
            6..=8 => Fault::Clog,
            _ => continue,
        };
        let at = Duration::from_millis(rng.gen_range(FAULTS.0..FAULTS.1 - 3_000));
        let lasts = match fault {
            Fault::Kill => None,
            _ => Some(Duration::from_millis(rng.gen_range(500..6_000))),
        };
        steps.push((at, i, fault, lasts));
    }
    let mut events: Vec<(Duration, usize, Fault, bool)> = Vec::new();
    for &(at, i, f, lasts) in &steps {
        events.push((at, i, f, true));
        if let Some(d) = lasts {
            events.push((at + d, i, f, false));
        }
    }
    events.sort_by_key(|e| (e.0, e.1));

    // The operator: lists every live lease with its holder's liveness.
    let operator = handle
        .create_node()
        .name("operator")
        .ip(client_ip(holders))
        .build();
    let (o_clock, o_shared) = (clocks[holders].clone(), shared.clone());
    let listings = operator.spawn(async move {
        let client = connect_with(
            "operator",
            &o_clock,
            opts(),
            &o_shared,
            PresenceOptions::disabled(),
        )
        .await;
        let ops = client.operations();
        let mut listings = Vec::new();
        let mut next = t0 + Duration::from_secs(1);
        while next < t0 + END {
            tokio::time::sleep_until(next).await;
            next += EVERY;
            let start = Instant::now();
            let Ok(all) = ops.leases(&LeaseFilter::all()).await else {
                continue;
            };
            let pair = |l: &coord_api::LiveLease| {
                let instance = l.lease.holder.instance().as_str().to_owned();
                (l.lease.resource.to_string(), instance)
            };
            listings.push(Listing {
                start,
                end: Instant::now(),
                leases: all.iter().map(pair).collect::<BTreeSet<_>>(),
                stale: all.iter().filter(|l| l.is_stale()).map(pair).collect(),
            });
        }
        listings
    });

    for (at, i, fault, begins) in events {
        tokio::time::sleep_until(t0 + at).await;
        let node = nodes[i].id();
        let now = Instant::now();
        let mut recs = recs.lock().unwrap();
        match (fault, begins) {
            (Fault::Kill, _) => handle.kill(node),
            (Fault::Pause, true) => handle.pause(node),
            (Fault::Pause, false) => handle.resume(node),
            (Fault::Clog, true) => net.clog_node(node),
            (Fault::Clog, false) => net.unclog_node(node),
        }
        let down = &mut recs[i].down;
        if begins {
            down.push((now, None));
        } else if let Some(last) = down.last_mut() {
            last.1 = Some(now);
        }
        report.faults.push(format!(
            "{at:?}: h{i} {fault:?} {}",
            if begins { "begins" } else { "ends" }
        ));
    }
    let listings = listings.await.expect("the operator's run");

    let call_timeout = SimOptions::default().call_timeout;
    let history = OpsHistory {
        listings,
        holders: recs.lock().unwrap().clone(),
        rules: OpsRules {
            // The last announcement's flight and the server clock's drift.
            dead: PRESENCE + Duration::from_millis(300),
            // A renewal interval, an announcement cut off by the fault
            // (its call timeout) and the retry after it, with room.
            alive: PRESENCE / 3
                + call_timeout
                + Duration::from_secs(1)
                + Duration::from_millis(500),
        },
    };
    let (violations, counts) = check_ops(&history);
    report.violations.extend(violations);
    report.faults.push(format!("counts: {counts:?}"));
    report.grants = counts.judged_stale;
    report.writes = counts.judged_alive;
    report.simulated = Instant::now() - t0;
    report.digest = {
        use std::hash::{Hash, Hasher};
        let mut s = std::hash::DefaultHasher::new();
        report.faults.hash(&mut s);
        for l in &history.listings {
            ((l.start - t0).as_nanos(), &l.leases, &l.stale).hash(&mut s);
        }
        s.finish()
    };
    report
}
