//! Listing leases across families one page at a time: every family shows
//! its live leases ([`Listed`]) to a [`Select`], which keeps only the
//! page's `limit` first records past the cursor (a bounded heap: never
//! more than a page, never a sort of the whole table). Records are ordered
//! as `LeaseRecord::listing_cmp` orders them (kind, name, occurrence or
//! subscription, item, holder, role, token), which never changes while a
//! lease lives, so a walk sees a record live for all of it exactly once.

use std::{cmp::Ordering, collections::BinaryHeap, time::SystemTime};

use coord_api::{
    Error, FencingToken, HolderId, Instant, Key, Result,
    spi::{Cursor, LeaseRecord, Page, Resource, ResourceKind, Role},
};

/// A live lease as a family shows it to a listing (borrowed from the
/// family's state).
pub(crate) struct Listed<'a> {
    /// The resource's name.
    pub(crate) name: &'a Key,
    /// A job's occurrence.
    pub(crate) occurrence: Option<&'a Key>,
    /// A topic's subscription.
    pub(crate) subscription: Option<&'a Key>,
    /// A queue's item.
    pub(crate) item: Option<u64>,
    /// What the lease is there.
    pub(crate) role: Role,
    /// Its holder.
    pub(crate) holder: &'a HolderId,
    /// Its token, where it has one.
    pub(crate) token: Option<u64>,
    /// Its holds.
    pub(crate) holds: u32,
    /// When it was granted, where the family records it.
    pub(crate) since: Option<SystemTime>,
    /// When it expires.
    pub(crate) until: Instant,
    /// The resource's recorded waiters.
    pub(crate) waiters: Option<u32>,
}

/// What a family calls for each live lease.
pub(crate) type Visit<'v> = &'v mut dyn FnMut(ResourceKind, Listed<'_>);

impl Listed<'_> {
    /// The SPI's record of it, at `now`.
    pub(crate) fn record(&self, kind: ResourceKind, now: Instant) -> LeaseRecord {
        let resource = Resource {
            kind,
            name: self.name.clone(),
            occurrence: self.occurrence.cloned(),
            subscription: self.subscription.cloned(),
            item: self.item,
        };
        let mut r = LeaseRecord::new(
            resource,
            self.role,
            self.holder.clone(),
            self.token.map(FencingToken),
            self.until.saturating_duration_since(now),
        )
        .holds(self.holds);
        if let Some(since) = self.since {
            r = r.since(since);
        }
        if let Some(w) = self.waiters {
            r = r.waiters(w);
        }
        r
    }
}

/// Where a record stands in a listing, borrowed: kind, name, occurrence
/// (or subscription: a kind has one or neither), item, holder (instance, nonce), role, and the token (one holder may
/// hold two permits of a semaphore).
type Order<'a> = (ResourceKind, &'a str, &'a str, u64, &'a str, u128, u8, u64);

fn order_of<'a>(kind: ResourceKind, l: &Listed<'a>) -> Order<'a> {
    (
        kind,
        l.name.as_str(),
        l.occurrence.or(l.subscription).map_or("", |o| o.as_str()),
        l.item.unwrap_or(0),
        l.holder.instance().as_str(),
        l.holder.nonce(),
        l.role.listing_rank(),
        l.token.unwrap_or(0),
    )
}

/// Where a record stands in a listing, owned (a cursor's content).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    kind: ResourceKind,
    name: String,
    occurrence: String,
    item: u64,
    instance: String,
    nonce: u128,
    role: u8,
    token: u64,
}

const SEP: char = '\u{1f}';

impl Position {
    fn of(o: Order<'_>) -> Position {
        Position {
            kind: o.0,
            name: o.1.to_owned(),
            occurrence: o.2.to_owned(),
            item: o.3,
            instance: o.4.to_owned(),
            nonce: o.5,
            role: o.6,
            token: o.7,
        }
    }

    fn order(&self) -> Order<'_> {
        (
            self.kind,
            &self.name,
            &self.occurrence,
            self.item,
            &self.instance,
            self.nonce,
            self.role,
            self.token,
        )
    }

    /// Keys and instance ids hold no control character: the unit
    /// separator cannot occur in a field.
    fn cursor(&self) -> Cursor {
        Cursor::from_text(format!(
            "{}{SEP}{}{SEP}{}{SEP}{}{SEP}{}{SEP}{:x}{SEP}{}{SEP}{}",
            self.kind,
            self.name,
            self.occurrence,
            self.item,
            self.instance,
            self.nonce,
            self.role,
            self.token
        ))
    }

    fn parse(cursor: &Cursor) -> Result<Option<Position>> {
        if cursor.is_start() {
            return Ok(None);
        }
        let bad = || {
            Error::invalid(format!(
                "leases: cursor {:?} was not written by this backend's listing",
                cursor.as_str()
            ))
        };
        let f: Vec<&str> = cursor.as_str().split(SEP).collect();
        let [kind, name, occurrence, item, instance, nonce, role, token] = f[..] else {
            return Err(bad());
        };
        Ok(Some(Position {
            kind: kind.parse().map_err(|_| bad())?,
            name: name.to_owned(),
            occurrence: occurrence.to_owned(),
            item: item.parse().map_err(|_| bad())?,
            instance: instance.to_owned(),
            nonce: u128::from_str_radix(nonce, 16).map_err(|_| bad())?,
            role: role.parse().map_err(|_| bad())?,
            token: token.parse().map_err(|_| bad())?,
        }))
    }
}

struct Item {
    at: Position,
    record: LeaseRecord,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.order().cmp(&other.at.order())
    }
}

/// One page being picked: the first `limit` records of `kind` (or any)
/// named with `prefix`, past `after`.
pub(crate) struct Select<'p> {
    kind: Option<ResourceKind>,
    prefix: &'p str,
    after: Option<Position>,
    limit: usize,
    now: Instant,
    /// The page so far; its largest on top, to be pushed out.
    page: BinaryHeap<Item>,
}

impl<'p> Select<'p> {
    /// A page of at most `limit` (checked by the caller) from `cursor`.
    pub(crate) fn new(
        kind: Option<ResourceKind>,
        prefix: &'p str,
        cursor: &Cursor,
        limit: u32,
        now: Instant,
    ) -> Result<Select<'p>> {
        Ok(Select {
            kind,
            prefix,
            after: Position::parse(cursor)?,
            limit: limit as usize,
            now,
            page: BinaryHeap::with_capacity(limit as usize + 1),
        })
    }

    /// Whether the listing wants leases of `kind` at all.
    pub(crate) fn wants(&self, kind: ResourceKind) -> bool {
        self.kind.is_none_or(|k| k == kind) && self.after.as_ref().is_none_or(|a| a.kind <= kind)
    }

    /// Considers one live lease.
    pub(crate) fn offer(&mut self, kind: ResourceKind, l: Listed<'_>) {
        if !self.wants(kind) || !l.name.as_str().starts_with(self.prefix) {
            return;
        }
        let at = order_of(kind, &l);
        if self.after.as_ref().is_some_and(|a| at <= a.order()) {
            return;
        }
        if self.page.len() == self.limit && self.page.peek().is_some_and(|top| at >= top.at.order())
        {
            return;
        }
        self.page.push(Item {
            at: Position::of(at),
            record: l.record(kind, self.now),
        });
        if self.page.len() > self.limit {
            self.page.pop();
        }
    }

    /// The page, in order, and the cursor past its last record (`None`
    /// when it is not full: nothing is left).
    pub(crate) fn page(self) -> Page<LeaseRecord> {
        let full = self.page.len() == self.limit;
        let items = self.page.into_sorted_vec();
        let next = (full.then(|| items.last().map(|i| i.at.cursor()))).flatten();
        Page::new(items.into_iter().map(|i| i.record).collect(), next)
    }
}
