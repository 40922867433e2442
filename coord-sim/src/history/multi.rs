//! Several locks held at once (a multi-lock): the beliefs and grants of
//! each member key, judged key by key with the single lock's checkers.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use coord_api::Instant;

use super::{Beliefs, GrantLog, ObservedGrant, Violation};

#[derive(Debug, Default)]
struct Inner {
    /// Each key's beliefs and grants.
    keys: BTreeMap<String, (Beliefs, GrantLog)>,
    /// Each set's members: the key and its belief's index there.
    sets: Vec<Vec<(String, usize)>>,
}

/// Beliefs and grants of sets of locks, kept per member key. Clones share
/// them; a set's beliefs are opened together by [`begin`](Self::begin)
/// and moved together by [`extend_to`](Self::extend_to) /
/// [`end_at`](Self::end_at) (a set is believed held while every member is).
#[derive(Debug, Clone, Default)]
pub struct KeyedBeliefs {
    inner: Arc<Mutex<Inner>>,
}

impl KeyedBeliefs {
    /// Nothing recorded.
    pub fn new() -> KeyedBeliefs {
        KeyedBeliefs::default()
    }

    /// `client` was granted `members` (each key with its token) on a
    /// request that left at `sent`, the answer back at `received`, and
    /// believes it holds them until `until`; returns the set's index.
    pub fn begin(
        &self,
        client: &str,
        members: &[(String, u64)],
        sent: Instant,
        received: Instant,
        until: Instant,
    ) -> usize {
        let mut inner = self.inner.lock().unwrap();
        let mut set = Vec::with_capacity(members.len());
        for (key, token) in members {
            let (beliefs, grants) = inner.keys.entry(key.clone()).or_default();
            grants.push(ObservedGrant {
                client: client.to_owned(),
                token: *token,
                sent,
                received,
            });
            set.push((key.clone(), beliefs.begin(client, *token, received, until)));
        }
        inner.sets.push(set);
        inner.sets.len() - 1
    }

    /// The client still believed at its last look, until `until`.
    pub fn extend_to(&self, set: usize, until: Instant) {
        let inner = self.inner.lock().unwrap();
        for (key, idx) in &inner.sets[set] {
            inner.keys[key].0.extend_to(*idx, until);
        }
    }

    /// The set's beliefs ended no later than `at`.
    pub fn end_at(&self, set: usize, at: Instant) {
        let inner = self.inner.lock().unwrap();
        for (key, idx) in &inner.sets[set] {
            inner.keys[key].0.end_at(*idx, at);
        }
    }

    /// How many sets were granted.
    pub fn sets(&self) -> usize {
        self.inner.lock().unwrap().sets.len()
    }

    /// Every member grant a client received: key and token.
    pub fn known(&self) -> HashSet<(String, u64)> {
        let inner = self.inner.lock().unwrap();
        let grants = inner.keys.iter().flat_map(|(key, (_, grants))| {
            grants.all().into_iter().map(|g| (key.clone(), g.token))
        });
        grants.collect()
    }

    /// [`Beliefs::check`] on each key: no two clients believe they hold a
    /// key at one instant.
    pub fn check_exclusion(&self) -> Vec<Violation> {
        let inner = self.inner.lock().unwrap();
        let per_key = inner
            .keys
            .iter()
            .map(|(key, (beliefs, _))| beliefs.check().into_iter().map(move |v| in_key(key, v)));
        per_key.flatten().collect()
    }

    /// [`GrantLog::check`] on each key: a member grant requested after
    /// another grant of its key was received carries a larger token.
    pub fn check_tokens(&self) -> Vec<Violation> {
        let inner = self.inner.lock().unwrap();
        let per_key = (inner.keys.iter())
            .map(|(key, (_, grants))| grants.check().into_iter().map(move |v| in_key(key, v)));
        per_key.flatten().collect()
    }
}

/// `v`, its detail prefixed with the key it is about.
fn in_key(key: &str, v: Violation) -> Violation {
    Violation::new(v.checker, format!("key {key}: {}", v.detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::t;

    fn set(members: &[(&str, u64)]) -> Vec<(String, u64)> {
        members.iter().map(|(k, t)| (k.to_string(), *t)).collect()
    }

    #[test]
    fn overlaps_count_per_key() {
        let b = KeyedBeliefs::new();
        let s = b.begin("a", &set(&[("x", 1), ("y", 1)]), t(0), t(1), t(100));
        // Another key at the same instant is no overlap.
        b.begin("b", &set(&[("z", 5)]), t(0), t(2), t(100));
        b.end_at(s, t(50));
        b.begin("c", &set(&[("y", 2)]), t(51), t(60), t(200));
        assert!(b.check_exclusion().is_empty());
        assert!(b.check_tokens().is_empty());
        b.begin("d", &set(&[("x", 3), ("y", 3)]), t(70), t(150), t(300));
        let v = b.check_exclusion();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.starts_with("key y:"), "{v:?}");
        // A token smaller than one received before the request left.
        b.begin("e", &set(&[("z", 4)]), t(10), t(11), t(12));
        assert_eq!(b.check_tokens().len(), 1);
        assert_eq!(b.sets(), 5);
        assert!(b.known().contains(&("x".to_string(), 3)));
    }
}
