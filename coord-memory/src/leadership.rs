//! Leadership, membership and run-once jobs: one mutex over small maps (this
//! is not a hot path), tokens from the lease table's counter so terms obey
//! the same monotonic rule, and notifications through the store's watchers.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use coord_api::{
    Campaign, Clock, FencingToken, HolderId, Instant, Key, LeaderInfo, LeaseWatch, MemberInfo,
    Members, Namespace, OnceBegin, Quorum, Result,
};

use crate::{MemoryStore, table::LeaseTable, watch::Watchers};

/// What a leadership watch is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Election(Namespace, Key),
    Group(Namespace, Key),
    Once(Namespace, Key, Key),
}

#[derive(Default)]
pub(crate) struct Leadership {
    state: Mutex<State>,
    pub(crate) watchers: Watchers<Topic>,
}

#[derive(Default)]
struct State {
    elections: HashMap<(Namespace, Key), Election>,
    groups: HashMap<(Namespace, Key), Group>,
    once: HashMap<(Namespace, Key, Key), Once>,
    /// When `once` may next be swept of stale records.
    once_sweep_at: usize,
}

#[derive(Default)]
struct Election {
    leader: Option<Leader>,
    seq: u64,
}

struct Leader {
    holder: HolderId,
    metadata: String,
    term: u64,
    since: SystemTime,
    seq: u64,
    expires: Instant,
}

#[derive(Default)]
struct Group {
    members: Vec<Member>,
    seq: u64,
}

struct Member {
    holder: HolderId,
    metadata: String,
    joined: SystemTime,
    expires: Instant,
}

struct Once {
    run: Option<Run>,
    attempts: u32,
    finished_until: Option<Instant>,
    touched: Instant,
}

struct Run {
    holder: HolderId,
    expires: Instant,
}

impl Election {
    fn live(&mut self, now: Instant) -> Option<&mut Leader> {
        if self.leader.as_ref().is_some_and(|l| l.expires <= now) {
            self.leader = None;
        }
        self.leader.as_mut()
    }
}

impl Leader {
    fn info(&self, now: Instant) -> LeaderInfo {
        LeaderInfo {
            holder: self.holder.clone(),
            metadata: self.metadata.clone(),
            term: FencingToken(self.term),
            since: self.since,
            seq: self.seq,
            expires_in: self.expires.saturating_duration_since(now),
        }
    }
}

impl Group {
    fn purge(&mut self, now: Instant) {
        let before = self.members.len();
        self.members.retain(|m| m.expires > now);
        self.seq += (before - self.members.len()) as u64;
    }
}

impl Once {
    fn purge(&mut self, now: Instant) {
        if self.run.as_ref().is_some_and(|r| r.expires <= now) {
            self.run = None;
        }
        if self.finished_until.is_some_and(|t| t <= now) {
            self.finished_until = None;
        }
    }

    /// Nothing worth remembering: no run, no marker, and idle for a day.
    fn stale(&self, now: Instant) -> bool {
        self.run.is_none()
            && self.finished_until.is_none()
            && now.saturating_duration_since(self.touched) > coord_api::MAX_TTL
    }
}

fn wall(table: &LeaseTable, now: Instant) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(table.wall_us(now))
}

fn live_members(state: &mut State, ns: &Namespace, group: &Key, now: Instant) -> usize {
    match state.groups.get_mut(&(ns.clone(), group.clone())) {
        Some(g) => {
            g.purge(now);
            g.members.len()
        }
        None => 0,
    }
}

impl Leadership {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_expiry(&self, topic: &Topic) -> Option<Instant> {
        let state = self.state();
        match topic {
            Topic::Election(ns, k) => state
                .elections
                .get(&(ns.clone(), k.clone()))
                .and_then(|e| e.leader.as_ref().map(|l| l.expires)),
            Topic::Group(ns, k) => state
                .groups
                .get(&(ns.clone(), k.clone()))
                .and_then(|g| g.members.iter().map(|m| m.expires).min()),
            Topic::Once(ns, j, o) => state
                .once
                .get(&(ns.clone(), j.clone(), o.clone()))
                .and_then(|r| r.run.as_ref().map(|r| r.expires)),
        }
    }
}

/// Wakes on a topic's notifications and at its next expiry instant.
pub(crate) struct TopicWatch {
    store: MemoryStore,
    topic: Topic,
    rx: Option<tokio::sync::watch::Receiver<()>>,
}

impl TopicWatch {
    pub(crate) fn new(store: MemoryStore, topic: Topic) -> TopicWatch {
        let rx = store.inner.leadership.watchers.subscribe(&topic);
        TopicWatch {
            store,
            topic,
            rx: Some(rx),
        }
    }
}

#[async_trait]
impl LeaseWatch for TopicWatch {
    async fn changed(&mut self) -> Result<()> {
        let expiry = self.store.inner.leadership.next_expiry(&self.topic);
        let clock = self.store.inner.clock.clone();
        let rx = self.rx.as_mut().expect("present until drop");
        match expiry {
            Some(at) => {
                tokio::select! {
                    biased;
                    _ = rx.changed() => {}
                    _ = clock.sleep_until(at) => {}
                }
            }
            None => {
                let _ = rx.changed().await;
            }
        }
        Ok(())
    }
}

impl Drop for TopicWatch {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.store
            .inner
            .leadership
            .watchers
            .forget_if_unwatched(&self.topic);
    }
}

/// The operations, on a store and a namespace.
pub(crate) struct Ops<'a> {
    pub(crate) store: &'a MemoryStore,
    pub(crate) ns: &'a Namespace,
}

impl Ops<'_> {
    fn now(&self) -> Instant {
        self.store.inner.clock.now()
    }

    fn table(&self) -> &LeaseTable {
        &self.store.inner.table
    }

    fn lead(&self) -> &Leadership {
        &self.store.inner.leadership
    }

    fn notify(&self, topic: Topic) {
        self.lead().watchers.notify(&topic);
    }

    pub(crate) fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<Campaign> {
        coord_api::validate_ttl(election, ttl)?;
        let now = self.now();
        let info = {
            let mut state = self.lead().state();
            let no_quorum = quorum.is_some_and(|q| {
                live_members(&mut state, self.ns, &q.group, now) < q.min_members as usize
            });
            let e = state
                .elections
                .entry((self.ns.clone(), election.clone()))
                .or_default();
            if let Some(l) = e.live(now) {
                return Ok(Campaign::Busy {
                    leader: Some(l.info(now)),
                    no_quorum,
                });
            }
            if no_quorum {
                return Ok(Campaign::Busy {
                    leader: None,
                    no_quorum,
                });
            }
            e.seq += 1;
            let leader = Leader {
                holder: holder.clone(),
                metadata: metadata.to_owned(),
                term: self.table().next_token(now),
                since: wall(self.table(), now),
                seq: e.seq,
                expires: now + ttl,
            };
            let info = leader.info(now);
            e.leader = Some(leader);
            info
        };
        self.notify(Topic::Election(self.ns.clone(), election.clone()));
        Ok(Campaign::Elected(info))
    }

    pub(crate) fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool> {
        coord_api::validate_ttl(election, ttl)?;
        let now = self.now();
        let stepped_down = {
            let mut state = self.lead().state();
            let no_quorum = quorum.is_some_and(|q| {
                live_members(&mut state, self.ns, &q.group, now) < q.min_members as usize
            });
            let Some(e) = state
                .elections
                .get_mut(&(self.ns.clone(), election.clone()))
            else {
                return Ok(false);
            };
            match e.live(now) {
                Some(l) if l.holder == *holder && l.term == term.get() => {
                    if !no_quorum {
                        l.expires = now + ttl;
                        return Ok(true);
                    }
                    e.leader = None;
                    true
                }
                _ => return Ok(false),
            }
        };
        if stepped_down {
            self.notify(Topic::Election(self.ns.clone(), election.clone()));
        }
        Ok(false)
    }

    pub(crate) fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> bool {
        let now = self.now();
        {
            let mut state = self.lead().state();
            let Some(e) = state
                .elections
                .get_mut(&(self.ns.clone(), election.clone()))
            else {
                return false;
            };
            match e.live(now) {
                Some(l) if l.holder == *holder && l.term == term.get() => e.leader = None,
                _ => return false,
            }
        }
        self.notify(Topic::Election(self.ns.clone(), election.clone()));
        true
    }

    pub(crate) fn leader(&self, election: &Key) -> Option<LeaderInfo> {
        let now = self.now();
        let mut state = self.lead().state();
        state
            .elections
            .get_mut(&(self.ns.clone(), election.clone()))
            .and_then(|e| e.live(now).map(|l| l.info(now)))
    }

    pub(crate) fn terms_granted(&self, election: &Key) -> u64 {
        let state = self.lead().state();
        state
            .elections
            .get(&(self.ns.clone(), election.clone()))
            .map_or(0, |e| e.seq)
    }

    pub(crate) fn join(
        &self,
        group: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
    ) -> Result<()> {
        coord_api::validate_ttl(group, ttl)?;
        let now = self.now();
        {
            let mut state = self.lead().state();
            let g = state
                .groups
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
                        joined: wall(self.table(), now),
                        expires: now + ttl,
                    });
                }
            }
        }
        self.notify(Topic::Group(self.ns.clone(), group.clone()));
        Ok(())
    }

    pub(crate) fn heartbeat(&self, group: &Key, holder: &HolderId, ttl: Duration) -> Result<bool> {
        coord_api::validate_ttl(group, ttl)?;
        let now = self.now();
        let mut state = self.lead().state();
        let Some(g) = state.groups.get_mut(&(self.ns.clone(), group.clone())) else {
            return Ok(false);
        };
        g.purge(now);
        Ok(match g.members.iter_mut().find(|m| m.holder == *holder) {
            Some(m) => {
                m.expires = now + ttl;
                true
            }
            None => false,
        })
    }

    pub(crate) fn leave(&self, group: &Key, holder: &HolderId) -> bool {
        let now = self.now();
        let left = {
            let mut state = self.lead().state();
            let key = (self.ns.clone(), group.clone());
            let Some(g) = state.groups.get_mut(&key) else {
                return false;
            };
            g.purge(now);
            let before = g.members.len();
            g.members.retain(|m| m.holder != *holder);
            let left = g.members.len() != before;
            if left {
                g.seq += 1;
            }
            left
        };
        if left {
            self.notify(Topic::Group(self.ns.clone(), group.clone()));
        }
        left
    }

    pub(crate) fn members(&self, group: &Key) -> Members {
        let now = self.now();
        let mut state = self.lead().state();
        let Some(g) = state.groups.get_mut(&(self.ns.clone(), group.clone())) else {
            return Members::default();
        };
        g.purge(now);
        Members {
            members: g
                .members
                .iter()
                .map(|m| MemberInfo {
                    holder: m.holder.clone(),
                    metadata: m.metadata.clone(),
                    joined: m.joined,
                    expires_in: m.expires.saturating_duration_since(now),
                })
                .collect(),
            seq: g.seq,
        }
    }

    pub(crate) fn begin_once(
        &self,
        job: &Key,
        occ: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        coord_api::validate_ttl(job, ttl)?;
        let now = self.now();
        let mut state = self.lead().state();
        if state.once.len() >= state.once_sweep_at.max(256) {
            state.once.retain(|_, r| !r.stale(now));
            state.once_sweep_at = state.once.len() * 2;
        }
        let r = state
            .once
            .entry((self.ns.clone(), job.clone(), occ.clone()))
            .or_insert(Once {
                run: None,
                attempts: 0,
                finished_until: None,
                touched: now,
            });
        r.purge(now);
        r.touched = now;
        if r.finished_until.is_some() {
            return Ok(OnceBegin::Finished);
        }
        if let Some(run) = &r.run {
            return Ok(OnceBegin::Running {
                retry_in: run.expires.saturating_duration_since(now),
            });
        }
        r.attempts += 1;
        r.run = Some(Run {
            holder: holder.clone(),
            expires: now + ttl,
        });
        Ok(OnceBegin::Started {
            token: FencingToken(self.table().next_token(now)),
            attempt: r.attempts,
        })
    }

    pub(crate) fn extend_once(
        &self,
        job: &Key,
        occ: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        coord_api::validate_ttl(job, ttl)?;
        let now = self.now();
        let mut state = self.lead().state();
        let Some(r) = state
            .once
            .get_mut(&(self.ns.clone(), job.clone(), occ.clone()))
        else {
            return Ok(false);
        };
        r.purge(now);
        Ok(match &mut r.run {
            Some(run) if run.holder == *holder => {
                run.expires = now + ttl;
                true
            }
            _ => false,
        })
    }

    pub(crate) fn end_once(
        &self,
        job: &Key,
        occ: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        if let Some(retention) = finished {
            coord_api::validate_ttl(job, retention)?;
        }
        let now = self.now();
        {
            let mut state = self.lead().state();
            let Some(r) = state
                .once
                .get_mut(&(self.ns.clone(), job.clone(), occ.clone()))
            else {
                return Ok(false);
            };
            r.purge(now);
            match &r.run {
                Some(run) if run.holder == *holder => {
                    r.run = None;
                    r.finished_until = finished.map(|ret| now + ret);
                    r.touched = now;
                }
                _ => return Ok(false),
            }
        }
        self.notify(Topic::Once(self.ns.clone(), job.clone(), occ.clone()));
        Ok(true)
    }
}
