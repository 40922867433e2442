//! One acquisition of a lock-family lease, written once for every kind: an
//! attempt (one round trip), or a wait (the engine's wait loop). Whatever an
//! attempt may have been granted without an answer — cancelled, timed out,
//! reply lost — is released in the background.

use crate::{
    Acquire, Client, Error, HolderId, LeaseGuard, LeaseId, LeaseKind, LeaseOptions, Release,
    Result, Watch,
    clock::Instant,
    handle::Handle,
    lease::{
        Lease,
        metrics::{self, Waited},
        undo::{Undo, granting},
        wait::{Attempts, Refused, Step, before, later, wait_from},
    },
    trace::{self, Outcome, Site},
};

/// One acquisition: what to ask for, for whom, with which options.
pub(crate) struct Request<'a> {
    pub(super) client: &'a Client,
    /// The kind, key and holder asked for.
    pub(crate) id: LeaseId,
    pub(super) opts: &'a LeaseOptions,
    /// `opts.local_validity()`.
    validity: std::time::Duration,
    /// Fair mode's waiter TTL: attempts go through the key's wait queue.
    fair: Option<std::time::Duration>,
}

impl<'a> Request<'a> {
    /// A request for `kind` on `handle`'s key by `holder` (a fresh one when
    /// `None`), the key and options validated first.
    pub(crate) fn new(
        handle: &'a Handle,
        kind: LeaseKind,
        holder: Option<HolderId>,
    ) -> Result<Request<'a>> {
        let (key, opts) = handle.checked()?;
        let client = &handle.client;
        let holder = holder.unwrap_or_else(|| HolderId::new(*client.instance_id()));
        Ok(Request {
            client,
            id: LeaseId {
                kind,
                key: key.clone(),
                holder,
            },
            opts,
            validity: handle.validity(),
            fair: None,
        })
    }

    /// Makes this a fair acquisition (see `fair`) when `waiter_ttl` is
    /// given: its attempts queue, a `try_` never jumps the queue.
    pub(crate) fn fair(mut self, waiter_ttl: Option<std::time::Duration>) -> Self {
        self.fair = waiter_ttl;
        self
    }

    /// A request for `id` with `opts` (already validated), whose leases
    /// count as valid locally for `validity` (`opts.local_validity()`).
    pub(crate) fn with_id(
        client: &'a Client,
        id: LeaseId,
        opts: &'a LeaseOptions,
        validity: std::time::Duration,
    ) -> Request<'a> {
        Request {
            client,
            id,
            opts,
            validity,
            fair: None,
        }
    }

    /// One round trip for the lease `id`; the answer and when the request
    /// left. `cleanup` says whether a call that got no answer must release
    /// what it may have been granted (false for a reentrant re-entry, whose
    /// release would drop a hold an outer guard counts on).
    pub(crate) async fn call(&self, id: &LeaseId, cleanup: bool) -> Result<(Acquire, Instant)> {
        let client = self.client;
        let t_sent = client.clock().now();
        let site = || site("acquire", id);
        let acquire = client.locks()?.acquire(id, self.opts.ttl);
        let acquire = trace::call(client, site, acquire, classify);
        let answer = match cleanup {
            true => granting(client, self.opts.ttl, acquire, || release(id)).await?,
            false => acquire.await?,
        };
        Ok((answer, t_sent))
    }

    /// One attempt; a grant becomes a new lease with its own guard (renewed
    /// in the background when auto-extension is on).
    pub(crate) async fn attempt(&self) -> Result<Step<LeaseGuard>> {
        Ok(self.step(true).await?.0)
    }

    /// [`attempt`](Self::attempt), and when its request left; a fair one
    /// takes (`enqueue`) or keeps a place in the queue, or (a `try_`) only
    /// goes in when nobody queues.
    async fn step(&self, enqueue: bool) -> Result<(Step<LeaseGuard>, Instant)> {
        let answer = match self.fair {
            Some(waiter_ttl) => self.call_queued(waiter_ttl, enqueue).await?,
            None => self.call(&self.id, true).await?,
        };
        Ok(match answer {
            (Acquire::Granted(grant), t_sent) => {
                let guard = self.guard(self.id.clone(), grant.token, t_sent)?;
                (Step::Done(guard), t_sent)
            }
            (Acquire::Busy(busy), t_sent) => {
                metrics::contended(self.client, self.id.kind, &self.id.key);
                (Step::Busy(busy.retry_in), t_sent)
            }
        })
    }

    /// One attempt that does not wait (`try_lock`, `try_read`...): a
    /// refusal ends the acquisition, timed as `busy`.
    pub(crate) async fn try_once(&self) -> Result<Step<LeaseGuard>> {
        let (step, t_sent) = self.step(false).await?;
        let outcome = match step {
            Step::Done(_) => Waited::Acquired,
            Step::Busy(_) => Waited::Busy,
        };
        self.waited(outcome, self.client.clock().now() - t_sent);
        Ok(step)
    }

    fn waited(&self, outcome: Waited, waited: std::time::Duration) {
        metrics::waited(self.client, self.id.kind, &self.id.key, outcome, waited);
    }

    /// A guard on the new lease `id`, granted with `token` on a request that
    /// left at `t_sent`.
    pub(crate) fn guard(
        &self,
        id: LeaseId,
        token: crate::FencingToken,
        t_sent: Instant,
    ) -> Result<LeaseGuard> {
        let (client, opts, kind) = (self.client.clone(), self.opts, id.kind);
        let lease = Lease::start(client, id, Some(token), opts, self.validity, t_sent)?;
        Ok(LeaseGuard::new(lease, kind, token))
    }

    /// Withdraws the writer intent a refused attempt registered (releasing
    /// what was never granted changes nothing else), before returning; in
    /// the background, retried for at most the TTL, if the backend cannot
    /// be reached or this is cancelled.
    pub(crate) async fn withdraw(&self) -> Result<()> {
        let mut on_exit = Undo::new(self.client, self.opts.ttl, || release(&self.id));
        let withdraw = self.client.locks()?.release(&self.id);
        let site = || site("release", &self.id);
        trace::call(self.client, site, withdraw, |_| Outcome::Ok).await?;
        on_exit.disarm();
        Ok(())
    }

    /// Attempts, then waits and retries until granted, `wait_timeout` passes
    /// or `max_retries` retries failed; for the same holder throughout (a
    /// writer's refusal registered its intent). A wait that ends without a
    /// grant (cancelled, timed out, failed) withdraws that intent and
    /// releases anything granted in flight; releasing what was never granted
    /// changes nothing.
    pub(crate) async fn wait(self) -> Result<LeaseGuard> {
        if let Some(waiter_ttl) = self.fair {
            // A fair waiter's place lasts a waiter TTL from each attempt:
            // renewed by attempting at least every third of it, given back
            // (with anything granted in flight) when the wait ends without
            // a grant.
            let within = self.opts.ttl.max(waiter_ttl);
            let mut on_exit = Undo::new(self.client, within, || super::fair::give_back(&self.id));
            let refresh = match self.id.kind {
                LeaseKind::Permits { .. } => waiter_ttl.min(self.opts.ttl) / 3,
                _ => waiter_ttl / 3,
            };
            // Subscribe together with the first attempt, the watch made
            // before the attempt leaves, so that no wake-up meant for this
            // waiter is missed and no attempt at once is needed when the
            // subscription is in effect at once (costing no round trip
            // while another waiter of this process watches the key). A
            // backend may wake a fair waiter by name when a release leaves
            // it at the head (`subscribe_queued`); one that wakes the
            // oldest watch of each process finds its first waiter in line.
            let start = self.client.clock().now();
            let this = &self;
            let mut subscribe = std::pin::pin!(Attempts::subscribe(&this));
            let at_once =
                std::future::poll_fn(|cx| std::task::Poll::Ready(subscribe.as_mut().poll(cx)))
                    .await;
            let clock = self.client.clock();
            let (in_effect_before, watch, first) = match at_once {
                std::task::Poll::Ready(watch) => (true, Some(watch), self.attempt().await),
                std::task::Poll::Pending => {
                    // The subscription ends at the deadline (a slow one
                    // would keep the caller past it); the attempt is
                    // answered, as every attempt of a wait is: a short
                    // wait timeout on a free key is a grant, as for a
                    // lock that is not fair. A grant does not wait for
                    // the subscription, which only a refusal needs.
                    let deadline = self.opts.wait_timeout.map(|w| later(start, w));
                    let mut subscribe = std::pin::pin!(before(clock.as_ref(), deadline, subscribe));
                    let mut watch = None;
                    let first = {
                        let mut attempt = std::pin::pin!(self.attempt());
                        loop {
                            tokio::select! {
                                // (Biased: no random choice, for the
                                // simulator's replays.)
                                biased;
                                first = &mut attempt => break first,
                                w = &mut subscribe, if watch.is_none() => watch = Some(w),
                            }
                        }
                    };
                    let watch = match (&first, watch) {
                        (Ok(Step::Busy(_)), None) => subscribe.await,
                        (_, watch) => watch.flatten(),
                    };
                    (false, watch, first)
                }
            };
            let guard = match first? {
                Step::Done(guard) => {
                    self.waited(Waited::Acquired, clock.now() - start);
                    guard
                }
                Step::Busy(retry_in) => {
                    // Refused, and the deadline came before the
                    // subscription: given up (the place given back).
                    let Some(watch) = watch else {
                        let waited = clock.now() - start;
                        self.waited(Waited::Timeout, waited);
                        return Err(self.client.timed_out(Attempts::what(&this), waited));
                    };
                    let first = Refused {
                        watch: watch?,
                        retry_in,
                        in_effect_before,
                    };
                    self.wait_with(Some(refresh), start, Some(first)).await?
                }
            };
            on_exit.disarm();
            return Ok(guard);
        }
        let mut on_exit = Undo::new(self.client, self.opts.ttl, || release(&self.id));
        // A waiting writer's intent, and a waiter for several permits'
        // mark (backends may wake every waiter while one is live), last a
        // TTL from each refusal: refreshed by retrying at least every third.
        let refresh = match self.id.kind {
            LeaseKind::Write | LeaseKind::Permits { .. } => Some(self.opts.ttl / 3),
            _ => None,
        };
        let start = self.client.clock().now();
        let guard = self.wait_with(refresh, start, None).await?;
        on_exit.disarm();
        Ok(guard)
    }

    /// The wait loop, timed from `start`; attempting at least every
    /// `refresh`; `first`, a first attempt refused, with the watch made
    /// before it left (see `wait_from`).
    async fn wait_with(
        &self,
        refresh: Option<std::time::Duration>,
        start: Instant,
        first: Option<Refused>,
    ) -> Result<LeaseGuard> {
        let res = wait_from(self.client, self.opts, refresh, self, start, first).await;
        match &res {
            Ok(_) => self.waited(Waited::Acquired, self.client.clock().now() - start),
            Err(Error::Timeout { waited, .. }) => self.waited(Waited::Timeout, *waited),
            Err(_) => {}
        }
        res
    }
}

/// The site of `op` on the lease `id`, before it has a token.
pub(super) fn site<'a>(op: &'static str, id: &'a LeaseId) -> Site<'a> {
    Site {
        op,
        family: id.kind.space().as_str(),
        kind: id.kind.as_str(),
        key: &id.key,
        holder: Some(&id.holder),
        token: None,
    }
}

/// A subscription to `key` in `space` (a waiter's watch), in its span.
pub(super) async fn subscribe(
    client: &Client,
    space: crate::LockSpace,
    key: &crate::Key,
) -> Result<Box<dyn Watch>> {
    let subscribe = client.locks()?.subscribe(space, key);
    let site = || super::site("subscribe", space, key);
    trace::call(client, site, subscribe, Outcome::ok).await
}

/// The outcome an acquire's answer is traced as.
pub(super) fn classify(a: &Acquire) -> Outcome {
    match a {
        Acquire::Granted(g) => Outcome::Granted(g.token),
        Acquire::Busy(_) => Outcome::Busy,
    }
}

/// One release of `id` through `client`, in its span: what a clean-up
/// sends (a grant whose answer never came, a re-entry's holds given back,
/// a multi-lock's members), the lease engine's own releases aside.
pub(super) async fn release_once(client: &Client, id: &LeaseId) -> Result<Release> {
    let release = client.locks()?.release(id);
    trace::call(client, || site("release", id), release, Outcome::released).await
}

/// The release of `id`, for an [`Undo`].
fn release(
    id: &LeaseId,
) -> impl FnMut(Client) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + 'static
{
    let id = id.clone();
    move |client: Client| {
        let id = id.clone();
        Box::pin(async move { release_once(&client, &id).await.map(drop) })
    }
}

impl Attempts for &Request<'_> {
    type Output = LeaseGuard;

    async fn attempt(&mut self) -> Result<Step<LeaseGuard>> {
        Request::attempt(self).await
    }

    async fn subscribe(&self) -> Result<Box<dyn Watch>> {
        let (client, id) = (self.client, &self.id);
        let locks = client.locks()?;
        if self.fair.is_some() {
            // The release that leaves this waiter at the head of the queue
            // may wake it by name.
            let subscribe = locks.subscribe_queued(id);
            let site = || site("subscribe_queued", id);
            return trace::call(client, site, subscribe, Outcome::ok).await;
        }
        subscribe(client, id.kind.space(), &id.key).await
    }

    fn what(&self) -> String {
        format!(
            "{} lease on {:?}",
            self.id.kind.as_str(),
            self.id.key.as_str()
        )
    }
}
