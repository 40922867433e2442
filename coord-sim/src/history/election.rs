//! The election family's histories: the backend's leadership answers in its
//! order (run-once starts and ends are logged there too), terms as their
//! leaders saw them, and failovers after a leader crashed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{HolderId, Instant};

use super::Violation;

/// What the backend answered about leadership and run-once jobs, in its
/// order, with the (global) instant it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadEvent {
    /// `holder` was elected leader of `election` for term `term`.
    Elected {
        /// The election.
        election: String,
        /// The new leader.
        holder: HolderId,
        /// Its term.
        term: u64,
        /// When the backend answered.
        at: Instant,
    },
    /// `holder` began a run of `occurrence` with `token`.
    OnceStarted {
        /// The occurrence.
        occurrence: String,
        /// The runner.
        holder: HolderId,
        /// The run's fencing token.
        token: u64,
        /// When the backend answered.
        at: Instant,
    },
    /// `holder`'s run of `occurrence` ended (it still held it); `finished`:
    /// marked finished (else ended as a failed run).
    OnceEnded {
        /// The occurrence.
        occurrence: String,
        /// The runner.
        holder: HolderId,
        /// Marked finished.
        finished: bool,
        /// When the backend answered.
        at: Instant,
    },
}

/// The backend's leadership answers in its order. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct LeadLog {
    inner: Arc<Mutex<Vec<LeadEvent>>>,
}

impl LeadLog {
    /// An empty log.
    pub fn new() -> LeadLog {
        LeadLog::default()
    }

    /// Appends an event.
    pub fn push(&self, e: LeadEvent) {
        self.inner.lock().unwrap().push(e);
    }

    /// The events so far.
    pub fn events(&self) -> Vec<LeadEvent> {
        self.inner.lock().unwrap().clone()
    }

    /// The instants at which the backend elected a leader of any election.
    pub fn elections(&self) -> Vec<Instant> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                LeadEvent::Elected { at, .. } => Some(*at),
                _ => None,
            })
            .collect()
    }
}

/// A term as its leader saw it: from the `Elected` answer until the leader
/// stopped believing (`is_leader()` false, `lost()` fired, resigned, or its
/// process killed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderTerm {
    /// The leader (its instance id).
    pub client: String,
    /// The term.
    pub term: u64,
    /// When the winning campaign request left.
    pub sent: Instant,
    /// When the `Elected` answer came back.
    pub elected: Instant,
    /// When it stopped believing; `None` while it still does.
    pub end: Option<Instant>,
}

/// Terms as leaders saw them. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Leaderships {
    inner: Arc<Mutex<Vec<LeaderTerm>>>,
}

impl Leaderships {
    /// No terms.
    pub fn new() -> Leaderships {
        Leaderships::default()
    }

    /// `client` won `term` (campaign sent at `sent`, answered at `elected`);
    /// returns the term's index.
    pub fn begin(&self, client: &str, term: u64, sent: Instant, elected: Instant) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(LeaderTerm {
            client: client.to_owned(),
            term,
            sent,
            elected,
            end: None,
        });
        v.len() - 1
    }

    /// The leader stopped believing at `at` (the first end recorded counts).
    pub fn end_at(&self, idx: usize, at: Instant) {
        let mut v = self.inner.lock().unwrap();
        let t = &mut v[idx];
        t.end = Some(t.end.unwrap_or(at).max(t.elected));
    }

    /// The terms.
    pub fn all(&self) -> Vec<LeaderTerm> {
        self.inner.lock().unwrap().clone()
    }

    /// Checks the terms against the backend's log (`log`, with every term
    /// the backend granted, in its order); terms still believed end at
    /// `now`. Always: a term has one holder (on the backend and among the
    /// leaders, and they agree), terms strictly increase in the backend's
    /// order, and a leader's term is one the backend granted. With
    /// `exclusion` (drift in bounds, no stop-the-world pauses): a leader
    /// stops believing before the backend elects another term, so no two
    /// leaders believe at one instant.
    pub fn check(&self, log: &[LeadEvent], now: Instant, exclusion: bool) -> Vec<Violation> {
        check_terms(&self.all(), log, now, exclusion)
    }
}

/// [`Leaderships::check`] on recorded terms.
pub fn check_terms(
    terms: &[LeaderTerm],
    log: &[LeadEvent],
    now: Instant,
    exclusion: bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    // The backend's order: per election, strictly increasing terms, each
    // granted once.
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut granted: HashMap<u64, (&HolderId, Instant)> = HashMap::new();
    for e in log {
        let LeadEvent::Elected {
            election,
            holder,
            term,
            at,
        } = e
        else {
            continue;
        };
        if let Some(&l) = last.get(election.as_str())
            && *term <= l
        {
            out.push(Violation::new(
                "terms",
                format!("election {election}: term {term} elected after term {l}"),
            ));
        }
        last.insert(
            election,
            (*term).max(last.get(election.as_str()).copied().unwrap_or(0)),
        );
        if let Some((h, _)) = granted.get(term)
            && *h != holder
        {
            out.push(Violation::new(
                "term-holders",
                format!("term {term} granted to {h} and to {holder}"),
            ));
        }
        granted.entry(*term).or_insert((holder, *at));
    }
    let mut owner: HashMap<u64, &str> = HashMap::new();
    for t in terms {
        match owner.get(&t.term) {
            Some(c) if *c != t.client => out.push(Violation::new(
                "term-holders",
                format!("term {} led by two clients: {} and {}", t.term, c, t.client),
            )),
            Some(_) => {}
            None => {
                owner.insert(t.term, &t.client);
            }
        }
        match granted.get(&t.term) {
            Some((h, _)) if h.instance().as_str() != t.client => out.push(Violation::new(
                "term-holders",
                format!(
                    "{} believes it leads term {}, which the backend granted to {h}",
                    t.client, t.term
                ),
            )),
            Some(_) => {}
            None if !log.is_empty() => out.push(Violation::new(
                "term-holders",
                format!(
                    "{} believes it leads term {}, which the backend never granted",
                    t.client, t.term
                ),
            )),
            None => {}
        }
    }
    if !exclusion {
        return out;
    }
    let end = |t: &LeaderTerm| t.end.unwrap_or(now);
    for t in terms {
        // Believing past the backend's election of a later term.
        if let Some((term, (h, at))) = granted
            .iter()
            .filter(|(term, (_, at))| **term > t.term && *at > t.elected && *at < end(t))
            .min_by_key(|(_, (_, at))| *at)
        {
            out.push(Violation::new(
                "leaders",
                format!(
                    "{} still believed it led term {} until {:?}, but the backend elected {h} for term {term} at {:?}: {:?} too long",
                    t.client,
                    t.term,
                    end(t),
                    at,
                    end(t) - *at
                ),
            ));
        }
    }
    // No two leaders at one instant.
    let mut v: Vec<&LeaderTerm> = terms.iter().collect();
    v.sort_by_key(|t| t.elected);
    let mut latest: Option<&LeaderTerm> = None;
    for t in v {
        if let Some(l) = latest
            && t.elected < end(l)
            && l.term != t.term
        {
            out.push(Violation::new(
                "leaders",
                format!(
                    "{} (term {}) led from {:?} while {} (term {}) believed it led until {:?}",
                    t.client,
                    t.term,
                    t.elected,
                    l.client,
                    l.term,
                    end(l)
                ),
            ));
        }
        if latest.is_none_or(|l| end(t) > end(l)) {
            latest = Some(t);
        }
    }
    out
}

/// Failover times: for each crash of a leader (its instant), how long until
/// the next term was elected (`elected`: the instants leaders learned they
/// won), `None` if none was.
pub fn failovers(crashes: &[Instant], elected: &[Instant]) -> Vec<Option<Duration>> {
    crashes
        .iter()
        .map(|c| elected.iter().filter(|e| *e > c).min().map(|e| *e - *c))
        .collect()
}

/// Checker: every failover (see [`failovers`]) took at most `bound`.
pub fn check_failovers(failovers: &[Option<Duration>], bound: Duration) -> Vec<Violation> {
    failovers
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f {
            Some(d) if *d <= bound => None,
            Some(d) => Some(Violation::new(
                "failover",
                format!(
                    "crash {i}: the next leader was elected {d:?} after the crash; bound {bound:?}"
                ),
            )),
            None => Some(Violation::new(
                "failover",
                format!("crash {i}: no leader was elected after the crash"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{holder, t};

    fn elected(term: u64, who: &str, at: u64) -> LeadEvent {
        LeadEvent::Elected {
            election: "e".into(),
            holder: holder(who),
            term,
            at: t(at),
        }
    }

    #[test]
    fn terms_flag_two_holders_regressions_and_overlaps() {
        let l = Leaderships::new();
        let a = l.begin("a", 10, t(0), t(1));
        l.end_at(a, t(100));
        let b = l.begin("b", 20, t(150), t(160));
        l.end_at(b, t(300));
        let good = [elected(10, "a", 1), elected(20, "b", 155)];
        assert!(l.check(&good, t(400), true).is_empty());
        // A leader still believing when the backend elects the next term.
        let late = [elected(10, "a", 1), elected(20, "b", 90)];
        let v = l.check(&late, t(400), true);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].checker, "leaders");
        assert!(l.check(&late, t(400), false).is_empty());
        // Terms going back in the backend's order, a term granted twice,
        // a term believed by someone it was not granted to.
        let bad = [
            elected(20, "b", 1),
            elected(10, "a", 2),
            elected(20, "c", 3),
        ];
        let v: Vec<_> = l
            .check(&bad, t(400), false)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(v, ["terms", "terms", "term-holders"], "{v:?}");
        // Two clients believing the same term; overlapping beliefs.
        let c = l.begin("c", 20, t(200), t(210));
        l.end_at(c, t(220));
        let v: Vec<_> = l
            .check(&good, t(400), true)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert!(
            v.contains(&"term-holders") && !v.contains(&"terms"),
            "{v:?}"
        );
        let d = l.begin("d", 30, t(250), t(260));
        l.end_at(d, t(270));
        let v: Vec<_> = l
            .check(&[], t(400), true)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(v, ["term-holders", "leaders"], "{v:?}");
    }

    #[test]
    fn failover_bound() {
        let f = failovers(&[t(10), t(1010)], &[t(5), t(910), t(1510)]);
        assert_eq!(
            f,
            [
                Some(Duration::from_millis(900)),
                Some(Duration::from_millis(500))
            ]
        );
        assert!(check_failovers(&f, Duration::from_millis(900)).is_empty());
        assert_eq!(check_failovers(&f, Duration::from_millis(899)).len(), 1);
        assert_eq!(check_failovers(&[None], Duration::MAX).len(), 1);
    }
}
