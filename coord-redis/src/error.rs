//! Mapping redis errors into coord's [`Error`]: what may succeed later
//! (connection refused or lost, timeouts, a server loading its data,
//! failing over, busy with another client's script or short of replicas)
//! is `Unavailable`, naming the endpoint; the rest is `Backend`.
//! Messages go through [`RedisConfig::redact`] so a password never leaks.

use std::time::Duration;

use coord_api::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::RedisConfig;

/// Refusals the redis crate has no kind for, made without running the
/// request and over once the server's state changes: `BUSY` (another
/// client's script or function past `busy-reply-threshold`, until it ends
/// or is killed) and `NOREPLICAS` (fewer replicas than
/// `min-replicas-to-write`), like `LOADING` and `MASTERDOWN`.
const TRANSIENT_CODES: &[&str] = &["BUSY", "NOREPLICAS"];

/// Whether `e` is about availability rather than the request.
pub(crate) fn is_unavailable(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        return true;
    }
    if e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return true;
    }
    matches!(
        e.kind(),
        // (A cluster connection lacking a node it needs, as while a master
        // fails over.)
        ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    // (A slot that moved, if the cluster connection's
                    // own follow-up did not: the next try goes there.)
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
    )
}

/// `e`, which happened during `what`, as a coord error.
pub(crate) fn from_redis(cfg: &RedisConfig, what: &str, e: RedisError) -> Error {
    let message = cfg.redact(format!("{what}: {e}"));
    // Keep the original as the source unless its debug form would leak.
    let source: Option<coord_api::BoxError> = match cfg.password() {
        Some(p) if !p.is_empty() && format!("{e:?}").contains(p) => None,
        _ => Some(Box::new(e.clone())),
    };
    if is_unavailable(&e) {
        Error::Unavailable {
            backend: cfg.to_string(),
            message,
            source,
        }
    } else {
        Error::Backend {
            backend: cfg.to_string(),
            message,
            source,
        }
    }
}

/// An operation that did not finish within `after`.
pub(crate) fn timed_out(cfg: &RedisConfig, what: &str, after: Duration) -> Error {
    Error::unavailable(
        cfg,
        format!("{what}: no answer from {} within {after:?}", cfg.endpoint()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster connection lacking a node (a master failing over) is
    /// `Unavailable`, like any other lost connection; a script's own error
    /// is not.
    #[test]
    fn a_missing_cluster_connection_is_unavailable() {
        let cfg = RedisConfig::from_url("redis+cluster://127.0.0.1:7000").unwrap();
        let missing = RedisError::from((ErrorKind::ClusterConnectionNotFound, "no connection"));
        let e = from_redis(&cfg, "acquire lock \"a\"", missing);
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        let reply = redis::parse_redis_value(b"-ERR user_script:1: boom\r\n").unwrap();
        let script = reply.extract_error().unwrap_err();
        let e = from_redis(&cfg, "acquire lock \"a\"", script);
        assert!(matches!(e, Error::Backend { .. }), "{e:?}");
    }

    /// A server busy with another client's script, or short of the
    /// replicas it requires to write, refused the request without running
    /// it: `Unavailable` (retryable), as `LOADING` is; it was `Backend`,
    /// which ended queue consumers' and graph workers' loops for good.
    #[test]
    fn transient_refusals_are_unavailable() {
        let cfg = RedisConfig::from_url("redis://127.0.0.1:6379").unwrap();
        for reply in [
            &b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"[..],
            b"-NOREPLICAS Not enough good replicas to write.\r\n",
            b"-LOADING Redis is loading the dataset in memory\r\n",
            b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
        ] {
            let err = redis::parse_redis_value(reply).unwrap().extract_error().unwrap_err();
            let e = from_redis(&cfg, "acquire lock \"a\"", err);
            assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        }
    }
}
