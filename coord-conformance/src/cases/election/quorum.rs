//! Quorum: no election without it, a leader that loses it loses its term, a
//! waiter elected once it is back.

use crate::cases::prelude::*;

cases! {
    family: "election", needs: [Need::Elections];

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
}
