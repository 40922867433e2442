//! Fencing tokens of the in-memory store's lock family across a store created
//! anew (a restart that lost every counter): every grant floors its token at
//! the server's wall clock, so the new store's tokens start above the old
//! one's.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use coord_api::{
    Clock, HolderId, InstanceId, Instant, Key, LeaseKind, Namespace, Sleep, TokioClock,
    spi::{Acquire, LeaseId, LockBackend, Release},
};
use coord_memory::MemoryStore;

/// Tokio's monotonic clock with a wall clock that stands still.
#[derive(Debug)]
struct Wall(SystemTime);

impl Clock for Wall {
    fn now(&self) -> Instant {
        TokioClock.now()
    }
    fn wall(&self) -> SystemTime {
        self.0
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        TokioClock.sleep_until(deadline)
    }
}

/// Grants and releases the lock `k` `n` times on a store created when the
/// wall clock read `wall`; returns the tokens.
async fn tokens(wall: SystemTime, n: usize) -> Vec<u64> {
    let store = MemoryStore::with_clock(Arc::new(Wall(wall)));
    let backend = store.backend(Namespace::default());
    let instance = InstanceId::new("t").unwrap();
    let mut tokens = Vec::new();
    for _ in 0..n {
        let id = LeaseId {
            kind: LeaseKind::Exclusive,
            key: Key::new("k").unwrap(),
            holder: HolderId::new(instance),
        };
        let Acquire::Granted(grant) = backend.acquire(&id, Duration::from_secs(1)).await.unwrap()
        else {
            panic!("free");
        };
        tokens.push(grant.token.get());
        let released = backend.release(&id).await.unwrap();
        assert_eq!(released, Release::Released { remaining: 0 });
    }
    tokens
}

/// Time stands still (paused), so the wall clock only moves between stores.
#[tokio::test(start_paused = true)]
async fn a_store_created_later_starts_above_the_tokens_of_the_one_before() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let t0_us = 1_700_000_000_000_000;
    let before = tokens(t0, 100).await;
    assert!(before[0] >= t0_us, "floored at the wall clock");
    assert!(before.windows(2).all(|w| w[0] < w[1]), "{before:?}");
    // Created a millisecond later: more microseconds than grants before.
    let after = tokens(t0 + Duration::from_millis(1), 1).await;
    assert!(
        after[0] > *before.last().unwrap(),
        "{} after {}",
        after[0],
        before.last().unwrap()
    );
}
