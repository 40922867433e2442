//! [`RedisBackend`]: the lease operations as Lua scripts on one multiplexed,
//! self-reconnecting connection, plus a shared pub/sub connection for
//! release notifications.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use coord_api::{
    Acquire, Busy, Capability, Error, FencingToken, Grant, HolderId, Key, LeaseBackend,
    LeaseFamily, LeaseId, LeaseInfo, LeaseKind, LeaseWatch, Namespace, Release, Result,
};
use redis::{
    ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo, ProtocolVersion,
    PushInfo, RedisConnectionInfo, ServerErrorKind,
    aio::{ConnectionManager, ConnectionManagerConfig},
    io::tcp::TcpSettings,
};
use tracing::{Instrument, field::Empty};

use crate::{
    Endpoint, RedisConfig, error,
    keys::{self, Layout, Names},
    pubsub::{Channels, Hub, Wake},
    scripts,
};

/// A coord backend on Redis (standalone, or any single-slot-routing setup).
///
/// - every operation is one Lua script run by EVALSHA (loaded again
///   transparently after `SCRIPT FLUSH` or a restart), bounded by the
///   configured operation timeout: past it the call fails with
///   `Error::Unavailable` naming the endpoint, it never hangs;
/// - expiry is decided by the server's clock (`PEXPIRE`, and deadlines taken
///   from `TIME` inside the scripts);
/// - fencing tokens follow [`FencingToken::next_after`] with a per-key counter
///   and the server's `TIME`, so they keep increasing across a restart that
///   lost all data;
/// - one multiplexed connection per backend reconnects by itself; one shared
///   pub/sub connection wakes waiters when a lease is released or force
///   released (expiry publishes nothing: waiters also wake at the
///   `Busy::retry_in` the refusal carried);
/// - keys: see [`keys`](crate::keys).
///
/// `Display` names the endpoint and namespace, never the password:
/// `redis(127.0.0.1:6379/0 ns=coord)`.
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
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    name: String,
    conn: ConnectionManager,
    hub: Arc<Hub>,
}

impl RedisBackend {
    /// Connects to the server `config` names (waiting at most its connect
    /// timeout) and prepares the pub/sub connection, which opens on first
    /// use. A server that cannot be reached is `Error::Unavailable`.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend> {
        let name = config.to_string();
        let client = redis_client(&config, ProtocolVersion::RESP2)?;
        // No response timeout of the redis crate's own: every request on
        // this connection runs under the operation timeout (`run`, and the
        // leadership calls), which also bounds a wait for a reconnection; a
        // second timer per request would only cost time. (The crate's
        // response timeout never triggers a reconnection either.)
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(None)
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        let conn = match tokio::time::timeout(
            config.connect_timeout(),
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(error::from_redis(&config, "connect", e)),
            Err(_) => {
                return Err(error::timed_out(
                    &config,
                    "connect",
                    config.connect_timeout(),
                ));
            }
        };

        let channels = Arc::new(Channels::default());
        let sink = channels.clone();
        let pubsub_client = redis_client(&config, ProtocolVersion::RESP3)?;
        let pubsub_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(Some(config.timeout()))
            // Keep re-establishing subscriptions through an outage of a
            // couple of minutes; after that the next subscribe reconnects.
            .set_number_of_retries(120)
            .set_max_delay(Duration::from_secs(1))
            .set_push_sender(move |push: PushInfo| {
                sink.dispatch(push);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
        let pubsub = ConnectionManager::new_lazy_with_config(pubsub_client, pubsub_config)
            .map_err(|e| error::from_redis(&config, "set up the pub/sub connection", e))?;
        let hub = Arc::new(Hub::new(config.clone(), pubsub, channels));
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                config,
                name,
                conn,
                hub,
            }),
        })
    }

    /// Parses `url` (see [`RedisConfig::from_url`]) and connects.
    pub async fn connect_url(url: &str) -> Result<RedisBackend> {
        RedisBackend::connect(RedisConfig::from_url(url)?).await
    }

    /// The configuration this backend was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The script connection, the pub/sub hub and the display name, for the
    /// leadership operations (`leadership.rs`).
    pub(crate) fn shared(&self) -> (&ConnectionManager, &Arc<Hub>, &str) {
        (&self.inner.conn, &self.inner.hub, &self.inner.name)
    }

    /// Runs `family`'s script for `op` on `key`, passing the keys `keys`
    /// names and then the operation and what `args` appends, within the
    /// operation timeout, inside a `coord.redis` span.
    ///
    /// The EVALSHA is built in one buffer sized up front: key names, the
    /// channel and the holder are written straight into it (no `String` per
    /// name, no growth); after a NOSCRIPT reply (a `SCRIPT FLUSH`, a restarted
    /// server) the script is loaded and the call repeated once.
    #[allow(clippy::too_many_arguments)]
    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        family: LeaseFamily,
        key: &Key,
        keys: Keys,
        args: impl FnOnce(&mut redis::Cmd, &mut Names),
        holder: Option<&HolderId>,
        outcome: fn(&T) -> (&'static str, Option<i64>),
    ) -> Result<T> {
        let cfg = &self.inner.config;
        let span = tracing::debug_span!(
            "coord.redis",
            op,
            backend = %self.inner.name,
            family = family.as_str(),
            key = %key,
            holder = holder.map(tracing::field::display),
            token = Empty,
            outcome = Empty,
        );
        let mut names = Names::new(self.namespace(), family, key);
        let parts = match keys {
            Keys::All => keys::parts(family),
            Keys::Lease => &keys::parts(family)[..1],
        };
        let script = scripts::script(family);
        // sha, numkeys, the keys, op, channel, holder, ttl, kind.
        let mut cmd = redis::Cmd::with_capacity(
            parts.len() + 8,
            128 + (parts.len() + 1) * names.len()
                + holder.map_or(0, |h| h.instance().as_str().len() + 33),
        );
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(parts.len());
        for p in parts {
            names.write(&mut cmd, *p);
        }
        cmd.arg(op);
        args(&mut cmd, &mut names);
        let mut conn = self.inner.conn.clone();
        let call = async {
            match cmd.query_async::<T>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.prepare_invoke().load_async(&mut conn).await?;
                    cmd.query_async(&mut conn).await
                }
                res => res,
            }
        };
        let what = || format!("{op} {} {:?}", family.as_str(), key.as_str());
        let res = match tokio::time::timeout(cfg.timeout(), call)
            .instrument(span.clone())
            .await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error::from_redis(cfg, &what(), e)),
            Err(_) => Err(error::timed_out(cfg, &what(), cfg.timeout())),
        };
        if !span.is_disabled() {
            match &res {
                Ok(v) => {
                    let (what, tok) = outcome(v);
                    span.record("outcome", what);
                    if let Some(t) = tok {
                        span.record("token", t);
                    }
                }
                Err(e) => {
                    span.record("outcome", tracing::field::display(e));
                }
            }
        }
        res
    }

    fn layout(&self, family: LeaseFamily, key: &Key) -> Layout {
        keys::layout(self.namespace(), family, key)
    }
}

/// Which of a family's keys a script call passes.
#[derive(Clone, Copy)]
enum Keys {
    /// All of them, in script order.
    All,
    /// The first (the lease) alone: the lock operations that touch nothing
    /// else pass only it (every key passed costs the server time).
    Lease,
}

/// Appends `holder`'s text form (`instance#nonce-in-hex`, as
/// [`HolderId`]'s `Display` spells it) as the next argument of `cmd`,
/// without the formatting machinery.
fn holder_arg(cmd: &mut redis::Cmd, holder: &HolderId) {
    use std::io::Write;

    use redis::RedisWrite;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 33];
    hex[0] = b'#';
    let mut n = holder.nonce();
    for b in hex[1..].iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    let mut w = cmd.writer_for_next_arg();
    // Writing into the command's Vec cannot fail.
    let _ = w.write_all(holder.instance().as_str().as_bytes());
    let _ = w.write_all(&hex);
}

/// Appends the kind argument the scripts take.
fn kind_arg(cmd: &mut redis::Cmd, kind: LeaseKind) {
    match kind {
        LeaseKind::Exclusive => cmd.arg("e"),
        LeaseKind::Reentrant => cmd.arg("r"),
        LeaseKind::Read => cmd.arg("r"),
        LeaseKind::Write => cmd.arg("w"),
        LeaseKind::Permit { limit } => cmd.arg(limit),
    };
}

/// The kind, as named in error messages.
fn kind_name(kind: LeaseKind) -> String {
    match kind {
        LeaseKind::Permit { limit } => limit.to_string(),
        other => other.as_str().to_owned(),
    }
}

/// A TTL in whole milliseconds, rounded up (the server keeps a lease at least
/// as long as the client counts on it).
fn ttl_ms(key: &Key, ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(Error::invalid(format!("ttl for key {key:?} is zero")));
    }
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    Ok(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn millis(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn token(v: i64) -> FencingToken {
    FencingToken(v.max(0) as u64)
}

/// The keys the operations that touch only the lease pass: the lease alone
/// for the lock script, every key for the others.
fn lease_only(family: LeaseFamily) -> Keys {
    match family {
        LeaseFamily::Lock => Keys::Lease,
        _ => Keys::All,
    }
}

/// An acquire reply as `[status, token or retry ms or stored limit, holds]`:
/// an integer is a fresh lock grant (its token, one hold); arrays are
/// `[1, token, holds]`, `[0, retry ms]` or `[-1, stored limit]`.
fn acquire_reply(v: &redis::Value) -> Option<[i64; 3]> {
    use redis::Value::{Array, Int};
    match v {
        Int(tok) => Some([1, *tok, 1]),
        Array(a) => match a.as_slice() {
            [Int(1), Int(tok), Int(holds)] => Some([1, *tok, *holds]),
            [Int(s), Int(x)] if *s <= 0 => Some([*s, *x, 0]),
            _ => None,
        },
        _ => None,
    }
}

#[async_trait]
impl LeaseBackend for RedisBackend {
    fn capabilities(&self) -> Capability {
        let mut caps = Capability::lock_family();
        // TTL expiry publishes nothing; waiters wake at `Busy::retry_in`.
        caps.expiry_notifications = false;
        caps
    }

    fn namespace(&self) -> &Namespace {
        self.inner.config.namespace()
    }

    async fn acquire(&self, lease: &LeaseId, ttl: Duration) -> Result<Acquire> {
        if let LeaseKind::Permit { limit: 0 } = lease.kind {
            return Err(Error::invalid(format!(
                "semaphore {:?}: a permit limit of 0 admits nobody",
                lease.key.as_str()
            )));
        }
        let family = lease.kind.family();
        let ttl_ms = ttl_ms(&lease.key, ttl)?;
        // The lock script answers a fresh grant with its token alone;
        // everything else is an array.
        let reply: redis::Value = self
            .run(
                "acquire",
                family,
                &lease.key,
                Keys::All,
                |cmd, names| {
                    if family != LeaseFamily::Lock {
                        names.write(cmd, 'c');
                    }
                    holder_arg(cmd, &lease.holder);
                    cmd.arg(ttl_ms);
                    kind_arg(cmd, lease.kind);
                },
                Some(&lease.holder),
                |r: &redis::Value| match acquire_reply(r) {
                    Some([1, tok, _]) => ("granted", Some(tok)),
                    Some([0, _, _]) => ("busy", None),
                    _ => ("refused", None),
                },
            )
            .await?;
        match acquire_reply(&reply) {
            Some([1, tok, holds]) => Ok(Acquire::Granted(Grant {
                token: token(tok),
                holds: holds.clamp(1, u32::MAX as i64) as u32,
            })),
            Some([0, retry_ms, _]) => Ok(Acquire::Busy(Busy {
                retry_in: millis(retry_ms),
            })),
            Some([-1, stored, _]) => Err(Error::invalid(format!(
                "semaphore {:?} has live permits granted with limit {stored}; asked with limit {}",
                lease.key.as_str(),
                kind_name(lease.kind)
            ))),
            _ => Err(Error::backend(
                self,
                format!(
                    "unexpected acquire reply {reply:?} for {:?}",
                    lease.key.as_str()
                ),
            )),
        }
    }

    async fn extend(&self, lease: &LeaseId, ttl: Duration) -> Result<bool> {
        let family = lease.kind.family();
        let ttl_ms = ttl_ms(&lease.key, ttl)?;
        let held: i64 = self
            .run(
                "extend",
                family,
                &lease.key,
                Keys::All,
                |cmd, names| {
                    // The lock script takes neither the channel nor the kind.
                    let lock = family == LeaseFamily::Lock;
                    if !lock {
                        names.write(cmd, 'c');
                    }
                    holder_arg(cmd, &lease.holder);
                    cmd.arg(ttl_ms);
                    if !lock {
                        kind_arg(cmd, lease.kind);
                    }
                },
                Some(&lease.holder),
                |h: &i64| (if *h == 1 { "ok" } else { "not_held" }, None),
            )
            .await?;
        Ok(held == 1)
    }

    async fn release(&self, lease: &LeaseId) -> Result<Release> {
        let family = lease.kind.family();
        let remaining: i64 = self
            .run(
                "release",
                family,
                &lease.key,
                lease_only(family),
                |cmd, names| {
                    if family == LeaseFamily::Lock {
                        holder_arg(cmd, &lease.holder);
                        names.write(cmd, 'c');
                    } else {
                        names.write(cmd, 'c');
                        holder_arg(cmd, &lease.holder);
                        cmd.arg(0);
                        kind_arg(cmd, lease.kind);
                    }
                },
                Some(&lease.holder),
                |r: &i64| (if *r >= 0 { "ok" } else { "not_held" }, None),
            )
            .await?;
        Ok(match u32::try_from(remaining) {
            Ok(remaining) => Release::Released { remaining },
            Err(_) => Release::NotHeld,
        })
    }

    async fn force_release(&self, family: LeaseFamily, key: &Key) -> Result<usize> {
        let n: i64 = self
            .run(
                "force",
                family,
                key,
                lease_only(family),
                |cmd, names| {
                    names.write(cmd, 'c');
                    if family != LeaseFamily::Lock {
                        cmd.arg("").arg(0).arg("");
                    }
                },
                None,
                |_| ("ok", None),
            )
            .await?;
        Ok(n.max(0) as usize)
    }

    async fn inspect(&self, family: LeaseFamily, key: &Key) -> Result<Vec<LeaseInfo>> {
        type Row = (String, String, i64, i64, i64, i64);
        let rows: Vec<Row> = self
            .run(
                "inspect",
                family,
                key,
                lease_only(family),
                |cmd, names| {
                    if family != LeaseFamily::Lock {
                        names.write(cmd, 'c');
                        cmd.arg("").arg(0).arg("");
                    }
                },
                None,
                |_| ("ok", None),
            )
            .await?;
        rows.into_iter()
            .map(|(kind, holder, tok, holds, left_ms, limit)| {
                let kind = match (family, kind.as_str()) {
                    (LeaseFamily::Lock, "e") => LeaseKind::Exclusive,
                    (LeaseFamily::Lock, "r") => LeaseKind::Reentrant,
                    (LeaseFamily::RwLock, "r") => LeaseKind::Read,
                    (LeaseFamily::RwLock, "w") => LeaseKind::Write,
                    (LeaseFamily::Semaphore, "p") => LeaseKind::Permit {
                        limit: limit.clamp(0, u32::MAX as i64) as u32,
                    },
                    _ => {
                        return Err(Error::backend(
                            self,
                            format!("unknown lease kind {kind:?} stored for {:?}", key.as_str()),
                        ));
                    }
                };
                let holder = holder.parse().map_err(|e| {
                    Error::backend(
                        self,
                        format!("bad holder stored for {:?}: {e}", key.as_str()),
                    )
                })?;
                Ok(LeaseInfo {
                    kind,
                    holder,
                    token: token(tok),
                    holds: holds.clamp(1, u32::MAX as i64) as u32,
                    expires_in: millis(left_ms).unwrap_or(Duration::ZERO),
                })
            })
            .collect()
    }

    async fn subscribe(&self, family: LeaseFamily, key: &Key) -> Result<Box<dyn LeaseWatch>> {
        let layout = self.layout(family, key);
        let span = tracing::debug_span!(
            "coord.redis",
            op = "subscribe",
            backend = %self.inner.name,
            family = family.as_str(),
            key = %key,
        );
        // A release frees room for one more exclusive holder or permit:
        // wake one waiter per release. Readers all go in together.
        let wake = match family {
            LeaseFamily::Lock | LeaseFamily::Semaphore => Wake::One,
            _ => Wake::All,
        };
        let watch = self
            .inner
            .hub
            .subscribe_with(layout.channel, wake)
            .instrument(span)
            .await?;
        Ok(Box::new(watch))
    }

    /// Every call is a round trip to the server.
    fn in_process(&self) -> Option<&dyn coord_api::InProcessLeases> {
        None
    }
}

/// A redis crate client for `config`, speaking `protocol`; for TLS with a
/// CA file, trusting that file's authorities (a file that cannot be read or
/// parsed is `Error::Config` naming it).
fn redis_client(config: &RedisConfig, protocol: ProtocolVersion) -> Result<redis::Client> {
    let info = connection_info(config, protocol)?;
    let client = match (config.endpoint(), config.tls_ca_file()) {
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

/// The redis crate's connection settings for `config`, speaking `protocol`.
fn connection_info(config: &RedisConfig, protocol: ProtocolVersion) -> Result<ConnectionInfo> {
    let addr = match config.endpoint() {
        Endpoint::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
        Endpoint::Tls { host, port } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        Endpoint::Unix(path) => ConnectionAddr::Unix(path.clone()),
    };
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

#[cfg(test)]
mod tests {
    use coord_api::InstanceId;

    use super::*;

    /// The scripts store and compare the holder as `HolderId`'s `Display`
    /// spells it; `holder_arg` writes it without the formatter.
    #[test]
    fn holder_arg_writes_the_display_form() {
        let instance = InstanceId::new("web-1").unwrap();
        for nonce in [0, 1, 0xabc, u128::MAX, rand::random()] {
            let holder = HolderId::from_parts(instance, nonce);
            let mut cmd = redis::Cmd::new();
            holder_arg(&mut cmd, &holder);
            let written: Vec<Vec<u8>> = cmd
                .args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => b.to_vec(),
                    _ => panic!("not a plain argument"),
                })
                .collect();
            assert_eq!(written, [holder.to_string().into_bytes()]);
        }
    }
}
