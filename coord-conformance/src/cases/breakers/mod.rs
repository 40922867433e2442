//! Circuit breakers (`contract::breaker`): opening (thresholds, minimum
//! calls, slow calls, time windows, quorum, refusals, how an open reaches
//! every instance, no round trip per call), trials (half-open, limited
//! cluster-wide, closing, reopening, growing open times, crashed trials,
//! generations), manual actions, instances joining, transitions and an
//! unreachable backend, and peeks (a look that makes nothing). One file
//! per theme, and the helpers they share.
//!
//! Breakers here flush every 10 ms and refresh only every 10 s, so an open
//! seen promptly by another instance came by the backend's notification
//! (or by the refresh interval a case sets on purpose).

use std::sync::atomic::AtomicBool;

pub(crate) use crate::cases::queues::PROMPTLY;
use crate::{cases::prelude::*, runner::Case};
pub(crate) use coord_api::{
    Breaker, BreakerBuilder, BreakerEvent, CallPermit, Unreachable,
    spi::{
        Action, BreakerBackend, Cause, Phase, Policy, Tally, Trial, WindowKind,
        breaker::MAX_TALLY_CALLS,
    },
};

pub mod manual;
pub mod opening;
pub mod peek;
pub mod trials;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        opening::cases(),
        trials::cases(),
        manual::cases(),
        peek::cases(),
    ]
    .concat()
}

/// The breaker every case uses.
pub(crate) const B: &str = "payments";

/// A breaker that opens at 50 % failures of at least 4 calls (a window of
/// 10), for 5 s (long enough that a slow machine does not see it half-open
/// before a case looks), with one trial; flushing every 10 ms, refreshing
/// every 10 s.
pub(crate) fn quick(client: &Client) -> BreakerBuilder {
    client
        .breaker(B)
        .count_window(10)
        .minimum_calls(4)
        .failure_rate(50.0)
        .open_for(ms(5000))
        .trials(1)
        .trial_ttl(ms(2000))
        .flush_interval(ms(10))
        .refresh_interval(Duration::from_secs(10))
        .max_staleness(Duration::from_secs(30))
}

/// `quick` built.
pub(crate) fn breaker(client: &Client) -> Breaker {
    quick(client).build().expect("valid options")
}

/// `quick` with an open time of 300 ms, for the cases that wait for the
/// breaker to become half-open.
pub(crate) fn short_open(client: &Client) -> Breaker {
    quick(client)
        .open_for(ms(300))
        .build()
        .expect("valid options")
}

/// Records `ok` successes then `failed` failures through `b`, and flushes.
pub(crate) async fn outcomes(b: &Breaker, ok: u32, failed: u32) {
    for i in 0..ok + failed {
        let permit = b.permit().await.expect("a closed breaker admits");
        permit.record(i >= ok);
    }
    b.flush().await.expect("flush");
}

/// Waits (bounded by [`PROMPTLY`]) until `b`'s cached phase is `want`.
pub(crate) async fn phase_within(b: &Breaker, want: Phase, what: &str) {
    let seen = eventually(PROMPTLY, || async {
        (b.phase() == Some(want)).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "{what}: {:?}, not {want:?}, after {PROMPTLY:?}",
        b.phase()
    );
}

/// The `retry_after` of a refusal; panics on anything else.
#[track_caller]
pub(crate) fn refused(res: Result<CallPermit>, what: &str) -> Duration {
    match res {
        Err(Error::CircuitOpen { retry_after, name }) => {
            assert_eq!(name, B, "{what}: the refusal names the breaker");
            retry_after
        }
        other => panic!("{what}: expected CircuitOpen, got {other:?}"),
    }
}

/// The breaker family of `backend`.
pub(crate) fn breakers(backend: &DynBackend) -> &dyn BreakerBackend {
    backend.breakers().expect("the backend offers breakers")
}

/// A policy for SPI-level cases: a count window of 4, all 4 deciding, open
/// for `open_ms`, `trials` trials.
pub(crate) fn policy(open_ms: u64, trials: u32) -> Policy {
    Policy {
        window: WindowKind::Count { calls: 4 },
        minimum_calls: 4,
        open_for: ms(open_ms),
        max_open_for: ms(open_ms),
        trials,
        ..Policy::default()
    }
}

/// The cause of the breaker's last transition, as the backend keeps it.
pub(crate) async fn last_cause(ctx: &Ctx<'_>) -> Cause {
    let backend = ctx.backend().await;
    let (name, p) = (key(B), Policy::default());
    let s = breakers(&backend).state(&name, &p, 0).await.expect("state");
    s.transitions.last().expect("a transition").cause.clone()
}

/// An instance id for SPI-level reports.
pub(crate) fn instance(name: &str) -> InstanceId {
    InstanceId::new(name).expect("valid instance id")
}

/// A watch that never wakes.
struct Never;

#[coord_api::async_trait]
impl coord_api::spi::Watch for Never {
    async fn changed(&mut self) -> Result<()> {
        std::future::pending().await
    }
}

/// A backend that counts the breaker calls made through it, and, when
/// `deaf`, hands out breaker watches that never wake (every notification
/// lost).
#[derive(Debug)]
pub(crate) struct Counting {
    inner: DynBackend,
    deaf: bool,
    calls: Arc<AtomicUsize>,
}

impl Counting {
    /// Wraps `inner`; the counter of its breaker calls.
    pub(crate) fn wrap(inner: DynBackend, deaf: bool) -> (DynBackend, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let me = Counting {
            inner,
            deaf,
            calls: calls.clone(),
        };
        (Arc::new(coord_api::spi::Dispatched::new(me)), calls)
    }
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[coord_api::async_trait]
impl coord_api::spi::Dispatch for Counting {
    fn namespace(&self) -> &coord_api::Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> coord_api::spi::Families {
        coord_api::spi::Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: coord_api::spi::Call) -> Result<coord_api::spi::Reply> {
        if call.op().family == "breakers" {
            self.calls.fetch_add(1, SeqCst);
            if self.deaf && call.op().name == "watch" {
                let never: Box<dyn coord_api::spi::Watch> = Box::new(Never);
                return Ok(Box::new(never));
            }
        }
        call.run(self.inner.clone()).await
    }
}

/// A client named `name` on a [`Counting`] backend of the case.
pub(crate) async fn counted_client(
    ctx: &Ctx<'_>,
    name: &str,
    deaf: bool,
) -> (Client, Arc<AtomicUsize>) {
    let (backend, calls) = Counting::wrap(ctx.backend().await, deaf);
    let client = Client::builder(backend)
        .instance_id(name)
        .expect("valid instance id")
        .lease_options(default_options())
        .build();
    (client, calls)
}

/// A flag a call sets when it runs.
pub(crate) fn ran() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}
