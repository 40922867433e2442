//! The topic workload ([`Workload::Topics`](super::Workload::Topics)),
//! with a run of its own: two publisher nodes publish durable events (one
//! in twelve of a version the subscribers refuse) over the fault window,
//! with a retention drawn per seed (large, or six events: trimming while
//! subscribers are down or slow); four subscriber nodes, two per
//! subscription, read with `Subscriber::next` (batches of one to three),
//! work each event a while, and ack it (alone, or with the next read in
//! one step: `ack_and_next`), nack it, or drop it unsettled.
//! Subscribers are killed at random instants (mid-event, before an ack,
//! while one travels...) and come back as new processes; the plan
//! partitions, drops, delays and pauses (some past the presence TTL and
//! the lease's); with `server_restarts`, the server is killed and restarts
//! with an empty store. At the heal the subscribers stop and a drainer reads
//! each subscription until nothing comes for three seconds (within
//! [`DRAIN_BOUND`]) and lists its dead events; then [`check_topics`] judges
//! the server's log, what publishers saw acknowledged and what subscribers
//! were handed.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Client, Error, Instant, Next, Topic, spi::Retention, spi::Start};
use madsim::{
    rand::{Rng, thread_rng},
    runtime::{Handle, NodeHandle},
};

use super::{
    HEAL_AT, NodeClock, Report, SERVER, Scenario, ServerConfig, Shared, client_ip, connect,
    faults::{self, Action, Faults, Step, Target},
    opts, serve,
};
use crate::history::{Seen, TopicHistory, TopicLog, check_topics, topic_counts};

/// How long after the heal the subscriptions must have drained.
pub const DRAIN_BOUND: Duration = Duration::from_secs(30);

const TOPIC: &str = "t";
const SUBS: [&str; 2] = ["a", "b"];
const SUBSCRIBERS: usize = 4;
const PUBLISHERS: usize = 2;
const PRESENCE_TTL: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct TopicShared {
    seen: Arc<Mutex<Vec<(Instant, Seen)>>>,
    retention: Retention,
    batch: u32,
}

impl TopicShared {
    fn saw(&self, at: Instant, s: Seen) {
        self.seen.lock().unwrap().push((at, s));
    }

    fn topic(&self, client: &Client) -> Topic<u64> {
        client
            .topic::<u64>(TOPIC)
            .kind("n", 1)
            .retention(self.retention)
    }
}

fn subscriber(
    topic: &Topic<u64>,
    sub: &str,
    batch: u32,
    wait: Duration,
) -> coord_api::Subscriber<u64> {
    topic
        .subscriber(sub)
        .start(Start::Earliest)
        .presence_ttl(PRESENCE_TTL)
        .batch(batch)
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .wait_timeout(Some(wait))
}

/// Reads subscription `SUBS[i % 2]` until the heal.
async fn subscribe_loop(i: usize, clock: NodeClock, shared: Shared, t: TopicShared) {
    let name = format!("s{i}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let sub = SUBS[i % 2];
    let mut s = subscriber(&t.topic(&client), sub, t.batch, Duration::from_secs(1));
    // A read's reply may hand out a missed range, then an event, over two
    // calls: the event is as old as the first call (before a restart, it
    // is the old store's).
    let mut carried = None;
    // What an ack and next handed out, for the next turn.
    let mut handed = None;
    while !shared.stopping() {
        let asked = carried.take().unwrap_or_else(Instant::now);
        let got = match handed.take() {
            Some(n) => Ok(n),
            None => s.next().await,
        };
        match got {
            Ok(Next::Event(d)) => {
                let (offset, value) = (d.offset(), *d.event());
                let seen = Seen::Handed {
                    sub: sub.into(),
                    offset,
                    value,
                };
                t.saw(asked, seen);
                let work = thread_rng().gen_range(0..300);
                tokio::time::sleep(Duration::from_millis(work)).await;
                let roll: f64 = thread_rng().gen_range(0.0..1.0);
                if roll < 0.06 {
                    drop(d);
                } else if roll < 0.12 {
                    let _ = d.nack().await;
                } else if roll < 0.56 {
                    let _ = d.ack().await;
                } else {
                    // What the step reads is as old as the step.
                    carried = Some(Instant::now());
                    handed = s.ack_and_next(d).await.ok().flatten();
                }
            }
            Ok(Next::Refused { offset, .. }) => {
                let refused = Seen::Refused {
                    sub: sub.into(),
                    offset,
                };
                t.saw(asked, refused);
                carried = Some(asked);
            }
            Ok(Next::Missed { .. }) => carried = Some(asked),
            Err(Error::Timeout { .. }) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // What the last ack and next handed out goes back (unsettled, as a
    // dropped delivery), for the drainer.
    drop(handed);
    std::future::pending::<()>().await
}

/// Publishes until the heal.
async fn publish_loop(p: usize, clock: NodeClock, shared: Shared, t: TopicShared) {
    let client = connect(&format!("p{p}"), &clock, opts(), &shared).await;
    let topic = t.topic(&client);
    let refused = topic.clone().kind("n", 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut n = 0u64;
    while !shared.stopping() {
        let pause = thread_rng().gen_range(50..250);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        n += 1;
        let value = (p as u64 + 1) * 1_000_000 + n;
        let bad = thread_rng().gen_bool(1.0 / 12.0);
        let sent = Instant::now();
        let res = if bad {
            refused.publish(&value).await
        } else {
            topic.publish(&value).await
        };
        if let Ok(offset) = res {
            let refused = bad;
            t.saw(
                sent,
                Seen::Published {
                    offset,
                    value,
                    refused,
                },
            );
        }
    }
    std::future::pending::<()>().await
}

/// Reads every subscription until nothing comes for three seconds (or
/// `until`); each subscription's dead events' offsets.
async fn drain(clock: NodeClock, shared: Shared, t: TopicShared) -> HashMap<String, HashSet<u64>> {
    let client = connect("drainer", &clock, opts(), &shared).await;
    let until = Instant::now() + DRAIN_BOUND;
    let mut dead = HashMap::new();
    for sub in SUBS {
        let mut s = subscriber(&t.topic(&client), sub, 1, Duration::from_secs(3));
        let mut carried = None;
        while Instant::now() < until {
            let asked = carried.take().unwrap_or_else(Instant::now);
            match s.next().await {
                Ok(Next::Event(d)) => {
                    let (offset, value) = (d.offset(), *d.event());
                    t.saw(
                        asked,
                        Seen::Handed {
                            sub: sub.into(),
                            offset,
                            value,
                        },
                    );
                    let _ = d.ack().await;
                }
                Ok(Next::Refused { offset, .. }) => {
                    let refused = Seen::Refused {
                        sub: sub.into(),
                        offset,
                    };
                    t.saw(asked, refused);
                    carried = Some(asked);
                }
                Ok(Next::Missed { .. }) => carried = Some(asked),
                Err(Error::Timeout { .. }) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listed = s.dead_events(0, 1000).await.unwrap_or_default();
        let offsets: HashSet<u64> = listed.iter().map(|d| d.offset).collect();
        dead.insert(sub.to_owned(), offsets);
    }
    dead
}

/// Runs the topic workload under `scenario`'s faults and judges it.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let processes = SUBSCRIBERS + PUBLISHERS;
    let mut clock = || {
        NodeClock::new(
            rng.gen_range(-10_000_000_000i64..10_000_000_000),
            rng.gen_range(-0.004..0.004),
        )
    };
    let server_clock = clock();
    let clocks: Vec<NodeClock> = (0..=processes).map(|_| clock()).collect();
    let trimming = rng.gen_bool(0.5);
    let retention = Retention::count(if trimming { 6 } else { 100_000 });
    // A buffered delivery handed out after a restart could come from the
    // store before it: batches only without restarts.
    let batch = if scenario.server_restarts {
        1
    } else {
        rng.gen_range(1..=3)
    };
    report
        .faults
        .push(format!("retention {retention:?}, batch {batch}"));

    let log = TopicLog::new();
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.topic_log = Some(log.clone());
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
    let t = TopicShared {
        seen: Arc::default(),
        retention,
        batch,
    };
    let nodes: Vec<NodeHandle> = (0..processes)
        .map(|i| {
            let (shared, t, clock) = (shared.clone(), t.clone(), clocks[i].clone());
            handle
                .create_node()
                .name(format!("n{i}"))
                .ip(client_ip(i))
                .init(move || {
                    let (shared, t, clock) = (shared.clone(), t.clone(), clock.clone());
                    async move {
                        match i.checked_sub(SUBSCRIBERS) {
                            None => subscribe_loop(i, clock, shared, t).await,
                            Some(p) => publish_loop(p, clock, shared, t).await,
                        }
                    }
                })
                .build()
        })
        .collect();

    // The fault window: the plan's faults over every process, subscribers
    // killed at random instants and restarted, pauses past the presence
    // TTL.
    let mut agenda: Vec<(Duration, Action)> = faults::plan(
        &Scenario {
            holder_kills: false,
            clients: processes,
            ..scenario.clone()
        },
        &mut rng,
    )
    .into_iter()
    .map(|Step { at, action }| (at, action))
    .collect();
    if scenario.holder_kills {
        for _ in 0..rng.gen_range(3..8) {
            let w = rng.gen_range(0..SUBSCRIBERS);
            let at = Duration::from_millis(rng.gen_range(1_500..19_000));
            let back = at + Duration::from_millis(rng.gen_range(200..2_500));
            agenda.push((at, Action::Kill(Target::Client(w))));
            agenda.push((back, Action::Restart(Target::Client(w))));
        }
    }
    if scenario.holder_pauses {
        let at = Duration::from_millis(rng.gen_range(2_000..16_000));
        let len = PRESENCE_TTL + Duration::from_millis(rng.gen_range(200..1_500));
        agenda.push((
            at,
            Action::Pause(Target::Client(rng.gen_range(0..SUBSCRIBERS))),
        ));
        agenda.push((at + len, Action::ResumeAll));
    }
    agenda.sort_by_key(|e| e.0);
    let mut faults = Faults::new(server.id(), nodes.iter().map(|n| n.id()).collect());
    let mut restarts = Vec::new();
    for (at, action) in agenda {
        if at >= HEAL_AT {
            break;
        }
        tokio::time::sleep_until(t0 + at).await;
        if let Some((done, _)) = faults.apply(action, None) {
            if matches!(action, Action::Kill(Target::Server)) {
                restarts.push(Instant::now());
            }
            report.faults.push(format!("{at:?}: {done}"));
        }
    }
    tokio::time::sleep_until(t0 + HEAL_AT).await;
    faults.heal();
    for w in 0..SUBSCRIBERS {
        faults.apply(Action::Restart(Target::Client(w)), None);
    }
    stop_tx.send_replace(true);

    let drainer = handle
        .create_node()
        .name("drainer")
        .ip(client_ip(processes))
        .build();
    let (d_clock, d_shared, d_t) = (clocks[processes].clone(), shared.clone(), t.clone());
    let dead = drainer
        .spawn(async move {
            // What was sent before the heal may still be on its way, and
            // deliveries of stopped subscribers are given back.
            tokio::time::sleep(Duration::from_secs(1)).await;
            drain(d_clock, d_shared, d_t).await
        })
        .await
        .unwrap();

    let history = TopicHistory {
        events: log.events(),
        seen: t.seen.lock().unwrap().clone(),
        subs: SUBS.iter().map(|s| s.to_string()).collect(),
        dead,
        restarts,
    };
    report.violations.extend(check_topics(&history));
    let counts = topic_counts(&history);
    report.faults.push(format!("counts: {counts:?}"));
    report.topics = counts;
    report.grants = counts.delivered as usize;
    report.writes = counts.acked as usize;
    report.stale_writes_refused = counts.stale;
    report.simulated = Instant::now() - t0;
    report.digest = {
        use std::hash::{Hash, Hasher};
        let mut s = std::hash::DefaultHasher::new();
        report.faults.hash(&mut s);
        format!("{:?}", history.events.len()).hash(&mut s);
        for (at, seen) in &history.seen {
            ((*at - t0).as_nanos(), format!("{seen:?}")).hash(&mut s);
        }
        s.finish()
    };
    report
}
