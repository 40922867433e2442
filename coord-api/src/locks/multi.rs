//! Several exclusive locks at once, all or nothing (Redisson's MultiLock):
//! [`MultiLock`] and the one guard it hands out, [`MultiGuard`].
//!
//! An attempt is one atomic step of the backend when it can
//! ([`LockCapabilities::acquire_all`](crate::spi::LockCapabilities::acquire_all));
//! otherwise the locks are taken one by one in key order, and those taken
//! are released again when one is busy. Either way two callers asking for
//! overlapping sets in different orders never wait for each other in a
//! cycle: nobody holds part of a set while waiting (decision 0034).

use std::time::Duration;

use super::request::{Request, release_once, subscribe};
use crate::{
    Client, Error, FencingToken, HolderId, Key, LeaseGuard, LeaseId, LeaseKind, LockSpace,
    LostSignal, Result, Watch,
    clock::Instant,
    handle::{Handle, option_setters},
    lease::{
        self,
        metrics::{self, Waited},
        undo::{MakeUndo, granting},
        wait::{Step, before, later, wake_at},
    },
    spi::{AcquireAll, check_acquire_all},
    trace::{self, Outcome, Site},
};

/// Several exclusive locks taken together, all or nothing: the guard holds
/// every one of them, or the attempt took none. The locks are those of
/// [`Client::lock`]: a multi-lock on `{a, b}` excludes `client.lock("a")`
/// and is excluded by it. At most
/// [`MAX_MULTI_LOCK_KEYS`](crate::spi::MAX_MULTI_LOCK_KEYS) keys, distinct;
/// an empty set, a repeated key or a bad one is `InvalidArgument` before
/// any I/O. The options are those of [`Lock`](crate::Lock), applied to
/// every member lease.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use std::time::Duration;
/// let both = client
///     .multi_lock(["accounts/alice", "accounts/bob"])
///     .ttl(Duration::from_secs(10));
/// let guard = both.lock().await?;
/// // hand each account's store its own token
/// let alice = guard.token("accounts/alice").expect("a member");
/// let bob = guard.token("accounts/bob").expect("a member");
/// # let _ = (alice, bob);
/// guard.release().await?; // releases both
/// # Ok(()) }
/// ```
///
/// Callers asking for overlapping sets in any order never deadlock: an
/// attempt never holds part of a set while it waits. With the backend's
/// [`acquire_all`](crate::spi::LockCapabilities::acquire_all) an attempt is
/// one atomic step; without it (or for keys the backend cannot take in one
/// step) the locks are tried one by one in key order, and those taken are
/// released again when one is busy.
#[derive(Debug, Clone)]
pub struct MultiLock {
    /// The options (its key is the first name, for option errors).
    handle: Handle,
    names: Vec<String>,
}

/// What one attempt came to.
enum Attempt {
    Done(MultiGuard),
    /// The `index`-th key (in key order) is held by someone else.
    Busy {
        index: usize,
        retry_in: Option<Duration>,
    },
}

impl MultiLock {
    pub(crate) fn new(client: Client, names: Vec<String>) -> MultiLock {
        let first = names.first().map_or("", String::as_str);
        MultiLock {
            handle: Handle::new(client, first),
            names,
        }
    }

    option_setters!();

    /// The keys, as given.
    pub fn keys(&self) -> &[String] {
        &self.names
    }

    /// The leases one acquisition asks for, by `holder`, in key order:
    /// every key and the options checked first.
    fn leases(&self, holder: &HolderId) -> Result<Vec<LeaseId>> {
        let caps = self.handle.client.locks()?.capabilities();
        if !caps.exclusive {
            return Err(self.handle.client.unsupported("exclusive lock"));
        }
        let mut keys = self
            .names
            .iter()
            .map(|n| Key::new(n))
            .collect::<Result<Vec<Key>>>()?;
        keys.sort_unstable();
        let leases: Vec<LeaseId> = keys
            .into_iter()
            .map(|key| LeaseId {
                kind: LeaseKind::Exclusive,
                key,
                holder: holder.clone(),
            })
            .collect();
        check_acquire_all(&leases)?;
        self.handle.checked()?;
        Ok(leases)
    }

    fn holder(&self) -> HolderId {
        HolderId::new(*self.handle.client.instance_id())
    }

    /// Takes every lock if every one is free; `Ok(None)`, holding none, if
    /// any is held by someone else. Never waits for other holders.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let pair = client.multi_lock(["shelf/3", "shelf/4"]);
    /// match pair.try_lock().await? {
    ///     Some(guard) => guard.release().await.map(drop)?,
    ///     None => { /* one of them is taken: none was taken here */ }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// If cancelled after a request left, anything granted is released in
    /// the background.
    pub async fn try_lock(&self) -> Result<Option<MultiGuard>> {
        let leases = self.leases(&self.holder())?;
        let t0 = self.handle.client.clock().now();
        let res = self.attempt(&leases).await?;
        let outcome = match res {
            Attempt::Done(_) => Waited::Acquired,
            Attempt::Busy { .. } => Waited::Busy,
        };
        self.waited(&leases, outcome, t0);
        Ok(match res {
            Attempt::Done(guard) => Some(guard),
            Attempt::Busy { .. } => None,
        })
    }

    /// Takes every lock, waiting while any is held by someone else: woken
    /// by the release notifications of the key in the way (and at its
    /// expiry), with the options' jittered retry delay as the fallback, so
    /// that callers contending for overlapping sets spread out. Fails with
    /// `Error::Timeout` after `wait_timeout` or `max_retries`.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// use std::time::Duration;
    /// let guard = client
    ///     .multi_lock(["rooms/1", "rooms/2", "rooms/3"])
    ///     .wait_timeout(Some(Duration::from_secs(5)))
    ///     .lock()
    ///     .await?;
    /// assert_eq!(guard.tokens().count(), 3);
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait leaves nothing held (a grant in flight
    /// is released in the background).
    pub async fn lock(&self) -> Result<MultiGuard> {
        let mut leases = self.leases(&self.holder())?;
        let client = &self.handle.client;
        let opts = self.handle.opts();
        let clock = client.clock().clone();
        let start = clock.now();
        let deadline = opts.wait_timeout.map(|w| later(start, w));
        // The watch on the key last in the way, and that key's index.
        let mut watch: Option<(usize, Box<dyn Watch>)> = None;
        let mut retries = 0u32;
        // Attempts made at once after a new subscription, since the last
        // sleep: bounded, so that a key in the way that keeps changing does
        // not make a busy loop.
        let mut at_once = 0u32;
        loop {
            if retries > 0 {
                // Every attempt asks as a holder of its own: a release of
                // what an earlier one took (when a member was busy) that
                // reaches the backend late frees nothing a later one took.
                let holder = self.holder();
                leases.iter_mut().for_each(|l| l.holder = holder.clone());
            }
            let (index, retry_in) = match self.attempt(&leases).await? {
                Attempt::Done(guard) => {
                    self.waited(&leases, Waited::Acquired, start);
                    return Ok(guard);
                }
                Attempt::Busy { index, retry_in } => (index, retry_in),
            };
            let timed_out = |now: Instant| {
                self.waited(&leases, Waited::Timeout, start);
                let what = format!("multi-lock on {:?}", self.names);
                client.timed_out(what, now - start)
            };
            let now = clock.now();
            if deadline.is_some_and(|d| now >= d) || opts.max_retries.is_some_and(|m| retries >= m)
            {
                return Err(timed_out(now));
            }
            retries += 1;
            if watch.as_ref().is_none_or(|(i, _)| *i != index) {
                let key = &leases[index].key;
                // The subscription ends at the deadline too: a slow one
                // (the backend reconnecting) would otherwise keep the
                // caller waiting past its `wait_timeout`.
                let subscribe = subscribe(client, LockSpace::Lock, key);
                let Some(w) = before(clock.as_ref(), deadline, subscribe).await else {
                    return Err(timed_out(clock.now()));
                };
                watch = Some((index, w?));
                if at_once < 2 {
                    // A release between the refusal and the subscription
                    // would be missed: look again at once.
                    at_once += 1;
                    continue;
                }
            }
            at_once = 0;
            let Some((_, w)) = watch.as_mut() else {
                continue;
            };
            let wake = wake_at(opts, now, retry_in, None, deadline);
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

    fn waited(&self, leases: &[LeaseId], outcome: Waited, since: Instant) {
        let client = &self.handle.client;
        let waited = client.clock().now() - since;
        metrics::waited(
            client,
            LeaseKind::Exclusive,
            &leases[0].key,
            outcome,
            waited,
        );
    }

    /// One attempt: in one step if the backend can, else key by key.
    async fn attempt(&self, leases: &[LeaseId]) -> Result<Attempt> {
        let caps = self.handle.client.locks()?.capabilities();
        if caps.acquire_all
            && let Some(attempt) = self.in_one_step(leases).await?
        {
            return Ok(attempt);
        }
        self.in_order(leases).await
    }

    /// One `acquire_all` round trip; `None` when the backend cannot take
    /// this set in one step (it said so before any I/O).
    async fn in_one_step(&self, leases: &[LeaseId]) -> Result<Option<Attempt>> {
        let client = &self.handle.client;
        let opts = self.handle.opts();
        let site = || Site {
            op: "acquire_all",
            family: LockSpace::Lock.as_str(),
            kind: LeaseKind::Exclusive.as_str(),
            key: &leases[0].key,
            holder: Some(&leases[0].holder),
            token: None,
        };
        let classify = |a: &AcquireAll| match a {
            AcquireAll::Granted(g) if !g.is_empty() => Outcome::Granted(g[0].token),
            _ => Outcome::Busy,
        };
        let t_sent = client.clock().now();
        let call = client.locks()?.acquire_all(leases, opts.ttl);
        let call = trace::call(client, site, call, classify);
        let undo = || {
            let leases = leases.to_vec();
            move |client: Client| {
                let leases = leases.clone();
                async move {
                    // Every member, whatever the others answered (the
                    // first error is the answer).
                    let mut done = Ok(());
                    for lease in &leases {
                        done = done.and(release_once(&client, lease).await.map(drop));
                    }
                    done
                }
            }
        };
        let answer = match granting(client, opts.ttl, call, undo).await {
            Err(Error::NotSupported { .. }) => return Ok(None),
            other => other?,
        };
        Ok(Some(match answer {
            AcquireAll::Granted(grants) if grants.len() == leases.len() => {
                let validity = self.handle.validity();
                // Every grant becomes its lease before the first error (a
                // closed client) is the answer: each is then released.
                let guards: Vec<_> = (leases.iter().zip(grants))
                    .map(|(id, g)| {
                        let req = Request::with_id(client, id.clone(), opts, validity);
                        req.guard(id.clone(), g.token, t_sent)
                    })
                    .collect();
                let guards = guards.into_iter().collect::<Result<_>>()?;
                Attempt::Done(MultiGuard::new(guards))
            }
            AcquireAll::Busy { index, busy } if index < leases.len() => {
                metrics::contended(client, LeaseKind::Exclusive, &leases[index].key);
                Attempt::Busy {
                    index,
                    retry_in: busy.retry_in,
                }
            }
            other => {
                // Whatever it granted is released in the background.
                undo.fire(client.clone(), opts.ttl);
                let what = format!("acquire_all of {} leases answered {other:?}", leases.len());
                return Err(Error::backend(client.backend(), what));
            }
        }))
    }

    /// One lock at a time, in key order; when one is busy, those taken are
    /// released before the answer.
    async fn in_order(&self, leases: &[LeaseId]) -> Result<Attempt> {
        let client = &self.handle.client;
        let (opts, validity) = (self.handle.opts(), self.handle.validity());
        let mut taken: Vec<LeaseGuard> = Vec::with_capacity(leases.len());
        for (index, id) in leases.iter().enumerate() {
            // An error drops `taken`: released in the background.
            match Request::with_id(client, id.clone(), opts, validity)
                .attempt()
                .await?
            {
                Step::Done(guard) => taken.push(guard),
                Step::Busy(retry_in) => {
                    for guard in taken.into_iter().rev() {
                        // Given up in any case; a failed release leaves
                        // the lease to its TTL.
                        let _ = guard.release().await;
                    }
                    return Ok(Attempt::Busy { index, retry_in });
                }
            }
        }
        Ok(Attempt::Done(MultiGuard::new(taken)))
    }
}

/// The guard of a [`MultiLock`]: every one of its locks, each with its own
/// fencing token, renewed together while the guard lives (each by the lease
/// engine, as a [`LeaseGuard`] is).
///
/// - [`tokens`](Self::tokens) and [`token`](Self::token) give each key's
///   fencing token, to hand to the resource that key protects;
/// - [`is_held`](Self::is_held) and [`lost`](Self::lost) speak for the
///   whole set: it stops being held when any member lease is lost
///   (released, refused on renewal, past its local validity);
/// - [`release`](Self::release) releases every lock; dropping the guard
///   releases them in the background (and if that cannot happen, their TTL
///   frees them).
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// let guard = client.multi_lock(["stock/42", "orders/7"]).lock().await?;
/// let lost = guard.lost_signal(); // fires when either lease is lost
/// let work = async {
///     for (key, token) in guard.tokens() {
///         // write to `key`'s store, fenced by `token`
///         # let _ = (key, token);
///     }
/// };
/// tokio::select! {
///     _ = lost.wait() => { /* stop: someone else may hold a member now */ }
///     _ = work => {}
/// }
/// guard.release().await?; // every member
/// # Ok(()) }
/// ```
#[must_use = "if unused the locks are released immediately"]
pub struct MultiGuard {
    /// In key order.
    guards: Vec<LeaseGuard>,
}

impl MultiGuard {
    fn new(guards: Vec<LeaseGuard>) -> MultiGuard {
        MultiGuard { guards }
    }

    /// Each key with its fencing token, in key order.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = (&Key, FencingToken)> + '_ {
        self.guards.iter().map(|g| (g.key(), g.token()))
    }

    /// The fencing token of `key`, or `None` if it is not a member.
    pub fn token(&self, key: &str) -> Option<FencingToken> {
        self.guards
            .iter()
            .find(|g| g.key().as_str() == key)
            .map(LeaseGuard::token)
    }

    /// The member guards, in key order (to read; releasing is the whole
    /// guard's).
    pub fn guards(&self) -> &[LeaseGuard] {
        &self.guards
    }

    /// The holder every member lease was granted to.
    pub fn holder(&self) -> &HolderId {
        self.guards[0].holder()
    }

    /// Whether every member lease is still held as far as this client can
    /// tell (no I/O).
    pub fn is_held(&self) -> bool {
        self.guards.iter().all(LeaseGuard::is_held)
    }

    /// Until when every member lease counts as valid locally (the earliest
    /// of their deadlines), or `None` once any is no longer held.
    pub fn valid_until(&self) -> Option<Instant> {
        self.guards.iter().map(LeaseGuard::valid_until).min()?
    }

    /// Completes when any member lease is lost (at once if one already
    /// is). Fires at the local validity deadline even when the backend
    /// cannot be reached.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future changes nothing.
    pub async fn lost(&self) {
        let leases: Vec<_> = self.guards.iter().map(|g| g.lease().clone()).collect();
        lease::any_ended(&leases).await
    }

    /// A `'static` handle on the lost signal (any member lost), to hand to
    /// a task.
    pub fn lost_signal(&self) -> LostSignal {
        LostSignal::any(self.guards.iter().map(LeaseGuard::lease))
    }

    /// Renews every member lease now for its TTL. Returns whether all are
    /// still held. Auto-extension does this for you.
    ///
    /// # Cancel safety
    /// Cancel safe: a renewal changes no holder.
    pub async fn extend(&self) -> Result<bool> {
        let mut all = true;
        for g in &self.guards {
            all &= g.extend().await?;
        }
        Ok(all)
    }

    /// Releases every lock. Returns whether every one was still held by
    /// this holder on the backend; the first error, if any, after trying
    /// them all.
    ///
    /// # Cancel safety
    /// If cancelled, the releases go on in the background.
    pub async fn release(self) -> Result<bool> {
        let mut all = Ok(true);
        for g in self.guards {
            match g.release().await {
                Ok(held) => {
                    if let Ok(a) = &mut all {
                        *a &= held;
                    }
                }
                Err(e) => {
                    if all.is_ok() {
                        all = Err(e);
                    }
                }
            }
        }
        all
    }
}

impl std::fmt::Debug for MultiGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiGuard")
            .field("holder", self.holder())
            .field("tokens", &self.tokens().collect::<Vec<_>>())
            .field("held", &self.is_held())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::Counting;

    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}

    /// The futures and the guard can move between tasks; the handle and
    /// the guard can be shared.
    #[tokio::test]
    async fn futures_and_guard_are_send() {
        send_sync::<MultiLock>();
        send_sync::<MultiGuard>();
        let client = Client::new(Arc::new(Counting::default()));
        let set = client.multi_lock(["b", "a"]);
        let (try_lock, lock) = (set.try_lock(), set.lock());
        send(&try_lock);
        send(&lock);
        drop((try_lock, lock));
        let guard = set.try_lock().await.unwrap().expect("the fake grants all");
        let (lost, release) = (guard.lost(), guard.extend());
        send(&lost);
        send(&release);
    }

    /// Without `acquire_all`, the locks are taken one by one in key order
    /// (whatever the order named), and one release releases each.
    #[tokio::test]
    async fn without_the_one_step_each_lock_is_taken_in_key_order() {
        let backend = Arc::new(Counting::default());
        let client = Client::new(backend.clone());
        let set = client.multi_lock(["c", "a", "b"]);
        assert_eq!(set.keys(), ["c", "a", "b"], "as given");
        let guard = set.try_lock().await.unwrap().expect("the fake grants all");
        let keys: Vec<&str> = guard.tokens().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        let tokens: Vec<u64> = guard.tokens().map(|(_, t)| t.get()).collect();
        assert_eq!(tokens, [1, 2, 3], "granted in key order");
        assert_eq!(guard.token("b"), Some(FencingToken(2)));
        assert_eq!(guard.token("d"), None);
        assert!(guard.is_held() && guard.valid_until().is_some());
        assert!(guard.release().await.unwrap());
        assert_eq!(backend.releases(), 3);
    }
}
