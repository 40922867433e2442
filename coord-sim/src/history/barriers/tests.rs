//! Unit tests of `barriers`.

use super::*;
use crate::history::tests::t;
use coord_api::{
    Key,
    spi::{BreakReason, Broken, Trip},
};

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn arrived(p: &str, g: u64, at: u64) -> BarrierEvent {
    BarrierEvent::Arrived {
        kind: BarrierKind::Cyclic,
        barrier: "b".into(),
        participant: p.into(),
        generation: g,
        at: t(at),
    }
}

fn expired(p: &str, g: u64, at: u64) -> BarrierEvent {
    BarrierEvent::Expired {
        kind: BarrierKind::Cyclic,
        barrier: "b".into(),
        participant: p.into(),
        generation: g,
        at: t(at),
    }
}

fn tripped(g: u64, next: u64, counted: &[&str], at: u64) -> BarrierEvent {
    BarrierEvent::Ended {
        kind: BarrierKind::Cyclic,
        barrier: "b".into(),
        generation: g,
        next,
        how: Ended::Tripped(Trip::new(
            k(counted.last().unwrap()),
            counted.iter().map(|p| k(p)).collect(),
        )),
        at: t(at),
    }
}

fn broke(g: u64, next: u64, at: u64) -> BarrierEvent {
    BarrierEvent::Ended {
        kind: BarrierKind::Cyclic,
        barrier: "b".into(),
        generation: g,
        next,
        how: Ended::Broken(Broken::new(
            BreakReason::Timeout { by: k("a") },
            vec![k("a")],
            vec![],
            1,
        )),
        at: t(at),
    }
}

fn wait(p: &str, g: u64, start: u64, end: Option<u64>, outcome: WaitOutcome) -> BarrierWait {
    BarrierWait {
        participant: p.into(),
        process: p.into(),
        kind: BarrierKind::Cyclic,
        barrier: "b".into(),
        generation: g,
        leave: false,
        wait_timeout: Some(Duration::from_millis(3_000)),
        start: t(start),
        end: end.map(t),
        outcome: end.map(|_| outcome),
    }
}

fn trip_outcome(g: u64, counted: &[&str]) -> WaitOutcome {
    WaitOutcome::Tripped {
        generation: g,
        by: counted.last().unwrap().to_string(),
        arrivals: counted.iter().map(|p| p.to_string()).collect(),
    }
}

fn rules() -> BarrierRules {
    BarrierRules {
        parties: 2,
        expiry: Duration::from_millis(1_000),
        dead_bound: Duration::from_millis(100),
        wait_bound: Duration::from_millis(500),
        unreachable_bound: Duration::from_millis(300),
        max_drift: 0.01,
        wake: None,
    }
}

fn checkers(log: &[BarrierEvent], waits: &[BarrierWait], down: &[Downtime]) -> Vec<&'static str> {
    check_barriers(log, waits, down, &rules())
        .into_iter()
        .map(|v| v.checker)
        .collect()
}

#[test]
fn a_clean_history_passes() {
    let log = [
        arrived("a", 10, 0),
        arrived("b", 10, 5),
        tripped(10, 20, &["a", "b"], 5),
        arrived("a", 20, 10),
        broke(20, 30, 3_010),
    ];
    let waits = [
        wait("a", 10, 0, Some(6), trip_outcome(10, &["a", "b"])),
        wait("b", 10, 4, Some(6), trip_outcome(10, &["a", "b"])),
        wait(
            "a",
            20,
            9,
            Some(3_020),
            WaitOutcome::Broken {
                generation: 20,
                reason: "timeout".into(),
            },
        ),
    ];
    assert_eq!(checkers(&log, &waits, &[]), Vec::<&str>::new());
    let c = BarrierCounts::of(&log, &waits, &[]);
    assert_eq!((c.trips, c.breaks, c.tripped, c.broken), (1, 1, 2, 1));
}

#[test]
fn early_and_expired_trips_are_flagged() {
    // One party short, and a counted arrival that had expired.
    let log = [
        arrived("a", 10, 0),
        expired("a", 10, 1_000),
        arrived("b", 10, 1_001),
        tripped(10, 20, &["a", "b"], 1_001),
        arrived("c", 20, 1_002),
        tripped(20, 30, &["c"], 1_002),
    ];
    let waits = [
        wait("a", 10, 0, None, WaitOutcome::Killed),
        wait("b", 10, 1_000, Some(1_002), trip_outcome(10, &["a", "b"])),
        wait("c", 20, 1_000, Some(1_003), trip_outcome(20, &["c"])),
    ];
    let v = checkers(&log, &waits, &[]);
    assert_eq!(
        v,
        ["barrier-early", "barrier-early", "barrier-hang"],
        "{v:?}"
    );
}

#[test]
fn a_dead_member_counted_past_its_ttl_is_flagged() {
    let log = [
        arrived("a", 10, 0),
        arrived("b", 10, 1_500),
        tripped(10, 20, &["a", "b"], 1_500),
    ];
    let mut a = wait("a", 10, 0, Some(200), WaitOutcome::Killed);
    a.outcome = Some(WaitOutcome::Killed);
    let waits = [
        a,
        wait("b", 10, 1_400, Some(1_501), trip_outcome(10, &["a", "b"])),
    ];
    let killed = Downtime {
        process: "a".into(),
        from: t(200),
        to: None,
        killed: true,
    };
    // Killed 1.3 s before the trip: past 1 s + 100 ms.
    assert_eq!(
        checkers(&log, &waits, std::slice::from_ref(&killed)),
        ["barrier-dead"]
    );
    // Paused instead (the wait still open): the same.
    let mut waits2 = waits.clone();
    waits2[0].end = None;
    waits2[0].outcome = None;
    let paused = Downtime {
        killed: false,
        to: Some(t(2_000)),
        ..killed
    };
    let v = checkers(&log, &waits2, std::slice::from_ref(&paused));
    assert_eq!(v, ["barrier-dead", "barrier-hang"], "{v:?}");
    // Paused for less than the TTL: fine.
    let short = Downtime {
        from: t(1_000),
        ..paused
    };
    assert_eq!(checkers(&log, &waits2, &[short]), ["barrier-hang"]);
}

#[test]
fn mixed_outcomes_and_wrong_trips_are_flagged() {
    let log = [
        arrived("a", 10, 0),
        arrived("b", 10, 5),
        tripped(10, 20, &["a", "b"], 5),
    ];
    let waits = [
        wait("a", 10, 0, Some(6), trip_outcome(10, &["a", "b"])),
        wait(
            "b",
            10,
            4,
            Some(3_100),
            WaitOutcome::Broken {
                generation: 10,
                reason: "timeout".into(),
            },
        ),
    ];
    let v = checkers(&log, &waits, &[]);
    assert_eq!(v, ["barrier-outcome", "barrier-outcome"], "{v:?}");
    // Stale while remembered, and a trip the backend did not count.
    let waits = [
        wait(
            "a",
            10,
            0,
            Some(6),
            WaitOutcome::Stale {
                generation: 10,
                current: 20,
            },
        ),
        wait("b", 10, 4, Some(6), trip_outcome(10, &["a", "b"])),
        wait("c", 10, 4, Some(6), trip_outcome(10, &["a", "c"])),
    ];
    let v = checkers(&log, &waits, &[]);
    assert_eq!(v, ["barrier-outcome", "barrier-outcome"], "{v:?}");
}

#[test]
fn generations_going_back_or_ending_twice_are_flagged() {
    let log = [
        arrived("a", 10, 0),
        arrived("b", 10, 1),
        tripped(10, 20, &["a", "b"], 1),
        BarrierEvent::Restart { at: t(2) },
        // A restarted record must start above 20.
        arrived("a", 15, 3),
        broke(15, 16, 4),
        broke(15, 17, 5),
    ];
    let waits = [
        wait("a", 10, 0, Some(2), trip_outcome(10, &["a", "b"])),
        wait("b", 10, 0, Some(2), trip_outcome(10, &["a", "b"])),
    ];
    let v = checkers(&log, &waits, &[]);
    assert_eq!(
        v,
        [
            "barrier-generations",
            "barrier-generations",
            "barrier-generations",
            "barrier-outcome"
        ],
        "{v:?}"
    );
}

#[test]
fn waits_past_their_deadline_are_flagged() {
    let w = |end| {
        wait(
            "a",
            10,
            0,
            Some(end),
            WaitOutcome::Broken {
                generation: 10,
                reason: "r".into(),
            },
        )
    };
    let log = [arrived("a", 10, 0), broke(10, 20, 3_000)];
    assert!(checkers(&log, &[w(3_500)], &[]).is_empty());
    // Out of reach at the deadline: a tighter bound.
    let mut timed_out = w(3_400);
    timed_out.outcome = Some(WaitOutcome::Timeout);
    assert_eq!(checkers(&log, &[timed_out], &[]), ["barrier-hang"]);
    assert_eq!(checkers(&log, &[w(3_600)], &[]), ["barrier-hang"]);
    // Paused for a second in between: allowed.
    let paused = Downtime {
        process: "a".into(),
        from: t(1_000),
        to: Some(t(2_000)),
        killed: false,
    };
    assert!(checkers(&log, &[w(4_500)], &[paused]).is_empty());
}

#[test]
fn double_barrier_ends_and_leaves_are_judged() {
    let d = |e: BarrierEvent| match e {
        BarrierEvent::Arrived {
            participant,
            generation,
            at,
            ..
        } => BarrierEvent::Arrived {
            kind: BarrierKind::Double,
            barrier: "b".into(),
            participant,
            generation,
            at,
        },
        other => other,
    };
    let entered = BarrierEvent::Entered {
        barrier: "b".into(),
        generation: 10,
        by: "b".into(),
        arrivals: vec!["a".into(), "b".into()],
        at: t(5),
    };
    let left = |p: &str, at| BarrierEvent::Left {
        kind: BarrierKind::Double,
        barrier: "b".into(),
        participant: p.into(),
        generation: 10,
        at: t(at),
    };
    let ended = |at| BarrierEvent::Ended {
        kind: BarrierKind::Double,
        barrier: "b".into(),
        generation: 10,
        next: 20,
        how: Ended::Tripped(Trip::new(k("b"), vec![k("a"), k("b")])),
        at: t(at),
    };
    let dw = |p: &str, leave, start, end, outcome| BarrierWait {
        kind: BarrierKind::Double,
        leave,
        ..wait(p, 10, start, Some(end), outcome)
    };
    let waits = [
        dw("a", false, 0, 6, trip_outcome(10, &["a", "b"])),
        dw("b", false, 4, 6, trip_outcome(10, &["a", "b"])),
        dw("a", true, 7, 30, WaitOutcome::Left),
        dw("b", true, 8, 30, WaitOutcome::Left),
    ];
    let log = [
        d(arrived("a", 10, 0)),
        d(arrived("b", 10, 5)),
        entered.clone(),
        left("a", 10),
        left("b", 20),
        ended(20),
    ];
    assert_eq!(checkers(&log, &waits, &[]), Vec::<&str>::new());
    // Ended with b still inside; and a's leave returned before the end.
    let early = [
        d(arrived("a", 10, 0)),
        d(arrived("b", 10, 5)),
        entered,
        left("a", 10),
        ended(40),
    ];
    let v = checkers(&early, &waits, &[]);
    assert_eq!(
        v,
        ["barrier-early", "barrier-outcome", "barrier-outcome"],
        "{v:?}"
    );
}

/// A double barrier member killed during its `enter` has only the
/// generation it read before entering: it may be counted in a later one
/// (the reply that would have named it never came), within its TTL. A
/// member told its generation is judged by it.
#[test]
fn a_double_entry_without_its_reply_may_be_counted_in_a_later_generation() {
    let entered = BarrierEvent::Entered {
        barrier: "b".into(),
        generation: 10,
        by: "b".into(),
        arrivals: vec!["a".into(), "b".into()],
        at: t(500),
    };
    let dw = |p: &str, g, start, end, outcome| BarrierWait {
        kind: BarrierKind::Double,
        ..wait(p, g, start, Some(end), outcome)
    };
    let a = dw("a", 10, 0, 510, trip_outcome(10, &["a", "b"]));
    let killed = [a.clone(), dw("b", 7, 300, 400, WaitOutcome::Killed)];
    let down = [Downtime {
        process: "b".into(),
        from: t(400),
        to: None,
        killed: true,
    }];
    let arrived = |p: &str, at| BarrierEvent::Arrived {
        kind: BarrierKind::Double,
        barrier: "b".into(),
        participant: p.into(),
        generation: 10,
        at: t(at),
    };
    let log = [arrived("a", 0), arrived("b", 350), entered];
    assert_eq!(checkers(&log, &killed, &down), Vec::<&str>::new());
    // Told it entered generation 7, it was not waiting in 10.
    let told = [a, dw("b", 7, 300, 400, trip_outcome(7, &["b", "c"]))];
    let v = checkers(&log, &told, &[]);
    assert!(v.contains(&"barrier-dead"), "{v:?}");
}
