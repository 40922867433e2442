//! The backend's wall clock as a client reads it, for the ages of leases.
//!
//! A lease's grant instant is the backend's (a recorded `since`, or its
//! token: the server's clock in µs at the grant), so its age is measured
//! on the backend's clock too. Measured on this machine's wall clock, an
//! operator whose clock is ahead sees a lease granted a moment ago as held
//! for as long as the skew (and takes a live lease for a wedged one);
//! one whose clock is behind sees every age as nothing.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::Operations;
use crate::{Clock, Instant, Result, spi::LeaseRecord};

/// The backend's wall clock: one probe's answer, carried forward on this
/// client's monotonic clock (so this machine's wall clock plays no part).
/// From [`Operations::backend_clock`].
#[derive(Debug, Clone)]
pub struct BackendClock {
    clock: Arc<dyn Clock>,
    /// This client's monotonic time at the middle of the probe's round
    /// trip.
    read_at: Instant,
    /// The backend's wall clock in its answer.
    backend: SystemTime,
    /// Half the probe's round trip: how far [`now`](BackendClock::now) may
    /// be off.
    error: Duration,
}

impl BackendClock {
    /// The backend's wall clock now (within
    /// [`uncertainty`](BackendClock::uncertainty), plus the drift of this
    /// client's monotonic clock since the probe).
    pub fn now(&self) -> SystemTime {
        self.backend + self.clock.now().saturating_duration_since(self.read_at)
    }

    /// How far [`now`](BackendClock::now) may be off: half the probe's
    /// round trip.
    pub fn uncertainty(&self) -> Duration {
        self.error
    }

    /// How long ago `lease` was granted, by the backend's clock (`None`
    /// when its grant instant is unknown, see
    /// [`LeaseRecord::acquired_at`]; zero, never negative, for a grant
    /// within the clock's uncertainty).
    pub fn age(&self, lease: &LeaseRecord) -> Option<Duration> {
        let at = lease.acquired_at()?;
        Some(self.now().duration_since(at).unwrap_or_default())
    }
}

impl Operations {
    /// The backend's wall clock, read with one request (the clock
    /// [`health`](Operations::health)'s `clock_offset` compares; a read:
    /// no script checked, no key written): measure
    /// the ages of listed leases on it, never on this machine's wall
    /// clock. Read it again for a long-lived view (it follows this
    /// client's monotonic clock, which drifts).
    ///
    /// # Cancel safety
    /// A read: cancelling it changes nothing.
    pub async fn backend_clock(&self) -> Result<BackendClock> {
        let b = self.backend()?;
        let clock = self.client().clock().clone();
        let sent = clock.now();
        let server_time = self.traced("server_time", b.server_time()).await?;
        let rtt = clock.now().saturating_duration_since(sent);
        Ok(BackendClock {
            clock,
            read_at: sent + rtt / 2,
            backend: server_time,
            error: rtt / 2,
        })
    }
}
