//! Chaos on a real backend (outside the simulator): real processes, real
//! sockets, real signals.
//!
//! - [`FaultProxy`]: a loopback TCP proxy between clients and `redis-server`
//!   that blackholes, delays or resets connections on demand;
//! - [`FenceServer`]: the fenced resource, served on loopback to holder
//!   processes (the `chaos_holder` binary), recording grants, beliefs and
//!   writes for the checkers of [`history`](crate::history) and
//!   [`check_holds`];
//! - [`TiedChild`]: a child process that dies with the test (SIGKILL on drop
//!   and `PR_SET_PDEATHSIG`).
//!
//! Times cross process boundaries as `CLOCK_MONOTONIC` nanoseconds
//! ([`mono_ns`]): one clock for every process of the machine, the same one
//! `std::time::Instant` reads on Linux.
//!
//! The test is `coord-sim/tests/chaos_redis.rs`; it prints its seed, and
//! `COORD_CHAOS_SEED=<seed>` replays its fault schedule.

mod fence;
mod process;
mod proxy;

pub use fence::{FenceServer, FenceStats, Hold, check_holds};
pub use process::TiedChild;
pub use proxy::{ConnId, FaultProxy, Mode, ProxyStats};

/// `CLOCK_MONOTONIC` now, in nanoseconds: comparable across the processes of
/// one machine.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
