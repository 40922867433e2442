//! The lock family's cases: exclusive and reentrant locks, what every lease
//! of the family does, monitoring, read-write locks, semaphores, invalid
//! input, fair mode, the SPI's notifications, and several locks at once.

use crate::runner::Case;

pub mod exclusive;
pub mod fair;
pub mod input;
pub mod lease;
pub mod monitoring;
pub mod multi;
pub mod questions;
pub mod reentrant;
pub mod rwlock;
pub mod semaphore;
pub mod watch;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        exclusive::cases(),
        fair::cases(),
        lease::cases(),
        monitoring::cases(),
        questions::cases(),
        multi::cases(),
        rwlock::cases(),
        semaphore::cases(),
        input::cases(),
        watch::cases(),
        reentrant::cases(),
    ]
    .concat()
}
