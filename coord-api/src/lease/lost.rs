//! [`LostSignal`]: a lease's lost signal as a `'static`, cloneable value,
//! and [`any_ended`], the wait for the first of several leases to end.

use std::sync::{Arc, Weak};

use super::{BoxFuture, Lease};

/// A `'static`, cloneable view of a lease's lost signal, like a cancellation
/// token: hand it to the task doing the protected work.
///
/// ```
/// # use coord_api::LostSignal;
/// async fn work(lost: LostSignal) {
///     tokio::select! {
///         _ = lost.wait() => { /* stop writing: someone else may hold it */ }
///         _ = async { /* the protected work */ } => {}
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct LostSignal {
    of: LostOf,
}

/// The lease (or leases) a [`LostSignal`] watches.
#[derive(Clone, Debug)]
enum LostOf {
    One(Weak<Lease>),
    /// Several, held together (a multi-lock): lost when any is.
    Any(Arc<[Weak<Lease>]>),
}

impl LostSignal {
    /// The signal of one lease.
    pub(crate) fn one(lease: &Arc<Lease>) -> LostSignal {
        LostSignal {
            of: LostOf::One(Arc::downgrade(lease)),
        }
    }

    /// The signal of several leases held together: it fires when any of
    /// them is no longer held.
    pub(crate) fn any<'a>(leases: impl IntoIterator<Item = &'a Arc<Lease>>) -> LostSignal {
        LostSignal {
            of: LostOf::Any(leases.into_iter().map(Arc::downgrade).collect()),
        }
    }

    /// Completes when the lease is no longer held: lost, or released (or
    /// every guard of it dropped). A signal of several leases completes
    /// when the first of them is.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait(&self) {
        match &self.of {
            LostOf::One(lease) => {
                if let Some(lease) = lease.upgrade() {
                    lease.ended().await
                }
            }
            LostOf::Any(weak) => {
                let leases: Vec<Arc<Lease>> = weak.iter().filter_map(Weak::upgrade).collect();
                if leases.len() == weak.len() {
                    any_ended(&leases).await
                }
            }
        }
    }

    /// Whether the lease (any of the leases) is no longer held.
    pub fn is_lost(&self) -> bool {
        let lost = |l: &Weak<Lease>| l.upgrade().is_none_or(|l| !l.is_held());
        match &self.of {
            LostOf::One(lease) => lost(lease),
            LostOf::Any(leases) => leases.iter().any(lost),
        }
    }
}

/// Completes when any of `leases` is no longer held (at once for none).
pub(crate) async fn any_ended(leases: &[Arc<Lease>]) {
    if leases.is_empty() {
        return;
    }
    let mut ended: Vec<BoxFuture<'_, ()>> =
        leases.iter().map(|l| Box::pin(l.ended()) as _).collect();
    std::future::poll_fn(|cx| {
        for f in &mut ended {
            if f.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}
