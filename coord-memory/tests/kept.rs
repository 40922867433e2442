//! Leases the in-memory backend keeps for a client on its own clock: auto-
//! extension without renewals, lost signals from the backend's own state, and
//! a dropped guard released at once.

mod common;

use std::{sync::Arc, time::Duration};

use coord_api::{Client, Instant, Lock, Namespace, SkewedClock, TokioClock};
use coord_memory::{MemoryBackend, MemoryStore};

use common::Counted;

const TTL: Duration = Duration::from_millis(300);

/// Two clients on one store, the first on the store's clock.
fn clients() -> (Arc<Counted>, Client, Client) {
    let clock = Arc::new(Counted::default());
    let store = MemoryStore::with_clock(clock.clone());
    let backend = || Arc::new(store.backend(Namespace::default()));
    let a = Client::builder(backend()).clock(clock.clone()).build();
    let b = Client::builder(backend()).clock(clock.clone()).build();
    (clock, a, b)
}

/// An auto-extended lease stays held far past its TTL, and nothing renews
/// it: the clock is not read to grant it, while it is held or to release it,
/// and the backend reports it with its whole TTL left.
#[tokio::test(start_paused = true)]
async fn an_auto_extended_lease_is_kept_without_renewals() {
    let (clock, a, b) = clients();
    let reads = clock.reads();
    let guard = a.lock("k").ttl(TTL).try_lock().await.unwrap().unwrap();
    assert_eq!(clock.reads(), reads, "a kept grant needs no time");
    tokio::time::sleep(TTL * 10).await;
    assert_eq!(clock.reads(), reads, "no renewal");
    assert!(guard.is_held());
    assert_eq!(guard.valid_until(), Some(Instant::now() + TTL));
    assert!(b.lock("k").try_lock().await.unwrap().is_none());
    let holders = b.lock("k").holders().await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].expires_in, TTL);
    let reads = clock.reads();
    assert!(guard.release().await.unwrap());
    let released_reads = clock.reads() - reads;
    assert_eq!(released_reads, 0, "a kept lease cannot have expired");
    assert!(b.lock("k").try_lock().await.unwrap().is_some());
}

/// Without auto-extension the lease is the backend's for its TTL exactly.
#[tokio::test(start_paused = true)]
async fn a_lease_without_auto_extension_ends_at_its_ttl() {
    let (_, a, b) = clients();
    let lock = a.lock("k").ttl(TTL).auto_extend(false);
    let guard = lock.try_lock().await.unwrap().unwrap();
    let until = Instant::now() + TTL;
    assert_eq!(guard.valid_until(), Some(until));
    let lost = guard.lost_signal();
    tokio::time::timeout(TTL * 2, guard.lost())
        .await
        .expect("lost at the TTL");
    assert_eq!(Instant::now(), until, "lost exactly at the expiry");
    assert!(lost.is_lost());
    assert!(b.lock("k").try_lock().await.unwrap().is_some());
    assert!(!guard.release().await.unwrap(), "expired");
}

/// A force release ends a kept lease: its lost signals fire and its release
/// says it was no longer held.
#[tokio::test(start_paused = true)]
async fn a_force_release_ends_a_kept_lease() {
    let (_, a, b) = clients();
    let guard = a.lock("k").ttl(TTL).try_lock().await.unwrap().unwrap();
    let signal = guard.lost_signal();
    let waiting = tokio::spawn(async move { signal.wait().await });
    tokio::time::sleep(TTL * 5).await;
    assert!(!waiting.is_finished(), "held, kept past its TTL");
    assert_eq!(b.lock("k").force_release().await.unwrap(), 1);
    tokio::time::timeout(Duration::from_millis(10), waiting)
        .await
        .expect("the force release wakes the signal")
        .unwrap();
    assert!(!guard.is_held());
    assert!(!guard.release().await.unwrap());
}

/// A guard dropped where no runtime runs (its task's runtime shut down)
/// still frees the key at once: the in-process release needs none.
#[test]
fn a_guard_dropped_without_a_runtime_frees_the_key() {
    let backend = Arc::new(MemoryBackend::new(Namespace::default()));
    let client = Client::new(backend);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let guard = runtime()
        .block_on(client.lock("k").try_lock())
        .unwrap()
        .unwrap();
    drop(guard);
    let again = runtime().block_on(client.lock("k").try_lock()).unwrap();
    assert!(again.is_some(), "freed by the drop");
}

/// A lost signal woken by the guard's own release, in another task.
#[tokio::test(start_paused = true)]
async fn a_release_wakes_the_lost_signal() {
    let (_, a, _) = clients();
    let guard = a.lock("k").ttl(TTL).try_lock().await.unwrap().unwrap();
    let signal = guard.lost_signal();
    let waiting = tokio::spawn(async move { signal.wait().await });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    assert!(guard.release().await.unwrap());
    tokio::time::timeout(Duration::from_millis(1), waiting)
        .await
        .expect("the release wakes the signal")
        .unwrap();
}

/// A reentrant hold is not kept: its guards share one lease, which the
/// client renews (every TTL/3) and which otherwise expires.
#[tokio::test(start_paused = true)]
async fn a_reentrant_hold_is_renewed_not_kept() {
    let (_, a, _) = clients();
    assert_renewed_not_kept(a.lock("k").ttl(TTL).reentrant(true)).await;
}

/// A client given a clock of its own (the same time, another clock) renews
/// its lease as on a remote backend: a test of takeover after a stalled
/// holder needs that.
#[tokio::test(start_paused = true)]
async fn a_client_on_a_clock_of_its_own_renews_instead() {
    let store = MemoryStore::new();
    let own = Arc::new(SkewedClock::new(TokioClock, 0, 0.0));
    let backend = Arc::new(store.backend(Namespace::default()));
    let client = Client::builder(backend).clock(own).build();
    assert_renewed_not_kept(client.lock("k").ttl(TTL)).await;
}

/// Takes `lock` and checks that ten TTLs later it is still held because its
/// client renewed it (at a TTL/3 mark, so less than its TTL is left), not
/// because the store keeps it; then releases it.
async fn assert_renewed_not_kept(lock: Lock) {
    let guard = lock.try_lock().await.unwrap().unwrap();
    tokio::time::sleep(TTL * 10 + TTL / 6).await;
    assert!(guard.is_held(), "renewed");
    let left = lock.holders().await.unwrap()[0].expires_in;
    assert!(
        left < TTL,
        "renewed at a TTL/3 mark, not kept: {left:?} left"
    );
    assert!(guard.release().await.unwrap());
}

/// A lost signal on a kept lease does not spin when something else on its
/// key has expired but is still in the table (a writer's intent that ran
/// out, with nothing done on the key since): it is told of that expiry once.
/// Real time, two workers: a spinning waiter would never let paused time
/// advance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_signal_is_told_of_an_expiry_once() {
    const SHORT: Duration = Duration::from_millis(50);
    let (clock, a, b) = clients();
    let reader = a.rwlock("k").ttl(SHORT).try_read().await.unwrap().unwrap();
    // Refused: leaves a writer intent that lasts one TTL.
    assert!(
        b.rwlock("k")
            .ttl(SHORT)
            .try_write()
            .await
            .unwrap()
            .is_none()
    );
    let signal = reader.lost_signal();
    let waiting = tokio::spawn(async move { signal.wait().await });
    tokio::time::sleep(SHORT * 3).await;
    let uses = clock.uses();
    tokio::time::sleep(SHORT * 2).await;
    let spent = clock.uses() - uses;
    assert!(
        spent < 10,
        "{spent} clock reads and timers while nothing happened"
    );
    assert!(!waiting.is_finished(), "the reader still holds its lease");
    assert!(reader.release().await.unwrap());
    waiting.await.unwrap();
}
