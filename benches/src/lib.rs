//! Shared parts of the benchmark tools in `src/bin` (the criterion benches
//! are in `benches/`; README's "How fast" lists what each one measures).
//!
//! | module | what it holds | used by |
//! |---|---|---|
//! | `redis_tool` | a Redis tool's runtime and clients, counters and latencies, the server's work between two instants (commandstats, `INFO cpu`, this process's CPU), script costs, the BullMQ anchor | `redis_graph`, `redis_queue`, `redis_load`, `redis_state`, `redis_topic` |
//! | `lock_contenders` | the locks `redis_load` compares: baseline, floor, rslock, coord through `coord::connect`, coord-built, SPI (decision 0039) | `redis_load` |
//! | `lock_rounds` | the rounds of a scenario: warm-up, rotated order, medians and same-round ratios, verdicts | `redis_load` |
//! | `lock_long` | `ONLY=long`: the independent measurement's shape, and each script call timed alone | `redis_load` |
//! | `latency_proxy` | a loopback proxy adding a fixed delay each way (`ONLY=proxy`) | `redis_load` |
//! | `fair_load` | 16 tasks handing one lock over, plain and fair (decision 0033) | `redis_load` |
//! | `handover` | where a fair handover's time goes (`BREAKDOWN=1`, decision 0038) | `redis_load` |
//!
//! Everything here needs real sockets, so none of it builds under
//! `--cfg madsim`.

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
