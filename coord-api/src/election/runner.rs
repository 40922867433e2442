//! The leader runner: campaign, call back, re-campaign after a loss.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    Clock, Error, FencingToken, HolderId, LeaderInfo, LostSignal, election::Election,
    lease::wait::later,
};

type Callback<A> = Arc<dyn Fn(A) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What `on_acquired` gets: the term, the leader info, the lost signal, and
/// a way to give the term up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeaderContext {
    /// The term (fencing token) of this leadership.
    pub term: FencingToken,
    /// The leader info published for this term.
    pub info: LeaderInfo,
    /// Fires when the term ends (lost, given up, resigned at shutdown, or
    /// resigned by the client's [`close`](crate::Client::close)).
    pub lost: LostSignal,
    /// Shared with the runner (which keeps its own reference, so a
    /// callback that drops its context gives nothing up).
    give_up: Arc<tokio::sync::Notify>,
}

impl LeaderContext {
    /// Gives this term up (Curator's way out of `takeLeadership`): the
    /// runner aborts `on_acquired`, resigns the term (other candidates are
    /// woken at once) and campaigns again after its backoff's first step.
    /// Returns at once; [`lost`](Self::lost) fires when the term has ended.
    pub fn resign(&self) {
        // A permit is kept if the runner is not waiting yet.
        self.give_up.notify_one();
    }
}

/// How a term the runner held ended.
enum Ended {
    /// Shut down: resigned, and the runner stops.
    Stopped,
    /// Lost (not renewed in time, refused, or taken over).
    Lost,
    /// Ended by the client's close (which resigned it): the runner stops,
    /// as it would at its next campaign, and nothing was lost.
    Closed,
    /// Given up by the callback: resigned, and the runner campaigns again.
    GaveUp,
}

/// Runs an instance's part in an election for as long as it lives: campaigns,
/// calls `on_acquired` when elected (as a task that is aborted when the term
/// ends), calls `on_lost` when the term is lost, then campaigns again after a
/// jittered, growing backoff. [`RunnerHandle::shutdown`] resigns. Closing
/// the client ([`Client::close`](crate::Client::close)) resigns a held term
/// too and stops the runner, as a shutdown does: `on_acquired` is aborted,
/// `on_lost` is not called (the term was given up, not lost), and
/// [`RunnerHandle::stopped_by`] names the close.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::LeaderRunner;
/// use std::time::Duration;
/// let runner = LeaderRunner::new(client.election("scheduler"))
///     .leadership_timeout(Duration::from_secs(10))
///     .renewal_interval(Duration::from_secs(3))
///     .on_acquired(|ctx| async move {
///         println!("leading term {}", ctx.term);
///         ctx.lost.wait().await; // schedule until the term ends
///     })
///     .on_lost(|term| async move { println!("lost term {term}") })
///     .start();
/// // ... later
/// runner.shutdown().await;
/// # Ok(()) }
/// ```
///
/// The callback may give leadership up: by calling
/// [`LeaderContext::resign`], or, with [`resign_on_return`]
/// (Curator's `takeLeadership` convention), by returning. A callback that
/// panics gives it up too, whatever `resign_on_return` says (the panic is
/// logged at error level), and the runner campaigns again after its
/// backoff. An `on_lost` that panics is logged likewise, and the runner
/// campaigns on:
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::LeaderRunner;
/// let runner = LeaderRunner::new(client.election("compactor"))
///     .resign_on_return(true)
///     .on_acquired(|ctx| async move {
///         println!("compacting under term {}", ctx.term);
///         // one round of work, then let another instance lead
///     })
///     .start();
/// # runner.shutdown().await;
/// # Ok(()) }
/// ```
///
/// [`resign_on_return`]: Self::resign_on_return
#[must_use = "a runner does nothing until started"]
pub struct LeaderRunner {
    election: Election,
    on_acquired: Option<Callback<LeaderContext>>,
    on_lost: Option<Callback<FencingToken>>,
    backoff: (Duration, Duration),
    resign_on_return: bool,
}

impl LeaderRunner {
    /// A runner for `election` (its options, metadata and quorum apply).
    pub fn new(election: Election) -> LeaderRunner {
        LeaderRunner {
            election,
            on_acquired: None,
            on_lost: None,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            resign_on_return: false,
        }
    }

    /// Whether `on_acquired` returning gives the term up (Curator's
    /// `takeLeadership` convention: leadership lasts while the callback
    /// runs), as [`LeaderContext::resign`] does. Default off: the term
    /// lasts until lost or shut down, whatever the callback does.
    pub fn resign_on_return(mut self, on: bool) -> Self {
        self.resign_on_return = on;
        self
    }

    /// How long a term lasts without renewal (the election's TTL).
    pub fn leadership_timeout(mut self, ttl: Duration) -> Self {
        self.election = self.election.ttl(ttl);
        self
    }

    /// How often the leader renews (default a third of the timeout).
    pub fn renewal_interval(mut self, every: Duration) -> Self {
        let opts = self.election.options().clone().extend_interval(Some(every));
        self.election = self.election.with_options(opts);
        self
    }

    /// The backoff before campaigning again after a loss or an error: starts
    /// at `min`, doubles up to `max`, jittered; reset by a won term. A
    /// `min` of zero doubles from a millisecond.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max.max(min));
        self
    }

    /// Called (as a task) when a term is won; aborted when it ends, and
    /// stopped before the term is resigned or `on_lost` called.
    pub fn on_acquired<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(LeaderContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_acquired = Some(Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Called when a term is lost: its local validity ran out, a renewal
    /// was refused (taken over, revoked, quorum gone) or could not reach
    /// the backend in time. Not when the term is given up: at shutdown, by
    /// the callback, or by the client's close.
    pub fn on_lost<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(FencingToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_lost = Some(Arc::new(move |term| Box::pin(f(term))));
        self
    }

    /// Starts campaigning in the background.
    ///
    /// A runner stops on its own on an error that campaigning again cannot
    /// mend: the election's options out of range (`InvalidArgument`, found
    /// here, before the runner starts), a backend without elections
    /// (`NotSupported`), a configuration error, or its client closed.
    /// [`RunnerHandle::stopped_by`] tells which; every other error (an
    /// unreachable backend) is retried after the backoff.
    pub fn start(self) -> RunnerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(None);
        let stopped_by = Arc::new(OnceLock::new());
        let task = match self.election.check() {
            Ok(_) => Some(tokio::spawn(self.run(
                stop_rx,
                state_tx,
                stopped_by.clone(),
            ))),
            Err(e) => {
                stop_for(&stopped_by, e);
                None
            }
        };
        RunnerHandle {
            stop: stop_tx,
            state: state_rx,
            stopped_by,
            task,
        }
    }

    async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        state: watch::Sender<Option<Leading>>,
        stopped_by: Arc<OnceLock<Error>>,
    ) {
        let (min, max) = self.backoff;
        let mut backoff = min;
        let clock = self.election.client().clock().clone();
        loop {
            let holder = HolderId::new(*self.election.client().instance_id());
            let won = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                r = self.election.campaign_as(&holder) => Some(r),
            };
            let Some(won) = won else {
                // The campaign is dropped: a round on its way may have won
                // a term, which `shutdown` must not leave behind.
                self.election.give_up_now(&holder).await;
                return;
            };
            let leadership = match won {
                Ok(l) => l,
                Err(e) if !mendable(&e) => {
                    stop_for(&stopped_by, e);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader runner: campaign failed; backing off");
                    if pause(&clock, &mut stop, &mut backoff, max).await {
                        return;
                    }
                    continue;
                }
            };
            backoff = min;
            let term = leadership.term();
            state.send_replace(Some(Leading {
                info: leadership.info().clone(),
                lost: leadership.lost_signal(),
            }));
            let give_up = Arc::new(tokio::sync::Notify::new());
            let mut callback = self.on_acquired.as_ref().map(|f| {
                tokio::spawn(CatchPanic(f(LeaderContext {
                    term,
                    info: leadership.info().clone(),
                    lost: leadership.lost_signal(),
                    give_up: give_up.clone(),
                })))
            });
            // The callback's end gives the term up when it panicked (a
            // leader whose work died must not keep others from leading),
            // or when it returned under `resign_on_return`. `finished`: the
            // task was awaited to its end (a join handle is awaited once).
            let mut finished = false;
            let returned = async {
                let Some(task) = callback.as_mut() else {
                    return std::future::pending().await;
                };
                let outcome = task.await;
                finished = true;
                match outcome {
                    Ok(Err(panic)) => Some(panic),
                    _ if self.resign_on_return => None,
                    _ => std::future::pending().await,
                }
            };
            let ended = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => Ended::Stopped,
                // Ended released while the runner holds its only guard:
                // the client's close resigned it.
                _ = leadership.lost() => match leadership.was_given_up() {
                    true => Ended::Closed,
                    false => Ended::Lost,
                },
                _ = give_up.notified() => Ended::GaveUp,
                panicked = returned => {
                    if let Some(e) = panicked {
                        tracing::error!(
                            term = term.get(),
                            panic = panic_text(e),
                            "leader runner: on_acquired panicked; resigning the term"
                        );
                    }
                    Ended::GaveUp
                }
            };
            // `abort` only asks: a callback in the middle of a poll goes on
            // until its next await. Wait for it to stop before the term is
            // resigned or `on_lost` called, so that it never works on while
            // another instance leads.
            if let Some(task) = callback.take().filter(|_| !finished) {
                task.abort();
                let _ = task.await;
            }
            state.send_replace(None);
            match ended {
                Ended::Stopped => {
                    let _ = leadership.resign().await;
                    return;
                }
                Ended::GaveUp => {
                    tracing::debug!(
                        term = term.get(),
                        "leader runner: the callback gave the term up"
                    );
                    let _ = leadership.resign().await;
                    if pause(&clock, &mut stop, &mut backoff, max).await {
                        return;
                    }
                    continue;
                }
                Ended::Closed => {
                    // Closed: campaigning again would answer `Closed`.
                    stop_for(&stopped_by, self.election.client().closed());
                    return;
                }
                Ended::Lost => {}
            }
            drop(leadership);
            if let Some(f) = &self.on_lost
                && let Err(panic) = CatchPanic(f(term)).await
            {
                tracing::error!(
                    term = term.get(),
                    panic = panic_text(panic),
                    "leader runner: on_lost panicked; campaigning on"
                );
            }
            if pause(&clock, &mut stop, &mut backoff, max).await {
                return;
            }
        }
    }
}

/// A callback's future, its panic caught and answered as the payload: a
/// callback's panic never ends the runner, the same on tokio and on madsim
/// (whose runtime ends the whole simulation when a task panics).
struct CatchPanic(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for CatchPanic {
    type Output = Result<(), Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// What a panic's payload says, when it is text.
fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast_ref::<&str>() {
        Some(s) => (*s).to_owned(),
        None => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a panic without a message".to_owned()),
    }
}

/// Whether campaigning again may mend `e` (everything but what the
/// runner's options, its backend or its closed client decide for good).
fn mendable(e: &Error) -> bool {
    !matches!(
        e,
        Error::InvalidArgument { .. }
            | Error::NotSupported { .. }
            | Error::Config { .. }
            | Error::Closed { .. }
    )
}

/// Records why the runner stops on its own, and says so in the log (an
/// error but for a closed client, which stops the runner by design).
fn stop_for(stopped_by: &OnceLock<Error>, e: Error) {
    if matches!(e, Error::Closed { .. }) {
        tracing::info!(error = %e, "leader runner: the client closed; stopping");
    } else {
        tracing::error!(error = %e, "leader runner: stopping: campaigning again cannot mend this");
    }
    let _ = stopped_by.set(e);
}

/// The shortest backoff: one from zero doubles from here, so that a
/// runner whose campaigns fail at once (a backend refusing connections)
/// does not campaign, and warn, in a tight loop.
const LEAST_BACKOFF: Duration = Duration::from_millis(1);

/// Sleeps a jittered `backoff`, at least [`LEAST_BACKOFF`] (doubling it up
/// to `max`); true if stopped. Saturates instead of overflowing, whatever
/// the durations.
async fn pause(
    clock: &Arc<dyn Clock>,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
    max: Duration,
) -> bool {
    let base = (*backoff).max(LEAST_BACKOFF);
    let jittered = base.as_secs_f64() * rand::random_range(0.5..=1.0);
    let wait = Duration::try_from_secs_f64(jittered).unwrap_or(base);
    *backoff = base.saturating_mul(2).min(max);
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => true,
        // The client's clock (a test clock drives it too); saturating.
        _ = clock.sleep_until(later(clock.now(), wait)) => false,
    }
}

/// The term the runner holds, as its handle shows it: while its lost
/// signal has not fired (the moment the term is lost, as
/// [`Leadership::is_leader`](crate::Leadership::is_leader) tells, not only
/// once the runner has stopped the callback, which waits for the
/// callback's current poll).
#[derive(Debug)]
struct Leading {
    info: LeaderInfo,
    lost: LostSignal,
}

/// A running [`LeaderRunner`]. Keep it for as long as the runner should
/// run: dropping it stops the runner as [`shutdown`](Self::shutdown) does
/// (campaigning stops and a held term is resigned), without waiting.
#[derive(Debug)]
#[must_use = "dropping the handle stops the runner (it resigns a held term)"]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    state: watch::Receiver<Option<Leading>>,
    stopped_by: Arc<OnceLock<Error>>,
    /// `None` when the runner stopped before it started (`stopped_by`).
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunnerHandle {
    /// The current term's info while this instance leads.
    pub fn leading(&self) -> Option<LeaderInfo> {
        let state = self.state.borrow();
        let leading = state.as_ref().filter(|l| !l.lost.is_lost());
        leading.map(|l| l.info.clone())
    }

    /// Whether this instance leads now: false from the moment its term is
    /// lost (the term's local validity ran out or a renewal was refused),
    /// as the term's `Leadership::is_leader` is.
    pub fn is_leader(&self) -> bool {
        (self.state.borrow().as_ref()).is_some_and(|l| !l.lost.is_lost())
    }

    /// The error the runner stopped on by itself, if it did (see
    /// [`LeaderRunner::start`]): it campaigns no more, and this instance
    /// will not lead until a new runner starts.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) {
    /// use coord_api::{LeaderRunner, LeaseOptions};
    /// let election = client.election("scheduler").with_options(LeaseOptions::default().max_drift(2.0));
    /// let runner = LeaderRunner::new(election).start();
    /// assert!(matches!(runner.stopped_by(), Some(coord_api::Error::InvalidArgument { .. })));
    /// # }
    /// ```
    pub fn stopped_by(&self) -> Option<&Error> {
        self.stopped_by.get()
    }

    /// Stops campaigning, aborts `on_acquired`, resigns a held term (and
    /// one that a campaign round still on its way won), and waits for all
    /// of that to finish.
    ///
    /// # Panics
    /// If the runner's task panicked, the panic goes on here rather than
    /// being lost.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let Some(task) = self.task else { return };
        if let Err(e) = task.await
            && e.is_panic()
        {
            #[cfg(not(madsim))]
            std::panic::resume_unwind(e.into_panic());
            #[cfg(madsim)]
            panic!("the leader runner's task panicked: {e}");
        }
    }
}
