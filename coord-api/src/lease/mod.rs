//! The lease engine, written once for every family: a granted lease's local
//! validity (one atomic word), its renewal in the background, its lost
//! signal, its release (also when its guard is dropped), and the clean-up of
//! what an acquisition may have been granted when its answer never came.
//!
//! The engine knows no family. A family hands it a [`Tenure`]: which lease
//! it is, how to renew and release it, and what to call it in traces. A lock
//! lease's tenure is its [`LeaseId`](crate::spi::LeaseId), an election's the
//! term, a group's the membership, a job's the run.
//!
//! | module | what it holds |
//! |---|---|
//! | `guard` | [`Guard`]: released when released or dropped |
//! | `lost` | [`LostSignal`], and the wait for the first of several leases to end |
//! | `options` | [`LeaseOptions`] |
//! | `renewal` | one renewal queue and task per client, lazily cancelled |
//! | `wait` | the wait loop every waiting operation shares |
//! | `undo` | releasing, in the background, what an unanswered acquisition may have granted |
//! | `settles` | what a queue or topic delivery's settle asked, and its presence's wait for the settles on their way |
//! | `metrics` | what the engine and the lease families count |

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

use crate::{
    Client, FencingToken, HolderId, Key, Result,
    clock::Instant,
    spi::Release,
    trace::{self, Outcome, Site},
};

mod guard;
mod lost;
pub(crate) mod metrics;
pub(crate) mod options;
pub(crate) mod registry;
pub(crate) mod renewal;
pub(crate) mod settles;
pub(crate) mod undo;
pub(crate) mod wait;

pub(crate) use guard::Guard;
pub use lost::LostSignal;
pub(crate) use lost::any_ended;
pub use options::LeaseOptions;
use renewal::Queued;

/// A boxed future borrowing its lease, as a family trait's methods return
/// them.
pub(crate) type BoxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the engine needs from a family to keep one of its leases: which
/// lease it is, and the backend calls that renew and release it. They return
/// the family trait's own future where they can (a lock's), so that a
/// renewal or release is one boxed future, not two.
pub(crate) trait Tenure: Send + Sync + 'static {
    /// The primitive, for traces: `lock`, `rwlock`, `semaphore`, `election`,
    /// `group`, `job`.
    fn family(&self) -> &'static str;
    /// The lease's kind, for traces: `exclusive`, `read`, `permit`, `term`,
    /// `member`, `run`...
    fn kind(&self) -> &'static str;
    /// The key it is on.
    fn key(&self) -> &Key;
    /// Who holds it.
    fn holder(&self) -> &HolderId;
    /// Renews it for `ttl`: whether the backend still held it.
    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>>;
    /// Releases one hold of it: the holds left, or `NotHeld`.
    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>>;
    /// Whether the backend counts holds of this lease, so that a release may
    /// leave it held (a reentrant lock). The release of a hold that leaves
    /// other guards is never repeated (it would drop a hold another guard
    /// counts on); the last guard's drops every hold the backend counts.
    fn counted(&self) -> bool;
    /// The lease this one lives inside, if any: the backend ends this one
    /// when that one ends (a queue delivery inside its consumer's presence),
    /// so it is lost as soon as that one is no longer held.
    fn within(&self) -> Option<&Arc<Lease>> {
        None
    }
}

/// [`Release`] for a family whose release answers whether it held the lease.
pub(crate) fn released(held: bool) -> Release {
    match held {
        true => Release::Released { remaining: 0 },
        false => Release::NotHeld,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Held, valid locally until the instant.
    Held(Instant),
    /// Lost: expired locally, refused on renewal, or found gone.
    Lost,
    /// Released by its holder.
    Released,
}

/// How [`LeaseState::word`] encodes a [`Status`]: held until `base` plus that
/// many nanoseconds, or one of two values no deadline reaches.
struct Word;

impl Word {
    const LOST: u64 = u64::MAX;
    const RELEASED: u64 = u64::MAX - 1;
    /// The latest deadline a word can hold (584 years after the grant).
    const LATEST: u64 = u64::MAX - 2;

    fn held(w: u64) -> bool {
        w <= Word::LATEST
    }

    fn ended(lost: bool) -> u64 {
        if lost { Word::LOST } else { Word::RELEASED }
    }

    /// Held until `until` after the grant.
    fn held_for(until: Duration) -> u64 {
        u64::try_from(until.as_nanos()).map_or(Word::LATEST, |n| n.min(Word::LATEST))
    }
}

/// A granted lease, shared by its guards (several for a reentrant lock), its
/// lost signals and the renewal queue. The family's [`Tenure`] is stored
/// inline (`LeaseState<dyn Tenure>`, one allocation).
pub(crate) struct LeaseState<T: ?Sized> {
    pub(crate) client: Client,
    /// The grant's fencing token (`None` for a lease that carries none: a
    /// membership).
    pub(crate) token: Option<FencingToken>,
    ttl: Duration,
    validity: Duration,
    /// Renewal period with auto-extension on.
    renew_every: Option<Duration>,
    /// The status in one word (see [`Word`]): a status change is one atomic
    /// read-modify-write, and reading it none.
    word: AtomicU64,
    /// The origin of the validity deadlines in `word`: when the granting
    /// request left.
    base: Instant,
    changed: Notify,
    /// Whether anyone ever waited on `changed`: until then a status change
    /// skips `notify_waiters`.
    watched: AtomicBool,
    /// Its place in the client's renewal queue.
    queued: Queued,
    /// How many guards hold it (several for a reentrant lock): letting go
    /// of the last one ends it.
    guards: AtomicU32,
    /// Its holder's last step is on its way (see [`Lease::ending`]).
    ending: AtomicBool,
    pub(crate) tenure: T,
}

/// A granted lease of any family.
pub(crate) type Lease = LeaseState<dyn Tenure>;

impl Lease {
    /// A lease granted with `token` for `opts.ttl` on a request sent at
    /// `t_sent`, valid locally for `validity` (`opts.local_validity()`,
    /// which its handle computes once) from then, and renewed in the
    /// background (on the client's renewal queue) when `opts` say so, the
    /// first time one renewal period after `t_sent`. `Error::Closed` if the
    /// client was closed before the grant came (the lease is then released
    /// in the background, see `Leases::note`).
    pub(crate) fn start(
        client: Client,
        tenure: impl Tenure,
        token: Option<FencingToken>,
        opts: &LeaseOptions,
        validity: Duration,
        t_sent: Instant,
    ) -> Result<Arc<Lease>> {
        let renew_every = opts.auto_extend.then(|| opts.renew_every());
        Lease::begin(
            client,
            tenure,
            token,
            opts.ttl,
            validity,
            renew_every,
            t_sent,
        )
    }

    /// A lease that takes over from this one in the same backend step (a
    /// downgrade): another tenure and token, granted on a request sent at
    /// `t_sent`, with this lease's client, TTL, validity and renewal
    /// (`Error::Closed` as for [`start`](Self::start)).
    pub(crate) fn successor(
        &self,
        tenure: impl Tenure,
        token: Option<FencingToken>,
        t_sent: Instant,
    ) -> Result<Arc<Lease>> {
        let client = self.client.clone();
        let (ttl, validity, every) = (self.ttl, self.validity, self.renew_every);
        Lease::begin(client, tenure, token, ttl, validity, every, t_sent)
    }

    fn begin(
        client: Client,
        tenure: impl Tenure,
        token: Option<FencingToken>,
        ttl: Duration,
        validity: Duration,
        renew_every: Option<Duration>,
        t_sent: Instant,
    ) -> Result<Arc<Lease>> {
        let lease: Arc<Lease> = Arc::new(LeaseState {
            client,
            token,
            ttl,
            validity,
            renew_every,
            word: AtomicU64::new(Word::held_for(validity)),
            base: t_sent,
            changed: Notify::new(),
            watched: AtomicBool::new(false),
            queued: Queued::default(),
            guards: AtomicU32::new(0),
            ending: AtomicBool::new(false),
            tenure,
        });
        if let Some(every) = renew_every {
            lease.schedule_at(t_sent + every);
        }
        lease.client.leases().note(&lease)?;
        Ok(lease)
    }

    /// The site of a call on this lease, for its span.
    fn site(&self, op: &'static str) -> Site<'_> {
        Site {
            op,
            family: self.tenure.family(),
            kind: self.tenure.kind(),
            key: self.tenure.key(),
            holder: Some(self.tenure.holder()),
            token: self.token,
        }
    }

    /// The word of a lease held until `validity` after `t_sent`.
    fn word_for(&self, t_sent: Instant) -> u64 {
        Word::held_for(t_sent.saturating_duration_since(self.base) + self.validity)
    }

    fn status_of(&self, w: u64) -> Status {
        match w {
            Word::LOST => Status::Lost,
            Word::RELEASED => Status::Released,
            held => Status::Held(self.base + Duration::from_nanos(held)),
        }
    }

    pub(crate) fn queued(&self) -> &Queued {
        &self.queued
    }

    /// Queues the next renewal `after` from now.
    fn schedule(self: &Arc<Self>, after: Duration) {
        self.schedule_at(self.client.clock().now() + after);
    }

    /// Queues the next renewal at `at`, unless the lease has ended. (A lease
    /// that ends meanwhile may stay queued: its renewal finds it ended and
    /// does nothing.)
    fn schedule_at(self: &Arc<Self>, at: Instant) {
        if Word::held(self.word.load(Ordering::SeqCst)) {
            self.client.renewals().schedule(at, self);
        }
    }

    /// One renewal, run by the renewal queue when due: extends the lease and
    /// queues the next renewal, or marks it lost when it cannot be renewed
    /// before its local validity runs out.
    pub(crate) async fn renew(lease: Arc<Lease>, due: Instant) {
        let Some(every) = lease.renew_every else {
            return;
        };
        let Some(until) = lease.valid_until() else {
            return;
        };
        let clock = lease.client.clock().clone();
        tokio::select! {
            biased;
            res = lease.extend() => match res {
                Ok(true) => {
                    let lag = clock.now().saturating_duration_since(due);
                    lease.client.renewals().note_lag(lag, lease.ttl);
                    lease.schedule(every)
                }
                Ok(false) => {}
                // Keep trying, faster, until local validity runs out.
                Err(_) => lease.schedule((every / 3).max(Duration::from_millis(1))),
            },
            _ = clock.sleep_until(until) => lease.mark(true),
        }
    }

    /// The TTL each grant and renewal asks for.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The status now: a lease past its local validity, or whose outer
    /// lease ([`Tenure::within`]) is no longer held, turns lost here.
    fn status(&self) -> Status {
        loop {
            let w = self.word.load(Ordering::SeqCst);
            let status = self.status_of(w);
            match status {
                Status::Held(until)
                    if self.client.clock().now() >= until
                        || self.tenure.within().is_some_and(|o| !o.is_held()) =>
                {
                    if self.end(w, true) {
                        return Status::Lost;
                    }
                    // Renewed or ended meanwhile: look again.
                }
                _ => return status,
            }
        }
    }

    pub(crate) fn is_held(&self) -> bool {
        matches!(self.status(), Status::Held(_))
    }

    /// Whether the lease ended released (by its holder, or its client's
    /// close), not lost.
    pub(crate) fn is_released(&self) -> bool {
        matches!(self.status(), Status::Released)
    }

    pub(crate) fn valid_until(&self) -> Option<Instant> {
        match self.status() {
            Status::Held(until) => Some(until),
            _ => None,
        }
    }

    /// The backend confirmed the lease (renewal, reentrant grant) for a
    /// request sent at `t_sent`.
    pub(crate) fn renewed(&self, t_sent: Instant) {
        let want = self.word_for(t_sent);
        let _ = (self.word).fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
            (Word::held(w) && w < want).then_some(want)
        });
    }

    /// The lease ended: lost, or (`lost == false`) released. No-op unless held.
    pub(crate) fn mark(&self, lost: bool) {
        let mut w = self.word.load(Ordering::SeqCst);
        while Word::held(w) && !self.end(w, lost) {
            w = self.word.load(Ordering::SeqCst);
        }
    }

    /// Ends the lease if its word is still `from` (a held one): off the
    /// renewal queue, lost signals fired. Returns whether it did.
    fn end(&self, from: u64, lost: bool) -> bool {
        let to = Word::ended(lost);
        if (self.word)
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        self.client.renewals().unqueue(&self.queued);
        let held = self
            .client
            .clock()
            .now()
            .saturating_duration_since(self.base);
        let (family, kind) = (self.tenure.family(), self.tenure.kind());
        metrics::ended(&self.client, family, kind, self.tenure.key(), lost, held);
        if lost {
            tracing::warn!(
                family = self.tenure.family(),
                kind = self.tenure.kind(),
                key = %self.tenure.key(),
                holder = %self.tenure.holder(),
                token = self.token.map(FencingToken::get),
                backend = %self.client.backend(),
                "lease lost"
            );
        }
        // Pairs with `ended`, which sets `watched` before it reads the word
        // (both sequentially consistent): either it sees the new word or this
        // sees `watched`.
        if self.watched.load(Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
        true
    }

    /// Waits until the lease is no longer held (lost too when its outer
    /// lease ends).
    async fn ended(&self) {
        self.watched.store(true, Ordering::SeqCst);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(until) = self.valid_until() else {
                return;
            };
            let outer = async {
                match self.tenure.within() {
                    // (Boxed: the future would otherwise contain itself.)
                    Some(outer) => Box::pin(outer.ended()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = notified => {}
                _ = self.client.clock().sleep_until(until) => {}
                _ = outer => {}
            }
        }
    }

    /// Its holder's last step (a run's end) goes out now and the lease
    /// stays held until it answers, renewed meanwhile (the step may have to
    /// be sent again while the lease holds). A renewal the backend refuses
    /// from now on is as likely that step's doing, applied before the
    /// renewal came, as a loss: it stops the renewals but does not mark
    /// the lease lost; the step's answer (the step's caller ends the lease
    /// as it says) or the local validity decides.
    pub(crate) fn ending(&self) {
        self.ending.store(true, Ordering::SeqCst);
    }

    /// One renewal round trip. `Ok(false)` marks the lease lost (unless it
    /// is [ending](Self::ending)).
    pub(crate) async fn extend(&self) -> Result<bool> {
        let client = &self.client;
        let t_sent = client.clock().now();
        let renew = self.tenure.renew(client, self.ttl)?;
        let res = trace::call(client, || self.site("renew"), renew, Outcome::held).await?;
        if res {
            self.renewed(t_sent);
        } else if !self.ending.load(Ordering::SeqCst) {
            self.mark(true);
        }
        Ok(res && self.is_held())
    }

    /// Releases one hold through `client`.
    async fn release_once(&self, client: &Client) -> Result<Release> {
        let release = self.tenure.release(client)?;
        let site = || self.site("release");
        trace::call(client, site, release, Outcome::released).await
    }

    /// Releases one hold; `ends`: this release ends the lease (its last
    /// guard's, or any but a counted hold that leaves other guards). Such a
    /// release stops believing in the lease before the request leaves
    /// (another holder may be granted it the instant the backend frees it,
    /// before this reply is read), and drops every hold the backend still
    /// counts (one an unanswered re-entry or a release whose answer was lost
    /// left). A counted hold's failed release leaves the lease to its other
    /// guards. Returns whether the backend still held the lease (a hold
    /// that leaves other guards: or its lease's last release, on its way
    /// or done, dropped it).
    pub(crate) async fn release(&self, ends: bool) -> Result<bool> {
        self.release_through(&self.client, ends).await
    }

    /// [`release`](Self::release) through `client` (the lease's, or a
    /// closer of it for a clean-up in the background).
    async fn release_through(&self, client: &Client, ends: bool) -> Result<bool> {
        if ends {
            self.mark(false);
        }
        match self.release_once(client).await? {
            Release::Released { remaining: 0 } => {
                self.mark(false);
                Ok(true)
            }
            Release::Released { remaining } => {
                if ends {
                    // What this cannot drop, the TTL frees.
                    let _ = self.release_rest(client, remaining).await;
                }
                Ok(true)
            }
            // A counted hold that is not the last, reaching the backend
            // after the last guard's release (marked released before it
            // left) dropped every hold: held until then, not lost.
            Release::NotHeld if !ends && self.is_released() => Ok(true),
            Release::NotHeld => {
                self.mark(true);
                Ok(false)
            }
        }
    }

    /// Releases the holds the backend still counts, `left` of them, one by
    /// one while their count goes down.
    async fn release_rest(&self, client: &Client, mut left: u32) -> Result<()> {
        while left > 0 {
            match self.release_once(client).await? {
                Release::Released { remaining } if remaining < left => left = remaining,
                _ => break,
            }
        }
        Ok(())
    }

    /// Releases every hold the backend counts (at least one).
    async fn release_all(&self, client: &Client) -> Result<()> {
        self.release_rest(client, u32::MAX).await
    }

    /// [`release`](Self::release) for a guard that was dropped: in the
    /// background, through the closer (it only gives up: it goes out also
    /// once the client is closed), and [sent again](Self::release_again)
    /// when it could not reach the backend.
    async fn release_dropped(self: Arc<Self>, ends: bool) {
        let res = self.release_through(&self.client.closer(), ends).await;
        if ends && res.as_ref().is_err_and(may_not_have_arrived) {
            self.release_again().await;
        }
    }

    /// After a release that ended the lease and [may not have
    /// arrived](may_not_have_arrived): every hold released again, through
    /// the closer, while the backend is unreachable, for at most the TTL
    /// (which frees the lease by then anyway). Never for a counted hold
    /// that leaves other guards (it could drop another guard's hold): such
    /// a release does not end the lease.
    async fn release_again(self: Arc<Self>) {
        let lease = self.clone();
        undo::retry(&self.client.closer(), self.ttl, move |client| {
            let lease = lease.clone();
            async move { lease.release_all(&client).await }
        })
        .await;
    }
}

/// Whether a release that failed with `e` may not have reached the backend:
/// retryable, but not `Unconfirmed` (the master applied it).
pub(crate) fn may_not_have_arrived(e: &crate::Error) -> bool {
    e.is_retryable() && !matches!(e, crate::Error::Unconfirmed { .. })
}

impl<T: ?Sized> fmt::Debug for LeaseState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Runs `fut` on the current runtime if there is one; otherwise drops it
/// (the TTL then frees whatever it would have released).
pub(crate) fn spawn_background<F>(fut: F)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        drop(handle.spawn(fut));
    }
}

#[cfg(test)]
mod tests;
