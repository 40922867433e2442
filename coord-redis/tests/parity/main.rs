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
use proptest::{
    prelude::{Just, Strategy, prop_oneof},
    test_runner::Config as ProptestConfig,
};

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

/// A TTL (also a delay): long enough that nothing expires during a case,
/// distinct in whole seconds so that resets show; or a millisecond, over
/// by the next step (the run waits [`SHORT_WAIT`] after a step that names
/// one); `Zero` (refused as a TTL, due at once as a delay).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ttl {
    S20,
    S40,
    S60,
    Ms1,
    Zero,
}

impl Ttl {
    pub(crate) fn get(self) -> Duration {
        match self {
            Ttl::S20 => Duration::from_secs(20),
            Ttl::S40 => Duration::from_secs(40),
            Ttl::S60 => Duration::from_secs(60),
            Ttl::Ms1 => Duration::from_millis(1),
            Ttl::Zero => Duration::ZERO,
        }
    }
}

/// Any [`Ttl`], a millisecond's among them.
pub(crate) fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        4 => Just(Ttl::S20),
        4 => Just(Ttl::S40),
        4 => Just(Ttl::S60),
        2 => Just(Ttl::Ms1),
        1 => Just(Ttl::Zero),
    ]
}

/// A [`Ttl`] that lasts the case (or `Zero`): for families whose leases
/// are compared without expiry.
pub(crate) fn lasting_ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        4 => Just(Ttl::S20),
        4 => Just(Ttl::S40),
        4 => Just(Ttl::S60),
        1 => Just(Ttl::Zero),
    ]
}

/// A value (token, instant) as one backend's order sees it: the n-th
/// distinct one it answered, or a new one not above every one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nth {
    Nth(usize),
    OutOfOrder,
}

/// Values one backend answered, in order seen, labelled by [`Nth`].
pub(crate) struct Seen<T>(pub(crate) Vec<T>);

impl<T: PartialOrd + Copy> Seen<T> {
    pub(crate) fn label(&mut self, v: T) -> Nth {
        if let Some(i) = self.0.iter().position(|x| *x == v) {
            return Nth::Nth(i);
        }
        if self.0.iter().any(|x| *x > v) {
            return Nth::OutOfOrder;
        }
        self.0.push(v);
        Nth::Nth(self.0.len() - 1)
    }
}

/// An error as compared across backends: its variant (messages differ).
pub(crate) fn error_variant(e: &coord_api::Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
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
