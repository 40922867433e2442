//! The messages between sim clients and the sim server. The simulated network
//! carries Rust values as they are (no serialization in the simulator).

use std::time::Duration;

use coord_api::{
    Acquire, Campaign, FencingToken, HolderId, Key, LeaderInfo, LeaseFamily, LeaseId, LeaseInfo,
    Members, Namespace, OnceBegin, Quorum, Release, Result,
};

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
        topic: Topic,
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
    // Leadership, membership and run-once jobs: one request per
    // `LeadershipBackend` method (watches go through `Subscribe`).
    Campaign {
        ns: Namespace,
        election: Key,
        holder: HolderId,
        metadata: String,
        ttl: Duration,
        quorum: Option<Quorum>,
    },
    Renew {
        ns: Namespace,
        election: Key,
        holder: HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<Quorum>,
    },
    Resign {
        ns: Namespace,
        election: Key,
        holder: HolderId,
        term: FencingToken,
    },
    Leader {
        ns: Namespace,
        election: Key,
    },
    TermsGranted {
        ns: Namespace,
        election: Key,
    },
    Join {
        ns: Namespace,
        group: Key,
        holder: HolderId,
        metadata: String,
        ttl: Duration,
    },
    Heartbeat {
        ns: Namespace,
        group: Key,
        holder: HolderId,
        ttl: Duration,
    },
    Leave {
        ns: Namespace,
        group: Key,
        holder: HolderId,
    },
    Members {
        ns: Namespace,
        group: Key,
    },
    BeginOnce {
        ns: Namespace,
        job: Key,
        occurrence: Key,
        holder: HolderId,
        ttl: Duration,
    },
    ExtendOnce {
        ns: Namespace,
        job: Key,
        occurrence: Key,
        holder: HolderId,
        ttl: Duration,
    },
    EndOnce {
        ns: Namespace,
        job: Key,
        occurrence: Key,
        holder: HolderId,
        finished: Option<Duration>,
    },
}

/// What a server-side watch is about.
#[derive(Debug, Clone)]
pub(crate) enum Topic {
    /// A lease key of a family (`LeaseBackend::subscribe`).
    Lease(LeaseFamily, Key),
    /// An election (`watch_election`).
    Election(Key),
    /// A membership group (`watch_group`).
    Group(Key),
    /// An occurrence of a run-once job (`watch_once`).
    Once(Key, Key),
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
    Campaign(Result<Campaign>),
    /// `renew`, `resign`, `heartbeat`, `leave`, `extend_once`, `end_once`.
    Bool(Result<bool>),
    Joined(Result<()>),
    Leader(Result<Option<LeaderInfo>>),
    TermsGranted(Result<Option<u64>>),
    Members(Result<Members>),
    BeginOnce(Result<OnceBegin>),
}
