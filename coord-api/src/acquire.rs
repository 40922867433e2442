//! Acquisition, written once for every lease kind: one attempt, and the wait
//! loop woken by the backend's notifications with a jittered retry as a
//! fallback.

use std::{sync::Arc, time::Duration};

use crate::{
    Acquire, Client, Error, FencingToken, HolderId, Key, LeaseGuard, LeaseId, LeaseKind,
    LeaseWatch, LockOptions, Result,
    clock::Instant,
    lease::{LeaseShared, spawn_background},
    trace::{self, Outcome},
};

/// One acquisition: what to ask for, for whom, with which options.
pub(crate) struct Request<'a> {
    pub(crate) client: &'a Client,
    pub(crate) kind: LeaseKind,
    pub(crate) key: &'a Key,
    pub(crate) opts: &'a LockOptions,
    pub(crate) holder: HolderId,
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

/// The result of one attempt.
pub(crate) enum Attempt {
    Granted(LeaseGuard),
    Busy(Option<Duration>),
}

impl Request<'_> {
    fn id(&self) -> LeaseId {
        LeaseId {
            kind: self.kind,
            key: self.key.clone(),
            holder: self.holder.clone(),
        }
    }

    /// One round trip to the backend; returns its answer and when the request
    /// left. `cleanup` says whether a cancelled call must release what it may
    /// have been granted (false for a reentrant re-entry, whose release would
    /// drop a hold an outer guard counts on).
    pub(crate) async fn call(&self, id: &LeaseId, cleanup: bool) -> Result<(Acquire, Instant)> {
        let t_sent = self.client.clock().now();
        let mut pending = Pending {
            client: self.client,
            id: cleanup.then_some(id),
        };
        let res = trace::call(
            "acquire",
            self.client,
            id,
            None,
            self.client.backend().acquire(id, self.opts.ttl),
            |a: &Acquire| match a {
                Acquire::Granted(g) => Outcome::Granted(g.token),
                Acquire::Busy(_) => Outcome::Busy,
            },
        )
        .await;
        pending.id = None;
        res.map(|a| (a, t_sent))
    }

    /// One attempt; a grant becomes a new lease with its own guard (and
    /// watchdog when auto-extension is on).
    pub(crate) async fn attempt(&self) -> Result<Attempt> {
        let id = self.id();
        match self.call(&id, true).await? {
            (Acquire::Granted(grant), t_sent) => {
                Ok(Attempt::Granted(self.new_lease(id, grant.token, t_sent)))
            }
            (Acquire::Busy(busy), _) => Ok(Attempt::Busy(busy.retry_in)),
        }
    }

    /// A guard on a new lease granted with `token` to a request sent at `t_sent`.
    pub(crate) fn new_lease(
        &self,
        id: LeaseId,
        token: FencingToken,
        t_sent: Instant,
    ) -> LeaseGuard {
        let shared = LeaseShared::new(
            self.client.clone(),
            id,
            token,
            self.opts.ttl,
            self.opts.local_validity(self.opts.ttl),
            t_sent,
        );
        if self.opts.auto_extend {
            shared.start_watchdog(self.opts.renew_every());
        }
        LeaseGuard::new(shared)
    }

    /// Attempts, then waits and retries until granted, `wait_timeout` passes
    /// or `max_retries` retries failed.
    pub(crate) async fn wait(&self) -> Result<LeaseGuard> {
        let clock = self.client.clock().clone();
        let start = clock.now();
        let deadline = self.opts.wait_timeout.map(|w| later(start, w));
        // From the first refusal on, a cancelled wait withdraws this holder's
        // writer intent (and anything granted in flight).
        let id = self.id();
        let mut on_cancel = Pending {
            client: self.client,
            id: None,
        };
        let mut watch: Option<Box<dyn LeaseWatch>> = None;
        let mut retries = 0u32;
        loop {
            let retry_in = match self.attempt().await? {
                Attempt::Granted(guard) => {
                    on_cancel.id = None;
                    return Ok(guard);
                }
                Attempt::Busy(retry_in) => retry_in,
            };
            on_cancel.id = Some(&id);
            let now = clock.now();
            if deadline.is_some_and(|d| now >= d)
                || self.opts.max_retries.is_some_and(|m| retries >= m)
            {
                return Err(self.timeout(now - start));
            }
            retries += 1;
            if watch.is_none() {
                // Subscribe, then retry at once: a release between the refusal
                // and the subscription is not missed.
                watch = Some(
                    self.client
                        .backend()
                        .subscribe(self.kind.family(), self.key)
                        .await?,
                );
                continue;
            }
            let wake = self.wake_at(now, retry_in, deadline);
            let w = watch.as_mut().expect("subscribed above");
            tokio::select! {
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
    /// instant the blocking lease expires, a writer's intent refresh, or the
    /// wait deadline, whichever comes first.
    fn wake_at(
        &self,
        now: Instant,
        retry_in: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Instant {
        let jitter = self.opts.retry_jitter;
        let factor = if jitter > 0.0 {
            1.0 + rand::random_range(-jitter..=jitter)
        } else {
            1.0
        };
        let delay = Duration::try_from_secs_f64(self.opts.retry_delay.as_secs_f64() * factor)
            .unwrap_or(Duration::MAX);
        let mut wake = later(now, delay);
        if let Some(r) = retry_in {
            wake = wake.min(later(now, r.saturating_add(Duration::from_millis(1))));
        }
        if self.kind == LeaseKind::Write {
            wake = wake.min(now + self.opts.ttl / 3);
        }
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        wake
    }

    fn timeout(&self, waited: Duration) -> Error {
        Error::Timeout {
            what: format!("{} lease on {:?}", self.kind.as_str(), self.key.as_str()),
            backend: self.client.backend().to_string(),
            waited,
        }
    }
}

/// `t + d`, or a century after `t` when that overflows (a "for ever" wait).
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Renews a reentrant lease's local validity after a re-entry granted at
/// `t_sent`, and hands out another guard on it.
pub(crate) fn reenter(shared: &Arc<LeaseShared>, t_sent: Instant) -> LeaseGuard {
    shared.renewed(t_sent);
    LeaseGuard::new(shared.clone())
}
