//! Membership groups: join, leave, crashed and unreachable members, observers.

use coord_api::MAX_MEMBER_METADATA_BYTES;

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

/// Every `join` is a membership of its own, also twice from one instance
/// (even through one handle): two members with two holder ids, and leaving
/// one leaves the other listed and renewed.
pub async fn joining_twice_makes_two_members(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", default_options().ttl(ms(1000))).await;
    let group = a.group("g");
    let (first, second) = (group.join().await.unwrap(), group.join().await.unwrap());
    assert_ne!(first.holder(), second.holder());
    assert_eq!(first.holder().instance(), second.holder().instance());
    assert_eq!(a.group("g").members().await.unwrap().members.len(), 2);
    assert!(first.leave().await.unwrap(), "the first was a member");
    // Past two of its TTLs: the second is still there, renewed.
    sleep(ms(2100)).await;
    let live = a.group("g").members().await.unwrap();
    let ids: Vec<_> = live.members.iter().map(|m| &m.holder).collect();
    assert_eq!(ids, vec![second.holder()], "only the second is left");
    assert!(second.is_member());
    second.leave().await.unwrap();
}

/// Dropping a `Membership` (no `leave`) leaves the group in the
/// background, long before its TTL (30 s here) would end it.
pub async fn dropped_membership_leaves_in_the_background(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(30_000)).await;
    let b = ctx.client("b").await;
    let m = a.group("g").join().await.unwrap();
    assert_eq!(b.group("g").members().await.unwrap().members.len(), 1);
    drop(m);
    let gone = eventually(ms(5000), || async {
        b.group("g").members().await.unwrap().members.is_empty().then_some(())
    });
    assert!(gone.await.is_some(), "the dropped member still listed after 5 s");
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

/// Metadata over `MAX_MEMBER_METADATA_BYTES` is `InvalidArgument` naming
/// the group and the limit, at once, from the client and from the backend
/// itself, and nobody joins; metadata of exactly the limit (multi-byte
/// characters counted in bytes) joins and is listed whole.
pub async fn group_metadata_over_its_limit_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let limit = MAX_MEMBER_METADATA_BYTES;
    let named = |res: Result<()>, what: &str| match res {
        Err(Error::InvalidArgument { message }) => assert!(
            message.contains("\"g\"") && message.contains(&limit.to_string()),
            "{what}: the refusal names the group and the limit: {message}"
        ),
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    };
    let over = "é".repeat(limit / 2) + "x";
    let joined = at_once(a.group("g").metadata(over.clone()).join()).await;
    named(joined.map(drop), "the client's join");
    let backend = ctx.backend().await;
    let (g, member) = (key("g"), holder("a"));
    let by_spi = group_backend(&backend).join(&g, &member, &over, ms(1000));
    named(at_once(by_spi).await, "the backend's join");
    assert!(a.group("g").members().await.unwrap().members.is_empty(), "nobody joined");
    let full = "é".repeat(limit / 2);
    let m = a.group("g").metadata(full.clone()).join().await.unwrap();
    let live = a.group("g").members().await.unwrap();
    let listed: Vec<_> = live.members.iter().map(|m| m.metadata.as_str()).collect();
    assert_eq!(listed, vec![full.as_str()], "the limit itself joins");
    m.leave().await.unwrap();
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

/// A heartbeat through the SPI by a holder that is not the member (another
/// client's id; an earlier incarnation of the member's instance, which left)
/// answers `false` and changes nothing: the member keeps its metadata, join
/// time and deadline, nobody is added, and `seq` stays.
pub async fn heartbeat_by_foreign_or_stale_holder_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.backend().await, ctx.backend().await);
    let (ga, gb) = (group_backend(&a), group_backend(&b));
    let g = key("g");
    let (stale, live) = rejoined(ga, &g).await;
    let before = ga.members(&g).await.unwrap();
    let foreign = holder("b");
    for (who, groups, by) in [("foreign", gb, &foreign), ("stale", ga, &stale)] {
        let took = groups.heartbeat(&g, by, ms(60_000)).await.unwrap();
        assert!(!took, "{who} holder's heartbeat accepted");
        assert_group_unchanged(&before, &ga.members(&g).await.unwrap(), who);
    }
    let own = ga.heartbeat(&g, &live, ms(2000)).await.unwrap();
    assert!(own, "the member's own heartbeat is accepted");
}

/// A leave through the SPI by a holder that is not the member (another
/// client's id; an earlier incarnation of the member's instance, which left)
/// answers `false` and changes nothing: the member stays listed as it was and
/// `seq` stays.
pub async fn leave_by_foreign_or_stale_holder_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.backend().await, ctx.backend().await);
    let (ga, gb) = (group_backend(&a), group_backend(&b));
    let g = key("g");
    let (stale, live) = rejoined(ga, &g).await;
    let before = ga.members(&g).await.unwrap();
    let foreign = holder("b");
    for (who, groups, by) in [("foreign", gb, &foreign), ("stale", ga, &stale)] {
        let left = groups.leave(&g, by).await.unwrap();
        assert!(!left, "{who} holder's leave accepted");
        assert_group_unchanged(&before, &ga.members(&g).await.unwrap(), who);
    }
    assert!(ga.leave(&g, &live).await.unwrap(), "the member itself leaves");
}

/// A heartbeat of a member whose lease expired answers `false` and does not
/// bring it back, whether the expiry went unnoticed until the heartbeat or a
/// reader saw the member gone first; `seq` counts the expiry once and the
/// heartbeat not at all.
pub async fn heartbeat_after_expiry_does_not_revive(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.backend().await;
    let ga = group_backend(&a);
    let g = key("g");
    for noticed in [false, true] {
        let seq = ga.members(&g).await.unwrap().seq;
        let member = holder("a");
        ga.join(&g, &member, "", SHORT).await.unwrap();
        expire(ga, &g, &member, noticed).await;
        let took = ga.heartbeat(&g, &member, ms(60_000)).await.unwrap();
        assert!(!took, "heartbeat after expiry accepted (noticed first: {noticed})");
        let after = ga.members(&g).await.unwrap();
        assert!(
            after.members.is_empty(),
            "heartbeat revived an expired member (noticed first: {noticed}): {after:?}"
        );
        assert_eq!(
            after.seq,
            seq + 2,
            "seq counts the join and the expiry, not the heartbeat (noticed first: {noticed})"
        );
    }
}

/// A leave of a member whose lease expired answers `false`, lists nobody
/// and counts no second change: `seq` counts the expiry once, whether it
/// went unnoticed until the leave or a reader saw the member gone first.
pub async fn leave_after_expiry_does_not_revive(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.backend().await;
    let ga = group_backend(&a);
    let g = key("g");
    for noticed in [false, true] {
        let seq = ga.members(&g).await.unwrap().seq;
        let member = holder("a");
        ga.join(&g, &member, "", SHORT).await.unwrap();
        expire(ga, &g, &member, noticed).await;
        let left = ga.leave(&g, &member).await.unwrap();
        assert!(!left, "leave after expiry accepted (noticed first: {noticed})");
        let after = ga.members(&g).await.unwrap();
        assert!(after.members.is_empty(), "{after:?}");
        assert_eq!(
            after.seq,
            seq + 2,
            "seq counts the join and the expiry, not the leave (noticed first: {noticed})"
        );
    }
}

/// The change counter `seq` counts each expiry as one change, like a leave:
/// one a reader saw, and one nobody noticed before the next join.
pub async fn group_seq_counts_expiries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.backend().await;
    let ga = group_backend(&a);
    let g = key("g");
    let stays = holder("w");
    ga.join(&g, &stays, "", ms(10_000)).await.unwrap();
    let s0 = ga.members(&g).await.unwrap().seq;
    let seen = holder("a");
    ga.join(&g, &seen, "", SHORT).await.unwrap();
    assert_eq!(ga.members(&g).await.unwrap().seq, s0 + 1, "the join counted");
    let gone = expire(ga, &g, &seen, true).await;
    assert_eq!(gone.seq, s0 + 2, "the expiry a reader saw is counted");
    let unseen = holder("b");
    ga.join(&g, &unseen, "", SHORT).await.unwrap();
    expire(ga, &g, &unseen, false).await;
    let later = holder("c");
    ga.join(&g, &later, "", ms(10_000)).await.unwrap();
    let now = ga.members(&g).await.unwrap();
    let ids: Vec<_> = now.members.iter().map(|m| &m.holder).collect();
    assert_eq!(ids, vec![&stays, &later], "{now:?}");
    assert_eq!(
        now.seq,
        s0 + 5,
        "seq counts b's join, its unnoticed expiry and c's join"
    );
    ga.leave(&g, &stays).await.unwrap();
    ga.leave(&g, &later).await.unwrap();
}

/// An observer counts expiries as changes: one it kept up with wakes it
/// (at the expiry) with `skipped` 0, and an expiry it missed counts in
/// `skipped` with the joins it missed.
pub async fn group_observer_counts_expiries(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let o = ctx.client("o").await;
    let (a, b) = (ctx.client_with("a", no_extend(150)).await, ctx.client("b").await);
    let c = ctx.client_with("c", no_extend(300)).await;
    let names = |change: &coord_api::GroupChange| -> Vec<String> {
        let mut v: Vec<_> = (change.members.members.iter())
            .map(|m| m.holder.instance().as_str().to_owned())
            .collect();
        v.sort();
        v
    };
    let mut obs = o.group("g").observe().await.unwrap();
    let first = timeout(ms(2000), obs.next()).await.expect("first").unwrap();
    assert!(first.members.members.is_empty());
    // Missed: a joins and expires, then b joins; then the observer looks.
    let ma = a.group("g").join().await.unwrap();
    let joined = Instant::now();
    std::mem::forget(ma); // crash
    past_deadline(joined, ms(150)).await;
    let mb = b.group("g").join().await.unwrap();
    let seen = timeout(ms(2000), obs.next()).await.expect("seen").unwrap();
    assert_eq!(
        (names(&seen), seen.skipped),
        (vec!["b".to_owned()], 2),
        "a's join and expiry missed, b's join woke it"
    );
    // Kept up with: c joins, the observer sees it, then c expires.
    let mc = c.group("g").join().await.unwrap();
    std::mem::forget(mc); // crash
    let seen = timeout(ms(2000), obs.next()).await.expect("c's join").unwrap();
    assert_eq!((names(&seen), seen.skipped), (vec!["b".to_owned(), "c".to_owned()], 0));
    let seen = timeout(ms(2000), obs.next())
        .await
        .expect("c's expiry wakes the observer")
        .unwrap();
    assert_eq!(
        (names(&seen), seen.skipped),
        (vec!["b".to_owned()], 0),
        "c's expiry is one change"
    );
    mb.leave().await.unwrap();
}
}

/// A member of `g` whose instance joined before as another holder and left:
/// `(stale, live)`, the earlier incarnation and the member.
async fn rejoined(groups: &dyn GroupBackend, g: &Key) -> (HolderId, HolderId) {
    let stale = holder("a");
    groups.join(g, &stale, "old", ms(2000)).await.unwrap();
    assert!(
        groups.leave(g, &stale).await.unwrap(),
        "the first incarnation leaves"
    );
    let live = holder("a");
    groups.join(g, &live, "now", ms(2000)).await.unwrap();
    (stale, live)
}

/// The TTL of members a case lets expire.
const SHORT: Duration = Duration::from_millis(300);

/// Waits until `member`, just joined with a TTL of [`SHORT`], has expired.
/// `noticed`: polls the members until it is no longer listed (a reader saw
/// the expiry); otherwise waits past its deadline reading nothing. Returns
/// the last members read (`Members::default()` when not `noticed`).
async fn expire(groups: &dyn GroupBackend, g: &Key, member: &HolderId, noticed: bool) -> Members {
    let joined = Instant::now();
    if !noticed {
        past_deadline(joined, SHORT).await;
        return Members::default();
    }
    eventually(ms(2000), || async {
        let now = groups.members(g).await.unwrap();
        (!now.members.iter().any(|m| m.holder == *member)).then_some(now)
    })
    .await
    .expect("the member expires within its TTL and a bound")
}

/// Panics unless `after` lists the members of `before` as they were (ids,
/// metadata, join times, no deadline later) with the same `seq`.
#[track_caller]
fn assert_group_unchanged(before: &Members, after: &Members, who: &str) {
    let plain = |m: &Members| {
        let v: Vec<_> = (m.members.iter())
            .map(|i| (i.holder.clone(), i.metadata.clone(), i.joined))
            .collect();
        (v, m.seq)
    };
    assert_eq!(
        plain(after),
        plain(before),
        "the {who} holder's call changed the group"
    );
    for (was, is) in before.members.iter().zip(&after.members) {
        assert!(
            is.expires_in <= was.expires_in,
            "the {who} holder's call extended {}: {:?} left, then {:?}",
            is.holder,
            was.expires_in,
            is.expires_in
        );
    }
}
