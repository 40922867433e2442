//! Fair locks: the queued attempts of every fair wait, as the waiter's
//! connection saw them, and the checker that grants follow the queue
//! ([`check_fair`]).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::Instant;

use super::Violation;

/// One queued attempt (`locks.acquire_queued`) of a fair wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedAttempt {
    /// When it left the client.
    pub sent: Instant,
    /// When its answer (or error) came back.
    pub returned: Instant,
    /// `None`: no answer (an error: it may have been applied, and the
    /// wait ends); `Some(None)`: refused; `Some(Some(token))`: granted.
    pub answer: Option<Option<u64>>,
}

/// One fair wait: the attempts of one holder id, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FairWait {
    /// The process (node) waiting.
    pub process: String,
    /// The wait's holder id, as text.
    pub holder: String,
    /// Its queued attempts.
    pub attempts: Vec<QueuedAttempt>,
}

impl FairWait {
    /// The grant's token and attempt, if an attempt was answered granted.
    fn grant(&self) -> Option<(u64, &QueuedAttempt)> {
        self.attempts.iter().find_map(|a| Some((a.answer??, a)))
    }

    /// Until when the wait's place in the queue was provably live (global
    /// time), refreshed by answered attempts each of which was processed
    /// before the place it renewed lapsed; `None` if its first attempt got
    /// no answer. An unanswered attempt ends the wait (the client gives
    /// its place back after it): the place is not relied on past it.
    fn live_until(&self, rules: &FairRules) -> Option<Instant> {
        let first = self.attempts.first().filter(|a| a.answer.is_some())?;
        let lasts = rules.waiter_ttl.saturating_sub(rules.margin);
        let mut until = first.sent + lasts;
        for a in &self.attempts[1..] {
            if a.answer.is_none() {
                until = until.min(a.sent);
                break;
            }
            if a.returned >= until {
                break;
            }
            until = until.max(a.sent + lasts);
        }
        Some(until)
    }
}

/// Every fair wait of a run, filled by the waiters' connections.
#[derive(Debug, Clone, Default)]
pub struct FairLog(Arc<Mutex<BTreeMap<String, FairWait>>>);

impl FairLog {
    /// An empty log.
    pub fn new() -> FairLog {
        FairLog::default()
    }

    /// Records `attempt` of the wait of `holder` by `process`.
    pub fn push(&self, process: &str, holder: &str, attempt: QueuedAttempt) {
        let mut waits = self.0.lock().unwrap();
        let wait = waits.entry(holder.to_owned()).or_insert_with(|| FairWait {
            process: process.to_owned(),
            holder: holder.to_owned(),
            attempts: Vec::new(),
        });
        wait.attempts.push(attempt);
    }

    /// Every wait so far, its attempts in the order sent.
    pub fn waits(&self) -> Vec<FairWait> {
        let mut waits: Vec<FairWait> = self.0.lock().unwrap().values().cloned().collect();
        for w in &mut waits {
            w.attempts.sort_by_key(|a| a.sent);
        }
        waits
    }
}

/// What [`check_fair`] relies on.
#[derive(Debug, Clone, Copy)]
pub struct FairRules {
    /// The waiters' waiter TTL.
    pub waiter_ttl: Duration,
    /// Taken off every place's life: the server clock's rate against the
    /// global one, with room.
    pub margin: Duration,
    /// Grants answered from here on are not judged (the heal: waits are
    /// cancelled then, giving their places back).
    pub until: Instant,
}

/// What [`check_fair`] judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FairCounts {
    /// Fair waits seen.
    pub waits: usize,
    /// Of them, granted.
    pub granted: usize,
    /// Pairs (earlier waiter, later grant) in which the earlier waiter
    /// provably kept its place: it had to be granted first.
    pub ordered_pairs: usize,
}

/// Checker `fair-order`: if wait A's first attempt was answered before wait
/// B's first attempt was sent, and A's place was provably live when B's
/// granting step ran (A kept renewing it in time: it was neither dead, cut
/// off nor paused for longer than its waiter TTL, and did not give up),
/// then A was granted before B (a smaller token).
pub fn check_fair(waits: &[FairWait], rules: &FairRules) -> (Vec<Violation>, FairCounts) {
    let mut out = Vec::new();
    let mut counts = FairCounts {
        waits: waits.len(),
        granted: waits.iter().filter(|w| w.grant().is_some()).count(),
        ordered_pairs: 0,
    };
    for b in waits {
        let (Some((b_token, b_grant)), Some(b_first)) = (b.grant(), b.attempts.first()) else {
            continue;
        };
        if b_grant.returned >= rules.until {
            continue;
        }
        for a in waits.iter().filter(|a| a.holder != b.holder) {
            // A's first attempt took its place; answered before B began.
            let Some(a_first) = a.attempts.first().filter(|x| x.answer.is_some()) else {
                continue;
            };
            if a_first.returned >= b_first.sent {
                continue;
            }
            let a_grant = a.grant();
            let granted_first = a_grant.is_some_and(|(t, _)| t < b_token);
            let kept = (a.live_until(rules)).is_some_and(|l| b_grant.returned < l);
            if !kept {
                continue;
            }
            counts.ordered_pairs += 1;
            if !granted_first {
                out.push(Violation::new(
                    "fair-order",
                    format!(
                        "{} ({}) queued before {} ({}) and kept its place, but {} was \
                         granted token {b_token} first (at {:?}); {}'s grant: {:?}",
                        a.process,
                        a.holder,
                        b.process,
                        b.holder,
                        b.process,
                        b_grant.returned,
                        a.process,
                        a_grant.map(|(t, g)| (t, g.returned)),
                    ),
                ));
            }
        }
    }
    if out.len() > MAX_REPORTED {
        let more = out.len() - MAX_REPORTED;
        out.truncate(MAX_REPORTED);
        out.push(Violation::new("fair-order", format!("... and {more} more")));
    }
    (out, counts)
}

/// How many `fair-order` violations are spelled out.
const MAX_REPORTED: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, t0: Instant) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn wait(name: &str, t0: Instant, attempts: &[(u64, u64, Option<Option<u64>>)]) -> FairWait {
        FairWait {
            process: name.into(),
            holder: name.into(),
            attempts: attempts
                .iter()
                .map(|&(s, r, answer)| QueuedAttempt {
                    sent: at(s, t0),
                    returned: at(r, t0),
                    answer,
                })
                .collect(),
        }
    }

    fn rules(t0: Instant) -> FairRules {
        FairRules {
            waiter_ttl: Duration::from_millis(600),
            margin: Duration::from_millis(20),
            until: at(100_000, t0),
        }
    }

    #[test]
    fn a_live_earlier_waiter_overtaken_is_reported() {
        let t0 = Instant::now();
        let a = wait("a", t0, &[(0, 5, Some(None)), (200, 205, Some(None))]);
        let b = wait("b", t0, &[(10, 15, Some(None)), (300, 305, Some(Some(7)))]);
        let (v, c) = check_fair(&[a, b], &rules(t0));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(c.ordered_pairs, 1);
    }

    #[test]
    fn grants_in_queue_order_pass() {
        let t0 = Instant::now();
        let a = wait("a", t0, &[(0, 5, Some(None)), (200, 205, Some(Some(3)))]);
        let b = wait("b", t0, &[(10, 15, Some(None)), (300, 305, Some(Some(7)))]);
        let (v, c) = check_fair(&[a, b], &rules(t0));
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(c.ordered_pairs, 1);
    }

    #[test]
    fn a_waiter_silent_past_its_waiter_ttl_may_be_skipped() {
        let t0 = Instant::now();
        // a's last attempt at 0 ms: its place lapsed by 600 ms.
        let a = wait("a", t0, &[(0, 5, Some(None))]);
        let b = wait("b", t0, &[(10, 15, Some(None)), (700, 705, Some(Some(7)))]);
        let (v, _) = check_fair(&[a.clone(), b.clone()], &rules(t0));
        assert!(v.is_empty(), "{v:?}");
        // An unanswered attempt ends a's wait: b may go after it.
        let a = wait("a", t0, &[(0, 5, Some(None)), (100, 600, None)]);
        let b = wait("b", t0, &[(10, 15, Some(None)), (300, 305, Some(Some(7)))]);
        let (v, _) = check_fair(&[a, b], &rules(t0));
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn concurrent_arrivals_are_not_ordered() {
        let t0 = Instant::now();
        let a = wait("a", t0, &[(0, 20, Some(None))]);
        let b = wait("b", t0, &[(10, 15, Some(None)), (100, 105, Some(Some(7)))]);
        let (v, c) = check_fair(&[a, b], &rules(t0));
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(c.ordered_pairs, 0);
    }
}
