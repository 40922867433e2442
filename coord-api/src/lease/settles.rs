//! The settles of one presence's deliveries on their way (queues and
//! topics, decision 0060): what a settle asked, recorded before it goes
//! out (decision 0052), counted until its delivery's lease ends (answered,
//! or sent again by the lease's release); and the wait of the presence's
//! end for them, so that its leave, which gives back every delivery of the
//! presence, does not overtake an ack and give back the item it settled.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

use super::wait::later;
use crate::clock::Clock;

/// The settles of one presence's deliveries on their way.
#[derive(Debug, Default)]
pub(crate) struct Settles {
    on_their_way: AtomicUsize,
    none_left: Notify,
}

impl Settles {
    /// Waits until no settle is on its way, for at most `within` (past the
    /// presence's TTL, its end gives the deliveries back anyway).
    pub(crate) async fn drained(&self, clock: &dyn Clock, within: Duration) {
        let until = later(clock.now(), within);
        loop {
            let none_left = self.none_left.notified();
            tokio::pin!(none_left);
            none_left.as_mut().enable();
            if self.on_their_way.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::select! {
                () = none_left => {}
                () = clock.sleep_until(until) => return,
            }
        }
    }

    /// How many are on their way.
    #[cfg(test)]
    pub(crate) fn on_their_way(&self) -> usize {
        self.on_their_way.load(Ordering::SeqCst)
    }
}

/// One settle on its way: counted until dropped.
#[derive(Debug)]
struct OnItsWay(Arc<Settles>);

impl Drop for OnItsWay {
    fn drop(&mut self) {
        if self.0.on_their_way.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// What a settle of one delivery asked (`S`, the family's settle), shared
/// by the delivery's receipt, which records it before the settle goes out,
/// and its lease, whose release sends it again when the settle was
/// cancelled or failed without an answer. Counted on its way among its
/// presence's [`Settles`] until both are gone: the settle answered, or
/// the release that sent it again done.
#[derive(Debug)]
pub(crate) struct Asked<S> {
    asked: OnceLock<(S, OnItsWay)>,
    settles: Arc<Settles>,
}

impl<S> Asked<S> {
    /// Nothing asked yet, for a delivery of the presence whose settles are
    /// `settles`.
    pub(crate) fn new(settles: &Arc<Settles>) -> Arc<Asked<S>> {
        Arc::new(Asked {
            asked: OnceLock::new(),
            settles: Arc::clone(settles),
        })
    }

    /// Records `settle` before it goes out; only the first counts.
    pub(crate) fn ask(&self, settle: S) {
        let mut settle = Some(settle);
        self.asked.get_or_init(|| {
            let settle = settle.take().expect("initialised once");
            self.settles.on_their_way.fetch_add(1, Ordering::SeqCst);
            (settle, OnItsWay(Arc::clone(&self.settles)))
        });
    }

    /// What the settle asked, if one was begun.
    pub(crate) fn get(&self) -> Option<&S> {
        self.asked.get().map(|(settle, _)| settle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;

    #[tokio::test(start_paused = true)]
    async fn a_settle_counts_from_its_asking_until_its_delivery_is_gone() {
        let settles = Arc::new(Settles::default());
        let clock = TokioClock;
        let asked = Asked::new(&settles);
        let lease_side = Arc::clone(&asked);
        // Nothing asked: nothing to wait for.
        settles.drained(&clock, Duration::from_secs(60)).await;
        asked.ask("ack");
        asked.ask("nack");
        assert_eq!((asked.get(), settles.on_their_way()), (Some(&"ack"), 1));
        drop(asked);
        let mut drained = Box::pin(settles.drained(&clock, Duration::from_secs(60)));
        let waited = tokio::time::timeout(Duration::from_secs(1), drained.as_mut()).await;
        assert!(waited.is_err(), "still on its way");
        drop(lease_side);
        drained.await;
        assert_eq!(settles.on_their_way(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_gives_up_after_its_bound() {
        let settles = Arc::new(Settles::default());
        let clock = TokioClock;
        let asked = Asked::new(&settles);
        asked.ask(());
        let t0 = clock.now();
        settles.drained(&clock, Duration::from_secs(10)).await;
        assert_eq!(clock.now() - t0, Duration::from_secs(10));
        assert_eq!(settles.on_their_way(), 1);
    }
}
