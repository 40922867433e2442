//! Instance presence: announced with a client's first call (pid, host,
//! metadata), withdrawn by `close`, expired at its TTL when the client is
//! gone; and the stale leases it tells apart.

use super::*;

cases! {
    family: "ops", needs: [Need::Ops];

/// A client's presence is listed once it made a call, with this process's
/// id, a host name and its metadata; `close` withdraws it at once.
pub async fn presence_appears_and_close_withdraws_it(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let presence = PresenceOptions::default()
        .ttl(Duration::from_secs(3))
        .and_then(|p| p.metadata("version=1.2.3"))
        .expect("valid presence");
    let a = ctx.client_with_presence("a", default_options(), presence).await;
    assert!(listed(&op, "a").await.is_none(), "no presence before a's first call");
    a.operations().instances().await.expect("a's first call");
    let p = appears(&op, "a").await;
    assert_eq!((p.pid, p.metadata.as_str()), (std::process::id(), "version=1.2.3"));
    assert!(!p.host.is_empty(), "{p:?}");
    assert!(p.expires_in > Duration::ZERO && p.expires_in <= Duration::from_secs(3), "{p:?}");
    let since = ops_of(&ctx.backend().await).presence(&[p.instance]).await.unwrap();
    assert_eq!(since[0].as_ref().map(|q| q.since), Some(p.since), "one presence, one since");
    at_once(a.close()).await.expect("close");
    assert!(listed(&op, "a").await.is_none(), "close withdrew a's presence");
    assert!(listed(&op, "operator").await.is_none(), "a disabled presence is never announced");
}

/// A dropped client's presence is not withdrawn: it stays until its TTL,
/// then goes (nobody renews it).
pub async fn presence_expires_at_its_ttl_when_the_client_is_dropped(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let ttl = Duration::from_secs(3);
    let a = present_client(&ctx, "a", default_options(), ttl).await;
    a.operations().instances().await.expect("a's first call");
    let before = appears(&op, "a").await;
    drop(a);
    // Renewed every second, it had at least 2 s left when dropped.
    assert!(listed(&op, "a").await.is_some(), "a drop withdraws nothing");
    let gone = eventually(ttl + SOON, || async {
        listed(&op, "a").await.is_none().then_some(())
    })
    .await;
    assert!(gone.is_some(), "a's presence outlived its TTL: {before:?}");
}

/// `stale()` lists the leases whose holder's instance has no live
/// presence: a client that keeps none, an instance that withdrew its
/// presence, one whose presence expired; never a live client's lease.
#[needs(Need::Locks)]
pub async fn stale_lists_leases_whose_instance_is_gone(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let none = PresenceOptions::disabled();
    let ghost = ctx.client_with_presence("ghost", no_extend(30_000), none).await;
    let live = present_client(&ctx, "live", no_extend(30_000), Duration::from_secs(15)).await;
    let _g = take(&ghost.lock("ghost-lock"), "ghost").await;
    let _l = take(&live.lock("live-lock"), "live").await;
    appears(&op, "live").await;
    // Two instances at the SPI: one withdraws its presence, one lets it
    // expire; both keep a 30 s lease.
    let backend = ctx.backend().await;
    let (ops, locks) = (ops_of(&backend), locks(&backend));
    for (name, presence_ttl) in [("withdrawn", ms(30_000)), ("expired", ms(300))] {
        let instance = InstanceId::new(name).unwrap();
        ops.announce(&Presence::new(instance, 1, "h", ""), presence_ttl).await.unwrap();
        let id = LeaseId {
            kind: LeaseKind::Exclusive,
            key: key(&format!("{name}-lock")),
            holder: HolderId::new(instance),
        };
        assert!(matches!(locks.acquire(&id, ms(30_000)).await.unwrap(), Acquire::Granted(_)));
    }
    assert!(ops.withdraw(&InstanceId::new("withdrawn").unwrap()).await.unwrap());
    sleep(ms(400)).await; // the 300 ms presence expires
    let stale: Vec<String> = (op.stale().await.unwrap().into_iter())
        .map(|l| l.lease.resource.to_string())
        .collect();
    let mut want = ["lock:expired-lock", "lock:ghost-lock", "lock:withdrawn-lock"];
    want.sort();
    let mut got = stale.clone();
    got.sort();
    assert_eq!(got, want, "exactly the leases of gone instances");
    let all = op.leases(&LeaseFilter::all()).await.unwrap();
    let l = all.iter().find(|l| l.lease.resource.to_string() == "lock:live-lock");
    assert!(l.is_some_and(|l| l.holder_alive && !l.is_stale()), "{all:?}");
}
}
