//! The barrier family's histories: what the backend did to barriers and
//! latches (arrivals counted and expired, trips, ends of generations), in
//! its order, from the store's journal; the waits as their participants saw
//! them; and when the participants' processes could send nothing (killed,
//! paused). [`check_barriers`] judges them.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{
    Instant,
    spi::{BarrierKind, BreakReason, ENDED_KEPT, Ended},
};

use super::Violation;

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

/// A barrier of one kind.
type Name<'a> = (BarrierKind, &'a str);

/// How the backend ended one generation, and where in its log.
struct EndOf<'a> {
    /// Index in the log.
    pos: usize,
    at: Instant,
    how: &'a Ended,
}

/// Judges the backend's barrier log (`log`, in its order) and the waits
/// (`waits`), knowing when the waiting processes sent nothing
/// (`downtime`); waits still open and not killed are judged as hanging.
///
/// - `barrier-early` (a): every trip (a cyclic barrier's end by trip, a
///   double barrier's entry) counts `parties` distinct participants, the
///   last the one that tripped it, each with an arrival in that generation
///   in the backend's log before the trip and not expired nor withdrawn
///   since.
/// - `barrier-dead` (b): no participant is counted in a trip when none of
///   its waits in that generation ran (its process alive and not paused,
///   the wait not returned) within `expiry + dead_bound` before the trip: a
///   killed or paused participant, or one that gave up, is not counted past
///   its TTL.
/// - `barrier-outcome` (c): a generation ends once; a wait returns the
///   outcome of its own generation, as the backend ended it (`Tripped` only
///   when the backend counted it in that trip, with the same trip;
///   `Broken` only when the backend broke it); no two waiters of one
///   generation return `Tripped` and `Broken`; and a waiter counted in a
///   trip, or of a generation that broke, is not told it was stale while
///   the backend still remembers how it ended (fewer than [`ENDED_KEPT`]
///   later ends, no restart). A double barrier member's `leave` returns
///   `Ok` only after the backend ended its generation; and the backend
///   ends an entered generation (tripped) only once every member it
///   counted left or expired (`barrier-early`).
/// - `barrier-hang` (d): every wait returns within its `wait_timeout`
///   (stretched by `max_drift`) plus `wait_bound` plus the time its process
///   was paused, and an arrival's wait that returns `Timeout` (the backend
///   out of reach at its deadline) within `unreachable_bound` instead; none
///   is
///   left open unless its process was killed.
/// - `barrier-generations` (e): per barrier, generations strictly increase
///   in the backend's order, across restarts: every event names the
///   current generation or one above all seen before, and an end begins a
///   larger one.
pub fn check_barriers(
    log: &[BarrierEvent],
    waits: &[BarrierWait],
    downtime: &[Downtime],
    rules: &BarrierRules,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let ends = check_generations(log, &mut out);
    check_trips(log, rules, &mut out);
    check_double_ends(log, &mut out);
    check_dead(log, waits, downtime, rules, &mut out);
    check_outcomes(log, waits, &ends, &mut out);
    check_hangs(waits, downtime, rules, &mut out);
    if let Some(wake) = &rules.wake {
        check_wakes(log, waits, wake, &mut out);
    }
    out
}

/// With notifications lost, every waiter counted in a cyclic barrier's trip
/// returns within `wake.bound` of it: it reads again when it renews.
fn check_wakes(
    log: &[BarrierEvent],
    waits: &[BarrierWait],
    wake: &WakeRule,
    out: &mut Vec<Violation>,
) {
    let mut trips: HashMap<(&str, u64), Instant> = HashMap::new();
    for e in log {
        if let BarrierEvent::Ended {
            kind: BarrierKind::Cyclic,
            barrier,
            generation,
            how: Ended::Tripped(_),
            at,
            ..
        } = e
        {
            trips.insert((barrier.as_str(), *generation), *at);
        }
    }
    for w in waits {
        let (Some(WaitOutcome::Tripped { generation, .. }), Some(end)) = (&w.outcome, w.end) else {
            continue;
        };
        let Some(&at) = trips.get(&(w.barrier.as_str(), *generation)) else {
            continue;
        };
        if at >= wake.except.0 && at <= wake.except.1 {
            continue;
        }
        let from = at.max(w.start);
        if end > from + wake.bound {
            out.push(Violation::new(
                "barrier-wake",
                format!(
                    "barrier {:?}: {}'s wait in generation {generation} returned {:?} after the trip, \
                     more than {:?} with notifications lost",
                    w.barrier,
                    w.participant,
                    end - from,
                    wake.bound
                ),
            ));
        }
    }
}

/// (e), and the ends of generations by barrier and generation.
fn check_generations<'a>(
    log: &'a [BarrierEvent],
    out: &mut Vec<Violation>,
) -> HashMap<(Name<'a>, u64), EndOf<'a>> {
    let mut gens: HashMap<Name<'_>, Gens> = HashMap::new();
    let mut ends: HashMap<(Name<'_>, u64), EndOf<'_>> = HashMap::new();
    for (pos, e) in log.iter().enumerate() {
        match e {
            BarrierEvent::Arrived {
                kind,
                barrier,
                participant,
                generation,
                ..
            } => saw(
                &mut gens,
                (*kind, barrier),
                *generation,
                &format!("{participant} arrived"),
                out,
            ),
            BarrierEvent::Expired {
                kind,
                barrier,
                participant,
                generation,
                ..
            } => saw(
                &mut gens,
                (*kind, barrier),
                *generation,
                &format!("{participant}'s arrival expired"),
                out,
            ),
            BarrierEvent::Left {
                kind,
                barrier,
                participant,
                generation,
                ..
            } => saw(
                &mut gens,
                (*kind, barrier),
                *generation,
                &format!("{participant} left"),
                out,
            ),
            BarrierEvent::Entered {
                barrier,
                generation,
                ..
            } => saw(
                &mut gens,
                (BarrierKind::Double, barrier),
                *generation,
                "everyone entered",
                out,
            ),
            BarrierEvent::Ended {
                kind,
                barrier,
                generation,
                next,
                how,
                at,
            } => {
                let name = (*kind, barrier.as_str());
                saw(&mut gens, name, *generation, "it ended", out);
                if *next <= *generation {
                    out.push(Violation::new(
                        "barrier-generations",
                        format!(
                            "{} {barrier:?}: generation {generation} ended with next {next}, not above it",
                            kind.as_str()
                        ),
                    ));
                }
                if let Some(first) = ends.get(&(name, *generation)) {
                    out.push(Violation::new(
                        "barrier-outcome",
                        format!(
                            "{} {barrier:?}: generation {generation} ended twice, at {:?} ({}) and at {at:?} ({})",
                            kind.as_str(),
                            first.at,
                            describe(first.how),
                            describe(how)
                        ),
                    ));
                } else {
                    ends.insert((name, *generation), EndOf { pos, at: *at, how });
                }
                if let Some(s) = gens.get_mut(&name) {
                    s.current = *next;
                    s.max = s.max.max(*next);
                }
            }
            _ => {}
        }
    }
    ends
}

/// Where a barrier's generations are, in the backend's order.
struct Gens {
    current: u64,
    max: u64,
}

/// An event of `name` in generation `g`: the current one, or one above all
/// seen before (a record made anew after a restart).
fn saw<'a>(
    gens: &mut HashMap<Name<'a>, Gens>,
    name: Name<'a>,
    g: u64,
    what: &str,
    out: &mut Vec<Violation>,
) {
    match gens.get_mut(&name) {
        None => {
            gens.insert(name, Gens { current: g, max: g });
        }
        Some(s) if s.current == g => {}
        Some(s) if g > s.max => {
            s.current = g;
            s.max = g;
        }
        Some(s) => out.push(Violation::new(
            "barrier-generations",
            format!(
                "{} {:?}: {what} in generation {g}, while the current one is {} and generations up to {} were seen",
                name.0.as_str(),
                name.1,
                s.current,
                s.max
            ),
        )),
    }
}

fn describe(how: &Ended) -> String {
    match how {
        Ended::Tripped(t) => format!("tripped by {} counting {:?}", t.by, names(&t.arrivals)),
        Ended::Broken(b) => format!(
            "broken ({}), arrived {:?}, expired {:?}, {} missing",
            reason(&b.reason),
            names(&b.arrived),
            names(&b.expired),
            b.missing
        ),
        other => format!("{other:?}"),
    }
}

fn names(keys: &[coord_api::Key]) -> Vec<&str> {
    keys.iter().map(|k| k.as_str()).collect()
}

/// A break's reason as `Error::Broken` tells it.
pub fn reason(r: &BreakReason) -> String {
    match r {
        BreakReason::Timeout { by } => format!("timeout of {:?}", by.as_str()),
        BreakReason::Reset => "reset".to_owned(),
        other => format!("{other:?}"),
    }
}

/// (a): every trip counts `parties` distinct live arrivals of its
/// generation.
fn check_trips(log: &[BarrierEvent], rules: &BarrierRules, out: &mut Vec<Violation>) {
    // Per barrier and generation, who is live (arrived, not expired since).
    let mut live: HashMap<(Name<'_>, u64), HashSet<&str>> = HashMap::new();
    for e in log {
        let (name, g, by, arrivals, at) = match e {
            BarrierEvent::Arrived {
                kind,
                barrier,
                participant,
                generation,
                ..
            } => {
                live.entry(((*kind, barrier), *generation))
                    .or_default()
                    .insert(participant);
                continue;
            }
            BarrierEvent::Expired {
                kind,
                barrier,
                participant,
                generation,
                ..
            }
            | BarrierEvent::Left {
                kind,
                barrier,
                participant,
                generation,
                ..
            } => {
                if let Some(l) = live.get_mut(&((*kind, barrier.as_str()), *generation)) {
                    l.remove(participant.as_str());
                }
                continue;
            }
            BarrierEvent::Restart { .. } => {
                live.clear();
                continue;
            }
            BarrierEvent::Ended {
                kind: BarrierKind::Cyclic,
                barrier,
                generation,
                how: Ended::Tripped(t),
                at,
                ..
            } => (
                (BarrierKind::Cyclic, barrier.as_str()),
                *generation,
                t.by.as_str(),
                names(&t.arrivals),
                *at,
            ),
            BarrierEvent::Entered {
                barrier,
                generation,
                by,
                arrivals,
                at,
            } => (
                (BarrierKind::Double, barrier.as_str()),
                *generation,
                by.as_str(),
                arrivals.iter().map(String::as_str).collect(),
                *at,
            ),
            _ => continue,
        };
        let what = format!(
            "{} {:?} generation {g} tripped at {at:?} by {by} counting {arrivals:?}",
            name.0.as_str(),
            name.1
        );
        let distinct: HashSet<&str> = arrivals.iter().copied().collect();
        if distinct.len() != arrivals.len() || arrivals.len() != rules.parties as usize {
            out.push(Violation::new(
                "barrier-early",
                format!("{what}: not {} distinct parties", rules.parties),
            ));
        }
        if arrivals.last() != Some(&by) {
            out.push(Violation::new(
                "barrier-early",
                format!("{what}: the last counted is not the one that tripped it"),
            ));
        }
        let empty = HashSet::new();
        let alive = live.get(&(name, g)).unwrap_or(&empty);
        for p in &arrivals {
            if !alive.contains(p) {
                out.push(Violation::new(
                    "barrier-early",
                    format!(
                        "{what}: {p} had no live arrival in that generation (never arrived, or expired)"
                    ),
                ));
            }
        }
    }
}

/// The latest instant at or before `t` at which `w` was waiting and its
/// process running, if any.
fn last_running(w: &BarrierWait, t: Instant, downtime: &[Downtime]) -> Option<Instant> {
    let mut at = w.end.map_or(t, |e| e.min(t));
    loop {
        if at < w.start {
            return None;
        }
        let down = downtime
            .iter()
            .filter(|d| d.process == w.process)
            .find(|d| d.from < at && d.to.is_none_or(|to| at < to));
        match down {
            Some(d) => at = d.from,
            None => return Some(at),
        }
    }
}

/// (b): nobody counted in a trip past its TTL after it stopped waiting.
fn check_dead(
    log: &[BarrierEvent],
    waits: &[BarrierWait],
    downtime: &[Downtime],
    rules: &BarrierRules,
    out: &mut Vec<Violation>,
) {
    let limit = rules.expiry + rules.dead_bound;
    for e in log {
        let (kind, barrier, g, arrivals, at) = match e {
            BarrierEvent::Ended {
                kind: BarrierKind::Cyclic,
                barrier,
                generation,
                how: Ended::Tripped(t),
                at,
                ..
            } => (
                BarrierKind::Cyclic,
                barrier,
                *generation,
                names(&t.arrivals),
                *at,
            ),
            BarrierEvent::Entered {
                barrier,
                generation,
                arrivals,
                at,
                ..
            } => (
                BarrierKind::Double,
                barrier,
                *generation,
                arrivals.iter().map(String::as_str).collect(),
                *at,
            ),
            _ => continue,
        };
        for p in arrivals {
            let mine = waits.iter().filter(|w| {
                w.participant == p
                    && !w.leave
                    && w.kind == kind
                    && w.barrier == *barrier
                    && w.generation == g
            });
            let last = mine.filter_map(|w| last_running(w, at, downtime)).max();
            let ok = last.is_some_and(|l| at <= l + limit);
            if !ok {
                let why = match last {
                    Some(l) => format!("it last waited (its process running) at {l:?}"),
                    None => "it never waited in that generation".to_owned(),
                };
                let downs: Vec<String> = downtime
                    .iter()
                    .filter(|d| Some(d.process.as_str()) == process_of(waits, p))
                    .map(|d| {
                        format!(
                            "{} {:?}..{:?}",
                            if d.killed { "killed" } else { "paused" },
                            d.from,
                            d.to
                        )
                    })
                    .collect();
                out.push(Violation::new(
                    "barrier-dead",
                    format!(
                        "{} {barrier:?} generation {g} tripped at {at:?} counting {p}, but {why}: more than its TTL ({:?}) plus {:?} before (its process: {downs:?})",
                        kind.as_str(),
                        rules.expiry,
                        rules.dead_bound
                    ),
                ));
            }
        }
    }
}

fn process_of<'a>(waits: &'a [BarrierWait], participant: &str) -> Option<&'a str> {
    waits
        .iter()
        .find(|w| w.participant == participant)
        .map(|w| w.process.as_str())
}

/// (c): every waiter of a generation returns as the backend ended it.
fn check_outcomes(
    log: &[BarrierEvent],
    waits: &[BarrierWait],
    ends: &HashMap<(Name<'_>, u64), EndOf<'_>>,
    out: &mut Vec<Violation>,
) {
    // Where in the log the waits returned: the log's events before it.
    let at_pos = |t: Instant| log.partition_point(|e| event_at(e) <= t);
    let mut seen: HashMap<(Name<'_>, u64), (&str, &str)> = HashMap::new();
    for w in waits {
        let name = (w.kind, w.barrier.as_str());
        let g = w.generation;
        if w.leave {
            check_leave(log, w, ends.get(&(name, g)), out);
            continue;
        }
        let what = format!(
            "{} {:?}: {}'s wait in generation {g} ({:?}..{:?})",
            w.kind.as_str(),
            w.barrier,
            w.participant,
            w.start,
            w.end
        );
        let end = ends.get(&(name, g));
        let mut flag = |detail: String| {
            out.push(Violation::new(
                "barrier-outcome",
                format!("{what} {detail}"),
            ))
        };
        match &w.outcome {
            Some(WaitOutcome::Tripped {
                generation,
                by,
                arrivals,
            }) => {
                if *generation != g {
                    flag(format!("returned the trip of generation {generation}"));
                    continue;
                }
                // A double barrier's entry is checked against its Entered.
                let trip = match w.kind {
                    BarrierKind::Double => log.iter().find_map(|e| match e {
                        BarrierEvent::Entered {
                            barrier,
                            generation,
                            by,
                            arrivals,
                            ..
                        } if barrier == &w.barrier && *generation == g => {
                            Some((by.clone(), arrivals.clone()))
                        }
                        _ => None,
                    }),
                    _ => match end.map(|e| e.how) {
                        Some(Ended::Tripped(t)) => Some((
                            t.by.to_string(),
                            t.arrivals.iter().map(|k| k.to_string()).collect(),
                        )),
                        _ => None,
                    },
                };
                match trip {
                    None => flag(format!(
                        "returned Tripped, but the backend {}",
                        end.map_or("never ended it".to_owned(), |e| format!(
                            "ended it {}",
                            describe(e.how)
                        ))
                    )),
                    Some((b, a)) => {
                        if !a.contains(&w.participant) {
                            flag(format!(
                                "returned Tripped, but the backend's trip did not count it ({a:?})"
                            ));
                        } else if (&b, &a) != (by, arrivals) {
                            flag(format!(
                                "returned a trip by {by} counting {arrivals:?}; the backend's was by {b} counting {a:?}"
                            ));
                        }
                    }
                }
                let first = seen.entry((name, g)).or_insert(("Tripped", &w.participant));
                if first.0 != "Tripped" {
                    flag(format!(
                        "returned Tripped, while {} returned {} for the same generation",
                        first.1, first.0
                    ));
                }
            }
            Some(WaitOutcome::Broken { generation, .. }) => {
                if *generation != g {
                    flag(format!("returned the break of generation {generation}"));
                    continue;
                }
                match end.map(|e| e.how) {
                    Some(Ended::Broken(_)) => {}
                    other => flag(format!(
                        "returned Broken, but the backend {}",
                        other.map_or("never ended it".to_owned(), |h| format!(
                            "ended it {}",
                            describe(h)
                        ))
                    )),
                }
                let first = seen.entry((name, g)).or_insert(("Broken", &w.participant));
                if first.0 != "Broken" {
                    flag(format!(
                        "returned Broken, while {} returned {} for the same generation",
                        first.1, first.0
                    ));
                }
            }
            Some(WaitOutcome::Stale { generation, .. }) => {
                if *generation != g {
                    // `wait_in` names its own generation when stale.
                    flag(format!(
                        "returned StaleGeneration for generation {generation}"
                    ));
                    continue;
                }
                let Some(e) = end else { continue };
                let counted = match e.how {
                    Ended::Tripped(t) => t.arrivals.iter().any(|k| k.as_str() == w.participant),
                    Ended::Broken(_) => true,
                    _ => false,
                };
                if !counted || w.kind == BarrierKind::Double {
                    continue;
                }
                // Still remembered when the wait returned: fewer than
                // ENDED_KEPT later ends of the barrier, no restart.
                let until = at_pos(w.end.expect("returned"));
                let later = &log[(e.pos + 1).min(until)..until];
                let restarted = later
                    .iter()
                    .any(|x| matches!(x, BarrierEvent::Restart { .. }));
                let ended_since = later
                    .iter()
                    .filter(|x| {
                        matches!(x, BarrierEvent::Ended { kind, barrier, .. }
                            if *kind == w.kind && barrier == &w.barrier)
                    })
                    .count();
                if !restarted && ended_since < ENDED_KEPT {
                    flag(format!(
                        "returned StaleGeneration, but the backend ended it {} ({ended_since} generations before the wait returned, remembered)",
                        describe(e.how)
                    ));
                }
            }
            _ => {}
        }
    }
}

/// A double barrier member's leave returns `Ok` only once the backend
/// ended its generation (every member left or expired), `Broken` only if
/// the backend broke it.
fn check_leave(
    _log: &[BarrierEvent],
    w: &BarrierWait,
    end: Option<&EndOf<'_>>,
    out: &mut Vec<Violation>,
) {
    let what = format!(
        "{} {:?}: {}'s leave of generation {} ({:?}..{:?})",
        w.kind.as_str(),
        w.barrier,
        w.participant,
        w.generation,
        w.start,
        w.end
    );
    let detail = match (&w.outcome, end) {
        (Some(WaitOutcome::Left), Some(e)) if matches!(e.how, Ended::Tripped(_)) => match w.end {
            Some(r) if e.at > r => Some(format!(
                "returned Ok at {r:?}, before the backend ended the generation at {:?}",
                e.at
            )),
            _ => None,
        },
        (Some(WaitOutcome::Left), e) => Some(format!(
            "returned Ok, but the backend {}",
            e.map_or("never ended the generation".to_owned(), |e| format!(
                "ended it {}",
                describe(e.how)
            ))
        )),
        (Some(WaitOutcome::Broken { .. }), e)
            if !e.is_some_and(|e| matches!(e.how, Ended::Broken(_))) =>
        {
            Some(format!(
                "returned Broken, but the backend {}",
                e.map_or("never ended the generation".to_owned(), |e| format!(
                    "ended it {}",
                    describe(e.how)
                ))
            ))
        }
        _ => None,
    };
    if let Some(d) = detail {
        out.push(Violation::new("barrier-outcome", format!("{what} {d}")));
    }
}

/// A double barrier's generation that everyone entered ends (tripped)
/// only once every member it counted left or expired, in the backend's
/// order.
fn check_double_ends(log: &[BarrierEvent], out: &mut Vec<Violation>) {
    let mut inside: HashMap<(&str, u64), HashSet<&str>> = HashMap::new();
    for e in log {
        match e {
            BarrierEvent::Entered {
                barrier,
                generation,
                arrivals,
                ..
            } => {
                inside.insert(
                    (barrier, *generation),
                    arrivals.iter().map(String::as_str).collect(),
                );
            }
            BarrierEvent::Left {
                kind: BarrierKind::Double,
                barrier,
                participant,
                generation,
                ..
            }
            | BarrierEvent::Expired {
                kind: BarrierKind::Double,
                barrier,
                participant,
                generation,
                ..
            } => {
                if let Some(m) = inside.get_mut(&(barrier.as_str(), *generation)) {
                    m.remove(participant.as_str());
                }
            }
            BarrierEvent::Ended {
                kind: BarrierKind::Double,
                barrier,
                generation,
                how: Ended::Tripped(_),
                at,
                ..
            } => {
                let left = inside.remove(&(barrier.as_str(), *generation));
                match left {
                    None => out.push(Violation::new(
                        "barrier-early",
                        format!(
                            "double_barrier {barrier:?} generation {generation} ended tripped at {at:?}, but nobody entered it"
                        ),
                    )),
                    Some(m) if !m.is_empty() => {
                        let mut m: Vec<&str> = m.into_iter().collect();
                        m.sort();
                        out.push(Violation::new(
                            "barrier-early",
                            format!(
                                "double_barrier {barrier:?} generation {generation} ended at {at:?} with {m:?} still inside (neither left nor expired)"
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            BarrierEvent::Restart { .. } => inside.clear(),
            _ => {}
        }
    }
}

fn event_at(e: &BarrierEvent) -> Instant {
    match e {
        BarrierEvent::Arrived { at, .. }
        | BarrierEvent::Expired { at, .. }
        | BarrierEvent::Left { at, .. }
        | BarrierEvent::Entered { at, .. }
        | BarrierEvent::Ended { at, .. }
        | BarrierEvent::LatchSet { at, .. }
        | BarrierEvent::CountedDown { at, .. }
        | BarrierEvent::Restart { at } => *at,
    }
}

/// How long `process` was paused within `[from, to]`.
pub(super) fn paused_within(
    downtime: &[Downtime],
    process: &str,
    from: Instant,
    to: Instant,
) -> Duration {
    downtime
        .iter()
        .filter(|d| d.process == process && !d.killed)
        .map(|d| {
            let a = d.from.max(from);
            let b = d.to.unwrap_or(to).min(to);
            b.saturating_duration_since(a)
        })
        .sum()
}

/// (d): no wait outlives its deadline by more than the bound.
fn check_hangs(
    waits: &[BarrierWait],
    downtime: &[Downtime],
    rules: &BarrierRules,
    out: &mut Vec<Violation>,
) {
    for w in waits {
        let what = format!(
            "{} {:?}: {}'s wait in generation {} (from {:?}, wait_timeout {:?})",
            w.kind.as_str(),
            w.barrier,
            w.participant,
            w.generation,
            w.start,
            w.wait_timeout
        );
        let Some(end) = w.end else {
            out.push(Violation::new(
                "barrier-hang",
                format!("{what} never returned, and its process was not killed"),
            ));
            continue;
        };
        if matches!(w.outcome, Some(WaitOutcome::Killed)) {
            continue;
        }
        let Some(timeout) = w.wait_timeout else {
            continue;
        };
        let bound = match w.outcome {
            Some(WaitOutcome::Timeout) if !w.leave => rules.unreachable_bound,
            _ => rules.wait_bound,
        };
        let allowed = timeout.mul_f64(1.0 + rules.max_drift)
            + bound
            + paused_within(downtime, &w.process, w.start, end);
        if end - w.start > allowed {
            out.push(Violation::new(
                "barrier-hang",
                format!(
                    "{what} returned {:?} after {:?}: more than {allowed:?} ({:?})",
                    w.outcome,
                    end - w.start,
                    (end - w.start) - timeout
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::t;
    use coord_api::{
        Key,
        spi::{Broken, Trip},
    };

    fn k(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn arrived(p: &str, g: u64, at: u64) -> BarrierEvent {
        BarrierEvent::Arrived {
            kind: BarrierKind::Cyclic,
            barrier: "b".into(),
            participant: p.into(),
            generation: g,
            at: t(at),
        }
    }

    fn expired(p: &str, g: u64, at: u64) -> BarrierEvent {
        BarrierEvent::Expired {
            kind: BarrierKind::Cyclic,
            barrier: "b".into(),
            participant: p.into(),
            generation: g,
            at: t(at),
        }
    }

    fn tripped(g: u64, next: u64, counted: &[&str], at: u64) -> BarrierEvent {
        BarrierEvent::Ended {
            kind: BarrierKind::Cyclic,
            barrier: "b".into(),
            generation: g,
            next,
            how: Ended::Tripped(Trip::new(
                k(counted.last().unwrap()),
                counted.iter().map(|p| k(p)).collect(),
            )),
            at: t(at),
        }
    }

    fn broke(g: u64, next: u64, at: u64) -> BarrierEvent {
        BarrierEvent::Ended {
            kind: BarrierKind::Cyclic,
            barrier: "b".into(),
            generation: g,
            next,
            how: Ended::Broken(Broken::new(
                BreakReason::Timeout { by: k("a") },
                vec![k("a")],
                vec![],
                1,
            )),
            at: t(at),
        }
    }

    fn wait(p: &str, g: u64, start: u64, end: Option<u64>, outcome: WaitOutcome) -> BarrierWait {
        BarrierWait {
            participant: p.into(),
            process: p.into(),
            kind: BarrierKind::Cyclic,
            barrier: "b".into(),
            generation: g,
            leave: false,
            wait_timeout: Some(Duration::from_millis(3_000)),
            start: t(start),
            end: end.map(t),
            outcome: end.map(|_| outcome),
        }
    }

    fn trip_outcome(g: u64, counted: &[&str]) -> WaitOutcome {
        WaitOutcome::Tripped {
            generation: g,
            by: counted.last().unwrap().to_string(),
            arrivals: counted.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn rules() -> BarrierRules {
        BarrierRules {
            parties: 2,
            expiry: Duration::from_millis(1_000),
            dead_bound: Duration::from_millis(100),
            wait_bound: Duration::from_millis(500),
            unreachable_bound: Duration::from_millis(300),
            max_drift: 0.01,
            wake: None,
        }
    }

    fn checkers(
        log: &[BarrierEvent],
        waits: &[BarrierWait],
        down: &[Downtime],
    ) -> Vec<&'static str> {
        check_barriers(log, waits, down, &rules())
            .into_iter()
            .map(|v| v.checker)
            .collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let log = [
            arrived("a", 10, 0),
            arrived("b", 10, 5),
            tripped(10, 20, &["a", "b"], 5),
            arrived("a", 20, 10),
            broke(20, 30, 3_010),
        ];
        let waits = [
            wait("a", 10, 0, Some(6), trip_outcome(10, &["a", "b"])),
            wait("b", 10, 4, Some(6), trip_outcome(10, &["a", "b"])),
            wait(
                "a",
                20,
                9,
                Some(3_020),
                WaitOutcome::Broken {
                    generation: 20,
                    reason: "timeout".into(),
                },
            ),
        ];
        assert_eq!(checkers(&log, &waits, &[]), Vec::<&str>::new());
        let c = BarrierCounts::of(&log, &waits, &[]);
        assert_eq!((c.trips, c.breaks, c.tripped, c.broken), (1, 1, 2, 1));
    }

    #[test]
    fn early_and_expired_trips_are_flagged() {
        // One party short, and a counted arrival that had expired.
        let log = [
            arrived("a", 10, 0),
            expired("a", 10, 1_000),
            arrived("b", 10, 1_001),
            tripped(10, 20, &["a", "b"], 1_001),
            arrived("c", 20, 1_002),
            tripped(20, 30, &["c"], 1_002),
        ];
        let waits = [
            wait("a", 10, 0, None, WaitOutcome::Killed),
            wait("b", 10, 1_000, Some(1_002), trip_outcome(10, &["a", "b"])),
            wait("c", 20, 1_000, Some(1_003), trip_outcome(20, &["c"])),
        ];
        let v = checkers(&log, &waits, &[]);
        assert_eq!(
            v,
            ["barrier-early", "barrier-early", "barrier-hang"],
            "{v:?}"
        );
    }

    #[test]
    fn a_dead_member_counted_past_its_ttl_is_flagged() {
        let log = [
            arrived("a", 10, 0),
            arrived("b", 10, 1_500),
            tripped(10, 20, &["a", "b"], 1_500),
        ];
        let mut a = wait("a", 10, 0, Some(200), WaitOutcome::Killed);
        a.outcome = Some(WaitOutcome::Killed);
        let waits = [
            a,
            wait("b", 10, 1_400, Some(1_501), trip_outcome(10, &["a", "b"])),
        ];
        let killed = Downtime {
            process: "a".into(),
            from: t(200),
            to: None,
            killed: true,
        };
        // Killed 1.3 s before the trip: past 1 s + 100 ms.
        assert_eq!(
            checkers(&log, &waits, std::slice::from_ref(&killed)),
            ["barrier-dead"]
        );
        // Paused instead (the wait still open): the same.
        let mut waits2 = waits.clone();
        waits2[0].end = None;
        waits2[0].outcome = None;
        let paused = Downtime {
            killed: false,
            to: Some(t(2_000)),
            ..killed
        };
        let v = checkers(&log, &waits2, std::slice::from_ref(&paused));
        assert_eq!(v, ["barrier-dead", "barrier-hang"], "{v:?}");
        // Paused for less than the TTL: fine.
        let short = Downtime {
            from: t(1_000),
            ..paused
        };
        assert_eq!(checkers(&log, &waits2, &[short]), ["barrier-hang"]);
    }

    #[test]
    fn mixed_outcomes_and_wrong_trips_are_flagged() {
        let log = [
            arrived("a", 10, 0),
            arrived("b", 10, 5),
            tripped(10, 20, &["a", "b"], 5),
        ];
        let waits = [
            wait("a", 10, 0, Some(6), trip_outcome(10, &["a", "b"])),
            wait(
                "b",
                10,
                4,
                Some(3_100),
                WaitOutcome::Broken {
                    generation: 10,
                    reason: "timeout".into(),
                },
            ),
        ];
        let v = checkers(&log, &waits, &[]);
        assert_eq!(v, ["barrier-outcome", "barrier-outcome"], "{v:?}");
        // Stale while remembered, and a trip the backend did not count.
        let waits = [
            wait(
                "a",
                10,
                0,
                Some(6),
                WaitOutcome::Stale {
                    generation: 10,
                    current: 20,
                },
            ),
            wait("b", 10, 4, Some(6), trip_outcome(10, &["a", "b"])),
            wait("c", 10, 4, Some(6), trip_outcome(10, &["a", "c"])),
        ];
        let v = checkers(&log, &waits, &[]);
        assert_eq!(v, ["barrier-outcome", "barrier-outcome"], "{v:?}");
    }

    #[test]
    fn generations_going_back_or_ending_twice_are_flagged() {
        let log = [
            arrived("a", 10, 0),
            arrived("b", 10, 1),
            tripped(10, 20, &["a", "b"], 1),
            BarrierEvent::Restart { at: t(2) },
            // A restarted record must start above 20.
            arrived("a", 15, 3),
            broke(15, 16, 4),
            broke(15, 17, 5),
        ];
        let waits = [
            wait("a", 10, 0, Some(2), trip_outcome(10, &["a", "b"])),
            wait("b", 10, 0, Some(2), trip_outcome(10, &["a", "b"])),
        ];
        let v = checkers(&log, &waits, &[]);
        assert_eq!(
            v,
            [
                "barrier-generations",
                "barrier-generations",
                "barrier-generations",
                "barrier-outcome"
            ],
            "{v:?}"
        );
    }

    #[test]
    fn waits_past_their_deadline_are_flagged() {
        let w = |end| {
            wait(
                "a",
                10,
                0,
                Some(end),
                WaitOutcome::Broken {
                    generation: 10,
                    reason: "r".into(),
                },
            )
        };
        let log = [arrived("a", 10, 0), broke(10, 20, 3_000)];
        assert!(checkers(&log, &[w(3_500)], &[]).is_empty());
        // Out of reach at the deadline: a tighter bound.
        let mut timed_out = w(3_400);
        timed_out.outcome = Some(WaitOutcome::Timeout);
        assert_eq!(checkers(&log, &[timed_out], &[]), ["barrier-hang"]);
        assert_eq!(checkers(&log, &[w(3_600)], &[]), ["barrier-hang"]);
        // Paused for a second in between: allowed.
        let paused = Downtime {
            process: "a".into(),
            from: t(1_000),
            to: Some(t(2_000)),
            killed: false,
        };
        assert!(checkers(&log, &[w(4_500)], &[paused]).is_empty());
    }

    #[test]
    fn double_barrier_ends_and_leaves_are_judged() {
        let d = |e: BarrierEvent| match e {
            BarrierEvent::Arrived {
                participant,
                generation,
                at,
                ..
            } => BarrierEvent::Arrived {
                kind: BarrierKind::Double,
                barrier: "b".into(),
                participant,
                generation,
                at,
            },
            other => other,
        };
        let entered = BarrierEvent::Entered {
            barrier: "b".into(),
            generation: 10,
            by: "b".into(),
            arrivals: vec!["a".into(), "b".into()],
            at: t(5),
        };
        let left = |p: &str, at| BarrierEvent::Left {
            kind: BarrierKind::Double,
            barrier: "b".into(),
            participant: p.into(),
            generation: 10,
            at: t(at),
        };
        let ended = |at| BarrierEvent::Ended {
            kind: BarrierKind::Double,
            barrier: "b".into(),
            generation: 10,
            next: 20,
            how: Ended::Tripped(Trip::new(k("b"), vec![k("a"), k("b")])),
            at: t(at),
        };
        let dw = |p: &str, leave, start, end, outcome| BarrierWait {
            kind: BarrierKind::Double,
            leave,
            ..wait(p, 10, start, Some(end), outcome)
        };
        let waits = [
            dw("a", false, 0, 6, trip_outcome(10, &["a", "b"])),
            dw("b", false, 4, 6, trip_outcome(10, &["a", "b"])),
            dw("a", true, 7, 30, WaitOutcome::Left),
            dw("b", true, 8, 30, WaitOutcome::Left),
        ];
        let log = [
            d(arrived("a", 10, 0)),
            d(arrived("b", 10, 5)),
            entered.clone(),
            left("a", 10),
            left("b", 20),
            ended(20),
        ];
        assert_eq!(checkers(&log, &waits, &[]), Vec::<&str>::new());
        // Ended with b still inside; and a's leave returned before the end.
        let early = [
            d(arrived("a", 10, 0)),
            d(arrived("b", 10, 5)),
            entered,
            left("a", 10),
            ended(40),
        ];
        let v = checkers(&early, &waits, &[]);
        assert_eq!(
            v,
            ["barrier-early", "barrier-outcome", "barrier-outcome"],
            "{v:?}"
        );
    }
}
