//! The job-graph family's histories: what the backend answered to the
//! graph calls that matter (attempts handed out, completions recorded or
//! refused, runs submitted and cancelled), in its order, as the sim server
//! logs them; the nodes' bodies as the workers ran them; and every run's
//! final status. [`check_graphs`] judges them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use coord_api::{
    Instant,
    spi::{Complete, GraphSpec, NodeResult, Outcome, RunStatus},
};

mod check;
#[cfg(test)]
mod tests;

pub use check::check_graphs;

/// What the backend answered to a graph call, in its order, with the
/// (global) instant it answered. Names are the keys as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphEvent {
    /// A `submit` was answered: `created`, or the run existed.
    Submitted {
        /// The graph.
        graph: String,
        /// The run.
        run: String,
        /// Whether this call made it.
        created: bool,
        /// When.
        at: Instant,
    },
    /// A `take` handed out an attempt.
    Taken {
        /// The graph.
        graph: String,
        /// The run.
        run: String,
        /// The node.
        node: String,
        /// The attempt (1-based).
        attempt: u32,
        /// Its token.
        token: u64,
        /// To whom (the holder's text).
        holder: String,
        /// When.
        at: Instant,
    },
    /// A `complete` was answered.
    Completed {
        /// The graph.
        graph: String,
        /// The run.
        run: String,
        /// The node.
        node: String,
        /// The token it named.
        token: u64,
        /// What the worker sent.
        result: NodeResult,
        /// What the backend answered.
        reply: Complete,
        /// When.
        at: Instant,
    },
    /// A `give_back` was answered: how many attempts of `holder` it gave
    /// back (decision 0044).
    GaveBack {
        /// The graph.
        graph: String,
        /// The holder named (its text).
        holder: String,
        /// The answer.
        returned: u32,
        /// When.
        at: Instant,
    },
    /// A `cancel` cancelled the run (answered `Cancelled`).
    Cancelled {
        /// The graph.
        graph: String,
        /// The run.
        run: String,
        /// When.
        at: Instant,
    },
}

/// The backend's graph events, in its order. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct GraphLog {
    inner: Arc<Mutex<Vec<GraphEvent>>>,
}

impl GraphLog {
    /// An empty log.
    pub fn new() -> GraphLog {
        GraphLog::default()
    }

    /// Appends an event.
    pub fn push(&self, e: GraphEvent) {
        self.inner.lock().unwrap().push(e);
    }

    /// The events so far.
    pub fn events(&self) -> Vec<GraphEvent> {
        self.inner.lock().unwrap().clone()
    }
}

/// How a body ended, as its worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyEnd {
    /// It returned `Ok` (its result: its token).
    Succeeded,
    /// It returned a failure to be retried.
    Failed,
    /// It returned a permanent failure.
    FailedPermanently,
    /// Its lost signal fired; it stopped (a failure).
    Lost,
    /// Its process was killed.
    Killed,
}

/// One attempt's body as its worker ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The worker (its process's name).
    pub worker: String,
    /// The graph.
    pub graph: String,
    /// The run.
    pub run: String,
    /// The node.
    pub node: String,
    /// The attempt, as the context told it.
    pub attempt: u32,
    /// The attempt's token.
    pub token: u64,
    /// Its parents' outcomes, as the context told them, in edge order.
    pub parents: Vec<(String, Outcome)>,
    /// When the body began (before anything it did).
    pub start: Instant,
    /// When it ended (or its process was killed); `None` while running.
    pub end: Option<Instant>,
    /// How.
    pub ended: Option<BodyEnd>,
}

/// Bodies as their workers ran them. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Bodies {
    inner: Arc<Mutex<Vec<Body>>>,
}

impl Bodies {
    /// No bodies.
    pub fn new() -> Bodies {
        Bodies::default()
    }

    /// A body began; returns its index.
    pub fn start(&self, b: Body) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(b);
        v.len() - 1
    }

    /// The body ended at `at` (the first end recorded counts).
    pub fn end(&self, idx: usize, at: Instant, how: BodyEnd) {
        let mut v = self.inner.lock().unwrap();
        let b = &mut v[idx];
        if b.end.is_none() {
            b.end = Some(at);
            b.ended = Some(how);
        }
    }

    /// Worker `worker`'s process was killed at `at`: its running bodies
    /// ended then.
    pub fn killed(&self, worker: &str, at: Instant) {
        let mut v = self.inner.lock().unwrap();
        for b in v
            .iter_mut()
            .filter(|b| b.worker == worker && b.end.is_none())
        {
            b.end = Some(at);
            b.ended = Some(BodyEnd::Killed);
        }
    }

    /// The bodies.
    pub fn all(&self) -> Vec<Body> {
        self.inner.lock().unwrap().clone()
    }
}

/// A run of the workload at the end: its final status (`None`: the
/// backend did not know it), and when its wait returned (`None`: it did
/// not end in time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalRun {
    /// The graph.
    pub graph: String,
    /// The run.
    pub run: String,
    /// Its status when the wait ended (or gave up).
    pub status: Option<RunStatus>,
    /// When its wait returned an ended run.
    pub ended: Option<Instant>,
}

/// Maps the server's wall clock to global instants: the server's clock
/// read `wall` at global instant `global`, running `rate` local seconds
/// per global second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallMap {
    /// A global instant.
    pub global: Instant,
    /// The server's wall clock at `global`.
    pub wall: SystemTime,
    /// Its rate.
    pub rate: WallRate,
}

/// A clock rate in parts per billion above (or below) one, so that
/// [`WallMap`] stays `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallRate(pub i64);

impl WallRate {
    /// The rate `r` (local seconds per global second).
    pub fn of(r: f64) -> WallRate {
        WallRate(((r - 1.0) * 1e9).round() as i64)
    }

    fn get(self) -> f64 {
        1.0 + self.0 as f64 / 1e9
    }
}

impl WallMap {
    /// The global instant at which the server's wall clock read `w`.
    pub fn to_global(&self, w: SystemTime) -> Instant {
        let rate = self.rate.get();
        match w.duration_since(self.wall) {
            Ok(ahead) => self.global + ahead.div_f64(rate),
            Err(e) => {
                let behind = e.duration().div_f64(rate);
                self.global.checked_sub(behind).unwrap_or(self.global)
            }
        }
    }
}

/// What [`check_graphs`] judges.
#[derive(Debug, Clone)]
pub struct GraphHistory {
    /// Each graph's declared shape, by name.
    pub specs: HashMap<String, GraphSpec>,
    /// The backend's log.
    pub events: Vec<GraphEvent>,
    /// The bodies.
    pub bodies: Vec<Body>,
    /// Every run the workload submitted, at the end.
    pub runs: Vec<FinalRun>,
    /// The server's wall clock as global time.
    pub wall: WallMap,
    /// The accepted writes of the fenced resource (keys
    /// `<graph>/<run>/<node>`; other keys are ignored).
    pub writes: Vec<crate::history::Write>,
}

/// The resource key a body of `node` writes to.
pub fn resource_key(graph: &str, run: &str, node: &str) -> String {
    format!("{graph}/{run}/{node}")
}

/// What the graphs did, over one run or a sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphCounts {
    /// Runs judged.
    pub runs: u64,
    /// Of which cancelled (by a cancel or a node's failure policy).
    pub runs_cancelled: u64,
    /// Nodes that ended succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Attempts handed out.
    pub attempts: u64,
    /// Attempts whose completion the backend recorded (answered
    /// `Recorded`, or `Already` when sent again after its reply was lost).
    pub recorded: u64,
    /// Completions refused as stale.
    pub stale: u64,
    /// Bodies whose process was killed while they ran.
    pub bodies_killed: u64,
    /// Worker processes killed at a step boundary.
    pub crashes: u64,
    /// The step boundaries crashed at, one bit each.
    pub boundaries: u64,
    /// The longest any run took to end after the heal, in ms.
    pub worst_end_after_heal_ms: u64,
}

impl GraphCounts {
    /// How many numbers [`to_vec`](Self::to_vec) gives.
    pub const LEN: usize = 13;

    /// The counts as numbers, for a report line.
    pub fn to_vec(&self) -> Vec<u64> {
        vec![
            self.runs,
            self.runs_cancelled,
            self.succeeded,
            self.failed,
            self.skipped,
            self.cancelled,
            self.attempts,
            self.recorded,
            self.stale,
            self.bodies_killed,
            self.crashes,
            self.boundaries,
            self.worst_end_after_heal_ms,
        ]
    }

    /// The counts from [`to_vec`](Self::to_vec)'s numbers.
    pub fn from_slice(f: &[u64]) -> GraphCounts {
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        GraphCounts {
            runs: g(0),
            runs_cancelled: g(1),
            succeeded: g(2),
            failed: g(3),
            skipped: g(4),
            cancelled: g(5),
            attempts: g(6),
            recorded: g(7),
            stale: g(8),
            bodies_killed: g(9),
            crashes: g(10),
            boundaries: g(11),
            worst_end_after_heal_ms: g(12),
        }
    }

    /// Adds `o` (the boundaries' union, the worst of the worst).
    pub fn add(&mut self, o: &GraphCounts) {
        self.runs += o.runs;
        self.runs_cancelled += o.runs_cancelled;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.cancelled += o.cancelled;
        self.attempts += o.attempts;
        self.recorded += o.recorded;
        self.stale += o.stale;
        self.bodies_killed += o.bodies_killed;
        self.crashes += o.crashes;
        self.boundaries |= o.boundaries;
        self.worst_end_after_heal_ms = self.worst_end_after_heal_ms.max(o.worst_end_after_heal_ms);
    }

    /// The counts a history shows (crashes and boundaries are the
    /// scenario's to add).
    pub fn of(h: &GraphHistory, healed: Instant) -> GraphCounts {
        use coord_api::spi::{NodeState, RunState};
        let mut c = GraphCounts::default();
        for r in &h.runs {
            c.runs += 1;
            let Some(s) = &r.status else { continue };
            c.runs_cancelled += u64::from(s.state == RunState::Cancelled);
            for n in &s.nodes {
                match n.state {
                    NodeState::Succeeded => c.succeeded += 1,
                    NodeState::Failed => c.failed += 1,
                    NodeState::Skipped => c.skipped += 1,
                    NodeState::Cancelled => c.cancelled += 1,
                    _ => {}
                }
            }
            if let Some(at) = s.ended_at.map(|w| h.wall.to_global(w)) {
                let after = at.saturating_duration_since(healed);
                c.worst_end_after_heal_ms = c.worst_end_after_heal_ms.max(after.as_millis() as u64);
            }
        }
        for e in &h.events {
            match e {
                GraphEvent::Taken { .. } => c.attempts += 1,
                GraphEvent::Completed {
                    reply: Complete::Recorded { .. } | Complete::Already { .. },
                    ..
                } => c.recorded += 1,
                GraphEvent::Completed { .. } => c.stale += 1,
                _ => {}
            }
        }
        c.bodies_killed = (h.bodies.iter())
            .filter(|b| b.ended == Some(BodyEnd::Killed))
            .count() as u64;
        c
    }
}
