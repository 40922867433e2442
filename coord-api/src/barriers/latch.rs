//! The countdown latch.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    Client, Error, Instant, Key, LeaseOptions, MAX_TTL, Result, Watch,
    barriers::{
        Participant,
        arrival::{before, sleep_or_woken},
        metrics,
    },
    handle::Handle,
    lease::{
        undo::call_id,
        wait::{jittered, later},
    },
    spi::{CountDown, LatchSet, LatchState, MAX_LATCH_COUNT},
    trace::{self, Outcome, Site},
    validate_ttl,
};

const KIND: &str = "latch";

fn site<'a>(op: &'static str, name: &'a Key) -> Site<'a> {
    Site {
        op,
        family: KIND,
        kind: "",
        key: name,
        holder: None,
        token: None,
    }
}

/// A countdown latch: set to a count, counted down once per participant,
/// open at zero. Unlike the anchors', waiting on a latch nobody set is
/// `Error::NotFound` (never "open"), a count-down repeated after a timeout
/// counts once, and every latch expires (`expire_after`, default 24 h), its
/// waiters told [`LatchWait::Expired`].
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use coord_api::LatchWait;
/// let ready = client.latch("deploy/42/ready");
/// ready.try_set_count(2).await?;                 // by the coordinator
/// client.latch("deploy/42/ready").participant("db").count_down().await?;
/// client.latch("deploy/42/ready").participant("cache").count_down().await?;
/// assert!(matches!(ready.wait().await?, LatchWait::Opened { .. }));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Latch {
    handle: Handle,
    participant: Participant,
    expire_after: Duration,
    /// The count and id of the latest `try_set_count` left unanswered (a
    /// retryable error, or cancelled): the next one of that count sends
    /// the id again. Shared by clones.
    unanswered: Arc<Mutex<Option<(u32, u64)>>>,
    /// The participant, generation asked and id of the latest count-down
    /// left unanswered: the next one of that participant and generation
    /// sends the id again. Shared by clones.
    unanswered_down: Arc<Mutex<Option<Down>>>,
}

/// A count-down: its participant, the generation it asked for (`None`:
/// the current one) and its call's id.
type Down = (Key, Option<u64>, u64);

/// One count-down in flight: its id is the one of the handle's count-down
/// of that participant and generation left unanswered, if any, else a new
/// one. Dropped unanswered (a retryable error, or cancelled), it is
/// remembered for the next count-down of its participant and generation;
/// answered, forgotten.
struct DownCall<'a> {
    unanswered: &'a Mutex<Option<Down>>,
    down: Down,
    answered: bool,
}

impl<'a> DownCall<'a> {
    fn new(latch: &'a Latch, participant: &Key, generation: Option<u64>) -> DownCall<'a> {
        let unanswered = &*latch.unanswered_down;
        let left = unanswered.lock().unwrap_or_else(|p| p.into_inner());
        let id = match &*left {
            Some((p, g, id)) if p == participant && *g == generation => *id,
            _ => call_id(),
        };
        drop(left);
        DownCall {
            unanswered,
            down: (participant.clone(), generation, id),
            answered: false,
        }
    }
}

impl Drop for DownCall<'_> {
    fn drop(&mut self) {
        let mut left = self.unanswered.lock().unwrap_or_else(|p| p.into_inner());
        if !self.answered {
            *left = Some(self.down.clone());
        } else if left.as_ref().is_some_and(|(_, _, id)| *id == self.down.2) {
            *left = None;
        }
    }
}

/// One `try_set_count` in flight: its id is the one of the handle's set of
/// that count left unanswered, if any, else a new one. Dropped unanswered
/// (a retryable error, or cancelled), it is remembered for the next call
/// of its count; answered, forgotten. Calls in flight at once draw ids of
/// their own unless one was left unanswered before.
struct SetCall<'a> {
    unanswered: &'a Mutex<Option<(u32, u64)>>,
    count: u32,
    id: u64,
    answered: bool,
}

impl<'a> SetCall<'a> {
    fn new(latch: &'a Latch, count: u32) -> SetCall<'a> {
        let unanswered = &*latch.unanswered;
        let left = *unanswered.lock().unwrap_or_else(|p| p.into_inner());
        let id = match left {
            Some((c, id)) if c == count => id,
            _ => call_id(),
        };
        SetCall {
            unanswered,
            count,
            id,
            answered: false,
        }
    }
}

impl Drop for SetCall<'_> {
    fn drop(&mut self) {
        let mut left = self.unanswered.lock().unwrap_or_else(|p| p.into_inner());
        if !self.answered {
            *left = Some((self.count, self.id));
        } else if left.is_some_and(|(_, id)| id == self.id) {
            *left = None;
        }
    }
}

/// How a latch wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LatchWait {
    /// The generation waited on reached zero.
    Opened {
        /// The generation.
        generation: u64,
    },
    /// The latch expired (its `expire_after` passed) before it opened.
    Expired {
        /// The generation waited on.
        generation: u64,
    },
}

impl Latch {
    pub(crate) fn new(client: Client, name: &str) -> Latch {
        Latch {
            participant: Participant::of_instance(&client),
            handle: Handle::new(client, name),
            expire_after: MAX_TTL,
            unanswered: Arc::default(),
            unanswered_down: Arc::default(),
        }
    }

    /// Sets who counts down (default: the client's instance id): each
    /// participant counts once per generation.
    pub fn participant(mut self, id: &str) -> Self {
        self.participant = Participant::named(id);
        self
    }

    /// How long a latch lives from its setting (1 ms ..= 24 h, the
    /// default): an abandoned latch goes, and its waiters are told.
    pub fn expire_after(mut self, ttl: Duration) -> Self {
        self.expire_after = ttl;
        self
    }

    /// Sets how long `wait` waits (`None`: for ever) before
    /// `Error::Timeout`.
    pub fn wait_timeout(mut self, wait: Option<Duration>) -> Self {
        self.handle.set_options(|o| o.wait_timeout = wait);
        self
    }

    /// Replaces all options (a latch uses `wait_timeout`, `retry_delay`
    /// and `retry_jitter`).
    pub fn with_options(mut self, opts: LeaseOptions) -> Self {
        self.handle.set_options(|o| *o = opts);
        self
    }

    /// The latch's name, as given.
    pub fn key(&self) -> &str {
        self.handle.key_str()
    }

    /// Sets the count to `count` in a new generation if the latch is
    /// absent or at zero: `true`; otherwise changes nothing: `false`.
    /// `InvalidArgument` for 0 or over `MAX_LATCH_COUNT`.
    ///
    /// Safe to retry: a call left unanswered (a retryable error such as
    /// `Unavailable`, its reply perhaps lost after the backend set the
    /// count; or cancelled) is sent again, under its id, by the next
    /// `try_set_count` of the same count on this handle or a clone of it.
    /// If the first was applied, the retry changes nothing and answers
    /// `true`, as the first would have, even once the latch was counted
    /// down to zero meanwhile (it is not set again) or set again by others
    /// (the backend knows the latch's last
    /// [`LATCH_SETS_KEPT`](crate::spi::LATCH_SETS_KEPT) settings by their
    /// calls; a retry after more, or after the latch expired, is a new
    /// setting). Calls in flight at
    /// once are apart (one `true` at most), unless one was left unanswered
    /// before them: then they are all its retries.
    pub async fn try_set_count(&self, count: u32) -> Result<bool> {
        let name = self.handle.key()?;
        validate_ttl(name, self.expire_after)?;
        if count == 0 || count > MAX_LATCH_COUNT {
            return Err(Error::invalid(format!(
                "latch {:?}: count {count} out of range 1..={MAX_LATCH_COUNT}",
                name.as_str()
            )));
        }
        let client = &self.handle.client;
        let barriers = client.barriers()?;
        let mut call = SetCall::new(self, count);
        let set = barriers.latch_set(name, count, self.expire_after, call.id);
        let set = trace::call(client, || site("set", name), set, Outcome::ok).await;
        call.answered = !matches!(&set, Err(e) if e.is_retryable());
        Ok(matches!(set?, LatchSet::Set { .. }))
    }

    /// Counts down once for this participant in the current generation;
    /// returns what is left. Again (a retry) counts nothing. `NotFound` if
    /// the latch is absent.
    ///
    /// Safe to retry also across a new setting: a count-down left
    /// unanswered (a retryable error such as `Unavailable`, its reply
    /// perhaps lost after the backend counted it; or cancelled) is sent
    /// again, under its id, by the next count-down of this participant on
    /// this handle or a clone of it. If the first counted a generation that
    /// reached zero and the latch was set again since, the retry counts
    /// nothing in the new one and answers 0 (the backend knows the calls
    /// of the generation before the current one; a retry after two more
    /// settings, or after the latch expired, is a new count-down).
    pub async fn count_down(&self) -> Result<u32> {
        self.count_down_of(None).await
    }

    /// Counts down in `generation` only: `StaleGeneration` if the latch
    /// was set again since (but the retry of a count-down in `generation`
    /// left unanswered on this handle, which counted it, answers 0, as
    /// [`count_down`](Latch::count_down)'s does).
    pub async fn count_down_in(&self, generation: u64) -> Result<u32> {
        self.count_down_of(Some(generation)).await
    }

    async fn count_down_of(&self, generation: Option<u64>) -> Result<u32> {
        let name = self.handle.key()?;
        let participant = self.participant.key()?;
        let client = &self.handle.client;
        let barriers = client.barriers()?;
        let mut call = DownCall::new(self, participant, generation);
        let down = barriers.latch_count_down(name, participant, generation, call.down.2);
        let down = trace::call(client, || site("count_down", name), down, Outcome::ok).await;
        call.answered = !matches!(&down, Err(e) if e.is_retryable());
        match down? {
            CountDown::Counted { remaining, .. } | CountDown::Already { remaining, .. } => {
                Ok(remaining)
            }
            CountDown::Absent => Err(self.not_found(name)),
            CountDown::Stale { current } => Err(Error::StaleGeneration {
                kind: KIND,
                key: name.to_string(),
                generation: generation.unwrap_or(current),
                current,
            }),
        }
    }

    /// What is left to count down; `NotFound` if the latch is absent.
    pub async fn count(&self) -> Result<u32> {
        let name = self.handle.key()?;
        match self.state().await? {
            Some(st) => Ok(st.remaining),
            None => Err(self.not_found(name)),
        }
    }

    /// The latch's record, `None` if absent.
    pub async fn state(&self) -> Result<Option<LatchState>> {
        let name = self.handle.key()?;
        let client = &self.handle.client;
        let st = client.barriers()?.latch_state(name);
        trace::call(client, || site("state", name), st, Outcome::ok).await
    }

    /// Waits until the current generation reaches zero (woken by the
    /// backend's notification; the record is read again after every
    /// wake-up). `NotFound` if the latch is absent; `Expired` if it expires
    /// first; `Error::Timeout` after `wait_timeout` (also when the backend
    /// could not be reached until then: it keeps trying, as a barrier's
    /// waiter does).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait(&self) -> Result<LatchWait> {
        let clock = self.handle.client.clock();
        let start = clock.now();
        let res = self.wait_from(start).await;
        let outcome = match &res {
            Ok(LatchWait::Opened { .. }) => "opened",
            Ok(LatchWait::Expired { .. }) => "expired",
            Err(_) => metrics::outcome(&res, ""),
        };
        metrics::wait_ended(KIND, outcome, clock.now() - start);
        res
    }

    /// [`Latch::wait`], its deadline `wait_timeout` from `start`, uncounted.
    async fn wait_from(&self, start: Instant) -> Result<LatchWait> {
        let (name, opts) = self.handle.checked()?;
        let client = &self.handle.client;
        let clock = client.clock().clone();
        let deadline = opts.wait_timeout.and_then(|w| start.checked_add(w));
        let barriers = client.barriers()?;
        let mut watch: Option<Box<dyn Watch>> = None;
        let mut generation = None;
        let mut backoff = Duration::from_millis(20);
        loop {
            // Subscribed before each read while it has no watch: a change
            // between the read and the wait is not missed. While the
            // backend cannot be reached it tries again until the deadline,
            // as a barrier's waiter does.
            let mut unreachable = false;
            if watch.is_none() {
                let subscribe = barriers.latch_watch(name);
                let subscribe = trace::call(client, || site("watch", name), subscribe, Outcome::ok);
                match before(&clock, deadline, subscribe).await {
                    Some(Ok(w)) => watch = Some(w),
                    Some(Err(e)) if e.is_retryable() => unreachable = true,
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
            }
            let st = match before(&clock, deadline, self.state()).await {
                Some(Ok(st)) => Some(st),
                Some(Err(e)) if e.is_retryable() => {
                    unreachable = true;
                    None
                }
                Some(Err(e)) => return Err(e),
                None => None,
            };
            let Some(st) = st else {
                let now = clock.now();
                if deadline.is_some_and(|d| now >= d) {
                    return Err(self.timed_out(name, now - start));
                }
                let mut wake = later(now, backoff.min(jittered(opts)));
                backoff = (backoff * 2).min(Duration::from_secs(1));
                if let Some(d) = deadline {
                    wake = wake.min(d);
                }
                clock.sleep_until(wake).await;
                continue;
            };
            backoff = Duration::from_millis(20);
            let g = match (st.as_ref(), generation) {
                (None, None) => return Err(self.not_found(name)),
                (Some(st), None) => *generation.insert(st.generation),
                (_, Some(g)) => g,
            };
            match st {
                None => return Ok(LatchWait::Expired { generation: g }),
                Some(st) if st.generation == g && st.remaining == 0 => {
                    return Ok(LatchWait::Opened { generation: g });
                }
                // Set again: only at zero within one record's life.
                Some(st) if st.generation != g => {
                    return Ok(if g >= st.first_generation {
                        LatchWait::Opened { generation: g }
                    } else {
                        LatchWait::Expired { generation: g }
                    });
                }
                Some(_) => {}
            }
            let now = clock.now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(self.timed_out(name, now - start));
            }
            let mut wake = later(now, jittered(opts));
            if unreachable {
                // The subscription failed: read again soon, subscribing
                // again first.
                wake = wake.min(later(now, backoff));
            }
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            sleep_or_woken(client, &mut watch, wake).await;
        }
    }

    fn timed_out(&self, name: &Key, waited: Duration) -> Error {
        let what = format!("latch {:?}", name.as_str());
        self.handle.client.timed_out(what, waited)
    }

    fn not_found(&self, name: &Key) -> Error {
        Error::NotFound {
            what: KIND,
            key: name.to_string(),
            backend: self.handle.client.backend().to_string(),
        }
    }
}
