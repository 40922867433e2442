//! The client's own rules, on a fake backend that runs the SPI's `Record`
//! (no notifications: the tests read the state themselves).

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::{Duration, UNIX_EPOCH},
};

use async_trait::async_trait;

use crate::{
    Client, Clock, Error, HolderId, InstanceId, Key, Namespace, Result, TokioClock,
    spi::{
        Action, Backend, BreakerBackend, BreakerState, Phase, Policy, Reported, Tally, Trial,
        Watch, breaker::Record,
    },
};

#[derive(Debug, Default)]
struct Fake {
    ns: Namespace,
    record: Mutex<Option<Record>>,
    reports: AtomicU64,
    /// Reports wait while a test holds it for writing (on their way).
    gate: tokio::sync::RwLock<()>,
    /// Told as each report arrives, before the gate.
    arrived: tokio::sync::Notify,
}

impl fmt::Display for Fake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fake")
    }
}

impl Backend for Fake {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }
    fn breakers(&self) -> Option<&dyn BreakerBackend> {
        Some(self)
    }
}

impl Fake {
    fn step<T>(&self, policy: &Policy, op: impl FnOnce(&mut Record, u64) -> T) -> Result<T> {
        let wall = TokioClock.wall().duration_since(UNIX_EPOCH).unwrap();
        let now = wall.as_micros() as u64;
        let mut r = self.record.lock().unwrap();
        let r = r.get_or_insert_with(|| Record::born(*policy, now));
        r.sweep(now);
        Ok(op(r, now))
    }
}

#[async_trait]
impl BreakerBackend for Fake {
    async fn state(&self, _: &Key, p: &Policy, seen: u64) -> Result<BreakerState> {
        self.step(p, |r, now| r.state(seen, now))
    }
    async fn report(
        &self,
        _: &Key,
        p: &Policy,
        g: u64,
        i: &InstanceId,
        t: Tally,
        seen: u64,
    ) -> Result<Reported> {
        self.arrived.notify_one();
        let _open = self.gate.read().await;
        self.reports.fetch_add(1, SeqCst);
        self.step(p, |r, now| {
            Reported::new(r.report(g, i.as_str(), t, now), r.state(seen, now))
        })
    }
    async fn trial(
        &self,
        _: &Key,
        p: &Policy,
        h: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        self.step(p, |r, now| {
            match r.trial(&h.to_string(), ttl.as_micros() as u64, now) {
                Some(token) => Trial::Granted {
                    token,
                    state: r.state(seen, now),
                },
                None => Trial::Refused(r.state(seen, now)),
            }
        })
    }
    async fn trial_done(
        &self,
        _: &Key,
        p: &Policy,
        g: u64,
        h: &HolderId,
        o: Tally,
        seen: u64,
    ) -> Result<Reported> {
        self.step(p, |r, now| {
            Reported::new(r.trial_done(g, &h.to_string(), o, now), r.state(seen, now))
        })
    }
    async fn manual(
        &self,
        _: &Key,
        p: &Policy,
        a: Action,
        by: &InstanceId,
        why: &str,
        seen: u64,
    ) -> Result<BreakerState> {
        self.step(p, |r, now| {
            r.manual(a, by.as_str(), why, *p, now);
            r.state(seen, now)
        })
    }
    async fn watch(&self, _: &Key) -> Result<Box<dyn Watch>> {
        Ok(Box::new(crate::testing::Never))
    }
}

fn setup() -> (Arc<Fake>, crate::Breaker) {
    let fake = Arc::new(Fake::default());
    let client = Client::new(fake.clone());
    let b = (client.breaker("b"))
        .count_window(10)
        .minimum_calls(4)
        .flush_interval(Duration::from_secs(60))
        .refresh_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    (fake, b)
}

#[tokio::test]
async fn a_permit_dropped_without_an_outcome_counts_nothing() {
    let (fake, b) = setup();
    drop(b.permit().await.unwrap());
    b.flush().await.unwrap();
    assert_eq!(fake.reports.load(SeqCst), 0, "nothing to flush");
    b.permit().await.unwrap().failure();
    b.flush().await.unwrap();
    assert_eq!(b.state().await.unwrap().window, Tally::new(1, 1, 0));
}

#[tokio::test]
async fn outcomes_admitted_in_an_old_generation_are_not_flushed() {
    let (fake, b) = setup();
    let late = b.permit().await.unwrap();
    b.reset("new generation").await.unwrap();
    late.failure();
    b.flush().await.unwrap();
    assert_eq!(
        fake.reports.load(SeqCst),
        0,
        "the outcome was dropped locally"
    );
}

/// A success of a call sent before the one whose failure made the backend
/// unreachable, answered after it (a refresh in flight when the network
/// went), does not make it reachable again: only a later call's does.
/// (It did, and the local fallback was dropped while still cut off.)
#[tokio::test]
async fn an_older_success_does_not_undo_a_newer_loss() {
    let (_fake, b) = setup();
    let state = b.state().await.unwrap();
    let inner = &b.inner;
    let (older, newer) = (inner.ticket(), inner.ticket());
    inner.lost(&Error::unavailable("test", "cut off"), newer);
    assert!(!b.backend_reachable());
    inner.apply(&state, older);
    assert!(!b.backend_reachable(), "an older call's success");
    let later = inner.ticket();
    inner.apply(&state, later);
    assert!(b.backend_reachable(), "a later call's success");
}

/// A flush returns only once the outcomes recorded before it were
/// answered, even when a flush already on its way (the background one)
/// took them: it returned at once, finding nothing pending, and a report
/// sent beside one on its way could be counted before it.
#[tokio::test(start_paused = true)]
async fn a_flush_waits_for_the_one_on_its_way() {
    let (fake, b) = setup();
    b.permit().await.unwrap().failure();
    let held = fake.gate.write().await;
    let first = tokio::spawn({
        let b = b.clone();
        async move { b.flush().await }
    });
    fake.arrived.notified().await;
    let waited = tokio::time::timeout(Duration::from_millis(500), b.flush()).await;
    assert!(
        waited.is_err(),
        "returned while the first flush was on its way"
    );
    drop(held);
    first.await.unwrap().unwrap();
    b.flush().await.unwrap();
    assert_eq!(fake.reports.load(SeqCst), 1, "one report, of one failure");
    assert_eq!(b.state().await.unwrap().window, Tally::new(1, 1, 0));
}

#[tokio::test]
async fn open_refuses_without_the_backend() {
    let (fake, b) = setup();
    for _ in 0..4 {
        b.permit().await.unwrap().failure();
    }
    b.flush().await.unwrap();
    assert_eq!(b.phase(), Some(Phase::Open));
    let reports = fake.reports.load(SeqCst);
    for _ in 0..100 {
        assert!(matches!(b.permit().await, Err(Error::CircuitOpen { .. })));
    }
    assert_eq!(fake.reports.load(SeqCst), reports);
}

#[cfg(feature = "tower")]
mod tower {
    use std::{
        future::{Ready, ready},
        task::{Context, Poll},
    };

    use tower_layer::Layer;
    use tower_service::Service;

    use super::*;
    use crate::BreakerLayer;

    /// Fails every request; counts them.
    #[derive(Clone, Default)]
    struct Down(Arc<AtomicU64>);

    impl Service<u32> for Down {
        type Response = u32;
        type Error = std::io::Error;
        type Future = Ready<std::io::Result<u32>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: u32) -> Self::Future {
            self.0.fetch_add(1, SeqCst);
            ready(Err(std::io::Error::other("down")))
        }
    }

    #[tokio::test]
    async fn the_layer_counts_errors_and_refuses_without_sending() {
        let (_, b) = setup();
        let down = Down::default();
        let mut svc = BreakerLayer::new(b.clone()).layer(down.clone());
        for _ in 0..4 {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            assert!(svc.call(1).await.is_err());
        }
        b.flush().await.unwrap();
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let err = svc.call(1).await.unwrap_err();
        assert!(
            matches!(err.downcast_ref::<Error>(), Some(Error::CircuitOpen { .. })),
            "{err}"
        );
        assert_eq!(down.0.load(SeqCst), 4, "the refused request was not sent");
    }
}

/// A backend written before `peek` (this fake) answers it `NotSupported`
/// (the SPI's default), which the client names after the backend; nothing
/// is born, and no look falls back on `state`.
#[tokio::test]
async fn a_backend_without_peek_answers_not_supported_and_makes_nothing() {
    let (fake, b) = setup();
    match b.peek().await {
        Err(Error::NotSupported { operation, backend }) => {
            assert_eq!((operation, backend.as_str()), ("breakers.peek", "fake"));
        }
        other => panic!("expected NotSupported, got {other:?}"),
    }
    assert!(fake.record.lock().unwrap().is_none(), "a breaker was born");
    assert_eq!(b.phase(), None);
}

/// A backend without the breaker family.
#[derive(Debug, Default)]
struct NoBreakers {
    ns: Namespace,
}

impl fmt::Display for NoBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no breakers")
    }
}

impl Backend for NoBreakers {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }
}

/// A breaker on a backend that lacks the family is `NotSupported`, and on
/// a closed client `Closed`, and runs no call: neither is an unreachable
/// backend for the local fallback to stand in for. (Both admitted every
/// call through a local breaker.)
#[tokio::test]
async fn a_breaker_without_its_family_or_client_refuses_with_the_error() {
    let client = Client::new(Arc::new(NoBreakers::default()));
    let b = client.breaker("b").build().unwrap();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let call = |ran: Arc<std::sync::atomic::AtomicBool>| async move {
        ran.store(true, SeqCst);
        Ok::<_, ()>(())
    };
    match b.call(call(ran.clone())).await {
        Err(Error::NotSupported { .. }) => {}
        other => panic!("expected NotSupported, got {other:?}"),
    }
    assert!(matches!(b.permit().await, Err(Error::NotSupported { .. })));
    let (_, b) = setup();
    b.permit().await.unwrap().success();
    b.inner.client.close().await.unwrap();
    match b.call(call(ran.clone())).await {
        Err(Error::Closed { .. }) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(!ran.load(SeqCst), "no call ran");
}

/// The events told until none comes for 50 ms.
async fn told(events: &mut crate::BreakerEvents) -> Vec<crate::BreakerEvent> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
        out.push(e);
    }
    out
}

/// The fake's record lost and born again (as Redis forgets one unused for
/// a day, or loses it in a restart) at `born_us` on the backend's clock.
fn lose_the_record(fake: &Fake, policy: Policy, born_us: u64) {
    *fake.record.lock().unwrap() = Some(Record::born(policy, born_us));
}

/// A breaker on a fake backend, forced open (that transition told): the
/// fake, the breaker, its events and the forced state.
async fn forced_open() -> (
    Arc<Fake>,
    crate::Breaker,
    crate::BreakerEvents,
    BreakerState,
) {
    let (fake, b) = setup();
    b.state().await.unwrap();
    let mut events = b.events();
    let forced = b.force_open("drill").await.unwrap();
    let t = told(&mut events).await;
    assert!(
        matches!(&t[..], [crate::BreakerEvent::Transition(_)]),
        "{t:?}"
    );
    (fake, b, events, forced)
}

/// An instance that followed a breaker whose record was lost and born
/// again is told `Missed` after the last generation it knew (what the lost
/// record did since cannot be told), and then follows the new record:
/// its phase, and its outcomes counted there. (It was told nothing and
/// moved silently from forced open to closed.)
#[tokio::test]
async fn a_record_born_again_is_told_as_missed_then_followed() {
    let (fake, b, mut events, forced) = forced_open().await;
    lose_the_record(&fake, forced.policy, forced.generation + 1_000);
    let reborn = b.state().await.unwrap();
    assert_eq!(reborn.phase, Phase::Closed);
    assert_eq!(
        told(&mut events).await,
        [crate::BreakerEvent::Missed {
            after: forced.generation
        }],
        "the rebirth told"
    );
    assert_eq!(b.phase(), Some(Phase::Closed));
}

/// A record born again with a generation below the last one the instance
/// knew (the server's clock behind the lost record's generations: a
/// restart on a host whose clock lags) is followed too, after `Missed`:
/// its replies were all ignored as older than what the instance knew, so
/// it stayed forced open, and its outcomes were never counted.
#[tokio::test]
async fn a_record_born_again_below_what_was_seen_is_followed() {
    let (fake, b, mut events, forced) = forced_open().await;
    let hour_us = 3_600_000_000;
    lose_the_record(&fake, forced.policy, forced.generation - hour_us);
    let reborn = b.state().await.unwrap();
    assert!(reborn.generation < forced.generation);
    assert_eq!(
        told(&mut events).await,
        [crate::BreakerEvent::Missed {
            after: forced.generation
        }]
    );
    assert_eq!(b.phase(), Some(Phase::Closed), "the new record's phase");
    for _ in 0..4 {
        b.permit().await.unwrap().failure();
    }
    b.flush().await.unwrap();
    assert_eq!(b.phase(), Some(Phase::Open), "counted in the new record");
    match &told(&mut events).await[..] {
        [crate::BreakerEvent::Transition(t)] => {
            assert_eq!((t.from, t.to), (Phase::Closed, Phase::Open));
        }
        other => panic!("expected the new record's open, got {other:?}"),
    }
}

/// A reply of the lost record to a call sent before a reply of the new
/// one arrived (replies crossing) may be older than the new record: it
/// does not take the instance back, nor tell anything; a reply of the new
/// record to such a call (the record lost while it was in flight) waits
/// for a later call's, which is surely newer.
#[tokio::test]
async fn a_reply_of_the_lost_record_crossing_does_not_take_the_instance_back() {
    let (fake, b, mut events, forced) = forced_open().await;
    let inner = &b.inner;
    let in_flight = inner.ticket();
    lose_the_record(&fake, forced.policy, forced.generation + 1_000);
    b.state().await.unwrap();
    assert_eq!(told(&mut events).await.len(), 1, "Missed");
    inner.apply(&forced, in_flight);
    assert_eq!(
        b.phase(),
        Some(Phase::Closed),
        "taken back to the lost record"
    );
    assert_eq!(told(&mut events).await, [], "told again");

    // The other way round: the instance follows the lost record, and a
    // call in flight since before its last reply is answered by the new.
    let (fake, b, mut events, forced) = forced_open().await;
    let inner = &b.inner;
    let in_flight = inner.ticket();
    b.state().await.unwrap();
    lose_the_record(&fake, forced.policy, forced.generation + 1_000);
    let name = Key::new("b").unwrap();
    let reborn = BreakerBackend::state(&*fake, &name, &forced.policy, 0);
    let reborn = reborn.await.unwrap();
    inner.apply(&reborn, in_flight);
    assert_eq!(
        b.phase(),
        Some(Phase::ForcedOpen),
        "a reply that may be older"
    );
    b.state().await.unwrap();
    assert_eq!(b.phase(), Some(Phase::Closed), "a later call's");
    assert_eq!(told(&mut events).await.len(), 1, "Missed, once");
}
