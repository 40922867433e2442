//! The documented state-transition sequences of resilience4j's and Polly's
//! breakers, ported to [`Record`]: the shared breaker follows them.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::spi::breaker::WindowKind;

const S: u64 = 1_000_000;
const T0: u64 = 1_000 * S;

fn r4j(window: u32, minimum: u32, trials: u32) -> Policy {
    Policy {
        window: WindowKind::Count { calls: window },
        failure_rate_bp: 5_000,
        minimum_calls: minimum,
        open_for: Duration::from_secs(60),
        max_open_for: Duration::from_secs(60),
        trials,
        ..Policy::default()
    }
}

fn calls(r: &mut Record, ok: u64, failed: u64, at: u64) -> bool {
    let g = r.generation();
    r.sweep(at);
    r.report(g, "a", Tally::new(ok + failed, failed, 0), at)
}

fn trial(r: &mut Record, who: &str, failed: bool, at: u64) {
    r.sweep(at);
    let g = r.generation();
    assert!(r.trial(who, 10 * S, at).is_some(), "trial for {who}");
    assert!(r.trial_done(g, who, Tally::one(failed, false), at));
}

/// resilience4j: "If only 9 calls have been evaluated the CircuitBreaker
/// will not trip open even if all 9 calls have failed"; the 10th, failed,
/// opens it (100 % >= 50 %).
#[test]
fn r4j_minimum_number_of_calls() {
    let mut r = Record::born(r4j(100, 10, 3), T0);
    calls(&mut r, 0, 9, T0);
    assert_eq!(r.phase(), Phase::Closed);
    calls(&mut r, 0, 1, T0);
    assert_eq!(r.phase(), Phase::Open);
}

/// resilience4j: CLOSED → OPEN when the failure rate is equal to or greater
/// than the threshold; OPEN rejects; after the wait duration, HALF_OPEN
/// permits the configured number of calls; a failure rate below the
/// threshold among them → CLOSED.
#[test]
fn r4j_closed_open_half_open_closed() {
    let mut r = Record::born(r4j(10, 10, 3), T0);
    calls(&mut r, 5, 5, T0);
    assert_eq!(r.phase(), Phase::Open, "50% of 10 trips");
    let open = r.state(0, T0 + S);
    assert_eq!(open.retry_after, Some(Duration::from_secs(59)));
    r.sweep(T0 + 59 * S);
    assert_eq!(r.phase(), Phase::Open);
    r.sweep(T0 + 60 * S);
    assert_eq!(r.phase(), Phase::HalfOpen);
    let at = T0 + 61 * S;
    assert!(r.trial("t1", S, at).is_some());
    assert!(r.trial("t2", S, at).is_some());
    assert!(r.trial("t3", S, at).is_some());
    assert!(r.trial("t4", S, at).is_none(), "only 3 trials permitted");
    let g = r.generation();
    r.trial_done(g, "t1", Tally::one(false, false), at);
    r.trial_done(g, "t2", Tally::one(true, false), at);
    assert_eq!(
        r.phase(),
        Phase::HalfOpen,
        "undecided until every trial ends"
    );
    r.trial_done(g, "t3", Tally::one(false, false), at);
    assert_eq!(r.phase(), Phase::Closed, "1 of 3 failed: 33% < 50%");
    let kinds: Vec<_> = r
        .state(0, at)
        .transitions
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    use Phase::*;
    assert_eq!(
        kinds,
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
}

/// resilience4j: in HALF_OPEN, a failure rate at or above the threshold
/// among the permitted calls → OPEN again.
#[test]
fn r4j_half_open_back_to_open() {
    let mut r = Record::born(r4j(4, 4, 2), T0);
    calls(&mut r, 2, 2, T0);
    r.sweep(T0 + 60 * S);
    trial(&mut r, "t1", true, T0 + 60 * S);
    trial(&mut r, "t2", false, T0 + 60 * S);
    assert_eq!(r.phase(), Phase::Open, "1 of 2 failed: 50% >= 50%");
}

/// resilience4j: slow calls open the breaker on their own rate, failed or
/// not.
#[test]
fn r4j_slow_call_rate() {
    let mut p = r4j(10, 10, 1);
    p.slow_rate_bp = Some(10_000);
    let mut r = Record::born(p, T0);
    r.report(r.generation(), "a", Tally::new(10, 0, 9), T0);
    assert_eq!(r.phase(), Phase::Closed, "90% slow < 100%");
    let mut r = Record::born(p, T0);
    r.report(r.generation(), "a", Tally::new(10, 0, 10), T0);
    assert_eq!(r.phase(), Phase::Open);
}

/// resilience4j: DISABLED always allows and records nothing; FORCED_OPEN
/// always denies; "the only way to exit from those two states" is a
/// transition or a reset.
#[test]
fn r4j_disabled_and_forced_open() {
    let mut r = Record::born(r4j(2, 2, 1), T0);
    r.manual(Action::Disable, "ops", "deploy", *r.policy(), T0);
    assert_eq!(r.phase(), Phase::Disabled);
    assert!(
        !calls(&mut r, 0, 2, T0),
        "a disabled breaker counts nothing"
    );
    assert_eq!(r.phase(), Phase::Disabled);
    r.manual(Action::ForceOpen, "ops", "maintenance", *r.policy(), T0);
    r.sweep(T0 + 3600 * S);
    assert_eq!(r.phase(), Phase::ForcedOpen, "no open time ends it");
    assert!(r.state(0, T0).retry_after.is_none());
    r.manual(Action::Reset, "ops", "done", *r.policy(), T0 + 3600 * S);
    assert_eq!(r.phase(), Phase::Closed);
    let m = r.state(0, T0).manual.expect("recorded");
    assert_eq!(
        (m.action, m.by.as_str(), m.why.as_str()),
        (Action::Reset, "ops", "done")
    );
}

/// Polly (v8): the circuit opens when the failure ratio within the sampling
/// duration reaches the threshold with the minimum throughput; after the
/// break duration one trial runs: a success closes it...
#[test]
fn polly_half_open_probe_success_closes() {
    let p = Policy {
        window: WindowKind::Time {
            span: Duration::from_secs(30),
        },
        failure_rate_bp: 1_000,
        minimum_calls: 100,
        open_for: Duration::from_secs(5),
        max_open_for: Duration::from_secs(5),
        trials: 1,
        ..Policy::default()
    };
    let mut r = Record::born(p, T0);
    calls(&mut r, 89, 10, T0);
    assert_eq!(r.phase(), Phase::Closed, "99 calls, below the throughput");
    calls(&mut r, 1, 0, T0 + S);
    assert_eq!(r.phase(), Phase::Open, "10% of 100");
    trial(&mut r, "probe", false, T0 + 6 * S);
    assert_eq!(r.phase(), Phase::Closed);
}

/// ...and a failure opens it again; with a growing break duration (Polly's
/// `BreakDurationGenerator`, resilience4j's exponential wait) each open in
/// a row lasts twice the one before, up to the maximum; closing resets it.
#[test]
fn polly_probe_failure_reopens_with_growing_break() {
    let p = Policy {
        open_for: Duration::from_secs(5),
        max_open_for: Duration::from_secs(15),
        ..r4j(2, 2, 1)
    };
    let mut r = Record::born(p, T0);
    calls(&mut r, 0, 2, T0);
    assert_eq!(r.state(0, T0).retry_after, Some(Duration::from_secs(5)));
    let mut at = T0 + 5 * S;
    for expected in [10, 15, 15] {
        trial(&mut r, "probe", true, at);
        assert_eq!(r.phase(), Phase::Open);
        assert_eq!(
            r.state(0, at).retry_after,
            Some(Duration::from_secs(expected))
        );
        at += expected * S;
    }
    trial(&mut r, "probe", false, at);
    assert_eq!(r.phase(), Phase::Closed);
    calls(&mut r, 0, 2, at);
    assert_eq!(r.state(0, at).retry_after, Some(Duration::from_secs(5)));
}

/// Polly's manual control: `Isolate` holds the circuit open, `Close`
/// closes it with fresh statistics.
#[test]
fn polly_isolate_and_close() {
    let mut r = Record::born(r4j(10, 10, 1), T0);
    calls(&mut r, 0, 9, T0);
    r.manual(Action::ForceOpen, "ops", "isolate", *r.policy(), T0);
    r.manual(Action::Reset, "ops", "close", *r.policy(), T0);
    assert!(calls(&mut r, 0, 9, T0));
    assert_eq!(
        r.phase(),
        Phase::Closed,
        "the nine failures before were cleared"
    );
}

/// Outcomes of another generation are ignored: late reports after an open,
/// and a trial's end after its generation closed.
#[test]
fn outcomes_of_an_old_generation_are_ignored() {
    let mut r = Record::born(r4j(2, 2, 1), T0);
    let old = r.generation();
    calls(&mut r, 0, 2, T0);
    assert!(!r.report(old, "a", Tally::new(5, 0, 0), T0));
    r.sweep(T0 + 60 * S);
    let half = r.generation();
    assert!(r.trial("t", S, T0 + 60 * S).is_some());
    r.manual(Action::Reset, "ops", "", *r.policy(), T0 + 60 * S);
    assert!(!r.trial_done(half, "t", Tally::one(true, false), T0 + 60 * S));
    assert_eq!(r.phase(), Phase::Closed);
}

/// A trial whose holder crashed frees its slot at its deadline.
#[test]
fn a_crashed_trial_frees_its_slot() {
    let mut r = Record::born(r4j(2, 2, 1), T0);
    calls(&mut r, 0, 2, T0);
    let at = T0 + 60 * S;
    r.sweep(at);
    assert!(r.trial("crashed", 2 * S, at).is_some());
    assert!(r.trial("other", 2 * S, at + S).is_none());
    r.sweep(at + 2 * S);
    assert!(r.trial("other", 2 * S, at + 2 * S).is_some());
}

/// With a quorum of 2, one instance's failures do not open the breaker.
#[test]
fn quorum_needs_distinct_failing_instances() {
    let p = Policy {
        quorum: 2,
        ..r4j(10, 4, 1)
    };
    let mut r = Record::born(p, T0);
    r.report(r.generation(), "a", Tally::new(8, 8, 0), T0);
    assert_eq!(r.phase(), Phase::Closed, "only a failed");
    r.sweep(T0 + 70 * S);
    r.report(r.generation(), "b", Tally::new(1, 1, 0), T0 + 70 * S);
    assert_eq!(r.phase(), Phase::Closed, "a's failures left the span");
    r.sweep(T0 + 71 * S);
    r.report(r.generation(), "a", Tally::new(1, 1, 0), T0 + 71 * S);
    assert_eq!(r.phase(), Phase::Open);
}

/// Only the last transitions are kept; a reader from before them is told,
/// whatever generation its request named: the reply names the last one
/// dropped, and every one after it is kept.
#[test]
fn the_transition_log_tells_what_it_lost() {
    let mut r = Record::born(r4j(2, 2, 1), T0);
    let first = r.generation();
    assert_eq!(r.state(0, T0).kept_after, 0, "nothing dropped yet");
    let mut made = Vec::new();
    for i in 0..(TRANSITIONS_KEPT as u64 + 2) {
        r.manual(Action::Disable, "ops", "", *r.policy(), T0 + i);
        made.push(r.generation());
    }
    let s = r.state(first, T0 + 100);
    assert_eq!(s.kept_after, made[1], "the two oldest dropped");
    assert!(s.missed_after(first) && s.missed_after(made[0]));
    assert!(!s.missed_after(made[1]) && !s.missed_after(0));
    assert_eq!(s.transitions.len(), TRANSITIONS_KEPT);
    assert_eq!(s.transitions[0].generation, made[2]);
    // A reader that saw the last dropped one is told of no gap, whichever
    // generation (older) its request named.
    assert!(!r.state(first, T0).missed_after(made[1]));
}

#[derive(Debug, Clone)]
enum Step {
    Report(u8, u8, bool),
    Trial(u8),
    Done(u8, bool),
    Manual(u8),
    Wait(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..20, 0u8..20, any::<bool>()).prop_map(|(a, b, old)| Step::Report(a, b, old)),
        (0u8..5).prop_map(Step::Trial),
        (0u8..5, any::<bool>()).prop_map(|(h, f)| Step::Done(h, f)),
        (0u8..3).prop_map(Step::Manual),
        (0u32..5_000_000).prop_map(Step::Wait),
    ]
}

proptest! {
    /// Whatever happens: generations strictly increase at each transition,
    /// and never more live trials than permitted, nor more counted.
    #[test]
    fn generations_increase_and_trials_stay_bounded(steps in prop::collection::vec(step(), 1..200)) {
        let p = Policy { open_for: Duration::from_secs(2), max_open_for: Duration::from_secs(8), ..r4j(10, 5, 3) };
        let mut r = Record::born(p, T0);
        let mut at = T0;
        let mut seen = 0;
        let mut last = r.generation();
        for s in steps {
            r.sweep(at);
            let g = r.generation();
            match s {
                Step::Report(ok, failed, old) => {
                    let gen_ = if old { g - 1 } else { g };
                    r.report(gen_, "i", Tally::new(u64::from(ok) + u64::from(failed), u64::from(failed), 0), at);
                }
                Step::Trial(h) => { r.trial(&h.to_string(), S, at); }
                Step::Done(h, f) => { r.trial_done(g, &h.to_string(), Tally::one(f, false), at); }
                Step::Manual(a) => {
                    let action = [Action::ForceOpen, Action::Disable, Action::Reset][usize::from(a)];
                    r.manual(action, "x", "", p, at);
                }
                Step::Wait(us) => at += u64::from(us),
            }
            let st = r.state(seen, at);
            prop_assert!(st.trials_live as u64 + st.trials_done.calls <= u64::from(p.trials));
            prop_assert!(st.generation >= last);
            for t in &st.transitions {
                prop_assert!(t.generation > seen);
                prop_assert!(t.generation > last || seen >= last);
            }
            if st.generation != last {
                prop_assert_eq!(st.transitions.last().map(|t| t.generation), Some(st.generation));
            }
            last = st.generation;
            seen = st.generation;
        }
    }
}
