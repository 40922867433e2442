//! # coord: distributed coordination for the instances of a service
//!
//! Locks, read-write locks and semaphores whose holders are separate
//! processes: five replicas of a scheduler where exactly one runs the nightly
//! job, a payment worker that must never process an order twice, and an
//! on-call engineer who can ask who holds a lock and since when. Pick the
//! backend at start-up with a URL — `redis://…` in production, `memory://` in
//! tests — and code against one set of types.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> coord::Result<()> {
//! use std::time::Duration;
//!
//! let client = coord::connect("memory://?namespace=docs").await?;
//! let lock = client.lock("jobs/nightly-report").ttl(Duration::from_secs(10));
//! if let Some(guard) = lock.try_lock().await? {
//!     // Hand the fencing token to whatever you write to: it refuses writes
//!     // carrying a smaller token than one it has already seen.
//!     println!("running the report with token {}", guard.token());
//!     assert!(guard.release().await?); // true: we still held it
//! }
//! # Ok(()) }
//! ```
//!
//! | item | what it is |
//! |---|---|
//! | [`connect`] | a [`Client`] on the backend a URL names |
//! | [`Client`] | one instance's handle: [`lock`](Client::lock), [`rwlock`](Client::rwlock), [`semaphore`](Client::semaphore) |
//! | [`Lock`], [`RwLock`], [`Semaphore`] | the lock family; guards are [`LeaseGuard`]s with a [`FencingToken`] and a lost signal |
//! | [`LockOptions`] | TTL, waiting, retries, auto-extension, clock drift |
//! | [`Error`] | the one error type |
//! | [`contract`] | what coord promises, primitive by primitive |
//! | [`memory`] | the in-process backend |
//! | `redis` | the Redis backend (absent under the madsim simulator) |
//! | [`LeaseBackend`] | the backend SPI, for backend authors |
//!
//! Everything of `coord-api` is re-exported here; backend authors may depend
//! on `coord-api` alone.
#![deny(missing_docs)]

mod connect;
mod url;

pub use connect::connect;

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
pub use coord_api::*;

/// The in-process backend: one [`MemoryStore`](memory::MemoryStore) plays the
/// server, each [`MemoryBackend`](memory::MemoryBackend) is a connection to it
/// bound to a namespace.
pub mod memory {
    use std::sync::LazyLock;

    pub use coord_memory::{MemoryBackend, MemoryStore};

    static PROCESS_STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);

    /// The store behind every `memory://` URL: one per process, like a local
    /// server, so that clients connected separately see each other's locks.
    /// Namespaces keep unrelated users of it apart.
    pub fn process_store() -> &'static MemoryStore {
        &PROCESS_STORE
    }
}

/// The Redis backend: connect with [`connect`] (`redis://`, `rediss://`,
/// `unix://`), or build a [`RedisConfig`](redis::RedisConfig) and call
/// [`RedisBackend::connect`](redis::RedisBackend::connect). Not available under
/// the madsim simulator, where the redis crate cannot run.
#[cfg(not(madsim))]
pub mod redis {
    pub use coord_redis::{
        CONFIG_KEYS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Endpoint, RedisBackend, RedisConfig,
        RedisConfigBuilder,
    };
}
