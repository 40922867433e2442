//! Auto-extension without a task per lease: each client keeps one timer
//! queue of the leases it renews and one task that sleeps until the earliest
//! renewal is due, then renews what is due (each renewal its own short task,
//! so a slow backend call does not delay the others). A lease is put on the
//! queue when granted and taken off when released, which costs two map
//! operations instead of a task spawn, a timer and an abort per lock.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use tokio::sync::Notify;

use crate::{Clock, clock::Instant, lease::LeaseShared};

/// A client's renewal queue.
pub(crate) struct Renewals {
    shared: Arc<Shared>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Wakes the task when a renewal earlier than all others is queued.
    earlier: Notify,
}

#[derive(Default)]
struct State {
    due: BTreeMap<Slot, Weak<LeaseShared>>,
    next_id: u64,
    /// Whether the queue's task is alive.
    running: bool,
    /// When the task looks at the queue next by itself (the earliest
    /// renewal, or the end of its idle wait): a lease due no earlier needs
    /// no wake-up, which keeps a lock + release from waking the task.
    wake_at: Option<Instant>,
}

/// A place in the queue, to take a lease off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Slot(Instant, u64);

/// How long the task lingers with nothing queued before it ends.
const IDLE: Duration = Duration::from_secs(1);

impl Renewals {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Renewals {
        Renewals {
            shared: Arc::new(Shared {
                clock,
                state: Mutex::default(),
                earlier: Notify::new(),
            }),
        }
    }

    /// Queues `lease` for renewal at `at`. `None` without a runtime to renew
    /// on (the lease then lapses at its TTL).
    pub(crate) fn schedule(&self, at: Instant, lease: Weak<LeaseShared>) -> Option<Slot> {
        let mut st = self.shared.state();
        let slot = Slot(at, st.next_id);
        st.next_id += 1;
        let earliest = st.due.keys().next().is_none_or(|first| slot < *first);
        if !st.running {
            let handle = tokio::runtime::Handle::try_current().ok()?;
            st.running = true;
            drop(handle.spawn(run(Arc::downgrade(&self.shared))));
        } else if earliest && st.wake_at.is_none_or(|w| at < w) {
            self.shared.earlier.notify_one();
        }
        st.due.insert(slot, lease);
        Some(slot)
    }

    /// Takes a lease off the queue.
    pub(crate) fn cancel(&self, slot: Slot) {
        self.shared.state().due.remove(&slot);
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn run(weak: Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let (next, wake_at) = {
            let mut st = shared.state();
            let next = st.due.keys().next().map(|s| s.0);
            let wake_at = next.unwrap_or_else(|| shared.clock.now() + IDLE);
            st.wake_at = Some(wake_at);
            (next, wake_at)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    biased;
                    _ = shared.earlier.notified() => continue,
                    _ = shared.clock.sleep_until(at) => {}
                }
            }
            None => {
                tokio::select! {
                    biased;
                    _ = shared.earlier.notified() => continue,
                    _ = shared.clock.sleep_until(wake_at) => {
                        let mut st = shared.state();
                        if st.due.is_empty() {
                            st.running = false;
                            st.wake_at = None;
                            return;
                        }
                        continue;
                    }
                }
            }
        }
        let now = shared.clock.now();
        let due: Vec<Weak<LeaseShared>> = {
            let mut st = shared.state();
            let later = st.due.split_off(&Slot(now, u64::MAX));
            std::mem::replace(&mut st.due, later)
                .into_values()
                .collect()
        };
        for lease in due.iter().filter_map(Weak::upgrade) {
            drop(tokio::spawn(LeaseShared::renew(lease)));
        }
    }
}
