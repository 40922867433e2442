//! Closing a client (`Client::close`): everything it holds is released at
//! once, and it makes no more calls.

use crate::cases::prelude::*;

/// Closes `client` once each of `waiting` (named calls of it, spawned) is
/// waiting, and checks that each then ends with `Error::Closed` at once.
async fn closing_ends(client: &Client, waiting: Vec<(&str, tokio::task::JoinHandle<Result<()>>)>) {
    // Long enough for each to be refused and to wait (a precondition:
    // checked; a close before they waited would pass vacuously).
    sleep(ms(300)).await;
    for (what, task) in &waiting {
        assert!(!task.is_finished(), "{what}: waiting before the close");
    }
    at_once(client.close()).await.expect("close");
    for (what, task) in waiting {
        let res = join(task, ms(2000), what).await;
        assert!(matches!(res, Err(Error::Closed { .. })), "{what}: {res:?}");
    }
}

cases! {
    family: "client", needs: [Need::Locks];

/// After `close`, another client gets at once (not at the TTL) the lock,
/// the reentrant lock held twice, the permit and the read-write lock the
/// closed one held; its guards are no longer held, and every later call
/// through it is `Error::Closed`, before any I/O. Closing again does
/// nothing.
pub async fn close_frees_every_lock_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let caps = caps(&ctx).await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let long = |lock: Lock| lock.ttl(ms(30_000));
    let g = take(&long(a.lock("k")), "a").await;
    let mut others = Vec::new();
    if caps.reentrant {
        let r = long(a.lock("r").reentrant(true));
        others.push(take(&r, "outer").await);
        others.push(take(&r, "inner").await);
    }
    if caps.semaphore {
        let p = a.semaphore("s", 1).ttl(ms(30_000)).try_acquire().await.unwrap();
        others.push(p.expect("a permit"));
    }
    if caps.read_write {
        let w = a.rwlock("rw").ttl(ms(30_000)).try_write().await.unwrap();
        others.push(w.expect("the writer"));
    }
    assert!(!a.is_closed());
    at_once(a.close()).await.expect("close releases everything");
    assert!(a.is_closed() && !g.is_held());
    assert!(others.iter().all(|g| !g.is_held()), "{others:?}");
    let _k = take(&b.lock("k"), "b gets the lock at once").await;
    if caps.reentrant {
        let _r = take(&b.lock("r"), "every hold of the reentrant lock went").await;
    }
    if caps.semaphore {
        let p = b.semaphore("s", 1).try_acquire().await.unwrap();
        assert!(p.is_some(), "the permit went");
    }
    if caps.read_write {
        assert!(b.rwlock("rw").try_read().await.unwrap().is_some(), "the writer went");
    }
    let res = a.lock("x").try_lock().await;
    assert!(matches!(res, Err(Error::Closed { .. })), "{res:?}");
    let res = a.lock("k").holders().await;
    assert!(matches!(res, Err(Error::Closed { .. })), "{res:?}");
    assert!(matches!(g.extend().await, Err(Error::Closed { .. })));
    at_once(a.close()).await.expect("closing again does nothing");
}

/// A call waiting when its client is closed (a lock and, where the
/// backend has them, a permit, behind another client's leases of 30 s,
/// with a retry delay of 10 s) ends at once with `Error::Closed`, not at
/// its next retry or at the lease's expiry.
pub async fn close_ends_waiting_calls_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let caps = caps(&ctx).await;
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let _held = take(&a.lock("k").ttl(ms(30_000)), "a").await;
    let lock = b.lock("k");
    let mut waiting = vec![("a lock", tokio::spawn(async move { lock.lock().await.map(drop) }))];
    let _permit = if caps.semaphore {
        let p = a.semaphore("s", 1).ttl(ms(30_000)).try_acquire().await.unwrap();
        let sem = b.semaphore("s", 1);
        waiting.push(("a permit", tokio::spawn(async move { sem.acquire().await.map(drop) })));
        Some(p.expect("a permit"))
    } else {
        None
    };
    closing_ends(&b, waiting).await;
}

/// As [`close_ends_waiting_calls_at_once`], for the waits of the other
/// families: a barrier's wait for a second participant, a latch's for its
/// count down, a queue consumer's receive of an empty queue, a topic
/// subscriber's next on an empty topic, a graph worker's wait for a node,
/// the wait for a run nobody works on, and a group observer's wait for a
/// change, each with a retry delay of 10 s.
#[needs(Need::Barriers, Need::Queues, Need::Topics, Need::Graphs, Need::Groups)]
pub async fn close_ends_every_familys_waits_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    assert!(a.latch("l").try_set_count(1).await.unwrap(), "set");
    let (barrier, latch) = (b.barrier("bar", 2), b.latch("l"));
    let mut consumer = b.queue::<u64>("q").consumer();
    let start = coord_api::spi::Start::Earliest;
    let mut subscriber = b.topic::<u64>("t").subscriber("s").start(start);
    let mut worker = b.graph("g").node("only").build().expect("a graph").worker();
    let body = |_| async { Ok::<_, coord_api::NodeError>(()) };
    let unworked = b.graph("unworked").node("only").build().expect("a graph");
    let run = unworked.submit("r").await.unwrap();
    let mut observer = b.group("grp").observe().await.unwrap();
    observer.next().await.expect("the first change: the group as it is");
    let waiting = vec![
        ("a barrier", tokio::spawn(async move { barrier.wait().await.map(drop) })),
        ("a latch", tokio::spawn(async move { latch.wait().await.map(drop) })),
        ("a receive", tokio::spawn(async move { consumer.receive().await.map(drop) })),
        ("a topic's next", tokio::spawn(async move { subscriber.next().await.map(drop) })),
        ("a graph worker", tokio::spawn(async move { worker.work_next(body).await.map(drop) })),
        ("a run's wait", tokio::spawn(async move { run.wait().await.map(drop) })),
        ("a group observer", tokio::spawn(async move { observer.next().await.map(drop) })),
    ];
    closing_ends(&b, waiting).await;
}

/// A closed client answers `Closed` also to a call with nothing to do: an
/// empty batch pushed to a queue or published to a topic (it answered
/// `Ok` with no ids).
#[needs(Need::Queues, Need::Topics)]
pub async fn close_refuses_empty_batches(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    at_once(a.close()).await.expect("close");
    let none: [u64; 0] = [];
    let pushed = a.queue::<u64>("q").push_many(&none).await;
    assert!(matches!(pushed, Err(Error::Closed { .. })), "{pushed:?}");
    let published = a.topic::<u64>("t").publish_many(&none).await;
    assert!(matches!(published, Err(Error::Closed { .. })), "{published:?}");
}

/// After `close`, the closed client's leader term is resigned (another
/// candidate wins at once, with a larger term) and its membership left
/// (the group no longer lists it).
#[needs(Need::Elections, Need::Groups)]
pub async fn close_resigns_terms_and_leaves_groups(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let la = elect(&a.election("e").ttl(ms(30_000)), "a").await;
    let member = a.group("g").ttl(ms(30_000)).join().await.unwrap();
    let listed = b.group("g").members().await.unwrap().members;
    assert_eq!(listed.len(), 1, "{listed:?}");
    at_once(a.close()).await.expect("close");
    assert!(!la.is_leader() && !member.is_member());
    let lb = elect(&b.election("e"), "b wins at once").await;
    assert!(lb.term() > la.term());
    let listed = b.group("g").members().await.unwrap().members;
    assert!(listed.is_empty(), "a left the group: {listed:?}");
    let res = a.election("e").try_campaign().await;
    assert!(matches!(res, Err(Error::Closed { .. })), "{res:?}");
    lb.resign().await.unwrap();
}

/// A campaign round in flight when its client was closed, answered
/// `Elected` after `close` began, leaves no term behind: the term is
/// resigned at once (another client is elected long before its 5 s TTL),
/// and the campaign answers `Error::Closed`.
#[needs(Need::Elections)]
pub async fn close_resigns_term_won_while_closing(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (b, switch) = ctx
        .switchable_client("b", default_options().ttl(ms(5000)))
        .await;
    let o = ctx.client("o").await;
    switch.holding();
    let waiting = campaign_task(b.election("e"));
    sleep(ms(100)).await; // the first round is on its way, held
    let closing = {
        let b = b.clone();
        tokio::spawn(async move { b.close().await })
    };
    sleep(ms(50)).await;
    assert!(b.is_closed());
    switch.on();
    let won = join(waiting, ms(3000), "b's campaign").await;
    let _ = join(closing, ms(3000), "b's close").await;
    let still = match &won {
        Ok((l, _)) => l.is_leader(),
        Err(_) => false,
    };
    let closed = matches!(&won, Err(Error::Closed { .. }));
    let answer = format!("{:?}", won.as_ref().map(|(l, _)| l.term()));
    drop(won);
    let t0 = Instant::now();
    let free = eventually(ms(1500), || async {
        o.election("e").ttl(ms(5000)).try_campaign().await.unwrap()
    })
    .await;
    assert!(
        free.is_some(),
        "the election is still held {:?} after the closed client's campaign \
         (its leadership believed it led: {still}; TTL 5 s)",
        t0.elapsed()
    );
    assert!(closed, "b's campaign answered {answer}");
}

/// Grants on their way when `close` began (held on the way, applied after
/// it) answer `Error::Closed`, as every call of a closed client does, never
/// a guard that is not held (its caller would go on as if it held the key);
/// and what they were granted is free again at once, long before the 5 s
/// TTL. A lock, and where the backend has them, a permit, a writer, a group
/// membership and a run-once run (whose body never runs).
pub async fn close_answers_grants_on_their_way_closed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (caps, families) = (caps(&ctx).await, ctx.families().await);
    let (b, switch) = ctx
        .switchable_client("b", default_options().ttl(ms(5000)))
        .await;
    let o = ctx.client("o").await;
    switch.holding();
    let mut calls = Vec::new();
    let (mut acquires, ran) = (0, Arc::new(AtomicUsize::new(0)));
    let held = |res: Result<Option<LeaseGuard>>| res.map(|g| format!("{g:?}"));
    let lock = b.lock("k");
    calls.push(("lock", tokio::spawn(async move { held(lock.try_lock().await) })));
    acquires += 1;
    if caps.semaphore {
        let sem = b.semaphore("s", 1);
        calls.push(("permit", tokio::spawn(async move { held(sem.try_acquire().await) })));
        acquires += 1;
    }
    if caps.read_write {
        let rw = b.rwlock("rw");
        calls.push(("writer", tokio::spawn(async move { held(rw.try_write().await) })));
        acquires += 1;
    }
    if families.groups {
        let group = b.group("g");
        let join = async move { group.join().await.map(|m| format!("member {}", m.is_member())) };
        calls.push(("member", tokio::spawn(join)));
    }
    if families.jobs {
        let (job, ran) = (b.job("j"), ran.clone());
        let run = async move {
            let body = |_| async move { ran.fetch_add(1, SeqCst) };
            job.run_once("o", body).await.map(|r| format!("{r:?}"))
        };
        calls.push(("run", tokio::spawn(run)));
    }
    let on_the_way = || {
        let all = (switch.held("acquire") == acquires)
            && (!families.groups || switch.held("join") == 1)
            && (!families.jobs || switch.held("begin") == 1);
        async move { all.then_some(()) }
    };
    eventually(ms(5000), on_the_way).await.expect("every call on its way");
    let closing = {
        let b = b.clone();
        tokio::spawn(async move { b.close().await })
    };
    eventually(ms(2000), || async { b.is_closed().then_some(()) })
        .await
        .expect("the close began");
    switch.on();
    for (what, call) in calls {
        let res = join(call, ms(3000), what).await;
        assert!(
            matches!(res, Err(Error::Closed { .. })),
            "{what} granted after close began answered {res:?}"
        );
    }
    let _ = join(closing, ms(3000), "b's close").await;
    let t0 = Instant::now();
    let free = |got: Option<()>, what: &str| {
        assert!(got.is_some(), "{what} still held {:?} after close (TTL 5 s)", t0.elapsed())
    };
    let (soon, got) = (ms(1500), |g: Option<LeaseGuard>| g.map(drop));
    let lock = eventually(soon, || async { got(o.lock("k").try_lock().await.unwrap()) });
    free(lock.await, "the lock");
    if caps.semaphore {
        let permit = || async { got(o.semaphore("s", 1).try_acquire().await.unwrap()) };
        free(eventually(soon, permit).await, "the permit");
    }
    if caps.read_write {
        let writer = || async { got(o.rwlock("rw").try_write().await.unwrap()) };
        free(eventually(soon, writer).await, "the writer");
    }
    if families.groups {
        let none = || async { o.group("g").members().await.unwrap().members.is_empty().then_some(()) };
        free(eventually(soon, none).await, "the membership");
    }
    if families.jobs {
        let again = timeout(soon, o.job("j").run_once("o", |_| async {})).await;
        let again = again.unwrap_or_else(|_| panic!("the run still held {:?}", t0.elapsed()));
        assert!(matches!(again, Ok(RunOnce::Ran(()))), "the occurrence runs again: {again:?}");
    }
    assert_eq!(ran.load(SeqCst), 0, "the closed client's body never ran");
}

/// A waiting campaign of a client that is closed, then dropped, withdraws
/// its candidacy at once: nobody lists it after its client closed, long
/// before its 5 s TTL.
#[needs(Need::Elections)]
pub async fn close_withdraws_dropped_campaigns_candidacy(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, o) = (ctx.client("a").await, ctx.client("b").await, ctx.client("o").await);
    let la = elect(&a.election("e").ttl(ms(5000)), "a").await;
    let waiting = campaign_task(b.election("e").ttl(ms(5000)));
    let listed = |o: Client| async move {
        let all = o.election("e").candidates().await.unwrap();
        all.iter().any(|c| c.instance().as_str() == "b")
    };
    eventually(ms(2000), || async { listed(o.clone()).await.then_some(()) })
        .await
        .expect("b listed as a candidate");
    b.close().await.unwrap();
    waiting.abort();
    let _ = waiting.await;
    let t0 = Instant::now();
    let gone = eventually(ms(1500), || async { (!listed(o.clone()).await).then_some(()) }).await;
    la.resign().await.unwrap();
    assert!(
        gone.is_some(),
        "b's candidacy still listed {:?} after its client closed and its campaign was dropped (TTL 5 s)",
        t0.elapsed()
    );
}
}
