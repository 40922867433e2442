//! A lock family without its optional calls: the in-memory store behind a
//! decorator that says it has no `downgrade`, `multi_permit`, `inspect` or
//! `force_release` (and passes every call on, so that one the client made
//! anyway would succeed and be counted). The client refuses each with
//! `NotSupported` before any I/O, and a refused downgrade leaves the guard
//! as it was.
//!
//! `cargo test -p coord-conformance --test hidden_capabilities`

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use coord_api::{
    Client, Error, Namespace, Result,
    spi::{Call, Dispatch, Dispatched, Families, Reply},
};
use coord_memory::MemoryStore;

#[derive(Debug)]
struct Without {
    inner: coord_api::spi::DynBackend,
    /// Every SPI method the client called.
    called: Arc<Mutex<Vec<&'static str>>>,
}

impl fmt::Display for Without {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Without({})", self.inner)
    }
}

#[async_trait]
impl Dispatch for Without {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn families(&self) -> Families {
        let mut families = Families::of(&*self.inner);
        if let Some(locks) = families.locks.as_mut() {
            locks.downgrade = false;
            locks.multi_permit = false;
            locks.inspect = false;
            locks.force_release = false;
        }
        families
    }
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        self.called.lock().unwrap().push(call.op().name);
        call.run(self.inner.clone()).await
    }
}

#[track_caller]
fn unsupported<T: fmt::Debug>(res: Result<T>, what: &str) {
    assert!(
        matches!(res, Err(Error::NotSupported { .. })),
        "{what}: expected NotSupported, got {res:?}"
    );
}

#[tokio::test]
async fn optional_lock_calls_are_refused_without_their_capability() {
    let store = MemoryStore::default();
    let called = Arc::new(Mutex::new(Vec::new()));
    let without = Without {
        inner: Arc::new(store.backend(Namespace::default())),
        called: called.clone(),
    };
    let client = Client::builder(Arc::new(Dispatched::new(without))).build();
    let rw = client.rwlock("k");
    let mut writer = rw.try_write().await.unwrap().expect("the writer");
    unsupported(writer.downgrade().await, "a downgrade");
    assert!(
        writer.is_held(),
        "the refused downgrade left the writer as it was"
    );
    let semaphore = client.semaphore("s", 3);
    unsupported(semaphore.try_acquire_many(2).await, "two permits at once");
    unsupported(client.lock("l").holders().await, "a lock's holders");
    unsupported(rw.holders().await, "a read-write lock's holders");
    unsupported(semaphore.holders().await, "a semaphore's holders");
    unsupported(
        client.lock("l").force_release().await,
        "a lock's force release",
    );
    unsupported(
        rw.force_release().await,
        "a read-write lock's force release",
    );
    unsupported(
        semaphore.force_release().await,
        "a semaphore's force release",
    );
    let asked = called.lock().unwrap().clone();
    for op in ["downgrade", "inspect", "force_release"] {
        assert!(!asked.contains(&op), "the client asked for {op}: {asked:?}");
    }
    assert!(writer.release().await.unwrap());
}
