//! The countdown latch's histories: what the backend did to latches
//! (settings and count-downs, in its order, from the store's journal, the
//! [`BarrierEvent::LatchSet`] and [`BarrierEvent::CountedDown`] events of
//! the barrier log), the count-downs and waits as their participants saw
//! them, and when their processes could send nothing. [`check_latches`]
//! judges them.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::Instant;

use super::{BarrierCounts, BarrierEvent, Downtime, Violation, barriers::paused_within};

/// Which latch call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatchCallKind {
    /// `count_down_in(generation)`.
    CountDown,
    /// `wait()`.
    Wait,
}

/// How a latch call ended, as its participant saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LatchOutcome {
    /// A count-down returned `Ok(remaining)` (counted now, or already).
    Counted {
        /// What the backend said is left.
        remaining: u32,
    },
    /// A wait returned `Opened`.
    Opened {
        /// The generation it names.
        generation: u64,
    },
    /// A wait returned `Expired`.
    Expired {
        /// The generation it names.
        generation: u64,
    },
    /// `Error::StaleGeneration`.
    Stale {
        /// The current generation, as told.
        current: u64,
    },
    /// `Error::NotFound`.
    NotFound,
    /// `Error::Timeout` (a wait's deadline).
    Timeout,
    /// Another error.
    Error(String),
    /// Its process was killed during the call.
    Killed,
}

/// One latch call (a count-down or a wait) as its participant saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatchCall {
    /// The participant (a wait's: the process's name for it).
    pub participant: String,
    /// The process (sim node) that called, for its kills and pauses.
    pub process: String,
    /// The latch.
    pub latch: String,
    /// Which call.
    pub kind: LatchCallKind,
    /// The generation a count-down named (`count_down_in`).
    pub generation: Option<u64>,
    /// A wait's `wait_timeout`, on its own clock.
    pub wait_timeout: Option<Duration>,
    /// When it was called.
    pub start: Instant,
    /// When it returned (or its process was killed); `None` while open.
    pub end: Option<Instant>,
    /// How it ended.
    pub outcome: Option<LatchOutcome>,
}

/// Latch calls as their participants saw them. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct LatchCalls {
    inner: Arc<Mutex<Vec<LatchCall>>>,
}

impl LatchCalls {
    /// No calls.
    pub fn new() -> LatchCalls {
        LatchCalls::default()
    }

    /// A call began; returns its index.
    pub fn start(&self, c: LatchCall) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(c);
        v.len() - 1
    }

    /// The call returned at `at` (the first end recorded counts).
    pub fn end(&self, idx: usize, at: Instant, outcome: LatchOutcome) {
        let mut v = self.inner.lock().unwrap();
        let c = &mut v[idx];
        if c.end.is_none() {
            c.end = Some(at);
            c.outcome = Some(outcome);
        }
    }

    /// The call's process was killed at `at`.
    pub fn killed(&self, idx: usize, at: Instant) {
        self.end(idx, at, LatchOutcome::Killed);
    }

    /// The calls.
    pub fn all(&self) -> Vec<LatchCall> {
        self.inner.lock().unwrap().clone()
    }

    /// How many are still open.
    pub fn open(&self) -> usize {
        let v = self.inner.lock().unwrap();
        v.iter().filter(|c| c.end.is_none()).count()
    }
}

/// The bounds [`check_latches`] judges with.
#[derive(Debug, Clone, Copy)]
pub struct LatchRules {
    /// How far past its `wait_timeout` (stretched by `max_drift`) a wait
    /// may return: the operation timeout of the read in flight at its
    /// deadline, one delivery, scheduling.
    pub wait_bound: Duration,
    /// The clients' clocks run at most this much slower than global time.
    pub max_drift: f64,
    /// Whether a latch may be gone while the run lasts (it expired, or the
    /// server restarted and lost it): else `Expired`, and `NotFound` once
    /// the latch was set, are wrong.
    pub may_vanish: bool,
}

/// Judges the backend's latch events (`log`, the barrier log in its
/// order) and the latch calls (`calls`), knowing when the calling
/// processes sent nothing (`downtime`); calls still open and not killed
/// are judged as hanging.
///
/// - `latch-early` (a): a generation reaches zero only once as many
///   distinct participants as its count had called `count_down_in` it
///   (calls begun by then); a wait returns `Opened { g }` only after the
///   backend counted `g` down to zero.
/// - `latch-counted-once` (b): no participant is counted twice in one
///   generation (retries after lost replies, a restarted process counting
///   again), and every count-down the backend counted is one a participant
///   called for that generation before.
/// - `latch-count` (c): per generation, the backend counts down at most
///   its count, `remaining` going down by one each time from the count;
///   nothing counts in a generation that was never set.
/// - `latch-hang` (d): every wait returns within its `wait_timeout`
///   (stretched by `max_drift`) plus `wait_bound` plus the time its process
///   was paused; no call is left open unless its process was killed.
/// - `latch-generations` (e): per latch, settings name strictly increasing
///   generations in the backend's order (across restarts), and every
///   count-down names the generation set last.
/// - `latch-outcome`: where no latch can vanish (`may_vanish` false), no
///   wait returns `Expired` and no call begun after the latch was first set
///   returns `NotFound`.
pub fn check_latches(
    log: &[BarrierEvent],
    calls: &[LatchCall],
    downtime: &[Downtime],
    rules: &LatchRules,
) -> Vec<Violation> {
    let mut out = Vec::new();
    check_generations(log, &mut out);
    let zeros = check_counts(log, calls, &mut out);
    check_opens(calls, &zeros, &mut out);
    check_outcomes(log, calls, rules, &mut out);
    check_hangs(calls, downtime, rules, &mut out);
    out
}

/// (e).
fn check_generations(log: &[BarrierEvent], out: &mut Vec<Violation>) {
    // Per latch: the generation set last (none after a restart), and the
    // largest ever set.
    let mut gens: HashMap<&str, (Option<u64>, u64)> = HashMap::new();
    for e in log {
        match e {
            BarrierEvent::LatchSet {
                latch, generation, ..
            } => {
                let s = gens.entry(latch).or_insert((None, 0));
                if *generation <= s.1 {
                    out.push(Violation::new(
                        "latch-generations",
                        format!(
                            "latch {latch:?}: set in generation {generation}, not above {} set before",
                            s.1
                        ),
                    ));
                }
                *s = (Some(*generation), s.1.max(*generation));
            }
            BarrierEvent::CountedDown {
                latch,
                participant,
                generation,
                at,
                ..
            } => {
                let current = gens.get(latch.as_str()).and_then(|s| s.0);
                if current != Some(*generation) {
                    out.push(Violation::new(
                        "latch-generations",
                        format!(
                            "latch {latch:?}: {participant} counted down in generation {generation} at {at:?}, while the generation set last is {current:?}"
                        ),
                    ));
                }
            }
            BarrierEvent::Restart { .. } => gens.values_mut().for_each(|s| s.0 = None),
            _ => {}
        }
    }
}

/// (b), (c) and the backend's half of (a); returns when each generation
/// reached zero, by latch and generation.
fn check_counts<'a>(
    log: &'a [BarrierEvent],
    calls: &[LatchCall],
    out: &mut Vec<Violation>,
) -> HashMap<(&'a str, u64), Instant> {
    // Per latch and generation: its count, and who was counted.
    let mut set: HashMap<(&str, u64), (u32, Vec<&str>)> = HashMap::new();
    let mut zeros = HashMap::new();
    // Who called count_down_in which generation, and when.
    let called = |latch: &str, p: &str, g: u64, by: Instant| {
        calls.iter().any(|c| {
            c.kind == LatchCallKind::CountDown
                && c.latch == latch
                && c.participant == p
                && c.generation == Some(g)
                && c.start <= by
        })
    };
    for e in log {
        match e {
            BarrierEvent::LatchSet {
                latch,
                generation,
                count,
                ..
            } => {
                set.insert((latch, *generation), (*count, Vec::new()));
            }
            BarrierEvent::CountedDown {
                latch,
                participant,
                generation,
                remaining,
                at,
            } => {
                let what = format!("latch {latch:?} generation {generation}");
                if !called(latch, participant, *generation, *at) {
                    out.push(Violation::new(
                        "latch-counted-once",
                        format!(
                            "{what}: counted down by {participant} at {at:?}, who had called no count-down in it"
                        ),
                    ));
                }
                let Some((count, counted)) = set.get_mut(&(latch.as_str(), *generation)) else {
                    out.push(Violation::new(
                        "latch-count",
                        format!("{what}: counted down by {participant} at {at:?}, but never set"),
                    ));
                    continue;
                };
                if counted.contains(&participant.as_str()) {
                    out.push(Violation::new(
                        "latch-counted-once",
                        format!("{what}: {participant} counted down again at {at:?}"),
                    ));
                }
                counted.push(participant);
                let n = counted.len() as u32;
                if n > *count {
                    out.push(Violation::new(
                        "latch-count",
                        format!(
                            "{what}: counted down {n} times (by {counted:?}), over its count {count}"
                        ),
                    ));
                } else if *remaining != *count - n {
                    out.push(Violation::new(
                        "latch-count",
                        format!(
                            "{what}: count-down {n} of {count} (by {participant} at {at:?}) left {remaining}, not {}",
                            *count - n
                        ),
                    ));
                }
                if *remaining == 0 {
                    zeros.entry((latch.as_str(), *generation)).or_insert(*at);
                    let callers: HashSet<&str> = calls
                        .iter()
                        .filter(|c| {
                            c.kind == LatchCallKind::CountDown
                                && c.latch == *latch
                                && c.generation == Some(*generation)
                                && c.start <= *at
                        })
                        .map(|c| c.participant.as_str())
                        .collect();
                    if (callers.len() as u32) < *count {
                        let mut callers: Vec<_> = callers.into_iter().collect();
                        callers.sort();
                        out.push(Violation::new(
                            "latch-early",
                            format!(
                                "{what}: reached zero at {at:?} (count {count}), when only {callers:?} had called a count-down in it"
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    zeros
}

/// The waits' half of (a).
fn check_opens(
    calls: &[LatchCall],
    zeros: &HashMap<(&str, u64), Instant>,
    out: &mut Vec<Violation>,
) {
    for c in calls {
        let (Some(LatchOutcome::Opened { generation }), Some(end)) = (&c.outcome, c.end) else {
            continue;
        };
        match zeros.get(&(c.latch.as_str(), *generation)) {
            Some(at) if *at <= end => {}
            zero => out.push(Violation::new(
                "latch-early",
                format!(
                    "latch {:?}: {}'s wait (from {:?}) returned Opened in generation {generation} at {end:?}; the backend counted it to zero {}",
                    c.latch,
                    c.participant,
                    c.start,
                    match zero {
                        Some(at) => format!("only at {at:?}"),
                        None => "never".to_owned(),
                    }
                ),
            )),
        }
    }
}

/// `latch-outcome`.
fn check_outcomes(
    log: &[BarrierEvent],
    calls: &[LatchCall],
    rules: &LatchRules,
    out: &mut Vec<Violation>,
) {
    if rules.may_vanish
        || log
            .iter()
            .any(|e| matches!(e, BarrierEvent::Restart { .. }))
    {
        return;
    }
    let mut first_set: HashMap<&str, Instant> = HashMap::new();
    for e in log {
        if let BarrierEvent::LatchSet { latch, at, .. } = e {
            first_set.entry(latch).or_insert(*at);
        }
    }
    for c in calls {
        let wrong = match &c.outcome {
            Some(LatchOutcome::Expired { .. }) => true,
            Some(LatchOutcome::NotFound) => first_set
                .get(c.latch.as_str())
                .is_some_and(|s| *s < c.start),
            _ => false,
        };
        if wrong {
            out.push(Violation::new(
                "latch-outcome",
                format!(
                    "latch {:?}: {}'s {:?} (from {:?}) returned {:?}, but the latch cannot have vanished",
                    c.latch, c.participant, c.kind, c.start, c.outcome
                ),
            ));
        }
    }
}

/// (d).
fn check_hangs(
    calls: &[LatchCall],
    downtime: &[Downtime],
    rules: &LatchRules,
    out: &mut Vec<Violation>,
) {
    for c in calls {
        let what = format!(
            "latch {:?}: {}'s {:?} (from {:?}, generation {:?}, wait_timeout {:?})",
            c.latch, c.participant, c.kind, c.start, c.generation, c.wait_timeout
        );
        let Some(end) = c.end else {
            out.push(Violation::new(
                "latch-hang",
                format!("{what} never returned, and its process was not killed"),
            ));
            continue;
        };
        if matches!(c.outcome, Some(LatchOutcome::Killed)) {
            continue;
        }
        let Some(timeout) = c.wait_timeout else {
            continue;
        };
        let allowed = timeout.mul_f64(1.0 + rules.max_drift)
            + rules.wait_bound
            + paused_within(downtime, &c.process, c.start, end);
        if end - c.start > allowed {
            out.push(Violation::new(
                "latch-hang",
                format!(
                    "{what} returned {:?} after {:?}: more than {allowed:?}",
                    c.outcome,
                    end - c.start
                ),
            ));
        }
    }
}

/// What a run's latches did, in the barriers' counts: `trips` generations
/// counted to zero, `tripped` waits that returned `Opened`, `expired` waits
/// that returned `Expired`, `stale` count-downs told `StaleGeneration`,
/// `timeouts` waits that timed out, `errors` other errors, and the worst
/// overrun of a wait past its deadline (net of pauses).
pub fn latch_counts(
    log: &[BarrierEvent],
    calls: &[LatchCall],
    downtime: &[Downtime],
) -> BarrierCounts {
    let mut c = BarrierCounts {
        trips: log
            .iter()
            .filter(|e| matches!(e, BarrierEvent::CountedDown { remaining: 0, .. }))
            .count(),
        ..BarrierCounts::default()
    };
    for call in calls {
        match &call.outcome {
            Some(LatchOutcome::Opened { .. }) => c.tripped += 1,
            Some(LatchOutcome::Expired { .. }) => c.expired += 1,
            Some(LatchOutcome::Stale { .. }) => c.stale += 1,
            Some(LatchOutcome::Timeout) => c.timeouts += 1,
            Some(LatchOutcome::Error(_) | LatchOutcome::NotFound) => c.errors += 1,
            _ => {}
        }
        if let (Some(end), Some(t)) = (call.end, call.wait_timeout) {
            let paused = paused_within(downtime, &call.process, call.start, end);
            c.worst_overrun = c
                .worst_overrun
                .max((end - call.start).saturating_sub(t + paused));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::t;

    fn set(g: u64, count: u32, at: u64) -> BarrierEvent {
        BarrierEvent::LatchSet {
            latch: "l".into(),
            generation: g,
            count,
            at: t(at),
        }
    }

    fn down(p: &str, g: u64, remaining: u32, at: u64) -> BarrierEvent {
        BarrierEvent::CountedDown {
            latch: "l".into(),
            participant: p.into(),
            generation: g,
            remaining,
            at: t(at),
        }
    }

    fn call(p: &str, g: u64, start: u64, end: u64) -> LatchCall {
        LatchCall {
            participant: p.into(),
            process: p.into(),
            latch: "l".into(),
            kind: LatchCallKind::CountDown,
            generation: Some(g),
            wait_timeout: None,
            start: t(start),
            end: Some(t(end)),
            outcome: Some(LatchOutcome::Counted { remaining: 0 }),
        }
    }

    fn wait(start: u64, end: u64, outcome: LatchOutcome) -> LatchCall {
        LatchCall {
            participant: "w".into(),
            process: "w".into(),
            latch: "l".into(),
            kind: LatchCallKind::Wait,
            generation: None,
            wait_timeout: Some(Duration::from_millis(3_000)),
            start: t(start),
            end: Some(t(end)),
            outcome: Some(outcome),
        }
    }

    fn rules() -> LatchRules {
        LatchRules {
            wait_bound: Duration::from_millis(500),
            max_drift: 0.01,
            may_vanish: false,
        }
    }

    fn checkers(log: &[BarrierEvent], calls: &[LatchCall]) -> Vec<&'static str> {
        check_latches(log, calls, &[], &rules())
            .into_iter()
            .map(|v| v.checker)
            .collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let log = [
            set(10, 2, 0),
            down("a", 10, 1, 5),
            down("b", 10, 0, 8),
            set(20, 2, 9),
        ];
        let calls = [
            wait(1, 9, LatchOutcome::Opened { generation: 10 }),
            call("a", 10, 2, 6),
            call("b", 10, 7, 9),
            // A retry of a's, counted once.
            call("a", 10, 6, 10),
        ];
        assert_eq!(checkers(&log, &calls), Vec::<&str>::new());
        let c = latch_counts(&log, &calls, &[]);
        assert_eq!((c.trips, c.tripped), (1, 1));
    }

    #[test]
    fn a_retry_counted_twice_is_flagged() {
        // a's retry counted as a second participant ("a+", who never
        // called), and the latch opened before b called.
        let log = [set(10, 2, 0), down("a", 10, 1, 5), down("a+", 10, 0, 8)];
        let calls = [
            call("a", 10, 2, 6),
            call("a", 10, 6, 9),
            call("b", 10, 9, 10),
            wait(1, 9, LatchOutcome::Opened { generation: 10 }),
        ];
        let v = checkers(&log, &calls);
        assert_eq!(v, ["latch-counted-once", "latch-early"], "{v:?}");
        // The same participant counted twice, over the count.
        let log = [
            set(10, 2, 0),
            down("a", 10, 1, 5),
            down("a", 10, 0, 8),
            down("b", 10, 0, 9),
        ];
        let v = checkers(&log, &calls);
        assert_eq!(
            v,
            ["latch-counted-once", "latch-early", "latch-count"],
            "{v:?}"
        );
    }

    #[test]
    fn early_opens_generations_and_hangs_are_flagged() {
        let log = [
            set(10, 2, 0),
            down("a", 10, 1, 5),
            set(5, 1, 6),
            down("b", 10, 0, 8),
        ];
        let calls = [
            call("a", 10, 2, 6),
            call("b", 10, 7, 9),
            wait(1, 7, LatchOutcome::Opened { generation: 10 }),
            wait(1, 3_600, LatchOutcome::Timeout),
            wait(1, 20, LatchOutcome::Expired { generation: 10 }),
        ];
        let v = checkers(&log, &calls);
        assert_eq!(
            v,
            [
                "latch-generations",
                "latch-generations",
                "latch-early",
                "latch-outcome",
                "latch-hang"
            ],
            "{v:?}"
        );
    }
}
