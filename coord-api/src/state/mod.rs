//! Shared values: typed, versioned values any instance reads and writes,
//! with compare-and-set, bounded read-modify-write, optional TTLs, and
//! watches that see every change in order or are told what they missed.
//!
//! | type | what it is |
//! |---|---|
//! | [`State`] (from [`Client::state`] or [`StateSpace::value`]) | one value: get, put, compare-and-set, update, delete |
//! | [`StateSpace`] (from [`Client::state_space`]) | values sharing one space: one version sequence, one change log, prefix watches |
//! | [`Versioned`], [`CasOutcome`] | a value with its version; what a compare-and-set did |
//! | [`StateWatch`], [`StateEvent`] (`watch.rs`) | every change after a version, in order, or a gap with the current state |
//! | `metrics.rs` | what the family counts |
//!
//! The contract is [`contract::state`](crate::contract::state); the
//! backend's rules are in [`spi::state`](crate::spi::state).

pub(crate) mod metrics;
mod watch;

use std::{marker::PhantomData, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Backoff, Client, Error, Key, Result, codec,
    lease::undo::call_id,
    spi::{
        Expect, Select, Stored, Written,
        state::{check_put, name_of},
    },
    trace::{self, Outcome, Site},
};

pub use watch::{StateEvent, StateWatch};

/// A value with its version and the time left before its TTL passes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version: strictly greater than every version the key had before.
    pub version: u64,
    /// The time left before it expires, if it has a TTL.
    pub expires_in: Option<Duration>,
}

/// What a compare-and-set did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CasOutcome<T> {
    /// Written: the new version.
    Set(u64),
    /// The version was not the one expected; nothing was written. The
    /// current value (`None`: absent).
    Conflict(Option<Versioned<T>>),
}

impl<T> CasOutcome<T> {
    /// The new version, if written.
    pub fn version(&self) -> Option<u64> {
        match self {
            CasOutcome::Set(v) => Some(*v),
            CasOutcome::Conflict(_) => None,
        }
    }
}

/// A key as given: validated, or the raw text for the error.
type Named = std::result::Result<Key, String>;

fn named(raw: &str) -> Named {
    Key::new(raw).map_err(|_| raw.to_owned())
}

fn checked(name: &Named) -> Result<&Key> {
    match name {
        Ok(k) => Ok(k),
        Err(raw) => Err(Key::new(raw).expect_err("validated before")),
    }
}

/// Values sharing one space: one sequence of versions, one change log,
/// watches of the whole space or of the keys starting with a prefix. A
/// space is stored together (one Redis Cluster slot) and holds at most
/// 1,000 keys. Cheap to clone.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::StateEvent;
///
/// let flags = client.state_space::<bool>("feature-flags");
/// flags.value("checkout/new-ui").put(&true).await?;
/// let mut watch = flags.watch("checkout/", 0);
/// // From version 0: the current state first (a gap from 0, as the log
/// // may not reach back to the first change), then every change.
/// if let StateEvent::Gap { current, .. } = watch.next().await? {
///     assert_eq!(current[0].0, "checkout/new-ui");
/// }
/// # Ok(()) }
/// ```
pub struct StateSpace<T> {
    client: Client,
    space: Named,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for StateSpace<T> {
    fn clone(&self) -> Self {
        StateSpace {
            client: self.client.clone(),
            space: self.space.clone(),
            _value: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for StateSpace<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSpace")
            .field("space", &raw(&self.space))
            .field("value", &std::any::type_name::<T>())
            .finish()
    }
}

fn raw(name: &Named) -> &str {
    match name {
        Ok(k) => k.as_str(),
        Err(raw) => raw,
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> StateSpace<T> {
    pub(crate) fn new(client: Client, space: &str) -> StateSpace<T> {
        StateSpace {
            client,
            space: named(space),
            _value: PhantomData,
        }
    }

    /// The space's name.
    pub fn name(&self) -> &str {
        raw(&self.space)
    }

    /// The value of `key` in this space.
    pub fn value(&self, key: &str) -> State<T> {
        State::in_space(self.client.clone(), self.space.clone(), named(key))
    }

    /// Every change of the keys of this space starting with `prefix`
    /// (empty: every key) after `from_version`, in order, or a gap with the
    /// current state; see [`StateWatch`].
    pub fn watch(&self, prefix: &str, from_version: u64) -> StateWatch<T> {
        StateWatch::new(
            self.client.clone(),
            self.space.clone(),
            Ok(Select::Prefix(prefix.to_owned())),
            from_version,
        )
    }
}

/// One shared value of type `T` (JSON on the wire, at most 64 KiB). Cheap
/// to clone.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::CasOutcome;
///
/// let limit = client.state::<u32>("rate-limit");
/// let v1 = limit.put(&100).await?;
/// // Compare-and-set: only from the version read.
/// assert!(matches!(limit.compare_and_set(Some(v1), &200).await?, CasOutcome::Set(_)));
/// assert!(matches!(limit.compare_and_set(Some(v1), &300).await?, CasOutcome::Conflict(_)));
/// // Read-modify-write, retried on conflict.
/// let now = limit.update(|n| n.copied().unwrap_or(0) + 1).await?;
/// assert_eq!(now.value, 201);
/// # Ok(()) }
/// ```
pub struct State<T> {
    client: Client,
    space: Named,
    key: Named,
    ttl: Option<Duration>,
    max_attempts: u32,
    backoff: Backoff,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State {
            client: self.client.clone(),
            space: self.space.clone(),
            key: self.key.clone(),
            ttl: self.ttl,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            _value: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for State<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("space", &raw(&self.space))
            .field("key", &raw(&self.key))
            .field("value", &std::any::type_name::<T>())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// How many times in a row [`State::update`] sends a write left
/// unanswered (a retryable error) again, under the same call id, before it
/// returns the error: a backend that is down fails the update in three
/// sends, not in every attempt `max_attempts` allows.
pub const UPDATE_RESENDS: u32 = 2;

/// The most attempts [`State::max_attempts`] accepts.
pub const MAX_UPDATE_ATTEMPTS: u32 = 10_000;

impl<T: Serialize + DeserializeOwned + Send + 'static> State<T> {
    /// Attempts of [`update`](Self::update) unless set otherwise.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 64;

    /// The back-off between [`update`](Self::update)'s attempts unless set
    /// otherwise: up to 1 ms after the first conflict, doubling, at most
    /// 16 ms.
    pub const DEFAULT_BACKOFF: Backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(16),
    };

    pub(crate) fn new(client: Client, key: &str) -> State<T> {
        let key = named(key);
        State::in_space(client, key.clone(), key)
    }

    fn in_space(client: Client, space: Named, key: Named) -> State<T> {
        State {
            client,
            space,
            key,
            ttl: None,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            backoff: Self::DEFAULT_BACKOFF,
            _value: PhantomData,
        }
    }

    /// Every write of this handle gives the value this TTL (`None`: the
    /// value never expires, and a write clears an earlier TTL). When it
    /// passes, the value is gone, and watchers see an `Expired` change.
    pub fn ttl(mut self, ttl: Option<Duration>) -> State<T> {
        self.ttl = ttl;
        self
    }

    /// How many times [`update`](Self::update) tries before
    /// `Error::Conflict` (1 ..= 10,000; default 64).
    pub fn max_attempts(mut self, n: u32) -> State<T> {
        self.max_attempts = n;
        self
    }

    /// Sets the back-off between [`update`](Self::update)'s attempts:
    /// after the n-th conflict in a row, a wait drawn uniformly from zero
    /// to `initial * 2^(n-1)`, at most `max` (default
    /// [`DEFAULT_BACKOFF`](Self::DEFAULT_BACKOFF)).
    pub fn backoff(mut self, backoff: Backoff) -> State<T> {
        self.backoff = backoff;
        self
    }

    /// The key, as given.
    pub fn key(&self) -> &str {
        raw(&self.key)
    }

    fn keys(&self) -> Result<(&Key, &Key)> {
        Ok((checked(&self.space)?, checked(&self.key)?))
    }

    fn site<'a>(&self, op: &'static str, key: &'a Key) -> Site<'a> {
        Site {
            op,
            family: "state",
            kind: "value",
            key,
            holder: None,
            token: None,
        }
    }

    /// The value and its version, if present.
    pub async fn get(&self) -> Result<Option<Versioned<T>>> {
        let (space, key) = self.keys()?;
        let stored = self.stored(space, key).await?;
        stored
            .map(|s| decode(&self.client, space, key, s))
            .transpose()
    }

    async fn stored(&self, space: &Key, key: &Key) -> Result<Option<Stored>> {
        let get = self.client.state_backend()?.get(space, key);
        trace::call(&self.client, || self.site("get", key), get, Outcome::ok).await
    }

    /// Writes `value` whatever the current version; the new version.
    ///
    /// Written once when its reply is lost: sent again under the same
    /// call, as [`update`](Self::update)'s writes are (see there).
    pub async fn put(&self, value: &T) -> Result<u64> {
        let (space, key) = self.keys()?;
        let bytes = self.encode(space, key, value)?;
        match self
            .write_once(space, key, bytes, Expect::Any, "put")
            .await?
        {
            Written::Done(v) => Ok(v),
            other => Err(self.unexpected("put", &other)),
        }
    }

    /// Writes `value` only if the current version is `expected` (`None` or
    /// `Some(0)`: only if absent). A conflict carries the current value, so
    /// a retry needs no other read.
    ///
    /// A write whose reply is lost (a retryable error) is sent again under
    /// the same call, as [`update`](Self::update)'s writes are: one that
    /// had landed is answered `Set` with its version, even when others
    /// wrote since (a caller's own retry would be told `Conflict` with its
    /// own write). When the resends are spent, the error: the write may
    /// have landed.
    pub async fn compare_and_set(&self, expected: Option<u64>, value: &T) -> Result<CasOutcome<T>> {
        let (space, key) = self.keys()?;
        let bytes = self.encode(space, key, value)?;
        let expect = Expect::version(expected);
        let written = self.write_once(space, key, bytes, expect, "compare_and_set");
        self.cas_outcome(space, key, written.await?)
    }

    /// One write (a put or a compare-and-set) under a call id of its own,
    /// sent again as it was when left unanswered (a retryable error), up
    /// to [`UPDATE_RESENDS`] times, after the back-off of a conflict: a
    /// send that had landed is answered with its version (rule 3 of
    /// `spi::state`), so the write lands once (decision 0078).
    async fn write_once(
        &self,
        space: &Key,
        key: &Key,
        bytes: Vec<u8>,
        expect: Expect,
        op: &'static str,
    ) -> Result<Written> {
        let call = call_id();
        let mut lost = 0;
        loop {
            let written = self
                .write(space, key, bytes.clone(), expect, op, call)
                .await;
            match written {
                Err(e) if e.is_retryable() && lost < UPDATE_RESENDS => {
                    lost += 1;
                    self.after_conflict(lost).await;
                }
                written => return written,
            }
        }
    }

    /// Reads the value, computes the next one with `f` (given the current
    /// value, `None` when absent) and writes it by compare-and-set,
    /// trying again with the value that won the race, up to
    /// [`max_attempts`](Self::max_attempts) times; then `Error::Conflict`
    /// and nothing written. The value written, with its version.
    ///
    /// `f` may run several times; it should not have side effects.
    ///
    /// # Lost replies
    ///
    /// One `update` call writes its value at most once. Its writes name
    /// the call (a random id), which the backend keeps with the change
    /// it made while that change is among the space's last 1,000. A
    /// write left unanswered with a retryable error (`Unavailable`: its
    /// reply lost, perhaps after it landed) is sent again as it was, up
    /// to [`UPDATE_RESENDS`] times in a row and within
    /// [`max_attempts`](Self::max_attempts), after the same back-off as a
    /// conflict: one that had landed is answered with the version it
    /// made, and the update returns it, even when others wrote since.
    /// When the resends are spent, the last error is returned, and the
    /// write may have landed: a caller's own retry is a
    /// new `update`, applied to the value then current. So is an `update`
    /// cancelled while its write was on its way.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let hits = client.state::<u64>("hits");
    /// // Counted once, even if the write's reply is lost and it is sent again.
    /// let now = hits.update(|n| n.copied().unwrap_or(0) + 1).await?;
    /// println!("{} hits (version {})", now.value, now.version);
    /// # Ok(()) }
    /// ```
    pub async fn update(&self, mut f: impl FnMut(Option<&T>) -> T) -> Result<Versioned<T>> {
        let (space, key) = self.keys()?;
        if !(1..=MAX_UPDATE_ATTEMPTS).contains(&self.max_attempts) {
            return Err(Error::invalid(format!(
                "state \"{}\": max_attempts {}, outside 1..={MAX_UPDATE_ATTEMPTS}",
                name_of(space, key),
                self.max_attempts
            )));
        }
        if let Some(ttl) = self.ttl {
            crate::validate_ttl(key, ttl)?;
        }
        self.backoff
            .check(|| format!("state \"{}\"", name_of(space, key)))?;
        let call = call_id();
        let mut current = match self.stored(space, key).await? {
            Some(s) => Some(decode(&self.client, space, key, s)?),
            None => None,
        };
        // A write left unanswered, sent again as it was, and how many
        // times in a row it was.
        let (mut unanswered, mut lost): (Option<(Vec<u8>, T)>, u32) = (None, 0);
        for attempt in 1..=self.max_attempts {
            let (bytes, next) = match unanswered.take() {
                Some(again) => again,
                None => {
                    let next = f(current.as_ref().map(|c| &c.value));
                    (self.encode(space, key, &next)?, next)
                }
            };
            let expect = Expect::version(current.as_ref().map(|c| c.version));
            let written = self.write(space, key, bytes.clone(), expect, "update", call);
            match written.await {
                Ok(Written::Done(version)) => {
                    metrics::updated(true, attempt);
                    return Ok(Versioned {
                        value: next,
                        version,
                        expires_in: self.ttl,
                    });
                }
                Ok(Written::Conflict(now)) => {
                    lost = 0;
                    current = now
                        .map(|s| decode(&self.client, space, key, s))
                        .transpose()?;
                }
                Ok(other) => return Err(self.unexpected("update", &other)),
                Err(e)
                    if e.is_retryable() && attempt < self.max_attempts && lost < UPDATE_RESENDS =>
                {
                    lost += 1;
                    unanswered = Some((bytes, next));
                }
                Err(e) => return Err(e),
            }
            if attempt < self.max_attempts {
                self.after_conflict(attempt).await;
            }
        }
        metrics::updated(false, self.max_attempts);
        Err(Error::Conflict {
            key: name_of(space, key),
            attempts: self.max_attempts,
            backend: self.client.backend().to_string(),
        })
    }

    /// Contention management between the attempts of an `update`: after
    /// the `conflicts`-th conflict in a row, a wait drawn uniformly from
    /// zero to `backoff.initial * 2^(conflicts - 1)` (at most
    /// `backoff.max`); a draw under half a millisecond retries at once.
    /// Writers that lost a race then come back spread out instead of all
    /// at once, so fewer of them lose again.
    async fn after_conflict(&self, conflicts: u32) {
        let cap = (self.backoff.initial)
            .saturating_mul(1u32 << conflicts.saturating_sub(1).min(20))
            .min(self.backoff.max);
        let wait = cap.mul_f64(rand::random_range(0.0..1.0));
        if wait >= Duration::from_micros(500) {
            let clock = self.client.clock();
            // Saturating: a back-off of `Duration::MAX` waits "for ever".
            clock
                .sleep_until(crate::lease::wait::later(clock.now(), wait))
                .await;
        }
    }

    /// Deletes the value; the version of the delete, or `None` if it was
    /// absent (nothing changed).
    pub async fn delete(&self) -> Result<Option<u64>> {
        let (space, key) = self.keys()?;
        match self.remove(space, key, Expect::Any).await? {
            Written::Done(v) => Ok(Some(v)),
            Written::Unchanged => Ok(None),
            other => Err(self.unexpected("delete", &other)),
        }
    }

    /// Deletes the value only if its version is `expected`.
    pub async fn compare_and_delete(&self, expected: u64) -> Result<CasOutcome<T>> {
        let (space, key) = self.keys()?;
        let written = self.remove(space, key, Expect::version(Some(expected)));
        self.cas_outcome(space, key, written.await?)
    }

    /// Every change of this value after `from_version`, in order, or a gap
    /// with the current value; see [`StateWatch`].
    pub fn watch(&self, from_version: u64) -> StateWatch<T> {
        let select = checked(&self.key).map(|k| Select::Key(k.clone()));
        let select = select.map_err(|_| raw(&self.key).to_owned());
        StateWatch::new(
            self.client.clone(),
            self.space.clone(),
            select,
            from_version,
        )
    }

    fn encode(&self, space: &Key, key: &Key, value: &T) -> Result<Vec<u8>> {
        // (A value that does not read back would fail every reader, watcher
        // and update of the key.)
        let bytes = codec::encode(value).map_err(|why| {
            let name = name_of(space, key);
            Error::invalid(format!("state \"{name}\": the value {why}"))
        })?;
        check_put(space, key, &bytes, self.ttl)?;
        Ok(bytes)
    }

    async fn write(
        &self,
        space: &Key,
        key: &Key,
        bytes: Vec<u8>,
        expect: Expect,
        op: &'static str,
        call: u64,
    ) -> Result<Written> {
        let put = (self.client.state_backend()?).put(space, key, bytes, expect, self.ttl, call);
        let written = trace::call(&self.client, || self.site(op, key), put, classify).await?;
        metrics::written(
            if op == "put" {
                "put"
            } else {
                "compare_and_set"
            },
            &written,
        );
        Ok(written)
    }

    async fn remove(&self, space: &Key, key: &Key, expect: Expect) -> Result<Written> {
        let delete = self.client.state_backend()?.delete(space, key, expect);
        let written = trace::call(&self.client, || self.site("delete", key), delete, classify);
        let written = written.await?;
        metrics::written("delete", &written);
        Ok(written)
    }

    fn cas_outcome(&self, space: &Key, key: &Key, written: Written) -> Result<CasOutcome<T>> {
        match written {
            Written::Done(v) => Ok(CasOutcome::Set(v)),
            Written::Conflict(now) => Ok(CasOutcome::Conflict(
                now.map(|s| decode(&self.client, space, key, s))
                    .transpose()?,
            )),
            Written::Unchanged => Ok(CasOutcome::Conflict(None)),
        }
    }

    fn unexpected(&self, op: &str, written: &Written) -> Error {
        Error::backend(
            self.client.backend(),
            format!(
                "{op} of state {:?}: unexpected reply {written:?}",
                self.key()
            ),
        )
    }
}

fn classify(w: &Written) -> Outcome {
    match w {
        Written::Done(_) | Written::Unchanged => Outcome::Ok,
        Written::Conflict(_) => Outcome::Conflict,
    }
}

/// `stored` as a `Versioned<T>`; a value that does not decode as `T` is a
/// backend error naming the key, the type and the backend.
fn decode<T: DeserializeOwned>(
    client: &Client,
    space: &Key,
    key: &Key,
    stored: Stored,
) -> Result<Versioned<T>> {
    Ok(Versioned {
        value: decode_value(client, space, key, &stored.value)?,
        version: stored.version,
        expires_in: stored.expires_in,
    })
}

fn decode_value<T: DeserializeOwned>(
    client: &Client,
    space: &Key,
    key: &Key,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Backend {
        backend: client.backend().to_string(),
        message: format!(
            "state \"{}\": the stored value does not decode as {}: {e}",
            name_of(space, key),
            std::any::type_name::<T>()
        ),
        source: None,
    })
}

#[cfg(test)]
mod tests;
