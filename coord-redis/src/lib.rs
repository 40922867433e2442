//! # coord-redis: coord's Redis backend
//!
//! [`RedisBackend`] implements coord's backend SPI ([`coord_api::spi::Backend`])
//! on Redis 6.2 or later ([`MIN_VERSION`]; tested on 7.0), with every family: the lock family (exclusive,
//! reentrant, read-write, semaphore), leader elections, membership groups,
//! run-once jobs, barriers and latches (cyclic and double barriers,
//! countdown latches), job graphs, work queues, shared values and circuit breakers work across processes and hosts with
//! the same contract as every other backend, proven by the shared conformance suite against a real
//! `redis-server`, through Sentinel (`redis+sentinel://`) and on a Redis Cluster (`redis+cluster://`).
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
//! | `backend` | [`RedisBackend`]: connections, the root [`Backend`](coord_api::spi::Backend) |
//! | `cluster` | `redis+cluster://`: the connection kinds (one server, a cluster), the scripts' sharded-publishing twins |
//! | `sentinel` | `redis+sentinel://`: the master found through the sentinels, and followed when it moves (`coord.redis.failover` spans) |
//! | `server` | [`ServerInfo`]: the server's version and optional commands, asked at connect; [`MIN_VERSION`] |
//! | `eval` | the one EVALSHA helper (span, timeout, NOSCRIPT reload, error mapping), the one TTL conversion, reply decoding shared by families |
//! | `lua/` | `prelude.lua` (ahead of every script: the operation, the server's clock read lazily, the fencing-token rule `next_token`); `deadlines.lua` (leases as sorted-set members) |
//! | `locks/` | locks, read-write locks, semaphores: `lock.lua`, `rwlock.lua`, `semaphore.lua`, key layout, arguments, replies |
//! | `election/` | elections with quorums: `election.lua`, key layout and slot choice |
//! | `membership/` | membership groups: `membership.lua`, `group.lua` (a group's upkeep, shared with elections) |
//! | `jobs/` | run-once jobs: `jobs.lua`, key layout |
//! | `barriers/` | cyclic and double barriers, countdown latches: `barrier.lua` (both barrier kinds, one op per operation), `latch.lua`, key layout, arguments, replies |
//! | `graphs/` | job graphs: `graph.lua` (every operation, the sweep of expired leases and the resolution of dependents), key layout, the spec's canonical encoding, replies |
//! | `queues/` | work queues: `queue.lua` (every operation, the sweep of due items, expired deliveries and dead consumers), key layout, limits, replies |
//! | `topics/` | topics: `topic.lua` (a Redis Stream per topic, a consumer group per subscription, deliveries as leases, retention, missed offsets, dead events), ephemeral PUBLISH, key layout, replies |
//! | `state/` | shared values: `state.lua` (every operation, the sweep of expired entries, the change log and its gaps), key layout, replies |
//! | `ops/` | operations: instance presence (`ops.lua`), leases listed by walking the keyspace with SCAN through each family's read path, fenced revocation, the audit stream, the health probe |
//! | `breaker/` | circuit breakers: `breaker.lua` (every operation, mirroring the SPI's state machine on the server's clock), key layout, replies |
//! | [`keys`] | naming every key: namespace and primitive in one hash tag |
//! | `pubsub`, `expiry` | the shared pub/sub connection that wakes waiters; watches that also wake at an expiry instant |
//! | `error` | redis errors → `Unavailable` / `Backend`, with the password redacted |
//!
//! The redis-server fixture for tests lives in `coord-testkit` (`coord_testkit::redis`).
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | yes | `rediss://` and [`RedisConfigBuilder::tls`]: TLS by rustls (with ring). Without it a TLS endpoint is `Error::Config` naming the feature. The `coord` facade turns it on with its `redis-tls` feature. |
//!
//! Under `--cfg madsim` this crate is empty: the redis crate cannot run inside
//! the simulator, which checks the in-memory backend's state machine instead.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

#[cfg(not(madsim))]
mod backend;
#[cfg(not(madsim))]
mod barriers;
#[cfg(not(madsim))]
mod breaker;
#[cfg(not(madsim))]
mod cluster;
#[cfg(not(madsim))]
mod config;
#[cfg(not(madsim))]
mod election;
#[cfg(not(madsim))]
mod error;
#[cfg(not(madsim))]
mod eval;
#[cfg(not(madsim))]
mod expiry;
#[cfg(not(madsim))]
mod graphs;
#[cfg(not(madsim))]
mod jobs;
#[cfg(not(madsim))]
pub mod keys;
#[cfg(not(madsim))]
mod lender;
#[cfg(not(madsim))]
mod locks;
#[cfg(not(madsim))]
mod membership;
#[cfg(not(madsim))]
mod ops;
#[cfg(not(madsim))]
mod pubsub;
#[cfg(not(madsim))]
mod queues;
mod reads;
#[cfg(not(madsim))]
mod sentinel;
#[cfg(not(madsim))]
mod server;
mod state;
#[cfg(not(madsim))]
mod topics;

#[cfg(not(madsim))]
pub use backend::RedisBackend;
#[cfg(not(madsim))]
pub use config::{
    CONFIG_KEYS, Confirm, DEFAULT_CONFIRM_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SENTINEL_PORT,
    DEFAULT_TIMEOUT, Endpoint, MAX_CONFIRM_REPLICAS, MAX_MASTER_NAME, RedisConfig,
    RedisConfigBuilder,
};
#[cfg(not(madsim))]
pub use lender::CONFIRMING_CONNECTIONS;
#[cfg(not(madsim))]
pub use server::{MIN_VERSION, ServerInfo, Version};
