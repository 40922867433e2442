//! Membership groups: join, leave, crashed and unreachable members, observers.

use crate::cases::prelude::*;

cases! {
    family: "group", needs: [Need::Groups];

/// A joined member is listed, with its id and metadata, by anyone.
pub async fn join_lists_member_with_metadata(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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
    let ctx = Ctx::new(h);
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

/// An empty group name and a zero TTL are `InvalidArgument` at once, and
/// nobody joins.
pub async fn group_invalid_input_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
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
/// A `join` whose reply was lost after the backend added the member removes
/// it again: the group is empty within a renewal interval, not after the
/// heartbeat's TTL.
pub async fn lost_join_reply_leaves_group(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    with_lost_reply(&switch, "join", a.group("g").join()).await;
    let left = eventually(FREED_WITHIN, || async {
        b.group("g").members().await.unwrap().members.is_empty().then_some(())
    })
    .await;
    assert!(left.is_some(), "the member whose join reply was lost is gone");
}
}
