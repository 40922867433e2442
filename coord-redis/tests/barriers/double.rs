//! Double barriers: entering, leaving, a member expiring inside, resets and
//! timeouts.

use super::*;

#[tokio::test]
async fn double_barrier_enters_then_ends_when_all_left() {
    let b = backend("double").await;
    let br = barriers(&b);
    let name = key("d");
    let (a, c, x) = (key("a"), key("c"), key("x"));
    let g = br.state(Double, &name, None).await.unwrap().generation;
    assert_eq!(
        br.arrive(Double, &name, &a, g, 2, TTL, 0).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    let mut watch = br.watch(Double, &name).await.unwrap();
    let trip = Trip::new(c.clone(), vec![a.clone(), c.clone()]);
    assert_eq!(
        br.arrive(Double, &name, &c, g, 2, TTL, 0).await.unwrap(),
        Arrive::Entered(trip.clone())
    );
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken by the trip")
        .unwrap();
    // Inside: arriving again renews; an outsider is refused; a timeout does
    // not break it.
    assert_eq!(
        br.arrive(Double, &name, &a, g, 2, TTL, 0).await.unwrap(),
        Arrive::Entered(trip.clone())
    );
    assert_eq!(
        br.arrive(Double, &name, &x, g, 2, TTL, 0).await.unwrap(),
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
        br.leave(Double, &name, &a, g, 0).await.unwrap(),
        Leave::Left { remaining: 1 }
    );
    assert_eq!(
        br.leave(Double, &name, &a, g, 0).await.unwrap(),
        Leave::NotThere
    );
    assert_eq!(br.state(Double, &name, None).await.unwrap().generation, g);
    let mut watch = br.watch(Double, &name).await.unwrap();
    assert_eq!(
        br.leave(Double, &name, &c, g, 0).await.unwrap(),
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
        br.arrive(Double, &name, &a, g, 2, TTL, 0).await.unwrap(),
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
    br.arrive(Double, &name, &a, g, 2, TTL, 0).await.unwrap();
    let trip = Trip::new(c.clone(), vec![a.clone(), c.clone()]);
    assert_eq!(
        br.arrive(Double, &name, &c, g, 2, short, 0).await.unwrap(),
        Arrive::Entered(trip.clone())
    );
    assert_eq!(
        br.leave(Double, &name, &a, g, 0).await.unwrap(),
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
    br.arrive(Double, &name, &a, g, 2, TTL, 0).await.unwrap();
    br.arrive(Double, &name, &c, g, 2, TTL, 0).await.unwrap();
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
    br.arrive(Double, &name, &a, g, 3, TTL, 0).await.unwrap();
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
