//! The shared-value workload ([`Workload::State`](super::Workload::State)),
//! with a run of its own: `clients` updater nodes increment one counter
//! through `State::update` (each update writes the value it read plus one)
//! over the fault window, and now and then write a second key, the flag
//! (a put with a short TTL, a compare-and-set without one, a delete);
//! [`WATCHERS`] watcher nodes watch the counter and [`FLAG_WATCHERS`] the
//! flag, each
//! resuming after an error, and after its process restarted, from the
//! position it checkpointed (as a durable subscriber would). The plan
//! partitions, drops, delays and pauses; kills a random updater or watcher
//! now and then (restarted as a new process); with `server_restarts`, the
//! server is killed and restarts with an empty store (the counter lost,
//! versions still increasing by the clock). At the heal the updaters stop,
//! a prober reads the counter, and every watcher must catch up with it
//! within [`CATCH_UP_BOUND`]; then [`check_state`] judges what everyone
//! saw: no acknowledged update lost (the counter exact without restarts),
//! versions never repeating, every watcher seeing every change in order or
//! a gap with the state, never a silent skip, never left stale; and
//! [`check_flag`] judges the flag's puts, deletes and expiries.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{CasOutcome, Instant, StateEvent};
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
    FlagHistory, FlagWrite, StateHistory, Watched, check_flag, check_state, state_counts,
};

/// The counter's key.
const KEY: &str = "counter";
/// The flag's key.
const FLAG: &str = "flag";
/// Counter watcher nodes (after the updaters).
pub const WATCHERS: usize = 2;
/// Flag watcher nodes (after the counter's).
pub const FLAG_WATCHERS: usize = 1;
/// How long after the prober's read every watcher must have caught up: a
/// lost notification costs at most the retry delay (1 s), a reconnection
/// a call timeout, with room.
pub const CATCH_UP_BOUND: Duration = Duration::from_secs(5);

/// A list the workload's nodes add to.
type Log<T> = Arc<Mutex<Vec<T>>>;

/// What the workload's nodes record.
#[derive(Clone, Default)]
struct StateShared {
    /// Every update: its process, and what was acknowledged.
    updates: Log<(String, Option<(u64, u64)>)>,
    /// Every acknowledged write of the flag, by version.
    flag_writes: Log<(u64, FlagWrite)>,
    /// Per watcher: what it was handed, its checkpoint (position), its
    /// last `(version, value)`.
    seen: Log<Vec<Watched>>,
    checkpoints: Log<u64>,
    last: Log<Option<(u64, u64)>>,
}

/// One write of the flag: a put with a TTL, a compare-and-set from the
/// version `last` the updater knows (no TTL: it clears one), or a delete.
/// What was acknowledged, if anything; `last` follows what it learnt.
async fn write_flag(
    client: &coord_api::Client,
    value: u64,
    last: &mut Option<u64>,
) -> Option<(u64, FlagWrite)> {
    let flag = client.state::<u64>(FLAG);
    let (pick, ttl) = {
        let mut rng = thread_rng();
        (rng.gen_range(0..10), rng.gen_range(50..400))
    };
    let wrote = match pick {
        0..=3 => {
            let timed = flag.ttl(Some(Duration::from_millis(ttl)));
            let v = timed.put(&value).await.ok()?;
            (v, FlagWrite::Put { value, ttl: true })
        }
        4..=6 => match flag.compare_and_set(*last, &value).await.ok()? {
            CasOutcome::Set(v) => (v, FlagWrite::Put { value, ttl: false }),
            CasOutcome::Conflict(now) => {
                *last = now.map(|n| n.version);
                return None;
            }
            _ => return None,
        },
        _ => (flag.delete().await.ok()??, FlagWrite::Deleted),
    };
    *last = matches!(wrote.1, FlagWrite::Put { .. }).then_some(wrote.0);
    Some(wrote)
}

/// An updater: increments the counter until the heal, and writes the flag
/// one time in four.
async fn updater(i: usize, clock: NodeClock, shared: Shared, st: StateShared) {
    let name = format!("u{i}");
    let client = connect(&name, &clock, opts(), &shared).await;
    let counter = client.state::<u64>(KEY).max_attempts(1_000);
    let mut stopped = shared.stopped.clone();
    let mut rng = thread_rng();
    let (mut flag_at, mut seq) = (None, 0u64);
    while !shared.stopping() {
        if rng.gen_bool(0.25) {
            seq += 1;
            let value = (i as u64) << 32 | seq;
            let wrote = tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => break,
                wrote = write_flag(&client, value, &mut flag_at) => wrote,
            };
            st.flag_writes.lock().unwrap().extend(wrote);
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..80))).await;
            continue;
        }
        // Recorded as of unknown outcome until it answers: a process
        // killed meanwhile may or may not have written.
        let idx = {
            let mut u = st.updates.lock().unwrap();
            u.push((name.clone(), None));
            u.len() - 1
        };
        let res = tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => break,
            res = counter.update(|n| n.copied().unwrap_or(0) + 1) => res,
        };
        if let Ok(v) = res {
            st.updates.lock().unwrap()[idx].1 = Some((v.version, v.value));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..80))).await;
    }
}

/// A watcher (of the counter, or of the flag after the first [`WATCHERS`]):
/// hands every event to the history, checkpointing its position, and
/// resumes from the checkpoint after an error or a restart.
async fn watcher(w: usize, clock: NodeClock, shared: Shared, st: StateShared) {
    let client = connect(&format!("w{w}"), &clock, opts(), &shared).await;
    let from = st.checkpoints.lock().unwrap()[w];
    let key = if w < WATCHERS { KEY } else { FLAG };
    let mut watch = client.state::<u64>(key).watch(from);
    loop {
        match watch.next().await {
            Ok(event) => {
                let (seen, last) = match event {
                    StateEvent::Put { version, value, .. } => {
                        (Watched::Put { version, value }, Some((version, value)))
                    }
                    StateEvent::Deleted { version, .. } => (Watched::Deleted { version }, None),
                    StateEvent::Expired { version, .. } => (Watched::Expired { version }, None),
                    StateEvent::Gap { head, current, .. } => {
                        let now = current.first().map(|(_, v)| (v.version, v.value));
                        (Watched::Gap { head, current: now }, now)
                    }
                    other => (Watched::Other(format!("{other:?}")), None),
                };
                // One step, no await: a kill lands before or after it.
                st.seen.lock().unwrap()[w].push(seen);
                st.checkpoints.lock().unwrap()[w] = watch.position();
                st.last.lock().unwrap()[w] = last;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Runs the state workload under `scenario`'s faults and judges it.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let updaters = scenario.clients;
    let watchers = WATCHERS + FLAG_WATCHERS;
    let processes = updaters + watchers;

    let mut clock = || {
        NodeClock::new(
            rng.gen_range(-10_000_000_000i64..10_000_000_000),
            rng.gen_range(-0.004..0.004),
        )
    };
    let server_clock = clock();
    let clocks: Vec<NodeClock> = (0..=processes).map(|_| clock()).collect();

    #[allow(unused_mut)]
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
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
    let st = StateShared {
        seen: Arc::new(Mutex::new(vec![Vec::new(); watchers])),
        checkpoints: Arc::new(Mutex::new(vec![0; watchers])),
        last: Arc::new(Mutex::new(vec![None; watchers])),
        ..StateShared::default()
    };
    let nodes: Vec<NodeHandle> = (0..processes)
        .map(|i| {
            let (shared, st, clock) = (shared.clone(), st.clone(), clocks[i].clone());
            handle
                .create_node()
                .name(if i < updaters {
                    format!("u{i}")
                } else {
                    format!("w{}", i - updaters)
                })
                .ip(client_ip(i))
                .init(move || {
                    let (shared, st, clock) = (shared.clone(), st.clone(), clock.clone());
                    async move {
                        match i.checked_sub(updaters) {
                            None => updater(i, clock, shared, st).await,
                            Some(w) => watcher(w, clock, shared, st).await,
                        }
                        std::future::pending::<()>().await
                    }
                })
                .build()
        })
        .collect();

    // The fault window: the plan over every process; "the holder" killed
    // or paused is a process drawn at random.
    let plan = faults::plan(
        &Scenario {
            clients: processes,
            ..scenario.clone()
        },
        &mut rng,
    );
    let mut faults = Faults::new(server.id(), nodes.iter().map(|n| n.id()).collect());
    let mut restarts = 0;
    for step in plan {
        tokio::time::sleep_until(t0 + step.at).await;
        let victim = Some(rng.gen_range(0..processes));
        if let Some((done, _)) = faults.apply(step.action, victim) {
            if matches!(step.action, Action::Restart(Target::Server)) {
                restarts += 1;
            }
            report.faults.push(format!("{:?}: {done}", step.at));
        }
    }
    tokio::time::sleep_until(t0 + HEAL_AT).await;
    faults.heal();
    for i in 0..processes {
        faults.apply(Action::Restart(Target::Client(i)), None);
    }
    stop_tx.send_replace(true);

    // The prober reads the counter and the flag once the updaters' last
    // calls are over (and every TTL they gave has passed).
    let prober = handle
        .create_node()
        .name("prober")
        .ip(client_ip(processes))
        .build();
    let (p_clock, p_shared) = (clocks[processes].clone(), shared.clone());
    let (final_state, final_flag) = prober
        .spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let client = connect("prober", &p_clock, opts(), &p_shared).await;
            let read = |key| {
                let state = client.state::<u64>(key);
                async move {
                    loop {
                        match state.get().await {
                            Ok(v) => break v.map(|v| (v.version, v.value)),
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
            };
            (read(KEY).await, read(FLAG).await)
        })
        .await
        .unwrap();
    tokio::time::sleep(CATCH_UP_BOUND).await;

    let mut watches: Vec<_> = (st.seen.lock().unwrap().iter().enumerate())
        .map(|(w, s)| (format!("w{w}"), s.clone()))
        .collect();
    let mut caught_up: Vec<_> = (st.last.lock().unwrap().iter().enumerate())
        .map(|(w, l)| (format!("w{w}"), *l))
        .collect();
    let flag = FlagHistory {
        writes: st.flag_writes.lock().unwrap().clone(),
        watches: watches.split_off(WATCHERS),
        final_state: final_flag,
        caught_up: caught_up.split_off(WATCHERS),
    };
    let history = StateHistory {
        updates: st.updates.lock().unwrap().clone(),
        watches,
        final_state,
        caught_up,
        restarts,
    };
    report.violations.extend(check_state(&history));
    report.violations.extend(check_flag(&flag));
    let counts = state_counts(&history);
    let flag_events: usize = flag.watches.iter().map(|(_, s)| s.len()).sum();
    report.faults.push(format!(
        "counts: {counts:?}; flag: {} writes acknowledged, {flag_events} events",
        flag.writes.len()
    ));
    // The sweep's generic counts: updates acknowledged, events handed out.
    report.grants = counts.acked;
    report.writes = counts.seen;
    report.simulated = Instant::now() - t0;
    report.digest = {
        use std::hash::{Hash, Hasher};
        let mut s = std::hash::DefaultHasher::new();
        report.faults.hash(&mut s);
        format!("{history:?}{flag:?}").hash(&mut s);
        report.simulated.hash(&mut s);
        s.finish()
    };
    report
}
