//! Read-write locks: many readers or one writer, writer preference.

use crate::cases::prelude::*;

/// Asserts that new readers are refused within 1 s (the writer registered its
/// intent) and stay refused on every try for the next 100 ms.
async fn assert_readers_blocked(readers: &coord_api::RwLock) {
    let blocked = eventually(ms(1000), || async {
        match readers.try_read().await.unwrap() {
            Some(r) => {
                r.release().await.unwrap();
                None
            }
            None => Some(()),
        }
    })
    .await;
    assert!(blocked.is_some(), "a waiting writer blocks new readers");
    for i in 0..5 {
        sleep(ms(20)).await;
        let r = readers.try_read().await.unwrap();
        assert!(
            r.is_none(),
            "reader admitted past a waiting writer (try {i})"
        );
    }
}

async fn take_read_within(lock: &coord_api::RwLock, within: Duration) -> Option<LeaseGuard> {
    eventually(within, || async {
        lock.try_read().await.expect("try_read")
    })
    .await
}

cases! {
    family: "rwlock", needs: [Need::Locks, Need::ReadWrite];

/// Several readers hold a read-write lock at once.
pub async fn readers_share(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let mut readers = Vec::new();
    for name in ["a", "b", "c"] {
        let c = ctx.client(name).await;
        readers.push(
            c.rwlock("k")
                .try_read()
                .await
                .unwrap()
                .expect("reader granted"),
        );
    }
    assert!(readers.iter().all(|r| r.is_held()));
    for r in readers {
        assert!(r.release().await.unwrap());
    }
}

/// While readers hold a read-write lock, a writer is refused.
pub async fn readers_block_writer(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let r = a.rwlock("k").try_read().await.unwrap().expect("reader");
    assert!(
        b.rwlock("k").try_write().await.unwrap().is_none(),
        "writer refused while a reader holds"
    );
    assert!(r.release().await.unwrap());
}

/// A refused `try_write` leaves no writer intent: while a reader holds,
/// another writer's `try_write` is refused and a new reader still gets in
/// at once (only a waiting writer holds readers off).
pub async fn refused_try_write_leaves_no_intent(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (ctx.client("a").await, ctx.client("b").await, ctx.client("c").await);
    let ra = a.rwlock("k").ttl(ms(5000)).try_read().await.unwrap().expect("reader");
    let writer = b.rwlock("k").ttl(ms(5000));
    assert!(writer.try_write().await.unwrap().is_none(), "refused");
    let rc = c.rwlock("k").try_read().await.unwrap();
    assert!(rc.is_some(), "a refused try_write left an intent blocking readers");
    assert!(ra.release().await.unwrap());
    rc.unwrap().release().await.unwrap();
    let w = writer.try_write().await.unwrap().expect("free again: the writer");
    w.release().await.unwrap();
}

/// A writer excludes readers: `try_read` is refused while it holds.
pub async fn writer_excludes_readers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let w = a.rwlock("k").try_write().await.unwrap().expect("writer");
    assert!(
        b.rwlock("k").try_read().await.unwrap().is_none(),
        "reader refused while a writer holds"
    );
    assert!(w.release().await.unwrap());
    let r = b
        .rwlock("k")
        .try_read()
        .await
        .unwrap()
        .expect("reader after");
    r.release().await.unwrap();
}

/// A writer excludes other writers.
pub async fn writer_excludes_writers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let w = a.rwlock("k").try_write().await.unwrap().expect("writer");
    assert!(
        b.rwlock("k").try_write().await.unwrap().is_none(),
        "second writer refused"
    );
    assert!(w.release().await.unwrap());
    let w2 = b
        .rwlock("k")
        .try_write()
        .await
        .unwrap()
        .expect("writer after");
    w2.release().await.unwrap();
}

/// Writer preference: once a writer waits, new readers are refused; the
/// writer gets the lock when the old reader leaves, and readers after it.
pub async fn waiting_writer_blocks_new_readers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let r1 = a
        .rwlock("k")
        .try_read()
        .await
        .unwrap()
        .expect("first reader");
    let rw = b.rwlock("k");
    let writer = tokio::spawn(async move { rw.write().await });
    let readers = c.rwlock("k");
    assert_readers_blocked(&readers).await;
    assert!(!writer.is_finished(), "the writer waits for the reader");
    assert!(r1.release().await.unwrap());
    let w = join(writer, ms(1000), "writer after the reader left")
        .await
        .expect("writer granted");
    assert!(
        readers.try_read().await.unwrap().is_none(),
        "writer holds: readers refused"
    );
    assert!(w.release().await.unwrap());
    let r = take_read_within(&readers, ms(1000))
        .await
        .expect("readers admitted after the writer");
    r.release().await.unwrap();
}

/// A waiting writer that is cancelled withdraws its intent: new readers get
/// in promptly, not at the intent's TTL.
pub async fn cancelled_writer_lets_readers_in(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (
        ctx.client("a").await,
        ctx.client("b").await,
        ctx.client("c").await,
    );
    let r1 = a
        .rwlock("k")
        .try_read()
        .await
        .unwrap()
        .expect("first reader");
    let rw = b.rwlock("k").ttl(ms(5000)).auto_extend(false);
    let writer = tokio::spawn(async move { rw.write().await });
    let readers = c.rwlock("k");
    assert_readers_blocked(&readers).await;
    writer.abort();
    let t0 = Instant::now();
    let r = take_read_within(&readers, ms(1500))
        .await
        .expect("readers admitted once the writer gave up");
    assert!(
        t0.elapsed() < ms(2000),
        "admitted only after {:?}",
        t0.elapsed()
    );
    r.release().await.unwrap();
    r1.release().await.unwrap();
}

/// A crashed reader (guard leaked, no renewal) frees its share at its TTL: a
/// writer gets the lock then, not before.
pub async fn reader_crash_frees_share_at_ttl(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(400)).await;
    let b = ctx.client("b").await;
    let t0 = Instant::now();
    let r = a.rwlock("k").try_read().await.unwrap().expect("reader");
    std::mem::forget(r); // crash: no release, no renewal
    let w = timeout(ms(3000), b.rwlock("k").write())
        .await
        .expect("the reader's TTL frees its share")
        .unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= ms(390),
        "writer granted after {waited:?}, before the TTL"
    );
    assert!(waited <= ms(400 + 600), "writer granted after {waited:?}");
    w.release().await.unwrap();
}

/// A writer waiting on a reader is granted promptly when the reader releases.
#[needs(Need::ReleaseNotifications)]
pub async fn reader_release_wakes_writer(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let r = a
        .rwlock("k")
        .ttl(ms(5000))
        .try_read()
        .await
        .unwrap()
        .expect("reader");
    // A 3 s TTL: the writer's intent refresh (every TTL/3) cannot be what
    // wakes it.
    let rw = b.rwlock("k").ttl(ms(3000));
    let writer = tokio::spawn(async move {
        let w = rw.write().await;
        (w, Instant::now())
    });
    sleep(ms(150)).await; // let the writer start waiting
    assert!(!writer.is_finished(), "the writer waits for the reader");
    let t_release = Instant::now();
    assert!(r.release().await.unwrap());
    let (w, t_granted) = join(writer, ms(3000), "writer").await;
    let w = w.expect("writer granted");
    let lag = t_granted.saturating_duration_since(t_release);
    assert!(lag <= ms(500), "writer woke {lag:?} after the release");
    w.release().await.unwrap();
}

/// Readers waiting on a writer are granted promptly when it releases.
#[needs(Need::ReleaseNotifications)]
pub async fn writer_release_wakes_readers(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let w = a
        .rwlock("k")
        .ttl(ms(5000))
        .try_write()
        .await
        .unwrap()
        .expect("writer");
    let mut readers = Vec::new();
    for i in 0..2 {
        let rl = ctx.client(&format!("r{i}")).await.rwlock("k");
        readers.push(tokio::spawn(async move {
            let r = rl.read().await;
            (r, Instant::now())
        }));
    }
    sleep(ms(150)).await; // let the readers start waiting
    assert!(readers.iter().all(|r| !r.is_finished()), "readers wait");
    let t_release = Instant::now();
    assert!(w.release().await.unwrap());
    let mut held = Vec::new();
    for r in readers {
        let (g, t) = join(r, ms(3000), "reader").await;
        let lag = t.saturating_duration_since(t_release);
        assert!(lag <= ms(500), "reader woke {lag:?} after the release");
        held.push(g.expect("reader granted"));
    }
    for g in held {
        assert!(g.release().await.unwrap());
    }
}
/// A `try_write` or `try_read` whose reply was lost after the backend
/// applied it leaves nothing held (and no writer intent): the lock is free
/// again within a renewal interval, not after the TTL.
pub async fn lost_acquire_reply_frees_rwlock(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    with_lost_reply(&switch, "try_write", a.rwlock("w").try_write()).await;
    let w = eventually(FREED_WITHIN, || async { b.rwlock("w").try_write().await.unwrap() })
        .await
        .expect("writer lease freed after its lost reply");
    assert!(w.release().await.unwrap());
    with_lost_reply(&switch, "try_read", a.rwlock("r").try_read()).await;
    let w = eventually(FREED_WITHIN, || async { b.rwlock("r").try_write().await.unwrap() })
        .await
        .expect("reader lease freed after its lost reply");
    assert!(w.release().await.unwrap());
}
/// A downgrade turns the writer into a reader without the lock ever being
/// free: a concurrent `try_write` is refused before, during and after it;
/// a new reader gets in after it; the read guard carries a larger token;
/// the old write guard's lost signal fired. The writer gets in once both
/// readers release.
#[needs(Need::Downgrade)]
pub async fn downgrade_keeps_lock_shared(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let inspect = caps(&ctx).await.inspect;
    let (a, b, c) = (ctx.client("a").await, ctx.client("b").await, ctx.client("c").await);
    let w = a.rwlock("k").ttl(ms(5000)).try_write().await.unwrap().expect("writer");
    let (write_token, lost) = (w.token(), w.lost_signal());
    assert!(b.rwlock("k").try_read().await.unwrap().is_none(), "writer holds");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = c.rwlock("k");
    let hammer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tries = 0u32;
            while !stop.load(SeqCst) {
                if let Some(g) = writer.try_write().await.unwrap() {
                    g.release().await.unwrap();
                    panic!("a writer got in around the downgrade (try {tries})");
                }
                tries += 1;
            }
            tries
        })
    };
    sleep(ms(50)).await; // the writer is tried before the downgrade too
    let mut r = w;
    r.downgrade().await.expect("downgraded");
    sleep(ms(50)).await; // and after it
    stop.store(true, SeqCst);
    let tries = join(hammer, ms(3000), "try_write loop").await;
    assert!(tries > 0, "try_write ran");
    assert_eq!(r.kind(), LeaseKind::Read);
    assert!(r.is_held());
    assert!(r.token() > write_token, "the read lease draws a larger token");
    assert!(lost.is_lost(), "the write guard's lost signal fired");
    if inspect {
        let hs = a.rwlock("k").holders().await.unwrap();
        assert_eq!(hs.len(), 1, "one lease: {hs:?}");
        assert_eq!(hs[0].kind, LeaseKind::Read);
        assert_eq!(hs[0].token, r.token());
        assert_eq!(&hs[0].holder, r.holder());
        assert!(!a.rwlock("k").is_write_locked().await.unwrap());
    }
    let rb = b.rwlock("k").try_read().await.unwrap().expect("a reader after the downgrade");
    assert!(c.rwlock("k").try_write().await.unwrap().is_none(), "readers hold");
    assert!(r.release().await.unwrap());
    assert!(c.rwlock("k").try_write().await.unwrap().is_none(), "b still reads");
    assert!(rb.release().await.unwrap());
    let wc = c.rwlock("k").try_write().await.unwrap().expect("free once both read guards went");
    assert!(wc.release().await.unwrap());
}

/// Readers waiting on a writer (retry delay 10 s) enter promptly when it
/// downgrades.
#[needs(Need::Downgrade, Need::ReleaseNotifications)]
pub async fn downgrade_lets_waiting_readers_in(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let w = a.rwlock("k").ttl(ms(5000)).try_write().await.unwrap().expect("writer");
    let rl = ctx.client("b").await.rwlock("k");
    let reader = tokio::spawn(async move {
        let r = rl.read().await;
        (r, Instant::now())
    });
    sleep(ms(150)).await; // let the reader start waiting
    assert!(!reader.is_finished(), "the reader waits");
    let t_downgrade = Instant::now();
    let mut r = w;
    r.downgrade().await.expect("downgraded");
    let (rb, t) = join(reader, ms(3000), "reader").await;
    let rb = rb.expect("reader granted");
    let lag = t.saturating_duration_since(t_downgrade);
    assert!(lag <= ms(500), "reader woke {lag:?} after the downgrade");
    assert!(r.release().await.unwrap());
    assert!(rb.release().await.unwrap());
}

/// A downgrade keeps writer preference: with a writer waiting, new readers
/// stay out after it, and the waiting writer gets the lock once the
/// downgraded reader releases.
#[needs(Need::Downgrade)]
pub async fn downgrade_keeps_waiting_writer_ahead(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let w = a.rwlock("k").ttl(ms(5000)).try_write().await.unwrap().expect("writer");
    let wl = ctx.client("b").await.rwlock("k");
    let writer = tokio::spawn(async move { wl.write().await });
    let readers = ctx.client("c").await.rwlock("k");
    assert_readers_blocked(&readers).await;
    let mut r = w;
    r.downgrade().await.expect("downgraded");
    for i in 0..3 {
        assert!(
            readers.try_read().await.unwrap().is_none(),
            "a reader got in past the waiting writer after the downgrade (try {i})"
        );
        sleep(ms(20)).await;
    }
    assert!(!writer.is_finished(), "the writer waits for the downgraded reader");
    assert!(r.release().await.unwrap());
    let wb = join(writer, ms(3000), "waiting writer").await.expect("writer granted");
    assert!(wb.release().await.unwrap());
}

/// A downgrade of a write lease the backend no longer has for this holder
/// (force released, then taken by another writer) is `NotHeld` and changes
/// nothing: the new writer keeps the lock. The backend refuses a foreign
/// holder's downgrade (`None`) and a downgrade of a read lease
/// (`InvalidArgument`), leaving the writer in place.
#[needs(Need::Downgrade, Need::ForceRelease)]
pub async fn downgrade_of_foreign_lease_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b, c) = (ctx.client("a").await, ctx.client("b").await, ctx.client("c").await);
    let wa = a.rwlock("k").ttl(ms(5000)).try_write().await.unwrap().expect("writer a");
    assert_eq!(c.rwlock("k").force_release().await.unwrap(), 1);
    let wb = b.rwlock("k").ttl(ms(5000)).try_write().await.unwrap().expect("writer b");
    let mut wa = wa;
    match wa.downgrade().await {
        Err(Error::NotHeld { .. }) => assert!(!wa.is_held(), "a's guard is lost"),
        other => panic!("downgrade of a force released lease: expected NotHeld, got {other:?}"),
    }
    let backend = ctx.backend().await;
    let foreign = LeaseId {
        kind: LeaseKind::Write,
        key: key("k"),
        holder: intruder(),
    };
    let answer = locks(&backend).downgrade(&foreign, ms(1000)).await.unwrap();
    assert!(answer.is_none(), "a foreign holder's downgrade: {answer:?}");
    let own_as_read = LeaseId {
        kind: LeaseKind::Read,
        key: key("k"),
        holder: wb.holder().clone(),
    };
    assert_invalid(
        locks(&backend).downgrade(&own_as_read, ms(1000)).await,
        "downgrade of a read lease",
    );
    assert!(wb.is_held());
    assert!(wb.extend().await.unwrap(), "b still holds the write lease");
    assert!(c.rwlock("k").try_read().await.unwrap().is_none(), "b still writes");
    assert!(wb.release().await.unwrap());
    let mut r = c.rwlock("k").try_read().await.unwrap().expect("reader");
    assert_invalid(r.downgrade().await, "a read guard's downgrade");
    // Changes nothing: the reader still holds, and a writer is refused.
    assert!(r.is_held() && r.extend().await.unwrap(), "the reader still holds");
    assert!(b.rwlock("k").try_write().await.unwrap().is_none(), "a writer got in");
    assert!(r.release().await.unwrap());
}

/// A downgrade of a write lease that expired (no renewal) is `LeaseLost`,
/// refused without asking the backend, and changes nothing: the writer
/// that took over keeps the lock.
#[needs(Need::Downgrade)]
pub async fn downgrade_of_expired_lease_refused(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client_with("a", no_extend(300)).await;
    let (b, c) = (ctx.client("b").await, ctx.client("c").await);
    let wa = a.rwlock("k").try_write().await.unwrap().expect("writer a");
    let wb = eventually(ms(3000), || async {
        b.rwlock("k").try_write().await.unwrap()
    })
    .await
    .expect("a's lease expires and b takes over");
    assert!(!wa.is_held(), "a's lease expired locally before b's grant");
    let mut wa = wa;
    match wa.downgrade().await {
        Err(Error::LeaseLost { .. }) => {}
        other => panic!("downgrade of an expired lease: expected LeaseLost, got {other:?}"),
    }
    assert!(wb.extend().await.unwrap(), "b still holds the write lease");
    assert!(c.rwlock("k").try_read().await.unwrap().is_none(), "b still writes");
    assert!(wb.release().await.unwrap());
}

/// A downgrade whose reply was lost after the backend applied it leaves
/// nothing held: the lock is free again within a renewal interval, not
/// after the TTL.
#[needs(Need::Downgrade)]
pub async fn lost_downgrade_reply_frees_rwlock(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(LOST_REPLY_TTL);
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    let w = a.rwlock("k").try_write().await.unwrap().expect("writer");
    let mut w = w;
    with_lost_reply(&switch, "downgrade", w.downgrade()).await;
    assert!(!w.is_held(), "it may have run: the guard let go of its lease");
    let wb = eventually(FREED_WITHIN, || async { b.rwlock("k").try_write().await.unwrap() })
        .await
        .expect("the lock is freed after a downgrade's lost reply");
    assert!(wb.release().await.unwrap());
}

/// A downgrade applied before its client's close began and answered after
/// answers `Closed`, as a grant on its way does
/// (`close_answers_grants_on_their_way_closed`): its guard no longer held,
/// and the read lease it became released in the background (another
/// writer gets the lock long before the TTL).
#[needs(Need::Downgrade)]
pub async fn downgrade_answered_after_close_began_is_closed(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(ms(5000));
    let (a, switch) = ctx.switchable_client("a", opts).await;
    let b = ctx.client("b").await;
    let mut w = a.rwlock("k").try_write().await.unwrap().expect("writer");
    switch.late_replies("downgrade", ms(1000));
    let down = tokio::spawn(async move {
        let res = w.downgrade().await;
        (res, w.is_held())
    });
    let applied = || async { (switch.answered("downgrade") == 1).then_some(()) };
    eventually(ms(5000), applied).await.expect("the downgrade applied");
    let closing = {
        let a = a.clone();
        tokio::spawn(async move { a.close().await })
    };
    eventually(ms(500), || async { a.is_closed().then_some(()) })
        .await
        .expect("the close began before the downgrade's answer");
    let (res, held) = join(down, ms(3000), "the downgrade").await;
    assert!(
        matches!(res, Err(Error::Closed { .. })),
        "a downgrade answered after close began answered {res:?}"
    );
    assert!(!held, "the guard of a closed client holds nothing");
    let _ = join(closing, ms(3000), "a's close").await;
    let wb = eventually(ms(1500), || async { b.rwlock("k").try_write().await.unwrap() })
        .await
        .expect("the lock is free after the close (TTL 5 s)");
    assert!(wb.release().await.unwrap());
}

/// A writer waits on two readers: one renewing (released early), one
/// crashed (leaked, TTL 600 ms). Once the first has released, the crashed
/// reader alone blocks the writer, which is woken at that reader's expiry
/// (common, Waiting: "at the expiry instant of what blocks it"), not at its
/// retry delay (10 s) or its intent refresh (TTL/3 = 2 s).
#[needs(Need::ReleaseNotifications)]
pub async fn last_reader_expiry_wakes_writer(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let crashed = ctx.client_with("a", no_extend(600)).await;
    let renewing = ctx.client("b").await;
    let writer_client = ctx.client("w").await;
    let t0 = Instant::now();
    let ra = crashed.rwlock("k").try_read().await.unwrap().expect("reader a");
    std::mem::forget(ra); // crash: no release, no renewal
    let rb = renewing
        .rwlock("k")
        .ttl(ms(5000))
        .try_read()
        .await
        .unwrap()
        .expect("reader b");
    let rw = writer_client.rwlock("k").ttl(ms(6000));
    let writer = tokio::spawn(async move {
        let w = rw.write().await;
        (w, Instant::now())
    });
    sleep(ms(150)).await; // the writer waits on both readers
    assert!(!writer.is_finished(), "the writer waits for the readers");
    assert!(rb.release().await.unwrap());
    let (w, t_granted) = join(writer, ms(8000), "writer").await;
    let w = w.expect("writer granted");
    let waited = t_granted.saturating_duration_since(t0);
    assert!(waited >= ms(590), "writer granted after {waited:?}, before the TTL");
    assert!(
        waited <= ms(600 + 500),
        "writer granted {waited:?} after start: the crashed reader's share \
         expired at 600 ms, but the writer was not woken then"
    );
    w.release().await.unwrap();
}

/// At the backend, a holder asking again for the read lease it holds gets a
/// new grant, as from any reader: a new, larger token (the SPI: every grant
/// but a reentrant re-acquisition draws a new one), and still one lease,
/// gone after one release.
#[needs(Need::Inspect)]
pub async fn reader_asking_again_gets_a_new_token(h: &dyn Harness) {
    let lease = LeaseId { kind: LeaseKind::Read, key: key("k"), holder: intruder() };
    super::asking_again_replaces(h, lease, LockSpace::RwLock, "read lease").await;
}

/// A read-write lock is not reentrant, also through one handle: each
/// `read`/`write` is a holder of its own. A writer's handle is refused a
/// second write and a read; two reads through one handle are two readers
/// (two tokens, two leases listed), and that handle's write is refused
/// while they hold.
#[needs(Need::Inspect)]
pub async fn rwlock_handle_is_not_reentrant(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let rw = a.rwlock("k");
    let w = rw.try_write().await.unwrap().expect("the writer");
    assert!(rw.try_write().await.unwrap().is_none(), "a second write through the handle");
    assert!(rw.try_read().await.unwrap().is_none(), "a read while it writes");
    assert!(w.release().await.unwrap());
    let r1 = rw.try_read().await.unwrap().expect("a reader");
    let r2 = rw.try_read().await.unwrap().expect("a second reader");
    assert_ne!(r1.holder(), r2.holder());
    assert_ne!(r1.token(), r2.token());
    let backend = ctx.backend().await;
    let listed = locks(&backend).inspect(LockSpace::RwLock, &key("k")).await.unwrap();
    assert_eq!(listed.len(), 2, "two readers: {listed:?}");
    assert!(rw.try_write().await.unwrap().is_none(), "a write while its reads hold");
    assert!(r1.release().await.unwrap() && r2.release().await.unwrap());
}

/// A writer asking again (through the SPI) for the write lease it holds is
/// `Busy`, extends nothing and registers no writer intent of its own: when
/// its 1 s lease ends, a reader gets in (an intent of the second ask's
/// 30 s would keep every reader out until it expired).
pub async fn writer_asking_again_leaves_no_intent(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let lease = LeaseId { kind: LeaseKind::Write, key: key("k"), holder: intruder() };
    let first = locks(&backend).acquire(&lease, ms(1000)).await.unwrap();
    assert!(matches!(first, Acquire::Granted(_)), "the writer: {first:?}");
    let again = locks(&backend).acquire(&lease, ms(30_000)).await.unwrap();
    assert!(matches!(again, Acquire::Busy(_)), "the writer again: {again:?}");
    let c = ctx.client("c").await;
    let read = eventually(ms(5000), || async { c.rwlock("k").try_read().await.unwrap() }).await;
    let r = read.expect("a reader within 5 s of the writer's 1 s lease ending");
    assert!(r.release().await.unwrap());
}

/// A reader refused is told (`retry_in`) the earliest instant it could get
/// in without a release, as every refusal is: when the writer's lease and
/// every writer intent have ended, the latest of them, not the first (it
/// would be refused again then). Intents of 0.5 s and 5 s while a reader
/// holds; then a writer's 5 s lease and another writer's 0.5 s intent.
#[needs(Need::ForceRelease)]
pub async fn refused_reader_told_when_every_writer_is_gone(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = ctx.backend().await;
    let ask = |kind: LeaseKind, name: &str, ttl: u64| {
        let (b, holder) = (b.clone(), holder(name));
        async move {
            let id = LeaseId { kind, key: key("k"), holder };
            locks(&b).acquire(&id, ms(ttl)).await.unwrap()
        }
    };
    let retry_in = |what: &str, a: Acquire| match a {
        Acquire::Busy(busy) => busy.retry_in,
        other => panic!("{what}: expected Busy, got {other:?}"),
    };
    let granted = |what: &str, a: Acquire| assert!(matches!(a, Acquire::Granted(_)), "{what}: {a:?}");
    // Two waiting writers' intents, 0.5 s and 5 s, behind a reader.
    granted("the reader", ask(LeaseKind::Read, "r", 5000).await);
    retry_in("a writer", ask(LeaseKind::Write, "short", 500).await);
    retry_in("a writer", ask(LeaseKind::Write, "long", 5000).await);
    let told = retry_in("a reader behind two intents", ask(LeaseKind::Read, "late", 5000).await);
    assert!(
        told.is_some_and(|t| t > ms(3000)),
        "a reader behind intents of 0.5 s and 5 s is told to look again when the 5 s one ends: \
         {told:?}"
    );
    locks(&b).force_release(LockSpace::RwLock, &key("k")).await.unwrap();
    // A writer holding for 5 s, another waiting with a 0.5 s intent.
    granted("the writer", ask(LeaseKind::Write, "w", 5000).await);
    retry_in("a writer", ask(LeaseKind::Write, "short", 500).await);
    let told = retry_in("a reader behind the writer", ask(LeaseKind::Read, "late", 5000).await);
    assert!(
        told.is_some_and(|t| t > ms(3000)),
        "a reader behind a 5 s writer and a 0.5 s intent is told to look again when the writer's \
         lease ends: {told:?}"
    );
    locks(&b).force_release(LockSpace::RwLock, &key("k")).await.unwrap();
}
}
