//! Auto-extension without a task per lease: each client keeps one timer
//! queue of the leases it renews and one task that sleeps until the earliest
//! renewal is due, then renews what is due (each renewal its own short task,
//! so a slow backend call does not delay the others).
//!
//! A grant costs one push onto the queue under its lock. A release takes
//! its lease's entry off at once when it is the last one queued (a lock
//! taken and released with nothing granted in between, the usual case), and
//! lazily otherwise: each entry carries an id, and a lease remembers the id
//! of its one live entry ([`Queued`]); an entry whose id is no longer its
//! lease's is dead and skipped when it comes due. Dead entries are swept
//! once the queue has doubled since the last sweep, so leases released out
//! of order do not pile up either.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

use crate::{Clock, clock::Instant, lease::Lease};

/// A client's renewal queue.
pub(crate) struct Renewals {
    shared: Arc<Shared>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Wakes the task when a renewal earlier than all others is queued.
    earlier: Notify,
    /// How late confirmed renewals came, for health checks and metrics.
    lag: Mutex<Lag>,
}

/// The worst renewal lag of the current and the previous [`LAG_WINDOW`]
/// (so a report covers between one and two windows).
#[derive(Default)]
struct Lag {
    since: Option<Instant>,
    current: Option<RenewalLag>,
    previous: Option<RenewalLag>,
}

/// How long the lag tracker remembers the worst renewal.
const LAG_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// One confirmed renewal's lateness: from the instant it was due to the
/// backend's confirmation, against the lease's TTL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RenewalLag {
    pub(crate) lag: std::time::Duration,
    pub(crate) ttl: std::time::Duration,
}

impl RenewalLag {
    /// The lag as a share of the TTL.
    pub(crate) fn ratio(&self) -> f64 {
        self.lag.as_secs_f64() / self.ttl.as_secs_f64().max(1e-9)
    }
}

struct State {
    /// Sorted by `at`; leases with one TTL come in order, so a push is
    /// nearly always at the back.
    due: VecDeque<Due>,
    next_id: u64,
    /// The length at which the next sweep runs: twice the live entries the
    /// last one left, plus [`SLACK`].
    sweep_at: usize,
    /// Whether the queue's task is alive.
    running: bool,
    /// When the task looks at the queue next by itself (the earliest
    /// renewal, or the end of its idle wait): a lease due no earlier needs
    /// no wake-up, which keeps a lock + release from waking the task.
    wake_at: Option<Instant>,
}

struct Due {
    at: Instant,
    id: u64,
    lease: Weak<Lease>,
}

/// A lease's place in its client's renewal queue: the id of its live entry,
/// 0 when it has none.
#[derive(Debug, Default)]
pub(crate) struct Queued(AtomicU64);

impl Queued {
    /// Takes the lease's live entry, if it is `id`.
    fn take_if(&self, id: u64) -> bool {
        self.0
            .compare_exchange(id, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn is(&self, id: u64) -> bool {
        self.0.load(Ordering::Acquire) == id
    }

    /// The id of the lease's live entry, 0 when none.
    fn id(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// How long the task lingers with nothing queued before it ends.
const IDLE: Duration = Duration::from_secs(1);
/// Dead entries tolerated beyond twice the live ones before a sweep. Small: each
/// dead entry keeps its lease's allocation, and freeing a few at a time stays
/// within the allocator's per-thread cache.
const SLACK: usize = 4;

impl Renewals {
    /// Takes the lease `queued` belongs to off the queue: its entry is
    /// removed at once when it is the last one queued, and dies where it is
    /// otherwise. Racing a `schedule` of the same lease (a renewal that ends
    /// as the lease does), the entry may stay live; its renewal then finds
    /// the lease ended and does nothing.
    pub(crate) fn unqueue(&self, queued: &Queued) {
        let id = queued.id();
        if id == 0 {
            return;
        }
        let mut st = self.shared.state();
        let last = match st.due.back() {
            Some(d) if d.id == id => st.due.pop_back(),
            _ => None,
        };
        queued.0.store(0, Ordering::Release);
        drop(st);
        // The entry's reference to its lease goes once the lock is free.
        drop(last);
    }

    pub(crate) fn new(clock: Arc<dyn Clock>) -> Renewals {
        Renewals {
            shared: Arc::new(Shared {
                clock,
                state: Mutex::new(State {
                    due: VecDeque::new(),
                    next_id: 1,
                    sweep_at: SLACK + 1,
                    running: false,
                    wake_at: None,
                }),
                earlier: Notify::new(),
                lag: Mutex::new(Lag::default()),
            }),
        }
    }

    /// Notes a confirmed renewal that was due `lag` ago, of a lease of
    /// `ttl`; reported as the `coord_renewal_lag_seconds` histogram.
    pub(crate) fn note_lag(&self, lag: std::time::Duration, ttl: std::time::Duration) {
        metrics::histogram!("coord_renewal_lag_seconds").record(lag.as_secs_f64());
        let now = self.shared.clock.now();
        let seen = RenewalLag { lag, ttl };
        let mut l = self.shared.lag.lock().unwrap_or_else(|p| p.into_inner());
        if l.since.is_none_or(|s| now >= s + LAG_WINDOW) {
            l.previous = l.current.take();
            l.since = Some(now);
        }
        if l.current.is_none_or(|c| seen.ratio() > c.ratio()) {
            l.current = Some(seen);
        }
    }

    /// The worst renewal lag (against its TTL) of the last one to two
    /// minutes, if any renewal was confirmed.
    pub(crate) fn worst_lag(&self) -> Option<RenewalLag> {
        let now = self.shared.clock.now();
        let l = self.shared.lag.lock().unwrap_or_else(|p| p.into_inner());
        let stale = l.since.is_none_or(|s| now >= s + 2 * LAG_WINDOW);
        if stale {
            return None;
        }
        let fresh = l.since.is_some_and(|s| now < s + LAG_WINDOW);
        let current = if fresh { l.current } else { None };
        [current, l.previous, if fresh { None } else { l.current }]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.ratio().total_cmp(&b.ratio()))
    }

    /// Queues `lease` for renewal at `at`, replacing its earlier place if
    /// any. Returns false without a runtime to renew on (the lease then
    /// lapses at its TTL).
    pub(crate) fn schedule(&self, at: Instant, lease: &Arc<Lease>) -> bool {
        let mut st = self.shared.state();
        let earliest = st.due.front().is_none_or(|first| at < first.at);
        if !st.running {
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return false;
            };
            st.running = true;
            drop(handle.spawn(run(Arc::downgrade(&self.shared))));
        } else if earliest && st.wake_at.is_none_or(|w| at < w) {
            self.shared.earlier.notify_one();
        }
        let id = st.next_id;
        st.next_id += 1;
        let due = Due {
            at,
            id,
            lease: Arc::downgrade(lease),
        };
        match st.due.back() {
            Some(last) if last.at > at => {
                let pos = st.due.partition_point(|d| d.at <= at);
                st.due.insert(pos, due);
            }
            _ => st.due.push_back(due),
        }
        // Written under the queue's lock only (`Queued::clear` and the
        // task's claim write 0 without it): a plain store.
        lease.queued().0.store(id, Ordering::Release);
        if st.due.len() >= st.sweep_at {
            let swept = sweep(&mut st);
            st.sweep_at = 2 * st.due.len() + SLACK + 1;
            drop(st);
            drop(swept);
        }
        true
    }
}

/// Drops the dead entries. Returns the leases it looked at, to be dropped
/// once the queue's lock is released (a lease's drop may free its client
/// and the allocation: work the lock need not wait for).
fn sweep(st: &mut State) -> Vec<Arc<Lease>> {
    let mut seen = Vec::new();
    st.due.retain(|d| {
        // Most dead entries are of leases already gone: no upgrade needed.
        if d.lease.strong_count() == 0 {
            return false;
        }
        match d.lease.upgrade() {
            Some(lease) => {
                let live = lease.queued().is(d.id);
                seen.push(lease);
                live
            }
            None => false,
        }
    });
    seen
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
            let next = st.due.front().map(|d| d.at);
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
        let mut due = Vec::new();
        {
            let mut st = shared.state();
            while st.due.front().is_some_and(|d| d.at <= now) {
                due.extend(st.due.pop_front());
            }
        }
        for d in due {
            let Some(lease) = d.lease.upgrade() else {
                continue;
            };
            // A dead entry (the lease was released or rescheduled) is skipped.
            if lease.queued().take_if(d.id) {
                drop(tokio::spawn(Lease::renew(lease, d.at)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Client,
        testing::{Counting, take},
    };

    fn queue_len(client: &Client) -> usize {
        client.renewals().shared.state().due.len()
    }

    #[tokio::test(start_paused = true)]
    async fn released_leases_leave_the_queue_and_are_never_renewed() {
        let backend = Arc::new(Counting::default());
        let client = Client::new(backend.clone());
        for _ in 0..10_000 {
            assert!(take(&client, "k").await.release().await.unwrap());
        }
        // Dead entries are swept as they pile up: the queue stays small. (A
        // sweep runs as a lease is queued and keeps that one, live then: the
        // next runs at twice one, plus SLACK.)
        assert!(queue_len(&client) <= 2 + SLACK, "{}", queue_len(&client));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(backend.extends(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_lease_among_released_ones_keeps_being_renewed() {
        let backend = Arc::new(Counting::default());
        let client = Client::new(backend.clone());
        let held = take(&client, "held").await;
        for _ in 0..1_000 {
            assert!(take(&client, "churn").await.release().await.unwrap());
        }
        // Renewed every TTL/3 = 1 s: about 30 times in 30 s, each a fresh entry.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let extends = backend.extends();
        assert!((29..=31).contains(&extends), "{extends}");
        assert!(held.is_held());
        assert!(queue_len(&client) <= 2 + SLACK, "{}", queue_len(&client));
        assert!(held.release().await.unwrap());
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(backend.extends(), extends);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_guard_stops_renewal() {
        let backend = Arc::new(Counting::default());
        let client = Client::new(backend.clone());
        let guard = take(&client, "k").await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let before = backend.extends();
        assert_eq!(before, 2);
        drop(guard);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(backend.extends(), before);
    }
}
