//! Fair mode (decision 0033): waiters of an exclusive or reentrant lock or
//! of a semaphore served in arrival order. A waiter's place in the key's
//! queue is a lease of its own (the waiter TTL), renewed by asking again;
//! what a queued acquisition leaves behind (a place, a grant in flight) is
//! given back in the background, as for any acquisition.

use std::time::Duration;

use super::request::{Request, classify, release_once, site};
use crate::{
    Acquire, Client, Error, Key, LeaseId, Result,
    clock::Instant,
    handle::Handle,
    lease::undo::granting,
    trace::{self, Outcome},
};

/// The shortest waiter TTL a fair handle accepts: a waiter renews its place
/// at a third of it, one request each time.
pub const MIN_WAITER_TTL: Duration = Duration::from_millis(50);
/// The longest waiter TTL a fair handle accepts: a waiter that dies holds
/// the queue up for at most this long.
pub const MAX_WAITER_TTL: Duration = Duration::from_secs(3600);
/// The waiter TTL of a fair handle unless set: a dead waiter holds the
/// queue up for at most 3 s, a live one renews its place every second.
pub const DEFAULT_WAITER_TTL: Duration = Duration::from_secs(3);

/// A handle's fair mode: off, or on with its waiter TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FairMode {
    pub(crate) on: bool,
    pub(crate) waiter_ttl: Duration,
}

impl Default for FairMode {
    fn default() -> Self {
        FairMode {
            on: false,
            waiter_ttl: DEFAULT_WAITER_TTL,
        }
    }
}

impl FairMode {
    /// The waiter TTL when fair, checked against its limits (before any
    /// I/O) and against the backend's capability; `None` when not fair.
    pub(crate) fn checked(&self, handle: &Handle) -> Result<Option<Duration>> {
        if !self.on {
            return Ok(None);
        }
        let key = handle.key()?;
        check_waiter_ttl(key, self.waiter_ttl)?;
        if !handle.client.locks()?.capabilities().fair {
            return Err(handle.client.unsupported("fair lock"));
        }
        Ok(Some(self.waiter_ttl))
    }
}

/// `InvalidArgument` naming `key` and the limits unless `waiter_ttl` is in
/// [`MIN_WAITER_TTL`]`..=`[`MAX_WAITER_TTL`].
pub(crate) fn check_waiter_ttl(key: &Key, waiter_ttl: Duration) -> Result<()> {
    if !(MIN_WAITER_TTL..=MAX_WAITER_TTL).contains(&waiter_ttl) {
        return Err(Error::invalid(format!(
            "waiter_ttl {waiter_ttl:?} for key {:?} is out of range: a waiter TTL is from \
             {MIN_WAITER_TTL:?} to {MAX_WAITER_TTL:?}",
            key.as_str()
        )));
    }
    Ok(())
}

impl Request<'_> {
    /// One queued attempt for the lease `id` (see
    /// [`LockBackend::acquire_queued`](crate::spi::LockBackend::acquire_queued)):
    /// `enqueue` for a waiter, not for a `try_`. The answer and when the
    /// request left; unanswered, what it may have granted is released and
    /// the place it may have taken is given back, in the background.
    pub(crate) async fn call_queued(
        &self,
        waiter_ttl: Duration,
        enqueue: bool,
    ) -> Result<(Acquire, Instant)> {
        let (client, id, ttl) = (self.client, &self.id, self.opts.ttl);
        let t_sent = client.clock().now();
        let site = || site("acquire_queued", id);
        let acquire = (client.locks()?).acquire_queued(id, ttl, waiter_ttl, enqueue);
        let acquire = trace::call(client, site, acquire, classify);
        let within = ttl.max(waiter_ttl);
        let answer = granting(client, within, acquire, || give_back(id)).await?;
        Ok((answer, t_sent))
    }
}

/// Gives back everything a queued acquisition of `id` may hold, for an
/// `Undo`: the lease (a grant whose answer never came) and the place in
/// the queue, both whatever the other answered (the first error is the
/// answer). Both are holder-checked: giving back what was never taken
/// changes nothing.
pub(crate) fn give_back(
    id: &LeaseId,
) -> impl FnMut(Client) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + 'static
{
    let id = id.clone();
    move |client: Client| {
        let id = id.clone();
        Box::pin(async move {
            let locks = client.locks()?;
            let site = || site("leave_queue", &id);
            let left = trace::call(&client, site, locks.leave_queue(&id), Outcome::held).await;
            let released = release_once(&client, &id).await;
            left.and(released).map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use crate::{Client, Error, testing::Counting};

    /// A backend without the `fair` capability answers `NotSupported` to a
    /// fair handle, before any request; a bad waiter TTL is
    /// `InvalidArgument` first, naming the key and the limits.
    #[tokio::test]
    async fn fair_mode_needs_the_capability_and_a_valid_waiter_ttl() {
        let client = Client::new(Arc::new(Counting::default()));
        let res = client.lock("k").fair(true).try_lock().await;
        assert!(matches!(res, Err(Error::NotSupported { .. })), "{res:?}");
        let res = client.semaphore("k", 2).fair(true).acquire().await;
        assert!(matches!(res, Err(Error::NotSupported { .. })), "{res:?}");
        let res = (client.lock("k").fair(true))
            .waiter_ttl(Duration::ZERO)
            .lock()
            .await;
        match res {
            Err(Error::InvalidArgument { message }) => {
                assert!(
                    message.contains("\"k\"") && message.contains("50ms"),
                    "{message}"
                )
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
        // Not fair, the handle works as ever on that backend.
        let g = client.lock("k").try_lock().await.unwrap().expect("granted");
        g.release().await.unwrap();
    }

    /// A fair wait subscribes beside its first attempt. When the
    /// subscription is in effect before the attempt leaves (the key was
    /// watched already), the refusal is followed by sleep, not by another
    /// attempt: one attempt before the wake-up and one after. When it is
    /// not, one attempt at once covers a change it could have missed.
    #[tokio::test(start_paused = true)]
    async fn a_fair_wait_watching_before_its_attempt_attempts_once_per_wake_up() {
        for (subscribe_takes, before_wake_up) in
            [(Duration::ZERO, 1), (Duration::from_millis(10), 2)]
        {
            let backend = Arc::new(Counting::with_closed_queue(subscribe_takes));
            let client = Client::new(backend.clone());
            let waiter = tokio::spawn(async move { client.lock("k").fair(true).lock().await });
            // (Paused time: the retry delay and the refresh, a second
            // each, are far off.)
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(backend.queued(), before_wake_up, "{subscribe_takes:?}");
            backend.open_queue();
            let guard = waiter.await.unwrap().unwrap();
            assert_eq!(backend.queued(), before_wake_up + 1, "{subscribe_takes:?}");
            guard.release().await.unwrap();
        }
    }
}
