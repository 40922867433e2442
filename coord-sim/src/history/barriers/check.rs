//! The checkers of the barrier family's histories: per generation, no trip
//! early or counting the dead, all-or-none outcomes, no wait past its bound,
//! generations increasing, a double barrier's leaves after everyone left.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use coord_api::{
    Instant,
    spi::{BarrierKind, BreakReason, ENDED_KEPT, Ended},
};

use super::{BarrierEvent, BarrierRules, BarrierWait, Downtime, WaitOutcome, WakeRule};
use crate::history::Violation;

mod dead;
mod double;

use dead::check_dead;
use double::{check_double_ends, check_leave};

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
fn reason(r: &BreakReason) -> String {
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
pub(in crate::history) fn paused_within(
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
