//! The leader runner: the callback given its term, shutdown and giving up
//! resign, campaigning again after a loss.

use crate::cases::prelude::*;

cases! {
    family: "election", needs: [Need::Elections];

/// A runner calls `on_acquired` with the term it won, the one the backend
/// shows.
pub async fn runner_calls_on_acquired_with_term(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                tx.send((lc.term, lc.info.term)).unwrap();
                lc.lost.wait().await;
            }
        })
        .start();
    let (term, info_term) = timeout(ms(2000), rx.recv())
        .await
        .expect("on_acquired called")
        .unwrap();
    assert_eq!(term, info_term);
    assert_eq!(current_term(&o, "e").await, Some(term));
    assert_eq!(runner.leading().map(|l| l.term), Some(term));
    assert!(runner.is_leader());
    timeout(ms(3000), runner.shutdown())
        .await
        .expect("shutdown");
}

/// Shutting a leading runner down resigns: a second runner takes over
/// promptly (long before the 5 s term TTL), with a greater term.
pub async fn runner_shutdown_resigns(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let start = |client: &Client| {
        let (tx, rx) = mpsc::unbounded_channel();
        let runner = LeaderRunner::new(client.election("e"))
            .leadership_timeout(ms(5000))
            .on_acquired(move |lc| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((lc.term, Instant::now()));
                }
            })
            .start();
        (runner, rx)
    };
    let (ra, mut rxa) = start(&a);
    let (ta, _) = timeout(ms(2000), rxa.recv())
        .await
        .expect("a leads")
        .unwrap();
    let (rb, mut rxb) = start(&b);
    sleep(ms(100)).await;
    assert!(!rb.is_leader(), "b leads while a does");
    let t0 = Instant::now();
    timeout(ms(3000), ra.shutdown()).await.expect("shutdown");
    let (tb, t_won) = timeout(ms(2000), rxb.recv())
        .await
        .expect("b takes over")
        .unwrap();
    assert!(tb > ta);
    assert!(
        t_won - t0 < ms(500),
        "b took over {:?} after a's shutdown (TTL 5 s)",
        t_won - t0
    );
    timeout(ms(3000), rb.shutdown()).await.expect("shutdown");
}

/// `shutdown` waits until the aborted `on_acquired` stopped: a callback in
/// the middle of a poll (CPU-bound work between two awaits) does not go on
/// after `shutdown` returned, after its term was resigned, while another
/// instance leads.
pub async fn runner_shutdown_stops_callback_before_returning(h: &dyn Harness) {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(1, SeqCst);
        }
    }
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let dropped = Arc::new(AtomicUsize::new(0));
    let steps = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (d, s) = (dropped.clone(), steps.clone());
    let runner = LeaderRunner::new(a.election("e"))
        .leadership_timeout(ms(5000))
        .on_acquired(move |lc| {
            let (tx, d, s) = (tx.clone(), d.clone(), s.clone());
            async move {
                let _dropped = Dropped(d);
                let _ = tx.send(lc.term);
                // Steps of CPU-bound work, each followed by an await point,
                // for 2 s (the case is over by then), then an await that
                // lets time pass: in the simulator, whose one thread never
                // lets time pass while a task is always ready, the case
                // would otherwise never end (there, an abort lands only
                // between two polls, so the case checks nothing more).
                for _ in 0..10 {
                    std::thread::sleep(ms(200));
                    s.fetch_add(1, SeqCst);
                    tokio::task::yield_now().await;
                }
                std::future::pending::<()>().await;
            }
        })
        .start();
    timeout(ms(2000), rx.recv()).await.expect("a leads").unwrap();
    sleep(ms(50)).await;
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
    let (dropped_then, steps_then) = (dropped.load(SeqCst), steps.load(SeqCst));
    let lb = timeout(ms(2000), b.election("e").ttl(ms(5000)).campaign())
        .await
        .expect("b wins after a's shutdown")
        .unwrap();
    sleep(ms(500)).await;
    let steps_later = steps.load(SeqCst);
    lb.resign().await.unwrap();
    assert_eq!(
        (dropped_then, steps_later),
        (1, steps_then),
        "shutdown returned while a's on_acquired still ran; it went on working \
         (steps {steps_then} -> {steps_later}) while b led"
    );
}

/// With `resign_on_return`, a runner's term ends when `on_acquired`
/// returns: the term is resigned and a waiting candidate wins at once
/// (long before the 5 s TTL), with a greater term.
pub async fn runner_callback_return_gives_up_leadership(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .leadership_timeout(ms(5000))
        .backoff(ms(1000), ms(1000))
        .resign_on_return(true)
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(lc.term);
            }
        })
        .start();
    let ta = timeout(ms(2000), rx.recv()).await.expect("a leads").unwrap();
    let t0 = Instant::now();
    let lb = timeout(ms(2000), b.election("e").ttl(ms(5000)).campaign())
        .await
        .expect("b wins once a's callback returned")
        .unwrap();
    assert!(lb.term() > ta);
    assert!(t0.elapsed() < ms(1000), "b won {:?} later", t0.elapsed());
    lb.resign().await.unwrap();
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
}

/// `LeaderContext::resign` gives the term up from inside the callback: its
/// lost signal fires, the runner no longer leads, and a waiting candidate
/// wins at once with a greater term.
pub async fn runner_context_resign_gives_up_leadership(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .leadership_timeout(ms(5000))
        .backoff(ms(1000), ms(1000))
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                lc.resign();
                lc.lost.wait().await;
                let _ = tx.send(lc.term);
            }
        })
        .start();
    let lb = timeout(ms(3000), b.election("e").ttl(ms(5000)).campaign())
        .await
        .expect("b wins once a gave the term up")
        .unwrap();
    // The callback is aborted once the term ends; whether it saw its
    // signal first is a race, so the term is read from the backend.
    let _ = rx.try_recv();
    assert!(!runner.is_leader());
    assert_eq!(current_term(&b, "e").await, Some(lb.term()));
    lb.resign().await.unwrap();
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
}

/// An `on_acquired` that panics gives its term up even without
/// `resign_on_return`: a waiting candidate wins at once, with a greater
/// term, instead of waiting behind a leader whose work died and whose
/// runner renews on (decision 0071).
pub async fn runner_callback_panic_gives_up_leadership(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .leadership_timeout(ms(5000))
        .backoff(ms(1000), ms(1000))
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(lc.term);
                panic!("the leader's work failed (this panic is the test's)");
            }
        })
        .start();
    let ta = timeout(ms(2000), rx.recv()).await.expect("a leads").unwrap();
    let t0 = Instant::now();
    let lb = timeout(ms(2000), b.election("e").ttl(ms(5000)).campaign())
        .await
        .expect("b wins once a's callback panicked")
        .unwrap();
    assert!(lb.term() > ta);
    assert!(t0.elapsed() < ms(1000), "b won {:?} later", t0.elapsed());
    assert!(!runner.is_leader());
    assert!(runner.stopped_by().is_none(), "the runner campaigns on");
    lb.resign().await.unwrap();
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
}

/// After its term is lost (backend cut off), a runner calls `on_lost` with
/// that term, and once the backend is back it campaigns again and wins a
/// greater term.
pub async fn runner_recampaigns_after_loss(h: &dyn Harness) {
    recampaigns_after_loss(h, false).await;
}

/// An `on_lost` that panics does not end the runner: the panic is logged,
/// and once the backend is back the runner campaigns again and wins a
/// greater term, `stopped_by()` still `None` (decision 0071).
pub async fn runner_survives_a_panicking_on_lost(h: &dyn Harness) {
    recampaigns_after_loss(h, true).await;
}
/// A runner's handle stops saying it leads the moment its term is lost,
/// as the `Leadership` it holds does: not only once the runner has stopped
/// the callback (which waits for the callback's current poll, a step of
/// CPU-bound work), meanwhile another instance may already lead.
pub async fn runner_handle_stops_leading_when_term_lost(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(400)))
        .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .backoff(ms(5000), ms(5000))
        .on_acquired(move |lc| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(lc.lost.clone());
                // Steps of CPU-bound work, each followed by an await point
                // (see `runner_shutdown_stops_callback_before_returning`).
                for _ in 0..10 {
                    std::thread::sleep(ms(300));
                    tokio::task::yield_now().await;
                }
                std::future::pending::<()>().await;
            }
        })
        .start();
    let lost = timeout(ms(2000), rx.recv())
        .await
        .expect("a leads")
        .unwrap();
    assert!(runner.is_leader());
    switch.off();
    timeout(ms(3000), lost.wait()).await.expect("a's term is lost");
    let (leader, leading) = (runner.is_leader(), runner.leading());
    switch.on();
    timeout(ms(5000), runner.shutdown()).await.expect("shutdown");
    assert!(
        !leader && leading.is_none(),
        "the runner's term was lost, yet its handle said it led: {leading:?}"
    );
}

/// A runner whose election's options are out of range stops at once and
/// says why (`InvalidArgument`, through `stopped_by`) rather than
/// campaigning for ever with a warning in the log; one whose client closes
/// stops and says so too.
pub async fn runner_stops_on_what_campaigning_cannot_mend(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = ctx.client("a").await;
    let bad = a.election("e").with_options(default_options().max_drift(2.0));
    let runner = LeaderRunner::new(bad).backoff(ms(10), ms(10)).start();
    let why = runner.stopped_by();
    assert!(matches!(why, Some(Error::InvalidArgument { .. })), "stopped by {why:?}");
    assert!(!runner.is_leader());
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");

    let b = ctx.client("b").await;
    let runner = LeaderRunner::new(b.election("e")).backoff(ms(10), ms(10)).start();
    assert!(
        eventually(ms(2000), || std::future::ready(runner.is_leader().then_some(())))
            .await
            .is_some(),
        "b leads"
    );
    b.close().await.unwrap();
    let why = eventually(ms(3000), || {
        std::future::ready(runner.stopped_by().map(|e| e.to_string()))
    })
    .await;
    assert!(why.as_deref().is_some_and(|w| w.contains("closed")), "stopped by {why:?}");
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
}

/// Closing the client of a leading runner is a step-down, not a loss: the
/// term is resigned (another runner wins at once, with a greater term),
/// `on_acquired` is aborted, `on_lost` is not called, and the runner stops
/// saying the client closed. (`on_lost` was called with the term the close
/// resigned, as if it had been lost.)
pub async fn runner_stops_without_on_lost_when_its_client_closes(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let (acq_tx, mut acquired) = mpsc::unbounded_channel();
    let (lost_tx, mut lost) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .leadership_timeout(ms(5000))
        .backoff(ms(10), ms(10))
        .on_acquired(move |lc| {
            let tx = acq_tx.clone();
            async move {
                let _ = tx.send(lc.term);
                std::future::pending::<()>().await;
            }
        })
        .on_lost(move |term| {
            let tx = lost_tx.clone();
            async move {
                let _ = tx.send(term);
            }
        })
        .start();
    let term = timeout(ms(2000), acquired.recv())
        .await
        .expect("a leads")
        .unwrap();
    a.close().await.unwrap();
    let why = eventually(ms(3000), || {
        std::future::ready(runner.stopped_by().map(|e| e.to_string()))
    })
    .await;
    assert!(why.as_deref().is_some_and(|w| w.contains("closed")), "stopped by {why:?}");
    assert!(!runner.is_leader());
    // `on_lost` is called before the runner could stop (it stops at its
    // next campaign otherwise): by now it would have been.
    assert_eq!(lost.try_recv().ok(), None, "on_lost called for a term the close resigned");
    let next = timeout(ms(2000), b.election("e").campaign())
        .await
        .expect("the close resigned the term")
        .unwrap();
    assert!(next.term() > term, "term {} after {term}", next.term());
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
    assert_eq!(lost.try_recv().ok(), None, "on_lost called at shutdown");
}

/// `shutdown` while the runner's campaign round is on its way, a round the
/// backend answered `Elected` (its reply slow to come back): the term it
/// won is resigned before `shutdown` returns, not left to a clean-up in
/// the background, which a process exiting right after its shutdown never
/// runs, leaving the election blocked until the term's TTL. (The
/// resignation's request is slow here too, as a background clean-up's was
/// still on its way when `shutdown` returned.)
pub async fn runner_shutdown_resigns_what_its_round_on_its_way_won(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let opts = default_options().ttl(ms(5000));
    let ((a, switch), o) = (ctx.switchable_client("a", opts).await, ctx.client("o").await);
    switch.late_replies("campaign", ms(5000));
    switch.slow_requests("resign", ms(300));
    let runner = LeaderRunner::new(a.election("e")).start();
    let led = eventually(ms(2000), || async { o.election("e").leader().await.unwrap() })
        .await
        .expect("a's round was applied");
    assert_eq!(led.holder.instance(), a.instance_id());
    assert!(!runner.is_leader(), "its round's reply is still on its way");
    timeout(ms(3000), runner.shutdown()).await.expect("shutdown");
    let left = o.election("e").leader().await.unwrap();
    assert_eq!(left, None, "shutdown returned with the term its round won held");
}
}

/// A runner whose term is lost (backend cut off) is told it (`on_lost`,
/// which panics after it told when `on_lost_panics`), then campaigns again
/// once the backend is back and wins a greater term.
async fn recampaigns_after_loss(h: &dyn crate::Harness, on_lost_panics: bool) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx
        .switchable_client("a", default_options().ttl(ms(400)))
        .await;
    let (acq_tx, mut acquired) = mpsc::unbounded_channel();
    let (lost_tx, mut lost) = mpsc::unbounded_channel();
    let runner = LeaderRunner::new(a.election("e"))
        .backoff(ms(20), ms(100))
        .on_acquired(move |lc| {
            let tx = acq_tx.clone();
            async move {
                let _ = tx.send(lc.term);
            }
        })
        .on_lost(move |term| {
            let tx = lost_tx.clone();
            async move {
                let _ = tx.send(term);
                if on_lost_panics {
                    panic!("on_lost failed (this panic is the test's)");
                }
            }
        })
        .start();
    let t1 = timeout(ms(2000), acquired.recv())
        .await
        .expect("first term")
        .unwrap();
    switch.off();
    let lost_term = timeout(ms(2000), lost.recv())
        .await
        .expect("on_lost called")
        .unwrap();
    assert_eq!(lost_term, t1);
    assert!(!runner.is_leader());
    sleep(ms(100)).await; // a few failing campaigns
    switch.on();
    let t2 = timeout(ms(3000), acquired.recv())
        .await
        .expect("elected again once reconnected")
        .unwrap();
    assert!(t2 > t1, "term {t2} after {t1}");
    assert!(
        runner.stopped_by().is_none(),
        "an unreachable backend is retried"
    );
    timeout(ms(3000), runner.shutdown())
        .await
        .expect("shutdown");
}
