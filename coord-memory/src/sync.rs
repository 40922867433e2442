//! The primitives the lease table is built on: real ones normally, loom's
//! under `--cfg loom` so the table's interleavings can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// A concurrent map with per-entry locking: `DashMap` normally; one loom
/// mutex around a `HashMap` under loom (loom does not model dashmap).
#[cfg(not(loom))]
pub(crate) struct Map<K, V>(dashmap::DashMap<K, V, Hasher>);

/// foldhash: several times faster than SipHash on short keys, still seeded
/// per map (keys are chosen by applications, not by attackers, but a seed
/// costs nothing).
#[cfg(not(loom))]
pub(crate) type Hasher = foldhash::fast::RandomState;

#[cfg(loom)]
pub(crate) struct Map<K, V>(loom::sync::Mutex<std::collections::HashMap<K, V>>);

impl<K: std::hash::Hash + Eq + Clone, V: Default> Map<K, V> {
    pub(crate) fn new() -> Self {
        #[cfg(not(loom))]
        {
            Map(dashmap::DashMap::with_hasher(Hasher::default()))
        }
        #[cfg(loom)]
        {
            Map(Default::default())
        }
    }

    /// Runs `f` on the entry for `key` (created empty if missing), then drops
    /// the entry if `is_empty` says it holds nothing.
    pub(crate) fn update<R>(
        &self,
        key: &K,
        is_empty: impl Fn(&V) -> bool,
        f: impl FnOnce(&mut V) -> R,
    ) -> R {
        #[cfg(not(loom))]
        {
            use dashmap::mapref::entry::Entry;
            // One hash and one shard lock; nothing allocated for a key that
            // stays empty.
            match self.0.entry(key.clone()) {
                Entry::Occupied(mut o) => {
                    let r = f(o.get_mut());
                    if is_empty(o.get()) {
                        o.remove();
                    }
                    r
                }
                Entry::Vacant(v) => {
                    let mut value = V::default();
                    let r = f(&mut value);
                    if !is_empty(&value) {
                        v.insert(value);
                    }
                    r
                }
            }
        }
        #[cfg(loom)]
        {
            let mut map = self.0.lock().unwrap();
            let entry = map.entry(key.clone()).or_default();
            let r = f(entry);
            if is_empty(entry) {
                map.remove(key);
            }
            r
        }
    }

    /// Runs `f` on the entry for `key` if there is one.
    pub(crate) fn read<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        #[cfg(not(loom))]
        {
            self.0.get(key).map(|e| f(&e))
        }
        #[cfg(loom)]
        {
            self.0.lock().unwrap().get(key).map(f)
        }
    }
}
