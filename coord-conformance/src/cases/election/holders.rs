//! Holder-bound calls: a stale or foreign term is refused and changes
//! nothing; an expired term is not revived.

use crate::cases::prelude::*;

cases! {
    family: "election", needs: [Need::Elections];

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
