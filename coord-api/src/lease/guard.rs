//! [`Guard`]: what every family's guard is made of (a lease it releases
//! when released or dropped).

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
};

use super::{Lease, LostSignal, may_not_have_arrived, spawn_background};
use crate::{HolderId, Key, Result, clock::Instant};

/// What every family's guard is made of: a lease it releases when released
/// or dropped (then in the background; if that cannot happen, the TTL frees
/// the lease).
pub(crate) struct Guard {
    lease: Arc<Lease>,
    released: bool,
    /// Once this guard let go of the lease: whether it was the last.
    last: Option<bool>,
}

impl Guard {
    pub(crate) fn new(lease: Arc<Lease>) -> Guard {
        lease.guards.fetch_add(1, Ordering::SeqCst);
        Guard {
            lease,
            released: false,
            last: None,
        }
    }

    /// Another guard of `lease` (a reentrant re-entry), if it still has a
    /// guard and is held: `None` once its last guard let go of it (its
    /// release, which ends it, may be on its way) or it ended (lost,
    /// released by a close). Joining and the last guard letting go are
    /// one atomic count, so a re-entry never joins a lease that is ending.
    pub(crate) fn joining(lease: Arc<Lease>) -> Option<Guard> {
        let count = |n: u32| (n > 0).then(|| n.saturating_add(1));
        (lease.guards)
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, count)
            .ok()?;
        let guard = Guard {
            lease,
            released: false,
            last: None,
        };
        if guard.is_held() {
            return Some(guard);
        }
        // Ended meanwhile: let go without releasing (the caller gives back
        // what the backend still counts).
        guard.into_lease();
        None
    }

    /// Lets go of the lease (once): whether that ends it, being its last
    /// guard or not a counted hold.
    fn let_go(&mut self) -> bool {
        let guards = &self.lease.guards;
        let last = *(self.last).get_or_insert_with(|| guards.fetch_sub(1, Ordering::SeqCst) == 1);
        last || !self.lease.tenure.counted()
    }

    pub(crate) fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// Takes the lease out of the guard without releasing it (the caller
    /// ends it another way).
    pub(crate) fn into_lease(mut self) -> Arc<Lease> {
        self.let_go();
        self.released = true;
        self.lease.clone()
    }

    pub(crate) fn key(&self) -> &Key {
        self.lease.tenure.key()
    }

    pub(crate) fn holder(&self) -> &HolderId {
        self.lease.tenure.holder()
    }

    pub(crate) fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    pub(crate) fn is_released(&self) -> bool {
        self.lease.is_released()
    }

    pub(crate) fn valid_until(&self) -> Option<Instant> {
        self.lease.valid_until()
    }

    pub(crate) async fn lost(&self) {
        self.lease.ended().await
    }

    pub(crate) fn lost_signal(&self) -> LostSignal {
        LostSignal::one(&self.lease)
    }

    pub(crate) async fn extend(&self) -> Result<bool> {
        self.lease.extend().await
    }

    /// Releases the lease (one hold of a counted one, every hold with its
    /// last guard). If cancelled, the release goes on in the background:
    /// the guard's drop sends it again (harmless twice, except for a
    /// counted hold that leaves other guards, which is not repeated). One
    /// that fails without reaching the backend is sent again in the
    /// background, as a dropped guard's is; the error is still returned.
    pub(crate) async fn release(mut self) -> Result<bool> {
        let ends = self.let_go();
        self.released = !ends;
        let res = self.lease.release(ends).await;
        self.released = true;
        if ends && res.as_ref().is_err_and(may_not_have_arrived) {
            spawn_background(self.lease.clone().release_again());
        }
        res
    }
}

impl Guard {
    /// What dropping the guard does, keeping the guard (holding nothing
    /// now): releases in the background (once).
    pub(crate) fn abandon(&mut self) {
        if !self.released {
            // As a release does, stop believing in a lease this ends now,
            // not when the background task runs: what lives inside it
            // (a queue delivery in its consumer's presence) is lost at once.
            let ends = self.let_go();
            if ends {
                self.lease.mark(false);
            }
            self.released = true;
            spawn_background(self.lease.clone().release_dropped(ends));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("family", &self.lease.tenure.family())
            .field("kind", &self.lease.tenure.kind())
            .field("key", self.key())
            .field("holder", self.holder())
            .field("token", &self.lease.token)
            .field("held", &self.is_held())
            .finish()
    }
}
