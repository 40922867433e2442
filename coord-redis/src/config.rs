//! Where the Redis server is and how to talk to it: parsed from a URL or set
//! through [`RedisConfigBuilder`]. The password never appears in `Debug`,
//! `Display` or any error.

use std::{fmt, path::PathBuf, time::Duration};

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
}

impl RedisConfig {
    /// Parses `redis://[user:pass@]host[:port][/db][?key=value&...]`,
    /// `rediss://...` (TLS), `redis+unix:///path[?...]` or `unix:///path[?...]`
    /// with [`BackendUrl`] (its syntax and error rules apply).
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
            }
        }
        Ok(cfg)
    }
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
    match url.scheme() {
        "redis" | "rediss" => {
            let host = url.host().ok_or_else(|| {
                Error::config("redis URL: the host is missing, as in `redis://host:6379/0`")
            })?;
            let (host, port) = (host.to_owned(), url.port().unwrap_or(6379));
            cfg.endpoint = if url.scheme() == "rediss" {
                Endpoint::Tls { host, port }
            } else {
                Endpoint::Tcp { host, port }
            };
            let db = url.path().trim_start_matches('/');
            if !db.is_empty() {
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
                 redis+unix:// or unix://)"
            )));
        }
    }
    for &key in CONFIG_KEYS {
        url.take_with(key, |value| apply(cfg, key, value))?;
    }
    url.deny_unknown_keys()
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

    /// Issue 21.3: a password with reserved characters left unencoded is
    /// not echoed by any error, whichever part of the URL it spills into.
    #[test]
    fn a_password_spilling_into_other_parts_is_not_echoed() {
        let secret = "Tr0ub4dor";
        for url in [
            "redis://app:Tr0ub4dor/x@host:6379/0",
            "redis://app:1234/Tr0ub4dor@host:6379/0",
            "redis://:x?Tr0ub4dor@host/0",
            "redis://u:12?Tr0ub4dor@host/0",
            "redis://u:12?Tr0ub4dor=1@host/0",
            "redis://u:12?db=Tr0ub4dor@host/0",
            "redis://u:12#Tr0ub4dor@host/0",
            "redis://h:6379/0?password=x&Tr0ub4dor",
            "redis://h:6379/0?password=x&Tr0ub4dor=1",
            "redis://h:6379/0?password=x&timeout=Tr0ub4dor",
            "unix:///s?password=x&Tr0ub4dor=1",
        ] {
            let e = RedisConfig::from_url(url).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{url}: {e:?}");
            let (shown, debug) = (e.to_string(), format!("{e:?}"));
            assert!(!shown.contains(secret), "{url}: {shown}");
            assert!(!debug.contains(secret), "{url}: {debug}");
            assert!(shown.contains('%'), "says how to encode: {url}: {shown}");
        }
        // Without `//`, what looks like a scheme may be the user name.
        let e = RedisConfig::from_url("app:Tr0ub4dor@host:6379").unwrap_err();
        assert!(!e.to_string().contains("app") && !format!("{e:?}").contains("app"));
        let e = RedisConfig::from_url("etcd://host").unwrap_err();
        assert!(e.to_string().contains("`etcd`"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_found_after_percent_decoding() {
        for url in [
            "redis://h/0?namespace=a&namesp%61ce=b",
            "unix:///s?namespace=a&namesp%61ce=b",
            "redis://h/0?db=1&%64b=2",
        ] {
            let e = RedisConfig::from_url(url).unwrap_err();
            assert!(e.to_string().contains("given twice"), "{url}: {e}");
        }
    }

    #[test]
    fn a_long_value_is_cut() {
        let long = "9".repeat(1 << 20);
        let e = RedisConfig::from_url(&format!("redis://h/0?timeout={long}")).unwrap_err();
        assert!(e.to_string().contains("`timeout`"), "{e}");
        assert!(e.to_string().len() < 600, "{} bytes", e.to_string().len());
        assert!(format!("{e:?}").len() < 700);
    }

    #[test]
    fn unix_urls_have_no_host_port_or_user_info() {
        for url in [
            "unix://host/run/redis.sock",
            "unix://:1/s",
            "unix://u:p@/s",
            "redis+unix:relative.sock",
        ] {
            assert!(RedisConfig::from_url(url).is_err(), "{url}");
        }
        let c = RedisConfig::from_url("unix:///run/my%20redis.sock").unwrap();
        assert_eq!(c.endpoint(), &Endpoint::Unix("/run/my redis.sock".into()));
    }

    #[test]
    fn a_parsed_url_keeps_its_keys_taken() {
        let mut url = BackendUrl::parse("redis://h:1/2?instance=w&namespace=n").unwrap();
        assert_eq!(url.take("instance").as_deref(), Some("w"));
        let c = RedisConfig::from_backend_url(url).unwrap();
        assert_eq!(c.to_string(), "redis(h:1/2 ns=n)");
        // A key nobody took is refused, and the known ones listed.
        let e = RedisConfig::from_backend_url(BackendUrl::parse("redis://h?instance=w").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("`instance`"), "{e}");
        assert!(e.to_string().contains("tls_ca_file"), "{e}");
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
