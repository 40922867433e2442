//! The sim server: a node hosting a `coord_memory::MemoryStore` whose clock is
//! the node's own, answering requests from the simulated network. Its state
//! lives in memory only: a restarted server starts empty.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Acquire, Clock, LeaseBackend, LeaseKind, LeaseWatch, Release, Result};
use coord_memory::MemoryStore;
use madsim::net::Endpoint;

use super::proto::{Envelope, REQUEST_TAG, Reply, Request};
use crate::history::{ServerEvent, ServerLog};

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
    /// A deliberately broken store (feature `broken`).
    #[cfg(feature = "broken")]
    pub bug: Option<coord_memory::Bug>,
}

impl ServerConfig {
    /// A server on `addr` with `clock`, no log.
    pub fn new(addr: SocketAddr, clock: Arc<dyn Clock>) -> ServerConfig {
        ServerConfig {
            addr,
            clock,
            log: None,
            #[cfg(feature = "broken")]
            bug: None,
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
            Request::Subscribe { ns, family, key } => {
                let res: Result<Box<dyn LeaseWatch>> =
                    self.store.backend(ns).subscribe(family, &key).await;
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
