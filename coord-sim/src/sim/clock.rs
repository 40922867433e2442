//! Per-node clocks: madsim has one global clock, so each node's offset and
//! drift come from coord's own `Clock` trait (a `SkewedClock` over the
//! simulator's time).

use std::{sync::Arc, time::Duration};

use coord_api::{Clock, Instant, SkewedClock, TokioClock};

/// One node's clock: `offset` ahead of simulated time (negative: behind),
/// running `1 + drift` times as fast. Also maps the node's local instants
/// back to global simulated time, for histories.
#[derive(Debug, Clone)]
pub struct NodeClock {
    clock: Arc<SkewedClock<TokioClock>>,
    origin: Instant,
    offset_nanos: i64,
    drift: f64,
}

impl NodeClock {
    /// A clock starting now, `offset_nanos` ahead, drifting by `drift`.
    pub fn new(offset_nanos: i64, drift: f64) -> NodeClock {
        let origin = TokioClock.now();
        NodeClock {
            clock: Arc::new(SkewedClock::new(TokioClock, offset_nanos, drift)),
            origin,
            offset_nanos,
            drift,
        }
    }

    /// The clock, to hand to a client or a server.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The rate: local seconds per global second.
    pub fn rate(&self) -> f64 {
        1.0 + self.drift
    }

    /// The global instant at which this clock reads `local`.
    pub fn to_global(&self, local: Instant) -> Instant {
        let local_elapsed = if local >= self.origin {
            (local - self.origin).as_nanos() as f64
        } else {
            -((self.origin - local).as_nanos() as f64)
        };
        let global = (local_elapsed - self.offset_nanos as f64) / (1.0 + self.drift);
        if global >= 0.0 {
            self.origin + Duration::from_nanos(global as u64)
        } else {
            self.origin
                .checked_sub(Duration::from_nanos((-global) as u64))
                .unwrap_or(self.origin)
        }
    }
}
