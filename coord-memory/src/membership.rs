//! Membership groups: members with heartbeat leases and a change counter,
//! under the store's `lead` lock (shared with elections, whose quorum counts
//! a group's live members in the same step).

use std::{collections::HashMap, time::Duration, time::SystemTime};

use async_trait::async_trait;
use coord_api::{
    HolderId, Instant, Key, MemberInfo, Members, Namespace, Result,
    spi::{GroupBackend, ResourceKind, Role, Watch, membership::check_member_metadata},
};

use crate::{
    MemoryBackend,
    ops::{Listed, Visit},
    watch::Topic,
};

/// Every group of a store.
#[derive(Default)]
pub(crate) struct Groups {
    map: HashMap<(Namespace, Key), Group>,
}

#[derive(Default)]
struct Group {
    members: Vec<Member>,
    /// Joins and leaves, expiries included once noticed.
    seq: u64,
}

struct Member {
    holder: HolderId,
    metadata: String,
    joined: SystemTime,
    expires: Instant,
}

impl Group {
    fn purge(&mut self, now: Instant) {
        let before = self.members.len();
        self.members.retain(|m| m.expires > now);
        self.seq += (before - self.members.len()) as u64;
    }
}

impl Groups {
    /// The group's live members at `now`, expired ones dropped (and counted).
    fn live(&mut self, ns: &Namespace, group: &Key, now: Instant) -> Option<&mut Group> {
        let g = self.map.get_mut(&(ns.clone(), group.clone()))?;
        g.purge(now);
        Some(g)
    }

    /// How many live members the group has at `now`.
    pub(crate) fn count(&mut self, ns: &Namespace, group: &Key, now: Instant) -> usize {
        self.live(ns, group, now).map_or(0, |g| g.members.len())
    }

    /// The earliest heartbeat expiry after `after`.
    pub(crate) fn next_expiry(
        &self,
        ns: &Namespace,
        group: &Key,
        after: Instant,
    ) -> Option<Instant> {
        let g = self.map.get(&(ns.clone(), group.clone()))?;
        g.members
            .iter()
            .map(|m| m.expires)
            .filter(|&e| e > after)
            .min()
    }

    /// Shows `visit` the live members of every group of `ns` (or of
    /// `only`).
    pub(crate) fn visit(&self, ns: &Namespace, only: Option<&Key>, now: Instant, visit: Visit<'_>) {
        let one = only.map(|k| self.map.get_key_value(&(ns.clone(), k.clone())));
        let all = one.is_none().then(|| self.map.iter());
        let each = one.into_iter().flatten().chain(all.into_iter().flatten());
        for ((_, name), g) in each.filter(|((n, _), _)| n == ns) {
            for m in g.members.iter().filter(|m| m.expires > now) {
                let listed = Listed {
                    subscription: None,
                    item: None,
                    name,
                    occurrence: None,
                    role: Role::Member,
                    holder: &m.holder,
                    token: None,
                    holds: 1,
                    since: Some(m.joined),
                    until: m.expires,
                    waiters: None,
                };
                visit(ResourceKind::Group, listed);
            }
        }
    }
}

impl MemoryBackend {
    fn notify_group(&self, group: &Key) {
        self.store
            .notify(|| Topic::Group(self.ns.clone(), group.clone()));
    }
}

#[async_trait]
impl GroupBackend for MemoryBackend {
    async fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        coord_api::validate_ttl(group, ttl)?;
        check_member_metadata(group, metadata)?;
        let now = self.store.now();
        let joined = self.store.wall(now);
        {
            let mut lead = self.store.lead();
            let g = (lead.groups.map)
                .entry((self.ns.clone(), group.clone()))
                .or_default();
            g.purge(now);
            match g.members.iter_mut().find(|m| m.holder == *holder) {
                Some(m) => {
                    m.metadata = metadata.to_owned();
                    m.expires = now + ttl;
                }
                None => {
                    g.seq += 1;
                    g.members.push(Member {
                        holder: holder.clone(),
                        metadata: metadata.to_owned(),
                        joined,
                        expires: now + ttl,
                    });
                }
            }
        }
        self.notify_group(group);
        Ok(())
    }

    async fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        coord_api::validate_ttl(group, ttl)?;
        let now = self.store.now();
        let mut lead = self.store.lead();
        let Some(g) = lead.groups.live(&self.ns, group, now) else {
            return Ok(false);
        };
        Ok(match g.members.iter_mut().find(|m| m.holder == *holder) {
            Some(m) => {
                m.expires = now + ttl;
                true
            }
            None => false,
        })
    }

    async fn leave(&self, group: &Key, holder: &HolderId) -> Result<bool> {
        let now = self.store.now();
        let left = {
            let mut lead = self.store.lead();
            let Some(g) = lead.groups.live(&self.ns, group, now) else {
                return Ok(false);
            };
            let before = g.members.len();
            g.members.retain(|m| m.holder != *holder);
            let left = g.members.len() != before;
            if left {
                g.seq += 1;
            }
            left
        };
        if left {
            self.notify_group(group);
        }
        Ok(left)
    }

    async fn members(&self, group: &Key) -> Result<Members> {
        let now = self.store.now();
        let mut lead = self.store.lead();
        let Some(g) = lead.groups.live(&self.ns, group, now) else {
            return Ok(Members::default());
        };
        Ok(Members::new(
            g.members
                .iter()
                .map(|m| {
                    MemberInfo::new(
                        m.holder.clone(),
                        m.metadata.clone(),
                        m.joined,
                        m.expires.saturating_duration_since(now),
                    )
                })
                .collect(),
            g.seq,
        ))
    }

    async fn watch(&self, group: &Key) -> Result<Box<dyn Watch>> {
        Ok(self
            .store
            .watch(Topic::Group(self.ns.clone(), group.clone())))
    }
}
