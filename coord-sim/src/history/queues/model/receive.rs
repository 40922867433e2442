//! Rule 3 in the model: a receive's reply against the ready items (order,
//! the started flag, stealing only unstarted deliveries of other live
//! consumers and only with nothing ready, nothing ready left out), its
//! `next_in`, and each delivery applied (tokens, attempts).

use std::{collections::BTreeSet, time::Duration};

use coord_api::{Instant, spi::MAX_PRIORITY};

use super::{Dlv, End, Place, Replay, Track, since};
use crate::history::queues::{Delivered, QueueEvent};

impl Replay {
    /// Rule 3's `next_in` of an empty reply at `now`: the time until the
    /// next of a delayed item's due time, a delivery's deadline, the
    /// presence deadline of a consumer holding deliveries.
    pub(super) fn next_in(&mut self, q: &str, now: Instant) -> Option<Duration> {
        let epoch = self.epoch;
        let ids: Vec<u64> = self.state(q).ids.iter().copied().collect();
        let mut next: Option<Instant> = None;
        let mut holders: BTreeSet<String> = BTreeSet::new();
        for id in ids {
            let t = &self.items[&(q.to_owned(), epoch, id)];
            let at = match t.place {
                Place::Delayed(at) => at,
                Place::InFlight => {
                    let d = t.deliveries.last().expect("in flight");
                    holders.insert(d.consumer.clone());
                    d.deadline
                }
                _ => continue,
            };
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        for (c, &at) in &self.state(q).consumers {
            if holders.contains(c) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next.map(|at| at.saturating_duration_since(now))
    }

    /// Rule 3's choice: the reply's deliveries against the model's ready
    /// items (before any is applied).
    pub(super) fn receive(
        &mut self,
        q: &str,
        consumer: &str,
        (max, steal): (u32, bool),
        deliveries: &[Delivered],
        e: &QueueEvent,
    ) {
        let epoch = self.epoch;
        let rank = |t: &Track| MAX_PRIORITY.saturating_sub(t.priority);
        let ids: Vec<u64> = self.state(q).ids.iter().copied().collect();
        let mut ready: Vec<(u8, u64)> = (ids.iter())
            .filter_map(|&id| {
                let t = &self.items[&(q.to_owned(), epoch, id)];
                (t.place == Place::Ready).then(|| (rank(t), id))
            })
            .collect();
        ready.sort();
        let mut got: Vec<(u8, u64)> = Vec::new();
        for d in deliveries {
            let key = self.key(q, d.id);
            let Some(t) = self.items.get(&key) else {
                let at = self.g(e.at);
                self.v(
                    "queue-unknown",
                    format!(
                        "{q}#{}: delivered (token {}) at {at}; no logged push made it",
                        d.id, d.token
                    ),
                );
                continue;
            };
            let (place, r) = (t.place, rank(t));
            let cur = t.deliveries.last().cloned();
            match place {
                Place::Ready if !d.stolen => got.push((r, d.id)),
                Place::InFlight if d.stolen => {
                    let cur = cur.expect("in flight");
                    if let Some(started) = cur.started {
                        self.v(
                            "queue-steal-started",
                            format!(
                                "{q}#{}: stolen by {consumer} at {} (token {}) from {}'s delivery {}, started at {} with its lease valid until {}",
                                d.id,
                                self.g(e.at),
                                d.token,
                                cur.consumer,
                                cur.token,
                                self.g(started),
                                self.s(cur.deadline)
                            ),
                        );
                    } else if cur.consumer == consumer || !steal {
                        self.v(
                            "queue-receive",
                            format!(
                                "{q}#{}: stolen by {consumer} (steal {steal}) from {}",
                                d.id, cur.consumer
                            ),
                        );
                    }
                }
                _ => self.misplaced(q, consumer, d, place, cur, e),
            }
        }
        // The ready items delivered are the first of the ready order.
        let first: Vec<(u8, u64)> = ready.iter().take(got.len()).copied().collect();
        if got != first {
            self.v(
                "queue-receive",
                format!(
                    "{q}: {consumer} at {} was delivered {:?}; the ready order (rank, id) begins {first:?}",
                    self.g(e.at),
                    got
                ),
            );
        }
        let room = (deliveries.len() as u32) < max;
        let stole = deliveries.iter().any(|d| d.stolen);
        if stole && !ready.is_empty() {
            self.v(
                "queue-receive",
                format!(
                    "{q}: {consumer} stole at {} while {} items were ready",
                    self.g(e.at),
                    ready.len()
                ),
            );
        }
        let skipped = ready.iter().find(|x| !got.contains(x));
        if let Some(&(r, id)) = skipped
            && (room || got.iter().any(|g| g.0 > r || (g.0 == r && g.1 > id)))
            && self.skipped.insert(self.key(q, id))
        {
            let key = self.key(q, id);
            let how = self.items[&key].returned;
            let (checker, why) = match how {
                Some((End::Gone, at)) => (
                    "queue-reclaim",
                    format!("its consumer's presence ended at {}", self.s(at)),
                ),
                Some((why, at)) => ("queue-lost", format!("{why:?} at {}", self.s(at))),
                None => ("queue-lost", "pushed or due".to_owned()),
            };
            self.v(
                checker,
                format!(
                    "{q}#{id}: ready ({why}) but left out of {consumer}'s receive at {} ({} delivered, max {max})",
                    self.g(e.at),
                    deliveries.len()
                ),
            );
        }
    }

    /// A delivery of an item that was not where the reply says it was taken
    /// from.
    fn misplaced(
        &mut self,
        q: &str,
        consumer: &str,
        d: &Delivered,
        place: Place,
        cur: Option<Dlv>,
        e: &QueueEvent,
    ) {
        let at = self.g(e.at);
        let (id, token) = (d.id, d.token);
        let (checker, detail) = match (place, cur) {
            (Place::InFlight, Some(c)) => (
                "queue-duplicate",
                format!(
                    "{q}#{id}: delivered to {consumer} at {at} (token {token}) while {}'s delivery {} (started: {}) was valid until {}: no lease expired, no consumer gone",
                    c.consumer,
                    c.token,
                    c.started.is_some(),
                    self.s(c.deadline)
                ),
            ),
            (Place::Acked, _) => (
                "queue-duplicate",
                format!(
                    "{q}#{id}: delivered to {consumer} at {at} (token {token}) after it was acked"
                ),
            ),
            (Place::Delayed(due), _) => (
                "queue-early",
                format!(
                    "{q}#{id}: delivered at {at} ({}); due at {}",
                    self.s(e.now),
                    self.s(due)
                ),
            ),
            (Place::Dead, _) => (
                "queue-dead",
                format!("{q}#{id}: delivered to {consumer} at {at} after it died"),
            ),
            (place, _) => (
                "queue-receive",
                format!(
                    "{q}#{id}: delivered to {consumer} at {at} (stolen: {}) while {place:?}",
                    d.stolen
                ),
            ),
        };
        self.v(checker, detail);
    }

    /// Applies one delivery of a receive (rule 3).
    pub(super) fn deliver(
        &mut self,
        q: &str,
        consumer: &str,
        i: usize,
        d: &Delivered,
        (ttl, receive_id): (Duration, u64),
        e: &QueueEvent,
    ) {
        if d.started != (i == 0) {
            self.v(
                "queue-receive",
                format!(
                    "{q}#{}: delivery {i} of a receive has started = {}",
                    d.id, d.started
                ),
            );
        }
        let last = self.last_token.entry(q.to_owned()).or_default();
        if d.token <= *last {
            let l = *last;
            self.v(
                "queue-tokens",
                format!(
                    "{q}#{}: token {} delivered at {} after token {l}",
                    d.id,
                    d.token,
                    self.g(e.at)
                ),
            );
        }
        let last = self.last_token.entry(q.to_owned()).or_default();
        *last = (*last).max(d.token);
        let key = self.key(q, d.id);
        self.skipped.remove(&key);
        self.tokens.insert((q.to_owned(), d.token), key.clone());
        let Some(t) = self.items.get_mut(&key) else {
            return;
        };
        if let Some(prev) = t.current() {
            let why = if d.stolen {
                End::Stolen
            } else {
                End::Unexplained
            };
            prev.end = Some((why, e.now));
        }
        let (before, max) = (t.attempts, t.max_attempts);
        let mut bad = Vec::new();
        if d.attempt != before + 1 || d.max_attempts != max {
            bad.push((
                "queue-attempts",
                format!(
                    "{q}#{}: delivered as attempt {} of {}; it had {before} started of {max}",
                    d.id, d.attempt, d.max_attempts
                ),
            ));
        }
        if d.priority != t.priority {
            bad.push((
                "queue-receive",
                format!(
                    "{q}#{}: delivered with priority {}, pushed with {}",
                    d.id, d.priority, t.priority
                ),
            ));
        }
        if t.place == Place::Ready
            && let Some((End::Gone, at)) = t.returned
        {
            let ms = since(e.now, at).as_millis() as u64;
            self.counts.worst_reclaim_ms = self.counts.worst_reclaim_ms.max(ms);
        }
        if d.started {
            t.attempts += 1;
            if t.attempts > max {
                bad.push((
                    "queue-attempts",
                    format!(
                        "{q}#{}: attempt {} started; it is given {max}",
                        d.id, t.attempts
                    ),
                ));
            }
        }
        self.counts.delivered += 1;
        self.counts.redelivered += u64::from(before > 0);
        self.counts.stolen += u64::from(d.stolen);
        t.place = Place::InFlight;
        t.deliveries.push(Dlv {
            token: d.token,
            consumer: consumer.to_owned(),
            attempt: d.attempt,
            receive_id,
            made: e.at,
            started: d.started.then_some(e.at),
            deadline: e.now + ttl,
            end: None,
        });
        for (c, detail) in bad {
            self.v(c, detail);
        }
    }
}
