//! # coord-testkit: test support for coord's own tests (not published)
//!
//! | module | what it holds |
//! |---|---|
//! | [`clocks`] | clocks for tests: one whose wall time stands still (a server without the tokens' wall-clock floor) |
//! | `redis` | (not under `--cfg madsim`) a `redis-server` fixture (`RedisServer`: start, stop, restart, pause, TLS, cluster flags) and the conformance harness on it (`RedisHarness`) |
//! | `cluster` | (not under `--cfg madsim`) a Redis Cluster (`ClusterSet`: three masters, three replicas; slots moved, planned failovers, masters killed and rejoined) |
//! | [`failover`] | what a Redis failover keeps and loses, checked alike for Sentinel and Cluster |
//! | `sentinel` | (not under `--cfg madsim`) a Sentinel-managed Redis (`SentinelSet`: a master, replicas, three sentinels; planned and unplanned failovers) |
#![deny(missing_docs)]

pub mod clocks;
#[cfg(not(madsim))]
pub mod cluster;
pub mod failover;
#[cfg(not(madsim))]
pub mod redis;
#[cfg(not(madsim))]
pub mod sentinel;
