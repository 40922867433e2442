//! Circuit breakers: what the backend decided (its journal: trial grants,
//! trial ends, transitions, each at the global instant it was decided) and
//! what the instances saw (calls admitted, the transitions each process was
//! told), and the checkers `breaker-*`:
//!
//! - `breaker-trials`: at no instant more live trials of one generation
//!   than the policy's `trials` (a grant is live until its end is counted
//!   or it is given back, or at the latest until 99 % of its TTL has
//!   passed: the server's clock runs within 0.4 % of the global one), and
//!   never more than `trials` trial ends counted per generation (a trial
//!   given back counts none);
//! - `breaker-trial-calls`: once healed, every trial call an instance ran
//!   was granted (no more trial calls than grants);
//! - `breaker-open-bound`: once healed, an open reaches every instance
//!   within the bound: no instance admits a counted call later than the
//!   bound after the backend opened (or forced open) the breaker, while it
//!   stays open; and the run saw at least one open after the heal;
//! - `breaker-transitions`: no lost transition: each process is told
//!   transitions in increasing generations, each as the backend made it,
//!   with none skipped between two it was told unless it was told it
//!   missed some (or its stream lagged), and told it missed some only
//!   where the backend made some between them; and every process alive at
//!   the end was told the last one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{Instant, spi::Phase};

use super::Violation;

/// What the backend decided about the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerDecision {
    /// A trial of `generation` granted to `holder`.
    TrialGranted {
        /// The half-open generation.
        generation: u64,
        /// Who.
        holder: String,
        /// When (global).
        at: Instant,
    },
    /// `holder`'s trial of `generation` ended, counted.
    TrialEnded {
        /// The generation.
        generation: u64,
        /// Who.
        holder: String,
        /// When (global).
        at: Instant,
    },
    /// `holder`'s trial of `generation` was given back, uncounted.
    TrialGivenBack {
        /// The generation.
        generation: u64,
        /// Who.
        holder: String,
        /// When (global).
        at: Instant,
    },
    /// A transition beginning `generation`.
    Transition {
        /// The generation it began.
        generation: u64,
        /// From.
        from: Phase,
        /// To.
        to: Phase,
        /// When (global).
        at: Instant,
    },
}

/// The backend's breaker decisions, in its order (shared by the server's
/// incarnations).
#[derive(Debug, Clone, Default)]
pub struct BreakerLog(Arc<Mutex<Vec<BreakerDecision>>>);

impl BreakerLog {
    /// An empty log.
    pub fn new() -> BreakerLog {
        BreakerLog::default()
    }

    /// Appends `d`.
    pub fn push(&self, d: BreakerDecision) {
        self.0.lock().unwrap().push(d);
    }

    /// Everything so far.
    pub fn decisions(&self) -> Vec<BreakerDecision> {
        self.0.lock().unwrap().clone()
    }
}

/// What one instance process was told by `Breaker::events()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// A transition.
    Transition {
        /// Its generation.
        generation: u64,
        /// From.
        from: Phase,
        /// To.
        to: Phase,
    },
    /// Some transitions after the last one told were no longer kept
    /// (`BreakerEvent::Missed`): the backend made some between it and the
    /// next one told.
    Missed,
    /// The event stream lagged: some events (transitions or others) were
    /// lost on the way.
    Lagged,
}

/// One instance process: its name, when it started, what it was told,
/// whether it was alive at the end, and the calls it was admitted (the
/// instant, and whether a trial).
#[derive(Debug, Clone)]
pub struct BreakerProcess {
    /// The instance.
    pub name: String,
    /// When this process started.
    pub started: Instant,
    /// When it was killed, if it was.
    pub killed: Option<Instant>,
    /// What its event stream told, in order.
    pub told: Vec<Told>,
    /// Calls admitted: when, and whether as a trial.
    pub admitted: Vec<(Instant, bool)>,
}

/// What a breaker run recorded, and the bounds it is judged by.
#[derive(Debug, Clone)]
pub struct BreakerHistory {
    /// The backend's decisions.
    pub decisions: Vec<BreakerDecision>,
    /// Every instance process.
    pub processes: Vec<BreakerProcess>,
    /// The policy's trials per generation.
    pub trials: u32,
    /// The trials' TTL.
    pub trial_ttl: Duration,
    /// Opens decided at or after this instant must reach every instance
    /// within `open_bound`.
    pub settled: Instant,
    /// The contract's bound (flush plus refresh interval, plus round trips).
    pub open_bound: Duration,
    /// The end of the run.
    pub end: Instant,
}

/// What a breaker run did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakerCounts {
    /// Transitions the backend made.
    pub transitions: usize,
    /// Opens (by the window or the trials).
    pub opens: usize,
    /// Trials granted.
    pub trials: usize,
    /// Trials given back uncounted (their permits dropped).
    pub given_back: usize,
    /// Calls admitted (trials among them).
    pub admitted: usize,
    /// Trial calls run.
    pub trial_calls: usize,
}

/// The counts of `h`.
pub fn breaker_counts(h: &BreakerHistory) -> BreakerCounts {
    let mut c = BreakerCounts::default();
    for d in &h.decisions {
        match d {
            BreakerDecision::Transition { to, .. } => {
                c.transitions += 1;
                c.opens += usize::from(*to == Phase::Open);
            }
            BreakerDecision::TrialGranted { .. } => c.trials += 1,
            BreakerDecision::TrialGivenBack { .. } => c.given_back += 1,
            BreakerDecision::TrialEnded { .. } => {}
        }
    }
    for p in &h.processes {
        c.admitted += p.admitted.len();
        c.trial_calls += p.admitted.iter().filter(|(_, trial)| *trial).count();
    }
    c
}

/// Every `breaker-*` checker on `h`.
pub fn check_breaker(h: &BreakerHistory) -> Vec<Violation> {
    let mut out = check_trials(h);
    out.extend(check_open_bound(h));
    out.extend(check_told(h));
    out
}

fn check_trials(h: &BreakerHistory) -> Vec<Violation> {
    let mut out = Vec::new();
    let live_for = h.trial_ttl.mul_f64(0.99);
    // Per generation: the live intervals of its grants, and ends counted.
    let mut live: HashMap<u64, Vec<(Instant, Instant)>> = HashMap::new();
    let mut ended: HashMap<u64, u32> = HashMap::new();
    for (i, d) in h.decisions.iter().enumerate() {
        match d {
            BreakerDecision::TrialGranted {
                generation,
                holder,
                at,
            } => {
                let end = h.decisions[i + 1..]
                    .iter()
                    .find_map(|e| match e {
                        BreakerDecision::TrialEnded {
                            generation: g,
                            holder: who,
                            at,
                        }
                        | BreakerDecision::TrialGivenBack {
                            generation: g,
                            holder: who,
                            at,
                        } if g == generation && who == holder => Some(*at),
                        _ => None,
                    })
                    .map_or(*at + live_for, |e| e.min(*at + live_for));
                live.entry(*generation).or_default().push((*at, end));
            }
            BreakerDecision::TrialEnded { generation, .. } => {
                let n = ended.entry(*generation).or_default();
                *n += 1;
                if *n == h.trials + 1 {
                    out.push(Violation::new(
                        "breaker-trials",
                        format!(
                            "generation {generation}: more than {} trial ends counted",
                            h.trials
                        ),
                    ));
                }
            }
            BreakerDecision::TrialGivenBack { .. } | BreakerDecision::Transition { .. } => {}
        }
    }
    for (generation, spans) in &live {
        for (start, _) in spans {
            let at_once = spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count();
            if at_once > h.trials as usize {
                out.push(Violation::new(
                    "breaker-trials",
                    format!(
                        "generation {generation}: {at_once} trials live at once at {start:?}; at most {}",
                        h.trials
                    ),
                ));
                break;
            }
        }
    }
    // Once settled, every instance reaches the backend: every trial call
    // then is a shared one (before, a partitioned instance's local fallback
    // runs trials of its own), backed by a grant at most a TTL older.
    let calls: usize = (h.processes.iter())
        .map(|p| {
            (p.admitted.iter())
                .filter(|(t, trial)| *trial && *t >= h.settled)
                .count()
        })
        .sum();
    let backed = (h.decisions.iter())
        .filter(|d| matches!(d, BreakerDecision::TrialGranted { at, .. } if *at + h.trial_ttl >= h.settled))
        .count();
    if calls > backed {
        out.push(Violation::new(
            "breaker-trial-calls",
            format!("{calls} trial calls ran after the heal on {backed} trials granted"),
        ));
    }
    out
}

fn check_open_bound(h: &BreakerHistory) -> Vec<Violation> {
    let mut out = Vec::new();
    let transitions: Vec<(Instant, Phase)> = (h.decisions.iter())
        .filter_map(|d| match d {
            BreakerDecision::Transition { to, at, .. } => Some((*at, *to)),
            _ => None,
        })
        .collect();
    let mut opens = 0;
    for (i, &(at, to)) in transitions.iter().enumerate() {
        if at < h.settled || !matches!(to, Phase::Open | Phase::ForcedOpen) {
            continue;
        }
        opens += 1;
        let until = transitions.get(i + 1).map_or(h.end, |t| t.0);
        let from = at + h.open_bound;
        for p in &h.processes {
            if let Some(&(t, _)) =
                (p.admitted.iter()).find(|(t, trial)| !trial && from <= *t && *t < until)
            {
                out.push(Violation::new(
                    "breaker-open-bound",
                    format!(
                        "{} admitted a counted call {:?} after the breaker went {to:?} (bound {:?})",
                        p.name,
                        t - at,
                        h.open_bound
                    ),
                ));
            }
        }
    }
    if opens == 0 {
        out.push(Violation::new(
            "breaker-open-bound",
            "no open after the heal: the bound was never put to the test".to_owned(),
        ));
    }
    out
}

fn check_told(h: &BreakerHistory) -> Vec<Violation> {
    let mut out = Vec::new();
    let made: Vec<(u64, Phase, Phase, Instant)> = (h.decisions.iter())
        .filter_map(|d| match d {
            BreakerDecision::Transition {
                generation,
                from,
                to,
                at,
            } => Some((*generation, *from, *to, *at)),
            _ => None,
        })
        .collect();
    let by_gen: HashMap<u64, (Phase, Phase)> = made.iter().map(|t| (t.0, (t.1, t.2))).collect();
    for p in &h.processes {
        let mut last: Option<u64> = None;
        // Told Missed (or lagged) since the last transition told; whether
        // Missed itself (a gap the backend must have made).
        let (mut missed, mut said_missed) = (false, false);
        for told in &p.told {
            match *told {
                Told::Missed => (missed, said_missed) = (true, true),
                Told::Lagged => missed = true,
                Told::Transition {
                    generation,
                    from,
                    to,
                } => {
                    if by_gen.get(&generation) != Some(&(from, to)) {
                        out.push(Violation::new(
                            "breaker-transitions",
                            format!("{} was told {generation} {from:?}->{to:?}, which the backend never made", p.name),
                        ));
                    }
                    if let Some(prev) = last {
                        let between = made.iter().find(|t| prev < t.0 && t.0 < generation);
                        if said_missed && generation > prev && between.is_none() {
                            out.push(Violation::new(
                                "breaker-transitions",
                                format!(
                                    "{} was told it missed transitions between {prev} and {generation}, where the backend made none",
                                    p.name
                                ),
                            ));
                        }
                        if generation <= prev {
                            out.push(Violation::new(
                                "breaker-transitions",
                                format!("{} was told {generation} after {prev}", p.name),
                            ));
                        } else if !missed && let Some(skipped) = between {
                            out.push(Violation::new(
                                "breaker-transitions",
                                format!(
                                    "{} was told {prev} then {generation}, skipping {} silently",
                                    p.name, skipped.0
                                ),
                            ));
                        }
                    }
                    last = Some(generation);
                    (missed, said_missed) = (false, false);
                }
            }
        }
        // Alive at the end, started before the last transition: told it.
        if let (None, Some(final_t)) = (p.killed, made.last())
            && p.started < final_t.3
            && last != Some(final_t.0)
        {
            out.push(Violation::new(
                "breaker-transitions",
                format!(
                    "{} ends told {last:?}, not the last transition {} ({:?} before the end)",
                    p.name,
                    final_t.0,
                    h.end - final_t.3
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::tests::t, *};

    fn history(decisions: Vec<BreakerDecision>, processes: Vec<BreakerProcess>) -> BreakerHistory {
        BreakerHistory {
            decisions,
            processes,
            trials: 1,
            trial_ttl: Duration::from_millis(1_000),
            settled: t(0),
            open_bound: Duration::from_millis(100),
            end: t(10_000),
        }
    }

    fn moved(generation: u64, from: Phase, to: Phase, ms: u64) -> BreakerDecision {
        BreakerDecision::Transition {
            generation,
            from,
            to,
            at: t(ms),
        }
    }

    fn process(told: Vec<Told>, admitted: Vec<(Instant, bool)>) -> BreakerProcess {
        BreakerProcess {
            name: "i0".into(),
            started: t(0),
            killed: None,
            told,
            admitted,
        }
    }

    fn told(generation: u64, from: Phase, to: Phase) -> Told {
        Told::Transition {
            generation,
            from,
            to,
        }
    }

    #[test]
    fn a_clean_history_passes_and_each_breakage_is_caught() {
        use Phase::*;
        let made = vec![moved(2, Closed, Open, 100), moved(3, Open, HalfOpen, 1_100)];
        let good = process(
            vec![told(2, Closed, Open), told(3, Open, HalfOpen)],
            vec![(t(50), false), (t(150), false)],
        );
        assert_eq!(
            check_breaker(&history(made.clone(), vec![good.clone()])),
            vec![]
        );

        // A counted call past the bound while open.
        let late = process(good.told.clone(), vec![(t(300), false)]);
        let v = check_breaker(&history(made.clone(), vec![late]));
        assert!(v.iter().any(|v| v.checker == "breaker-open-bound"), "{v:?}");

        // A transition skipped silently; then told after a Missed: fine.
        let skipped = process(vec![told(3, Open, HalfOpen)], vec![]);
        assert_eq!(check_breaker(&history(made.clone(), vec![skipped])), vec![]);
        let made3 = vec![
            moved(2, Closed, Open, 100),
            moved(3, Open, HalfOpen, 1_100),
            moved(4, HalfOpen, Open, 1_200),
        ];
        let gap = process(vec![told(2, Closed, Open), told(4, HalfOpen, Open)], vec![]);
        let v = check_breaker(&history(made3.clone(), vec![gap]));
        assert!(
            v.iter().any(|v| v.checker == "breaker-transitions"),
            "{v:?}"
        );
        let told_gap = process(
            vec![told(2, Closed, Open), Told::Missed, told(4, HalfOpen, Open)],
            vec![],
        );
        assert_eq!(
            check_breaker(&history(made3.clone(), vec![told_gap])),
            vec![]
        );
        // Told Missed where nothing was skipped: a gap that is not there.
        let false_gap = process(
            vec![told(2, Closed, Open), Told::Missed, told(3, Open, HalfOpen)],
            vec![],
        );
        let v = check_breaker(&history(made.clone(), vec![false_gap]));
        assert!(
            v.iter()
                .any(|v| v.detail.contains("where the backend made none")),
            "{v:?}"
        );
        // A lagging stream may have lost other events only.
        let lagged = process(
            vec![told(2, Closed, Open), Told::Lagged, told(3, Open, HalfOpen)],
            vec![],
        );
        assert_eq!(check_breaker(&history(made.clone(), vec![lagged])), vec![]);
        let lagged_gap = process(
            vec![told(2, Closed, Open), Told::Lagged, told(4, HalfOpen, Open)],
            vec![],
        );
        assert_eq!(check_breaker(&history(made3, vec![lagged_gap])), vec![]);

        // Not told the last transition.
        let stale = process(vec![told(2, Closed, Open)], vec![]);
        let v = check_breaker(&history(made.clone(), vec![stale]));
        assert!(
            v.iter().any(|v| v.checker == "breaker-transitions"),
            "{v:?}"
        );

        // Two trials live at once with one allowed; two ends counted.
        let mut trials = made.clone();
        let grant = |h: &str, ms| BreakerDecision::TrialGranted {
            generation: 3,
            holder: h.into(),
            at: t(ms),
        };
        let end = |h: &str, ms| BreakerDecision::TrialEnded {
            generation: 3,
            holder: h.into(),
            at: t(ms),
        };
        trials.extend([
            grant("a", 1_200),
            grant("b", 1_300),
            end("a", 1_400),
            end("b", 1_500),
        ]);
        let v = check_breaker(&history(trials, vec![good.clone()]));
        assert_eq!(
            v.iter().filter(|v| v.checker == "breaker-trials").count(),
            2,
            "{v:?}"
        );

        // A trial call without a grant.
        let ran = process(good.told.clone(), vec![(t(1_200), true)]);
        let v = check_breaker(&history(made, vec![ran]));
        assert!(
            v.iter().any(|v| v.checker == "breaker-trial-calls"),
            "{v:?}"
        );
    }
}
