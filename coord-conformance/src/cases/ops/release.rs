//! Force release, fenced and audited: the aimed-at lease goes and nothing
//! else, the next grant's token is larger, the old holder loses its lease
//! at its next renewal, waiters get it promptly, every attempt is in the
//! audit trail; and health.

use super::*;

/// A holder's options here: renewed every 3 s (so a revoked lease is
/// noticed at the next renewal, within [`SOON`]), while a waiter's retry
/// delay of 10 s leaves only the backend's notification to wake it within
/// [`FREED_WITHIN`].
fn renewed() -> LeaseOptions {
    default_options().ttl(LOST_REPLY_TTL)
}

/// Waits (at most [`SOON`]) for `lost` to fire.
async fn fires(lost: &LostSignal, what: &str) {
    timeout(SOON, lost.wait())
        .await
        .unwrap_or_else(|_| panic!("{what}: the lost signal did not fire within {SOON:?}"));
}

/// The newest audit record.
async fn last_audit(op: &Operations) -> coord_api::spi::AuditRecord {
    let records = op.audit(1).await.unwrap();
    records.into_iter().next().expect("an audit record")
}

cases! {
    family: "ops", needs: [Need::Ops];

/// A force release with the holder's token removes its lease: a waiter
/// gets the lock promptly with a larger token, the holder's lost signal
/// fires, and the audit trail names operator, reason, resource, token and
/// outcome.
#[needs(Need::Locks, Need::ReleaseNotifications)]
pub async fn force_release_frees_the_lease_for_a_waiter_and_audits(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", renewed()).await;
    let b = ctx.client("b").await;
    let g = take(&a.lock("k"), "a").await;
    let lock = b.lock("k");
    let waiter = tokio::spawn(async move { lock.lock().await });
    // Lets the waiter find the lock taken and wait: had it not yet, it
    // would get the lock at its first try and the case would prove less,
    // never fail.
    sleep(ms(300)).await;
    let k = res("lock:k");
    let forced = op.force_release(&k, g.token(), "holder wedged, ticket #4411").await.unwrap();
    assert_eq!(forced, Forced::Released { holder: g.holder().clone() });
    let got = join(waiter, FREED_WITHIN, "the waiter").await.expect("b's lock");
    assert!(got.token() > g.token(), "{:?} after {:?}", got.token(), g.token());
    fires(&g.lost_signal(), "a's guard").await;
    assert!(!g.is_held());
    let r = last_audit(&op).await;
    assert_eq!((r.operator.as_str(), r.action.as_str()), (OPERATOR, "force-release"));
    assert_eq!((&r.resource, r.token), (&k, g.token()));
    assert_eq!(r.reason, "holder wedged, ticket #4411");
    assert!(r.outcome.contains("released") && r.outcome.contains('a'), "{r:?}");
    let holders = op.holders(&k).await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(&holders[0].lease.holder, got.holder());
}

/// A force release aimed at an older token once a new holder has the lock
/// changes nothing: `NotFound` with the live token, the new holder keeps
/// it, and the refusal is audited naming the live token (or no live lease).
#[needs(Need::Locks)]
pub async fn force_release_with_a_stale_token_leaves_the_new_holder(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(30_000)).await;
    let b = ctx.client_with("b", no_extend(30_000)).await;
    let k = res("lock:k");
    let old = take(&a.lock("k"), "a").await;
    let first = op.force_release(&k, old.token(), "first").await.unwrap();
    assert!(matches!(first, Forced::Released { .. }), "{first:?}");
    let new = take(&b.lock("k"), "b after the release").await;
    let again = op.force_release(&k, old.token(), "stale").await.unwrap();
    assert_eq!(again, Forced::NotFound { current: vec![new.token()] });
    assert!(new.extend().await.unwrap(), "b still holds it");
    assert!(is_busy(&a.lock("k")).await);
    let r = last_audit(&op).await;
    assert_eq!((r.token, r.reason.as_str()), (old.token(), "stale"));
    // The tokens as `holders` prints them (an operator copies one from
    // here into `--token`), not as Rust debug output.
    assert_eq!(r.outcome, format!("not found (live tokens: {})", new.token()));
    let k2 = res("lock:k2");
    let none = op.force_release(&k2, old.token(), "free").await.unwrap();
    assert_eq!(none, Forced::NotFound { current: vec![] });
    assert_eq!(last_audit(&op).await.outcome, "not found (no live lease)");
}

/// A force release whose reply is lost (the revocation applied, the
/// caller told `Unavailable`) is in the audit trail all the same, its
/// outcome `unknown`; the error names the resource and says the outcome is
/// unknown. Without the record, the operator's retry finds no live lease
/// and the trail shows only that: nothing says who released it.
#[needs(Need::Locks)]
pub async fn force_release_left_unanswered_is_audited_as_unknown(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(30_000)).await;
    let g = take(&a.lock("k"), "a").await;
    let (lossy, switch) = ctx.switchable_client("lossy-operator", default_options()).await;
    let lossy = lossy.operations().operator(OPERATOR);
    let k = res("lock:k");
    switch.losing_replies();
    let out = lossy.force_release(&k, g.token(), "reply lost").await;
    switch.on();
    assert!(matches!(out, Err(Error::Unavailable { .. })), "{out:?}");
    assert!(op.holders(&k).await.unwrap().is_empty(), "the revocation was applied");
    let r = last_audit(&op).await;
    assert_eq!((&r.resource, r.token, r.reason.as_str()), (&k, g.token(), "reply lost"));
    assert!(r.outcome.starts_with("unknown"), "{r:?}");
    let text = out.unwrap_err().to_string();
    assert!(text.contains("lock:k") && text.contains("unknown"), "{text}");
}

/// Revoking one of two permits leaves the other, and one reader of two
/// leaves the other.
#[needs(Need::Semaphore, Need::ReadWrite)]
pub async fn force_release_of_one_permit_or_reader_leaves_the_other(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(30_000)).await;
    let b = ctx.client_with("b", no_extend(30_000)).await;
    let pa = a.semaphore("s", 2).try_acquire().await.unwrap().expect("a permit");
    let pb = b.semaphore("s", 2).try_acquire().await.unwrap().expect("b permit");
    let out = op.force_release(&res("semaphore:s"), pa.token(), "leak").await.unwrap();
    assert_eq!(out, Forced::Released { holder: pa.holder().clone() });
    assert!(pb.extend().await.unwrap(), "b's permit stays");
    assert!(!pa.extend().await.unwrap(), "a's permit is gone");
    let left = op.holders(&res("semaphore:s")).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].lease.token, Some(pb.token()));
    let ra = a.rwlock("rw").try_read().await.unwrap().expect("a reads");
    let rb = b.rwlock("rw").try_read().await.unwrap().expect("b reads");
    op.force_release(&res("rwlock:rw"), rb.token(), "stuck reader").await.unwrap();
    assert!(ra.extend().await.unwrap() && !rb.extend().await.unwrap());
    let left = op.holders(&res("rwlock:rw")).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].lease.token, Some(ra.token()));
}

/// Revoking a leader's term ends it: an observer sees it end, a waiting
/// candidate wins promptly with a larger term, the old leader learns it
/// lost.
#[needs(Need::Elections)]
pub async fn force_release_ends_a_term_and_another_candidate_wins(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", renewed()).await;
    let (b, c) = (ctx.client("b").await, ctx.client("c").await);
    let lead = elect(&a.election("e"), "a").await;
    let mut observer = c.election("e").observe().await.unwrap();
    let first = timeout(SOON, observer.next()).await.expect("observed").unwrap();
    assert_eq!(first.leader.map(|l| l.term), Some(lead.term()));
    let candidate = campaign_task(b.election("e"));
    sleep(ms(300)).await; // b finds a leading and waits (as above)
    let out = op.force_release(&res("election:e"), lead.term(), "split brain drill").await.unwrap();
    assert_eq!(out, Forced::Released { holder: lead.info().holder.clone() });
    let (won, _) = join(candidate, FREED_WITHIN, "b's campaign").await.unwrap();
    assert!(won.term() > lead.term());
    let mut after = Vec::new();
    while after.last() != Some(&Some(won.term())) {
        let change = timeout(SOON, observer.next()).await.expect("observed").unwrap();
        after.push(change.leader.map(|l| l.term));
    }
    assert!(after[0] != Some(lead.term()), "the observer saw the term end: {after:?}");
    fires(&lead.lost_signal(), "a's leadership").await;
    assert!(!lead.is_leader());
}

/// Revoking a run ends it like a crashed run: its body's lost signal
/// fires, its `run_once` reports the lease lost, and the occurrence
/// begins again (attempt 2) with a larger token.
#[needs(Need::Jobs)]
pub async fn force_release_of_a_run_lets_it_begin_again(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let (a, b) = (ctx.client_with("a", renewed()).await, ctx.client("b").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job = a.job("j");
    let first = tokio::spawn(async move {
        job.run_once("o", |c| async move {
            tx.send(c.token).unwrap();
            c.lost.wait().await;
        })
        .await
    });
    let token = timeout(SOON, rx.recv()).await.expect("the run began").unwrap();
    let out = op.force_release(&res("job:j@o"), token, "hung run").await.unwrap();
    assert!(matches!(out, Forced::Released { .. }), "{out:?}");
    let res_a = join(first, SOON, "a's run").await;
    assert!(matches!(res_a, Err(Error::LeaseLost { .. })), "{res_a:?}");
    let again = b.job("j").run_once("o", |c| async move { (c.attempt, c.token) }).await.unwrap();
    match again {
        RunOnce::Ran((attempt, t)) => assert!(attempt == 2 && t > token, "{attempt} {t:?}"),
        other => panic!("the occurrence begins again, not {other:?}"),
    }
}

/// A group's members carry no token: force releasing one is
/// `InvalidArgument` (at the client and at the backend); an empty reason
/// is `InvalidArgument` and releases nothing.
#[needs(Need::Groups, Need::Locks)]
pub async fn force_release_refuses_groups_and_empty_reasons(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(30_000)).await;
    let _m = a.group("g").join().await.unwrap();
    assert_invalid(op.force_release(&res("group:g"), FencingToken(1), "why").await, "a group");
    let backend = ctx.backend().await;
    assert_invalid(ops_of(&backend).revoke(&res("group:g"), FencingToken(1)).await, "spi group");
    let g = take(&a.lock("k"), "a").await;
    for reason in ["", "   "] {
        assert_invalid(op.force_release(&res("lock:k"), g.token(), reason).await, "no reason");
    }
    assert!(g.extend().await.unwrap(), "nothing was released");
    assert!(op.audit(10).await.unwrap().is_empty(), "nothing was done, nothing audited");
}

/// The audit trail pages newest first: `audit(n)` the newest n, a walk by
/// cursor every record once, oldest last.
pub async fn audit_pages_newest_first(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    for i in 0..3 {
        let r = res(&format!("lock:x{i}"));
        let out = op.force_release(&r, FencingToken(7), &format!("reason {i}")).await.unwrap();
        assert!(matches!(out, Forced::NotFound { .. }), "{out:?}");
    }
    let reasons = |v: Vec<coord_api::spi::AuditRecord>| -> Vec<String> {
        v.into_iter().map(|r| r.reason).collect()
    };
    assert_eq!(reasons(op.audit(2).await.unwrap()), ["reason 2", "reason 1"]);
    let (mut all, mut cursor) = (Vec::new(), Cursor::start());
    loop {
        let page = op.audit_page(&cursor, 1).await.unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
        assert!(all.len() <= 3, "the walk does not end");
    }
    assert!(all.windows(2).all(|w| w[0].at >= w[1].at), "{all:?}");
    assert_eq!(reasons(all), ["reason 2", "reason 1", "reason 0"]);
}

/// `health()` on a working backend is Ready, with a measured round trip
/// and clock offset.
pub async fn health_is_ready_on_a_working_backend(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let health = op.health().await;
    assert_eq!(health.status, Status::Ready, "{health:?}");
    for name in ["round_trip", "clock_offset"] {
        let c = health.checks.iter().find(|c| c.name == name);
        assert!(c.is_some_and(|c| c.value.is_some()), "{name} missing: {health:?}");
    }
}

/// Health is `Degraded` past its thresholds, each check naming its figure:
/// a probe taking 400 ms (`round_trip`, degraded above 250 ms), and a
/// client whose wall clock runs 2 s ahead of the backend's
/// (`clock_offset`, degraded above 500 ms).
pub async fn health_is_degraded_past_its_thresholds(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let check = |health: &coord_api::Health, name: &str| {
        let c = health.checks.iter().find(|c| c.name == name);
        c.unwrap_or_else(|| panic!("no {name} in {health:?}")).clone()
    };
    let (slow, switch) = ctx.switchable_client("slow", default_options()).await;
    switch.slow_requests("probe", ms(400));
    let health = slow.operations().health().await;
    switch.slow_requests("probe", Duration::ZERO);
    assert_eq!(health.status, Status::Degraded, "{health:?}");
    let round_trip = check(&health, "round_trip");
    assert_eq!(round_trip.status, Status::Degraded, "{health:?}");
    assert!(round_trip.value.is_some_and(|v| v >= ms(400)), "{health:?}");
    let ahead = coord_api::SkewedClock::new(coord_api::TokioClock, 2_000_000_000, 0.0);
    let skewed = Client::builder(ctx.backend().await)
        .instance_id("skewed")
        .expect("valid instance id")
        .clock(Arc::new(ahead))
        .build();
    let health = skewed.operations().health().await;
    assert_eq!(health.status, Status::Degraded, "{health:?}");
    let offset = check(&health, "clock_offset");
    assert_eq!(offset.status, Status::Degraded, "{health:?}");
    let by = offset.value.expect("an offset measured");
    assert!(by > ms(1500) && by < ms(2500), "{health:?}");
}
}
