//! Barriers and latches on a real redis-server, through the SPI directly:
//! trips, idempotent arrivals, expiring arrivals, stale generations, breaks,
//! double barriers, latches, the remembered history, key lifetimes, one
//! EVALSHA per operation and one Cluster slot per barrier. Every test runs in
//! a namespace of its own on the shared server (tests that count commands or
//! need cluster mode start their own).
//!
//! Waits for expiry are never guesses: an arrival's deadline is the server's
//! clock at the arrival plus its TTL, and the server runs on this machine's
//! clock, so sleeping past the TTL (with a margin) after the reply came back
//! is past the deadline.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use coord_api::{
    Key,
    spi::{
        Arrive, Backend, BarrierBackend, BarrierKind, Break, BreakReason, Broken, CountDown, Ended,
        EndedGeneration, LatchSet, LatchState, Leave, Trip,
    },
};
use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;
use redis::Value;

use BarrierKind::{Cyclic, Double};

const TTL: Duration = Duration::from_secs(10);
/// The prelude's KEEP_MS: how long a barrier's keys outlive its last use.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// The barrier script's KEEP_SLACK_MS: how much longer they may live.
const KEEP_SLACK: Duration = Duration::from_secs(3600);

async fn backend_on(server: &RedisServer, ns: &str) -> Arc<RedisBackend> {
    Arc::new(
        RedisBackend::connect(server.config(ns))
            .await
            .expect("connect"),
    )
}

async fn backend(ns: &str) -> Arc<RedisBackend> {
    backend_on(RedisServer::shared(), ns).await
}

fn barriers(b: &RedisBackend) -> &dyn BarrierBackend {
    b.barriers().expect("barriers")
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn ended(a: Arrive) -> EndedGeneration {
    match a {
        Arrive::Ended(e) => e,
        other => panic!("not ended: {other:?}"),
    }
}

fn broke(b: Break) -> EndedGeneration {
    match b {
        Break::Ended(e) => e,
        other => panic!("not ended: {other:?}"),
    }
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        other => format!("{other:?}"),
    }
}

fn int(v: Value) -> i64 {
    match v {
        Value::Int(i) => i,
        other => panic!("not an integer: {other:?}"),
    }
}

#[tokio::test]
async fn cyclic_barrier_trips_with_three_participants() {
    let b = backend("trip").await;
    let br = barriers(&b);
    let name = key("round");
    // Participants of any characters round-trip through the stored history.
    let (a, c) = (key("a"), key("ü}{x"));
    let odd = key("b/\"q\\ 'x' [1] {\"y\":2}");
    let g = br.state(Cyclic, &name, None).await.unwrap().generation;
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 3, TTL).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    assert_eq!(
        br.arrive(Cyclic, &name, &odd, g, 3, TTL).await.unwrap(),
        Arrive::Waiting { arrived: 2 }
    );
    let state = br.state(Cyclic, &name, None).await.unwrap();
    assert_eq!((state.generation, state.parties), (g, Some(3)));
    assert_eq!(
        state
            .arrivals
            .iter()
            .map(|a| a.participant.clone())
            .collect::<Vec<_>>(),
        [a.clone(), odd.clone()]
    );
    assert!(
        state
            .arrivals
            .iter()
            .all(|a| a.expires_in > Duration::from_secs(5) && a.expires_in <= TTL)
    );
    assert_eq!(state.entered, None);

    let e = ended(br.arrive(Cyclic, &name, &c, g, 3, TTL).await.unwrap());
    assert_eq!(e.generation, g);
    assert!(e.next > g);
    assert_eq!(
        e.ended,
        Ended::Tripped(Trip::new(
            c.clone(),
            vec![a.clone(), odd.clone(), c.clone()]
        ))
    );
    let state = br.state(Cyclic, &name, Some(g)).await.unwrap();
    assert_eq!(state.generation, e.next);
    assert_eq!(state.parties, None);
    assert!(state.arrivals.is_empty());
    assert_eq!(state.asked.as_ref(), Some(&e));
    // Asking about the current generation reports no end.
    assert_eq!(
        br.state(Cyclic, &name, Some(e.next)).await.unwrap().asked,
        None
    );
    // A late arrival in the ended generation learns how it ended and counts
    // nowhere.
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 3, TTL).await.unwrap(),
        Arrive::Ended(e.clone())
    );
    assert!(
        br.state(Cyclic, &name, None)
            .await
            .unwrap()
            .arrivals
            .is_empty()
    );

    // The next round trips the same way, in a greater generation.
    let g2 = e.next;
    for (i, p) in [&c, &a].into_iter().enumerate() {
        assert_eq!(
            br.arrive(Cyclic, &name, p, g2, 3, TTL).await.unwrap(),
            Arrive::Waiting {
                arrived: i as u32 + 1
            }
        );
    }
    let e2 = ended(br.arrive(Cyclic, &name, &odd, g2, 3, TTL).await.unwrap());
    assert_eq!(e2.generation, g2);
    assert!(e2.next > g2);
    assert_eq!(
        e2.ended,
        Ended::Tripped(Trip::new(odd.clone(), vec![c, a, odd]))
    );
}

#[tokio::test]
async fn arrivals_are_idempotent_and_renew_the_lease() {
    let b = backend("idempotent").await;
    let br = barriers(&b);
    let name = key("b");
    let (a, c) = (key("a"), key("c"));
    let g = br.state(Cyclic, &name, None).await.unwrap().generation;
    let short = Duration::from_secs(2);
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 2, short).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    // Again (a retry, a lost reply): counted once, its lease renewed.
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 2, TTL).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    let state = br.state(Cyclic, &name, None).await.unwrap();
    assert_eq!(state.arrivals.len(), 1);
    assert!(state.arrivals[0].expires_in > Duration::from_secs(5));
    assert!(
        br.renew(Cyclic, &name, &a, g, Duration::from_secs(20))
            .await
            .unwrap()
    );
    let state = br.state(Cyclic, &name, None).await.unwrap();
    assert!(state.arrivals[0].expires_in > Duration::from_secs(15));
    // Renewing someone who never arrived, or in another generation, does
    // nothing.
    assert!(!br.renew(Cyclic, &name, &c, g, TTL).await.unwrap());
    assert!(!br.renew(Cyclic, &name, &a, g + 1, TTL).await.unwrap());
    // Renew and leave never make a record.
    let none = key("never");
    assert!(!br.renew(Cyclic, &none, &a, 1, TTL).await.unwrap());
    assert_eq!(
        br.leave(Cyclic, &none, &a, 1).await.unwrap(),
        Leave::NotThere
    );
    let e = ended(br.arrive(Cyclic, &name, &c, g, 2, TTL).await.unwrap());
    assert_eq!(
        e.ended,
        Ended::Tripped(Trip::new(c.clone(), vec![a.clone(), c.clone()]))
    );

    // A waiter that gives up leaves: not counted, and not expired.
    let g = e.next;
    br.arrive(Cyclic, &name, &a, g, 2, TTL).await.unwrap();
    assert_eq!(
        br.leave(Cyclic, &name, &a, g).await.unwrap(),
        Leave::Left { remaining: 0 }
    );
    assert_eq!(
        br.leave(Cyclic, &name, &a, g).await.unwrap(),
        Leave::NotThere
    );
    assert_eq!(
        br.arrive(Cyclic, &name, &c, g, 2, TTL).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    let e = broke(
        br.break_generation(Cyclic, &name, None, BreakReason::Reset)
            .await
            .unwrap(),
    );
    assert_eq!(
        e.ended,
        Ended::Broken(Broken::new(BreakReason::Reset, vec![c], vec![], 1))
    );
}

#[tokio::test]
async fn an_expired_arrival_is_not_counted_and_is_remembered() {
    let b = backend("expiry").await;
    let br = barriers(&b);
    let name = key("b");
    let (a, c, d) = (key("a"), key("c"), key("d"));
    let short = Duration::from_millis(200);
    let g = br.state(Cyclic, &name, None).await.unwrap().generation;

    let mut watch = br.watch(Cyclic, &name).await.unwrap();
    let start = Instant::now();
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 2, short).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    // The watch wakes at the arrival's deadline (expiry publishes nothing).
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken at the arrival deadline")
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
    tokio::time::sleep(short + Duration::from_millis(100)).await;

    let state = br.state(Cyclic, &name, None).await.unwrap();
    assert!(state.arrivals.is_empty(), "{state:?}");
    assert_eq!(state.generation, g);
    assert!(!br.renew(Cyclic, &name, &a, g, TTL).await.unwrap());
    assert_eq!(
        br.leave(Cyclic, &name, &a, g).await.unwrap(),
        Leave::NotThere
    );
    // The crashed participant is not counted: no trip.
    assert_eq!(
        br.arrive(Cyclic, &name, &c, g, 2, TTL).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    let e = broke(
        br.break_generation(
            Cyclic,
            &name,
            Some(g),
            BreakReason::Timeout { by: c.clone() },
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        e.ended,
        Ended::Broken(Broken::new(
            BreakReason::Timeout { by: c.clone() },
            vec![c.clone()],
            vec![a.clone()],
            1
        ))
    );

    // Expired, then arrived again: no longer expired. Two expiries are
    // remembered in the order they expired.
    let g = e.next;
    // (c arrives before d with a shorter lease: it expires first.)
    br.arrive(Cyclic, &name, &a, g, 4, short).await.unwrap();
    br.arrive(Cyclic, &name, &c, g, 4, short).await.unwrap();
    br.arrive(Cyclic, &name, &d, g, 4, short * 2).await.unwrap();
    tokio::time::sleep(short * 2 + Duration::from_millis(100)).await;
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 4, TTL).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    let e = broke(
        br.break_generation(Cyclic, &name, None, BreakReason::Reset)
            .await
            .unwrap(),
    );
    assert_eq!(
        e.ended,
        Ended::Broken(Broken::new(BreakReason::Reset, vec![a], vec![c, d], 3))
    );
}

#[tokio::test]
async fn stale_generations_count_nowhere() {
    let b = backend("stale").await;
    let br = barriers(&b);
    let name = key("b");
    let a = key("a");
    let g = br.state(Cyclic, &name, None).await.unwrap().generation;
    for bad in [g + 1, 1, g - 1, u64::MAX] {
        assert_eq!(
            br.arrive(Cyclic, &name, &a, bad, 2, TTL).await.unwrap(),
            Arrive::Stale { current: g }
        );
        assert!(!br.renew(Cyclic, &name, &a, bad, TTL).await.unwrap());
        assert_eq!(
            br.leave(Cyclic, &name, &a, bad).await.unwrap(),
            Leave::NotThere
        );
        assert_eq!(
            br.break_generation(Cyclic, &name, Some(bad), BreakReason::Reset)
                .await
                .unwrap(),
            Break::Unknown { current: g }
        );
        assert_eq!(
            br.state(Cyclic, &name, Some(bad)).await.unwrap().asked,
            None
        );
    }
    let state = br.state(Cyclic, &name, None).await.unwrap();
    assert_eq!(state.generation, g);
    assert!(state.arrivals.is_empty());
    assert_eq!(state.parties, None);
}

#[tokio::test]
async fn breaks_end_a_generation_once() {
    let b = backend("break").await;
    let br = barriers(&b);
    let name = key("b");
    let (a, c) = (key("a"), key("c"));
    let g = br.state(Cyclic, &name, None).await.unwrap().generation;
    br.arrive(Cyclic, &name, &a, g, 3, TTL).await.unwrap();
    let mut watch = br.watch(Cyclic, &name).await.unwrap();
    let e = broke(
        br.break_generation(
            Cyclic,
            &name,
            Some(g),
            BreakReason::Timeout { by: a.clone() },
        )
        .await
        .unwrap(),
    );
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken by the end of the generation")
        .unwrap();
    assert_eq!(e.generation, g);
    assert!(e.next > g);
    assert_eq!(
        e.ended,
        Ended::Broken(Broken::new(
            BreakReason::Timeout { by: a.clone() },
            vec![a.clone()],
            vec![],
            2
        ))
    );
    // A generation ends once: a second break, or an arrival, finds that end.
    assert_eq!(
        br.break_generation(Cyclic, &name, Some(g), BreakReason::Reset)
            .await
            .unwrap(),
        Break::Ended(e.clone())
    );
    assert_eq!(
        br.arrive(Cyclic, &name, &c, g, 3, TTL).await.unwrap(),
        Arrive::Ended(e.clone())
    );
    let state = br.state(Cyclic, &name, None).await.unwrap();
    assert_eq!(state.generation, e.next);
    assert!(state.arrivals.is_empty());

    // A reset of the current generation, with nobody in it.
    let e2 = broke(
        br.break_generation(Cyclic, &name, None, BreakReason::Reset)
            .await
            .unwrap(),
    );
    assert_eq!(e2.generation, e.next);
    assert!(e2.next > e2.generation);
    assert_eq!(
        e2.ended,
        Ended::Broken(Broken::new(BreakReason::Reset, vec![], vec![], 0))
    );
    // A break makes the record it breaks.
    let fresh = broke(
        br.break_generation(Cyclic, &key("fresh"), None, BreakReason::Reset)
            .await
            .unwrap(),
    );
    assert_eq!(
        br.state(Cyclic, &key("fresh"), None)
            .await
            .unwrap()
            .generation,
        fresh.next
    );

    // The parties are the first arrival's.
    let g = e2.next;
    br.arrive(Cyclic, &name, &a, g, 3, TTL).await.unwrap();
    assert_eq!(
        br.arrive(Cyclic, &name, &c, g, 4, TTL).await.unwrap(),
        Arrive::PartiesDiffer { parties: 3 }
    );
    assert_eq!(
        br.state(Cyclic, &name, None).await.unwrap().arrivals.len(),
        1
    );
}

#[tokio::test]
async fn double_barrier_enters_then_ends_when_all_left() {
    let b = backend("double").await;
    let br = barriers(&b);
    let name = key("d");
    let (a, c, x) = (key("a"), key("c"), key("x"));
    let g = br.state(Double, &name, None).await.unwrap().generation;
    assert_eq!(
        br.arrive(Double, &name, &a, g, 2, TTL).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    let mut watch = br.watch(Double, &name).await.unwrap();
    let trip = Trip::new(c.clone(), vec![a.clone(), c.clone()]);
    assert_eq!(
        br.arrive(Double, &name, &c, g, 2, TTL).await.unwrap(),
        Arrive::Entered(trip.clone())
    );
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken by the trip")
        .unwrap();
    // Inside: arriving again renews; an outsider is refused; a timeout does
    // not break it.
    assert_eq!(
        br.arrive(Double, &name, &a, g, 2, TTL).await.unwrap(),
        Arrive::Entered(trip.clone())
    );
    assert_eq!(
        br.arrive(Double, &name, &x, g, 2, TTL).await.unwrap(),
        Arrive::Full { parties: 2 }
    );
    assert_eq!(
        br.break_generation(Double, &name, None, BreakReason::Timeout { by: a.clone() })
            .await
            .unwrap(),
        Break::Entered(trip.clone())
    );
    assert!(br.renew(Double, &name, &a, g, TTL).await.unwrap());
    let state = br.state(Double, &name, None).await.unwrap();
    assert_eq!(state.generation, g);
    assert_eq!(state.parties, Some(2));
    assert_eq!(state.entered.as_ref(), Some(&trip));
    assert_eq!(state.arrivals.len(), 2);
    // A cyclic barrier of the same name is another barrier.
    let cyclic = br.state(Cyclic, &name, None).await.unwrap();
    assert_ne!(cyclic.generation, g);
    assert!(cyclic.arrivals.is_empty());

    // Leaving: the generation ends with the last one out.
    assert_eq!(
        br.leave(Double, &name, &a, g).await.unwrap(),
        Leave::Left { remaining: 1 }
    );
    assert_eq!(
        br.leave(Double, &name, &a, g).await.unwrap(),
        Leave::NotThere
    );
    assert_eq!(br.state(Double, &name, None).await.unwrap().generation, g);
    let mut watch = br.watch(Double, &name).await.unwrap();
    assert_eq!(
        br.leave(Double, &name, &c, g).await.unwrap(),
        Leave::Left { remaining: 0 }
    );
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken by the end")
        .unwrap();
    let state = br.state(Double, &name, Some(g)).await.unwrap();
    assert!(state.generation > g);
    assert_eq!(state.entered, None);
    assert!(state.arrivals.is_empty());
    let e = state.asked.expect("remembered");
    assert_eq!((e.generation, e.next), (g, state.generation));
    assert_eq!(e.ended, Ended::Tripped(trip.clone()));
    assert_eq!(
        br.arrive(Double, &name, &a, g, 2, TTL).await.unwrap(),
        Arrive::Ended(e)
    );
}

#[tokio::test]
async fn double_barrier_ends_when_the_last_member_inside_expires_or_on_reset() {
    let b = backend("double-expiry").await;
    let br = barriers(&b);
    let name = key("d");
    let (a, c) = (key("a"), key("c"));
    let short = Duration::from_millis(200);
    let g = br.state(Double, &name, None).await.unwrap().generation;
    br.arrive(Double, &name, &a, g, 2, TTL).await.unwrap();
    let trip = Trip::new(c.clone(), vec![a.clone(), c.clone()]);
    assert_eq!(
        br.arrive(Double, &name, &c, g, 2, short).await.unwrap(),
        Arrive::Entered(trip.clone())
    );
    assert_eq!(
        br.leave(Double, &name, &a, g).await.unwrap(),
        Leave::Left { remaining: 1 }
    );
    // c crashed inside: the watch wakes at its deadline, and the next
    // operation ends the generation.
    let mut watch = br.watch(Double, &name).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken at the member's deadline")
        .unwrap();
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let state = br.state(Double, &name, Some(g)).await.unwrap();
    assert!(state.generation > g);
    assert_eq!(state.asked.unwrap().ended, Ended::Tripped(trip));

    // A reset ends an entered generation whatever its phase.
    let g = state.generation;
    br.arrive(Double, &name, &a, g, 2, TTL).await.unwrap();
    br.arrive(Double, &name, &c, g, 2, TTL).await.unwrap();
    let e = broke(
        br.break_generation(Double, &name, Some(g), BreakReason::Reset)
            .await
            .unwrap(),
    );
    assert_eq!(
        e.ended,
        Ended::Broken(Broken::new(
            BreakReason::Reset,
            vec![a.clone(), c.clone()],
            vec![],
            0
        ))
    );
    // Before the trip, a timeout breaks it as a cyclic barrier's.
    let g = e.next;
    br.arrive(Double, &name, &a, g, 3, TTL).await.unwrap();
    let e = broke(
        br.break_generation(Double, &name, None, BreakReason::Timeout { by: a.clone() })
            .await
            .unwrap(),
    );
    assert_eq!(
        e.ended,
        Ended::Broken(Broken::new(
            BreakReason::Timeout { by: a.clone() },
            vec![a],
            vec![],
            2
        ))
    );
}

#[tokio::test]
async fn latch_set_count_down_rearm_and_expiry() {
    let b = backend("latch").await;
    let br = barriers(&b);
    let name = key("l");
    let (a, c, d, x) = (key("a"), key("c"), key("d"), key("x"));
    assert_eq!(br.latch_state(&name).await.unwrap(), None);
    assert_eq!(
        br.latch_count_down(&name, &a, None).await.unwrap(),
        CountDown::Absent
    );
    let LatchSet::Set { generation: g } = br.latch_set(&name, 3, TTL).await.unwrap() else {
        panic!("not set")
    };
    // Set only when absent or at zero.
    let LatchSet::Busy(busy) = br.latch_set(&name, 5, TTL).await.unwrap() else {
        panic!("not busy")
    };
    assert_eq!(
        (
            busy.generation,
            busy.first_generation,
            busy.initial,
            busy.remaining
        ),
        (g, g, 3, 3)
    );
    assert!(busy.expires_in > Duration::from_secs(5) && busy.expires_in <= TTL);
    assert_eq!(
        br.latch_count_down(&name, &a, None).await.unwrap(),
        CountDown::Counted {
            generation: g,
            remaining: 2
        }
    );
    assert_eq!(
        br.latch_count_down(&name, &a, Some(g)).await.unwrap(),
        CountDown::Already {
            generation: g,
            remaining: 2
        }
    );
    assert_eq!(
        br.latch_count_down(&name, &c, Some(g + 1)).await.unwrap(),
        CountDown::Stale { current: g }
    );
    assert_eq!(
        br.latch_count_down(&name, &c, Some(g)).await.unwrap(),
        CountDown::Counted {
            generation: g,
            remaining: 1
        }
    );
    let mut watch = br.latch_watch(&name).await.unwrap();
    assert_eq!(
        br.latch_count_down(&name, &d, None).await.unwrap(),
        CountDown::Counted {
            generation: g,
            remaining: 0
        }
    );
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken at zero")
        .unwrap();
    assert_eq!(
        br.latch_count_down(&name, &x, None).await.unwrap(),
        CountDown::Already {
            generation: g,
            remaining: 0
        }
    );

    // At zero it may be set again: a new generation, the same record.
    let mut watch = br.latch_watch(&name).await.unwrap();
    let LatchSet::Set { generation: g2 } = br.latch_set(&name, 2, TTL).await.unwrap() else {
        panic!("not set again")
    };
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken by the setting")
        .unwrap();
    assert!(g2 > g);
    let state = br.latch_state(&name).await.unwrap().unwrap();
    assert_eq!(
        (
            state.generation,
            state.first_generation,
            state.initial,
            state.remaining
        ),
        (g2, g, 2, 2)
    );
    assert_eq!(
        br.latch_count_down(&name, &a, Some(g)).await.unwrap(),
        CountDown::Stale { current: g2 }
    );
    // Who counted in the last generation counts again in this one.
    assert_eq!(
        br.latch_count_down(&name, &a, Some(g2)).await.unwrap(),
        CountDown::Counted {
            generation: g2,
            remaining: 1
        }
    );

    // Expiry: the whole record goes, waiters wake, and a latch set again
    // after that gets a greater generation.
    let short_name = key("short");
    let short = Duration::from_millis(300);
    let LatchSet::Set { generation: s1 } = br.latch_set(&short_name, 2, short).await.unwrap()
    else {
        panic!("not set")
    };
    br.latch_count_down(&short_name, &a, None).await.unwrap();
    let mut watch = br.latch_watch(&short_name).await.unwrap();
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken at the expiry")
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    tokio::time::sleep(short).await;
    assert_eq!(br.latch_state(&short_name).await.unwrap(), None);
    assert_eq!(
        br.latch_count_down(&short_name, &c, None).await.unwrap(),
        CountDown::Absent
    );
    let LatchSet::Set { generation: s2 } = br.latch_set(&short_name, 1, TTL).await.unwrap() else {
        panic!("not set")
    };
    assert!(s2 > s1);
    let state = br.latch_state(&short_name).await.unwrap().unwrap();
    assert_eq!(state, LatchState::new(s2, s2, 1, 1, state.expires_in));
    // Nobody's count survived the expiry.
    assert_eq!(
        br.latch_count_down(&short_name, &a, None).await.unwrap(),
        CountDown::Counted {
            generation: s2,
            remaining: 0
        }
    );
}

#[tokio::test]
async fn out_of_range_input_is_refused_before_any_io() {
    // A backend on a port nobody listens on would fail with Unavailable;
    // these fail first with InvalidArgument.
    let b = backend("invalid").await;
    let br = barriers(&b);
    let (name, a) = (key("b"), key("a"));
    for kind in [Cyclic, Double] {
        for parties in [0, 10_001] {
            let err = br
                .arrive(kind, &name, &a, 1, parties, TTL)
                .await
                .unwrap_err();
            assert!(
                matches!(err, coord_api::Error::InvalidArgument { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("10000"), "{err}");
        }
        let err = br
            .arrive(kind, &name, &a, 1, 2, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(err, coord_api::Error::InvalidArgument { .. }));
    }
    for count in [0, 1_000_001] {
        let err = br.latch_set(&name, count, TTL).await.unwrap_err();
        assert!(
            matches!(err, coord_api::Error::InvalidArgument { .. }),
            "{err}"
        );
    }
    let err = br
        .latch_set(&name, 1, Duration::from_secs(25 * 3600))
        .await
        .unwrap_err();
    assert!(matches!(err, coord_api::Error::InvalidArgument { .. }));
    // Nothing was written.
    assert_eq!(br.latch_state(&name).await.unwrap(), None);
}

#[tokio::test]
async fn ended_history_keeps_the_newest_sixteen() {
    let b = backend("history").await;
    let br = barriers(&b);
    let name = key("b");
    let a = key("a");
    let mut ends = Vec::new();
    for _ in 0..20 {
        let e = broke(
            br.break_generation(Cyclic, &name, None, BreakReason::Reset)
                .await
                .unwrap(),
        );
        if let Some(prev) = ends.last() {
            let prev: &EndedGeneration = prev;
            assert_eq!(e.generation, prev.next);
            assert!(e.next > e.generation);
        }
        ends.push(e);
    }
    let current = ends.last().unwrap().next;
    for (i, e) in ends.iter().enumerate() {
        let asked = br
            .state(Cyclic, &name, Some(e.generation))
            .await
            .unwrap()
            .asked;
        if i < 4 {
            assert_eq!(asked, None, "generation {i} forgotten");
            assert_eq!(
                br.arrive(Cyclic, &name, &a, e.generation, 2, TTL)
                    .await
                    .unwrap(),
                Arrive::Stale { current }
            );
            assert_eq!(
                br.break_generation(Cyclic, &name, Some(e.generation), BreakReason::Reset)
                    .await
                    .unwrap(),
                Break::Unknown { current }
            );
        } else {
            assert_eq!(asked.as_ref(), Some(e), "generation {i} remembered");
        }
    }
    // The record holds the sixteen ends and their order, nothing more.
    let server = RedisServer::shared();
    let rec = "coord:{history:barrier:b}:s";
    let order = text(server.command(&["HGET", rec, "ended"]).unwrap());
    let newest: Vec<String> = ends[4..].iter().map(|e| e.generation.to_string()).collect();
    assert_eq!(order, newest.join(" "));
    let Value::Array(fields) = server.command(&["HKEYS", rec]).unwrap() else {
        panic!("no record")
    };
    let mut ended: Vec<String> = fields
        .into_iter()
        .map(text)
        .filter_map(|f| f.strip_prefix("e:").map(str::to_owned))
        .collect();
    ended.sort();
    let mut want = newest;
    want.sort();
    assert_eq!(ended, want);
}

#[tokio::test]
async fn a_latch_of_1000_counted_down_by_1000_participants() {
    let b = backend("latch-1000").await;
    let name = key("big");
    let LatchSet::Set { generation: g } = barriers(&b)
        .latch_set(&name, 1000, Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not set")
    };
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let b = b.clone();
            let name = name.clone();
            tokio::spawn(async move {
                barriers(&b)
                    .latch_count_down(&name, &key(&format!("p{i}")), Some(g))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut left = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            CountDown::Counted {
                generation,
                remaining,
            } => {
                assert_eq!(generation, g);
                left.push(remaining);
            }
            other => panic!("not counted: {other:?}"),
        }
    }
    left.sort_unstable();
    assert_eq!(left, (0..1000).collect::<Vec<u32>>());
    let state = barriers(&b).latch_state(&name).await.unwrap().unwrap();
    assert_eq!((state.initial, state.remaining), (1000, 0));
    // Everyone again: nothing changes.
    for i in [0, 500, 999] {
        assert_eq!(
            barriers(&b)
                .latch_count_down(&name, &key(&format!("p{i}")), None)
                .await
                .unwrap(),
            CountDown::Already {
                generation: g,
                remaining: 0
            }
        );
    }
}

/// No key of a barrier or latch lives for ever: a barrier's live at least
/// `KEEP_MS` past its latest arrival deadline and at most `KEEP_SLACK_MS`
/// longer (also those remade after the end of a generation, when no
/// operation needed the keys longer), a latch's die with it (its counter
/// `KEEP_MS` later).
#[tokio::test]
async fn every_key_expires() {
    let ns = "lifetimes";
    let b = backend(ns).await;
    let br = barriers(&b);
    let (a, c, d) = (key("a"), key("c"), key("d"));
    let short = Duration::from_millis(1);
    let long = Duration::from_secs(2 * 3600);
    let started = Instant::now();
    for kind in [Cyclic, Double] {
        let name = key("b");
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 3, TTL).await.unwrap();
        br.arrive(kind, &name, &c, g, 3, short).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        br.state(kind, &name, None).await.unwrap();
        br.break_generation(kind, &name, None, BreakReason::Reset)
            .await
            .unwrap();
        // The arrival, order and expired sets again, in a generation that
        // needs them no longer than the last.
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 3, TTL).await.unwrap();
        br.arrive(kind, &name, &c, g, 3, short).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        br.state(kind, &name, None).await.unwrap();
        // An arrival past the slack: every key kept longer.
        let name = key("long");
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 3, TTL).await.unwrap();
        br.arrive(kind, &name, &d, g, 3, long).await.unwrap();
    }
    let latch_ttl = Duration::from_secs(30);
    br.latch_set(&key("l"), 2, latch_ttl).await.unwrap();
    br.latch_count_down(&key("l"), &a, None).await.unwrap();

    let server = RedisServer::shared();
    let Value::Array(names) = server
        .command(&["KEYS", &format!("coord:{{{ns}:*")])
        .unwrap()
    else {
        panic!("no keys")
    };
    let names: Vec<String> = names.into_iter().map(text).collect();
    let mut expected = vec![
        "coord:{lifetimes:latch:l}:s".to_owned(),
        "coord:{lifetimes:latch:l}:p".to_owned(),
        "coord:{lifetimes:latch:l}:t".to_owned(),
    ];
    for space in ["barrier", "double_barrier"] {
        for part in ["s", "a", "o", "x", "t"] {
            expected.push(format!("coord:{{lifetimes:{space}:b}}:{part}"));
        }
        for part in ["s", "a", "o", "t"] {
            expected.push(format!("coord:{{lifetimes:{space}:long}}:{part}"));
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    let ms = |d: Duration| d.as_millis() as i64;
    let elapsed = ms(started.elapsed()) + 1000;
    for name in &names {
        let left = int(server.command(&["PTTL", name]).unwrap());
        let (min, max) = if name.contains(":latch:") {
            if name.ends_with(":t") {
                (1, ms(latch_ttl + KEEP))
            } else {
                (1, ms(latch_ttl))
            }
        } else if name.contains(":long}") {
            (ms(long + KEEP) - elapsed, ms(long + KEEP + KEEP_SLACK))
        } else {
            (ms(TTL + KEEP) - elapsed, ms(TTL + KEEP + KEEP_SLACK))
        };
        assert!(
            left >= min && left <= max,
            "{name}: PTTL {left}, not in {min}..={max}"
        );
    }
}

/// `kept` (the instant the record says its keys are kept until) is what
/// spares most operations their PEXPIREs; where it falls short, any
/// operation sets every expiry again, an arrival answered from the history
/// included, and a record without it (made before it was kept) counts its
/// arrivals' deadlines.
#[tokio::test]
async fn keys_are_kept_again_when_kept_falls_short() {
    let ns = "kept";
    let b = backend(ns).await;
    let br = barriers(&b);
    let server = RedisServer::shared();
    let (a, c) = (key("a"), key("c"));
    let name = key("b");
    let keys = |parts: &[&str]| -> Vec<String> {
        parts
            .iter()
            .map(|p| format!("coord:{{{ns}:barrier:b}}:{p}"))
            .collect()
    };
    let pttl = |k: &str| int(server.command(&["PTTL", k]).unwrap());
    let ms = |d: Duration| d.as_millis() as i64;
    let started = Instant::now();
    let g = br.state(Cyclic, &name, None).await.unwrap().generation;
    let e = ended(br.arrive(Cyclic, &name, &a, g, 1, TTL).await.unwrap());
    let long = Duration::from_secs(2 * 3600);
    br.arrive(Cyclic, &name, &c, e.next, 2, long).await.unwrap();

    // Shortened behind the record's back: an arrival in the ended
    // generation (answered from the history) keeps them again.
    server
        .command(&["HSET", &keys(&["s"])[0], "kept", "1"])
        .unwrap();
    for k in keys(&["s", "a", "o", "t"]) {
        server.command(&["PEXPIRE", &k, "60000"]).unwrap();
    }
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 1, TTL).await.unwrap(),
        Arrive::Ended(e.clone())
    );
    let elapsed = ms(started.elapsed()) + 1000;
    for k in keys(&["s", "a", "o", "t"]) {
        let left = pttl(&k);
        assert!(
            left >= ms(KEEP) - elapsed && left <= ms(KEEP + KEEP_SLACK),
            "{k}: PTTL {left}"
        );
    }

    // A record without `kept`: kept past its latest arrival deadline.
    server.command(&["HDEL", &keys(&["s"])[0], "kept"]).unwrap();
    br.state(Cyclic, &name, None).await.unwrap();
    let elapsed = ms(started.elapsed()) + 1000;
    for k in keys(&["s", "a", "o", "t"]) {
        let left = pttl(&k);
        assert!(
            left >= ms(long + KEEP) - elapsed && left <= ms(long + KEEP + KEEP_SLACK),
            "{k}: PTTL {left}"
        );
    }
}

/// Every operation is one EVALSHA, and every key of one barrier or latch
/// is in one Redis Cluster slot (a cluster server refuses a script that
/// touches two).
#[tokio::test]
async fn one_evalsha_per_operation_in_one_cluster_slot() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    server
        .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(server.command(&["CLUSTER", "INFO"]).unwrap()).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "single-node cluster never ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = backend_on(&server, "slots").await;
    let br = barriers(&b);
    // Names whose braces would split the slot if the tag were not the
    // barrier's own.
    let (name, latch) = (key("x}{y"), key("{l}"));
    let (a, c) = (key("a"), key("c"));
    // Warm up: loads both scripts.
    br.state(Cyclic, &key("warm"), None).await.unwrap();
    br.latch_state(&latch).await.unwrap();

    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let mut ops = 0;
    for kind in [Cyclic, Double] {
        let g = br.state(kind, &name, None).await.unwrap().generation;
        br.arrive(kind, &name, &a, g, 2, TTL).await.unwrap();
        assert!(br.renew(kind, &name, &a, g, TTL).await.unwrap());
        br.arrive(kind, &name, &c, g, 2, TTL).await.unwrap();
        br.leave(kind, &name, &a, g).await.unwrap();
        br.break_generation(kind, &name, None, BreakReason::Reset)
            .await
            .unwrap();
        ops += 6;
    }
    let LatchSet::Set { .. } = br.latch_set(&latch, 1, TTL).await.unwrap() else {
        panic!("not set")
    };
    br.latch_count_down(&latch, &a, None).await.unwrap();
    br.latch_state(&latch).await.unwrap().unwrap();
    ops += 3;
    let info = text(server.command(&["INFO", "commandstats"]).unwrap());
    let evalsha = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("calls=")))
        .map(|n| n.parse::<i64>().unwrap());
    assert_eq!(evalsha, Some(ops));
    assert!(
        !info.contains("cmdstat_script") && !info.contains("cmdstat_eval:"),
        "{info}"
    );
}
