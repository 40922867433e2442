//! Clocks for tests.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use coord_api::{Clock, Instant, Sleep, TokioClock};

/// Tokio's clock, counting its reads and the timers set on it.
#[derive(Debug, Default)]
pub struct Counted {
    reads: AtomicUsize,
    timers: AtomicUsize,
}

impl Counted {
    /// Reads so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Timers set so far.
    pub fn timers(&self) -> usize {
        self.timers.load(Ordering::SeqCst)
    }
}

impl Clock for Counted {
    fn now(&self) -> Instant {
        self.reads.fetch_add(1, Ordering::SeqCst);
        TokioClock.now()
    }
    fn wall(&self) -> SystemTime {
        TokioClock.wall()
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.timers.fetch_add(1, Ordering::SeqCst);
        TokioClock.sleep_until(deadline)
    }
}

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
