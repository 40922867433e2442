//! Following a Sentinel-managed master (`redis+sentinel://`).
//!
//! At connect the sentinels are asked where the master is, one after
//! another, each within its share of the connect timeout (the redis
//! crate's `Sentinel`, one per sentinel: `SENTINEL MASTERS`, then `ROLE` on
//! the master it names, which must say `master`; a sentinel that is frozen,
//! gone or has not heard of the failover yet passes to the next).
//! A `ConnectionManager` reconnects to the address it was built for only, so
//! after a failover it would keep talking to the old master (refusing
//! writes with READONLY once demoted, or gone; and in a planned failover
//! still accepting them, to be lost, until a sentinel demotes it, which may
//! take seconds). The ways to follow:
//!
//! - the backend listens to the sentinels' `+switch-master` announcements
//!   (one pub/sub connection to one sentinel at a time, for the backend's
//!   life) and moves to the master announced as soon as it says `ROLE`
//!   master;
//! - every request whose error says the server may be unavailable or
//!   read-only (and every request that timed out) asks the sentinels again
//!   ([`RedisBackend::follow_master`]: one resolution at a time, at most one
//!   per [`MIN_INTERVAL`]), and so does every write that ends `Unconfirmed`
//!   (a master that lost its replicas may be one a failover left behind);
//! - an announced master that cannot be used yet is tried again, and the
//!   sentinels are asked once whenever the listener subscribes again.
//!
//! Moving to a new master builds new connections to it (commands and
//! pub/sub), subscribes every channel there again and wakes every watch
//! (the gap is a hint: waiters read again). A request refused without being
//! run (READONLY, MASTERDOWN, connection refused) is sent once more to the
//! new master; any other failed request returns its error (`Unavailable`),
//! since it may have run. Scripts are loaded on the new master on first use
//! (the NOSCRIPT path of `eval`).

use std::time::{Duration, Instant};

use coord_api::{Error, Result};
use redis::{
    ConnectionAddr, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo, RedisError,
    ServerErrorKind,
    sentinel::{Sentinel, SentinelNodeConnectionInfo},
};
use tracing::{Instrument, field::Empty};

use crate::{Endpoint, RedisBackend, RedisConfig, error};

/// The least time between two resolutions started by errors.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The least time one sentinel is given to answer.
const MIN_SHARE: Duration = Duration::from_millis(250);

/// How long an announced master that cannot be used yet (a first
/// connection refused, `ROLE` not `master` yet) is tried again before the
/// backend gives up on the announcement and asks the sentinels.
const ANNOUNCED_FOR: Duration = Duration::from_secs(30);

/// The sentinels of a `redis+sentinel://` backend, and who asks them.
pub(crate) struct Sentinels {
    master: String,
    /// The sentinels' connection settings (for the announcements).
    nodes: Vec<redis::ConnectionInfo>,
    /// One resolution at a time.
    resolver: tokio::sync::Mutex<Resolver>,
    /// How many announcements came: a newer one ends the attempts to
    /// follow an older one.
    announcements: std::sync::atomic::AtomicU64,
}

struct Resolver {
    /// One per sentinel, in the configured order.
    sentinels: Vec<Sentinel>,
    /// When the last resolution started.
    last: Option<Instant>,
}

impl Sentinels {
    /// The sentinels `config` names (an [`Endpoint::Sentinel`]), not
    /// contacted yet.
    pub(crate) fn new(config: &RedisConfig) -> Result<Sentinels> {
        let Endpoint::Sentinel { sentinels, master } = config.endpoint() else {
            return Err(Error::config("not a redis+sentinel endpoint"));
        };
        let mut auth = RedisConnectionInfo::default().set_protocol(ProtocolVersion::RESP2);
        if let Some(user) = config.sentinel_username() {
            auth = auth.set_username(user);
        }
        if let Some(password) = config.sentinel_password() {
            auth = auth.set_password(password);
        }
        let nodes = (sentinels.iter())
            .map(|(host, port)| {
                ConnectionAddr::Tcp(host.clone(), *port)
                    .into_connection_info()
                    .map(|i| i.set_redis_settings(auth.clone()))
            })
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(|e| error::from_redis(config, "configure the sentinels", e))?;
        let sentinels = (nodes.iter())
            .map(|n| Sentinel::build(vec![n.clone()]))
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(|e| error::from_redis(config, "configure the sentinels", e))?;
        Ok(Sentinels {
            master: master.clone(),
            nodes,
            resolver: tokio::sync::Mutex::new(Resolver {
                sentinels,
                last: None,
            }),
            announcements: Default::default(),
        })
    }

    /// Where the master is now, as the first sentinel able to say says and
    /// its `ROLE` confirms; within the connect timeout.
    pub(crate) async fn resolve(&self, config: &RedisConfig) -> Result<ConnectionAddr> {
        let mut resolver = self.resolver.lock().await;
        resolver.last = Some(Instant::now());
        self.ask(config, &mut resolver).await
    }

    async fn ask(&self, config: &RedisConfig, resolver: &mut Resolver) -> Result<ConnectionAddr> {
        let what = format!("ask the sentinels where master {:?} is", self.master);
        let mut data = RedisConnectionInfo::default().set_db(config.db());
        if let Some(user) = config.username() {
            data = data.set_username(user);
        }
        if let Some(password) = config.password() {
            data = data.set_password(password);
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(data);
        let count = u32::try_from(resolver.sentinels.len())
            .unwrap_or(u32::MAX)
            .max(1);
        let share = (config.connect_timeout() / count).max(MIN_SHARE);
        let mut last = None;
        for sentinel in &mut resolver.sentinels {
            let ask = sentinel.async_master_for(&self.master, Some(&node));
            match tokio::time::timeout(share, ask).await {
                Ok(Ok(client)) => return Ok(client.get_connection_info().addr().clone()),
                Ok(Err(e)) => last = Some(error::from_redis(config, &what, e)),
                Err(_) => last = Some(error::timed_out(config, &what, share)),
            }
        }
        Err(last.unwrap_or_else(|| Error::config("no sentinel configured")))
    }
}

/// Whether a request that failed with `e` was refused without being run,
/// so may be sent again to another master.
pub(crate) fn not_run(e: &RedisError) -> bool {
    e.is_connection_refusal()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

impl RedisBackend {
    /// After a request on connection `seen` failed as if the master had
    /// moved: asks the sentinels where it is and, if it moved, switches
    /// both connections to it. Answers whether the connection in use is now
    /// another than `seen` (switched here or by a resolution running
    /// meanwhile). Does nothing (`false`) without sentinels, or when a
    /// resolution started less than [`MIN_INTERVAL`] ago. Runs in a task of
    /// its own, so a caller that gives up waiting never cuts it short.
    pub(crate) async fn follow_master(&self, seen: u64) -> bool {
        if self.sentinels().is_none() {
            return false;
        }
        let backend = self.clone();
        tokio::spawn(async move { backend.follow(seen).await })
            .await
            .unwrap_or(false)
    }

    /// [`follow_master`](Self::follow_master) without waiting for it.
    pub(crate) fn follow_master_later(&self, seen: u64) {
        if self.sentinels().is_some() {
            let backend = self.clone();
            drop(tokio::spawn(async move { backend.follow(seen).await }));
        }
    }

    /// Starts listening to the sentinels' `+switch-master` announcements
    /// for this backend's life (the task ends within a second of the last
    /// clone's drop).
    pub(crate) fn listen_for_switches(&self) {
        if self.sentinels().is_some() {
            drop(tokio::spawn(listen(self.downgrade())));
        }
    }

    /// Moves to `addr`, which a sentinel announced as the new master
    /// (unless already there); `switch_to` checks that it says so itself.
    /// An announced master that cannot be used yet (a first connection
    /// refused or timed out, `ROLE` not `master` yet) is tried again,
    /// pausing 100 ms doubling to a second, until it can, a newer
    /// announcement came, or [`ANNOUNCED_FOR`] passed (then the sentinels
    /// are asked). Dropping the announcement at the first failure left the
    /// backend on the old master, which in a planned failover takes writes,
    /// to be lost, until a sentinel demotes it.
    async fn follow_announced(&self, addr: ConnectionAddr) {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(sentinels) = self.sentinels() else {
            return;
        };
        let this = sentinels.announcements.fetch_add(1, SeqCst) + 1;
        let deadline = Instant::now() + ANNOUNCED_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            if self.try_announced(&addr).await {
                return;
            }
            if sentinels.announcements.load(SeqCst) != this {
                return; // a newer announcement is followed instead
            }
            if Instant::now() + pause > deadline {
                self.follow_master_later(self.server().0);
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// One attempt of [`follow_announced`](Self::follow_announced):
    /// whether the backend uses `addr` now.
    async fn try_announced(&self, addr: &ConnectionAddr) -> bool {
        let Some(sentinels) = self.sentinels() else {
            return true;
        };
        let _resolver = sentinels.resolver.lock().await;
        let (_, from) = self.server();
        let to = addr.to_string();
        if to == from {
            return true;
        }
        let span = tracing::info_span!(
            "coord.redis.failover",
            backend = %self.name(),
            master = %sentinels.master,
            from = %from,
            to = %to,
            outcome = Empty,
            announced = true,
        );
        (self.switch_traced(addr.clone(), &from, &to))
            .instrument(span)
            .await
    }

    /// [`switch_to`](Self::switch_to) `addr`, recording the outcome in
    /// the current `coord.redis.failover` span; whether it switched.
    async fn switch_traced(&self, addr: ConnectionAddr, from: &str, to: &str) -> bool {
        match self.switch_to(addr).await {
            Ok(()) => {
                tracing::Span::current().record("outcome", "switched");
                tracing::warn!(%from, %to, "the master moved: following it");
                true
            }
            Err(e) => {
                tracing::Span::current().record("outcome", "unreachable");
                tracing::warn!(%to, error = %e, "cannot use the new master");
                false
            }
        }
    }

    async fn follow(&self, seen: u64) -> bool {
        let Some(sentinels) = self.sentinels() else {
            return false;
        };
        let config = self.config();
        let mut resolver = sentinels.resolver.lock().await;
        let (generation, from) = self.server();
        if generation != seen {
            return true;
        }
        if resolver.last.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return false;
        }
        resolver.last = Some(Instant::now());
        let span = tracing::info_span!(
            "coord.redis.failover",
            backend = %self.name(),
            master = %sentinels.master,
            from = %from,
            to = Empty,
            outcome = Empty,
        );
        async {
            let addr = match sentinels.ask(config, &mut resolver).await {
                Ok(addr) => addr,
                Err(e) => {
                    tracing::Span::current().record("outcome", "unresolved");
                    tracing::debug!(error = %e, "the sentinels named no usable master");
                    return false;
                }
            };
            let to = addr.to_string();
            tracing::Span::current().record("to", to.as_str());
            if to == from {
                tracing::Span::current().record("outcome", "unchanged");
                return false;
            }
            self.switch_traced(addr, &from, &to).await
        }
        .instrument(span)
        .await
    }
}

/// The life of a backend's announcement listener: subscribes to
/// `+switch-master` on one sentinel after another (the next when one
/// cannot be reached or its connection drops), and follows every
/// announcement for this backend's master; ends once the backend is gone.
async fn listen(backend: std::sync::Weak<crate::backend::Inner>) {
    use futures_util::StreamExt;
    let Some((nodes, master, timeout)) = RedisBackend::upgrade(&backend).and_then(|b| {
        let s = b.sentinels()?;
        Some((
            s.nodes.clone(),
            s.master.clone(),
            b.config().connect_timeout(),
        ))
    }) else {
        return;
    };
    let mut first = true;
    for node in nodes.iter().cycle() {
        let subscribed = async {
            let mut pubsub = redis::Client::open(node.clone())?
                .get_async_pubsub()
                .await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(pubsub)
        };
        if let Ok(Ok(mut pubsub)) = tokio::time::timeout(timeout, subscribed).await {
            // Listening again: an announcement made while nobody listened
            // is missed, so the sentinels are asked once.
            if !std::mem::replace(&mut first, false)
                && let Some(b) = RedisBackend::upgrade(&backend)
            {
                b.follow_master_later(b.server().0);
            }
            let mut messages = pubsub.on_message();
            loop {
                // Wakes every second to see whether the backend is gone.
                match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                    Ok(None) => break,
                    Ok(Some(msg)) => {
                        let Some(b) = RedisBackend::upgrade(&backend) else {
                            return;
                        };
                        let text: String = msg.get_payload().unwrap_or_default();
                        if let Some(addr) = announced(&text, &master) {
                            // In a task of its own: tried again while the
                            // new master cannot be used yet, and the
                            // listener goes on hearing announcements.
                            drop(tokio::spawn(async move { b.follow_announced(addr).await }));
                        }
                    }
                    Err(_) if backend.strong_count() == 0 => return,
                    Err(_) => {}
                }
            }
        }
        if backend.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The new master's address in a `+switch-master` message for `master`
/// (`<name> <old ip> <old port> <new ip> <new port>`).
fn announced(text: &str, master: &str) -> Option<ConnectionAddr> {
    let parts: Vec<&str> = text.split(' ').collect();
    match parts[..] {
        [name, _, _, ip, port] if name == master => {
            Some(ConnectionAddr::Tcp(ip.to_owned(), port.parse().ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_of_another_master_or_malformed_are_ignored() {
        let a = announced("mymaster 127.0.0.1 7000 127.0.0.1 7001", "mymaster").unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:7001");
        assert!(announced("other 127.0.0.1 7000 127.0.0.1 7001", "mymaster").is_none());
        assert!(announced("mymaster 127.0.0.1 7000 127.0.0.1", "mymaster").is_none());
        assert!(announced("mymaster 127.0.0.1 7000 127.0.0.1 x", "mymaster").is_none());
    }
}
