//! Opening: the failure-rate and slow-call thresholds, the minimum of
//! calls, time windows, the quorum, refusals, an open reaching every
//! instance (by notification, and without one within the refresh interval),
//! and no round trip per call.

use super::*;

cases! {
    family: "breakers", needs: [Need::Breakers];

/// A failure rate at (not only above) 50 % of the minimum of calls opens
/// the breaker; an open breaker
/// refuses.
pub async fn breaker_opens_at_failure_rate(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = breaker(&ctx.client("a").await);
    outcomes(&b, 3, 1).await;
    assert_eq!(b.state().await.unwrap().phase, Phase::Closed, "25% < 50%");
    outcomes(&b, 1, 3).await;
    let s = b.state().await.unwrap();
    assert_eq!(s.phase, Phase::Open, "4 of 8 failed: 50% exactly");
    assert!(matches!(last_cause(&ctx).await, Cause::Tripped(_)));
    refused(b.permit().await, "open");
}

/// A report's tally is at most `MAX_TALLY_CALLS` calls: a larger one is
/// `InvalidArgument` naming the breaker, on every backend (the Redis
/// script's exact arithmetic stops at 2^53), and leaves the window as it
/// was: the reports after it are counted, and trim the window, as usual.
pub async fn breaker_report_tally_bounded(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let (p, name, a) = (policy(100, 1), key(B), instance("a"));
    let g = b.state(&name, &p, 0).await.unwrap().generation;
    let over = MAX_TALLY_CALLS + 1;
    for bad in [Tally::new(over, 0, 0), Tally::new(u64::MAX, 1 << 62, 0)] {
        match b.report(&name, &p, g, &a, bad, 0).await {
            Err(Error::InvalidArgument { message }) => {
                assert!(message.contains(B), "{bad:?}: names the breaker: {message}");
            }
            other => panic!("{bad:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    let r = b.report(&name, &p, g, &a, Tally::new(MAX_TALLY_CALLS, 0, 0), 0).await.unwrap();
    assert!(r.counted, "the most calls a tally holds");
    for t in [Tally::new(3, 0, 0), Tally::new(3, 1, 0)] {
        let r = b.report(&name, &p, g, &a, t, 0).await.unwrap();
        assert!(r.counted, "{t:?}");
    }
    let s = b.state(&name, &p, 0).await.unwrap();
    assert_eq!((s.phase, s.window), (Phase::Closed, Tally::new(4, 1, 0)), "{s:?}");
}

/// Below the minimum of calls nothing opens, even every call failed.
pub async fn breaker_minimum_calls_before_deciding(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = breaker(&ctx.client("a").await);
    outcomes(&b, 0, 3).await;
    let s = b.state().await.unwrap();
    assert_eq!((s.phase, s.window.calls), (Phase::Closed, 3), "3 failures of 3 < minimum 4");
    outcomes(&b, 0, 1).await;
    assert_eq!(b.state().await.unwrap().phase, Phase::Open);
}

/// Slow calls open the breaker on their own rate, though none failed.
/// The five outcomes go in one flush (the interval is long): flushed one
/// by one, the fourth slow call alone would trip the breaker before the
/// failure is recorded, and the case would depend on the timing.
pub async fn breaker_slow_calls_open(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let b = quick(&client)
        .ignore_failures()
        .slow_calls(ms(20), 50.0)
        .flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..4 {
        let out = b
            .call(async {
                sleep(ms(30)).await;
                Ok::<_, ()>(())
            })
            .await;
        assert!(matches!(out, Ok(Ok(()))));
    }
    b.permit().await.unwrap().failure();
    b.flush().await.unwrap();
    let s = b.state().await.unwrap();
    assert_eq!(s.phase, Phase::Open, "4 of 5 slow: 80% >= 50% (failures ignored): {s:?}");
    match last_cause(&ctx).await {
        Cause::Tripped(t) => assert_eq!((t.calls, t.slow, t.failures), (5, 4, 1)),
        other => panic!("tripped by the window, not {other:?}"),
    }
}

/// A call cancelled once it was slower than the slow-call duration (a
/// timeout around `call`, the usual way to bound one) counts as a slow
/// call, so cancelled calls to a hanging dependency open the breaker; one
/// cancelled sooner counts nothing. (A dropped permit counted nothing at
/// all: a breaker whose callers time out never opened.)
pub async fn breaker_cancelled_slow_calls_count_as_slow(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let b = quick(&client)
        .ignore_failures()
        .slow_calls(ms(20), 50.0)
        .flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let hanging = || b.call(std::future::pending::<Result<(), ()>>());
    assert!(timeout(ms(1), hanging()).await.is_err(), "cancelled at once");
    b.flush().await.unwrap();
    assert_eq!(b.state().await.unwrap().window.calls, 0, "nothing known: not counted");
    for _ in 0..4 {
        assert!(timeout(ms(40), hanging()).await.is_err(), "cancelled when slow");
    }
    b.flush().await.unwrap();
    let s = b.state().await.unwrap();
    assert_eq!(s.phase, Phase::Open, "4 of 4 slow: {s:?}");
    match last_cause(&ctx).await {
        Cause::Tripped(t) => assert_eq!((t.calls, t.slow, t.failures), (4, 4, 0)),
        other => panic!("tripped by the window, not {other:?}"),
    }
}

/// A time window forgets the calls older than its span.
pub async fn breaker_time_window_forgets_old_calls(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let b = quick(&client).time_window(ms(400)).build().unwrap();
    outcomes(&b, 0, 3).await;
    sleep(ms(500)).await;
    outcomes(&b, 0, 1).await;
    let s = b.state().await.unwrap();
    assert_eq!((s.phase, s.window.calls), (Phase::Closed, 1), "the first 3 left the span");
    outcomes(&b, 0, 3).await;
    assert_eq!(b.state().await.unwrap().phase, Phase::Open);
}

/// With a quorum of 2, one instance's failures do not open the breaker; a
/// second failing instance does.
pub async fn breaker_quorum_one_instance_cannot_open(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = quick(&ctx.client("a").await).quorum(2, Duration::from_secs(60)).build().unwrap();
    let b = quick(&ctx.client("b").await).quorum(2, Duration::from_secs(60)).build().unwrap();
    outcomes(&a, 0, 6).await;
    let s = a.state().await.unwrap();
    assert_eq!((s.phase, s.window.failures), (Phase::Closed, 6), "one instance only");
    outcomes(&b, 0, 1).await;
    assert_eq!(b.state().await.unwrap().phase, Phase::Open, "two instances failed");
}

/// A refusal is `CircuitOpen` naming the breaker with the time left of the
/// open, and the call is not run.
pub async fn breaker_refusal_is_circuit_open_with_retry_after(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let b = quick(&ctx.client("a").await).open_for(Duration::from_secs(5)).build().unwrap();
    outcomes(&b, 0, 4).await;
    b.state().await.unwrap();
    let flag = ran();
    let f = flag.clone();
    let res = b.call(async move { f.store(true, SeqCst); Ok::<_, ()>(()) }).await;
    let left = match res {
        Err(Error::CircuitOpen { name, retry_after }) => {
            assert_eq!(name, B);
            retry_after
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    };
    assert!(!flag.load(SeqCst), "a refused call is not run");
    assert!(left > ms(4000) && left <= ms(5000), "retry after {left:?} of a 5 s open");
}

/// An open reaches every other instance promptly (their refresh interval
/// is 10 s: by the backend's notification), and they refuse.
pub async fn breaker_open_reaches_every_instance(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = breaker(&ctx.client("a").await);
    let others = [breaker(&ctx.client("b").await), breaker(&ctx.client("c").await)];
    for o in &others {
        assert_eq!(o.state().await.unwrap().phase, Phase::Closed);
    }
    outcomes(&a, 0, 4).await;
    for o in &others {
        phase_within(o, Phase::Open, "another instance").await;
        refused(o.permit().await, "another instance");
    }
}

/// Without any notification (a backend whose watches never wake), an open
/// still reaches an instance within its refresh interval.
pub async fn breaker_open_reaches_an_instance_without_notifications(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let a = breaker(&ctx.client("a").await);
    let (deaf, _) = counted_client(&ctx, "deaf", true).await;
    let b = quick(&deaf).refresh_interval(ms(300)).build().unwrap();
    b.state().await.unwrap();
    sleep(ms(50)).await;
    let opened = Instant::now();
    outcomes(&a, 0, 4).await;
    phase_within(&b, Phase::Open, "a deaf instance").await;
    let took = opened.elapsed();
    assert!(took <= ms(300 + 400), "seen after {took:?}: the bound is the refresh interval");
}

/// Calls through a closed breaker make no backend call: their outcomes go
/// in one flush.
pub async fn breaker_closed_calls_make_no_round_trip(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (client, calls) = counted_client(&ctx, "a", false).await;
    let b = quick(&client).count_window(5_000).flush_interval(Duration::from_secs(60)).build().unwrap();
    b.state().await.unwrap();
    sleep(ms(50)).await;
    let before = calls.load(SeqCst);
    for i in 0..1_000 {
        b.permit().await.unwrap().record(i % 10 == 0);
    }
    assert_eq!(calls.load(SeqCst), before, "1,000 calls, no backend call");
    b.flush().await.unwrap();
    assert_eq!(calls.load(SeqCst), before + 1, "one flush");
    let s = b.state().await.unwrap();
    assert_eq!((s.window.calls, s.window.failures), (1_000, 100));
}

}
