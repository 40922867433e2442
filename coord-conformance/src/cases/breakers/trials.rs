//! Trials: half-open after the open time, trials limited cluster-wide,
//! closing and reopening on their outcomes, open times growing, crashed
//! trials freeing their slot, outcomes of old generations ignored,
//! generations increasing.

use super::*;

/// Opens `name` through the SPI (4 failures reported in its generation);
/// the state after.
async fn open_spi(b: &dyn BreakerBackend, p: &Policy) -> coord_api::spi::BreakerState {
    let name = key(B);
    let g = b.state(&name, p, 0).await.unwrap().generation;
    let r = b
        .report(&name, p, g, &instance("a"), Tally::new(4, 4, 0), 0)
        .await
        .unwrap();
    assert!(r.counted);
    assert_eq!(r.state.phase, Phase::Open);
    r.state
}

/// Opens the breaker (policy `p`), waits past its open time and takes a
/// trial (5 s) for `t`: the half-open generation.
async fn trial_of(b: &dyn BreakerBackend, p: &Policy, t: &HolderId) -> u64 {
    open_spi(b, p).await;
    sleep(ms(150)).await;
    let Trial::Granted { state, .. } = b.trial(&key(B), p, t, ms(5000), 0).await.unwrap() else {
        panic!("a trial");
    };
    state.generation
}

/// A holder of `instance`.
fn holder(name: &str) -> HolderId {
    HolderId::new(instance(name))
}

/// `quick` with a 300 ms open time and 10 s trials: a slot freed within
/// [`PROMPTLY`] was given back, not lapsed.
fn long_trials(c: &Client) -> Breaker {
    quick(c)
        .open_for(ms(300))
        .trial_ttl(ms(10_000))
        .build()
        .unwrap()
}

/// Opens the breaker through `a` (four failures), `b` told of it, and
/// waits past the open time: the next permit asks for a trial.
async fn half_open_for(a: &Breaker, b: &Breaker) {
    b.state().await.unwrap();
    outcomes(a, 0, 4).await;
    phase_within(b, Phase::Open, "told of the open").await;
    sleep(ms(350)).await;
}

/// The one trial slot is free again within [`PROMPTLY`] (`what`, given
/// back), nothing counted; `b`'s trial then takes it and closes the
/// breaker.
async fn another_trial_decides(ctx: &Ctx<'_>, b: &Breaker, what: &str) {
    let backend = ctx.backend().await;
    let (spi, p) = (breakers(&backend), policy(100, 1));
    let freed = eventually(PROMPTLY, || async {
        let s = spi.state(&key(B), &p, 0).await.unwrap();
        (s.trials_live == 0).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("{what} freed long before its 10 s TTL"));
    let done = (freed.phase, freed.trials_done);
    assert_eq!(
        done,
        (Phase::HalfOpen, Tally::default()),
        "nothing counted: {freed:?}"
    );
    let next = b.permit().await.expect("another instance's trial");
    assert!(next.is_trial());
    next.success();
    phase_within(b, Phase::Closed, "after the other trial passed").await;
}

cases! {
    family: "breakers", needs: [Need::Breakers];

/// After the open time the breaker admits a trial call (half-open), and
/// refuses the calls beyond the trials.
pub async fn breaker_half_open_after_open_time(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = short_open(&ctx.client("a").await);
    outcomes(&b, 0, 4).await;
    refused(b.permit().await, "open");
    sleep(ms(350)).await;
    let trial = b.permit().await.expect("a trial after the open time");
    assert!(trial.is_trial());
    assert_eq!(b.state().await.unwrap().phase, Phase::HalfOpen);
    refused(b.permit().await, "the one trial is taken");
    drop(trial);
}

/// At most `trials` trials at once, across instances.
pub async fn breaker_trials_limited_cluster_wide(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backends = [ctx.backend().await, ctx.backend().await, ctx.backend().await];
    let p = policy(100, 2);
    open_spi(breakers(&backends[0]), &p).await;
    sleep(ms(150)).await;
    let mut granted = 0;
    let name = key(B);
    for (i, backend) in backends.iter().cycle().take(6).enumerate() {
        let who = holder(&format!("i{i}"));
        let t = breakers(backend).trial(&name, &p, &who, ms(5000), 0);
        if matches!(t.await.unwrap(), Trial::Granted { .. }) {
            granted += 1;
        }
    }
    assert_eq!(granted, 2, "2 trials permitted, 6 asked");
}

/// A successful trial closes the breaker for every instance.
pub async fn breaker_trials_pass_and_close(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (short_open(&ctx.client("a").await), short_open(&ctx.client("b").await));
    b.state().await.unwrap();
    outcomes(&a, 0, 4).await;
    sleep(ms(350)).await;
    a.permit().await.expect("a trial").success();
    phase_within(&b, Phase::Closed, "after the trial passed").await;
    assert!(matches!(last_cause(&ctx).await, Cause::TrialsPassed(_)));
    b.permit().await.expect("closed again").success();
}

/// A failed trial opens the breaker again.
pub async fn breaker_trial_failure_reopens(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = short_open(&ctx.client("a").await);
    outcomes(&b, 0, 4).await;
    sleep(ms(350)).await;
    b.permit().await.expect("a trial").failure();
    phase_within(&b, Phase::Open, "after the trial failed").await;
    assert!(matches!(last_cause(&ctx).await, Cause::TrialsFailed(_)));
    refused(b.permit().await, "open again");
}

/// Each open in a row lasts twice the one before, up to the maximum; a
/// close starts over.
pub async fn breaker_open_time_grows_and_resets(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = Policy { max_open_for: ms(400), ..policy(100, 1) };
    let left = open_spi(b, &p).await.retry_after.unwrap();
    assert!(left <= ms(100), "first open: {left:?}");
    let mut wait = ms(110);
    for (low, high) in [(100, 200), (200, 400), (200, 400)] {
        sleep(wait).await;
        let h = holder("t");
        let g = match b.trial(&key(B), &p, &h, ms(5000), 0).await.unwrap() {
            Trial::Granted { state, .. } => state.generation,
            other => panic!("a trial after the open time, got {other:?}"),
        };
        let r = b.trial_done(&key(B), &p, g, &h, Tally::new(1, 1, 0), 0).await.unwrap();
        let left = r.state.retry_after.expect("open again");
        assert!(left > ms(low) && left <= ms(high), "open for {left:?}");
        wait = left + ms(10);
    }
    sleep(wait).await;
    let h = holder("t");
    let Trial::Granted { state, .. } = b.trial(&key(B), &p, &h, ms(5000), 0).await.unwrap() else {
        panic!("a trial");
    };
    let r = b.trial_done(&key(B), &p, state.generation, &h, Tally::new(1, 0, 0), 0).await.unwrap();
    assert_eq!(r.state.phase, Phase::Closed);
    let left = open_spi(b, &p).await.retry_after.unwrap();
    assert!(left <= ms(100), "after a close, the first open time again: {left:?}");
}

/// A trial whose holder never ends it (crashed) frees its slot at its TTL.
pub async fn breaker_crashed_trial_frees_its_slot(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = policy(100, 1);
    open_spi(b, &p).await;
    sleep(ms(150)).await;
    let crashed = b.trial(&key(B), &p, &holder("crashed"), ms(300), 0).await.unwrap();
    assert!(matches!(crashed, Trial::Granted { .. }));
    let other = b.trial(&key(B), &p, &holder("other"), ms(300), 0).await.unwrap();
    assert!(matches!(other, Trial::Refused(_)), "the slot is taken");
    sleep(ms(350)).await;
    let other = b.trial(&key(B), &p, &holder("other"), ms(300), 0).await.unwrap();
    assert!(matches!(other, Trial::Granted { .. }), "the crashed trial's slot is free");
}

/// A trial call slower than the trial TTL keeps its slot while its permit
/// lives (renewed in the background): another instance is refused a trial
/// meanwhile, and the slow trial's failure counts (the breaker opens
/// again).
pub async fn breaker_slow_trial_keeps_its_slot(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let build = |c: &Client| quick(c).open_for(ms(300)).trial_ttl(ms(300)).build().unwrap();
    let (a, b) = (build(&ctx.client("a").await), build(&ctx.client("b").await));
    b.state().await.unwrap();
    outcomes(&a, 0, 4).await;
    sleep(ms(350)).await;
    let slow = a.permit().await.expect("a trial");
    assert!(slow.is_trial());
    sleep(ms(900)).await; // three trial TTLs
    refused(b.permit().await, "the slow trial still runs");
    slow.failure();
    phase_within(&b, Phase::Open, "after the slow trial failed").await;
    assert!(matches!(last_cause(&ctx).await, Cause::TrialsFailed(_)));
}

/// A trial cancelled once it was slower than the slow-call duration ends
/// as a slow trial at once: it is counted and its slot freed (the breaker
/// opens again, a slow rate of 100 %), not left taken until its TTL.
pub async fn breaker_cancelled_slow_trial_is_counted_slow(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let build = |c: &Client| {
        (quick(c).open_for(ms(300)).trial_ttl(ms(5000)))
            .slow_calls(ms(20), 50.0)
            .build()
            .unwrap()
    };
    let (a, b) = (build(&ctx.client("a").await), build(&ctx.client("b").await));
    b.state().await.unwrap();
    outcomes(&a, 0, 4).await;
    sleep(ms(350)).await;
    let trial = a.call(std::future::pending::<Result<(), ()>>());
    assert!(timeout(ms(100), trial).await.is_err(), "cancelled when slow");
    phase_within(&b, Phase::Open, "after the cancelled slow trial").await;
    match last_cause(&ctx).await {
        Cause::TrialsFailed(t) => assert_eq!((t.calls, t.slow), (1, 1)),
        other => panic!("ended by its trial, not {other:?}"),
    }
}

/// A trial cancelled before any verdict (its permit dropped unrecorded,
/// with no slow-call duration reached) gives its slot back at once,
/// counting nothing: another instance's trial starts without waiting for
/// the cancelled one's TTL, and its outcome alone decides.
pub async fn breaker_cancelled_trial_gives_its_slot_back(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (long_trials(&ctx.client("a").await), long_trials(&ctx.client("b").await));
    half_open_for(&a, &b).await;
    let cancelled = a.permit().await.expect("a trial");
    assert!(cancelled.is_trial());
    drop(cancelled);
    another_trial_decides(&ctx, &b, "the cancelled trial's slot").await;
}

/// A trial asked for by a call cancelled before its answer came (the
/// request applied, its reply late) is given back, uncounted: the slot is
/// free again long before the trial TTL, and another instance's trial
/// decides.
pub async fn breaker_trial_of_a_cancelled_ask_is_given_back(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let (a, b) = (long_trials(&a), long_trials(&ctx.client("b").await));
    half_open_for(&a, &b).await;
    switch.late_replies("trial", ms(3000));
    let gave_up = timeout(ms(200), a.permit()).await;
    assert!(gave_up.is_err(), "cancelled while its answer was late");
    switch.late_replies("trial", Duration::ZERO);
    another_trial_decides(&ctx, &b, "the cancelled ask's trial").await;
}

/// A trial given back (its call cancelled before any verdict) frees its
/// slot and counts nothing: another holder's trial is granted at once, and
/// the given-back trial's late end or renewal counts and takes nothing. A
/// give-back by a holder without a trial, or naming another generation,
/// changes nothing.
pub async fn breaker_trial_given_back_frees_its_slot(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = policy(100, 1);
    let (t, u, name) = (holder("t"), holder("u"), key(B));
    let g = trial_of(b, &p, &t).await;
    let other = b.trial(&name, &p, &u, ms(5000), 0).await.unwrap();
    assert!(matches!(other, Trial::Refused(_)), "the one slot is taken: {other:?}");
    for (other_g, who, what) in [(g - 1, &t, "another generation"), (g, &holder("x"), "no trial")] {
        let r = b.give_back_trial(&name, &p, other_g, who, 0).await.unwrap();
        assert!(!r.counted, "{what}: given back");
        assert_eq!(r.state.trials_live, 1, "{what}: {:?}", r.state);
    }
    let r = b.give_back_trial(&name, &p, g, &t, 0).await.unwrap();
    assert!(r.counted, "its own trial given back");
    let s = &r.state;
    let seen = (s.generation, s.phase, s.trials_live, s.trials_done);
    assert_eq!(seen, (g, Phase::HalfOpen, 0, Tally::default()), "{s:?}");
    let late = b.trial_done(&name, &p, g, &t, Tally::one(true, false), 0).await.unwrap();
    assert!(!late.counted, "an end after the give-back: {late:?}");
    let renewed = b.renew_trial(&name, &p, g, &t, ms(5000), 0).await.unwrap();
    assert!(matches!(renewed, Trial::Refused(_)), "a renewal after it: {renewed:?}");
    let other = b.trial(&name, &p, &u, ms(5000), 0).await.unwrap();
    assert!(matches!(other, Trial::Granted { .. }), "the slot given back: {other:?}");
}

/// A trial's renewal keeps its slot in its own generation only: a trial
/// permit of a half-open generation that ended while its call ran (here a
/// reset, then an open, then a new half-open generation) takes no slot of
/// the next half-open generation by renewing, where its outcome would never
/// count: that generation's trial goes to another instance.
pub async fn breaker_trial_renewal_takes_no_slot_of_a_later_generation(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let build = |c: &Client| quick(c).open_for(ms(300)).trial_ttl(ms(3000)).build().unwrap();
    let (a, b) = (build(&ctx.client("a").await), build(&ctx.client("b").await));
    outcomes(&a, 0, 4).await;
    sleep(ms(350)).await;
    let old = a.permit().await.expect("a trial");
    assert!(old.is_trial());
    // Before the permit's first renewal (a third of its 3 s TTL): reset,
    // open again, and half-open again once the 100 ms open time passed.
    let backend = ctx.backend().await;
    let (spi, p, name) = (breakers(&backend), policy(100, 1), key(B));
    let s = spi.manual(&name, &p, Action::Reset, &instance("ops"), "", 0).await.unwrap();
    let x = instance("x");
    let r = spi.report(&name, &p, s.generation, &x, Tally::new(4, 4, 0), 0);
    assert_eq!(r.await.unwrap().state.phase, Phase::Open);
    sleep(ms(150)).await;
    let half = spi.state(&name, &p, 0).await.unwrap();
    assert_eq!((half.phase, half.trials_live), (Phase::HalfOpen, 0));
    sleep(ms(1300)).await; // past the old permit's first renewal
    let s = spi.state(&name, &p, 0).await.unwrap();
    assert_eq!(s.generation, half.generation, "{s:?}");
    assert_eq!(s.trials_live, 0, "the old permit's renewal took a slot: {s:?}");
    let trial = b.permit().await.expect("the new generation's trial");
    assert!(trial.is_trial());
    old.success();
    trial.success();
    phase_within(&b, Phase::Closed, "after the new generation's trial").await;
}

/// A renewal answered after its trial's end (sent before it) takes no
/// slot: the trial counted, its holder holds none, so the renewal is
/// refused and the generation's other slot stays free for another trial.
pub async fn breaker_trial_renewal_after_its_end_takes_no_slot(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = policy(100, 2);
    let (t, name) = (holder("t"), key(B));
    let g = trial_of(b, &p, &t).await;
    let renewed = b.renew_trial(&name, &p, g, &t, ms(5000), 0).await.unwrap();
    assert!(matches!(renewed, Trial::Granted { .. }), "its live trial: {renewed:?}");
    let r = b.trial_done(&name, &p, g, &t, Tally::one(false, false), 0).await.unwrap();
    assert!(r.counted);
    let late = b.renew_trial(&name, &p, g, &t, ms(5000), 0).await.unwrap();
    let Trial::Refused(s) = late else {
        panic!("a renewal after the end took a slot: {late:?}");
    };
    assert_eq!((s.generation, s.trials_live, s.trials_done.calls), (g, 0, 1), "{s:?}");
    let other = b.trial(&name, &p, &holder("u"), ms(5000), 0).await.unwrap();
    assert!(matches!(other, Trial::Granted { .. }), "the free slot: {other:?}");
}

/// A trial's end carries one call's outcome: a tally of none or of several
/// is `InvalidArgument` naming the breaker, and changes nothing (the trial
/// keeps its slot, nothing is counted); one call's is then counted.
pub async fn breaker_trial_outcome_is_one_call(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = policy(100, 2);
    let (t, name) = (holder("t"), key(B));
    let g = trial_of(b, &p, &t).await;
    for bad in [Tally::new(0, 0, 0), Tally::new(2, 2, 0), Tally::new(3, 0, 0)] {
        match b.trial_done(&name, &p, g, &t, bad, 0).await {
            Err(Error::InvalidArgument { message }) => {
                assert!(message.contains(B), "{bad:?}: names the breaker: {message}");
            }
            other => panic!("{bad:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    let s = b.state(&name, &p, 0).await.unwrap();
    assert_eq!((s.generation, s.phase, s.trials_live), (g, Phase::HalfOpen, 1), "{s:?}");
    assert_eq!(s.trials_done, Tally::default(), "nothing counted");
    let r = b.trial_done(&name, &p, g, &t, Tally::one(false, false), 0).await.unwrap();
    assert!(r.counted);
    assert_eq!((r.state.phase, r.state.trials_done.calls), (Phase::HalfOpen, 1));
}

/// Outcomes and trial ends tagged with another generation change nothing.
pub async fn breaker_outcomes_of_an_old_generation_are_ignored(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = policy(100, 1);
    let first = b.state(&key(B), &p, 0).await.unwrap().generation;
    open_spi(b, &p).await;
    let r = b.report(&key(B), &p, first, &instance("a"), Tally::new(9, 0, 0), 0).await.unwrap();
    assert!(!r.counted, "a report of the closed generation, after the open");
    sleep(ms(150)).await;
    let (h1, name) = (holder("t"), key(B));
    let Trial::Granted { state, .. } = b.trial(&key(B), &p, &h1, ms(5000), 0).await.unwrap() else {
        panic!("a trial");
    };
    let r = b.trial_done(&name, &p, state.generation - 1, &h1, Tally::new(1, 0, 0), 0);
    assert!(!r.await.unwrap().counted, "a trial end of another generation");
    let x = holder("x");
    let r = b.trial_done(&name, &p, state.generation, &x, Tally::new(1, 0, 0), 0);
    assert!(!r.await.unwrap().counted, "a trial end of no trial");
    let s = b.state(&key(B), &p, 0).await.unwrap();
    assert_eq!((s.phase, s.trials_live), (Phase::HalfOpen, 1));
    let ops = instance("ops");
    let s = b.manual(&name, &p, Action::Reset, &ops, "", 0).await.unwrap();
    assert_eq!(s.phase, Phase::Closed);
    let r = b.report(&name, &p, first, &instance("a"), Tally::new(4, 4, 0), 0).await.unwrap();
    assert!(!r.counted, "a report of an older closed generation");
    assert_eq!((r.state.phase, r.state.window.calls), (Phase::Closed, 0));
}

/// Every transition bumps the generation; the transitions carry theirs.
/// Every reply names the record by the generation it was born with
/// (`born`), the same whatever happened since: an instance tells a record
/// lost and born again by it.
pub async fn breaker_generations_increase(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = policy(100, 1);
    let first = b.state(&key(B), &p, 0).await.unwrap();
    assert_eq!(first.born, first.generation, "named by its first generation");
    let mut gens = vec![first.generation];
    let opened = open_spi(b, &p).await;
    gens.push(opened.generation);
    sleep(ms(150)).await;
    gens.push(b.state(&key(B), &p, 0).await.unwrap().generation);
    let mut borns = vec![opened.born];
    for action in [Action::ForceOpen, Action::Disable, Action::Reset] {
        let s = b.manual(&key(B), &p, action, &instance("ops"), "", 0).await.unwrap();
        gens.push(s.generation);
        borns.push(s.born);
    }
    for w in gens.windows(2) {
        assert!(w[0] < w[1], "generations {gens:?}");
    }
    assert!(borns.iter().all(|b| *b == first.born), "born {borns:?}, first {first:?}");
    let s = b.state(&key(B), &p, gens[0]).await.unwrap();
    let told: Vec<u64> = s.transitions.iter().map(|t| t.generation).collect();
    assert_eq!(told, gens[1..], "the transitions after the first generation");
}

}
