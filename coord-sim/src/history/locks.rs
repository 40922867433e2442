//! The lock family's histories: the server's answers in its order (which
//! also carries terms and runs, as keys `election/<name>` and
//! `once/<job>/<occurrence>`), grants as clients saw them, and the intervals
//! during which clients believed they held the lock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use coord_api::{HolderId, Instant};

use super::Violation;

/// What the server answered, in the server's order (the simulated server
/// appends as it answers; a restart is logged too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A fresh grant (not a reentrant re-entry) on `key`.
    Grant {
        /// The key (family and name).
        key: String,
        /// The holder.
        holder: HolderId,
        /// Its token.
        token: u64,
        /// When the server granted it (global simulated time).
        at: Instant,
    },
    /// An extend of an exclusive lease answered `ok`.
    Extend {
        /// The key.
        key: String,
        /// Who asked.
        holder: HolderId,
        /// The answer.
        ok: bool,
    },
    /// A release of an exclusive lease; `released`: whether it said the
    /// holder held it.
    Release {
        /// The key.
        key: String,
        /// Who asked.
        holder: HolderId,
        /// The answer.
        released: bool,
        /// When the server answered (global simulated time).
        at: Instant,
    },
    /// The server restarted with its state lost (every lease granted
    /// before is gone).
    Restart {
        /// When the new incarnation began serving (global simulated time).
        at: Instant,
    },
}

/// The server's answers in its order. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct ServerLog {
    inner: Arc<Mutex<Vec<ServerEvent>>>,
}

impl ServerLog {
    /// An empty log.
    pub fn new() -> ServerLog {
        ServerLog::default()
    }

    /// Appends an event.
    pub fn push(&self, e: ServerEvent) {
        self.inner.lock().unwrap().push(e);
    }

    /// The events so far.
    pub fn events(&self) -> Vec<ServerEvent> {
        self.inner.lock().unwrap().clone()
    }

    /// Checker (b) and the exclusive-lock rules, on the server's order:
    /// per key, every grant's token is larger than every earlier grant's
    /// (across restarts); once another holder was granted a key, a renewal by
    /// an earlier holder never succeeds and its release frees nothing.
    pub fn check(&self) -> Vec<Violation> {
        let events = self.inner.lock().unwrap();
        let mut out = Vec::new();
        let mut last_token: HashMap<&str, u64> = HashMap::new();
        let mut current: HashMap<&str, &HolderId> = HashMap::new();
        for e in events.iter() {
            match e {
                ServerEvent::Grant {
                    key, holder, token, ..
                } => {
                    if let Some(&last) = last_token.get(key.as_str())
                        && *token <= last
                    {
                        out.push(Violation::new(
                            "tokens",
                            format!("key {key}: token {token} granted after token {last}"),
                        ));
                    }
                    last_token.insert(
                        key,
                        (*token).max(last_token.get(key.as_str()).copied().unwrap_or(0)),
                    );
                    current.insert(key, holder);
                }
                ServerEvent::Extend {
                    key,
                    holder,
                    ok: true,
                } => {
                    if let Some(cur) = current.get(key.as_str())
                        && *cur != holder
                    {
                        out.push(Violation::new(
                            "renewal",
                            format!("key {key}: {holder} renewed after {cur} was granted the key"),
                        ));
                    }
                }
                ServerEvent::Release {
                    key,
                    holder,
                    released: true,
                    ..
                } => {
                    if let Some(cur) = current.get(key.as_str())
                        && *cur != holder
                    {
                        out.push(Violation::new(
                            "release",
                            format!(
                                "key {key}: release by {holder} succeeded while {cur} was the last holder granted"
                            ),
                        ));
                    }
                }
                ServerEvent::Restart { .. } => current.clear(),
                _ => {}
            }
        }
        out
    }
}

/// A grant as a client saw it: when its request left and when the answer
/// came back (one clock for every client: the simulator's, or the test
/// process's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedGrant {
    /// Who got it.
    pub client: String,
    /// Its token.
    pub token: u64,
    /// When the acquire request left.
    pub sent: Instant,
    /// When the grant came back.
    pub received: Instant,
}

/// Grants as clients saw them. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct GrantLog {
    inner: Arc<Mutex<Vec<ObservedGrant>>>,
}

impl GrantLog {
    /// An empty log.
    pub fn new() -> GrantLog {
        GrantLog::default()
    }

    /// Records a grant.
    pub fn push(&self, g: ObservedGrant) {
        self.inner.lock().unwrap().push(g);
    }

    /// The grants recorded.
    pub fn all(&self) -> Vec<ObservedGrant> {
        self.inner.lock().unwrap().clone()
    }

    /// How many grants were recorded.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checker (b) from the clients' side (for backends whose own order
    /// cannot be logged): a grant whose request left after another grant came
    /// back was made after it by the server, so its token is larger.
    pub fn check(&self) -> Vec<Violation> {
        let mut grants = self.inner.lock().unwrap().clone();
        grants.sort_by_key(|g| g.received);
        let mut out = Vec::new();
        // For each grant, the largest token among grants received before it
        // was sent.
        let mut by_sent: Vec<&ObservedGrant> = grants.iter().collect();
        by_sent.sort_by_key(|g| g.sent);
        let mut i = 0;
        let mut best: Option<&ObservedGrant> = None;
        for g in by_sent {
            while i < grants.len() && grants[i].received < g.sent {
                if best.is_none_or(|b| grants[i].token > b.token) {
                    best = Some(&grants[i]);
                }
                i += 1;
            }
            if let Some(b) = best
                && g.token <= b.token
            {
                out.push(Violation::new(
                    "tokens",
                    format!(
                        "{} was granted token {} on a request sent after {} received token {}",
                        g.client, g.token, b.client, b.token
                    ),
                ));
            }
        }
        out
    }
}

/// An interval during which a client believed it held the lock
/// (`is_held()` was true), in the one global clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Belief {
    /// The client.
    pub client: String,
    /// The lease's token.
    pub token: u64,
    /// When the grant came back.
    pub start: Instant,
    /// When it stopped believing (release called, loss observed, or the
    /// last known local-validity deadline).
    pub end: Instant,
}

/// Belief intervals. Clones share them; an interval is opened by
/// [`begin`](Beliefs::begin) and moved by [`extend_to`](Beliefs::extend_to) /
/// [`end_at`](Beliefs::end_at).
#[derive(Debug, Clone, Default)]
pub struct Beliefs {
    inner: Arc<Mutex<Vec<Belief>>>,
}

impl Beliefs {
    /// No intervals.
    pub fn new() -> Beliefs {
        Beliefs::default()
    }

    /// Opens an interval `[start, until]`; returns its index.
    pub fn begin(&self, client: &str, token: u64, start: Instant, until: Instant) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(Belief {
            client: client.to_owned(),
            token,
            start,
            end: until.max(start),
        });
        v.len() - 1
    }

    /// The client still believed at its last look, until `until`.
    pub fn extend_to(&self, idx: usize, until: Instant) {
        let mut v = self.inner.lock().unwrap();
        let b = &mut v[idx];
        b.end = b.end.max(until);
    }

    /// The belief ended no later than `at`.
    pub fn end_at(&self, idx: usize, at: Instant) {
        let mut v = self.inner.lock().unwrap();
        let b = &mut v[idx];
        b.end = b.end.min(at).max(b.start);
    }

    /// The intervals.
    pub fn all(&self) -> Vec<Belief> {
        self.inner.lock().unwrap().clone()
    }

    /// Checker (c): no two intervals of different leases overlap.
    pub fn check(&self) -> Vec<Violation> {
        let mut v = self.all();
        v.sort_by_key(|b| b.start);
        let mut out = Vec::new();
        let mut latest: Option<Belief> = None;
        for b in v {
            if let Some(l) = &latest
                && b.start < l.end
                && (l.client != b.client || l.token != b.token)
            {
                out.push(Violation::new(
                    "exclusion",
                    format!(
                        "{} (token {}) believed it held the lock from {:?} while {} (token {}) believed so until {:?}: overlap {:?}",
                        b.client,
                        b.token,
                        b.start,
                        l.client,
                        l.token,
                        l.end,
                        l.end.min(b.end) - b.start
                    ),
                ));
            }
            if latest.as_ref().is_none_or(|l| b.end > l.end) {
                latest = Some(b);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{holder as h, t};

    #[test]
    fn server_log_flags_token_regression_and_stale_renewal() {
        let log = ServerLog::new();
        let grant = |who: &str, token, at| ServerEvent::Grant {
            key: "k".into(),
            holder: h(who),
            token,
            at: t(at),
        };
        log.push(grant("a", 10, 0));
        log.push(grant("b", 11, 1));
        log.push(ServerEvent::Extend {
            key: "k".into(),
            holder: h("b"),
            ok: true,
        });
        assert!(log.check().is_empty());
        log.push(ServerEvent::Extend {
            key: "k".into(),
            holder: h("a"),
            ok: true,
        });
        log.push(ServerEvent::Release {
            key: "k".into(),
            holder: h("a"),
            released: true,
            at: t(2),
        });
        log.push(ServerEvent::Restart { at: t(3) });
        log.push(grant("c", 1, 4));
        let v: Vec<_> = log.check().into_iter().map(|v| v.checker).collect();
        assert_eq!(v, ["renewal", "release", "tokens"]);
    }

    #[test]
    fn grant_log_uses_real_time_order_only() {
        let log = GrantLog::new();
        let g = |c: &str, token, sent, received| ObservedGrant {
            client: c.into(),
            token,
            sent: t(sent),
            received: t(received),
        };
        // Concurrent requests may come back in any token order.
        log.push(g("a", 20, 0, 10));
        log.push(g("b", 10, 1, 11));
        log.push(g("c", 30, 12, 14));
        assert!(log.check().is_empty());
        log.push(g("d", 25, 15, 16));
        assert_eq!(log.check().len(), 1);
    }

    #[test]
    fn beliefs_overlap_is_flagged() {
        let b = Beliefs::new();
        let i = b.begin("a", 1, t(0), t(100));
        b.end_at(i, t(50));
        b.begin("b", 2, t(60), t(200));
        assert!(b.check().is_empty());
        b.begin("c", 3, t(150), t(300));
        assert_eq!(b.check().len(), 1);
    }
}
