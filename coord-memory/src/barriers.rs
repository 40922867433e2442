//! Barriers and latches, under one lock of their own: a barrier's trip, its
//! expiries and the end of its generation are decided in one step, and the
//! journal is told in that step's order.
//!
//! Generations follow the fencing-token rule on the store's wall clock (a
//! record made anew starts at the wall clock, every later generation is
//! strictly above the one before), so they keep increasing across a store
//! that lost the record.

use std::{
    collections::{HashMap, VecDeque},
    mem,
    time::Duration,
};

use async_trait::async_trait;
use coord_api::{
    Error, FencingToken, Instant, Key, Namespace, Result,
    spi::{
        ArrivalInfo, Arrive, BarrierBackend, BarrierKind, BarrierState, Break, BreakReason, Broken,
        CountDown, ENDED_KEPT, Ended, EndedGeneration, LATCH_SETS_KEPT, LatchSet, LatchState,
        Leave, MAX_LATCH_COUNT, MAX_PARTIES, Trip, Watch,
    },
};

use crate::{BarrierEvent, Event, Journal, MemoryBackend, watch::Topic};

/// Every barrier and latch of a store.
#[derive(Default)]
pub(crate) struct Barriers {
    barriers: HashMap<(Namespace, BarrierKind, Key), Record>,
    latches: HashMap<(Namespace, Key), Latch>,
    /// The size at which stale records are swept next.
    sweep_at: usize,
}

/// One barrier: its current generation and how the last ones ended.
struct Record {
    generation: u64,
    parties: Option<u32>,
    /// Live arrivals, in arrival order (the members inside, once a double
    /// barrier's generation entered).
    arrivals: Vec<Arrival>,
    /// Who arrived in this generation, expired, and did not arrive again:
    /// what a break names as crashed.
    expired: Vec<Key>,
    /// A double barrier's trip, while its members are inside.
    entered: Option<Trip>,
    /// Newest first, at most [`ENDED_KEPT`].
    ended: VecDeque<EndedGeneration>,
    /// The last operation on it, for the sweep.
    touched: Instant,
}

struct Arrival {
    participant: Key,
    deadline: Instant,
    /// The wait that arrived last (a leave naming another changes nothing).
    id: u64,
}

/// One latch. Past its deadline it is absent to every operation, but kept
/// (until swept) so that setting it again draws a generation above its own.
struct Latch {
    generation: u64,
    first_generation: u64,
    initial: u32,
    remaining: u32,
    /// Who counted the generation, each with the call that counted it (0:
    /// none named).
    counted: HashMap<Key, u64>,
    /// The generation before this one in the record's life and the calls
    /// that counted it (named ones only): their retries count nothing.
    counted_before: Option<(u64, HashMap<Key, u64>)>,
    deadline: Instant,
    /// The id of the call that set the generation (0: none).
    set_id: u64,
    /// The ids of the calls that set the generations before it in this
    /// record's life, with their generations, oldest first (at most
    /// `LATCH_SETS_KEPT - 1`).
    past_sets: VecDeque<(u64, u64)>,
}

/// One operation on a barrier's record: the record's name for the journal,
/// the instant it runs at, and whether watchers must be told afterwards.
struct Step<'a> {
    kind: BarrierKind,
    name: &'a Key,
    now: Instant,
    wall_us: u64,
    journal: Option<&'a dyn Journal>,
    notify: bool,
}

impl Step<'_> {
    fn record(&self, event: BarrierEvent<'_>) {
        if let Some(j) = self.journal {
            j.record(Event::Barrier(event));
        }
    }

    /// The generation after `g`: the token rule at this step's wall time.
    fn next_gen(&self, g: u64) -> u64 {
        FencingToken::next_after_micros(g, self.wall_us).get()
    }
}

impl Record {
    fn new(step: &Step<'_>) -> Record {
        Record {
            generation: step.next_gen(0),
            parties: None,
            arrivals: Vec::new(),
            expired: Vec::new(),
            entered: None,
            ended: VecDeque::new(),
            touched: step.now,
        }
    }

    /// Drops the arrivals whose deadline passed, remembering them as
    /// expired; a double barrier whose members are all gone has ended.
    fn purge(&mut self, step: &mut Step<'_>) {
        let (g, now) = (self.generation, step.now);
        let mut gone = Vec::new();
        self.arrivals.retain(|a| {
            let live = a.deadline > now;
            if !live {
                gone.push((a.deadline, a.participant.clone()));
            }
            live
        });
        // By deadline, then arrival order (the sort is stable), as every
        // backend orders them.
        gone.sort_by_key(|(deadline, _)| *deadline);
        for (_, participant) in gone {
            step.record(BarrierEvent::Expired {
                kind: step.kind,
                barrier: step.name,
                participant: &participant,
                generation: g,
            });
            if !self.expired.contains(&participant) {
                self.expired.push(participant);
            }
        }
        self.end_if_emptied(step);
        self.touched = now;
    }

    /// Ends a double barrier's entered generation once nobody is inside.
    fn end_if_emptied(&mut self, step: &mut Step<'_>) -> Option<EndedGeneration> {
        if !self.arrivals.is_empty() {
            return None;
        }
        let trip = self.entered.take()?;
        Some(self.end(Ended::Tripped(trip), step))
    }

    /// Ends the current generation `how` and begins the next, empty.
    fn end(&mut self, how: Ended, step: &mut Step<'_>) -> EndedGeneration {
        let next = step.next_gen(self.generation);
        self.ended
            .push_front(EndedGeneration::new(self.generation, next, how));
        self.ended.truncate(ENDED_KEPT);
        self.generation = next;
        self.parties = None;
        self.arrivals.clear();
        self.expired.clear();
        self.entered = None;
        step.notify = true;
        let ended = &self.ended[0];
        step.record(BarrierEvent::Ended {
            kind: step.kind,
            barrier: step.name,
            generation: ended.generation,
            ended,
        });
        ended.clone()
    }

    /// How generation `g` ended, if it is remembered.
    fn ended_of(&self, g: u64) -> Option<&EndedGeneration> {
        self.ended.iter().find(|e| e.generation == g)
    }

    fn arrival_mut(&mut self, participant: &Key) -> Option<&mut Arrival> {
        self.arrivals
            .iter_mut()
            .find(|a| a.participant == *participant)
    }

    fn participants(&self) -> Vec<Key> {
        self.arrivals
            .iter()
            .map(|a| a.participant.clone())
            .collect()
    }

    fn arrive(
        &mut self,
        step: &mut Step<'_>,
        participant: &Key,
        g: u64,
        parties: u32,
        ttl: Duration,
        id: u64,
    ) -> Arrive {
        if g != self.generation {
            return match self.ended_of(g) {
                Some(e) => Arrive::Ended(e.clone()),
                None => Arrive::Stale {
                    current: self.generation,
                },
            };
        }
        if let Some(n) = self.parties.filter(|&n| n != parties) {
            return Arrive::PartiesDiffer { parties: n };
        }
        let deadline = step.now + ttl;
        if let Some(trip) = self.entered.clone() {
            // Inside, an arrival only renews; nobody new gets in.
            return match self.arrival_mut(participant) {
                Some(a) => {
                    (a.deadline, a.id) = (deadline, id);
                    Arrive::Entered(trip)
                }
                None => Arrive::Full { parties },
            };
        }
        match self.arrival_mut(participant) {
            Some(a) => (a.deadline, a.id) = (deadline, id),
            None => self.count(step, participant, deadline, id),
        }
        self.parties = Some(parties);
        if self.arrivals.len() < parties as usize {
            return Arrive::Waiting {
                arrived: self.arrivals.len() as u32,
            };
        }
        let trip =
            Trip::new(participant.clone(), self.participants()).with_expired(self.expired.clone());
        if step.kind == BarrierKind::Double {
            Arrive::Entered(self.enter(step, trip))
        } else {
            Arrive::Ended(self.end(Ended::Tripped(trip), step))
        }
    }

    /// Counts a new arrival of `participant`.
    fn count(&mut self, step: &Step<'_>, participant: &Key, deadline: Instant, id: u64) {
        self.arrivals.push(Arrival {
            participant: participant.clone(),
            deadline,
            id,
        });
        self.expired.retain(|p| p != participant);
        step.record(BarrierEvent::Arrived {
            kind: step.kind,
            barrier: step.name,
            participant,
            generation: self.generation,
        });
    }

    /// A double barrier's generation trips: its arrivals are inside.
    fn enter(&mut self, step: &mut Step<'_>, trip: Trip) -> Trip {
        let entered = self.entered.insert(trip);
        step.notify = true;
        step.record(BarrierEvent::Entered {
            barrier: step.name,
            generation: self.generation,
            trip: entered,
        });
        entered.clone()
    }

    fn renew(&mut self, step: &Step<'_>, participant: &Key, g: u64, ttl: Duration) -> bool {
        if g != self.generation {
            return false;
        }
        match self.arrival_mut(participant) {
            Some(a) => {
                a.deadline = step.now + ttl;
                true
            }
            None => false,
        }
    }

    fn leave(&mut self, step: &mut Step<'_>, participant: &Key, g: u64, id: u64) -> Leave {
        let at = (self.arrivals.iter()).position(|a| a.participant == *participant && a.id == id);
        let Some(at) = at.filter(|_| g == self.generation) else {
            return Leave::NotThere;
        };
        // A withdrawal, not an expiry: a break will not name it.
        self.arrivals.remove(at);
        step.record(BarrierEvent::Left {
            kind: step.kind,
            barrier: step.name,
            participant,
            generation: g,
        });
        let remaining = self.arrivals.len() as u32;
        self.end_if_emptied(step);
        Leave::Left { remaining }
    }

    fn break_generation(
        &mut self,
        step: &mut Step<'_>,
        g: Option<u64>,
        reason: BreakReason,
    ) -> Break {
        let g = g.unwrap_or(self.generation);
        if g != self.generation {
            return match self.ended_of(g) {
                Some(e) => Break::Ended(e.clone()),
                None => Break::Unknown {
                    current: self.generation,
                },
            };
        }
        if let Some(trip) = &self.entered
            && matches!(reason, BreakReason::Timeout { .. })
        {
            return Break::Entered(trip.clone());
        }
        let missing = match self.entered {
            Some(_) => 0,
            None => (self.parties.unwrap_or(0)).saturating_sub(self.arrivals.len() as u32),
        };
        let broken = Broken::new(
            reason,
            self.participants(),
            mem::take(&mut self.expired),
            missing,
        );
        Break::Ended(self.end(Ended::Broken(broken), step))
    }

    fn state(&self, now: Instant, asked: Option<u64>) -> BarrierState {
        BarrierState::new(
            self.generation,
            self.parties,
            self.entered.clone(),
            (self.arrivals.iter())
                .map(|a| {
                    ArrivalInfo::new(
                        a.participant.clone(),
                        a.deadline.saturating_duration_since(now),
                    )
                })
                .collect(),
            (asked.filter(|&g| g != self.generation))
                .and_then(|g| self.ended_of(g))
                .cloned(),
        )
    }

    /// Nothing live, and idle for a day: a record made again starts at the
    /// wall clock, a day past anything this one drew.
    fn stale(&self, now: Instant) -> bool {
        self.arrivals.is_empty()
            && self.entered.is_none()
            && now.saturating_duration_since(self.touched) > coord_api::MAX_TTL
    }
}

impl Latch {
    fn live(&self, now: Instant) -> bool {
        self.deadline > now
    }

    fn state(&self, now: Instant) -> LatchState {
        LatchState::new(
            self.generation,
            self.first_generation,
            self.initial,
            self.remaining,
            self.deadline.saturating_duration_since(now),
        )
    }

    /// The generation the call `set_id` set, if it is one of the last
    /// `LATCH_SETS_KEPT` settings (0 names no call).
    fn set_by(&self, set_id: u64) -> Option<u64> {
        if set_id == 0 {
            return None;
        }
        let now = std::iter::once((self.set_id, self.generation));
        let mut sets = self.past_sets.iter().copied().chain(now);
        sets.find(|&(id, _)| id == set_id).map(|(_, g)| g)
    }

    /// The settings a generation set after this one keeps: this one's
    /// (when it named its call) after those kept before it, the oldest
    /// dropped past `LATCH_SETS_KEPT - 1`.
    fn sets_before_next(&self) -> VecDeque<(u64, u64)> {
        let mut past = self.past_sets.clone();
        if self.set_id != 0 {
            past.push_back((self.set_id, self.generation));
        }
        while past.len() >= LATCH_SETS_KEPT {
            past.pop_front();
        }
        past
    }

    /// Gone for a day: a latch set again starts at the wall clock, a day
    /// past anything this one drew.
    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.deadline) > coord_api::MAX_TTL
    }
}

impl Barriers {
    /// Forgets stale records once the maps doubled since the last sweep.
    fn sweep(&mut self, now: Instant) {
        if self.barriers.len() + self.latches.len() < self.sweep_at.max(256) {
            return;
        }
        self.barriers.retain(|_, r| !r.stale(now));
        self.latches.retain(|_, l| !l.stale(now));
        self.sweep_at = (self.barriers.len() + self.latches.len()) * 2;
    }

    fn live_latch(&mut self, ns: &Namespace, name: &Key, now: Instant) -> Option<&mut Latch> {
        (self.latches.get_mut(&(ns.clone(), name.clone()))).filter(|l| l.live(now))
    }

    /// The earliest arrival deadline of the barrier after `after`.
    pub(crate) fn next_expiry(
        &self,
        ns: &Namespace,
        kind: BarrierKind,
        name: &Key,
        after: Instant,
    ) -> Option<Instant> {
        let r = self.barriers.get(&(ns.clone(), kind, name.clone()))?;
        (r.arrivals.iter().map(|a| a.deadline))
            .filter(|&d| d > after)
            .min()
    }

    /// The latch's deadline, if after `after`.
    pub(crate) fn latch_expiry(
        &self,
        ns: &Namespace,
        name: &Key,
        after: Instant,
    ) -> Option<Instant> {
        let l = self.latches.get(&(ns.clone(), name.clone()))?;
        Some(l.deadline).filter(|&d| d > after)
    }
}

impl MemoryBackend {
    fn step<'a>(&'a self, kind: BarrierKind, name: &'a Key) -> Step<'a> {
        let now = self.store.now();
        Step {
            kind,
            name,
            now,
            wall_us: self.store.inner.table.wall_us(now),
            journal: self.store.journal(),
            notify: false,
        }
    }

    /// Runs `op` on the barrier's record (made if missing, `None` when
    /// `create` is false and it is), purged first, under the lock; then tells
    /// the watchers if `op` ended a generation or entered one.
    fn on_record<T>(
        &self,
        kind: BarrierKind,
        name: &Key,
        create: bool,
        op: impl FnOnce(&mut Record, &mut Step<'_>) -> T,
    ) -> Option<T> {
        let mut step = self.step(kind, name);
        let out = {
            let mut b = self.store.barriers();
            if create {
                b.sweep(step.now);
            }
            let key = (self.ns.clone(), kind, name.clone());
            let record = if create {
                Some(b.barriers.entry(key).or_insert_with(|| Record::new(&step)))
            } else {
                b.barriers.get_mut(&key)
            };
            record.map(|r| {
                r.purge(&mut step);
                op(r, &mut step)
            })
        };
        if step.notify {
            self.store
                .notify(|| Topic::Barrier(self.ns.clone(), kind, name.clone()));
        }
        out
    }

    fn notify_latch(&self, name: &Key) {
        self.store
            .notify(|| Topic::Latch(self.ns.clone(), name.clone()));
    }
}

#[async_trait]
impl BarrierBackend for MemoryBackend {
    async fn state(
        &self,
        kind: BarrierKind,
        name: &Key,
        asked: Option<u64>,
    ) -> Result<BarrierState> {
        let state = self.on_record(kind, name, true, |r, step| r.state(step.now, asked));
        Ok(state.expect("made"))
    }

    async fn peek(&self, kind: BarrierKind, name: &Key) -> Result<Option<BarrierState>> {
        Ok(self.on_record(kind, name, false, |r, step| r.state(step.now, None)))
    }

    async fn arrive(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        parties: u32,
        ttl: Duration,
        arrival: u64,
    ) -> Result<Arrive> {
        coord_api::validate_ttl(name, ttl)?;
        if !(1..=MAX_PARTIES).contains(&parties) {
            return Err(Error::invalid(format!(
                "{} {:?} cannot wait for {parties} parties: parties are from 1 to {MAX_PARTIES}",
                kind.as_str(),
                name.as_str()
            )));
        }
        let arrive = self.on_record(kind, name, true, |r, step| {
            r.arrive(step, participant, generation, parties, ttl, arrival)
        });
        Ok(arrive.expect("made"))
    }

    async fn renew(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        ttl: Duration,
    ) -> Result<bool> {
        coord_api::validate_ttl(name, ttl)?;
        let renewed = self.on_record(kind, name, false, |r, step| {
            r.renew(step, participant, generation, ttl)
        });
        Ok(renewed.unwrap_or(false))
    }

    async fn leave(
        &self,
        kind: BarrierKind,
        name: &Key,
        participant: &Key,
        generation: u64,
        arrival: u64,
    ) -> Result<Leave> {
        let left = self.on_record(kind, name, false, |r, step| {
            r.leave(step, participant, generation, arrival)
        });
        Ok(left.unwrap_or(Leave::NotThere))
    }

    async fn break_generation(
        &self,
        kind: BarrierKind,
        name: &Key,
        generation: Option<u64>,
        reason: BreakReason,
    ) -> Result<Break> {
        let broken = self.on_record(kind, name, true, |r, step| {
            r.break_generation(step, generation, reason)
        });
        Ok(broken.expect("made"))
    }

    async fn watch(&self, kind: BarrierKind, name: &Key) -> Result<Box<dyn Watch>> {
        let topic = Topic::Barrier(self.ns.clone(), kind, name.clone());
        Ok(self.store.watch(topic))
    }

    async fn latch_set(
        &self,
        name: &Key,
        count: u32,
        ttl: Duration,
        set_id: u64,
    ) -> Result<LatchSet> {
        if !(1..=MAX_LATCH_COUNT).contains(&count) {
            return Err(Error::invalid(format!(
                "latch {:?} cannot count {count}: a count is from 1 to {MAX_LATCH_COUNT}",
                name.as_str()
            )));
        }
        coord_api::validate_ttl(name, ttl)?;
        let now = self.store.now();
        let wall_us = self.store.inner.table.wall_us(now);
        let generation = {
            let mut b = self.store.barriers();
            b.sweep(now);
            let slot = b.latches.get(&(self.ns.clone(), name.clone()));
            let live = slot.filter(|l| l.live(now));
            // A retry of the call that set this generation: answered as
            // that call was, changing nothing (also at zero).
            if let Some(generation) = live.and_then(|l| l.set_by(set_id)) {
                return Ok(LatchSet::Set { generation });
            }
            if let Some(l) = live.filter(|l| l.remaining > 0) {
                return Ok(LatchSet::Busy(l.state(now)));
            }
            // Set again at zero, the record's life goes on; expired, a new
            // one begins, above the old one's generations.
            let last = slot.map_or(0, |l| l.generation);
            let g = FencingToken::next_after_micros(last, wall_us).get();
            let (first_generation, past_sets, counted_before) = match live {
                Some(l) => {
                    let calls = (l.counted.iter())
                        .filter(|(_, call)| **call != 0)
                        .map(|(p, call)| (p.clone(), *call));
                    let before = (l.generation, calls.collect());
                    (l.first_generation, l.sets_before_next(), Some(before))
                }
                None => (g, VecDeque::new(), None),
            };
            let latch = Latch {
                generation: g,
                first_generation,
                initial: count,
                remaining: count,
                counted: HashMap::new(),
                counted_before,
                deadline: now + ttl,
                set_id,
                past_sets,
            };
            b.latches.insert((self.ns.clone(), name.clone()), latch);
            if let Some(j) = self.store.journal() {
                j.record(Event::Barrier(BarrierEvent::LatchSet {
                    latch: name,
                    generation: g,
                    count,
                }));
            }
            g
        };
        self.notify_latch(name);
        Ok(LatchSet::Set { generation })
    }

    async fn latch_count_down(
        &self,
        name: &Key,
        participant: &Key,
        generation: Option<u64>,
        call: u64,
    ) -> Result<CountDown> {
        let now = self.store.now();
        let counted = {
            let mut b = self.store.barriers();
            let Some(l) = b.live_latch(&self.ns, name, now) else {
                return Ok(CountDown::Absent);
            };
            // The retry of this participant's count of the generation
            // before: answered as that count was, at 0, counting nothing.
            if let Some((before, calls)) = &l.counted_before
                && call != 0
                && generation.is_none_or(|g| g == *before)
                && calls.get(participant) == Some(&call)
            {
                return Ok(CountDown::Already {
                    generation: *before,
                    remaining: 0,
                });
            }
            let g = generation.unwrap_or(l.generation);
            if g != l.generation {
                return Ok(CountDown::Stale {
                    current: l.generation,
                });
            }
            if l.remaining == 0 || l.counted.contains_key(participant) {
                return Ok(CountDown::Already {
                    generation: l.generation,
                    remaining: l.remaining,
                });
            }
            l.counted.insert(participant.clone(), call);
            l.remaining -= 1;
            if let Some(j) = self.store.journal() {
                j.record(Event::Barrier(BarrierEvent::CountedDown {
                    latch: name,
                    participant,
                    generation: l.generation,
                    remaining: l.remaining,
                }));
            }
            CountDown::Counted {
                generation: l.generation,
                remaining: l.remaining,
            }
        };
        if let CountDown::Counted { remaining: 0, .. } = counted {
            self.notify_latch(name);
        }
        Ok(counted)
    }

    async fn latch_state(&self, name: &Key) -> Result<Option<LatchState>> {
        let now = self.store.now();
        let mut b = self.store.barriers();
        Ok(b.live_latch(&self.ns, name, now).map(|l| l.state(now)))
    }

    async fn latch_watch(&self, name: &Key) -> Result<Box<dyn Watch>> {
        Ok(self
            .store
            .watch(Topic::Latch(self.ns.clone(), name.clone())))
    }
}

#[cfg(test)]
mod tests;
