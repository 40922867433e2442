//! In-memory, uncontended: `try_lock` + `release` through coord's client type
//! (one client, one key), with auto-extension on (the default: the grant
//! puts the lease on the client's renewal queue, the release takes it off)
//! and off, against `tokio::sync::Mutex` lock + unlock measured in the same
//! run on the same current-thread runtime. The in-memory backend runs the
//! path Redis runs: every grant reads the clock for its local validity, and
//! the lease expires at its TTL unless renewed. Target (issue 11): at most
//! 400 ns per cycle with auto-extension on. A second group yields to the
//! runtime every 32 iterations (baseline included), as an application's
//! tasks do, so that the renewal queue's task runs when it has to.
//!
//! For instruction counts, which do not depend on what else the machine is
//! doing: `cargo build --release -p coord-benches --example probe` and
//! `valgrind --tool=callgrind target/release/examples/probe {mutex|off|on} 20000`.
//!
//! A third group times building blocks of a cycle on this machine (a clock
//! read, a holder nonce, an atomic read-modify-write, an allocation, a
//! mutex), so the cycle's cost can be read against them.
//!
//! `cargo bench -p coord-benches --bench lock`

use std::{
    cell::Cell,
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use coord::{Client, HolderId, InstanceId, Namespace, memory::MemoryBackend};
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

    // The loops above never yield to the runtime; an application's tasks do.
    // Here every loop (baseline included) yields once per 32 iterations, so
    // that whatever the runtime has to run (a client's renewal task, when it
    // has one) runs, while the cost of the yield itself is amortised.
    let mut group = c.benchmark_group("uncontended lock+release, yield every 32");
    let count = &Cell::new(0u32);
    let mutex = &mutex;
    group.bench_function("tokio::sync::Mutex", |b| {
        b.to_async(&rt).iter(|| async move {
            let mut guard = mutex.lock().await;
            *guard += 1;
            black_box(&*guard);
            drop(guard);
            yield_sometimes(count).await;
        })
    });
    for (name, auto_extend) in [
        ("coord memory try_lock, auto_extend on", true),
        ("coord memory try_lock, auto_extend off", false),
    ] {
        let lock = &client.lock("bench/job").auto_extend(auto_extend);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async move {
                let guard = lock.try_lock().await.unwrap().expect("uncontended");
                black_box(guard.token());
                assert!(guard.release().await.unwrap());
                yield_sometimes(count).await;
            })
        });
    }
    group.finish();
}

/// Building blocks of one lock cycle, each measured alone: a clock read
/// (the instant the request left, for local validity), a 128-bit holder
/// nonce, an allocation (the guard's lease), uncontended atomic
/// read-modify-writes and mutexes (the table shard's lock, taken by the grant
/// and by the release; the renewal queue's).
fn pieces(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let mut group = c.benchmark_group("pieces of a cycle");
    group.bench_function("tokio Instant::now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    let instance = InstanceId::new("bench-1").expect("valid");
    group.bench_function("holder nonce (HolderId::new)", |b| {
        b.iter(|| black_box(HolderId::new(instance)))
    });
    let counter = AtomicU64::new(0);
    group.bench_function("atomic fetch_add", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::SeqCst))
    });
    group.bench_function("256-byte allocation + free", |b| {
        b.iter(|| black_box(Vec::<u8>::with_capacity(256)))
    });
    let mutex = std::sync::Mutex::new(0u64);
    group.bench_function("std Mutex lock + unlock", |b| {
        b.iter(|| *black_box(&mutex).lock().unwrap() += 1)
    });
    group.finish();
}

async fn yield_sometimes(count: &Cell<u32>) {
    count.set(count.get().wrapping_add(1));
    if count.get().is_multiple_of(32) {
        tokio::task::yield_now().await;
    }
}

criterion_group!(benches, uncontended, pieces);
criterion_main!(benches);
