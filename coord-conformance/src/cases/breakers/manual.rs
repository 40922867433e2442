//! Manual actions (force-open, disable, reset, recorded with who and why),
//! instances joining, transitions observed, limits, and an unreachable
//! backend (fail closed, fail open, local fallback).

use super::*;

/// Waits (bounded by [`PROMPTLY`]) for the next event of `events` that is
/// a transition; its phases.
async fn next_transition(
    events: &mut coord_api::BreakerEvents,
    what: &str,
) -> coord_api::spi::Transition {
    loop {
        match timeout(PROMPTLY, events.next()).await {
            Ok(Some(BreakerEvent::Transition(t))) => return t,
            Ok(Some(_)) => continue,
            other => panic!("{what}: no transition within {PROMPTLY:?}: {other:?}"),
        }
    }
}

/// Waits (bounded) for the event `want` of `events`.
async fn event_within(
    events: &mut coord_api::BreakerEvents,
    want: fn(&BreakerEvent) -> bool,
    what: &str,
) {
    loop {
        match timeout(PROMPTLY, events.next()).await {
            Ok(Some(e)) if want(&e) => return,
            Ok(Some(_)) => continue,
            other => panic!("{what}: not seen within {PROMPTLY:?}: {other:?}"),
        }
    }
}

/// Cuts `b`'s client off with `switch`, and has `b` find out (a read
/// fails): its unreachable policy decides from then on.
async fn cut_off(b: &Breaker, switch: &Switch) {
    switch.off();
    assert!(b.state().await.is_err(), "the backend is cut off");
}

/// Four failures through `b`'s local breaker, which then refuses.
async fn open_locally(b: &Breaker) {
    for _ in 0..4 {
        b.permit()
            .await
            .expect("the local breaker is closed")
            .failure();
    }
    refused(b.permit().await, "the local breaker opened");
}

/// The events of `b` from `events` up to its transition to `generation`
/// (each within [`PROMPTLY`]): the transitions' generations, and whether a
/// `Missed` came among them.
async fn told_until(
    events: &mut coord_api::BreakerEvents,
    generation: u64,
    what: &str,
) -> (Vec<u64>, Vec<u64>) {
    let (mut told, mut missed) = (Vec::new(), Vec::new());
    loop {
        match timeout(PROMPTLY, events.next()).await {
            Ok(Some(BreakerEvent::Transition(t))) => {
                told.push(t.generation);
                if t.generation >= generation {
                    return (told, missed);
                }
            }
            Ok(Some(BreakerEvent::Missed { after })) => missed.push(after),
            Ok(Some(_)) => continue,
            other => panic!("{what}: {generation} not told within {PROMPTLY:?}: {other:?}"),
        }
    }
}

/// `n` transitions of the breaker by another instance (disables, each
/// one); their generations.
async fn transitions_by_another(backend: &DynBackend, n: usize) -> Vec<u64> {
    let (name, p, ops) = (key(B), policy(100, 1), instance("ops"));
    let mut made = Vec::new();
    for _ in 0..n {
        let s = breakers(backend).manual(&name, &p, Action::Disable, &ops, "", 0);
        made.push(s.await.expect("a disable").generation);
    }
    made
}

cases! {
    family: "breakers", needs: [Need::Breakers];

/// A forced open refuses on every instance, past any open time, until a
/// reset.
pub async fn breaker_force_open_refuses_everywhere(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (short_open(&ctx.client("a").await), short_open(&ctx.client("b").await));
    b.state().await.unwrap();
    a.force_open("maintenance").await.unwrap();
    phase_within(&b, Phase::ForcedOpen, "forced open").await;
    sleep(ms(350)).await;
    refused(b.permit().await, "forced open, past the open time");
    a.reset("done").await.unwrap();
    phase_within(&b, Phase::Closed, "reset").await;
    b.permit().await.expect("closed").success();
}

/// A disabled breaker admits every call and counts nothing.
pub async fn breaker_disable_passes_and_counts_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = breaker(&ctx.client("a").await);
    b.disable("noisy").await.unwrap();
    outcomes(&b, 0, 10).await;
    let s = b.state().await.unwrap();
    assert_eq!((s.phase, s.window.calls), (Phase::Disabled, 0));
}

/// A reset closes the breaker with a fresh window and adopts the policy of
/// the instance that reset it.
pub async fn breaker_reset_closes_and_adopts_policy(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = breaker(&ctx.client("a").await);
    outcomes(&a, 0, 4).await;
    let b = quick(&ctx.client("b").await).minimum_calls(2).build().unwrap();
    let s = b.reset("new policy").await.unwrap();
    assert_eq!((s.phase, s.window.calls, s.policy.minimum_calls), (Phase::Closed, 0, 2));
    outcomes(&b, 0, 2).await;
    assert_eq!(b.state().await.unwrap().phase, Phase::Open, "2 calls decide now");
}

/// Manual actions are recorded with the instance that took them and why.
pub async fn breaker_manual_actions_are_recorded(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = breaker(&ctx.client("ops-1").await);
    b.force_open("db failover").await.unwrap();
    let s = breaker(&ctx.client("b").await).state().await.unwrap();
    let m = s.manual.expect("recorded");
    assert_eq!((m.action, m.by.as_str(), m.why.as_str()), (Action::ForceOpen, "ops-1", "db failover"));
    match last_cause(&ctx).await {
        Cause::Manual(m) => assert_eq!(m.by, "ops-1"),
        other => panic!("caused by the action, not {other:?}"),
    }
}

/// An instance joining (with another policy) finds the breaker as it is:
/// open stays open, the window and policy are kept.
pub async fn breaker_joining_instance_never_resets(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = breaker(&ctx.client("a").await);
    outcomes(&a, 0, 4).await;
    let late = quick(&ctx.client("late").await).minimum_calls(50).open_for(ms(9000)).build().unwrap();
    let s = late.state().await.unwrap();
    assert_eq!((s.phase, s.policy.minimum_calls), (Phase::Open, 4));
    refused(late.permit().await, "the joining instance");
}

/// The policy of the instance that used the breaker first is the one in
/// force; another instance's does not decide.
pub async fn breaker_policy_of_the_first_instance_wins(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = breaker(&ctx.client("a").await);
    a.state().await.unwrap();
    let b = quick(&ctx.client("b").await).minimum_calls(1).build().unwrap();
    outcomes(&b, 0, 1).await;
    let s = b.state().await.unwrap();
    assert_eq!((s.phase, s.policy.minimum_calls), (Phase::Closed, 4));
}

/// Another instance's event stream tells every transition, in order.
pub async fn breaker_transitions_stream_in_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (short_open(&ctx.client("a").await), short_open(&ctx.client("b").await));
    b.state().await.unwrap();
    let mut events = b.events();
    outcomes(&a, 0, 4).await;
    sleep(ms(350)).await;
    a.permit().await.expect("a trial").success();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_transition(&mut events, "b's stream").await);
    }
    let phases: Vec<_> = got.iter().map(|t| (t.from, t.to)).collect();
    use Phase::*;
    assert_eq!(phases, [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
    assert!(got.windows(2).all(|w| w[0].generation < w[1].generation));
}

/// A reader from before the kept transitions is told it missed some: the
/// state names the last transition dropped (`kept_after`), every one after
/// it kept.
pub async fn breaker_transition_log_tells_what_it_lost(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let p = policy(100, 1);
    let first = b.state(&key(B), &p, 0).await.unwrap();
    assert_eq!(first.kept_after, 0, "nothing dropped yet");
    let ops = instance("ops");
    let mut made = Vec::new();
    for _ in 0..20 {
        let s = b.manual(&key(B), &p, Action::Disable, &ops, "", 0).await.unwrap();
        made.push(s.generation);
    }
    let s = b.state(&key(B), &p, first.generation).await.unwrap();
    let kept = coord_api::spi::breaker::TRANSITIONS_KEPT;
    assert_eq!(s.kept_after, made[made.len() - kept - 1], "the last one dropped");
    assert!(s.missed_after(first.generation));
    assert_eq!(s.transitions.len(), kept);
    assert_eq!(s.transitions[0].generation, made[made.len() - kept]);
    let recent = s.transitions[0].generation;
    let s = b.state(&key(B), &p, recent).await.unwrap();
    assert!(!s.missed_after(recent) && !s.missed_after(s.kept_after));
}

/// An instance that was away while the backend dropped transitions it was
/// not told is told it missed some, then the kept ones, in order.
pub async fn breaker_events_tell_what_an_instance_missed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let (client, switch) = ctx.switchable_client("b", default_options()).await;
    let b = breaker(&client);
    let first = b.state().await.unwrap().generation;
    let mut events = b.events();
    // Nothing of b's reaches the backend meanwhile (its background reads
    // wait on the way, and are applied after).
    switch.holding();
    let kept = coord_api::spi::breaker::TRANSITIONS_KEPT;
    let made = transitions_by_another(&backend, kept + 2).await;
    switch.on();
    b.state().await.unwrap();
    // What b was told, in order: a transition's generation, or the
    // generation a `Missed` is after (negated).
    let last = made[made.len() - 1];
    let mut log: Vec<i128> = Vec::new();
    while log.last().is_none_or(|&g| g != last as i128) {
        match timeout(PROMPTLY, events.next()).await {
            Ok(Some(BreakerEvent::Transition(t))) => log.push(t.generation as i128),
            Ok(Some(BreakerEvent::Missed { after })) => log.push(-(after as i128)),
            Ok(Some(_)) => {}
            other => panic!("b: {last} not told within {PROMPTLY:?}: {other:?} ({log:?})"),
        }
    }
    // A call of b's in flight before the switch held (a background read)
    // may have shown it the first transitions: it was told those, and
    // misses only what was dropped after the last it knew.
    let dropped = made[made.len() - kept - 1];
    let as_made = |told: &[i128]| told.iter().map(|&g| g as u64).collect::<Vec<_>>();
    match log.iter().position(|&g| g < 0) {
        Some(at) => {
            let before = as_made(&log[..at]);
            let knew = before.last().copied().unwrap_or(first);
            assert_eq!(before, made[..before.len()], "told before: {log:?}");
            assert!(knew < dropped, "missed though it knew {knew}: {log:?}");
            assert_eq!(-log[at], knew as i128, "missed after what it knew: {log:?}");
            let after = as_made(&log[at + 1..]);
            assert_eq!(after, made[made.len() - kept..], "then every kept one: {log:?}");
        }
        None => assert_eq!(as_made(&log), made, "nothing missed, all told: {log:?}"),
    }
}

/// Replies that cross tell no gap that is not there: a request this
/// instance sent before it read on (a disable, slowed on its way) is
/// answered after the backend dropped transitions from before that read,
/// none of which this instance had not been told. It is told every
/// transition, each once, in order, and no `Missed`.
pub async fn breaker_crossed_replies_tell_no_false_miss(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let (client, switch) = ctx.switchable_client("b", default_options()).await;
    let b = quick(&client).backend_timeout(ms(5000)).build().unwrap();
    b.state().await.unwrap();
    let mut events = b.events();
    switch.slow_requests("manual", ms(1500));
    let slow = {
        let b = b.clone();
        tokio::spawn(async move { b.disable("slow").await })
    };
    let on_its_way = eventually(PROMPTLY, || async { (switch.held("manual") == 1).then_some(()) });
    assert!(on_its_way.await.is_some(), "the slow disable is on its way");
    let kept = coord_api::spi::breaker::TRANSITIONS_KEPT;
    transitions_by_another(&backend, kept - 1).await;
    b.state().await.unwrap();
    // The backend now drops two transitions b was told, and keeps the rest.
    let others = transitions_by_another(&backend, 2).await[1];
    let s = join(slow, ms(5000), "the slow disable").await.unwrap();
    assert!(
        s.generation > others,
        "the slow disable reached the backend after the others (set 1.5 s late)"
    );
    let (told, missed) = told_until(&mut events, s.generation, "b").await;
    assert_eq!(missed, [] as [u64; 0], "no transition was missed: told {told:?}");
    assert_eq!(told.len(), kept + 2, "every transition once: {told:?}");
    assert!(told.windows(2).all(|w| w[0] < w[1]), "in order: {told:?}");
}

/// Bad policies, options, names and reasons are `InvalidArgument` naming
/// the breaker, before any backend call.
pub async fn breaker_bad_policy_refused_before_io(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, calls) = counted_client(&ctx, "a", false).await;
    let bad = [
        quick(&client).count_window(0),
        quick(&client).count_window(100_001),
        quick(&client).time_window(ms(10)),
        quick(&client).failure_rate(101.0),
        quick(&client).failure_rate(f64::NEG_INFINITY),
        quick(&client).failure_rate(f64::INFINITY),
        quick(&client).failure_rate(f64::NAN),
        quick(&client).slow_calls(ms(10), f64::INFINITY),
        quick(&client).slow_calls(ms(10), -1.0),
        quick(&client).trials(0),
        quick(&client).quorum(0, ms(10)),
        quick(&client).open_for(Duration::ZERO),
        quick(&client).growing_open_for(ms(1)),
        quick(&client).flush_interval(Duration::ZERO),
        quick(&client).backend_timeout(MAX_TTL + ms(1)),
    ];
    for (i, builder) in bad.into_iter().enumerate() {
        match builder.build() {
            Err(Error::InvalidArgument { message }) => {
                assert!(message.contains(B), "case {i} names the breaker: {message}");
            }
            other => panic!("case {i}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert_invalid(client.breaker("").build(), "an empty name");
    let b = breaker(&client);
    assert_invalid(b.force_open(&"x".repeat(257)).await, "a reason over 256 bytes");
    assert_eq!(calls.load(SeqCst), 0, "nothing reached the backend");
}

/// Unreachable, failing closed: every call refused, an event; reachable
/// again, the shared state decides again.
pub async fn breaker_unreachable_fail_closed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = quick(&client).on_unreachable(Unreachable::FailClosed).build().unwrap();
    b.state().await.unwrap();
    let mut events = b.events();
    cut_off(&b, &switch).await;
    event_within(&mut events, |e| matches!(e, BreakerEvent::Unreachable { .. }), "lost").await;
    assert!(!b.backend_reachable());
    refused(b.permit().await, "failing closed");
    switch.on();
    b.state().await.unwrap();
    event_within(&mut events, |e| *e == BreakerEvent::Reachable, "found").await;
    b.permit().await.expect("closed, reachable").success();
}

/// Unreachable, failing open: an open breaker's calls pass.
pub async fn breaker_unreachable_fail_open(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = quick(&client).on_unreachable(Unreachable::FailOpen).build().unwrap();
    b.force_open("test").await.unwrap();
    refused(b.permit().await, "forced open");
    cut_off(&b, &switch).await;
    b.permit().await.expect("failing open").failure();
}

/// Unreachable, with the local fallback: this instance's own outcomes open
/// a local breaker; the shared state is untouched.
pub async fn breaker_unreachable_local_fallback(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = breaker(&client);
    b.state().await.unwrap();
    cut_off(&b, &switch).await;
    open_locally(&b).await;
    let shared = breaker(&ctx.client("b").await).state().await.unwrap();
    assert_eq!((shared.phase, shared.window.calls), (Phase::Closed, 0));
}

/// Unreachable, with the local fallback: a breaker last seen open stays
/// open for the open time left, then admits local trials only, and closes
/// when they pass. (Born closed, the local breaker let every call of every
/// instance through to the failing service as soon as the open time had
/// passed, no trial first.)
pub async fn breaker_unreachable_local_fallback_starts_from_the_phase_seen(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = short_open(&client);
    b.state().await.unwrap();
    outcomes(&b, 0, 4).await;
    phase_within(&b, Phase::Open, "after four failures").await;
    cut_off(&b, &switch).await;
    refused(b.permit().await, "open, the backend unreachable");
    sleep(ms(350)).await;
    let trial = b.permit().await.expect("half-open: a local trial");
    assert!(trial.is_trial(), "past its open time, a breaker seen open admits trials only");
    refused(b.permit().await, "one trial at a time");
    trial.success();
    let after = b.permit().await.expect("the local trial passed: closed");
    assert!(!after.is_trial());
    after.success();
}

/// Unreachable, with the local fallback: a breaker last seen half-open
/// admits local trials only, at once.
pub async fn breaker_unreachable_local_fallback_seen_half_open_admits_trials(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = short_open(&client);
    b.state().await.unwrap();
    outcomes(&b, 0, 4).await;
    sleep(ms(350)).await;
    assert_eq!(b.state().await.unwrap().phase, Phase::HalfOpen, "its open time passed");
    cut_off(&b, &switch).await;
    let trial = b.permit().await.expect("a local trial");
    assert!(trial.is_trial(), "a breaker seen half-open admits trials only");
    refused(b.permit().await, "one trial at a time");
    trial.failure();
    refused(b.permit().await, "the local trial failed: open again");
}

/// Unreachable, with the local fallback: a breaker an operator disabled
/// stays disabled (every call passes, none counted) until the backend
/// answers again, as a forced-open one stays open.
pub async fn breaker_unreachable_disabled_stays_disabled(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = breaker(&client);
    b.disable("test").await.unwrap();
    cut_off(&b, &switch).await;
    for _ in 0..8 {
        b.permit().await.expect("disabled: every call passes").failure();
    }
}

/// Unreachable, with the local fallback: a local trial slower than the
/// trial TTL keeps its slot while its permit lives (as a shared one does),
/// so no second trial starts beside it, and its failure counts (the local
/// breaker opens again).
pub async fn breaker_slow_local_trial_keeps_its_slot(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = quick(&client).open_for(ms(300)).trial_ttl(ms(300)).build().unwrap();
    b.state().await.unwrap();
    cut_off(&b, &switch).await;
    open_locally(&b).await;
    sleep(ms(350)).await;
    let slow = b.permit().await.expect("a local trial");
    assert!(slow.is_trial());
    sleep(ms(900)).await; // three trial TTLs
    refused(b.permit().await, "the slow local trial still runs");
    slow.failure();
    let left = refused(b.permit().await, "the local breaker opened again");
    assert!(left > ms(100), "open again for its open time, not half-open: {left:?}");
}

/// Unreachable, with the local fallback: a local trial cancelled before
/// any verdict (its permit dropped unrecorded) gives its local slot back at
/// once, counting nothing: the next call is a trial again rather than
/// refused for the trial's TTL, and its outcome decides (the local breaker
/// closes).
pub async fn breaker_cancelled_local_trial_gives_its_slot_back(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, switch) = ctx.switchable_client("a", default_options()).await;
    let b = quick(&client).open_for(ms(300)).trial_ttl(ms(10_000)).build().unwrap();
    b.state().await.unwrap();
    cut_off(&b, &switch).await;
    open_locally(&b).await;
    sleep(ms(350)).await;
    let cancelled = b.permit().await.expect("a local trial");
    assert!(cancelled.is_trial());
    drop(cancelled);
    let next = b.permit().await.expect("the slot given back: a trial again");
    assert!(next.is_trial());
    next.success();
    let closed = b.permit().await.expect("the local breaker closed");
    assert!(!closed.is_trial());
    closed.success();
}

}
