//! Peeks: a look at a breaker (an operator's, a dashboard's) that never
//! makes one, and answers as a read of its state would when it exists.

use super::*;

cases! {
    family: "breakers", needs: [Need::Breakers];

/// A peek at a breaker with no record answers none and makes nothing: the
/// first real user's policy is the one in force, not the looker's.
pub async fn breaker_peek_makes_nothing_so_the_first_user_policy_wins(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    assert_eq!(breakers(&backend).peek(&key(B), 0).await.unwrap(), None);
    // An operator's handle, with the default policy, looks twice.
    let looker = ctx.client("ops").await.breaker(B).build().unwrap();
    assert_eq!(looker.peek().await.unwrap(), None, "still nothing");
    assert_eq!(looker.phase(), None, "a look leaves the handle's copy alone");
    // The application's policy: 20 % failures of at least 4 calls, 30 s open.
    let app = quick(&ctx.client("app").await)
        .failure_rate(20.0)
        .open_for(ms(30_000))
        .build()
        .unwrap();
    let s = app.state().await.unwrap();
    assert_eq!(
        (s.policy.failure_rate_bp, s.policy.minimum_calls, s.policy.open_for),
        (2_000, 4, ms(30_000)),
        "the first user's policy is in force"
    );
    outcomes(&app, 3, 1).await;
    assert_eq!(app.state().await.unwrap().phase, Phase::Open, "1 failure in 4 opens it");
    let seen = looker.peek().await.unwrap().expect("used now");
    assert_eq!((seen.phase, seen.policy), (Phase::Open, s.policy));
}

/// A peek at a breaker that exists answers what a read of its state
/// answers, sweep included (an open time passed: half-open, the generation
/// every later read sees), whatever policy the looker's handle has.
pub async fn breaker_peek_of_an_existing_breaker_is_its_state(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let backend = ctx.backend().await;
    let b = breakers(&backend);
    let name = key(B);
    let p = policy(300, 1);
    let g = b.state(&name, &p, 0).await.unwrap().generation;
    b.report(&name, &p, g, &instance("a"), Tally::new(3, 1, 0), 0)
        .await
        .unwrap();
    let state = b.state(&name, &Policy::default(), 0).await.unwrap();
    assert_eq!(state.window.calls, 3);
    assert_eq!(b.peek(&name, 0).await.unwrap(), Some(state.clone()));
    let later = b.peek(&name, g).await.unwrap().expect("a record");
    assert_eq!((later.generation, later.transitions.len()), (g, 0), "none after `seen`");

    b.report(&name, &p, g, &instance("a"), Tally::new(1, 1, 0), 0)
        .await
        .unwrap();
    let open = b.peek(&name, 0).await.unwrap().expect("a record");
    assert_eq!((open.phase, open.policy), (Phase::Open, p));
    assert!(open.retry_after.is_some_and(|r| r <= ms(300)), "{open:?}");
    sleep(ms(350)).await;
    let half = b.peek(&name, 0).await.unwrap().expect("a record");
    assert_eq!(half.phase, Phase::HalfOpen, "the open time passed");
    let cause = &half.transitions.last().expect("a transition").cause;
    assert_eq!(*cause, Cause::OpenElapsed);
    let read = b.state(&name, &p, 0).await.unwrap();
    assert_eq!((read.phase, read.generation), (Phase::HalfOpen, half.generation));
    let handle = ctx.client("ops").await.breaker(B).build().unwrap();
    let seen = handle.peek().await.unwrap().expect("a record");
    assert_eq!((seen.generation, seen.policy), (half.generation, p));
}

}
