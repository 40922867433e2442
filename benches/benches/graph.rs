//! In memory: one run of a diamond graph (`a`, then `b` and `c`, then `d`
//! after both) submitted and worked to completion through coord's client
//! types: `Graph::submit`, then `GraphWorker::work_one` four times (each a
//! take, a no-op body under the attempt's lease, and a complete that
//! resolves the node's dependents), on one `MemoryBackend` and a
//! current-thread runtime. `d` reads its two parents' results. Each
//! iteration is a fresh run id; ended runs are kept 1 ms, so the store does
//! not grow. No target: a reference for the Redis figures of `redis_graph`
//! and for regressions.
//!
//! `cargo bench -p coord-benches --bench graph`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use coord::{Client, Namespace, Node, NodeContext, NodeError, NodeState, memory::MemoryBackend};
use criterion::{Criterion, criterion_group, criterion_main};

async fn body(ctx: NodeContext) -> Result<u32, NodeError> {
    if ctx.node() == "d" {
        let sum: u32 = ctx
            .parent_results::<u32>()
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .sum();
        return Ok(sum);
    }
    Ok(1)
}

fn diamond(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Arc::new(MemoryBackend::new(Namespace::default())));
    let graph = client
        .graph("bench/diamond")
        .retention(Duration::from_millis(1))
        .node("a")
        .node(Node::new("b").after("a"))
        .node(Node::new("c").after("a"))
        .node(Node::new("d").after("b").after("c"))
        .build()
        .expect("a valid graph");
    let worker = graph.worker().ttl(Duration::from_secs(30));
    let next = AtomicU64::new(0);

    let mut group = c.benchmark_group("graph run");
    group.bench_function(
        "coord memory diamond: submit + 4 × (take, body, complete)",
        |b| {
            b.to_async(&rt).iter(|| async {
                let id = format!("r{}", next.fetch_add(1, Ordering::Relaxed));
                let run = graph.submit(&id).await.expect("submit");
                assert!(run.was_created());
                for _ in 0..4 {
                    let worked = worker
                        .work_one(body)
                        .await
                        .expect("work")
                        .expect("a ready node");
                    assert_eq!(worked.state, Some(NodeState::Succeeded));
                    assert_eq!(worked.run, id);
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, diamond);
criterion_main!(benches);
