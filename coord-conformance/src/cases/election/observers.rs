//! Observers: every term seen by one that keeps up, skipped terms told to one
//! that falls behind, a vacancy reported promptly.

use coord_api::LeaderObserver;

use crate::cases::prelude::*;

cases! {
    family: "election", needs: [Need::Elections];

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
    a_term_seen_then_resigned(&a, &mut obs).await;
    terms_unobserved_then_one_seen(&a, &mut obs, 3).await;
}

/// An observer that falls behind terms that all ended is told how many it
/// skipped with the vacancy it sees next (not only with a next term,
/// which may never come).
pub async fn lagging_observer_told_it_skipped_at_a_vacancy(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let mut obs = b.election("e").observe().await.unwrap();
    a_term_seen_then_resigned(&a, &mut obs).await;
    for _ in 0..2 {
        let l = elect(&a.election("e"), "unobserved term").await;
        l.resign().await.unwrap();
    }
    let vacancy = timeout(ms(2000), obs.next()).await.expect("vacancy").unwrap();
    assert_eq!((vacancy.leader, vacancy.skipped), (None, 2));
    let last = elect(&a.election("e"), "last").await;
    let seen = timeout(ms(2000), obs.next()).await.expect("next").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(last.term()));
    assert_eq!(seen.skipped, 0, "the two were told already");
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
    terms_unobserved_then_one_seen(&a, &mut obs, 2).await;
}

/// Cancelling `next()` loses nothing: one cancelled while it waits, and
/// one cancelled while its read of the new state is on its way (1 s slow
/// here), leave the change to the next call, which reports it at once.
pub async fn observer_next_cancelled_loses_no_change(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let (o, switch) = ctx.switchable_client("o", default_options()).await;
    let la = elect(&a.election("e").ttl(ms(5000)), "a").await;
    let mut obs = o.election("e").observe().await.unwrap();
    let seen = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(la.term()));
    // Cancelled while waiting for a change.
    assert!(timeout(ms(200), obs.next()).await.is_err(), "no change yet");
    la.resign().await.unwrap();
    let vacancy = timeout(ms(2000), obs.next()).await.expect("the vacancy").unwrap();
    assert_eq!(vacancy.leader, None);
    // Cancelled while reading the new leader.
    let lb = elect(&a.election("e").ttl(ms(5000)), "b").await;
    switch.slow_requests("leader", ms(1000));
    assert!(timeout(ms(300), obs.next()).await.is_err(), "cut mid-read");
    switch.slow_requests("leader", Duration::ZERO);
    let next = timeout(ms(2000), obs.next()).await.expect("the new term, at once").unwrap();
    assert_eq!(next.leader.map(|l| l.term), Some(lb.term()));
    lb.resign().await.unwrap();
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
}

/// `a` leads a term of `"e"`, which `obs` sees, and resigns it.
async fn a_term_seen_then_resigned(a: &Client, obs: &mut LeaderObserver) {
    let la = elect(&a.election("e"), "first").await;
    let seen = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(la.term()));
    la.resign().await.unwrap();
}

/// `a` leads and resigns `n` terms of `"e"` while `obs` does not read, then
/// leads one more: `obs` next sees that term, told it skipped the `n`.
async fn terms_unobserved_then_one_seen(a: &Client, obs: &mut LeaderObserver, n: u64) {
    for _ in 0..n {
        elect(&a.election("e"), "unobserved term")
            .await
            .resign()
            .await
            .unwrap();
    }
    let last = elect(&a.election("e"), "last").await;
    let seen = timeout(ms(2000), obs.next()).await.expect("next").unwrap();
    assert_eq!(seen.leader.map(|l| l.term), Some(last.term()));
    assert_eq!(seen.skipped, n, "{n} terms began and ended unobserved");
    last.resign().await.unwrap();
}
