//! Which clock a client on the in-memory backend measures local validity by:
//! the backend's own, when they are one clock (one read per grant serves
//! both, and the lease is valid exactly while the backend holds it), and its
//! own otherwise.

mod common;

use std::{sync::Arc, time::Duration};

use coord_api::{Client, Clock, Instant, Namespace, SkewedClock, TokioClock};
use coord_memory::MemoryStore;

use common::Counted;

#[tokio::test(start_paused = true)]
async fn a_client_on_the_backends_clock_takes_the_grant_instant_as_its_own() {
    let clock = Arc::new(Counted::default());
    let store = MemoryStore::with_clock(clock.clone());
    let backend = Arc::new(store.backend(Namespace::default()));
    let client = Client::builder(backend).clock(clock.clone()).build();
    let lock = client.lock("k").auto_extend(false);
    let ttl = lock.options().ttl;

    let before = clock.reads();
    let guard = lock.try_lock().await.unwrap().expect("free");
    assert_eq!(clock.reads() - before, 1, "the backend's read serves both");
    // The backend's own expiry, with no drift margin: one clock decides both.
    assert_eq!(guard.valid_until(), Some(Instant::now() + ttl));

    let before = clock.reads();
    assert!(guard.release().await.unwrap());
    assert_eq!(clock.reads() - before, 1, "the backend's expiry check");
}

#[tokio::test(start_paused = true)]
async fn a_client_on_another_clock_measures_validity_by_its_own() {
    let store = MemoryStore::new();
    let backend = Arc::new(store.backend(Namespace::default()));
    // A minute ahead of the backend: validity counted from the backend's
    // instant would have run out already by this client's clock.
    let ahead = Arc::new(SkewedClock::new(TokioClock, 60_000_000_000, 0.0));
    let client = Client::builder(backend).clock(ahead.clone()).build();
    let lock = client.lock("k").ttl(Duration::from_secs(30));
    let validity = lock.options().local_validity(lock.options().ttl);

    let guard = lock.try_lock().await.unwrap().expect("free");
    assert_eq!(guard.valid_until(), Some(ahead.now() + validity));
    assert!(guard.is_held());
    assert!(guard.release().await.unwrap());
}
