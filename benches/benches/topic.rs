//! In memory: one durable event through coord's topic client types —
//! `Topic::publish`, then `Subscriber::next` (a delivery under a lease,
//! renewal registered) and `EventDelivery::ack` — against
//! `tokio::sync::broadcast` (send, recv) in the same run on the same
//! current-thread runtime. One `MemoryBackend`, one subscriber kept for the
//! whole bench. No target: a reference for the Redis figures of
//! `redis_topic` and for regressions.
//!
//! `cargo bench -p coord-benches --bench topic`

use std::sync::Arc;

use coord::{Client, Namespace, Next, memory::MemoryBackend, spi::Start};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::sync::Mutex;

fn events(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Arc::new(MemoryBackend::new(Namespace::default())));

    let mut group = c.benchmark_group("topic event");
    let (tx, rx) = tokio::sync::broadcast::channel::<u64>(1024);
    let rx = Mutex::new(rx);
    group.bench_function("tokio::sync::broadcast send + recv", |b| {
        b.to_async(&rt).iter(|| async {
            tx.send(7).expect("send");
            let v = rx.lock().await.recv().await.expect("recv");
            assert_eq!(v, 7);
        })
    });
    let topic = client.topic::<u64>("bench/events");
    let sub = topic.subscriber("s").start(Start::Latest);
    let sub = Mutex::new(sub);
    rt.block_on(async { sub.lock().await.subscribe().await.expect("subscribe") });
    group.bench_function("coord memory publish + next + ack", |b| {
        b.to_async(&rt).iter(|| async {
            topic.publish(&7).await.expect("publish");
            match sub.lock().await.next().await.expect("next") {
                Next::Event(d) => {
                    assert_eq!(*d.event(), 7);
                    d.ack().await.expect("ack");
                }
                other => panic!("unexpected {other:?}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
