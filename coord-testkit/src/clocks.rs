//! Clocks for tests.

use std::{sync::Arc, time::SystemTime};

use coord_api::{Clock, Instant, Sleep};

/// Another clock whose wall time stands still at the Unix epoch: a server on
/// it draws fencing tokens from its counters alone, without the wall-clock
/// floor (a deliberately broken server, for checkers that must catch tokens
/// reused after a restart).
#[derive(Debug, Clone)]
pub struct EpochWall(pub Arc<dyn Clock>);

impl Clock for EpochWall {
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.0.sleep_until(deadline)
    }
}
