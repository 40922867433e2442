//! The SPI of leader elections. The client types built on it are
//! [`Election`](crate::Election), [`Leadership`](crate::Leadership),
//! [`LeaderObserver`](crate::LeaderObserver) and
//! [`LeaderRunner`](crate::LeaderRunner).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{Error, FencingToken, HolderId, InstanceId, Key, Result};

/// The most bytes of metadata a leader or a candidate may publish (a
/// campaign's, a proclamation's): more is `InvalidArgument` before any
/// I/O, and a backend refuses it too (decision 0067).
pub const MAX_LEADER_METADATA_BYTES: usize = 4_096;

/// `InvalidArgument` naming `election` and the limit when `metadata` is
/// over [`MAX_LEADER_METADATA_BYTES`] (every backend's `campaign` and
/// `proclaim` check it).
pub fn check_leader_metadata(election: &Key, metadata: &str) -> Result<()> {
    if metadata.len() > MAX_LEADER_METADATA_BYTES {
        return Err(Error::invalid(format!(
            "election {:?}: leader metadata of {} bytes is over the limit of \
             {MAX_LEADER_METADATA_BYTES} bytes",
            election.as_str(),
            metadata.len()
        )));
    }
    Ok(())
}

/// Who leads an election, as anyone can read it. Built with
/// [`LeaderInfo::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

impl LeaderInfo {
    /// `holder` leads in term `term` (the `seq`th term granted) since
    /// `since`, for `expires_in` more, having published `metadata`.
    pub fn new(
        holder: HolderId,
        metadata: impl Into<String>,
        term: FencingToken,
        since: SystemTime,
        seq: u64,
        expires_in: Duration,
    ) -> LeaderInfo {
        LeaderInfo {
            holder,
            metadata: metadata.into(),
            term,
            since,
            seq,
            expires_in,
        }
    }
}

/// A candidate waiting in an election, as anyone can read it (see
/// [`ElectionBackend::candidates`]). Built with [`Candidate::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Candidate {
    /// The candidate: the holder id of its campaign (its instance id names
    /// the process, see [`instance`](Self::instance)).
    pub holder: HolderId,
    /// What the candidate would publish as leader.
    pub metadata: String,
    /// When it began to wait, by the backend's wall clock.
    pub since: SystemTime,
    /// Time left on its candidacy's lease (refreshed while it waits), by the
    /// backend's clock.
    pub expires_in: Duration,
}

impl Candidate {
    /// `holder` waits since `since`, for `expires_in` more unless it
    /// refreshes its candidacy, having published `metadata`.
    pub fn new(
        holder: HolderId,
        metadata: impl Into<String>,
        since: SystemTime,
        expires_in: Duration,
    ) -> Candidate {
        Candidate {
            holder,
            metadata: metadata.into(),
            since,
            expires_in,
        }
    }

    /// The candidate's instance (the process that campaigns).
    pub fn instance(&self) -> &InstanceId {
        self.holder.instance()
    }
}

/// An election's quorum requirement: at least `min_members` live members in
/// the membership group `group`.
///
/// Exhaustive on purpose: a backend receives it, and a field added to it
/// would change what every backend must check before electing (a breaking
/// change of the SPI), so a backend that takes it apart should stop
/// compiling rather than silently ignore the new requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quorum {
    /// The membership group counted.
    pub group: Key,
    /// The fewest live members for a leader to be elected and stay leader.
    pub min_members: u32,
}

/// The answer to [`ElectionBackend::campaign`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// Leader elections. Every method is one atomic step (one round trip on a
/// remote backend). Elections have a key space of their own.
#[async_trait]
pub trait ElectionBackend: Send + Sync {
    /// Makes `holder` leader of `election` for `ttl` if nobody leads and, with
    /// a `quorum`, its group has at least `min_members` live members. A new
    /// term gets a new fencing token and increments `seq`.
    ///
    /// Candidacies (rule 1: a waiting candidate is a lease): when refused
    /// and `stand` is true, the same step records `holder` as a candidate
    /// with `metadata` for `ttl`, or refreshes its live candidacy (keeping
    /// its `since`); a waiting campaign repeats the call within every
    /// `ttl / 3`, which is its candidacy's heartbeat. When elected, the same
    /// step removes `holder`'s candidacy, so that no leader is listed among
    /// the candidates. Candidacies wake nobody (waiters would all campaign
    /// again for nothing).
    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
        stand: bool,
    ) -> Result<Campaign>;

    /// Removes `holder`'s live candidacy from `election`: `false` (and
    /// nothing changed) if it has none (never stood, won, withdrew, or its
    /// candidacy expired: an expired candidacy is not revived).
    async fn withdraw_candidacy(&self, election: &Key, holder: &HolderId) -> Result<bool>;

    /// The live candidacies of `election`, earliest `since` first (ties by
    /// holder). Candidacies past their TTL are never listed.
    async fn candidates(&self, election: &Key) -> Result<Vec<Candidate>>;

    /// Replaces the metadata of the term `term` of `holder` with `metadata`
    /// (the term, its `seq`, `since` and expiry unchanged) and wakes
    /// watchers; `false` (and nothing changed) if `holder` no longer leads
    /// in `term` (another term, another holder, expired or resigned).
    async fn proclaim(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        metadata: &str,
    ) -> Result<bool>;

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
    /// proclamation, and at the current term's expiry instant).
    async fn watch(&self, election: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "elections",
        name,
    }
}

fn elections<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn ElectionBackend> {
    family!(backend, elections, op(name))
}

#[async_trait]
impl<D: Dispatch> ElectionBackend for Dispatched<D> {
    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
        stand: bool,
    ) -> Result<Campaign> {
        let args = (
            election.clone(),
            holder.clone(),
            metadata.to_owned(),
            ttl,
            quorum.cloned(),
            stand,
        );
        self.carry(op("campaign"), args, |b, (e, h, m, ttl, q, s)| async move {
            (elections(&b, "campaign")?)
                .campaign(&e, &h, &m, ttl, q.as_ref(), s)
                .await
        })
        .await
    }
    async fn withdraw_candidacy(&self, election: &Key, holder: &HolderId) -> Result<bool> {
        let args = (election.clone(), holder.clone());
        self.carry(op("withdraw_candidacy"), args, |b, (e, h)| async move {
            (elections(&b, "withdraw_candidacy")?)
                .withdraw_candidacy(&e, &h)
                .await
        })
        .await
    }
    async fn candidates(&self, election: &Key) -> Result<Vec<Candidate>> {
        self.carry(
            op("candidates"),
            (election.clone(),),
            |b, (e,)| async move { elections(&b, "candidates")?.candidates(&e).await },
        )
        .await
    }
    async fn proclaim(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        metadata: &str,
    ) -> Result<bool> {
        let args = (election.clone(), holder.clone(), term, metadata.to_owned());
        self.carry(op("proclaim"), args, |b, (e, h, term, m)| async move {
            (elections(&b, "proclaim")?)
                .proclaim(&e, &h, term, &m)
                .await
        })
        .await
    }
    async fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool> {
        let args = (election.clone(), holder.clone(), term, ttl, quorum.cloned());
        self.carry(op("renew"), args, |b, (e, h, term, ttl, q)| async move {
            (elections(&b, "renew")?)
                .renew(&e, &h, term, ttl, q.as_ref())
                .await
        })
        .await
    }
    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
        let args = (election.clone(), holder.clone(), term);
        self.carry(op("resign"), args, |b, (e, h, term)| async move {
            elections(&b, "resign")?.resign(&e, &h, term).await
        })
        .await
    }
    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
        self.carry(op("leader"), (election.clone(),), |b, (e,)| async move {
            elections(&b, "leader")?.leader(&e).await
        })
        .await
    }
    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
        self.carry(
            op("terms_granted"),
            (election.clone(),),
            |b, (e,)| async move { elections(&b, "terms_granted")?.terms_granted(&e).await },
        )
        .await
    }
    async fn watch(&self, election: &Key) -> Result<Box<dyn Watch>> {
        self.carry(op("watch"), (election.clone(),), |b, (e,)| async move {
            elections(&b, "watch")?.watch(&e).await
        })
        .await
    }
}
