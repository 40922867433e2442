//! Mapping redis errors into coord's [`Error`]: what may succeed later
//! (connection refused or lost, timeouts, a server loading its data or
//! failing over) is `Unavailable`, naming the endpoint; the rest is `Backend`.
//! Messages go through [`RedisConfig::redact`] so a password never leaks.

use std::time::Duration;

use coord_api::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::RedisConfig;

/// Whether `e` is about availability rather than the request.
pub(crate) fn is_unavailable(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        return true;
    }
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
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
