//! Recorded histories and the checkers that judge them. Plain data, no
//! simulator: the same checkers judge simulated runs and chaos runs on a real
//! backend.
//!
//! | checker | property |
//! |---|---|
//! | [`FencedResource::check`] | (a) accepted writes never go back to a smaller token, and one token (one lock period) belongs to one client |
//! | [`ServerLog::check`] | (b) per key, tokens strictly increase in the server's order, across restarts; a renewal never succeeds and a release never frees a lease after another holder was granted the key |
//! | [`GrantLog::check`] | (b) as seen by clients: a grant requested after another was received carries a larger token |
//! | [`Beliefs::check`] | (c) no two clients believe they hold the lock at the same instant (while drift stays in bounds) |
//! | [`check_liveness`] | (d) after the faults heal, a waiting client gets the lock within a bound |

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::{HolderId, Instant};

/// One broken property, found by a checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that found it (`fencing`, `tokens`, `renewal`, `release`,
    /// `exclusion`, `liveness`).
    pub checker: &'static str,
    /// What happened, with the clients, tokens and instants involved.
    pub detail: String,
}

impl Violation {
    fn new(checker: &'static str, detail: String) -> Violation {
        Violation { checker, detail }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}

/// A write the [`FencedResource`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Who wrote.
    pub client: String,
    /// The fencing token the write carried.
    pub token: u64,
    /// When the resource accepted it.
    pub at: Instant,
}

/// A resource that must never see two writers: it accepts a write only with a
/// token at least the highest it has seen, and records every accepted write.
/// Clones share the resource.
#[derive(Debug, Clone, Default)]
pub struct FencedResource {
    inner: Arc<Mutex<Resource>>,
}

#[derive(Debug, Default)]
struct Resource {
    highest: u64,
    accepted: Vec<Write>,
    rejected: u64,
}

impl FencedResource {
    /// An empty resource.
    pub fn new() -> FencedResource {
        FencedResource::default()
    }

    /// Offers a write by `client` with `token`; returns whether it was
    /// accepted (`token` ≥ the highest token seen so far).
    pub fn write(&self, client: &str, token: u64, at: Instant) -> bool {
        let mut r = self.inner.lock().unwrap();
        if token < r.highest {
            r.rejected += 1;
            return false;
        }
        r.highest = token;
        r.accepted.push(Write {
            client: client.to_owned(),
            token,
            at,
        });
        true
    }

    /// The accepted writes, in the order they were accepted.
    pub fn accepted(&self) -> Vec<Write> {
        self.inner.lock().unwrap().accepted.clone()
    }

    /// How many writes were refused for carrying a stale token.
    pub fn rejected(&self) -> u64 {
        self.inner.lock().unwrap().rejected
    }

    /// Checker (a) on the accepted writes: tokens never decrease, and the
    /// writes of one token (one lock period) all come from one client — so
    /// no two clients' writes interleave inside a lock period.
    pub fn check(&self) -> Vec<Violation> {
        check_writes(&self.inner.lock().unwrap().accepted)
    }
}

/// Checker (a) on a list of accepted writes (see [`FencedResource::check`]).
pub fn check_writes(writes: &[Write]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut owner: HashMap<u64, &str> = HashMap::new();
    let mut highest: Option<&Write> = None;
    for w in writes {
        if let Some(h) = highest
            && w.token < h.token
        {
            out.push(Violation::new(
                "fencing",
                format!(
                    "write by {} with token {} accepted after token {} (by {})",
                    w.client, w.token, h.token, h.client
                ),
            ));
        }
        if highest.is_none_or(|h| w.token >= h.token) {
            highest = Some(w);
        }
        match owner.get(&w.token) {
            Some(c) if *c != w.client => out.push(Violation::new(
                "fencing",
                format!(
                    "token {} used by two clients: {} and {} (writes interleave in one lock period)",
                    w.token, c, w.client
                ),
            )),
            Some(_) => {}
            None => {
                owner.insert(w.token, &w.client);
            }
        }
    }
    out
}

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
    },
    /// The server restarted with its state lost.
    Restart,
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
                ServerEvent::Grant { key, holder, token } => {
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
                ServerEvent::Restart => current.clear(),
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

/// Checker (d): after the faults healed at `healed`, the waiting client got
/// the lock (`got`, `None` if never) within `bound`.
pub fn check_liveness(healed: Instant, got: Option<Instant>, bound: Duration) -> Vec<Violation> {
    match got {
        Some(t) if t <= healed + bound => Vec::new(),
        Some(t) => vec![Violation::new(
            "liveness",
            format!(
                "the waiting client got the lock {:?} after the heal; bound {bound:?}",
                t - healed
            ),
        )],
        None => vec![Violation::new(
            "liveness",
            format!("the waiting client never got the lock (bound {bound:?} after the heal)"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord_api::InstanceId;

    fn t(ms: u64) -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    #[test]
    fn fencing_refuses_stale_and_flags_shared_tokens() {
        let r = FencedResource::new();
        assert!(r.write("a", 5, t(0)));
        assert!(r.write("b", 7, t(1)));
        assert!(!r.write("a", 5, t(2)));
        assert_eq!(r.rejected(), 1);
        assert!(r.check().is_empty());
        let bad = [
            Write {
                client: "a".into(),
                token: 5,
                at: t(0),
            },
            Write {
                client: "b".into(),
                token: 5,
                at: t(1),
            },
            Write {
                client: "a".into(),
                token: 4,
                at: t(2),
            },
        ];
        let v = check_writes(&bad);
        assert_eq!(v.len(), 2, "{v:?}");
    }

    #[test]
    fn server_log_flags_token_regression_and_stale_renewal() {
        let h = |n: &str| HolderId::from_parts(InstanceId::new(n).unwrap(), 1);
        let log = ServerLog::new();
        log.push(ServerEvent::Grant {
            key: "k".into(),
            holder: h("a"),
            token: 10,
        });
        log.push(ServerEvent::Grant {
            key: "k".into(),
            holder: h("b"),
            token: 11,
        });
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
        });
        log.push(ServerEvent::Restart);
        log.push(ServerEvent::Grant {
            key: "k".into(),
            holder: h("c"),
            token: 1,
        });
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

    #[test]
    fn liveness_bound() {
        assert!(check_liveness(t(0), Some(t(10)), Duration::from_millis(10)).is_empty());
        assert_eq!(
            check_liveness(t(0), Some(t(11)), Duration::from_millis(10)).len(),
            1
        );
        assert_eq!(
            check_liveness(t(0), None, Duration::from_millis(10)).len(),
            1
        );
    }
}
