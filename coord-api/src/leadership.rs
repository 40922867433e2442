//! The SPI of leadership, membership and singleton jobs: one trait,
//! [`LeadershipBackend`], of small atomic operations with no default bodies.
//! The client types built on it are [`Election`](crate::Election),
//! [`Group`](crate::Group) and [`Job`](crate::Job).

use std::{fmt, sync::Arc, time::Duration, time::SystemTime};

use async_trait::async_trait;

use crate::{FencingToken, HolderId, Key, LeaseWatch, Namespace, Result};

/// Who leads an election, as anyone can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The leader (its instance id names the process).
    pub holder: HolderId,
    /// What the leader published about itself (an address, a version...).
    pub metadata: String,
    /// The term: a fencing token, strictly increasing per election.
    pub term: FencingToken,
    /// When the term began, by the backend's wall clock.
    pub since: SystemTime,
    /// How many terms this election has granted so far, this one included.
    /// Observers compare it to tell whether they missed terms.
    pub seq: u64,
    /// Time left on the leader's lease, by the backend's clock.
    pub expires_in: Duration,
}

/// An election's quorum requirement: at least `min_members` live members in
/// the membership group `group`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quorum {
    /// The membership group counted.
    pub group: Key,
    /// The fewest live members for a leader to be elected and stay leader.
    pub min_members: u32,
}

/// The answer to [`LeadershipBackend::campaign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// The candidate is the leader of a new term.
    Elected(LeaderInfo),
    /// Someone else leads (`leader`), or nobody does but the quorum is
    /// missing (`leader` is `None`, `no_quorum` true). Nothing changed.
    Busy {
        /// The current leader, if any.
        leader: Option<LeaderInfo>,
        /// The quorum was required and missing.
        no_quorum: bool,
    },
}

/// A live member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member.
    pub holder: HolderId,
    /// What the member published about itself.
    pub metadata: String,
    /// When it joined, by the backend's wall clock.
    pub joined: SystemTime,
    /// Time left on its heartbeat lease.
    pub expires_in: Duration,
}

/// A group's live members and its change counter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members {
    /// Live members, oldest first.
    pub members: Vec<MemberInfo>,
    /// Counts joins and leaves (expiry included once noticed); observers
    /// compare it to tell whether they missed changes.
    pub seq: u64,
}

/// The state of one occurrence of a run-once job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceBegin {
    /// This holder now runs the occurrence: `attempt` 1 for a first run,
    /// more for a retry after a crashed run's lease expired.
    Started {
        /// The fencing token of this run.
        token: FencingToken,
        /// Which attempt this is (1-based).
        attempt: u32,
    },
    /// Another holder runs it now; its lease ends in `retry_in` unless renewed.
    Running {
        /// Time left on the running holder's lease.
        retry_in: Duration,
    },
    /// A run finished (and its marker has not passed its retention).
    Finished,
}

/// Leadership, membership and run-once jobs on a backend bound to one
/// [`Namespace`]. Every method is one atomic step (one round trip on a remote
/// backend). Elections, groups and jobs have key spaces of their own.
#[async_trait]
pub trait LeadershipBackend: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// The namespace every election, group and job lives in.
    fn namespace(&self) -> &Namespace;

    /// Makes `holder` leader of `election` for `ttl` if nobody leads and, with
    /// a `quorum`, its group has at least `min_members` live members. A new
    /// term gets a new fencing token and increments `seq`.
    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<Campaign>;

    /// Extends the term `term` of `holder` for `ttl`; `false` (and nothing
    /// changed) if it no longer leads, or if `quorum` no longer holds — then
    /// the term ends at once so that nobody leads without quorum.
    async fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool>;

    /// Ends the term `term` of `holder` (waking observers and candidates);
    /// `false` if it was no longer leader.
    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool>;

    /// The current leader of `election`, if any.
    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>>;

    /// How many terms `election` has granted so far (the `seq` its latest
    /// term got; 0 if none), leader or not; `None` if the backend cannot tell.
    /// An observer that first finds the election vacant counts the terms it
    /// later misses from this (a backend answering `None` fails the
    /// conformance case `observer_from_vacancy_told_it_skipped`).
    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>>;

    /// Wakes on every change of leader of `election` (new term, resignation,
    /// and at the current term's expiry instant).
    async fn watch_election(&self, election: &Key) -> Result<Box<dyn LeaseWatch>>;

    /// Adds `holder` to `group` (or refreshes it) with a heartbeat lease of `ttl`.
    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()>;

    /// Extends `holder`'s heartbeat in `group`; `false` if it is no longer a
    /// member (expired or left).
    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool>;

    /// Removes `holder` from `group`; `false` if it was not a member.
    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool>;

    /// The live members of `group`.
    async fn members(&self, group: &Key) -> Result<Members>;

    /// Wakes on every change of `group`'s membership (join, leave, and at the
    /// next heartbeat expiry instant).
    async fn watch_group(&self, group: &Key) -> Result<Box<dyn LeaseWatch>>;

    /// Starts `occurrence` of `job` for `holder` with a lease of `ttl`, unless
    /// it is running elsewhere or finished (see [`OnceBegin`]).
    async fn begin_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin>;

    /// Extends the running occurrence's lease; `false` if `holder` no longer
    /// runs it.
    async fn extend_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool>;

    /// Ends `holder`'s run of the occurrence. With `finished` (the body
    /// completed) the occurrence is marked finished for `retention`, and never
    /// begins again while marked; without, it may begin again at once (a failed
    /// run). `false` if `holder` no longer ran it (then nothing is marked).
    async fn end_once(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool>;

    /// Wakes when the occurrence's run ends or its lease expires.
    async fn watch_once(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn LeaseWatch>>;
}

macro_rules! forward_leadership_backend {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: LeadershipBackend + ?Sized> LeadershipBackend for $ptr<T> {
            fn namespace(&self) -> &Namespace {
                (**self).namespace()
            }
            async fn campaign(&self, election: &Key, holder: &HolderId, metadata: &str, ttl: Duration, quorum: Option<&Quorum>) -> Result<Campaign> {
                (**self).campaign(election, holder, metadata, ttl, quorum).await
            }
            async fn renew(&self, election: &Key, holder: &HolderId, term: FencingToken, ttl: Duration, quorum: Option<&Quorum>) -> Result<bool> {
                (**self).renew(election, holder, term, ttl, quorum).await
            }
            async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
                (**self).resign(election, holder, term).await
            }
            async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
                (**self).leader(election).await
            }
            async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
                (**self).terms_granted(election).await
            }
            async fn watch_election(&self, election: &Key) -> Result<Box<dyn LeaseWatch>> {
                (**self).watch_election(election).await
            }
            async fn join(&self, group: &Key, holder: &HolderId, metadata: &str, ttl: Duration) -> Result<()> {
                (**self).join(group, holder, metadata, ttl).await
            }
            async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
                (**self).heartbeat(group, holder, ttl).await
            }
            async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
                (**self).leave(group, holder).await
            }
            async fn members(&self, group: &Key) -> Result<Members> {
                (**self).members(group).await
            }
            async fn watch_group(&self, group: &Key) -> Result<Box<dyn LeaseWatch>> {
                (**self).watch_group(group).await
            }
            async fn begin_once(&self, job: &Key, occurrence: &Key, holder: &HolderId, ttl: Duration) -> Result<OnceBegin> {
                (**self).begin_once(job, occurrence, holder, ttl).await
            }
            async fn extend_once(&self, job: &Key, occurrence: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
                (**self).extend_once(job, occurrence, holder, ttl).await
            }
            async fn end_once(&self, job: &Key, occurrence: &Key, holder: &HolderId, finished: Option<Duration>) -> Result<bool> {
                (**self).end_once(job, occurrence, holder, finished).await
            }
            async fn watch_once(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn LeaseWatch>> {
                (**self).watch_once(job, occurrence).await
            }
        }
    )*};
}

forward_leadership_backend!(Arc, Box);

/// A leadership backend shared by many clients.
pub type DynLeadershipBackend = Arc<dyn LeadershipBackend>;
