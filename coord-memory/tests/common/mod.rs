//! What several test files of coord-memory share.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::SystemTime,
};

use coord_api::{Clock, Instant, Sleep, TokioClock};

/// Tokio's clock, counting its reads (a grant or a renewal may read it) and
/// the timers set on it.
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

    /// Reads and timers so far.
    #[allow(dead_code)] // not every test file that shares this module uses it
    pub fn uses(&self) -> usize {
        self.reads() + self.timers.load(Ordering::SeqCst)
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
