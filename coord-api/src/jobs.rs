//! Singleton jobs: a body that runs only while its lease is held, and
//! run-once occurrences that never run twice.

use std::{future::Future, time::Duration};

use crate::{
    Client, Error, FencingToken, HolderId, Key, LostSignal, OnceBegin, Release, Result, Watch,
    clock::Instant,
    handle::{Handle, option_setters},
    lease::{
        BoxFuture, Guard, Lease, Tenure,
        metrics::{self, Stage},
        released,
        undo::{granting, resend_while_valid},
        wait::{Attempts, Step, wait_for},
    },
    spi::OnceState,
    trace::{self, Outcome, Site},
};

/// A run's tenure: renewed and ended on its occurrence. Released (a dropped
/// or cancelled run) means ended unfinished: another instance may retry it.
struct Run {
    job: Key,
    occurrence: Key,
    holder: HolderId,
}

impl Tenure for Run {
    fn family(&self) -> &'static str {
        "job"
    }

    fn kind(&self) -> &'static str {
        "run"
    }

    fn key(&self) -> &Key {
        &self.job
    }

    fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        let (job, occ, holder) = (&self.job, &self.occurrence, &self.holder);
        Ok(client.jobs()?.extend(job, occ, holder, ttl))
    }

    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let jobs = client.jobs()?;
        Ok(Box::pin(async move {
            let (job, occ, holder) = (&self.job, &self.occurrence, &self.holder);
            Ok(released(jobs.end(job, occ, holder, None).await?))
        }))
    }

    fn counted(&self) -> bool {
        false
    }
}

fn site<'a>(
    op: &'static str,
    job: &'a Key,
    holder: &'a HolderId,
    token: Option<FencingToken>,
) -> Site<'a> {
    Site {
        op,
        family: "job",
        kind: "run",
        key: job,
        holder: Some(holder),
        token,
    }
}

/// What a job body gets: the fencing token of its lease, the attempt number
/// (run-once retries count up), and the lost signal to stop on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobContext {
    /// The fencing token: pass it to everything the job writes.
    pub token: FencingToken,
    /// 1 for a first run; more when a run-once occurrence is retried after a
    /// crashed run's lease expired.
    pub attempt: u32,
    /// Fires when the lease is lost: stop, someone else may run the job.
    pub lost: LostSignal,
}

/// What [`Job::run_once`] did. Non-exhaustive: match it with a wildcard
/// arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOnce<T> {
    /// This instance ran the occurrence to completion; the body's value.
    Ran(T),
    /// A run of the occurrence had already finished (here or elsewhere).
    AlreadyFinished,
}

/// A singleton job: its body runs on one instance at a time.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::RunOnce;
/// let backup = client.job("nightly-backup");
/// // Every replica calls this at the cron tick; exactly one runs it.
/// match backup.run_once("2026-11-26", |ctx| async move {
///     println!("backing up (attempt {}, token {})", ctx.attempt, ctx.token);
/// }).await? {
///     RunOnce::Ran(()) => println!("done here"),
///     RunOnce::AlreadyFinished => println!("another replica did it"),
///     // RunOnce may gain answers: treat one this code does not know as
///     // an error naming it.
///     other => return Err(coord_api::Error::backend("nightly-backup", format!("{other:?}"))),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Job {
    handle: Handle,
    retention: Duration,
}

impl Job {
    /// How long a finished occurrence is remembered by default (the longest
    /// TTL a backend keeps: 24 h).
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

    pub(crate) fn new(client: Client, name: &str) -> Job {
        Job {
            handle: Handle::new(client, name),
            retention: Self::DEFAULT_RETENTION,
        }
    }

    option_setters!();

    /// How long a finished occurrence is remembered (1 ms ..= 24 h, default
    /// 24 h); within it the occurrence never runs again.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Waits for the job's lease (the lock of the same name), then runs
    /// `body` while holding it, and releases it. The body should stop when
    /// `ctx.lost` fires. Once the body ran, its value is returned even if
    /// the lease was lost meanwhile or its release failed (a warning is
    /// traced; a release that could not reach the backend is retried in the
    /// background).
    pub async fn run<T, F, Fut>(&self, body: F) -> Result<T>
    where
        F: FnOnce(JobContext) -> Fut,
        Fut: Future<Output = T>,
    {
        let lock = self.handle.client.lock(self.handle.key()?.as_str());
        let guard = lock.with_options(self.handle.opts().clone()).lock().await?;
        let ctx = JobContext {
            token: guard.token(),
            attempt: 1,
            lost: guard.lost_signal(),
        };
        let out = body(ctx).await;
        // The body ran: its value is the answer whatever the release meets
        // (a lease is lost mostly through a partition, which is exactly when
        // the release fails too; the engine sends a failed one again).
        match guard.release().await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %self.handle.key_str(), "job finished after its lease was lost")
            }
            Err(e) => tracing::warn!(
                job = %self.handle.key_str(),
                error = %e,
                "job finished; its lease could not be released (sent again in the background)"
            ),
        }
        Ok(out)
    }

    /// Runs occurrence `occurrence` of the job (e.g. one per cron tick)
    /// unless it already finished; never on two instances at once, never
    /// again within the retention once a run finished. While it runs
    /// elsewhere this waits (up to `wait_timeout`): the other run may finish
    /// (then `AlreadyFinished`) or crash (then this instance retries it after
    /// the crashed run's lease expired, with `ctx.attempt` counting up).
    ///
    /// If the lease is lost while the body runs, the run does not count as
    /// finished and `Error::LeaseLost` is returned: the occurrence may run
    /// again, so the body must use `ctx.token` to fence what it writes.
    ///
    /// A body that returns has run, whatever it returns: a `T` that is an
    /// `Err` is handed back in `RunOnce::Ran` and the occurrence counts as
    /// finished (not retried within the retention). For a failure to be
    /// retried, cancel the `run_once` instead (the run ends unfinished), or
    /// run the retry as another occurrence.
    ///
    /// # Cancel safety
    /// Cancelling ends the run unfinished (another instance may retry it),
    /// also once the body returned, while the run's end is on its way.
    pub async fn run_once<T, F, Fut>(&self, occurrence: &str, body: F) -> Result<RunOnce<T>>
    where
        F: FnOnce(JobContext) -> Fut,
        Fut: Future<Output = T>,
    {
        let (job, opts) = self.handle.checked()?;
        let occ = crate::key::part_key("job", job, "occurrence", occurrence)?;
        // The longest a backend keeps a finished marker: a TTL's bounds.
        crate::key::check_in_ttl_range("retention", "job", job, self.retention)?;
        let client = &self.handle.client;
        client.jobs()?;
        let holder = HolderId::new(*client.instance_id());
        let rounds = OnceRounds {
            client,
            job,
            occ: &occ,
            holder: &holder,
            ttl: opts.ttl,
        };
        let Some((token, attempt, t_sent)) = wait_for(client, opts, None, rounds).await? else {
            return Ok(RunOnce::AlreadyFinished);
        };
        let run = Run {
            job: job.clone(),
            occurrence: occ.clone(),
            holder: holder.clone(),
        };
        let validity = self.handle.validity();
        let lease = Lease::start(client.clone(), run, Some(token), opts, validity, t_sent)?;
        let guard = Guard::new(lease);
        metrics::run(client, job, Stage::Started);
        let ctx = JobContext {
            token,
            attempt,
            lost: guard.lost_signal(),
        };
        let out = body(ctx).await;
        // A run whose lease was lost while the body ran does not count, even
        // if the backend still has it (the local validity ran out first, or a
        // renewal was refused): the body may have stopped at `ctx.lost`, and
        // another instance may already run the occurrence. End it unfinished
        // so that it can be retried at once.
        let lost = !guard.is_held();
        let retention = (!lost).then_some(self.retention);
        let ending = Ending {
            client,
            job,
            occ: &occ,
            holder: &holder,
            token,
            ttl: opts.ttl,
        };
        // The guard stays armed until the end answered: a `run_once`
        // cancelled meanwhile ends the run unfinished in the background (the
        // guard's drop), as a cancelled body does, rather than leaving it
        // held for nobody, unrenewed, until its TTL.
        let finished = ending.end(guard.lease(), retention).await;
        let lease = guard.into_lease();
        let failed = lost || !matches!(finished, Ok(true));
        lease.mark(failed);
        let stage = if failed {
            Stage::Failed
        } else {
            Stage::Finished
        };
        metrics::run(client, job, stage);
        let lost_error = || Error::LeaseLost {
            key: format!("{}/{}", job.as_str(), occ.as_str()),
            backend: client.backend().to_string(),
        };
        if lost {
            return Err(lost_error());
        }
        match finished? {
            true => Ok(RunOnce::Ran(out)),
            false => Err(lost_error()),
        }
    }
}

/// The end of one run of an occurrence.
struct Ending<'a> {
    client: &'a Client,
    job: &'a Key,
    occ: &'a Key,
    holder: &'a HolderId,
    token: FencingToken,
    ttl: Duration,
}

impl Ending<'_> {
    /// Ends the run, finished for `retention` if given: whether it was
    /// ended as asked. While the lease is still held (renewed meanwhile, and
    /// within its local validity) an end that could not reach the backend
    /// is sent again: the run is still this client's to end, and giving up
    /// would leave a completed run to expire unfinished and run again
    /// elsewhere. Repeating it is harmless (the backend checks the holder);
    /// when an end that failed may have been applied after all, the retry
    /// answers `false`, and the occurrence then tells what happened.
    async fn end(&self, lease: &Lease, retention: Option<Duration>) -> Result<bool> {
        // A renewal refused from now on may be this end's doing (applied
        // before it, answered after): the end's answer tells, not that.
        lease.ending();
        let end = || async move {
            let end = (self.client.jobs()?).end(self.job, self.occ, self.holder, retention);
            let site = || site("end", self.job, self.holder, Some(self.token));
            trace::call(self.client, site, end, Outcome::held).await
        };
        let first = end().await;
        match resend_while_valid(self.client, lease, self.ttl, first, end).await {
            (Ok(false), true) if retention.is_some() => self.finished().await,
            (res, _) => res,
        }
    }

    /// After an end that failed and whose retry found the run no longer
    /// this holder's: whether the occurrence finished (the failed end was
    /// applied). A look that changes nothing: it begins no run (which
    /// would count an attempt, and hold the occurrence from a rival while
    /// it was ended again).
    async fn finished(&self) -> Result<bool> {
        let (client, job, occ, holder) = (self.client, self.job, self.occ, self.holder);
        let state = client.jobs()?.state(job, occ);
        let site = || site("state", job, holder, Some(self.token));
        let state = trace::call(client, site, state, Outcome::ok).await?;
        Ok(matches!(state, OnceState::Finished))
    }
}

/// Gives back `holder`'s run begun without an answer: ended unfinished, its
/// attempt not counted, for no body ran under it (a clean-up: nothing to
/// answer; the engine runs it through the closer, also once the client is
/// closed).
async fn give_back(client: Client, job: Key, occ: Key, holder: HolderId) -> Result<()> {
    let call = client.jobs()?.give_back(&job, &occ, &holder);
    let site = || site("give_back", &job, &holder, None);
    trace::call(&client, site, call, Outcome::held)
        .await
        .map(drop)
}

struct OnceRounds<'a> {
    client: &'a Client,
    job: &'a Key,
    occ: &'a Key,
    holder: &'a HolderId,
    ttl: Duration,
}

impl Attempts for OnceRounds<'_> {
    /// `None`: already finished; else the run's token, attempt and send time.
    type Output = Option<(FencingToken, u32, Instant)>;

    async fn attempt(&mut self) -> Result<Step<Self::Output>> {
        let (client, job, occ, holder) = (self.client, self.job, self.occ, self.holder);
        let t_sent = client.clock().now();
        let begin = client.jobs()?.begin(job, occ, holder, self.ttl);
        let classify = |b: &OnceBegin| match b {
            OnceBegin::Started { token, .. } => Outcome::Granted(*token),
            OnceBegin::Running { .. } => Outcome::Busy,
            OnceBegin::Finished => Outcome::Ok,
        };
        let begin = trace::call(client, || site("begin", job, holder, None), begin, classify);
        // A begin that got no answer may have started a run: give it back
        // (it may be retried at once, and is told the same attempt).
        let begin = granting(client, self.ttl, begin, || {
            let (job, occ, holder) = (job.clone(), occ.clone(), holder.clone());
            move |client: Client| give_back(client, job.clone(), occ.clone(), holder.clone())
        })
        .await?;
        Ok(match begin {
            OnceBegin::Started { token, attempt } => Step::Done(Some((token, attempt, t_sent))),
            OnceBegin::Running { retry_in } => Step::Busy(Some(retry_in)),
            OnceBegin::Finished => Step::Done(None),
        })
    }

    async fn subscribe(&self) -> Result<Box<dyn Watch>> {
        self.client.jobs()?.watch(self.job, self.occ).await
    }

    fn what(&self) -> String {
        format!(
            "occurrence {:?} of job {:?}",
            self.occ.as_str(),
            self.job.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::Counting;

    /// A retention out of range is `InvalidArgument` naming the retention,
    /// the job and the range, before anything else: it was reported as a
    /// TTL out of range ("ttl 0ns for key \"j\""), which sent its reader
    /// to an option that was fine.
    #[tokio::test]
    async fn a_retention_out_of_range_is_named_as_such() {
        let client = Client::new(Arc::new(Counting::default()));
        for bad in [Duration::ZERO, crate::MAX_TTL + Duration::from_millis(1)] {
            let job = client.job("j").retention(bad);
            let res = job.run_once("o", |_| async { panic!("ran") }).await;
            let Err(Error::InvalidArgument { message }) = res else {
                panic!("{bad:?}: expected InvalidArgument, got {res:?}");
            };
            for part in ["retention", "\"j\"", "1ms", "86400s"] {
                assert!(
                    message.contains(part),
                    "{bad:?}: {message:?} names no {part}"
                );
            }
        }
    }

    /// A bad occurrence is `InvalidArgument` naming the occurrence and its
    /// job, with the key's rule: it was reported as a bad key ("key is
    /// empty"), which sent its reader to the job's name.
    #[tokio::test]
    async fn a_bad_occurrence_is_named_as_such() {
        let client = Client::new(Arc::new(Counting::default()));
        let long = "o".repeat(513);
        for (bad, rule) in [("", "1..=512"), (long.as_str(), "512"), ("a\nb", "control")] {
            let res = (client.job("j"))
                .run_once(bad, |_| async { panic!("ran") })
                .await;
            let Err(Error::InvalidArgument { message }) = res else {
                panic!("{bad:?}: expected InvalidArgument, got {res:?}");
            };
            for part in ["occurrence", "\"j\"", rule] {
                assert!(
                    message.contains(part),
                    "{bad:?}: {message:?} names no {part}"
                );
            }
        }
    }
}
