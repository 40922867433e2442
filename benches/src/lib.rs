//! Shared parts of the benchmark tools in `src/bin`.

#[cfg(not(madsim))]
pub mod redis_tool;

#[cfg(not(madsim))]
pub mod fair_load;

#[cfg(not(madsim))]
pub mod handover;
