//! The leader runner: campaign, call back, re-campaign after a loss.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{FencingToken, LeaderInfo, LostSignal, election::Election};

type Callback<A> = Arc<dyn Fn(A) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What `on_acquired` gets: the term, the leader info, and the lost signal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeaderContext {
    /// The term (fencing token) of this leadership.
    pub term: FencingToken,
    /// The leader info published for this term.
    pub info: LeaderInfo,
    /// Fires when the term ends (lost, or resigned at shutdown).
    pub lost: LostSignal,
}

/// Runs an instance's part in an election for as long as it lives: campaigns,
/// calls `on_acquired` when elected (as a task that is aborted when the term
/// ends), calls `on_lost` when the term is lost, then campaigns again after a
/// jittered, growing backoff. [`RunnerHandle::shutdown`] resigns.
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
#[must_use = "a runner does nothing until started"]
pub struct LeaderRunner {
    election: Election,
    on_acquired: Option<Callback<LeaderContext>>,
    on_lost: Option<Callback<FencingToken>>,
    backoff: (Duration, Duration),
}

impl LeaderRunner {
    /// A runner for `election` (its options, metadata and quorum apply).
    pub fn new(election: Election) -> LeaderRunner {
        LeaderRunner {
            election,
            on_acquired: None,
            on_lost: None,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
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
    /// at `min`, doubles up to `max`, jittered; reset by a won term.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max.max(min));
        self
    }

    /// Called (as a task) when a term is won; aborted when it ends.
    pub fn on_acquired<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(LeaderContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_acquired = Some(Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Called when a term is lost (not when the runner shuts down).
    pub fn on_lost<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(FencingToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_lost = Some(Arc::new(move |term| Box::pin(f(term))));
        self
    }

    /// Starts campaigning in the background.
    pub fn start(self) -> RunnerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(None);
        let task = tokio::spawn(self.run(stop_rx, state_tx));
        RunnerHandle {
            stop: stop_tx,
            state: state_rx,
            task,
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>, state: watch::Sender<Option<LeaderInfo>>) {
        let (min, max) = self.backoff;
        let mut backoff = min;
        loop {
            let won = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                r = self.election.campaign() => r,
            };
            let leadership = match won {
                Ok(l) => l,
                Err(e @ crate::Error::Closed { .. }) => {
                    tracing::info!(error = %e, "leader runner: the client closed; stopping");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader runner: campaign failed; backing off");
                    if pause(&mut stop, &mut backoff, max).await {
                        return;
                    }
                    continue;
                }
            };
            backoff = min;
            let term = leadership.term();
            state.send_replace(Some(leadership.info().clone()));
            let callback = self.on_acquired.as_ref().map(|f| {
                tokio::spawn(f(LeaderContext {
                    term,
                    info: leadership.info().clone(),
                    lost: leadership.lost_signal(),
                }))
            });
            let stopped = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => true,
                _ = leadership.lost() => false,
            };
            if let Some(task) = callback {
                task.abort();
            }
            state.send_replace(None);
            if stopped {
                let _ = leadership.resign().await;
                return;
            }
            drop(leadership);
            if let Some(f) = &self.on_lost {
                f(term).await;
            }
            if pause(&mut stop, &mut backoff, max).await {
                return;
            }
        }
    }
}

/// Sleeps a jittered `backoff` (doubling it up to `max`); true if stopped.
/// Saturates instead of overflowing, whatever the durations.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration, max: Duration) -> bool {
    let jittered = backoff.as_secs_f64() * rand::random_range(0.5..=1.0);
    let wait = Duration::try_from_secs_f64(jittered).unwrap_or(*backoff);
    *backoff = backoff.saturating_mul(2).min(max);
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => true,
        _ = sleep_for(wait) => false,
    }
}

/// Sleeps `d`, or for ever when `d` reaches past the clock's range.
async fn sleep_for(d: Duration) {
    match tokio::time::Instant::now().checked_add(d) {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A running [`LeaderRunner`].
#[derive(Debug)]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    state: watch::Receiver<Option<LeaderInfo>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunnerHandle {
    /// The current term's info while this instance leads.
    pub fn leading(&self) -> Option<LeaderInfo> {
        self.state.borrow().clone()
    }

    /// Whether this instance leads now.
    pub fn is_leader(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// Stops campaigning, aborts `on_acquired`, resigns a held term, and
    /// waits for all of that to finish.
    ///
    /// # Panics
    /// If the runner's task panicked, the panic goes on here rather than
    /// being lost.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            #[cfg(not(madsim))]
            std::panic::resume_unwind(e.into_panic());
            #[cfg(madsim)]
            panic!("the leader runner's task panicked: {e}");
        }
    }
}
