//! In-memory, uncontended: a multi-lock of three keys taken and released
//! through coord's client type, in one backend step (`acquire_all`: the
//! shards of the three keys locked at once), one lock at a time (the
//! fallback of a backend without that step, here the same store behind a
//! decorator hiding it), and, for scale, three single `Lock::try_lock`s
//! and releases in a row. Auto-extension on (the default) throughout.
//!
//! `cargo bench -p coord-benches --bench multi_lock`

use std::{fmt, hint::black_box, sync::Arc};

use async_trait::async_trait;
use coord::{
    Client, Namespace, Result,
    memory::MemoryBackend,
    spi::{Call, Dispatch, Dispatched, DynBackend, Families, Reply},
};
use criterion::{Criterion, criterion_group, criterion_main};

const KEYS: [&str; 3] = ["bench/a", "bench/b", "bench/c"];

/// The store without its `acquire_all` capability.
#[derive(Debug)]
struct OneByOne(DynBackend);

impl fmt::Display for OneByOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one-by-one({})", self.0)
    }
}

#[async_trait]
impl Dispatch for OneByOne {
    fn namespace(&self) -> &Namespace {
        self.0.namespace()
    }
    fn families(&self) -> Families {
        let mut families = Families::of(&*self.0);
        if let Some(locks) = families.locks.as_mut() {
            locks.acquire_all = false;
        }
        families
    }
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        call.run(self.0.clone()).await
    }
}

fn uncontended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store: DynBackend = Arc::new(MemoryBackend::new(Namespace::default()));
    let one_step = Client::new(store.clone());
    let one_by_one = Client::new(Arc::new(Dispatched::new(OneByOne(store))));

    let mut group = c.benchmark_group("uncontended 3 locks + release");
    for (name, client) in [
        ("multi_lock, one step", &one_step),
        ("multi_lock, one by one", &one_by_one),
    ] {
        let set = client.multi_lock(KEYS);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let guard = set.try_lock().await.unwrap().expect("uncontended");
                black_box(guard.token(KEYS[0]));
                assert!(guard.release().await.unwrap());
            })
        });
    }
    let locks = KEYS.map(|k| one_step.lock(k));
    group.bench_function("three Lock::try_lock", |b| {
        b.to_async(&rt).iter(|| async {
            let mut guards = Vec::with_capacity(3);
            for lock in &locks {
                guards.push(lock.try_lock().await.unwrap().expect("uncontended"));
            }
            for guard in guards {
                assert!(guard.release().await.unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
