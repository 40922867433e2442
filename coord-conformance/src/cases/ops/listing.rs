//! Listing leases across families: what each record says, the kind and
//! prefix filters, walking with a cursor, bounded pages.

use super::*;

/// The TTL of every lease listed here: long, so `expires_in` is checked
/// against it with room to spare.
const LONG: u64 = 30_000;

/// Whether `r` expires within (20 s, 30 s] and was granted within the last
/// minute by the backend's clock (allowing for a skewed one).
#[track_caller]
fn fresh(r: &LeaseRecord) {
    assert!(
        r.expires_in > ms(20_000) && r.expires_in <= ms(LONG),
        "{r:?}"
    );
    let at = r
        .acquired_at()
        .unwrap_or_else(|| panic!("no acquired_at: {r:?}"));
    let off = match at.duration_since(SystemTime::now()) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(
        off < Duration::from_secs(60),
        "acquired {off:?} away from now: {r:?}"
    );
}

cases! {
    family: "ops", needs: [Need::Ops];

/// `leases()` lists a lock, a reentrant lock held twice, two readers and a
/// waiting writer's intent, two permits, a leader's term (with its one
/// waiting candidate as waiters), two members and a run, each with its
/// resource, role, holder, token, time left and grant time; `holders()`
/// lists one resource's.
#[needs(
    Need::Reentrant, Need::ReadWrite, Need::Semaphore, Need::Elections, Need::Groups, Need::Jobs
)]
pub async fn leases_list_every_family_with_holders_and_tokens(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(LONG)).await;
    let b = ctx.client_with("b", no_extend(LONG)).await;
    let l = take(&a.lock("l"), "lock").await;
    let re = a.lock("re").reentrant(true);
    let (r1, r2) = (take(&re, "outer").await, take(&re, "inner").await);
    let ra = a.rwlock("rw").try_read().await.unwrap().expect("a reads");
    let rb = b.rwlock("rw").try_read().await.unwrap().expect("b reads");
    let backend = ctx.backend().await;
    let writer = HolderId::new(InstanceId::new("w").unwrap());
    let intent = LeaseId {
        kind: LeaseKind::Write,
        key: key("rw"),
        holder: writer.clone(),
    };
    let busy = locks(&backend).acquire(&intent, ms(LONG)).await.unwrap();
    assert!(matches!(busy, Acquire::Busy(_)), "the writer waits: {busy:?}");
    let pa = a.semaphore("s", 3).try_acquire().await.unwrap().expect("a permit");
    let pb = b.semaphore("s", 3).try_acquire().await.unwrap().expect("b permit");
    let lead = elect(&a.election("e"), "a").await;
    // A candidate waiting in the election: counted as its leader's waiter.
    let candidate = HolderId::new(InstanceId::new("c").unwrap());
    let elections = backend.elections().expect("the backend offers elections");
    let e = key("e");
    let stood = elections.campaign(&e, &candidate, "", ms(LONG), None, true);
    assert!(matches!(stood.await.unwrap(), Campaign::Busy { .. }));
    let (ma, mb) = (a.group("g").join().await.unwrap(), b.group("g").join().await.unwrap());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (done, wait_done) = tokio::sync::oneshot::channel::<()>();
    let job = a.job("j");
    let run = tokio::spawn(async move {
        job.run_once("o", |c| async move {
            tx.send(c.token).unwrap();
            let _ = wait_done.await;
        })
        .await
    });
    let run_token = timeout(SOON, rx.recv()).await.expect("the run began").unwrap();

    let all = op.leases(&LeaseFilter::all()).await.unwrap();
    let r = one(&all, "lock:l", Role::Lock(LeaseKind::Exclusive), "a");
    assert_eq!((r.token, r.holds, &r.holder), (Some(l.token()), 1, l.holder()));
    fresh(r);
    let r = one(&all, "lock:re", Role::Lock(LeaseKind::Reentrant), "a");
    assert_eq!((r.token, r.holds), (Some(r1.token()), 2));
    assert_eq!(r1.token(), r2.token());
    for (guard, who) in [(&ra, "a"), (&rb, "b")] {
        let r = one(&all, "rwlock:rw", Role::Lock(LeaseKind::Read), who);
        assert_eq!((r.token, r.waiters), (Some(guard.token()), Some(1)), "{r:?}");
        fresh(r);
    }
    let w = one(&all, "rwlock:rw", Role::WriterIntent, "w");
    assert_eq!((w.token, &w.holder), (None, &writer));
    assert!(w.expires_in > ms(20_000) && w.expires_in <= ms(LONG), "{w:?}");
    for (guard, who) in [(&pa, "a"), (&pb, "b")] {
        let r = one(&all, "semaphore:s", Role::Lock(LeaseKind::Permit { limit: 3 }), who);
        assert_eq!(r.token, Some(guard.token()));
        fresh(r);
    }
    let r = one(&all, "election:e", Role::Leader, "a");
    assert_eq!((r.token, r.since), (Some(lead.term()), Some(lead.info().since)));
    assert_eq!(r.waiters, Some(1), "one candidate waits: {r:?}");
    fresh(r);
    for who in ["a", "b"] {
        let r = one(&all, "group:g", Role::Member, who);
        assert!(r.token.is_none() && r.since.is_some(), "{r:?}");
        fresh(r);
    }
    let r = one(&all, "job:j@o", Role::Run, "a");
    assert_eq!(r.token, Some(run_token));
    fresh(r);
    assert_eq!(all.len(), 11, "nothing else: {all:?}");

    let rw = op.holders(&res("rwlock:rw")).await.unwrap();
    let mut roles: Vec<_> = rw.iter().map(|l| l.lease.role.to_string()).collect();
    roles.sort();
    assert_eq!(roles, ["read", "read", "writer-intent"]);
    let run_holders = op.holders(&res("job:j@o")).await.unwrap();
    assert_eq!(run_holders.len(), 1, "{run_holders:?}");
    done.send(()).unwrap();
    join(run, SOON, "run").await.unwrap();
    assert!(op.holders(&res("job:j@o")).await.unwrap().is_empty(), "the run ended");
    drop((ma, mb));
}

/// A kind filter lists only that kind; a prefix only names starting with
/// it; both together, both.
#[needs(Need::Locks, Need::Semaphore, Need::Elections)]
pub async fn leases_filter_by_kind_and_prefix(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(LONG)).await;
    let mut guards = Vec::new();
    for name in ["app/1", "app/2", "other/1"] {
        guards.push(take(&a.lock(name), name).await);
    }
    guards.push(a.semaphore("app/s", 2).try_acquire().await.unwrap().expect("a permit"));
    let _e = elect(&a.election("app/e"), "a").await;
    let names = |filter: LeaseFilter| {
        let op = op.clone();
        async move {
            let mut v: Vec<String> = (op.leases(&filter).await.unwrap().into_iter())
                .map(|l| l.lease.resource.to_string())
                .collect();
            v.sort();
            v
        }
    };
    let all = LeaseFilter::all();
    assert_eq!(
        names(all.clone().kind(ResourceKind::Lock)).await,
        ["lock:app/1", "lock:app/2", "lock:other/1"]
    );
    assert_eq!(
        names(all.clone().prefix("app/")).await,
        ["election:app/e", "lock:app/1", "lock:app/2", "semaphore:app/s"]
    );
    assert_eq!(
        names(all.clone().kind(ResourceKind::Lock).prefix("app/")).await,
        ["lock:app/1", "lock:app/2"]
    );
    assert!(names(all.kind(ResourceKind::Group)).await.is_empty());
}

/// Within a page, records come in the listing's order on every backend
/// (`LeaseRecord::listing_cmp`: kind, name, occurrence or subscription,
/// item, holder, role, token), and so do `holders`. Redis gave its page
/// in SCAN order and memory in this one: one namespace printed
/// differently by each. (Across pages the order is the backend's: a
/// Redis walk may split these over pages, each in order.)
#[needs(Need::Locks, Need::ReadWrite, Need::Semaphore, Need::Elections)]
pub async fn a_page_lists_in_the_listing_order(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(LONG)).await;
    let b = ctx.client_with("b", no_extend(LONG)).await;
    // Taken in no order: an election, then b before a, then locks whose
    // names are shuffled.
    let _e = elect(&b.election("order/e"), "b").await;
    let permit = |c: &Client| c.semaphore("order/s", 3);
    let pb = permit(&b).try_acquire().await.unwrap().expect("b's permit");
    let pa = permit(&a).try_acquire().await.unwrap().expect("a's permit");
    let rb = b.rwlock("order/rw").try_read().await.unwrap().expect("b reads");
    let ra = a.rwlock("order/rw").try_read().await.unwrap().expect("a reads");
    let mut guards = Vec::new();
    for i in 0..24 {
        let name = format!("order/{:02}", i * 7 % 24);
        guards.push(take(&a.lock(&name), "order").await);
    }
    let mut expected: Vec<String> = (0..24).map(|i| format!("lock:order/{i:02} a")).collect();
    expected.extend(
        [
            "rwlock:order/rw a",
            "rwlock:order/rw b",
            "semaphore:order/s a",
            "semaphore:order/s b",
            "election:order/e b",
        ]
        .map(String::from),
    );
    let line = |l: &LiveLease| format!("{} {}", l.lease.resource, l.lease.holder.instance());
    let place = |l: &String| expected.iter().position(|e| e == l);
    let mut walk = op.walk(LeaseFilter::all().prefix("order/"));
    let mut listed = Vec::new();
    while let Some(page) = walk.next_page().await.unwrap() {
        let lines: Vec<String> = page.iter().map(line).collect();
        let mut ordered = lines.clone();
        ordered.sort_by_key(place);
        assert_eq!(lines, ordered, "a page out of the listing's order");
        listed.extend(lines);
    }
    listed.sort_by_key(place);
    assert_eq!(listed, expected, "each once");
    for resource in ["semaphore:order/s", "rwlock:order/rw"] {
        let holders = op.holders(&res(resource)).await.unwrap();
        let who: Vec<&str> = holders.iter().map(|l| l.lease.holder.instance().as_str()).collect();
        assert_eq!(who, ["a", "b"], "{resource}");
    }
    drop((pa, pb, ra, rb, guards));
}

/// A walk in pages of 3 over 20 leases sees each exactly once, no page
/// over 3.
#[needs(Need::Locks)]
pub async fn leases_walk_in_pages_sees_each_lease_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let a = ctx.client_with("a", no_extend(LONG)).await;
    let mut tokens = Vec::new();
    let mut guards = Vec::new();
    for i in 0..20 {
        let g = take(&a.lock(&format!("walk/{i:02}")), "walk").await;
        tokens.push(g.token());
        guards.push(g);
    }
    let mut walk = op.walk(LeaseFilter::all()).page_size(3).unwrap();
    let (mut seen, mut pages) = (Vec::new(), 0);
    while let Some(page) = walk.next_page().await.unwrap() {
        assert!(page.len() <= 3, "a page of {}", page.len());
        seen.extend(page.into_iter().map(|l| l.lease.token.expect("a token")));
        pages += 1;
        assert!(pages <= 30, "the walk does not end");
    }
    seen.sort();
    tokens.sort();
    assert_eq!(seen, tokens, "each of the 20 exactly once");
}

/// A page holds 1..=1,000 records: 0 and 1,001 are `InvalidArgument`, for
/// leases, instances and the audit trail, at the client and at the
/// backend; so is a cursor the backend never wrote.
#[needs(Need::Locks)]
pub async fn listing_limits_and_cursors_are_checked(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let op = operator(&ctx).await;
    let backend = ctx.backend().await;
    let ops = ops_of(&backend);
    let start = Cursor::start();
    for bad in [0, 1001] {
        assert_invalid(op.walk(LeaseFilter::all()).page_size(bad), "page_size");
        assert_invalid(op.leases_page(&LeaseFilter::all(), &start, bad).await, "leases_page");
        assert_invalid(op.audit(bad).await, "audit");
        assert_invalid(ops.leases(None, "", &start, bad).await, "spi leases");
        assert_invalid(ops.instances(&start, bad).await, "spi instances");
        assert_invalid(ops.audit(&start, bad).await, "spi audit");
    }
    let bogus = Cursor::from_text("\u{7}no cursor of mine");
    assert_invalid(ops.leases(None, "", &bogus, 10).await, "a foreign lease cursor");
    assert!(ops.leases(None, "", &start, 1000).await.is_ok());
}
}
