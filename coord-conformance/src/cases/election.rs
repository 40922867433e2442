//! Elections: terms, quorum, observers and the leader runner.

use crate::cases::prelude::*;

cases! {
    family: "election", needs: [Need::Elections];

/// A term won after the previous leader resigned is greater than it.
pub async fn term_increases_across_resign(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let la = elect(&a.election("e"), "a").await;
    let (holder, t1) = (la.info().holder.clone(), la.term());
    assert!(la.resign().await.unwrap());
    let lb = elect(&b.election("e").ttl(ms(5000)), "b").await;
    let backend = ctx.backend().await;
    let backend = backend.elections().expect("the backend offers elections");
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

/// Without quorum nobody is elected: `try_campaign` is refused, `campaign`
/// times out, and the backend names no leader.
#[needs(Need::Groups)]
pub async fn no_quorum_elects_nobody(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
#[needs(Need::Groups)]
pub async fn quorum_loss_ends_leadership(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
#[needs(Need::Groups)]
pub async fn quorum_regained_allows_election(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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

/// An observer that keeps up sees every one of several successive terms, and
/// the vacancy between them, with `skipped` 0.
pub async fn observer_sees_every_term(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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

/// A runner calls `on_acquired` with the term it won, the one the backend
/// shows.
pub async fn runner_calls_on_acquired_with_term(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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

/// With `resign_on_return`, a runner's term ends when `on_acquired`
/// returns: the term is resigned and a waiting candidate wins at once
/// (long before the 5 s TTL), with a greater term.
pub async fn runner_callback_return_gives_up_leadership(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .leadership_timeout(ms(5000))
        .backoff(ms(1000), ms(1000))
        .resign_on_return(true)
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(lc.term);
            }
        })
        .start();
    let ta = timeout(ms(2000), rx.recv()).await.expect("a leads").unwrap();
    let t0 = Instant::now();
    let lb = timeout(ms(2000), b.election("e").ttl(ms(5000)).campaign())
        .await
        .expect("b wins once a's callback returned")
        .unwrap();
    assert!(lb.term() > ta);
    assert!(t0.elapsed() < ms(1000), "b won {:?} later", t0.elapsed());
    lb.resign().await.unwrap();
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
}

/// `LeaderContext::resign` gives the term up from inside the callback: its
/// lost signal fires, the runner no longer leads, and a waiting candidate
/// wins at once with a greater term.
pub async fn runner_context_resign_gives_up_leadership(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .leadership_timeout(ms(5000))
        .backoff(ms(1000), ms(1000))
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                lc.resign();
                lc.lost.wait().await;
                let _ = tx.send(lc.term);
            }
        })
        .start();
    let lb = timeout(ms(3000), b.election("e").ttl(ms(5000)).campaign())
        .await
        .expect("b wins once a gave the term up")
        .unwrap();
    // The callback is aborted once the term ends; whether it saw its
    // signal first is a race, so the term is read from the backend.
    let _ = rx.try_recv();
    assert!(!runner.is_leader());
    assert_eq!(current_term(&b, "e").await, Some(lb.term()));
    lb.resign().await.unwrap();
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
}

/// After its term is lost (backend cut off), a runner calls `on_lost` with
/// that term, and once the backend is back it campaigns again and wins a
/// greater term.
pub async fn runner_recampaigns_after_loss(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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

/// An empty election name, a zero TTL and a quorum of 0 members are
/// `InvalidArgument` at once, and nobody is elected.
pub async fn election_invalid_input_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
/// A `try_campaign` whose reply was lost after the backend elected the
/// candidate resigns that term: another candidate is elected within a
/// renewal interval, not after the term's TTL.
pub async fn lost_campaign_reply_frees_election(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    with_lost_reply(&switch, "try_campaign", a.election("e").try_campaign()).await;
    let lb = eventually(FREED_WITHIN, || async {
        b.election("e").try_campaign().await.unwrap()
    })
    .await
    .expect("the lost term was resigned");
    assert!(lb.resign().await.unwrap());
}

/// Candidates waiting in `campaign` are listed, with their metadata, since
/// when and time left, earliest first; the leader and a refused
/// `try_campaign` are not. The winner leaves the list in the step that
/// elects it, and a campaign dropped while it waits leaves it at once (long
/// before its 5 s TTL).
pub async fn waiting_candidates_are_listed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let la = elect(&a.election("e").ttl(ms(5000)), "a").await;
    let before = SystemTime::now();
    let mut waiting = Vec::new();
    for name in ["b", "c"] {
        let client = ctx.client(name).await;
        let election = client.election("e").ttl(ms(5000)).metadata(format!("{name}-meta"));
        waiting.push((name, campaign_task(election)));
        // One after the other, so that the list's order is known.
        eventually(ms(2000), || async {
            let listed = o.election("e").candidates().await.unwrap();
            listed.iter().any(|c| c.instance().as_str() == name).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{name} listed as a candidate"));
    }
    let d = ctx.client("d").await;
    assert!(d.election("e").try_campaign().await.unwrap().is_none());
    let listed = o.election("e").candidates().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.instance().as_str()).collect();
    assert_eq!(names, ["b", "c"], "the waiting campaigns, earliest first");
    for c in &listed {
        assert_eq!(c.metadata, format!("{}-meta", c.instance()));
        assert!(c.expires_in > Duration::ZERO && c.expires_in <= ms(5000), "{c:?}");
        let off = c.since.duration_since(before).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(5), "since {:?} far from now", c.since);
    }
    assert!(listed[0].since <= listed[1].since);

    assert!(la.resign().await.unwrap());
    let won = eventually(ms(3000), || async {
        waiting.iter().position(|(_, t)| t.is_finished())
    })
    .await
    .expect("a waiting candidate wins once a resigned");
    let (winner, task) = waiting.remove(won);
    let (lw, _) = join(task, ms(1000), winner).await.unwrap();
    let listed = o.election("e").candidates().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.instance().as_str()).collect();
    let (other, task) = waiting.pop().unwrap();
    assert_eq!(names, [other], "the winner left the list as it won");

    task.abort();
    let t0 = Instant::now();
    let gone = eventually(ms(1000), || async {
        o.election("e").candidates().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "a dropped campaign withdraws its candidacy");
    assert!(t0.elapsed() < ms(1000));
    lw.resign().await.unwrap();
}

/// A candidate's presence is a lease refreshed while it waits: a campaign
/// with a 300 ms TTL is still listed, with the same `since`, after several
/// TTLs of waiting.
pub async fn waiting_candidate_refreshes_its_candidacy(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, o) = (ctx.client("a").await, ctx.client("b").await, ctx.client("o").await);
    let la = elect(&a.election("e").ttl(ms(10_000)), "a").await;
    let waiter = campaign_task(b.election("e").ttl(ms(300)));
    let first = eventually(ms(2000), || async {
        o.election("e").candidates().await.unwrap().pop()
    })
    .await
    .expect("b listed as a candidate");
    // Three TTLs: a candidacy nobody refreshed would be gone.
    sleep(ms(900)).await;
    let now = o.election("e").candidates().await.unwrap();
    assert_eq!(now.len(), 1, "b still listed: {now:?}");
    assert_eq!((&now[0].holder, now[0].since), (&first.holder, first.since));
    assert!(now[0].expires_in <= ms(300), "{:?}", now[0]);
    assert!(!waiter.is_finished());
    assert!(la.resign().await.unwrap());
    let (lb, _) = join(waiter, ms(3000), "b's campaign").await.unwrap();
    lb.resign().await.unwrap();
}

/// A candidacy nobody refreshes (its process crashed) is listed until its
/// TTL ends, not after.
pub async fn crashed_candidate_expires_at_its_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let la = elect(&a.election("e").ttl(ms(10_000)), "a").await;
    let backend = ctx.backend().await;
    let elections = backend.elections().expect("the backend offers elections");
    let crashed = HolderId::new(InstanceId::new("crashed").unwrap());
    let (e, t0) = (key("e"), Instant::now());
    let stood = elections.campaign(&e, &crashed, "m", ms(400), None, true);
    assert!(matches!(stood.await.unwrap(), Campaign::Busy { .. }));
    let listed = o.election("e").candidates().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((&listed[0].holder, listed[0].metadata.as_str()), (&crashed, "m"));
    eventually(ms(2000), || async {
        o.election("e").candidates().await.unwrap().is_empty().then_some(())
    })
    .await
    .expect("the crashed candidacy expires");
    let gone_after = t0.elapsed();
    assert!(gone_after >= ms(390), "gone after {gone_after:?}, TTL 400 ms");
    assert!(gone_after <= ms(400 + 600), "gone only after {gone_after:?}");
    la.resign().await.unwrap();
}

/// Withdrawing a candidacy is checked like every change: a foreign holder
/// (another instance, or the same instance's other campaign) and a
/// candidacy already withdrawn are refused and change nothing, and an
/// expired candidacy is not revived.
pub async fn candidacy_withdraw_refused_for_foreign_or_expired(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let la = elect(&a.election("e").ttl(ms(10_000)), "a").await;
    let backend = ctx.backend().await;
    let elections = backend.elections().expect("the backend offers elections");
    let e = key("e");
    let b = InstanceId::new("b").unwrap();
    let (kept, short) = (HolderId::new(b), HolderId::new(b));
    let t0 = Instant::now();
    for (holder, ttl) in [(&short, ms(300)), (&kept, ms(10_000))] {
        let stood = elections.campaign(&e, holder, "", ttl, None, true);
        assert!(matches!(stood.await.unwrap(), Campaign::Busy { .. }));
    }
    // Past the short TTL, touching nothing meanwhile (a read may drop an
    // expired candidacy): the withdrawal must see the expiry by itself.
    sleep_until(t0 + ms(300 + 300)).await;
    assert!(!elections.withdraw_candidacy(&e, &short).await.unwrap(), "expired");
    let listed = o.election("e").candidates().await.unwrap();
    let holders: Vec<&HolderId> = listed.iter().map(|c| &c.holder).collect();
    assert_eq!(holders, [&kept], "the expired candidacy is not revived");
    for foreign in [intruder(), HolderId::new(b)] {
        assert!(!elections.withdraw_candidacy(&e, &foreign).await.unwrap());
    }
    let now = o.election("e").candidates().await.unwrap();
    assert_eq!(now.len(), 1, "a foreign withdrawal changed nothing: {now:?}");
    assert_eq!((&now[0].holder, now[0].since), (&kept, listed[0].since));
    assert!(elections.withdraw_candidacy(&e, &kept).await.unwrap());
    assert!(!elections.withdraw_candidacy(&e, &kept).await.unwrap(), "already withdrawn");
    assert!(o.election("e").candidates().await.unwrap().is_empty());
    la.resign().await.unwrap();
}

/// `proclaim` replaces the leader's metadata within its term: `leader()`
/// shows it with the same term, `seq` and `since`, the handle's `info()`
/// too, and an observer reports the change promptly (woken by it, not by
/// the term's 5 s expiry) with `skipped` 0.
pub async fn proclaim_updates_metadata_seen_by_observers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let mut la = elect(&a.election("e").ttl(ms(5000)).metadata("v1"), "a").await;
    let mut obs = o.election("e").observe().await.unwrap();
    let first = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert_eq!(first.leader.map(|l| l.metadata), Some("v1".to_owned()));
    let waiting = tokio::spawn(async move {
        let change = obs.next().await;
        (change, Instant::now())
    });
    sleep(ms(50)).await;
    let t0 = Instant::now();
    la.proclaim("v2").await.unwrap();
    assert_eq!(la.info().metadata, "v2");
    let seen = o.election("e").leader().await.unwrap().expect("a leads");
    assert_eq!(seen.metadata, "v2");
    let info = la.info();
    assert_eq!((seen.term, seen.seq, seen.since), (info.term, info.seq, info.since));
    let (change, t_seen) = join(waiting, ms(2000), "observer").await;
    let change = change.unwrap();
    let leader = change.leader.expect("still led");
    assert_eq!((leader.term, leader.metadata.as_str()), (la.term(), "v2"));
    assert_eq!(change.skipped, 0);
    assert!(t_seen - t0 < ms(500), "seen {:?} after the proclamation", t_seen - t0);
    assert!(la.is_leader());
    la.resign().await.unwrap();
}

/// A leader whose term ended at the backend (here: resigned behind its
/// back, and another candidate elected) is refused when it proclaims:
/// `LeaseLost`, its leadership is lost, and the new leader's metadata
/// stays.
pub async fn proclaim_by_stale_term_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut la = elect(&a.election("e").ttl(ms(5000)), "a").await;
    let backend = ctx.backend().await;
    let elections = backend.elections().expect("the backend offers elections");
    let (e, holder) = (key("e"), la.info().holder.clone());
    assert!(elections.resign(&e, &holder, la.term()).await.unwrap());
    let lb = elect(&b.election("e").ttl(ms(5000)).metadata("b"), "b").await;
    assert!(la.is_leader(), "a has not renewed since");
    let res = la.proclaim("a again").await;
    assert!(matches!(res, Err(Error::LeaseLost { .. })), "{res:?}");
    assert!(!la.is_leader(), "the refusal marks the leadership lost");
    let seen = a.election("e").leader().await.unwrap().expect("b leads");
    assert_eq!((seen.term, seen.metadata.as_str()), (lb.term(), "b"));
    lb.resign().await.unwrap();
}

/// Every call that names a term is checked against both the holder and
/// the term: the same holder's earlier term and another holder with the
/// current term are refused by renew, proclaim and resign, and change
/// nothing (the term's expiry, metadata and leader stay; no term counted).
pub async fn stale_or_foreign_term_refused_changes_nothing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let o = ctx.client("o").await;
    let backend = ctx.backend().await;
    let elections = backend.elections().expect("the backend offers elections");
    let e = key("e");
    let holder = HolderId::new(InstanceId::new("a").unwrap());
    let elected = |meta: &'static str| {
        let (e, holder) = (e.clone(), holder.clone());
        let elections = backend.elections().expect("elections");
        async move {
            match elections.campaign(&e, &holder, meta, ms(5000), None, false).await.unwrap() {
                Campaign::Elected(info) => info.term,
                busy => panic!("expected to be elected: {busy:?}"),
            }
        }
    };
    let t1 = elected("m1").await;
    assert!(elections.resign(&e, &holder, t1).await.unwrap());
    // The same holder again: only the term tells its two terms apart.
    let t2 = elected("m2").await;
    assert!(t2 > t1);
    let granted = elections.terms_granted(&e).await.unwrap();
    let stranger = intruder();
    for (who, term) in [(&holder, t1), (&stranger, t2)] {
        let what = format!("{who} term {term}");
        assert!(!elections.renew(&e, who, term, ms(60_000), None).await.unwrap(), "renew {what}");
        assert!(!elections.proclaim(&e, who, term, "stale").await.unwrap(), "proclaim {what}");
        assert!(!elections.resign(&e, who, term).await.unwrap(), "resign {what}");
        let seen = o.election("e").leader().await.unwrap().expect("still led");
        assert_eq!((&seen.holder, seen.term), (&holder, t2), "after {what}");
        assert_eq!(seen.metadata, "m2", "after {what}");
        assert!(seen.expires_in <= ms(5000), "extended by {what}: {seen:?}");
    }
    assert_eq!(elections.terms_granted(&e).await.unwrap(), granted);
    assert!(elections.resign(&e, &holder, t2).await.unwrap());
}

/// An expired term is not revived by anything that names it: renew,
/// proclaim and resign after its TTL are refused, nobody leads, and the
/// next term is still greater.
pub async fn expired_term_not_revived(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let o = ctx.client("o").await;
    let backend = ctx.backend().await;
    let elections = backend.elections().expect("the backend offers elections");
    let holder = HolderId::new(InstanceId::new("a").unwrap());
    // One election per operation, so that each meets its expired term
    // first.
    let (renewed, proclaimed, resigned) = (key("renewed"), key("proclaimed"), key("resigned"));
    let t0 = Instant::now();
    let mut terms = Vec::new();
    for e in [&renewed, &proclaimed, &resigned] {
        match elections.campaign(e, &holder, "m", ms(300), None, false).await.unwrap() {
            Campaign::Elected(info) => terms.push(info.term),
            busy => panic!("expected to be elected: {busy:?}"),
        }
    }
    // Past the TTL, touching nothing meanwhile (a read may drop an expired
    // term): each operation must see the expiry by itself.
    sleep_until(t0 + ms(300 + 300)).await;
    let renew = elections.renew(&renewed, &holder, terms[0], ms(5000), None);
    assert!(!renew.await.unwrap(), "renew");
    let proclaim = elections.proclaim(&proclaimed, &holder, terms[1], "late");
    assert!(!proclaim.await.unwrap(), "proclaim");
    let resign = elections.resign(&resigned, &holder, terms[2]);
    assert!(!resign.await.unwrap(), "resign");
    for (name, term) in ["renewed", "proclaimed", "resigned"].into_iter().zip(terms) {
        let e = key(name);
        assert_eq!(o.election(name).leader().await.unwrap(), None, "{name}: revived");
        assert_eq!(elections.terms_granted(&e).await.unwrap(), Some(1), "{name}");
        let next = elect(&o.election(name), "o after the expiry").await;
        assert!(next.term() > term, "{name}");
        next.resign().await.unwrap();
    }
}
}
