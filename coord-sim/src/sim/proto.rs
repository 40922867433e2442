//! The messages between sim clients and the sim server. The simulated network
//! carries Rust values as they are (no serialization in the simulator).

use std::time::Duration;

use coord_api::{Acquire, Key, LeaseFamily, LeaseId, LeaseInfo, Namespace, Release, Result};

/// The tag every request is sent with; replies go to a random tag per call.
pub(crate) const REQUEST_TAG: u64 = 0x636f_6f72_645f_7271;

/// A request: its reply tag and the operation.
pub(crate) type Envelope = (u64, Request);

#[derive(Debug)]
pub(crate) enum Request {
    Acquire {
        ns: Namespace,
        lease: LeaseId,
        ttl: Duration,
    },
    Extend {
        ns: Namespace,
        lease: LeaseId,
        ttl: Duration,
    },
    Release {
        ns: Namespace,
        lease: LeaseId,
    },
    ForceRelease {
        ns: Namespace,
        family: LeaseFamily,
        key: Key,
    },
    Inspect {
        ns: Namespace,
        family: LeaseFamily,
        key: Key,
    },
    /// Opens a server-side watch; answered with its id.
    Subscribe {
        ns: Namespace,
        family: LeaseFamily,
        key: Key,
    },
    /// Long poll: answers when the watch's version passes `seen`, or after
    /// `hold` with the version unchanged.
    Poll {
        sub: u64,
        seen: u64,
        hold: Duration,
    },
    /// Drops a watch (best effort; idle watches are also swept).
    Unsubscribe {
        sub: u64,
    },
}

#[derive(Debug)]
pub(crate) enum Reply {
    Acquire(Result<Acquire>),
    Extend(Result<bool>),
    Release(Result<Release>),
    ForceRelease(Result<usize>),
    Inspect(Result<Vec<LeaseInfo>>),
    Subscribed(u64),
    /// The watch's version; `None` when the server does not know the watch
    /// (it restarted or swept it).
    Polled(Option<u64>),
    Unsubscribed,
}
