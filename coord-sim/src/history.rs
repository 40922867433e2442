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
//! | [`Leaderships::check`] | one holder per term, terms strictly increasing in the backend's order, and (drift in bounds) a leader stops believing before the backend elects the next one, so no two leaders believe at one instant |
//! | [`check_failovers`] | after the leader crashes, a new leader is elected within TTL plus a bound |
//! | [`OnceRuns::check`] | a run-once occurrence never runs on two instances at once nor after a run finished, a run whose lease was lost never counts as finished, writes fenced per occurrence |

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

/// What the backend answered about leadership and run-once jobs, in its
/// order, with the (global) instant it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadEvent {
    /// `holder` was elected leader of `election` for term `term`.
    Elected {
        /// The election.
        election: String,
        /// The new leader.
        holder: HolderId,
        /// Its term.
        term: u64,
        /// When the backend answered.
        at: Instant,
    },
    /// `holder` began a run of `occurrence` with `token`.
    OnceStarted {
        /// The occurrence.
        occurrence: String,
        /// The runner.
        holder: HolderId,
        /// The run's fencing token.
        token: u64,
        /// When the backend answered.
        at: Instant,
    },
    /// `holder`'s run of `occurrence` ended (it still held it); `finished`:
    /// marked finished (else ended as a failed run).
    OnceEnded {
        /// The occurrence.
        occurrence: String,
        /// The runner.
        holder: HolderId,
        /// Marked finished.
        finished: bool,
        /// When the backend answered.
        at: Instant,
    },
}

/// The backend's leadership answers in its order. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct LeadLog {
    inner: Arc<Mutex<Vec<LeadEvent>>>,
}

impl LeadLog {
    /// An empty log.
    pub fn new() -> LeadLog {
        LeadLog::default()
    }

    /// Appends an event.
    pub fn push(&self, e: LeadEvent) {
        self.inner.lock().unwrap().push(e);
    }

    /// The events so far.
    pub fn events(&self) -> Vec<LeadEvent> {
        self.inner.lock().unwrap().clone()
    }

    /// The instants at which the backend elected a leader of any election.
    pub fn elections(&self) -> Vec<Instant> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                LeadEvent::Elected { at, .. } => Some(*at),
                _ => None,
            })
            .collect()
    }
}

/// A term as its leader saw it: from the `Elected` answer until the leader
/// stopped believing (`is_leader()` false, `lost()` fired, resigned, or its
/// process killed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderTerm {
    /// The leader (its instance id).
    pub client: String,
    /// The term.
    pub term: u64,
    /// When the winning campaign request left.
    pub sent: Instant,
    /// When the `Elected` answer came back.
    pub elected: Instant,
    /// When it stopped believing; `None` while it still does.
    pub end: Option<Instant>,
}

/// Terms as leaders saw them. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Leaderships {
    inner: Arc<Mutex<Vec<LeaderTerm>>>,
}

impl Leaderships {
    /// No terms.
    pub fn new() -> Leaderships {
        Leaderships::default()
    }

    /// `client` won `term` (campaign sent at `sent`, answered at `elected`);
    /// returns the term's index.
    pub fn begin(&self, client: &str, term: u64, sent: Instant, elected: Instant) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(LeaderTerm {
            client: client.to_owned(),
            term,
            sent,
            elected,
            end: None,
        });
        v.len() - 1
    }

    /// The leader stopped believing at `at` (the first end recorded counts).
    pub fn end_at(&self, idx: usize, at: Instant) {
        let mut v = self.inner.lock().unwrap();
        let t = &mut v[idx];
        t.end = Some(t.end.unwrap_or(at).max(t.elected));
    }

    /// The terms.
    pub fn all(&self) -> Vec<LeaderTerm> {
        self.inner.lock().unwrap().clone()
    }

    /// Checks the terms against the backend's log (`log`, with every term
    /// the backend granted, in its order); terms still believed end at
    /// `now`. Always: a term has one holder (on the backend and among the
    /// leaders, and they agree), terms strictly increase in the backend's
    /// order, and a leader's term is one the backend granted. With
    /// `exclusion` (drift in bounds, no stop-the-world pauses): a leader
    /// stops believing before the backend elects another term, so no two
    /// leaders believe at one instant.
    pub fn check(&self, log: &[LeadEvent], now: Instant, exclusion: bool) -> Vec<Violation> {
        check_terms(&self.all(), log, now, exclusion)
    }
}

/// [`Leaderships::check`] on recorded terms.
pub fn check_terms(
    terms: &[LeaderTerm],
    log: &[LeadEvent],
    now: Instant,
    exclusion: bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    // The backend's order: per election, strictly increasing terms, each
    // granted once.
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut granted: HashMap<u64, (&HolderId, Instant)> = HashMap::new();
    for e in log {
        let LeadEvent::Elected {
            election,
            holder,
            term,
            at,
        } = e
        else {
            continue;
        };
        if let Some(&l) = last.get(election.as_str())
            && *term <= l
        {
            out.push(Violation::new(
                "terms",
                format!("election {election}: term {term} elected after term {l}"),
            ));
        }
        last.insert(
            election,
            (*term).max(last.get(election.as_str()).copied().unwrap_or(0)),
        );
        if let Some((h, _)) = granted.get(term)
            && *h != holder
        {
            out.push(Violation::new(
                "term-holders",
                format!("term {term} granted to {h} and to {holder}"),
            ));
        }
        granted.entry(*term).or_insert((holder, *at));
    }
    let mut owner: HashMap<u64, &str> = HashMap::new();
    for t in terms {
        match owner.get(&t.term) {
            Some(c) if *c != t.client => out.push(Violation::new(
                "term-holders",
                format!("term {} led by two clients: {} and {}", t.term, c, t.client),
            )),
            Some(_) => {}
            None => {
                owner.insert(t.term, &t.client);
            }
        }
        match granted.get(&t.term) {
            Some((h, _)) if h.instance().as_str() != t.client => out.push(Violation::new(
                "term-holders",
                format!(
                    "{} believes it leads term {}, which the backend granted to {h}",
                    t.client, t.term
                ),
            )),
            Some(_) => {}
            None if !log.is_empty() => out.push(Violation::new(
                "term-holders",
                format!(
                    "{} believes it leads term {}, which the backend never granted",
                    t.client, t.term
                ),
            )),
            None => {}
        }
    }
    if !exclusion {
        return out;
    }
    let end = |t: &LeaderTerm| t.end.unwrap_or(now);
    for t in terms {
        // Believing past the backend's election of a later term.
        if let Some((term, (h, at))) = granted
            .iter()
            .filter(|(term, (_, at))| **term > t.term && *at > t.elected && *at < end(t))
            .min_by_key(|(_, (_, at))| *at)
        {
            out.push(Violation::new(
                "leaders",
                format!(
                    "{} still believed it led term {} until {:?}, but the backend elected {h} for term {term} at {:?}: {:?} too long",
                    t.client,
                    t.term,
                    end(t),
                    at,
                    end(t) - *at
                ),
            ));
        }
    }
    // No two leaders at one instant.
    let mut v: Vec<&LeaderTerm> = terms.iter().collect();
    v.sort_by_key(|t| t.elected);
    let mut latest: Option<&LeaderTerm> = None;
    for t in v {
        if let Some(l) = latest
            && t.elected < end(l)
            && l.term != t.term
        {
            out.push(Violation::new(
                "leaders",
                format!(
                    "{} (term {}) led from {:?} while {} (term {}) believed it led until {:?}",
                    t.client,
                    t.term,
                    t.elected,
                    l.client,
                    l.term,
                    end(l)
                ),
            ));
        }
        if latest.is_none_or(|l| end(t) > end(l)) {
            latest = Some(t);
        }
    }
    out
}

/// Failover times: for each crash of a leader (its instant), how long until
/// the next term was elected (`elected`: the instants leaders learned they
/// won), `None` if none was.
pub fn failovers(crashes: &[Instant], elected: &[Instant]) -> Vec<Option<Duration>> {
    crashes
        .iter()
        .map(|c| elected.iter().filter(|e| *e > c).min().map(|e| *e - *c))
        .collect()
}

/// Checker: every failover (see [`failovers`]) took at most `bound`.
pub fn check_failovers(failovers: &[Option<Duration>], bound: Duration) -> Vec<Violation> {
    failovers
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f {
            Some(d) if *d <= bound => None,
            Some(d) => Some(Violation::new(
                "failover",
                format!(
                    "crash {i}: the next leader was elected {d:?} after the crash; bound {bound:?}"
                ),
            )),
            None => Some(Violation::new(
                "failover",
                format!("crash {i}: no leader was elected after the crash"),
            )),
        })
        .collect()
}

/// How a run-once call ended, for the run it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceOutcome {
    /// `RunOnce::Ran`: the run counted as finished.
    Ran,
    /// `Error::LeaseLost` or another error: the run did not count.
    NotFinished,
}

/// One run of a body of a run-once occurrence, as the body saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceRun {
    /// The node that ran it.
    pub client: String,
    /// The occurrence.
    pub occurrence: String,
    /// The run's fencing token.
    pub token: u64,
    /// The attempt number the body was given.
    pub attempt: u32,
    /// When the body started.
    pub start: Instant,
    /// When it returned (or its process was killed); `None` while running.
    pub end: Option<Instant>,
    /// It stopped early because its `lost` signal fired.
    pub interrupted: bool,
    /// What `run_once` returned, once it did.
    pub outcome: Option<OnceOutcome>,
}

/// Runs of run-once bodies. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct OnceRuns {
    inner: Arc<Mutex<Vec<OnceRun>>>,
}

impl OnceRuns {
    /// No runs.
    pub fn new() -> OnceRuns {
        OnceRuns::default()
    }

    /// A body started; returns the run's index.
    pub fn start(
        &self,
        client: &str,
        occurrence: &str,
        token: u64,
        attempt: u32,
        at: Instant,
    ) -> usize {
        let mut v = self.inner.lock().unwrap();
        v.push(OnceRun {
            client: client.to_owned(),
            occurrence: occurrence.to_owned(),
            token,
            attempt,
            start: at,
            end: None,
            interrupted: false,
            outcome: None,
        });
        v.len() - 1
    }

    /// The body returned at `at` (the first end recorded counts), early
    /// because of its lost signal when `interrupted`.
    pub fn end(&self, idx: usize, at: Instant, interrupted: bool) {
        let mut v = self.inner.lock().unwrap();
        let r = &mut v[idx];
        if r.end.is_none() {
            r.end = Some(at);
            r.interrupted = interrupted;
        }
    }

    /// What `run_once` returned for the run.
    pub fn outcome(&self, idx: usize, outcome: OnceOutcome) {
        self.inner.lock().unwrap()[idx].outcome = Some(outcome);
    }

    /// The runs.
    pub fn all(&self) -> Vec<OnceRun> {
        self.inner.lock().unwrap().clone()
    }

    /// Checks the runs, the backend's log and the writes each occurrence's
    /// fenced resource accepted; runs still going end at `now`.
    /// Always: a run that stopped because its lease was lost never counts as
    /// finished; an occurrence is marked finished at most once, never begins
    /// again once finished, and no body starts and no write lands after
    /// that; writes per occurrence obey fencing. With `exclusion` (drift in
    /// bounds, no pauses; bodies stop at `lost`): no two runs of one
    /// occurrence overlap in time.
    pub fn check(
        &self,
        log: &[LeadEvent],
        writes: &HashMap<String, Vec<Write>>,
        now: Instant,
        exclusion: bool,
    ) -> Vec<Violation> {
        check_once(&self.all(), log, writes, now, exclusion)
    }
}

/// [`OnceRuns::check`] on recorded runs.
pub fn check_once(
    runs: &[OnceRun],
    log: &[LeadEvent],
    writes: &HashMap<String, Vec<Write>>,
    now: Instant,
    exclusion: bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for r in runs {
        if r.interrupted && r.outcome == Some(OnceOutcome::Ran) {
            out.push(Violation::new(
                "once-lost",
                format!(
                    "{}'s run of {} (token {}) stopped when its lease was lost, yet run_once reported it ran to completion",
                    r.client, r.occurrence, r.token
                ),
            ));
        }
    }
    // The backend's view: finished once, nothing begins after.
    let mut finished: HashMap<&str, (Instant, &HolderId)> = HashMap::new();
    let mut runner: HashMap<(&str, &HolderId), u64> = HashMap::new();
    for e in log {
        match e {
            LeadEvent::OnceStarted {
                occurrence,
                holder,
                token,
                at,
            } => {
                runner.insert((occurrence, holder), *token);
                if let Some((f, h)) = finished.get(occurrence.as_str()) {
                    out.push(Violation::new(
                        "once-after-finish",
                        format!(
                            "{occurrence}: {holder} began a run (token {token}) at {at:?}, after {h} finished it at {f:?}"
                        ),
                    ));
                }
            }
            LeadEvent::OnceEnded {
                occurrence,
                holder,
                finished: true,
                at,
            } => {
                if let Some((f, h)) = finished.get(occurrence.as_str()) {
                    out.push(Violation::new(
                        "once-after-finish",
                        format!(
                            "{occurrence}: finished by {h} at {f:?} and again by {holder} at {at:?}"
                        ),
                    ));
                } else {
                    finished.insert(occurrence, (*at, holder));
                }
                // The finishing run must not be one whose body gave up.
                let token = runner.get(&(occurrence.as_str(), holder)).copied();
                if let Some(r) = runs.iter().find(|r| {
                    Some(r.token) == token && r.occurrence == *occurrence && r.interrupted
                }) {
                    out.push(Violation::new(
                        "once-lost",
                        format!(
                            "{occurrence}: marked finished at {at:?} by the run of {} (token {}), whose body stopped when its lease was lost",
                            r.client, r.token
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    for r in runs {
        if let Some((f, h)) = finished.get(r.occurrence.as_str())
            && r.start > *f
        {
            out.push(Violation::new(
                "once-after-finish",
                format!(
                    "{}: {} started a body (token {}) at {:?}, after {h} finished it at {f:?}",
                    r.occurrence, r.client, r.token, r.start
                ),
            ));
        }
    }
    for (occ, ws) in writes {
        for v in check_writes(ws) {
            out.push(Violation::new(v.checker, format!("{occ}: {}", v.detail)));
        }
        if let Some((f, h)) = finished.get(occ.as_str())
            && let Some(w) = ws.iter().find(|w| w.at > *f)
        {
            out.push(Violation::new(
                "once-after-finish",
                format!(
                    "{occ}: a write by {} (token {}) landed at {:?}, after {h} finished the occurrence at {f:?}",
                    w.client, w.token, w.at
                ),
            ));
        }
    }
    if exclusion {
        let end = |r: &OnceRun| r.end.unwrap_or(now);
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                if a.occurrence == b.occurrence
                    && a.token != b.token
                    && a.start < end(b)
                    && b.start < end(a)
                {
                    out.push(Violation::new(
                        "once-overlap",
                        format!(
                            "{}: {} (token {}, {:?}..{:?}) and {} (token {}, {:?}..{:?}) ran at once",
                            a.occurrence,
                            a.client,
                            a.token,
                            a.start,
                            end(a),
                            b.client,
                            b.token,
                            b.start,
                            end(b)
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// Fenced resources by key (one per occurrence of a run-once job). Clones
/// share them.
#[derive(Debug, Clone, Default)]
pub struct KeyedResource {
    inner: Arc<Mutex<HashMap<String, FencedResource>>>,
}

impl KeyedResource {
    /// No keys.
    pub fn new() -> KeyedResource {
        KeyedResource::default()
    }

    /// Offers a write to `key`'s resource (see [`FencedResource::write`]).
    pub fn write(&self, key: &str, client: &str, token: u64, at: Instant) -> bool {
        let r = self
            .inner
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .clone();
        r.write(client, token, at)
    }

    /// The accepted writes of every key.
    pub fn accepted(&self) -> HashMap<String, Vec<Write>> {
        self.inner
            .lock()
            .unwrap()
            .iter()
            .map(|(k, r)| (k.clone(), r.accepted()))
            .collect()
    }

    /// Writes refused for a stale token, over all keys.
    pub fn rejected(&self) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .values()
            .map(|r| r.rejected())
            .sum()
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

    fn holder(n: &str) -> HolderId {
        HolderId::from_parts(InstanceId::new(n).unwrap(), 7)
    }

    fn elected(term: u64, who: &str, at: u64) -> LeadEvent {
        LeadEvent::Elected {
            election: "e".into(),
            holder: holder(who),
            term,
            at: t(at),
        }
    }

    #[test]
    fn terms_flag_two_holders_regressions_and_overlaps() {
        let l = Leaderships::new();
        let a = l.begin("a", 10, t(0), t(1));
        l.end_at(a, t(100));
        let b = l.begin("b", 20, t(150), t(160));
        l.end_at(b, t(300));
        let good = [elected(10, "a", 1), elected(20, "b", 155)];
        assert!(l.check(&good, t(400), true).is_empty());
        // A leader still believing when the backend elects the next term.
        let late = [elected(10, "a", 1), elected(20, "b", 90)];
        let v = l.check(&late, t(400), true);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].checker, "leaders");
        assert!(l.check(&late, t(400), false).is_empty());
        // Terms going back in the backend's order, a term granted twice,
        // a term believed by someone it was not granted to.
        let bad = [
            elected(20, "b", 1),
            elected(10, "a", 2),
            elected(20, "c", 3),
        ];
        let v: Vec<_> = l
            .check(&bad, t(400), false)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(v, ["terms", "terms", "term-holders"], "{v:?}");
        // Two clients believing the same term; overlapping beliefs.
        let c = l.begin("c", 20, t(200), t(210));
        l.end_at(c, t(220));
        let v: Vec<_> = l
            .check(&good, t(400), true)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert!(
            v.contains(&"term-holders") && !v.contains(&"terms"),
            "{v:?}"
        );
        let d = l.begin("d", 30, t(250), t(260));
        l.end_at(d, t(270));
        let v: Vec<_> = l
            .check(&[], t(400), true)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(v, ["term-holders", "leaders"], "{v:?}");
    }

    #[test]
    fn failover_bound() {
        let f = failovers(&[t(10), t(1010)], &[t(5), t(910), t(1510)]);
        assert_eq!(
            f,
            [
                Some(Duration::from_millis(900)),
                Some(Duration::from_millis(500))
            ]
        );
        assert!(check_failovers(&f, Duration::from_millis(900)).is_empty());
        assert_eq!(check_failovers(&f, Duration::from_millis(899)).len(), 1);
        assert_eq!(check_failovers(&[None], Duration::MAX).len(), 1);
    }

    #[test]
    fn once_flags_lost_runs_reruns_late_writes_and_overlaps() {
        let runs = OnceRuns::new();
        let a = runs.start("a", "o", 10, 1, t(0));
        runs.end(a, t(100), true);
        runs.outcome(a, OnceOutcome::NotFinished);
        let b = runs.start("b", "o", 20, 2, t(150));
        runs.end(b, t(300), false);
        runs.outcome(b, OnceOutcome::Ran);
        let started = |who: &str, token, at| LeadEvent::OnceStarted {
            occurrence: "o".into(),
            holder: holder(who),
            token,
            at: t(at),
        };
        let ended = |who: &str, at| LeadEvent::OnceEnded {
            occurrence: "o".into(),
            holder: holder(who),
            finished: true,
            at: t(at),
        };
        let w = |c: &str, token, at| Write {
            client: c.into(),
            token,
            at: t(at),
        };
        let log = [started("a", 10, 0), started("b", 20, 140), ended("b", 310)];
        let writes = HashMap::from([("o".to_owned(), vec![w("a", 10, 50), w("b", 20, 200)])]);
        assert!(runs.check(&log, &writes, t(400), true).is_empty());
        // A lost run counted as finished (by the client and the backend).
        runs.outcome(a, OnceOutcome::Ran);
        let log_a = [started("a", 10, 0), ended("a", 120)];
        let v: Vec<_> = runs
            .check(&log_a, &HashMap::new(), t(400), false)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        // ... and b's body started after a finished it.
        assert_eq!(v, ["once-lost", "once-lost", "once-after-finish"], "{v:?}");
        runs.outcome(a, OnceOutcome::NotFinished);
        // A run begun after the finish, finished twice, a late and a stale write.
        let log_bad = [
            started("a", 10, 0),
            started("b", 20, 140),
            ended("b", 310),
            started("c", 30, 320),
            ended("c", 330),
        ];
        let late = HashMap::from([(
            "o".to_owned(),
            vec![w("b", 20, 200), w("a", 10, 250), w("b", 20, 320)],
        )]);
        let v: Vec<_> = runs
            .check(&log_bad, &late, t(400), false)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(
            v,
            [
                "once-after-finish",
                "once-after-finish",
                "fencing",
                "once-after-finish"
            ],
            "{v:?}"
        );
        // Two bodies of one occurrence at once.
        runs.start("c", "o", 30, 3, t(250));
        let v: Vec<_> = runs
            .check(&log, &writes, t(400), true)
            .into_iter()
            .map(|v| v.checker)
            .collect();
        assert_eq!(v, ["once-overlap"], "{v:?}");
    }

    #[test]
    fn keyed_resource_fences_per_key() {
        let r = KeyedResource::new();
        assert!(r.write("x", "a", 5, t(0)));
        assert!(r.write("y", "b", 1, t(1)));
        assert!(!r.write("x", "b", 4, t(2)));
        assert_eq!(r.rejected(), 1);
        assert_eq!(r.accepted()["x"].len(), 1);
    }
}
