//! The double barrier: enter together, leave together; crashed members,
//! entrants beyond the parties, resets, leave timeouts, invalid input.

use super::*;

const D: &str = "d";
const DOUBLE: BarrierKind = BarrierKind::Double;

/// An entrant of `D` for `parties` on the client `name`, spawned.
async fn entrant(ctx: &Ctx<'_>, name: &str, parties: u32) -> JoinHandle<Result<Inside>> {
    let barrier = ctx.client(name).await.double_barrier(D, parties);
    tokio::spawn(async move { barrier.enter().await })
}

/// The membership of an entrant that must have entered.
async fn inside(task: JoinHandle<Result<Inside>>, what: &str) -> Inside {
    match join(task, ms(5000), what).await {
        Ok(i) => i,
        Err(e) => panic!("{what}: expected to enter, got {e:?}"),
    }
}

/// Every member leaves at once; each leave returns `Ok` within a bound.
async fn all_leave(members: Vec<Inside>) {
    let tasks: Vec<_> = (members.into_iter())
        .map(|m| tokio::spawn(m.leave()))
        .collect();
    for t in tasks {
        join(t, ms(5000), "leave").await.expect("every member left");
    }
}

cases! {
    family: "barrier", needs: [Need::Barriers];

/// A double barrier's entered trip names who entered its generation and
/// then expired (`Trip::expired`), neither those it let in nor one who
/// expired and entered again.
pub async fn double_barrier_trip_names_expired_entrants(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let g = crashed_arrival(&obs, DOUBLE, D, "gone", 3, ms(200)).await;
    crashed_arrival(&obs, DOUBLE, D, "back", 3, ms(200)).await;
    arrivals_are(&obs, DOUBLE, D, &[], "both crashed entrants expired").await;
    let (tb, tq) = (entrant(&ctx, "back", 3).await, entrant(&ctx, "q", 3).await);
    arrivals_are(&obs, DOUBLE, D, &["back", "q"], "back again, q").await;
    let r = ctx.client("r").await.double_barrier(D, 3);
    let ir = timeout(PROMPTLY, r.enter()).await.expect("r enters").unwrap();
    let (ib, iq) = (inside(tb, "back").await, inside(tq, "q").await);
    let st = state_of(&obs, DOUBLE, D).await;
    assert_eq!(st.generation, g);
    let trip = st.entered.expect("the generation entered");
    assert_eq!(ids(&trip.arrivals), names(&["back", "q", "r"]), "{trip:?}");
    assert_eq!(ids(&trip.expired), names(&["gone"]), "{trip:?}");
    all_leave(vec![ib, iq, ir]).await;
}

/// `enter` returns only once every party is inside: fewer wait (the
/// generation has not entered), the last one lets them all in, each with
/// the same members.
pub async fn double_barrier_enter_waits_for_all(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let mut ta = entrant(&ctx, "a", 3).await;
    let tb = entrant(&ctx, "b", 3).await;
    let st = arrivals_are(&obs, DOUBLE, D, &["a", "b"], "two of three").await;
    assert_eq!((st.parties, &st.entered), (Some(3), &None), "{st:?}");
    still_waiting(&mut ta, ms(300), "a, two of three entered").await;
    let c = ctx.client("c").await.double_barrier(D, 3);
    let ic = timeout(PROMPTLY, c.enter()).await.expect("c enters").unwrap();
    let (ia, ib) = (inside(ta, "a").await, inside(tb, "b").await);
    for m in [&ia, &ib, &ic] {
        assert_eq!(m.generation(), st.generation);
        assert_eq!(ids(m.members()), names(&["a", "b", "c"]));
        assert!(m.is_inside());
    }
    let now = state_of(&obs, DOUBLE, D).await;
    assert_eq!(now.generation, st.generation);
    let entered = now.entered.as_ref().expect("the generation entered");
    assert_eq!(ids(&entered.arrivals), names(&["a", "b", "c"]));
    assert_eq!(live(&now), names(&["a", "b", "c"]), "all inside");
    all_leave(vec![ia, ib, ic]).await;
}

/// `leave` removes the member at once (long before its TTL) and returns
/// only once every member has left: then the generation ends (tripped),
/// the next begins, and the first to leave is told promptly.
pub async fn double_barrier_leave_waits_for_all(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let long = default_options().ttl(LOST_REPLY_TTL);
    let a = ctx.client_with("a", long.clone()).await.double_barrier(D, 2);
    let ta = tokio::spawn(async move { a.enter().await });
    let b = ctx.client_with("b", long).await.double_barrier(D, 2);
    let ib = timeout(PROMPTLY, b.enter()).await.expect("b enters").unwrap();
    let ia = inside(ta, "a").await;
    let g = ia.generation();
    let mut la = tokio::spawn(ia.leave());
    let st = arrivals_are(&obs, DOUBLE, D, &["b"], "a left, b inside").await;
    assert_eq!(st.generation, g, "the generation goes on while b is inside");
    assert!(st.entered.is_some(), "{st:?}");
    still_waiting(&mut la, ms(300), "a's leave, b inside").await;
    timeout(PROMPTLY, ib.leave()).await.expect("b leaves").unwrap();
    join(la, PROMPTLY, "a's leave").await.unwrap();
    let now = state_of(&obs, DOUBLE, D).await;
    assert!(now.generation > g, "the generation ended: {now:?}");
    assert!(now.arrivals.is_empty() && now.entered.is_none(), "{now:?}");
    let ended = ended_of(&obs, DOUBLE, D, g).await.expect("remembered");
    assert!(
        matches!(&ended.ended, Ended::Tripped(t) if ids(&t.arrivals) == names(&["a", "b"])),
        "{ended:?}"
    );
}

/// A member that crashes is dropped at its TTL, in either phase: entering,
/// it is not counted (the others do not enter with it); inside, the others'
/// leave returns once its lease expired, and it learns it lost.
pub async fn double_barrier_crashed_member_dropped(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let g = crashed_arrival(&obs, DOUBLE, D, "crashed", 2, ms(300)).await;
    sleep(ms(300 + 200)).await; // let the crashed entrant's TTL run out
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(400)))
        .await;
    let a = a.double_barrier(D, 2);
    let ta = tokio::spawn(async move { a.enter().await });
    let st = arrivals_are(&obs, DOUBLE, D, &["a"], "the crashed entrant dropped").await;
    assert_eq!((st.generation, &st.entered), (g, &None), "{st:?}");
    let b = ctx.client("b").await.double_barrier(D, 2);
    let ib = timeout(PROMPTLY, b.enter()).await.expect("b enters").unwrap();
    let ia = inside(ta, "a").await;
    assert_eq!(ids(ib.members()), names(&["a", "b"]));
    switch.off(); // a crashes inside: no renewal, no leave
    let t0 = Instant::now();
    let st = state_of(&obs, DOUBLE, D).await;
    let a_left = (st.arrivals.iter().find(|m| m.participant.as_str() == "a"))
        .unwrap_or_else(|| panic!("a is inside until its lease runs out: {st:?}"))
        .expires_in;
    let res = timeout(ms(400) + PROMPTLY, ib.leave()).await;
    res.expect("b's leave returns once a's lease expired").unwrap();
    assert!(
        t0.elapsed() + ms(20) >= a_left,
        "b's leave returned {:?} after a crashed, a's lease had {a_left:?} left",
        t0.elapsed()
    );
    timeout(PROMPTLY, ia.lost()).await.expect("a learns it lost");
    let ended = ended_of(&obs, DOUBLE, D, g).await.expect("remembered");
    assert!(
        matches!(&ended.ended, Ended::Tripped(t) if ids(&t.arrivals) == names(&["a", "b"])),
        "{ended:?}"
    );
    drop(ia);
}

/// A member inside keeps its place past its TTL (its guard renews it):
/// after three TTLs both members are still inside the same generation.
pub async fn double_barrier_member_outlives_its_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let a = ctx.client_with("a", short_renewed()).await.double_barrier(D, 2);
    let ta = tokio::spawn(async move { a.enter().await });
    let b = ctx.client_with("b", short_renewed()).await.double_barrier(D, 2);
    let ib = timeout(PROMPTLY, b.enter()).await.expect("b enters").unwrap();
    let ia = inside(ta, "a").await;
    let st = state_of(&obs, DOUBLE, D).await;
    assert_eq!((st.generation, live(&st)), (ia.generation(), names(&["a", "b"])));
    assert!(st.entered.is_some(), "{st:?}");
    // Three TTLs: only renewals keep them inside, never dropped meanwhile.
    stays_renewed(&obs, DOUBLE, D, &st, RENEWED_TTL * 3, "members past their TTL").await;
    assert!(ia.is_inside() && ib.is_inside());
    all_leave(vec![ia, ib]).await;
}

/// An entrant of a generation whose parties are all inside is
/// `TooManyParticipants` at once; the members inside are undisturbed.
pub async fn double_barrier_too_many_participants(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let ta = entrant(&ctx, "a", 2).await;
    let b = ctx.client("b").await.double_barrier(D, 2);
    let ib = timeout(PROMPTLY, b.enter()).await.expect("b enters").unwrap();
    let ia = inside(ta, "a").await;
    let c = ctx.client("c").await.double_barrier(D, 2);
    match at_once(c.enter()).await {
        Err(Error::TooManyParticipants { parties: 2, key }) => assert_eq!(key, D),
        other => panic!("a third entrant of two parties: {other:?}"),
    }
    let st = state_of(&obs, DOUBLE, D).await;
    assert_eq!((st.generation, live(&st)), (ia.generation(), names(&["a", "b"])));
    assert!(ia.is_inside() && ib.is_inside());
    all_leave(vec![ia, ib]).await;
}

/// `reset()` ends the generation whatever its phase: an entrant returns
/// `Broken` (reason `reset`), and so does a member's `leave` once inside.
pub async fn double_barrier_reset_ends_any_phase(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let r = ctx.client("r").await.double_barrier(D, 2);
    let ta = entrant(&ctx, "a", 2).await;
    let st = arrivals_are(&obs, DOUBLE, D, &["a"], "a entering").await;
    let ended = r.reset().await.unwrap();
    assert_eq!(ended.generation, st.generation);
    let e = broken(join(ta, PROMPTLY, "a entering").await, "a entering");
    assert_eq!((e.kind, e.reason.as_str()), ("double_barrier", "reset"));
    assert_eq!((e.generation, e.missing), (st.generation, 1), "{e:?}");
    let ta = entrant(&ctx, "a", 2).await;
    let b = ctx.client("b").await.double_barrier(D, 2);
    let ib = timeout(PROMPTLY, b.enter()).await.expect("b enters").unwrap();
    let ia = inside(ta, "a").await;
    assert_eq!(ia.generation(), ended.next, "the next generation");
    let ended = r.reset().await.unwrap();
    assert_eq!(ended.generation, ia.generation());
    let Ended::Broken(brk) = &ended.ended else {
        panic!("a reset after the parties entered breaks: {ended:?}");
    };
    assert_eq!((&brk.reason, brk.missing), (&BreakReason::Reset, 0), "{brk:?}");
    for m in [ia, ib] {
        let e = broken(timeout(PROMPTLY, m.leave()).await.expect("leave"), "leave");
        assert_eq!((e.reason.as_str(), e.generation), ("reset", ended.generation));
    }
}

/// A reset retried after its reply was lost (applied, then `Unavailable`)
/// ends its generation once: `reset_in(g)` retried after the next
/// generation's members entered returns how `g` ended, and the members
/// stay inside and leave as usual (the generation ends as a trip).
pub async fn double_barrier_reset_retried_after_lost_reply_ends_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let ta = entrant(&ctx, "a", 2).await;
    let g = arrivals_are(&obs, DOUBLE, D, &["a"], "a entering").await.generation;
    let (r, switch) = ctx.switchable_client("r", default_options()).await;
    let r = r.double_barrier(D, 2);
    with_lost_reply(&switch, "the first reset", r.reset_in(g)).await;
    let e = broken(join(ta, PROMPTLY, "a entering").await, "a entering");
    assert_eq!((e.reason.as_str(), e.generation), ("reset", g), "{e:?}");
    let (ta, tb) = (entrant(&ctx, "a", 2).await, entrant(&ctx, "b", 2).await);
    let (ia, ib) = (inside(ta, "a").await, inside(tb, "b").await);
    assert_eq!(ia.generation(), e.next);
    let ended = r.reset_in(g).await.expect("the retry");
    reset_broke(&ended, g, "the retry");
    assert_eq!(ended.next, e.next, "{ended:?}");
    let st = state_of(&obs, DOUBLE, D).await;
    assert_eq!((st.generation, live(&st)), (e.next, names(&["a", "b"])), "inside");
    all_leave(vec![ia, ib]).await;
    let end = ended_of(&obs, DOUBLE, D, e.next).await.expect("remembered");
    assert!(matches!(end.ended, Ended::Tripped(_)), "left, not reset: {end:?}");
}

/// A leave whose `wait_timeout` passes while another member is inside is
/// `Timeout` and breaks nothing: the other stays inside, and its leave
/// ends the generation as a trip.
pub async fn double_barrier_leave_timeout_breaks_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let tb = entrant(&ctx, "b", 2).await;
    arrivals_are(&obs, DOUBLE, D, &["b"], "b entering").await;
    let a = ctx.client("a").await.double_barrier(D, 2);
    let a = a.wait_timeout(Some(ms(300)));
    let ia = timeout(PROMPTLY, a.enter()).await.expect("a enters").unwrap();
    let ib = inside(tb, "b").await;
    let g = ia.generation();
    let res = timeout(ms(300) + PROMPTLY, ia.leave()).await;
    match res.expect("a's leave returns at its deadline") {
        Err(Error::Timeout { .. }) => {}
        other => panic!("a's leave with b inside: expected Timeout, got {other:?}"),
    }
    let st = state_of(&obs, DOUBLE, D).await;
    assert_eq!((st.generation, live(&st)), (g, names(&["b"])), "{st:?}");
    assert!(st.entered.is_some() && ib.is_inside(), "{st:?}");
    timeout(PROMPTLY, ib.leave()).await.expect("b leaves").unwrap();
    let ended = ended_of(&obs, DOUBLE, D, g).await.expect("remembered");
    assert!(matches!(ended.ended, Ended::Tripped(_)), "{ended:?}");
}

/// `enter()` reads the generation, then arrives in it, as a cyclic
/// barrier's `wait()` does: when that generation ended before the arrival
/// reached it without counting it (the members of the round before left,
/// or someone reset it), the entrant arrives in the next one instead and
/// enters there with the others of its round.
pub async fn double_barrier_enter_moves_past_a_generation_ended_without_it(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    for (name, how) in [("passed", true), ("reset", false)] {
        let other = ctx.backend().await;
        let a = if how {
            BeforeArrive::client(&ctx, "a", others_pass(other, name)).await
        } else {
            BeforeArrive::client(&ctx, "a", someone_resets_kind(other, DOUBLE, name)).await
        };
        let g = state_of(&obs, DOUBLE, name).await.generation;
        let a = a.double_barrier(name, 2);
        let mut ta = tokio::spawn(async move { a.enter().await });
        let st = tokio::select! {
            st = arrivals_are(&obs, DOUBLE, name, &["a"], name) => st,
            res = &mut ta => panic!("{name}: a's enter returned instead: {res:?}"),
        };
        let ended = ended_of(&obs, DOUBLE, name, g).await.expect("remembered");
        assert_eq!(st.generation, ended.next, "{name}: a enters the next: {st:?}");
        let b = ctx.client("b").await.double_barrier(name, 2);
        let ib = timeout(PROMPTLY, b.enter()).await.expect("b enters").unwrap();
        let ia = inside(ta, name).await;
        assert_eq!((ia.generation(), ib.generation()), (st.generation, st.generation));
        assert_eq!(ids(ia.members()), names(&["a", "b"]), "{name}");
        all_leave(vec![ia, ib]).await;
    }
}

/// Parties 0 or over `MAX_PARTIES`, a bad name, a bad participant and bad
/// options are `InvalidArgument` at once, and nobody enters.
pub async fn double_barrier_invalid_input_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let obs = ctx.backend().await;
    let a = ctx.client("a").await;
    let long = "p".repeat(513);
    let bad = [
        ("parties 0", a.double_barrier(D, 0)),
        ("parties over MAX_PARTIES", a.double_barrier(D, MAX_PARTIES + 1)),
        ("empty participant", a.double_barrier(D, 2).participant("")),
        ("513-byte participant", a.double_barrier(D, 2).participant(&long)),
        ("zero ttl", a.double_barrier(D, 2).ttl(Duration::ZERO)),
        ("empty name", a.double_barrier("", 2)),
    ];
    for (what, barrier) in bad {
        assert_invalid(at_once(barrier.enter()).await, what);
    }
    assert_invalid(at_once(a.double_barrier("", 2).state()).await, "state");
    let st = state_of(&obs, DOUBLE, D).await;
    assert!(st.arrivals.is_empty() && st.parties.is_none(), "{st:?}");
}
}
