//! Terms: each greater than the last, one leader among many, a crashed or
//! cut-off leader replaced, bad input refused, a lost campaign reply undone.

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
}
