//! The fenced resource: what a protected resource does with fencing tokens,
//! written once for every family and every world (the simulator's resource
//! node, the chaos tests' fence server). Per key: a lock's key, an
//! election's name, a run-once occurrence; a user of one key passes that key.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use coord_api::Instant;

use super::Violation;

/// A write the [`FencedResource`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// What was written to (a lock's key, an election, an occurrence).
    pub key: String,
    /// Who wrote.
    pub client: String,
    /// The fencing token the write carried.
    pub token: u64,
    /// When the resource accepted it.
    pub at: Instant,
}

/// A resource that must never see two writers: per key, it accepts a write
/// only with a token at least the highest it has seen for that key, and
/// records every accepted write. Clones share the resource.
#[derive(Debug, Clone, Default)]
pub struct FencedResource {
    inner: Arc<Mutex<Resource>>,
}

#[derive(Debug, Default)]
struct Resource {
    highest: HashMap<String, u64>,
    accepted: Vec<Write>,
    rejected: u64,
}

impl FencedResource {
    /// An empty resource.
    pub fn new() -> FencedResource {
        FencedResource::default()
    }

    /// Offers a write to `key` by `client` with `token`; returns whether it
    /// was accepted (`token` ≥ the highest token `key` has seen).
    pub fn write(&self, key: &str, client: &str, token: u64, at: Instant) -> bool {
        let mut r = self.inner.lock().unwrap();
        let highest = r.highest.entry(key.to_owned()).or_default();
        if token < *highest {
            r.rejected += 1;
            return false;
        }
        *highest = token;
        r.accepted.push(Write {
            key: key.to_owned(),
            client: client.to_owned(),
            token,
            at,
        });
        true
    }

    /// The accepted writes of every key, in the order they were accepted.
    pub fn accepted(&self) -> Vec<Write> {
        self.inner.lock().unwrap().accepted.clone()
    }

    /// How many writes were refused for carrying a stale token, over all
    /// keys.
    pub fn rejected(&self) -> u64 {
        self.inner.lock().unwrap().rejected
    }

    /// Checker (a) on the accepted writes, see [`check_writes`].
    pub fn check(&self) -> Vec<Violation> {
        check_writes(&self.inner.lock().unwrap().accepted)
    }
}

/// Checker (a) on accepted writes, per key: tokens never decrease, and the
/// writes of one token (one lock period, term or run) all come from one
/// client — so no two clients' writes interleave inside a period.
pub fn check_writes(writes: &[Write]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut owner: HashMap<(&str, u64), &str> = HashMap::new();
    let mut highest: HashMap<&str, &Write> = HashMap::new();
    for w in writes {
        let key = w.key.as_str();
        match highest.get(key) {
            Some(h) if w.token < h.token => out.push(Violation::new(
                "fencing",
                format!(
                    "{key:?}: write by {} with token {} accepted after token {} (by {})",
                    w.client, w.token, h.token, h.client
                ),
            )),
            _ => {
                highest.insert(key, w);
            }
        }
        match owner.get(&(key, w.token)) {
            Some(c) if *c != w.client => out.push(Violation::new(
                "fencing",
                format!(
                    "{key:?}: token {} used by two clients: {} and {} (writes interleave in one period)",
                    w.token, c, w.client
                ),
            )),
            Some(_) => {}
            None => {
                owner.insert((key, w.token), &w.client);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::t;

    fn w(key: &str, client: &str, token: u64, at: u64) -> Write {
        Write {
            key: key.into(),
            client: client.into(),
            token,
            at: t(at),
        }
    }

    #[test]
    fn refuses_stale_tokens_per_key() {
        let r = FencedResource::new();
        assert!(r.write("x", "a", 5, t(0)));
        assert!(r.write("x", "b", 7, t(1)));
        assert!(!r.write("x", "a", 5, t(2)));
        // Another key has its own highest token.
        assert!(r.write("y", "c", 1, t(3)));
        assert!(!r.write("y", "c", 0, t(4)));
        assert_eq!(r.rejected(), 2);
        assert_eq!(r.accepted().len(), 3);
        assert!(r.check().is_empty());
    }

    #[test]
    fn flags_regressions_and_shared_tokens_per_key() {
        let bad = [w("x", "a", 5, 0), w("x", "b", 5, 1), w("x", "a", 4, 2)];
        let v = check_writes(&bad);
        assert_eq!(v.len(), 2, "{v:?}");
        // The same tokens on two keys are two periods.
        let ok = [w("x", "a", 5, 0), w("y", "b", 5, 1), w("y", "b", 6, 2)];
        assert!(check_writes(&ok).is_empty());
    }
}
