//! One queue: its items, where each one is, and the rules that move them
//! (rules 1 to 8 of [`coord_api::spi::queues`]). Every method is part of one
//! step, decided at the step's instant; the indexes (ready, delayed, leases,
//! prefetched, presence, each consumer's deliveries, dead, dedup keys) are
//! kept in step with the items here.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    mem,
    ops::Bound,
    time::{Duration, SystemTime},
};

use coord_api::{
    FencingToken, HolderId, Instant, Key,
    spi::{
        DeadItem, Delivery, MAX_DEAD_KEPT, MAX_PRIORITY, Nack, NewItem, Pushed, QueueStats,
        ReceiveOptions, Received, Settle, queues::REVOKED,
    },
};

/// Why a started delivery on its last attempt died when its lease ended.
pub(super) const LEASE_EXPIRED: &str = "lease expired";
/// Why a started delivery on its last attempt died when its consumer's
/// presence expired or the consumer left.
pub(super) const CONSUMER_GONE: &str = "consumer gone";

/// The instant and wall time a step runs at, and what it must tell the
/// watchers once it let go of the lock.
pub(super) struct Step {
    pub(super) now: Instant,
    pub(super) wall: SystemTime,
    /// The wall clock in µs, for the token rule.
    pub(super) wall_us: u64,
    /// An item was made ready, or delayed: wake the queue's watchers
    /// (rule 9).
    pub(super) wake: bool,
}

/// Where an item is (exactly one place).
enum Place {
    Ready,
    Delayed,
    InFlight(Lease),
}

/// An item's current delivery.
struct Lease {
    token: FencingToken,
    consumer: HolderId,
    deadline: Instant,
    started: bool,
    /// The id of the receive that made it (0: none), which a give-back
    /// names.
    receive_id: u64,
}

struct Item {
    payload: Vec<u8>,
    priority: u8,
    max_attempts: u32,
    /// Started deliveries so far.
    attempts: u32,
    place: Place,
}

impl Item {
    /// Its rank in the ready and prefetched indexes: highest priority first.
    fn rank(&self) -> u8 {
        MAX_PRIORITY - self.priority
    }
}

struct Dead {
    payload: Vec<u8>,
    priority: u8,
    max_attempts: u32,
    attempts: u32,
    reason: String,
    died_at: SystemTime,
    /// Its place in the order of deaths (the oldest is dropped first).
    seq: u64,
}

struct Consumer {
    presence: Instant,
    /// The items delivered to it and not settled.
    deliveries: BTreeSet<u64>,
}

/// The counters kept with the queue.
#[derive(Default)]
struct Counts {
    delivered: u64,
    redelivered: u64,
    stolen: u64,
    dead_lettered: u64,
}

/// One queue: its items and indexes, its id and token counters.
pub(super) struct Queue {
    last_id: u64,
    last_token: u64,
    items: HashMap<u64, Item>,
    /// Ready items: (rank, id), highest priority then lowest id first.
    ready: BTreeSet<(u8, u64)>,
    /// Delayed items: (due, id).
    delayed: BTreeSet<(Instant, u64)>,
    /// In-flight items: (deadline, id).
    leases: BTreeSet<(Instant, u64)>,
    /// In-flight items not started: (rank, id), the order they are stolen in.
    prefetched: BTreeSet<(u8, u64)>,
    consumers: HashMap<HolderId, Consumer>,
    /// Consumers by presence deadline.
    presence: BTreeSet<(Instant, HolderId)>,
    dead: BTreeMap<u64, Dead>,
    /// Dead items by death: seq → id.
    deaths: BTreeMap<u64, u64>,
    last_death: u64,
    /// Dedup key → (first id, end of its window).
    dedup: HashMap<Key, (u64, Instant)>,
    dedup_ends: BTreeSet<(Instant, Key)>,
    counts: Counts,
    /// The last step on it, for the store's sweep.
    pub(super) touched: Instant,
}

impl Queue {
    pub(super) fn new(now: Instant) -> Queue {
        Queue {
            last_id: 0,
            last_token: 0,
            items: HashMap::new(),
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            leases: BTreeSet::new(),
            prefetched: BTreeSet::new(),
            consumers: HashMap::new(),
            presence: BTreeSet::new(),
            dead: BTreeMap::new(),
            deaths: BTreeMap::new(),
            last_death: 0,
            dedup: HashMap::new(),
            dedup_ends: BTreeSet::new(),
            counts: Counts::default(),
            touched: now,
        }
    }

    /// Nothing to remember: no item, no dead item, and idle for a day (so
    /// every presence and dedup window ended; tokens drawn again start at
    /// the wall clock, a day past anything this one drew).
    pub(super) fn stale(&self, now: Instant) -> bool {
        self.items.is_empty()
            && self.dead.is_empty()
            && now.saturating_duration_since(self.touched) > coord_api::MAX_TTL
    }

    // Moving items between places, keeping the indexes in step.

    fn place_ready(&mut self, id: u64, step: &mut Step) {
        let item = self.items.get_mut(&id).expect("a live item");
        item.place = Place::Ready;
        self.ready.insert((item.rank(), id));
        step.wake = true;
    }

    /// Delays item `id` until `due`, and wakes the watchers (rule 9): a
    /// consumer waiting since before knows nothing of it, and looks again
    /// to learn when it is due.
    fn place_delayed(&mut self, id: u64, due: Instant, step: &mut Step) {
        let item = self.items.get_mut(&id).expect("a live item");
        item.place = Place::Delayed;
        self.delayed.insert((due, id));
        step.wake = true;
    }

    /// Ends item `id`'s delivery, if it has one: out of the lease and
    /// prefetch indexes and its consumer's set. The item is left out of
    /// every index, for the caller to place.
    fn unlease(&mut self, id: u64) -> Option<Lease> {
        let item = (self.items.get_mut(&id)).filter(|i| matches!(i.place, Place::InFlight(_)))?;
        let Place::InFlight(lease) = mem::replace(&mut item.place, Place::Ready) else {
            unreachable!("in flight");
        };
        self.leases.remove(&(lease.deadline, id));
        if !lease.started {
            self.prefetched.remove(&(item.rank(), id));
        }
        if let Some(c) = self.consumers.get_mut(&lease.consumer) {
            c.deliveries.remove(&id);
        }
        Some(lease)
    }

    /// Whether `token` is item `id`'s current, unexpired delivery.
    fn holds(&self, id: u64, token: FencingToken, now: Instant) -> bool {
        self.items.get(&id).is_some_and(|item| {
            matches!(&item.place, Place::InFlight(l) if l.token == token && l.deadline > now)
        })
    }

    /// Item `id` (out of every index) moves to dead with `reason` (rule 8).
    fn kill(&mut self, id: u64, reason: String, step: &Step) {
        let item = self.items.remove(&id).expect("a live item");
        self.last_death += 1;
        let seq = self.last_death;
        let dead = Dead {
            payload: item.payload,
            priority: item.priority,
            max_attempts: item.max_attempts,
            attempts: item.attempts,
            reason,
            died_at: step.wall,
            seq,
        };
        self.dead.insert(id, dead);
        self.deaths.insert(seq, id);
        self.counts.dead_lettered += 1;
        while self.dead.len() > MAX_DEAD_KEPT
            && let Some((_, oldest)) = self.deaths.pop_first()
        {
            self.dead.remove(&oldest);
        }
    }

    /// Rule 6: item `id`'s delivery ends and the item is returned: a
    /// prefetched one is ready again; a started one on its last attempt
    /// dies with `reason`; any other is ready again after `retry`. `None`
    /// if it was not in flight.
    fn give_back(
        &mut self,
        id: u64,
        reason: &str,
        retry: Duration,
        step: &mut Step,
    ) -> Option<Nack> {
        let lease = self.unlease(id)?;
        let item = &self.items[&id];
        if lease.started && item.attempts >= item.max_attempts {
            self.kill(id, reason.to_owned(), step);
            return Some(Nack::DeadLettered);
        }
        if lease.started && !retry.is_zero() {
            self.place_delayed(id, step.now + retry, step);
        } else {
            self.place_ready(id, step);
        }
        Some(Nack::Requeued)
    }

    /// Forgets `consumer` (already out of the presence index) and returns
    /// each of its deliveries; how many.
    fn forget_consumer(&mut self, consumer: &HolderId, step: &mut Step) -> u32 {
        let Some(c) = self.consumers.remove(consumer) else {
            return 0;
        };
        let back = |id: &u64| self.give_back(*id, CONSUMER_GONE, Duration::ZERO, step);
        c.deliveries.iter().filter_map(back).count() as u32
    }

    /// Sets `consumer`'s presence deadline to `until`, registering it if
    /// it is not known.
    fn renew_presence(&mut self, consumer: &HolderId, until: Instant) {
        let c = (self.consumers)
            .entry(consumer.clone())
            .or_insert_with(|| Consumer {
                presence: until,
                deliveries: BTreeSet::new(),
            });
        self.presence.remove(&(c.presence, consumer.clone()));
        c.presence = until;
        self.presence.insert((until, consumer.clone()));
    }

    // The steps.

    /// Rule 1: delayed items whose time came are made ready, dedup windows
    /// that ended are forgotten, and expired deliveries and every delivery
    /// of a consumer whose presence expired are returned, in the order of
    /// those instants (a delivery's deadline before a presence ending at
    /// the same instant).
    pub(super) fn sweep(&mut self, step: &mut Step) {
        let now = step.now;
        while let Some(&(due, id)) = self.delayed.first()
            && due <= now
        {
            self.delayed.pop_first();
            self.place_ready(id, step);
        }
        while let Some((end, _)) = self.dedup_ends.first()
            && *end <= now
        {
            let (_, key) = self.dedup_ends.pop_first().expect("first");
            if self.dedup.get(&key).is_some_and(|&(_, end)| end <= now) {
                self.dedup.remove(&key);
            }
        }
        loop {
            let lease = self.leases.first().copied().filter(|&(at, _)| at <= now);
            let gone = self
                .presence
                .first()
                .map(|(at, _)| *at)
                .filter(|&at| at <= now);
            match (lease, gone) {
                (Some((at, id)), gone) if gone.is_none_or(|g| at <= g) => {
                    self.give_back(id, LEASE_EXPIRED, Duration::ZERO, step);
                }
                (_, Some(_)) => {
                    let (_, consumer) = self.presence.pop_first().expect("first");
                    self.forget_consumer(&consumer, step);
                }
                _ => break,
            }
        }
        self.touched = now;
    }

    /// Rule 2.
    pub(super) fn push(&mut self, items: Vec<NewItem>, step: &mut Step) -> Vec<Pushed> {
        let mut out = Vec::with_capacity(items.len());
        for new in items {
            if let Some((key, _)) = &new.dedup
                && let Some(&(first, _)) = self.dedup.get(key)
            {
                // Live: the sweep forgot the windows that ended.
                out.push(Pushed::Duplicate(first));
                continue;
            }
            self.last_id += 1;
            let id = self.last_id;
            if let Some((key, window)) = new.dedup {
                let end = step.now + window;
                self.dedup_ends.insert((end, key.clone()));
                self.dedup.insert(key, (id, end));
            }
            let item = Item {
                payload: new.payload,
                priority: new.priority,
                max_attempts: new.max_attempts,
                attempts: 0,
                place: Place::Ready,
            };
            self.items.insert(id, item);
            match new.delay.filter(|d| !d.is_zero()) {
                Some(delay) => self.place_delayed(id, step.now + delay, step),
                None => self.place_ready(id, step),
            }
            out.push(Pushed::Pushed(id));
        }
        out
    }

    /// Item `id` (out of every index) is delivered to `consumer`: started
    /// or prefetched, stolen or not.
    fn deliver(
        &mut self,
        id: u64,
        consumer: &HolderId,
        (ttl, receive_id): (Duration, u64),
        (started, stolen): (bool, bool),
        step: &Step,
    ) -> Delivery {
        let token = FencingToken::next_after_micros(self.last_token, step.wall_us);
        self.last_token = token.get();
        let deadline = step.now + ttl;
        let item = self.items.get_mut(&id).expect("a live item");
        self.counts.delivered += 1;
        if item.attempts > 0 {
            self.counts.redelivered += 1;
        }
        if stolen {
            self.counts.stolen += 1;
        }
        if started {
            item.attempts += 1;
        } else {
            self.prefetched.insert((item.rank(), id));
        }
        let attempt = if started {
            item.attempts
        } else {
            item.attempts + 1
        };
        item.place = Place::InFlight(Lease {
            token,
            consumer: consumer.clone(),
            deadline,
            started,
            receive_id,
        });
        self.leases.insert((deadline, id));
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.deliveries.insert(id);
        }
        let mut d = Delivery::new(id, item.payload.clone(), attempt, item.max_attempts, token);
        d.started = started;
        d.stolen = stolen;
        d.priority = item.priority;
        d
    }

    /// Rule 3.
    pub(super) fn receive(
        &mut self,
        consumer: &HolderId,
        opts: ReceiveOptions,
        step: &mut Step,
    ) -> Received {
        self.renew_presence(consumer, step.now + opts.presence_ttl);
        let max = opts.max as usize;
        let lease = (opts.ttl, opts.receive_id);
        let mut out = Vec::new();
        while out.len() < max
            && let Some((_, id)) = self.ready.pop_first()
        {
            let how = (out.is_empty(), false);
            out.push(self.deliver(id, consumer, lease, how, step));
        }
        if out.is_empty() && opts.steal {
            let theirs = |id: &u64| match &self.items[id].place {
                Place::InFlight(l) => l.consumer != *consumer,
                _ => false,
            };
            let victims: Vec<u64> = (self.prefetched.iter())
                .map(|&(_, id)| id)
                .filter(theirs)
                .take(max)
                .collect();
            for id in victims {
                self.unlease(id);
                let how = (out.is_empty(), true);
                out.push(self.deliver(id, consumer, lease, how, step));
            }
        }
        let next_in = if out.is_empty() {
            let due = self.delayed.first().map(|&(at, _)| at);
            let deadline = self.leases.first().map(|&(at, _)| at);
            // A consumer holding deliveries that dies gives them back then.
            let holding = (self.presence.iter())
                .find(|(_, h)| {
                    self.consumers
                        .get(h)
                        .is_some_and(|c| !c.deliveries.is_empty())
                })
                .map(|&(at, _)| at);
            let next = [due, deadline, holding].into_iter().flatten().min();
            next.map(|at| at.saturating_duration_since(step.now))
        } else {
            None
        };
        Received::new(out, next_in)
    }

    /// Rule 4.
    pub(super) fn extend(
        &mut self,
        id: u64,
        token: FencingToken,
        ttl: Duration,
        now: Instant,
    ) -> Settle {
        if !self.holds(id, token, now) {
            return Settle::Stale;
        }
        let deadline = now + ttl;
        let item = self.items.get_mut(&id).expect("held");
        let rank = item.rank();
        let Place::InFlight(lease) = &mut item.place else {
            unreachable!("held");
        };
        self.leases.remove(&(lease.deadline, id));
        self.leases.insert((deadline, id));
        lease.deadline = deadline;
        if !lease.started {
            lease.started = true;
            item.attempts += 1;
            self.prefetched.remove(&(rank, id));
        }
        Settle::Done
    }

    /// Rule 5's ack.
    pub(super) fn ack(&mut self, id: u64, token: FencingToken, now: Instant) -> Settle {
        if !self.holds(id, token, now) {
            return Settle::Stale;
        }
        self.unlease(id);
        self.items.remove(&id);
        Settle::Done
    }

    /// Rules 5 and 6's nack.
    pub(super) fn nack(
        &mut self,
        id: u64,
        token: FencingToken,
        error: &str,
        retry: Duration,
        step: &mut Step,
    ) -> Nack {
        if !self.holds(id, token, step.now) {
            return Nack::Stale;
        }
        self.give_back(id, error, retry, step).expect("held")
    }

    /// Rule 5's dead-letter.
    pub(super) fn dead_letter(
        &mut self,
        id: u64,
        token: FencingToken,
        reason: String,
        step: &mut Step,
    ) -> Settle {
        if !self.holds(id, token, step.now) {
            return Settle::Stale;
        }
        self.unlease(id);
        self.kill(id, reason, step);
        Settle::Done
    }

    /// Rule 7's heartbeat.
    pub(super) fn heartbeat(&mut self, consumer: &HolderId, ttl: Duration, now: Instant) {
        self.renew_presence(consumer, now + ttl);
    }

    /// Rule 7's leave.
    pub(super) fn leave(&mut self, consumer: &HolderId, step: &mut Step) -> u32 {
        let Some(c) = self.consumers.get(consumer) else {
            return 0;
        };
        self.presence.remove(&(c.presence, consumer.clone()));
        self.forget_consumer(consumer, step)
    }

    /// Rule 7's give-back: every current, unexpired (the sweep returned the
    /// expired ones) delivery of receive `receive_id` to `consumer` is ready
    /// again as if never made, its start's attempt taken back; how many.
    pub(super) fn give_back_receive(
        &mut self,
        consumer: &HolderId,
        receive_id: u64,
        step: &mut Step,
    ) -> u32 {
        let Some(c) = self.consumers.get(consumer).filter(|_| receive_id != 0) else {
            return 0;
        };
        let theirs = |id: &&u64| matches!(&self.items[*id].place, Place::InFlight(l) if l.receive_id == receive_id);
        let ids: Vec<u64> = c.deliveries.iter().filter(theirs).copied().collect();
        for &id in &ids {
            let lease = self.unlease(id).expect("in flight");
            let item = self.items.get_mut(&id).expect("a live item");
            if lease.started {
                item.attempts -= 1;
            }
            self.place_ready(id, step);
        }
        ids.len() as u32
    }

    /// Rule 8's listing.
    pub(super) fn dead_items(&self, after: u64, limit: u32) -> Vec<DeadItem> {
        (self.dead.range((Bound::Excluded(after), Bound::Unbounded)))
            .take(limit as usize)
            .map(|(&id, d)| {
                DeadItem::new(
                    id,
                    d.payload.clone(),
                    d.attempts,
                    d.reason.clone(),
                    d.died_at,
                )
            })
            .collect()
    }

    /// Rule 8's requeue: ready again, with its id and no attempt.
    pub(super) fn requeue_dead(&mut self, id: u64, step: &mut Step) -> bool {
        let Some(d) = self.dead.remove(&id) else {
            return false;
        };
        self.deaths.remove(&d.seq);
        let item = Item {
            payload: d.payload,
            priority: d.priority,
            max_attempts: d.max_attempts,
            attempts: 0,
            place: Place::Ready,
        };
        self.items.insert(id, item);
        self.place_ready(id, step);
        true
    }

    /// Rule 8's removal.
    pub(super) fn remove_dead(&mut self, id: u64) -> bool {
        let Some(d) = self.dead.remove(&id) else {
            return false;
        };
        self.deaths.remove(&d.seq);
        true
    }

    /// The queue's counts; live consumers by presence deadline, earliest
    /// first.
    pub(super) fn stats(&self) -> QueueStats {
        let mut s = QueueStats::default();
        s.ready = self.ready.len() as u64;
        s.delayed = self.delayed.len() as u64;
        s.in_flight = self.leases.len() as u64;
        s.dead = self.dead.len() as u64;
        s.consumers = self.presence.iter().map(|(_, h)| *h.instance()).collect();
        s.delivered = self.counts.delivered;
        s.redelivered = self.counts.redelivered;
        s.stolen = self.counts.stolen;
        s.dead_lettered = self.counts.dead_lettered;
        s
    }
}

/// A live delivery, as operations list it.
pub(super) struct Live<'a> {
    pub(super) id: u64,
    pub(super) consumer: &'a HolderId,
    pub(super) token: FencingToken,
    pub(super) started: bool,
    pub(super) deadline: Instant,
}

// What operations see and do (`OpsBackend`): a delivery is a lease.
impl Queue {
    /// The deliveries live at `now` (of `item` only, when named): before
    /// their deadline, to a consumer whose presence has not ended (the next
    /// step's sweep returns the others), by deadline (read from the index
    /// of deliveries: the items not in flight are not looked at).
    pub(super) fn live(&self, item: Option<u64>, now: Instant) -> impl Iterator<Item = Live<'_>> {
        let in_flight: Box<dyn Iterator<Item = u64> + '_> = match item {
            Some(id) => Box::new(std::iter::once(id)),
            None => Box::new(self.leases.iter().map(|&(_, id)| id)),
        };
        in_flight.filter_map(move |id| {
            let Place::InFlight(l) = &self.items.get(&id)?.place else {
                return None;
            };
            let present = (self.consumers.get(&l.consumer)).is_some_and(|c| c.presence > now);
            (l.deadline > now && present).then_some(Live {
                id,
                consumer: &l.consumer,
                token: l.token,
                started: l.started,
                deadline: l.deadline,
            })
        })
    }

    /// An operator's revocation of item `id`'s delivery `token`: the item
    /// is returned as by an expiry (rule 6), its error
    /// [`REVOKED`](coord_api::spi::queues::REVOKED). The consumer it was
    /// delivered to, or the token of the item's live delivery (none: not
    /// in flight) when that is not `token`.
    pub(super) fn revoke(
        &mut self,
        id: u64,
        token: FencingToken,
        step: &mut Step,
    ) -> Result<HolderId, Vec<FencingToken>> {
        if !self.holds(id, token, step.now) {
            return Err(self.live(Some(id), step.now).map(|l| l.token).collect());
        }
        let Place::InFlight(lease) = &self.items[&id].place else {
            unreachable!("held")
        };
        let consumer = lease.consumer.clone();
        self.give_back(id, REVOKED, Duration::ZERO, step);
        Ok(consumer)
    }
}

#[cfg(test)]
impl Queue {
    /// Dedup keys remembered, in the map and in the queue of window ends.
    pub(super) fn dedup_keys(&self) -> (usize, usize) {
        (self.dedup.len(), self.dedup_ends.len())
    }
}
