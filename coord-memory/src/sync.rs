//! The primitives the lease table is built on: real ones normally, loom's
//! under `--cfg loom` so the table's interleavings can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// A concurrent map with per-shard locking. Normally: shards of
/// `hashbrown::HashTable` behind `std::sync::Mutex`, the key hashed once
/// (foldhash) for both the shard and the slot, and empty entries kept for
/// reuse (a lock/unlock cycle allocates nothing) until a shard has grown to
/// twice its live size, when they are swept. Under loom: one loom mutex
/// around a `HashMap` (loom models neither hashbrown's tables nor dashmap).
///
/// Each shard (the one map under loom) also has a counter, changed only
/// under its lock: a key always lands in the same shard, so a counter that
/// only grows there grows for each of its keys, without an atomic operation.
pub(crate) struct Map<K, V> {
    #[cfg(not(loom))]
    shards: Box<[std::sync::Mutex<Shard<K, V>>]>,
    #[cfg(not(loom))]
    hasher: Hashing,
    #[cfg(loom)]
    map: loom::sync::Mutex<(std::collections::HashMap<K, V>, u64)>,
}

#[cfg(not(loom))]
struct Shard<K, V> {
    table: hashbrown::HashTable<(K, V)>,
    /// Entries (empty or not) the shard may hold before the next sweep.
    sweep_at: usize,
    counter: u64,
}

/// How keys are hashed to shards and slots: seeded at random, except under
/// the simulator, where which keys share a shard (and so a token counter:
/// two grants of one step draw `t` and `t + 1` there, `t` and `t` apart)
/// must replay exactly from the seed.
#[cfg(all(not(loom), not(madsim)))]
type Hashing = foldhash::fast::RandomState;
#[cfg(all(not(loom), madsim))]
type Hashing = foldhash::fast::FixedState;

#[cfg(not(loom))]
const SHARDS: usize = 64;
#[cfg(not(loom))]
const MIN_SWEEP: usize = 256;

/// The shard of a key hashed to `hash`: the same for every way in (one key,
/// several keys locked for one step, an entry of a locked step).
#[cfg(not(loom))]
fn shard_of(hash: u64) -> usize {
    // hashbrown uses the low bits for the slot and the top 7 for its tag.
    ((hash >> 32) as usize) % SHARDS
}

/// A way to find a `K` without building one: hashes exactly like the `K` it
/// matches, and makes the owned key only when an entry is inserted.
pub(crate) trait Lookup<K>: std::hash::Hash {
    // Loom's map is a `HashMap` of owned keys: it only uses `to_key`.
    #[cfg_attr(loom, allow(dead_code))]
    fn matches(&self, key: &K) -> bool;
    fn to_key(&self) -> K;
}

impl<K: std::hash::Hash + Eq + Clone, V: Default> Map<K, V> {
    pub(crate) fn new() -> Self {
        #[cfg(not(loom))]
        {
            Map {
                shards: (0..SHARDS)
                    .map(|_| {
                        std::sync::Mutex::new(Shard {
                            table: hashbrown::HashTable::new(),
                            sweep_at: MIN_SWEEP,
                            counter: 0,
                        })
                    })
                    .collect(),
                hasher: Default::default(),
            }
        }
        #[cfg(loom)]
        {
            Map {
                map: Default::default(),
            }
        }
    }

    #[cfg(not(loom))]
    fn shard(&self, key: &impl Lookup<K>) -> (u64, std::sync::MutexGuard<'_, Shard<K, V>>) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(key);
        let guard = self.shards[shard_of(hash)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (hash, guard)
    }

    /// Runs `f` on the entry for `key` (an empty one if missing) and the
    /// counter of its shard; a new entry is kept only if `is_empty` says it
    /// holds something.
    pub(crate) fn update<R>(
        &self,
        key: &impl Lookup<K>,
        is_empty: impl Fn(&V) -> bool,
        f: impl FnOnce(&mut V, &mut u64) -> R,
    ) -> R {
        #[cfg(not(loom))]
        {
            let (hash, mut shard) = self.shard(key);
            let shard = &mut *shard;
            if let Some((_, v)) = shard.table.find_mut(hash, |(k, _)| key.matches(k)) {
                return f(v, &mut shard.counter);
            }
            let mut value = V::default();
            let r = f(&mut value, &mut shard.counter);
            if !is_empty(&value) {
                if shard.table.len() >= shard.sweep_at {
                    shard.table.retain(|(_, v)| !is_empty(v));
                    shard.sweep_at = (shard.table.len() * 2).max(MIN_SWEEP);
                }
                let hasher = &self.hasher;
                shard
                    .table
                    .insert_unique(hash, (key.to_key(), value), |(k, _)| {
                        std::hash::BuildHasher::hash_one(hasher, k)
                    });
            }
            r
        }
        #[cfg(loom)]
        {
            let mut guard = self.map.lock().unwrap();
            let (map, counter) = &mut *guard;
            let owned = key.to_key();
            let entry = map.entry(owned.clone()).or_default();
            let r = f(entry, counter);
            if is_empty(entry) {
                map.remove(&owned);
            }
            r
        }
    }

    /// Runs `f` with the entries of every key of `keys` (empty ones if
    /// missing) under one hold of all their shards' locks: one atomic step
    /// over several keys. The shards are locked in ascending order, so two
    /// such steps never wait for each other in a cycle. `f` reaches each
    /// entry (and its shard's counter) through [`Locked::update`], by the
    /// key's index in `keys`.
    pub(crate) fn update_all<L: Lookup<K>, R>(
        &self,
        keys: &[L],
        is_empty: impl Fn(&V) -> bool,
        f: impl FnOnce(&mut Locked<'_, '_, K, V, L>) -> R,
    ) -> R {
        #[cfg(not(loom))]
        {
            use std::hash::BuildHasher;
            let hashes: Vec<u64> = keys.iter().map(|k| self.hasher.hash_one(k)).collect();
            let mut shards: Vec<usize> = hashes.iter().map(|&h| shard_of(h)).collect();
            shards.sort_unstable();
            shards.dedup();
            let guards = shards
                .iter()
                .map(|&i| (i, self.shards[i].lock().unwrap_or_else(|p| p.into_inner())))
                .collect();
            let mut locked = Locked {
                map: self,
                keys,
                hashes,
                guards,
            };
            let r = f(&mut locked);
            let hashes = std::mem::take(&mut locked.hashes);
            for (k, h) in keys.iter().zip(&hashes) {
                let shard = &mut locked.guard(shard_of(*h)).table;
                if let Ok(e) = shard.find_entry(*h, |(key, _)| k.matches(key))
                    && is_empty(&e.get().1)
                {
                    e.remove();
                }
            }
            r
        }
        #[cfg(loom)]
        {
            let mut guard = self.map.lock().unwrap();
            let mut locked = Locked {
                keys,
                guard: &mut *guard,
            };
            let r = f(&mut locked);
            for k in keys {
                let owned = k.to_key();
                if guard.0.get(&owned).is_some_and(&is_empty) {
                    guard.0.remove(&owned);
                }
            }
            r
        }
    }

    /// Runs `f` on every entry, one shard at a time (each under its own
    /// lock: an entry changed in a shard already visited is not seen
    /// again).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        #[cfg(not(loom))]
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in shard.table.iter() {
                f(k, v);
            }
        }
        #[cfg(loom)]
        for (k, v) in self.map.lock().unwrap().0.iter() {
            f(k, v);
        }
    }

    /// Runs `f` on the entry for `key` if there is one.
    pub(crate) fn read<R>(&self, key: &impl Lookup<K>, f: impl FnOnce(&V) -> R) -> Option<R> {
        #[cfg(not(loom))]
        {
            let (hash, shard) = self.shard(key);
            shard
                .table
                .find(hash, |(k, _)| key.matches(k))
                .map(|(_, v)| f(v))
        }
        #[cfg(loom)]
        {
            self.map.lock().unwrap().0.get(&key.to_key()).map(f)
        }
    }
}

/// The shards of several keys, locked for one step (see
/// [`Map::update_all`]).
#[cfg(not(loom))]
pub(crate) struct Locked<'m, 'k, K, V, L> {
    map: &'m Map<K, V>,
    keys: &'k [L],
    hashes: Vec<u64>,
    guards: Vec<(usize, std::sync::MutexGuard<'m, Shard<K, V>>)>,
}

#[cfg(not(loom))]
impl<K: std::hash::Hash + Eq + Clone, V: Default, L: Lookup<K>> Locked<'_, '_, K, V, L> {
    fn guard(&mut self, shard: usize) -> &mut Shard<K, V> {
        let at = self
            .guards
            .binary_search_by_key(&shard, |(i, _)| *i)
            .expect("every key's shard is locked");
        &mut self.guards[at].1
    }

    /// Runs `g` on the entry of the `i`-th key (inserted empty if missing;
    /// an entry left empty is removed when the step ends) and its shard's
    /// counter.
    pub(crate) fn update<R>(&mut self, i: usize, g: impl FnOnce(&mut V, &mut u64) -> R) -> R {
        let (key, hash) = (&self.keys[i], self.hashes[i]);
        let hasher = &self.map.hasher;
        let shard = self.guard(shard_of(hash));
        let slot = shard
            .table
            .entry(
                hash,
                |(k, _)| key.matches(k),
                |(k, _)| std::hash::BuildHasher::hash_one(hasher, k),
            )
            .or_insert_with(|| (key.to_key(), V::default()));
        let (_, v) = slot.into_mut();
        g(v, &mut shard.counter)
    }
}

/// The one map, locked for one step (see [`Map::update_all`]).
#[cfg(loom)]
pub(crate) struct Locked<'g, 'k, K, V, L> {
    keys: &'k [L],
    guard: &'g mut (std::collections::HashMap<K, V>, u64),
}

#[cfg(loom)]
impl<K: std::hash::Hash + Eq + Clone, V: Default, L: Lookup<K>> Locked<'_, '_, K, V, L> {
    /// Runs `g` on the entry of the `i`-th key and the map's counter.
    pub(crate) fn update<R>(&mut self, i: usize, g: impl FnOnce(&mut V, &mut u64) -> R) -> R {
        let (map, counter) = &mut *self.guard;
        g(map.entry(self.keys[i].to_key()).or_default(), counter)
    }
}
