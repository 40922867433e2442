//! Run-once jobs: per occurrence, the running attempt's lease, the attempt
//! count and the finished marker. Run tokens are drawn from the lease
//! table's token counter, so they obey the same monotonic rule.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use coord_api::{
    FencingToken, HolderId, Instant, Key, Namespace, Result,
    spi::{JobBackend, OnceBegin, OnceState, ResourceKind, Role, Watch},
};

use crate::{
    Event, Leased, MemoryBackend,
    ops::{Listed, Visit},
    watch::Topic,
};

/// Every occurrence of every job of a store.
#[derive(Default)]
pub(crate) struct Runs {
    map: HashMap<(Namespace, Key, Key), Once>,
    /// The size at which stale records are swept next.
    sweep_at: usize,
}

struct Once {
    run: Option<Run>,
    attempts: u32,
    finished_until: Option<Instant>,
    touched: Instant,
}

struct Run {
    holder: HolderId,
    token: u64,
    expires: Instant,
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

    /// Nothing worth remembering: a day passed since it was last in use
    /// (its last step, its run's deadline, its finished marker's end), as
    /// Redis keeps an occurrence's attempts. A run or a marker that ended
    /// unnoticed counts as ended: nothing drops them until the next step
    /// on the occurrence.
    fn stale(&self, now: Instant) -> bool {
        let last = (self.run.as_ref().map(|r| r.expires))
            .into_iter()
            .chain(self.finished_until)
            .fold(self.touched, Instant::max);
        now.saturating_duration_since(last) > coord_api::MAX_TTL
    }
}

impl Runs {
    fn get(&mut self, ns: &Namespace, job: &Key, occ: &Key, now: Instant) -> Option<&mut Once> {
        let once = self.map.get_mut(&(ns.clone(), job.clone(), occ.clone()))?;
        once.purge(now);
        Some(once)
    }

    /// When the running attempt's lease expires, if after `after`.
    pub(crate) fn next_expiry(
        &self,
        ns: &Namespace,
        job: &Key,
        occ: &Key,
        after: Instant,
    ) -> Option<Instant> {
        let once = self.map.get(&(ns.clone(), job.clone(), occ.clone()))?;
        once.run.as_ref().map(|r| r.expires).filter(|&x| x > after)
    }

    /// Shows `visit` every live run of `ns` (or of the occurrence `only`).
    pub(crate) fn visit(
        &self,
        ns: &Namespace,
        only: Option<(&Key, &Key)>,
        now: Instant,
        visit: Visit<'_>,
    ) {
        let key = only.map(|(job, occ)| (ns.clone(), job.clone(), occ.clone()));
        let one = key.as_ref().map(|k| self.map.get_key_value(k));
        let all = one.is_none().then(|| self.map.iter());
        let each = one.into_iter().flatten().chain(all.into_iter().flatten());
        for ((_, job, occ), once) in each.filter(|((n, _, _), _)| n == ns) {
            let Some(run) = once.run.as_ref().filter(|r| r.expires > now) else {
                continue;
            };
            let listed = Listed {
                subscription: None,
                item: None,
                name: job,
                occurrence: Some(occ),
                role: Role::Run,
                holder: &run.holder,
                token: Some(run.token),
                holds: 1,
                since: None,
                until: run.expires,
                waiters: None,
            };
            visit(ResourceKind::Job, listed);
        }
    }

    /// Ends the live run of the occurrence whose token is `token`, as a
    /// crashed run ends (it may begin again; its attempt stays counted):
    /// whose it was, or the live run's token (if any).
    pub(crate) fn revoke(
        &mut self,
        ns: &Namespace,
        job: &Key,
        occ: &Key,
        token: FencingToken,
        now: Instant,
    ) -> std::result::Result<HolderId, Vec<FencingToken>> {
        let Some(once) = self.get(ns, job, occ, now) else {
            return Err(Vec::new());
        };
        match &once.run {
            Some(run) if run.token == token.get() => {
                let holder = run.holder.clone();
                once.run = None;
                once.touched = now;
                Ok(holder)
            }
            Some(run) => Err(vec![FencingToken(run.token)]),
            None => Err(Vec::new()),
        }
    }
}

impl MemoryBackend {
    /// Ends `holder`'s run (`finished`: marked for that retention); with
    /// `give_back`, its attempt is taken back. Whether `holder` ran it.
    fn end_run(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
        give_back: bool,
    ) -> Result<bool> {
        let now = self.store.now();
        let ended = {
            let mut runs = self.store.jobs();
            let ended = match runs.get(&self.ns, job, occurrence, now) {
                Some(once) if once.run.as_ref().is_some_and(|r| r.holder == *holder) => {
                    once.run = None;
                    once.finished_until = finished.map(|ret| now + ret);
                    once.touched = now;
                    if give_back {
                        once.attempts = once.attempts.saturating_sub(1);
                    }
                    true
                }
                _ => false,
            };
            if let Some(j) = self.store.journal() {
                j.record(Event::Released {
                    lease: Leased::Run { job, occurrence },
                    holder,
                    released: ended,
                    finished: ended && finished.is_some(),
                });
            }
            ended
        };
        if ended {
            self.store
                .notify(|| Topic::Run(self.ns.clone(), job.clone(), occurrence.clone()));
        }
        Ok(ended)
    }
}

#[async_trait]
impl JobBackend for MemoryBackend {
    async fn begin(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        coord_api::validate_ttl(job, ttl)?;
        let now = self.store.now();
        let mut runs = self.store.jobs();
        if runs.map.len() >= runs.sweep_at.max(256) {
            runs.map.retain(|_, r| !r.stale(now));
            runs.sweep_at = runs.map.len() * 2;
        }
        let once = (runs.map)
            .entry((self.ns.clone(), job.clone(), occurrence.clone()))
            .or_insert(Once {
                run: None,
                attempts: 0,
                finished_until: None,
                touched: now,
            });
        once.purge(now);
        once.touched = now;
        if once.finished_until.is_some() {
            return Ok(OnceBegin::Finished);
        }
        if let Some(run) = &once.run {
            return Ok(OnceBegin::Running {
                retry_in: run.expires.saturating_duration_since(now),
            });
        }
        once.attempts += 1;
        let token = FencingToken(self.store.inner.table.next_token(now));
        once.run = Some(Run {
            holder: holder.clone(),
            token: token.get(),
            expires: now + ttl,
        });
        if let Some(j) = self.store.journal() {
            j.record(Event::Granted {
                lease: Leased::Run { job, occurrence },
                holder,
                token,
            });
        }
        Ok(OnceBegin::Started {
            token,
            attempt: once.attempts,
        })
    }

    async fn extend(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        coord_api::validate_ttl(job, ttl)?;
        let now = self.store.now();
        let mut runs = self.store.jobs();
        let held = match runs.get(&self.ns, job, occurrence, now) {
            Some(Once { run: Some(run), .. }) if run.holder == *holder => {
                run.expires = now + ttl;
                true
            }
            _ => false,
        };
        if let Some(j) = self.store.journal() {
            j.record(Event::Renewed {
                lease: Leased::Run { job, occurrence },
                holder,
                held,
            });
        }
        Ok(held)
    }

    async fn end(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        if let Some(retention) = finished {
            coord_api::validate_ttl(job, retention)?;
        }
        self.end_run(job, occurrence, holder, finished, false)
    }

    async fn give_back(&self, job: &Key, occurrence: &Key, holder: &HolderId) -> Result<bool> {
        self.end_run(job, occurrence, holder, None, true)
    }

    async fn state(&self, job: &Key, occurrence: &Key) -> Result<OnceState> {
        let now = self.store.now();
        let runs = self.store.jobs();
        let key = (self.ns.clone(), job.clone(), occurrence.clone());
        let Some(once) = runs.map.get(&key) else {
            return Ok(OnceState::Idle);
        };
        if once.finished_until.is_some_and(|t| t > now) {
            return Ok(OnceState::Finished);
        }
        Ok(match once.run.as_ref().filter(|r| r.expires > now) {
            Some(run) => OnceState::Running {
                retry_in: run.expires.saturating_duration_since(now),
            },
            None => OnceState::Idle,
        })
    }

    async fn watch(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn Watch>> {
        let topic = Topic::Run(self.ns.clone(), job.clone(), occurrence.clone());
        Ok(self.store.watch(topic))
    }
}

#[cfg(test)]
mod tests;
