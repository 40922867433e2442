//! The leases a client holds, for [`Client::close`](crate::Client::close):
//! every lease the engine starts is noted here (weakly: a lease lives as
//! long as its guards), and closing ends each one still held.

use std::sync::{Arc, Mutex, Weak};

use super::Lease;
use crate::{Client, Result};

/// The live leases of one client.
#[derive(Default)]
pub(crate) struct Registry {
    leases: Mutex<Noted>,
}

#[derive(Default)]
struct Noted {
    leases: Vec<Weak<Lease>>,
    /// The length at which ended leases are pruned next.
    prune_at: usize,
}

impl Registry {
    /// Notes `lease`, pruning the ended ones once the list doubled.
    pub(crate) fn note(&self, lease: &Arc<Lease>) {
        let mut noted = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if noted.leases.len() >= noted.prune_at.max(64) {
            noted
                .leases
                .retain(|l| l.upgrade().is_some_and(|l| l.is_held()));
            noted.prune_at = noted.leases.len() * 2;
        }
        noted.leases.push(Arc::downgrade(lease));
    }

    /// Takes every lease still held out of the registry.
    pub(crate) fn take_held(&self) -> Vec<Arc<Lease>> {
        let mut noted = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let leases = std::mem::take(&mut noted.leases);
        leases
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|l| l.is_held())
            .collect()
    }
}

impl Lease {
    /// Ends the lease for its client's close, through `closer` (the closing
    /// client, whose calls still go out): believed released at once (off
    /// the renewal queue, lost signals fired), then every hold released on
    /// the backend (a reentrant lease's count to zero; a term resigned, a
    /// membership left: whatever the family's release is).
    pub(crate) async fn close(&self, closer: &Client) -> Result<()> {
        self.mark(false);
        self.release_all(closer).await
    }
}
