//! Where the Redis server is and how to talk to it: parsed from a URL or set
//! through [`RedisConfigBuilder`]. The password never appears in `Debug`,
//! `Display` or any error.

use std::{fmt, path::PathBuf, time::Duration};

use coord_api::{Error, Namespace, Result};

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
];

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
        }
    }
}

/// A password that does not print.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Password(pub(crate) String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
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
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    endpoint: Endpoint,
    db: i64,
    username: Option<String>,
    password: Option<Password>,
    namespace: Namespace,
    timeout: Duration,
    connect_timeout: Duration,
    tls_ca_file: Option<PathBuf>,
}

impl RedisConfig {
    /// Parses `redis://[user:pass@]host[:port][/db][?key=value&...]`,
    /// `rediss://...` (TLS), `redis+unix:///path[?...]` or `unix:///path[?...]`.
    /// Query keys: see [`CONFIG_KEYS`]; durations take a unit (`250ms`, `3s`,
    /// `1m`). Unknown keys are [`Error::Config`] naming the key.
    /// Percent-encode reserved characters in the user name and password.
    pub fn from_url(url: &str) -> Result<RedisConfig> {
        RedisConfig::builder().with_url(url).build()
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
        self.password.as_ref().map(|p| p.0.as_str())
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

    /// Replaces any occurrence of the password in `text` (for messages that
    /// quote a server or library error).
    pub(crate) fn redact(&self, text: String) -> String {
        match self.password() {
            Some(p) if !p.is_empty() && text.contains(p) => text.replace(p, "***"),
            _ => text,
        }
    }
}

impl fmt::Display for RedisConfig {
    /// `redis(host:port/db ns=…)`; `rediss(…)` for TLS; `redis(unix:/path/db ns=…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.endpoint {
            Endpoint::Tls { .. } => "rediss",
            _ => "redis",
        };
        write!(
            f,
            "{scheme}({}/{} ns={})",
            self.endpoint, self.db, self.namespace
        )
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("endpoint", &self.endpoint)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
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
    url: Option<String>,
    settings: Vec<Setting>,
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
        self.url = Some(url.into());
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
            .push(Setting::Password(Password(password.into())));
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
        };
        if let Some(url) = &self.url {
            parse_url(url, &mut cfg)?;
        }
        for s in self.settings {
            match s {
                Setting::Pair(k, v) => apply(&mut cfg, &k, &v)?,
                Setting::Endpoint(e) => cfg.endpoint = e,
                Setting::Db(db) => cfg.db = check_db(db)?,
                Setting::Username(u) => cfg.username = Some(u),
                Setting::Password(p) => cfg.password = Some(p),
                Setting::Timeout(t) => cfg.timeout = check_timeout("timeout", t)?,
                Setting::ConnectTimeout(t) => {
                    cfg.connect_timeout = check_timeout("connect_timeout", t)?
                }
            }
        }
        Ok(cfg)
    }
}

fn apply(cfg: &mut RedisConfig, key: &str, value: &str) -> Result<()> {
    match key {
        "namespace" => {
            cfg.namespace =
                Namespace::new(value).map_err(|e| Error::config(format!("key `namespace`: {e}")))?
        }
        "timeout" => cfg.timeout = check_timeout(key, parse_duration(key, value)?)?,
        "connect_timeout" => cfg.connect_timeout = check_timeout(key, parse_duration(key, value)?)?,
        "db" => cfg.db = check_db(parse_db(value)?)?,
        "user" => cfg.username = Some(value.to_owned()).filter(|u| !u.is_empty()),
        "password" => cfg.password = Some(Password(value.to_owned())),
        "tls_ca_file" => {
            cfg.tls_ca_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
        }
        other => {
            return Err(Error::config(format!(
                "unknown redis config key `{other}`; known keys: {}",
                CONFIG_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

fn check_db(db: i64) -> Result<i64> {
    if db < 0 {
        return Err(Error::config(format!(
            "key `db`: {db} is negative; a database number is 0 or more"
        )));
    }
    Ok(db)
}

fn parse_db(value: &str) -> Result<i64> {
    value
        .parse()
        .map_err(|_| Error::config(format!("key `db`: {value:?} is not a database number")))
}

fn check_timeout(key: &str, t: Duration) -> Result<Duration> {
    if t.is_zero() {
        return Err(Error::config(format!("key `{key}`: must be above zero")));
    }
    Ok(t)
}

/// `250ms`, `3s`, `2m`.
fn parse_duration(key: &str, value: &str) -> Result<Duration> {
    let bad = || {
        Error::config(format!(
            "key `{key}`: {value:?} is not a duration (write e.g. `250ms`, `3s` or `1m`)"
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

/// Fills `cfg` from `url`. Errors never quote the URL: it may hold a password.
fn parse_url(url: &str, cfg: &mut RedisConfig) -> Result<()> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Error::config("redis URL: expected `redis://`, `rediss://`, `redis+unix://` or `unix://`")
    })?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    match scheme {
        "redis" | "rediss" => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let hostport = match authority.rsplit_once('@') {
                Some((userinfo, hostport)) => {
                    let (user, pass) = match userinfo.split_once(':') {
                        Some((u, p)) => (u, Some(p)),
                        None => (userinfo, None),
                    };
                    let user = percent_decode("user name", user)?;
                    cfg.username = Some(user).filter(|u| !u.is_empty());
                    if let Some(p) = pass {
                        cfg.password = Some(Password(percent_decode("password", p)?));
                    }
                    hostport
                }
                None => authority,
            };
            let (host, port) = split_host_port(hostport)?;
            cfg.endpoint = if scheme == "rediss" {
                Endpoint::Tls { host, port }
            } else {
                Endpoint::Tcp { host, port }
            };
            let db = path.trim_start_matches('/');
            if !db.is_empty() {
                cfg.db = check_db(parse_db(db)?)?;
            }
        }
        "redis+unix" | "unix" => {
            let path = percent_decode("socket path", rest)?;
            if !path.starts_with('/') {
                return Err(Error::config(
                    "redis URL: a unix socket URL needs an absolute path, as in `redis+unix:///run/redis.sock`",
                ));
            }
            cfg.endpoint = Endpoint::Unix(PathBuf::from(path));
        }
        other => {
            return Err(Error::config(format!(
                "redis URL: unknown scheme `{other}` (expected redis, rediss, redis+unix or unix)"
            )));
        }
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode("query key", k)?;
        let v = percent_decode(&format!("value of `{k}`"), v)?;
        apply(cfg, &k, &v)?;
    }
    Ok(())
}

fn split_host_port(hostport: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, rest) = v6
            .split_once(']')
            .ok_or_else(|| Error::config("redis URL: unclosed `[` in the host"))?;
        (host, rest.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(Error::config("redis URL: the host is missing"));
    }
    let port = match port {
        None | Some("") => 6379,
        Some(p) => p
            .parse()
            .map_err(|_| Error::config(format!("redis URL: port {p:?} is not a port number")))?,
    };
    Ok((host.to_owned(), port))
}

fn percent_decode(what: &str, s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::config(format!("redis URL: bad percent-encoding in the {what}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::config(format!("redis URL: the {what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let c = RedisConfig::from_url(
            "redis://bob:p%40ss%3Aw0rd@example.com:7000/3?namespace=ns1&timeout=2s&connect_timeout=150ms",
        )
        .unwrap();
        assert_eq!(
            c.endpoint(),
            &Endpoint::Tcp {
                host: "example.com".into(),
                port: 7000
            }
        );
        assert_eq!(c.db(), 3);
        assert_eq!(c.username(), Some("bob"));
        assert_eq!(c.password(), Some("p@ss:w0rd"));
        assert_eq!(c.namespace().as_str(), "ns1");
        assert_eq!(c.timeout(), Duration::from_secs(2));
        assert_eq!(c.connect_timeout(), Duration::from_millis(150));
        assert_eq!(c.to_string(), "redis(example.com:7000/3 ns=ns1)");
    }

    #[test]
    fn defaults_tls_ipv6_and_unix() {
        let c = RedisConfig::from_url("redis://localhost").unwrap();
        assert_eq!(c.to_string(), "redis(localhost:6379/0 ns=coord)");
        assert_eq!(c.timeout(), DEFAULT_TIMEOUT);
        let c = RedisConfig::from_url("rediss://:pw@[::1]:6380/1").unwrap();
        assert_eq!(c.to_string(), "rediss([::1]:6380/1 ns=coord)");
        assert_eq!(c.username(), None);
        let c = RedisConfig::from_url("redis+unix:///run/redis.sock?db=2&namespace=x").unwrap();
        assert_eq!(c.endpoint(), &Endpoint::Unix("/run/redis.sock".into()));
        assert_eq!(c.to_string(), "redis(unix:/run/redis.sock/2 ns=x)");
        let c = RedisConfig::from_url("unix:///tmp/r.sock?password=pw").unwrap();
        assert!(c.has_password());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = RedisConfig::from_url("redis://h/0?namepsace=x").unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        assert!(e.to_string().contains("`namepsace`"), "{e}");
        let e = RedisConfig::builder()
            .with_config("retries", "3")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("`retries`"), "{e}");
        let e = RedisConfig::from_url("redis://h/0?timeout=5").unwrap_err();
        assert!(e.to_string().contains("`timeout`"), "{e}");
        let e = RedisConfig::from_url("redis://h/0?timeout=0ms").unwrap_err();
        assert!(e.to_string().contains("`timeout`"), "{e}");
        let e = RedisConfig::from_url("redis://h/0?namespace=a:b").unwrap_err();
        assert!(e.to_string().contains("`namespace`"), "{e}");
        assert!(RedisConfig::from_url("memory://").is_err());
        assert!(RedisConfig::from_url("redis://h:99999").is_err());
        assert!(RedisConfig::from_url("redis://h/x").is_err());
    }

    #[test]
    fn password_never_printed() {
        let secret = "hunter2-Very-Secret";
        for url in [
            format!("redis://u:{secret}@h:1/0"),
            format!("redis://u:{secret}@h:notaport/0"),
            format!("redis://u:{secret}@h:1/0?bogus=1"),
            format!("redis+unix:///s?password={secret}&bogus=1"),
        ] {
            match RedisConfig::from_url(&url) {
                Ok(c) => {
                    assert!(!format!("{c:?}").contains(secret));
                    assert!(!c.to_string().contains(secret));
                }
                Err(e) => {
                    assert!(!format!("{e:?}").contains(secret));
                    assert!(!e.to_string().contains(secret));
                }
            }
        }
        let b = RedisConfig::builder().password(secret);
        assert!(!format!("{b:?}").contains(secret));
        let c = b.build().unwrap();
        assert!(!format!("{c:?}").contains(secret));
        assert_eq!(c.redact(format!("x {secret} y")), "x *** y");
    }

    #[test]
    fn builder_overrides_url() {
        let c = RedisConfig::builder()
            .with_url("redis://a:1/1?namespace=one")
            .namespace("two")
            .tcp("b", 2)
            .db(4)
            .build()
            .unwrap();
        assert_eq!(c.to_string(), "redis(b:2/4 ns=two)");
    }
}
