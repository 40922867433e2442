//! In memory: one round of a cyclic barrier of 16 tasks through coord's
//! client type (16 participants of one client on one `MemoryBackend`, each
//! task a `wait_in` of the round's generation; the last to arrive trips it,
//! and the 15 asleep on the backend's notification wake, arrive again and
//! return), against `tokio::sync::Barrier` of 16 in the same run on the same
//! current-thread runtime. Both spawn their 16 tasks per round and join
//! them, so the figure is a whole round: spawns, arrivals, the trip and
//! every wake-up. Cheap to run; no target, a reference for the Redis figures
//! of `redis_barrier` and for regressions.
//!
//! `cargo bench -p coord-benches --bench barrier`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use coord::{Barrier, Client, Namespace, memory::MemoryBackend};
use criterion::{Criterion, criterion_group, criterion_main};

const TASKS: usize = 16;

fn round(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Arc::new(MemoryBackend::new(Namespace::default())));

    let mut group = c.benchmark_group("barrier round, 16 tasks");

    let baseline = Arc::new(tokio::sync::Barrier::new(TASKS));
    group.bench_function("tokio::sync::Barrier", |b| {
        b.to_async(&rt).iter(|| async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let barrier = baseline.clone();
                    tokio::spawn(async move { barrier.wait().await.is_leader() })
                })
                .collect();
            let mut leaders = 0;
            for t in tasks {
                leaders += usize::from(t.await.expect("task"));
            }
            assert_eq!(leaders, 1);
        })
    });

    let barriers: Arc<Vec<Barrier>> = Arc::new(
        (0..TASKS)
            .map(|i| {
                client
                    .barrier("bench/round", TASKS as u32)
                    .participant(&format!("p-{i:02}"))
                    .wait_timeout(Some(Duration::from_secs(10)))
            })
            .collect(),
    );
    let generation = Arc::new(AtomicU64::new(
        rt.block_on(barriers[0].generation()).expect("state"),
    ));
    group.bench_function("coord memory wait_in", |b| {
        b.to_async(&rt).iter(|| async {
            let g = generation.load(Ordering::Relaxed);
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| {
                    let barriers = barriers.clone();
                    tokio::spawn(async move { barriers[i].wait_in(g).await })
                })
                .collect();
            let mut next = g;
            for t in tasks {
                let trip = t.await.expect("task").expect("tripped");
                assert_eq!(trip.arrivals.len(), TASKS);
                next = trip.next;
            }
            generation.store(next, Ordering::Relaxed);
        })
    });
    group.finish();
}

criterion_group!(benches, round);
criterion_main!(benches);
