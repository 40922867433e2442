//! The one error type of coord.

use std::time::Duration;

/// A boxed error from a backend's own library (redis, io, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result<T, coord_api::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in coord.
///
/// Contention is an outcome, not an error: `try_lock` returns `Ok(None)`.
/// Every variant names what it is about (the key, the name, the backend) so
/// that a log line alone tells the on-call engineer where to look. Errors never
/// carry secrets (passwords are redacted before they reach a message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input, refused before any state changed or any I/O happened.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong, naming the key and the limit.
        message: String,
    },
    /// A wait ended before the condition held (lock wait, retries exhausted).
    #[error("timed out after {waited:?} waiting for {what} on {backend}")]
    Timeout {
        /// What was waited for, e.g. `lock "jobs/backup"`.
        what: String,
        /// The backend's display name.
        backend: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The lease was lost (expired, taken over, or renewal impossible) before
    /// the operation could run.
    #[error("lease on {key:?} was lost ({backend})")]
    LeaseLost {
        /// The key of the lease.
        key: String,
        /// The backend's display name.
        backend: String,
    },
    /// The caller does not hold what the operation needs.
    #[error("{key:?} is not held by this holder ({backend})")]
    NotHeld {
        /// The key.
        key: String,
        /// The backend's display name.
        backend: String,
    },
    /// A circuit breaker refused the call.
    #[error("circuit {name:?} is open; retry after {retry_after:?}")]
    CircuitOpen {
        /// The breaker's name.
        name: String,
        /// When the breaker will admit a probe.
        retry_after: Duration,
    },
    /// A job this one waits for failed.
    #[error("dependency {job:?} failed: {reason}")]
    DependencyFailed {
        /// The failed job.
        job: String,
        /// The reason it gave.
        reason: String,
    },
    /// A barrier's generation broke before every party arrived (a waiter
    /// timed out, or someone reset it): every waiter of that generation
    /// gets this, naming who had arrived and who had arrived and then
    /// expired (a crashed participant). See `contract::barriers`.
    #[error("{0}")]
    Broken(Box<BarrierBroken>),
    /// An arrival or wait named a barrier generation that ended without
    /// it (or a latch generation that is not the current one): it counts
    /// nowhere.
    #[error("{kind} {key:?}: generation {generation} is over (now {current})")]
    StaleGeneration {
        /// `barrier`, `double_barrier` or `latch`.
        kind: &'static str,
        /// The name.
        key: String,
        /// The generation asked for.
        generation: u64,
        /// The current generation.
        current: u64,
    },
    /// A double barrier's parties are all inside; this participant is not
    /// one of them.
    #[error("double barrier {key:?} already has its {parties} parties inside")]
    TooManyParticipants {
        /// The barrier's name.
        key: String,
        /// Its parties.
        parties: u32,
    },
    /// What the operation needs does not exist (a latch never set, or
    /// expired).
    #[error("{what} {key:?} does not exist ({backend})")]
    NotFound {
        /// What was looked for, e.g. `latch`.
        what: &'static str,
        /// Its name.
        key: String,
        /// The backend's display name.
        backend: String,
    },
    /// A read-modify-write of a shared value (`State::update`) lost the
    /// race to other writers on every one of its attempts: nothing was
    /// written. Decision 0024: not a `Timeout` (nothing was waited for) and
    /// not retryable by the layers below; the caller decides.
    #[error("update of state {key:?} conflicted {attempts} times in a row ({backend})")]
    Conflict {
        /// The value's key (`space/key` in a space of several).
        key: String,
        /// The attempts made.
        attempts: u32,
        /// The backend's display name.
        backend: String,
    },
    /// The backend cannot be reached now (connection refused or lost, an
    /// operation timed out). Retryable.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        /// The backend and endpoint, without credentials.
        backend: String,
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A write the master applied but fewer replicas (or fsyncs) confirmed
    /// than the backend was configured to wait for (Redis `WAIT` /
    /// `WAITAOF`, see the contract's "Failover" section): it happened, but
    /// a failover may undo it. Retryable ([`is_retryable`](Self::is_retryable)):
    /// an acquisition that ends with it is released again in the
    /// background, like one whose reply was lost; a renewal that ends with
    /// it counts as not made (the lease stays valid only as long as its
    /// last confirmed renewal says).
    #[error(
        "{what} on {backend}: applied on the master but confirmed by {acked} of the {wanted} {by} \
         wanted; it may not survive a failover"
    )]
    Unconfirmed {
        /// What was written, e.g. `acquire lock "jobs/backup"`.
        what: String,
        /// The backend and endpoint, without credentials.
        backend: String,
        /// What confirms: `replicas` (`WAIT`), `replica fsyncs` or `local
        /// fsyncs` (`WAITAOF`).
        by: &'static str,
        /// How many confirmed.
        acked: u32,
        /// How many were wanted.
        wanted: u32,
    },
    /// The backend answered with an error that is not about availability.
    #[error("{backend} error: {message}")]
    Backend {
        /// The backend and endpoint, without credentials.
        backend: String,
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend does not implement this operation (see [`Families`](crate::spi::Families): a family it does not offer, or a capability of one it lacks).
    #[error("{operation} is not supported by {backend}")]
    NotSupported {
        /// The operation, e.g. `"semaphore"`.
        operation: &'static str,
        /// The backend's display name.
        backend: String,
    },
    /// The client was closed ([`Client::close`](crate::Client::close)): it
    /// makes no more calls.
    #[error("client {instance} is closed: it makes no more calls")]
    Closed {
        /// The closed client's instance id.
        instance: String,
    },
    /// A configuration problem: an unknown URL scheme, an unknown or bad key.
    #[error("configuration: {message}")]
    Config {
        /// What was wrong, naming the key.
        message: String,
    },
}

/// A barrier generation that broke, as [`Error::Broken`] tells it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} {key:?} generation {generation} broke ({reason}): {missing} missing; arrived {arrived:?}, expired {expired:?}"
)]
#[non_exhaustive]
pub struct BarrierBroken {
    /// `barrier` or `double_barrier`.
    pub kind: &'static str,
    /// The barrier's name.
    pub key: String,
    /// The generation that broke.
    pub generation: u64,
    /// The generation after it.
    pub next: u64,
    /// Why: `reset`, or `timeout of "<participant>"`.
    pub reason: String,
    /// How many more arrivals it needed.
    pub missing: u32,
    /// Who had arrived.
    pub arrived: Vec<String>,
    /// Who had arrived and then expired.
    pub expired: Vec<String>,
}

impl Error {
    /// An [`Error::InvalidArgument`] with the given message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
        }
    }

    /// An [`Error::Config`] with the given message.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    /// An [`Error::Unavailable`] without a source.
    pub fn unavailable(backend: impl ToString, message: impl Into<String>) -> Self {
        Error::Unavailable {
            backend: backend.to_string(),
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Backend`] without a source.
    pub fn backend(backend: impl ToString, message: impl Into<String>) -> Self {
        Error::Backend {
            backend: backend.to_string(),
            message: message.into(),
            source: None,
        }
    }

    /// Whether retrying the same call later may succeed: `Unavailable`, and
    /// `Unconfirmed` (the write may have to be made again on a new master).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Unconfirmed { .. })
    }
}
