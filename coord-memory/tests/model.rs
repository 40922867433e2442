//! Model-based property test: random interleavings of acquire, extend,
//! release, force release, listing the holders (with the time left on each
//! lease), and time passing, by several holders, run against the memory
//! backend and against a sequential reference model written straight from
//! the contract. Outcomes must match; tokens must increase.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use coord_api::{
    Clock, HolderId, InstanceId, Instant, Key, LeaseKind, LockSpace, Namespace, Sleep,
    spi::{Acquire, LeaseId, LockBackend, Release},
};
use coord_memory::MemoryStore;
use proptest::prelude::*;

/// A clock moved only by the test.
#[derive(Debug)]
struct ManualClock {
    base: Instant,
    ms: AtomicU64,
}

impl ManualClock {
    fn advance(&self, ms: u64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
    fn ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms())
    }
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(self.ms())
    }
    fn sleep_until(&self, _: Instant) -> Sleep {
        Box::pin(std::future::pending())
    }
}

const HOLDERS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    /// Holder, kind, TTL.
    Acquire(usize, LeaseKind, u64),
    /// Lists the live leases of a space.
    Inspect(LockSpace),
    Extend(usize, LeaseKind, u64),
    Release(usize, LeaseKind),
    Force(LockSpace),
    Advance(u64),
}

fn kind() -> impl Strategy<Value = LeaseKind> {
    prop_oneof![
        Just(LeaseKind::Exclusive),
        Just(LeaseKind::Reentrant),
        Just(LeaseKind::Read),
        Just(LeaseKind::Write),
        (1u32..=3).prop_map(|limit| LeaseKind::Permit { limit }),
    ]
}

fn space() -> impl Strategy<Value = LockSpace> {
    prop_oneof![
        Just(LockSpace::Lock),
        Just(LockSpace::RwLock),
        Just(LockSpace::Semaphore)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let holder = 0..HOLDERS;
    let ttl = 1u64..50;
    prop_oneof![
        4 => (holder.clone(), kind(), ttl.clone()).prop_map(|(h, k, t)| Op::Acquire(h, k, t)),
        2 => space().prop_map(Op::Inspect),
        2 => (holder.clone(), kind(), ttl).prop_map(|(h, k, t)| Op::Extend(h, k, t)),
        3 => (holder, kind()).prop_map(|(h, k)| Op::Release(h, k)),
        1 => space().prop_map(Op::Force),
        3 => (0u64..40).prop_map(Op::Advance),
    ]
}

/// Whether an id of kind `id` names a lease of kind `lease` (of its
/// holder): the same kind, or any permit kind for a permit lease (decision
/// 0066).
fn names(id: LeaseKind, lease: LeaseKind) -> bool {
    id == lease || id.permit_limit().is_some() && lease.permit_limit().is_some()
}

/// A lease of the model: space, holder, kind, holds, token, expires-at ms.
type ModelLease = (LockSpace, usize, LeaseKind, u32, u64, u64);

/// The reference: for each family, the live leases and the writers' intents;
/// time in whole ms.
#[derive(Default)]
struct Model {
    now: u64,
    leases: Vec<ModelLease>,
    intents: Vec<(usize, u64)>,
    limit: Option<u32>,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Granted {
        holds: u32,
        reused: Option<u64>,
    },
    Busy,
    Invalid,
    Extended(bool),
    Released(Option<u32>),
    Forced(usize),
    /// Holder, kind, holds and ms left of each live lease, by token.
    Inspected(Vec<(usize, LeaseKind, u32, u64)>),
}

impl Model {
    fn live(&self, family: LockSpace) -> impl Iterator<Item = &ModelLease> {
        self.leases
            .iter()
            .filter(move |l| l.0 == family && l.5 > self.now)
    }

    fn expire(&mut self) {
        let now = self.now;
        self.leases.retain(|l| l.5 > now);
        self.intents.retain(|i| i.1 > now);
        if !self.leases.iter().any(|l| l.0 == LockSpace::Semaphore) {
            self.limit = None;
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        self.expire();
        match *op {
            Op::Advance(ms) => {
                self.now += ms;
                Outcome::Busy // not compared
            }
            Op::Force(family) => {
                let n = self.live(family).count();
                self.leases.retain(|l| l.0 != family);
                if family == LockSpace::RwLock {
                    self.intents.clear();
                }
                if family == LockSpace::Semaphore {
                    self.limit = None;
                }
                Outcome::Forced(n)
            }
            Op::Inspect(space) => {
                let mut live: Vec<_> = self.live(space).collect();
                live.sort_by_key(|l| l.4);
                let now = self.now;
                Outcome::Inspected(live.iter().map(|l| (l.1, l.2, l.3, l.5 - now)).collect())
            }
            Op::Acquire(h, kind, ttl) => {
                let fam = kind.space();
                let until = self.now + ttl;
                let others: Vec<_> = self.live(fam).cloned().collect();
                let ok = match kind {
                    LeaseKind::Exclusive => others.is_empty(),
                    LeaseKind::Reentrant => {
                        if let Some(l) = self
                            .leases
                            .iter_mut()
                            .find(|l| l.0 == fam && l.1 == h && l.2 == LeaseKind::Reentrant)
                        {
                            l.3 += 1;
                            l.5 = until;
                            return Outcome::Granted {
                                holds: l.3,
                                reused: Some(l.4),
                            };
                        }
                        others.is_empty()
                    }
                    // The same reader asking again is checked like any
                    // reader; granted, its new lease replaces the old (a new
                    // token), as on Redis.
                    LeaseKind::Read => {
                        !others.iter().any(|l| l.2 == LeaseKind::Write) && self.intents.is_empty()
                    }
                    LeaseKind::Write => {
                        if others.is_empty() {
                            self.intents.retain(|i| i.0 != h);
                            true
                        } else if others.iter().any(|l| l.1 == h && l.2 == LeaseKind::Write) {
                            // The writer asking again for the lease it
                            // holds is refused and waits for nothing: no
                            // intent, or readers would be kept out past its
                            // lease (decision in 18d668d, as on Redis).
                            false
                        } else {
                            self.intents.retain(|i| i.0 != h);
                            self.intents.push((h, until));
                            false
                        }
                    }
                    LeaseKind::Permit { limit } => {
                        if self.limit.is_some_and(|l| l != limit) {
                            return Outcome::Invalid;
                        }
                        // The holder's own permit is not in the way: asking
                        // again replaces it.
                        if others.iter().filter(|l| l.1 != h).count() < limit as usize {
                            self.limit = Some(limit);
                            true
                        } else {
                            false
                        }
                    }
                    other => panic!("the model knows no lease kind {other:?}"),
                };
                if ok {
                    // One lease per holder (a reader's or a permit's again
                    // replaces it); the new one last: the run teaches it
                    // the token the backend drew.
                    self.leases.retain(|l| !(l.0 == fam && l.1 == h));
                    self.leases.push((fam, h, kind, 1, 0, until));
                    Outcome::Granted {
                        holds: 1,
                        reused: None,
                    }
                } else {
                    Outcome::Busy
                }
            }
            Op::Extend(h, kind, ttl) => {
                let now = self.now;
                let fam = kind.space();
                match self
                    .leases
                    .iter_mut()
                    .find(|l| l.0 == fam && l.1 == h && names(kind, l.2))
                {
                    Some(l) => {
                        l.5 = now + ttl;
                        Outcome::Extended(true)
                    }
                    None => Outcome::Extended(false),
                }
            }
            Op::Release(h, kind) => {
                let fam = kind.space();
                if kind == LeaseKind::Write {
                    self.intents.retain(|i| i.0 != h);
                }
                match self
                    .leases
                    .iter()
                    .position(|l| l.0 == fam && l.1 == h && names(kind, l.2))
                {
                    Some(i) if self.leases[i].3 > 1 => {
                        self.leases[i].3 -= 1;
                        Outcome::Released(Some(self.leases[i].3))
                    }
                    Some(i) => {
                        self.leases.remove(i);
                        self.expire();
                        Outcome::Released(Some(0))
                    }
                    None => Outcome::Released(None),
                }
            }
        }
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let clock = Arc::new(ManualClock {
            base: Instant::now(),
            ms: AtomicU64::new(0),
        });
        let backend = MemoryStore::with_clock(clock.clone()).backend(Namespace::default());
        let holders: Vec<HolderId> = (0..HOLDERS)
            .map(|i| HolderId::from_parts(InstanceId::new(&format!("h{i}")).unwrap(), i as u128))
            .collect();
        let key = Key::new("k").unwrap();
        let id = |h: usize, kind: LeaseKind| LeaseId {
            kind,
            key: key.clone(),
            holder: holders[h].clone(),
        };
        let mut model = Model::default();
        let mut last_token: [u64; 3] = [0; 3];
        for (step, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let actual = match *op {
                Op::Advance(ms) => {
                    clock.advance(ms);
                    continue;
                }
                Op::Force(family) => {
                    Outcome::Forced(backend.force_release(family, &key).await.unwrap())
                }
                Op::Inspect(space) => {
                    let infos = backend.inspect(space, &key).await.unwrap();
                    Outcome::Inspected(
                        infos
                            .iter()
                            .map(|i| {
                                let h = holders.iter().position(|x| *x == i.holder).unwrap();
                                (h, i.kind, i.holds, i.expires_in.as_millis() as u64)
                            })
                            .collect(),
                    )
                }
                Op::Acquire(h, kind, ttl) => {
                    let ttl = Duration::from_millis(ttl);
                    let answer = backend.acquire(&id(h, kind), ttl).await;
                    match answer {
                        Ok(Acquire::Granted(g)) => {
                            let fam = kind.space() as usize;
                            let reused = match &expected {
                                Outcome::Granted {
                                    reused: Some(t), ..
                                } => {
                                    prop_assert_eq!(
                                        g.token.get(),
                                        *t,
                                        "step {}: re-grant keeps its token",
                                        step
                                    );
                                    Some(*t)
                                }
                                _ => {
                                    prop_assert!(
                                        g.token.get() > last_token[fam],
                                        "step {}: token {} after {}",
                                        step,
                                        g.token,
                                        last_token[fam]
                                    );
                                    last_token[fam] = g.token.get();
                                    // Teach the model the token the backend chose.
                                    model.leases.last_mut().expect("model granted").4 =
                                        g.token.get();
                                    None
                                }
                            };
                            Outcome::Granted {
                                holds: g.holds,
                                reused,
                            }
                        }
                        Ok(Acquire::Busy(_)) => Outcome::Busy,
                        Ok(other) => {
                            return Err(TestCaseError::fail(format!(
                                "step {step}: an answer the model does not know: {other:?}"
                            )));
                        }
                        Err(coord_api::Error::InvalidArgument { .. }) => Outcome::Invalid,
                        Err(e) => return Err(TestCaseError::fail(format!("step {step}: {e}"))),
                    }
                }
                Op::Extend(h, kind, ttl) => Outcome::Extended(
                    backend
                        .extend(&id(h, kind), Duration::from_millis(ttl))
                        .await
                        .unwrap(),
                ),
                Op::Release(h, kind) => {
                    Outcome::Released(match backend.release(&id(h, kind)).await.unwrap() {
                        Release::Released { remaining } => Some(remaining),
                        Release::NotHeld => None,
                    })
                }
            };
            prop_assert_eq!(
                &actual,
                &expected,
                "step {}: {:?} at t={}ms",
                step,
                op,
                model.now
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn backend_matches_reference_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
