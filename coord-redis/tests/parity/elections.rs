//! Memory and Redis answer the same: random sequences of SPI calls of
//! elections and membership groups (campaigns with and without a quorum,
//! standing or not, renewals, resignations, proclamations, withdrawals,
//! leader and candidate listings; joins, heartbeats, leaves, listings, by
//! several holders, one of them an earlier incarnation of another's
//! instance), and of run-once jobs (begin, extend, end finished or not,
//! give back, state), run against a fresh `MemoryStore` and against Redis,
//! answer by answer. Leases are long (20 to 60 s, nothing expires) or of a
//! millisecond, then over at the next step on both backends (the run waits
//! a few ms after the step that granted one): every answer must be the
//! same, terms and run tokens compared by order (each backend's labelled
//! by the grant that drew them), beginnings (a term's, a candidacy's, a
//! membership's) by order too, times left in whole seconds.
//!
//! A sequence that differs is kept as a regular `#[tokio::test]` below
//! the property (replayed by `run` on a backend of its own), once fixed.

use std::{collections::HashMap, time::SystemTime};

use coord_api::{
    FencingToken, HolderId, InstanceId, Key, Namespace,
    spi::{
        Campaign, ElectionBackend, GroupBackend, JobBackend, LeaderInfo, OnceBegin, OnceState,
        Quorum,
    },
};
use coord_memory::MemoryStore;
use coord_redis::RedisBackend;
use proptest::prelude::*;

use super::{PROPERTY, SHORT_WAIT, Ttl, config, error_variant, next_run, secs, short, ttl};

/// Holders 0..3 are three instances; holder 3 is holder 0's instance with
/// another nonce (an earlier incarnation).
const HOLDERS: usize = 4;
const ELECTIONS: usize = 2;
const GROUPS: usize = 2;
const JOBS: usize = 2;
const OCCURRENCES: usize = 2;

/// Metadata: a few short ones (a `|`, the candidate record's separator on
/// Redis, on purpose) and one over the limit.
#[derive(Debug, Clone, Copy)]
enum Meta {
    Empty,
    A,
    Bar,
    Wide,
    TooLong,
}

impl Meta {
    fn get(self) -> String {
        match self {
            Meta::Empty => String::new(),
            Meta::A => "a".into(),
            Meta::Bar => "10.0.0.1|9000".into(),
            Meta::Wide => "ü".repeat(2_048),
            Meta::TooLong => "x".repeat(4_097),
        }
    }
}

fn meta() -> impl Strategy<Value = Meta> {
    prop_oneof![
        2 => Just(Meta::Empty),
        3 => Just(Meta::A),
        3 => Just(Meta::Bar),
        1 => Just(Meta::Wide),
        1 => Just(Meta::TooLong),
    ]
}

/// A term as a call names it: the n-th of the election's terms this side
/// saw granted (counted from the latest, wrapping; none seen: `Never`), or
/// one never granted.
#[derive(Debug, Clone, Copy)]
enum TermRef {
    Back(usize),
    Never,
}

fn term_ref() -> impl Strategy<Value = TermRef> {
    prop_oneof![
        6 => Just(TermRef::Back(0)),
        2 => (1usize..3).prop_map(TermRef::Back),
        1 => Just(TermRef::Never),
    ]
}

/// Group, fewest members.
type QuorumRef = Option<(usize, u32)>;

fn quorum() -> impl Strategy<Value = QuorumRef> {
    prop_oneof![
        3 => Just(None),
        2 => (0..GROUPS, 0u32..=3).prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// Election, holder, metadata, TTL, quorum, stand.
    Campaign(usize, usize, Meta, Ttl, QuorumRef, bool),
    Renew(usize, usize, TermRef, Ttl, QuorumRef),
    Resign(usize, usize, TermRef),
    Proclaim(usize, usize, TermRef, Meta),
    Withdraw(usize, usize),
    Candidates(usize),
    Leader(usize),
    TermsGranted(usize),
    /// Group, holder, metadata, TTL.
    Join(usize, usize, Meta, Ttl),
    Heartbeat(usize, usize, Ttl),
    Leave(usize, usize),
    Members(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let (e, h, g) = (0..ELECTIONS, 0..HOLDERS, 0..GROUPS);
    prop_oneof![
        8 => (e.clone(), h.clone(), meta(), ttl(), quorum(), any::<bool>())
            .prop_map(|(e, h, m, t, q, s)| Op::Campaign(e, h, m, t, q, s)),
        3 => (e.clone(), h.clone(), term_ref(), ttl(), quorum())
            .prop_map(|(e, h, r, t, q)| Op::Renew(e, h, r, t, q)),
        3 => (e.clone(), h.clone(), term_ref()).prop_map(|(e, h, r)| Op::Resign(e, h, r)),
        2 => (e.clone(), h.clone(), term_ref(), meta())
            .prop_map(|(e, h, r, m)| Op::Proclaim(e, h, r, m)),
        2 => (e.clone(), h.clone()).prop_map(|(e, h)| Op::Withdraw(e, h)),
        2 => e.clone().prop_map(Op::Candidates),
        2 => e.clone().prop_map(Op::Leader),
        1 => e.prop_map(Op::TermsGranted),
        5 => (g.clone(), h.clone(), meta(), ttl()).prop_map(|(g, h, m, t)| Op::Join(g, h, m, t)),
        2 => (g.clone(), h.clone(), ttl()).prop_map(|(g, h, t)| Op::Heartbeat(g, h, t)),
        3 => (g.clone(), h).prop_map(|(g, h)| Op::Leave(g, h)),
        2 => g.prop_map(Op::Members),
    ]
}

#[derive(Debug, Clone)]
enum JobOp {
    /// Job, occurrence, holder, TTL.
    Begin(usize, usize, usize, Ttl),
    Extend(usize, usize, usize, Ttl),
    /// The retention when finished.
    End(usize, usize, usize, Option<Ttl>),
    GiveBack(usize, usize, usize),
    State(usize, usize),
}

fn job_op() -> impl Strategy<Value = JobOp> {
    let (j, o, h) = (0..JOBS, 0..OCCURRENCES, 0..HOLDERS);
    prop_oneof![
        6 => (j.clone(), o.clone(), h.clone(), ttl())
            .prop_map(|(j, o, h, t)| JobOp::Begin(j, o, h, t)),
        3 => (j.clone(), o.clone(), h.clone(), ttl())
            .prop_map(|(j, o, h, t)| JobOp::Extend(j, o, h, t)),
        4 => (j.clone(), o.clone(), h.clone(), proptest::option::of(ttl()))
            .prop_map(|(j, o, h, r)| JobOp::End(j, o, h, r)),
        2 => (j.clone(), o.clone(), h).prop_map(|(j, o, h)| JobOp::GiveBack(j, o, h)),
        3 => (j, o).prop_map(|(j, o)| JobOp::State(j, o)),
    ]
}

/// A token as one backend's order sees it: the n-th distinct token drawn
/// in its space (in grant order), or one that is not larger than every
/// token before and is none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Nth(usize),
    OutOfOrder,
}

/// The tokens one backend drew, per space (an election, a job), in grant
/// order.
#[derive(Default)]
struct Tokens(HashMap<usize, Vec<u64>>);

impl Tokens {
    fn granted(&mut self, space: usize, token: u64) -> Tok {
        let seen = self.0.entry(space).or_default();
        if let Some(i) = seen.iter().position(|t| *t == token) {
            return Tok::Nth(i);
        }
        if seen.last().is_some_and(|last| token < *last) {
            return Tok::OutOfOrder;
        }
        seen.push(token);
        Tok::Nth(seen.len() - 1)
    }

    /// The term `r` names in `space`.
    fn named(&self, space: usize, r: TermRef) -> FencingToken {
        let seen = self.0.get(&space).map_or(&[][..], Vec::as_slice);
        match r {
            TermRef::Back(n) if !seen.is_empty() => {
                FencingToken(seen[seen.len() - 1 - n % seen.len()])
            }
            _ => FencingToken(1),
        }
    }
}

/// Instants of the backend's wall clock (a term's, a candidacy's or a
/// membership's beginning) as one backend's order sees them: the n-th
/// distinct one it answered. Both backends answer the same sequence of
/// labels when each keeps (or moves) the same beginnings.
#[derive(Default)]
struct Instants(Vec<SystemTime>);

impl Instants {
    fn label(&mut self, at: SystemTime) -> usize {
        match self.0.iter().position(|x| *x == at) {
            Some(i) => i,
            None => {
                self.0.push(at);
                self.0.len() - 1
            }
        }
    }
}

/// A leader as comparable across backends: holder, metadata (long ones
/// shortened), term, since (labelled), seq, whole seconds left.
type Leader = (usize, String, Tok, usize, u64, u64);

/// An answer, as comparable across backends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Elected(Leader),
    Busy {
        leader: Option<Leader>,
        no_quorum: bool,
    },
    /// The error's variant.
    Error(String),
    Done(bool),
    Unit,
    Leader(Option<Leader>),
    /// Holder, metadata, since (labelled), whole seconds left, in listed
    /// order.
    Listed(Vec<(usize, String, usize, u64)>),
    Terms(Option<u64>),
    /// As listed, and the group's seq.
    Members(Vec<(usize, String, usize, u64)>, u64),
    Started(Tok, u32),
    Running(u64),
    Finished,
    Idle,
}

fn error(e: coord_api::Error) -> Answer {
    Answer::Error(error_variant(&e))
}

/// Metadata as compared: long ones by their length and first bytes.
fn shown(meta: &str) -> String {
    match meta.len() {
        0..=32 => meta.to_owned(),
        n => format!("{n} bytes: {}", meta.chars().take(4).collect::<String>()),
    }
}

fn done(r: coord_api::Result<bool>) -> Answer {
    r.map_or_else(error, Answer::Done)
}

/// The backends one side runs on (one object for every family).
trait Families: ElectionBackend + GroupBackend + JobBackend {}
impl<T: ElectionBackend + GroupBackend + JobBackend> Families for T {}

/// One backend under test, with what it drew so far.
struct Side<'a> {
    backend: &'a dyn Families,
    names: &'a Names,
    holders: &'a [HolderId],
    tokens: Tokens,
    instants: Instants,
}

/// One case's keys: elections, groups, jobs, occurrences.
struct Names {
    elections: Vec<Key>,
    groups: Vec<Key>,
    jobs: Vec<Key>,
    occurrences: Vec<Key>,
}

impl Side<'_> {
    fn holder(&self, h: &HolderId) -> usize {
        self.holders
            .iter()
            .position(|x| x == h)
            .unwrap_or(usize::MAX)
    }

    fn leader(&mut self, e: usize, l: &LeaderInfo) -> Leader {
        (
            self.holder(&l.holder),
            shown(&l.metadata),
            self.tokens.granted(e, l.term.get()),
            self.instants.label(l.since),
            l.seq,
            secs(l.expires_in),
        )
    }

    fn quorum(&self, q: QuorumRef) -> Option<Quorum> {
        q.map(|(g, min_members)| Quorum {
            group: self.names.groups[g].clone(),
            min_members,
        })
    }

    async fn apply(&mut self, op: &Op) -> Answer {
        let b = self.backend;
        let n = self.names;
        let hs = self.holders;
        match *op {
            Op::Campaign(e, h, m, ttl, q, stand) => {
                let q = self.quorum(q);
                let key = &n.elections[e];
                match ElectionBackend::campaign(
                    b,
                    key,
                    &hs[h],
                    &m.get(),
                    ttl.get(),
                    q.as_ref(),
                    stand,
                )
                .await
                {
                    Ok(Campaign::Elected(l)) => Answer::Elected(self.leader(e, &l)),
                    Ok(Campaign::Busy { leader, no_quorum }) => Answer::Busy {
                        leader: leader.map(|l| self.leader(e, &l)),
                        no_quorum,
                    },
                    Ok(other) => Answer::Error(format!("unknown answer {other:?}")),
                    Err(err) => error(err),
                }
            }
            Op::Renew(e, h, r, ttl, q) => {
                let q = self.quorum(q);
                let term = self.tokens.named(e, r);
                done(
                    ElectionBackend::renew(b, &n.elections[e], &hs[h], term, ttl.get(), q.as_ref())
                        .await,
                )
            }
            Op::Resign(e, h, r) => {
                let term = self.tokens.named(e, r);
                done(b.resign(&n.elections[e], &hs[h], term).await)
            }
            Op::Proclaim(e, h, r, m) => {
                let term = self.tokens.named(e, r);
                done(b.proclaim(&n.elections[e], &hs[h], term, &m.get()).await)
            }
            Op::Withdraw(e, h) => done(b.withdraw_candidacy(&n.elections[e], &hs[h]).await),
            Op::Candidates(e) => match b.candidates(&n.elections[e]).await {
                Ok(all) => Answer::Listed(
                    all.iter()
                        .map(|c| {
                            let since = self.instants.label(c.since);
                            (
                                self.holder(&c.holder),
                                shown(&c.metadata),
                                since,
                                secs(c.expires_in),
                            )
                        })
                        .collect(),
                ),
                Err(err) => error(err),
            },
            Op::Leader(e) => match b.leader(&n.elections[e]).await {
                Ok(l) => Answer::Leader(l.map(|l| self.leader(e, &l))),
                Err(err) => error(err),
            },
            Op::TermsGranted(e) => b
                .terms_granted(&n.elections[e])
                .await
                .map_or_else(error, Answer::Terms),
            Op::Join(g, h, m, ttl) => match b.join(&n.groups[g], &hs[h], &m.get(), ttl.get()).await
            {
                Ok(()) => Answer::Unit,
                Err(err) => error(err),
            },
            Op::Heartbeat(g, h, ttl) => done(b.heartbeat(&n.groups[g], &hs[h], ttl.get()).await),
            Op::Leave(g, h) => done(GroupBackend::leave(b, &n.groups[g], &hs[h]).await),
            Op::Members(g) => match b.members(&n.groups[g]).await {
                Ok(m) => Answer::Members(
                    m.members
                        .iter()
                        .map(|m| {
                            let joined = self.instants.label(m.joined);
                            (
                                self.holder(&m.holder),
                                shown(&m.metadata),
                                joined,
                                secs(m.expires_in),
                            )
                        })
                        .collect(),
                    m.seq,
                ),
                Err(err) => error(err),
            },
        }
    }

    async fn apply_job(&mut self, op: &JobOp) -> Answer {
        let b = self.backend;
        let n = self.names;
        let hs = self.holders;
        match *op {
            JobOp::Begin(j, o, h, ttl) => {
                match b
                    .begin(&n.jobs[j], &n.occurrences[o], &hs[h], ttl.get())
                    .await
                {
                    Ok(OnceBegin::Started { token, attempt }) => {
                        Answer::Started(self.tokens.granted(j, token.get()), attempt)
                    }
                    Ok(OnceBegin::Running { retry_in }) => Answer::Running(secs(retry_in)),
                    Ok(OnceBegin::Finished) => Answer::Finished,
                    Ok(other) => Answer::Error(format!("unknown answer {other:?}")),
                    Err(err) => error(err),
                }
            }
            JobOp::Extend(j, o, h, ttl) => {
                done(JobBackend::extend(b, &n.jobs[j], &n.occurrences[o], &hs[h], ttl.get()).await)
            }
            JobOp::End(j, o, h, retention) => {
                let retention = retention.map(Ttl::get);
                done(
                    b.end(&n.jobs[j], &n.occurrences[o], &hs[h], retention)
                        .await,
                )
            }
            JobOp::GiveBack(j, o, h) => {
                done(b.give_back(&n.jobs[j], &n.occurrences[o], &hs[h]).await)
            }
            JobOp::State(j, o) => match JobBackend::state(b, &n.jobs[j], &n.occurrences[o]).await {
                Ok(OnceState::Idle) => Answer::Idle,
                Ok(OnceState::Running { retry_in }) => Answer::Running(secs(retry_in)),
                Ok(OnceState::Finished) => Answer::Finished,
                Ok(other) => Answer::Error(format!("unknown answer {other:?}")),
                Err(err) => error(err),
            },
        }
    }
}

/// Names for this run that no other run (of this process) uses: every
/// case starts on fresh keys of the one Redis server.
fn fresh_names() -> Names {
    let run = next_run();
    let keys = |what: &str, n: usize| {
        (0..n)
            .map(|i| Key::new(&format!("parity/{run}/{what}{i}")).unwrap())
            .collect()
    };
    Names {
        elections: keys("e", ELECTIONS),
        groups: keys("g", GROUPS),
        jobs: keys("j", JOBS),
        occurrences: keys("o", OCCURRENCES),
    }
}

fn holders() -> Vec<HolderId> {
    let id = |i: usize| InstanceId::new(&format!("h{i}")).unwrap();
    let mut all: Vec<HolderId> = (0..3)
        .map(|i| HolderId::from_parts(id(i), i as u128 + 1))
        .collect();
    all.push(HolderId::from_parts(id(0), 99));
    assert_eq!(all.len(), HOLDERS);
    all
}

/// The step both sides take: `Op` or `JobOp`.
trait Step: std::fmt::Debug {
    async fn on(&self, side: &mut Side<'_>) -> Answer;
}

impl Step for Op {
    async fn on(&self, side: &mut Side<'_>) -> Answer {
        side.apply(self).await
    }
}

impl Step for JobOp {
    async fn on(&self, side: &mut Side<'_>) -> Answer {
        side.apply_job(self).await
    }
}

/// Runs `ops` against a fresh memory store and against `redis`, on fresh
/// names; the first step whose answers differ fails, naming both.
async fn run<S: Step>(redis: &RedisBackend, ops: &[S]) -> Result<(), String> {
    let memory = MemoryStore::new().backend(Namespace::default());
    let holders = holders();
    let names = fresh_names();
    let side = |backend| Side {
        backend,
        names: &names,
        holders: &holders,
        tokens: Tokens::default(),
        instants: Instants::default(),
    };
    let (mut m, mut r) = (side(&memory as &dyn Families), side(redis as &dyn Families));
    for (step, op) in ops.iter().enumerate() {
        let (mine, theirs) = (op.on(&mut m).await, op.on(&mut r).await);
        if short(op) {
            tokio::time::sleep(SHORT_WAIT).await;
        }
        if mine != theirs {
            return Err(format!(
                "step {step}: {op:?}\n  memory: {mine:?}\n  redis:  {theirs:?}"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn elections_and_groups_answer_the_same(ops in proptest::collection::vec(op(), 1..=40)) {
        let (rt, redis) = &*PROPERTY;
        rt.block_on(run(redis, &ops)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn jobs_answer_the_same(ops in proptest::collection::vec(job_op(), 1..=40)) {
        let (rt, redis) = &*PROPERTY;
        rt.block_on(run(redis, &ops)).map_err(TestCaseError::fail)?;
    }
}
