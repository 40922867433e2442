//! Confirmed writes: what a write waits for after the master applied it
//! (`WAIT` / `WAITAOF`), set with [`RedisConfigBuilder::confirm`] or the
//! `confirm_*` URL keys. See [`Confirm`].

use std::time::Duration;

use coord_api::{Error, Result};

use super::{RedisConfig, RedisConfigBuilder, Setting, parse_duration};

/// The most replicas a confirmation may wait for.
pub const MAX_CONFIRM_REPLICAS: u32 = 64;

/// How long a confirmation waits when no `confirm_timeout` is given.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);

/// What every write of a [`RedisBackend`](crate::RedisBackend) waits for
/// after the master applied it, before it counts as done. A write that
/// gets fewer confirmations within `timeout` is
/// [`Error::Unconfirmed`] naming how many it got: it happened on the
/// master but may not survive a failover. Reads (inspections, listings,
/// watches' reads) wait for nothing.
///
/// - `Replicas { count, timeout }` sends `WAIT count timeout` after each
///   write on the same connection: the write (and every earlier one of
///   the connection) is in the memory of `count` replicas. A failover that
///   promotes one of them keeps it (Sentinel promotes the replica with the
///   most data, which is likely, not certain, to be one of them). It does
///   not make Redis strongly consistent: a replica that acknowledged may
///   still lose the write if it restarts before persisting it, and a
///   failover may promote a replica that did not acknowledge.
/// - `Fsync { local, replicas, timeout }` sends `WAITAOF` (Redis 7.2 and
///   later, with `appendonly yes`): the write is in the append-only file
///   on disk of the master (`local`) and of `replicas` replicas, so it
///   also survives their restart. A server without `WAITAOF` is refused at
///   connect (`Error::Config` naming its version), and so is one without
///   its append-only file when `local` is asked (`WAITAOF` would refuse
///   every write).
///
/// Each confirmation costs its write a round trip to the replicas (or a
/// disk sync). A confirmed write waits on a connection of its own, lent
/// for the time of its request (at most
/// [`CONFIRMING_CONNECTIONS`](crate::CONFIRMING_CONNECTIONS) at once; on a
/// Redis Cluster, on the shared connection, where the other requests to
/// the same node wait behind it): reads and other writes go on meanwhile.
/// Still, with a replica gone every write takes `timeout` and then fails.
/// Keep `timeout` well below the leases' TTLs; it must be below the
/// operation timeout.
///
/// ```
/// use coord_redis::{Confirm, RedisConfig};
/// use std::time::Duration;
/// let cfg = RedisConfig::from_url("redis://localhost?confirm_replicas=1&confirm_timeout=100ms")?;
/// assert_eq!(
///     cfg.confirm(),
///     Some(Confirm::Replicas { count: 1, timeout: Duration::from_millis(100) })
/// );
/// let cfg = RedisConfig::builder()
///     .confirm(Confirm::Fsync { local: true, replicas: 1, timeout: Duration::from_millis(200) })
///     .build()?;
/// assert!(matches!(cfg.confirm(), Some(Confirm::Fsync { .. })));
/// # Ok::<(), coord_api::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confirm {
    /// `WAIT count timeout`: `count` replicas (1 to
    /// [`MAX_CONFIRM_REPLICAS`]) have the write in memory.
    Replicas {
        /// How many replicas must acknowledge.
        count: u32,
        /// How long to wait for them (at least 1 ms, below the operation
        /// timeout).
        timeout: Duration,
    },
    /// `WAITAOF local replicas timeout`: the write is fsynced to the
    /// append-only file of the master (`local`) and of `replicas`
    /// replicas (at least one of the two).
    Fsync {
        /// Whether the master itself must have fsynced it.
        local: bool,
        /// How many replicas must have fsynced it (0 to
        /// [`MAX_CONFIRM_REPLICAS`]).
        replicas: u32,
        /// How long to wait (at least 1 ms, below the operation timeout).
        timeout: Duration,
    },
}

impl Confirm {
    /// How long it waits.
    pub fn timeout(&self) -> Duration {
        match *self {
            Confirm::Replicas { timeout, .. } | Confirm::Fsync { timeout, .. } => timeout,
        }
    }

    /// The command sent after each write.
    pub(crate) fn command(&self) -> redis::Cmd {
        let ms = u64::try_from(self.timeout().as_millis()).unwrap_or(u64::MAX);
        match *self {
            Confirm::Replicas { count, .. } => {
                let mut cmd = redis::cmd("WAIT");
                cmd.arg(count).arg(ms);
                cmd
            }
            Confirm::Fsync {
                local, replicas, ..
            } => {
                let mut cmd = redis::cmd("WAITAOF");
                cmd.arg(u32::from(local)).arg(replicas).arg(ms);
                cmd
            }
        }
    }

    /// Checks the counts and the timeout against the operation timeout.
    fn check(self, operation_timeout: Duration) -> Result<Confirm> {
        let (replicas, min) = match self {
            Confirm::Replicas { count, .. } => (count, 1),
            Confirm::Fsync {
                local, replicas, ..
            } => (replicas, u32::from(!local)),
        };
        if !(min..=MAX_CONFIRM_REPLICAS).contains(&replicas) {
            let what = match self {
                Confirm::Replicas { .. } => "confirm_replicas",
                Confirm::Fsync { .. } if min == 1 => {
                    "confirm_fsync_replicas (with confirm_fsync_local=false)"
                }
                Confirm::Fsync { .. } => "confirm_fsync_replicas",
            };
            return Err(Error::config(format!(
                "key `{what}`: {replicas} is out of range; it must be {min} to {MAX_CONFIRM_REPLICAS}"
            )));
        }
        let t = self.timeout();
        if t < Duration::from_millis(1) || t >= operation_timeout {
            return Err(Error::config(format!(
                "key `confirm_timeout`: {t:?} is out of range; it must be at least 1ms and \
                 below the operation timeout ({operation_timeout:?})"
            )));
        }
        Ok(self)
    }
}

/// The `confirm_*` keys as given, resolved into a [`Confirm`] by
/// [`resolve`] once every setting is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ConfirmKeys {
    replicas: Option<u32>,
    fsync_local: Option<bool>,
    fsync_replicas: Option<u32>,
    timeout: Option<Duration>,
}

impl ConfirmKeys {
    fn of(confirm: Confirm) -> ConfirmKeys {
        match confirm {
            Confirm::Replicas { count, timeout } => ConfirmKeys {
                replicas: Some(count),
                timeout: Some(timeout),
                ..ConfirmKeys::default()
            },
            Confirm::Fsync {
                local,
                replicas,
                timeout,
            } => ConfirmKeys {
                fsync_local: Some(local),
                fsync_replicas: Some(replicas),
                timeout: Some(timeout),
                ..ConfirmKeys::default()
            },
        }
    }
}

/// Sets one `confirm_*` key; `false` when `key` is not one. Errors do not
/// name the key: the caller does.
pub(super) fn apply(cfg: &mut RedisConfig, key: &str, value: &str) -> Result<bool> {
    let count = |value: &str| {
        value.parse::<u32>().map_err(|_| {
            Error::config(format!(
                "{value:?} is not a number of replicas (0 to {MAX_CONFIRM_REPLICAS})"
            ))
        })
    };
    let keys = &mut cfg.confirm_keys;
    match key {
        "confirm_replicas" => keys.replicas = Some(count(value)?),
        "confirm_fsync_replicas" => keys.fsync_replicas = Some(count(value)?),
        "confirm_fsync_local" => {
            keys.fsync_local = Some(match value {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(Error::config(format!(
                        "{value:?} is not a boolean (write `true` or `false`)"
                    )));
                }
            })
        }
        "confirm_timeout" => keys.timeout = Some(parse_duration(value)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Turns the `confirm_*` keys given into `cfg.confirm`, checked.
pub(super) fn resolve(cfg: &mut RedisConfig) -> Result<()> {
    let keys = std::mem::take(&mut cfg.confirm_keys);
    let timeout = keys.timeout.unwrap_or(DEFAULT_CONFIRM_TIMEOUT);
    let fsync = keys.fsync_local.is_some() || keys.fsync_replicas.is_some();
    let confirm = match (keys.replicas, fsync) {
        (Some(_), true) => {
            return Err(Error::config(
                "key `confirm_replicas` and keys `confirm_fsync_*` exclude each other: \
                 `confirm_replicas` waits for replicas' memory (WAIT), `confirm_fsync_*` for \
                 disks (WAITAOF)",
            ));
        }
        (Some(count), false) => Confirm::Replicas { count, timeout },
        (None, true) => Confirm::Fsync {
            local: keys.fsync_local.unwrap_or(false),
            replicas: keys.fsync_replicas.unwrap_or(0),
            timeout,
        },
        (None, false) if keys.timeout.is_some() => {
            return Err(Error::config(
                "key `confirm_timeout` without `confirm_replicas` or `confirm_fsync_*`: \
                 nothing to confirm",
            ));
        }
        (None, false) => {
            cfg.confirm = None;
            return Ok(());
        }
    };
    cfg.confirm = Some(confirm.check(cfg.timeout)?);
    Ok(())
}

impl RedisConfig {
    /// What every write waits for after the master applied it (`None`:
    /// nothing, the default). See [`Confirm`].
    pub fn confirm(&self) -> Option<Confirm> {
        self.confirm
    }
}

impl RedisConfigBuilder {
    /// Makes every write wait for confirmation by replicas (`WAIT`) or
    /// disks (`WAITAOF`); see [`Confirm`] for what each guarantees. As URL
    /// keys: `confirm_replicas=N`, or `confirm_fsync_local=true` and/or
    /// `confirm_fsync_replicas=N`, with `confirm_timeout=100ms` (default
    /// 500 ms). Checked by [`build`](Self::build).
    ///
    /// ```
    /// use coord_redis::{Confirm, RedisConfig};
    /// use std::time::Duration;
    /// let cfg = RedisConfig::builder()
    ///     .with_url("redis://localhost")
    ///     .confirm(Confirm::Replicas { count: 1, timeout: Duration::from_millis(100) })
    ///     .build()?;
    /// assert_eq!(cfg.confirm().unwrap().timeout(), Duration::from_millis(100));
    /// # Ok::<(), coord_api::Error>(())
    /// ```
    pub fn confirm(mut self, confirm: Confirm) -> Self {
        self.settings.push(Setting::Confirm(confirm));
        self
    }
}

/// A typed setting replaces every `confirm_*` key given before it.
pub(super) fn set(cfg: &mut RedisConfig, confirm: Confirm) {
    cfg.confirm_keys = ConfirmKeys::of(confirm);
}
