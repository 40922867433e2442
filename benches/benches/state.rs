//! In-memory shared values through coord's client types, against
//! `tokio::sync::RwLock<u64>` in the same run on the same current-thread
//! runtime: `get`, `put`, `update` (read, then compare-and-set) of one
//! uncontended value, and a watch handed one change (`put` then `next`).
//! No target: these show what a step costs in the client and the store
//! (JSON, the log, the version rule) against a plain in-process lock; the
//! speed goal of issue 16 is on Redis (`redis_state`).
//!
//! `cargo bench -p coord-benches --bench state`

use std::{hint::black_box, sync::Arc};

use coord::{Client, Namespace, memory::MemoryBackend};
use criterion::{Criterion, criterion_group, criterion_main};

fn uncontended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Arc::new(MemoryBackend::new(Namespace::default())));
    let value = client.state::<u64>("bench/counter");
    rt.block_on(value.put(&0)).expect("put");

    let mut group = c.benchmark_group("shared value, uncontended");
    let lock = tokio::sync::RwLock::new(0u64);
    group.bench_function("tokio::sync::RwLock read", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(*lock.read().await) })
    });
    group.bench_function("tokio::sync::RwLock write +1", |b| {
        b.to_async(&rt).iter(|| async {
            let mut g = lock.write().await;
            *g += 1;
            black_box(*g)
        })
    });
    group.bench_function("coord memory get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(value.get().await.unwrap()) })
    });
    group.bench_function("coord memory put", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(value.put(&7).await.unwrap()) })
    });
    group.bench_function("coord memory update +1", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(value.update(|n| n.copied().unwrap_or(0) + 1).await.unwrap())
        })
    });
    let from = rt.block_on(value.put(&0)).expect("put");
    let mut watch = value.watch(from);
    group.bench_function("coord memory put + watch next", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    value.put(&1).await.unwrap();
                    black_box(watch.next().await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
