//! [`RedisBackend`]: the connections (one multiplexed, self-reconnecting
//! connection for the scripts, one shared pub/sub connection for wake-ups,
//! and with confirmed writes the connections they borrow),
//! the configuration, and the root [`Backend`] handing out every family.

use std::{
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};

use coord_api::{
    Error, Namespace, Result,
    spi::{
        Backend, BarrierBackend, BreakerBackend, ElectionBackend, GraphBackend, GroupBackend,
        JobBackend, LockBackend, OpsBackend, QueueBackend, StateBackend, TopicBackend,
    },
};
use redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo,
    RedisConnectionInfo,
    aio::{ConnectionManager, ConnectionManagerConfig},
    io::tcp::TcpSettings,
};

use crate::{
    Endpoint, RedisConfig,
    cluster::{self, Conn},
    error,
    lender::Lender,
    pubsub::{Channels, Hub},
    sentinel::Sentinels,
    server::ServerInfo,
};

/// A coord backend on Redis: one server, a master behind Sentinel, or a
/// Redis Cluster.
///
/// It offers every family: locks, read-write locks and semaphores
/// ([`LockBackend`]), elections ([`ElectionBackend`]), membership groups
/// ([`GroupBackend`]), run-once jobs ([`JobBackend`]), cyclic barriers,
/// double barriers and countdown latches ([`BarrierBackend`]), job graphs
/// ([`GraphBackend`]), work queues ([`QueueBackend`]), shared values
/// ([`StateBackend`]), topics ([`TopicBackend`]), circuit breakers
/// ([`BreakerBackend`]) and operations ([`OpsBackend`]: presence, listing,
/// fenced revocation, audit, probe).
///
/// - every operation is one Lua script run by EVALSHA (loaded again
///   transparently after `SCRIPT FLUSH` or a restart), bounded by the
///   configured operation timeout: past it the call fails with
///   `Error::Unavailable` naming the endpoint, it never hangs;
/// - expiry is decided by the server's clock (`PEXPIRE`, and deadlines taken
///   from `TIME` inside the scripts);
/// - fencing tokens follow [`FencingToken::next_after`](coord_api::FencingToken::next_after)
///   with a per-key counter and the server's `TIME`, so they keep increasing
///   across a restart that lost all data;
/// - one multiplexed connection per backend reconnects by itself; one shared
///   pub/sub connection wakes waiters when a lease is released or force
///   released, and elections, groups, runs, barriers, latches and job
///   graphs and work queues are watched on it too (expiry publishes nothing:
///   lock waiters also wake at the `Busy::retry_in` the refusal carried,
///   other watches at the expiry instant they read: a run's lease, the
///   earliest member heartbeat or arrival deadline, a latch's end; a graph's
///   worker at the `Take::Idle::next_in` its take carried, a queue's
///   consumer at the `Received::next_in` its receive carried);
/// - behind Sentinel (`redis+sentinel://`, see [`RedisConfig::from_url`]) it
///   finds the master through the sentinels and follows it through a
///   failover, on their `+switch-master` announcement and on errors that say
///   the master may have moved; what holds through a failover is the
///   contract's "Failover" section (`coord_api::contract::common`);
/// - on a Redis Cluster (`redis+cluster://`, seed nodes) requests are
///   routed by slot (each primitive's keys share one), wake-ups go by
///   sharded pub/sub where the servers have it (7.0), the lease listing
///   walks every master, several locks are taken one by one, and a request
///   is sent again only when the cluster refused it without running it
///   (`MOVED`, `ASK`, `READONLY` after a failover…); see the contract's
///   "Redis Cluster" section and decision 0037;
/// - at connect it asks the server its version ([`server_info`](Self::server_info))
///   and refuses one older than [`MIN_VERSION`](crate::MIN_VERSION);
/// - with [`Confirm`](crate::Confirm) configured, every write waits for
///   replicas (`WAIT`) or disks (`WAITAOF`), on a connection lent to it
///   alone (on one server; see [`CONFIRMING_CONNECTIONS`](crate::CONFIRMING_CONNECTIONS)),
///   and a shortfall is `Error::Unconfirmed`;
/// - keys: see [`keys`](crate::keys).
///
/// `Display` names the endpoint and namespace, never the password:
/// `redis(127.0.0.1:6379/0 ns=coord)`,
/// `redis+cluster(10.0.0.1:6379,10.0.0.2:6379/0 ns=coord)`.
///
/// ```no_run
/// # async fn demo() -> coord_api::Result<()> {
/// use std::sync::Arc;
/// use coord_api::Client;
/// use coord_redis::{RedisBackend, RedisConfig};
///
/// let config = RedisConfig::from_url("redis://127.0.0.1:6379/0?namespace=billing")?;
/// let backend = RedisBackend::connect(config).await?;
/// let client = Client::new(Arc::new(backend));
/// if let Some(guard) = client.lock("invoices/run").try_lock().await? {
///     println!("fencing token {}", guard.token());
///     guard.release().await?;
/// }
/// # Ok(()) }
/// ```
///
/// On a Redis Cluster, through any of its nodes:
///
/// ```no_run
/// # async fn demo() -> coord_api::Result<()> {
/// let url = "redis+cluster://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379?namespace=billing";
/// let backend = coord_redis::RedisBackend::connect_url(url).await?;
/// assert!(backend.is_cluster());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: RedisConfig,
    name: String,
    /// The server in use: replaced when the master moves (Sentinel).
    link: RwLock<Link>,
    hub: Arc<Hub>,
    sentinels: Option<Sentinels>,
    /// A Redis Cluster: requests routed by slot.
    cluster: bool,
    /// Scripts run as their sharded twins, wake-ups by sharded pub/sub
    /// (a cluster whose servers have it).
    sharded: bool,
    /// Serializes the cluster connection's replacements
    /// ([`rediscover`](RedisBackend::rediscover)).
    rediscovering: tokio::sync::Mutex<()>,
}

/// The connection to the server in use, and which one it is.
pub(crate) struct Link {
    /// The connection every script call uses.
    pub(crate) conn: Conn,
    /// The server's address.
    pub(crate) addr: ConnectionAddr,
    /// The connections confirmed writes borrow (decision 0079): with
    /// [`Confirm`](crate::Confirm) configured, on one server (not a
    /// cluster).
    pub(crate) lender: Option<Arc<Lender>>,
    /// Counts the servers used so far (1 for the first).
    pub(crate) generation: u64,
    /// What the server said of itself.
    pub(crate) server: ServerInfo,
}

impl RedisBackend {
    /// Connects to the server `config` names (waiting at most its connect
    /// timeout; behind sentinels, first asks them where the master is),
    /// asks it its version and optional commands ([`server_info`](Self::server_info)),
    /// and prepares the pub/sub connection, which opens on first use.
    ///
    /// # Errors
    /// A server (or sentinels) that cannot be reached is
    /// `Error::Unavailable`; a server older than
    /// [`MIN_VERSION`](crate::MIN_VERSION) is `Error::Config` naming both
    /// versions.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend> {
        if let Endpoint::Cluster { nodes } = config.endpoint() {
            let nodes = nodes.clone();
            return RedisBackend::connect_cluster(config, &nodes).await;
        }
        let name = config.to_string();
        let sentinels = match config.endpoint() {
            Endpoint::Sentinel { .. } => Some(Sentinels::new(&config)?),
            _ => None,
        };
        let addr = match &sentinels {
            Some(s) => s.resolve(&config).await?,
            None => direct_addr(&config),
        };
        let conn = Conn::Single(connect_commands(&config, &addr).await?);
        let server = ServerInfo::probe(&config, &conn).await?;
        server.check(&config, &addr.to_string())?;
        server.check_persistence(&config, &addr.to_string())?;
        let lender = lender(&config, &addr, &conn).await?;
        let channels = Arc::new(Channels::default());
        let pubsub = Conn::Single(pubsub_connection(&config, &addr, &channels)?);
        let hub = Arc::new(Hub::new(config.clone(), pubsub, channels, false));
        hub.keep_subscribed();
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                config,
                name,
                link: RwLock::new(Link {
                    conn,
                    addr,
                    lender,
                    generation: 1,
                    server,
                }),
                hub,
                sentinels,
                cluster: false,
                sharded: false,
                rediscovering: Default::default(),
            }),
        };
        backend.listen_for_switches();
        Ok(backend)
    }

    /// [`connect`](Self::connect) to a Redis Cluster through its seed
    /// `nodes`: a cluster connection for the scripts (RESP2), another for
    /// pub/sub (RESP3; sharded when the servers have it).
    async fn connect_cluster(config: RedisConfig, nodes: &[(String, u16)]) -> Result<RedisBackend> {
        let span =
            tracing::debug_span!("coord.redis.cluster", backend = %config, seeds = nodes.len());
        let connect = async {
            let name = config.to_string();
            let conn = cluster::connect(&config, nodes, ProtocolVersion::RESP2, None).await?;
            let conn = Conn::Cluster(conn);
            let server = ServerInfo::probe(&config, &conn).await?;
            server.check(&config, &config.endpoint().to_string())?;
            server.check_persistence(&config, &config.endpoint().to_string())?;
            let sharded = server.spublish;
            let channels = Arc::new(Channels::default());
            let pubsub =
                cluster::connect(&config, nodes, ProtocolVersion::RESP3, Some((&channels, 0)))
                    .await?;
            let hub = Arc::new(Hub::new(
                config.clone(),
                Conn::Cluster(pubsub),
                channels,
                sharded,
            ));
            hub.keep_subscribed();
            tracing::debug!(%server, sharded, "connected to the cluster");
            Ok(RedisBackend {
                inner: Arc::new(Inner {
                    config,
                    name,
                    link: RwLock::new(Link {
                        conn,
                        // Requests are routed by slot; errors name the seeds.
                        addr: ConnectionAddr::Tcp(nodes[0].0.clone(), nodes[0].1),
                        lender: None,
                        generation: 1,
                        server,
                    }),
                    hub,
                    sentinels: None,
                    cluster: true,
                    sharded,
                    rediscovering: Default::default(),
                }),
            })
        };
        tracing::Instrument::instrument(connect, span).await
    }

    /// Replaces the cluster connection for scripts by a new one through
    /// the seed nodes (which learns the slots afresh), unless the one in
    /// use is already another than generation `seen`. See
    /// [`cluster::not_run`] for when.
    pub(crate) async fn rediscover(&self, seen: u64) {
        let Endpoint::Cluster { nodes } = self.config().endpoint() else {
            return;
        };
        let _serial = self.inner.rediscovering.lock().await;
        if self.current().1 != seen {
            return;
        }
        let span = tracing::info_span!("coord.redis.cluster", backend = %self, op = "rediscover");
        let connect = cluster::connect(self.config(), nodes, ProtocolVersion::RESP2, None);
        match tracing::Instrument::instrument(connect, span.clone()).await {
            Ok(conn) => {
                let mut link = self.inner.link.write().unwrap();
                link.generation += 1;
                link.conn = Conn::Cluster(conn);
                span.in_scope(|| {
                    tracing::info!(generation = link.generation, "slots learnt afresh")
                });
            }
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "cannot reconnect to the cluster"))
            }
        }
    }

    /// Whether this backend talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// Whether scripts publish, and the hub subscribes, sharded
    /// (`SPUBLISH`/`SSUBSCRIBE`: a cluster whose servers have it).
    pub(crate) fn sharded(&self) -> bool {
        self.inner.sharded
    }

    /// A handle that does not keep the backend alive (for its own tasks).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The backend behind `weak`, if it is still alive.
    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<RedisBackend> {
        weak.upgrade().map(|inner| RedisBackend { inner })
    }

    /// Connects to the server at `addr` (the master moved there) and makes
    /// it the one in use: commands, and pub/sub (every channel subscribed
    /// again, every watch woken).
    pub(crate) async fn switch_to(&self, addr: ConnectionAddr) -> Result<()> {
        let config = self.config();
        let conn = Conn::Single(connect_commands(config, &addr).await?);
        // A sentinel may name a server before it knows it is master.
        let what = "ask the new master its role";
        let mut ask = conn.clone();
        let role: Vec<redis::Value> =
            match tokio::time::timeout(config.timeout(), redis::cmd("ROLE").query_async(&mut ask))
                .await
            {
                Ok(r) => r.map_err(|e| error::from_redis(config, what, e))?,
                Err(_) => return Err(error::timed_out(config, what, config.timeout())),
            };
        if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r.as_slice() == b"master") {
            return Err(Error::unavailable(
                config,
                format!("{addr} does not say it is master (yet)"),
            ));
        }
        let server = ServerInfo::probe(config, &conn).await?;
        server.check(config, &addr.to_string())?;
        let lender = lender(config, &addr, &conn).await?;
        let pubsub = Conn::Single(pubsub_connection(config, &addr, self.hub().channels())?);
        {
            let mut link = self.inner.link.write().unwrap();
            link.generation += 1;
            link.conn = conn;
            link.lender = lender;
            link.addr = addr;
            link.server = server;
        }
        self.hub().switch(pubsub);
        Ok(())
    }

    /// Parses `url` (see [`RedisConfig::from_url`]) and connects.
    pub async fn connect_url(url: &str) -> Result<RedisBackend> {
        RedisBackend::connect(RedisConfig::from_url(url)?).await
    }

    /// What the server in use said of itself at connect (or, behind
    /// sentinels, when the backend last followed the master): its version
    /// and the optional commands it has. See [`ServerInfo`] for what
    /// chooses on it.
    ///
    /// ```no_run
    /// # async fn demo() -> coord_api::Result<()> {
    /// let backend = coord_redis::RedisBackend::connect_url("redis://127.0.0.1:6379/0").await?;
    /// let server = backend.server_info();
    /// assert!(server.version >= Some(coord_redis::MIN_VERSION));
    /// println!("{server}"); // redis 7.0.15 (SPUBLISH yes, WAITAOF no, SET NX GET yes)
    /// # Ok(()) }
    /// ```
    pub fn server_info(&self) -> ServerInfo {
        self.inner.link.read().unwrap().server.clone()
    }

    /// The configuration this backend was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The connection in use and its generation (see [`Link`]).
    pub(crate) fn current(&self) -> (Conn, u64) {
        let link = self.inner.link.read().unwrap();
        (link.conn.clone(), link.generation)
    }

    /// [`current`](Self::current), and for `own` (a confirmed write) the
    /// lender of the same server, if it has one (see [`Link::lender`]).
    pub(crate) fn current_for(&self, own: bool) -> (Conn, u64, Option<Arc<Lender>>) {
        let link = self.inner.link.read().unwrap();
        let lender = link.lender.clone().filter(|_| own);
        (link.conn.clone(), link.generation, lender)
    }

    /// The generation of the connection in use and its server's address.
    pub(crate) fn server(&self) -> (u64, String) {
        let link = self.inner.link.read().unwrap();
        (link.generation, link.addr.to_string())
    }

    /// The sentinels, for a `redis+sentinel://` backend.
    pub(crate) fn sentinels(&self) -> Option<&Sentinels> {
        self.inner.sentinels.as_ref()
    }

    /// The shared pub/sub connection and its watches.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// The display name: endpoint and namespace, never the password.
    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }
}

/// Every family, on one connection. A family's operations live in its
/// module (`locks`, `election`, `membership`, `jobs`, `barriers`, `graphs`,
/// `queues`).
impl Backend for RedisBackend {
    fn namespace(&self) -> &Namespace {
        self.inner.config.namespace()
    }
    fn locks(&self) -> Option<&dyn LockBackend> {
        Some(self)
    }
    fn elections(&self) -> Option<&dyn ElectionBackend> {
        Some(self)
    }
    fn groups(&self) -> Option<&dyn GroupBackend> {
        Some(self)
    }
    fn jobs(&self) -> Option<&dyn JobBackend> {
        Some(self)
    }
    fn barriers(&self) -> Option<&dyn BarrierBackend> {
        Some(self)
    }
    fn graphs(&self) -> Option<&dyn GraphBackend> {
        Some(self)
    }
    fn queues(&self) -> Option<&dyn QueueBackend> {
        Some(self)
    }
    fn topics(&self) -> Option<&dyn TopicBackend> {
        Some(self)
    }
    fn state(&self) -> Option<&dyn StateBackend> {
        Some(self)
    }
    fn breakers(&self) -> Option<&dyn BreakerBackend> {
        Some(self)
    }
    fn ops(&self) -> Option<&dyn OpsBackend> {
        Some(self)
    }
}

/// The command connection to the server at `addr`, connected (within the
/// connect timeout).
async fn connect_commands(
    config: &RedisConfig,
    addr: &ConnectionAddr,
) -> Result<ConnectionManager> {
    let (client, manager_config) = commands(config, addr)?;
    match tokio::time::timeout(
        config.connect_timeout(),
        ConnectionManager::new_with_config(client, manager_config),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(error::from_redis(config, "connect", e)),
        Err(_) => Err(error::timed_out(
            config,
            "connect",
            config.connect_timeout(),
        )),
    }
}

/// How command connections to the server at `addr` are made: the client
/// and the connection's settings.
fn commands(
    config: &RedisConfig,
    addr: &ConnectionAddr,
) -> Result<(redis::Client, ConnectionManagerConfig)> {
    let client = redis_client(config, addr, ProtocolVersion::RESP2)?;
    // No response timeout of the redis crate's own: every request on
    // this connection runs under the operation timeout (`eval`), which
    // also bounds a wait for a reconnection; a
    // second timer per request would only cost time. (The crate's
    // response timeout never triggers a reconnection either.)
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout()))
        .set_response_timeout(None)
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_millis(500));
    Ok((client, manager_config))
}

/// The connections confirmed writes to the server at `addr` borrow, when
/// `config` confirms writes (see [`lender`](crate::lender)), with every
/// script loaded on that server first through `conn`.
///
/// A `WAIT` blocks whenever a replica lags, also after a request that did
/// not run: a confirmed write answered `NOSCRIPT` would wait for its
/// replicas twice, first for nothing, and with a replica gone take twice
/// the confirmation's timeout (past the operation timeout if that is less).
/// Loaded now, scripts are missing only after a `SCRIPT FLUSH` or a restart
/// (then the first write of each waits twice, once). A server that refuses
/// to load them (an ACL without `SCRIPT`) is left to load them on first use,
/// as without confirmation.
async fn lender(
    config: &RedisConfig,
    addr: &ConnectionAddr,
    conn: &Conn,
) -> Result<Option<Arc<Lender>>> {
    if config.confirm().is_none() {
        return Ok(None);
    }
    let (client, manager_config) = commands(config, addr)?;
    let mut conn = conn.clone();
    let load = async {
        for script in crate::ops::all_scripts() {
            script.load_async(&mut conn).await?;
        }
        Ok::<_, redis::RedisError>(())
    };
    match tokio::time::timeout(config.timeout(), load).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(%addr, error = %e, "cannot load the scripts ahead of confirmed writes")
        }
        Err(_) => {
            return Err(error::timed_out(
                config,
                "load the scripts",
                config.timeout(),
            ));
        }
    }
    Ok(Some(Arc::new(Lender::new(client, manager_config))))
}

/// The pub/sub connection to the server at `addr` (RESP3, opened on first
/// use), handing what it receives to `channels`.
fn pubsub_connection(
    config: &RedisConfig,
    addr: &ConnectionAddr,
    channels: &Arc<Channels>,
) -> Result<ConnectionManager> {
    let sink = channels.clone();
    let pubsub_client = redis_client(config, addr, ProtocolVersion::RESP3)?;
    let pubsub_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout()))
        .set_response_timeout(Some(config.timeout()))
        // The crate reconnects (and subscribes again) through an outage
        // of a couple of minutes; after that only a request on this
        // connection makes it try again: the hub's own resubscription
        // sends one until it succeeds, however long the outage
        // (`Hub::keep_subscribed`), and wakes the watches once the
        // subscriptions are in effect again.
        .set_number_of_retries(config.pubsub_retries())
        .set_max_delay(Duration::from_secs(1))
        .set_push_sender(move |push: PushInfo| {
            sink.dispatch(push, 0);
            Ok::<(), std::convert::Infallible>(())
        })
        .set_automatic_resubscription();
    ConnectionManager::new_lazy_with_config(pubsub_client, pubsub_config)
        .map_err(|e| error::from_redis(config, "set up the pub/sub connection", e))
}

/// The address of a server named directly (not through sentinels).
fn direct_addr(config: &RedisConfig) -> ConnectionAddr {
    match config.endpoint() {
        Endpoint::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
        Endpoint::Tls { host, port } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        Endpoint::Unix(path) => ConnectionAddr::Unix(path.clone()),
        // Resolved by the sentinels, or routed by the cluster connection,
        // instead; never asked for here.
        Endpoint::Sentinel { .. } | Endpoint::Cluster { .. } => {
            ConnectionAddr::Tcp(String::new(), 0)
        }
    }
}

/// A redis crate client for the server at `addr`, speaking `protocol`; for
/// TLS with a CA file, trusting that file's authorities (a file that cannot
/// be read or parsed is `Error::Config` naming it).
fn redis_client(
    config: &RedisConfig,
    addr: &ConnectionAddr,
    protocol: ProtocolVersion,
) -> Result<redis::Client> {
    if cfg!(not(feature = "tls")) && matches!(config.endpoint(), Endpoint::Tls { .. }) {
        return Err(Error::config(
            "rediss:// needs TLS, which this build leaves out: enable coord-redis's `tls` \
             feature (coord's `redis-tls`)",
        ));
    }
    let info = connection_info(config, addr, protocol)?;
    let client = match (config.endpoint(), config.tls_ca_file()) {
        #[cfg(feature = "tls")]
        (Endpoint::Tls { .. }, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!(
                    "key `tls_ca_file`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(info, certs).map_err(|e| {
                Error::config(format!(
                    "key `tls_ca_file`: {}: {}",
                    path.display(),
                    config.redact(e.to_string())
                ))
            })?
        }
        _ => redis::Client::open(info)
            .map_err(|e| error::from_redis(config, "configure the connection", e))?,
    };
    Ok(client)
}

/// The redis crate's connection settings for `config` and the server at
/// `addr`, speaking `protocol`.
pub(crate) fn connection_info(
    config: &RedisConfig,
    addr: &ConnectionAddr,
    protocol: ProtocolVersion,
) -> Result<ConnectionInfo> {
    let addr = addr.clone();
    let mut redis = RedisConnectionInfo::default()
        .set_db(config.db())
        .set_protocol(protocol);
    if let Some(user) = config.username() {
        redis = redis.set_username(user);
    }
    if let Some(password) = config.password() {
        redis = redis.set_password(password);
    }
    let info = addr
        .into_connection_info()
        .map_err(|e| error::from_redis(config, "configure the connection", e))?;
    Ok(info
        .set_redis_settings(redis)
        .set_tcp_settings(TcpSettings::default().set_nodelay(true)))
}

impl fmt::Display for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.name)
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}
