//! Elections: one leader per election with an expiring term and a term
//! counter, under the store's `lead` lock (a quorum election counts its
//! group's live members in the same step), and the candidacies of waiting
//! campaigns, each expiring unless refreshed. Terms are drawn from the lease
//! table's token counter, so they obey the same monotonic rule.

use std::{collections::HashMap, time::Duration, time::SystemTime};

use async_trait::async_trait;
use coord_api::{
    FencingToken, HolderId, Instant, Key, LeaderInfo, Namespace, Quorum, Result,
    spi::{
        Campaign, Candidate, ElectionBackend, ResourceKind, Role, Watch,
        election::check_leader_metadata,
    },
};

use crate::{
    Event, Lead, Leased, MemoryBackend,
    ops::{Listed, Visit},
    watch::Topic,
};

/// Every election of a store.
#[derive(Default)]
pub(crate) struct Elections {
    map: HashMap<(Namespace, Key), Election>,
}

#[derive(Default)]
struct Election {
    leader: Option<Leader>,
    /// Terms granted so far.
    seq: u64,
    /// Waiting candidates (live or not yet purged).
    candidates: HashMap<HolderId, Candidacy>,
}

struct Candidacy {
    metadata: String,
    since: SystemTime,
    expires: Instant,
}

struct Leader {
    holder: HolderId,
    metadata: String,
    term: u64,
    since: SystemTime,
    seq: u64,
    expires: Instant,
}

impl Election {
    fn live(&mut self, now: Instant) -> Option<&mut Leader> {
        if self.leader.as_ref().is_some_and(|l| l.expires <= now) {
            self.leader = None;
        }
        self.leader.as_mut()
    }

    /// The candidacies still live at `now` (the others go).
    fn candidates(&mut self, now: Instant) -> &mut HashMap<HolderId, Candidacy> {
        self.candidates.retain(|_, c| c.expires > now);
        &mut self.candidates
    }
}

impl Leader {
    fn info(&self, now: Instant) -> LeaderInfo {
        LeaderInfo::new(
            self.holder.clone(),
            self.metadata.clone(),
            FencingToken(self.term),
            self.since,
            self.seq,
            self.expires.saturating_duration_since(now),
        )
    }
}

impl Elections {
    fn get(&mut self, ns: &Namespace, election: &Key) -> Option<&mut Election> {
        self.map.get_mut(&(ns.clone(), election.clone()))
    }

    /// When the current term expires, if after `after`.
    pub(crate) fn next_expiry(
        &self,
        ns: &Namespace,
        election: &Key,
        after: Instant,
    ) -> Option<Instant> {
        let e = self.map.get(&(ns.clone(), election.clone()))?;
        e.leader.as_ref().map(|l| l.expires).filter(|&x| x > after)
    }

    /// Shows `visit` the live term of every election of `ns` (or of
    /// `only`).
    pub(crate) fn visit(&self, ns: &Namespace, only: Option<&Key>, now: Instant, visit: Visit<'_>) {
        let one = only.map(|k| self.map.get_key_value(&(ns.clone(), k.clone())));
        let all = one.is_none().then(|| self.map.iter());
        let each = one.into_iter().flatten().chain(all.into_iter().flatten());
        for ((n, name), e) in each {
            let Some(l) = e.leader.as_ref().filter(|l| n == ns && l.expires > now) else {
                continue;
            };
            let candidates = e.candidates.values().filter(|c| c.expires > now).count();
            let listed = Listed {
                subscription: None,
                item: None,
                name,
                occurrence: None,
                role: Role::Leader,
                holder: &l.holder,
                token: Some(l.term),
                holds: 1,
                since: Some(l.since),
                until: l.expires,
                waiters: Some(u32::try_from(candidates).unwrap_or(u32::MAX)),
            };
            visit(ResourceKind::Election, listed);
        }
    }

    /// Ends the live term `term` of `election`: whose it was, or the live
    /// term (if any). The term counter is not touched.
    pub(crate) fn revoke(
        &mut self,
        ns: &Namespace,
        election: &Key,
        term: FencingToken,
        now: Instant,
    ) -> std::result::Result<HolderId, Vec<FencingToken>> {
        let Some(e) = self.get(ns, election) else {
            return Err(Vec::new());
        };
        match e.live(now) {
            Some(l) if l.term == term.get() => {
                let holder = l.holder.clone();
                e.leader = None;
                Ok(holder)
            }
            Some(l) => Err(vec![FencingToken(l.term)]),
            None => Err(Vec::new()),
        }
    }
}

impl Lead {
    /// Whether `quorum` (if any) is missing at `now`.
    fn no_quorum(&mut self, ns: &Namespace, quorum: Option<&Quorum>, now: Instant) -> bool {
        quorum.is_some_and(|q| self.groups.count(ns, &q.group, now) < q.min_members as usize)
    }
}

impl MemoryBackend {
    fn notify_election(&self, election: &Key) {
        self.store
            .notify(|| Topic::Election(self.ns.clone(), election.clone()));
    }
}

#[async_trait]
impl ElectionBackend for MemoryBackend {
    async fn campaign(
        &self,
        election: &Key,
        holder: &HolderId,
        metadata: &str,
        ttl: Duration,
        quorum: Option<&Quorum>,
        stand: bool,
    ) -> Result<Campaign> {
        coord_api::validate_ttl(election, ttl)?;
        check_leader_metadata(election, metadata)?;
        let now = self.store.now();
        let info = {
            let mut lead = self.store.lead();
            let no_quorum = lead.no_quorum(&self.ns, quorum, now);
            let e = (lead.elections.map)
                .entry((self.ns.clone(), election.clone()))
                .or_default();
            let leader = e.live(now).map(|l| l.info(now));
            if leader.is_some() || no_quorum {
                if stand {
                    let since = self.store.wall(now);
                    let c = e
                        .candidates(now)
                        .entry(holder.clone())
                        .or_insert(Candidacy {
                            metadata: String::new(),
                            since,
                            expires: now,
                        });
                    c.metadata = metadata.to_owned();
                    c.expires = now + ttl;
                }
                return Ok(Campaign::Busy { leader, no_quorum });
            }
            e.candidates.remove(holder);
            e.seq += 1;
            let leader = Leader {
                holder: holder.clone(),
                metadata: metadata.to_owned(),
                term: self.store.inner.table.next_token(now),
                since: self.store.wall(now),
                seq: e.seq,
                expires: now + ttl,
            };
            let info = leader.info(now);
            e.leader = Some(leader);
            if let Some(j) = self.store.journal() {
                j.record(Event::Granted {
                    lease: Leased::Term { election },
                    holder,
                    token: info.term,
                });
            }
            info
        };
        self.notify_election(election);
        Ok(Campaign::Elected(info))
    }

    async fn renew(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        ttl: Duration,
        quorum: Option<&Quorum>,
    ) -> Result<bool> {
        coord_api::validate_ttl(election, ttl)?;
        let now = self.store.now();
        let (held, stepped_down) = {
            let mut lead = self.store.lead();
            let no_quorum = lead.no_quorum(&self.ns, quorum, now);
            let outcome = match lead.elections.get(&self.ns, election) {
                Some(e) => match e.live(now) {
                    Some(l) if l.holder == *holder && l.term == term.get() => {
                        if no_quorum {
                            // Nobody leads without quorum.
                            e.leader = None;
                            (false, true)
                        } else {
                            l.expires = now + ttl;
                            (true, false)
                        }
                    }
                    _ => (false, false),
                },
                None => (false, false),
            };
            if let Some(j) = self.store.journal() {
                j.record(Event::Renewed {
                    lease: Leased::Term { election },
                    holder,
                    held: outcome.0,
                });
            }
            outcome
        };
        if stepped_down {
            self.notify_election(election);
        }
        Ok(held)
    }

    async fn resign(&self, election: &Key, holder: &HolderId, term: FencingToken) -> Result<bool> {
        let now = self.store.now();
        let resigned = {
            let mut lead = self.store.lead();
            let resigned = match lead.elections.get(&self.ns, election) {
                Some(e) => match e.live(now) {
                    Some(l) if l.holder == *holder && l.term == term.get() => {
                        e.leader = None;
                        true
                    }
                    _ => false,
                },
                None => false,
            };
            if let Some(j) = self.store.journal() {
                j.record(Event::Released {
                    lease: Leased::Term { election },
                    holder,
                    released: resigned,
                    finished: false,
                });
            }
            resigned
        };
        if resigned {
            self.notify_election(election);
        }
        Ok(resigned)
    }

    async fn withdraw_candidacy(&self, election: &Key, holder: &HolderId) -> Result<bool> {
        let now = self.store.now();
        let mut lead = self.store.lead();
        Ok((lead.elections.get(&self.ns, election))
            .is_some_and(|e| e.candidates(now).remove(holder).is_some()))
    }

    async fn candidates(&self, election: &Key) -> Result<Vec<Candidate>> {
        let now = self.store.now();
        let mut lead = self.store.lead();
        let Some(e) = lead.elections.get(&self.ns, election) else {
            return Ok(Vec::new());
        };
        let mut all: Vec<Candidate> = (e.candidates(now).iter())
            .map(|(h, c)| {
                let left = c.expires.saturating_duration_since(now);
                Candidate::new(h.clone(), c.metadata.clone(), c.since, left)
            })
            .collect();
        all.sort_by(|a, b| (a.since, &a.holder).cmp(&(b.since, &b.holder)));
        Ok(all)
    }

    async fn proclaim(
        &self,
        election: &Key,
        holder: &HolderId,
        term: FencingToken,
        metadata: &str,
    ) -> Result<bool> {
        check_leader_metadata(election, metadata)?;
        let now = self.store.now();
        let proclaimed = {
            let mut lead = self.store.lead();
            match lead
                .elections
                .get(&self.ns, election)
                .and_then(|e| e.live(now))
            {
                Some(l) if l.holder == *holder && l.term == term.get() => {
                    l.metadata = metadata.to_owned();
                    true
                }
                _ => false,
            }
        };
        if proclaimed {
            self.notify_election(election);
        }
        Ok(proclaimed)
    }

    async fn leader(&self, election: &Key) -> Result<Option<LeaderInfo>> {
        let now = self.store.now();
        let mut lead = self.store.lead();
        Ok((lead.elections.get(&self.ns, election)).and_then(|e| e.live(now).map(|l| l.info(now))))
    }

    async fn terms_granted(&self, election: &Key) -> Result<Option<u64>> {
        let mut lead = self.store.lead();
        Ok(Some(
            lead.elections.get(&self.ns, election).map_or(0, |e| e.seq),
        ))
    }

    async fn watch(&self, election: &Key) -> Result<Box<dyn Watch>> {
        Ok(self
            .store
            .watch(Topic::Election(self.ns.clone(), election.clone())))
    }
}
