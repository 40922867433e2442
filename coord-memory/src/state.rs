//! Shared values, under one lock of their own: every operation is one step
//! on one space, following the rules of [`coord_api::spi::state`] in their
//! order (the sweep of rule 1 first). A space keeps its entries by key,
//! their deadlines in order, its head (the latest version), the floor of
//! its log and the log itself (the last [`CHANGES_KEPT`] changes). Versions
//! follow the token rule on the store's wall clock, floored at the head.
//!
//! What the store forgets, as Redis does (its meta hash and log expire a
//! day after the last change, its entries stay): the log and head of a
//! space with no change for a day (a watcher from before is told of a gap;
//! the log is born again, above every version given, the token rule on the
//! wall clock); and a space with no entry and no log (a read of an unknown
//! space leaves nothing behind). A simulated server restart makes a new
//! store: the logs are born again, above every version given before.
//!
//! Watches: the space's topic, woken after the step let go of the lock when
//! it logged a change (rule 8). Deadlines pass without a wake-up:
//! [`Changes::next_expiry_in`] tells when.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    FencingToken, Instant, Key, MAX_TTL, Namespace, Result,
    spi::{
        CHANGES_KEPT, Change, ChangeKind, Changes, Expect, Gap, MAX_SPACE_KEYS, Select,
        StateBackend, Stored, Watch, Written,
        state::{check_changes, check_put, space_full},
    },
};

use crate::{MemoryBackend, watch::Topic};

/// Every space of a store.
#[derive(Default)]
pub(crate) struct Spaces {
    map: HashMap<(Namespace, Key), Space>,
    /// The size at which spaces idle for a day are swept next.
    sweep_at: usize,
}

impl Spaces {
    /// Forgets what a day idle forgets (see the module's docs), in every
    /// space, once the map doubled since the last sweep.
    fn sweep(&mut self, now: Instant) {
        if self.map.len() < self.sweep_at.max(256) {
            return;
        }
        self.map.retain(|_, s| {
            s.forget_idle_log(now);
            !s.empty()
        });
        self.sweep_at = self.map.len() * 2;
    }
}

#[derive(Default)]
struct Space {
    head: u64,
    floor: u64,
    entries: BTreeMap<Key, Entry>,
    deadlines: BTreeSet<(Instant, Key)>,
    log: VecDeque<Change>,
    /// The calls of the puts that named one (rule 3), with the versions
    /// they made, while those are in the log: by call, and in version order.
    calls: HashMap<u64, u64>,
    called: VecDeque<(u64, u64)>,
    /// When the log was born or last changed (Redis's meta hash expires a
    /// day later); `None` while it has no log.
    touched: Option<Instant>,
}

struct Entry {
    value: Vec<u8>,
    version: u64,
    deadline: Option<Instant>,
}

/// One step's clock, and whether it logged a change.
struct Step {
    now: Instant,
    wall_us: u64,
    logged: bool,
}

impl Space {
    /// A day after the log was born or last changed, forgets it and the
    /// head, keeping the entries (Redis's meta hash and log expire then).
    fn forget_idle_log(&mut self, now: Instant) {
        if self
            .touched
            .is_some_and(|t| now.saturating_duration_since(t) > MAX_TTL)
        {
            (self.head, self.floor, self.touched) = (0, 0, None);
            self.log.clear();
            self.calls.clear();
            self.called.clear();
        }
    }

    /// Nothing to remember: no entry and no log.
    fn empty(&self) -> bool {
        self.head == 0 && self.entries.is_empty()
    }

    /// Logs `kind` on `key` with the next version (rule 2); the version.
    fn log(&mut self, key: &Key, kind: ChangeKind, step: &mut Step) -> u64 {
        let version = FencingToken::next_after_micros(self.head, step.wall_us).get();
        if self.head == 0 {
            // The log's birth: nothing before this change is known.
            self.floor = version - 1;
        }
        self.head = version;
        self.touched = Some(step.now);
        self.log.push_back(Change::new(key.clone(), version, kind));
        while self.log.len() > CHANGES_KEPT {
            let dropped = self.log.pop_front().expect("longer than kept");
            self.floor = self.floor.max(dropped.version);
        }
        while let Some(&(made, call)) = self.called.front() {
            if made > self.floor {
                break;
            }
            self.called.pop_front();
            self.calls.remove(&call);
        }
        step.logged = true;
        version
    }

    /// Rule 1: every entry whose deadline passed goes, as an expiry.
    fn sweep(&mut self, step: &mut Step) {
        while let Some((at, key)) = self.deadlines.first().cloned() {
            if at > step.now {
                break;
            }
            self.deadlines.pop_first();
            self.entries.remove(&key);
            self.log(&key, ChangeKind::Expired, step);
        }
    }

    fn stored(&self, entry: &Entry, now: Instant) -> Stored {
        let left = entry.deadline.map(|d| d.saturating_duration_since(now));
        Stored::new(entry.value.clone(), entry.version, left)
    }

    fn current(&self, key: &Key, now: Instant) -> Option<Stored> {
        self.entries.get(key).map(|e| self.stored(e, now))
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        if let Some(at) = entry.deadline {
            self.deadlines.remove(&(at, key.clone()));
        }
        Some(entry)
    }

    /// Rule 3.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        space: &Key,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        ttl: Option<Duration>,
        call: u64,
        step: &mut Step,
    ) -> Result<Written> {
        if let Some(&made) = self.calls.get(&call) {
            return Ok(Written::Done(made));
        }
        let current = self.entries.get(key).map(|e| e.version);
        if !expect.met_by(current) {
            return Ok(Written::Conflict(self.current(key, step.now)));
        }
        if current.is_none() && self.entries.len() >= MAX_SPACE_KEYS {
            return Err(space_full(space, key));
        }
        self.remove(key);
        let version = self.log(key, ChangeKind::Put(value.clone()), step);
        let deadline = ttl.map(|t| step.now + t);
        if let Some(at) = deadline {
            self.deadlines.insert((at, key.clone()));
        }
        let entry = Entry {
            value,
            version,
            deadline,
        };
        self.entries.insert(key.clone(), entry);
        if call != 0 {
            self.calls.insert(call, version);
            self.called.push_back((version, call));
        }
        Ok(Written::Done(version))
    }

    /// Rule 4.
    fn delete(&mut self, key: &Key, expect: Expect, step: &mut Step) -> Written {
        let current = self.entries.get(key).map(|e| e.version);
        if !expect.met_by(current) {
            return Written::Conflict(self.current(key, step.now));
        }
        if current.is_none() {
            return Written::Unchanged;
        }
        self.remove(key);
        Written::Done(self.log(key, ChangeKind::Deleted, step))
    }

    /// Rule 6.
    fn changes(&mut self, select: &Select, after: u64, limit: u32, step: &Step) -> Changes {
        let now = step.now;
        if self.head == 0 {
            // A read of a space with no record births its log, empty.
            self.head = FencingToken::next_after_micros(0, step.wall_us).get();
            self.floor = self.head;
            self.touched = Some(now);
        }
        let mut out = Changes::default();
        out.next_expiry_in = (self.deadlines.iter())
            .find(|(_, k)| select.matches(k))
            .map(|(at, _)| at.saturating_duration_since(now));
        if after < self.floor || after > self.head {
            out.gap = Some(Gap::new(after, self.log.front().map(|c| c.version)));
            out.current = (self.entries.iter())
                .filter(|(k, _)| select.matches(k))
                .map(|(k, e)| (k.clone(), self.stored(e, now)))
                .collect();
            out.head = self.head;
            return out;
        }
        let start = self.log.partition_point(|c| c.version <= after);
        out.head = self.head;
        for change in self.log.range(start..).filter(|c| select.matches(&c.key)) {
            if out.changes.len() == limit as usize {
                out.head = out.changes.last().map_or(after, |c: &Change| c.version);
                break;
            }
            out.changes.push(change.clone());
        }
        out
    }
}

impl MemoryBackend {
    /// Runs `op` on `space` (made if missing, forgotten again if it is left
    /// empty), swept first, under the lock; then wakes the space's watchers
    /// if the step logged a change.
    fn on_space<T>(&self, space: &Key, op: impl FnOnce(&mut Space, &mut Step) -> T) -> T {
        let now = self.store.now();
        let mut step = Step {
            now,
            wall_us: self.store.inner.table.wall_us(now),
            logged: false,
        };
        let out = {
            let mut spaces = self.store.spaces();
            spaces.sweep(now);
            let id = (self.ns.clone(), space.clone());
            let record = spaces.map.entry(id.clone()).or_default();
            record.forget_idle_log(now);
            record.sweep(&mut step);
            let out = op(record, &mut step);
            if record.empty() {
                spaces.map.remove(&id);
            }
            out
        };
        if step.logged {
            self.store
                .notify(|| Topic::State(self.ns.clone(), space.clone()));
        }
        out
    }
}

#[async_trait]
impl StateBackend for MemoryBackend {
    async fn get(&self, space: &Key, key: &Key) -> Result<Option<Stored>> {
        Ok(self.on_space(space, |s, step| s.current(key, step.now)))
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
        check_put(space, key, &value, ttl)?;
        self.on_space(space, |s, step| {
            s.put(space, key, value, expect, ttl, call, step)
        })
    }

    async fn delete(&self, space: &Key, key: &Key, expect: Expect) -> Result<Written> {
        Ok(self.on_space(space, |s, step| s.delete(key, expect, step)))
    }

    async fn changes(
        &self,
        space: &Key,
        select: &Select,
        after: u64,
        limit: u32,
    ) -> Result<Changes> {
        check_changes(space, select, limit)?;
        Ok(self.on_space(space, |s, step| s.changes(select, after, limit, step)))
    }

    async fn watch(&self, space: &Key) -> Result<Box<dyn Watch>> {
        let topic = Topic::State(self.ns.clone(), space.clone());
        Ok(self.store.watch(topic))
    }
}

#[cfg(test)]
mod tests;
