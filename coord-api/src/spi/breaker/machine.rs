//! The breaker's record and its rules, as a pure state machine on the
//! backend's clock (µs): what the memory backend runs under its lock, the
//! client's local fallback runs on the local clock, and the Redis script
//! mirrors. Each method is one step of the module's rules; the caller
//! sweeps first (rule 2) and wakes the watchers when the generation changed
//! (rule 10).

use std::collections::{BTreeMap, VecDeque};

use super::{
    Action, BreakerState, Cause, Manual, Phase, Policy, TRANSITIONS_KEPT, Tally, Transition,
    window::{Window, rates_reached},
};
use crate::FencingToken;

/// One breaker's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    generation: u64,
    phase: Phase,
    policy: Policy,
    window: Window,
    /// Opens since the breaker last closed.
    opens: u32,
    open_until_us: u64,
    /// Live trials: holder → lease deadline.
    trials: BTreeMap<String, u64>,
    trials_done: Tally,
    /// The last trial token given.
    token: u64,
    /// Instances that reported failures or slow calls: instance → when,
    /// last.
    failing: BTreeMap<String, u64>,
    manual: Option<Manual>,
    log: VecDeque<Transition>,
    /// The generation of the last transition dropped from the log.
    floor: u64,
    /// The generation it was born with: which record it is.
    born: u64,
}

impl Record {
    /// A breaker born closed at `now_us` under `policy` (rule 1).
    pub fn born(policy: Policy, now_us: u64) -> Record {
        let generation = FencingToken::next_after_micros(0, now_us).get();
        Record {
            generation,
            phase: Phase::Closed,
            policy,
            window: Window::new(),
            opens: 0,
            open_until_us: 0,
            trials: BTreeMap::new(),
            trials_done: Tally::default(),
            token: 0,
            failing: BTreeMap::new(),
            manual: None,
            log: VecDeque::new(),
            floor: 0,
            born: generation,
        }
    }

    /// A breaker born open at `now_us` under `policy` until `until_us` (its
    /// first open; half-open at the first sweep if that has passed): a
    /// client's local fallback taking over from a shared breaker last seen
    /// open or half-open keeps the open time left and then lets its trials
    /// decide, rather than admitting every call as one born closed would.
    pub fn born_open(policy: Policy, until_us: u64, now_us: u64) -> Record {
        let mut r = Record::born(policy, now_us);
        (r.phase, r.opens, r.open_until_us) = (Phase::Open, 1, until_us);
        r
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Rule 2: the window's old buckets, an open time passed, trials past
    /// their deadline, failure reports past the quorum span.
    pub fn sweep(&mut self, now_us: u64) {
        self.window.expire(self.policy.window, now_us);
        self.trials.retain(|_, deadline| *deadline > now_us);
        let span = self.policy.quorum_span.as_micros() as u64;
        self.failing
            .retain(|_, at| at.saturating_add(span) > now_us);
        if self.phase == Phase::Open && now_us >= self.open_until_us {
            self.transition(Phase::HalfOpen, Cause::OpenElapsed, now_us);
        }
    }

    /// Rule 3: counts `tally` from `instance` if `generation` is current
    /// and the breaker closed; opens it if the window trips. Whether
    /// counted.
    pub fn report(&mut self, generation: u64, instance: &str, tally: Tally, now_us: u64) -> bool {
        if generation != self.generation || self.phase != Phase::Closed {
            return false;
        }
        self.window.add(self.policy.window, tally, now_us);
        if tally.failures > 0 || tally.slow > 0 {
            self.failing.insert(instance.to_owned(), now_us);
        }
        let quorum =
            self.policy.quorum <= 1 || self.failing.len() as u64 >= u64::from(self.policy.quorum);
        if self.window.trips(&self.policy) && quorum {
            let counted = self.window.total();
            self.transition(Phase::Open, Cause::Tripped(counted), now_us);
        }
        true
    }

    /// Rule 5: a trial lease for `holder` until `now_us + ttl_us`, if
    /// half-open with a free slot (a holder asking again renews its own);
    /// its token.
    pub fn trial(&mut self, holder: &str, ttl_us: u64, now_us: u64) -> Option<FencingToken> {
        if self.phase != Phase::HalfOpen {
            return None;
        }
        let taken = self.trials.len() as u64 + self.trials_done.calls;
        if !self.trials.contains_key(holder) && taken >= u64::from(self.policy.trials) {
            return None;
        }
        self.trials
            .insert(holder.to_owned(), now_us.saturating_add(ttl_us.max(1)));
        let token = FencingToken::next_after_micros(self.token.max(self.generation), now_us);
        self.token = token.get();
        Some(token)
    }

    /// Rule 5's renewal of a shared trial: [`trial`](Self::trial) only
    /// while `generation` is the current one and `holder` still holds a
    /// live trial in it. A renewal never takes a slot: not one of a later
    /// half-open generation (where its outcome, tagged with its own
    /// generation, would never count), nor the one its own trial's end
    /// freed (a renewal sent before that end and answered after it), nor a
    /// lapsed one ([`renew_trial`](Self::renew_trial)'s rule, the local
    /// breaker's).
    pub fn trial_in(
        &mut self,
        generation: u64,
        holder: &str,
        ttl_us: u64,
        now_us: u64,
    ) -> Option<FencingToken> {
        if generation != self.generation || !self.trials.contains_key(holder) {
            return None;
        }
        self.trial(holder, ttl_us, now_us)
    }

    /// Rule 5's renewal alone: moves `holder`'s live trial lease to
    /// `now_us + ttl_us`; whether it had one (a lapsed trial is not taken
    /// again by its renewal).
    pub fn renew_trial(&mut self, holder: &str, ttl_us: u64, now_us: u64) -> bool {
        match self.trials.get_mut(holder) {
            Some(deadline) => {
                *deadline = now_us.saturating_add(ttl_us.max(1));
                true
            }
            None => false,
        }
    }

    /// Rule 6: ends `holder`'s trial of `generation` with `outcome`; once
    /// every trial is counted, closes or opens again. Whether counted.
    pub fn trial_done(
        &mut self,
        generation: u64,
        holder: &str,
        outcome: Tally,
        now_us: u64,
    ) -> bool {
        if generation != self.generation || self.trials.remove(holder).is_none() {
            return false;
        }
        self.trials_done = self.trials_done.plus(outcome);
        if self.trials_done.calls >= u64::from(self.policy.trials) {
            let done = self.trials_done;
            if rates_reached(done, &self.policy) {
                self.transition(Phase::Open, Cause::TrialsFailed(done), now_us);
            } else {
                self.transition(Phase::Closed, Cause::TrialsPassed(done), now_us);
            }
        }
        true
    }

    /// Rule 6's give-back: releases `holder`'s live trial of `generation`,
    /// the current one, counting nothing (its slot is free again); whether
    /// it held one.
    pub fn give_back_trial(&mut self, generation: u64, holder: &str) -> bool {
        generation == self.generation && self.trials.remove(holder).is_some()
    }

    /// Rule 8: a manual action; a reset adopts `policy`.
    pub fn manual(&mut self, action: Action, by: &str, why: &str, policy: Policy, now_us: u64) {
        let at_us = FencingToken::next_after_micros(0, now_us).get();
        let manual = Manual::new(action, by.to_owned(), why.to_owned(), at_us);
        self.manual = Some(manual.clone());
        let to = match action {
            Action::ForceOpen => Phase::ForcedOpen,
            Action::Disable => Phase::Disabled,
            Action::Reset => {
                self.policy = policy;
                Phase::Closed
            }
        };
        self.transition(to, Cause::Manual(manual), now_us);
    }

    /// Rule 7.
    fn transition(&mut self, to: Phase, cause: Cause, now_us: u64) {
        let from = self.phase;
        self.generation = FencingToken::next_after_micros(self.generation, now_us).get();
        self.phase = to;
        self.window = Window::new();
        self.trials.clear();
        self.trials_done = Tally::default();
        self.failing.clear();
        match to {
            Phase::Open => {
                self.opens = self.opens.saturating_add(1);
                self.open_until_us = now_us.saturating_add(self.open_time_us());
            }
            Phase::Closed => self.opens = 0,
            _ => {}
        }
        let t = Transition::new(self.generation, from, to, cause, now_us);
        self.log.push_back(t);
        while self.log.len() > TRANSITIONS_KEPT {
            let dropped = self.log.pop_front().expect("longer than kept");
            self.floor = dropped.generation;
        }
    }

    /// Rule 4: `open_for * 2^(opens - 1)`, at most `max_open_for`.
    fn open_time_us(&self) -> u64 {
        let base = self.policy.open_for.as_micros() as u64;
        let max = self.policy.max_open_for.as_micros() as u64;
        let doublings = self.opens.saturating_sub(1).min(40);
        base.saturating_mul(1u64 << doublings).min(max)
    }

    /// Rule 9: the state at `now_us`, with the transitions after `seen`.
    pub fn state(&self, seen: u64, now_us: u64) -> BreakerState {
        let mut s = BreakerState::new(self.generation, self.phase, self.policy);
        if self.phase == Phase::Open {
            let left = self.open_until_us.saturating_sub(now_us);
            s.retry_after = Some(std::time::Duration::from_micros(left));
        }
        s.window = self.window.total();
        s.trials_live = self.trials.len() as u32;
        s.trials_done = self.trials_done;
        s.opens = self.opens;
        s.manual = self.manual.clone();
        s.transitions = (self.log.iter())
            .filter(|t| t.generation > seen)
            .cloned()
            .collect();
        s.kept_after = self.floor;
        s.born = self.born;
        s
    }
}

#[cfg(test)]
#[path = "sequences.rs"]
mod sequences;
