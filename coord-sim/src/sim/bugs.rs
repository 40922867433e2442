//! Deliberately broken servers and clients (feature `broken`, tests only):
//! the simulator's checkers must report each of them. A server bug is a
//! decorator around the store's backend (it sees every call as a [`Call`]
//! and changes the few it is about; queue bugs: `queues`, shared-value bugs: `state`), or, for the
//! token floor, a clock: the store itself has no broken branch. A client
//! bug is a decorator around the client's connection, emulating client code
//! that is missing.

use std::{
    collections::HashSet,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Clock, FencingToken, HolderId, Key, LockSpace, Namespace, Quorum, Result,
    spi::{
        Acquire, BarrierKind, Break, BreakReason, Broken as BrokenGeneration, Call, Complete,
        CountDown, Dispatch, Dispatched, DynBackend, Edge, Ended, EndedGeneration, Families,
        GraphSpec, LeaseId, MAX_ATTEMPTS, NodeResult, NodeSpec, NodeState, On, Release, Reply,
        Watch,
    },
};
use coord_testkit::clocks::EpochWall;

mod queues;
mod state;
mod topics;

/// A deliberate bug of the sim server or of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// `release` frees the key's lease whoever asks.
    ReleaseIgnoresHolder,
    /// Tokens are the store's counters alone, without the wall-clock floor:
    /// a restarted (emptied) store reuses old tokens.
    NoTokenFloor,
    /// `extend` answers `true` when the key is held by someone else.
    RenewAfterTakeover,
    /// Watches never wake (not at expiry, not on release) and a refusal
    /// never says when what blocks expires: waiters only learn by their
    /// fallback retry.
    NoExpiryWake,
    /// An election's `renew` answers `true` whatever the store says: a
    /// leader keeps its term after another term was elected.
    RenewAlways,
    /// `campaign` first resigns whoever leads: a new term while the old
    /// leader still believes.
    CampaignDeposes,
    /// The end of a failed or lost run (or a run given back) marks the
    /// occurrence finished.
    EndOnceFinishes,
    /// A barrier's `break_generation` at a waiter's deadline does not look
    /// at how the generation ended: asked to break one that already
    /// tripped, it answers that it broke (the store's record, and every
    /// other waiter, say it tripped).
    BreakAfterTrip,
    /// A barrier keeps every arrival three times its TTL: a participant
    /// that crashed (or stopped waiting) is counted long after its TTL.
    ArrivalOutlivesTtl,
    /// A latch's count-down ignores who counts: a participant's repeat (a
    /// retry after a lost reply, a restarted process counting again) counts
    /// once more while the generation is above zero. Emulated by counting
    /// such a repeat again under another participant (`<participant>+`).
    LatchRetryCountsTwice,
    /// A graph node's `complete` from a stale token (its lease expired and
    /// another attempt runs the node now) is recorded as the running
    /// attempt's: emulated by completing again with the running attempt's
    /// token when the backend answers `Stale` for a running node.
    CompleteIgnoresToken,
    /// Resolution ignores the edges' conditions: a dependent is made ready
    /// once its parents ended however they ended (a cancelled parent still
    /// cancels it). Emulated by submitting every edge as `On::Any`.
    ResolveSkipsCondition,
    /// A node with several parents is made ready as soon as its first
    /// parent's edge holds, not waiting for the others. Emulated by
    /// submitting only each node's first edge.
    FanInWaitsForOne,
    /// A node is given two more attempts than declared (its lease expiring
    /// or its failures retried past `max_attempts`). Emulated by submitting
    /// every node with two more.
    AttemptsBeyondMax,
    /// A queue's ack with a stale token (its lease expired, the item went
    /// to another consumer) is accepted: it acks the item's current
    /// delivery. Emulated by acking again with the latest token handed out
    /// when the store answers `Stale`.
    AckIgnoresToken,
    /// Stealing takes started deliveries: a receive with `steal` that finds
    /// nothing ready takes another consumer's started delivery (its lease
    /// valid). Emulated by a hidden nack of that delivery and a receive.
    StealStarted,
    /// A delivery whose lease ended unsettled (expired, or its consumer
    /// died or left) is dropped instead of returned: the next time it is
    /// delivered, the server acks it itself and leaves it out of the reply.
    ExpiryLosesItem,
    /// Presence is ignored: a dead consumer's deliveries wait for their own
    /// lease deadlines. Emulated by renewing every presence for twenty
    /// times the TTL asked.
    PresenceIgnored,
    /// A topic read that finds events trimmed before the subscription got
    /// them says nothing about them: the subscription skips them silently.
    /// Emulated by clearing `missed` from read replies.
    TopicSkipsMissed,
    /// A topic ack with a stale token (the delivery expired and went to
    /// another subscriber) is accepted. Emulated by acking again with the
    /// offset's latest token when the store answers `Stale`.
    TopicAckIgnoresToken,
    /// Client-side: no clean-up of unanswered acquisitions. An acquire-type
    /// call (`locks.acquire`, `elections.campaign`, `groups.join`,
    /// `jobs.begin`) that ended without an answer (an error, or cancelled)
    /// may have been granted, and nothing releases that grant: it lives its
    /// whole TTL. Emulated by a decorator on the client's connection that
    /// swallows the releases (`locks.release`, `elections.resign`,
    /// `groups.leave`, `jobs.end`, `jobs.give_back`) of such holders.
    NoCleanup,
    /// A compare-and-set of a shared value writes whatever the current
    /// version: two updates from one read both succeed, one is lost.
    CasIgnoresVersion,
    /// The change log's reads leave out some changes (those whose version
    /// is a multiple of five) without a gap: a watcher skips them
    /// silently.
    LogSkipsChanges,
    /// A fair lock grants any waiter that asks when the lock is free, not
    /// the head of its queue. Emulated by answering `acquire_queued` with
    /// a plain `acquire`.
    FairIgnoresQueue,
}

impl Bug {
    /// The store's clock under this bug.
    pub(crate) fn clock(self, clock: Arc<dyn Clock>) -> Arc<dyn Clock> {
        match self {
            Bug::NoTokenFloor => Arc::new(EpochWall(clock)),
            _ => clock,
        }
    }

    /// The store's backend under this bug.
    pub(crate) fn around(self, inner: DynBackend) -> DynBackend {
        match self {
            Bug::NoTokenFloor | Bug::NoCleanup => inner,
            Bug::AckIgnoresToken
            | Bug::StealStarted
            | Bug::ExpiryLosesItem
            | Bug::PresenceIgnored => queues::around(inner, self),
            Bug::TopicSkipsMissed | Bug::TopicAckIgnoresToken => topics::around(inner, self),
            Bug::CasIgnoresVersion | Bug::LogSkipsChanges => state::around(inner, self),
            bug => Arc::new(Dispatched::new(Broken { inner, bug })),
        }
    }

    /// A client's connection under this bug.
    pub(crate) fn client(self, inner: DynBackend) -> DynBackend {
        match self {
            Bug::NoCleanup => Arc::new(Dispatched::new(NoCleanup {
                inner,
                unanswered: Mutex::default(),
            })),
            _ => inner,
        }
    }
}

/// The store's backend with one bug.
#[derive(Debug)]
struct Broken {
    inner: DynBackend,
    bug: Bug,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broken({:?}, {})", self.bug, self.inner)
    }
}

/// A watch that never wakes.
struct Never;

#[async_trait]
impl Watch for Never {
    async fn changed(&mut self) -> Result<()> {
        std::future::pending().await
    }
}

fn reply<T: Send + 'static>(v: T) -> Result<Reply> {
    Ok(Box::new(v))
}

#[async_trait]
impl Dispatch for Broken {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, mut call: Call) -> Result<Reply> {
        let b = &self.inner;
        let op = call.op();
        match (self.bug, op.family, op.name) {
            (Bug::ReleaseIgnoresHolder, "locks", "release") => {
                let (id,) = call.args::<(LeaseId,)>().cloned().expect("release's args");
                let locks = b.locks().expect("locks");
                match locks.release(&id).await? {
                    Release::NotHeld => {
                        // Free the key's lease of that kind, whoever holds it.
                        let held = locks.inspect(id.kind.space(), &id.key).await?;
                        match held.into_iter().find(|l| l.kind == id.kind) {
                            Some(l) => {
                                let theirs = LeaseId {
                                    holder: l.holder,
                                    ..id
                                };
                                reply(locks.release(&theirs).await?)
                            }
                            None => reply(Release::NotHeld),
                        }
                    }
                    released => reply(released),
                }
            }
            (Bug::RenewAfterTakeover, "locks", "extend") => {
                let id = call
                    .args::<(LeaseId, Duration)>()
                    .expect("extend's args")
                    .0
                    .clone();
                let space: LockSpace = id.kind.space();
                let key: Key = id.key.clone();
                let held = call.run(b.clone()).await?;
                let held = *held.downcast::<bool>().expect("extend answers a bool");
                let taken = !b
                    .locks()
                    .expect("locks")
                    .inspect(space, &key)
                    .await?
                    .is_empty();
                reply(held || taken)
            }
            (Bug::NoExpiryWake, "locks", "acquire") => {
                match *call
                    .run(b.clone())
                    .await?
                    .downcast::<Acquire>()
                    .expect("an Acquire")
                {
                    Acquire::Busy(mut busy) => {
                        busy.retry_in = None;
                        reply(Acquire::Busy(busy))
                    }
                    granted => reply(granted),
                }
            }
            (Bug::NoExpiryWake, "locks", "subscribe") => reply(Box::new(Never) as Box<dyn Watch>),
            (Bug::RenewAlways, "elections", "renew") => {
                call.run(b.clone()).await?;
                reply(true)
            }
            (Bug::CampaignDeposes, "elections", "campaign") => {
                type Args = (
                    Key,
                    coord_api::HolderId,
                    String,
                    Duration,
                    Option<Quorum>,
                    bool,
                );
                let election = call.args::<Args>().expect("campaign's args").0.clone();
                let elections = b.elections().expect("elections");
                if let Some(l) = elections.leader(&election).await? {
                    elections.resign(&election, &l.holder, l.term).await?;
                }
                call.run(b.clone()).await
            }
            (Bug::BreakAfterTrip, "barriers", "break_generation") => {
                type Args = (BarrierKind, Key, Option<u64>, BreakReason);
                let (asked, reason) = {
                    let args = call.args::<Args>().expect("break_generation's args");
                    (args.2, args.3.clone())
                };
                match *call
                    .run(b.clone())
                    .await?
                    .downcast::<Break>()
                    .expect("a Break")
                {
                    Break::Ended(EndedGeneration {
                        generation,
                        next,
                        ended: Ended::Tripped(trip),
                        ..
                    }) if Some(generation) == asked => reply(Break::Ended(EndedGeneration::new(
                        generation,
                        next,
                        Ended::Broken(BrokenGeneration::new(reason, trip.arrivals, Vec::new(), 0)),
                    ))),
                    other => reply(other),
                }
            }
            (Bug::ArrivalOutlivesTtl, "barriers", "arrive") => {
                type Args = (BarrierKind, Key, Key, u64, u32, Duration, u64);
                // An expect, not an if-let: arguments of another type (a
                // changed signature) would leave the bug silently out.
                let args = call.args_mut::<Args>().expect("arrive's args");
                args.5 *= 3;
                call.run(b.clone()).await
            }
            (Bug::LatchRetryCountsTwice, "barriers", "latch_count_down") => {
                type Args = (Key, Key, Option<u64>, u64);
                let (latch, participant) = {
                    let args = call.args::<Args>().expect("latch_count_down's args");
                    (args.0.clone(), args.1.clone())
                };
                match *call
                    .run(b.clone())
                    .await?
                    .downcast::<CountDown>()
                    .expect("a CountDown")
                {
                    CountDown::Already {
                        generation,
                        remaining,
                    } if remaining > 0 => {
                        let again = Key::new(&format!("{}+", participant.as_str()))?;
                        let barriers = b.barriers().expect("barriers");
                        reply(
                            barriers
                                .latch_count_down(&latch, &again, Some(generation), 0)
                                .await?,
                        )
                    }
                    other => reply(other),
                }
            }
            (Bug::CompleteIgnoresToken, "graphs", "complete") => {
                type Args = (
                    Key,
                    Key,
                    Key,
                    FencingToken,
                    NodeResult,
                    Option<(coord_api::HolderId, Duration)>,
                );
                let (graph, run, node, result, next) = {
                    let a = call.args::<Args>().expect("complete's args");
                    let (g, r, n, res) = (a.0.clone(), a.1.clone(), a.2.clone(), a.4.clone());
                    (g, r, n, res, a.5.clone())
                };
                let answer = *call
                    .run(b.clone())
                    .await?
                    .downcast::<Complete>()
                    .expect("a Complete");
                let Complete::Stale {
                    state: Some(NodeState::Running),
                } = answer
                else {
                    return reply(answer);
                };
                let graphs = b.graphs().expect("graphs");
                let running = (graphs.status(&graph, &run, false).await?)
                    .and_then(|s| s.nodes.into_iter().find(|n| n.name == node))
                    .and_then(|n| n.token);
                match running {
                    Some(token) => reply(
                        graphs
                            .complete(&graph, &run, &node, token, result, next)
                            .await?,
                    ),
                    None => reply(answer),
                }
            }
            (
                Bug::ResolveSkipsCondition | Bug::FanInWaitsForOne | Bug::AttemptsBeyondMax,
                "graphs",
                "submit",
            ) => {
                type Args = (Key, Key, GraphSpec, Duration);
                let args = call.args_mut::<Args>().expect("submit's args");
                args.2 = broken_spec(self.bug, &args.0, &args.2)?;
                call.run(b.clone()).await
            }
            (Bug::EndOnceFinishes, "jobs", "end") => {
                type Args = (Key, Key, coord_api::HolderId, Option<Duration>);
                let args = call.args_mut::<Args>().expect("end's args");
                args.3 = args.3.or(Some(Duration::from_secs(3600)));
                call.run(b.clone()).await
            }
            (Bug::EndOnceFinishes, "jobs", "give_back") => {
                type Args = (Key, Key, coord_api::HolderId);
                let (j, o, h) = call.args::<Args>().expect("give_back's args").clone();
                let finished = Some(Duration::from_secs(3600));
                reply(b.jobs().expect("jobs").end(&j, &o, &h, finished).await?)
            }
            (Bug::FairIgnoresQueue, "locks", "acquire_queued") => {
                type Args = (LeaseId, Duration, Duration, bool);
                let (id, ttl) = {
                    let args = call.args::<Args>().expect("acquire_queued's args");
                    (args.0.clone(), args.1)
                };
                reply(b.locks().expect("locks").acquire(&id, ttl).await?)
            }
            _ => call.run(b.clone()).await,
        }
    }
}

/// The graph `spec` as a broken server keeps it under `bug`.
fn broken_spec(bug: Bug, graph: &Key, spec: &GraphSpec) -> Result<GraphSpec> {
    let nodes = (spec.nodes().iter())
        .map(|n| {
            let after: Vec<Edge> = match bug {
                Bug::ResolveSkipsCondition => {
                    n.after.iter().map(|e| Edge::new(e.from, On::Any)).collect()
                }
                Bug::FanInWaitsForOne => n.after.iter().take(1).copied().collect(),
                _ => n.after.clone(),
            };
            let attempts = match bug {
                Bug::AttemptsBeyondMax => (n.max_attempts + 2).min(MAX_ATTEMPTS),
                _ => n.max_attempts,
            };
            NodeSpec::new(n.name.clone())
                .after(after)
                .max_attempts(attempts)
                .on_failure(n.on_failure)
        })
        .collect();
    GraphSpec::new(graph, nodes)
}

/// A client's connection without the clean-up of unanswered acquisitions:
/// it remembers the holders whose acquire-type call got no answer, and
/// never sends their releases (it answers them "not held" itself, so the
/// client stops retrying at once).
#[derive(Debug)]
struct NoCleanup {
    inner: DynBackend,
    /// Holders whose acquisition is in flight or ended without an answer.
    unanswered: Mutex<HashSet<HolderId>>,
}

impl fmt::Display for NoCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoCleanup({})", self.inner)
    }
}

/// Whether `call` acquires or releases, and for which holder.
enum Role {
    Acquires(HolderId),
    Releases(HolderId),
    Other,
}

fn role(call: &Call) -> Role {
    type Campaign = (Key, HolderId, String, Duration, Option<Quorum>, bool);
    type Resign = (Key, HolderId, FencingToken);
    type Join = (Key, HolderId, String, Duration);
    type Leave = (Key, HolderId);
    type Begin = (Key, Key, HolderId, Duration);
    type End = (Key, Key, HolderId, Option<Duration>);
    type GiveBack = (Key, Key, HolderId);
    fn holder<A: 'static>(call: &Call, of: impl Fn(&A) -> &HolderId) -> HolderId {
        let args = call.args::<A>();
        of(args.unwrap_or_else(|| panic!("{}: unexpected arguments", call.op()))).clone()
    }
    let op = call.op();
    match (op.family, op.name) {
        ("locks", "acquire") => Role::Acquires(holder(call, |a: &(LeaseId, Duration)| &a.0.holder)),
        ("elections", "campaign") => Role::Acquires(holder(call, |a: &Campaign| &a.1)),
        ("groups", "join") => Role::Acquires(holder(call, |a: &Join| &a.1)),
        ("jobs", "begin") => Role::Acquires(holder(call, |a: &Begin| &a.2)),
        ("locks", "release") => Role::Releases(holder(call, |a: &(LeaseId,)| &a.0.holder)),
        ("elections", "resign") => Role::Releases(holder(call, |a: &Resign| &a.1)),
        ("groups", "leave") => Role::Releases(holder(call, |a: &Leave| &a.1)),
        ("jobs", "end") => Role::Releases(holder(call, |a: &End| &a.2)),
        ("jobs", "give_back") => Role::Releases(holder(call, |a: &GiveBack| &a.2)),
        _ => Role::Other,
    }
}

#[async_trait]
impl Dispatch for NoCleanup {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn families(&self) -> Families {
        Families::of(&*self.inner)
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        match role(&call) {
            Role::Acquires(holder) => {
                // Marked until an answer comes back: a call that fails, or
                // is dropped while in flight, leaves its holder marked.
                self.unanswered.lock().unwrap().insert(holder.clone());
                let res = call.run(self.inner.clone()).await;
                if res.is_ok() {
                    self.unanswered.lock().unwrap().remove(&holder);
                }
                res
            }
            Role::Releases(holder) if self.unanswered.lock().unwrap().contains(&holder) => {
                match call.op().family {
                    "locks" => reply(Release::NotHeld),
                    _ => reply(false),
                }
            }
            _ => call.run(self.inner.clone()).await,
        }
    }
}
