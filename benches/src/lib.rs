//! Shared parts of the benchmark tools in `src/bin`.

#[cfg(not(madsim))]
pub mod redis_tool;

#[cfg(not(madsim))]
pub mod fair_load;

#[cfg(not(madsim))]
pub mod handover;

#[cfg(not(madsim))]
pub mod latency_proxy;

#[cfg(not(madsim))]
pub mod lock_contenders;

#[cfg(not(madsim))]
pub mod lock_rounds;

#[cfg(not(madsim))]
pub mod lock_long;
