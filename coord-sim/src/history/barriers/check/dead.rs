//! Checker (b) of the barrier family: nobody counted in a trip (a double
//! barrier's entry) past its TTL after it stopped waiting.

use coord_api::{
    Instant,
    spi::{BarrierKind, Ended},
};

use super::{super::WaitOutcome, names};
use super::{BarrierEvent, BarrierRules, BarrierWait, Downtime};
use crate::history::Violation;

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

/// Whether `w` may have arrived in generation `g`. A double barrier's
/// `enter` names no generation: the workload records the one it read just
/// before and learns the real one from the reply. Without a reply saying
/// which (killed, timed out, failed, or still open) it may have entered
/// that one or any later generation.
fn in_generation(w: &BarrierWait, g: u64) -> bool {
    let told = matches!(
        w.outcome,
        Some(WaitOutcome::Tripped { .. } | WaitOutcome::Broken { .. } | WaitOutcome::Stale { .. })
    );
    w.generation == g || (w.kind == BarrierKind::Double && !told && w.generation < g)
}

/// (b): nobody counted in a trip past its TTL after it stopped waiting.
pub(super) fn check_dead(
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
                    && in_generation(w, g)
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
