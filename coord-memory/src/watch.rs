//! Notifications: a version channel per watched key, bumped on release; a
//! watch also wakes at the key's next expiry instant, so waiters learn of an
//! expiry when it happens, not on the next access.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use coord_api::{Instant, LeaseWatch, Result};
use dashmap::DashMap;
use tokio::sync::watch;

use crate::{MemoryStore, table::TableKey};

/// The watched keys of a store (lease keys by default).
pub(crate) struct Watchers<K = TableKey> {
    channels: DashMap<K, watch::Sender<()>, foldhash::fast::RandomState>,
    /// Live watches; lets a release skip the map when nobody waits anywhere.
    live: AtomicUsize,
}

impl<K: std::hash::Hash + Eq + Clone> Default for Watchers<K> {
    fn default() -> Self {
        Watchers {
            channels: DashMap::with_hasher(Default::default()),
            live: AtomicUsize::new(0),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Watchers<K> {
    /// Whether any watch is live (on any key): when not, a change needs no
    /// notification and its caller need not even build the key.
    pub(crate) fn any(&self) -> bool {
        self.live.load(Ordering::SeqCst) != 0
    }

    /// Wakes every watcher of `key`.
    pub(crate) fn notify(&self, key: &K) {
        if !self.any() {
            return;
        }
        if let Some(tx) = self.channels.get(key) {
            tx.send_replace(());
        }
    }

    pub(crate) fn subscribe(&self, key: &K) -> watch::Receiver<()> {
        // Counted before the receiver exists, so a release never skips the
        // map while a watcher of its key is registered.
        self.live.fetch_add(1, Ordering::SeqCst);
        self.channels
            .entry(key.clone())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    pub(crate) fn forget_if_unwatched(&self, key: &K) {
        self.channels
            .remove_if(key, |_, tx| tx.receiver_count() == 0);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) struct MemoryWatch {
    store: MemoryStore,
    key: TableKey,
    rx: Option<watch::Receiver<()>>,
    /// When the subscription was made or `changed` last returned: expiries
    /// up to then are told already (or were before the subscription, which
    /// the subscriber's next look at the key sees).
    since: Instant,
}

impl MemoryWatch {
    pub(crate) fn new(store: MemoryStore, key: TableKey) -> MemoryWatch {
        let rx = store.inner.watchers.subscribe(&key);
        let since = store.inner.clock.now();
        MemoryWatch {
            store,
            key,
            rx: Some(rx),
            since,
        }
    }
}

#[async_trait]
impl LeaseWatch for MemoryWatch {
    async fn changed(&mut self) -> Result<()> {
        // An expiry is told once: an expired entry stays in the table until
        // the key's next operation, and a watcher that only looks (a lost
        // signal) must not be woken by it again and again.
        let expiry = self.store.inner.table.next_expiry(&self.key, self.since);
        #[cfg(feature = "broken")]
        let expiry = expiry.filter(|_| !self.store.inner.table.has_bug(crate::Bug::NoExpiryWake));
        let clock = self.store.inner.clock.clone();
        let rx = self.rx.as_mut().expect("present until drop");
        match expiry {
            Some(at) => {
                tokio::select! {
                    biased;
                    _ = rx.changed() => {}
                    _ = clock.sleep_until(at) => {}
                }
            }
            None => {
                // The sender lives as long as the store's entry for this key,
                // which outlives every receiver.
                let _ = rx.changed().await;
            }
        }
        self.since = clock.now();
        Ok(())
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.store.inner.watchers.forget_if_unwatched(&self.key);
    }
}
