//! The sim server: a node hosting a `coord_memory::MemoryStore` whose clock is
//! the node's own, answering requests from the simulated network. Its state
//! lives in memory only: a restarted server starts empty.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{
    Acquire, Campaign, Clock, Instant, Key, LeadershipBackend, LeaseBackend, LeaseKind, LeaseWatch,
    OnceBegin, Release, Result,
};
use coord_memory::MemoryStore;
use madsim::net::Endpoint;

use super::proto::{Envelope, REQUEST_TAG, Reply, Request, Topic};
use crate::history::{LeadEvent, LeadLog, ServerEvent, ServerLog};

/// How a sim server is set up. Cloned into the node's init task, so every
/// (re)start of the node builds a fresh, empty store from it.
#[derive(Clone)]
pub struct ServerConfig {
    /// The address the server listens on (the node's IP and a port).
    pub addr: SocketAddr,
    /// The server node's clock: decides expiry and the wall time in tokens.
    pub clock: Arc<dyn Clock>,
    /// Where to log grants, exclusive renewals and releases in server order.
    pub log: Option<ServerLog>,
    /// Where to log elected terms and run-once starts and ends, with the
    /// (global) instant the server answered. Terms and runs are also logged
    /// to `log` as grants, renewals and releases of the keys
    /// `election/<name>` and `once/<job>/<occurrence>`.
    pub lead_log: Option<LeadLog>,
    /// A deliberately broken store (feature `broken`).
    #[cfg(feature = "broken")]
    pub bug: Option<coord_memory::Bug>,
    /// Deliberately broken leadership answers (feature `broken`).
    #[cfg(feature = "broken")]
    pub lead_bug: Option<LeadBug>,
}

/// Leadership bugs the sim server can play, to prove the leadership
/// checkers catch them (feature `broken`).
#[cfg(feature = "broken")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadBug {
    /// `renew` answers `true` whatever the store says: a leader keeps its
    /// term after another term was elected.
    RenewAlways,
    /// `campaign` first resigns whoever leads: a new term while the old
    /// leader still believes.
    CampaignDeposes,
    /// `end_once` of a failed or lost run marks the occurrence finished.
    EndOnceFinishes,
}

impl ServerConfig {
    /// A server on `addr` with `clock`, no log.
    pub fn new(addr: SocketAddr, clock: Arc<dyn Clock>) -> ServerConfig {
        ServerConfig {
            addr,
            clock,
            log: None,
            lead_log: None,
            #[cfg(feature = "broken")]
            bug: None,
            #[cfg(feature = "broken")]
            lead_bug: None,
        }
    }

    fn store(&self) -> MemoryStore {
        #[cfg(feature = "broken")]
        if let Some(bug) = self.bug {
            return MemoryStore::with_bug(self.clock.clone(), bug);
        }
        MemoryStore::with_clock(self.clock.clone())
    }
}

/// Watches idle this long are dropped (a waiting client polls again at once).
const SWEEP_IDLE: Duration = Duration::from_secs(30);

struct Watch {
    version: u64,
    last_poll: coord_api::Instant,
    inner: Arc<tokio::sync::Mutex<Box<dyn LeaseWatch>>>,
}

struct Server {
    store: MemoryStore,
    cfg: ServerConfig,
    watches: Mutex<HashMap<u64, Watch>>,
    next_watch: Mutex<u64>,
}

/// Runs the server until the node is killed: binds (retrying while a killed
/// incarnation's port is still bound), then answers every request in its own
/// task.
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
        log.push(ServerEvent::Restart);
    }
    let server = Arc::new(Server {
        store: cfg.store(),
        cfg,
        watches: Mutex::new(HashMap::new()),
        next_watch: Mutex::new(1),
    });
    tokio::spawn(sweep(Arc::downgrade(&server)));
    loop {
        let Ok((msg, from)) = ep.recv_from_raw(REQUEST_TAG).await else {
            return;
        };
        let Ok(env) = msg.downcast::<Envelope>() else {
            continue;
        };
        let (reply_tag, req) = *env;
        let server = server.clone();
        let ep = ep.clone();
        tokio::spawn(async move {
            let reply = server.handle(req).await;
            let _ = ep.send_to_raw(from, reply_tag, Box::new(reply)).await;
        });
    }
}

async fn sweep(server: std::sync::Weak<Server>) {
    loop {
        tokio::time::sleep(SWEEP_IDLE).await;
        let Some(s) = server.upgrade() else { return };
        let now = coord_api::Instant::now();
        s.watches
            .lock()
            .unwrap()
            .retain(|_, w| now.saturating_duration_since(w.last_poll) < SWEEP_IDLE);
    }
}

impl Server {
    fn log(&self, e: impl FnOnce() -> ServerEvent) {
        if let Some(log) = &self.cfg.log {
            log.push(e());
        }
    }

    async fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Acquire { ns, lease, ttl } => {
                let res = self.store.backend(ns).acquire(&lease, ttl).await;
                if let Ok(Acquire::Granted(g)) = &res
                    && lease.kind == LeaseKind::Exclusive
                {
                    self.log(|| ServerEvent::Grant {
                        key: lease.key.to_string(),
                        holder: lease.holder.clone(),
                        token: g.token.get(),
                    });
                }
                Reply::Acquire(res)
            }
            Request::Extend { ns, lease, ttl } => {
                let res = self.store.backend(ns).extend(&lease, ttl).await;
                if let Ok(ok) = &res
                    && lease.kind == LeaseKind::Exclusive
                {
                    self.log(|| ServerEvent::Extend {
                        key: lease.key.to_string(),
                        holder: lease.holder.clone(),
                        ok: *ok,
                    });
                }
                Reply::Extend(res)
            }
            Request::Release { ns, lease } => {
                let res = self.store.backend(ns).release(&lease).await;
                if let Ok(r) = &res
                    && lease.kind == LeaseKind::Exclusive
                {
                    self.log(|| ServerEvent::Release {
                        key: lease.key.to_string(),
                        holder: lease.holder.clone(),
                        released: matches!(r, Release::Released { .. }),
                    });
                }
                Reply::Release(res)
            }
            Request::ForceRelease { ns, family, key } => {
                Reply::ForceRelease(self.store.backend(ns).force_release(family, &key).await)
            }
            Request::Inspect { ns, family, key } => {
                Reply::Inspect(self.store.backend(ns).inspect(family, &key).await)
            }
            Request::Subscribe { ns, topic } => {
                let b = self.store.backend(ns);
                let res: Result<Box<dyn LeaseWatch>> = match topic {
                    Topic::Lease(family, key) => b.subscribe(family, &key).await,
                    Topic::Election(e) => b.watch_election(&e).await,
                    Topic::Group(g) => b.watch_group(&g).await,
                    Topic::Once(job, occ) => b.watch_once(&job, &occ).await,
                };
                let watch = res.expect("the memory store always subscribes");
                let id = {
                    let mut n = self.next_watch.lock().unwrap();
                    *n += 1;
                    *n
                };
                self.watches.lock().unwrap().insert(
                    id,
                    Watch {
                        version: 0,
                        last_poll: coord_api::Instant::now(),
                        inner: Arc::new(tokio::sync::Mutex::new(watch)),
                    },
                );
                Reply::Subscribed(id)
            }
            Request::Poll { sub, seen, hold } => Reply::Polled(self.poll(sub, seen, hold).await),
            Request::Unsubscribe { sub } => {
                self.watches.lock().unwrap().remove(&sub);
                Reply::Unsubscribed
            }
            req => self.handle_leadership(req).await,
        }
    }

    fn lead_log(&self, e: impl FnOnce(Instant) -> LeadEvent) {
        if let Some(log) = &self.cfg.lead_log {
            log.push(e(Instant::now()));
        }
    }

    async fn handle_leadership(&self, req: Request) -> Reply {
        let election_key = |e: &Key| format!("election/{e}");
        let once_key = |j: &Key, o: &Key| format!("once/{j}/{o}");
        #[cfg(feature = "broken")]
        let bug = self.cfg.lead_bug;
        match req {
            Request::Campaign {
                ns,
                election,
                holder,
                metadata,
                ttl,
                quorum,
            } => {
                let b = self.store.backend(ns);
                #[cfg(feature = "broken")]
                if bug == Some(LeadBug::CampaignDeposes)
                    && let Ok(Some(l)) = b.leader(&election).await
                {
                    let _ = b.resign(&election, &l.holder, l.term).await;
                }
                let res = b
                    .campaign(&election, &holder, &metadata, ttl, quorum.as_ref())
                    .await;
                if let Ok(Campaign::Elected(info)) = &res {
                    self.log(|| ServerEvent::Grant {
                        key: election_key(&election),
                        holder: holder.clone(),
                        token: info.term.get(),
                    });
                    self.lead_log(|at| LeadEvent::Elected {
                        election: election.to_string(),
                        holder: holder.clone(),
                        term: info.term.get(),
                        at,
                    });
                }
                Reply::Campaign(res)
            }
            Request::Renew {
                ns,
                election,
                holder,
                term,
                ttl,
                quorum,
            } => {
                let b = self.store.backend(ns);
                let res = b
                    .renew(&election, &holder, term, ttl, quorum.as_ref())
                    .await;
                #[cfg(feature = "broken")]
                let res = match bug {
                    Some(LeadBug::RenewAlways) => Ok(true),
                    _ => res,
                };
                if let Ok(ok) = &res {
                    self.log(|| ServerEvent::Extend {
                        key: election_key(&election),
                        holder: holder.clone(),
                        ok: *ok,
                    });
                }
                Reply::Bool(res)
            }
            Request::Resign {
                ns,
                election,
                holder,
                term,
            } => {
                let res = self
                    .store
                    .backend(ns)
                    .resign(&election, &holder, term)
                    .await;
                if let Ok(released) = &res {
                    self.log(|| ServerEvent::Release {
                        key: election_key(&election),
                        holder: holder.clone(),
                        released: *released,
                    });
                }
                Reply::Bool(res)
            }
            Request::Leader { ns, election } => {
                Reply::Leader(self.store.backend(ns).leader(&election).await)
            }
            Request::TermsGranted { ns, election } => {
                Reply::TermsGranted(self.store.backend(ns).terms_granted(&election).await)
            }
            Request::Join {
                ns,
                group,
                holder,
                metadata,
                ttl,
            } => Reply::Joined(
                self.store
                    .backend(ns)
                    .join(&group, &holder, &metadata, ttl)
                    .await,
            ),
            Request::Heartbeat {
                ns,
                group,
                holder,
                ttl,
            } => Reply::Bool(self.store.backend(ns).heartbeat(&group, &holder, ttl).await),
            Request::Leave { ns, group, holder } => {
                Reply::Bool(self.store.backend(ns).leave(&group, &holder).await)
            }
            Request::Members { ns, group } => {
                Reply::Members(self.store.backend(ns).members(&group).await)
            }
            Request::BeginOnce {
                ns,
                job,
                occurrence,
                holder,
                ttl,
            } => {
                let res = self
                    .store
                    .backend(ns)
                    .begin_once(&job, &occurrence, &holder, ttl)
                    .await;
                if let Ok(OnceBegin::Started { token, .. }) = &res {
                    self.log(|| ServerEvent::Grant {
                        key: once_key(&job, &occurrence),
                        holder: holder.clone(),
                        token: token.get(),
                    });
                    self.lead_log(|at| LeadEvent::OnceStarted {
                        occurrence: occurrence.to_string(),
                        holder: holder.clone(),
                        token: token.get(),
                        at,
                    });
                }
                Reply::BeginOnce(res)
            }
            Request::ExtendOnce {
                ns,
                job,
                occurrence,
                holder,
                ttl,
            } => {
                let res = self
                    .store
                    .backend(ns)
                    .extend_once(&job, &occurrence, &holder, ttl)
                    .await;
                if let Ok(ok) = &res {
                    self.log(|| ServerEvent::Extend {
                        key: once_key(&job, &occurrence),
                        holder: holder.clone(),
                        ok: *ok,
                    });
                }
                Reply::Bool(res)
            }
            Request::EndOnce {
                ns,
                job,
                occurrence,
                holder,
                finished,
            } => {
                #[cfg(feature = "broken")]
                let finished = match bug {
                    Some(LeadBug::EndOnceFinishes) => finished.or(Some(Duration::from_secs(3600))),
                    _ => finished,
                };
                let res = self
                    .store
                    .backend(ns)
                    .end_once(&job, &occurrence, &holder, finished)
                    .await;
                if let Ok(ended) = &res {
                    self.log(|| ServerEvent::Release {
                        key: once_key(&job, &occurrence),
                        holder: holder.clone(),
                        released: *ended,
                    });
                    if *ended {
                        self.lead_log(|at| LeadEvent::OnceEnded {
                            occurrence: occurrence.to_string(),
                            holder: holder.clone(),
                            finished: finished.is_some(),
                            at,
                        });
                    }
                }
                Reply::Bool(res)
            }
            other => unreachable!("not a leadership request: {other:?}"),
        }
    }

    /// The watch's version once it passes `seen`, or after `hold`.
    async fn poll(&self, sub: u64, seen: u64, hold: Duration) -> Option<u64> {
        let version = |s: &Self| {
            s.watches.lock().unwrap().get_mut(&sub).map(|w| {
                w.last_poll = coord_api::Instant::now();
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
