//! Notifications: a version channel per watched topic (a lock's key, an
//! election, a group, a run, a barrier, a latch, a graph's ready nodes, a
//! graph's run, a work queue), bumped on every change that may let a waiter
//! in; a watch also wakes at the topic's next expiry instant, so waiters
//! learn of an expiry when it happens, not on the next access (except a
//! graph's and a queue's, whose deadlines pass without a wake-up by the
//! families' rules).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use coord_api::{
    Instant, Key, Namespace, Result,
    spi::{BarrierKind, Watch},
};
use dashmap::DashMap;
use tokio::sync::watch;

use crate::{MemoryStore, table::TableKey};

/// What a watch is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    /// A key of the lock family.
    Lock(TableKey),
    /// An election.
    Election(Namespace, Key),
    /// A membership group.
    Group(Namespace, Key),
    /// An occurrence of a run-once job.
    Run(Namespace, Key, Key),
    /// A barrier: the ends of its generations, a double barrier's entry.
    Barrier(Namespace, BarrierKind, Key),
    /// A latch: its settings and its reaching zero.
    Latch(Namespace, Key),
    /// A job graph: a node of any of its runs made ready.
    GraphReady(Namespace, Key),
    /// A run of a job graph (graph, run): a transition of its nodes.
    GraphRun(Namespace, Key, Key),
    /// A work queue: an item of it made ready.
    Queue(Namespace, Key),
    /// A topic's durable stream: an event published.
    Events(Namespace, Key),
    /// A space of shared values: a change logged.
    State(Namespace, Key),
    /// A circuit breaker: a transition.
    Breaker(Namespace, Key),
}

/// The watched topics of a store.
pub(crate) struct Watchers {
    channels: DashMap<Topic, watch::Sender<()>, foldhash::fast::RandomState>,
    /// Live watches; lets a change skip the map when nobody waits anywhere.
    live: AtomicUsize,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            channels: DashMap::with_hasher(Default::default()),
            live: AtomicUsize::new(0),
        }
    }
}

impl Watchers {
    /// Whether any watch is live (on any topic): when not, a change needs no
    /// notification and its caller need not even build the topic.
    pub(crate) fn any(&self) -> bool {
        self.live.load(Ordering::SeqCst) != 0
    }

    /// Wakes every watcher of `topic`.
    pub(crate) fn notify(&self, topic: &Topic) {
        if !self.any() {
            return;
        }
        if let Some(tx) = self.channels.get(topic) {
            tx.send_replace(());
        }
    }

    fn subscribe(&self, topic: &Topic) -> watch::Receiver<()> {
        // Counted before the receiver exists, so a change never skips the
        // map while a watcher of its topic is registered.
        self.live.fetch_add(1, Ordering::SeqCst);
        self.channels
            .entry(topic.clone())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    fn forget_if_unwatched(&self, topic: &Topic) {
        self.channels
            .remove_if(topic, |_, tx| tx.receiver_count() == 0);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A watch on one topic of a store.
pub(crate) struct MemoryWatch {
    store: MemoryStore,
    topic: Topic,
    rx: Option<watch::Receiver<()>>,
    /// When the subscription was made or `changed` last returned: expiries
    /// up to then are told already (or were before the subscription, which
    /// the subscriber's next look sees).
    since: Instant,
}

impl MemoryWatch {
    pub(crate) fn new(store: MemoryStore, topic: Topic) -> MemoryWatch {
        let rx = store.inner.watchers.subscribe(&topic);
        let since = store.inner.clock.now();
        MemoryWatch {
            store,
            topic,
            rx: Some(rx),
            since,
        }
    }
}

#[async_trait]
impl Watch for MemoryWatch {
    async fn changed(&mut self) -> Result<()> {
        // An expiry is told once: an expired entry stays until the topic's
        // next operation, and a watcher that only looks (a lost signal) must
        // not be woken by it again and again.
        let expiry = self.store.next_expiry(&self.topic, self.since);
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
                // The sender lives as long as the store's entry for this
                // topic, which outlives every receiver.
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
        self.store.inner.watchers.forget_if_unwatched(&self.topic);
    }
}
