//! Unit tests of `barriers`.

//! Time is tokio's, paused: it moves only by `advance` (or when every
//! task waits on a timer), so every expiry here is decided, not raced.

use std::sync::{Arc, Mutex};

use coord_api::{Namespace, TokioClock};
use tokio::time::advance;

use super::*;
use crate::MemoryStore;

use BarrierKind::{Cyclic, Double};

const TTL: Duration = Duration::from_secs(10);

/// The journal's barrier events, told in short.
#[derive(Default)]
struct Told(Mutex<Vec<String>>);

impl Journal for Told {
    fn record(&self, event: Event<'_>) {
        let Event::Barrier(e) = event else { return };
        let told = match e {
            BarrierEvent::Arrived { participant, .. } => format!("arrived {participant}"),
            BarrierEvent::Expired { participant, .. } => format!("expired {participant}"),
            BarrierEvent::Left { participant, .. } => format!("left {participant}"),
            BarrierEvent::Entered { trip, .. } => format!("entered by {}", trip.by),
            BarrierEvent::Ended { ended, .. } => match &ended.ended {
                Ended::Tripped(t) => format!("tripped by {}", t.by),
                Ended::Broken(_) => "broken".to_owned(),
                _ => "ended".to_owned(),
            },
            BarrierEvent::LatchSet { count, .. } => format!("set {count}"),
            BarrierEvent::CountedDown {
                participant,
                remaining,
                ..
            } => format!("counted {participant} {remaining}"),
        };
        self.0.lock().unwrap().push(told);
    }
}

impl Told {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn keys(v: &[&str]) -> Vec<Key> {
    v.iter().map(|s| k(s)).collect()
}

fn backend() -> (MemoryBackend, Arc<Told>) {
    let told = Arc::new(Told::default());
    let store = MemoryStore::with_journal(Arc::new(TokioClock), told.clone());
    (store.backend(Namespace::default()), told)
}

async fn gen_of(b: &MemoryBackend, kind: BarrierKind, name: &str) -> u64 {
    b.state(kind, &k(name), None).await.unwrap().generation
}

async fn arrive(b: &MemoryBackend, kind: BarrierKind, p: &str, g: u64, n: u32) -> Arrive {
    b.arrive(kind, &k("b"), &k(p), g, n, TTL, 0).await.unwrap()
}

async fn brk(b: &MemoryBackend, kind: BarrierKind, g: Option<u64>, r: BreakReason) -> Break {
    b.break_generation(kind, &k("b"), g, r).await.unwrap()
}

async fn asked(b: &MemoryBackend, g: u64) -> Option<EndedGeneration> {
    b.state(Cyclic, &k("b"), Some(g)).await.unwrap().asked
}

async fn down(b: &MemoryBackend, p: &str, g: Option<u64>) -> CountDown {
    b.latch_count_down(&k("l"), &k(p), g, 0).await.unwrap()
}

fn ended(outcome: Break) -> EndedGeneration {
    match outcome {
        Break::Ended(e) => e,
        other => panic!("not ended: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_cyclic_barrier_trips_in_the_arrival_that_completes_it() {
    let (b, told) = backend();
    let g = gen_of(&b, Cyclic, "b").await;
    assert_eq!(
        arrive(&b, Cyclic, "x", g, 2).await,
        Arrive::Waiting { arrived: 1 }
    );
    // Idempotent: counted once, not journaled again.
    assert_eq!(
        arrive(&b, Cyclic, "x", g, 2).await,
        Arrive::Waiting { arrived: 1 }
    );
    let Arrive::Ended(e) = arrive(&b, Cyclic, "y", g, 2).await else {
        panic!("tripped");
    };
    let trip = Trip::new(k("y"), keys(&["x", "y"]));
    assert_eq!((e.generation, &e.ended), (g, &Ended::Tripped(trip)));
    let s = b.state(Cyclic, &k("b"), Some(g)).await.unwrap();
    assert_eq!(
        (s.generation, s.parties, s.arrivals),
        (e.next, None, vec![])
    );
    assert_eq!(s.asked, Some(e.clone()));
    // A late arrival in the ended generation is told how it ended.
    assert_eq!(arrive(&b, Cyclic, "z", g, 2).await, Arrive::Ended(e));
    assert_eq!(told.take(), ["arrived x", "arrived y", "tripped by y"]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_arrival_is_dropped_and_named_by_the_break() {
    let (b, told) = backend();
    let g = gen_of(&b, Cyclic, "b").await;
    b.arrive(Cyclic, &k("b"), &k("x"), g, 3, Duration::from_secs(1), 0)
        .await
        .unwrap();
    arrive(&b, Cyclic, "y", g, 3).await;
    advance(Duration::from_secs(2)).await;
    let s = b.state(Cyclic, &k("b"), None).await.unwrap();
    assert_eq!(s.arrivals.len(), 1);
    assert_eq!(s.arrivals[0].participant, k("y"));
    assert_eq!(s.arrivals[0].expires_in, Duration::from_secs(8));
    assert!(!b.renew(Cyclic, &k("b"), &k("x"), g, TTL).await.unwrap());
    let e = ended(brk(&b, Cyclic, Some(g), BreakReason::Reset).await);
    let broken = Broken::new(BreakReason::Reset, keys(&["y"]), keys(&["x"]), 2);
    assert_eq!(e.ended, Ended::Broken(broken));
    assert_eq!(
        told.take(),
        ["arrived x", "arrived y", "expired x", "broken"]
    );
}

#[tokio::test(start_paused = true)]
async fn arriving_again_after_expiring_is_no_longer_expired() {
    let (b, _) = backend();
    let g = gen_of(&b, Cyclic, "b").await;
    arrive(&b, Cyclic, "x", g, 3).await;
    advance(TTL).await;
    assert_eq!(
        arrive(&b, Cyclic, "x", g, 3).await,
        Arrive::Waiting { arrived: 1 }
    );
    let by = BreakReason::Timeout { by: k("x") };
    let e = ended(brk(&b, Cyclic, None, by.clone()).await);
    let broken = Broken::new(by, keys(&["x"]), vec![], 2);
    assert_eq!(e.ended, Ended::Broken(broken));
}

#[tokio::test(start_paused = true)]
async fn leaving_withdraws_without_expiring() {
    let (b, _) = backend();
    assert!(!b.renew(Cyclic, &k("b"), &k("x"), 1, TTL).await.unwrap());
    assert_eq!(
        b.leave(Cyclic, &k("b"), &k("x"), 1, 0).await.unwrap(),
        Leave::NotThere
    );
    let g = gen_of(&b, Cyclic, "b").await;
    arrive(&b, Cyclic, "x", g, 2).await;
    assert_eq!(
        b.leave(Cyclic, &k("b"), &k("x"), g + 1, 0).await.unwrap(),
        Leave::NotThere
    );
    let left = b.leave(Cyclic, &k("b"), &k("x"), g, 0).await.unwrap();
    assert_eq!(left, Leave::Left { remaining: 0 });
    let e = ended(brk(&b, Cyclic, None, BreakReason::Reset).await);
    let Ended::Broken(broken) = e.ended else {
        panic!("broken")
    };
    assert_eq!(
        (broken.arrived, broken.expired, broken.missing),
        (vec![], vec![], 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_double_barrier_ends_when_its_last_member_expires() {
    let (b, told) = backend();
    let g = gen_of(&b, Double, "b").await;
    assert_eq!(
        arrive(&b, Double, "x", g, 2).await,
        Arrive::Waiting { arrived: 1 }
    );
    let trip = Trip::new(k("y"), keys(&["x", "y"]));
    assert_eq!(
        arrive(&b, Double, "y", g, 2).await,
        Arrive::Entered(trip.clone())
    );
    // Inside: arriving renews, and nobody else gets in.
    assert_eq!(
        arrive(&b, Double, "x", g, 2).await,
        Arrive::Entered(trip.clone())
    );
    assert_eq!(
        arrive(&b, Double, "z", g, 2).await,
        Arrive::Full { parties: 2 }
    );
    let left = b.leave(Double, &k("b"), &k("x"), g, 0).await.unwrap();
    assert_eq!(left, Leave::Left { remaining: 1 });
    assert_eq!(gen_of(&b, Double, "b").await, g);
    advance(TTL).await;
    let s = b.state(Double, &k("b"), Some(g)).await.unwrap();
    assert!(s.generation > g);
    assert_eq!((s.entered, s.parties), (None, None));
    assert_eq!(s.asked.unwrap().ended, Ended::Tripped(trip));
    let events = [
        "arrived x",
        "arrived y",
        "entered by y",
        "left x",
        "expired y",
        "tripped by y",
    ];
    assert_eq!(told.take(), events);
}

#[tokio::test(start_paused = true)]
async fn a_double_barrier_ends_when_its_last_member_leaves() {
    let (b, _) = backend();
    let g = gen_of(&b, Double, "b").await;
    arrive(&b, Double, "x", g, 1).await;
    let left = b.leave(Double, &k("b"), &k("x"), g, 0).await.unwrap();
    assert_eq!(left, Leave::Left { remaining: 0 });
    let s = b.state(Double, &k("b"), Some(g)).await.unwrap();
    assert!(matches!(s.asked.unwrap().ended, Ended::Tripped(_)));
}

#[tokio::test(start_paused = true)]
async fn an_entered_double_barrier_is_broken_by_a_reset_not_a_timeout() {
    let (b, _) = backend();
    let g = gen_of(&b, Double, "b").await;
    arrive(&b, Double, "x", g, 2).await;
    let Arrive::Entered(trip) = arrive(&b, Double, "y", g, 2).await else {
        panic!("entered");
    };
    let by = BreakReason::Timeout { by: k("x") };
    let timeout = brk(&b, Double, Some(g), by).await;
    assert_eq!(timeout, Break::Entered(trip));
    assert_eq!(gen_of(&b, Double, "b").await, g);
    let e = ended(brk(&b, Double, Some(g), BreakReason::Reset).await);
    let broken = Broken::new(BreakReason::Reset, keys(&["x", "y"]), vec![], 0);
    assert_eq!((e.generation, e.ended), (g, Ended::Broken(broken)));
}

#[tokio::test(start_paused = true)]
async fn stale_and_ahead_generations_count_nowhere() {
    let (b, _) = backend();
    let g = gen_of(&b, Cyclic, "b").await;
    assert_eq!(
        arrive(&b, Cyclic, "x", g + 1, 2).await,
        Arrive::Stale { current: g }
    );
    assert_eq!(
        arrive(&b, Cyclic, "x", g - 1, 2).await,
        Arrive::Stale { current: g }
    );
    let unknown = brk(&b, Cyclic, Some(g + 1), BreakReason::Reset).await;
    assert_eq!(unknown, Break::Unknown { current: g });
    arrive(&b, Cyclic, "x", g, 2).await;
    assert_eq!(
        arrive(&b, Cyclic, "y", g, 3).await,
        Arrive::PartiesDiffer { parties: 2 }
    );
    assert!(!b.renew(Cyclic, &k("b"), &k("x"), g + 1, TTL).await.unwrap());
    assert!(b.renew(Cyclic, &k("b"), &k("x"), g, TTL).await.unwrap());
    assert_eq!(
        b.state(Cyclic, &k("b"), None).await.unwrap().arrivals.len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn generations_increase_strictly_and_the_last_ended_are_kept() {
    let (b, _) = backend();
    // Time stands still: the token rule alone keeps them apart.
    let first = gen_of(&b, Cyclic, "b").await;
    let mut gens = vec![first];
    for _ in 0..ENDED_KEPT + 1 {
        let e = ended(brk(&b, Cyclic, None, BreakReason::Reset).await);
        assert_eq!(e.generation, *gens.last().unwrap());
        assert!(e.next > e.generation);
        gens.push(e.next);
    }
    assert_eq!(gen_of(&b, Cyclic, "b").await, *gens.last().unwrap());
    assert_eq!(asked(&b, gens[0]).await, None);
    assert_eq!(asked(&b, gens[1]).await.unwrap().next, gens[2]);
    let current = *gens.last().unwrap();
    assert_eq!(asked(&b, current).await, None);
    assert_eq!(
        arrive(&b, Cyclic, "x", gens[0], 1).await,
        Arrive::Stale { current }
    );
    let forgotten = brk(&b, Cyclic, Some(gens[0]), BreakReason::Reset).await;
    assert_eq!(forgotten, Break::Unknown { current });
    let remembered = brk(&b, Cyclic, Some(gens[1]), BreakReason::Reset).await;
    assert_eq!(ended(remembered).next, gens[2]);
    assert_eq!(gen_of(&b, Cyclic, "b").await, current);
}

#[tokio::test(start_paused = true)]
async fn records_idle_for_a_day_are_swept_and_made_again_above() {
    let (b, _) = backend();
    let old = gen_of(&b, Cyclic, "b").await;
    let key = (Namespace::default(), Cyclic, k("b"));
    // A sweep at 256 records finds nothing stale; the next is at 512.
    for i in 0..300 {
        gen_of(&b, Cyclic, &format!("early-{i}")).await;
    }
    advance(coord_api::MAX_TTL + Duration::from_secs(1)).await;
    for i in 0..300 {
        gen_of(&b, Cyclic, &format!("late-{i}")).await;
    }
    assert!(!b.store.barriers().barriers.contains_key(&key));
    assert!(gen_of(&b, Cyclic, "b").await > old);
}

#[tokio::test(start_paused = true)]
async fn the_kinds_are_apart() {
    let (b, _) = backend();
    let g = gen_of(&b, Cyclic, "b").await;
    arrive(&b, Cyclic, "x", g, 2).await;
    let d = gen_of(&b, Double, "b").await;
    assert_eq!(
        arrive(&b, Double, "y", d, 2).await,
        Arrive::Waiting { arrived: 1 }
    );
}

#[tokio::test(start_paused = true)]
async fn out_of_range_input_is_refused() {
    let (b, _) = backend();
    for parties in [0, MAX_PARTIES + 1] {
        let e = b.arrive(Cyclic, &k("b"), &k("x"), 1, parties, TTL, 0).await;
        let e = e.unwrap_err().to_string();
        assert!(e.contains("\"b\"") && e.contains("10000"), "{e}");
    }
    let e = b
        .arrive(Cyclic, &k("b"), &k("x"), 1, 2, Duration::ZERO, 0)
        .await;
    assert!(matches!(e, Err(Error::InvalidArgument { .. })));
    for count in [0, MAX_LATCH_COUNT + 1] {
        let e = b
            .latch_set(&k("l"), count, TTL, 0)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"l\"") && e.contains("1000000"), "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_barrier_watch_wakes_at_ends_and_deadlines_not_arrivals() {
    let (b, _) = backend();
    let g = gen_of(&b, Cyclic, "b").await;
    let mut w = b.watch(Cyclic, &k("b")).await.unwrap();
    arrive(&b, Cyclic, "x", g, 3).await;
    let woke = tokio::time::timeout(Duration::from_secs(1), w.changed()).await;
    assert!(woke.is_err(), "an arrival is not an end");
    let t0 = Instant::now();
    w.changed().await.unwrap();
    assert_eq!(Instant::now() - t0, TTL - Duration::from_secs(1));
    b.break_generation(Cyclic, &k("b"), None, BreakReason::Reset)
        .await
        .unwrap();
    let t1 = Instant::now();
    w.changed().await.unwrap();
    assert_eq!(Instant::now(), t1);
}

#[tokio::test(start_paused = true)]
async fn a_latch_is_set_again_only_at_zero_in_the_same_life() {
    let (b, told) = backend();
    let l = k("l");
    assert_eq!(b.latch_state(&l).await.unwrap(), None);
    assert_eq!(
        b.latch_count_down(&l, &k("x"), None, 0).await.unwrap(),
        CountDown::Absent
    );
    let LatchSet::Set { generation: g1 } = b.latch_set(&l, 2, TTL, 0).await.unwrap() else {
        panic!("set");
    };
    let LatchSet::Busy(busy) = b.latch_set(&l, 5, TTL, 0).await.unwrap() else {
        panic!("busy");
    };
    assert_eq!((busy.generation, busy.initial, busy.remaining), (g1, 2, 2));
    let counted = |generation, remaining| CountDown::Counted {
        generation,
        remaining,
    };
    let already = |generation, remaining| CountDown::Already {
        generation,
        remaining,
    };
    assert_eq!(down(&b, "x", None).await, counted(g1, 1));
    assert_eq!(down(&b, "x", Some(g1)).await, already(g1, 1));
    assert_eq!(down(&b, "y", Some(g1)).await, counted(g1, 0));
    assert_eq!(down(&b, "z", None).await, already(g1, 0));
    let LatchSet::Set { generation: g2 } = b.latch_set(&l, 3, TTL, 0).await.unwrap() else {
        panic!("set at zero");
    };
    assert!(g2 > g1);
    let s = b.latch_state(&l).await.unwrap().unwrap();
    assert_eq!((s.generation, s.first_generation), (g2, g1));
    assert_eq!((s.initial, s.remaining, s.expires_in), (3, 3, TTL));
    assert_eq!(
        down(&b, "x", Some(g1)).await,
        CountDown::Stale { current: g2 }
    );
    assert_eq!(down(&b, "x", None).await, counted(g2, 2));
    let events = [
        "set 2",
        "counted x 1",
        "counted y 0",
        "set 3",
        "counted x 2",
    ];
    assert_eq!(told.take(), events);
}

#[tokio::test(start_paused = true)]
async fn an_expired_latch_is_absent_and_set_anew_above_it() {
    let (b, _) = backend();
    let l = k("l");
    let LatchSet::Set { generation: g1 } = b.latch_set(&l, 2, TTL, 0).await.unwrap() else {
        panic!("set");
    };
    let mut w = b.latch_watch(&l).await.unwrap();
    w.changed().await.unwrap();
    assert_eq!(b.latch_state(&l).await.unwrap(), None);
    assert_eq!(
        b.latch_count_down(&l, &k("x"), None, 0).await.unwrap(),
        CountDown::Absent
    );
    // Busy no more, though its count was not reached.
    let LatchSet::Set { generation: g2 } = b.latch_set(&l, 2, TTL, 0).await.unwrap() else {
        panic!("set anew");
    };
    assert!(g2 > g1);
    let s = b.latch_state(&l).await.unwrap().unwrap();
    assert_eq!(s.first_generation, g2);
}

#[tokio::test(start_paused = true)]
async fn a_latch_watch_wakes_at_zero() {
    let (b, _) = backend();
    let l = k("l");
    b.latch_set(&l, 1, TTL, 0).await.unwrap();
    let mut w = b.latch_watch(&l).await.unwrap();
    b.latch_count_down(&l, &k("x"), None, 0).await.unwrap();
    let t0 = Instant::now();
    w.changed().await.unwrap();
    assert_eq!(Instant::now(), t0);
}

#[tokio::test(start_paused = true)]
async fn a_latch_keeps_the_ids_of_its_last_settings() {
    let (b, _) = backend();
    let l = k("l");
    for id in 1..=40u64 {
        let set = b.latch_set(&l, 1, TTL, id).await.unwrap();
        assert!(matches!(set, LatchSet::Set { .. }), "{id}: {set:?}");
        b.latch_count_down(&l, &k("x"), None, 0).await.unwrap();
    }
    let past: Vec<u64> = {
        let barriers = b.store.barriers();
        let latch = &barriers.latches[&(b.ns.clone(), l.clone())];
        latch.past_sets.iter().map(|&(id, _)| id).collect()
    };
    let kept = 40 - LATCH_SETS_KEPT as u64 + 1..40;
    assert_eq!(past, kept.collect::<Vec<_>>());
    let first_kept = b.latch_set(&l, 1, TTL, past[0]).await.unwrap();
    let forgotten = b.latch_set(&l, 1, TTL, past[0] - 1).await.unwrap();
    assert!(matches!(first_kept, LatchSet::Set { .. }), "{first_kept:?}");
    assert!(matches!(forgotten, LatchSet::Set { .. }), "{forgotten:?}");
    let st = b.latch_state(&l).await.unwrap().unwrap();
    assert_eq!(st.remaining, 1, "the forgotten id set it again");
}
