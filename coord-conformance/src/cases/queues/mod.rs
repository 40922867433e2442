//! Work queues (`contract::queues`): pushing (every item checked before any
//! I/O, order, priority, delay, dedup), receiving (waiting without polling,
//! prefetch, items that do not decode), settling (ack, nack and its
//! back-off, dead letters, `Consumer::run`), leases (fencing, expiry,
//! auto-extension, the lost signal, a dropped delivery), consumers (leave,
//! dead consumers, stealing), giving back what a receive whose answer
//! never came delivered, and dead letters and counts. One file per theme,
//! and the helpers they share.
//!
//! Clients run with a 10 s retry delay, so a consumer that is prompt was
//! woken by the backend's notification or told when to look again
//! (`next_in`), never by polling. A crashed consumer is a holder that
//! receives through the SPI and never calls again.

use crate::{cases::prelude::*, runner::Case};
pub(crate) use coord_api::{
    DeadLetter, ItemContext, NodeError, PushOptions, PushOutcome, Queue,
    spi::{
        MAX_BATCH, MAX_ITEM_ATTEMPTS, MAX_PAYLOAD_BYTES, Nack, QueueBackend, QueueStats,
        ReceiveOptions, Settle,
    },
};

/// Receives `n` items from `consumer` (each within [`PROMPTLY`]), acking
/// each; their values, in order.
macro_rules! drain {
    ($consumer:expr, $n:expr, $what:expr) => {{
        let mut out = Vec::new();
        for i in 0..$n {
            let d = within($consumer.receive(), &format!("{}: item {i}", $what)).await;
            out.push(d.item().clone());
            within(d.ack(), &format!("{}: ack {i}", $what)).await;
        }
        out
    }};
}

pub mod consumers;
pub mod dead;
pub mod give_back;
pub mod leases;
pub mod push;
pub mod receive;
pub mod refuse;
pub mod settle;

/// The family's cases, file by file.
pub(crate) fn cases() -> Vec<Case> {
    [
        refuse::cases(),
        push::cases(),
        receive::cases(),
        settle::cases(),
        leases::cases(),
        consumers::cases(),
        dead::cases(),
        give_back::cases(),
    ]
    .concat()
}

/// How long something a notification or a `next_in` brings about may take:
/// well under the clients' 10 s retry delay, so that only a consumer woken
/// by the backend (not by its fallback retry) is in time.
pub(crate) const PROMPTLY: Duration = Duration::from_millis(2000);

/// The queue name every case uses.
pub(crate) const Q: &str = "q";

/// The queue `Q` of numbers on `client`.
pub(crate) fn numbers(client: &Client) -> Queue<u64> {
    client.queue(Q)
}

/// The queue `Q` of strings on `client`.
pub(crate) fn texts(client: &Client) -> Queue<String> {
    client.queue(Q)
}

/// The queue SPI of `backend` (the family's needs say it is there).
pub(crate) fn spi(backend: &DynBackend) -> &dyn QueueBackend {
    backend.queues().expect("the backend offers work queues")
}

/// A consumer that receives through the SPI and then crashes: it never
/// heartbeats, settles nor leaves.
pub(crate) fn crashed() -> HolderId {
    HolderId::new(InstanceId::new("crashed").expect("valid instance id"))
}

/// Awaits `fut` (a receive, a wait) for at most [`PROMPTLY`]; panics
/// naming `what` if it failed or took longer.
pub(crate) async fn within<T>(fut: impl std::future::Future<Output = Result<T>>, what: &str) -> T {
    match timeout(PROMPTLY, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:?}"),
        Err(_) => panic!("{what}: not done within {PROMPTLY:?}"),
    }
}

/// Waits (bounded by [`PROMPTLY`]) for `lost` to fire; panics naming
/// `what` otherwise.
pub(crate) async fn fires(lost: &LostSignal, what: &str) {
    if timeout(PROMPTLY, lost.wait()).await.is_err() {
        panic!("{what}: the lost signal did not fire within {PROMPTLY:?}");
    }
}

/// Panics unless `res` is `Timeout` (a receive that found nothing).
#[track_caller]
pub(crate) fn assert_timeout<T: Debug>(res: Result<T>, what: &str) {
    match res {
        Err(Error::Timeout { .. }) => {}
        other => panic!("{what}: expected Timeout, got {other:?}"),
    }
}

/// Panics unless `res` is `LeaseLost`.
#[track_caller]
pub(crate) fn assert_lease_lost<T: Debug>(res: Result<T>, what: &str) {
    match res {
        Err(Error::LeaseLost { .. }) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

/// The message of an `InvalidArgument`, or a panic naming `what`.
#[track_caller]
pub(crate) fn invalid<T: Debug>(res: Result<T>, what: &str) -> String {
    match res {
        Err(Error::InvalidArgument { message }) => message,
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// The counts of queue `Q` now (they do not depend on the item type).
pub(crate) async fn stats(client: &Client) -> QueueStats {
    numbers(client).stats().await.expect("stats")
}

/// `(ready, delayed, in_flight, dead)` of `s`.
pub(crate) fn places(s: &QueueStats) -> (u64, u64, u64, u64) {
    (s.ready, s.delayed, s.in_flight, s.dead)
}

/// `(delivered, redelivered, stolen, dead_lettered)` of `s`.
pub(crate) fn counts(s: &QueueStats) -> (u64, u64, u64, u64) {
    (s.delivered, s.redelivered, s.stolen, s.dead_lettered)
}

/// The live consumers' instances in `s`, sorted.
pub(crate) fn consumers(s: &QueueStats) -> Vec<String> {
    let mut v: Vec<String> = s.consumers.iter().map(|i| i.as_str().to_owned()).collect();
    v.sort();
    v
}

/// Waits (bounded by [`PROMPTLY`]) until the counts of queue `Q` satisfy
/// `cond`, and returns them; panics naming `what` with the last counts
/// otherwise. (Every step sweeps first, so a read of the counts is the step
/// that moves what is due.)
pub(crate) async fn stats_when(
    client: &Client,
    what: &str,
    cond: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    queue_stats_when(&numbers(client), what, cond).await
}

/// Waits (bounded by [`PROMPTLY`]) until the counts of `queue` satisfy
/// `cond`; panics naming `what` with the last counts otherwise.
pub(crate) async fn queue_stats_when(
    queue: &Queue<u64>,
    what: &str,
    cond: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let stats = || async { queue.stats().await.expect("stats") };
    let seen = eventually(PROMPTLY, || async {
        let s = stats().await;
        cond(&s).then_some(s)
    })
    .await;
    match seen {
        Some(s) => s,
        None => panic!("{what}: not within {PROMPTLY:?}: {:?}", stats().await),
    }
}

/// A client whose backend is switched off (anything reaching it would be
/// `Unavailable`), and its switch.
pub(crate) async fn offline(ctx: &Ctx<'_>) -> (Client, Switch) {
    let (c, switch) = ctx.switchable_client("offline", default_options()).await;
    switch.off();
    (c, switch)
}

/// Spawned consumer loops, aborted when dropped, so that none outlives its
/// case (the simulator runs every case on one runtime).
pub(crate) struct Loops(Vec<tokio::task::JoinHandle<Result<()>>>);

impl Loops {
    /// No loop yet.
    pub(crate) fn new() -> Loops {
        Loops(Vec::new())
    }

    /// Spawns `run` (a `Consumer::run`).
    pub(crate) fn spawn(
        &mut self,
        run: impl std::future::Future<Output = Result<()>> + Send + 'static,
    ) {
        self.0.push(tokio::spawn(run));
    }

    /// Panics if a loop ended (a consumer's `run` returned: it would not
    /// consume any more).
    #[track_caller]
    pub(crate) fn assert_running(&self) {
        for (i, l) in self.0.iter().enumerate() {
            assert!(!l.is_finished(), "consumer loop {i} stopped");
        }
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for l in &self.0 {
            l.abort();
        }
    }
}
