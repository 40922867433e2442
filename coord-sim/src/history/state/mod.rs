//! Shared values: what the clients of the state workload saw, and the
//! checks of the contract's promises on it (`contract::state`).
//!
//! The workload increments one counter through `State::update` (each
//! update writes the value it read plus one) and watches it. So every
//! change is a put of the previous value plus one, and what a watcher sees
//! can be judged change by change:
//!
//! - `state-versions`: the versions acknowledged to updaters are all
//!   different, and the prober's final read is at or above all of them
//!   (versions only increase, across restarts too);
//! - `state-lost-update`: in version order, the values acknowledged only
//!   increase, but at a server restart that lost the data (at most one drop
//!   per restart): two updates acknowledged with the same value would mean
//!   one was lost;
//! - `state-counter` (without restarts): the final value counts every
//!   acknowledged update, and no more than those plus the updates whose
//!   outcome the client did not learn (an error: applied or not);
//! - `state-watch-order`: a watcher's versions strictly increase;
//! - `state-watch-skip`: a watcher's put is the value it had plus one (the
//!   value it last saw, or the one the last gap's snapshot gave): a change
//!   skipped silently, or a value lost silently, breaks it;
//! - `state-watch-value`: a put seen at an acknowledged version carries the
//!   value acknowledged;
//! - `state-watch-stale`: after the heal every watcher catches up with the
//!   final state (it resumed after its reconnections and restarts, and
//!   re-read the state after a gap).
//!
//! The workload's second key, put with TTLs, compared-and-set and deleted,
//! has checkers of its own ([`flag`]).

use std::collections::HashMap;

use super::Violation;

mod flag;

pub use flag::{FlagHistory, FlagWrite, check_flag};

/// What one watcher was handed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// A put of `value` at `version`.
    Put {
        /// The change's version.
        version: u64,
        /// The counter's value.
        value: u64,
    },
    /// A delete at `version`.
    Deleted {
        /// The change's version.
        version: u64,
    },
    /// An expiry at `version`.
    Expired {
        /// The change's version.
        version: u64,
    },
    /// A gap: the value then, `(version, value)` (`None`: absent), at
    /// `head`.
    Gap {
        /// What the snapshot is at.
        head: u64,
        /// The value then.
        current: Option<(u64, u64)>,
    },
    /// Anything else.
    Other(String),
}

/// What the state workload saw.
#[derive(Debug, Clone, Default)]
pub struct StateHistory {
    /// Every update: its process, and `(version, value)` when acknowledged
    /// (`None`: the client got an error, the update may or may not have
    /// been applied).
    pub updates: Vec<(String, Option<(u64, u64)>)>,
    /// Every watcher's events, in order, across its process's restarts.
    pub watches: Vec<(String, Vec<Watched>)>,
    /// The prober's read after the heal: `(version, value)`, `None` when
    /// absent or unreadable.
    pub final_state: Option<(u64, u64)>,
    /// Every watcher's last `(version, value)` once it caught up (or not).
    pub caught_up: Vec<(String, Option<(u64, u64)>)>,
    /// Server restarts (each loses the data).
    pub restarts: usize,
}

/// What the workload did, for the sweep's counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateCounts {
    /// Updates acknowledged.
    pub acked: usize,
    /// Updates whose outcome the client did not learn.
    pub unknown: usize,
    /// Events watchers were handed.
    pub seen: usize,
    /// Of which gaps.
    pub gaps: usize,
}

/// The counts of `h`.
pub fn state_counts(h: &StateHistory) -> StateCounts {
    let seen = h.watches.iter().map(|(_, s)| s.len()).sum();
    let gaps = (h.watches.iter())
        .flat_map(|(_, s)| s)
        .filter(|s| matches!(s, Watched::Gap { .. }))
        .count();
    StateCounts {
        acked: h.updates.iter().filter(|u| u.1.is_some()).count(),
        unknown: h.updates.iter().filter(|u| u.1.is_none()).count(),
        seen,
        gaps,
    }
}

/// Every violation of the state contract in `h`.
pub fn check_state(h: &StateHistory) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut acked: Vec<(u64, u64, &str)> = (h.updates.iter())
        .filter_map(|(p, o)| o.map(|(v, n)| (v, n, p.as_str())))
        .collect();
    acked.sort();
    for w in acked.windows(2) {
        if w[0].0 == w[1].0 {
            out.push(Violation::new(
                "state-versions",
                format!(
                    "version {} acknowledged twice: {:?} and {:?}",
                    w[0].0, w[0], w[1]
                ),
            ));
        }
    }
    if let (Some(last), Some((fv, _))) = (acked.last(), h.final_state)
        && fv < last.0
    {
        out.push(Violation::new(
            "state-versions",
            format!("the final version {fv} is below the acknowledged {last:?}"),
        ));
    }
    let drops: Vec<_> = (acked.windows(2))
        .filter(|w| w[1].1 <= w[0].1)
        .map(|w| (w[0], w[1]))
        .collect();
    if drops.len() > h.restarts {
        out.push(Violation::new(
            "state-lost-update",
            format!(
                "{} times a later version acknowledged a value not above an earlier one ({} server restarts), first {:?}",
                drops.len(),
                h.restarts,
                drops[0]
            ),
        ));
    }
    let unknown = h.updates.iter().filter(|u| u.1.is_none()).count() as u64;
    if h.restarts == 0 {
        let n = acked.len() as u64;
        let end = h.final_state.map_or(0, |(_, v)| v);
        if end < n || end > n + unknown {
            out.push(Violation::new(
                "state-counter",
                format!("the counter ends at {end} after {n} acknowledged updates and {unknown} of unknown outcome"),
            ));
        }
    }
    let by_version: HashMap<u64, u64> = acked.iter().map(|&(v, n, _)| (v, n)).collect();
    for (watcher, seen) in &h.watches {
        check_watcher(watcher, seen, &by_version, &mut out);
    }
    for (watcher, last) in &h.caught_up {
        if *last != h.final_state {
            out.push(Violation::new(
                "state-watch-stale",
                format!(
                    "{watcher} is left at {last:?} after the heal; the state is {:?}",
                    h.final_state
                ),
            ));
        }
    }
    out
}

fn check_watcher(
    watcher: &str,
    seen: &[Watched],
    acked: &HashMap<u64, u64>,
    out: &mut Vec<Violation>,
) {
    // What the watcher knows: the version handed out up to and the value.
    let (mut at, mut value) = (0u64, 0u64);
    for (i, s) in seen.iter().enumerate() {
        match *s {
            Watched::Put { version, value: v } => {
                if version <= at {
                    out.push(Violation::new(
                        "state-watch-order",
                        format!("{watcher}: event {i} at version {version}, after {at}"),
                    ));
                }
                if v != value + 1 {
                    out.push(Violation::new(
                        "state-watch-skip",
                        format!(
                            "{watcher}: event {i} puts {v} at version {version}, but it had {value} at {at} and no gap between"
                        ),
                    ));
                }
                if let Some(&n) = acked.get(&version)
                    && n != v
                {
                    out.push(Violation::new(
                        "state-watch-value",
                        format!("{watcher}: version {version} seen as {v}, acknowledged as {n}"),
                    ));
                }
                (at, value) = (version, v);
            }
            Watched::Gap { head, current } => {
                (at, value) = (head, current.map_or(0, |c| c.1));
            }
            ref other => out.push(Violation::new(
                "state-watch-skip",
                format!("{watcher}: event {i} is {other:?}, which the counter never has"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> StateHistory {
        StateHistory {
            updates: vec![
                ("a".into(), Some((10, 1))),
                ("b".into(), Some((20, 2))),
                ("a".into(), None),
                ("b".into(), Some((40, 4))),
            ],
            watches: vec![(
                "w".into(),
                vec![
                    Watched::Put {
                        version: 10,
                        value: 1,
                    },
                    Watched::Put {
                        version: 20,
                        value: 2,
                    },
                    Watched::Put {
                        version: 30,
                        value: 3,
                    },
                    Watched::Put {
                        version: 40,
                        value: 4,
                    },
                ],
            )],
            final_state: Some((40, 4)),
            caught_up: vec![("w".into(), Some((40, 4)))],
            restarts: 0,
        }
    }

    fn checkers(h: &StateHistory) -> Vec<&'static str> {
        check_state(h).into_iter().map(|v| v.checker).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        assert_eq!(checkers(&history()), Vec::<&str>::new());
    }

    #[test]
    fn a_silent_skip_is_caught_and_a_gap_is_not_one() {
        let mut h = history();
        h.watches[0].1.remove(1);
        assert_eq!(checkers(&h), ["state-watch-skip"]);
        h.watches[0].1.insert(
            1,
            Watched::Gap {
                head: 25,
                current: Some((20, 2)),
            },
        );
        assert_eq!(checkers(&h), Vec::<&str>::new());
    }

    #[test]
    fn a_lost_update_and_a_wrong_count_are_caught() {
        let mut h = history();
        h.updates.push(("c".into(), Some((50, 4))));
        h.final_state = Some((50, 3));
        h.caught_up[0].1 = Some((50, 3));
        let found = checkers(&h);
        assert!(found.contains(&"state-lost-update"), "{found:?}");
        assert!(found.contains(&"state-counter"), "{found:?}");
    }

    #[test]
    fn a_watcher_left_behind_is_caught() {
        let mut h = history();
        h.caught_up[0].1 = Some((30, 3));
        assert_eq!(checkers(&h), ["state-watch-stale"]);
    }
}
