//! Candidates and proclamations: waiting candidates listed, each candidacy a
//! lease; a leader's metadata replaced within its term, fenced by it.

use crate::cases::prelude::*;

cases! {
    family: "election", needs: [Need::Elections];

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

/// Metadata of more than `MAX_LEADER_METADATA_BYTES` (4 KiB) for a leader
/// or a candidate is `InvalidArgument` naming the election and the limit,
/// at once, from the client (`campaign`, `try_campaign`, `proclaim`) and
/// from the backend itself (a campaign that would elect, one that would
/// stand, a proclamation): nobody is elected, nobody stands, and a
/// leader keeps its term and metadata. Metadata of exactly the limit
/// (multi-byte characters counted in bytes) is published whole.
pub async fn election_metadata_over_its_limit_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let limit = coord_api::MAX_LEADER_METADATA_BYTES;
    let named = |res: Result<()>, what: &str| match res {
        Err(Error::InvalidArgument { message }) => assert!(
            message.contains("\"e\"") && message.contains(&limit.to_string()),
            "{what}: the refusal names the election and the limit: {message}"
        ),
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    };
    let (over, full) = ("é".repeat(limit / 2) + "x", "é".repeat(limit / 2));
    let e = a.election("e").ttl(ms(5000));
    let by_client = e.clone().metadata(over.clone());
    named(at_once(by_client.try_campaign()).await.map(drop), "try_campaign");
    named(at_once(by_client.campaign()).await.map(drop), "campaign");
    let backend = ctx.backend().await;
    let elections = backend.elections().expect("the backend offers elections");
    let (k, b) = (key("e"), holder("b"));
    let by_spi = |stand| elections.campaign(&k, &b, &over, ms(5000), None, stand);
    named(at_once(by_spi(false)).await.map(drop), "the backend's campaign");
    assert_eq!(o.election("e").leader().await.unwrap(), None, "nobody elected");
    let mut la = elect(&e.clone().metadata(full.clone()), "a").await;
    for stand in [false, true] {
        named(at_once(by_spi(stand)).await.map(drop), "the backend's campaign while led");
    }
    assert!(o.election("e").candidates().await.unwrap().is_empty(), "nobody stands");
    named(la.proclaim(over.clone()).await, "proclaim");
    let (holder, term) = (la.info().holder.clone(), la.term());
    let by_spi = elections.proclaim(&k, &holder, term, &over);
    named(at_once(by_spi).await.map(drop), "the backend's proclaim");
    assert!(la.is_leader(), "a refused proclamation loses nothing");
    let seen = o.election("e").leader().await.unwrap().expect("a leads");
    assert_eq!((seen.term, &seen.metadata), (term, &full), "the limit itself is published");
    assert_eq!(la.info().metadata, full);
    la.proclaim("v2").await.unwrap();
    la.resign().await.unwrap();
}
}
