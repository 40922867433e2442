//! What a breaker tells its observers: every transition in generation
//! order, transitions it can no longer tell, and the backend lost and found.

use tokio::sync::broadcast;

use crate::spi::Transition;

/// One thing a breaker observed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// A transition of the shared breaker (each told once, in generation
    /// order).
    Transition(Transition),
    /// The backend no longer keeps some transitions after generation
    /// `after`, the last one told (it keeps the last 16): they happened,
    /// and were not told. Only then: a reply to an older call, answered
    /// after a newer one told what the backend has since dropped, tells no
    /// gap. Also when the breaker's record was lost and born again (on
    /// Redis: unused for a day, or a restart without persistence): what
    /// the lost one did after `after` cannot be told; the transitions of
    /// the new record follow (their generations may be below `after`, the
    /// new record's being drawn on its own), and the breaker follows it.
    Missed {
        /// The last generation told before the gap.
        after: u64,
    },
    /// The backend became unreachable: the breaker's unreachable policy
    /// applies.
    Unreachable {
        /// What failed.
        error: String,
    },
    /// The backend answered again: the shared state decides again.
    Reachable,
    /// This receiver fell behind and lost `n` events.
    Lagged(u64),
}

/// A stream of a breaker's [`BreakerEvent`]s, from the moment it was made.
#[derive(Debug)]
pub struct BreakerEvents {
    rx: broadcast::Receiver<BreakerEvent>,
}

impl BreakerEvents {
    pub(crate) fn new(rx: broadcast::Receiver<BreakerEvent>) -> BreakerEvents {
        BreakerEvents { rx }
    }

    /// The next event; `None` once every handle on the breaker is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn next(&mut self) -> Option<BreakerEvent> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(BreakerEvent::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
