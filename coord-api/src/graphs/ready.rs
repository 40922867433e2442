//! The ready wake-ups the workers of one [`Graph`](super::Graph) (and of
//! its clones) share: one [`watch_ready`](crate::spi::GraphBackend::watch_ready)
//! watch, awaited by one idle worker at a time, and a hand-on that wakes one
//! more.
//!
//! A notification wakes the one idle worker awaiting the watch (the others
//! wait their turn on it, or on the hand-on). A woken worker takes; when it
//! got a node, more may be ready (a step can make several ready with one
//! notification), so it wakes one more idle worker, which does the same:
//! a chain that ends with the first take that finds nothing. A step that
//! made `k` nodes ready thus costs `k` takes and one that finds nothing,
//! whatever the number of idle workers, where a watch per worker cost one
//! take per idle worker. Busy workers hold no part of it: a notification
//! that comes while every worker is busy stays pending on the watch
//! (every backend's watch keeps one), and a hand-on given while no worker
//! waits stays pending too (one, as `Notify` keeps one permit): the first
//! worker to wait again is woken by it at once. Without that, a worker
//! between a take that found nothing and its wait, when another took the
//! notification and a node, slept to its deadline with a node ready; the
//! price is at most one take that finds nothing when the pool drains.
//!
//! Every wake-up stays a hint (rule 3 of the SPI): a chain broken by a
//! worker that was dropped after it was woken hands on from its drop; one
//! broken otherwise (a lost notification, a process killed) only delays,
//! since every idle worker also wakes at its own deadline (the time the
//! last take said a node may become takeable, or the retry delay).

use std::sync::Arc;

use tokio::sync::{Mutex, Notify};

use crate::{Client, Key, Watch, clock::Instant};

/// The shared wake-ups of a graph's workers in one process.
#[derive(Default)]
pub(crate) struct Ready {
    /// The graph's ready watch, once made (by the first worker that found
    /// nothing to take); `None` before, or after it failed.
    watch: Mutex<Option<Box<dyn Watch>>>,
    /// Wakes one idle worker (or the next to wait): handed on by a woken
    /// worker that took a node.
    hand_on: Notify,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").finish_non_exhaustive()
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// By the watch or a hand-on: a node may be ready.
    Notified,
    /// At the deadline.
    Deadline,
}

/// What a woken worker owes the others: one hand-on, given when it is
/// dropped (its take got a node, failed, or was dropped) unless
/// [`settled`](Self::settled) (its take found nothing: the chain ends).
pub(crate) struct Owed(Arc<Ready>);

impl Owed {
    /// The take found nothing: nobody else needs waking.
    pub(crate) fn settled(self) {
        std::mem::forget(self);
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.0.hand_on.notify_one();
    }
}

impl Ready {
    /// Whether the watch is made.
    pub(crate) fn is_watched(&self) -> bool {
        // A worker awaiting the watch holds the lock: it is made.
        self.watch.try_lock().map_or(true, |w| w.is_some())
    }

    /// Makes the watch if it is not; `true` when this call made it (the
    /// caller then looks again: a node made ready before it was effective
    /// is not missed). A watch that cannot be made is left out: workers
    /// then wait for their deadlines, and the next wait tries again.
    pub(crate) async fn watch(&self, client: &Client, graph: &Key) -> bool {
        let mut w = self.watch.lock().await;
        if w.is_some() {
            return false;
        }
        let Ok(graphs) = client.graphs() else {
            return false;
        };
        let site = || crate::trace::Site::new(("graph", "node", "watch_ready"), graph, None, None);
        let watch = graphs.watch_ready(graph);
        *w = (crate::trace::call(client, site, watch, crate::trace::Outcome::ok).await).ok();
        w.is_some()
    }

    /// Waits until a notification, a hand-on, `until` or the client is
    /// closed.
    pub(crate) async fn wait(&self, client: &Client, until: Instant) -> Woken {
        let watched = async {
            let mut w = self.watch.lock().await;
            match w.as_mut() {
                Some(watch) => {
                    if watch.changed().await.is_err() {
                        *w = None;
                    }
                }
                None => {
                    drop(w);
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            biased;
            _ = self.hand_on.notified() => Woken::Notified,
            _ = watched => Woken::Notified,
            _ = client.clock().sleep_until(until) => Woken::Deadline,
            // Closed: the next take answers `Error::Closed`.
            () = client.until_closed() => Woken::Deadline,
        }
    }

    /// What a worker woken by [`wait`](Self::wait) owes: a hand-on unless
    /// its take finds nothing.
    pub(crate) fn owed(self: &Arc<Self>) -> Owed {
        Owed(self.clone())
    }
}
