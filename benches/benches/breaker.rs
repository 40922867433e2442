//! The overhead of a call through a closed shared breaker (the decision and
//! the recording of its outcome), against failsafe's local breaker in the
//! same run. Issue 17's target: within 2x of the local crate and under
//! 200 ns, with no backend round trip per call. The breaker's futures are
//! polled once with a no-op waker (a closed breaker's `permit` completes at
//! once), so both sides are measured as plain calls; its background task
//! runs on a runtime of its own, against the in-memory backend behind a
//! decorator that counts every backend call. After the criterion groups,
//! the bench makes 1,000,000 calls and prints how many backend calls they
//! caused (the flushes of the background task: one per 100 ms, whatever
//! the number of calls).
//!
//! `cargo bench -p coord-benches --bench breaker`

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use coord::{
    Breaker, Client, Namespace, Result,
    memory::MemoryBackend,
    spi::{Backend, Call, Dispatch, Dispatched, DynBackend, Families, Reply},
};
use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker;

/// Counts every backend call, then forwards it.
#[derive(Debug)]
struct Counting {
    inner: DynBackend,
    calls: Arc<AtomicU64>,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[coord_api::async_trait]
impl Dispatch for Counting {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        self.calls.fetch_add(1, Relaxed);
        call.run(self.inner.clone()).await
    }
}

/// Polls `fut` once: it must be ready.
fn ready<T>(fut: impl Future<Output = T>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a closed breaker admits at once"),
    }
}

fn through_breaker(b: &Breaker) {
    ready(b.permit()).expect("closed").success();
}

fn closed_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _in_rt = rt.enter();
    let calls = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: Arc::new(MemoryBackend::new(Namespace::default())),
        calls: calls.clone(),
    };
    let backend: Arc<dyn Backend> = Arc::new(Dispatched::new(counting));
    let client = Client::new(backend);
    let breaker = client
        .breaker("bench")
        .count_window(1_000)
        .build()
        .expect("valid");
    rt.block_on(breaker.state()).expect("first read");
    let local = failsafe::Config::new().build();

    let mut group = c.benchmark_group("call through a closed breaker");
    group.bench_function("failsafe (local)", |b| {
        b.iter(|| black_box(local.call(|| Ok::<_, ()>(black_box(1)))))
    });
    group.bench_function("coord shared (memory)", |b| {
        b.iter(|| through_breaker(black_box(&breaker)))
    });
    group.finish();

    const N: u64 = 1_000_000;
    let before = calls.load(Relaxed);
    let start = std::time::Instant::now();
    for _ in 0..N {
        through_breaker(&breaker);
    }
    let took = start.elapsed();
    let during = calls.load(Relaxed) - before;
    rt.block_on(breaker.flush()).expect("flush");
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
    eprintln!(
        "coord: {N} calls in {took:?} ({:.1} ns/call) caused {during} backend calls \
         (background flushes and refreshes, not per call)",
        took.as_nanos() as f64 / N as f64
    );
}

criterion_group!(benches, closed_call);
criterion_main!(benches);
