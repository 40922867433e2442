//! Memory and Redis answer the same. For each family, random sequences of
//! its SPI calls run against a fresh `MemoryStore` and against Redis,
//! answer by answer: the first step whose answers differ fails, naming
//! both, and proptest shrinks the sequence to the step that differed.
//! Time does not pass within a case (TTLs of tens of seconds; expiry is
//! the model test's and the simulator's); fencing tokens and versions are
//! compared by order (each backend's labelled by the grant or change that
//! drew them), times left in whole seconds.
//!
//! Each family's file holds its calls, its comparable answers, its sides
//! and the sequences that once differed, kept as named tests. 64 cases per
//! family unless `PROPTEST_CASES` asks for more.

mod barriers;
mod elections;
mod graphs;
mod locks;
mod queues;
mod state;
mod topics;

use std::{
    fmt::Debug,
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use coord_redis::RedisBackend;
use coord_testkit::redis::RedisServer;
use proptest::test_runner::Config as ProptestConfig;

/// One backend under test and what it answered so far.
pub(crate) trait Apply {
    /// A call of the family's sequences.
    type Op: Debug;
    /// What a call answered, as comparable across backends.
    type Answer: PartialEq + Debug;
    /// Makes the call `op` on this side's backend.
    async fn apply(&mut self, op: &Self::Op) -> Self::Answer;

    /// How long both sides wait after `op` before the next step:
    /// [`SHORT_WAIT`] after a call that granted a lease of a millisecond
    /// (its op names `Ms1`), so that it is over on both backends.
    fn wait_after(op: &Self::Op) -> Option<Duration> {
        short(op).then_some(SHORT_WAIT)
    }

    /// What is wrong with `answer` whatever the other backend said.
    fn wrong(answer: &Self::Answer) -> Option<String> {
        let _ = answer;
        None
    }
}

/// How long the run waits after a step that granted a lease of a
/// millisecond: on both backends' clocks (the machine's) that lease is
/// then over, whatever the step's own duration, so the next step finds it
/// expired on both. Leases of one step expire in the order of their steps.
pub(crate) const SHORT_WAIT: Duration = Duration::from_millis(3);

/// Whether `op` names a lease of a millisecond (`Ms1`; its debug form
/// says so).
pub(crate) fn short(op: &impl Debug) -> bool {
    format!("{op:?}").contains("Ms1")
}

/// Makes each call of `ops` on `memory`, then on `redis`; the first step
/// whose answers differ, or whose answer is wrong whatever the other said,
/// fails, naming the call and the answers.
pub(crate) async fn compare<S: Apply>(
    memory: &mut S,
    redis: &mut S,
    ops: &[S::Op],
) -> Result<(), String> {
    for (step, op) in ops.iter().enumerate() {
        let (mine, theirs) = (memory.apply(op).await, redis.apply(op).await);
        if mine != theirs {
            return Err(format!(
                "step {step}: {op:?}\n  memory: {mine:?}\n  redis:  {theirs:?}"
            ));
        }
        if let Some(why) = S::wrong(&mine) {
            return Err(format!("step {step}: {op:?}\n  {why}: {mine:?}"));
        }
        if let Some(wait) = S::wait_after(op) {
            tokio::time::sleep(wait).await;
        }
    }
    Ok(())
}

/// A number no other case of this process has: every case works on names
/// of its own on the one Redis server.
pub(crate) fn next_run() -> u64 {
    static RUN: AtomicU64 = AtomicU64::new(0);
    RUN.fetch_add(1, Ordering::Relaxed)
}

/// A name no other case of this process uses (a queue's, a space's...).
pub(crate) fn fresh_name() -> coord_api::Key {
    coord_api::Key::new(&format!("parity/{}", next_run())).unwrap()
}

/// A time left, in whole seconds (rounded up), as both backends can be
/// compared on.
pub(crate) fn secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

pub(crate) async fn redis() -> RedisBackend {
    RedisBackend::connect(RedisServer::shared().config("parity"))
        .await
        .expect("connect")
}

/// The runtime of the property tests' cases (the Redis connection is bound
/// to the runtime it was made on) and its backend.
pub(crate) static PROPERTY: LazyLock<(tokio::runtime::Runtime, RedisBackend)> =
    LazyLock::new(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let backend = rt.block_on(redis());
        (rt, backend)
    });

/// 64 cases unless `PROPTEST_CASES` asks for another number; a failure is
/// kept in its family's file as a named test, not in a file of seeds.
pub(crate) fn config() -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}
