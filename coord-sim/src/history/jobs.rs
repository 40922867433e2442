//! The run-once family's histories: runs of bodies as the bodies saw them,
//! judged against the backend's log and the resource's writes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use coord_api::{HolderId, Instant};

use super::{LeadEvent, Violation, Write};

/// How a run-once call ended, for the run it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceOutcome {
    /// `RunOnce::Ran`: the run counted as finished.
    Ran,
    /// `Error::LeaseLost` or another error: the run did not count.
    NotFinished,
}

/// One run of a body of a run-once occurrence, as the body saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceRun {
    /// The node that ran it.
    pub client: String,
    /// The occurrence.
    pub occurrence: String,
    /// The run's fencing token.
    pub token: u64,
    /// The attempt number the body was given.
    pub attempt: u32,
    /// When the body started.
    pub start: Instant,
    /// When it returned (or its process was killed); `None` while running.
    pub end: Option<Instant>,
    /// It stopped early because its `lost` signal fired.
    pub interrupted: bool,
    /// What `run_once` returned, once it did.
    pub outcome: Option<OnceOutcome>,
}

/// Runs of run-once bodies. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct OnceRuns {
    inner: Arc<Mutex<Vec<OnceRun>>>,
}

impl OnceRuns {
    /// No runs.
    pub fn new() -> OnceRuns {
        OnceRuns::default()
    }

    /// A body started; returns the run's index.
    pub fn start(
        &self,
        client: &str,
        occurrence: &str,
        token: u64,
        attempt: u32,
        at: Instant,
    ) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(OnceRun {
            client: client.to_owned(),
            occurrence: occurrence.to_owned(),
            token,
            attempt,
            start: at,
            end: None,
            interrupted: false,
            outcome: None,
        });
        v.len() - 1
    }

    /// The body returned at `at` (the first end recorded counts), early
    /// because of its lost signal when `interrupted`.
    pub fn end(&self, idx: usize, at: Instant, interrupted: bool) {
        let mut v = self.inner.lock().unwrap();
        let r = &mut v[idx];
        if r.end.is_none() {
            r.end = Some(at);
            r.interrupted = interrupted;
        }
    }

    /// What `run_once` returned for the run.
    pub fn outcome(&self, idx: usize, outcome: OnceOutcome) {
        self.inner.lock().unwrap()[idx].outcome = Some(outcome);
    }

    /// The runs.
    pub fn all(&self) -> Vec<OnceRun> {
        self.inner.lock().unwrap().clone()
    }

    /// Checks the runs, the backend's log and the writes the fenced
    /// resource accepted (keyed by occurrence); runs still going end at
    /// `now`. Always: a run that stopped because its lease was lost never
    /// counts as finished; an occurrence is marked finished at most once,
    /// never begins again once finished, and no body starts and no write
    /// lands after that (the writes' fencing is the resource's own checker,
    /// [`FencedResource::check`](super::FencedResource::check)). With
    /// `exclusion` (drift in bounds, no pauses; bodies stop at `lost`): no
    /// two runs of one occurrence overlap in time.
    pub fn check(
        &self,
        log: &[LeadEvent],
        writes: &[Write],
        now: Instant,
        exclusion: bool,
    ) -> Vec<Violation> {
        check_once(&self.all(), log, writes, now, exclusion)
    }
}

/// [`OnceRuns::check`] on recorded runs.
pub fn check_once(
    runs: &[OnceRun],
    log: &[LeadEvent],
    writes: &[Write],
    now: Instant,
    exclusion: bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for r in runs {
        if r.interrupted && r.outcome == Some(OnceOutcome::Ran) {
            out.push(Violation::new(
                "once-lost",
                format!(
                    "{}'s run of {} (token {}) stopped when its lease was lost, yet run_once reported it ran to completion",
                    r.client, r.occurrence, r.token
                ),
            ));
        }
    }
    // The backend's view: finished once, nothing begins after.
    let mut finished: HashMap<&str, (Instant, &HolderId)> = HashMap::new();
    let mut runner: HashMap<(&str, &HolderId), u64> = HashMap::new();
    for e in log {
        match e {
            LeadEvent::OnceStarted {
                occurrence,
                holder,
                token,
                at,
            } => {
                runner.insert((occurrence, holder), *token);
                if let Some((f, h)) = finished.get(occurrence.as_str()) {
                    out.push(Violation::new(
                        "once-after-finish",
                        format!(
                            "{occurrence}: {holder} began a run (token {token}) at {at:?}, after {h} finished it at {f:?}"
                        ),
                    ));
                }
            }
            LeadEvent::OnceEnded {
                occurrence,
                holder,
                finished: true,
                at,
            } => {
                if let Some((f, h)) = finished.get(occurrence.as_str()) {
                    out.push(Violation::new(
                        "once-after-finish",
                        format!(
                            "{occurrence}: finished by {h} at {f:?} and again by {holder} at {at:?}"
                        ),
                    ));
                } else {
                    finished.insert(occurrence, (*at, holder));
                }
                // The finishing run must not be one whose body gave up.
                let token = runner.get(&(occurrence.as_str(), holder)).copied();
                if let Some(r) = runs.iter().find(|r| {
                    Some(r.token) == token && r.occurrence == *occurrence && r.interrupted
                }) {
                    out.push(Violation::new(
                        "once-lost",
                        format!(
                            "{occurrence}: marked finished at {at:?} by the run of {} (token {}), whose body stopped when its lease was lost",
                            r.client, r.token
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    for r in runs {
        if let Some((f, h)) = finished.get(r.occurrence.as_str())
            && r.start > *f
        {
            out.push(Violation::new(
                "once-after-finish",
                format!(
                    "{}: {} started a body (token {}) at {:?}, after {h} finished it at {f:?}",
                    r.occurrence, r.client, r.token, r.start
                ),
            ));
        }
    }
    // The first write that landed after its occurrence finished, if any.
    let mut late: Vec<&str> = Vec::new();
    for w in writes {
        let occ = w.key.as_str();
        if let Some((f, h)) = finished.get(occ)
            && w.at > *f
            && !late.contains(&occ)
        {
            late.push(occ);
            out.push(Violation::new(
                "once-after-finish",
                format!(
                    "{occ}: a write by {} (token {}) landed at {:?}, after {h} finished the occurrence at {f:?}",
                    w.client, w.token, w.at
                ),
            ));
        }
    }
    if exclusion {
        let end = |r: &OnceRun| r.end.unwrap_or(now);
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                if a.occurrence == b.occurrence
                    && a.token != b.token
                    && a.start < end(b)
                    && b.start < end(a)
                {
                    out.push(Violation::new(
                        "once-overlap",
                        format!(
                            "{}: {} (token {}, {:?}..{:?}) and {} (token {}, {:?}..{:?}) ran at once",
                            a.occurrence,
                            a.client,
                            a.token,
                            a.start,
                            end(a),
                            b.client,
                            b.token,
                            b.start,
                            end(b)
                        ),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{holder, t};

    #[test]
    fn once_flags_lost_runs_reruns_late_writes_and_overlaps() {
        let runs = OnceRuns::new();
        let a = runs.start("a", "o", 10, 1, t(0));
        runs.end(a, t(100), true);
        runs.outcome(a, OnceOutcome::NotFinished);
        let b = runs.start("b", "o", 20, 2, t(150));
        runs.end(b, t(300), false);
        runs.outcome(b, OnceOutcome::Ran);
        let started = |who: &str, token, at| LeadEvent::OnceStarted {
            occurrence: "o".into(),
            holder: holder(who),
            token,
            at: t(at),
        };
        let ended = |who: &str, at| LeadEvent::OnceEnded {
            occurrence: "o".into(),
            holder: holder(who),
            finished: true,
            at: t(at),
        };
        let w = |c: &str, token, at| Write {
            key: "o".into(),
            client: c.into(),
            token,
            at: t(at),
        };
        let log = [started("a", 10, 0), started("b", 20, 140), ended("b", 310)];
        let writes = [w("a", 10, 50), w("b", 20, 200)];
        assert!(runs.check(&log, &writes, t(400), true).is_empty());
        // A lost run counted as finished (by the client and the backend).
        runs.outcome(a, OnceOutcome::Ran);
        let log_a = [started("a", 10, 0), ended("a", 120)];
        let v: Vec<_> = runs
            .check(&log_a, &[], t(400), false)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        // ... and b's body started after a finished it.
        assert_eq!(v, ["once-lost", "once-lost", "once-after-finish"], "{v:?}");
        runs.outcome(a, OnceOutcome::NotFinished);
        // A run begun after the finish, finished twice, writes after the
        // finish (one reported per occurrence).
        let log_bad = [
            started("a", 10, 0),
            started("b", 20, 140),
            ended("b", 310),
            started("c", 30, 320),
            ended("c", 330),
        ];
        let late = [
            w("b", 20, 200),
            w("a", 10, 250),
            w("b", 20, 320),
            w("b", 20, 330),
        ];
        let v: Vec<_> = runs
            .check(&log_bad, &late, t(400), false)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(
            v,
            [
                "once-after-finish",
                "once-after-finish",
                "once-after-finish"
            ],
            "{v:?}"
        );
        // Two bodies of one occurrence at once.
        runs.start("c", "o", 30, 3, t(250));
        let v: Vec<_> = runs
            .check(&log, &writes, t(400), true)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(v, ["once-overlap"], "{v:?}");
    }
}
