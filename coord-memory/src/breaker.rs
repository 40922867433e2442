//! Circuit breakers, under one lock of their own: every operation is one
//! step on one breaker's [`Record`] (the SPI's rules, written once in
//! coord-api), birth (but for a peek) and sweep first, on the store's
//! clock in µs. A step that changed the generation wakes the breaker's
//! watchers after it let go of the lock (rule 10), and the journal is told
//! of every trial granted, ended or given back and every transition, in
//! the store's order.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use coord_api::{
    HolderId, InstanceId, Key, Namespace, Result,
    spi::{
        Action, BreakerBackend, BreakerState, Policy, Reported, Tally, Trial, Watch,
        breaker::{Record, check_why},
    },
};

use crate::{BreakerEvent, Event, MemoryBackend, watch::Topic};

/// Every breaker of a store.
#[derive(Default)]
pub(crate) struct Breakers {
    map: HashMap<(Namespace, Key), Record>,
}

impl MemoryBackend {
    /// Runs `op` on `name`'s record (born with `policy` if missing, swept
    /// first) under the lock at the store's time in µs; journals the
    /// transitions the step made, and wakes the watchers after.
    fn on_breaker<T>(
        &self,
        name: &Key,
        policy: &Policy,
        op: impl FnOnce(&mut Record, u64) -> T,
    ) -> Result<T> {
        policy.check(name)?;
        Ok((self.on_breaker_record(name, Some(policy), op)).expect("a missing record is born"))
    }

    /// [`on_breaker`](Self::on_breaker), the record born with `birth` when
    /// missing; with none, `None` and nothing made (a peek, rule 11).
    fn on_breaker_record<T>(
        &self,
        name: &Key,
        birth: Option<&Policy>,
        op: impl FnOnce(&mut Record, u64) -> T,
    ) -> Option<T> {
        let now_us = self.store.inner.table.wall_us(self.store.now());
        let (changed, out) = {
            let mut breakers = self.store.breakers();
            let key = (self.ns.clone(), name.clone());
            let record = match birth {
                Some(policy) => Some(
                    (breakers.map)
                        .entry(key)
                        .or_insert_with(|| Record::born(*policy, now_us)),
                ),
                None => breakers.map.get_mut(&key),
            }?;
            let before = record.generation();
            record.sweep(now_us);
            let out = op(record, now_us);
            let changed = record.generation() != before;
            if let (true, Some(journal)) = (changed, self.store.journal()) {
                for t in record.state(before, now_us).transitions {
                    journal.record(Event::Breaker(BreakerEvent::Transitioned {
                        breaker: name,
                        transition: &t,
                    }));
                }
            }
            (changed, out)
        };
        if changed {
            self.store
                .notify(|| Topic::Breaker(self.ns.clone(), name.clone()));
        }
        Some(out)
    }

    /// A trial for `holder` (rule 5), in `generation` only when one is
    /// named (a renewal), journaled when granted.
    fn trial_step(
        &self,
        name: &Key,
        policy: &Policy,
        generation: Option<u64>,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        coord_api::validate_ttl(name, ttl)?;
        self.on_breaker(name, policy, |r, now| {
            let (who, ttl_us) = (holder.to_string(), ttl.as_micros() as u64);
            let granted = match generation {
                Some(g) => r.trial_in(g, &who, ttl_us, now),
                None => r.trial(&who, ttl_us, now),
            };
            match granted {
                Some(token) => {
                    if let Some(journal) = self.store.journal() {
                        journal.record(Event::Breaker(BreakerEvent::TrialGranted {
                            breaker: name,
                            generation: r.generation(),
                            holder,
                            token,
                        }));
                    }
                    Trial::Granted {
                        token,
                        state: r.state(seen, now),
                    }
                }
                None => Trial::Refused(r.state(seen, now)),
            }
        })
    }
}

#[async_trait]
impl BreakerBackend for MemoryBackend {
    async fn state(&self, name: &Key, policy: &Policy, seen: u64) -> Result<BreakerState> {
        self.on_breaker(name, policy, |r, now| r.state(seen, now))
    }

    async fn peek(&self, name: &Key, seen: u64) -> Result<Option<BreakerState>> {
        Ok(self.on_breaker_record(name, None, |r, now| r.state(seen, now)))
    }

    async fn report(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        instance: &InstanceId,
        tally: Tally,
        seen: u64,
    ) -> Result<Reported> {
        tally.check(name)?;
        self.on_breaker(name, policy, |r, now| {
            let counted = r.report(generation, instance.as_str(), tally, now);
            Reported::new(counted, r.state(seen, now))
        })
    }

    async fn trial(
        &self,
        name: &Key,
        policy: &Policy,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        self.trial_step(name, policy, None, holder, ttl, seen)
    }

    async fn renew_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        self.trial_step(name, policy, Some(generation), holder, ttl, seen)
    }

    async fn trial_done(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        outcome: Tally,
        seen: u64,
    ) -> Result<Reported> {
        outcome.check_one(name)?;
        self.on_breaker(name, policy, |r, now| {
            let counted = r.trial_done(generation, &holder.to_string(), outcome, now);
            if let (true, Some(journal)) = (counted, self.store.journal()) {
                journal.record(Event::Breaker(BreakerEvent::TrialEnded {
                    breaker: name,
                    generation,
                    holder,
                }));
            }
            Reported::new(counted, r.state(seen, now))
        })
    }
    async fn give_back_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        seen: u64,
    ) -> Result<Reported> {
        self.on_breaker(name, policy, |r, now| {
            let given = r.give_back_trial(generation, &holder.to_string());
            if let (true, Some(journal)) = (given, self.store.journal()) {
                journal.record(Event::Breaker(BreakerEvent::TrialGivenBack {
                    breaker: name,
                    generation,
                    holder,
                }));
            }
            Reported::new(given, r.state(seen, now))
        })
    }

    async fn manual(
        &self,
        name: &Key,
        policy: &Policy,
        action: Action,
        by: &InstanceId,
        why: &str,
        seen: u64,
    ) -> Result<BreakerState> {
        check_why(name, why)?;
        self.on_breaker(name, policy, |r, now| {
            r.manual(action, by.as_str(), why, *policy, now);
            r.state(seen, now)
        })
    }

    async fn watch(&self, name: &Key) -> Result<Box<dyn Watch>> {
        Ok(self
            .store
            .watch(Topic::Breaker(self.ns.clone(), name.clone())))
    }
}
