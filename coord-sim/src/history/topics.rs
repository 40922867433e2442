//! Topics: the server's log of durable topic calls (what it answered, on
//! its clock), what publishers saw acknowledged and what subscribers were
//! handed, and the checker of the contract's promises:
//!
//! - `topic-lost`: every event whose publish returned `Ok` (after the last
//!   server restart, which loses the store) is, for every subscription,
//!   acked, dead-lettered, or reported missed by the server (retention
//!   trimmed it first), by the end of the drain: never skipped silently
//!   (publishes sent after the subscription was made, in the last
//!   incarnation);
//! - `topic-fencing`: an ack, nack, dead-letter or extend the server
//!   answered `Done` carried the token of the offset's latest delivery to
//!   that subscription, not settled yet, before its deadline (extends
//!   move it);
//! - `topic-tokens`: tokens handed out increase strictly, across restarts;
//! - `topic-values`: a subscriber was handed, at an offset, the value
//!   acknowledged to its publisher at that offset;
//! - `topic-dead`: every event a subscriber reported refused (after the last
//!   restart) is among its subscription's dead events at the end;
//! - `topic-give-back`: a give-back (sent after a read whose answer never
//!   came, decision 0044) returned at most the deliveries of that read to
//!   that consumer still current, unsettled and unexpired; it ends them (a
//!   settlement of one accepted afterwards is a `topic-fencing`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use coord_api::Instant;

use super::Violation;

/// One durable topic call the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOp {
    /// A publish: the offsets given.
    Publish(Vec<u64>),
    /// A subscribe that made the subscription (at its start: every event
    /// published after this instant is the subscription's).
    Subscribed,
    /// A read: deliveries (offset, token), the missed ranges, the lease.
    Read {
        /// The consumer it delivered to.
        consumer: String,
        /// The read's id (0: none), which a give-back names.
        read_id: u64,
        /// Offset and token of each delivery.
        delivered: Vec<(u64, u64)>,
        /// Missed ranges (inclusive).
        missed: Vec<(u64, u64)>,
        /// The deliveries' TTL.
        ttl: Duration,
    },
    /// A settlement or an extend (`op`: `ack`, `nack`, `dead_letter`,
    /// `extend`), and whether it was `Done`.
    Settle {
        /// Which.
        op: &'static str,
        /// The offset.
        offset: u64,
        /// The token given.
        token: u64,
        /// An extend's TTL.
        ttl: Duration,
        /// Answered `Done`.
        done: bool,
    },
    /// `give_back`: how many deliveries of the read it returned.
    GiveBack {
        /// The consumer.
        consumer: String,
        /// The read named.
        read_id: u64,
        /// The answer.
        returned: u32,
    },
}

/// One logged call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEvent {
    /// The subscription (empty for a publish).
    pub sub: String,
    /// When (global).
    pub at: Instant,
    /// The server clock's reading.
    pub now: Instant,
    /// What.
    pub op: TopicOp,
}

/// The server's topic calls, in its order. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct TopicLog {
    inner: Arc<Mutex<Vec<TopicEvent>>>,
}

impl TopicLog {
    /// An empty log.
    pub fn new() -> TopicLog {
        TopicLog::default()
    }

    /// Appends an event.
    pub fn push(&self, e: TopicEvent) {
        self.inner.lock().unwrap().push(e);
    }

    /// The events so far.
    pub fn events(&self) -> Vec<TopicEvent> {
        self.inner.lock().unwrap().clone()
    }
}

/// What the clients saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A publish returned `Ok`: the value at the offset (refused by every
    /// subscriber when `refused`).
    Published {
        /// Its offset.
        offset: u64,
        /// Its value.
        value: u64,
        /// Of a kind or version the subscribers refuse.
        refused: bool,
    },
    /// A subscriber was handed the value at the offset.
    Handed {
        /// The subscription.
        sub: String,
        /// The offset.
        offset: u64,
        /// The value.
        value: u64,
    },
    /// A subscriber reported the event refused.
    Refused {
        /// The subscription.
        sub: String,
        /// The offset.
        offset: u64,
    },
}

/// Everything the checker judges.
#[derive(Debug, Clone)]
pub struct TopicHistory {
    /// The server's log.
    pub events: Vec<TopicEvent>,
    /// What clients saw, with when.
    pub seen: Vec<(Instant, Seen)>,
    /// The subscriptions.
    pub subs: Vec<String>,
    /// The offsets among each subscription's dead events at the end.
    pub dead: HashMap<String, HashSet<u64>>,
    /// When the server restarted (its store emptied).
    pub restarts: Vec<Instant>,
}

/// What a run of the topic workload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounts {
    /// Events acknowledged to publishers.
    pub published: u64,
    /// Deliveries handed out by the server.
    pub delivered: u64,
    /// Acks the server accepted.
    pub acked: u64,
    /// Offsets reported missed.
    pub missed: u64,
    /// Events dead-lettered (refused).
    pub refused: u64,
    /// Settlements refused as stale.
    pub stale: u64,
    /// Deliveries of an offset already delivered to its subscription.
    pub redelivered: u64,
    /// Deliveries given back by their read's clean-up (its answer never
    /// came: decision 0044).
    pub given_back: u64,
}

impl TopicCounts {
    /// How many numbers [`to_vec`](Self::to_vec) gives.
    pub const LEN: usize = 8;

    /// The counts as numbers, for a report line.
    pub fn to_vec(&self) -> Vec<u64> {
        vec![
            self.published,
            self.delivered,
            self.acked,
            self.missed,
            self.refused,
            self.stale,
            self.redelivered,
            self.given_back,
        ]
    }

    /// The counts from [`to_vec`](Self::to_vec)'s numbers (zeros when
    /// short).
    pub fn from_slice(f: &[u64]) -> Self {
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        TopicCounts {
            published: g(0),
            delivered: g(1),
            acked: g(2),
            missed: g(3),
            refused: g(4),
            stale: g(5),
            redelivered: g(6),
            given_back: g(7),
        }
    }

    /// Adds `o` to these counts.
    pub fn add(&mut self, o: &Self) {
        let sum: Vec<u64> = (self.to_vec().iter().zip(o.to_vec()))
            .map(|(a, b)| a + b)
            .collect();
        *self = Self::from_slice(&sum);
    }
}

/// The counts of `h`.
pub fn topic_counts(h: &TopicHistory) -> TopicCounts {
    let mut c = TopicCounts::default();
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    for e in &h.events {
        match &e.op {
            TopicOp::Read {
                delivered, missed, ..
            } => {
                for (o, _) in delivered {
                    c.delivered += 1;
                    if !seen.insert((e.sub.clone(), *o)) {
                        c.redelivered += 1;
                    }
                }
                c.missed += missed.iter().map(|(a, b)| b - a + 1).sum::<u64>();
            }
            TopicOp::Settle { op, done, .. } => match (*op, *done) {
                ("ack", true) => c.acked += 1,
                ("dead_letter", true) => c.refused += 1,
                (_, false) => c.stale += 1,
                _ => {}
            },
            TopicOp::GiveBack { returned, .. } => c.given_back += u64::from(*returned),
            TopicOp::Publish(_) | TopicOp::Subscribed => {}
        }
    }
    c.published = (h.seen.iter())
        .filter(|(_, s)| matches!(s, Seen::Published { .. }))
        .count() as u64;
    c
}

/// A delivery as the server made it.
struct Lease {
    token: u64,
    deadline: Instant,
    settled: bool,
    /// Its consumer and read (a give-back names them).
    read: (String, u64),
}

/// Every violation of `h`.
pub fn check_topics(h: &TopicHistory) -> Vec<Violation> {
    let mut out = Vec::new();
    let last_restart = h.restarts.iter().max().copied();
    let current = |at: Instant| last_restart.is_none_or(|r| at >= r);
    // Tokens strictly increase, whatever the incarnation.
    let mut last_token = 0u64;
    for e in &h.events {
        if let TopicOp::Read { delivered, .. } = &e.op {
            for (o, t) in delivered {
                if *t <= last_token {
                    out.push(Violation::new(
                        "topic-tokens",
                        format!("{}@{o}: token {t} after {last_token}", e.sub),
                    ));
                }
                last_token = last_token.max(*t);
            }
        }
    }
    // Fencing, per incarnation (a restart forgets every delivery).
    let mut leases: HashMap<(String, u64), Lease> = HashMap::new();
    let mut restarts = h.restarts.clone();
    restarts.sort();
    let mut next_restart = restarts.iter().peekable();
    // What the server told each subscription, in the last incarnation.
    let mut handled: HashSet<(String, u64)> = HashSet::new();
    // When each subscription was made (in the last incarnation).
    let mut made: HashMap<String, Instant> = HashMap::new();
    for e in &h.events {
        while next_restart.peek().is_some_and(|r| **r <= e.at) {
            next_restart.next();
            leases.clear();
        }
        match &e.op {
            TopicOp::Subscribed if current(e.at) => {
                made.insert(e.sub.clone(), e.at);
            }
            TopicOp::Read {
                consumer,
                read_id,
                delivered,
                missed,
                ttl,
            } => {
                for (o, t) in delivered {
                    let lease = Lease {
                        token: *t,
                        deadline: e.now + *ttl,
                        settled: false,
                        read: (consumer.clone(), *read_id),
                    };
                    leases.insert((e.sub.clone(), *o), lease);
                }
                if current(e.at) {
                    for (a, b) in missed {
                        handled.extend((*a..=*b).map(|o| (e.sub.clone(), o)));
                    }
                }
            }
            TopicOp::Settle {
                op,
                offset,
                token,
                ttl,
                done: true,
            } => {
                let key = (e.sub.clone(), *offset);
                match leases.get_mut(&key) {
                    Some(l) if l.token == *token && !l.settled && e.now < l.deadline => {
                        if *op == "extend" {
                            l.deadline = e.now + *ttl;
                        } else {
                            l.settled = true;
                        }
                    }
                    other => out.push(Violation::new(
                        "topic-fencing",
                        format!(
                            "{op} of {}@{offset} with token {token} accepted; the latest delivery: {:?}",
                            e.sub,
                            other.map(|l| (l.token, l.settled, l.deadline.saturating_duration_since(e.now)))
                        ),
                    )),
                }
                if matches!(*op, "ack" | "dead_letter") && current(e.at) {
                    handled.insert(key);
                }
            }
            TopicOp::GiveBack {
                consumer,
                read_id,
                returned,
            } => {
                // The read's deliveries still live here: each was given
                // back or ended unlogged (a leave, its presence): none may
                // be settled afterwards.
                let mut live = 0u32;
                for ((sub, _), l) in leases.iter_mut() {
                    let theirs = *sub == e.sub && l.read == (consumer.clone(), *read_id);
                    if theirs && *read_id != 0 && !l.settled && e.now < l.deadline {
                        l.settled = true;
                        live += 1;
                    }
                }
                if *returned > live {
                    out.push(Violation::new(
                        "topic-give-back",
                        format!(
                            "give_back of {consumer}'s read {read_id} in {} returned {returned}; it had {live} live",
                            e.sub
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    // Values, refusals, nothing lost.
    let mut published: HashMap<u64, (u64, bool, Instant)> = HashMap::new();
    for (at, s) in &h.seen {
        if let Seen::Published {
            offset,
            value,
            refused,
        } = s
            && current(*at)
        {
            published.insert(*offset, (*value, *refused, *at));
        }
    }
    for (at, s) in &h.seen {
        if !current(*at) {
            continue;
        }
        match s {
            Seen::Handed { sub, offset, value } => {
                if let Some((v, _, _)) = published.get(offset)
                    && v != value
                {
                    out.push(Violation::new(
                        "topic-values",
                        format!("{sub}@{offset}: handed {value}, published {v}"),
                    ));
                }
            }
            Seen::Refused { sub, offset } => {
                let listed = h.dead.get(sub).is_some_and(|d| d.contains(offset));
                if !listed {
                    out.push(Violation::new(
                        "topic-dead",
                        format!("{sub}@{offset}: refused, not among the dead events"),
                    ));
                }
            }
            Seen::Published { .. } => {}
        }
    }
    let mut offsets: Vec<(&u64, &Instant)> = published.iter().map(|(o, p)| (o, &p.2)).collect();
    offsets.sort();
    for sub in &h.subs {
        let Some(made) = made.get(sub) else {
            continue;
        };
        let lost: Vec<u64> = (offsets.iter())
            .filter(|(_, sent)| *sent >= made)
            .filter(|(o, _)| !handled.contains(&(sub.clone(), **o)))
            .map(|(o, _)| **o)
            .collect();
        if !lost.is_empty() {
            out.push(Violation::new(
                "topic-lost",
                format!(
                    "subscription {sub}: acknowledged offsets neither acked, dead-lettered nor reported missed: {lost:?}"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::history::tests::t as at;

    fn history(events: Vec<TopicEvent>, seen: Vec<(Instant, Seen)>) -> TopicHistory {
        TopicHistory {
            events,
            seen,
            subs: vec!["a".into()],
            dead: HashMap::new(),
            restarts: Vec::new(),
        }
    }

    fn ev(t: Instant, sub: &str, op: TopicOp) -> TopicEvent {
        TopicEvent {
            sub: sub.into(),
            at: t,
            now: t,
            op,
        }
    }

    fn settle(op: &'static str, offset: u64, token: u64, done: bool) -> TopicOp {
        TopicOp::Settle {
            op,
            offset,
            token,
            ttl: Duration::ZERO,
            done,
        }
    }

    fn read(delivered: Vec<(u64, u64)>, missed: Vec<(u64, u64)>) -> TopicOp {
        TopicOp::Read {
            consumer: "c".into(),
            read_id: 7,
            delivered,
            missed,
            ttl: Duration::from_secs(1),
        }
    }

    fn published(offset: u64) -> Seen {
        Seen::Published {
            offset,
            value: offset * 10,
            refused: false,
        }
    }

    #[test]
    fn acked_or_missed_is_clean() {
        let t = at(0);
        let h = history(
            vec![
                ev(t, "a", TopicOp::Subscribed),
                ev(t, "", TopicOp::Publish(vec![1, 2])),
                ev(t, "a", read(vec![(2, 5)], vec![(1, 1)])),
                ev(t, "a", settle("ack", 2, 5, true)),
            ],
            vec![(t, published(1)), (t, published(2))],
        );
        assert_eq!(check_topics(&h), vec![]);
    }

    #[test]
    fn an_offset_skipped_silently_is_lost() {
        let t = at(0);
        let h = history(
            vec![
                ev(t, "a", TopicOp::Subscribed),
                ev(t, "a", read(vec![(2, 5)], vec![])),
                ev(t, "a", settle("ack", 2, 5, true)),
            ],
            vec![(t, published(1)), (t, published(2))],
        );
        let v = check_topics(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].checker, "topic-lost");
    }

    #[test]
    fn a_stale_or_late_ack_accepted_is_unfenced() {
        let t = at(0);
        let h = history(
            vec![
                ev(t, "a", TopicOp::Subscribed),
                ev(t, "a", read(vec![(1, 5)], vec![])),
                ev(t, "a", read(vec![(1, 6)], vec![])),
                ev(t, "a", settle("ack", 1, 5, true)),
                ev(at(5_000), "a", settle("ack", 1, 6, true)),
            ],
            vec![(t, published(1))],
        );
        let v = check_topics(&h);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|v| v.checker == "topic-fencing"), "{v:?}");
    }

    #[test]
    fn tokens_must_increase_and_values_match() {
        let t = at(0);
        let mut h = history(
            vec![
                ev(t, "a", TopicOp::Subscribed),
                ev(t, "a", read(vec![(1, 7)], vec![])),
                ev(t, "a", read(vec![(1, 7)], vec![])),
                ev(t, "a", settle("ack", 1, 7, true)),
            ],
            vec![
                (t, published(1)),
                (
                    t,
                    Seen::Handed {
                        sub: "a".into(),
                        offset: 1,
                        value: 99,
                    },
                ),
                (
                    t,
                    Seen::Refused {
                        sub: "a".into(),
                        offset: 1,
                    },
                ),
            ],
        );
        let checkers: Vec<_> = check_topics(&h).iter().map(|v| v.checker).collect();
        assert_eq!(checkers, vec!["topic-tokens", "topic-values", "topic-dead"]);
        // Before the last restart, only tokens are judged.
        h.restarts.push(at(1));
        let checkers: Vec<_> = check_topics(&h).iter().map(|v| v.checker).collect();
        assert_eq!(checkers, vec!["topic-tokens"]);
    }

    fn give_back(read_id: u64, returned: u32) -> TopicOp {
        TopicOp::GiveBack {
            consumer: "c".into(),
            read_id,
            returned,
        }
    }

    #[test]
    fn a_give_back_is_replayed_and_a_wrong_one_caught() {
        let t = at(0);
        // Read 7 delivered offsets 1 and 2; 1 was acked, 2 given back and
        // delivered again (token 9), acked with its new token: clean.
        let h = history(
            vec![
                ev(t, "a", TopicOp::Subscribed),
                ev(t, "", TopicOp::Publish(vec![1, 2])),
                ev(t, "a", read(vec![(1, 5), (2, 6)], vec![])),
                ev(t, "a", settle("ack", 1, 5, true)),
                ev(t, "a", give_back(7, 1)),
                ev(t, "a", give_back(8, 0)),
                ev(t, "a", read(vec![(2, 9)], vec![])),
                ev(t, "a", settle("ack", 2, 9, true)),
            ],
            vec![(t, published(1)), (t, published(2))],
        );
        assert_eq!(check_topics(&h), vec![]);
        // A give-back returning more than its read holds, and an ack of a
        // given-back delivery accepted.
        let h = history(
            vec![
                ev(t, "a", TopicOp::Subscribed),
                ev(t, "", TopicOp::Publish(vec![1, 2])),
                ev(t, "a", read(vec![(1, 5), (2, 6)], vec![])),
                ev(t, "a", settle("ack", 1, 5, true)),
                ev(t, "a", give_back(7, 2)),
                ev(t, "a", settle("ack", 2, 6, true)),
            ],
            vec![(t, published(1)), (t, published(2))],
        );
        let checkers: Vec<_> = check_topics(&h).iter().map(|v| v.checker).collect();
        assert_eq!(checkers, vec!["topic-give-back", "topic-fencing"]);
    }
}
