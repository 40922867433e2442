//! A fault layer for any backend, outside the simulator too: seeded errors
//! before an operation reaches the backend, lost replies after it was applied,
//! and delays, for every call of every family (it sees each as a
//! [`Call`]).

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Error, Namespace, Result,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// What a [`Faulty`] backend does to each operation, drawn from `seed`.
///
/// ```
/// use coord_sim::FaultLayer;
/// use std::time::Duration;
/// let layer = FaultLayer::new(42)
///     .error_before(0.1)
///     .lost_reply(0.05)
///     .delay(0.2, Duration::from_millis(1)..Duration::from_millis(20));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FaultLayer {
    seed: u64,
    error_before: f64,
    lost_reply: f64,
    delay: f64,
    delay_range: std::ops::Range<Duration>,
}

impl FaultLayer {
    /// No faults yet, drawn from `seed`.
    pub fn new(seed: u64) -> FaultLayer {
        FaultLayer {
            seed,
            error_before: 0.0,
            lost_reply: 0.0,
            delay: 0.0,
            delay_range: Duration::ZERO..Duration::ZERO,
        }
    }

    /// With probability `p`, an operation fails with `Error::Unavailable`
    /// before it reaches the backend (nothing happened).
    pub fn error_before(mut self, p: f64) -> Self {
        self.error_before = p;
        self
    }

    /// With probability `p`, an operation is applied by the backend but its
    /// reply is lost: the caller gets `Error::Unavailable` although the
    /// operation happened.
    pub fn lost_reply(mut self, p: f64) -> Self {
        self.lost_reply = p;
        self
    }

    /// With probability `p`, an operation waits a time drawn from `range`
    /// before it reaches the backend.
    pub fn delay(mut self, p: f64, range: std::ops::Range<Duration>) -> Self {
        self.delay = p;
        self.delay_range = range;
        self
    }

    /// Wraps `inner`: a backend of the same families whose calls go through
    /// the faults (`get_ref().stats()` counts them).
    pub fn layer(&self, inner: DynBackend) -> Arc<Dispatched<Faulty>> {
        Arc::new(Dispatched::new(Faulty {
            inner,
            cfg: self.clone(),
            rng: Mutex::new(StdRng::seed_from_u64(self.seed)),
            stats: Counters::default(),
        }))
    }
}

/// How many faults a [`Faulty`] backend injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Operations that reached the decorator.
    pub calls: u64,
    /// Operations failed before reaching the backend.
    pub errors_before: u64,
    /// Operations applied whose reply was then dropped.
    pub lost_replies: u64,
    /// Operations delayed.
    pub delays: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    errors_before: AtomicU64,
    lost_replies: AtomicU64,
    delays: AtomicU64,
}

/// A backend with faults injected by a [`FaultLayer`]. Its `Display` shows
/// the stack: `Faulty(memory(ns=x))`. Layers compose: the outermost sees the
/// call first.
pub struct Faulty {
    inner: DynBackend,
    cfg: FaultLayer,
    rng: Mutex<StdRng>,
    stats: Counters,
}

/// What to do with one call, drawn up front so a call draws a fixed amount
/// of randomness whatever happens.
struct Plan {
    delay: Option<Duration>,
    error_before: bool,
    lost_reply: bool,
}

impl Faulty {
    /// The wrapped backend.
    pub fn get_ref(&self) -> &DynBackend {
        &self.inner
    }

    /// The faults injected so far.
    pub fn stats(&self) -> FaultStats {
        let s = &self.stats;
        FaultStats {
            calls: s.calls.load(Ordering::Relaxed),
            errors_before: s.errors_before.load(Ordering::Relaxed),
            lost_replies: s.lost_replies.load(Ordering::Relaxed),
            delays: s.delays.load(Ordering::Relaxed),
        }
    }

    fn plan(&self) -> Plan {
        let mut rng = self.rng.lock().unwrap();
        let c = &self.cfg;
        let delay = rng.random_bool(c.delay.clamp(0.0, 1.0));
        let delay_for = if c.delay_range.is_empty() {
            c.delay_range.start
        } else {
            rng.random_range(c.delay_range.clone())
        };
        Plan {
            delay: delay.then_some(delay_for),
            error_before: rng.random_bool(c.error_before.clamp(0.0, 1.0)),
            lost_reply: rng.random_bool(c.lost_reply.clamp(0.0, 1.0)),
        }
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &self.inner)
            .field("layer", &self.cfg)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Dispatch for Faulty {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let op = call.op();
        let plan = self.plan();
        if let Some(d) = plan.delay {
            self.stats.delays.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(d).await;
        }
        if plan.error_before {
            self.stats.errors_before.fetch_add(1, Ordering::Relaxed);
            return Err(Error::unavailable(
                self,
                format!("{op}: injected error before the operation"),
            ));
        }
        let res = call.run(self.inner.clone()).await;
        if plan.lost_reply {
            self.stats.lost_replies.fetch_add(1, Ordering::Relaxed);
            return Err(Error::unavailable(
                self,
                format!("{op}: injected lost reply (the operation was applied)"),
            ));
        }
        res
    }
}
