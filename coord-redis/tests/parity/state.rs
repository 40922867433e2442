//! Memory and Redis answer the same: random sequences of shared-state SPI
//! calls (put with every expectation, with and without a TTL, naming a
//! call or none; delete; get; reads of changes by key and by prefix,
//! after versions known, unknown and none) run against a fresh
//! `MemoryStore` and against Redis, each case in a space of its own,
//! answer by answer. Time does not pass within a case (TTLs of 20 and
//! 40 s): every answer must be the same, versions compared by order (each
//! backend's labelled by the change that drew them), times left in whole
//! seconds.

use std::{collections::HashMap, time::Duration};

use coord_api::{
    Key, Namespace,
    spi::{
        Changes, Expect, Select, StateBackend, Stored, Written,
        state::{ChangeKind, MAX_VALUE_BYTES},
    },
};
use coord_memory::MemoryStore;
use coord_redis::RedisBackend;
use proptest::prelude::*;

use super::{Apply, PROPERTY, compare, config, error_variant, fresh_name, secs};

const KEYS: [&str; 3] = ["a", "ab", "b"];
/// An `after` no backend has reached: a reader that saw versions the
/// backend does not know.
const AHEAD: u64 = u64::MAX / 2;

#[derive(Debug, Clone, Copy)]
enum Ttl {
    None,
    S20,
    S40,
    Zero,
}

impl Ttl {
    fn get(self) -> Option<Duration> {
        match self {
            Ttl::None => None,
            Ttl::S20 => Some(Duration::from_secs(20)),
            Ttl::S40 => Some(Duration::from_secs(40)),
            Ttl::Zero => Some(Duration::ZERO),
        }
    }
}

/// An expectation, spelled against what each backend answered before.
#[derive(Debug, Clone, Copy)]
enum Exp {
    Any,
    Absent,
    /// The version of the key's last change that this run saw (absent when
    /// none).
    Current,
    /// The n-th version drawn in the space (modulo how many; absent when
    /// none).
    Nth(usize),
    /// A version nothing has.
    Never,
}

/// An `after` of a read of changes.
#[derive(Debug, Clone, Copy)]
enum After {
    Zero,
    Nth(usize),
    /// The space's latest version seen.
    Latest,
    Ahead,
}

#[derive(Debug, Clone)]
enum Op {
    /// Key, value, expectation, TTL, call (0: none).
    Put(usize, u8, Exp, Ttl, u64),
    Delete(usize, Exp),
    Get(usize),
    /// Selection (`Err`: a prefix), after, limit.
    Changes(Result<usize, &'static str>, After, u32),
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        3 => Just(Exp::Any),
        2 => Just(Exp::Absent),
        3 => Just(Exp::Current),
        1 => (0usize..8).prop_map(Exp::Nth),
        1 => Just(Exp::Never),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    let ttl = prop_oneof![
        4 => Just(Ttl::None),
        2 => Just(Ttl::S20),
        2 => Just(Ttl::S40),
        1 => Just(Ttl::Zero),
    ];
    // Values 0..3, and 255: one byte more than a value may hold.
    let value = prop_oneof![8 => 0u8..3, 1 => Just(255u8)];
    let call = prop_oneof![3 => Just(0u64), 1 => 1u64..4];
    let select = prop_oneof![
        k.clone().prop_map(Ok),
        prop_oneof![Just(""), Just("a"), Just("b"), Just("c")].prop_map(Err),
    ];
    let after = prop_oneof![
        1 => Just(After::Zero),
        2 => (0usize..8).prop_map(After::Nth),
        2 => Just(After::Latest),
        1 => Just(After::Ahead),
    ];
    let limit = prop_oneof![4 => 1u32..4, 1 => Just(0u32), 1 => Just(1000u32)];
    prop_oneof![
        6 => (k.clone(), value, exp(), ttl, call).prop_map(|(k, v, e, t, c)| Op::Put(k, v, e, t, c)),
        3 => (k.clone(), exp()).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => k.prop_map(Op::Get),
        3 => (select, after, limit).prop_map(|(s, a, l)| Op::Changes(s, a, l)),
    ]
}

fn bytes(v: u8) -> Vec<u8> {
    match v {
        255 => vec![b'x'; MAX_VALUE_BYTES + 1],
        v => vec![b'0' + v; usize::from(v) + 1],
    }
}

/// A version as one backend's order sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ver {
    /// The n-th distinct version this backend answered, in order.
    Nth(usize),
    Zero,
    Ahead,
    /// Neither larger than every version before nor one of them.
    OutOfOrder(u64),
}

/// An entry: value, version, whole seconds left.
type Entry = (Vec<u8>, Ver, Option<u64>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Done(Ver),
    Conflict(Option<Entry>),
    Unchanged,
    Got(Option<Entry>),
    Changes {
        /// Key, version, value put (`None`: deleted; expiries: none here).
        changes: Vec<(String, Ver, Result<Vec<u8>, String>)>,
        gap: Option<(Ver, Option<Ver>)>,
        current: Vec<(String, Entry)>,
        head: Ver,
        next_expiry_s: Option<u64>,
    },
    Error(String),
}

fn error(e: coord_api::Error) -> Answer {
    Answer::Error(error_variant(&e))
}

/// One backend under test and what it answered so far.
struct Side<'a> {
    backend: &'a dyn StateBackend,
    space: Key,
    keys: Vec<Key>,
    /// Every version it answered, in order.
    versions: Vec<u64>,
    /// Each key's last change's version, as its answers told.
    current: HashMap<usize, u64>,
}

impl Side<'_> {
    fn ver(&mut self, v: u64) -> Ver {
        if v == 0 {
            return Ver::Zero;
        }
        if v == AHEAD {
            return Ver::Ahead;
        }
        if let Some(i) = self.versions.iter().position(|x| *x == v) {
            return Ver::Nth(i);
        }
        if self.versions.last().is_some_and(|last| v < *last) {
            return Ver::OutOfOrder(v);
        }
        self.versions.push(v);
        Ver::Nth(self.versions.len() - 1)
    }

    fn nth(&self, n: usize) -> Option<u64> {
        (!self.versions.is_empty()).then(|| self.versions[n % self.versions.len()])
    }

    fn expect(&self, k: usize, e: Exp) -> Expect {
        match e {
            Exp::Any => Expect::Any,
            Exp::Absent => Expect::Absent,
            Exp::Current => Expect::version(self.current.get(&k).copied()),
            Exp::Nth(n) => Expect::version(self.nth(n)),
            Exp::Never => Expect::Version(1),
        }
    }

    fn entry(&mut self, s: Stored) -> Entry {
        (s.value, self.ver(s.version), s.expires_in.map(secs))
    }

    fn written(&mut self, k: usize, w: Written) -> Answer {
        match w {
            Written::Done(v) => {
                self.current.insert(k, v);
                Answer::Done(self.ver(v))
            }
            Written::Conflict(s) => Answer::Conflict(s.map(|s| self.entry(s))),
            Written::Unchanged => Answer::Unchanged,
            other => Answer::Error(format!("unknown answer {other:?}")),
        }
    }

    fn changes(&mut self, c: Changes) -> Answer {
        let changes = c.changes.into_iter().map(|ch| {
            let what = match ch.kind {
                ChangeKind::Put(v) => Ok(v),
                other => Err(format!("{other:?}")),
            };
            (ch.key.to_string(), ch.version, what)
        });
        let changes: Vec<_> = changes.collect();
        let changes = changes
            .into_iter()
            .map(|(k, v, what)| (k, self.ver(v), what))
            .collect();
        let gap = c
            .gap
            .map(|g| (self.ver(g.after), g.oldest.map(|o| self.ver(o))));
        let current = c
            .current
            .into_iter()
            .map(|(k, s)| (k.to_string(), self.entry(s)))
            .collect();
        Answer::Changes {
            changes,
            gap,
            current,
            head: self.ver(c.head),
            next_expiry_s: c.next_expiry_in.map(secs),
        }
    }
}

impl Apply for Side<'_> {
    type Op = Op;
    type Answer = Answer;

    async fn apply(&mut self, op: &Op) -> Answer {
        let (b, space) = (self.backend, &self.space.clone());
        match *op {
            Op::Put(k, v, e, ttl, call) => {
                let expect = self.expect(k, e);
                match b
                    .put(space, &self.keys[k], bytes(v), expect, ttl.get(), call)
                    .await
                {
                    Ok(w) => self.written(k, w),
                    Err(e) => error(e),
                }
            }
            Op::Delete(k, e) => {
                let expect = self.expect(k, e);
                match b.delete(space, &self.keys[k], expect).await {
                    Ok(w) => self.written(k, w),
                    Err(e) => error(e),
                }
            }
            Op::Get(k) => match b.get(space, &self.keys[k]).await {
                Ok(s) => Answer::Got(s.map(|s| self.entry(s))),
                Err(e) => error(e),
            },
            Op::Changes(select, after, limit) => {
                let select = match select {
                    Ok(k) => Select::Key(self.keys[k].clone()),
                    Err(prefix) => Select::Prefix(prefix.to_string()),
                };
                let after = match after {
                    After::Zero => 0,
                    After::Nth(n) => self.nth(n).unwrap_or(0),
                    After::Latest => self.versions.last().copied().unwrap_or(0),
                    After::Ahead => AHEAD,
                };
                match b.changes(space, &select, after, limit).await {
                    Ok(c) => self.changes(c),
                    Err(e) => error(e),
                }
            }
        }
    }
}

/// Runs `ops` against a fresh memory store and against `redis`, in a
/// fresh space; the first step whose answers differ fails, naming both.
async fn run(redis: &RedisBackend, ops: &[Op]) -> Result<(), String> {
    let memory = MemoryStore::new().backend(Namespace::default());
    let space = fresh_name();
    let keys: Vec<Key> = KEYS.iter().map(|k| Key::new(k).unwrap()).collect();
    let side = |backend| Side {
        backend,
        space: space.clone(),
        keys: keys.clone(),
        versions: Vec::new(),
        current: HashMap::new(),
    };
    let (mut m, mut r) = (side(&memory), side(redis));
    compare(&mut m, &mut r, ops).await
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn memory_and_redis_answer_the_same(ops in proptest::collection::vec(op(), 1..=40)) {
        let (rt, redis) = &*PROPERTY;
        rt.block_on(run(redis, &ops)).map_err(TestCaseError::fail)?;
    }
}
