//! # coord-sim: deterministic simulation and fault injection for coord
//!
//! Under `RUSTFLAGS="--cfg madsim"` (own target dir) this crate runs coord in
//! the madsim simulator: a sim server node hosts the in-memory backend's
//! state machine on its own clock, sim clients reach it over the simulated
//! network with a timeout on every call, and scenarios drive fault plans
//! drawn from a seed (partitions, packet loss, latency spikes, server
//! restarts that lose state, killed and paused holders, clock offset and
//! drift) while recording histories for the checkers.
//!
//! In both worlds it offers the checkers and a fault layer for any backend.
//!
//! | module | what it holds | world |
//! |---|---|---|
//! | [`fault`] | [`FaultLayer`], [`Faulty`]: seeded errors, lost replies and delays around any backend | both |
//! | [`history`] | recorded histories and their checkers, per family: the fenced resource, the server's log, grants, beliefs, terms, runs, orphaned grants, barrier generations and waits, graph calls and node bodies, queue calls (replayed through the SPI's rules) and handlers | both |
//! | `chaos` | chaos on a real Redis: a fault proxy, the fence server, tied child processes | not `cfg(madsim)` |
//! | `sim` | `SimBackend`, `connect` (`sim://`), the sim server, `NodeClock`, deliberately broken servers and clients (feature `broken`) | `cfg(madsim)` |
//! | `scenario` | workloads per family under fault plans drawn from the seed, seed sweeps | `cfg(madsim)` |
//!
//! Replay a failing seed with the command the failure prints, e.g.
//! `MADSIM_TEST_SEED=<seed> MADSIM_TEST_NUM=1 RUSTFLAGS="--cfg madsim"
//! CARGO_TARGET_DIR=target/sim cargo test --profile sim -p coord-sim --test sim -- <scenario>`.
#![deny(missing_docs)]

#[cfg(not(madsim))]
pub mod chaos;
pub mod fault;
pub mod history;
#[cfg(madsim)]
mod sim;

pub use fault::{FaultLayer, FaultStats, Faulty};
#[cfg(madsim)]
pub use sim::{NodeClock, ServerConfig, SimBackend, SimOptions, connect, scenario, serve};
