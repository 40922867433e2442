//! What the store did, told as it does it: for histories. The simulator's
//! server gives its store a [`Journal`] and its checkers judge a run by what
//! the store granted, renewed and released, in the store's own order.

use coord_api::{FencingToken, HolderId, Key, LeaseKind};

/// Told every grant, renewal and release of a lease with a token (lock-family
/// leases, election terms, job runs), in the store's order, as the store
/// decides it (while it holds the lock that orders the key's operations).
/// Must not call back into the store.
pub trait Journal: Send + Sync + 'static {
    /// One event.
    fn record(&self, event: Event<'_>);
}

/// A lease the store keeps, as a [`Journal`] is told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased<'a> {
    /// A lock-family lease.
    Lock {
        /// Its kind.
        kind: LeaseKind,
        /// Its key.
        key: &'a Key,
    },
    /// An election's term.
    Term {
        /// The election.
        election: &'a Key,
    },
    /// A run of an occurrence of a run-once job.
    Run {
        /// The job.
        job: &'a Key,
        /// The occurrence.
        occurrence: &'a Key,
    },
}

/// What the store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// It granted `lease` to `holder` with `token`.
    Granted {
        /// The lease.
        lease: Leased<'a>,
        /// Its holder.
        holder: &'a HolderId,
        /// Its fencing token.
        token: FencingToken,
    },
    /// It answered a renewal of `lease` by `holder`: `held` whether it still
    /// held it (and extended it).
    Renewed {
        /// The lease.
        lease: Leased<'a>,
        /// Who asked.
        holder: &'a HolderId,
        /// Whether the renewal succeeded.
        held: bool,
    },
    /// It answered a release (a resignation, the end of a run) of `lease` by
    /// `holder`: `released` whether `holder` held it; `finished` whether a
    /// run ended marked finished.
    Released {
        /// The lease.
        lease: Leased<'a>,
        /// Who asked.
        holder: &'a HolderId,
        /// Whether `holder` held it.
        released: bool,
        /// A run that ended marked finished.
        finished: bool,
    },
}
