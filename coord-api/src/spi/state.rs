//! The SPI of shared values. The client types built on it are
//! [`State`](crate::State) and [`StateSpace`](crate::StateSpace); the
//! contract is [`contract::state`](crate::contract::state).
//!
//! A *space* is a name holding *entries*: a key, an opaque value (the
//! client's encoding of a typed value), the entry's version, and an
//! optional deadline (its TTL). Everything of one space lives together
//! (one Redis Cluster slot), and a space is the unit of versions, of the
//! change log and of watches: a watch reads one space, all of it or the
//! keys starting with a prefix (decision 0024). `client.state(key)` is the
//! space of that one key.
//!
//! Every change of an entry (a put, a delete, an expiry) takes the space's
//! next *version* and is appended to the space's *change log*. Versions are
//! drawn by the fencing-token rule ([`FencingToken::next_after`]:
//! `max(last + 1, server wall clock in µs)`), so they increase strictly per
//! space, hence per key, also across a backend restart that lost the
//! data: the clock alone keeps them above every version given before.
//!
//! # The rules, step by step (what every backend does)
//!
//! 1. **Every step first sweeps** the space: each entry whose deadline
//!    passed is removed, in deadline order, as an [`ChangeKind::Expired`]
//!    change with a version of its own (rule 2). So an expiry is a change
//!    like any other, seen by every reader of the log.
//! 2. **Versions.** A change's version is `max(head + 1, counter + 1,
//!    server wall clock in µs)` where `head` is the space's latest version
//!    and `counter` the last version drawn, if the backend still has them.
//!    When a space has no record (never written, or its record was lost),
//!    its first change *births* the log: the log's `floor` (rule 5) is set
//!    to that change's version minus one. A read of changes (rule 6) of
//!    such a space births it empty: `head` and `floor` both set to a
//!    version drawn by the same rule (so a reader told of the gap reads on
//!    from there without another).
//! 3. **put** names a *call* (`0`: none): a random id the client gives
//!    every send of one write (a `put`, a `compare_and_set`, every write
//!    of one `update`: decisions 0063, 0078), kept with the change it made
//!    (rule 5). A put naming a call the space remembers changes nothing
//!    and replies [`Written::Done`] with the version of the change that
//!    call made, whatever its expectation: it is the retry of a put that
//!    was applied, its reply lost. Otherwise put checks [`Expect`]
//!    against the entry's current version
//!    (`Absent`: no entry; `Version(v)`: the entry's version is `v`;
//!    `Any`: always). On a mismatch it changes nothing and replies
//!    [`Written::Conflict`] with the current entry (value, version, time
//!    left), so that a compare-and-set loop retries without another read.
//!    Otherwise the entry gets the value, a new version and the deadline
//!    `now + ttl` (none without a TTL: a put without a TTL clears an
//!    earlier one), a [`ChangeKind::Put`] is logged, and the reply is
//!    [`Written::Done`] with the version. A put of a new key into a space
//!    that already holds [`MAX_SPACE_KEYS`] entries is refused
//!    (`InvalidArgument` naming the space and the limit) and changes
//!    nothing. A put naming a call that is done remembers it with its
//!    version.
//! 4. **delete** checks [`Expect`] the same way (a mismatch: `Conflict`);
//!    an absent entry is [`Written::Unchanged`] (nothing logged);
//!    otherwise the entry is removed, a [`ChangeKind::Deleted`] is logged
//!    with a new version, and the reply is `Done` with that version.
//! 5. **The change log** keeps at least the space's last [`CHANGES_KEPT`]
//!    changes. Its `floor` is the highest version that may be missing from
//!    it: raised to a change's version when that change is dropped, set at
//!    the log's birth (rule 2). Everything after the floor up to the head
//!    is in the log. The calls of puts (rule 3) are remembered while their
//!    changes are in the log (a log born again remembers none).
//! 6. **changes** (`select`, `after`, `limit`): when `after < floor` or
//!    `after > head` (the reader saw versions the backend no longer knows:
//!    it lost its data), the reply is a [`Gap`] (`after`, and the oldest
//!    version still in the log) with the current entries matching
//!    `select` (a complete snapshot: a key not in it is absent), and `head`.
//!    Otherwise it is the logged changes after `after` matching `select`,
//!    in version order, at most `limit`, and `head` is the version of the
//!    last one when `limit` cut the list, else the space's head (so a
//!    reader passes over changes of keys it does not select). Either way,
//!    [`Changes::next_expiry_in`] is the time until the earliest deadline
//!    of a matching entry. The read changes nothing but the sweep of
//!    rule 1.
//! 7. **get** replies the entry, if present, with its time left.
//! 8. **Wake-ups.** Every step that logged a change wakes the space's
//!    watchers (a hint: they read the log). Deadlines pass without a
//!    wake-up: [`Changes::next_expiry_in`] says when to read again, and
//!    that read's sweep logs the expiry.
//!
//! # Limits (what every backend enforces)
//!
//! A backend checks every argument itself, before any change, with the
//! same functions the client uses before any I/O; a refusal is
//! `InvalidArgument` naming the space or key and the limit: a value of at
//! most [`MAX_VALUE_BYTES`] and a TTL within [`validate_ttl`]
//! ([`check_put`]); a prefix of at most [`MAX_KEY_BYTES`] bytes and a
//! page of 1..=[`MAX_CHANGES_PAGE`] changes ([`check_changes`]).

use std::time::Duration;

use async_trait::async_trait;

use super::{
    DynBackend, Watch,
    dispatch::{Dispatch, Dispatched, Op, family},
};
use crate::{Error, Key, MAX_KEY_BYTES, Result, validate_ttl};

#[allow(unused_imports)] // for the links of the module's documentation
use crate::FencingToken;

/// The largest value of an entry, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The most entries one space holds.
pub const MAX_SPACE_KEYS: usize = 1_000;

/// The fewest changes a space's log keeps (the last ones).
pub const CHANGES_KEPT: usize = 1_000;

/// The most changes one read returns.
pub const MAX_CHANGES_PAGE: u32 = 1_000;

/// What a put or a delete expects of the entry's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// Whatever it is (an unconditional write).
    Any,
    /// No entry.
    Absent,
    /// The entry at this version.
    Version(u64),
}

impl Expect {
    /// Whether an entry at `current` (`None`: absent) meets it.
    pub fn met_by(self, current: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        }
    }

    /// `Version(v)`, or `Absent` for `None` and `Some(0)` (no entry ever
    /// has version 0).
    pub fn version(v: Option<u64>) -> Expect {
        match v {
            None | Some(0) => Expect::Absent,
            Some(v) => Expect::Version(v),
        }
    }
}

/// An entry as stored: its value, version and time left.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stored {
    /// The encoded value.
    pub value: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// The time until its deadline, if it has a TTL.
    pub expires_in: Option<Duration>,
}

impl Stored {
    /// An entry.
    pub fn new(value: Vec<u8>, version: u64, expires_in: Option<Duration>) -> Stored {
        Stored {
            value,
            version,
            expires_in,
        }
    }
}

/// The reply to a put or a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Written {
    /// Done: the change's version.
    Done(u64),
    /// The expectation was not met: nothing changed; the current entry
    /// (`None`: absent).
    Conflict(Option<Stored>),
    /// A delete of an absent entry: nothing changed.
    Unchanged,
}

/// Which entries of a space a read selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Select {
    /// One key.
    Key(Key),
    /// Every key starting with this prefix (empty: the whole space).
    Prefix(String),
}

impl Select {
    /// Whether `key` is selected.
    pub fn matches(&self, key: &Key) -> bool {
        match self {
            Select::Key(k) => k == key,
            Select::Prefix(p) => key.as_str().starts_with(p.as_str()),
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A put of this value.
    Put(Vec<u8>),
    /// A delete.
    Deleted,
    /// The entry's TTL passed.
    Expired,
}

/// One change of an entry, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The entry's key.
    pub key: Key,
    /// The change's version.
    pub version: u64,
    /// What it did.
    pub kind: ChangeKind,
}

impl Change {
    /// A change.
    pub fn new(key: Key, version: u64, kind: ChangeKind) -> Change {
        Change { key, version, kind }
    }
}

/// Changes a reader cannot have: those after `after`, before `oldest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// The version the reader had read up to.
    pub after: u64,
    /// The oldest version still in the log (`None`: the log is empty).
    pub oldest: Option<u64>,
}

impl Gap {
    /// A gap.
    pub fn new(after: u64, oldest: Option<u64>) -> Gap {
        Gap { after, oldest }
    }
}

/// The reply to [`StateBackend::changes`] (rule 6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Changes {
    /// The changes after `after` that match, in version order (empty with
    /// a gap).
    pub changes: Vec<Change>,
    /// The changes after `after` are not all kept (or the backend lost
    /// them): `current` is the state instead.
    pub gap: Option<Gap>,
    /// With a gap: every entry that matches, in key order.
    pub current: Vec<(Key, Stored)>,
    /// What the reader has read up to with this reply (its next `after`).
    pub head: u64,
    /// The time until the earliest deadline of a matching entry.
    pub next_expiry_in: Option<Duration>,
}

/// Checks a put against the limits every backend enforces: a value of at
/// most [`MAX_VALUE_BYTES`], a TTL within [`validate_ttl`]. `space` and
/// `key` name the entry in errors.
pub fn check_put(space: &Key, key: &Key, value: &[u8], ttl: Option<Duration>) -> Result<()> {
    let size = value.len();
    if size > MAX_VALUE_BYTES {
        return Err(Error::invalid(format!(
            "state \"{}\": a value of {size} bytes, more than the limit of {MAX_VALUE_BYTES}",
            name_of(space, key)
        )));
    }
    if let Some(ttl) = ttl {
        validate_ttl(key, ttl)?;
    }
    Ok(())
}

/// Checks a read of changes against the limits every backend enforces: a
/// prefix of at most [`MAX_KEY_BYTES`] bytes, a page of
/// 1..=[`MAX_CHANGES_PAGE`]. `space` names the space in errors.
pub fn check_changes(space: &Key, select: &Select, limit: u32) -> Result<()> {
    if let Select::Prefix(p) = select
        && p.len() > MAX_KEY_BYTES
    {
        return Err(Error::invalid(format!(
            "state space \"{space}\": a prefix of {} bytes, more than the limit of {MAX_KEY_BYTES}",
            p.len()
        )));
    }
    if limit == 0 || limit > MAX_CHANGES_PAGE {
        return Err(Error::invalid(format!(
            "state space \"{space}\": a page of {limit} changes, outside 1..={MAX_CHANGES_PAGE}"
        )));
    }
    Ok(())
}

/// The refusal of a new key in a full space (rule 3).
pub fn space_full(space: &Key, key: &Key) -> Error {
    Error::invalid(format!(
        "state \"{}\": the space already holds {MAX_SPACE_KEYS} keys, the limit",
        name_of(space, key)
    ))
}

/// `key`, or `space/key` when the space is not the key's own: how errors
/// name an entry.
pub fn name_of(space: &Key, key: &Key) -> String {
    if space == key {
        key.to_string()
    } else {
        format!("{space}/{key}")
    }
}

/// Shared values. Every method is one atomic step on one space (one round
/// trip on a remote backend); spaces have a key space of their own.
#[async_trait]
pub trait StateBackend: Send + Sync {
    /// The entry `key` of `space`, if present (rules 1, 7).
    async fn get(&self, space: &Key, key: &Key) -> Result<Option<Stored>>;

    /// Puts `value` as entry `key` of `space` if `expect` holds, unless
    /// `call` (`0`: none) already made a change: then its version (rule 3).
    async fn put(
        &self,
        space: &Key,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        ttl: Option<Duration>,
        call: u64,
    ) -> Result<Written>;

    /// Deletes entry `key` of `space` if `expect` holds (rule 4).
    async fn delete(&self, space: &Key, key: &Key, expect: Expect) -> Result<Written>;

    /// The changes of `space` after `after` that `select` matches, or a
    /// gap and the current entries (rule 6).
    async fn changes(
        &self,
        space: &Key,
        select: &Select,
        after: u64,
        limit: u32,
    ) -> Result<Changes>;

    /// Wakes when `space` may have changed (rule 8).
    async fn watch(&self, space: &Key) -> Result<Box<dyn Watch>>;
}

const fn op(name: &'static str) -> Op {
    Op {
        family: "state",
        name,
    }
}

fn state<'a>(backend: &'a DynBackend, name: &'static str) -> Result<&'a dyn StateBackend> {
    family!(backend, state, op(name))
}

#[async_trait]
impl<D: Dispatch> StateBackend for Dispatched<D> {
    async fn get(&self, space: &Key, key: &Key) -> Result<Option<Stored>> {
        let args = (space.clone(), key.clone());
        self.carry(op("get"), args, |b, (s, k)| async move {
            state(&b, "get")?.get(&s, &k).await
        })
        .await
    }
    async fn put(
        &self,
        space: &Key,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        ttl: Option<Duration>,
        call: u64,
    ) -> Result<Written> {
        let args = (space.clone(), key.clone(), value, expect, ttl, call);
        self.carry(op("put"), args, |b, (s, k, v, e, t, c)| async move {
            state(&b, "put")?.put(&s, &k, v, e, t, c).await
        })
        .await
    }
    async fn delete(&self, space: &Key, key: &Key, expect: Expect) -> Result<Written> {
        let args = (space.clone(), key.clone(), expect);
        self.carry(op("delete"), args, |b, (s, k, e)| async move {
            state(&b, "delete")?.delete(&s, &k, e).await
        })
        .await
    }
    async fn changes(
        &self,
        space: &Key,
        select: &Select,
        after: u64,
        limit: u32,
    ) -> Result<Changes> {
        let args = (space.clone(), select.clone(), after, limit);
        self.carry(op("changes"), args, |b, (s, sel, a, l)| async move {
            state(&b, "changes")?.changes(&s, &sel, a, l).await
        })
        .await
    }
    async fn watch(&self, space: &Key) -> Result<Box<dyn Watch>> {
        let args = space.clone();
        self.carry(op("watch"), args, |b, s| async move {
            state(&b, "watch")?.watch(&s).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    #[test]
    fn expect_meets_versions() {
        assert!(Expect::Any.met_by(None) && Expect::Any.met_by(Some(3)));
        assert!(Expect::Absent.met_by(None) && !Expect::Absent.met_by(Some(3)));
        assert!(Expect::Version(3).met_by(Some(3)) && !Expect::Version(3).met_by(None));
        assert_eq!(Expect::version(None), Expect::Absent);
        assert_eq!(Expect::version(Some(0)), Expect::Absent);
        assert_eq!(Expect::version(Some(9)), Expect::Version(9));
    }

    #[test]
    fn limits_name_the_entry_and_the_limit() {
        let big = vec![0; MAX_VALUE_BYTES + 1];
        let e = check_put(&k("cfg"), &k("db"), &big, None).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("cfg/db") && text.contains("65536"), "{text}");
        assert!(check_put(&k("a"), &k("a"), &big[1..], None).is_ok());
        assert!(check_put(&k("a"), &k("a"), b"", Some(Duration::ZERO)).is_err());
        let prefix = Select::Prefix("x".repeat(MAX_KEY_BYTES + 1));
        assert!(check_changes(&k("s"), &prefix, 1).is_err());
        assert!(check_changes(&k("s"), &Select::Prefix(String::new()), 0).is_err());
        assert!(check_changes(&k("s"), &Select::Key(k("a")), MAX_CHANGES_PAGE + 1).is_err());
        assert!(check_changes(&k("s"), &Select::Key(k("a")), MAX_CHANGES_PAGE).is_ok());
    }

    #[test]
    fn select_matches_keys_and_prefixes() {
        assert!(Select::Key(k("a/b")).matches(&k("a/b")));
        assert!(!Select::Key(k("a/b")).matches(&k("a/bc")));
        assert!(Select::Prefix("a/".into()).matches(&k("a/bc")));
        assert!(!Select::Prefix("a/".into()).matches(&k("b/a")));
        assert!(Select::Prefix(String::new()).matches(&k("z")));
    }
}
