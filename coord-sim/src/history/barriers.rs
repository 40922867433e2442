//! The barrier family's histories: what the backend did to barriers and
//! latches (arrivals counted and expired, trips, ends of generations), in
//! its order, from the store's journal; the waits as their participants saw
//! them; and when the participants' processes could send nothing (killed,
//! paused). [`check_barriers`] judges them.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{
    Instant,
    spi::{BarrierKind, Ended},
};

/// What the backend did to a barrier or latch, in its order, with the
/// (global) instant it did it. Names are the keys as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrierEvent {
    /// `participant` was newly counted in `generation` (an idempotent
    /// repeat, which only renews, is not told).
    Arrived {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: String,
        /// Who.
        participant: String,
        /// The generation.
        generation: u64,
        /// When.
        at: Instant,
    },
    /// `participant`'s arrival in `generation` was dropped at its deadline.
    Expired {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: String,
        /// Whose.
        participant: String,
        /// The generation.
        generation: u64,
        /// When the backend noticed.
        at: Instant,
    },
    /// `participant` withdrew its arrival in `generation` (a wait given
    /// up or cancelled, a double barrier's member leaving).
    Left {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: String,
        /// Whose.
        participant: String,
        /// The generation.
        generation: u64,
        /// When.
        at: Instant,
    },
    /// A double barrier's `generation` tripped: everyone entered.
    Entered {
        /// The barrier.
        barrier: String,
        /// The generation.
        generation: u64,
        /// The arrival that completed the count.
        by: String,
        /// Who is inside, in arrival order.
        arrivals: Vec<String>,
        /// When.
        at: Instant,
    },
    /// `generation` ended (`next` begins): tripped or broken.
    Ended {
        /// Which kind of barrier.
        kind: BarrierKind,
        /// The barrier.
        barrier: String,
        /// The generation.
        generation: u64,
        /// The one after it.
        next: u64,
        /// How.
        how: Ended,
        /// When.
        at: Instant,
    },
    /// A latch was set to `count` in a new `generation`.
    LatchSet {
        /// The latch.
        latch: String,
        /// The generation.
        generation: u64,
        /// The count.
        count: u32,
        /// When.
        at: Instant,
    },
    /// `participant` counted the latch down in `generation`.
    CountedDown {
        /// The latch.
        latch: String,
        /// Who.
        participant: String,
        /// The generation.
        generation: u64,
        /// What is left.
        remaining: u32,
        /// When.
        at: Instant,
    },
    /// The server restarted with its state lost.
    Restart {
        /// When the new incarnation began serving.
        at: Instant,
    },
}

/// The backend's barrier and latch events, in its order. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct BarrierLog {
    inner: Arc<Mutex<Vec<BarrierEvent>>>,
}

impl BarrierLog {
    /// An empty log.
    pub fn new() -> BarrierLog {
        BarrierLog::default()
    }

    /// Appends an event.
    pub fn push(&self, e: BarrierEvent) {
        self.inner.lock().unwrap().push(e);
    }

    /// The events so far.
    pub fn events(&self) -> Vec<BarrierEvent> {
        self.inner.lock().unwrap().clone()
    }

    /// Whether nothing was logged yet.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().unwrap().is_empty()
    }
}

/// How a wait ended, as its participant saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    /// `Ok(Tripped)` (a double barrier's `enter`: `Ok(Inside)`, with the
    /// members as `arrivals`).
    Tripped {
        /// The generation it names.
        generation: u64,
        /// The arrival that completed the count.
        by: String,
        /// Who was counted.
        arrivals: Vec<String>,
    },
    /// `Error::Broken`.
    Broken {
        /// The generation it names.
        generation: u64,
        /// The reason as told.
        reason: String,
    },
    /// `Error::StaleGeneration`.
    Stale {
        /// The generation it names.
        generation: u64,
        /// The current one, as told.
        current: u64,
    },
    /// `Error::Timeout`: the backend could not be reached at the deadline.
    Timeout,
    /// Another error.
    Error(String),
    /// A double barrier's `leave` returned `Ok`: every member left.
    Left,
    /// Its process was killed while it waited.
    Killed,
}

/// One wait (a cyclic barrier's `wait_in`, a double barrier's `enter` or
/// its member's `leave`) as its participant saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrierWait {
    /// The participant (its id at the barrier).
    pub participant: String,
    /// The process (sim node) that waited, for its kills and pauses.
    pub process: String,
    /// Which kind of barrier.
    pub kind: BarrierKind,
    /// The barrier.
    pub barrier: String,
    /// The generation it arrived in (left, for a leave).
    pub generation: u64,
    /// A double barrier member's `leave` (else an arrival's wait).
    pub leave: bool,
    /// Its `wait_timeout`, on its own clock.
    pub wait_timeout: Option<Duration>,
    /// When it was called.
    pub start: Instant,
    /// When it returned (or its process was killed); `None` while open.
    pub end: Option<Instant>,
    /// How it ended.
    pub outcome: Option<WaitOutcome>,
}

/// Waits as their participants saw them. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct BarrierWaits {
    inner: Arc<Mutex<Vec<BarrierWait>>>,
}

impl BarrierWaits {
    /// No waits.
    pub fn new() -> BarrierWaits {
        BarrierWaits::default()
    }

    /// A wait began; returns its index.
    pub fn start(&self, w: BarrierWait) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(w);
        v.len() - 1
    }

    /// The wait returned at `at` (the first end recorded counts).
    pub fn end(&self, idx: usize, at: Instant, outcome: WaitOutcome) {
        let mut v = self.inner.lock().unwrap();
        let w = &mut v[idx];
        if w.end.is_none() {
            w.end = Some(at);
            w.outcome = Some(outcome);
        }
    }

    /// The wait's generation, once known (a double barrier's `enter` tells
    /// it only when it returns).
    pub fn set_generation(&self, idx: usize, generation: u64) {
        self.inner.lock().unwrap()[idx].generation = generation;
    }

    /// The wait's process was killed at `at`.
    pub fn killed(&self, idx: usize, at: Instant) {
        self.end(idx, at, WaitOutcome::Killed);
    }

    /// The waits.
    pub fn all(&self) -> Vec<BarrierWait> {
        self.inner.lock().unwrap().clone()
    }

    /// How many are still open.
    pub fn open(&self) -> usize {
        let v = self.inner.lock().unwrap();
        v.iter().filter(|w| w.end.is_none()).count()
    }
}

/// An interval during which a process sent nothing: paused, or killed
/// (until its restart; `to: None` if never restarted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downtime {
    /// The process (sim node name).
    pub process: String,
    /// From.
    pub from: Instant,
    /// To (`None`: for good).
    pub to: Option<Instant>,
    /// Killed (else paused).
    pub killed: bool,
}

/// The bounds [`check_barriers`] judges with.
#[derive(Debug, Clone, Copy)]
pub struct BarrierRules {
    /// The parties every generation waits for.
    pub parties: u32,
    /// An arrival's TTL in global time: the TTL on the server's clock
    /// (`ttl / server rate`).
    pub expiry: Duration,
    /// How long after its process last ran an arrival may still be
    /// counted beyond `expiry`: the longest a request already sent may
    /// travel, with a margin.
    pub dead_bound: Duration,
    /// How far past its `wait_timeout` (stretched by `max_drift`) a wait
    /// may return: what a waiter does at its deadline (a call to settle
    /// the generation, bounded by the operation timeout) and a round trip.
    pub wait_bound: Duration,
    /// How far past its `wait_timeout` (stretched by `max_drift`) a wait
    /// that could not reach the backend at its deadline may return with
    /// `Error::Timeout`: the contract's "never past its deadline by more
    /// than the operation timeout", with a margin for scheduling.
    pub unreachable_bound: Duration,
    /// The clients' clocks run at most this much slower than global time.
    pub max_drift: f64,
    /// With notifications lost: how soon after its generation tripped every
    /// waiter counted in it must return (its renewal period and a round
    /// trip), except for trips in the given window (answers lost).
    pub wake: Option<WakeRule>,
}

/// How soon waiters must learn of a trip without notifications.
#[derive(Debug, Clone, Copy)]
pub struct WakeRule {
    /// From the trip to the waiter's return.
    pub bound: Duration,
    /// Trips in this window are not judged (the backend's answers were
    /// lost then).
    pub except: (Instant, Instant),
}

/// What a run's barriers did, counted from the backend's log and the waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BarrierCounts {
    /// Generations that tripped (a double barrier's: entered).
    pub trips: usize,
    /// Generations that broke.
    pub breaks: usize,
    /// Waits that returned `Tripped`.
    pub tripped: usize,
    /// Waits that returned `Broken`.
    pub broken: usize,
    /// Waits that returned `StaleGeneration`.
    pub stale: usize,
    /// Waits that returned `Timeout`.
    pub timeouts: usize,
    /// Waits that returned another error.
    pub errors: usize,
    /// Arrivals the backend dropped at their deadline.
    pub expired: usize,
    /// The longest any wait took past its `wait_timeout` (and the time its
    /// process was paused).
    pub worst_overrun: Duration,
}

impl BarrierCounts {
    /// Counts `log` and `waits` (overruns net of the time a wait's process
    /// was paused, from `downtime`).
    pub fn of(log: &[BarrierEvent], waits: &[BarrierWait], downtime: &[Downtime]) -> BarrierCounts {
        let mut c = BarrierCounts::default();
        for e in log {
            match e {
                BarrierEvent::Ended {
                    kind: BarrierKind::Cyclic,
                    how: Ended::Tripped(_),
                    ..
                }
                | BarrierEvent::Entered { .. } => c.trips += 1,
                BarrierEvent::Ended {
                    how: Ended::Broken(_),
                    ..
                } => c.breaks += 1,
                BarrierEvent::Expired { .. } => c.expired += 1,
                _ => {}
            }
        }
        for w in waits {
            match &w.outcome {
                Some(WaitOutcome::Tripped { .. }) => c.tripped += 1,
                Some(WaitOutcome::Broken { .. }) => c.broken += 1,
                Some(WaitOutcome::Stale { .. }) => c.stale += 1,
                Some(WaitOutcome::Timeout) => c.timeouts += 1,
                Some(WaitOutcome::Error(_)) => c.errors += 1,
                _ => {}
            }
            if let (Some(end), Some(t)) = (w.end, w.wait_timeout) {
                let paused = paused_within(downtime, &w.process, w.start, end);
                let over = (end - w.start).saturating_sub(t + paused);
                c.worst_overrun = c.worst_overrun.max(over);
            }
        }
        c
    }
}

mod check;

pub use check::check_barriers;
pub(super) use check::paused_within;

#[cfg(test)]
mod tests;
