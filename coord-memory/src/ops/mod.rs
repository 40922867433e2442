//! Operations: instance presences (leases on the store's clock), leases
//! listed across families a page at a time ([`listing`]), fenced
//! revocation through each family's own state, the audit trail of each
//! namespace, and the probe.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    ops::Bound,
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, InstanceId, Instant, Key, LockSpace, Namespace, Result,
    spi::{
        AUDIT_KEPT, AuditRecord, Cursor, LeaseRecord, MAX_PAGE, OpsBackend, Page, Presence, Probe,
        Resource, ResourceKind, Revoked, ops::check_limit,
    },
};

use crate::{Event, Leased, MemoryBackend, watch::Topic};

mod listing;
#[cfg(test)]
mod tests;

use listing::Select;
pub(crate) use listing::{Listed, Visit};

/// The operations state of a store: every namespace's presences and audit
/// trail.
#[derive(Default)]
pub(crate) struct Ops {
    presences: HashMap<Namespace, Presences>,
    trails: HashMap<Namespace, Trail>,
}

/// A namespace's presences, by instance id (the listing's order).
#[derive(Default)]
struct Presences {
    map: BTreeMap<InstanceId, Announced>,
    /// The size at which expired presences are swept next.
    sweep_at: usize,
}

struct Announced {
    presence: Presence,
    until: Instant,
}

/// A namespace's audit trail: the last [`AUDIT_KEPT`] records; the record
/// at index `i` is the `dropped + i`-th ever appended.
#[derive(Default)]
struct Trail {
    records: VecDeque<AuditRecord>,
    dropped: u64,
}

/// The fewest presences kept before expired ones are swept.
const MIN_SWEEP: usize = 256;

impl Ops {
    fn live(&self, ns: &Namespace, instance: &InstanceId, now: Instant) -> Option<&Announced> {
        let p = self.presences.get(ns)?;
        p.map.get(instance).filter(|a| a.until > now)
    }
}

impl Presences {
    /// Drops expired presences once the map has doubled since the last
    /// sweep (so memory stays within twice the live presences).
    fn sweep(&mut self, now: Instant) {
        if self.map.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.map.retain(|_, a| a.until > now);
            self.sweep_at = self.map.len() * 2;
        }
    }
}

impl Announced {
    fn presence(&self, now: Instant) -> Presence {
        let p = self.presence.clone();
        let since = p.since;
        p.live(since, self.until.saturating_duration_since(now))
    }
}

fn instance_cursor(cursor: &Cursor) -> Result<Option<InstanceId>> {
    if cursor.is_start() {
        return Ok(None);
    }
    (InstanceId::new(cursor.as_str()).map(Some)).map_err(|_| {
        Error::invalid(format!(
            "instances: cursor {:?} was not written by this backend's listing",
            cursor.as_str()
        ))
    })
}

fn audit_cursor(cursor: &Cursor) -> Result<Option<u64>> {
    if cursor.is_start() {
        return Ok(None);
    }
    (cursor.as_str().parse().map(Some)).map_err(|_| {
        Error::invalid(format!(
            "audit: cursor {:?} was not written by this backend's trail",
            cursor.as_str()
        ))
    })
}

fn space_of(kind: ResourceKind) -> Option<LockSpace> {
    match kind {
        ResourceKind::Lock => Some(LockSpace::Lock),
        ResourceKind::RwLock => Some(LockSpace::RwLock),
        ResourceKind::Semaphore => Some(LockSpace::Semaphore),
        _ => None,
    }
}

impl MemoryBackend {
    fn ops_state(&self) -> std::sync::MutexGuard<'_, Ops> {
        (self.store.inner.ops.lock()).unwrap_or_else(|p| p.into_inner())
    }

    /// Shows `visit` the live leases of the families `wants` asks for
    /// (`only`: of one resource), one family's lock at a time.
    fn visit_leases(
        &self,
        only: Option<&Resource>,
        wants: impl Fn(ResourceKind) -> bool,
        now: Instant,
        visit: Visit<'_>,
    ) {
        let ns = &self.ns;
        let table = &self.store.inner.table;
        let lock_kinds = [
            ResourceKind::Lock,
            ResourceKind::RwLock,
            ResourceKind::Semaphore,
        ];
        match only {
            Some(r) => {
                if let Some(space) = space_of(r.kind).filter(|_| wants(r.kind)) {
                    table.visit_key(ns, space, &r.name, now, &mut *visit);
                }
            }
            // One pass over the table for every lock kind wanted.
            None if lock_kinds.iter().any(|&k| wants(k)) => {
                table.visit(ns, now, &mut |k, l| {
                    if wants(k) {
                        visit(k, l)
                    }
                });
            }
            None => {}
        }
        let name = only.map(|r| &r.name);
        if wants(ResourceKind::Election) || wants(ResourceKind::Group) {
            let lead = self.store.lead();
            if wants(ResourceKind::Election) {
                lead.elections.visit(ns, name, now, &mut *visit);
            }
            if wants(ResourceKind::Group) {
                lead.groups.visit(ns, name, now, &mut *visit);
            }
        }
        if wants(ResourceKind::Queue) {
            let only = only.map(|r| (&r.name, r.item));
            self.store.queues().visit(ns, only, now, &mut *visit);
        }
        if wants(ResourceKind::Topic) {
            let only = only.and_then(|r| Some((&r.name, r.subscription.as_ref()?, r.item)));
            self.store.topics().visit(ns, only, now, &mut *visit);
        }
        if wants(ResourceKind::Job) {
            let occurrence = only.and_then(|r| Some((&r.name, r.occurrence.as_ref()?)));
            if only.is_none() || occurrence.is_some() {
                self.store.jobs().visit(ns, occurrence, now, visit);
            }
        }
    }

    /// The journal's view of a revoked lease: its holder's release.
    fn journal_revoke(&self, lease: Leased<'_>, holder: &coord_api::HolderId) {
        if let Some(j) = self.store.journal() {
            j.record(Event::Released {
                lease,
                holder,
                released: true,
                finished: false,
            });
        }
    }
}

#[async_trait]
impl OpsBackend for MemoryBackend {
    async fn announce(&self, presence: &Presence, ttl: Duration) -> Result<()> {
        coord_api::validate_ttl(&Key::new(presence.instance.as_str())?, ttl)?;
        presence.check()?;
        let now = self.store.now();
        let mut ops = self.ops_state();
        let mine = ops.presences.entry(self.ns.clone()).or_default();
        mine.sweep(now);
        let since = match mine.map.get(&presence.instance) {
            Some(a) if a.until > now => a.presence.since,
            _ => self.store.wall(now),
        };
        let presence = presence.clone().live(since, Duration::ZERO);
        let until = now + ttl;
        mine.map
            .insert(presence.instance, Announced { presence, until });
        Ok(())
    }

    async fn withdraw(&self, instance: &InstanceId) -> Result<bool> {
        let now = self.store.now();
        let mut ops = self.ops_state();
        let Some(mine) = ops.presences.get_mut(&self.ns) else {
            return Ok(false);
        };
        let gone = mine.map.remove(instance);
        if mine.map.is_empty() {
            ops.presences.remove(&self.ns);
        }
        Ok(gone.is_some_and(|a| a.until > now))
    }

    async fn presence(&self, instances: &[InstanceId]) -> Result<Vec<Option<Presence>>> {
        if instances.len() > MAX_PAGE as usize {
            return Err(Error::invalid(format!(
                "presence: at most {MAX_PAGE} instances at once (asked for {})",
                instances.len()
            )));
        }
        let now = self.store.now();
        let ops = self.ops_state();
        Ok((instances.iter())
            .map(|i| ops.live(&self.ns, i, now).map(|a| a.presence(now)))
            .collect())
    }

    async fn instances(&self, cursor: &Cursor, limit: u32) -> Result<Page<Presence>> {
        check_limit("instances", limit)?;
        let after = instance_cursor(cursor)?;
        let now = self.store.now();
        let ops = self.ops_state();
        let Some(mine) = ops.presences.get(&self.ns) else {
            return Ok(Page::new(Vec::new(), None));
        };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let items: Vec<Presence> = (mine.map.range((from, Bound::Unbounded)))
            .filter(|(_, a)| a.until > now)
            .take(limit as usize)
            .map(|(_, a)| a.presence(now))
            .collect();
        let next = (items.len() == limit as usize)
            .then(|| items.last().map(|p| Cursor::from_text(p.instance.as_str())))
            .flatten();
        Ok(Page::new(items, next))
    }

    async fn leases(
        &self,
        kind: Option<ResourceKind>,
        prefix: &str,
        cursor: &Cursor,
        limit: u32,
    ) -> Result<Page<LeaseRecord>> {
        check_limit("leases", limit)?;
        let now = self.store.now();
        let mut select = Select::new(kind, prefix, cursor, limit, now)?;
        let wanted: Vec<ResourceKind> = (ResourceKind::ALL.into_iter())
            .filter(|k| select.wants(*k))
            .collect();
        self.visit_leases(None, |k| wanted.contains(&k), now, &mut |k, l| {
            select.offer(k, l)
        });
        Ok(select.page())
    }

    async fn describe(&self, resource: &Resource) -> Result<Vec<LeaseRecord>> {
        resource.check()?;
        let now = self.store.now();
        let mut records = Vec::new();
        self.visit_leases(Some(resource), |k| k == resource.kind, now, &mut |k, l| {
            records.push(l.record(k, now))
        });
        Ok(records)
    }

    async fn revoke(&self, resource: &Resource, token: FencingToken) -> Result<Revoked> {
        resource.check()?;
        let now = self.store.now();
        let (ns, name) = (&self.ns, &resource.name);
        let outcome = match (resource.kind, &resource.occurrence) {
            (ResourceKind::Election, _) => {
                let mut lead = self.store.lead();
                let outcome = lead.elections.revoke(ns, name, token, now);
                if let Ok(holder) = &outcome {
                    self.journal_revoke(Leased::Term { election: name }, holder);
                }
                drop(lead);
                if outcome.is_ok() {
                    self.store
                        .notify(|| Topic::Election(ns.clone(), name.clone()));
                }
                outcome
            }
            (ResourceKind::Job, Some(occurrence)) => {
                let mut runs = self.store.jobs();
                let outcome = runs.revoke(ns, name, occurrence, token, now);
                if let Ok(holder) = &outcome {
                    let lease = Leased::Run {
                        job: name,
                        occurrence,
                    };
                    self.journal_revoke(lease, holder);
                }
                drop(runs);
                if outcome.is_ok() {
                    let topic = || Topic::Run(ns.clone(), name.clone(), occurrence.clone());
                    self.store.notify(topic);
                }
                outcome
            }
            (ResourceKind::Queue, _) => {
                let Some(item) = resource.item else {
                    return Err(Error::invalid(format!(
                        "{resource}: name the item whose delivery to revoke ({resource}@ITEM; \
                         `describe` lists them)"
                    )));
                };
                self.revoke_delivery(name, item, token)
            }
            (ResourceKind::Topic, _) => {
                let (Some(sub), Some(offset)) = (&resource.subscription, resource.item) else {
                    return Err(Error::invalid(format!(
                        "{resource}: name the event whose delivery to revoke ({resource}@OFFSET; \
                         `describe` lists them)"
                    )));
                };
                self.revoke_event_delivery(name, sub, offset, token)
            }
            (kind, _) => {
                let Some(space) = space_of(kind) else {
                    return Err(Error::invalid(format!(
                        "{resource}: its leases carry no fencing token, so none can be revoked"
                    )));
                };
                let table = &self.store.inner.table;
                let outcome = table.revoke(ns, space, name, token, now);
                outcome.map(|(holder, kind)| {
                    self.journal_revoke(Leased::Lock { kind, key: name }, &holder);
                    self.notify_lock(space, name);
                    holder
                })
            }
        };
        Ok(match outcome {
            Ok(holder) => Revoked::Released { holder },
            Err(current) => Revoked::NotFound { current },
        })
    }

    async fn record(&self, record: &AuditRecord) -> Result<()> {
        record.check()?;
        let now = self.store.now();
        let record = record.clone().at(self.store.wall(now));
        let mut ops = self.ops_state();
        let trail = ops.trails.entry(self.ns.clone()).or_default();
        trail.records.push_back(record);
        while trail.records.len() > AUDIT_KEPT as usize {
            trail.records.pop_front();
            trail.dropped += 1;
        }
        Ok(())
    }

    async fn audit(&self, cursor: &Cursor, limit: u32) -> Result<Page<AuditRecord>> {
        check_limit("audit", limit)?;
        let before = audit_cursor(cursor)?;
        let ops = self.ops_state();
        let Some(trail) = ops.trails.get(&self.ns) else {
            return Ok(Page::new(Vec::new(), None));
        };
        // Records `dropped..end` are kept; the page is the newest `limit`
        // of those before the cursor's.
        let end = trail.dropped + trail.records.len() as u64;
        let upto = before.map_or(end, |b| b.min(end));
        let from = upto.saturating_sub(limit as u64).max(trail.dropped);
        let items: Vec<AuditRecord> = (from..upto)
            .rev()
            .map(|seq| trail.records[(seq - trail.dropped) as usize].clone())
            .collect();
        let next = (from > trail.dropped && !items.is_empty())
            .then(|| Cursor::from_text(from.to_string()));
        Ok(Page::new(items, next))
    }

    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::new(self.store.wall(self.store.now()), None))
    }
}
