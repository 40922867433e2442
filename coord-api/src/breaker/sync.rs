//! How one instance keeps its copy of a breaker: a background task (one per
//! handle and its clones, holding it weakly, so that it ends with them)
//! flushes the local tally every flush interval and re-reads the state when
//! the backend notifies a transition (a hint) and at the refresh interval
//! regardless; every reply updates the cached copy and tells the
//! transitions it carries. A retryable failure, or no successful read for
//! the maximum staleness, makes the backend unreachable until a reply comes
//! back; meanwhile the unreachable policy decides.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::*},
    },
    time::Duration,
};

use tokio::sync::broadcast;

use super::{
    BreakerEvent, Cache, CallPermit, Kind, UNKNOWN, Unreachable, code, metrics, options::Options,
};
use crate::{
    Client, Error, HolderId, Instant, Key, Result,
    spi::{
        Action, BreakerBackend, BreakerState, Phase, Policy, Tally, Trial, Watch, breaker::Record,
    },
    trace::{self, Outcome, Site},
};

/// Outcomes not yet flushed, of one generation.
#[derive(Debug, Default)]
struct Pending {
    generation: u64,
    tally: Tally,
}

/// What the replies decide, under one lock.
#[derive(Debug)]
struct Shared {
    /// The latest generation applied (0: nothing read yet).
    seen: u64,
    /// Which record `seen` is of: the generation it was born with (0: not
    /// read yet, or not told by the backend).
    born: u64,
    /// The tickets handed out when the last reply of that record arrived:
    /// a call of a later ticket ran after it on the backend, so a reply of
    /// another record to it is of one born since.
    known_at: u64,
    /// The policy in force on the backend (this handle's until read).
    in_force: Policy,
    last_ok: Option<Instant>,
    /// Tickets handed to calls as they are sent (in order).
    tickets: u64,
    /// The newest ticket whose call's reply was applied: a failure of an
    /// older call says nothing of the backend now.
    newest_ok: u64,
    /// The ticket whose failure made the backend unreachable: a success of
    /// an older call (sent before, answered after) says nothing of it now.
    lost_at: u64,
    /// The local breaker, while the backend is unreachable.
    local: Option<Record>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) name: Key,
    policy: Policy,
    pub(crate) opts: Options,
    pub(crate) base: Instant,
    pub(crate) cache: Cache,
    pending: Mutex<Pending>,
    /// Held by a flush from taking the tally until its reply: one report
    /// at a time, so a flush returns only once every outcome recorded
    /// before it was answered (not while a background flush that took
    /// them is still on its way), and reports arrive in the order taken.
    flushing: tokio::sync::Mutex<()>,
    shared: Mutex<Shared>,
    pub(crate) events: broadcast::Sender<BreakerEvent>,
    /// A trial is being asked for by a call of this instance.
    asking: AtomicBool,
    started: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn new(client: Client, name: Key, policy: Policy, opts: Options) -> Arc<Inner> {
        let base = client.clock().now();
        Arc::new(Inner {
            client,
            name,
            policy,
            opts,
            base,
            cache: Cache {
                phase: AtomicU8::new(UNKNOWN),
                generation: AtomicU64::new(0),
                open_until: AtomicU64::new(0),
                hold_until: AtomicU64::new(0),
                reachable: AtomicBool::new(true),
            },
            pending: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
            shared: Mutex::new(Shared {
                seen: 0,
                born: 0,
                known_at: 0,
                in_force: policy,
                last_ok: None,
                tickets: 0,
                newest_ok: 0,
                lost_at: 0,
                local: None,
            }),
            events: broadcast::channel(256).0,
            asking: AtomicBool::new(false),
            started: AtomicBool::new(false),
        })
    }

    /// Starts the background task once.
    pub(crate) fn start(self: &Arc<Self>) {
        if self.started.load(Relaxed) || self.started.swap(true, AcqRel) {
            return;
        }
        tokio::spawn(run(Arc::downgrade(self)));
    }

    fn backend(&self) -> Result<&dyn BreakerBackend> {
        self.client.breakers()
    }

    fn site(&self, op: &'static str) -> Site<'_> {
        Site {
            op,
            family: "breaker",
            kind: "",
            key: &self.name,
            holder: None,
            token: None,
        }
    }

    /// Runs a backend call in its span, for at most the backend timeout.
    async fn bounded<T: Send>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>> + Unpin + Send,
    ) -> Result<T> {
        let clock = self.client.clock();
        let limit = self.opts.backend_timeout;
        let call = trace::call(&self.client, || self.site(op), fut, Outcome::ok);
        tokio::select! {
            res = call => res,
            () = clock.sleep_until(clock.now() + limit) => Err(Error::unavailable(
                self.client.backend(),
                format!("breaker {:?}: {op} took over {limit:?}", self.name.as_str()),
            )),
        }
    }

    fn seen(&self) -> u64 {
        lock(&self.shared).seen
    }

    /// Reads the state; an error makes the backend unreachable.
    pub(crate) async fn read(&self) -> Result<BreakerState> {
        let seen = self.seen();
        let sent = self.ticket();
        let fut = self.backend()?.state(&self.name, &self.policy, seen);
        match self.bounded("state", fut).await {
            Ok(s) => {
                self.apply(&s, sent);
                Ok(s)
            }
            Err(e) => {
                self.lost(&e, sent);
                Err(e)
            }
        }
    }

    /// Looks at the state without making the breaker (the SPI's rule 11),
    /// with every transition kept; the cached copy and whether the backend
    /// is reachable are left alone.
    pub(crate) async fn peek(&self) -> Result<Option<BreakerState>> {
        let fut = self.backend()?.peek(&self.name, 0);
        match self.bounded("peek", fut).await {
            Err(Error::NotSupported { operation, .. }) => Err(self.client.unsupported(operation)),
            res => res,
        }
    }

    pub(crate) async fn refresh(&self) {
        let _ = self.read().await;
    }

    /// Sends the pending tally, if any, after the flush already on its way
    /// (if any) is answered. Outcomes whose flush failed are dropped, never
    /// sent twice (a lost reply may have counted them).
    pub(crate) async fn flush(&self) -> Result<()> {
        let _one = self.flushing.lock().await;
        let (generation, tally) = {
            let mut p = lock(&self.pending);
            if p.tally.calls == 0 {
                return Ok(());
            }
            (p.generation, std::mem::take(&mut p.tally))
        };
        let seen = self.seen();
        let instance = self.client.instance_id();
        let sent = self.ticket();
        let fut =
            (self.backend()?).report(&self.name, &self.policy, generation, instance, tally, seen);
        match self.bounded("report", fut).await {
            Ok(r) => {
                metrics::flush(if r.counted { "counted" } else { "stale" });
                self.apply(&r.state, sent);
                Ok(())
            }
            Err(e) => {
                metrics::flush("error");
                self.lost(&e, sent);
                Err(e)
            }
        }
    }

    pub(crate) async fn manual(&self, action: Action, why: &str) -> Result<BreakerState> {
        let seen = self.seen();
        let by = self.client.instance_id();
        let sent = self.ticket();
        let fut = (self.backend()?).manual(&self.name, &self.policy, action, by, why, seen);
        let s = self.bounded(action.as_str(), fut).await?;
        self.apply(&s, sent);
        Ok(s)
    }

    /// Takes what a reply says: tells the transitions it carries (not
    /// those of the first read: history), after `Missed` if some after the
    /// newest generation told are no longer kept (judged against that
    /// generation now, not the one the call named: a reply to an older
    /// call may come after a newer one told them), updates the cached
    /// copy, and finds the backend again (unless the call was sent before
    /// the one whose failure lost it). A reply of another record than the
    /// one followed (lost, and born again since) tells `Missed` (what
    /// happened in between cannot be told), then the transitions it
    /// carries, and the instance follows it, whatever its generation;
    /// unless the call was sent before a reply of the followed record
    /// arrived: it may have run before the loss, and a later call's reply
    /// tells.
    pub(crate) fn apply(&self, s: &BreakerState, ticket: u64) {
        let now = self.client.clock().now();
        let mut sh = lock(&self.shared);
        sh.last_ok = Some(now);
        sh.newest_ok = sh.newest_ok.max(ticket);
        if ticket > sh.lost_at && !self.cache.reachable.load(Acquire) {
            sh.local = None;
            self.cache.reachable.store(true, Release);
            tracing::info!(target: "coord.breaker", breaker = %self.name, "backend reachable again");
            let _ = self.events.send(BreakerEvent::Reachable);
        }
        let reborn = s.reborn_since(sh.born);
        if reborn && ticket <= sh.known_at {
            return;
        }
        sh.known_at = sh.tickets;
        if !reborn && s.generation < sh.seen {
            return;
        }
        if sh.seen != 0 {
            if reborn {
                tracing::info!(
                    target: "coord.breaker",
                    breaker = %self.name,
                    after = sh.seen,
                    born = s.born,
                    "breaker record lost and born again"
                );
            }
            if reborn || s.missed_after(sh.seen) {
                let _ = self.events.send(BreakerEvent::Missed { after: sh.seen });
            }
            let after = if reborn { 0 } else { sh.seen };
            for t in s.transitions.iter().filter(|t| t.generation > after) {
                tracing::info!(
                    target: "coord.breaker",
                    breaker = %self.name,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    generation = t.generation,
                    cause = ?t.cause,
                    "breaker transition"
                );
                metrics::transition(t.to);
                let _ = self.events.send(BreakerEvent::Transition(t.clone()));
            }
        }
        sh.born = s.born;
        sh.seen = s.generation;
        sh.in_force = s.policy;
        let base_ns = now.saturating_duration_since(self.base).as_nanos() as u64;
        let left = s.retry_after.unwrap_or_default().as_nanos() as u64;
        self.cache.open_until.store(base_ns + left, Release);
        if self.cache.generation.swap(s.generation, AcqRel) != s.generation {
            self.cache.hold_until.store(0, Release);
            let mut p = lock(&self.pending);
            if p.generation != s.generation {
                *p = Pending {
                    generation: s.generation,
                    tally: Tally::default(),
                };
            }
        }
        self.cache.phase.store(code(s.phase), Release);
    }

    /// A ticket for a call about to be sent.
    pub(crate) fn ticket(&self) -> u64 {
        let mut sh = lock(&self.shared);
        sh.tickets += 1;
        sh.tickets
    }

    /// The backend call of ticket `sent` failed: unreachable if it may
    /// work later — unless a call sent after it succeeded (a failure older
    /// than a success says nothing of the backend now: a background call
    /// that failed while cut off must not undo a reconnection).
    pub(crate) fn lost(&self, e: &Error, sent: u64) {
        if e.is_retryable() {
            self.unreachable(e.to_string(), Some(sent));
        } else {
            tracing::warn!(target: "coord.breaker", breaker = %self.name, error = %e, "breaker call failed");
        }
    }

    /// The backend is unreachable, unless a call sent after ticket `sent`
    /// succeeded.
    fn unreachable(&self, error: String, sent: Option<u64>) {
        let mut sh = lock(&self.shared);
        if sent.is_some_and(|sent| sh.newest_ok > sent) {
            return;
        }
        if self.cache.reachable.swap(false, AcqRel) {
            sh.lost_at = sent.unwrap_or(sh.tickets);
            let (in_force, now) = (sh.in_force, self.local_us());
            // The local breaker takes over from the phase last seen: open
            // for the open time left, or half-open (trials first).
            sh.local = Some(match self.cache.phase.load(Acquire) {
                1 | 2 => {
                    let until = self.cache.open_until.load(Acquire) / 1_000 + 1;
                    Record::born_open(in_force, until, now)
                }
                _ => Record::born(in_force, now),
            });
            metrics::unreachable();
            tracing::warn!(target: "coord.breaker", breaker = %self.name, %error, "backend unreachable");
            let _ = self.events.send(BreakerEvent::Unreachable { error });
        }
    }

    /// No successful read for the maximum staleness: unreachable.
    fn check_staleness(&self) {
        let last = lock(&self.shared).last_ok;
        let now = self.client.clock().now();
        if let Some(last) = last
            && now.saturating_duration_since(last) > self.opts.max_staleness
        {
            let d = self.opts.max_staleness;
            self.unreachable(format!("no successful read for over {d:?}"), None);
        }
    }

    /// µs on the local clock, for the local fallback.
    fn local_us(&self) -> u64 {
        self.now_ns() / 1_000 + 1
    }

    pub(crate) fn tally(&self, generation: u64, outcome: Tally) {
        let mut p = lock(&self.pending);
        if p.generation == generation {
            p.tally = p.tally.plus(outcome);
        }
    }

    /// Renews `holder`'s trial of `generation` every third of its TTL
    /// until the returned guard is dropped, or the backend no longer grants
    /// it: a trial call slower than the trial TTL keeps its slot, so no
    /// other trial starts meanwhile and its outcome counts. The renewal
    /// names the generation: once that half-open generation ended, it is
    /// refused rather than take a slot of a later one (where this trial's
    /// outcome would never count).
    pub(crate) fn keep_trial(self: &Arc<Self>, generation: u64, holder: HolderId) -> AbortOnDrop {
        let inner = Arc::downgrade(self);
        let every = (self.opts.trial_ttl / 3).max(Duration::from_millis(1));
        let clock = self.client.clock().clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                clock.sleep_until(clock.now() + every).await;
                let Some(inner) = inner.upgrade() else { return };
                let (seen, sent) = (inner.seen(), inner.ticket());
                let Ok(backend) = inner.backend() else { return };
                let ttl = inner.opts.trial_ttl;
                let (name, policy) = (&inner.name, &inner.policy);
                let fut = backend.renew_trial(name, policy, generation, &holder, ttl, seen);
                match inner.bounded("trial", fut).await {
                    Ok(Trial::Granted { state, .. }) => inner.apply(&state, sent),
                    Ok(Trial::Refused(state)) => return inner.apply(&state, sent),
                    // Tried again at the next period (the TTL is three).
                    Err(e) => inner.lost(&e, sent),
                }
            }
        }))
    }

    /// [`keep_trial`](Self::keep_trial) for a trial of the local fallback:
    /// renews `holder`'s local trial every third of its TTL until the
    /// returned guard is dropped, the trial lapsed or ended, or the local
    /// breaker is gone (the backend answered again).
    pub(crate) fn keep_local_trial(self: &Arc<Self>, holder: String) -> AbortOnDrop {
        let inner = Arc::downgrade(self);
        let every = (self.opts.trial_ttl / 3).max(Duration::from_millis(1));
        let ttl = self.opts.trial_ttl.as_micros() as u64;
        let clock = self.client.clock().clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                clock.sleep_until(clock.now() + every).await;
                let Some(inner) = inner.upgrade() else { return };
                let now = inner.local_us();
                let mut sh = lock(&inner.shared);
                let Some(local) = sh.local.as_mut() else {
                    return;
                };
                local.sweep(now);
                if !local.renew_trial(&holder, ttl, now) {
                    return;
                }
            }
        }))
    }

    /// Ends `holder`'s trial of `generation` on the backend, from a task
    /// of its own: counted with `outcome`, or given back uncounted
    /// (`None`: its call was cancelled before any verdict), freeing its
    /// slot either way. A backend without give-backs leaves that slot to
    /// its TTL.
    pub(crate) fn end_trial(
        self: &Arc<Self>,
        generation: u64,
        holder: HolderId,
        outcome: Option<Tally>,
    ) {
        let inner = self.clone();
        tokio::spawn(async move {
            let (seen, sent) = (inner.seen(), inner.ticket());
            let Ok(backend) = inner.backend() else { return };
            let (name, policy, g) = (&inner.name, &inner.policy, generation);
            let (op, fut) = match outcome {
                Some(o) => (
                    "trial_done",
                    backend.trial_done(name, policy, g, &holder, o, seen),
                ),
                None => (
                    "give_back_trial",
                    backend.give_back_trial(name, policy, g, &holder, seen),
                ),
            };
            match inner.bounded(op, fut).await {
                Ok(r) => inner.apply(&r.state, sent),
                Err(Error::NotSupported { .. }) => {}
                Err(e) => inner.lost(&e, sent),
            }
        });
    }

    /// Counts `outcome` in the local fallback: a local trial's end (its
    /// slot freed), or a call counted in its window; or gives a local
    /// trial back uncounted (`outcome` `None`).
    pub(crate) fn local_done(
        &self,
        generation: u64,
        trial: Option<String>,
        outcome: Option<Tally>,
    ) {
        let now = self.local_us();
        let mut sh = lock(&self.shared);
        let Some(local) = sh.local.as_mut() else {
            return;
        };
        local.sweep(now);
        match (trial, outcome) {
            (Some(h), Some(o)) => local.trial_done(generation, &h, o, now),
            (Some(h), None) => local.give_back_trial(generation, &h),
            (None, Some(o)) => local.report(generation, "local", o, now),
            (None, None) => false,
        };
    }

    /// An open (or half-open) breaker: refused until the open time passes,
    /// then one call of this instance at a time asks for a trial.
    pub(crate) async fn when_open(self: &Arc<Self>, open: bool) -> Result<CallPermit> {
        let now = self.now_ns();
        let until = if open {
            self.cache.open_until.load(Acquire)
        } else {
            0
        };
        let until = until.max(self.cache.hold_until.load(Acquire));
        if now < until {
            return Err(self.refused(Duration::from_nanos(until - now)));
        }
        if self.asking.swap(true, AcqRel) {
            return Err(self.refused(self.opts.flush_interval));
        }
        // Cleared however the request ends, its future dropped included:
        // left set, this instance would refuse every call for good.
        struct Asking<'a>(&'a AtomicBool);
        impl Drop for Asking<'_> {
            fn drop(&mut self) {
                self.0.store(false, Release);
            }
        }
        let _asking = Asking(&self.asking);
        self.ask_trial().await
    }

    async fn ask_trial(self: &Arc<Self>) -> Result<CallPermit> {
        let holder = HolderId::new(*self.client.instance_id());
        let (seen, ttl) = (self.seen(), self.opts.trial_ttl);
        let sent = self.ticket();
        let fut = (self.backend()?).trial(&self.name, &self.policy, &holder, ttl, seen);
        // Dropped before an answer was taken (this call cancelled) or with
        // the answer lost, it gives back the trial the request may have
        // been granted.
        let unanswered = Unanswered(Some((self.clone(), holder.clone())));
        let answer = self.bounded("trial", fut).await;
        if !matches!(&answer, Err(e) if e.is_retryable()) {
            unanswered.answered();
        }
        let s = match answer {
            Ok(Trial::Granted { state, .. }) => {
                self.apply(&state, sent);
                return Ok(CallPermit::new(self, Kind::Trial(holder), state.generation));
            }
            Ok(Trial::Refused(s)) => s,
            Err(e) if e.is_retryable() => {
                self.lost(&e, sent);
                return self.unreachable_permit();
            }
            Err(e) => return Err(e),
        };
        self.apply(&s, sent);
        match s.phase {
            Phase::Closed => Ok(CallPermit::new(self, Kind::Counted, s.generation)),
            Phase::Disabled => Ok(CallPermit::new(self, Kind::Free, s.generation)),
            Phase::Open => Err(self.refused(s.retry_after.unwrap_or_default())),
            _ => {
                let wait = self.opts.refresh_interval;
                let until = self.now_ns() + wait.as_nanos() as u64;
                self.cache.hold_until.store(until, Release);
                Err(self.refused(wait))
            }
        }
    }

    /// Gives back the trial `holder` may have been granted by a request
    /// whose answer was never taken, from a task of its own. A live trial
    /// is always of the breaker's current generation (a transition clears
    /// every trial), so the state is read first to name it.
    fn give_back_unanswered(self: &Arc<Self>, holder: HolderId) {
        let inner = self.clone();
        tokio::spawn(async move {
            let Ok(backend) = inner.backend() else { return };
            let (name, policy) = (&inner.name, &inner.policy);
            let sent = inner.ticket();
            let read = inner.bounded("state", backend.state(name, policy, inner.seen()));
            let Ok(s) = read.await else { return };
            inner.apply(&s, sent);
            if s.phase != Phase::HalfOpen {
                return;
            }
            let sent = inner.ticket();
            let fut = backend.give_back_trial(name, policy, s.generation, &holder, inner.seen());
            if let Ok(r) = inner.bounded("give_back_trial", fut).await {
                inner.apply(&r.state, sent);
            }
        });
    }

    /// Admission while the backend is unreachable (the policy decides).
    pub(crate) fn unreachable_permit(self: &Arc<Self>) -> Result<CallPermit> {
        match self.opts.unreachable {
            Unreachable::FailOpen => Ok(CallPermit::new(self, Kind::Free, 0)),
            Unreachable::FailClosed => Err(self.refused(self.opts.refresh_interval)),
            _ => self.local_permit(),
        }
    }

    fn local_permit(self: &Arc<Self>) -> Result<CallPermit> {
        let now_ns = self.now_ns();
        match self.cache.phase.load(Acquire) {
            1 if now_ns < self.cache.open_until.load(Acquire) => {
                let left = self.cache.open_until.load(Acquire) - now_ns;
                return Err(self.refused(Duration::from_nanos(left)));
            }
            3 => return Err(self.refused(self.opts.refresh_interval)),
            // Disabled by an operator: passes uncounted until a reset is
            // seen, as a forced open refuses.
            4 => return Ok(CallPermit::new(self, Kind::Free, 0)),
            _ => {}
        }
        let now = self.local_us();
        let mut sh = lock(&self.shared);
        let in_force = sh.in_force;
        let local = sh.local.get_or_insert_with(|| Record::born(in_force, now));
        local.sweep(now);
        let generation = local.generation();
        match local.phase() {
            Phase::Closed => Ok(CallPermit::new(self, Kind::Local(None), generation)),
            Phase::HalfOpen => {
                let h = HolderId::new(*self.client.instance_id()).to_string();
                let ttl = self.opts.trial_ttl.as_micros() as u64;
                match local.trial(&h, ttl, now) {
                    Some(_) => Ok(CallPermit::new(self, Kind::Local(Some(h)), generation)),
                    None => Err(self.refused(self.opts.refresh_interval)),
                }
            }
            _ => {
                let left = local.state(0, now).retry_after;
                Err(self.refused(left.unwrap_or(self.opts.refresh_interval)))
            }
        }
    }

    async fn watch(&self) -> Option<Box<dyn Watch>> {
        let sent = self.ticket();
        let fut = self.backend().ok()?.watch(&self.name);
        match self.bounded("watch", fut).await {
            Ok(w) => Some(w),
            Err(e) => {
                self.lost(&e, sent);
                None
            }
        }
    }
}

/// The background task of a handle (and its clones): ends once they are
/// all dropped.
async fn run(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let clock = inner.client.clock().clone();
    let (flush_every, refresh_every) = (inner.opts.flush_interval, inner.opts.refresh_interval);
    drop(inner);
    let mut watch: Option<Box<dyn Watch>> = None;
    let mut next_flush = clock.now() + flush_every;
    let mut next_refresh = clock.now();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.client.is_closed() {
            // Client::close: nothing more to flush or read.
            return;
        }
        if watch.is_none() {
            watch = inner.watch().await;
        }
        if clock.now() >= next_refresh {
            inner.refresh().await;
            next_refresh = clock.now() + refresh_every;
        }
        if clock.now() >= next_flush {
            let _ = inner.flush().await;
            next_flush = clock.now() + flush_every;
        }
        inner.check_staleness();
        drop(inner);
        let deadline = next_flush.min(next_refresh);
        let woken = match watch.as_mut() {
            Some(w) => tokio::select! {
                r = w.changed() => Some(r.is_ok()),
                () = clock.sleep_until(deadline) => None,
            },
            None => {
                clock.sleep_until(deadline).await;
                None
            }
        };
        match woken {
            Some(true) => next_refresh = clock.now(),
            Some(false) => watch = None,
            None => {}
        }
    }
}

/// A background task aborted when this is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

/// A trial asked for whose answer is not yet taken: dropped so, the trial
/// its request may have been granted is given back
/// ([`Inner::give_back_unanswered`]), where a runtime runs.
struct Unanswered(Option<(Arc<Inner>, HolderId)>);

impl Unanswered {
    /// The answer was taken: nothing to give back.
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((inner, holder)) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            inner.give_back_unanswered(holder);
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
