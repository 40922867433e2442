//! Operations: what an operator's listings said (live leases, stale ones)
//! against what the run did to each holder's process (killed, paused, cut
//! off). [`check_ops`] judges every listing:
//!
//! - `ops-listed`: every lease the holders hold (fixed leases, live for the
//!   whole run) is listed, and nothing else;
//! - `ops-stale-missed`: a holder down since at least the presence TTL
//!   (plus a margin) before the listing began, and still down when it
//!   ended, has every lease listed stale;
//! - `ops-stale-false`: a holder up and reachable for [`OpsRules::alive`]
//!   before the listing began and until it ended has none listed stale.
//!
//! Listings that fall between (a holder that went down less than a
//! presence TTL before, or came back less than `alive` before) are not
//! judged for that holder: its presence may or may not have lapsed yet.

use std::{collections::BTreeSet, time::Duration};

use coord_api::Instant;

use super::Violation;

/// One listing as the operator made it.
#[derive(Debug, Clone)]
pub struct Listing {
    /// When the listing was asked for.
    pub start: Instant,
    /// When both answers were in.
    pub end: Instant,
    /// Every live lease listed: (resource, holder's instance).
    pub leases: BTreeSet<(String, String)>,
    /// The stale ones among them.
    pub stale: BTreeSet<(String, String)>,
}

/// A holder process: its instance, its leases, and when it was down
/// (`to: None`: never back).
#[derive(Debug, Clone)]
pub struct HolderRecord {
    /// Its instance id.
    pub instance: String,
    /// The resources it holds a lease of (for the whole run).
    pub resources: Vec<String>,
    /// When it was down: killed, paused or cut off from the server.
    pub down: Vec<(Instant, Option<Instant>)>,
    /// When it had its leases (listings before are not judged).
    pub holding_from: Option<Instant>,
}

/// The bounds the checker judges by.
#[derive(Debug, Clone, Copy)]
pub struct OpsRules {
    /// A holder down this long before a listing must be listed stale: the
    /// presence TTL plus a margin (the last announcement's flight, drift).
    pub dead: Duration,
    /// A holder up this long before a listing must not be: a renewal
    /// interval, the call timeout of an announcement cut off by the fault,
    /// and the retry delay, with room.
    pub alive: Duration,
}

/// What the operator's listings say, and the holders' lives.
#[derive(Debug, Clone)]
pub struct OpsHistory {
    /// Every listing, in order.
    pub listings: Vec<Listing>,
    /// Every holder.
    pub holders: Vec<HolderRecord>,
    /// The bounds.
    pub rules: OpsRules,
}

/// Counts for the sweep's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpsCounts {
    /// Listings made.
    pub listings: usize,
    /// Judged (listing, holder) pairs that had to be stale.
    pub judged_stale: usize,
    /// Judged pairs that had to be alive.
    pub judged_alive: usize,
}

fn down_throughout(h: &HolderRecord, from: Instant, to: Instant) -> bool {
    (h.down.iter()).any(|&(a, b)| a <= from && b.is_none_or(|b| b >= to))
}

fn up_throughout(h: &HolderRecord, from: Instant, to: Instant) -> bool {
    (h.down.iter()).all(|&(a, b)| a > to || b.is_some_and(|b| b < from))
}

/// Judges every listing; returns the violations and the counts.
pub fn check_ops(h: &OpsHistory) -> (Vec<Violation>, OpsCounts) {
    let mut out = Vec::new();
    if h.listings.is_empty() {
        out.push(Violation::new(
            "ops-listed",
            "the operator made no listing".to_owned(),
        ));
    }
    let mut counts = OpsCounts {
        listings: h.listings.len(),
        ..OpsCounts::default()
    };
    for l in &h.listings {
        let holding: Vec<&HolderRecord> = (h.holders.iter())
            .filter(|r| r.holding_from.is_some_and(|t| t <= l.start))
            .collect();
        if holding.len() == h.holders.len() {
            let want: BTreeSet<(String, String)> = (holding.iter())
                .flat_map(|r| (r.resources.iter()).map(|res| (res.clone(), r.instance.clone())))
                .collect();
            if l.leases != want {
                out.push(Violation::new(
                    "ops-listed",
                    format!(
                        "listing at {:?}: missing {:?}, unexpected {:?}",
                        l.start,
                        want.difference(&l.leases).collect::<Vec<_>>(),
                        l.leases.difference(&want).collect::<Vec<_>>()
                    ),
                ));
            }
        }
        for r in holding {
            let stale: Vec<&String> = (r.resources.iter())
                .filter(|res| l.stale.contains(&((*res).clone(), r.instance.clone())))
                .collect();
            if down_throughout(r, l.start - h.rules.dead, l.end) {
                counts.judged_stale += 1;
                if stale.len() != r.resources.len() {
                    out.push(Violation::new(
                        "ops-stale-missed",
                        format!(
                            "listing {:?}..{:?}: {} down since {:?} ({:?}), only {stale:?} of {:?} listed stale",
                            l.start, l.end, r.instance, r.down, h.rules.dead, r.resources
                        ),
                    ));
                }
            } else if up_throughout(r, l.start - h.rules.alive, l.end) {
                counts.judged_alive += 1;
                if !stale.is_empty() {
                    out.push(Violation::new(
                        "ops-stale-false",
                        format!(
                            "listing {:?}..{:?}: {} up since at least {:?} before, yet {stale:?} listed stale (down {:?})",
                            l.start, l.end, r.instance, h.rules.alive, r.down
                        ),
                    ));
                }
            }
        }
    }
    (out, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn history(stale_listed: bool, down: Vec<(Instant, Option<Instant>)>) -> OpsHistory {
        let t0 = Instant::now();
        let res = vec!["lock:a".to_owned(), "lock:b".to_owned()];
        let leases: BTreeSet<_> = res.iter().map(|r| (r.clone(), "h0".to_owned())).collect();
        OpsHistory {
            listings: vec![Listing {
                start: t0 + s(10),
                end: t0 + s(10),
                stale: if stale_listed {
                    leases.clone()
                } else {
                    BTreeSet::new()
                },
                leases,
            }],
            holders: vec![HolderRecord {
                instance: "h0".to_owned(),
                resources: res,
                down,
                holding_from: Some(t0),
            }],
            rules: OpsRules {
                dead: s(3),
                alive: s(3),
            },
        }
    }

    #[test]
    fn a_dead_holder_must_be_listed_stale() {
        let t0 = Instant::now();
        let h = history(false, vec![(t0 + s(5), None)]);
        let (v, c) = check_ops(&h);
        assert_eq!(c.judged_stale, 1);
        assert!(v.iter().any(|v| v.checker == "ops-stale-missed"), "{v:?}");
        let h = history(true, vec![(t0 + s(5), None)]);
        assert!(check_ops(&h).0.is_empty());
    }

    #[test]
    fn a_live_holder_must_not_be_listed_stale() {
        let t0 = Instant::now();
        let h = history(true, vec![(t0 + s(1), Some(t0 + s(2)))]);
        let (v, c) = check_ops(&h);
        assert_eq!(c.judged_alive, 1);
        assert!(v.iter().any(|v| v.checker == "ops-stale-false"), "{v:?}");
        assert!(check_ops(&history(false, vec![])).0.is_empty());
    }

    #[test]
    fn a_holder_between_the_bounds_is_not_judged() {
        let t0 = Instant::now();
        for stale in [true, false] {
            // Went down 1 s before the listing: its presence may live on.
            let (v, c) = check_ops(&history(stale, vec![(t0 + s(9), None)]));
            assert!(v.is_empty() && c.judged_stale + c.judged_alive == 0);
        }
    }

    #[test]
    fn no_listing_at_all_is_reported() {
        let mut h = history(false, vec![]);
        h.listings.clear();
        assert!(check_ops(&h).0.iter().any(|v| v.checker == "ops-listed"));
    }

    #[test]
    fn a_missing_or_phantom_lease_is_reported() {
        let mut h = history(false, vec![]);
        h.listings[0].leases.pop_first();
        assert!(check_ops(&h).0.iter().any(|v| v.checker == "ops-listed"));
        let mut h = history(false, vec![]);
        h.listings[0]
            .leases
            .insert(("lock:x".to_owned(), "h9".to_owned()));
        assert!(check_ops(&h).0.iter().any(|v| v.checker == "ops-listed"));
    }
}
