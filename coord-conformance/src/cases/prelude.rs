//! What every case file uses: imports and small helpers.

pub(crate) use std::{
    fmt::Debug,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, SystemTime},
};

pub(crate) use coord_api::{
    Client, Election, Error, FencingToken, HolderId, InstanceId, Key, LeaderRunner, Leadership,
    LeaseGuard, LeaseKind, LeaseOptions, Lock, LockSpace, LostSignal, MAX_TTL, Quorum, Result,
    RunOnce,
    spi::{
        Acquire, Campaign, DynBackend, GroupBackend, JobBackend, LeaseId, LockBackend,
        LockCapabilities, Members, OnceBegin, Release,
    },
};
pub(crate) use tokio::{
    sync::mpsc,
    time::{Instant, sleep, sleep_until, timeout},
};

pub(crate) use crate::{
    Ctx, Need,
    harness::{default_options, eventually},
    switch::Switch,
};

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Options that wait "for ever" (a `wait_timeout` of `Duration::MAX`) or
/// only for notifications (a `retry_delay` of `Duration::MAX`), each with
/// a short name (an instance id): they must work or be refused, never
/// panic.
pub(crate) fn extreme_waits() -> [(&'static str, LeaseOptions); 2] {
    [
        (
            "wait-max",
            default_options().wait_timeout(Some(Duration::MAX)),
        ),
        ("retry-max", default_options().retry_delay(Duration::MAX)),
    ]
}

/// Default test options with `ttl_ms` and auto-extension off: the lease lives
/// exactly its TTL unless released.
pub(crate) fn no_extend(ttl_ms: u64) -> LeaseOptions {
    default_options().ttl(ms(ttl_ms)).auto_extend(false)
}

/// A holder id no client ever drew.
pub(crate) fn intruder() -> HolderId {
    HolderId::new(InstanceId::new("intruder").expect("valid instance id"))
}

pub(crate) fn key(k: &str) -> Key {
    Key::new(k).expect("valid key")
}

#[track_caller]
pub(crate) fn assert_invalid<T: Debug>(res: Result<T>, what: &str) {
    match res {
        Err(Error::InvalidArgument { .. }) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Takes `lock` at once or panics.
pub(crate) async fn take(lock: &Lock, what: &str) -> LeaseGuard {
    lock.try_lock()
        .await
        .unwrap_or_else(|e| panic!("{what}: try_lock failed: {e}"))
        .unwrap_or_else(|| panic!("{what}: expected the lock to be free"))
}

/// Whether `lock` is taken by someone else now (a grant is released at once).
pub(crate) async fn is_busy(lock: &Lock) -> bool {
    match lock.try_lock().await.expect("try_lock") {
        Some(g) => {
            g.release().await.expect("release");
            false
        }
        None => true,
    }
}

/// Polls `lock.try_lock()` until granted, for at most `within`.
pub(crate) async fn take_within(lock: &Lock, within: Duration) -> Option<LeaseGuard> {
    eventually(within, || async {
        lock.try_lock().await.expect("try_lock")
    })
    .await
}

/// Awaits an acquisition that must be refused without waiting.
pub(crate) async fn at_once<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    timeout(ms(2000), fut)
        .await
        .expect("refused at once, not waited on")
}

/// Awaits a spawned task for at most `within`; panics naming `what`.
pub(crate) async fn join<T>(task: tokio::task::JoinHandle<T>, within: Duration, what: &str) -> T {
    timeout(within, task)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {within:?}"))
        .unwrap_or_else(|e| panic!("{what}: task failed: {e}"))
}

/// The lock family's capabilities (the case's family needs say it is there).
pub(crate) async fn caps(ctx: &Ctx<'_>) -> LockCapabilities {
    ctx.families()
        .await
        .locks
        .expect("the backend offers locks")
}

/// The lock family of `backend` (the case's family needs say it is there).
pub(crate) fn locks(backend: &DynBackend) -> &dyn LockBackend {
    backend.locks().expect("the backend offers locks")
}

/// The group family of `backend` (the case's family needs say it is there).
pub(crate) fn group_backend(backend: &DynBackend) -> &dyn GroupBackend {
    backend.groups().expect("the backend offers groups")
}

/// The run-once family of `backend` (the case's family needs say it is
/// there).
pub(crate) fn job_backend(backend: &DynBackend) -> &dyn JobBackend {
    backend.jobs().expect("the backend offers jobs")
}

/// A fresh holder id of instance `name`: each call is another incarnation
/// (same instance, another nonce), as a process gets for each acquisition.
pub(crate) fn holder(name: &str) -> HolderId {
    HolderId::new(InstanceId::new(name).expect("valid instance id"))
}

/// Sleeps until a lease of `ttl` granted before `replied` (an instant read
/// after the grant's reply arrived) has expired by the backend's clock, with
/// nothing reading it meanwhile: the case then checks what an operation does
/// to a lease whose expiry nobody noticed. A backend's deadline was set
/// before `replied`, so this cannot stop short of it; a wait too short
/// would make the case fail, never pass.
pub(crate) async fn past_deadline(replied: Instant, ttl: Duration) {
    sleep_until(replied + ttl + ms(30)).await;
}

/// Wins `election` at once or panics.
pub(crate) async fn elect(election: &Election, what: &str) -> Leadership {
    election
        .try_campaign()
        .await
        .unwrap_or_else(|e| panic!("{what}: try_campaign failed: {e}"))
        .unwrap_or_else(|| panic!("{what}: expected to be elected"))
}

/// Waits (bounded) for `election` to be won; returns the leadership and when.
pub(crate) fn campaign_task(
    election: Election,
) -> tokio::task::JoinHandle<coord_api::Result<(Leadership, Instant)>> {
    tokio::spawn(async move {
        let l = election.campaign().await?;
        Ok((l, Instant::now()))
    })
}

/// The leader's term as the backend tells anyone, `None` when vacant.
pub(crate) async fn current_term(client: &Client, name: &str) -> Option<FencingToken> {
    client
        .election(name)
        .leader()
        .await
        .expect("leader")
        .map(|l| l.term)
}

pub(crate) fn quorum(group: &str, min_members: u32) -> Quorum {
    Quorum {
        group: key(group),
        min_members,
    }
}

/// Runs `attempt` with `switch` losing replies: the backend applies it and
/// the caller gets `Unavailable`, as after a timeout or a connection dropped
/// after sending. The switch is on again afterwards.
pub(crate) async fn with_lost_reply<T: Debug>(
    switch: &Switch,
    what: &str,
    attempt: impl std::future::Future<Output = Result<T>>,
) {
    switch.losing_replies();
    let res = attempt.await;
    switch.on();
    match res {
        Err(e) if e.is_retryable() => {}
        other => panic!("{what}: expected Unavailable (reply lost), got {other:?}"),
    }
}

/// The TTL of the lost-reply cases: long, so that a key freed by its expiry
/// is told apart from one freed by the client's clean-up.
pub(crate) const LOST_REPLY_TTL: Duration = Duration::from_secs(9);

/// How soon a key must be free again after a lost reply: well within a
/// renewal interval (a third of [`LOST_REPLY_TTL`]).
pub(crate) const FREED_WITHIN: Duration = Duration::from_millis(2000);

/// Panics unless `tokens` strictly increase.
#[track_caller]
pub(crate) fn assert_increasing(tokens: &[FencingToken], what: &str) {
    for w in tokens.windows(2) {
        assert!(w[0] < w[1], "{what} tokens not increasing: {tokens:?}");
    }
}
