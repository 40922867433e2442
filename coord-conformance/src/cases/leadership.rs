//! Leadership, membership and singleton-job cases (contract sections 6–8).
//! Every case here needs a leadership backend ([`Ctx::require_leadership`]);
//! without one it says so on stderr and checks nothing.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, SystemTime},
};

use coord_api::{
    Client, Election, Error, FencingToken, HolderId, InstanceId, LeaderRunner, Leadership,
    LostSignal, Quorum, RunOnce,
};
use tokio::{
    sync::mpsc,
    time::{Instant, sleep, timeout},
};

use super::{assert_invalid, at_once, join, key, ms, no_extend};
use crate::{Ctx, Harness, harness::default_options, harness::eventually};

/// Wins `election` at once or panics.
async fn elect(election: &Election, what: &str) -> Leadership {
    election
        .try_campaign()
        .await
        .unwrap_or_else(|e| panic!("{what}: try_campaign failed: {e}"))
        .unwrap_or_else(|| panic!("{what}: expected to be elected"))
}

/// Waits (bounded) for `election` to be won; returns the leadership and when.
fn campaign_task(
    election: Election,
) -> tokio::task::JoinHandle<coord_api::Result<(Leadership, Instant)>> {
    tokio::spawn(async move {
        let l = election.campaign().await?;
        Ok((l, Instant::now()))
    })
}

/// The leader's term as the backend tells anyone, `None` when vacant.
async fn current_term(client: &Client, name: &str) -> Option<FencingToken> {
    client
        .election(name)
        .leader()
        .await
        .expect("leader")
        .map(|l| l.term)
}

fn quorum(group: &str, min_members: u32) -> Quorum {
    Quorum {
        group: key(group),
        min_members,
    }
}

// ---------------------------------------------------------------------------
// Elections
// ---------------------------------------------------------------------------

/// A term won after the previous leader resigned is greater than it.
pub async fn term_increases_across_resign(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("term_increases_across_resign").await {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let la = elect(&a.election("e"), "a").await;
    let t1 = la.term();
    assert!(la.resign().await.unwrap(), "a still led when resigning");
    let lb = elect(&b.election("e"), "b after a resigned").await;
    assert!(lb.term() > t1, "term {} after {}", lb.term(), t1);
    let la2 = {
        assert!(lb.resign().await.unwrap());
        elect(&a.election("e"), "a again").await
    };
    assert!(la2.term() > t1, "a's second term above its first");
    la2.resign().await.unwrap();
}

/// A term won after the previous leader crashed (no renewal, no
/// resignation) and its lease expired is greater than the crashed term.
pub async fn term_increases_after_expiry(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("term_increases_after_expiry").await {
        return;
    }
    let a = ctx.client_with("a", no_extend(200)).await;
    let b = ctx.client("b").await;
    let la = elect(&a.election("e"), "a").await;
    let t1 = la.term();
    std::mem::forget(la); // crash: no renewal, no resignation
    let lb = eventually(ms(2000), || async {
        b.election("e").try_campaign().await.expect("try_campaign")
    })
    .await
    .expect("b elected once a's term expired");
    assert!(lb.term() > t1, "term {} after expired {}", lb.term(), t1);
    lb.resign().await.unwrap();
}

/// While one candidate leads, another's `try_campaign` is refused at once,
/// and the backend still names the first.
pub async fn try_campaign_refused_while_led(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("try_campaign_refused_while_led")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let la = elect(&a.election("e").ttl(ms(5000)), "a").await;
    let t0 = Instant::now();
    let res = at_once(b.election("e").try_campaign()).await.unwrap();
    assert!(res.is_none(), "second candidate refused");
    assert!(
        t0.elapsed() < ms(1000),
        "try_campaign took {:?}",
        t0.elapsed()
    );
    assert_eq!(current_term(&b, "e").await, Some(la.term()));
    assert!(la.is_leader());
    la.resign().await.unwrap();
}

/// Six candidates campaigning in a loop: never two leaders at once, by their
/// own `is_leader()` and by the backend's `leader()`; terms increase in the
/// order they were won.
pub async fn one_leader_among_concurrent_campaigners(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("one_leader_among_concurrent_campaigners")
        .await
    {
        return;
    }
    let observer = ctx.client("observer").await;
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let terms = Arc::new(Mutex::new(Vec::<FencingToken>::new()));
    let current: Arc<Mutex<Vec<LostSignal>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..6 {
        // A TTL long enough that a test runner starved for a few hundred ms
        // (a loaded CI machine) does not end a term early: this case is about
        // exclusion and term order among hand-overs, not about expiry.
        let election = ctx
            .client(&format!("c{i}"))
            .await
            .election("e")
            .ttl(Duration::from_secs(5));
        let observer = observer.clone();
        let (inside, most, terms, current) =
            (inside.clone(), most.clone(), terms.clone(), current.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let l = election.campaign().await.expect("elected within the wait");
                assert!(l.is_leader());
                {
                    let mut cur = current.lock().unwrap();
                    assert!(
                        cur.iter().all(|s| s.is_lost()),
                        "another leadership still believes it leads"
                    );
                    cur.push(l.lost_signal());
                }
                let n = inside.fetch_add(1, SeqCst) + 1;
                most.fetch_max(n, SeqCst);
                terms.lock().unwrap().push(l.term());
                let seen = observer.election("e").leader().await.unwrap();
                let seen = seen.expect("the backend names a leader");
                assert_eq!(seen.term, l.term(), "the backend's leader is this term");
                assert_eq!(seen.holder, l.info().holder);
                sleep(ms(5)).await;
                inside.fetch_sub(1, SeqCst);
                assert!(l.resign().await.unwrap(), "led until resigned");
            }
        }));
    }
    for t in tasks {
        join(t, ms(20_000), "campaigner").await;
    }
    assert_eq!(most.load(SeqCst), 1, "two leaders at once");
    let terms = terms.lock().unwrap().clone();
    assert_eq!(terms.len(), 18);
    assert!(
        terms.windows(2).all(|w| w[0] < w[1]),
        "terms not increasing in grant order: {terms:?}"
    );
}

/// A client that never campaigns reads the leader's id, metadata, term,
/// since-when, term count and time left.
pub async fn leader_info_visible_to_non_candidates(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("leader_info_visible_to_non_candidates")
        .await
    {
        return;
    }
    let (a, c) = (ctx.client("a").await, ctx.client("c").await);
    assert_eq!(c.election("e").leader().await.unwrap(), None, "vacant");
    let before = SystemTime::now();
    let la = elect(
        &a.election("e").metadata("10.0.0.7:8080").ttl(ms(5000)),
        "a",
    )
    .await;
    let seen = c.election("e").leader().await.unwrap().expect("a leader");
    assert_eq!(seen.holder.instance().as_str(), "a");
    assert_eq!(seen.holder, la.info().holder);
    assert_eq!(seen.metadata, "10.0.0.7:8080");
    assert_eq!(seen.term, la.term());
    assert_eq!(seen.seq, la.info().seq);
    assert!(seen.seq >= 1, "the first term counts: seq {}", seen.seq);
    assert_eq!(seen.since, la.info().since);
    let skew = |t: SystemTime| {
        t.duration_since(before)
            .unwrap_or_else(|e| e.duration())
            .as_secs_f64()
    };
    assert!(
        skew(seen.since) < 5.0,
        "since {:?} far from now",
        seen.since
    );
    assert!(
        seen.expires_in > Duration::ZERO && seen.expires_in <= ms(5000),
        "expires_in {:?}",
        seen.expires_in
    );
    la.resign().await.unwrap();
    assert_eq!(
        c.election("e").leader().await.unwrap(),
        None,
        "vacant again"
    );
}

/// A candidate waiting in `campaign` wins within a round trip of the
/// leader's resignation, long before the 10 s retry delay.
pub async fn resign_lets_waiting_candidate_win_at_once(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("resign_lets_waiting_candidate_win_at_once")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let la = elect(&a.election("e").ttl(ms(5000)), "a").await;
    let waiter = campaign_task(b.election("e"));
    sleep(ms(100)).await; // let b's campaign subscribe and wait
    assert!(!waiter.is_finished(), "b must wait while a leads");
    let t0 = Instant::now();
    assert!(la.resign().await.unwrap());
    let (lb, t_won) = join(waiter, ms(3000), "b's campaign").await.unwrap();
    assert!(
        t_won - t0 < ms(100),
        "b won {:?} after the resignation (retry delay 10 s)",
        t_won - t0
    );
    lb.resign().await.unwrap();
}

/// A crashed leader (no renewal, no resignation) is replaced when its TTL
/// ends, not before, and a waiting candidate wins promptly then.
pub async fn crashed_leader_replaced_after_ttl(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("crashed_leader_replaced_after_ttl")
        .await
    {
        return;
    }
    let a = ctx.client_with("a", no_extend(400)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let la = elect(&a.election("e"), "a").await;
    let t1 = la.term();
    std::mem::forget(la); // crash
    let (lb, t_won) = join(campaign_task(b.election("e")), ms(3000), "b")
        .await
        .unwrap();
    let waited = t_won - t0;
    assert!(waited >= ms(390), "new leader after {waited:?}, TTL 400 ms");
    assert!(waited <= ms(400 + 600), "new leader only after {waited:?}");
    assert!(lb.term() > t1);
    lb.resign().await.unwrap();
}

/// A leader cut off from the backend learns it lost leadership (`lost()`
/// fires, `is_leader()` false) before another candidate is elected, which
/// happens within the TTL plus a bound.
pub async fn partitioned_leader_loses_before_new_leader(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("partitioned_leader_loses_before_new_leader")
        .await
    {
        return;
    }
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(600)))
        .await;
    let b = ctx.client("b").await;
    let la = elect(&a.election("e"), "a").await;
    let signal = la.lost_signal();
    switch.off();
    let t_off = Instant::now();
    let election = b.election("e");
    let waiter = tokio::spawn(async move {
        let l = election.campaign().await;
        // Checked the instant b is elected.
        (l, signal.is_lost(), Instant::now())
    });
    timeout(ms(2000), la.lost())
        .await
        .expect("the cut-off leader learns it lost");
    assert!(!la.is_leader());
    let (lb, a_lost_then, t_won) = join(waiter, ms(3000), "b's campaign").await;
    let lb = lb.expect("b elected");
    assert!(a_lost_then, "b elected while a still believed it led");
    assert!(
        t_won - t_off <= ms(600 + 600),
        "b elected {:?} after the cut, TTL 600 ms",
        t_won - t_off
    );
    assert!(lb.term() > la.term());
    lb.resign().await.unwrap();
}

/// A stale term changes nothing at the backend: renewing or resigning it
/// after another leader was elected is refused and the new leader stays.
pub async fn stale_term_renew_and_resign_refused(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("stale_term_renew_and_resign_refused")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let la = elect(&a.election("e"), "a").await;
    let (holder, t1) = (la.info().holder.clone(), la.term());
    assert!(la.resign().await.unwrap());
    let lb = elect(&b.election("e").ttl(ms(5000)), "b").await;
    let backend = ctx.leadership().await.expect("leadership");
    let e = key("e");
    assert!(
        !backend
            .renew(&e, &holder, t1, ms(5000), None)
            .await
            .unwrap()
    );
    assert!(!backend.resign(&e, &holder, t1).await.unwrap());
    let stranger = HolderId::new(InstanceId::new("intruder").unwrap());
    assert!(!backend.resign(&e, &stranger, lb.term()).await.unwrap());
    assert_eq!(
        current_term(&a, "e").await,
        Some(lb.term()),
        "b still leads"
    );
    assert!(lb.is_leader());
    assert!(lb.resign().await.unwrap());
}

// ---------------------------------------------------------------------------
// Quorum
// ---------------------------------------------------------------------------

/// Without quorum nobody is elected: `try_campaign` is refused, `campaign`
/// times out, and the backend names no leader.
pub async fn no_quorum_elects_nobody(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("no_quorum_elects_nobody").await {
        return;
    }
    let a = ctx.client("a").await;
    let member = a.group("g").join().await.unwrap();
    let election = a.election("e").quorum(quorum("g", 2));
    assert!(at_once(election.try_campaign()).await.unwrap().is_none());
    let waited = timeout(
        ms(3000),
        election.clone().wait_timeout(Some(ms(300))).campaign(),
    )
    .await
    .expect("campaign bounded by its wait timeout");
    assert!(
        matches!(waited, Err(Error::Timeout { .. })),
        "campaign without quorum: {waited:?}"
    );
    assert_eq!(current_term(&a, "e").await, None, "nobody leads");
    member.leave().await.unwrap();
}

/// A leader whose quorum group drops below `min_members` is told it lost
/// (`lost()` fires, `is_leader()` false) and the backend names no leader.
pub async fn quorum_loss_ends_leadership(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("quorum_loss_ends_leadership").await {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ma = a.group("g").join().await.unwrap();
    let mb = b.group("g").join().await.unwrap();
    let la = elect(
        &a.election("e").quorum(quorum("g", 2)).ttl(ms(600)),
        "a with quorum",
    )
    .await;
    assert!(mb.leave().await.unwrap());
    timeout(ms(2000), la.lost())
        .await
        .expect("the leader learns it lost its quorum");
    assert!(!la.is_leader());
    let vacant = eventually(ms(1000), || async {
        current_term(&b, "e").await.is_none().then_some(())
    })
    .await;
    assert!(vacant.is_some(), "the backend still names a leader");
    assert!(
        b.election("e")
            .quorum(quorum("g", 2))
            .try_campaign()
            .await
            .unwrap()
            .is_none(),
        "nobody elected while the quorum is missing"
    );
    ma.leave().await.unwrap();
}

/// A candidate waiting for a quorum is elected promptly once enough members
/// joined (woken by the join, not the 10 s retry delay).
pub async fn quorum_regained_allows_election(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("quorum_regained_allows_election")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ma = a.group("g").join().await.unwrap();
    let waiter = campaign_task(a.election("e").quorum(quorum("g", 2)));
    sleep(ms(100)).await;
    assert!(!waiter.is_finished(), "elected without quorum");
    let t0 = Instant::now();
    let mb = b.group("g").join().await.unwrap();
    let (la, t_won) = join(waiter, ms(3000), "campaign after the join")
        .await
        .unwrap();
    assert!(
        t_won - t0 < ms(500),
        "elected {:?} after the quorum returned",
        t_won - t0
    );
    assert!(la.is_leader());
    la.resign().await.unwrap();
    mb.leave().await.unwrap();
    ma.leave().await.unwrap();
}

// ---------------------------------------------------------------------------
// Observing elections
// ---------------------------------------------------------------------------

/// An observer that keeps up sees every one of several successive terms, and
/// the vacancy between them, with `skipped` 0.
pub async fn observer_sees_every_term(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("observer_sees_every_term").await {
        return;
    }
    let o = ctx.client("o").await;
    let mut obs = o.election("e").observe().await.unwrap();
    let first = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert_eq!(first.leader, None, "vacant at first");
    for i in 0..3 {
        let c = ctx.client(&format!("c{i}")).await;
        let l = elect(&c.election("e").metadata(format!("m{i}")), "candidate").await;
        let seen = timeout(ms(2000), obs.next())
            .await
            .expect("the new term is observed")
            .unwrap();
        let leader = seen.leader.expect("a leader");
        assert_eq!(
            (leader.term, leader.metadata.as_str()),
            (l.term(), format!("m{i}").as_str())
        );
        assert_eq!(seen.skipped, 0, "kept up, skipped nothing");
        l.resign().await.unwrap();
        let vacancy = timeout(ms(2000), obs.next())
            .await
            .expect("the vacancy is observed")
            .unwrap();
        assert_eq!(vacancy.leader, None);
        assert_eq!(vacancy.skipped, 0);
    }
}

/// An observer that falls behind several terms is told how many it skipped
/// when it next reads, rather than silently missing them.
pub async fn lagging_observer_told_it_skipped(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("lagging_observer_told_it_skipped")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut obs = b.election("e").observe().await.unwrap();
    let la = elect(&a.election("e"), "first").await;
    let seen = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(la.term()));
    la.resign().await.unwrap();
    for _ in 0..3 {
        elect(&a.election("e"), "unobserved term")
            .await
            .resign()
            .await
            .unwrap();
    }
    let last = elect(&a.election("e"), "last").await;
    let seen = timeout(ms(2000), obs.next()).await.expect("next").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(last.term()));
    assert_eq!(seen.skipped, 3, "three terms began and ended unobserved");
    last.resign().await.unwrap();
}

/// An observer that first saw the election vacant, then missed terms, is
/// told it skipped them too.
pub async fn observer_from_vacancy_told_it_skipped(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("observer_from_vacancy_told_it_skipped")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    // One term before the observer starts: not skipped by it.
    elect(&a.election("e"), "before")
        .await
        .resign()
        .await
        .unwrap();
    let mut obs = b.election("e").observe().await.unwrap();
    let first = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert_eq!(first.leader, None);
    for _ in 0..2 {
        elect(&a.election("e"), "unobserved term")
            .await
            .resign()
            .await
            .unwrap();
    }
    let last = elect(&a.election("e"), "last").await;
    let seen = timeout(ms(2000), obs.next()).await.expect("next").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(last.term()));
    assert_eq!(seen.skipped, 2, "two terms began and ended unobserved");
    last.resign().await.unwrap();
}

/// After the leader resigns, an observer reports the vacancy promptly (long
/// before the term's 5 s TTL).
pub async fn observer_reports_vacancy_after_resign(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("observer_reports_vacancy_after_resign")
        .await
    {
        return;
    }
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let la = elect(&a.election("e").ttl(ms(5000)), "a").await;
    let mut obs = o.election("e").observe().await.unwrap();
    let seen = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(la.term()));
    let waiting = tokio::spawn(async move {
        let change = obs.next().await;
        (change, Instant::now())
    });
    sleep(ms(50)).await;
    let t0 = Instant::now();
    la.resign().await.unwrap();
    let (change, t_seen) = join(waiting, ms(2000), "observer").await;
    assert_eq!(change.unwrap().leader, None, "vacancy reported");
    assert!(
        t_seen - t0 < ms(500),
        "vacancy seen {:?} after the resignation",
        t_seen - t0
    );
}

// ---------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------

/// A joined member is listed, with its id and metadata, by anyone.
pub async fn join_lists_member_with_metadata(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("join_lists_member_with_metadata")
        .await
    {
        return;
    }
    let (a, c) = (ctx.client("a").await, ctx.client("c").await);
    assert!(c.group("g").members().await.unwrap().members.is_empty());
    let ma = a.group("g").metadata("10.0.0.7").join().await.unwrap();
    let live = c.group("g").members().await.unwrap();
    assert_eq!(live.members.len(), 1, "{live:?}");
    let m = &live.members[0];
    assert_eq!(&m.holder, ma.holder());
    assert_eq!(m.metadata, "10.0.0.7");
    assert!(m.expires_in > Duration::ZERO && m.expires_in <= ms(1000));
    assert!(ma.is_member());
    assert!(c.group("other").members().await.unwrap().members.is_empty());
    ma.leave().await.unwrap();
}

/// `leave` removes the member at once; the others stay listed.
pub async fn leave_removes_member(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("leave_removes_member").await {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ma = a.group("g").join().await.unwrap();
    let mb = b.group("g").join().await.unwrap();
    assert_eq!(b.group("g").members().await.unwrap().members.len(), 2);
    assert!(ma.leave().await.unwrap(), "a was a member");
    let live = b.group("g").members().await.unwrap();
    let ids: Vec<_> = live.members.iter().map(|m| &m.holder).collect();
    assert_eq!(ids, vec![mb.holder()], "only b is left");
    mb.leave().await.unwrap();
    assert!(b.group("g").members().await.unwrap().members.is_empty());
}

/// A crashed member (no heartbeat, no leave) is listed until its TTL ends
/// and disappears then.
pub async fn crashed_member_disappears_after_ttl(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("crashed_member_disappears_after_ttl")
        .await
    {
        return;
    }
    let a = ctx.client_with("a", no_extend(400)).await;
    let c = ctx.client("c").await;
    let t0 = Instant::now();
    let ma = a.group("g").join().await.unwrap();
    std::mem::forget(ma); // crash
    assert_eq!(c.group("g").members().await.unwrap().members.len(), 1);
    let gone = eventually(ms(2000), || async {
        c.group("g")
            .members()
            .await
            .unwrap()
            .members
            .is_empty()
            .then(Instant::now)
    })
    .await
    .expect("the crashed member disappears");
    assert!(gone - t0 >= ms(390), "gone after {:?}, TTL 400", gone - t0);
}

/// A member cut off from the backend loses its membership (`lost()` fires)
/// and disappears from the group within its TTL plus a bound.
pub async fn unreachable_member_disappears(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("unreachable_member_disappears")
        .await
    {
        return;
    }
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(500)))
        .await;
    let c = ctx.client("c").await;
    let ma = a.group("g").join().await.unwrap();
    sleep(ms(700)).await; // heartbeats keep it past its TTL
    assert_eq!(c.group("g").members().await.unwrap().members.len(), 1);
    switch.off();
    timeout(ms(2000), ma.lost())
        .await
        .expect("the cut-off member learns it lost membership");
    assert!(!ma.is_member());
    let gone = eventually(ms(1500), || async {
        c.group("g")
            .members()
            .await
            .unwrap()
            .members
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "the cut-off member is still listed");
}

/// A group observer sees each join and leave promptly, with `skipped` 0.
pub async fn group_observer_sees_join_and_leave(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("group_observer_sees_join_and_leave")
        .await
    {
        return;
    }
    let (a, b, o) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("o").await,
    );
    let mut obs = o.group("g").observe().await.unwrap();
    let first = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert!(first.members.members.is_empty());
    let holders = |c: &coord_api::GroupChange| -> Vec<String> {
        let mut v: Vec<_> = c
            .members
            .members
            .iter()
            .map(|m| m.holder.instance().as_str().to_owned())
            .collect();
        v.sort();
        v
    };
    let ma = a.group("g").join().await.unwrap();
    let seen = timeout(ms(500), obs.next())
        .await
        .expect("join seen")
        .unwrap();
    assert_eq!((holders(&seen), seen.skipped), (vec!["a".to_owned()], 0));
    let mb = b.group("g").join().await.unwrap();
    let seen = timeout(ms(500), obs.next())
        .await
        .expect("join seen")
        .unwrap();
    assert_eq!(
        (holders(&seen), seen.skipped),
        (vec!["a".to_owned(), "b".to_owned()], 0)
    );
    ma.leave().await.unwrap();
    let seen = timeout(ms(500), obs.next())
        .await
        .expect("leave seen")
        .unwrap();
    assert_eq!((holders(&seen), seen.skipped), (vec!["b".to_owned()], 0));
    mb.leave().await.unwrap();
}

// ---------------------------------------------------------------------------
// Singleton jobs
// ---------------------------------------------------------------------------

/// Six instances call `run_once` on one occurrence at the same time: exactly
/// one runs it (alone), the others answer `AlreadyFinished`.
pub async fn run_once_runs_once_across_instances(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("run_once_runs_once_across_instances")
        .await
    {
        return;
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let job = ctx.client(&format!("c{i}")).await.job("nightly");
        let (runs, inside, most) = (runs.clone(), inside.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            job.run_once("2026-11-26", |ctx| async move {
                runs.fetch_add(1, SeqCst);
                let n = inside.fetch_add(1, SeqCst) + 1;
                most.fetch_max(n, SeqCst);
                sleep(ms(50)).await;
                inside.fetch_sub(1, SeqCst);
                ctx.attempt
            })
            .await
        }));
    }
    let mut ran = 0;
    for t in tasks {
        match join(t, ms(5000), "run_once").await.unwrap() {
            RunOnce::Ran(attempt) => {
                assert_eq!(attempt, 1);
                ran += 1;
            }
            RunOnce::AlreadyFinished => {}
        }
    }
    assert_eq!((ran, runs.load(SeqCst)), (1, 1), "exactly one run");
    assert_eq!(most.load(SeqCst), 1);
}

/// Once a run finished, later instances get `AlreadyFinished` without
/// running the body.
pub async fn run_once_never_reruns_finished(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("run_once_never_reruns_finished")
        .await
    {
        return;
    }
    let a = ctx.client("a").await;
    let first = a.job("j").run_once("o", |c| async move { c.token }).await;
    assert!(matches!(first, Ok(RunOnce::Ran(_))), "{first:?}");
    for name in ["a", "b", "c"] {
        let c = ctx.client(name).await;
        let res = at_once(c.job("j").run_once("o", |_| async { panic!("ran again") })).await;
        assert_eq!(res.unwrap(), RunOnce::<()>::AlreadyFinished, "{name}");
    }
}

/// A run whose instance is cut off mid-body is retried by another instance
/// only after its lease expired (the first run had already learnt it lost),
/// with attempt 2; then the occurrence is finished for everyone.
pub async fn crashed_run_retried_after_ttl(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("crashed_run_retried_after_ttl")
        .await
    {
        return;
    }
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(500)))
        .await;
    let (b, c) = (ctx.client("b").await, ctx.client("c").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job_a = a.job("j");
    let first = tokio::spawn(async move {
        job_a
            .run_once("o", |ctx| async move {
                tx.send((ctx.lost.clone(), Instant::now(), ctx.attempt))
                    .unwrap();
                switch.off(); // crash mid-body: no renewal, no end
                ctx.lost.wait().await;
            })
            .await
    });
    let (lost_a, t_a, attempt_a) = timeout(ms(2000), rx.recv())
        .await
        .expect("a starts")
        .unwrap();
    assert_eq!(attempt_a, 1);
    let res = b
        .job("j")
        .run_once("o", |ctx| async move {
            (ctx.attempt, lost_a.is_lost(), Instant::now())
        })
        .await
        .unwrap();
    let RunOnce::Ran((attempt, a_lost_then, t_b)) = res else {
        panic!("b should retry the crashed run, got {res:?}");
    };
    assert_eq!(attempt, 2, "the retry is attempt 2");
    assert!(a_lost_then, "b ran while a still believed it ran");
    assert!(
        t_b - t_a >= ms(450),
        "retried {:?} after the first start, TTL 500 ms",
        t_b - t_a
    );
    assert!(
        t_b - t_a <= ms(500 + 1000),
        "retried only after {:?}",
        t_b - t_a
    );
    let first = join(first, ms(3000), "a's run").await;
    assert!(first.is_err(), "the crashed run did not finish: {first:?}");
    let later = c.job("j").run_once("o", |_| async {}).await.unwrap();
    assert_eq!(later, RunOnce::AlreadyFinished);
}

/// A body that outlives its never-renewed lease does not count as finished
/// (`LeaseLost`), and another instance retries the occurrence after the TTL
/// with attempt 2, once the first body's lost signal has fired.
pub async fn run_outliving_its_lease_is_retried(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("run_outliving_its_lease_is_retried")
        .await
    {
        return;
    }
    let a = ctx.client_with("a", no_extend(300)).await;
    let b = ctx.client("b").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job_a = a.job("j");
    let first = tokio::spawn(async move {
        job_a
            .run_once("o", |ctx| async move {
                tx.send(ctx.lost.clone()).unwrap();
                sleep(ms(800)).await; // outlives the 300 ms lease
            })
            .await
    });
    let lost_a = timeout(ms(2000), rx.recv())
        .await
        .expect("a starts")
        .unwrap();
    let t0 = Instant::now();
    let res = b
        .job("j")
        .run_once("o", |ctx| async move { (ctx.attempt, lost_a.is_lost()) })
        .await
        .unwrap();
    assert_eq!(res, RunOnce::Ran((2, true)), "retry after the TTL");
    assert!(
        t0.elapsed() >= ms(250),
        "retried {:?} after start",
        t0.elapsed()
    );
    let first = join(first, ms(3000), "a's run").await;
    assert!(
        matches!(first, Err(Error::LeaseLost { .. })),
        "a's late end is LeaseLost: {first:?}"
    );
}

/// A finished occurrence runs again once its marker's retention passed.
pub async fn run_once_retention_expiry_allows_rerun(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("run_once_retention_expiry_allows_rerun")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let first = a
        .job("j")
        .retention(ms(300))
        .run_once("o", |_| async {})
        .await;
    assert_eq!(first.unwrap(), RunOnce::Ran(()));
    let again = b.job("j").run_once("o", |_| async {}).await.unwrap();
    assert_eq!(again, RunOnce::AlreadyFinished, "within the retention");
    sleep(ms(300)).await; // let the retention pass
    let rerun = eventually(ms(1000), || async {
        match b.job("j").run_once("o", |_| async {}).await.unwrap() {
            RunOnce::Ran(()) => Some(()),
            RunOnce::AlreadyFinished => None,
        }
    })
    .await;
    assert!(rerun.is_some(), "still finished after the retention");
}

/// Occurrences are independent: finishing one leaves the others (and the
/// same occurrence of another job) to run.
pub async fn run_once_occurrences_independent(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("run_once_occurrences_independent")
        .await
    {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let ran = |r: coord_api::Result<RunOnce<()>>| r.unwrap() == RunOnce::Ran(());
    assert!(ran(a.job("j").run_once("t1", |_| async {}).await));
    assert!(ran(b.job("j").run_once("t2", |_| async {}).await));
    assert!(ran(b.job("other").run_once("t1", |_| async {}).await));
    assert!(!ran(b.job("j").run_once("t1", |_| async {}).await));
    assert!(!ran(a.job("j").run_once("t2", |_| async {}).await));
}

/// `Job::run` runs bodies one at a time across instances, each with a fencing
/// token greater than the previous run's.
pub async fn job_run_is_exclusive_with_token(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("job_run_is_exclusive_with_token")
        .await
    {
        return;
    }
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::<FencingToken>::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let job = ctx.client(&format!("c{i}")).await.job("j");
        let (inside, most, tokens) = (inside.clone(), most.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                let (inside, most, tokens) = (inside.clone(), most.clone(), tokens.clone());
                job.run(|ctx| async move {
                    assert!(!ctx.lost.is_lost());
                    assert_eq!(ctx.attempt, 1);
                    let n = inside.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(n, SeqCst);
                    tokens.lock().unwrap().push(ctx.token);
                    sleep(ms(10)).await;
                    inside.fetch_sub(1, SeqCst);
                })
                .await
                .expect("ran");
            }
        }));
    }
    for t in tasks {
        join(t, ms(10_000), "job runner").await;
    }
    assert_eq!(most.load(SeqCst), 1, "two bodies at once");
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 8);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

// ---------------------------------------------------------------------------
// The leader runner
// ---------------------------------------------------------------------------

/// A runner calls `on_acquired` with the term it won, the one the backend
/// shows.
pub async fn runner_calls_on_acquired_with_term(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("runner_calls_on_acquired_with_term")
        .await
    {
        return;
    }
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                tx.send((lc.term, lc.info.term)).unwrap();
                lc.lost.wait().await;
            }
        })
        .start();
    let (term, info_term) = timeout(ms(2000), rx.recv())
        .await
        .expect("on_acquired called")
        .unwrap();
    assert_eq!(term, info_term);
    assert_eq!(current_term(&o, "e").await, Some(term));
    assert_eq!(runner.leading().map(|l| l.term), Some(term));
    assert!(runner.is_leader());
    timeout(ms(3000), runner.shutdown())
        .await
        .expect("shutdown");
}

/// Shutting a leading runner down resigns: a second runner takes over
/// promptly (long before the 5 s term TTL), with a greater term.
pub async fn runner_shutdown_resigns(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("runner_shutdown_resigns").await {
        return;
    }
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let start = |client: &Client| {
        let (tx, rx) = mpsc::unbounded_channel();
        let runner = LeaderRunner::new(client.election("e"))
            .leadership_timeout(ms(5000))
            .on_acquired(move |lc| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((lc.term, Instant::now()));
                }
            })
            .start();
        (runner, rx)
    };
    let (ra, mut rxa) = start(&a);
    let (ta, _) = timeout(ms(2000), rxa.recv())
        .await
        .expect("a leads")
        .unwrap();
    let (rb, mut rxb) = start(&b);
    sleep(ms(100)).await;
    assert!(!rb.is_leader(), "b leads while a does");
    let t0 = Instant::now();
    timeout(ms(3000), ra.shutdown()).await.expect("shutdown");
    let (tb, t_won) = timeout(ms(2000), rxb.recv())
        .await
        .expect("b takes over")
        .unwrap();
    assert!(tb > ta);
    assert!(
        t_won - t0 < ms(500),
        "b took over {:?} after a's shutdown (TTL 5 s)",
        t_won - t0
    );
    timeout(ms(3000), rb.shutdown()).await.expect("shutdown");
}

/// After its term is lost (backend cut off), a runner calls `on_lost` with
/// that term, and once the backend is back it campaigns again and wins a
/// greater term.
pub async fn runner_recampaigns_after_loss(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("runner_recampaigns_after_loss")
        .await
    {
        return;
    }
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(400)))
        .await;
    let (acq_tx, mut acquired) = mpsc::unbounded_channel();
    let (lost_tx, mut lost) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .backoff(ms(20), ms(100))
        .on_acquired(move |lc| {
            let tx = acq_tx.clone();
            async move {
                let _ = tx.send(lc.term);
            }
        })
        .on_lost(move |term| {
            let tx = lost_tx.clone();
            async move {
                let _ = tx.send(term);
            }
        })
        .start();
    let t1 = timeout(ms(2000), acquired.recv())
        .await
        .expect("first term")
        .unwrap();
    switch.off();
    let lost_term = timeout(ms(2000), lost.recv())
        .await
        .expect("on_lost called")
        .unwrap();
    assert_eq!(lost_term, t1);
    assert!(!runner.is_leader());
    sleep(ms(100)).await; // a few failing campaigns
    switch.on();
    let t2 = timeout(ms(3000), acquired.recv())
        .await
        .expect("elected again once reconnected")
        .unwrap();
    assert!(t2 > t1, "term {t2} after {t1}");
    timeout(ms(3000), runner.shutdown())
        .await
        .expect("shutdown");
}

// ---------------------------------------------------------------------------
// Invalid input
// ---------------------------------------------------------------------------

/// An empty election name, a zero TTL and a quorum of 0 members are
/// `InvalidArgument` at once, and nobody is elected.
pub async fn election_invalid_input_refused(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx
        .require_leadership("election_invalid_input_refused")
        .await
    {
        return;
    }
    let a = ctx.client("a").await;
    let bad = [
        ("empty name", a.election("")),
        ("zero ttl", a.election("e").ttl(Duration::ZERO)),
        (
            "ttl over 24 h",
            a.election("e").ttl(coord_api::MAX_TTL + ms(1)),
        ),
        ("min_members 0", a.election("e").quorum(quorum("g", 0))),
    ];
    for (what, e) in bad {
        assert_invalid(
            at_once(e.try_campaign()).await,
            &format!("try_campaign {what}"),
        );
        assert_invalid(at_once(e.campaign()).await, &format!("campaign {what}"));
    }
    assert_invalid(at_once(a.election("").leader()).await, "leader empty name");
    assert_invalid(
        at_once(a.election("").observe()).await,
        "observe empty name",
    );
    assert_eq!(current_term(&a, "e").await, None, "nobody elected");
}

/// An empty group name and a zero TTL are `InvalidArgument` at once, and
/// nobody joins.
pub async fn group_invalid_input_refused(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("group_invalid_input_refused").await {
        return;
    }
    let a = ctx.client("a").await;
    assert_invalid(at_once(a.group("").join()).await, "join empty name");
    assert_invalid(
        at_once(a.group("g").ttl(Duration::ZERO).join()).await,
        "join zero ttl",
    );
    assert_invalid(at_once(a.group("").members()).await, "members empty name");
    assert_invalid(at_once(a.group("").observe()).await, "observe empty name");
    assert!(a.group("g").members().await.unwrap().members.is_empty());
}

/// A bad occurrence key, an empty job name, a zero TTL and a zero retention
/// are `InvalidArgument` at once, without running the body.
pub async fn job_invalid_input_refused(h: &dyn Harness) {
    let mut ctx = Ctx::new(h);
    if !ctx.require_leadership("job_invalid_input_refused").await {
        return;
    }
    let a = ctx.client("a").await;
    let body = |_| async { panic!("the body ran") };
    let long = "o".repeat(513);
    let bad = [
        ("empty occurrence", a.job("j"), ""),
        ("control character occurrence", a.job("j"), "a\nb"),
        ("513-byte occurrence", a.job("j"), long.as_str()),
        ("empty job", a.job(""), "o"),
        ("zero ttl", a.job("j").ttl(Duration::ZERO), "o"),
        ("zero retention", a.job("j").retention(Duration::ZERO), "o"),
    ];
    for (what, job, occ) in bad {
        assert_invalid(at_once(job.run_once(occ, body)).await, what);
    }
    assert_invalid(at_once(a.job("").run(body)).await, "run empty job");
    let ok = a.job("j").run_once("o", |_| async {}).await.unwrap();
    assert_eq!(ok, RunOnce::Ran(()), "nothing recorded by the refusals");
}
