//! The SPI's rules (`coord_api::spi::queues`, rules 1–8) as a model
//! replayed over the backend's log, event by event, at the server clock's
//! readings the log carries: every step first sweeps (due delayed items
//! ready; deliveries past their deadline, and every delivery of a consumer
//! whose presence ended, returned, in the order of those instants), then
//! does what the call asks. Each answer the log holds is compared with
//! what the rules make of the model's state, and the model follows the
//! backend's answer where they differ (so one bug is reported where it
//! happens, not at every step after it). A restart (the store emptied)
//! starts every queue afresh; tokens keep their order across it.
//!
//! Checkers: `queue-receive` (order, started flag, stealing only with
//! nothing ready), `queue-lost` / `queue-reclaim` (a ready item left out of
//! a receive with room: after an expiry or a nack; after its consumer's
//! presence ended), `queue-duplicate` (delivered while its delivery was
//! valid, or after its ack), `queue-early` (before its delay), `queue-dead`
//! (delivered after it died; requeue/remove answers), `queue-steal-started`
//! (a started delivery taken), `queue-settle` (an extend, ack, nack or dead
//! letter answered otherwise than the current, unexpired token allows),
//! `queue-attempts`, `queue-tokens`, `queue-push` (ids, dedup), `queue-leave`,
//! `queue-give-back` (a receive's give-back returned other than the
//! current deliveries of that receive to that consumer).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use coord_api::{
    Instant,
    spi::{Nack, Pushed},
};

use super::{PushedItem, QueueCounts, QueueEvent, QueueOp};
use crate::history::Violation;

mod receive;

/// An item: its queue, the server's incarnation (restarts before it) and
/// its id.
pub(super) type ItemKey = (String, u32, u64);

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Acked,
    Nacked,
    DeadLettered,
    /// Its deadline passed.
    Expired,
    /// Its consumer's presence ended.
    Gone,
    /// Its consumer left.
    Left,
    /// Another consumer stole it (prefetched).
    Stolen,
    /// Given back by its receive's clean-up: the consumer never saw it
    /// (so a handler that ran it is no duplicate at-least-once allows).
    GivenBack,
    /// The server restarted.
    Restart,
    /// The item was delivered again while it was valid (a violation).
    Unexplained,
}

impl End {
    /// Whether the lease ended without its consumer settling it: a later
    /// handler start of the item is a duplicate at-least-once allows.
    pub(super) fn lease_ended(self) -> bool {
        matches!(self, End::Expired | End::Gone | End::Left | End::Restart)
    }
}

/// One delivery.
#[derive(Debug, Clone)]
pub(super) struct Dlv {
    pub(super) token: u64,
    pub(super) consumer: String,
    pub(super) attempt: u32,
    /// The id of the receive that made it (0: none).
    pub(super) receive_id: u64,
    /// When it was made (global).
    pub(super) made: Instant,
    /// When it was started (global), by its receive or an extend.
    pub(super) started: Option<Instant>,
    /// Its deadline (server clock).
    pub(super) deadline: Instant,
    /// How and when (server clock) it ended.
    pub(super) end: Option<(End, Instant)>,
}

/// Where an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Ready,
    Delayed(Instant),
    InFlight,
    Dead,
    Acked,
    Removed,
    /// Forgotten by a restart.
    Lost,
}

/// What the log says of one item.
#[derive(Debug, Clone)]
pub(super) struct Track {
    pub(super) name: String,
    pub(super) priority: u8,
    pub(super) max_attempts: u32,
    /// When its push was answered (global).
    pub(super) pushed: Instant,
    pub(super) attempts: u32,
    pub(super) place: Place,
    pub(super) deliveries: Vec<Dlv>,
    /// Accepted acks: token, when (global).
    pub(super) acks: Vec<(u64, Instant)>,
    pub(super) deaths: u32,
    pub(super) requeues: u32,
    /// How and when (server clock) it last went back to ready.
    returned: Option<(End, Instant)>,
}

impl Track {
    fn current(&mut self) -> Option<&mut Dlv> {
        match self.place {
            Place::InFlight => self.deliveries.last_mut(),
            _ => None,
        }
    }

    fn current_ref(&self) -> Option<&Dlv> {
        match self.place {
            Place::InFlight => self.deliveries.last(),
            _ => None,
        }
    }

    /// The delivery of `token`.
    pub(super) fn delivery(&self, token: u64) -> Option<&Dlv> {
        self.deliveries.iter().find(|d| d.token == token)
    }
}

/// One queue in the current incarnation of the server.
#[derive(Default)]
struct QState {
    last_id: u64,
    /// Consumer → presence deadline (server clock).
    consumers: HashMap<String, Instant>,
    /// Dedup key → (first id, end of its window).
    dedup: HashMap<String, (u64, Instant)>,
    /// Ids of this incarnation.
    ids: BTreeSet<u64>,
}

/// The model after the whole log.
#[derive(Default)]
pub(super) struct Replay {
    pub(super) items: BTreeMap<ItemKey, Track>,
    /// (queue, token) → the item it was delivered for.
    pub(super) tokens: HashMap<(String, u64), ItemKey>,
    /// Restarts seen.
    pub(super) epoch: u32,
    pub(super) counts: QueueCounts,
    pub(super) out: Vec<Violation>,
    queues: HashMap<String, QState>,
    last_token: HashMap<String, u64>,
    /// Items reported left out of a receive, until delivered again (one
    /// report each).
    skipped: BTreeSet<ItemKey>,
    /// For messages: the first event's instants (global, server).
    origin: Option<(Instant, Instant)>,
}

/// `a` after `b`, or zero.
fn since(a: Instant, b: Instant) -> Duration {
    a.saturating_duration_since(b)
}

impl Replay {
    /// Replays `events`, then sweeps every queue at `server_now`.
    pub(super) fn run(events: &[QueueEvent], server_now: Instant) -> Replay {
        let mut r = Replay {
            origin: events.first().map(|e| (e.at, e.now)),
            ..Replay::default()
        };
        for e in events {
            if e.op == QueueOp::Restart {
                r.restart(e.now);
                continue;
            }
            r.sweep(&e.queue, e.now);
            r.apply(e);
        }
        let queues: Vec<String> = r.queues.keys().cloned().collect();
        for q in queues {
            r.sweep(&q, server_now);
        }
        r
    }

    fn v(&mut self, checker: &'static str, detail: String) {
        self.out.push(Violation::new(checker, detail));
    }

    /// A global instant, for messages.
    fn g(&self, at: Instant) -> String {
        let o = self.origin.map_or(at, |o| o.0);
        format!("{:.3}s", since(at, o).as_secs_f64())
    }

    /// A server instant, for messages.
    fn s(&self, now: Instant) -> String {
        let o = self.origin.map_or(now, |o| o.1);
        format!("server {:.3}s", since(now, o).as_secs_f64())
    }

    fn key(&self, q: &str, id: u64) -> ItemKey {
        (q.to_owned(), self.epoch, id)
    }

    fn state(&mut self, q: &str) -> &mut QState {
        self.queues.entry(q.to_owned()).or_default()
    }

    fn restart(&mut self, now: Instant) {
        self.epoch += 1;
        self.queues.clear();
        for t in self.items.values_mut() {
            if matches!(t.place, Place::Ready | Place::Delayed(_) | Place::InFlight) {
                if let Some(d) = t.current() {
                    d.end = Some((End::Restart, now));
                }
                t.place = Place::Lost;
            }
        }
    }

    /// Rule 1 at `now`.
    fn sweep(&mut self, q: &str, now: Instant) {
        let ids: Vec<u64> = self.state(q).ids.iter().copied().collect();
        enum Due {
            Expire(u64),
            Gone(String),
        }
        let mut due: Vec<(Instant, u8, Due)> = Vec::new();
        for &id in &ids {
            let key = self.key(q, id);
            let t = self.items.get_mut(&key).expect("tracked");
            match t.place {
                Place::Delayed(at) if at <= now => t.place = Place::Ready,
                Place::InFlight => {
                    let d = t.deliveries.last().expect("in flight");
                    if d.deadline <= now {
                        due.push((d.deadline, 0, Due::Expire(id)));
                    }
                }
                _ => {}
            }
        }
        let st = self.state(q);
        st.dedup.retain(|_, (_, end)| *end > now);
        for (c, &at) in &st.consumers {
            if at <= now {
                due.push((at, 1, Due::Gone(c.clone())));
            }
        }
        due.sort_by_key(|d| (d.0, d.1));
        for (at, _, what) in due {
            match what {
                Due::Expire(id) => {
                    let key = self.key(q, id);
                    let t = self.items.get_mut(&key).expect("tracked");
                    if t.current().is_some_and(|d| d.deadline == at) {
                        self.give_back(&key, End::Expired, Duration::ZERO, at);
                    }
                }
                Due::Gone(c) => {
                    self.state(q).consumers.remove(&c);
                    for id in self.held_by(q, &c) {
                        let key = self.key(q, id);
                        self.give_back(&key, End::Gone, Duration::ZERO, at);
                    }
                }
            }
        }
    }

    /// The items of `q` in flight to `consumer`.
    fn held_by(&mut self, q: &str, consumer: &str) -> Vec<u64> {
        let ids: Vec<u64> = self.state(q).ids.iter().copied().collect();
        let epoch = self.epoch;
        ids.into_iter()
            .filter(|&id| {
                (self.items.get(&(q.to_owned(), epoch, id)))
                    .and_then(Track::current_ref)
                    .is_some_and(|d| d.consumer == consumer)
            })
            .collect()
    }

    /// Rule 6: the item's delivery ends (`why`, at `at` on the server's
    /// clock) and the item is returned.
    fn give_back(&mut self, key: &ItemKey, why: End, retry: Duration, at: Instant) {
        let t = self.items.get_mut(key).expect("tracked");
        let Some(d) = t.current() else { return };
        d.end = Some((why, at));
        let started = d.started.is_some();
        let early = at < d.deadline;
        match why {
            End::Expired => self.counts.expired += 1,
            End::Gone => {
                self.counts.reclaimed += 1;
                self.counts.reclaimed_early += u64::from(early);
            }
            End::Nacked => self.counts.nacked += 1,
            _ => {}
        }
        if started && t.attempts >= t.max_attempts {
            t.place = Place::Dead;
            t.deaths += 1;
            self.counts.dead += 1;
        } else if started && !retry.is_zero() {
            t.place = Place::Delayed(at + retry);
        } else {
            t.place = Place::Ready;
        }
        t.returned = Some((why, at));
    }

    /// Rule 7's give-back: the current deliveries of receive `receive_id`
    /// to `consumer` are ready again as if never made (a started one's
    /// attempt taken back).
    fn give_back_receive(
        &mut self,
        q: &str,
        consumer: &str,
        receive_id: u64,
        returned: u32,
        e: &QueueEvent,
    ) {
        let mut given = Vec::new();
        for id in self.held_by(q, consumer) {
            let key = self.key(q, id);
            let t = self.items.get_mut(&key).expect("held");
            let d = t.deliveries.last_mut().expect("held");
            if receive_id == 0 || d.receive_id != receive_id {
                continue;
            }
            d.end = Some((End::GivenBack, e.now));
            if d.started.is_some() {
                t.attempts = t.attempts.saturating_sub(1);
            }
            t.place = Place::Ready;
            t.returned = Some((End::GivenBack, e.now));
            given.push(id);
        }
        self.counts.given_back += given.len() as u64;
        if given.len() as u32 != returned {
            self.v(
                "queue-give-back",
                format!(
                    "{q}: {consumer}'s give-back of receive {receive_id:#x} at {} returned {returned} deliveries; it held {given:?} of that receive",
                    self.g(e.at)
                ),
            );
        }
    }

    fn apply(&mut self, e: &QueueEvent) {
        let q = e.queue.as_str();
        match &e.op {
            QueueOp::Push(items) => {
                for item in items {
                    self.push(q, item, e);
                }
            }
            QueueOp::Receive {
                consumer,
                max,
                steal,
                ttl,
                presence_ttl,
                receive_id,
                deliveries,
                next_in,
            } => {
                let until = e.now + *presence_ttl;
                self.state(q).consumers.insert(consumer.clone(), until);
                if deliveries.is_empty() {
                    let expected = self.next_in(q, e.now);
                    if expected != *next_in {
                        self.v(
                            "queue-next-in",
                            format!(
                                "{q}: {consumer}'s empty receive at {} answered next_in {next_in:?}; the next delayed item, deadline or presence of a consumer holding deliveries is in {expected:?}",
                                self.g(e.at)
                            ),
                        );
                    }
                }
                self.receive(q, consumer, (*max, *steal), deliveries, e);
                for (i, d) in deliveries.iter().enumerate() {
                    self.deliver(q, consumer, i, d, (*ttl, *receive_id), e);
                }
            }
            QueueOp::Extend {
                id,
                token,
                ttl,
                done,
            } => {
                let holds = self.settle(q, "extend", *id, *token, *done, e);
                if *done && holds {
                    let key = self.key(q, *id);
                    let t = self.items.get_mut(&key).expect("held");
                    let d = t.deliveries.last_mut().expect("held");
                    d.deadline = e.now + *ttl;
                    if d.started.is_none() {
                        d.started = Some(e.at);
                        t.attempts += 1;
                        if t.attempts > t.max_attempts {
                            let (n, m) = (t.attempts, t.max_attempts);
                            self.v(
                                "queue-attempts",
                                format!(
                                    "{q}#{id}: attempt {n} started by an extend; it is given {m}"
                                ),
                            );
                        }
                    }
                }
            }
            QueueOp::Ack { id, token, done } => {
                let holds = self.settle(q, "ack", *id, *token, *done, e);
                let key = self.key(q, *id);
                if *done && let Some(t) = self.items.get_mut(&key) {
                    t.acks.push((*token, e.at));
                    self.counts.acked += 1;
                    if holds {
                        t.deliveries.last_mut().expect("held").end = Some((End::Acked, e.now));
                        t.place = Place::Acked;
                    }
                }
            }
            QueueOp::Nack {
                id,
                token,
                retry_in,
                reply,
            } => self.nack(q, *id, *token, *retry_in, *reply, e),
            QueueOp::DeadLetter { id, token, done } => {
                let holds = self.settle(q, "dead_letter", *id, *token, *done, e);
                if *done && holds {
                    let key = self.key(q, *id);
                    let t = self.items.get_mut(&key).expect("held");
                    t.deliveries.last_mut().expect("held").end = Some((End::DeadLettered, e.now));
                    t.place = Place::Dead;
                    t.deaths += 1;
                    self.counts.dead += 1;
                }
            }
            QueueOp::Heartbeat { consumer, ttl } => {
                let until = e.now + *ttl;
                self.state(q).consumers.insert(consumer.clone(), until);
            }
            QueueOp::Leave { consumer, returned } => {
                let known = self.state(q).consumers.remove(consumer).is_some();
                let held = if known {
                    self.held_by(q, consumer)
                } else {
                    Vec::new()
                };
                for &id in &held {
                    let key = self.key(q, id);
                    self.give_back(&key, End::Left, Duration::ZERO, e.now);
                }
                if held.len() as u32 != *returned {
                    self.v(
                        "queue-leave",
                        format!(
                            "{q}: {consumer} left at {} and {returned} deliveries were returned; it held {held:?}",
                            self.g(e.at)
                        ),
                    );
                }
            }
            QueueOp::GiveBack {
                consumer,
                receive_id,
                returned,
            } => self.give_back_receive(q, consumer, *receive_id, *returned, e),
            QueueOp::RequeueDead { id, done } | QueueOp::RemoveDead { id, done } => {
                let key = self.key(q, *id);
                let dead = self.items.get(&key).is_some_and(|t| t.place == Place::Dead);
                if dead != *done {
                    self.v(
                        "queue-dead",
                        format!("{q}#{id}: {:?} answered {done}; dead: {dead}", e.op),
                    );
                }
                if let (true, Some(t)) = (*done && dead, self.items.get_mut(&key)) {
                    if matches!(e.op, QueueOp::RequeueDead { .. }) {
                        t.place = Place::Ready;
                        t.attempts = 0;
                        t.requeues += 1;
                        t.returned = None;
                    } else {
                        t.place = Place::Removed;
                    }
                }
            }
            QueueOp::Restart => {}
        }
    }

    /// Rule 2 for one item.
    fn push(&mut self, q: &str, item: &PushedItem, e: &QueueEvent) {
        let live = item
            .dedup
            .as_ref()
            .and_then(|(k, _)| self.state(q).dedup.get(k).map(|&(id, _)| (k.clone(), id)));
        match item.reply {
            Pushed::Pushed(id) => {
                let st = self.state(q);
                let last = st.last_id;
                st.last_id = st.last_id.max(id);
                st.ids.insert(id);
                if let Some((k, window)) = &item.dedup {
                    st.dedup.insert(k.clone(), (id, e.now + *window));
                }
                if id != last + 1 {
                    self.v(
                        "queue-push",
                        format!("{q}: item {:?} pushed as #{id} after #{last}", item.name),
                    );
                }
                if let Some((k, first)) = live {
                    self.v(
                        "queue-push",
                        format!(
                            "{q}#{id}: pushed at {} although its dedup id {k:?} was pushed as #{first} within its window",
                            self.g(e.at)
                        ),
                    );
                }
                let place = match item.delay.filter(|d| !d.is_zero()) {
                    Some(d) => Place::Delayed(e.now + d),
                    None => Place::Ready,
                };
                let key = self.key(q, id);
                let track = Track {
                    name: item.name.clone(),
                    priority: item.priority,
                    max_attempts: item.max_attempts,
                    pushed: e.at,
                    attempts: 0,
                    place,
                    deliveries: Vec::new(),
                    acks: Vec::new(),
                    deaths: 0,
                    requeues: 0,
                    returned: None,
                };
                if self.items.insert(key, track).is_some() {
                    self.v("queue-push", format!("{q}#{id}: pushed twice"));
                }
            }
            Pushed::Duplicate(first) => {
                if live.as_ref().map(|l| l.1) != Some(first) {
                    self.v(
                        "queue-push",
                        format!(
                            "{q}: item {:?} (dedup {:?}) answered as a duplicate of #{first} at {}; the live window names {:?}",
                            item.name,
                            item.dedup.as_ref().map(|d| &d.0),
                            self.g(e.at),
                            live.map(|l| l.1)
                        ),
                    );
                }
            }
            other => self.v(
                "queue-push",
                format!("{q}: an unknown push reply {other:?}"),
            ),
        }
    }

    /// Whether `token` is item `id`'s current, unexpired delivery (the
    /// sweep already returned expired ones); reports an answer that says
    /// otherwise (`done`: the call was answered as done).
    fn settle(
        &mut self,
        q: &str,
        op: &str,
        id: u64,
        token: u64,
        done: bool,
        e: &QueueEvent,
    ) -> bool {
        let key = self.key(q, id);
        let cur = (self.items.get_mut(&key))
            .and_then(|t| t.current())
            .map(|d| (d.token, d.consumer.clone(), d.deadline));
        let holds = cur.as_ref().is_some_and(|c| c.0 == token && c.2 > e.now);
        if !done {
            self.counts.stale += 1;
        }
        if holds != done {
            let place = self.items.get(&key).map(|t| t.place);
            let what = match cur {
                Some((t, c, dl)) => {
                    format!("the current delivery is {t} to {c}, until {}", self.s(dl))
                }
                None => format!("the item is {place:?}"),
            };
            let answer = if done { "accepted" } else { "refused" };
            self.v(
                "queue-settle",
                format!(
                    "{q}#{id}: {op} of token {token} {answer} at {} ({}); {what}",
                    self.g(e.at),
                    self.s(e.now)
                ),
            );
        }
        holds
    }

    /// Rules 5 and 6's nack.
    fn nack(&mut self, q: &str, id: u64, token: u64, retry: Duration, reply: Nack, e: &QueueEvent) {
        let done = reply != Nack::Stale;
        let holds = self.settle(q, "nack", id, token, done, e);
        if !(holds && done) {
            return;
        }
        let key = self.key(q, id);
        let t = self.items.get_mut(&key).expect("held");
        let started = t.deliveries.last().is_some_and(|d| d.started.is_some());
        let dies = started && t.attempts >= t.max_attempts;
        let expected = if dies {
            Nack::DeadLettered
        } else {
            Nack::Requeued
        };
        if reply != expected {
            let (n, m) = (t.attempts, t.max_attempts);
            self.v(
                "queue-attempts",
                format!(
                    "{q}#{id}: nack of token {token} after {n} of {m} attempts answered {reply:?}"
                ),
            );
        }
        let why = if reply == Nack::DeadLettered {
            End::DeadLettered
        } else {
            End::Nacked
        };
        if reply == Nack::DeadLettered && !dies {
            // Follow the backend: it says the item died.
            let t = self.items.get_mut(&key).expect("held");
            t.deliveries.last_mut().expect("held").end = Some((why, e.now));
            t.place = Place::Dead;
            t.deaths += 1;
            self.counts.dead += 1;
            return;
        }
        if reply == Nack::Requeued && dies {
            let t = self.items.get_mut(&key).expect("held");
            t.deliveries.last_mut().expect("held").end = Some((why, e.now));
            t.place = Place::Ready;
            self.counts.nacked += 1;
            return;
        }
        self.give_back(&key, why, retry, e.now);
    }
}
