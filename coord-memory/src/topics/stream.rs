//! One topic's durable stream and its subscriptions: the rules of
//! [`coord_api::spi::topics`], step by step.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    time::{Duration, SystemTime},
};

use coord_api::{
    FencingToken, HolderId, Instant, Key,
    spi::{
        DeadEvent, Delivered, Event, MAX_DEAD_EVENTS_KEPT, Missed, NewEvent, Read, ReadOptions,
        Retention, Settle, Start, SubscriptionStats,
    },
};

/// The instants of one step.
pub(super) struct Step {
    pub(super) now: Instant,
    pub(super) wall: SystemTime,
    pub(super) wall_us: u64,
}

/// A topic: its events (oldest first), offset and token counters, and
/// subscriptions.
#[derive(Default)]
pub(super) struct Stream {
    events: VecDeque<Event>,
    /// The last offset given (0: none).
    last: u64,
    last_token: u64,
    subs: HashMap<Key, Sub>,
}

struct Flight {
    token: FencingToken,
    deadline: Instant,
    consumer: HolderId,
    attempt: u32,
    /// The id of the read that made it (0: none), which a give-back names.
    read_id: u64,
}

#[derive(Default)]
struct Sub {
    cursor: u64,
    flights: BTreeMap<u64, Flight>,
    /// Offsets to deliver again: (due, offset), and offset → attempts had.
    retry: BTreeSet<(Instant, u64)>,
    retry_attempts: HashMap<u64, (Instant, u32)>,
    consumers: HashMap<HolderId, Instant>,
    dead: VecDeque<DeadEvent>,
    dead_ids: u64,
}

impl Sub {
    fn retry_at(&mut self, offset: u64, due: Instant, attempts: u32) {
        if let Some((old, _)) = self.retry_attempts.insert(offset, (due, attempts)) {
            self.retry.remove(&(old, offset));
        }
        self.retry.insert((due, offset));
    }

    fn take_retry(&mut self, offset: u64) -> Option<u32> {
        let (due, attempts) = self.retry_attempts.remove(&offset)?;
        self.retry.remove(&(due, offset));
        Some(attempts)
    }

    /// Rule 1: expired deliveries and dead consumers' deliveries go to the
    /// retry set, due now.
    fn sweep(&mut self, now: Instant) {
        let dead: Vec<HolderId> = (self.consumers.iter())
            .filter(|(_, until)| **until <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for c in &dead {
            self.consumers.remove(c);
        }
        let ended: Vec<u64> = (self.flights.iter())
            .filter(|(_, f)| f.deadline <= now || dead.contains(&f.consumer))
            .map(|(o, _)| *o)
            .collect();
        for o in ended {
            let f = self.flights.remove(&o).expect("listed");
            self.retry_at(o, now, f.attempt);
        }
    }

    fn holds(&self, offset: u64, token: FencingToken, now: Instant) -> bool {
        self.flights
            .get(&offset)
            .is_some_and(|f| f.token == token && f.deadline > now)
    }

    fn next_in(&self, now: Instant) -> Option<Duration> {
        let retry = self.retry.first().map(|(due, _)| *due);
        let deadline = self.flights.values().map(|f| f.deadline).min();
        let presence = (self.consumers.iter())
            .filter(|(c, _)| self.flights.values().any(|f| &f.consumer == *c))
            .map(|(_, until)| *until)
            .min();
        [retry, deadline, presence]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }
}

impl Stream {
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty() && self.subs.is_empty()
    }

    fn first(&self) -> u64 {
        self.events.front().map_or(self.last + 1, |e| e.offset)
    }

    fn get(&self, offset: u64) -> Option<&Event> {
        let first = self.events.front()?.offset;
        let i = offset.checked_sub(first)?;
        self.events.get(i as usize)
    }

    /// The cursor `start` places (rule 3).
    fn place(&self, start: Start) -> u64 {
        match start {
            Start::Earliest => self.first() - 1,
            Start::Latest => self.last,
            Start::Offset(o) => o.saturating_sub(1).min(self.last),
            Start::Time(t) => {
                let i = self.events.partition_point(|e| e.at < t);
                self.events.get(i).map_or(self.last, |e| e.offset - 1)
            }
            // Refused before the step (`known_start`).
            _ => self.last,
        }
    }

    /// Rule 2.
    pub(super) fn publish(
        &mut self,
        events: Vec<NewEvent>,
        retention: Retention,
        step: &Step,
    ) -> Vec<u64> {
        let mut offsets = Vec::with_capacity(events.len());
        // Millisecond precision, as every backend keeps it.
        let at_ms = step
            .wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms);
        for e in events {
            self.last += 1;
            offsets.push(self.last);
            self.events
                .push_back(Event::new(self.last, at, e.tag, e.payload));
        }
        if let Some(n) = retention.max_len {
            while self.events.len() as u64 > n {
                self.events.pop_front();
            }
        }
        if let Some(age) = retention.max_age
            && let Some(oldest) = step.wall.checked_sub(age)
        {
            while self.events.front().is_some_and(|e| e.at < oldest) {
                self.events.pop_front();
            }
        }
        offsets
    }

    pub(super) fn subscribe(&mut self, sub: &Key, start: Start) -> bool {
        if self.subs.contains_key(sub) {
            return false;
        }
        let cursor = self.place(start);
        let s = Sub {
            cursor,
            ..Sub::default()
        };
        self.subs.insert(sub.clone(), s);
        true
    }

    pub(super) fn seek(&mut self, sub: &Key, start: Start, now: Instant) -> Option<u64> {
        let cursor = self.place(start);
        let s = self.subs.get_mut(sub)?;
        s.sweep(now);
        s.cursor = cursor;
        Some(cursor + 1)
    }

    /// Rule 4.
    pub(super) fn read(
        &mut self,
        sub: &Key,
        consumer: &HolderId,
        opts: ReadOptions,
        step: &Step,
    ) -> Option<Read> {
        let first = self.first();
        let last = self.last;
        let events = &self.events;
        let get = |o: u64| {
            let front = events.front()?.offset;
            events.get(o.checked_sub(front)? as usize)
        };
        let s = self.subs.get_mut(sub)?;
        s.sweep(step.now);
        s.consumers
            .insert(consumer.clone(), step.now + opts.presence_ttl);
        let mut out = Read::default();
        let mut missed: BTreeSet<u64> = BTreeSet::new();
        let mut picked: Vec<(u64, u32)> = Vec::new();
        // Retries due, lowest due time then offset.
        while picked.len() < opts.max as usize {
            let Some(&(due, o)) = s.retry.first() else {
                break;
            };
            if due > step.now {
                break;
            }
            let attempts = s.take_retry(o).expect("indexed");
            if get(o).is_some() {
                picked.push((o, attempts + 1));
            } else {
                missed.insert(o);
            }
        }
        let retried: BTreeSet<u64> = picked.iter().map(|(o, _)| *o).collect();
        // Then new events after the cursor, with room left in the batch:
        // the offsets trimmed there first (reported by the read that
        // reaches them, as every backend does).
        if picked.len() < opts.max as usize && s.cursor + 1 < first {
            let (a, b) = (s.cursor + 1, first - 1);
            out.missed.push(Missed::new(a, b));
            s.cursor = b;
        }
        while picked.len() < opts.max as usize && s.cursor < last {
            s.cursor += 1;
            let o = s.cursor;
            // Under delivery: in flight, due again later, or taken from
            // the retry set by this very read.
            if s.flights.contains_key(&o)
                || s.retry_attempts.contains_key(&o)
                || retried.contains(&o)
            {
                continue;
            }
            picked.push((o, 1));
        }
        // Missed retries and the trimmed run after the cursor, as ranges in
        // offset order, adjacent ones merged (a retry of the cursor's own
        // offset runs on into the offsets trimmed after it).
        out.missed
            .extend(missed.into_iter().map(|o| Missed::new(o, o)));
        out.missed.sort_by_key(|m| m.first);
        out.missed.dedup_by(|next, prev| {
            let adjacent = next.first <= prev.last + 1;
            if adjacent {
                prev.last = prev.last.max(next.last);
            }
            adjacent
        });
        for (o, attempt) in picked {
            let token = FencingToken::next_after_micros(self.last_token, step.wall_us);
            self.last_token = token.get();
            s.flights.insert(
                o,
                Flight {
                    token,
                    deadline: step.now + opts.ttl,
                    consumer: consumer.clone(),
                    attempt,
                    read_id: opts.read_id,
                },
            );
            let event = get(o).expect("kept").clone();
            out.events.push(Delivered::new(event, token, attempt));
        }
        if out.events.is_empty() {
            out.next_in = s.next_in(step.now);
        }
        Some(out)
    }

    fn on_flight<T>(
        &mut self,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        now: Instant,
        op: impl FnOnce(&mut Sub, Option<Event>) -> T,
    ) -> Option<T> {
        let event = self.get(offset).cloned();
        let s = self.subs.get_mut(sub)?;
        s.sweep(now);
        s.holds(offset, token, now).then(|| op(s, event))
    }

    /// Rule 5.
    pub(super) fn extend(
        &mut self,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        ttl: Duration,
        now: Instant,
    ) -> Settle {
        let done = self.on_flight(sub, offset, token, now, |s, _| {
            s.flights.get_mut(&offset).expect("held").deadline = now + ttl;
        });
        settle(done)
    }

    pub(super) fn ack(
        &mut self,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        now: Instant,
    ) -> Settle {
        let done = self.on_flight(sub, offset, token, now, |s, _| {
            s.flights.remove(&offset);
        });
        settle(done)
    }

    pub(super) fn nack(
        &mut self,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        retry_in: Duration,
        now: Instant,
    ) -> Settle {
        let done = self.on_flight(sub, offset, token, now, |s, _| {
            let f = s.flights.remove(&offset).expect("held");
            s.retry_at(offset, now + retry_in, f.attempt);
        });
        settle(done)
    }

    pub(super) fn dead_letter(
        &mut self,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        reason: String,
        step: &Step,
    ) -> Settle {
        let died_at = step.wall;
        let done = self.on_flight(sub, offset, token, step.now, |s, event| {
            s.flights.remove(&offset);
            s.dead_ids += 1;
            let dead = DeadEvent::new(s.dead_ids, offset, event, reason, died_at);
            s.dead.push_back(dead);
            if s.dead.len() > MAX_DEAD_EVENTS_KEPT {
                s.dead.pop_front();
            }
        });
        settle(done)
    }

    /// Rule 6.
    pub(super) fn heartbeat(
        &mut self,
        sub: &Key,
        consumer: &HolderId,
        ttl: Duration,
        now: Instant,
    ) {
        if let Some(s) = self.subs.get_mut(sub) {
            s.sweep(now);
            s.consumers.insert(consumer.clone(), now + ttl);
        }
    }

    pub(super) fn leave(&mut self, sub: &Key, consumer: &HolderId, now: Instant) -> u32 {
        let Some(s) = self.subs.get_mut(sub) else {
            return 0;
        };
        s.sweep(now);
        s.consumers.remove(consumer);
        let mine: Vec<u64> = (s.flights.iter())
            .filter(|(_, f)| &f.consumer == consumer)
            .map(|(o, _)| *o)
            .collect();
        for o in &mine {
            let f = s.flights.remove(o).expect("listed");
            s.retry_at(*o, now, f.attempt);
        }
        mine.len() as u32
    }

    /// Rule 6's give-back: every current, unexpired (the sweep ended the
    /// expired ones) delivery of read `read_id` to `consumer` goes to the
    /// retry set, due now, its attempt taken back; how many.
    pub(super) fn give_back(
        &mut self,
        sub: &Key,
        consumer: &HolderId,
        read_id: u64,
        now: Instant,
    ) -> u32 {
        let Some(s) = self.subs.get_mut(sub).filter(|_| read_id != 0) else {
            return 0;
        };
        s.sweep(now);
        let theirs: Vec<u64> = (s.flights.iter())
            .filter(|(_, f)| &f.consumer == consumer && f.read_id == read_id)
            .map(|(o, _)| *o)
            .collect();
        for o in &theirs {
            let f = s.flights.remove(o).expect("listed");
            s.retry_at(*o, now, f.attempt.saturating_sub(1));
        }
        theirs.len() as u32
    }

    pub(super) fn dead_events(&self, sub: &Key, after: u64, limit: u32) -> Vec<DeadEvent> {
        let Some(s) = self.subs.get(sub) else {
            return Vec::new();
        };
        (s.dead.iter())
            .filter(|d| d.id > after)
            .take(limit as usize)
            .cloned()
            .collect()
    }

    pub(super) fn unsubscribe(&mut self, sub: &Key) -> bool {
        self.subs.remove(sub).is_some()
    }

    pub(super) fn stats(&mut self, sub: &Key, now: Instant) -> SubscriptionStats {
        let first_offset = self.events.front().map_or(0, |e| e.offset);
        let mut stats = SubscriptionStats::default();
        stats.last_offset = self.last;
        stats.first_offset = first_offset;
        if let Some(s) = self.subs.get_mut(sub) {
            s.sweep(now);
            stats.exists = true;
            stats.cursor = s.cursor;
            stats.in_flight = s.flights.len() as u64;
            stats.retrying = s.retry.len() as u64;
            stats.consumers = s.consumers.len() as u64;
            stats.dead = s.dead.len() as u64;
        }
        stats
    }
}

/// A live delivery, as operations list it.
pub(super) struct Live<'a> {
    pub(super) offset: u64,
    pub(super) consumer: &'a HolderId,
    pub(super) token: FencingToken,
    pub(super) deadline: Instant,
}

// What operations see and do (`OpsBackend`): a delivery is a lease.
impl Stream {
    /// The subscriptions, by name.
    pub(super) fn subscriptions(&self) -> impl Iterator<Item = &Key> {
        self.subs.keys()
    }

    /// The deliveries of `sub` live at `now` (of `offset` only, when
    /// named): before their deadline, to a consumer whose presence has not
    /// ended (the next step's sweep ends the others), in offset order.
    pub(super) fn live(
        &self,
        sub: &Key,
        offset: Option<u64>,
        now: Instant,
    ) -> impl Iterator<Item = Live<'_>> {
        let s = self.subs.get(sub);
        let flights = s
            .into_iter()
            .flat_map(|s| s.flights.iter().map(move |f| (s, f)));
        flights.filter_map(move |(s, (&o, f))| {
            let present = s
                .consumers
                .get(&f.consumer)
                .is_some_and(|until| *until > now);
            let wanted = offset.is_none_or(|want| want == o);
            (wanted && present && f.deadline > now).then_some(Live {
                offset: o,
                consumer: &f.consumer,
                token: f.token,
                deadline: f.deadline,
            })
        })
    }

    /// An operator's revocation of the delivery `token` of `offset` in
    /// `sub`: the offset goes to the retry set, due at once, keeping its
    /// attempt (as an expiry, rule 1). The consumer it was delivered to,
    /// or the token of the offset's live delivery (none: not in flight)
    /// when that is not `token`.
    pub(super) fn revoke(
        &mut self,
        sub: &Key,
        offset: u64,
        token: FencingToken,
        now: Instant,
    ) -> Result<HolderId, Vec<FencingToken>> {
        let Some(s) = self.subs.get_mut(sub) else {
            return Err(Vec::new());
        };
        s.sweep(now);
        if !s.holds(offset, token, now) {
            return Err(s
                .flights
                .get(&offset)
                .map(|f| f.token)
                .into_iter()
                .collect());
        }
        let f = s.flights.remove(&offset).expect("held");
        s.retry_at(offset, now, f.attempt);
        Ok(f.consumer)
    }
}

fn settle(done: Option<()>) -> Settle {
    match done {
        Some(()) => Settle::Done,
        None => Settle::Stale,
    }
}
