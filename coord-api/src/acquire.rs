//! Acquisition, written once for every lease kind: one attempt, and the wait
//! loop woken by the backend's notifications with a jittered retry as a
//! fallback.

use std::{pin::Pin, sync::Arc, time::Duration};

use crate::{
    Acquire, Client, Error, FencingToken, InProcessLeases, LeaseGuard, LeaseId, LeaseKind,
    LeaseWatch, LockOptions, Result,
    clock::Instant,
    lease::{LeaseShared, LocalLease, Target, spawn_background},
    trace::{self, Outcome},
};

/// One acquisition: what to ask for, for whom, with which options.
pub(crate) struct Request<'a> {
    pub(crate) client: &'a Client,
    /// The kind, key and holder asked for.
    pub(crate) id: LeaseId,
    pub(crate) opts: &'a LockOptions,
    /// `opts.local_validity(opts.ttl)`.
    pub(crate) validity: Duration,
}

/// Releases a lease whose acquisition was cancelled mid-flight (the grant may
/// have happened with nobody left to release it), and withdraws a writer's
/// intent, unless disarmed. Clones what it needs only when it fires.
struct Pending<'a> {
    client: &'a Client,
    id: Option<&'a LeaseId>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let backend = self.client.backend().clone();
            let id = id.clone();
            spawn_background(async move {
                let _ = backend.release(&id).await;
            });
        }
    }
}

/// A backend's answer to an acquisition, and what a grant's lease counts
/// its local validity from.
pub(crate) type Answer = (Acquire, Sent);

/// What a granted lease counts its local validity from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sent {
    /// The instant its request left.
    At(Instant),
    /// Nothing: its in-process backend, on the client's clock, holds the
    /// lease's state and is asked about it (see [`LocalLease`]).
    InBackend,
}

/// The result of one attempt.
pub(crate) enum Attempt {
    Granted(LeaseGuard),
    Busy(Option<Duration>),
}

impl<'a> Request<'a> {
    /// One round trip to the backend; returns its answer and when the request
    /// left (see [`Sent`]). `cleanup` says whether a cancelled call must
    /// release what it may have been granted (false for a reentrant re-entry,
    /// whose release would drop a hold an outer guard counts on).
    pub(crate) async fn call(&self, id: &LeaseId, cleanup: bool) -> Result<Answer> {
        match self.client.backend().in_process() {
            // Answered before this returns: nothing can be cancelled midway.
            Some(local) => self.call_now(local, id),
            // Boxed: the in-process path's future stays small, and so do the
            // futures that hold it.
            None => {
                let t_sent = self.client.clock().now();
                let a = Box::pin(self.call_remote(id, cleanup)).await?;
                Ok((a, Sent::At(t_sent)))
            }
        }
    }

    /// [`call`](Self::call) on an in-process backend: answered at once.
    fn call_now(&self, local: &dyn InProcessLeases, id: &LeaseId) -> Result<Answer> {
        let (client, ttl) = (self.client, self.opts.ttl);
        if kept_in_process(client, id.kind) {
            // Auto-extension of a lease the backend keeps for us is the
            // backend's; the grant's instant counts for nothing.
            let acquire = || match self.opts.auto_extend {
                true => local.acquire_kept(id, ttl),
                false => local.acquire_now(id, ttl).map(|(a, _)| a),
            };
            let a = trace::call_now("acquire", client, id, None, acquire, classify)?;
            return Ok((a, Sent::InBackend));
        }
        // On the backend's clock, the instant it decided at is when the
        // request left: one clock read instead of two.
        let t_sent = (!client.on_backend_clock()).then(|| client.clock().now());
        let acquire = || local.acquire_now(id, ttl);
        let classify = |(a, _): &(Acquire, Instant)| classify(a);
        let (a, decided) = trace::call_now("acquire", client, id, None, acquire, classify)?;
        Ok((a, Sent::At(t_sent.unwrap_or(decided))))
    }

    async fn call_remote(&self, id: &LeaseId, cleanup: bool) -> Result<Acquire> {
        let mut pending = Pending {
            client: self.client,
            id: cleanup.then_some(id),
        };
        let acquire = self.client.backend().acquire(id, self.opts.ttl);
        let res = trace::call("acquire", self.client, id, None, acquire, classify).await;
        pending.id = None;
        res
    }

    /// One attempt; a grant becomes a new lease with its own guard (and
    /// watchdog when auto-extension is on).
    pub(crate) async fn attempt(&self) -> Result<Attempt> {
        let answer = self.call(&self.id, true).await?;
        Ok(self.again().outcome(answer))
    }

    /// [`attempt`](Self::attempt) answered in the caller's thread by an
    /// in-process backend; `None` (nothing sent) otherwise.
    fn attempt_here(&self) -> Option<Result<Attempt>> {
        let local = self.client.backend().in_process()?;
        Some(
            self.call_now(local, &self.id)
                .map(|answer| self.again().outcome(answer)),
        )
    }

    /// This request once more (for the same holder).
    fn again(&self) -> Request<'_> {
        Request {
            id: self.id.clone(),
            ..*self
        }
    }

    /// [`attempt`](Self::attempt) for a request made for one attempt only:
    /// a grant takes the request's lease id instead of a copy of it.
    pub(crate) async fn attempt_once(self) -> Result<Attempt> {
        let answer = self.call(&self.id, true).await?;
        Ok(self.outcome(answer))
    }

    /// [`attempt_once`](Self::attempt_once) answered in the caller's thread
    /// by an in-process backend; the request back otherwise.
    pub(crate) fn attempt_now(self) -> std::result::Result<Result<Attempt>, Self> {
        let Some(local) = self.client.backend().in_process() else {
            return Err(self);
        };
        Ok(self
            .call_now(local, &self.id)
            .map(|answer| self.outcome(answer)))
    }

    /// What an attempt's answer makes of this request: a guard on a new
    /// lease (which takes the request's lease id), or a refusal.
    fn outcome(self, answer: Answer) -> Attempt {
        match answer {
            (Acquire::Granted(grant), sent) => {
                let Request {
                    client,
                    id,
                    opts,
                    validity,
                } = self;
                Attempt::Granted(new_lease(client, opts, validity, id, grant.token, sent))
            }
            (Acquire::Busy(busy), _) => Attempt::Busy(busy.retry_in),
        }
    }

    /// Attempts, then waits and retries until granted, `wait_timeout` passes
    /// or `max_retries` retries failed. In process, the first attempt is made
    /// here, a plain call, and only a refused request builds the wait loop
    /// (boxed, so that the callers' futures stay small); the loop is for the
    /// same holder (a writer's refusal registered its intent).
    pub(crate) fn wait(self) -> Wait<'a> {
        match self.attempt_here() {
            Some(Ok(Attempt::Granted(guard))) => Wait::Ready(Ok(guard)),
            Some(Err(e)) => Wait::Ready(Err(e)),
            Some(Ok(Attempt::Busy(_))) | None => Wait::Waiting(Box::pin(self.wait_loop())),
        }
    }

    async fn wait_loop(self) -> Result<LeaseGuard> {
        // A cancelled (or failed) wait withdraws this holder's writer intent
        // and releases anything granted in flight; releasing what was never
        // granted changes nothing.
        let mut on_cancel = Pending {
            client: self.client,
            id: Some(&self.id),
        };
        let refresh = (self.id.kind == LeaseKind::Write).then_some(self.opts.ttl / 3);
        let guard = wait_for(self.client, self.opts, refresh, &self).await?;
        on_cancel.id = None;
        Ok(guard)
    }
}

/// What [`Request::wait`] comes to: an answer at once, or the wait loop to
/// await.
pub(crate) enum Wait<'a> {
    Ready(Result<LeaseGuard>),
    Waiting(Pin<Box<dyn Future<Output = Result<LeaseGuard>> + Send + 'a>>),
}

impl Attempts for &Request<'_> {
    type Output = LeaseGuard;

    async fn attempt(&mut self) -> Result<Step<LeaseGuard>> {
        Ok(match Request::attempt(self).await? {
            Attempt::Granted(guard) => Step::Done(guard),
            Attempt::Busy(retry_in) => Step::Busy(retry_in),
        })
    }

    async fn subscribe(&self) -> Result<Box<dyn LeaseWatch>> {
        self.client
            .backend()
            .subscribe(self.id.kind.family(), &self.id.key)
            .await
    }

    fn what(&self) -> String {
        format!(
            "{} lease on {:?}",
            self.id.kind.as_str(),
            self.id.key.as_str()
        )
    }
}

/// A guard on a new lease `id` granted with `token`: one the backend keeps,
/// or one valid locally from when its request was `sent` and renewed in the
/// background when `opts` say so.
fn new_lease(
    client: &Client,
    opts: &LockOptions,
    validity: Duration,
    id: LeaseId,
    token: FencingToken,
    sent: Sent,
) -> LeaseGuard {
    let t_sent = match sent {
        Sent::At(t_sent) => t_sent,
        Sent::InBackend => {
            return LeaseGuard::local(LocalLease::new(client.clone(), id, token, opts.ttl));
        }
    };
    let shared = LeaseShared::start(
        client.clone(),
        id,
        Target::Lease,
        token,
        opts,
        validity,
        t_sent,
    );
    LeaseGuard::new(shared)
}

/// Whether a lease of `kind` granted to `client` is one its in-process
/// backend keeps (see [`LocalLease`]): on the backend's own clock, and for
/// any kind but a reentrant hold, whose guards share one lease and renew it
/// together.
fn kept_in_process(client: &Client, kind: LeaseKind) -> bool {
    client.on_backend_clock() && kind != LeaseKind::Reentrant
}

/// The outcome recorded in an acquire's span.
fn classify(a: &Acquire) -> Outcome {
    match a {
        Acquire::Granted(g) => Outcome::Granted(g.token),
        Acquire::Busy(_) => Outcome::Busy,
    }
}

/// One round of a wait: done, or refused (with the time until what blocks
/// expires, when known).
pub(crate) enum Step<T> {
    Done(T),
    Busy(Option<Duration>),
}

/// What a waiting operation does each round.
pub(crate) trait Attempts {
    type Output;
    /// One attempt.
    async fn attempt(&mut self) -> Result<Step<Self::Output>>;
    /// A watch that wakes when a new attempt may succeed.
    async fn subscribe(&self) -> Result<Box<dyn LeaseWatch>>;
    /// What is waited for, for `Error::Timeout`.
    fn what(&self) -> String;
}

/// The wait loop every waiting operation shares: attempt; on refusal
/// subscribe (then attempt again at once, so a change between the refusal
/// and the subscription is not missed); then sleep until a notification, the
/// expiry of what blocks, the jittered retry delay, `refresh` (a waiter that
/// must re-assert itself) or the deadline, and attempt again. Ends with
/// `Error::Timeout` after `wait_timeout` or `max_retries`; a backend error
/// ends the wait at once (`Unavailable` is retryable by the caller).
pub(crate) async fn wait_for<A: Attempts>(
    client: &Client,
    opts: &LockOptions,
    refresh: Option<Duration>,
    mut attempts: A,
) -> Result<A::Output> {
    let clock = client.clock().clone();
    let start = clock.now();
    let deadline = opts.wait_timeout.map(|w| later(start, w));
    let mut watch: Option<Box<dyn LeaseWatch>> = None;
    let mut retries = 0u32;
    loop {
        let retry_in = match attempts.attempt().await? {
            Step::Done(v) => return Ok(v),
            Step::Busy(retry_in) => retry_in,
        };
        let now = clock.now();
        if deadline.is_some_and(|d| now >= d) || opts.max_retries.is_some_and(|m| retries >= m) {
            return Err(Error::Timeout {
                what: attempts.what(),
                backend: client.backend().to_string(),
                waited: now - start,
            });
        }
        retries += 1;
        let Some(w) = watch.as_mut() else {
            watch = Some(attempts.subscribe().await?);
            continue;
        };
        let wake = wake_at(opts, now, retry_in, refresh, deadline);
        tokio::select! {
            biased;
            res = w.changed() => {
                if res.is_err() {
                    // The notification channel broke; resubscribe.
                    watch = None;
                }
            }
            _ = clock.sleep_until(wake) => {}
        }
    }
}

/// When to retry without a notification: the jittered retry delay, the
/// instant the blocking lease expires, the refresh period, or the deadline,
/// whichever comes first.
fn wake_at(
    opts: &LockOptions,
    now: Instant,
    retry_in: Option<Duration>,
    refresh: Option<Duration>,
    deadline: Option<Instant>,
) -> Instant {
    let jitter = opts.retry_jitter;
    let factor = if jitter > 0.0 {
        1.0 + rand::random_range(-jitter..=jitter)
    } else {
        1.0
    };
    let delay = Duration::try_from_secs_f64(opts.retry_delay.as_secs_f64() * factor)
        .unwrap_or(Duration::MAX);
    let mut wake = later(now, delay);
    if let Some(r) = retry_in {
        wake = wake.min(later(now, r.saturating_add(Duration::from_millis(1))));
    }
    if let Some(r) = refresh {
        wake = wake.min(later(now, r));
    }
    if let Some(d) = deadline {
        wake = wake.min(d);
    }
    wake
}

/// `t + d`, or a century after `t` when that overflows (a "for ever" wait).
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Renews a reentrant lease's local validity after a re-entry whose request
/// was `sent`, and hands out another guard on it.
pub(crate) fn reenter(shared: &Arc<LeaseShared>, sent: Sent) -> LeaseGuard {
    // (A reentrant hold is never the backend's to keep: always `At`.)
    if let Sent::At(t_sent) = sent {
        shared.renewed(t_sent);
    }
    LeaseGuard::new(shared.clone())
}
