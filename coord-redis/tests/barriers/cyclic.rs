//! Cyclic barriers: trips, idempotent arrivals and renewals, leaving,
//! expiring arrivals, stale generations, breaks.

use super::*;

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
        br.arrive(Cyclic, &name, &a, g, 3, TTL, 0).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    assert_eq!(
        br.arrive(Cyclic, &name, &odd, g, 3, TTL, 0).await.unwrap(),
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

    let e = ended(br.arrive(Cyclic, &name, &c, g, 3, TTL, 0).await.unwrap());
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
        br.arrive(Cyclic, &name, &a, g, 3, TTL, 0).await.unwrap(),
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
            br.arrive(Cyclic, &name, p, g2, 3, TTL, 0).await.unwrap(),
            Arrive::Waiting {
                arrived: i as u32 + 1
            }
        );
    }
    let e2 = ended(br.arrive(Cyclic, &name, &odd, g2, 3, TTL, 0).await.unwrap());
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
        br.arrive(Cyclic, &name, &a, g, 2, short, 0).await.unwrap(),
        Arrive::Waiting { arrived: 1 }
    );
    // Again (a retry, a lost reply): counted once, its lease renewed.
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 2, TTL, 0).await.unwrap(),
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
        br.leave(Cyclic, &none, &a, 1, 0).await.unwrap(),
        Leave::NotThere
    );
    let e = ended(br.arrive(Cyclic, &name, &c, g, 2, TTL, 0).await.unwrap());
    assert_eq!(
        e.ended,
        Ended::Tripped(Trip::new(c.clone(), vec![a.clone(), c.clone()]))
    );

    // A waiter that gives up leaves: not counted, and not expired.
    let g = e.next;
    br.arrive(Cyclic, &name, &a, g, 2, TTL, 0).await.unwrap();
    assert_eq!(
        br.leave(Cyclic, &name, &a, g, 0).await.unwrap(),
        Leave::Left { remaining: 0 }
    );
    assert_eq!(
        br.leave(Cyclic, &name, &a, g, 0).await.unwrap(),
        Leave::NotThere
    );
    assert_eq!(
        br.arrive(Cyclic, &name, &c, g, 2, TTL, 0).await.unwrap(),
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
        br.arrive(Cyclic, &name, &a, g, 2, short, 0).await.unwrap(),
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
        br.leave(Cyclic, &name, &a, g, 0).await.unwrap(),
        Leave::NotThere
    );
    // The crashed participant is not counted: no trip.
    assert_eq!(
        br.arrive(Cyclic, &name, &c, g, 2, TTL, 0).await.unwrap(),
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
    br.arrive(Cyclic, &name, &a, g, 4, short, 0).await.unwrap();
    br.arrive(Cyclic, &name, &c, g, 4, short, 0).await.unwrap();
    br.arrive(Cyclic, &name, &d, g, 4, short * 2, 0)
        .await
        .unwrap();
    tokio::time::sleep(short * 2 + Duration::from_millis(100)).await;
    assert_eq!(
        br.arrive(Cyclic, &name, &a, g, 4, TTL, 0).await.unwrap(),
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
            br.arrive(Cyclic, &name, &a, bad, 2, TTL, 0).await.unwrap(),
            Arrive::Stale { current: g }
        );
        assert!(!br.renew(Cyclic, &name, &a, bad, TTL).await.unwrap());
        assert_eq!(
            br.leave(Cyclic, &name, &a, bad, 0).await.unwrap(),
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
    br.arrive(Cyclic, &name, &a, g, 3, TTL, 0).await.unwrap();
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
        br.arrive(Cyclic, &name, &c, g, 3, TTL, 0).await.unwrap(),
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
    br.arrive(Cyclic, &name, &a, g, 3, TTL, 0).await.unwrap();
    assert_eq!(
        br.arrive(Cyclic, &name, &c, g, 4, TTL, 0).await.unwrap(),
        Arrive::PartiesDiffer { parties: 3 }
    );
    assert_eq!(
        br.state(Cyclic, &name, None).await.unwrap().arrivals.len(),
        1
    );
}
