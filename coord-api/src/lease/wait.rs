//! The wait loop every waiting operation shares (`lock`, `read`, `write`,
//! `acquire`, `campaign`, `run_once`): attempt; on refusal subscribe to the
//! backend's notifications and attempt again when woken, with a jittered
//! retry as a fallback for a lost notification.

use std::time::Duration;

use crate::{
    Client, LeaseOptions, Result, Watch,
    clock::{Clock, Instant},
};

/// One round of a wait: done, or refused (with the time until what blocks
/// expires, when known).
pub(crate) enum Step<T> {
    Done(T),
    Busy(Option<Duration>),
}

/// What a waiting operation does each round.
pub(crate) trait Attempts {
    type Output;
    /// One attempt.
    async fn attempt(&mut self) -> Result<Step<Self::Output>>;
    /// A watch that wakes when a new attempt may succeed.
    async fn subscribe(&self) -> Result<Box<dyn Watch>>;
    /// What is waited for, for `Error::Timeout`.
    fn what(&self) -> String;
}

/// The wait loop every waiting operation shares: attempt; on refusal
/// subscribe (then attempt again at once, so a change between the refusal
/// and the subscription is not missed); then sleep until a notification, the
/// expiry of what blocks, the jittered retry delay, `refresh` (a waiter that
/// must re-assert itself) or the deadline, and attempt again. Ends with
/// `Error::Timeout` after `wait_timeout` or `max_retries`; a backend error
/// ends the wait at once (`Unavailable` is retryable by the caller), and so
/// does closing the client (`Error::Closed`, at once, not at the next
/// attempt).
pub(crate) async fn wait_for<A: Attempts>(
    client: &Client,
    opts: &LeaseOptions,
    refresh: Option<Duration>,
    attempts: A,
) -> Result<A::Output> {
    wait_from(client, opts, refresh, attempts, client.clock().now(), None).await
}

/// A caller's first attempt, made and refused before the wait loop, with
/// the watch made beside it.
pub(crate) struct Refused {
    /// The watch, made before the attempt left.
    pub(crate) watch: Box<dyn Watch>,
    /// The refusal's time until what blocks expires, when known.
    pub(crate) retry_in: Option<Duration>,
    /// The subscription was in effect before the attempt left (it
    /// completed at once: the key was watched already), so every change
    /// after the attempt wakes the watch: no attempt at once is needed.
    pub(crate) in_effect_before: bool,
}

/// [`wait_for`], for a caller that read the clock when it began (`start`),
/// to time the whole wait. `first`: the caller's first attempt was made
/// already and refused; the loop goes on as if it had subscribed after that
/// refusal (checks, then an attempt at once: the subscription may have been
/// confirmed after the refusal), or, when the subscription was in effect
/// before the attempt left, as if it had just been woken in vain (checks,
/// then the sleep).
pub(crate) async fn wait_from<A: Attempts>(
    client: &Client,
    opts: &LeaseOptions,
    refresh: Option<Duration>,
    mut attempts: A,
    start: Instant,
    first: Option<Refused>,
) -> Result<A::Output> {
    let clock = client.clock().clone();
    let deadline = opts.wait_timeout.map(|w| later(start, w));
    let (mut made, mut refused, mut watch) = (None, None, None);
    if let Some(f) = first {
        refused = Some(f.retry_in);
        if f.in_effect_before {
            watch = Some(f.watch);
        } else {
            made = Some(f.watch);
        }
    }
    let mut retries = 0u32;
    loop {
        let retry_in = match refused.take() {
            Some(retry_in) => retry_in,
            None => {
                let step = attempts.attempt().await?;
                // Answered: the wake-up that led here is used (dropped
                // before this, the watch hands it on).
                if let Some(w) = watch.as_mut() {
                    w.used();
                }
                match step {
                    Step::Done(v) => return Ok(v),
                    Step::Busy(retry_in) => retry_in,
                }
            }
        };
        let timed_out = |now: Instant| client.timed_out(attempts.what(), now - start);
        let now = clock.now();
        if deadline.is_some_and(|d| now >= d) || opts.max_retries.is_some_and(|m| retries >= m) {
            return Err(timed_out(now));
        }
        retries += 1;
        let Some(w) = watch.as_mut() else {
            // A subscription is waiting too: it ends at the deadline (a
            // slow one, e.g. while the backend reconnects, would otherwise
            // keep the caller up to an operation timeout past it).
            let subscribed = match made.take() {
                Some(w) => w,
                None => match before(clock.as_ref(), deadline, attempts.subscribe()).await {
                    Some(w) => w?,
                    None => return Err(timed_out(clock.now())),
                },
            };
            watch = Some(subscribed);
            continue;
        };
        let wake = wake_at(opts, now, retry_in, refresh, deadline);
        tokio::select! {
            biased;
            res = w.changed() => {
                if res.is_err() {
                    // The notification channel broke; resubscribe.
                    watch = None;
                }
            }
            _ = clock.sleep_until(wake) => {}
            // Closed: the next attempt answers `Error::Closed`.
            () = client.until_closed() => {}
        }
    }
}

/// `fut`'s output, or `None` when `deadline` (on `clock`) comes first
/// (`fut` is then dropped); with no deadline, `fut`'s output.
pub(crate) async fn before<T>(
    clock: &dyn Clock,
    deadline: Option<Instant>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let Some(deadline) = deadline else {
        return Some(fut.await);
    };
    tokio::select! {
        biased;
        out = fut => Some(out),
        _ = clock.sleep_until(deadline) => None,
    }
}

/// When to retry without a notification: the jittered retry delay, the
/// instant the blocking lease expires, the refresh period, or the deadline,
/// whichever comes first.
pub(crate) fn wake_at(
    opts: &LeaseOptions,
    now: Instant,
    retry_in: Option<Duration>,
    refresh: Option<Duration>,
    deadline: Option<Instant>,
) -> Instant {
    let mut wake = later(now, jittered(opts));
    if let Some(r) = retry_in {
        wake = wake.min(later(now, r.saturating_add(Duration::from_millis(1))));
    }
    if let Some(r) = refresh {
        wake = wake.min(later(now, r));
    }
    if let Some(d) = deadline {
        wake = wake.min(d);
    }
    wake
}

/// The retry delay, scaled by a random factor in `1 ± retry_jitter`.
pub(crate) fn jittered(opts: &LeaseOptions) -> Duration {
    let jitter = opts.retry_jitter;
    let factor = if jitter > 0.0 {
        1.0 + rand::random_range(-jitter..=jitter)
    } else {
        1.0
    };
    Duration::try_from_secs_f64(opts.retry_delay.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// How long a waiting receive sleeps before it looks again: the backend's
/// hint `next_in` (at least a millisecond, so that a hint of zero does not
/// spin), at most the jittered retry delay; without a hint, that delay.
/// (`clamp` would panic on a retry delay under a millisecond.)
pub(crate) fn hinted_wait(opts: &LeaseOptions, next_in: Option<Duration>) -> Duration {
    let fallback = jittered(opts);
    next_in.map_or(fallback, |n| n.max(Duration::from_millis(1)).min(fallback))
}

/// `t + d`, or a century after `t` when that overflows (a "for ever" wait).
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hint is taken between a millisecond and the retry delay, also
    /// when the retry delay is under a millisecond (the queue consumer's,
    /// graph worker's and topic subscriber's waits panicked in `clamp`).
    #[test]
    fn a_hinted_wait_lies_between_a_millisecond_and_the_retry_delay() {
        let ms = Duration::from_millis;
        let opts = |delay| LeaseOptions::default().retry_delay(delay).retry_jitter(0.0);
        let quick = opts(Duration::from_micros(100));
        assert_eq!(hinted_wait(&quick, Some(ms(5))), Duration::from_micros(100));
        assert_eq!(hinted_wait(&quick, None), Duration::from_micros(100));
        let slow = opts(ms(500));
        assert_eq!(hinted_wait(&slow, Some(Duration::ZERO)), ms(1));
        assert_eq!(hinted_wait(&slow, Some(ms(20))), ms(20));
        assert_eq!(hinted_wait(&slow, Some(ms(900))), ms(500));
        assert_eq!(hinted_wait(&slow, None), ms(500));
    }
}
