//! # coord-redis: coord's Redis backend
//!
//! [`RedisBackend`] implements coord's lease traits
//! ([`coord_api::LeaseBackend`]) on Redis 6.2 or later, so the lock family
//! (exclusive, reentrant, read-write, semaphore) works across processes and
//! hosts with the same contract as every other backend, proven by the shared
//! conformance suite against a real `redis-server`. It implements
//! [`coord_api::LeadershipBackend`] too: elections, membership groups and
//! run-once jobs.
//!
//! ```no_run
//! # async fn demo() -> coord_api::Result<()> {
//! let backend = coord_redis::RedisBackend::connect_url("redis://127.0.0.1:6379/0?namespace=app").await?;
//! let client = coord_api::Client::new(std::sync::Arc::new(backend));
//! let guard = client.lock("reports/daily").lock().await?;
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | `config` | [`RedisConfig`], [`RedisConfigBuilder`], [`Endpoint`]: URL and builder configuration |
//! | `backend` | [`RedisBackend`]: the lease operations, connections, timeouts, tracing |
//! | [`keys`] | the key layout: namespace + family + key in one hash tag |
//! | `scripts` | the Lua scripts (`src/lua/*.lua`), run by EVALSHA |
//! | `leadership` | elections, membership groups, run-once jobs ([`coord_api::LeadershipBackend`]): one script, key layout and slot choice |
//! | `pubsub` | the shared pub/sub connection that wakes waiters on release |
//! | `error` | redis errors → `Unavailable` / `Backend`, with the password redacted |
//! | [`testing`] | (feature `testing`) a `redis-server` fixture and a conformance harness |
//!
//! Under `--cfg madsim` this crate is empty: the redis crate cannot run inside
//! the simulator, which checks the in-memory backend's state machine instead.
#![deny(missing_docs)]

#[cfg(not(madsim))]
mod backend;
#[cfg(not(madsim))]
mod config;
#[cfg(not(madsim))]
mod error;
#[cfg(not(madsim))]
pub mod keys;
#[cfg(not(madsim))]
mod leadership;
#[cfg(not(madsim))]
mod pubsub;
#[cfg(not(madsim))]
mod scripts;
#[cfg(all(not(madsim), feature = "testing"))]
pub mod testing;

#[cfg(not(madsim))]
pub use backend::RedisBackend;
#[cfg(not(madsim))]
pub use config::{
    CONFIG_KEYS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Endpoint, RedisConfig,
    RedisConfigBuilder,
};
