//! A held lease: its guard, its local validity, its lost signal and the
//! watchdog that renews it ([`LeaseShared`]); or, on an in-process backend on
//! the client's own clock, a [`LocalLease`] that the backend keeps and the
//! guard asks about.

use std::{
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

use crate::{
    Client, FencingToken, HolderId, Holding, InProcessLeases, Key, LeaseId, LeaseKind, LockOptions,
    Quorum, Release, Result,
    clock::Instant,
    renewal::Queued,
    trace::{self, Outcome},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Held, valid locally until the instant.
    Held(Instant),
    /// Lost: expired locally, refused on renewal, or found gone.
    Lost,
    /// Released by its holder.
    Released,
}

/// What a lease is, for renewal and release: a lease of the lock family, a
/// leadership term, a group membership, or a run of a run-once job. `id`
/// names the key and holder in every case.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Lease,
    Term(Option<Quorum>),
    Member,
    Run(Key),
}

/// State shared by the guards of one lease (several for a reentrant lock),
/// its lost signals and its watchdog.
pub(crate) struct LeaseShared {
    pub(crate) client: Client,
    pub(crate) id: LeaseId,
    target: Target,
    pub(crate) token: FencingToken,
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
    /// skips `notify_waiters` (a lock held and released without anyone
    /// watching it pays for no wake-up).
    watched: AtomicBool,
    /// Its place in the client's renewal queue.
    queued: Queued,
}

/// How `LeaseShared::word` encodes a [`Status`]: held until `base` plus that
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

impl LeaseShared {
    /// A lease granted for `opts.ttl` on a request sent at `t_sent`, valid
    /// locally for `validity` from then, and renewed in the background (on
    /// the client's renewal queue) when `opts` say so, the first time one
    /// renewal period after `t_sent`.
    pub(crate) fn start(
        client: Client,
        id: LeaseId,
        target: Target,
        token: FencingToken,
        opts: &LockOptions,
        validity: Duration,
        t_sent: Instant,
    ) -> Arc<LeaseShared> {
        let renew_every = opts.auto_extend.then(|| opts.renew_every());
        let lease = Arc::new(LeaseShared {
            client,
            id,
            target,
            token,
            ttl: opts.ttl,
            validity,
            renew_every,
            word: AtomicU64::new(Word::held_for(validity)),
            base: t_sent,
            changed: Notify::new(),
            watched: AtomicBool::new(false),
            queued: Queued::default(),
        });
        if let Some(every) = renew_every {
            lease.schedule_at(t_sent + every);
        }
        lease
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
    pub(crate) async fn renew(lease: Arc<LeaseShared>) {
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
                Ok(true) => lease.schedule(every),
                Ok(false) => {}
                // Keep trying, faster, until local validity runs out.
                Err(_) => lease.schedule((every / 3).max(Duration::from_millis(1))),
            },
            _ = clock.sleep_until(until) => lease.mark(true),
        }
    }

    /// The status now: a lease past its local validity turns lost here.
    fn status(&self) -> Status {
        loop {
            let w = self.word.load(Ordering::SeqCst);
            let status = self.status_of(w);
            match status {
                Status::Held(until) if self.client.clock().now() >= until => {
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

    fn valid_until(&self) -> Option<Instant> {
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
        self.queued.clear();
        if lost {
            warn_lost(&self.id, self.token, &self.client);
        }
        // Pairs with `ended`, which sets `watched` before it reads the word
        // (both sequentially consistent): either it sees the new word or this
        // sees `watched`.
        if self.watched.load(Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
        true
    }

    /// Waits until the lease is no longer held.
    async fn ended(&self) {
        self.watched.store(true, Ordering::SeqCst);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(until) = self.valid_until() else {
                return;
            };
            tokio::select! {
                biased;
                _ = notified => {}
                _ = self.client.clock().sleep_until(until) => {}
            }
        }
    }

    /// Whether a release ends the lease whatever the backend answers: every
    /// kind but a reentrant hold, whose count only the backend knows.
    fn ends_on_release(&self) -> bool {
        !matches!(
            (&self.target, self.id.kind),
            (Target::Lease, LeaseKind::Reentrant)
        )
    }

    /// One renewal round trip. `Ok(false)` marks the lease lost.
    pub(crate) async fn extend(&self) -> Result<bool> {
        let t_sent = self.client.clock().now();
        let res = trace::call(
            "extend",
            &self.client,
            &self.id,
            Some(self.token),
            self.backend_extend(),
            classify_held,
        )
        .await?;
        if res {
            self.renewed(t_sent);
        } else {
            self.mark(true);
        }
        Ok(res && self.is_held())
    }

    async fn backend_extend(&self) -> Result<bool> {
        let (key, holder, ttl) = (&self.id.key, &self.id.holder, self.ttl);
        match &self.target {
            Target::Lease => match self.client.backend().in_process() {
                Some(local) => local.extend_now(&self.id, ttl),
                None => self.client.backend().extend(&self.id, ttl).await,
            },
            Target::Term(quorum) => {
                let q = quorum.as_ref();
                (self.client.leadership()?)
                    .renew(key, holder, self.token, ttl, q)
                    .await
            }
            Target::Member => self.client.leadership()?.heartbeat(key, holder, ttl).await,
            Target::Run(occ) => {
                (self.client.leadership()?)
                    .extend_once(key, occ, holder, ttl)
                    .await
            }
        }
    }

    async fn backend_release(&self) -> Result<Release> {
        let (key, holder) = (&self.id.key, &self.id.holder);
        let held = match &self.target {
            Target::Lease => return self.client.backend().release(&self.id).await,
            Target::Term(_) => {
                self.client
                    .leadership()?
                    .resign(key, holder, self.token)
                    .await?
            }
            Target::Member => self.client.leadership()?.leave(key, holder).await?,
            Target::Run(occ) => {
                (self.client.leadership()?)
                    .end_once(key, occ, holder, None)
                    .await?
            }
        };
        Ok(if held {
            Release::Released { remaining: 0 }
        } else {
            Release::NotHeld
        })
    }
}

/// A lease of an in-process backend on the client's own clock: the backend
/// lives in this process's memory and decides expiry by this very clock, so
/// the client keeps no copy of the lease's state and asks the backend
/// instead. Auto-extension is the backend's: such a lease is granted *kept*
/// (see [`InProcessLeases::acquire_kept`]) and lasts until released. No
/// renewal queue, no status word, no reference count: a lock cycle is the
/// backend's two calls and the guard's one allocation.
#[derive(Debug, Clone)]
pub(crate) struct LocalLease {
    client: Client,
    id: LeaseId,
    token: FencingToken,
    ttl: Duration,
}

impl LocalLease {
    pub(crate) fn new(client: Client, id: LeaseId, token: FencingToken, ttl: Duration) -> Self {
        LocalLease {
            client,
            id,
            token,
            ttl,
        }
    }

    fn backend(&self) -> &dyn InProcessLeases {
        // A backend that has an in-process face has it for its whole life.
        (self.client.backend().in_process()).expect("an in-process backend stays in process")
    }

    fn holding(&self) -> Holding {
        self.backend().holding(&self.id, self.token)
    }

    fn is_held(&self) -> bool {
        self.holding() != Holding::NotHeld
    }

    fn valid_until(&self) -> Option<Instant> {
        match self.holding() {
            Holding::NotHeld => None,
            Holding::Until(until) => Some(until),
            // Kept: as if renewed for its TTL at every instant.
            Holding::UntilReleased => Some(self.backend().clock().now() + self.ttl),
        }
    }

    /// Waits until the backend no longer holds the lease: woken by the
    /// key's notifications (release, force release) and at its expiry.
    async fn ended(&self) {
        let clock = self.backend().clock();
        let family = self.id.kind.family();
        // Subscribed before the first look: a change between a look and the
        // wait that follows it is told by the wait.
        let mut watch = self.client.backend().subscribe(family, &self.id.key).await;
        loop {
            let until = match self.holding() {
                Holding::NotHeld => return,
                Holding::Until(until) => Some(until),
                Holding::UntilReleased => None,
            };
            let changed = async {
                match &mut watch {
                    Ok(w) => drop(w.changed().await),
                    // No notifications: look again once per TTL.
                    Err(_) => clock.sleep_until(clock.now() + self.ttl).await,
                }
            };
            match until {
                Some(until) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = clock.sleep_until(until) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    async fn extend(&self) -> Result<bool> {
        let extend = |local: &dyn InProcessLeases| local.extend_now(&self.id, self.ttl);
        let held = self.call("extend", extend, classify_held)?;
        Ok(self.still(held))
    }

    fn release(&self) -> Result<bool> {
        let release = |local: &dyn InProcessLeases| local.release_now(&self.id);
        let res = self.call("release", release, classify_release)?;
        Ok(self.still(matches!(res, Release::Released { .. })))
    }

    /// One call on this lease to the backend, traced.
    fn call<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&dyn InProcessLeases) -> Result<T>,
        classify: impl FnOnce(&T) -> Outcome,
    ) -> Result<T> {
        let local = self.backend();
        let (client, id, token) = (&self.client, &self.id, Some(self.token));
        trace::call_now(op, client, id, token, || f(local), classify)
    }

    /// Whether the backend still `held` the lease when asked; warns when it
    /// no longer did.
    fn still(&self, held: bool) -> bool {
        if !held {
            warn_lost(&self.id, self.token, &self.client);
        }
        held
    }
}

fn warn_lost(id: &LeaseId, token: FencingToken, client: &Client) {
    tracing::warn!(
        key = %id.key,
        holder = %id.holder,
        token = token.get(),
        backend = %client.backend(),
        "lease lost"
    );
}

fn classify_held(held: &bool) -> Outcome {
    if *held { Outcome::Ok } else { Outcome::NotHeld }
}

fn classify_release(r: &Release) -> Outcome {
    match r {
        Release::Released { .. } => Outcome::Ok,
        Release::NotHeld => Outcome::NotHeld,
    }
}

/// What a guard holds.
enum Held {
    /// A lease whose state this client keeps (and renews).
    Shared(Arc<LeaseShared>),
    /// A lease of an in-process backend, asked directly. Boxed: guards are
    /// moved through several futures, and a small one moves cheaper.
    Local(Box<LocalLease>),
}

/// A guard for a held lease: a lock, a read or write lock, or a permit.
///
/// - [`token`](Self::token) is the fencing token to hand to the protected
///   resource;
/// - [`is_held`](Self::is_held) and [`lost`](Self::lost) tell whether the
///   holder can still rely on the lease: it stops being held at its local
///   validity deadline unless renewed, when renewal is refused, or on release;
/// - [`release`](Self::release) says whether the lease was still held;
///   dropping the guard releases in the background (and if that cannot happen,
///   the TTL frees the key).
///
/// On the in-memory backend with the client on its clock (the usual set-up of
/// unit tests), a lock, read-write lock or permit is a lease the backend keeps
/// for the guard (see the contract's *local validity*): the guard asks the
/// backend whether it holds it, auto-extension needs no renewals, a force
/// release is seen at once, and a drop releases at once.
#[must_use = "if unused the lease is released immediately"]
pub struct LeaseGuard {
    held: Held,
    released: bool,
}

/// The guard of an exclusive or reentrant [`Lock`](crate::Lock).
pub type LockGuard = LeaseGuard;
/// The guard of a reader of a [`RwLock`](crate::RwLock).
pub type ReadGuard = LeaseGuard;
/// The guard of the writer of a [`RwLock`](crate::RwLock).
pub type WriteGuard = LeaseGuard;
/// One permit of a [`Semaphore`](crate::Semaphore).
pub type Permit = LeaseGuard;

impl LeaseGuard {
    pub(crate) fn new(shared: Arc<LeaseShared>) -> LeaseGuard {
        LeaseGuard {
            held: Held::Shared(shared),
            released: false,
        }
    }

    pub(crate) fn local(lease: LocalLease) -> LeaseGuard {
        LeaseGuard {
            held: Held::Local(Box::new(lease)),
            released: false,
        }
    }

    /// The lease's shared state, unless the backend keeps it (in process).
    pub(crate) fn shared(&self) -> Option<&Arc<LeaseShared>> {
        match &self.held {
            Held::Shared(shared) => Some(shared),
            Held::Local(_) => None,
        }
    }

    /// Takes the lease out of the guard without releasing it (the caller
    /// ends it another way). Only for a guard made by [`new`](Self::new).
    pub(crate) fn into_shared(mut self) -> Arc<LeaseShared> {
        self.released = true;
        match &self.held {
            Held::Shared(shared) => shared.clone(),
            Held::Local(_) => unreachable!("into_shared on a guard made by new"),
        }
    }

    fn id(&self) -> &LeaseId {
        match &self.held {
            Held::Shared(shared) => &shared.id,
            Held::Local(local) => &local.id,
        }
    }

    /// The fencing token of this grant.
    pub fn token(&self) -> FencingToken {
        match &self.held {
            Held::Shared(shared) => shared.token,
            Held::Local(local) => local.token,
        }
    }

    /// The key of the lease.
    pub fn key(&self) -> &Key {
        &self.id().key
    }

    /// The holder the lease was granted to.
    pub fn holder(&self) -> &HolderId {
        &self.id().holder
    }

    /// The kind of lease.
    pub fn kind(&self) -> LeaseKind {
        self.id().kind
    }

    /// Whether the lease is still held as far as this client can tell: not
    /// released, not refused on renewal, and within its local validity.
    pub fn is_held(&self) -> bool {
        match &self.held {
            Held::Shared(shared) => shared.is_held(),
            Held::Local(local) => local.is_held(),
        }
    }

    /// Until when the lease counts as valid locally (by the client's clock),
    /// or `None` once it is no longer held.
    pub fn valid_until(&self) -> Option<Instant> {
        match &self.held {
            Held::Shared(shared) => shared.valid_until(),
            Held::Local(local) => local.valid_until(),
        }
    }

    /// Completes when the lease is lost (it completes at once if it already
    /// is). Fires at the local validity deadline even when the backend cannot
    /// be reached (a lease an in-process backend keeps: when the backend no
    /// longer holds it).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future changes nothing.
    pub async fn lost(&self) {
        match &self.held {
            Held::Shared(shared) => shared.ended().await,
            Held::Local(local) => local.ended().await,
        }
    }

    /// A `'static` handle on the lost signal, to hand to a task.
    pub fn lost_signal(&self) -> LostSignal {
        LostSignal {
            lease: match &self.held {
                Held::Shared(shared) => Signal::Shared(Arc::downgrade(shared)),
                Held::Local(local) => Signal::Local(Arc::new((**local).clone())),
            },
        }
    }

    /// Renews the lease now for its TTL. Returns whether it is still held; a
    /// `false` marks it lost. Auto-extension calls this for you (a kept
    /// lease needs no renewal; this only asks whether it is still held).
    pub async fn extend(&self) -> Result<bool> {
        match &self.held {
            Held::Shared(shared) => shared.extend().await,
            Held::Local(local) => local.extend().await,
        }
    }

    /// Releases the lease (one hold of a reentrant lock). Returns whether the
    /// lease was still held by this holder on the backend.
    ///
    /// # Cancel safety
    /// If cancelled, the release goes on in the background.
    pub async fn release(mut self) -> Result<bool> {
        let shared = match &self.held {
            Held::Shared(shared) => shared.clone(),
            Held::Local(local) => {
                // Answered at once: nothing to cancel midway.
                self.released = true;
                return local.release();
            }
        };
        // Cancelled midway, the guard's drop sends the release again in the
        // background: harmless twice, except for a reentrant hold, which is
        // counted and so not repeated.
        self.released = !shared.ends_on_release();
        let res = release_lease(&shared).await;
        self.released = true;
        res
    }
}

async fn release_lease(shared: &LeaseShared) -> Result<bool> {
    // When this release ends the lease (every kind but a reentrant hold,
    // whose count only the backend knows), stop believing in it before the
    // request leaves: another holder may be granted it the instant the
    // backend frees it, before this reply is read.
    let ends = shared.ends_on_release();
    if ends {
        shared.mark(false);
    }
    let (client, id, token) = (&shared.client, &shared.id, Some(shared.token));
    let classify = classify_release;
    let res = match (&shared.target, client.backend().in_process()) {
        (Target::Lease, Some(local)) => trace::call_now(
            "release",
            client,
            id,
            token,
            || local.release_now(id),
            classify,
        ),
        // Boxed: the in-process path's future stays small.
        _ => {
            let release = shared.backend_release();
            Box::pin(trace::call("release", client, id, token, release, classify)).await
        }
    };
    match res {
        Ok(Release::Released { remaining: 0 }) => {
            if !ends {
                shared.mark(false);
            }
            Ok(true)
        }
        Ok(Release::Released { .. }) => Ok(true),
        Ok(Release::NotHeld) => {
            shared.mark(true);
            Ok(false)
        }
        Err(e) => {
            // The holder gave the lease up; stop renewing it. The TTL frees it.
            shared.mark(false);
            Err(e)
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        match &self.held {
            Held::Shared(shared) => {
                let shared = shared.clone();
                spawn_background(async move { release_lease(&shared).await });
            }
            // In process, at once: no runtime needed.
            Held::Local(local) => drop(local.release()),
        }
    }
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id();
        f.debug_struct("LeaseGuard")
            .field("kind", &id.kind)
            .field("key", &id.key)
            .field("holder", &id.holder)
            .field("token", &self.token())
            .field("held", &self.is_held())
            .finish()
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

/// A `'static`, cloneable view of a lease's lost signal, like a cancellation
/// token: hand it to the task doing the protected work.
///
/// ```
/// # use coord_api::LostSignal;
/// async fn work(lost: LostSignal) {
///     tokio::select! {
///         _ = lost.wait() => { /* stop writing: someone else may hold it */ }
///         _ = async { /* the protected work */ } => {}
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct LostSignal {
    lease: Signal,
}

#[derive(Clone, Debug)]
enum Signal {
    Shared(Weak<LeaseShared>),
    Local(Arc<LocalLease>),
}

impl LostSignal {
    /// Completes when the lease is no longer held: lost, or released (or
    /// every guard of it dropped).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait(&self) {
        match &self.lease {
            Signal::Shared(weak) => {
                if let Some(s) = weak.upgrade() {
                    s.ended().await
                }
            }
            Signal::Local(local) => local.ended().await,
        }
    }

    /// Whether the lease is no longer held.
    pub fn is_lost(&self) -> bool {
        match &self.lease {
            Signal::Shared(weak) => weak.upgrade().is_none_or(|s| !s.is_held()),
            Signal::Local(local) => !local.is_held(),
        }
    }
}

impl fmt::Debug for LeaseShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseShared")
            .field("id", &self.id)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::{LeaseShared, Target};
    use crate::{
        Client, FencingToken, HolderId, Key, LeaseId, LeaseKind, LockOptions,
        testing::{Counting, take},
    };

    /// Once a lease has ended nothing makes it held again: a renewal whose
    /// answer is read after the release (or the expiry) changes nothing,
    /// however the threads interleave.
    #[test]
    fn an_ended_lease_stays_ended_whatever_races_it() {
        let client = Client::new(Arc::new(Counting::default()));
        let opts = LockOptions {
            auto_extend: false,
            ..LockOptions::default()
        };
        for round in 0..200 {
            let id = LeaseId {
                kind: LeaseKind::Exclusive,
                key: Key::new("k").unwrap(),
                holder: HolderId::new(*client.instance_id()),
            };
            let now = client.clock().now();
            let lease = LeaseShared::start(
                client.clone(),
                id,
                Target::Lease,
                FencingToken(1),
                &opts,
                Duration::from_secs(30),
                now,
            );
            std::thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..500 {
                        lease.renewed(client.clock().now());
                    }
                });
                s.spawn(|| lease.mark(round % 2 == 0));
                s.spawn(|| {
                    let mut ended = false;
                    for _ in 0..500 {
                        let held = lease.is_held();
                        assert!(!(ended && held), "held again after it ended");
                        ended |= !held;
                    }
                });
            });
            assert!(!lease.is_held());
        }
    }

    fn slow_release() -> Arc<Counting> {
        Arc::new(Counting::with_slow_release(Duration::from_secs(1)))
    }

    /// A release cancelled before its answer goes on in the background: the
    /// guard's drop sends it again (harmless twice: the lease ended either way).
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_release_is_sent_again_in_the_background() {
        let backend = slow_release();
        let client = Client::new(backend.clone());
        let guard = take(&client, "k").await;
        let lost = guard.lost_signal();
        let cancelled = tokio::time::timeout(Duration::from_millis(10), guard.release()).await;
        assert!(cancelled.is_err(), "the release answers after 1 s");
        assert!(lost.is_lost(), "a release ends the lease before it is sent");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(backend.releases(), 2);
    }

    /// Not so for a reentrant hold: the backend counts holds, and a second
    /// release would drop one that another guard counts on.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_reentrant_release_is_not_repeated() {
        let backend = slow_release();
        let client = Client::new(backend.clone());
        let guard = client.lock("k").reentrant(true).try_lock().await.unwrap();
        let guard = guard.expect("the fake grants everything");
        let cancelled = tokio::time::timeout(Duration::from_millis(10), guard.release()).await;
        assert!(cancelled.is_err(), "the release answers after 1 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(backend.releases(), 1);
    }
}
