//! What an acquisition leaves behind when its answer never came: a request
//! that timed out, lost its reply or was cancelled may still have been
//! applied, granting a lease nobody knows of. The client releases it in the
//! background, blindly (every release is holder-checked, so releasing what
//! was never granted changes nothing), retrying while the backend is
//! unreachable for at most the lease's TTL (after which it has expired
//! anyway). With the same pacing, [`resend_while_valid`] sends a holder's
//! last step (a run's end, a node's completion) again while its lease
//! holds.

use std::{future::Future, time::Duration};

use crate::{
    Client, Error, Result,
    lease::{Lease, spawn_background},
};

/// Runs `call`, an acquisition that may grant a lease. If it is cancelled,
/// or ends in an error after which it may have been applied
/// ([`Error::is_retryable`](crate::Error::is_retryable): a timeout, a lost
/// connection), `undo` (made by `make_undo`, only then) releases in the
/// background whatever it may have granted, see [`retry`].
pub(crate) async fn granting<T>(
    client: &Client,
    ttl: Duration,
    call: impl Future<Output = Result<T>>,
    make_undo: impl MakeUndo,
) -> Result<T> {
    let mut undo = Undo::new(client, ttl, make_undo);
    let res = call.await;
    if !matches!(&res, Err(e) if e.is_retryable()) {
        undo.disarm();
    }
    res
}

/// Releases in the background what something may have been granted, when
/// dropped armed: see [`retry`]. `make_undo` makes the release only then.
pub(crate) struct Undo<'a, M: MakeUndo> {
    client: &'a Client,
    ttl: Duration,
    make_undo: Option<M>,
}

impl<'a, M: MakeUndo> Undo<'a, M> {
    /// Armed: fires when dropped unless [`disarm`](Self::disarm)ed.
    pub(crate) fn new(client: &'a Client, ttl: Duration, make_undo: M) -> Self {
        Undo {
            client,
            ttl,
            make_undo: Some(make_undo),
        }
    }

    /// Nothing to undo after all.
    pub(crate) fn disarm(&mut self) {
        self.make_undo = None;
    }
}

impl<M: MakeUndo> Drop for Undo<'_, M> {
    fn drop(&mut self) {
        if let Some(make) = self.make_undo.take() {
            make.fire(self.client.clone(), self.ttl);
        }
    }
}

/// A clean-up that calls `call` with the client and a copy of `args` at
/// each attempt: the shape of every give-back (what a receive, read or
/// take whose answer never came was handed, decision 0044).
pub(crate) fn calling<A, F, Fut>(args: A, call: F) -> impl MakeUndo
where
    A: Clone + Send + 'static,
    F: Fn(Client, A) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    move || move |client: Client| call(client, args.clone())
}

/// A random id naming one call (a receive, a read) so that its clean-up
/// can name what that call was handed: never 0, which names none.
pub(crate) fn call_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// Makes, when needed, the release an [`Undo`] runs: a closure returning
/// the release to [`retry`].
pub(crate) trait MakeUndo {
    /// Makes the release and runs it in the background.
    fn fire(self, client: Client, ttl: Duration);
}

impl<M, U, Fut> MakeUndo for M
where
    M: FnOnce() -> U,
    U: FnMut(Client) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    fn fire(self, client: Client, ttl: Duration) {
        let undo = self();
        // Through a closer: a clean-up only gives up, also once the client
        // is closed (a grant whose answer was lost during close).
        let client = client.closer();
        spawn_background(async move { retry(&client, ttl, undo).await });
    }
}

/// Runs `undo` until it answers (whatever the answer, `Unconfirmed`
/// included: the master applied it, and repeating it would not make the
/// replicas confirm what they lack) or fails with an error that is not
/// retryable, waiting between attempts (10 ms, doubling up to a second,
/// and never more than a tenth of `within`, see [`longest_pause`]) while
/// the backend is unreachable; gives up once `within` has passed.
pub(crate) async fn retry<U, Fut>(client: &Client, within: Duration, mut undo: U)
where
    U: FnMut(Client) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let clock = client.clock().clone();
    let deadline = clock.now().checked_add(within);
    let longest = longest_pause(within);
    let mut pause = Duration::from_millis(10).min(longest);
    loop {
        match undo(client.clone()).await {
            Err(Error::Unconfirmed { .. }) => return,
            Err(e) if e.is_retryable() => {}
            _ => return,
        }
        let now = clock.now();
        if deadline.is_none_or(|d| now >= d) {
            return;
        }
        clock.sleep_until(now + pause).await;
        pause = (pause * 2).min(longest);
    }
}

/// Sends `call` again while `lease` is valid here, for as long as it fails
/// without an answer (a retryable error; not `Unconfirmed`: the master
/// applied that one, and a repeat would only find it done), paced as
/// [`retry`] is for a lease of `ttl`, never sleeping past the lease's local
/// validity. For the step that ends a holder's work (a run's end, a node's
/// completion): the backend checks the holder or token, so a repeat of a
/// step that was applied after all changes nothing, while giving up at the
/// first blip would leave finished work to expire and run again. `first`
/// is the first attempt's answer; the last answer, and whether `call` was
/// sent again.
pub(crate) async fn resend_while_valid<T, F, Fut>(
    client: &Client,
    lease: &Lease,
    ttl: Duration,
    first: Result<T>,
    mut call: F,
) -> (Result<T>, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let clock = client.clock();
    let longest = longest_pause(ttl);
    let mut pause = Duration::from_millis(10).min(longest);
    let (mut answer, mut again) = (first, false);
    loop {
        match &answer {
            Err(e) if e.is_retryable() && !matches!(e, Error::Unconfirmed { .. }) => {}
            _ => return (answer, again),
        }
        let Some(until) = lease.valid_until() else {
            return (answer, again);
        };
        if let Err(e) = &answer {
            tracing::debug!(key = %lease.tenure.key(), error = %e, "sending again while the lease holds");
        }
        clock.sleep_until((clock.now() + pause).min(until)).await;
        pause = (pause * 2).min(longest);
        (answer, again) = (call().await, true);
    }
}

/// The longest pause between two attempts of a clean-up that has `within`
/// (the TTL of what it releases): a second, or a tenth of `within` if that
/// is shorter. The promise is that what an unanswered acquisition was
/// granted is free again within a renewal interval (a third of the TTL by
/// default) once the backend answers, not after the TTL. Pauses of up to a
/// second do not keep it for TTLs of a few seconds: with a 1 s TTL, after
/// six failed attempts (transient faults, not an outage) the next one came
/// 630 ms after the first failure, and a seventh failure left the grant to
/// its TTL. A tenth keeps every pause well inside a renewal interval and
/// leaves room for at least ten attempts within the TTL; TTLs of 10 s and
/// more keep the second.
pub(crate) fn longest_pause(within: Duration) -> Duration {
    (within / 10).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;
    use crate::testing::Counting;

    /// How many times [`retry`] runs a release that always answers `answer`.
    async fn attempts(answer: fn() -> Result<()>) -> u32 {
        let client = Client::new(Arc::new(Counting::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        retry(&client, Duration::from_secs(5), move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { answer() }
        })
        .await;
        calls.load(Ordering::SeqCst)
    }

    /// A release the master applied but too few replicas confirmed is not
    /// repeated (repeating it cannot make them confirm), although
    /// `Unconfirmed` is retryable; one that could not reach the backend is,
    /// until `within` has passed.
    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_unconfirmed_and_repeats_while_unavailable() {
        assert_eq!(attempts(|| Ok(())).await, 1);
        assert_eq!(
            attempts(|| Err(Error::Unconfirmed {
                what: "release lock \"k\"".into(),
                backend: "test".into(),
                by: "replicas",
                acked: 0,
                wanted: 1,
            }))
            .await,
            1
        );
        assert!(attempts(|| Err(Error::unavailable("test", "gone"))).await > 1);
    }

    /// A clean-up fired on a closed client still goes out (through its
    /// closer: it only gives things up); through the client itself it was
    /// refused with `Closed`, and what it releases stayed held until its TTL.
    #[tokio::test(start_paused = true)]
    async fn a_clean_up_goes_out_after_close() {
        let backend = Arc::new(Counting::default());
        let client = Client::new(backend.clone());
        client.close().await.unwrap();
        let id = crate::spi::LeaseId {
            kind: crate::LeaseKind::Exclusive,
            key: crate::Key::new("k").unwrap(),
            holder: crate::HolderId::new(*client.instance_id()),
        };
        let release = || {
            move |client: Client| {
                let id = id.clone();
                async move { client.locks()?.release(&id).await.map(drop) }
            }
        };
        drop(Undo::new(&client, Duration::from_secs(5), release));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(backend.releases(), 1);
    }

    /// Pauses double from 10 ms up to a second, or up to a tenth of the
    /// TTL when that is shorter.
    #[test]
    fn pauses_stay_within_a_tenth_of_the_ttl() {
        let ms = Duration::from_millis;
        assert_eq!(longest_pause(Duration::from_secs(30)), ms(1_000));
        assert_eq!(longest_pause(Duration::from_secs(10)), ms(1_000));
        assert_eq!(longest_pause(Duration::from_secs(1)), ms(100));
        assert_eq!(longest_pause(ms(50)), ms(5));
        assert_eq!(longest_pause(Duration::ZERO), ms(1));
        assert_eq!(longest_pause(Duration::MAX), ms(1_000));
    }
}
