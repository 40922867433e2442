//! Circuit breakers shared by name by every instance of a service, with no
//! backend round trip per call.
//!
//! | type | what it is |
//! |---|---|
//! | [`BreakerBuilder`] (from [`Client::breaker`]), [`Unreachable`] (`options.rs`) | the policy and this instance's options, checked before any I/O |
//! | [`Breaker`], [`CallPermit`] | admission from the cached state, outcomes recorded locally, manual actions |
//! | `sync.rs` | the background task: batched flushes, refreshes on notification and at a bounded interval, the unreachable policy |
//! | [`BreakerEvent`], [`BreakerEvents`] (`events.rs`) | transitions and the backend lost and found, as a stream |
//! | `tower.rs` (feature `tower`) | [`BreakerLayer`]: any tower service behind a breaker |
//! | `metrics.rs` | what the family counts |
//!
//! The contract is [`contract::breaker`](crate::contract::breaker); the
//! backend's rules are in [`spi::breaker`](crate::spi::breaker); decision
//! 0027 says why.

mod events;
pub(crate) mod metrics;
mod options;
mod sync;
#[cfg(test)]
mod tests;
#[cfg(feature = "tower")]
mod tower;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::*},
    },
    time::Duration,
};

pub use events::{BreakerEvent, BreakerEvents};
pub use options::{BreakerBuilder, Unreachable};
#[cfg(feature = "tower")]
pub use tower::{BreakerLayer, BreakerService};

use crate::{
    Client, Error, HolderId, Instant, Key, Result,
    spi::{Action, BreakerState, Phase, Policy, Tally, breaker::check_why},
};
use options::Options;
use sync::Inner;

/// A circuit breaker shared by name across instances. Cheap to clone;
/// clones share this instance's cached state and pending outcomes.
///
/// A call through a closed breaker is decided from the cached state (no
/// I/O) and its outcome is tallied locally; a background task flushes the
/// tally every flush interval and keeps the cached state fresh (woken by
/// the backend's notification of a transition, and re-read at the refresh
/// interval regardless). Only a half-open breaker's trial calls and manual
/// actions reach the backend on the caller's path.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// # async fn fetch() -> Result<u32, std::io::Error> { Ok(1) }
/// use std::time::Duration;
/// use coord_api::Error;
///
/// let breaker = client
///     .breaker("inventory")
///     .count_window(20)
///     .minimum_calls(10)
///     .open_for(Duration::from_secs(5))
///     .build()?;
/// match breaker.call(fetch()).await {
///     Ok(Ok(n)) => println!("got {n}"),
///     Ok(Err(e)) => println!("the call failed (counted): {e}"),
///     Err(Error::CircuitOpen { retry_after, .. }) => println!("refused; retry in {retry_after:?}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.inner.name.as_str())
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

/// The cached state, read by every call: plain atomics.
#[derive(Debug)]
pub(crate) struct Cache {
    /// A [`Phase`] as [`code`], or [`UNKNOWN`] before the first read.
    pub(crate) phase: AtomicU8,
    pub(crate) generation: AtomicU64,
    /// While open: when the open time passes, in ns since the handle's base.
    pub(crate) open_until: AtomicU64,
    /// After a refused trial: refuse locally until then (ns since base).
    pub(crate) hold_until: AtomicU64,
    pub(crate) reachable: AtomicBool,
}

pub(crate) const UNKNOWN: u8 = u8::MAX;

pub(crate) fn code(p: Phase) -> u8 {
    match p {
        Phase::Closed => 0,
        Phase::Open => 1,
        Phase::HalfOpen => 2,
        Phase::ForcedOpen => 3,
        Phase::Disabled => 4,
    }
}

fn phase_of(code: u8) -> Option<Phase> {
    Some(match code {
        0 => Phase::Closed,
        1 => Phase::Open,
        2 => Phase::HalfOpen,
        3 => Phase::ForcedOpen,
        4 => Phase::Disabled,
        _ => return None,
    })
}

impl Breaker {
    pub(crate) fn new(client: Client, name: Key, policy: Policy, opts: Options) -> Breaker {
        Breaker {
            inner: Inner::new(client, name, policy, opts),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }

    /// The phase of this instance's cached copy (`None` before its first
    /// read of the backend). With the backend unreachable, this is the last
    /// phase read; the unreachable policy decides meanwhile.
    pub fn phase(&self) -> Option<Phase> {
        phase_of(self.inner.cache.phase.load(Acquire))
    }

    /// Whether the backend answered lately (see [`Unreachable`]).
    pub fn backend_reachable(&self) -> bool {
        self.inner.cache.reachable.load(Acquire)
    }

    /// Admits a call, or refuses it with `Error::CircuitOpen`. A closed or
    /// disabled breaker admits from the cached state without I/O; an open
    /// one refuses until its open time passes; then (half-open) the backend
    /// is asked for a trial, bounded by the backend timeout. Before its
    /// first use, the breaker reads the backend once. On a backend without
    /// the breaker family, `NotSupported`, and on a closed client,
    /// `Closed`, before any I/O: neither is an unreachable backend, which
    /// the [`Unreachable`] policy stands in for.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a trial granted to a call cancelled before its answer
    /// came (or whose answer was lost) is given back, uncounted, from a
    /// task of its own; at worst (the backend unreachable meanwhile) its
    /// slot frees itself at its TTL.
    pub async fn permit(&self) -> Result<CallPermit> {
        let inner = &self.inner;
        // A missing family or a closed client (a load and a branch).
        inner.client.breakers()?;
        inner.start();
        for _ in 0..2 {
            if !inner.cache.reachable.load(Relaxed) {
                return inner.unreachable_permit();
            }
            let generation = inner.cache.generation.load(Acquire);
            match inner.cache.phase.load(Acquire) {
                0 => return Ok(CallPermit::new(inner, Kind::Counted, generation)),
                4 => return Ok(CallPermit::new(inner, Kind::Free, generation)),
                3 => return Err(inner.refused(inner.opts.refresh_interval)),
                UNKNOWN => {
                    inner.refresh().await;
                }
                phase => return inner.when_open(phase == 1).await,
            }
        }
        inner.unreachable_permit()
    }

    /// Runs `call` through the breaker: refused with `Error::CircuitOpen`
    /// (not run) when the breaker refuses, else run, its outcome recorded
    /// (an `Err` is a failure; a call slower than the slow-call duration is
    /// slow), and its result handed back. Cancelled (a timeout around it),
    /// the call counts as slow once it ran at least the slow-call duration,
    /// else nothing, a half-open trial then giving its slot back at once
    /// (see [`CallPermit`]).
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// use std::time::Duration;
    /// let breaker = client
    ///     .breaker("payments-api")
    ///     .slow_calls(Duration::from_secs(2), 50.0)
    ///     .build()?;
    /// let request = async { Ok::<_, std::io::Error>("paid") };
    /// // A call still running after 5 s is given up, and counted slow.
    /// match tokio::time::timeout(Duration::from_secs(5), breaker.call(request)).await {
    ///     Ok(Ok(Ok(answer))) => println!("{answer}"),
    ///     Ok(Ok(Err(e))) => println!("failed, counted: {e}"),
    ///     Ok(Err(refused)) => println!("not called: {refused}"),
    ///     Err(_) => println!("timed out, counted slow"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn call<T, E, F>(&self, call: F) -> Result<std::result::Result<T, E>>
    where
        F: Future<Output = std::result::Result<T, E>>,
    {
        let permit = self.permit().await?;
        let out = call.await;
        permit.record(out.is_err());
        Ok(out)
    }

    /// Reads the shared state from the backend now (and updates the cached
    /// copy with it).
    pub async fn state(&self) -> Result<BreakerState> {
        self.inner.start();
        self.inner.read().await
    }

    /// Reads the shared state from the backend without making the breaker:
    /// `None` when it has no record (no instance has used it yet, or a
    /// backend forgot it, as Redis does after a day unused), and then
    /// nothing is created, so the breaker is still born with the policy of
    /// its first real user. For operators and dashboards: a look through
    /// [`state`](Self::state) at a breaker with no record births it with
    /// this handle's policy (the family's rule 1), which every instance
    /// then keeps. The state carries every transition the backend keeps.
    /// This handle's cached copy and background task are left alone.
    /// `NotSupported` from a backend that cannot look without making.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// // The handle's policy (here the default) is never stored by a peek.
    /// let breaker = client.breaker("payments-api").build()?;
    /// match breaker.peek().await? {
    ///     Some(s) => println!("{:?}, {} calls in the window", s.phase, s.window.calls),
    ///     None => println!("no instance has used it yet: nothing to show"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a look changes nothing a cancelled call could leave
    /// half done.
    pub async fn peek(&self) -> Result<Option<BreakerState>> {
        self.inner.peek().await
    }

    /// Sends this instance's pending outcomes now, rather than at the next
    /// flush interval (before a shutdown, or in tests). It returns once
    /// every outcome recorded before it was answered, including those a
    /// background flush already on its way took: one flush is sent at a
    /// time, so an instance's reports arrive in the order recorded.
    pub async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    /// Forces the breaker open for every instance, until a reset; recorded
    /// with this instance's id and `why` (at most 256 bytes).
    pub async fn force_open(&self, why: &str) -> Result<BreakerState> {
        self.manual(Action::ForceOpen, why).await
    }

    /// Disables the breaker for every instance (every call passes, nothing
    /// is counted), until a reset; recorded with who and why.
    pub async fn disable(&self, why: &str) -> Result<BreakerState> {
        self.manual(Action::Disable, why).await
    }

    /// Closes the breaker for every instance with a fresh window, adopting
    /// this handle's policy; recorded with who and why.
    pub async fn reset(&self, why: &str) -> Result<BreakerState> {
        self.manual(Action::Reset, why).await
    }

    async fn manual(&self, action: Action, why: &str) -> Result<BreakerState> {
        check_why(&self.inner.name, why)?;
        self.inner.start();
        self.inner.manual(action, why).await
    }

    /// A stream of this breaker's transitions (every one, in order, each
    /// once, or [`BreakerEvent::Missed`]) and of the backend lost and found,
    /// from now on.
    pub fn events(&self) -> BreakerEvents {
        self.inner.start();
        BreakerEvents::new(self.inner.events.subscribe())
    }
}

#[derive(Debug)]
enum Kind {
    /// Counted in the shared window (closed).
    Counted,
    /// Counted nowhere (disabled, or failing open).
    Free,
    /// A trial of the shared half-open generation.
    Trial(HolderId),
    /// Counted by the local fallback; a local trial's holder.
    Local(Option<String>),
}

/// The right to make one call. Record its outcome with
/// [`success`](Self::success), [`failure`](Self::failure) or
/// [`record`](Self::record). A permit dropped without one (its call
/// cancelled: a timeout around [`Breaker::call`], a request given up)
/// counts as a slow call when the breaker has a slow-call duration and the
/// permit lived at least that long, since the call was at least that slow
/// (a trial's slot is then freed with that outcome); otherwise it counts
/// nothing, and a trial gives its slot back at once, uncounted, for
/// another trial to take. A trial's slot
/// (shared, or the local fallback's) is renewed while its permit lives,
/// however long the call takes.
#[derive(Debug)]
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct CallPermit {
    inner: Arc<Inner>,
    kind: Kind,
    generation: u64,
    started: Option<Instant>,
    /// Its outcome was counted (recorded, or counted slow when dropped).
    settled: bool,
    /// Renews a trial's slot (shared or local) until the permit is gone.
    _renewal: Option<sync::AbortOnDrop>,
}

impl CallPermit {
    fn new(inner: &Arc<Inner>, kind: Kind, generation: u64) -> CallPermit {
        let started = inner.opts.slow_call.map(|_| inner.client.clock().now());
        let _renewal = match &kind {
            Kind::Trial(holder) => Some(inner.keep_trial(generation, holder.clone())),
            Kind::Local(Some(holder)) => Some(inner.keep_local_trial(holder.clone())),
            _ => None,
        };
        CallPermit {
            inner: inner.clone(),
            kind,
            generation,
            started,
            settled: false,
            _renewal,
        }
    }

    /// Whether this call is a trial of a half-open breaker (shared or
    /// local).
    pub fn is_trial(&self) -> bool {
        matches!(self.kind, Kind::Trial(_) | Kind::Local(Some(_)))
    }

    /// The call succeeded.
    pub fn success(self) {
        self.record(false)
    }

    /// The call failed.
    pub fn failure(self) {
        self.record(true)
    }

    /// The call failed (`true`) or succeeded; slow if it took at least the
    /// slow-call duration since the permit.
    pub fn record(mut self, failed: bool) {
        let slow = self.slow();
        self.settle(Some(Tally::one(failed, slow)));
    }

    /// Whether the call took at least the slow-call duration so far.
    fn slow(&self) -> bool {
        match (self.started, self.inner.opts.slow_call) {
            (Some(t), Some(limit)) => self.inner.client.clock().now().duration_since(t) >= limit,
            _ => false,
        }
    }

    /// Counts the call's outcome where its kind is counted, or with
    /// `None` counts nothing and gives a trial's slot back (once: the
    /// permit counts nothing after).
    fn settle(&mut self, outcome: Option<Tally>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        if let Some(o) = outcome {
            metrics::call(o.failures > 0);
        }
        match (std::mem::replace(&mut self.kind, Kind::Free), outcome) {
            (Kind::Counted, Some(o)) => self.inner.tally(self.generation, o),
            (Kind::Counted | Kind::Free, _) => {}
            (Kind::Trial(holder), o) => self.inner.end_trial(self.generation, holder, o),
            (Kind::Local(trial), o) => self.inner.local_done(self.generation, trial, o),
        }
    }
}

impl Drop for CallPermit {
    /// A permit dropped unrecorded counts as a slow call when its call was
    /// already slow, and otherwise counts nothing, a trial giving its slot
    /// back (see [`CallPermit`]). A trial's end is sent from a task of its
    /// own, so only where a runtime runs.
    fn drop(&mut self) {
        let sends = matches!(self.kind, Kind::Trial(_));
        if self.settled || (sends && tokio::runtime::Handle::try_current().is_err()) {
            return;
        }
        let slow = self.slow();
        self.settle(slow.then(|| Tally::one(false, true)));
    }
}

impl Inner {
    fn refused(&self, retry_after: Duration) -> Error {
        metrics::refused();
        Error::CircuitOpen {
            name: self.name.to_string(),
            retry_after,
        }
    }

    /// ns since the handle's base, on the client's clock.
    fn now_ns(&self) -> u64 {
        let now = self.client.clock().now();
        now.saturating_duration_since(self.base).as_nanos() as u64
    }
}
