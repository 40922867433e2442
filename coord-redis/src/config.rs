//! Where the Redis server is and how to talk to it: parsed from a URL or set
//! through [`RedisConfigBuilder`]. The password never appears in `Debug`,
//! `Display` or any error.

use std::{fmt, path::PathBuf, time::Duration};

mod cluster;
mod confirm;
mod hosts;
mod sentinel;

pub use confirm::{Confirm, DEFAULT_CONFIRM_TIMEOUT, MAX_CONFIRM_REPLICAS};

use coord_api::{
    Error, Namespace, Result,
    url::{BackendUrl, Password},
};

/// The operation timeout used when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// The connect timeout used when none is configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The keys accepted in a URL's query string and by
/// [`RedisConfigBuilder::with_config`].
pub const CONFIG_KEYS: &[&str] = &[
    "namespace",
    "timeout",
    "connect_timeout",
    "db",
    "user",
    "password",
    "tls_ca_file",
    "sentinel_user",
    "sentinel_password",
    "confirm_replicas",
    "confirm_fsync_local",
    "confirm_fsync_replicas",
    "confirm_timeout",
];

/// The port of a sentinel named without one.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// The longest master name a sentinel URL may give.
pub const MAX_MASTER_NAME: usize = 128;

/// How to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// Plain TCP (`redis://host:port`).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port (default 6379).
        port: u16,
    },
    /// TLS over TCP (`rediss://host:port`), through rustls.
    Tls {
        /// Host name (checked against the certificate) or IP address.
        host: String,
        /// Port (default 6379).
        port: u16,
    },
    /// A unix socket (`redis+unix:///path` or `unix:///path`).
    Unix(PathBuf),
    /// The master Redis Sentinel names `master`
    /// (`redis+sentinel://host1:26379,host2:26379/mymaster`): asked of the
    /// sentinels at connect and again whenever the master may have moved.
    Sentinel {
        /// The sentinels, host and port, in the order they are asked.
        sentinels: Vec<(String, u16)>,
        /// The master's name in the sentinels' configuration.
        master: String,
    },
    /// A Redis Cluster, found through any of its `nodes` (seed nodes: the
    /// rest of the cluster and its slots are learnt from them):
    /// `redis+cluster://host1:6379,host2:6379`.
    Cluster {
        /// The seed nodes, host and port, in the order they are tried.
        nodes: Vec<(String, u16)>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } | Endpoint::Tls { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } | Endpoint::Tls { host, port } => {
                write!(f, "{host}:{port}")
            }
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Sentinel { sentinels, master } => {
                write_hosts(f, sentinels)?;
                write!(f, "/{master}")
            }
            Endpoint::Cluster { nodes } => write_hosts(f, nodes),
        }
    }
}

/// `host:port,[v6]:port,…`.
fn write_hosts(f: &mut fmt::Formatter<'_>, hosts: &[(String, u16)]) -> fmt::Result {
    for (i, (host, port)) in hosts.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        if host.contains(':') {
            write!(f, "{sep}[{host}]:{port}")?;
        } else {
            write!(f, "{sep}{host}:{port}")?;
        }
    }
    Ok(())
}

/// The configuration of a [`RedisBackend`](crate::RedisBackend).
///
/// ```
/// use coord_redis::RedisConfig;
/// use std::time::Duration;
/// let cfg = RedisConfig::from_url("redis://app:s3cret@10.0.0.5:6380/2?namespace=billing&timeout=500ms")?;
/// assert_eq!(cfg.namespace().as_str(), "billing");
/// assert_eq!(cfg.db(), 2);
/// assert_eq!(cfg.timeout(), Duration::from_millis(500));
/// assert_eq!(cfg.to_string(), "redis(10.0.0.5:6380/2 ns=billing)");
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// # Ok::<(), coord_api::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    endpoint: Endpoint,
    db: i64,
    username: Option<String>,
    password: Option<Password>,
    namespace: Namespace,
    timeout: Duration,
    connect_timeout: Duration,
    tls_ca_file: Option<PathBuf>,
    sentinel_username: Option<String>,
    sentinel_password: Option<Password>,
    confirm: Option<Confirm>,
    confirm_keys: confirm::ConfirmKeys,
    /// How many times in a row the redis crate tries to reconnect the
    /// pub/sub connection before it waits for a request to try again.
    pubsub_retries: usize,
}

impl RedisConfig {
    /// Parses `redis://[user:pass@]host[:port][/db][?key=value&...]`,
    /// `rediss://...` (TLS), `redis+unix:///path[?...]` or `unix:///path[?...]`
    /// with [`BackendUrl`] (its syntax and error rules apply).
    ///
    /// Redis Sentinel: `redis+sentinel://[user:pass@]host1[:port1],host2[:port2],…/master[/db][?...]`
    /// names the sentinels (port 26379 when none is given) and the master's
    /// name; user and password are the Redis servers' (master and replicas),
    /// and `sentinel_user` / `sentinel_password` in the query, if the
    /// sentinels require them, the sentinels'. The backend asks the
    /// sentinels where the master is at connect and follows it through a
    /// failover (see [`RedisBackend`](crate::RedisBackend)). TLS through
    /// Sentinel is not offered yet.
    ///
    /// ```
    /// use coord_redis::{Endpoint, RedisConfig};
    /// let cfg = RedisConfig::from_url(
    ///     "redis+sentinel://:pw@10.0.0.1,10.0.0.2:26380/mymaster/1?sentinel_password=spw",
    /// )?;
    /// assert_eq!(cfg.endpoint(), &Endpoint::Sentinel {
    ///     sentinels: vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26380)],
    ///     master: "mymaster".into(),
    /// });
    /// assert_eq!(cfg.db(), 1);
    /// assert_eq!(cfg.to_string(), "redis+sentinel(10.0.0.1:26379,10.0.0.2:26380/mymaster/1 ns=coord)");
    /// # Ok::<(), coord_api::Error>(())
    /// ```
    ///
    /// Redis Cluster: `redis+cluster://[user:pass@]host1[:port1],host2[:port2],…[/0][?...]`
    /// names seed nodes (port 6379 when none is given; any one that answers
    /// is enough: the others and the slots are learnt from it). A cluster
    /// has only database 0. TLS to a cluster is not offered yet. See
    /// [`RedisBackend`](crate::RedisBackend) for what changes on a cluster.
    ///
    /// ```
    /// use coord_redis::{Endpoint, RedisConfig};
    /// let cfg = RedisConfig::from_url("redis+cluster://app:pw@10.0.0.1,10.0.0.2:7001?namespace=jobs")?;
    /// assert_eq!(cfg.endpoint(), &Endpoint::Cluster {
    ///     nodes: vec![("10.0.0.1".into(), 6379), ("10.0.0.2".into(), 7001)],
    /// });
    /// assert_eq!(cfg.to_string(), "redis+cluster(10.0.0.1:6379,10.0.0.2:7001/0 ns=jobs)");
    /// # Ok::<(), coord_api::Error>(())
    /// ```
    ///
    /// Query keys: see [`CONFIG_KEYS`]; durations take a unit (`250ms`, `3s`,
    /// `1m`). Unknown keys are [`Error::Config`] naming the key.
    /// Percent-encode reserved characters in the user name and password
    /// (`/` as `%2F`, `?` as `%3F`, `#` as `%23`, `@` as `%40`, `:` as `%3A`,
    /// `%` as `%25`; in a `password=` query value also `&` as `%26`).
    pub fn from_url(url: &str) -> Result<RedisConfig> {
        RedisConfig::builder().with_url(url).build()
    }

    /// The configuration of an already parsed URL (see
    /// [`from_url`](Self::from_url)), whose query keys not taken yet must
    /// all be [`CONFIG_KEYS`]. `coord::connect` takes its own keys
    /// (`instance`) out first and hands the rest here.
    pub fn from_backend_url(url: BackendUrl) -> Result<RedisConfig> {
        RedisConfig::builder().with_backend_url(url).build()
    }

    /// A builder; with nothing set it builds `redis://127.0.0.1:6379/0`
    /// in the namespace `coord`.
    pub fn builder() -> RedisConfigBuilder {
        RedisConfigBuilder::default()
    }

    /// Where the server is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The database number.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// The ACL user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether a password is configured (it is never handed out).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_ref().map(Password::expose)
    }

    /// The namespace every key lives in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The same configuration bound to another namespace.
    pub fn with_namespace(mut self, namespace: Namespace) -> RedisConfig {
        self.namespace = namespace;
        self
    }

    /// For tests only (not a promise): how many times in a row the redis
    /// crate tries to reconnect the pub/sub connection (120 by default,
    /// about three minutes) before it leaves that to the hub.
    #[doc(hidden)]
    pub fn with_pubsub_retries(mut self, retries: usize) -> RedisConfig {
        self.pubsub_retries = retries;
        self
    }

    pub(crate) fn pubsub_retries(&self) -> usize {
        self.pubsub_retries
    }

    /// How long one operation may take before it fails with
    /// `Error::Unavailable` (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long connecting may take (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// For `rediss://`: a PEM file with the certificate authorities to trust
    /// instead of the system's (`tls_ca_file=/path/ca.pem`), e.g. a private
    /// CA. `None`: the system's trust store.
    pub fn tls_ca_file(&self) -> Option<&std::path::Path> {
        self.tls_ca_file.as_deref()
    }

    /// For [`Endpoint::Sentinel`]: the sentinels' ACL user name, if any.
    pub fn sentinel_username(&self) -> Option<&str> {
        self.sentinel_username.as_deref()
    }

    /// Whether a password for the sentinels is configured (it is never
    /// handed out).
    pub fn has_sentinel_password(&self) -> bool {
        self.sentinel_password.is_some()
    }

    pub(crate) fn sentinel_password(&self) -> Option<&str> {
        self.sentinel_password.as_ref().map(Password::expose)
    }

    /// Replaces any occurrence of a password (the servers', the sentinels')
    /// in `text` (for messages that quote a server or library error).
    pub(crate) fn redact(&self, mut text: String) -> String {
        for p in [self.password(), self.sentinel_password()]
            .into_iter()
            .flatten()
        {
            if !p.is_empty() && text.contains(p) {
                text = text.replace(p, "***");
            }
        }
        text
    }
}

impl fmt::Display for RedisConfig {
    /// `redis(host:port/db ns=…)`; `rediss(…)` for TLS; `redis(unix:/path/db ns=…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.endpoint {
            Endpoint::Tls { .. } => "rediss",
            Endpoint::Sentinel { .. } => "redis+sentinel",
            Endpoint::Cluster { .. } => "redis+cluster",
            _ => "redis",
        };
        write!(
            f,
            "{scheme}({}/{} ns={})",
            self.endpoint, self.db, self.namespace
        )
    }
}

/// Builds a [`RedisConfig`] from a URL, `key = value` pairs and typed
/// setters; later settings override earlier ones, and all of them override
/// the URL.
///
/// ```
/// use coord_redis::RedisConfig;
/// use std::time::Duration;
/// let cfg = RedisConfig::builder()
///     .with_url("redis://localhost:6379/0")
///     .with_config("namespace", "jobs")
///     .timeout(Duration::from_secs(1))
///     .build()?;
/// assert_eq!(cfg.to_string(), "redis(localhost:6379/0 ns=jobs)");
/// assert!(RedisConfig::builder().with_config("colour", "blue").build().is_err());
/// # Ok::<(), coord_api::Error>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct RedisConfigBuilder {
    url: Option<UrlSource>,
    settings: Vec<Setting>,
}

#[derive(Clone)]
enum UrlSource {
    Text(String),
    Parsed(BackendUrl),
}

#[derive(Clone)]
enum Setting {
    Pair(String, String),
    Endpoint(Endpoint),
    Db(i64),
    Username(String),
    Password(Password),
    Timeout(Duration),
    ConnectTimeout(Duration),
    Confirm(Confirm),
}

impl fmt::Debug for RedisConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfigBuilder")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl RedisConfigBuilder {
    /// Starts from a URL (see [`RedisConfig::from_url`]); parsed by
    /// [`build`](Self::build).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(UrlSource::Text(url.into()));
        self
    }

    /// Starts from an already parsed URL (see
    /// [`RedisConfig::from_backend_url`]).
    pub fn with_backend_url(mut self, url: BackendUrl) -> Self {
        self.url = Some(UrlSource::Parsed(url));
        self
    }

    /// Sets one of [`CONFIG_KEYS`] from text, as in a URL query. Checked by
    /// [`build`](Self::build).
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push(Setting::Pair(key.into(), value.into()));
        self
    }

    /// Connects over plain TCP.
    pub fn tcp(mut self, host: impl Into<String>, port: u16) -> Self {
        let host = host.into();
        self.settings
            .push(Setting::Endpoint(Endpoint::Tcp { host, port }));
        self
    }

    /// Connects over TLS.
    pub fn tls(mut self, host: impl Into<String>, port: u16) -> Self {
        let host = host.into();
        self.settings
            .push(Setting::Endpoint(Endpoint::Tls { host, port }));
        self
    }

    /// Connects through a unix socket.
    pub fn unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings
            .push(Setting::Endpoint(Endpoint::Unix(path.into())));
        self
    }

    /// Finds the master named `master` through the sentinels at `sentinels`
    /// (host and port each), as `redis+sentinel://` does.
    pub fn sentinel(
        mut self,
        sentinels: impl IntoIterator<Item = (String, u16)>,
        master: impl Into<String>,
    ) -> Self {
        self.settings.push(Setting::Endpoint(Endpoint::Sentinel {
            sentinels: sentinels.into_iter().collect(),
            master: master.into(),
        }));
        self
    }

    /// Sets the database number.
    pub fn db(mut self, db: i64) -> Self {
        self.settings.push(Setting::Db(db));
        self
    }

    /// Sets the ACL user name.
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.settings.push(Setting::Username(user.into()));
        self
    }

    /// Sets the password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.settings
            .push(Setting::Password(Password::new(password)));
        self
    }

    /// Sets the namespace (validated by [`build`](Self::build)).
    pub fn namespace(self, namespace: &str) -> Self {
        self.with_config("namespace", namespace)
    }

    /// Sets the operation timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.push(Setting::Timeout(timeout));
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.push(Setting::ConnectTimeout(timeout));
        self
    }

    /// For `rediss://`: trusts the certificate authorities in this PEM file
    /// instead of the system's (see [`RedisConfig::tls_ca_file`]).
    pub fn tls_ca_file(self, path: impl Into<PathBuf>) -> Self {
        let path: PathBuf = path.into();
        self.with_config("tls_ca_file", path.to_string_lossy())
    }

    /// Checks everything and builds the configuration.
    pub fn build(self) -> Result<RedisConfig> {
        let mut cfg = RedisConfig {
            endpoint: Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 6379,
            },
            db: 0,
            username: None,
            password: None,
            namespace: Namespace::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_ca_file: None,
            sentinel_username: None,
            sentinel_password: None,
            confirm: None,
            confirm_keys: Default::default(),
            pubsub_retries: 120,
        };
        match self.url {
            Some(UrlSource::Text(url)) => from_url(BackendUrl::parse(&url)?, &mut cfg)?,
            Some(UrlSource::Parsed(url)) => from_url(url, &mut cfg)?,
            None => {}
        }
        for s in self.settings {
            match s {
                Setting::Pair(k, v) => apply_pair(&mut cfg, &k, &v)?,
                Setting::Endpoint(e) => cfg.endpoint = e,
                Setting::Db(db) => cfg.db = check_db(db).map_err(|e| prefixed("db", e))?,
                Setting::Username(u) => cfg.username = Some(u),
                Setting::Password(p) => cfg.password = Some(p),
                Setting::Timeout(t) => {
                    cfg.timeout = check_timeout(t).map_err(|e| prefixed("timeout", e))?
                }
                Setting::ConnectTimeout(t) => {
                    cfg.connect_timeout =
                        check_timeout(t).map_err(|e| prefixed("connect_timeout", e))?
                }
                Setting::Confirm(c) => confirm::set(&mut cfg, c),
            }
        }
        confirm::resolve(&mut cfg)?;
        check_endpoint(&cfg)?;
        Ok(cfg)
    }
}

/// What only some endpoints take, and a sentinel or cluster endpoint's own
/// rules.
fn check_endpoint(cfg: &RedisConfig) -> Result<()> {
    match &cfg.endpoint {
        Endpoint::Sentinel { sentinels, master } => {
            if sentinels.is_empty() {
                return Err(Error::config(
                    "redis+sentinel: no sentinel given, as in \
                     `redis+sentinel://host1:26379,host2:26379/mymaster`",
                ));
            }
            sentinel::check_master_name(master)?;
            if cfg.tls_ca_file.is_some() {
                return Err(Error::config(
                    "key `tls_ca_file`: TLS through Redis Sentinel is not offered yet",
                ));
            }
        }
        Endpoint::Cluster { nodes } => cluster::check(cfg, nodes)?,
        _ => {}
    }
    let sentinel = matches!(cfg.endpoint, Endpoint::Sentinel { .. });
    if !sentinel && (cfg.sentinel_username.is_some() || cfg.sentinel_password.is_some()) {
        return Err(Error::config(
            "keys `sentinel_user` and `sentinel_password` are for redis+sentinel:// only",
        ));
    }
    Ok(())
}

/// A `with_config` pair: errors name the key (the caller's, not a URL's).
fn apply_pair(cfg: &mut RedisConfig, key: &str, value: &str) -> Result<()> {
    let Some(&known) = CONFIG_KEYS.iter().find(|k| **k == key) else {
        let shown: String = key.chars().take(64).flat_map(char::escape_debug).collect();
        return Err(Error::config(format!(
            "unknown redis config key `{shown}`; known keys: {}",
            CONFIG_KEYS.join(", ")
        )));
    };
    apply(cfg, known, value).map_err(|e| match e {
        Error::Config { message } => Error::config(format!("key `{key}`: {message}")),
        other => other,
    })
}

/// Sets one of [`CONFIG_KEYS`]. Errors do not name the key: the caller does.
fn apply(cfg: &mut RedisConfig, key: &str, value: &str) -> Result<()> {
    if confirm::apply(cfg, key, value)? {
        return Ok(());
    }
    match key {
        "namespace" => {
            cfg.namespace = Namespace::new(value).map_err(|e| match e {
                Error::InvalidArgument { message } => Error::config(message),
                other => other,
            })?
        }
        "timeout" => cfg.timeout = check_timeout(parse_duration(value)?)?,
        "connect_timeout" => cfg.connect_timeout = check_timeout(parse_duration(value)?)?,
        "db" => {
            cfg.db = check_db(
                value
                    .parse()
                    .map_err(|_| Error::config(format!("{value:?} is not a database number")))?,
            )?
        }
        "user" => cfg.username = Some(value.to_owned()).filter(|u| !u.is_empty()),
        "password" => cfg.password = Some(Password::new(value)),
        "tls_ca_file" => {
            cfg.tls_ca_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
        }
        "sentinel_user" => cfg.sentinel_username = Some(value.to_owned()).filter(|u| !u.is_empty()),
        "sentinel_password" => cfg.sentinel_password = Some(Password::new(value)),
        other => unreachable!("{other} is not one of CONFIG_KEYS"),
    }
    Ok(())
}

fn check_db(db: i64) -> Result<i64> {
    if db < 0 {
        return Err(Error::config(format!(
            "{db} is negative; a database number is 0 or more"
        )));
    }
    Ok(db)
}

fn check_timeout(t: Duration) -> Result<Duration> {
    if t.is_zero() {
        return Err(Error::config("must be above zero"));
    }
    Ok(t)
}

/// `250ms`, `3s`, `2m`.
fn parse_duration(value: &str) -> Result<Duration> {
    let bad = || {
        Error::config(format!(
            "{value:?} is not a duration (write e.g. `250ms`, `3s` or `1m`)"
        ))
    };
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = value.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

/// `error` naming the setter's key.
fn prefixed(key: &str, error: Error) -> Error {
    match error {
        Error::Config { message } => Error::config(format!("key `{key}`: {message}")),
        other => other,
    }
}

/// Fills `cfg` from `url`. Errors never quote the URL's user-info or path:
/// a password with an unencoded reserved character spills into them.
fn from_url(mut url: BackendUrl, cfg: &mut RedisConfig) -> Result<()> {
    let mut db_in_path = false;
    match url.scheme() {
        "redis" | "rediss" => {
            let host = url.host().ok_or_else(|| {
                Error::config("redis URL: the host is missing, as in `redis://host:6379/0`")
            })?;
            let (host, port) = (host.to_owned(), url.port().unwrap_or(6379));
            hosts::check("redis", std::slice::from_ref(&(host.clone(), port)))?;
            cfg.endpoint = if url.scheme() == "rediss" {
                Endpoint::Tls { host, port }
            } else {
                Endpoint::Tcp { host, port }
            };
            let db = url.path().trim_start_matches('/');
            db_in_path = !db.is_empty();
            if db_in_path {
                let db = db.parse().map_err(|_| {
                    Error::config(
                        "redis URL: the path is not a database number, as in \
                         `redis://host:6379/0` (not shown, since it may hold part of a password: \
                         write `/` in a password as `%2F`)",
                    )
                })?;
                cfg.db = check_db(db).map_err(|e| prefixed("db", e))?;
            }
            cfg.username = url.username().map(str::to_owned);
            cfg.password = url.password().cloned();
        }
        "redis+sentinel" => db_in_path = sentinel::from_url(&mut url, cfg)?,
        "redis+cluster" => cluster::from_url(&mut url, cfg)?,
        "rediss+cluster" => {
            return Err(Error::config(
                "redis URL: TLS to a Redis Cluster (rediss+cluster://) is not offered yet",
            ));
        }
        "rediss+sentinel" => {
            return Err(Error::config(
                "redis URL: TLS through Redis Sentinel (rediss+sentinel://) is not offered yet",
            ));
        }
        "redis+unix" | "unix" => {
            if url.host().is_some() || url.port().is_some() {
                return Err(Error::config(
                    "redis URL: a unix socket URL has no host or port: write \
                     `redis+unix:///run/redis.sock` (three slashes)",
                ));
            }
            if url.username().is_some() || url.password().is_some() {
                return Err(Error::config(
                    "redis URL: a unix socket URL takes its user name and password in the \
                     query: `unix:///run/redis.sock?user=<user>&password=<password>`",
                ));
            }
            if !url.path().starts_with('/') {
                return Err(Error::config(
                    "redis URL: a unix socket URL needs an absolute path, as in \
                     `redis+unix:///run/redis.sock`",
                ));
            }
            cfg.endpoint = Endpoint::Unix(PathBuf::from(url.path()));
        }
        other => {
            // Without `//` the "scheme" may be a user name (`user:pass@host`).
            let scheme = if url.has_authority() {
                format!(" `{other}`")
            } else {
                String::new()
            };
            return Err(Error::config(format!(
                "redis URL: unknown scheme{scheme} (expected redis://, rediss://, \
                 redis+unix://, unix://, redis+sentinel:// or redis+cluster://)"
            )));
        }
    }
    if db_in_path {
        url.take_with("db", |_| -> Result<()> {
            Err(Error::config(
                "the database is named twice, in the URL's path and as key `db`: name it once",
            ))
        })?;
    }
    for &key in CONFIG_KEYS {
        url.take_with(key, |value| apply(cfg, key, value))?;
    }
    url.deny_unknown_keys()
}

#[cfg(test)]
mod tests;
