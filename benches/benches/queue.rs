//! In memory: a job through coord's work queue client types — `push`, then
//! `Consumer::receive` (a delivery under a lease, renewal registered) and
//! `Delivery::ack` — against `tokio::sync::mpsc` (send, recv) in the same
//! run on the same current-thread runtime; and a batch of 64 (`push_many`,
//! then 64 receives and acks, with prefetch 1 and with prefetch 16: each
//! prefetched delivery is started by an extend when handed out). One
//! `MemoryBackend`, one consumer kept for the whole bench (its presence
//! renewed in the background). No target: a reference for the Redis
//! figures of `redis_queue` and for regressions.
//!
//! `cargo bench -p coord-benches --bench queue`

use std::sync::Arc;

use coord::{Client, Namespace, memory::MemoryBackend};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::Mutex;

const BATCH: usize = 64;

fn jobs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Arc::new(MemoryBackend::new(Namespace::default())));

    let mut group = c.benchmark_group("queue job");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let rx = Mutex::new(rx);
    group.bench_function("tokio::sync::mpsc send + recv", |b| {
        b.to_async(&rt).iter(|| async {
            tx.send(7).expect("send");
            let v = rx.lock().await.recv().await.expect("recv");
            assert_eq!(v, 7);
        })
    });
    let queue = client.queue::<u64>("bench/one");
    let consumer = Mutex::new(queue.consumer());
    group.bench_function("coord memory push + receive + ack", |b| {
        b.to_async(&rt).iter(|| async {
            queue.push(&7).await.expect("push");
            let d = consumer.lock().await.receive().await.expect("receive");
            assert_eq!(*d.item(), 7);
            d.ack().await.expect("ack");
        })
    });
    group.finish();

    let mut group = c.benchmark_group("queue batch of 64");
    group.throughput(Throughput::Elements(BATCH as u64));
    let items: Vec<u64> = (0..BATCH as u64).collect();
    group.bench_function("tokio::sync::mpsc 64 × (send, recv)", |b| {
        b.to_async(&rt).iter(|| async {
            for &i in &items {
                tx.send(i).expect("send");
            }
            let mut rx = rx.lock().await;
            for &i in &items {
                assert_eq!(rx.recv().await, Some(i));
            }
        })
    });
    for prefetch in [1, 16] {
        let queue = client.queue::<u64>(&format!("bench/batch-{prefetch}"));
        let consumer = Mutex::new(queue.consumer().prefetch(prefetch));
        group.bench_function(
            format!("coord memory push_many + 64 × (receive, ack), prefetch {prefetch}"),
            |b| {
                b.to_async(&rt).iter(|| async {
                    queue.push_many(&items).await.expect("push");
                    let mut consumer = consumer.lock().await;
                    for &i in &items {
                        let d = consumer.receive().await.expect("receive");
                        assert_eq!(*d.item(), i);
                        d.ack().await.expect("ack");
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, jobs);
criterion_main!(benches);
