//! The SPI of membership groups. The client types built on it are
//! [`Group`](crate::Group), [`Membership`](crate::Membership) and
//! [`GroupObserver`](crate::GroupObserver).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{Error, HolderId, Key, Result};

/// The most bytes of metadata a member may publish: a join with more is
/// `InvalidArgument` before any I/O, and a backend refuses it too.
pub const MAX_MEMBER_METADATA_BYTES: usize = 4_096;

/// `InvalidArgument` naming `group` and the limit when `metadata` is over
/// [`MAX_MEMBER_METADATA_BYTES`] (every backend's `join` checks it).
pub fn check_member_metadata(group: &Key, metadata: &str) -> Result<()> {
    if metadata.len() > MAX_MEMBER_METADATA_BYTES {
        return Err(Error::invalid(format!(
            "group {:?}: member metadata of {} bytes is over the limit of \
             {MAX_MEMBER_METADATA_BYTES} bytes",
            group.as_str(),
            metadata.len()
        )));
    }
    Ok(())
}

/// A live member of a group. Built with [`MemberInfo::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

impl MemberInfo {
    /// `holder`, a member since `joined` for `expires_in` more, having
    /// published `metadata`.
    pub fn new(
        holder: HolderId,
        metadata: impl Into<String>,
        joined: SystemTime,
        expires_in: Duration,
    ) -> MemberInfo {
        MemberInfo {
            holder,
            metadata: metadata.into(),
            joined,
            expires_in,
        }
    }
}

/// A group's live members and its change counter. Built with
/// [`Members::new`] (or [`Members::default`]: nobody, no change yet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Members {
    /// Live members, oldest first.
    pub members: Vec<MemberInfo>,
    /// Counts every join, leave and expiry once each (an expiry when first
    /// noticed, at the latest by the next operation on the group);
    /// observers compare it to tell whether they missed changes.
    pub seq: u64,
}

impl Members {
    /// `members` (oldest first) after `seq` changes.
    pub fn new(members: Vec<MemberInfo>, seq: u64) -> Members {
        Members { members, seq }
    }
}

/// Membership groups. Every method is one atomic step (one round trip on a
/// remote backend). Groups have a key space of their own.
#[async_trait]
pub trait GroupBackend: Send + Sync {
    /// Adds `holder` to `group` (or refreshes it) with a heartbeat lease of
    /// `ttl`. `InvalidArgument` for metadata over
    /// [`MAX_MEMBER_METADATA_BYTES`] ([`check_member_metadata`]).
    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()>;

    /// Extends `holder`'s heartbeat in `group`; `false` if it is no longer a
    /// member (expired or left) or never was (another holder, an earlier
    /// incarnation of the same instance), and then nothing changes: no
    /// member is extended or added back.
    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool>;

    /// Removes `holder` from `group`; `false` if it was not a member (then
    /// nothing changes, and `seq` counts no leave).
    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool>;

    /// The live members of `group`.
    async fn members(&self, group: &Key) -> Result<Members>;

    /// Wakes on every change of `group`'s membership (join, leave, and at the
    /// next heartbeat expiry instant).
    async fn watch(&self, group: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "groups",
        name,
    }
}

fn groups<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn GroupBackend> {
    family!(backend, groups, op(name))
}

#[async_trait]
impl<D: Dispatch> GroupBackend for Dispatched<D> {
    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        let args = (group.clone(), holder.clone(), metadata.to_owned(), ttl);
        self.carry(op("join"), args, |b, (g, h, m, ttl)| async move {
            groups(&b, "join")?.join(&g, &h, &m, ttl).await
        })
        .await
    }
    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        let args = (group.clone(), holder.clone(), ttl);
        self.carry(op("heartbeat"), args, |b, (g, h, ttl)| async move {
            groups(&b, "heartbeat")?.heartbeat(&g, &h, ttl).await
        })
        .await
    }
    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
        let args = (group.clone(), holder.clone());
        self.carry(op("leave"), args, |b, (g, h)| async move {
            groups(&b, "leave")?.leave(&g, &h).await
        })
        .await
    }
    async fn members(&self, group: &Key) -> Result<Members> {
        self.carry(op("members"), (group.clone(),), |b, (g,)| async move {
            groups(&b, "members")?.members(&g).await
        })
        .await
    }
    async fn watch(&self, group: &Key) -> Result<Box<dyn Watch>> {
        self.carry(op("watch"), (group.clone(),), |b, (g,)| async move {
            groups(&b, "watch")?.watch(&g).await
        })
        .await
    }
}
