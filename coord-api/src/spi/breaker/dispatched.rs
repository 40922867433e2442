//! [`BreakerBackend`] for [`Dispatched`]: every step carried as a value.

use std::time::Duration;

use async_trait::async_trait;

use super::{Action, BreakerBackend, BreakerState, Policy, Reported, Tally, Trial};
use crate::{
    HolderId, InstanceId, Key, Result,
    spi::{
        DynBackend, Watch,
        dispatch::{Dispatch, Dispatched, Op, family},
    },
};

const fn op(name: &'static str) -> Op {
    Op {
        family: "breakers",
        name,
    }
}

fn breakers<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn BreakerBackend> {
    family!(backend, breakers, op(name))
}

#[async_trait]
impl<D: Dispatch> BreakerBackend for Dispatched<D> {
    async fn state(&self, name: &Key, policy: &Policy, seen: u64) -> Result<BreakerState> {
        let args = (name.clone(), *policy, seen);
        self.carry(op("state"), args, |b, (n, p, s)| async move {
            breakers(&b, "state")?.state(&n, &p, s).await
        })
        .await
    }
    async fn peek(&self, name: &Key, seen: u64) -> Result<Option<BreakerState>> {
        self.carry(op("peek"), (name.clone(), seen), |b, (n, s)| async move {
            breakers(&b, "peek")?.peek(&n, s).await
        })
        .await
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
        let args = (name.clone(), *policy, generation, *instance, tally, seen);
        self.carry(op("report"), args, |b, (n, p, g, i, t, s)| async move {
            breakers(&b, "report")?.report(&n, &p, g, &i, t, s).await
        })
        .await
    }
    async fn trial(
        &self,
        name: &Key,
        policy: &Policy,
        holder: &HolderId,
        ttl: Duration,
        seen: u64,
    ) -> Result<Trial> {
        let args = (name.clone(), *policy, holder.clone(), ttl, seen);
        self.carry(op("trial"), args, |b, (n, p, h, t, s)| async move {
            breakers(&b, "trial")?.trial(&n, &p, &h, t, s).await
        })
        .await
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
        let args = (name.clone(), *policy, generation, holder.clone(), ttl, seen);
        self.carry(
            op("renew_trial"),
            args,
            |b, (n, p, g, h, t, s)| async move {
                breakers(&b, "renew_trial")?
                    .renew_trial(&n, &p, g, &h, t, s)
                    .await
            },
        )
        .await
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
        let args = (
            name.clone(),
            *policy,
            generation,
            holder.clone(),
            outcome,
            seen,
        );
        self.carry(op("trial_done"), args, |b, (n, p, g, h, o, s)| async move {
            breakers(&b, "trial_done")?
                .trial_done(&n, &p, g, &h, o, s)
                .await
        })
        .await
    }
    async fn give_back_trial(
        &self,
        name: &Key,
        policy: &Policy,
        generation: u64,
        holder: &HolderId,
        seen: u64,
    ) -> Result<Reported> {
        let args = (name.clone(), *policy, generation, holder.clone(), seen);
        self.carry(
            op("give_back_trial"),
            args,
            |b, (n, p, g, h, s)| async move {
                breakers(&b, "give_back_trial")?
                    .give_back_trial(&n, &p, g, &h, s)
                    .await
            },
        )
        .await
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
        let args = (name.clone(), *policy, action, *by, why.to_owned(), seen);
        self.carry(op("manual"), args, |b, (n, p, a, by, w, s)| async move {
            breakers(&b, "manual")?.manual(&n, &p, a, &by, &w, s).await
        })
        .await
    }
    async fn watch(&self, name: &Key) -> Result<Box<dyn Watch>> {
        self.carry(op("watch"), (name.clone(),), |b, (n,)| async move {
            breakers(&b, "watch")?.watch(&n).await
        })
        .await
    }
}
