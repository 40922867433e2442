//! The SPI of run-once jobs. The client type built on it is
//! [`Job`](crate::Job) (its `run_once`).

use std::time::Duration;

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{FencingToken, HolderId, Key, Result};

/// The state of one occurrence of a run-once job, as [`JobBackend::begin`]
/// found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

/// The state of one occurrence of a run-once job, as [`JobBackend::state`]
/// read it (without beginning anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnceState {
    /// No run holds it and none finished within its retention: never
    /// begun, or its last run ended unfinished, expired or was revoked (or
    /// its finished marker passed its retention). The next begin starts a
    /// run.
    Idle,
    /// A holder runs it; its lease ends in `retry_in` unless renewed.
    Running {
        /// Time left on the running holder's lease.
        retry_in: Duration,
    },
    /// A run finished (and its marker has not passed its retention).
    Finished,
}

/// Run-once jobs: occurrences of a job that run on one holder at a time and
/// never again once finished. Every method is one atomic step (one round
/// trip on a remote backend). Jobs have a key space of their own.
#[async_trait]
pub trait JobBackend: Send + Sync {
    /// Starts `occurrence` of `job` for `holder` with a lease of `ttl`, unless
    /// it is running elsewhere or finished (see [`OnceBegin`]).
    async fn begin(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin>;

    /// Extends the running occurrence's lease; `false` if `holder` no longer
    /// runs it (another holder runs it, its run ended or expired), and then
    /// nothing changes: no run is extended or begun again.
    async fn extend(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool>;

    /// Ends `holder`'s run of the occurrence. With `finished` (the body
    /// completed) the occurrence is marked finished for that retention, and
    /// never begins again while marked; without, it may begin again at once
    /// (a failed run). `false` if `holder` no longer ran it (another holder
    /// runs it, its run ended or expired): then nothing changes, nothing is
    /// marked or unmarked.
    async fn end(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool>;

    /// Gives back `holder`'s run whose begin got no answer (so no body ran
    /// under it): ends it unfinished, as [`end`](JobBackend::end) without
    /// `finished` does, and takes back the attempt that begin counted, so
    /// the next run is told the attempt it would have been told had the
    /// lost begin never been sent. `false` if `holder` no longer ran it:
    /// then nothing changes, and no attempt is taken back.
    ///
    /// Added after the family: the default ends the run unfinished and
    /// leaves its attempt counted, so that a backend written before it
    /// keeps compiling. Every backend should implement it.
    async fn give_back(&self, job: &Key, occurrence: &Key, holder: &HolderId) -> Result<bool> {
        self.end(job, occurrence, holder, None).await
    }

    /// The occurrence's state, as [`begin`](JobBackend::begin) would find
    /// it, read without changing anything: no run is begun, no attempt is
    /// counted, no lease is extended or ended, nothing is marked or
    /// unmarked, and an occurrence never begun is left as it was. A run
    /// whose lease expired and a marker past its retention read as gone
    /// (`Idle`), whether or not anything looked at the occurrence since.
    async fn state(&self, job: &Key, occurrence: &Key) -> Result<OnceState>;

    /// Wakes when the occurrence's run ends or its lease expires.
    async fn watch(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "jobs",
        name,
    }
}

fn jobs<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn JobBackend> {
    family!(backend, jobs, op(name))
}

#[async_trait]
impl<D: Dispatch> JobBackend for Dispatched<D> {
    async fn begin(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<OnceBegin> {
        let args = (job.clone(), occurrence.clone(), holder.clone(), ttl);
        self.carry(op("begin"), args, |b, (j, o, h, ttl)| async move {
            jobs(&b, "begin")?.begin(&j, &o, &h, ttl).await
        })
        .await
    }
    async fn extend(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<bool> {
        let args = (job.clone(), occurrence.clone(), holder.clone(), ttl);
        self.carry(op("extend"), args, |b, (j, o, h, ttl)| async move {
            jobs(&b, "extend")?.extend(&j, &o, &h, ttl).await
        })
        .await
    }
    async fn end(
        &self,
        job: &Key,
        occurrence: &Key,
        holder: &HolderId,
        finished: Option<Duration>,
    ) -> Result<bool> {
        let args = (job.clone(), occurrence.clone(), holder.clone(), finished);
        self.carry(op("end"), args, |b, (j, o, h, finished)| async move {
            jobs(&b, "end")?.end(&j, &o, &h, finished).await
        })
        .await
    }
    async fn give_back(&self, job: &Key, occurrence: &Key, holder: &HolderId) -> Result<bool> {
        let args = (job.clone(), occurrence.clone(), holder.clone());
        self.carry(op("give_back"), args, |b, (j, o, h)| async move {
            jobs(&b, "give_back")?.give_back(&j, &o, &h).await
        })
        .await
    }
    async fn state(&self, job: &Key, occurrence: &Key) -> Result<OnceState> {
        let args = (job.clone(), occurrence.clone());
        self.carry(op("state"), args, |b, (j, o)| async move {
            jobs(&b, "state")?.state(&j, &o).await
        })
        .await
    }
    async fn watch(&self, job: &Key, occurrence: &Key) -> Result<Box<dyn Watch>> {
        let args = (job.clone(), occurrence.clone());
        self.carry(op("watch"), args, |b, (j, o)| async move {
            jobs(&b, "watch")?.watch(&j, &o).await
        })
        .await
    }
}
