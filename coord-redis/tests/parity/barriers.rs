//! Memory and Redis answer the same: random sequences of `BarrierBackend`
//! calls (cyclic and double barriers: state with and without a generation
//! asked about, arrivals by three participants with parties that agree or
//! not, renewals, leaves naming their own wait or another, breaks by reset
//! and by timeout, of the current generation, a remembered one or one
//! never drawn, and runs of resets past what a backend remembers; latches:
//! settings with and without a call id, retried or not, count-downs by
//! three participants naming a generation or none, retried by their call,
//! states) run against a fresh `MemoryStore` and against Redis, answer by
//! answer. Leases (arrivals, latches) are long (20 to 60 s, nothing
//! expires) or of a millisecond, then over at the next step on both
//! backends (the run waits a few ms after the step that granted one), so
//! expiries are compared too: every answer must be the same, generations
//! compared by order (each backend's labelled by the answer that first
//! showed them), times left in whole seconds.
//!
//! A sequence that differs is kept as a regular `#[tokio::test]` below
//! the property (replayed by `run` on a backend of its own), once fixed.

use std::collections::HashMap;

use coord_api::{
    Key, Namespace,
    spi::{
        Arrive, BarrierBackend, BarrierKind, BarrierState, Break, BreakReason, CountDown, Ended,
        EndedGeneration, LatchSet, LatchState, Leave, Trip,
    },
};
use coord_memory::MemoryStore;
use coord_redis::RedisBackend;
use proptest::prelude::*;

use super::{Apply, PROPERTY, Ttl, compare, config, error_variant, next_run, secs, ttl};

const PARTICIPANTS: usize = 3;
const BARRIERS: usize = 2;
const LATCHES: usize = 2;

/// A generation as a call names it: the n-th of the record's generations
/// this side saw (counted from the latest, wrapping; none seen: `Low`),
/// one below every generation, or one above.
#[derive(Debug, Clone, Copy)]
enum GenRef {
    Back(usize),
    Low,
    High,
}

fn gen_ref() -> impl Strategy<Value = GenRef> {
    prop_oneof![
        8 => Just(GenRef::Back(0)),
        3 => (1usize..4).prop_map(GenRef::Back),
        // About as far back as a backend remembers (after `Resets`).
        1 => (14usize..=18).prop_map(GenRef::Back),
        1 => Just(GenRef::Low),
        1 => Just(GenRef::High),
    ]
}

fn kind() -> impl Strategy<Value = BarrierKind> {
    prop_oneof![Just(BarrierKind::Cyclic), Just(BarrierKind::Double)]
}

#[derive(Debug, Clone)]
enum Op {
    /// Kind, barrier, the generation asked about.
    State(BarrierKind, usize, Option<GenRef>),
    /// Kind, barrier, participant, generation, parties, TTL, arrival id.
    Arrive(BarrierKind, usize, usize, GenRef, u32, Ttl, u64),
    Renew(BarrierKind, usize, usize, GenRef, Ttl),
    /// Kind, barrier, participant, generation, arrival id.
    Leave(BarrierKind, usize, usize, GenRef, u64),
    /// Kind, barrier, generation (the current one: `None`), a timeout by
    /// that participant (a reset: `None`).
    Break(BarrierKind, usize, Option<GenRef>, Option<usize>),
    /// Kind, barrier: resets the current generation 17 times (one more
    /// than a backend must remember); the last answer.
    Resets(BarrierKind, usize),
    /// Latch, count, TTL, the call's id.
    LatchSet(usize, u32, Ttl, u64),
    /// Latch, participant, generation (the current one: `None`), the
    /// call's id.
    CountDown(usize, usize, Option<GenRef>, u64),
    LatchState(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let (b, p, l) = (0..BARRIERS, 0..PARTICIPANTS, 0..LATCHES);
    let parties = prop_oneof![8 => 1u32..=3, 1 => Just(0u32)];
    let id = 1u64..=3;
    let call = prop_oneof![1 => Just(0u64), 3 => 1u64..=3];
    prop_oneof![
        3 => (kind(), b.clone(), proptest::option::of(gen_ref()))
            .prop_map(|(k, b, g)| Op::State(k, b, g)),
        10 => (kind(), b.clone(), p.clone(), gen_ref(), parties, ttl(), id.clone())
            .prop_map(|(k, b, p, g, n, t, a)| Op::Arrive(k, b, p, g, n, t, a)),
        2 => (kind(), b.clone(), p.clone(), gen_ref(), ttl())
            .prop_map(|(k, b, p, g, t)| Op::Renew(k, b, p, g, t)),
        4 => (kind(), b.clone(), p.clone(), gen_ref(), id)
            .prop_map(|(k, b, p, g, a)| Op::Leave(k, b, p, g, a)),
        2 => (kind(), b.clone(), proptest::option::of(gen_ref()), proptest::option::of(p.clone()))
            .prop_map(|(k, b, g, by)| Op::Break(k, b, g, by)),
        1 => (kind(), b).prop_map(|(k, b)| Op::Resets(k, b)),
        4 => (l.clone(), prop_oneof![8 => 1u32..=3, 1 => Just(0u32)], ttl(), call.clone())
            .prop_map(|(l, n, t, c)| Op::LatchSet(l, n, t, c)),
        6 => (l.clone(), p, proptest::option::of(gen_ref()), call)
            .prop_map(|(l, p, g, c)| Op::CountDown(l, p, g, c)),
        2 => l.prop_map(Op::LatchState),
    ]
}

/// A generation as one backend's order sees it: the n-th distinct one it
/// answered on the record, or a new one not above every one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gen {
    Nth(usize),
    OutOfOrder,
}

/// Which record: a barrier (kind, index) or a latch (index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Record {
    Barrier(BarrierKind, usize),
    Latch(usize),
}

/// The generations one backend answered, per record, in order seen.
#[derive(Default)]
struct Gens(HashMap<Record, Vec<u64>>);

impl Gens {
    fn seen(&mut self, record: Record, g: u64) -> Gen {
        let seen = self.0.entry(record).or_default();
        if let Some(i) = seen.iter().position(|x| *x == g) {
            return Gen::Nth(i);
        }
        if seen.iter().any(|x| *x > g) {
            return Gen::OutOfOrder;
        }
        seen.push(g);
        Gen::Nth(seen.len() - 1)
    }

    fn named(&self, record: Record, r: GenRef) -> u64 {
        let seen = self.0.get(&record).map_or(&[][..], Vec::as_slice);
        match r {
            GenRef::Back(n) if !seen.is_empty() => seen[seen.len() - 1 - n % seen.len()],
            GenRef::High => u64::MAX,
            _ => 1,
        }
    }
}

/// An ended generation as compared: its generation, the next, how.
type EndedAt = (Gen, Gen, Ended);

/// A latch as compared: generation, first generation, initial, remaining,
/// whole seconds left.
type LatchRow = (Gen, Gen, u32, u32, u64);

/// An answer, as comparable across backends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    State {
        generation: Gen,
        parties: Option<u32>,
        entered: Option<Trip>,
        arrivals: Vec<(Key, u64)>,
        asked: Option<EndedAt>,
    },
    Waiting(u32),
    Entered(Trip),
    Ended(EndedAt),
    Stale(Gen),
    Full(u32),
    PartiesDiffer(u32),
    Renewed(bool),
    Left(u32),
    NotThere,
    Unknown(Gen),
    Set(Gen),
    Busy(LatchRow),
    Counted(Gen, u32),
    Already(Gen, u32),
    Absent,
    Latch(Option<LatchRow>),
    /// The error's variant, or an answer this test does not know.
    Error(String),
}

fn error(e: coord_api::Error) -> Answer {
    Answer::Error(error_variant(&e))
}

fn unknown(what: impl std::fmt::Debug) -> Answer {
    Answer::Error(format!("unknown answer {what:?}"))
}

/// One case's names.
struct Names {
    barriers: Vec<Key>,
    latches: Vec<Key>,
    participants: Vec<Key>,
}

/// One backend under test, with the generations it answered so far.
struct Side<'a> {
    backend: &'a dyn BarrierBackend,
    names: &'a Names,
    gens: Gens,
}

impl Side<'_> {
    fn ended(&mut self, record: Record, e: &EndedGeneration) -> EndedAt {
        (
            self.gens.seen(record, e.generation),
            self.gens.seen(record, e.next),
            e.ended.clone(),
        )
    }

    fn state(&mut self, record: Record, s: BarrierState) -> Answer {
        Answer::State {
            generation: self.gens.seen(record, s.generation),
            parties: s.parties,
            entered: s.entered,
            arrivals: (s.arrivals.into_iter())
                .map(|a| (a.participant, secs(a.expires_in)))
                .collect(),
            asked: s.asked.map(|e| self.ended(record, &e)),
        }
    }

    fn latch(&mut self, record: Record, l: &LatchState) -> LatchRow {
        // The first generation is older: labelled first.
        let first = self.gens.seen(record, l.first_generation);
        (
            self.gens.seen(record, l.generation),
            first,
            l.initial,
            l.remaining,
            secs(l.expires_in),
        )
    }

    fn arrived(&mut self, record: Record, a: Arrive) -> Answer {
        match a {
            Arrive::Waiting { arrived } => Answer::Waiting(arrived),
            Arrive::Entered(trip) => Answer::Entered(trip),
            Arrive::Ended(e) => Answer::Ended(self.ended(record, &e)),
            Arrive::Stale { current } => Answer::Stale(self.gens.seen(record, current)),
            Arrive::Full { parties } => Answer::Full(parties),
            Arrive::PartiesDiffer { parties } => Answer::PartiesDiffer(parties),
            other => unknown(other),
        }
    }

    fn broken(&mut self, record: Record, b: Break) -> Answer {
        match b {
            Break::Ended(e) => Answer::Ended(self.ended(record, &e)),
            Break::Entered(trip) => Answer::Entered(trip),
            Break::Unknown { current } => Answer::Unknown(self.gens.seen(record, current)),
            other => unknown(other),
        }
    }
}

impl Apply for Side<'_> {
    type Op = Op;
    type Answer = Answer;

    async fn apply(&mut self, op: &Op) -> Answer {
        let b = self.backend;
        let n = self.names;
        match *op {
            Op::State(kind, i, asked) => {
                let record = Record::Barrier(kind, i);
                let asked = asked.map(|g| self.gens.named(record, g));
                match b.state(kind, &n.barriers[i], asked).await {
                    Ok(s) => self.state(record, s),
                    Err(e) => error(e),
                }
            }
            Op::Arrive(kind, i, p, g, parties, ttl, id) => {
                let record = Record::Barrier(kind, i);
                let g = self.gens.named(record, g);
                let (name, who) = (&n.barriers[i], &n.participants[p]);
                match b.arrive(kind, name, who, g, parties, ttl.get(), id).await {
                    Ok(a) => self.arrived(record, a),
                    Err(e) => error(e),
                }
            }
            Op::Renew(kind, i, p, g, ttl) => {
                let g = self.gens.named(Record::Barrier(kind, i), g);
                let (name, who) = (&n.barriers[i], &n.participants[p]);
                b.renew(kind, name, who, g, ttl.get())
                    .await
                    .map_or_else(error, Answer::Renewed)
            }
            Op::Leave(kind, i, p, g, id) => {
                let g = self.gens.named(Record::Barrier(kind, i), g);
                let (name, who) = (&n.barriers[i], &n.participants[p]);
                match b.leave(kind, name, who, g, id).await {
                    Ok(Leave::Left { remaining }) => Answer::Left(remaining),
                    Ok(Leave::NotThere) => Answer::NotThere,
                    Ok(other) => unknown(other),
                    Err(e) => error(e),
                }
            }
            Op::Break(kind, i, g, by) => {
                let record = Record::Barrier(kind, i);
                let g = g.map(|g| self.gens.named(record, g));
                let reason = match by {
                    Some(p) => BreakReason::Timeout {
                        by: n.participants[p].clone(),
                    },
                    None => BreakReason::Reset,
                };
                match b.break_generation(kind, &n.barriers[i], g, reason).await {
                    Ok(broken) => self.broken(record, broken),
                    Err(e) => error(e),
                }
            }
            Op::Resets(kind, i) => {
                let record = Record::Barrier(kind, i);
                let mut last = Answer::NotThere;
                for _ in 0..=coord_api::spi::barriers::ENDED_KEPT {
                    last =
                        match (b.break_generation(kind, &n.barriers[i], None, BreakReason::Reset))
                            .await
                        {
                            Ok(broken) => self.broken(record, broken),
                            Err(e) => error(e),
                        };
                }
                last
            }
            Op::LatchSet(i, count, ttl, id) => {
                let record = Record::Latch(i);
                match b.latch_set(&n.latches[i], count, ttl.get(), id).await {
                    Ok(LatchSet::Set { generation }) => {
                        Answer::Set(self.gens.seen(record, generation))
                    }
                    Ok(LatchSet::Busy(l)) => Answer::Busy(self.latch(record, &l)),
                    Ok(other) => unknown(other),
                    Err(e) => error(e),
                }
            }
            Op::CountDown(i, p, g, call) => {
                let record = Record::Latch(i);
                let g = g.map(|g| self.gens.named(record, g));
                match (b.latch_count_down(&n.latches[i], &n.participants[p], g, call)).await {
                    Ok(CountDown::Counted {
                        generation,
                        remaining,
                    }) => Answer::Counted(self.gens.seen(record, generation), remaining),
                    Ok(CountDown::Already {
                        generation,
                        remaining,
                    }) => Answer::Already(self.gens.seen(record, generation), remaining),
                    Ok(CountDown::Absent) => Answer::Absent,
                    Ok(CountDown::Stale { current }) => {
                        Answer::Stale(self.gens.seen(record, current))
                    }
                    Ok(other) => unknown(other),
                    Err(e) => error(e),
                }
            }
            Op::LatchState(i) => match b.latch_state(&n.latches[i]).await {
                Ok(l) => Answer::Latch(l.map(|l| self.latch(Record::Latch(i), &l))),
                Err(e) => error(e),
            },
        }
    }
}

/// Names for this run that no other run (of this process) uses: every
/// case starts on fresh barriers and latches of the one Redis server.
fn fresh_names() -> Names {
    let run = next_run();
    let keys = |what: &str, n: usize| {
        (0..n)
            .map(|i| Key::new(&format!("parity/{run}/{what}{i}")).unwrap())
            .collect()
    };
    Names {
        barriers: keys("b", BARRIERS),
        latches: keys("l", LATCHES),
        participants: (0..PARTICIPANTS)
            .map(|i| Key::new(&format!("p{i}")).unwrap())
            .collect(),
    }
}

/// Runs `ops` against a fresh memory store and against `redis`, on fresh
/// names; the first step whose answers differ fails, naming both.
async fn run(redis: &RedisBackend, ops: &[Op]) -> Result<(), String> {
    let memory = MemoryStore::new().backend(Namespace::default());
    let names = fresh_names();
    let side = |backend| Side {
        backend,
        names: &names,
        gens: Gens::default(),
    };
    let (mut m, mut r) = (side(&memory as &dyn BarrierBackend), side(redis));
    compare(&mut m, &mut r, ops).await
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn barriers_and_latches_answer_the_same(ops in proptest::collection::vec(op(), 1..=40)) {
        let (rt, redis) = &*PROPERTY;
        rt.block_on(run(redis, &ops)).map_err(TestCaseError::fail)?;
    }
}
