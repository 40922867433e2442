//! Property test: arbitrary option values — NaN, infinities, negative and
//! huge fractions, zero and `Duration::MAX` durations — thrown at every
//! builder of every lease-based primitive give either an error or a working
//! handle, never a panic; a bad value is `InvalidArgument` naming the
//! option. And the leader runner's backoff saturates instead of overflowing.

use std::{sync::Arc, time::Duration};

use coord_api::{Client, Error, LeaderRunner, LeaseOptions, Namespace, Result, spi::Dispatched};
use coord_conformance::switch::Switch;
use coord_memory::MemoryStore;
use proptest::prelude::*;

fn fraction() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(0.5),
        Just(1.0),
        -2.0..2.0f64,
        any::<f64>(),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        Just(coord_api::MAX_TTL),
        (0u64..100_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
    ]
}

prop_compose! {
    fn options()(
        ttl in duration(),
        wait in proptest::option::of(duration()),
        retry_delay in duration(),
        retry_jitter in fraction(),
        max_retries in proptest::option::of(0u32..3),
        auto_extend in any::<bool>(),
        extend_interval in proptest::option::of(duration()),
        max_drift in fraction(),
        safety_margin in duration(),
    ) -> LeaseOptions {
        LeaseOptions::default()
            .ttl(ttl)
            // Bounded waits: a valid handle on a free key answers at once,
            // and a for-ever wait is not what this test is about.
            .wait_timeout(Some(wait.unwrap_or(Duration::ZERO).min(Duration::from_millis(50))))
            .retry_delay(retry_delay)
            .retry_jitter(retry_jitter)
            .max_retries(max_retries)
            .auto_extend(auto_extend)
            .extend_interval(extend_interval)
            .max_drift(max_drift)
            .safety_margin(safety_margin)
    }
}

/// Ok, or the `InvalidArgument` of a bad option naming it.
fn judged<T>(
    what: &str,
    opts: &LeaseOptions,
    res: Result<T>,
) -> std::result::Result<(), TestCaseError> {
    match res {
        Ok(_) => Ok(()),
        Err(Error::InvalidArgument { message }) => {
            let named = [
                "ttl",
                "retry_jitter",
                "max_drift",
                "retry_delay",
                "extend_interval",
                "safety_margin",
            ]
            .iter()
            .any(|o| message.contains(o));
            prop_assert!(
                named,
                "{what}: the error names the option: {message} ({opts:?})"
            );
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("{what}: {e} ({opts:?})"))),
    }
}

fn run(opts: LeaseOptions) -> std::result::Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = MemoryStore::new();
        let client = Client::new(Arc::new(store.backend(Namespace::default())));
        let o = || opts.clone();
        // Each on a key of its own, so one valid grant does not refuse the next.
        judged(
            "try_lock",
            &opts,
            client.lock("l").with_options(o()).try_lock().await,
        )?;
        judged(
            "lock",
            &opts,
            client.lock("l2").with_options(o()).lock().await,
        )?;
        let reentrant = client.lock("r").reentrant(true).with_options(o());
        judged("reentrant", &opts, reentrant.try_lock().await)?;
        judged(
            "try_read",
            &opts,
            client.rwlock("rw").with_options(o()).try_read().await,
        )?;
        judged(
            "try_write",
            &opts,
            client.rwlock("rw2").with_options(o()).try_write().await,
        )?;
        judged(
            "acquire",
            &opts,
            client
                .semaphore("s", 2)
                .with_options(o())
                .try_acquire()
                .await,
        )?;
        judged(
            "try_campaign",
            &opts,
            client.election("e").with_options(o()).try_campaign().await,
        )?;
        judged(
            "join",
            &opts,
            client.group("g").with_options(o()).join().await,
        )?;
        let job = client.job("j").with_options(o());
        judged("run_once", &opts, job.run_once("o", |_| async {}).await)?;
        judged(
            "run",
            &opts,
            client.job("j2").with_options(o()).run(|_| async {}).await,
        )?;
        // Whatever was granted is held for a while and released: renewal
        // and release with these options must not panic either.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_builder_takes_any_option_without_panicking(opts in options()) {
        run(opts)?;
    }
}

/// The runner's backoff at `Duration::MAX` saturates: a runner whose
/// campaigns fail (the backend unreachable) backs off for ever without
/// overflowing, and shuts down cleanly (a panic in its task would surface
/// in `shutdown`).
#[tokio::test(start_paused = true)]
async fn runner_backoff_saturates() {
    let store = MemoryStore::new();
    let switch = Switch::new(Arc::new(store.backend(Namespace::default())));
    switch.off();
    let client = Client::new(Arc::new(Dispatched::new(switch)));
    let runner = LeaderRunner::new(client.election("e"))
        .backoff(Duration::MAX, Duration::MAX)
        .start();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!runner.is_leader());
    assert!(runner.stopped_by().is_none(), "{:?}", runner.stopped_by());
    runner.shutdown().await;
}

/// Refuses every call at once, as an unreachable backend that refuses
/// connections does, counting the campaigns.
#[derive(Debug, Default)]
struct Refusing {
    ns: Namespace,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Display for Refusing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refusing")
    }
}

#[coord_api::async_trait]
impl coord_api::spi::Dispatch for Refusing {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }
    fn families(&self) -> coord_api::spi::Families {
        let store = MemoryStore::new();
        coord_api::spi::Families::of(&store.backend(Namespace::default()))
    }
    async fn dispatch(&self, call: coord_api::spi::Call) -> Result<coord_api::spi::Reply> {
        if call.op().name == "campaign" {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Err(Error::unavailable(
            self,
            format!("{}: connection refused", call.op()),
        ))
    }
}

/// A runner whose backoff starts at zero backs off all the same against a
/// backend that refuses at once: its pauses double from a millisecond
/// (about ten campaigns in 300 ms with a 50 ms maximum). From zero, the
/// backoff doubled to zero: a campaign, and a warning, every tick of the
/// timer, for as long as the backend stayed away.
#[tokio::test]
async fn runner_backoff_from_zero_grows() {
    let refusing = Refusing::default();
    let calls = refusing.calls.clone();
    let client = Client::new(Arc::new(Dispatched::new(refusing)));
    let runner = LeaderRunner::new(client.election("e"))
        .backoff(Duration::ZERO, Duration::from_millis(50))
        .start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.shutdown().await;
    let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=40).contains(&calls), "{calls} campaigns in 300 ms");
}
