//! Time as coord sees it: a [`Clock`] trait so tests and the simulator can
//! skew and drift a node's clock.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

pub use tokio::time::Instant;

/// A sleep returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A node's view of time. Client types read it for local validity deadlines and
/// back-off; the in-memory backend reads it as the server's clock.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Monotonic local time.
    fn now(&self) -> Instant;
    /// Wall-clock time (used for fencing tokens and "since" stamps).
    fn wall(&self) -> SystemTime;
    /// Completes once [`now`](Clock::now) has reached `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn wall(&self) -> SystemTime {
        (**self).wall()
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        (**self).sleep_until(deadline)
    }
}

/// The default clock: tokio's time, so `tokio::time::pause()` and the madsim
/// simulator's virtual time apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        wall_now()
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// Wall time consistent with tokio's (possibly paused or simulated) clock:
/// the real wall clock at first use plus the tokio time elapsed since.
fn wall_now() -> SystemTime {
    #[cfg(madsim)]
    {
        SystemTime::now()
    }
    #[cfg(not(madsim))]
    {
        use std::sync::OnceLock;
        static BASE: OnceLock<(std::time::Instant, SystemTime)> = OnceLock::new();
        // tokio's paused clock does not move SystemTime; anchor it on the
        // first read so that tokens and stamps follow tokio time.
        let (i0, w0) = *BASE.get_or_init(|| (Instant::now().into_std(), SystemTime::now()));
        let now = Instant::now().into_std();
        w0 + now.saturating_duration_since(i0)
    }
}

/// A clock that runs off another: `offset` ahead (or behind, when negative)
/// and `drift` faster (or slower) — local time advances `1 + drift` seconds per
/// second of the base clock. For tests and the simulator.
///
/// ```
/// use coord_api::{Clock, SkewedClock, TokioClock};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let c = SkewedClock::new(TokioClock, 5_000_000, 0.0); // 5 ms ahead
/// assert!(c.now() > TokioClock.now());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SkewedClock<C> {
    base: C,
    origin: Instant,
    offset_nanos: i64,
    drift: f64,
}

impl<C: Clock> SkewedClock<C> {
    /// `offset_nanos` ahead of `base` (negative: behind), running `1 + drift`
    /// times as fast (drift > -1).
    pub fn new(base: C, offset_nanos: i64, drift: f64) -> Self {
        assert!(drift > -1.0, "drift must be > -1");
        let origin = base.now();
        SkewedClock {
            base,
            origin,
            offset_nanos,
            drift,
        }
    }

    fn local_of(&self, base: Instant) -> Instant {
        let elapsed = base.saturating_duration_since(self.origin).as_nanos() as f64;
        let local = (elapsed * (1.0 + self.drift)) as i128 + self.offset_nanos as i128;
        shift(self.origin, local)
    }

    fn base_of(&self, local: Instant) -> Instant {
        let local_elapsed = signed_nanos(self.origin, local) - self.offset_nanos as i128;
        let base_elapsed = (local_elapsed as f64 / (1.0 + self.drift)) as i128;
        shift(self.origin, base_elapsed)
    }
}

fn shift(origin: Instant, nanos: i128) -> Instant {
    if nanos >= 0 {
        origin + Duration::from_nanos(nanos as u64)
    } else {
        origin
            .checked_sub(Duration::from_nanos((-nanos) as u64))
            .unwrap_or(origin)
    }
}

fn signed_nanos(from: Instant, to: Instant) -> i128 {
    if to >= from {
        (to - from).as_nanos() as i128
    } else {
        -((from - to).as_nanos() as i128)
    }
}

impl<C: Clock> Clock for SkewedClock<C> {
    fn now(&self) -> Instant {
        self.local_of(self.base.now())
    }
    fn wall(&self) -> SystemTime {
        let base_now = self.base.now();
        let d = signed_nanos(base_now, self.local_of(base_now));
        let w = self.base.wall();
        if d >= 0 {
            w + Duration::from_nanos(d as u64)
        } else {
            w - Duration::from_nanos((-d) as u64)
        }
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        // Round up so that after waking, now() >= deadline.
        self.base
            .sleep_until(self.base_of(deadline) + Duration::from_nanos(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn skewed_clock_sleeps_in_local_time() {
        let c = SkewedClock::new(TokioClock, -3_000_000, 0.5);
        let start = c.now();
        let base_start = TokioClock.now();
        c.sleep_until(start + Duration::from_millis(300)).await;
        assert!(c.now() >= start + Duration::from_millis(300));
        // 300 ms of local time at 1.5x speed is 200 ms of base time.
        let base_elapsed = TokioClock.now() - base_start;
        assert!(
            base_elapsed >= Duration::from_millis(199)
                && base_elapsed <= Duration::from_millis(201),
            "{base_elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wall_follows_paused_time() {
        let w0 = TokioClock.wall();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let d = TokioClock.wall().duration_since(w0).unwrap();
        assert!(d >= Duration::from_secs(10), "{d:?}");
    }
}
