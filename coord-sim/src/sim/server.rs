//! The sim server: a node hosting a `coord_memory::MemoryStore` whose clock is
//! the node's own, running the calls sim clients send over the simulated
//! network (any call of any family: it runs the call's closure on the
//! namespace's backend). Its state lives in memory only: a restarted server
//! starts empty. What the store does is journaled into the checkers' logs;
//! renewals are logged as the server answered them (a broken server may
//! answer otherwise than its store decided), and so are graph calls (see
//! `graph_log`) and queue calls (see `queue_log`).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{
    Clock, FencingToken, HolderId, Instant, Key, LeaseKind, Quorum,
    spi::{Call, DynBackend, LeaseId, Watch},
};
use coord_memory::{BarrierEvent as Told, Event, Journal, Leased, MemoryStore};
use madsim::net::Endpoint;

use super::transport::{Answer, Envelope, REQUEST_TAG, Request, Wire};
use crate::history::{
    BarrierEvent, BarrierLog, BreakerDecision, GraphLog, LeadEvent, LeadLog, QueueEvent, QueueLog,
    QueueOp, ServerEvent, ServerLog,
};

/// How a sim server is set up. Cloned into the node's init task, so every
/// (re)start of the node builds a fresh, empty store from it.
#[derive(Clone)]
pub struct ServerConfig {
    /// The address the server listens on (the node's IP and a port).
    pub addr: SocketAddr,
    /// The server node's clock: decides expiry and the wall time in tokens.
    pub clock: Arc<dyn Clock>,
    /// Where to log grants, exclusive renewals (as answered) and releases in
    /// server order. Terms and runs are logged too, as grants, renewals and
    /// releases of the keys `election/<name>` and `once/<job>/<occurrence>`.
    pub log: Option<ServerLog>,
    /// Where to log elected terms and run-once starts and ends, with the
    /// (global) instant the server decided them.
    pub lead_log: Option<LeadLog>,
    /// Where to log what became of barriers and latches (arrivals counted
    /// and expired, trips, ends of generations, count-downs), with the
    /// (global) instant the server decided it, and the server's restarts.
    pub barrier_log: Option<BarrierLog>,
    /// Where to log what the server answered to graph calls (attempts
    /// handed out, completions, submissions, cancellations), in its order.
    pub graph_log: Option<GraphLog>,
    /// Where to log what the server answered to queue calls (with its
    /// clock's reading), in its order, and its restarts.
    pub queue_log: Option<QueueLog>,
    /// Where to log what the server answered to durable topic calls (with
    /// its clock's reading), in its order.
    pub topic_log: Option<crate::history::TopicLog>,
    /// Where to log what became of circuit breakers (trials granted and
    /// ended, transitions), with the (global) instant the server decided it.
    pub breaker_log: Option<crate::history::BreakerLog>,
    /// A deliberately broken server (feature `broken`).
    #[cfg(feature = "broken")]
    pub bug: Option<super::bugs::Bug>,
}

impl ServerConfig {
    /// A server on `addr` with `clock`, no log.
    pub fn new(addr: SocketAddr, clock: Arc<dyn Clock>) -> ServerConfig {
        ServerConfig {
            addr,
            clock,
            log: None,
            lead_log: None,
            barrier_log: None,
            graph_log: None,
            queue_log: None,
            topic_log: None,
            breaker_log: None,
            #[cfg(feature = "broken")]
            bug: None,
        }
    }

    fn store(&self) -> MemoryStore {
        #[allow(unused_mut)]
        let mut clock = self.clock.clone();
        #[cfg(feature = "broken")]
        if let Some(bug) = self.bug {
            clock = bug.clock(clock);
        }
        let journal = Logs {
            log: self.log.clone(),
            lead_log: self.lead_log.clone(),
            barrier_log: self.barrier_log.clone(),
            breaker_log: self.breaker_log.clone(),
        };
        MemoryStore::with_journal(clock, Arc::new(journal))
    }

    /// The backend the server runs a call of namespace `ns` on (its graph
    /// and queue calls logged as answered, around a broken server's
    /// decorator).
    fn backend(&self, store: &MemoryStore, ns: coord_api::Namespace) -> DynBackend {
        let mut backend: DynBackend = Arc::new(store.backend(ns));
        #[cfg(feature = "broken")]
        if let Some(bug) = self.bug {
            backend = bug.around(backend);
        }
        if let Some(log) = &self.queue_log {
            backend = super::queue_log::logged(backend, log.clone(), self.clock.clone());
        }
        if let Some(log) = &self.topic_log {
            backend = super::topic_log::logged(backend, log.clone(), self.clock.clone());
        }
        match &self.graph_log {
            Some(log) => super::graph_log::logged(backend, log.clone()),
            None => backend,
        }
    }
}

/// A breaker's journal event as the checkers read it.
fn breaker_decision(told: coord_memory::BreakerEvent<'_>, at: Instant) -> BreakerDecision {
    use coord_memory::BreakerEvent as B;
    match told {
        B::TrialGranted {
            generation, holder, ..
        } => BreakerDecision::TrialGranted {
            generation,
            holder: holder.to_string(),
            at,
        },
        B::TrialEnded {
            generation, holder, ..
        } => BreakerDecision::TrialEnded {
            generation,
            holder: holder.to_string(),
            at,
        },
        B::TrialGivenBack {
            generation, holder, ..
        } => BreakerDecision::TrialGivenBack {
            generation,
            holder: holder.to_string(),
            at,
        },
        B::Transitioned { transition, .. } => BreakerDecision::Transition {
            generation: transition.generation,
            from: transition.from,
            to: transition.to,
            at,
        },
    }
}

/// The checkers' logs, told by the store's journal as it decides.
struct Logs {
    log: Option<ServerLog>,
    lead_log: Option<LeadLog>,
    barrier_log: Option<BarrierLog>,
    breaker_log: Option<crate::history::BreakerLog>,
}

impl Journal for Logs {
    fn record(&self, event: Event<'_>) {
        let at = Instant::now();
        if let Event::Barrier(told) = event {
            if let Some(log) = &self.barrier_log {
                log.push(barrier_event(told, at));
            }
            return;
        }
        if let Event::Breaker(told) = event {
            if let Some(log) = &self.breaker_log {
                log.push(breaker_decision(told, at));
            }
            return;
        }
        let key = |lease: &Leased<'_>| match *lease {
            Leased::Lock {
                kind: LeaseKind::Exclusive,
                key,
            } => Some(key.to_string()),
            Leased::Lock { .. } => None,
            Leased::Term { election } => Some(format!("election/{election}")),
            Leased::Run { job, occurrence } => Some(format!("once/{job}/{occurrence}")),
        };
        if let Some(log) = &self.log {
            match &event {
                Event::Granted {
                    lease,
                    holder,
                    token,
                } => {
                    if let Some(key) = key(lease) {
                        log.push(ServerEvent::Grant {
                            key,
                            holder: (*holder).clone(),
                            token: token.get(),
                            at,
                        });
                    }
                }
                // Logged as answered: see `renewal`.
                Event::Renewed { .. } => {}
                Event::Released {
                    lease,
                    holder,
                    released,
                    ..
                } => {
                    if let Some(key) = key(lease) {
                        log.push(ServerEvent::Release {
                            key,
                            holder: (*holder).clone(),
                            released: *released,
                            at,
                        });
                    }
                }
                Event::Barrier(_) | Event::Breaker(_) => {}
            }
        }
        if let Some(lead) = &self.lead_log {
            match event {
                Event::Granted {
                    lease: Leased::Term { election },
                    holder,
                    token,
                } => lead.push(LeadEvent::Elected {
                    election: election.to_string(),
                    holder: holder.clone(),
                    term: token.get(),
                    at,
                }),
                Event::Granted {
                    lease: Leased::Run { occurrence, .. },
                    holder,
                    token,
                } => lead.push(LeadEvent::OnceStarted {
                    occurrence: occurrence.to_string(),
                    holder: holder.clone(),
                    token: token.get(),
                    at,
                }),
                Event::Released {
                    lease: Leased::Run { occurrence, .. },
                    holder,
                    released: true,
                    finished,
                } => lead.push(LeadEvent::OnceEnded {
                    occurrence: occurrence.to_string(),
                    holder: holder.clone(),
                    finished,
                    at,
                }),
                _ => {}
            }
        }
    }
}

/// A barrier event as the checkers' log keeps it.
fn barrier_event(told: Told<'_>, at: Instant) -> BarrierEvent {
    match told {
        Told::Arrived {
            kind,
            barrier,
            participant,
            generation,
        } => BarrierEvent::Arrived {
            kind,
            barrier: barrier.to_string(),
            participant: participant.to_string(),
            generation,
            at,
        },
        Told::Expired {
            kind,
            barrier,
            participant,
            generation,
        } => BarrierEvent::Expired {
            kind,
            barrier: barrier.to_string(),
            participant: participant.to_string(),
            generation,
            at,
        },
        Told::Left {
            kind,
            barrier,
            participant,
            generation,
        } => BarrierEvent::Left {
            kind,
            barrier: barrier.to_string(),
            participant: participant.to_string(),
            generation,
            at,
        },
        Told::Entered {
            barrier,
            generation,
            trip,
        } => BarrierEvent::Entered {
            barrier: barrier.to_string(),
            generation,
            by: trip.by.to_string(),
            arrivals: trip.arrivals.iter().map(|k| k.to_string()).collect(),
            at,
        },
        Told::Ended {
            kind,
            barrier,
            generation,
            ended,
        } => BarrierEvent::Ended {
            kind,
            barrier: barrier.to_string(),
            generation,
            next: ended.next,
            how: ended.ended.clone(),
            at,
        },
        Told::LatchSet {
            latch,
            generation,
            count,
        } => BarrierEvent::LatchSet {
            latch: latch.to_string(),
            generation,
            count,
            at,
        },
        Told::CountedDown {
            latch,
            participant,
            generation,
            remaining,
        } => BarrierEvent::CountedDown {
            latch: latch.to_string(),
            participant: participant.to_string(),
            generation,
            remaining,
            at,
        },
    }
}

/// The lease a renewal call is about, as the log names it, and its holder:
/// an exclusive lock's extend, an election's renew, a run's extend.
fn renewal(call: &Call) -> Option<(String, HolderId)> {
    type Renew = (Key, HolderId, FencingToken, Duration, Option<Quorum>);
    type Extend = (Key, Key, HolderId, Duration);
    let op = call.op();
    match (op.family, op.name) {
        ("locks", "extend") => call
            .args::<(LeaseId, Duration)>()
            .filter(|(id, _)| id.kind == LeaseKind::Exclusive)
            .map(|(id, _)| (id.key.to_string(), id.holder.clone())),
        ("elections", "renew") => call
            .args::<Renew>()
            .map(|(e, h, ..)| (format!("election/{e}"), h.clone())),
        ("jobs", "extend") => call
            .args::<Extend>()
            .map(|(j, o, h, _)| (format!("once/{j}/{o}"), h.clone())),
        _ => None,
    }
}

/// Watches idle this long are dropped (a waiting client polls again at once).
const SWEEP_IDLE: Duration = Duration::from_secs(30);

struct KeptWatch {
    version: u64,
    last_poll: Instant,
    inner: Arc<tokio::sync::Mutex<Box<dyn Watch>>>,
}

struct Server {
    store: MemoryStore,
    cfg: ServerConfig,
    watches: Mutex<HashMap<u64, KeptWatch>>,
    next_watch: Mutex<u64>,
}

/// Runs the server until the node is killed: binds (retrying while a killed
/// incarnation's port is still bound), then answers every request in its own
/// task, taking requests in on [`RECEIVERS`] receives at once.
pub async fn serve(cfg: ServerConfig) {
    let ep = loop {
        match Endpoint::bind(cfg.addr).await {
            Ok(ep) => break ep,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    if let Some(log) = &cfg.log
        && !log.events().is_empty()
    {
        log.push(ServerEvent::Restart { at: Instant::now() });
    }
    if let Some(log) = &cfg.barrier_log
        && !log.is_empty()
    {
        log.push(BarrierEvent::Restart { at: Instant::now() });
    }
    if let Some(log) = &cfg.queue_log
        && !log.is_empty()
    {
        log.push(QueueEvent {
            queue: String::new(),
            at: Instant::now(),
            now: cfg.clock.now(),
            op: QueueOp::Restart,
        });
    }
    let server = Arc::new(Server {
        store: cfg.store(),
        cfg,
        watches: Mutex::new(HashMap::new()),
        next_watch: Mutex::new(1),
    });
    tokio::spawn(sweep(Arc::downgrade(&server)));
    for _ in 1..RECEIVERS {
        tokio::spawn(receive(ep.clone(), server.clone()));
    }
    receive(ep, server).await;
}

/// How many receives the server keeps waiting on its endpoint. madsim's
/// receive sleeps after taking a message (its random delay, which its
/// sleep rounds up to 1 ms), so one receive loop takes in at most one
/// request per millisecond of simulated time; and what waits meanwhile in
/// the endpoint's mailbox is handed out in no fair order (the last in takes
/// the place of the one taken). With one loop, clients calling more often
/// than that queued, and some calls waited past their timeout: `Unavailable`
/// with no fault injected (case `reentrant_holds_beyond_their_limit_refused`
/// lost about one call in sixty that way in `sim_conformance`). With this
/// many, a request is taken as it arrives, in arrival order.
const RECEIVERS: usize = 64;

/// Takes in requests and answers each in its own task, until the node is
/// killed.
async fn receive(ep: Endpoint, server: Arc<Server>) {
    loop {
        let Ok((msg, from)) = ep.recv_from_raw(REQUEST_TAG).await else {
            return;
        };
        let Some((reply_tag, req)) = msg.downcast::<Wire<Envelope>>().ok().and_then(|w| w.take())
        else {
            continue;
        };
        let server = server.clone();
        let ep = ep.clone();
        tokio::spawn(async move {
            let answer = server.handle(req).await;
            let _ = ep.send_to_raw(from, reply_tag, Wire::new(answer)).await;
        });
    }
}

async fn sweep(server: std::sync::Weak<Server>) {
    loop {
        tokio::time::sleep(SWEEP_IDLE).await;
        let Some(s) = server.upgrade() else { return };
        let now = Instant::now();
        s.watches
            .lock()
            .unwrap()
            .retain(|_, w| now.saturating_duration_since(w.last_poll) < SWEEP_IDLE);
    }
}

impl Server {
    /// Runs a family call on the namespace's backend.
    async fn call(&self, ns: coord_api::Namespace, call: Call) -> Answer {
        let renewal = self.cfg.log.as_ref().zip(renewal(&call));
        let backend = self.cfg.backend(&self.store, ns);
        match call.run(backend).await {
            // A watch stays here; the client long polls it.
            Ok(reply) => match reply.downcast::<Box<dyn Watch>>() {
                Ok(watch) => Answer::Watching(self.keep(*watch)),
                Err(reply) => {
                    if let (Some((log, (key, holder))), Some(&ok)) =
                        (renewal, reply.downcast_ref::<bool>())
                    {
                        log.push(ServerEvent::Extend { key, holder, ok });
                    }
                    Answer::Done(Ok(reply))
                }
            },
            Err(e) => Answer::Done(Err(e)),
        }
    }

    async fn handle(&self, req: Request) -> Answer {
        match req {
            Request::Call { ns, call } => self.call(ns, call).await,
            Request::Poll { sub, seen, hold } => Answer::Polled(self.poll(sub, seen, hold).await),
            Request::Unsubscribe { sub } => {
                self.watches.lock().unwrap().remove(&sub);
                Answer::Unsubscribed
            }
        }
    }

    fn keep(&self, watch: Box<dyn Watch>) -> u64 {
        let id = {
            let mut n = self.next_watch.lock().unwrap();
            *n += 1;
            *n
        };
        self.watches.lock().unwrap().insert(
            id,
            KeptWatch {
                version: 0,
                last_poll: Instant::now(),
                inner: Arc::new(tokio::sync::Mutex::new(watch)),
            },
        );
        id
    }

    /// The watch's version once it passes `seen`, or after `hold`.
    async fn poll(&self, sub: u64, seen: u64, hold: Duration) -> Option<u64> {
        let version = |s: &Self| {
            s.watches.lock().unwrap().get_mut(&sub).map(|w| {
                w.last_poll = Instant::now();
                (w.version, w.inner.clone())
            })
        };
        let deadline = tokio::time::Instant::now() + hold.min(Duration::from_secs(10));
        loop {
            let (v, inner) = version(self)?;
            if v > seen {
                return Some(v);
            }
            // One poller at a time drives the watch; a change it sees bumps
            // the version for whoever polls next.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let changed = tokio::time::timeout(left, async {
                let mut w = inner.lock().await;
                if version(self).is_some_and(|(now, _)| now > seen) {
                    return;
                }
                let _ = w.changed().await;
                if let Some(w) = self.watches.lock().unwrap().get_mut(&sub) {
                    w.version += 1;
                }
            })
            .await;
            if changed.is_err() {
                return version(self).map(|(v, _)| v);
            }
        }
    }
}
