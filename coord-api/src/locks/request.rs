//! One acquisition of a lock-family lease, written once for every kind: an
//! attempt (one round trip), or a wait (the engine's wait loop). Whatever an
//! attempt may have been granted without an answer — cancelled, timed out,
//! reply lost — is released in the background.

use crate::{
    Acquire, Client, Error, HolderId, LeaseGuard, LeaseId, LeaseKind, LeaseOptions, Result, Watch,
    clock::Instant,
    handle::Handle,
    lease::{
        Lease,
        metrics::{self, Waited},
        undo::{Undo, granting},
        wait::{Attempts, Step, wait_from},
    },
    trace::{self, Outcome, Site},
};

/// One acquisition: what to ask for, for whom, with which options.
pub(crate) struct Request<'a> {
    client: &'a Client,
    /// The kind, key and holder asked for.
    pub(crate) id: LeaseId,
    opts: &'a LeaseOptions,
    /// `opts.local_validity()`.
    validity: std::time::Duration,
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
        })
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
        let classify = |a: &Acquire| match a {
            Acquire::Granted(g) => Outcome::Granted(g.token),
            Acquire::Busy(_) => Outcome::Busy,
        };
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
        Ok(self.step().await?.0)
    }

    /// [`attempt`](Self::attempt), and when its request left.
    async fn step(&self) -> Result<(Step<LeaseGuard>, Instant)> {
        Ok(match self.call(&self.id, true).await? {
            (Acquire::Granted(grant), t_sent) => {
                let guard = self.guard(self.id.clone(), grant.token, t_sent);
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
        let (step, t_sent) = self.step().await?;
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
    ) -> LeaseGuard {
        let (client, opts, kind) = (self.client.clone(), self.opts, id.kind);
        let lease = Lease::start(client, id, Some(token), opts, self.validity, t_sent);
        LeaseGuard::new(lease, kind, token)
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
        let mut on_exit = Undo::new(self.client, self.opts.ttl, || release(&self.id));
        // A waiting writer's intent, and a waiter for several permits'
        // mark (backends may wake every waiter while one is live), last a
        // TTL from each refusal: refreshed by retrying at least every third.
        let refresh = match self.id.kind {
            LeaseKind::Write | LeaseKind::Permits { .. } => Some(self.opts.ttl / 3),
            _ => None,
        };
        let start = self.client.clock().now();
        let res = wait_from(self.client, self.opts, refresh, &self, start).await;
        match &res {
            Ok(_) => self.waited(Waited::Acquired, self.client.clock().now() - start),
            Err(Error::Timeout { waited, .. }) => self.waited(Waited::Timeout, *waited),
            Err(_) => {}
        }
        let guard = res?;
        on_exit.disarm();
        Ok(guard)
    }
}

/// The site of `op` on the lease `id`, before it has a token.
fn site<'a>(op: &'static str, id: &'a LeaseId) -> Site<'a> {
    Site {
        op,
        family: id.kind.space().as_str(),
        kind: id.kind.as_str(),
        key: &id.key,
        holder: Some(&id.holder),
        token: None,
    }
}

/// The release of `id`, for an [`Undo`].
fn release(
    id: &LeaseId,
) -> impl FnMut(Client) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + 'static
{
    let id = id.clone();
    move |client: Client| {
        let id = id.clone();
        Box::pin(async move { client.locks()?.release(&id).await.map(drop) })
    }
}

impl Attempts for &Request<'_> {
    type Output = LeaseGuard;

    async fn attempt(&mut self) -> Result<Step<LeaseGuard>> {
        Request::attempt(self).await
    }

    async fn subscribe(&self) -> Result<Box<dyn Watch>> {
        let space = self.id.kind.space();
        self.client.locks()?.subscribe(space, &self.id.key).await
    }

    fn what(&self) -> String {
        format!(
            "{} lease on {:?}",
            self.id.kind.as_str(),
            self.id.key.as_str()
        )
    }
}
