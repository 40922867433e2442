//! Knowing the server: what it said of itself at connect ([`ServerInfo`]),
//! and the oldest version coord runs on ([`MIN_VERSION`]).
//!
//! At connect (and on every new master after a failover) the backend sends
//! `INFO server`, `COMMAND INFO spublish waitaof` and `INFO persistence`
//! in one round trip.
//! A server older than [`MIN_VERSION`] is refused with `Error::Config`
//! naming both versions. A server that does not say (an ACL without `INFO`
//! or `COMMAND`) is taken as it is: every script fails clearly if a command
//! is missing.
//!
//! What chooses on the answers today: nothing but the minimum. Each
//! optional feature is recorded for the parts of issue 20 that need it:
//! sharded pub/sub (`SPUBLISH`, 7.0) for Redis Cluster, `WAITAOF` (7.2) for
//! confirmed writes, `SET … NX GET` (7.0) for a plain-command lock path.

use std::fmt;

use coord_api::{Error, Result};
use redis::Value;

use crate::{RedisConfig, error};

/// The oldest Redis coord runs on: the scripts use `XTRIM … MINID` (6.2)
/// and effects replication of scripts that read `TIME` before writing
/// (the default since 5.0); wake-ups use RESP3 pub/sub on a multiplexed
/// connection (6.0).
pub const MIN_VERSION: Version = Version(6, 2, 0);

/// A server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// `7.0.15` → `Version(7, 0, 15)`; a missing part is 0; `None` if a
    /// part is not a number.
    ///
    /// ```
    /// use coord_redis::Version;
    /// assert_eq!(Version::parse("7.0.15"), Some(Version(7, 0, 15)));
    /// assert_eq!(Version::parse("7.2"), Some(Version(7, 2, 0)));
    /// assert!(Version::parse("seven").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().splitn(3, '.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(Version(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What the server in use said of itself (see
/// [`RedisBackend::server_info`](crate::RedisBackend::server_info)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `redis_version` of `INFO server`; `None` when the server did not
    /// say.
    pub version: Option<Version>,
    /// Sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`: 7.0).
    pub spublish: bool,
    /// `WAITAOF` (7.2).
    pub waitaof: bool,
    /// `SET … NX GET` (7.0; `GET` with `NX` is refused before).
    pub set_nx_get: bool,
    /// Whether the server keeps an append-only file (`aof_enabled` of
    /// `INFO persistence`); `None` when it did not say.
    pub aof: Option<bool>,
}

impl ServerInfo {
    /// Reads the replies to `INFO server` and `COMMAND INFO spublish
    /// waitaof` (either `None` when refused).
    pub(crate) fn from_replies(info: Option<&str>, commands: Option<&Value>) -> ServerInfo {
        let version = info
            .and_then(|text| field(text, "redis_version"))
            .and_then(Version::parse);
        // COMMAND INFO answers one entry per name asked, nil when unknown.
        let known = |i: usize| match commands {
            Some(Value::Array(entries)) => {
                matches!(entries.get(i), Some(Value::Array(_)) | Some(Value::Map(_)))
            }
            _ => false,
        };
        ServerInfo {
            version,
            spublish: known(0),
            waitaof: known(1),
            set_nx_get: version.is_some_and(|v| v >= Version(7, 0, 0)),
            aof: None,
        }
    }

    /// Takes `aof` from the reply to `INFO persistence` (`None`: refused).
    pub(crate) fn with_persistence(mut self, persistence: Option<&str>) -> ServerInfo {
        self.aof = persistence
            .and_then(|text| field(text, "aof_enabled"))
            .map(|v| v.trim() == "1");
        self
    }

    /// At connect: `Error::Config` when the configuration confirms writes
    /// by the master's own fsync (`confirm_fsync_local`) and the server
    /// keeps no append-only file. `WAITAOF` refuses every such request
    /// then, so every write would fail; refused here, the mistake is named
    /// once. (Not after a failover: a backend that refused to follow a new
    /// master would fail every write as surely, and later.)
    pub(crate) fn check_persistence(&self, config: &RedisConfig, server: &str) -> Result<()> {
        if matches!(
            config.confirm(),
            Some(crate::Confirm::Fsync { local: true, .. })
        ) && self.aof == Some(false)
        {
            return Err(Error::config(format!(
                "{config}: confirmed writes by the master's fsync (`confirm_fsync_local`, \
                 WAITAOF) need its append-only file, and the server at {server} has none \
                 (`appendonly no`): turn it on, or confirm by replicas alone"
            )));
        }
        Ok(())
    }

    /// `Error::Config` for a server older than [`MIN_VERSION`], or without
    /// `WAITAOF` when the configuration confirms writes by fsync.
    pub(crate) fn check(&self, config: &RedisConfig, server: &str) -> Result<()> {
        match self.version {
            Some(v) if v < MIN_VERSION => {
                return Err(Error::config(format!(
                    "{config}: the Redis server at {server} is version {v}; coord needs \
                     {MIN_VERSION} or later (its scripts use XTRIM MINID, its wake-ups RESP3)"
                )));
            }
            _ => {}
        }
        if matches!(config.confirm(), Some(crate::Confirm::Fsync { .. })) && !self.waitaof {
            let version = self.version.map_or_else(
                || "of an unknown version".to_owned(),
                |v| format!("version {v}"),
            );
            return Err(Error::config(format!(
                "{config}: confirmed writes by fsync (`confirm_fsync_*`, WAITAOF) need Redis \
                 7.2 or later; the server at {server} is {version} and has no WAITAOF \
                 (`confirm_replicas`, WAIT, works on it)"
            )));
        }
        Ok(())
    }

    /// Asks the server behind `conn` (one round trip, within the connect
    /// timeout).
    pub(crate) async fn probe(config: &RedisConfig, conn: &crate::cluster::Conn) -> Result<Self> {
        let mut conn = conn.clone();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("INFO").arg("server");
        pipe.cmd("COMMAND")
            .arg("INFO")
            .arg("spublish")
            .arg("waitaof");
        pipe.cmd("INFO").arg("persistence");
        // Each reply on its own: a refused command (an ACL) is `None`.
        let ask = pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut conn);
        let replies = match tokio::time::timeout(config.connect_timeout(), ask).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(error::from_redis(config, "ask the server its version", e)),
            Err(_) => {
                return Err(error::timed_out(
                    config,
                    "ask the server its version",
                    config.connect_timeout(),
                ));
            }
        };
        let text = |i: usize| match replies.get(i) {
            Some(Ok(Value::BulkString(b))) => std::str::from_utf8(b).ok().map(str::to_owned),
            Some(Ok(Value::VerbatimString { text, .. })) => Some(text.clone()),
            _ => None,
        };
        let commands = replies.get(1).and_then(|r| r.as_ref().ok());
        let server = ServerInfo::from_replies(text(0).as_deref(), commands);
        Ok(server.with_persistence(text(2).as_deref()))
    }
}

/// The value of `name` in an `INFO` reply (`name:value` lines).
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

impl fmt::Display for ServerInfo {
    /// `redis 7.0.15 (SPUBLISH yes, WAITAOF no, SET NX GET yes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        match self.version {
            Some(v) => write!(f, "redis {v}")?,
            None => f.write_str("redis (version not said)")?,
        }
        write!(
            f,
            " (SPUBLISH {}, WAITAOF {}, SET NX GET {})",
            yes(self.spublish),
            yes(self.waitaof),
            yes(self.set_nx_get)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        Value::Array(vec![Value::BulkString(b"spublish".to_vec())])
    }

    #[test]
    fn versions_and_commands_are_read_from_the_replies() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        let commands = Value::Array(vec![entry(), Value::Nil]);
        let s = ServerInfo::from_replies(Some(info), Some(&commands));
        assert_eq!(s.version, Some(Version(7, 0, 15)));
        assert!(s.spublish && !s.waitaof && s.set_nx_get);
        assert_eq!(
            s.to_string(),
            "redis 7.0.15 (SPUBLISH yes, WAITAOF no, SET NX GET yes)"
        );
        let s = ServerInfo::from_replies(
            Some("redis_version:7.2.4\r\n"),
            Some(&Value::Array(vec![entry(), entry()])),
        );
        assert!(s.waitaof);
        // Refused (an ACL): nothing known, nothing refused.
        let s = ServerInfo::from_replies(None, None);
        assert_eq!((s.version, s.spublish, s.set_nx_get), (None, false, false));
        let cfg = RedisConfig::from_url("redis://h/0").unwrap();
        assert!(s.check(&cfg, "h:6379").is_ok());
    }

    #[test]
    fn a_server_older_than_the_minimum_is_refused_naming_both_versions() {
        let cfg = RedisConfig::from_url("redis://u:Secret9@h:1/0").unwrap();
        let old = ServerInfo::from_replies(Some("redis_version:6.0.16\r\n"), None);
        let e = old.check(&cfg, "h:1").unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("6.0.16") && text.contains("6.2.0"), "{text}");
        assert!(!text.contains("Secret9"), "{text}");
        let ok = ServerInfo::from_replies(Some("redis_version:6.2.0\r\n"), None);
        assert!(ok.check(&cfg, "h:1").is_ok());
    }

    #[test]
    fn fsync_by_the_master_is_refused_at_connect_without_its_append_only_file() {
        let info = ServerInfo::from_replies(Some("redis_version:7.2.4\r\n"), None);
        let off = info
            .clone()
            .with_persistence(Some("# Persistence\r\naof_enabled:0\r\n"));
        let on = info
            .clone()
            .with_persistence(Some("aof_rewrite_in_progress:0\r\naof_enabled:1\r\n"));
        let unsaid = info.with_persistence(None);
        assert_eq!(
            (off.aof, on.aof, unsaid.aof),
            (Some(false), Some(true), None)
        );
        let ms = std::time::Duration::from_millis(200);
        let fsync = |local| {
            let confirm = crate::Confirm::Fsync {
                local,
                replicas: 1,
                timeout: ms,
            };
            RedisConfig::builder().confirm(confirm).build().unwrap()
        };
        let e = off.check_persistence(&fsync(true), "h:1").unwrap_err();
        assert!(
            matches!(e, Error::Config { .. }) && e.to_string().contains("appendonly no"),
            "{e}"
        );
        assert!(
            off.check_persistence(&fsync(false), "h:1").is_ok(),
            "replicas alone"
        );
        assert!(on.check_persistence(&fsync(true), "h:1").is_ok());
        assert!(
            unsaid.check_persistence(&fsync(true), "h:1").is_ok(),
            "not said: not refused"
        );
        let plain = RedisConfig::from_url("redis://h/0").unwrap();
        assert!(off.check_persistence(&plain, "h:1").is_ok());
    }
}
