//! The countdown latch: set only when absent or at zero, counted down once
//! per participant, open at zero, never "open" when absent, expiring with
//! its waiters told, stale generations, invalid input.

use super::*;

const L: &str = "l";

/// The current generation of latch `L`, which must exist.
async fn generation(client: &Client) -> u64 {
    let st = client.latch(L).state().await.unwrap();
    st.expect("the latch exists").generation
}

/// Panics unless `res` is `NotFound` naming latch `L`.
#[track_caller]
fn not_found<T: Debug>(res: Result<T>, what: &str) {
    match res {
        Err(Error::NotFound {
            what: "latch", key, ..
        }) => assert_eq!(key, L, "{what}"),
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

cases! {
    family: "barrier", needs: [Need::Barriers];

/// `try_set_count` sets the count in a new generation when the latch is
/// absent or at zero (`true`), and changes nothing while it is above zero
/// (`false`).
pub async fn latch_set_only_when_absent_or_zero(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    assert!(a.latch(L).try_set_count(2).await.unwrap(), "absent: set");
    let g = generation(&a).await;
    assert!(!b.latch(L).try_set_count(5).await.unwrap(), "at 2: unchanged");
    let st = b.latch(L).state().await.unwrap().expect("set");
    assert_eq!((st.generation, st.initial, st.remaining), (g, 2, 2), "{st:?}");
    assert_eq!(a.latch(L).count_down().await.unwrap(), 1);
    assert!(!b.latch(L).try_set_count(5).await.unwrap(), "at 1: unchanged");
    assert_eq!(b.latch(L).count().await.unwrap(), 1);
    assert_eq!(b.latch(L).count_down().await.unwrap(), 0);
    assert!(b.latch(L).try_set_count(3).await.unwrap(), "at zero: set again");
    let st = a.latch(L).state().await.unwrap().expect("set");
    assert!(st.generation > g, "a new generation: {st:?} after {g}");
    assert_eq!((st.initial, st.remaining), (3, 3), "{st:?}");
}

/// A participant counts down once per generation: again, from another
/// client with its id, or retried after a lost reply, nothing changes.
pub async fn latch_count_down_idempotent_per_participant(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, a2) = (ctx.client("a").await, ctx.client("a2").await);
    assert!(a.latch(L).try_set_count(3).await.unwrap());
    let p1 = a.latch(L).participant("p1");
    assert_eq!(p1.count_down().await.unwrap(), 2);
    assert_eq!(p1.count_down().await.unwrap(), 2, "p1 again");
    let p1_elsewhere = a2.latch(L).participant("p1");
    assert_eq!(p1_elsewhere.count_down().await.unwrap(), 2, "p1 from a2");
    let (s, switch) = ctx.switchable_client("s", default_options()).await;
    let p2 = s.latch(L).participant("p2");
    with_lost_reply(&switch, "count_down", p2.count_down()).await;
    assert_eq!(a.latch(L).count().await.unwrap(), 1, "the lost count-down counted");
    assert_eq!(p2.count_down().await.unwrap(), 1, "p2 retried: counted once");
    assert_eq!(a.latch(L).count().await.unwrap(), 1);
    assert_eq!(a.latch(L).participant("p3").count_down().await.unwrap(), 0);
}

/// A waiter returns `Opened` for the generation it found once the count
/// reaches zero, promptly (woken by the backend, not its 10 s retry
/// delay), and not before; a wait on an open latch returns at once.
pub async fn latch_opens_at_zero(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, w) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("w").await,
    );
    assert!(a.latch(L).try_set_count(2).await.unwrap());
    let g = generation(&a).await;
    let waiter = w.latch(L);
    let mut tw = tokio::spawn(async move { waiter.wait().await });
    assert_eq!(a.latch(L).count_down().await.unwrap(), 1);
    still_waiting(&mut tw, ms(300), "the waiter, 1 left").await;
    assert_eq!(b.latch(L).count_down().await.unwrap(), 0);
    let opened = join(tw, PROMPTLY, "the waiter at zero").await.unwrap();
    assert_eq!(opened, LatchWait::Opened { generation: g });
    let again = at_once(w.latch(L).wait()).await.unwrap();
    assert_eq!(again, LatchWait::Opened { generation: g }, "open: at once");
}

/// Waiting on a latch that was never set, or that expired, is `NotFound`
/// at once (never "open"); so are `count` and `count_down`.
pub async fn latch_wait_on_absent_is_not_found(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    not_found(at_once(a.latch(L).wait()).await, "wait, never set");
    not_found(at_once(a.latch(L).count()).await, "count, never set");
    not_found(at_once(a.latch(L).count_down()).await, "count_down, never set");
    assert_eq!(a.latch(L).state().await.unwrap(), None);
    let short = a.latch(L).expire_after(ms(200));
    assert!(short.try_set_count(1).await.unwrap());
    sleep(ms(200 + 200)).await; // let it expire
    not_found(at_once(a.latch(L).wait()).await, "wait, expired");
    assert_eq!(a.latch(L).state().await.unwrap(), None, "expired: absent");
}

/// A latch is gone once its `expire_after` passed since its setting: its
/// waiters return `Expired` then (promptly, woken by the backend), not
/// before, and it is absent.
pub async fn latch_expiry_wakes_waiters(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let t0 = Instant::now();
    assert!(a.latch(L).expire_after(ms(500)).try_set_count(1).await.unwrap());
    let g = generation(&a).await;
    let mut waiters = Vec::new();
    for name in ["w1", "w2"] {
        let latch = ctx.client(name).await.latch(L);
        waiters.push(tokio::spawn(async move { latch.wait().await }));
    }
    for w in waiters {
        let res = join(w, ms(500) + PROMPTLY, "a waiter of an expiring latch").await;
        assert_eq!(res.unwrap(), LatchWait::Expired { generation: g });
        assert!(t0.elapsed() >= ms(450), "expired after {:?}", t0.elapsed());
    }
    assert_eq!(a.latch(L).state().await.unwrap(), None, "gone");
    assert!(matches!(a.latch(L).count().await, Err(Error::NotFound { .. })));
}

/// A count-down naming a generation that is not the current one is
/// `StaleGeneration` and counts nothing; the current one counts.
pub async fn latch_stale_generation_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    assert!(a.latch(L).try_set_count(1).await.unwrap());
    let g1 = generation(&a).await;
    assert_eq!(a.latch(L).count_down_in(g1).await.unwrap(), 0);
    assert!(a.latch(L).try_set_count(2).await.unwrap());
    let g2 = generation(&a).await;
    assert!(g2 > g1, "generations increase: {g1} then {g2}");
    for g in [g1, g2 + 1_000_000] {
        match b.latch(L).count_down_in(g).await {
            Err(Error::StaleGeneration {
                kind: "latch",
                generation,
                current,
                ..
            }) => assert_eq!((generation, current), (g, g2)),
            other => panic!("count_down_in({g}), current {g2}: {other:?}"),
        }
    }
    assert_eq!(a.latch(L).count().await.unwrap(), 2, "nothing counted");
    assert_eq!(b.latch(L).count_down_in(g2).await.unwrap(), 1);
}

/// A count of 0 or over `MAX_LATCH_COUNT`, a bad name, a bad participant,
/// an `expire_after` out of range and bad options are `InvalidArgument` at
/// once, and nothing is set.
pub async fn latch_invalid_input_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let l = || a.latch(L);
    let latch = l();
    assert_invalid(at_once(latch.try_set_count(0)).await, "count 0");
    let over = latch.try_set_count(MAX_LATCH_COUNT + 1);
    assert_invalid(at_once(over).await, "count over MAX_LATCH_COUNT");
    let zero = l().expire_after(Duration::ZERO);
    assert_invalid(at_once(zero.try_set_count(1)).await, "expire_after 0");
    let long = l().expire_after(MAX_TTL + ms(1));
    assert_invalid(at_once(long.try_set_count(1)).await, "expire_after over 24 h");
    let unnamed = a.latch("");
    assert_invalid(at_once(unnamed.try_set_count(1)).await, "set, empty name");
    assert_invalid(at_once(unnamed.count_down()).await, "count_down, empty name");
    assert_invalid(at_once(unnamed.count()).await, "count, empty name");
    assert_invalid(at_once(unnamed.state()).await, "state, empty name");
    assert_invalid(at_once(unnamed.wait()).await, "wait, empty name");
    assert_eq!(l().state().await.unwrap(), None, "nothing set");
    assert!(l().try_set_count(MAX_LATCH_COUNT).await.unwrap(), "the maximum");
    let bad_participant = l().participant("a\nb");
    let res = at_once(bad_participant.count_down()).await;
    assert_invalid(res, "control character participant");
    let bad_opts = l().with_options(default_options().retry_delay(Duration::ZERO));
    assert_invalid(at_once(bad_opts.wait()).await, "zero retry delay");
    assert_eq!(l().count().await.unwrap(), MAX_LATCH_COUNT, "nothing counted");
}
/// A `count_down()` whose reply was lost, retried after its generation
/// reached zero and the latch was set again, counts nothing in the new
/// generation: it answers what its own generation had left (0), and the
/// new one stays as set. The handle's next call is a new one and counts.
pub async fn latch_count_down_retried_after_a_new_setting_counts_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let (s, switch) = ctx.switchable_client("s", default_options()).await;
    let p = s.latch(L).participant("p");
    assert!(a.latch(L).try_set_count(2).await.unwrap());
    with_lost_reply(&switch, "p's count-down", p.count_down()).await;
    assert_eq!(a.latch(L).participant("q").count_down().await.unwrap(), 0);
    assert!(a.latch(L).try_set_count(2).await.unwrap(), "set again at zero");
    let g2 = generation(&a).await;
    assert_eq!(p.count_down().await.unwrap(), 0, "the retry: its generation's answer");
    let st = a.latch(L).state().await.unwrap().expect("set");
    assert_eq!((st.generation, st.remaining), (g2, 2), "the retry counted: {st:?}");
    assert_eq!(p.count_down().await.unwrap(), 1, "answered: a new call counts");
}

/// `try_set_count(n)` retried after its reply was lost (the set applied,
/// then `Unavailable`) answers `true`, as the first would have, and
/// changes nothing: the generation the first set stays, also once it was
/// counted down to zero before the retry came (not set again); so does
/// the call after one cancelled once applied. Another handle's set is
/// still `false`, a call after an answer is a new one, and calls at once
/// are apart.
pub async fn latch_set_retried_after_lost_reply_answers_as_the_first(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let (s, switch) = ctx.switchable_client("s", default_options()).await;
    let s = s.latch(L);
    with_lost_reply(&switch, "the first set", s.try_set_count(2)).await;
    let g = generation(&a).await;
    assert!(!a.latch(L).try_set_count(2).await.unwrap(), "another handle");
    assert!(s.try_set_count(2).await.unwrap(), "the retry: its own setting");
    let st = a.latch(L).state().await.unwrap().expect("set");
    assert_eq!((st.generation, st.initial, st.remaining), (g, 2, 2), "{st:?}");
    assert_eq!(a.latch(L).participant("p1").count_down().await.unwrap(), 1);
    assert!(!s.try_set_count(2).await.unwrap(), "answered: a new call, at 1");
    assert_eq!(a.latch(L).participant("p2").count_down().await.unwrap(), 0);
    with_lost_reply(&switch, "a set at zero", s.try_set_count(1)).await;
    let g2 = generation(&a).await;
    assert!(g2 > g, "set again at zero: {g2} after {g}");
    assert_eq!(a.latch(L).participant("p1").count_down().await.unwrap(), 0);
    let clone = s.clone();
    assert!(clone.try_set_count(1).await.unwrap(), "the retry once open");
    let st = a.latch(L).state().await.unwrap().expect("set");
    assert_eq!((st.generation, st.remaining), (g2, 0), "not set again: {st:?}");
    let opened = at_once(a.latch(L).wait()).await.unwrap();
    assert_eq!(opened, LatchWait::Opened { generation: g2 });
    assert!(s.try_set_count(1).await.unwrap(), "answered: a new call, at 0");
    let g3 = generation(&a).await;
    assert!(g3 > g2, "a new call sets again");
    assert_eq!(a.latch(L).participant("p1").count_down().await.unwrap(), 0);
    // Cancelled once applied (its reply late): the next call is its retry.
    let applied = switch.answered("latch_set");
    switch.late_replies("latch_set", ms(5000));
    let cancelled = timeout(ms(1000), s.try_set_count(4)).await;
    switch.late_replies("latch_set", Duration::ZERO);
    assert!(cancelled.is_err(), "cancelled: {cancelled:?}");
    assert_eq!(switch.answered("latch_set"), applied + 1, "applied, then cancelled");
    let g4 = generation(&a).await;
    assert!(s.try_set_count(4).await.unwrap(), "the retry of a cancelled set");
    let st = a.latch(L).state().await.unwrap().expect("set");
    assert_eq!((st.generation, st.remaining), (g4, 4), "{st:?}");
    // Calls in flight at once, none left unanswered before, are apart.
    let m1 = a.latch("m");
    let m2 = m1.clone();
    let (r1, r2) = tokio::join!(m1.try_set_count(2), m2.try_set_count(2));
    assert_eq!((r1.unwrap() as u8) + (r2.unwrap() as u8), 1, "one set");
}

/// The retry of a `try_set_count` whose reply was lost is answered as the
/// first was (`true`, nothing changed) also after others set the latch
/// again since, as long as the first is one of the latch's last
/// `LATCH_SETS_KEPT` settings: neither `false` while a later setting is
/// counted down, nor set once more at zero.
pub async fn latch_set_retried_after_others_set_it_answers_as_the_first(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let (s, switch) = ctx.switchable_client("s", default_options()).await;
    for (name, last_open) in [("open", true), ("busy", false)] {
        let mine = s.latch(name);
        with_lost_reply(&switch, "the first set", mine.try_set_count(1)).await;
        let theirs = a.latch(name);
        for later in 1..coord_api::spi::LATCH_SETS_KEPT {
            assert_eq!(a.latch(name).participant("p").count_down().await.unwrap(), 0);
            assert!(theirs.try_set_count(1).await.unwrap(), "setting {later}");
        }
        if last_open {
            assert_eq!(a.latch(name).participant("p").count_down().await.unwrap(), 0);
        }
        let parts = |st: coord_api::spi::LatchState| (st.generation, st.initial, st.remaining);
        let before = parts(theirs.state().await.unwrap().expect("set"));
        assert!(mine.try_set_count(1).await.unwrap(), "{name}: its own setting");
        let after = parts(theirs.state().await.unwrap().expect("set"));
        assert_eq!(after, before, "{name}: nothing changed");
    }
}
}
