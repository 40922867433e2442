//! The leadership and run-once workloads: the same nodes, fault plans and
//! heal as the lock workload, other clients, other checkers.
//!
//! - [`Workload::Leadership`]: every worker campaigns in election `e`; a
//!   leader writes to a fenced resource with its term while `is_leader()`,
//!   resigns after a while, campaigns again. After the heal a prober must be
//!   elected within [`LIVENESS_BOUND`].
//! - [`Workload::LeaderCrash`]: the same, but leaders keep leading; the
//!   leader's node is killed a few times (restarted later); each failover,
//!   from the kill to the next `Elected` a client receives, must take at
//!   most `TTL + FAILOVER_BOUND`.
//! - [`Workload::RunOnce`]: every worker runs occurrences `occ-0`,
//!   `occ-1`, ... of job `j` in turn with `Job::run_once`; a body writes with
//!   its token to a resource fenced per occurrence (each write retried until
//!   acknowledged, the resource applying each write once) and stops when
//!   `ctx.lost` fires. After the heal a prober runs every occurrence: each
//!   must be finished or run within [`LIVENESS_BOUND`] of waiting.

use std::collections::HashMap;

use coord_api::{Error, RunOnce};

use super::*;
use crate::history::{
    KeyedResource, LeadLog, Leaderships, OnceOutcome, OnceRuns, check_failovers, failovers,
};

/// Occurrences of the run-once job.
const OCCURRENCES: usize = 12;
const LEAD_WRITE_TAG: u64 = 0x006c_6561_645f_7772;

#[derive(Clone)]
struct Lead {
    name: &'static str,
    stopped: tokio::sync::watch::Receiver<bool>,
    /// The worker leading or running a body now (`Target::Holder`).
    holder: Arc<Mutex<Option<usize>>>,
    /// Each worker's open term or run, ended when its node is killed.
    open: Arc<Mutex<HashMap<usize, usize>>>,
    terms: Leaderships,
    grants: GrantLog,
    runs: OnceRuns,
    /// Leaders' writes, fenced by term.
    resource: FencedResource,
    /// Run-once bodies' writes, fenced by token per occurrence.
    keyed: KeyedResource,
}

impl Lead {
    fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    fn set_holder(&self, i: usize, idx: usize) {
        *self.holder.lock().unwrap() = Some(i);
        self.open.lock().unwrap().insert(i, idx);
    }

    fn clear_holder(&self, i: usize) {
        self.open.lock().unwrap().remove(&i);
        let mut h = self.holder.lock().unwrap();
        if *h == Some(i) {
            *h = None;
        }
    }

    /// Worker `i`'s process was killed: it believes and runs nothing more.
    fn killed(&self, i: usize, workload: Workload) {
        if let Some(idx) = self.open.lock().unwrap().remove(&i) {
            match workload {
                Workload::RunOnce => self.runs.end(idx, Instant::now(), false),
                _ => self.terms.end_at(idx, Instant::now()),
            }
        }
        let mut h = self.holder.lock().unwrap();
        if *h == Some(i) {
            *h = None;
        }
    }
}

/// Runs a leadership or run-once scenario and checks its history.
pub(super) async fn run(scenario: Scenario) -> Report {
    let handle = Handle::current();
    let t0 = Instant::now();
    let mut rng = thread_rng();
    let mut report = Report::default();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let resource_addr: SocketAddr = RESOURCE.parse().unwrap();
    let workload = scenario.workload;
    if workload == Workload::LeaderCrash {
        // A LAN: the failover bound is about the backend, not the network.
        NetSim::current().update_config(|c| c.send_latency = latency(Duration::from_millis(10)));
    }

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
    #[allow(unused_mut)]
    let mut cfg = ServerConfig::new(server_addr, server_clock.clock());
    cfg.log = Some(log.clone());
    cfg.lead_log = Some(lead_log.clone());
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
    let shared = Lead {
        name: scenario.name,
        stopped,
        holder: Arc::default(),
        open: Arc::default(),
        terms: Leaderships::new(),
        grants: GrantLog::new(),
        runs: OnceRuns::new(),
        resource: FencedResource::new(),
        keyed: KeyedResource::new(),
    };
    let (res, keyed) = (shared.resource.clone(), shared.keyed.clone());
    handle
        .create_node()
        .name("resource")
        .ip(resource_addr.ip())
        .init(move || serve_resource(resource_addr, res.clone(), keyed.clone()))
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
                            Workload::RunOnce => once_worker(i, clock, shared).await,
                            _ => leader(i, clock, shared, workload == Workload::Leadership).await,
                        }
                    }
                })
                .build()
        })
        .collect();

    let plan = match workload {
        Workload::LeaderCrash => crash_plan(&scenario, &mut rng),
        _ => draw_plan(&scenario, &mut rng),
    };
    let mut faults = Faults::new(server.id(), workers.iter().map(|w| w.id()).collect());
    let mut crashes = Vec::new();
    for step in plan {
        tokio::time::sleep_until(t0 + step.at).await;
        let holder = *shared.holder.lock().unwrap();
        let Some((done, killed)) = faults.apply(step.action, holder) else {
            continue;
        };
        if let Some(i) = killed {
            shared.killed(i, workload);
            if holder == Some(i) {
                crashes.push(Instant::now());
            }
        }
        report.faults.push(format!("{:?}: {done}", step.at));
    }

    tokio::time::sleep_until(t0 + HEAL_AT).await;
    faults.heal();
    stop_tx.send_replace(true);

    if workload != Workload::LeaderCrash {
        let prober_clock = client_clocks[scenario.clients].clone();
        let prober_shared = shared.clone();
        let i = scenario.clients;
        let node = handle.create_node().name("prober").ip(client_ip(i)).build();
        let waits = node
            .spawn(async move {
                match workload {
                    Workload::RunOnce => once_prober(i, prober_clock, prober_shared).await,
                    _ => vec![leader_prober(prober_clock, prober_shared).await],
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

    tokio::time::sleep(TTL * 2).await;
    let now = Instant::now();
    let exclusion = scenario.checks_exclusion() && !scenario.holder_pauses;
    let events = lead_log.events();
    report.violations.extend(log.check());
    report.violations.extend(shared.grants.check());
    let (base, full) = match workload {
        Workload::RunOnce => {
            let writes = shared.keyed.accepted();
            report.grants = shared.runs.all().len();
            report.writes = writes.values().map(Vec::len).sum();
            report.stale_writes_refused = shared.keyed.rejected();
            // Every occurrence ends up finished.
            for k in 0..OCCURRENCES {
                let occ = format!("occ-{k}");
                let done = events.iter().any(|e| {
                    matches!(e, crate::history::LeadEvent::OnceEnded { occurrence, finished: true, .. } if *occurrence == occ)
                });
                if !done {
                    report.violations.push(crate::history::Violation {
                        checker: "liveness",
                        detail: format!("{occ} never finished"),
                    });
                }
            }
            (
                shared.runs.check(&events, &writes, now, false),
                shared.runs.check(&events, &writes, now, true),
            )
        }
        _ => {
            report.violations.extend(shared.resource.check());
            report.grants = shared.terms.all().len();
            report.writes = shared.resource.accepted().len();
            report.stale_writes_refused = shared.resource.rejected();
            (
                shared.terms.check(&events, now, false),
                shared.terms.check(&events, now, true),
            )
        }
    };
    report.belief_overlaps = full.len() - base.len();
    report
        .violations
        .extend(if exclusion { full } else { base });
    if workload == Workload::LeaderCrash {
        let elected: Vec<Instant> = shared.terms.all().iter().map(|t| t.elected).collect();
        let f = failovers(&crashes, &elected);
        report
            .violations
            .extend(check_failovers(&f, TTL + FAILOVER_BOUND));
        report.failovers = f.into_iter().flatten().collect();
        if crashes.is_empty() {
            report.violations.push(crate::history::Violation {
                checker: "failover",
                detail: "no leader was ever killed".into(),
            });
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
            (w.client, w.token, (w.at - t0).as_nanos()).hash(&mut h);
        }
        report.simulated.hash(&mut h);
        h.finish()
    };
    report
}

/// The leader-crash plan: four times, the leader's node is killed (at
/// least 4 s apart, so every failover completes first), and every dead
/// worker restarted 1.5–2.5 s later as a new process.
fn crash_plan(s: &Scenario, rng: &mut madsim::rand::GlobalRng) -> Vec<Step> {
    let mut steps = Vec::new();
    for k in 0..4u64 {
        let at = Duration::from_millis(2_000 + k * 4_500 + rng.gen_range(0..2_000));
        steps.push(Step {
            at,
            action: Action::Kill(Target::Holder),
        });
        let back = at + Duration::from_millis(rng.gen_range(1_500..2_500));
        for c in 0..s.clients {
            steps.push(Step {
                at: back,
                action: Action::Restart(Target::Client(c)),
            });
        }
    }
    steps.sort_by_key(|s| s.at);
    steps
}

async fn connect(name: &str, clock: &NodeClock, opts: LeaseOptions) -> Client {
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
        .instance_id(name)
        .expect("valid id")
        .clock(clock.clock())
        .lease_options(opts)
        .build()
}

/// Sends one write (`key` empty: the leaders' resource) and waits up to
/// `wait` for the answer; resent with the same id (applied once) until
/// answered, or once when `retry` is false.
async fn write(ep: &Endpoint, key: &str, client: &str, token: u64, retry: bool) -> Option<bool> {
    let id: u64 = madsim::rand::random();
    loop {
        let req: (u64, (String, String, u64)) = (id, (key.to_owned(), client.to_owned(), token));
        let _ = ep
            .send_to_raw(RESOURCE.parse().unwrap(), LEAD_WRITE_TAG, Box::new(req))
            .await;
        match tokio::time::timeout(Duration::from_millis(400), ep.recv_from_raw(id)).await {
            Ok(Ok((msg, _))) => return msg.downcast::<bool>().ok().map(|b| *b),
            _ if retry => {}
            _ => return None,
        }
    }
}

/// A candidate: campaigns; while leading writes with its term, and (with
/// `resign`) resigns after a while; campaigns again. Stops at the heal.
async fn leader(i: usize, clock: NodeClock, shared: Lead, resign: bool) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, opts()).await;
    let election = client.election("e").metadata(name.clone());
    let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let mut rng = thread_rng();
    let mut stopped = shared.stopped.clone();
    while !shared.stopping() {
        let sent = Instant::now();
        let res = tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => return,
            res = election.campaign() => res,
        };
        let leadership = match res {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await;
                continue;
            }
        };
        let elected = Instant::now();
        let term = leadership.term().get();
        shared.grants.push(ObservedGrant {
            client: name.clone(),
            token: term,
            sent,
            received: elected,
        });
        let idx = shared.terms.begin(&name, term, sent, elected);
        shared.set_holder(i, idx);
        let hold_until = if resign {
            elected + Duration::from_millis(rng.gen_range(300..3_000))
        } else {
            elected + Duration::from_secs(3600)
        };
        loop {
            if !leadership.is_leader() {
                break;
            }
            if Instant::now() >= hold_until || shared.stopping() {
                break;
            }
            let pause = Duration::from_millis(rng.gen_range(20..150));
            tokio::select! {
                biased;
                _ = leadership.lost() => break,
                _ = async {
                    let _ = write(&ep, "", &name, term, false).await;
                    tokio::time::sleep(pause).await;
                } => {}
            }
        }
        // It stops believing here: lost, or about to resign.
        shared.terms.end_at(idx, Instant::now());
        shared.clear_holder(i);
        let _ = leadership.resign().await;
    }
}

/// After the heal: campaigns (woken only by notifications and the leader's
/// expiry) until elected; returns when it started and when it was elected.
async fn leader_prober(clock: NodeClock, shared: Lead) -> (Instant, Option<Instant>) {
    let name = "prober";
    let client = connect(
        "prober",
        &clock,
        opts()
            .retry_delay(Duration::from_secs(10))
            .wait_timeout(None),
    )
    .await;
    let election = client.election("e");
    let start = Instant::now();
    let give_up = start + Duration::from_secs(30);
    while Instant::now() < give_up {
        let sent = Instant::now();
        if let Ok(l) = election.campaign().await {
            let at = Instant::now();
            let term = l.term().get();
            shared.grants.push(ObservedGrant {
                client: name.into(),
                token: term,
                sent,
                received: at,
            });
            let idx = shared.terms.begin(name, term, sent, at);
            shared.terms.end_at(idx, at);
            let _ = l.resign().await;
            return (start, Some(at));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (start, None)
}

/// One run-once call of occurrence `occ`; returns what it did (`None`: an
/// error) after recording its run's outcome. A cancelled call ends its run
/// as interrupted.
async fn run_occurrence(
    name: &str,
    job: &coord_api::Job,
    occ: &str,
    shared: &Lead,
    i: usize,
) -> Option<RunOnce<()>> {
    let cell: Arc<Mutex<Option<usize>>> = Arc::default();
    let (body_cell, body_shared, body_name) = (cell.clone(), shared.clone(), name.to_owned());
    let body = move |ctx: coord_api::JobContext| async move {
        let shared = body_shared;
        let idx = shared.runs.start(
            &body_name,
            occ,
            ctx.token.get(),
            ctx.attempt,
            Instant::now(),
        );
        *body_cell.lock().unwrap() = Some(idx);
        shared.set_holder(i, idx);
        let ep = Endpoint::bind("0.0.0.0:0").await.expect("bind");
        let mut rng = thread_rng();
        let mut interrupted = false;
        for _ in 0..rng.gen_range(1..6) {
            tokio::select! {
                biased;
                _ = ctx.lost.wait() => { interrupted = true; break }
                _ = write(&ep, occ, &body_name, ctx.token.get(), true) => {}
            }
            tokio::select! {
                biased;
                _ = ctx.lost.wait() => { interrupted = true; break }
                _ = tokio::time::sleep(Duration::from_millis(rng.gen_range(50..500))) => {}
            }
        }
        shared.runs.end(idx, Instant::now(), interrupted);
        shared.clear_holder(i);
    };
    let mut stopped = shared.stopped.clone();
    let res = tokio::select! {
        biased;
        _ = stopped.wait_for(|s| *s), if name != "prober" => None,
        res = job.run_once(occ, body) => Some(res),
    };
    let idx = *cell.lock().unwrap();
    match res {
        None => {
            // Cancelled at the heal: the body was dropped.
            if let Some(idx) = idx {
                shared.runs.end(idx, Instant::now(), true);
                shared.clear_holder(i);
            }
            None
        }
        Some(Ok(RunOnce::Ran(()))) => {
            shared
                .runs
                .outcome(idx.expect("a body ran"), OnceOutcome::Ran);
            Some(RunOnce::Ran(()))
        }
        Some(Ok(RunOnce::AlreadyFinished)) => Some(RunOnce::AlreadyFinished),
        Some(Err(e)) => {
            if let Some(idx) = idx {
                shared.runs.outcome(idx, OnceOutcome::NotFinished);
            }
            if !matches!(
                e,
                Error::Unavailable { .. } | Error::Timeout { .. } | Error::LeaseLost { .. }
            ) {
                eprintln!("{}: {name}: run_once({occ}): {e}", shared.name);
            }
            None
        }
    }
}

/// A runner: runs occurrence after occurrence (retrying one until it ran
/// here or finished elsewhere). Stops at the heal.
async fn once_worker(i: usize, clock: NodeClock, shared: Lead) {
    let name = format!("c{i}");
    let client = connect(&name, &clock, opts()).await;
    let job = client.job("j");
    let mut rng = thread_rng();
    let mut k = 0;
    while k < OCCURRENCES && !shared.stopping() {
        let occ = format!("occ-{k}");
        match run_occurrence(&name, &job, &occ, &shared, i).await {
            Some(_) => k += 1,
            None => tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await,
        }
    }
}

/// After the heal: every occurrence, in turn, must be finished or run here
/// after waiting at most the liveness bound; returns, per occurrence, when
/// the wait began and when it ended (`None`: it failed).
async fn once_prober(i: usize, clock: NodeClock, shared: Lead) -> Vec<(Instant, Option<Instant>)> {
    let client = connect(
        "prober",
        &clock,
        opts()
            .retry_delay(Duration::from_secs(10))
            .wait_timeout(Some(Duration::from_secs(10))),
    )
    .await;
    let job = client.job("j");
    let mut out = Vec::new();
    for k in 0..OCCURRENCES {
        let occ = format!("occ-{k}");
        let start = Instant::now();
        let runs_before = shared.runs.all().len();
        let res = run_occurrence("prober", &job, &occ, &shared, i).await;
        // The wait ends when the body starts (a run here) or at the answer.
        let waited_until = match res {
            Some(RunOnce::Ran(())) => shared.runs.all()[runs_before..]
                .iter()
                .find(|r| r.client == "prober")
                .map(|r| r.start),
            Some(RunOnce::AlreadyFinished) => Some(Instant::now()),
            None => None,
        };
        out.push((start, waited_until));
    }
    out
}

/// The resources as a node: leaders' writes (empty key) fenced by term, and
/// run-once writes fenced per occurrence; each write id is applied once
/// (a resent copy gets the first answer).
async fn serve_resource(addr: SocketAddr, resource: FencedResource, keyed: KeyedResource) {
    let ep = Endpoint::bind(addr).await.expect("bind resource");
    let mut answered: HashMap<u64, bool> = HashMap::new();
    loop {
        let Ok((msg, from)) = ep.recv_from_raw(LEAD_WRITE_TAG).await else {
            return;
        };
        let Ok(req) = msg.downcast::<(u64, (String, String, u64))>() else {
            continue;
        };
        let (id, (key, client, token)) = *req;
        let ok = *answered.entry(id).or_insert_with(|| {
            if key.is_empty() {
                resource.write(&client, token, Instant::now())
            } else {
                keyed.write(&key, &client, token, Instant::now())
            }
        });
        let _ = ep.send_to_raw(from, id, Box::new(ok)).await;
    }
}
