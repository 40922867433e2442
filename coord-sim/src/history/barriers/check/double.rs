//! The double barrier's own rules: a leave returns only once its generation
//! ended, and a generation everyone entered ends only once every member
//! left or expired.

use std::collections::{HashMap, HashSet};

use coord_api::spi::{BarrierKind, Ended};

use super::{EndOf, describe};
use crate::history::{BarrierEvent, BarrierWait, Violation, barriers::WaitOutcome};

/// A double barrier member's leave returns `Ok` only once the backend
/// ended its generation (every member left or expired), `Broken` only if
/// the backend broke it.
pub(super) fn check_leave(
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
pub(super) fn check_double_ends(log: &[BarrierEvent], out: &mut Vec<Violation>) {
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
