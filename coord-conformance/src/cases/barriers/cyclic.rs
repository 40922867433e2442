//! The cyclic barrier: trips, rounds, idempotent arrivals, crashed and
//! cancelled participants, deadlines and resets that break a generation
//! for everyone, stale generations, invalid input.

use super::*;

const B: &str = "b";
const CYCLIC: BarrierKind = BarrierKind::Cyclic;

/// A waiter of `B` for `parties` on the client `name`, spawned.
async fn waiter(ctx: &Ctx<'_>, name: &str, parties: u32) -> JoinHandle<Result<Tripped>> {
    let barrier = ctx.client(name).await.barrier(B, parties);
    tokio::spawn(async move { barrier.wait().await })
}

cases! {
    family: "barrier", needs: [Need::Barriers];

/// `parties` distinct participants trip the generation together: each
/// returns the same trip (the generation, the next, `by` counted last, every
/// participant counted once), and the next generation begins empty.
pub async fn barrier_trips_when_all_parties_arrive(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let mut tasks = Vec::new();
    for name in ["a", "b", "c"] {
        tasks.push(waiter(&ctx, name, 3).await);
    }
    let mut trips = Vec::new();
    for t in tasks {
        trips.push(tripped(join(t, ms(5000), "wait").await, "wait"));
    }
    let first = &trips[0];
    assert_eq!(ids(&first.arrivals), names(&["a", "b", "c"]), "{first:?}");
    assert_eq!(first.arrivals.last(), Some(&first.by), "by is counted last");
    assert!(first.next > first.generation, "{first:?}");
    for t in &trips {
        assert_eq!(t, first, "every waiter returns the same trip");
    }
    let st = state_of(&obs, CYCLIC, B).await;
    assert_eq!(st.generation, first.next, "the next generation is current");
    assert!(st.arrivals.is_empty(), "it begins empty: {st:?}");
}

/// With fewer live arrivals than parties the generation does not trip: the
/// waiters wait, the state shows them in the same generation; the last
/// party's arrival trips it.
pub async fn barrier_never_trips_early(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let mut ta = waiter(&ctx, "a", 3).await;
    let mut tb = waiter(&ctx, "b", 3).await;
    let st = arrivals_are(&obs, CYCLIC, B, &["a", "b"], "two of three").await;
    assert_eq!(st.parties, Some(3), "{st:?}");
    still_waiting(&mut ta, ms(300), "a, two of three arrived").await;
    still_waiting(&mut tb, ms(0), "b, two of three arrived").await;
    let again = state_of(&obs, CYCLIC, B).await;
    assert_eq!((again.generation, live(&again)), (st.generation, names(&["a", "b"])));
    let c = ctx.client("c").await.barrier(B, 3);
    let tc = tripped(timeout(PROMPTLY, c.wait()).await.expect("c trips it"), "c");
    assert_eq!(tc.generation, st.generation);
    assert_eq!(tc.by.as_str(), "c", "the third arrival trips it");
    for t in [ta, tb] {
        let t = tripped(join(t, PROMPTLY, "a waiter").await, "a waiter");
        assert_eq!(t, tc);
    }
}

/// Round after round, each generation is the `next` of the one before, and
/// generations strictly increase.
pub async fn barrier_rounds_have_increasing_generations(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let mut tasks = Vec::new();
    for name in ["a", "b"] {
        let barrier = ctx.client(name).await.barrier(B, 2);
        tasks.push(tokio::spawn(async move {
            let mut t = barrier.wait().await?;
            let mut rounds = vec![(t.generation, t.next)];
            for _ in 0..3 {
                t = barrier.wait_in(t.next).await?;
                rounds.push((t.generation, t.next));
            }
            Ok::<_, Error>(rounds)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(join(t, ms(10_000), "four rounds").await.expect("four rounds"));
    }
    assert_eq!(all[0], all[1], "both see the same rounds");
    let rounds = &all[0];
    for (g, next) in rounds {
        assert!(next > g, "{rounds:?}");
    }
    for w in rounds.windows(2) {
        assert_eq!(w[0].1, w[1].0, "a round is the next of the one before: {rounds:?}");
    }
    let st = state_of(&obs, CYCLIC, B).await;
    assert_eq!(st.generation, rounds[3].1);
}

/// One participant arriving twice (again through the SPI, or waiting from
/// two clients) counts once: it does not trip a barrier of two parties,
/// and the trip counts it once.
pub async fn barrier_arrival_idempotent_per_participant(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let raw = spi(&obs);
    let (name, p) = (key("raw"), key("p"));
    let g = raw.state(CYCLIC, &name, None).await.unwrap().generation;
    for _ in 0..2 {
        let arrive = raw.arrive(CYCLIC, &name, &p, g, 2, ms(5000), 0);
        let res = arrive.await.unwrap();
        assert_eq!(res, Arrive::Waiting { arrived: 1 }, "p arriving again");
    }
    let p1 = ctx.client("a").await.barrier(B, 2).participant("p");
    let p2 = ctx.client("a2").await.barrier(B, 2).participant("p");
    let mut t1 = tokio::spawn(async move { p1.wait().await });
    let mut t2 = tokio::spawn(async move { p2.wait().await });
    let st = arrivals_are(&obs, CYCLIC, B, &["p"], "p waiting twice").await;
    still_waiting(&mut t1, ms(300), "p from the first client").await;
    still_waiting(&mut t2, ms(0), "p from the second client").await;
    let again = state_of(&obs, CYCLIC, B).await;
    assert_eq!((again.generation, live(&again)), (st.generation, names(&["p"])));
    let b = ctx.client("b").await.barrier(B, 2);
    let tb = tripped(timeout(PROMPTLY, b.wait()).await.expect("b trips"), "b");
    assert_eq!(tb.arrivals.len(), 2, "p counted once: {tb:?}");
    assert_eq!(ids(&tb.arrivals), names(&["b", "p"]));
    for t in [t1, t2] {
        assert_eq!(tripped(join(t, PROMPTLY, "p").await, "p"), tb);
    }
}

/// A waiter whose arrivals are applied but whose replies are lost (it
/// retries, arriving again and again) counts once: it never trips a
/// barrier of two parties alone, and the trip counts it once.
pub async fn barrier_lost_arrival_reply_counts_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let a = a.barrier(B, 2);
    let g = a.generation().await.unwrap();
    switch.losing_replies();
    let mut ta = tokio::spawn(async move { a.wait_in(g).await });
    let retried = eventually(PROMPTLY, || async { (switch.replies_lost() >= 3).then_some(()) });
    retried.await.expect("a's arrival is retried while its replies are lost");
    let st = state_of(&obs, CYCLIC, B).await;
    assert_eq!((st.generation, live(&st)), (g, names(&["a"])), "a counted once");
    switch.on();
    still_waiting(&mut ta, ms(0), "a alone").await;
    let b = ctx.client("b").await.barrier(B, 2);
    let tb = tripped(timeout(PROMPTLY, b.wait_in(g)).await.expect("b trips"), "b");
    assert_eq!((tb.generation, ids(&tb.arrivals)), (g, names(&["a", "b"])));
    let t = tripped(join(ta, ms(3000), "a after the trip").await, "a");
    assert_eq!(t, tb, "a returns the trip that counted it");
}

/// A participant that arrived and crashed is dropped at its TTL: a later
/// arrival does not trip the generation with it, and the trip neither
/// counts it nor names it.
pub async fn barrier_crashed_participant_not_counted(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let g = crashed_arrival(&obs, CYCLIC, B, "crashed", 2, ms(300)).await;
    assert_eq!(live(&state_of(&obs, CYCLIC, B).await), names(&["crashed"]));
    sleep(ms(300 + 200)).await; // let the crashed participant's TTL run out
    let mut ta = waiter(&ctx, "a", 2).await;
    let st = arrivals_are(&obs, CYCLIC, B, &["a"], "the crashed one dropped").await;
    assert_eq!(st.generation, g, "a and the crashed one did not trip it");
    still_waiting(&mut ta, ms(0), "a").await;
    let b = ctx.client("b").await.barrier(B, 2);
    let tb = tripped(timeout(PROMPTLY, b.wait()).await.expect("b trips"), "b");
    assert_eq!((tb.generation, ids(&tb.arrivals)), (g, names(&["a", "b"])));
    assert_eq!(tripped(join(ta, PROMPTLY, "a").await, "a"), tb);
    let ended = ended_of(&obs, CYCLIC, B, g).await.expect("the trip is remembered");
    let Ended::Tripped(trip) = ended.ended else {
        panic!("generation {g} tripped: {ended:?}");
    };
    assert_eq!(ids(&trip.arrivals), names(&["a", "b"]));
}

/// A waiter keeps its arrival past its TTL by renewing it (arriving
/// again): for three TTLs it is never dropped, and the trip counts it.
pub async fn barrier_waiter_outlives_its_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let a = ctx.client_with("a", short_renewed()).await;
    let a = a.barrier(B, 2);
    let ta = tokio::spawn(async move { a.wait().await });
    let st = arrivals_are(&obs, CYCLIC, B, &["a"], "a arrives").await;
    // Three TTLs: only its renewals keep it, never dropped meanwhile.
    stays_renewed(&obs, CYCLIC, B, &st, RENEWED_TTL * 3, "a waiting past its TTL").await;
    let now = state_of(&obs, CYCLIC, B).await;
    assert!(now.arrivals[0].expires_in <= RENEWED_TTL, "{now:?}");
    let b = ctx.client("b").await.barrier(B, 2);
    let tb = tripped(timeout(PROMPTLY, b.wait()).await.expect("b trips"), "b");
    assert_eq!(ids(&tb.arrivals), names(&["a", "b"]));
    assert_eq!(tripped(join(ta, PROMPTLY, "a").await, "a"), tb);
}

/// A waiter whose deadline passes breaks the generation: it and every
/// other waiter of it return the same `Broken` (the reason names it, one
/// arrival missing, both arrived, none expired), and the next generation
/// begins empty.
pub async fn barrier_timeout_breaks_generation_for_everyone(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let ta = waiter(&ctx, "a", 3).await;
    let st = arrivals_are(&obs, CYCLIC, B, &["a"], "a arrives").await;
    let b = ctx.client("b").await.barrier(B, 3).wait_timeout(Some(ms(500)));
    let t0 = Instant::now();
    let res = timeout(ms(500) + PROMPTLY, b.wait()).await;
    let eb = broken(res.expect("b returns at its deadline"), "b");
    assert!(t0.elapsed() >= ms(450), "broken after {:?}", t0.elapsed());
    let ea = broken(join(ta, PROMPTLY, "a").await, "a");
    assert_eq!(ea, eb, "every waiter returns the same Broken");
    assert_eq!((eb.kind, eb.generation), ("barrier", st.generation), "{eb:?}");
    assert_eq!(eb.reason, r#"timeout of "b""#);
    assert_eq!(eb.missing, 1);
    let mut arrived = eb.arrived.clone();
    arrived.sort();
    assert_eq!(arrived, names(&["a", "b"]), "{eb:?}");
    assert!(eb.expired.is_empty(), "{eb:?}");
    let now = state_of(&obs, CYCLIC, B).await;
    assert_eq!(now.generation, eb.next);
    assert!(eb.next > eb.generation && now.arrivals.is_empty(), "{now:?}");
    let ended = ended_of(&obs, CYCLIC, B, st.generation).await;
    let ended = ended.expect("the break is remembered");
    let by_b = BreakReason::Timeout { by: key("b") };
    assert!(
        matches!(&ended.ended, Ended::Broken(Broken { reason, .. }) if *reason == by_b),
        "{ended:?}"
    );
}

/// A trip names who arrived in its generation and then expired
/// (`Trip::expired`), neither those it counted nor one who expired and
/// arrived again: what tells a waiter whose replies were lost that its
/// arrival had been counted.
pub async fn barrier_trip_names_expired_participants(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let g = crashed_arrival(&obs, CYCLIC, B, "gone", 3, ms(200)).await;
    crashed_arrival(&obs, CYCLIC, B, "back", 3, ms(200)).await;
    arrivals_are(&obs, CYCLIC, B, &[], "both crashed arrivals expired").await;
    let (tb, tq) = (waiter(&ctx, "back", 3).await, waiter(&ctx, "q", 3).await);
    arrivals_are(&obs, CYCLIC, B, &["back", "q"], "back again, q").await;
    let r = ctx.client("r").await.barrier(B, 3);
    let tr = tripped(timeout(PROMPTLY, r.wait()).await.expect("r trips"), "r");
    assert_eq!(tripped(join(tb, PROMPTLY, "back").await, "back"), tr);
    assert_eq!(tripped(join(tq, PROMPTLY, "q").await, "q"), tr);
    let ended = ended_of(&obs, CYCLIC, B, g).await.expect("remembered");
    let Ended::Tripped(trip) = ended.ended else {
        panic!("generation {g} tripped: {ended:?}")
    };
    assert_eq!(ids(&trip.arrivals), names(&["back", "q", "r"]), "{trip:?}");
    assert_eq!(ids(&trip.expired), names(&["gone"]), "{trip:?}");
}

/// A break names who arrived and then expired (crashed) in the
/// generation, apart from who was alive; the crashed by deadline (the
/// first to expire first), whatever order they arrived in.
pub async fn barrier_broken_names_expired_participants(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let g = crashed_arrival(&obs, CYCLIC, B, "late", 4, ms(400)).await;
    crashed_arrival(&obs, CYCLIC, B, "early", 4, ms(250)).await;
    let st = state_of(&obs, CYCLIC, B).await;
    assert_eq!(live(&st), names(&["early", "late"]), "{st:?}");
    // Both TTLs run out with nobody at the barrier: they expire together.
    sleep(ms(400 + 200)).await;
    let ta = waiter(&ctx, "a", 4).await;
    arrivals_are(&obs, CYCLIC, B, &["a"], "a, the crashed dropped").await;
    let b = ctx.client("b").await.barrier(B, 4).wait_timeout(Some(ms(300)));
    let res = timeout(ms(300) + PROMPTLY, b.wait()).await;
    let eb = broken(res.expect("b returns at its deadline"), "b");
    let ea = broken(join(ta, PROMPTLY, "a").await, "a");
    assert_eq!(ea, eb);
    assert_eq!(eb.generation, g);
    let mut arrived = eb.arrived.clone();
    arrived.sort();
    assert_eq!(arrived, names(&["a", "b"]), "{eb:?}");
    assert_eq!(eb.expired, names(&["early", "late"]), "{eb:?}");
    assert_eq!(eb.missing, 2, "{eb:?}");
}

/// `reset()` breaks the current generation (reason `reset`): every waiter
/// returns `Broken`, and the next generation begins empty.
pub async fn barrier_reset_breaks_waiters(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let ta = waiter(&ctx, "a", 3).await;
    let tb = waiter(&ctx, "b", 3).await;
    let st = arrivals_are(&obs, CYCLIC, B, &["a", "b"], "a and b arrive").await;
    let c = ctx.client("c").await.barrier(B, 3);
    let ended = c.reset().await.unwrap();
    assert_eq!(ended.generation, st.generation, "{ended:?}");
    let Ended::Broken(brk) = &ended.ended else {
        panic!("a reset breaks: {ended:?}");
    };
    assert_eq!(brk.reason, BreakReason::Reset);
    assert_eq!((ids(&brk.arrived), brk.missing), (names(&["a", "b"]), 1));
    for t in [ta, tb] {
        let e = broken(join(t, PROMPTLY, "a waiter").await, "a waiter");
        assert_eq!((e.reason.as_str(), e.generation), ("reset", st.generation));
        assert_eq!((e.next, e.missing), (ended.next, 1), "{e:?}");
    }
    let now = c.state().await.unwrap();
    assert_eq!(now.generation, ended.next);
    assert!(now.arrivals.is_empty(), "{now:?}");
}

/// An arrival in a generation that tripped without it, or in one ahead of
/// the current, is `StaleGeneration` at once and counted nowhere.
pub async fn barrier_stale_generation_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (ta, tb) = (waiter(&ctx, "a", 2).await, waiter(&ctx, "b", 2).await);
    let t = tripped(join(ta, ms(5000), "a").await, "a");
    tripped(join(tb, PROMPTLY, "b").await, "b");
    let c = ctx.client("c").await.barrier(B, 2);
    for g in [t.generation, t.next + 1_000_000] {
        match at_once(c.wait_in(g)).await {
            Err(Error::StaleGeneration {
                kind: "barrier",
                generation,
                current,
                ..
            }) => assert_eq!((generation, current), (g, t.next)),
            other => panic!("wait_in({g}), current {}: {other:?}", t.next),
        }
    }
    let now = c.state().await.unwrap();
    assert_eq!(now.generation, t.next);
    assert!(now.arrivals.is_empty(), "c counted in the current: {now:?}");
    let ended = c.ended(t.generation).await.unwrap().expect("remembered");
    let Ended::Tripped(trip) = ended.ended else {
        panic!("{ended:?}");
    };
    assert_eq!(ids(&trip.arrivals), names(&["a", "b"]), "c counted in the old");
}

/// Parties 0 or over `MAX_PARTIES`, a bad name, a bad participant and bad
/// options are `InvalidArgument` at once; so is an arrival naming other
/// parties than its generation's. Nothing is counted.
pub async fn barrier_invalid_input_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let a = ctx.client("a").await;
    let g = a.barrier(B, 2).generation().await.unwrap();
    let long = "p".repeat(513);
    let bad = [
        ("parties 0", a.barrier(B, 0)),
        ("parties over MAX_PARTIES", a.barrier(B, MAX_PARTIES + 1)),
        ("empty participant", a.barrier(B, 2).participant("")),
        ("control character participant", a.barrier(B, 2).participant("a\nb")),
        ("513-byte participant", a.barrier(B, 2).participant(&long)),
        ("zero ttl", a.barrier(B, 2).ttl(Duration::ZERO)),
        ("ttl over 24 h", a.barrier(B, 2).ttl(MAX_TTL + ms(1))),
        (
            "zero retry delay",
            a.barrier(B, 2).with_options(default_options().retry_delay(Duration::ZERO)),
        ),
    ];
    for (what, barrier) in bad {
        assert_invalid(at_once(barrier.wait()).await, what);
        assert_invalid(at_once(barrier.wait_in(g)).await, what);
    }
    let unnamed = a.barrier("", 2);
    assert_invalid(at_once(unnamed.wait()).await, "wait, empty name");
    assert_invalid(at_once(unnamed.state()).await, "state, empty name");
    assert_invalid(at_once(unnamed.reset()).await, "reset, empty name");
    let st = state_of(&obs, CYCLIC, B).await;
    assert_eq!((st.generation, st.parties), (g, None), "nothing counted: {st:?}");
    assert!(st.arrivals.is_empty(), "{st:?}");
    let three = waiter(&ctx, "c", 3).await;
    arrivals_are(&obs, CYCLIC, B, &["c"], "c waits for 3").await;
    let two = a.barrier(B, 2);
    assert_invalid(at_once(two.wait()).await, "2 parties where the generation waits for 3");
    let st = state_of(&obs, CYCLIC, B).await;
    assert_eq!((st.parties, live(&st)), (Some(3), names(&["c"])), "{st:?}");
    three.abort();
    let max = a.barrier("max", MAX_PARTIES);
    let at_max = tokio::spawn(async move { max.wait().await });
    let st = arrivals_are(&obs, CYCLIC, "max", &["a"], "MAX_PARTIES accepted").await;
    assert_eq!(st.parties, Some(MAX_PARTIES));
    at_max.abort();
}

/// A cancelled wait withdraws its arrival in the background, well before
/// its TTL would have dropped it; the generation goes on.
pub async fn barrier_cancelled_wait_withdraws(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let a = ctx.client_with("a", default_options().ttl(LOST_REPLY_TTL)).await;
    let a = a.barrier(B, 2);
    let ta = tokio::spawn(async move { a.wait().await });
    let st = arrivals_are(&obs, CYCLIC, B, &["a"], "a arrives").await;
    ta.abort(); // cancels the wait: its future is dropped
    let t0 = Instant::now();
    let now = arrivals_are(&obs, CYCLIC, B, &[], "the cancelled arrival withdrawn").await;
    assert!(t0.elapsed() < FREED_WITHIN, "withdrawn after {:?}", t0.elapsed());
    assert_eq!(now.generation, st.generation, "withdrawing ends nothing");
}

/// A withdrawal names the wait it withdraws: one that comes late, after
/// its participant arrived again in another wait (a wait given up while
/// the backend could not be reached, then a new one), changes nothing; the
/// new wait's own withdrawal does. In a cyclic barrier and inside a double
/// barrier's generation.
pub async fn barrier_late_withdrawal_leaves_the_next_wait(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let raw = spi(&obs);
    let (name, p, q) = (key("late"), key("p"), key("q"));
    for kind in [CYCLIC, BarrierKind::Double] {
        let g = raw.state(kind, &name, None).await.unwrap().generation;
        let arrive = |who, wait| raw.arrive(kind, &name, who, g, 2, ms(5000), wait);
        let mut last = 2;
        assert_eq!(arrive(&p, 1).await.unwrap(), Arrive::Waiting { arrived: 1 });
        assert_eq!(arrive(&p, 2).await.unwrap(), Arrive::Waiting { arrived: 1 });
        let left = raw.leave(kind, &name, &p, g, 1).await.unwrap();
        assert_eq!(left, Leave::NotThere, "{kind:?}: the first wait's withdrawal");
        let st = raw.state(kind, &name, None).await.unwrap();
        assert_eq!((st.generation, live(&st)), (g, names(&["p"])), "{kind:?}");
        if kind == BarrierKind::Double {
            // Inside: p's next wait (entering again) takes the arrival over.
            assert!(matches!(arrive(&q, 1).await.unwrap(), Arrive::Entered(_)));
            assert!(matches!(arrive(&p, 3).await.unwrap(), Arrive::Entered(_)));
            let left = raw.leave(kind, &name, &p, g, 2).await.unwrap();
            assert_eq!(left, Leave::NotThere, "the entered wait's, superseded");
            last = 3;
        }
        let inside = if kind == BarrierKind::Double { 1 } else { 0 };
        let left = raw.leave(kind, &name, &p, g, last).await.unwrap();
        assert_eq!(left, Leave::Left { remaining: inside }, "{kind:?}: p's own");
        let st = raw.state(kind, &name, None).await.unwrap();
        let rest: &[&str] = if inside == 1 { &["q"] } else { &[] };
        assert_eq!((st.generation, live(&st)), (g, names(rest)), "{kind:?}");
    }
}

/// A waiter returns promptly once another arrival trips the generation:
/// its renewals (every 3 s) and retries (every 10 s) are far, so only the
/// backend's notification wakes it.
pub async fn barrier_waiter_woken_by_trip_notification(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let a = ctx.client_with("a", default_options().ttl(LOST_REPLY_TTL)).await;
    let a = a.barrier(B, 2);
    let ta = tokio::spawn(async move { a.wait().await });
    arrivals_are(&obs, CYCLIC, B, &["a"], "a arrives").await;
    let b = ctx.client("b").await.barrier(B, 2);
    let tb = tripped(timeout(PROMPTLY, b.wait()).await.expect("b trips"), "b");
    let t0 = Instant::now();
    let t = tripped(join(ta, ms(1000), "a woken by the trip").await, "a");
    assert_eq!(t, tb, "woken after {:?}", t0.elapsed());
}

/// A barrier remembers how each of its last `ENDED_KEPT` generations ended
/// (here, one party: every wait trips at once); a generation that has not
/// ended, or never was, has no end.
pub async fn barrier_ended_remembers_generations(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await.barrier(B, 1);
    let mut rounds = Vec::new();
    for _ in 0..ENDED_KEPT + 4 {
        let t = tripped(at_once(a.wait()).await, "one party");
        assert_eq!((t.by.as_str(), ids(&t.arrivals)), ("a", names(&["a"])));
        rounds.push((t.generation, t.next));
    }
    for w in rounds.windows(2) {
        assert_eq!(w[0].1, w[1].0, "{rounds:?}");
    }
    for &(g, next) in &rounds[rounds.len() - ENDED_KEPT..] {
        let e = a.ended(g).await.unwrap();
        let e = e.unwrap_or_else(|| panic!("generation {g} forgotten: {rounds:?}"));
        assert_eq!((e.generation, e.next), (g, next));
        assert!(
            matches!(&e.ended, Ended::Tripped(t) if ids(&t.arrivals) == names(&["a"])),
            "{e:?}"
        );
    }
    let current = a.generation().await.unwrap();
    assert_eq!(current, rounds.last().unwrap().1);
    assert_eq!(a.ended(current).await.unwrap(), None, "the current has not ended");
    assert_eq!(a.ended(current + 1_000_000).await.unwrap(), None);
}

/// A cyclic barrier, a double barrier and a latch of one name are apart:
/// arrivals in one are not seen in, nor counted by, the others.
pub async fn barrier_kinds_apart(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let cyclic = waiter(&ctx, "a", 2).await;
    let st = arrivals_are(&obs, CYCLIC, B, &["a"], "a in the cyclic barrier").await;
    let double = state_of(&obs, BarrierKind::Double, B).await;
    assert!(double.arrivals.is_empty() && double.parties.is_none(), "{double:?}");
    let entering = b.double_barrier(B, 2);
    let entering = tokio::spawn(async move { entering.enter().await.map(drop) });
    let d0 = arrivals_are(&obs, BarrierKind::Double, B, &["b"], "b enters").await;
    assert!(d0.entered.is_none(), "b entered with a's cyclic arrival: {d0:?}");
    let now = state_of(&obs, CYCLIC, B).await;
    assert_eq!((now.generation, live(&now)), (st.generation, names(&["a"])));
    assert_eq!(a.latch(B).state().await.unwrap(), None, "no latch of that name");
    assert!(b.latch(B).try_set_count(1).await.unwrap());
    let now = state_of(&obs, CYCLIC, B).await;
    assert_eq!((now.generation, live(&now)), (st.generation, names(&["a"])));
    let d = state_of(&obs, BarrierKind::Double, B).await;
    assert_eq!((d.generation, live(&d)), (d0.generation, names(&["b"])));
    cyclic.abort();
    entering.abort();
}

/// `peek` reads a barrier's record without making one: `None` for a name
/// nobody used, again `None` at the next look (the first made nothing),
/// and once someone arrived, the record `state` reads, arrivals and all.
/// A cyclic barrier's record is not a double barrier's of the same name.
pub async fn barrier_peek_makes_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let a = ctx.client("a").await;
    for _ in 0..2 {
        assert_eq!(a.barrier(B, 2).peek().await.unwrap(), None, "nobody used {B:?}");
        assert_eq!(a.double_barrier(B, 2).peek().await.unwrap(), None);
    }
    let cyclic = waiter(&ctx, "a", 2).await;
    let st = arrivals_are(&obs, CYCLIC, B, &["a"], "a waits").await;
    let seen = a.barrier(B, 2).peek().await.unwrap().expect("a record");
    assert_eq!(
        (seen.generation, seen.parties, live(&seen)),
        (st.generation, Some(2), names(&["a"]))
    );
    assert_eq!(a.double_barrier(B, 2).peek().await.unwrap(), None, "kinds apart");
    cyclic.abort();
    let made = state_of(&obs, CYCLIC, "made").await;
    let seen = a.barrier("made", 3).peek().await.unwrap().expect("made by state");
    assert_eq!((seen.generation, seen.parties), (made.generation, None));
}

/// `wait()` reads the generation, then arrives in it: when that generation
/// ended before the arrival reached it without counting it (others tripped
/// it, or someone reset it), the wait arrives in the next one instead and
/// trips there.
pub async fn barrier_wait_moves_past_a_generation_ended_without_it(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    for (name, how) in [("tripped", true), ("reset", false)] {
        let other = ctx.backend().await;
        let a = if how {
            BeforeArrive::client(&ctx, "a", others_trip(other, name)).await
        } else {
            BeforeArrive::client(&ctx, "a", someone_resets(other, name)).await
        };
        let g = state_of(&obs, CYCLIC, name).await.generation;
        let a = a.barrier(name, 2);
        let ta = tokio::spawn(async move { a.wait().await });
        let st = arrivals_are(&obs, CYCLIC, name, &["a"], name).await;
        let ended = ended_of(&obs, CYCLIC, name, g).await.expect("remembered");
        assert_eq!(st.generation, ended.next, "{name}: a waits in the next: {st:?}");
        let b = ctx.client("b").await.barrier(name, 2);
        let tb = tripped(timeout(PROMPTLY, b.wait()).await.expect("b trips"), name);
        assert_eq!((tb.generation, ids(&tb.arrivals)), (st.generation, names(&["a", "b"])));
        assert_eq!(tripped(join(ta, PROMPTLY, name).await, name), tb);
    }
}

/// A `wait()` whose arrival was counted, then expired while its client was
/// cut off, and whose generation tripped without it meanwhile, does not
/// move on to the next generation (its arrival had reached this one): it
/// returns `StaleGeneration` once it can reach the backend again. Also
/// when no reply ever told it that it was counted (every arrival applied
/// after its caller was told `Unavailable`): the trip names it expired.
pub async fn barrier_wait_counted_then_expired_does_not_move_on(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let opts = default_options().ttl(ms(300)).wait_timeout(Some(ms(10_000)));
    for (name, replies_lost) in [("answered", false), ("replies lost", true)] {
        let (p, switch) = ctx.switchable_client("p", opts.clone()).await;
        if replies_lost {
            // Every arrival applied, its caller told `Unavailable`.
            switch.late_requests("arrive", ms(1));
        }
        let p = p.barrier(name, 2);
        let tp = tokio::spawn(async move { p.wait().await });
        let g = arrivals_are(&obs, CYCLIC, name, &["p"], "p arrives").await.generation;
        switch.off();
        switch.late_requests("arrive", Duration::ZERO);
        arrivals_are(&obs, CYCLIC, name, &[], "p's arrival expired").await;
        let tq = tokio::spawn({
            let q = ctx.client("q").await.barrier(name, 2);
            async move { q.wait().await }
        });
        arrivals_are(&obs, CYCLIC, name, &["q"], "q arrives").await;
        let r = ctx.client("r").await.barrier(name, 2);
        let tr = tripped(timeout(PROMPTLY, r.wait()).await.expect("r trips"), "r");
        assert_eq!((tr.generation, ids(&tr.arrivals)), (g, names(&["q", "r"])));
        assert_eq!(tripped(join(tq, PROMPTLY, "q").await, "q"), tr);
        switch.on();
        match join(tp, PROMPTLY, "p").await {
            Err(Error::StaleGeneration { generation, .. }) => assert_eq!(generation, g, "{name}"),
            other => panic!("{name}: expected StaleGeneration of {g}, got {other:?}"),
        }
        let st = state_of(&obs, CYCLIC, name).await;
        assert!(st.arrivals.is_empty(), "{name}: p counted in the next: {st:?}");
    }
}

/// `wait_in(g)` never moves on: when `g` ended before its arrival reached
/// it (others tripped it: `StaleGeneration`; someone reset it: `Broken`),
/// it returns, counted in no later generation.
pub async fn barrier_wait_in_never_moves_on(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    for (name, how) in [("tripped", true), ("reset", false)] {
        let other = ctx.backend().await;
        let a = if how {
            BeforeArrive::client(&ctx, "a", others_trip(other, name)).await
        } else {
            BeforeArrive::client(&ctx, "a", someone_resets(other, name)).await
        };
        let g = state_of(&obs, CYCLIC, name).await.generation;
        let res = timeout(PROMPTLY, a.barrier(name, 2).wait_in(g)).await;
        let res = res.unwrap_or_else(|_| panic!("{name}: wait_in({g}) returns at once"));
        let next = ended_of(&obs, CYCLIC, name, g).await.expect("remembered").next;
        match res {
            Err(Error::StaleGeneration { generation, current, .. }) if how => {
                assert_eq!((generation, current), (g, next));
            }
            Err(Error::Broken(b)) if !how => {
                assert_eq!((b.generation, b.reason.as_str()), (g, "reset"));
                assert!(!b.arrived.contains(&"a".to_owned()), "{b:?}");
            }
            other => panic!("{name}: wait_in({g}): {other:?}"),
        }
        let st = state_of(&obs, CYCLIC, name).await;
        assert_eq!(st.generation, next);
        assert!(st.arrivals.is_empty(), "{name}: a counted in the next: {st:?}");
    }
}

/// A reset retried after its reply was lost (applied, then `Unavailable`)
/// breaks its generation once: `reset_in(g)` names it, so the retry, sent
/// after the next generation began, returns how `g` ended and leaves the
/// next generation's arrivals waiting; the next generation trips as if no
/// retry came. A `g` the backend does not know is `StaleGeneration`.
pub async fn barrier_reset_retried_after_lost_reply_breaks_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let ta = waiter(&ctx, "a", 2).await;
    let g = arrivals_are(&obs, CYCLIC, B, &["a"], "a arrives").await.generation;
    let (r, switch) = ctx.switchable_client("r", default_options()).await;
    let r = r.barrier(B, 2);
    with_lost_reply(&switch, "the first reset", r.reset_in(g)).await;
    let e = broken(join(ta, PROMPTLY, "a").await, "a");
    assert_eq!((e.reason.as_str(), e.generation), ("reset", g), "{e:?}");
    let mut tb = waiter(&ctx, "b", 2).await;
    let st = arrivals_are(&obs, CYCLIC, B, &["b"], "b arrives in the next").await;
    assert_eq!(st.generation, e.next);
    let ended = r.reset_in(g).await.expect("the retry");
    let brk = reset_broke(&ended, g, "the retry");
    assert_eq!((ended.next, ids(&brk.arrived)), (e.next, names(&["a"])));
    match r.reset_in(e.next + 1_000_000).await {
        Err(Error::StaleGeneration { generation, current, .. }) => {
            assert_eq!((generation, current), (e.next + 1_000_000, e.next));
        }
        other => panic!("a reset of a generation ahead: {other:?}"),
    }
    still_waiting(&mut tb, ms(0), "b in the next generation").await;
    let st = state_of(&obs, CYCLIC, B).await;
    assert_eq!((st.generation, live(&st)), (e.next, names(&["b"])), "b undisturbed");
    let c = ctx.client("c").await.barrier(B, 2);
    let tc = tripped(timeout(PROMPTLY, c.wait()).await.expect("c trips"), "c");
    assert_eq!((tc.generation, ids(&tc.arrivals)), (e.next, names(&["b", "c"])));
    assert_eq!(tripped(join(tb, PROMPTLY, "b").await, "b"), tc);
}

}
