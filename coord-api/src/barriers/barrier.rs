//! The cyclic barrier.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{
    Client, Error, Key, LeaseOptions, Result,
    barriers::{
        Party,
        arrival::{Arrival, Reached, before, moves_on, new_id, site, timed_out},
        metrics,
    },
    clock::Instant,
    handle::{Handle, option_setters},
    spi::{BarrierKind, BarrierState, Break, BreakReason, EndedGeneration, MAX_PARTIES},
    trace::{self, Outcome},
};

const KIND: BarrierKind = BarrierKind::Cyclic;

/// A cyclic barrier: `parties` distinct participants meet, round after
/// round. Each round is a *generation*; a waiter's arrival is a lease,
/// renewed while it waits, so a crashed participant is never counted past
/// its TTL. A waiter whose deadline (`wait_timeout`) passes breaks the
/// generation for every waiter of it (`Error::Broken`, naming who was
/// missing), unless it tripped first.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// use std::time::Duration;
/// let barrier = client
///     .barrier("nightly/stage-1", 3)
///     .participant("worker-2")
///     .wait_timeout(Some(Duration::from_secs(60)));
/// match barrier.wait().await {
///     Ok(trip) => println!("generation {} tripped by {}", trip.generation, trip.by),
///     Err(coord_api::Error::Broken(b)) => {
///         println!("{} missing; crashed: {:?}", b.missing, b.expired)
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Barrier {
    party: Party,
}

/// A generation that tripped with this participant counted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tripped {
    /// The generation.
    pub generation: u64,
    /// The generation after it: [`Barrier::wait_in`] it to take part in the
    /// next round and in no later one.
    pub next: u64,
    /// The arrival that completed the count.
    pub by: Key,
    /// The participants counted, in arrival order (`by` last).
    pub arrivals: Vec<Key>,
}

impl Barrier {
    pub(crate) fn new(client: Client, name: &str, parties: u32) -> Barrier {
        Barrier {
            party: Party::new(client, name, parties),
        }
    }

    option_setters!(party.handle);

    /// Sets who arrives (default: the client's instance id). Participants
    /// are told apart by this id: two waits with one id count once.
    pub fn participant(mut self, id: &str) -> Self {
        self.party.set_participant(id);
        self
    }

    /// The parties each generation waits for.
    pub fn parties(&self) -> u32 {
        self.party.parties()
    }

    fn checked(&self) -> Result<(&Key, &LeaseOptions, &Key)> {
        self.party.checked(KIND)
    }

    /// Arrives in the current generation and waits until it trips (see
    /// [`wait_in`](Self::wait_in)). Reading the current generation and
    /// arriving in it are two steps: if that generation ended before this
    /// arrival reached it (it tripped without this participant, or broke
    /// before it arrived), the arrival goes to the next generation instead
    /// (up to three times, all within one `wait_timeout`), never counted in
    /// two; an arrival the backend counted never moves on.
    ///
    /// # Cancel safety
    /// If cancelled, the arrival is withdrawn in the background.
    pub async fn wait(&self) -> Result<Tripped> {
        let start = self.party.handle.client.clock().now();
        counted(
            &self.party.handle.client,
            start,
            self.wait_moving_on(start).await,
        )
    }

    /// [`wait`](Self::wait) from `start`, uncounted.
    async fn wait_moving_on(&self, start: Instant) -> Result<Tripped> {
        let (name, opts, participant) = self.checked()?;
        let client = &self.party.handle.client;
        let clock = client.clock();
        // One deadline for every try, the reads of the generation included.
        let deadline = opts.wait_timeout.and_then(|w| start.checked_add(w));
        let mut tries = 0;
        loop {
            tries += 1;
            let Some(read) = before(clock, deadline, self.state_of(None)).await else {
                return Err(timed_out(client, KIND, name, clock.now() - start));
            };
            let (res, arrived) = self.wait_from(read?.generation, start).await;
            // Moved on only when the generation ended before this arrival
            // reached it.
            match res {
                Err(e) if tries < 3 && moves_on(&e, arrived, participant) => {}
                res => return res,
            }
        }
    }

    /// Arrives in `generation` and waits until `parties` distinct
    /// participants have live arrivals in it. Returns the trip; or
    /// `Error::Broken` if the generation broke (a waiter's deadline, this
    /// one's included, or a reset); `Error::StaleGeneration` if it ended
    /// without this participant; `Error::Timeout` only if the deadline
    /// passed while the backend could not be reached to settle it.
    ///
    /// # Cancel safety
    /// If cancelled, the arrival is withdrawn in the background.
    pub async fn wait_in(&self, generation: u64) -> Result<Tripped> {
        let client = &self.party.handle.client;
        let start = client.clock().now();
        counted(client, start, self.wait_from(generation, start).await.0)
    }

    /// [`wait_in`](Self::wait_in), its deadline `wait_timeout` from
    /// `start`, uncounted (the metrics count a caller's wait once, however
    /// many generations it tried); and whether the backend ever counted
    /// this arrival.
    async fn wait_from(&self, generation: u64, start: Instant) -> (Result<Tripped>, bool) {
        let (name, opts, participant) = match self.checked() {
            Ok(checked) => checked,
            Err(e) => return (Err(e), false),
        };
        let client = &self.party.handle.client;
        let arrival = Arrival {
            client,
            kind: KIND,
            name,
            participant,
            generation,
            parties: self.parties(),
            opts,
            start,
            arrived: AtomicBool::new(false),
            id: new_id(),
        };
        let res = match arrival.wait().await {
            Ok(Reached::Ended(ended)) => {
                arrival
                    .settle(ended)
                    .map(|(generation, next, trip)| Tripped {
                        generation,
                        next,
                        by: trip.by,
                        arrivals: trip.arrivals,
                    })
            }
            Ok(Reached::Entered(..)) => Err(Error::backend(
                client.backend(),
                format!(
                    "a cyclic barrier {:?} answered as a double one",
                    name.as_str()
                ),
            )),
            Err(e) => Err(e),
        };
        (res, arrival.arrived.load(Ordering::Relaxed))
    }

    /// The current generation.
    pub async fn generation(&self) -> Result<u64> {
        Ok(self.state().await?.generation)
    }

    /// The current generation, its parties (once set by its first arrival)
    /// and its live arrivals with their time left.
    pub async fn state(&self) -> Result<BarrierState> {
        self.state_of(None).await
    }

    /// [`state`](Self::state) without making the barrier: `None` when it
    /// has no record (nobody used it, or the backend forgot it a day after
    /// its last use). For operators and dashboards: a look at a mistyped
    /// name says there is nothing there. `NotSupported` from a backend that
    /// cannot look without making.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// match client.barrier("deploy", 3).peek().await? {
    ///     Some(s) => println!("generation {}: {} arrived", s.generation, s.arrivals.len()),
    ///     None => println!("nobody has used this barrier"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn peek(&self) -> Result<Option<BarrierState>> {
        peek(&self.party.handle, KIND).await
    }

    /// How `generation` ended, if it ended and the backend remembers it
    /// (the last 16 generations at least).
    pub async fn ended(&self, generation: u64) -> Result<Option<EndedGeneration>> {
        Ok(self.state_of(Some(generation)).await?.asked)
    }

    async fn state_of(&self, asked: Option<u64>) -> Result<BarrierState> {
        state(&self.party.handle, KIND, asked).await
    }

    /// Breaks the current generation (every waiter of it returns
    /// `Error::Broken`, reason `reset`) and begins the next. Returns the
    /// generation that ended.
    ///
    /// Not safe to retry: it breaks whichever generation is current when it
    /// reaches the backend, so a retry after an error whose reset was
    /// applied (its reply lost, `Error::Unavailable`) breaks the next
    /// generation too. [`reset_in`](Self::reset_in) names the generation,
    /// and a retry of it is harmless.
    pub async fn reset(&self) -> Result<EndedGeneration> {
        reset(&self.party.handle, KIND, None).await
    }

    /// Breaks `generation` (reason `reset`) if it is the current one, and
    /// begins the next; if it ended already (by a trip, a deadline, or this
    /// very reset sent before, its reply lost), changes nothing. Either way
    /// returns how `generation` ended: a retry returns what the first call
    /// would have, and never breaks a later generation.
    /// `Error::StaleGeneration` if the backend does not know `generation`
    /// (ahead of the current one, or an end it no longer remembers: the
    /// last 16 at least).
    pub async fn reset_in(&self, generation: u64) -> Result<EndedGeneration> {
        reset(&self.party.handle, KIND, Some(generation)).await
    }
}

/// Counts one caller's wait, begun at `start`, that ended as `res`.
fn counted(client: &Client, start: Instant, res: Result<Tripped>) -> Result<Tripped> {
    let outcome = metrics::outcome(&res, "tripped");
    metrics::wait_ended(KIND.as_str(), outcome, client.clock().now() - start);
    res
}

/// Parties 1..=[`MAX_PARTIES`], else `InvalidArgument` naming the barrier.
pub(crate) fn check_parties(kind: BarrierKind, name: &Key, parties: u32) -> Result<()> {
    if parties == 0 || parties > MAX_PARTIES {
        return Err(Error::invalid(format!(
            "{} {:?}: parties {parties} out of range 1..={MAX_PARTIES}",
            kind.as_str(),
            name.as_str()
        )));
    }
    Ok(())
}

/// A barrier's state (one step).
pub(crate) async fn state(
    handle: &Handle,
    kind: BarrierKind,
    asked: Option<u64>,
) -> Result<BarrierState> {
    let name = handle.key()?;
    let client = &handle.client;
    let state = client.barriers()?.state(kind, name, asked);
    trace::call(client, || site("state", kind, name), state, Outcome::ok).await
}

/// Reads a barrier's record without making it (one step).
pub(crate) async fn peek(handle: &Handle, kind: BarrierKind) -> Result<Option<BarrierState>> {
    let name = handle.key()?;
    let client = &handle.client;
    let peek = client.barriers()?.peek(kind, name);
    trace::call(client, || site("peek", kind, name), peek, Outcome::ok).await
}

/// Resets a barrier (one step): `generation`, or the current one when
/// `None`.
pub(crate) async fn reset(
    handle: &Handle,
    kind: BarrierKind,
    generation: Option<u64>,
) -> Result<EndedGeneration> {
    let name = handle.key()?;
    let client = &handle.client;
    let brk = (client.barriers()?).break_generation(kind, name, generation, BreakReason::Reset);
    let brk = trace::call(client, || site("reset", kind, name), brk, Outcome::ok).await?;
    match (brk, generation) {
        (Break::Ended(ended), _) => Ok(ended),
        (Break::Unknown { current }, Some(generation)) => Err(Error::StaleGeneration {
            kind: kind.as_str(),
            key: name.to_string(),
            generation,
            current,
        }),
        (other, _) => Err(Error::backend(
            client.backend(),
            format!(
                "unexpected answer {other:?} to a reset of {} {:?}",
                kind.as_str(),
                name.as_str()
            ),
        )),
    }
}
