//! In-memory, uncontended: `try_lock` + `release` through coord's client type
//! (one client, one key), with auto-extension on (the default: every grant
//! starts a renewal task) and off, against `tokio::sync::Mutex` lock + unlock
//! measured in the same run on the same current-thread runtime.
//!
//! `cargo bench -p coord-benches --bench lock`

use std::{hint::black_box, sync::Arc};

use coord::{Client, Namespace, memory::MemoryBackend};
use criterion::{Criterion, criterion_group, criterion_main};

fn uncontended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Arc::new(MemoryBackend::new(Namespace::default())));

    let mut group = c.benchmark_group("uncontended lock+release");

    let mutex = tokio::sync::Mutex::new(0u64);
    group.bench_function("tokio::sync::Mutex", |b| {
        b.to_async(&rt).iter(|| async {
            let mut guard = mutex.lock().await;
            *guard += 1;
            black_box(&*guard);
        })
    });

    for (name, auto_extend) in [
        ("coord memory try_lock, auto_extend on", true),
        ("coord memory try_lock, auto_extend off", false),
    ] {
        let lock = client.lock("bench/job").auto_extend(auto_extend);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let guard = lock.try_lock().await.unwrap().expect("uncontended");
                black_box(guard.token());
                assert!(guard.release().await.unwrap());
            })
        });
    }

    let lock = client.lock("bench/job");
    group.bench_function("coord memory lock(), auto_extend on", |b| {
        b.to_async(&rt).iter(|| async {
            let guard = lock.lock().await.unwrap();
            black_box(guard.token());
            assert!(guard.release().await.unwrap());
        })
    });

    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
