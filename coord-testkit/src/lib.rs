//! # coord-testkit: test support for coord's own tests (not published)
//!
//! | module | what it holds |
//! |---|---|
//! | [`clocks`] | clocks for tests: one whose wall time stands still (a server without the tokens' wall-clock floor) |
//! | `redis` | (not under `--cfg madsim`) a `redis-server` fixture (`RedisServer`: start, stop, restart, pause, TLS, cluster flags) and the conformance harness on it (`RedisHarness`) |
//! | `sentinel` | (not under `--cfg madsim`) a Sentinel-managed Redis (`SentinelSet`: a master, replicas, three sentinels; planned and unplanned failovers) |
#![deny(missing_docs)]

pub mod clocks;
#[cfg(not(madsim))]
pub mod cluster;
#[cfg(not(madsim))]
pub mod redis;
#[cfg(not(madsim))]
pub mod sentinel;
