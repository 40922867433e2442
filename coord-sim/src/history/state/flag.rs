//! The state workload's second key, the flag: updaters put it with a TTL,
//! compare-and-set it without one (which clears the TTL), and delete it,
//! while a watcher watches it. Every kind of change a value has (put,
//! delete, expiry) is judged here:
//!
//! - `state-flag-order`: the watcher's versions strictly increase;
//! - `state-flag-skip`: an acknowledged change whose version lies between
//!   two events the watcher was handed with no gap between them was
//!   skipped silently;
//! - `state-flag-value`: an event at an acknowledged version is that change
//!   (a put of the value written, a delete), and an expiry is never at a
//!   version some write was acknowledged at;
//! - `state-flag-expiry`: a value expires only if it is there and was put
//!   with a TTL (a compare-and-set without one cleared it), and a delete
//!   removes a value that is there;
//! - `state-flag-stale`: after the heal the watcher's value is the final
//!   one (the prober's read, when every TTL had passed).

use std::collections::HashMap;

use super::{Violation, Watched};

/// An acknowledged write of the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagWrite {
    /// A put of `value`, with a TTL or without.
    Put {
        /// The value written.
        value: u64,
        /// Whether it was given a TTL.
        ttl: bool,
    },
    /// A delete.
    Deleted,
}

/// What the flag's side of the workload saw.
#[derive(Debug, Clone, Default)]
pub struct FlagHistory {
    /// Every acknowledged write, by version.
    pub writes: Vec<(u64, FlagWrite)>,
    /// Every flag watcher's events, in order.
    pub watches: Vec<(String, Vec<Watched>)>,
    /// The prober's read after the heal (`None`: absent).
    pub final_state: Option<(u64, u64)>,
    /// Every flag watcher's last known `(version, value)` (`None`: absent).
    pub caught_up: Vec<(String, Option<(u64, u64)>)>,
}

/// Every violation of the contract in what the flag's watchers saw.
pub fn check_flag(h: &FlagHistory) -> Vec<Violation> {
    let mut out = Vec::new();
    let writes: HashMap<u64, FlagWrite> = h.writes.iter().copied().collect();
    let mut versions: Vec<u64> = writes.keys().copied().collect();
    versions.sort_unstable();
    for (watcher, seen) in &h.watches {
        check_watcher(watcher, seen, &writes, &versions, &mut out);
    }
    for (watcher, last) in &h.caught_up {
        if *last != h.final_state {
            let detail = format!(
                "{watcher} is left at {last:?} after the heal; the flag is {:?}",
                h.final_state
            );
            out.push(Violation::new("state-flag-stale", detail));
        }
    }
    out
}

fn check_watcher(
    watcher: &str,
    seen: &[Watched],
    writes: &HashMap<u64, FlagWrite>,
    versions: &[u64],
    out: &mut Vec<Violation>,
) {
    // The position handed out up to, and the value known there.
    let (mut at, mut known): (u64, Option<(u64, u64)>) = (0, None);
    for (i, s) in seen.iter().enumerate() {
        let version = match *s {
            Watched::Gap { head, current } => {
                (at, known) = (head, current);
                continue;
            }
            Watched::Other(ref what) => {
                let detail = format!("{watcher}: event {i} is {what}");
                out.push(Violation::new("state-flag-value", detail));
                continue;
            }
            Watched::Put { version, .. }
            | Watched::Deleted { version }
            | Watched::Expired { version } => version,
        };
        if version <= at {
            let detail = format!("{watcher}: event {i} at version {version}, after {at}");
            out.push(Violation::new("state-flag-order", detail));
        }
        let between = versions.partition_point(|&v| v <= at);
        if let Some(&skipped) = versions[between..].first().filter(|&&v| v < version) {
            let detail = format!(
                "{watcher}: event {i} at version {version} after {at}; the change acknowledged at {skipped} was never handed out, nor a gap"
            );
            out.push(Violation::new("state-flag-skip", detail));
        }
        let acked = writes.get(&version).copied();
        let mismatch = match (s, acked) {
            (Watched::Put { value, .. }, Some(FlagWrite::Put { value: w, .. })) => *value != w,
            (Watched::Deleted { .. }, Some(FlagWrite::Deleted)) => false,
            (_, None) => false,
            (_, Some(_)) => true,
        };
        if mismatch {
            let detail = format!(
                "{watcher}: event {i} is {s:?}, but {version} was acknowledged as {acked:?}"
            );
            out.push(Violation::new("state-flag-value", detail));
        }
        match *s {
            Watched::Put { value, .. } => known = Some((version, value)),
            Watched::Deleted { .. } => {
                if known.is_none() {
                    let detail =
                        format!("{watcher}: event {i} deletes at {version} a flag it knew absent");
                    out.push(Violation::new("state-flag-expiry", detail));
                }
                known = None;
            }
            _ => {
                let put = known.map(|(v, _)| writes.get(&v));
                let refused = match put {
                    None => Some("it knew absent"),
                    Some(Some(FlagWrite::Put { ttl: false, .. })) => Some("put without a TTL"),
                    // Put with a TTL, or of a write the workload never
                    // learnt the outcome of: nothing to judge by.
                    Some(_) => None,
                };
                if let Some(why) = refused {
                    let detail = format!(
                        "{watcher}: event {i} expires at {version} a flag {why} ({known:?})"
                    );
                    out.push(Violation::new("state-flag-expiry", detail));
                }
                known = None;
            }
        }
        at = version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: FlagWrite = FlagWrite::Put {
        value: 1,
        ttl: true,
    };

    fn history() -> FlagHistory {
        FlagHistory {
            writes: vec![
                (10, TTL),
                (
                    30,
                    FlagWrite::Put {
                        value: 2,
                        ttl: false,
                    },
                ),
                (40, FlagWrite::Deleted),
            ],
            watches: vec![(
                "f0".into(),
                vec![
                    Watched::Gap {
                        head: 5,
                        current: None,
                    },
                    Watched::Put {
                        version: 10,
                        value: 1,
                    },
                    Watched::Expired { version: 20 },
                    Watched::Put {
                        version: 30,
                        value: 2,
                    },
                    Watched::Deleted { version: 40 },
                ],
            )],
            final_state: None,
            caught_up: vec![("f0".into(), None)],
        }
    }

    fn checkers(h: &FlagHistory) -> Vec<&'static str> {
        check_flag(h).into_iter().map(|v| v.checker).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        assert_eq!(checkers(&history()), Vec::<&str>::new());
    }

    #[test]
    fn a_skipped_write_is_caught_and_a_gap_over_it_is_not() {
        let mut h = history();
        h.watches[0].1.remove(3);
        let found = checkers(&h);
        assert!(found.contains(&"state-flag-skip"), "{found:?}");
        h.watches[0].1[3] = Watched::Gap {
            head: 35,
            current: Some((30, 2)),
        };
        h.watches[0].1.insert(4, Watched::Deleted { version: 40 });
        h.watches[0].1.truncate(5);
        assert_eq!(checkers(&h), Vec::<&str>::new(), "{:?}", h.watches);
    }

    #[test]
    fn an_expiry_of_a_value_put_without_a_ttl_is_caught() {
        let mut h = history();
        h.watches[0].1[4] = Watched::Expired { version: 45 };
        h.writes.retain(|w| w.0 != 40);
        assert_eq!(checkers(&h), ["state-flag-expiry"]);
    }

    #[test]
    fn a_wrong_value_an_expiry_at_a_write_and_a_stale_end_are_caught() {
        let mut h = history();
        h.watches[0].1[3] = Watched::Put {
            version: 30,
            value: 7,
        };
        assert_eq!(checkers(&h), ["state-flag-value"]);
        let mut h = history();
        h.watches[0].1[4] = Watched::Expired { version: 40 };
        assert!(checkers(&h).contains(&"state-flag-value"));
        let mut h = history();
        h.caught_up[0].1 = Some((30, 2));
        assert_eq!(checkers(&h), ["state-flag-stale"]);
    }

    #[test]
    fn events_out_of_order_are_caught() {
        let mut h = history();
        h.watches[0].1.swap(3, 4);
        assert!(checkers(&h).contains(&"state-flag-order"));
    }
}
