//! Memory and Redis answer the same: random sequences of the durable
//! `TopicBackend` calls (publishes of one to three events under a
//! retention by count, by age or both, some refused; two subscriptions,
//! subscribed and sought from the earliest, the latest or an offset;
//! reads by three consumers and an earlier incarnation of one, with read
//! ids, some refused; extend, ack, ack-and-read, nack and dead-letter
//! through a delivery's own token, an older one or one never drawn;
//! heartbeats, leaves, give-backs; dead events paged; unsubscribes;
//! stats) run against a fresh `MemoryStore` and against Redis, on one
//! topic per case, answer by answer. Leases (deliveries, presences) are
//! long (20 to 60 s) or of a millisecond, then over at the next step on
//! both backends; nack delays likewise. Every answer must be the same:
//! offsets as they are (1, 2, 3... on both), tokens by order (each
//! backend's labelled by the read that drew them), instants (published,
//! died) by order, times left in whole seconds.
//!
//! The run waits [`STEP_WAIT`] after every step: a read takes the retry
//! set by due time, then offset, and Redis keeps due times in
//! milliseconds where memory keeps instants, so the wait keeps offsets
//! made due by two steps in two milliseconds (offsets made due in one
//! step tie on both, and go by offset).
//!
//! A sequence that differs is kept as a regular `#[tokio::test]` below
//! the property (replayed by `run` on a backend of its own), once fixed.

use std::time::{Duration, SystemTime};

use coord_api::{
    FencingToken, HolderId, InstanceId, Key, Namespace,
    spi::{
        NewEvent, Read, ReadOptions, Retention, Settle, Start, SubscriptionStats, Tag, TopicBackend,
    },
};
use coord_memory::MemoryStore;
use coord_redis::RedisBackend;
use proptest::prelude::*;

use super::{
    Apply, Nth, PROPERTY, Seen, Ttl, compare, config, error_variant, next_run, redis, secs, ttl,
};

/// Consumers 0..3 are three instances; consumer 3 is consumer 0's
/// instance with another nonce (an earlier incarnation).
const CONSUMERS: usize = 4;
const SUBS: usize = 2;

/// How long the run waits after every step (see the module's description):
/// a lease of [`Ttl::Ms1`] is over by then too.
const STEP_WAIT: Duration = Duration::from_millis(2);

/// A retention: at most this many events (0 is refused), an hour, or both.
#[derive(Debug, Clone, Copy)]
enum Keep {
    Count(u64),
    Hour,
    Both(u64),
}

impl Keep {
    fn get(self) -> Retention {
        let hour = Duration::from_secs(3600);
        match self {
            Keep::Count(n) => Retention::count(n),
            Keep::Hour => Retention::age(hour),
            Keep::Both(n) => Retention::count_and_age(n, hour),
        }
    }
}

fn keep() -> impl Strategy<Value = Keep> {
    prop_oneof![
        4 => (1u64..=6).prop_map(Keep::Count),
        1 => Just(Keep::Count(0)),
        2 => Just(Keep::Hour),
        2 => (2u64..=6).prop_map(Keep::Both),
    ]
}

fn start() -> impl Strategy<Value = Start> {
    prop_oneof![
        2 => Just(Start::Earliest),
        2 => Just(Start::Latest),
        2 => (0u64..=8).prop_map(Start::Offset),
    ]
}

/// How a read delivers: TTL, presence TTL, most events (0 is refused),
/// read id.
type Opts = (Ttl, Ttl, u32, u64);

fn opts() -> impl Strategy<Value = Opts> {
    let max = prop_oneof![8 => 1u32..=3, 1 => Just(0u32)];
    (ttl(), ttl(), max, 0u64..=2)
}

fn read_options((t, p, max, id): Opts) -> ReadOptions {
    ReadOptions::new(t.get(), p.get(), max).read_id(id)
}

/// A delivery as a call names it: the n-th latest this side got on the
/// subscription (wrapping), through its own token, the token of the
/// delivery before it, or one never drawn.
#[derive(Debug, Clone, Copy)]
enum Via {
    Own,
    Older,
    Never,
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![8 => Just(Via::Own), 1 => Just(Via::Older), 1 => Just(Via::Never)]
}

type DelRef = (usize, Via);

fn del_ref() -> impl Strategy<Value = DelRef> {
    (prop_oneof![4 => Just(0usize), 2 => 1usize..4], via())
}

#[derive(Debug, Clone)]
enum Op {
    /// Payload bytes (one event each), kind (a refused one: `None`),
    /// retention.
    Publish(Vec<u8>, Option<u8>, Keep),
    Subscribe(usize, Start),
    Seek(usize, Start),
    Read(usize, usize, Opts),
    Extend(usize, DelRef, Ttl),
    Ack(usize, DelRef),
    AckAndRead(usize, DelRef, usize, Opts),
    Nack(usize, DelRef, Ttl),
    /// A reason over what is kept or not.
    DeadLetter(usize, DelRef, bool),
    Heartbeat(usize, usize, Ttl),
    Leave(usize, usize),
    GiveBack(usize, usize, u64),
    /// After this dead id (by order seen; none: 0), at most this many.
    DeadEvents(usize, Option<usize>, u32),
    Unsubscribe(usize),
    Stats(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let (s, c) = (0..SUBS, 0..CONSUMERS);
    let kind = prop_oneof![8 => (0u8..2).prop_map(Some), 1 => Just(None)];
    prop_oneof![
        5 => (proptest::collection::vec(any::<u8>(), 1..=3), kind, keep())
            .prop_map(|(p, k, r)| Op::Publish(p, k, r)),
        3 => (s.clone(), start()).prop_map(|(s, st)| Op::Subscribe(s, st)),
        3 => (s.clone(), start()).prop_map(|(s, st)| Op::Seek(s, st)),
        8 => (s.clone(), c.clone(), opts()).prop_map(|(s, c, o)| Op::Read(s, c, o)),
        2 => (s.clone(), del_ref(), ttl()).prop_map(|(s, d, t)| Op::Extend(s, d, t)),
        5 => (s.clone(), del_ref()).prop_map(|(s, d)| Op::Ack(s, d)),
        2 => (s.clone(), del_ref(), c.clone(), opts())
            .prop_map(|(s, d, c, o)| Op::AckAndRead(s, d, c, o)),
        3 => (s.clone(), del_ref(), ttl()).prop_map(|(s, d, t)| Op::Nack(s, d, t)),
        2 => (s.clone(), del_ref(), prop_oneof![4 => Just(false), 1 => Just(true)])
            .prop_map(|(s, d, l)| Op::DeadLetter(s, d, l)),
        1 => (s.clone(), c.clone(), ttl()).prop_map(|(s, c, t)| Op::Heartbeat(s, c, t)),
        2 => (s.clone(), c.clone()).prop_map(|(s, c)| Op::Leave(s, c)),
        2 => (s.clone(), c, 0u64..=2).prop_map(|(s, c, id)| Op::GiveBack(s, c, id)),
        2 => (s.clone(), proptest::option::of(0usize..3), prop_oneof![4 => 1u32..=3, 1 => Just(0u32)])
            .prop_map(|(s, a, l)| Op::DeadEvents(s, a, l)),
        1 => s.clone().prop_map(Op::Unsubscribe),
        3 => s.prop_map(Op::Stats),
    ]
}

/// An event delivered: offset, published (labelled), kind, version,
/// payload, token, attempt.
type DeliveredRow = (u64, Nth, String, u32, Vec<u8>, Nth, u32);

/// A read: deliveries, missed ranges, whole seconds to look again.
type ReadRow = (Vec<DeliveredRow>, Vec<(u64, u64)>, Option<u64>);

/// A dead event: id, offset, the event (published, payload) if kept,
/// the reason (length, first characters), died (labelled).
type DeadRow = (Nth, u64, Option<(Nth, Vec<u8>)>, (usize, String), Nth);

/// An answer, as comparable across backends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Published(Vec<u64>),
    Subscribed(bool),
    Sought(Option<u64>),
    Read(Option<ReadRow>),
    Settled(bool),
    AckedAndRead(bool, Option<ReadRow>),
    Unit,
    Count(u32),
    Dead(Vec<DeadRow>),
    Unsubscribed(bool),
    Stats(SubscriptionStats),
    /// The error's variant, or an answer this test does not know.
    Error(String),
}

fn error(e: coord_api::Error) -> Answer {
    Answer::Error(error_variant(&e))
}

fn settled(s: coord_api::Result<Settle>) -> Answer {
    match s {
        Ok(Settle::Done) => Answer::Settled(true),
        Ok(Settle::Stale) => Answer::Settled(false),
        Ok(other) => Answer::Error(format!("unknown answer {other:?}")),
        Err(e) => error(e),
    }
}

/// One case's names.
struct Names {
    topic: Key,
    subs: Vec<Key>,
    consumers: Vec<HolderId>,
}

/// One backend under test, with what it answered so far.
struct Side<'a> {
    backend: &'a dyn TopicBackend,
    names: &'a Names,
    tokens: Seen<u64>,
    instants: Seen<SystemTime>,
    dead_ids: Seen<u64>,
    /// Per subscription, the deliveries it got: (offset, token).
    deliveries: Vec<Vec<(u64, u64)>>,
}

impl Side<'_> {
    /// The offset and token `r` names on subscription `s`.
    fn delivery(&self, s: usize, (n, via): DelRef) -> (u64, FencingToken) {
        let got = &self.deliveries[s];
        if got.is_empty() {
            return (1, FencingToken(1));
        }
        let i = got.len() - 1 - n % got.len();
        let (offset, own) = got[i];
        let token = match via {
            Via::Own => own,
            Via::Older if i > 0 => got[i - 1].1,
            _ => 1,
        };
        (offset, FencingToken(token))
    }

    fn read(&mut self, s: usize, r: Option<Read>) -> Option<ReadRow> {
        let r = r?;
        let mut rows = Vec::new();
        for d in r.events {
            self.deliveries[s].push((d.event.offset, d.token.get()));
            rows.push((
                d.event.offset,
                self.instants.label(d.event.at),
                d.event.tag.kind.clone(),
                d.event.tag.version,
                d.event.payload.clone(),
                self.tokens.label(d.token.get()),
                d.attempt,
            ));
        }
        let missed = r.missed.iter().map(|m| (m.first, m.last)).collect();
        Some((rows, missed, r.next_in.map(secs)))
    }
}

impl Apply for Side<'_> {
    type Op = Op;
    type Answer = Answer;

    fn wait_after(_: &Op) -> Option<Duration> {
        Some(STEP_WAIT)
    }

    fn wrong(answer: &Answer) -> Option<String> {
        handed_out_twice(answer).map(|o| format!("offset {o} handed out twice"))
    }

    async fn apply(&mut self, op: &Op) -> Answer {
        let b = self.backend;
        let n = self.names;
        let t = &n.topic;
        match op {
            Op::Publish(payloads, kind, keep) => {
                let kind = kind.map_or_else(|| "bad|kind".to_owned(), |k| format!("Kind{k}"));
                let events = payloads
                    .iter()
                    .map(|p| NewEvent::new(Tag::new(kind.clone(), 1), vec![*p]))
                    .collect();
                b.publish(t, events, keep.get())
                    .await
                    .map_or_else(error, Answer::Published)
            }
            Op::Subscribe(s, start) => b
                .subscribe(t, &n.subs[*s], *start)
                .await
                .map_or_else(error, Answer::Subscribed),
            Op::Seek(s, start) => b
                .seek(t, &n.subs[*s], *start)
                .await
                .map_or_else(error, Answer::Sought),
            Op::Read(s, c, o) => {
                match b
                    .read(t, &n.subs[*s], &n.consumers[*c], read_options(*o))
                    .await
                {
                    Ok(r) => Answer::Read(self.read(*s, r)),
                    Err(e) => error(e),
                }
            }
            Op::Extend(s, d, ttl) => {
                let (offset, token) = self.delivery(*s, *d);
                settled(b.extend(t, &n.subs[*s], offset, token, ttl.get()).await)
            }
            Op::Ack(s, d) => {
                let (offset, token) = self.delivery(*s, *d);
                settled(b.ack(t, &n.subs[*s], offset, token).await)
            }
            Op::AckAndRead(s, d, c, o) => {
                let (offset, token) = self.delivery(*s, *d);
                let consumer = &n.consumers[*c];
                match b
                    .ack_and_read(t, &n.subs[*s], offset, token, consumer, read_options(*o))
                    .await
                {
                    Ok((settle, r)) => {
                        let done = match settle {
                            Settle::Done => true,
                            Settle::Stale => false,
                            other => return Answer::Error(format!("unknown answer {other:?}")),
                        };
                        Answer::AckedAndRead(done, self.read(*s, r))
                    }
                    Err(e) => error(e),
                }
            }
            Op::Nack(s, d, delay) => {
                let (offset, token) = self.delivery(*s, *d);
                settled(b.nack(t, &n.subs[*s], offset, token, delay.get()).await)
            }
            Op::DeadLetter(s, d, long) => {
                let (offset, token) = self.delivery(*s, *d);
                let reason = if *long {
                    "ü".repeat(600)
                } else {
                    "unreadable".into()
                };
                settled(b.dead_letter(t, &n.subs[*s], offset, token, &reason).await)
            }
            Op::Heartbeat(s, c, ttl) => {
                match b
                    .heartbeat(t, &n.subs[*s], &n.consumers[*c], ttl.get())
                    .await
                {
                    Ok(()) => Answer::Unit,
                    Err(e) => error(e),
                }
            }
            Op::Leave(s, c) => b
                .leave(t, &n.subs[*s], &n.consumers[*c])
                .await
                .map_or_else(error, Answer::Count),
            Op::GiveBack(s, c, id) => (b.give_back(t, &n.subs[*s], &n.consumers[*c], *id).await)
                .map_or_else(error, Answer::Count),
            Op::DeadEvents(s, after, limit) => {
                let ids = &self.dead_ids.0;
                let after = match after {
                    Some(i) if !ids.is_empty() => ids[i % ids.len()],
                    _ => 0,
                };
                match b.dead_events(t, &n.subs[*s], after, *limit).await {
                    Ok(dead) => Answer::Dead(
                        dead.into_iter()
                            .map(|d| {
                                (
                                    self.dead_ids.label(d.id),
                                    d.offset,
                                    d.event.map(|e| (self.instants.label(e.at), e.payload)),
                                    (d.reason.len(), d.reason.chars().take(8).collect()),
                                    self.instants.label(d.died_at),
                                )
                            })
                            .collect(),
                    ),
                    Err(e) => error(e),
                }
            }
            Op::Unsubscribe(s) => b
                .unsubscribe(t, &n.subs[*s])
                .await
                .map_or_else(error, Answer::Unsubscribed),
            Op::Stats(s) => b
                .stats(t, &n.subs[*s])
                .await
                .map_or_else(error, Answer::Stats),
        }
    }
}

/// Names for this run that no other run (of this process) uses: every
/// case starts on a fresh topic of the one Redis server.
fn fresh_names() -> Names {
    let run = next_run();
    let id = |i: usize| InstanceId::new(&format!("c{i}")).unwrap();
    let mut consumers: Vec<HolderId> = (0..3)
        .map(|i| HolderId::from_parts(id(i), i as u128 + 1))
        .collect();
    consumers.push(HolderId::from_parts(id(0), 99));
    assert_eq!(consumers.len(), CONSUMERS);
    Names {
        topic: Key::new(&format!("parity/{run}/topic")).unwrap(),
        subs: (0..SUBS)
            .map(|i| Key::new(&format!("s{i}")).unwrap())
            .collect(),
        consumers,
    }
}

/// An offset one read delivered twice (both backends may agree on it, and
/// be wrong).
fn handed_out_twice(answer: &Answer) -> Option<u64> {
    let (Answer::Read(Some((rows, _, _))) | Answer::AckedAndRead(_, Some((rows, _, _)))) = answer
    else {
        return None;
    };
    let mut seen = std::collections::HashSet::new();
    rows.iter().map(|r| r.0).find(|o| !seen.insert(*o))
}

/// Runs `ops` against a fresh memory store and against `redis`, on a
/// fresh topic; the first step whose answers differ fails, naming both.
async fn run(redis: &RedisBackend, ops: &[Op]) -> Result<(), String> {
    let memory = MemoryStore::new().backend(Namespace::default());
    let names = fresh_names();
    let side = |backend| Side {
        backend,
        names: &names,
        tokens: Seen(Vec::new()),
        instants: Seen(Vec::new()),
        dead_ids: Seen(Vec::new()),
        deliveries: vec![Vec::new(); SUBS],
    };
    let (mut m, mut r) = (side(&memory as &dyn TopicBackend), side(redis));
    compare(&mut m, &mut r, ops).await
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn topics_answer_the_same(ops in proptest::collection::vec(op(), 1..=40)) {
        let (rt, redis) = &*PROPERTY;
        rt.block_on(run(redis, &ops)).map_err(TestCaseError::fail)?;
    }
}

// The sequences that differed, each kept as found (shrunk) and grown to
// show the whole of what was wrong.

/// [`run`] on a backend of its own (a regression test's runtime), failing
/// with the step that differed.
async fn replay(ops: &[Op]) {
    if let Err(diff) = run(&redis().await, ops).await {
        panic!("{diff}");
    }
}

/// A read with nothing to deliver says when to look again only if
/// something is pending: a retry, a delivery's deadline, or the end of the
/// presence of a consumer holding deliveries (whose deliveries then go
/// back). The reader's own presence, just renewed, and the presence of a
/// consumer holding nothing end with nothing to look at. Redis answered
/// the earliest presence of any consumer: the reader was told to look
/// again at its own presence's end where memory said nothing is pending.
#[tokio::test]
async fn an_idle_read_is_told_only_of_presences_holding_deliveries() {
    let ops = [
        Op::Subscribe(1, Start::Earliest),
        // Nothing published: nothing pending, whoever is present.
        Op::Read(1, 0, (Ttl::S20, Ttl::S20, 1, 0)),
        Op::Publish(vec![7], Some(0), Keep::Hour),
        // Consumer 1 holds the event for 60 s, present for 40 s.
        Op::Read(1, 1, (Ttl::S60, Ttl::S40, 1, 0)),
        // Consumer 0 (present for 20 s, holding nothing) is told of
        // consumer 1's presence, not of its own.
        Op::Read(1, 0, (Ttl::S20, Ttl::S20, 1, 0)),
        Op::Ack(1, (0, Via::Own)),
        Op::Read(1, 0, (Ttl::S20, Ttl::S20, 1, 0)),
    ];
    replay(&ops).await;
}

/// A read reaches the events after the subscription's cursor only with
/// room left in its batch once the due retries are in it; so do the
/// offsets trimmed there, which the read that reaches them reports. Memory
/// reported (and passed) the trimmed run before the oldest event kept in
/// a read that the retries had filled, Redis in the next read with room.
#[tokio::test]
async fn a_read_full_of_retries_reports_no_trimmed_run_after_its_cursor() {
    let ops = [
        // Offset 1 trimmed at once; 2 and 3 kept.
        Op::Publish(vec![0, 0], Some(0), Keep::Count(1)),
        Op::Publish(vec![0], Some(0), Keep::Hour),
        Op::Subscribe(0, Start::Offset(0)),
        // 2 and 3 delivered (1 reported missed), their leases over by the
        // next step.
        Op::Read(0, 0, (Ttl::Ms1, Ttl::S20, 2, 0)),
        // Back before 1, which is gone again.
        Op::Seek(0, Start::Offset(1)),
        // The retries of 2 and 3 fill a batch of one, then of two.
        Op::Read(0, 0, (Ttl::S20, Ttl::S20, 1, 0)),
        Op::Stats(0),
        Op::Read(0, 1, (Ttl::S20, Ttl::S20, 1, 0)),
        Op::Stats(0),
        // Room: the cursor reaches 1, reported missed, and passes 2 and 3
        // (under delivery).
        Op::Read(0, 2, (Ttl::S20, Ttl::S20, 3, 0)),
        Op::Stats(0),
    ];
    replay(&ops).await;
}
