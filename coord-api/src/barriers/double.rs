//! The double barrier: enter together, leave together.

use std::{sync::atomic::Ordering, time::Duration};

use crate::{
    Client, HolderId, Instant, Key, LeaseOptions, LostSignal, Release, Result,
    barriers::{
        Party,
        arrival::{
            Arrival, Reached, before, broken, moves_on, new_id, site, sleep_or_woken, stale,
        },
        barrier::{peek, reset, state},
        metrics,
    },
    handle::{Handle, option_setters},
    lease::{
        BoxFuture, Guard, Lease, Tenure,
        wait::{jittered, later},
    },
    spi::{BarrierKind, BarrierState, Ended, EndedGeneration, Leave, Trip},
    trace::{self, Outcome},
};

const KIND: BarrierKind = BarrierKind::Double;

/// A double barrier (Curator's `DistributedDoubleBarrier`): `enter` waits
/// until `parties` participants are inside; `leave` waits until every one
/// of them has left. A member's presence is a lease, renewed while it is
/// inside: one that crashes, in either phase, is dropped at its TTL and the
/// others go on. An entrant beyond the parties gets
/// `Error::TooManyParticipants`.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// let stage = client.double_barrier("etl/load", 4).participant("loader-1");
/// let inside = stage.enter().await?;   // all 4 are in
/// // ... work that needs everyone present ...
/// inside.leave().await?;               // all 4 are out
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DoubleBarrier {
    party: Party,
}

impl DoubleBarrier {
    pub(crate) fn new(client: Client, name: &str, parties: u32) -> DoubleBarrier {
        DoubleBarrier {
            party: Party::new(client, name, parties),
        }
    }

    option_setters!(party.handle);

    /// Sets who enters (default: the client's instance id).
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

    /// Enters the current generation and waits until every party is
    /// inside. Returns the membership, renewed in the background until
    /// [`Inside::leave`] (or drop). `Error::Broken` if the generation broke
    /// first (a deadline passed: its waiters break it, as a cyclic
    /// barrier's do), `Error::TooManyParticipants` if its parties are
    /// inside already.
    ///
    /// # Cancel safety
    /// If cancelled, the arrival is withdrawn in the background.
    pub async fn enter(&self) -> Result<Inside> {
        let clock = self.party.handle.client.clock();
        let start = clock.now();
        let res = self.enter_from(start).await;
        let outcome = metrics::outcome(&res, "entered");
        metrics::wait_ended(KIND.as_str(), outcome, clock.now() - start);
        res
    }

    /// [`DoubleBarrier::enter`], its deadline `wait_timeout` from `start`.
    async fn enter_from(&self, start: Instant) -> Result<Inside> {
        let (_, _, participant) = self.checked()?;
        let mut tries = 0;
        loop {
            tries += 1;
            let (res, arrived) = self.enter_once(start).await;
            // Moved on only when the generation ended before this arrival
            // reached it, as a cyclic barrier's wait.
            match res {
                Err(e) if tries < 3 && moves_on(&e, arrived, participant) => {}
                res => return res,
            }
        }
    }

    /// One read of the generation and an arrival in it; whether the backend
    /// answered that it counted the arrival.
    async fn enter_once(&self, start: Instant) -> (Result<Inside>, bool) {
        let (name, opts, participant) = match self.checked() {
            Ok(checked) => checked,
            Err(e) => return (Err(e), false),
        };
        let client = &self.party.handle.client;
        let clock = client.clock();
        let mut arrival = Arrival {
            client,
            kind: KIND,
            name,
            participant,
            generation: 0,
            parties: self.parties(),
            opts,
            start,
            arrived: Default::default(),
            id: new_id(),
        };
        // The read of the generation counts against the deadline too: an
        // enter returns at most one call (the break's) past it.
        let read = state(&self.party.handle, KIND, None);
        let Some(read) = before(clock, arrival.deadline(), read).await else {
            return (Err(arrival.timeout(clock.now() - start)), false);
        };
        arrival.generation = match read {
            Ok(st) => st.generation,
            Err(e) => return (Err(e), false),
        };
        let generation = arrival.generation;
        // Counted in a round that ended before it saw itself inside.
        let mut counted = false;
        let res = match arrival.wait().await {
            Ok(Reached::Entered(trip, t_sent)) => {
                let member = Member {
                    name: name.clone(),
                    participant: participant.clone(),
                    generation,
                    arrival: arrival.id,
                    holder: HolderId::new(*client.instance_id()),
                };
                let validity = self.party.handle.validity();
                Lease::start(client.clone(), member, None, opts, validity, t_sent).map(|lease| {
                    Inside {
                        guard: Guard::new(lease),
                        handle: self.party.handle.clone(),
                        generation,
                        trip,
                    }
                })
            }
            // Ended before this participant was inside: broken, or over.
            Ok(Reached::Ended(ended)) => Err(match arrival.settle(ended) {
                Err(e) => e,
                Ok((generation, next, _)) => {
                    counted = true;
                    stale(KIND, name, generation, next)
                }
            }),
            Err(e) => Err(e),
        };
        (res, counted || arrival.arrived.load(Ordering::Relaxed))
    }

    /// The current generation, its parties, whether everyone entered, and
    /// the members inside (or arrived) with their time left.
    pub async fn state(&self) -> Result<BarrierState> {
        state(&self.party.handle, KIND, None).await
    }

    /// [`state`](Self::state) without making the barrier: `None` when it
    /// has no record (see [`Barrier::peek`](super::Barrier::peek)).
    pub async fn peek(&self) -> Result<Option<BarrierState>> {
        peek(&self.party.handle, KIND).await
    }

    /// Ends the current generation whatever its phase: waiters entering or
    /// leaving return `Error::Broken` (reason `reset`).
    ///
    /// Not safe to retry: a retry after an error whose reset was applied
    /// (its reply lost) ends the next generation too.
    /// [`reset_in`](Self::reset_in) names the generation.
    pub async fn reset(&self) -> Result<EndedGeneration> {
        reset(&self.party.handle, KIND, None).await
    }

    /// Ends `generation` whatever its phase if it is the current one; if
    /// it ended already (also by this very reset sent before, its reply
    /// lost), changes nothing. Either way returns how it ended, so a retry
    /// is harmless. `Error::StaleGeneration` if the backend does not know
    /// `generation` (see [`Barrier::reset_in`](crate::Barrier::reset_in)).
    pub async fn reset_in(&self, generation: u64) -> Result<EndedGeneration> {
        reset(&self.party.handle, KIND, Some(generation)).await
    }
}

/// A member's presence inside a double barrier's generation: renewed
/// while inside, ended by leaving.
struct Member {
    name: Key,
    participant: Key,
    generation: u64,
    /// The wait that entered: its leave is this member's.
    arrival: u64,
    holder: HolderId,
}

impl Tenure for Member {
    fn family(&self) -> &'static str {
        KIND.as_str()
    }

    fn kind(&self) -> &'static str {
        "member"
    }

    fn key(&self) -> &Key {
        &self.name
    }

    fn holder(&self) -> &HolderId {
        &self.holder
    }

    fn renew<'a>(
        &'a self,
        client: &'a Client,
        ttl: Duration,
    ) -> Result<BoxFuture<'a, Result<bool>>> {
        let (name, p, g) = (&self.name, &self.participant, self.generation);
        Ok(client.barriers()?.renew(KIND, name, p, g, ttl))
    }

    fn release<'a>(&'a self, client: &'a Client) -> Result<BoxFuture<'a, Result<Release>>> {
        let barriers = client.barriers()?;
        Ok(Box::pin(async move {
            let (name, p, g) = (&self.name, &self.participant, self.generation);
            Ok(
                match barriers.leave(KIND, name, p, g, self.arrival).await? {
                    Leave::Left { .. } => Release::Released { remaining: 0 },
                    _ => Release::NotHeld,
                },
            )
        }))
    }

    fn counted(&self) -> bool {
        false
    }
}

/// This participant inside a double barrier (from
/// [`DoubleBarrier::enter`]). Dropping it leaves without waiting.
#[must_use = "if unused the member leaves at once"]
#[derive(Debug)]
pub struct Inside {
    guard: Guard,
    handle: Handle,
    generation: u64,
    trip: Trip,
}

impl Inside {
    /// The generation entered.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Who entered, in arrival order (the last completed the count).
    pub fn members(&self) -> &[Key] {
        &self.trip.arrivals
    }

    /// Whether this member is still inside as far as it can tell.
    pub fn is_inside(&self) -> bool {
        self.guard.is_held()
    }

    /// Completes when the membership is lost (renewals failed past local
    /// validity, or the barrier dropped it).
    pub async fn lost(&self) {
        self.guard.lost().await
    }

    /// A `'static` handle on the lost signal.
    pub fn lost_signal(&self) -> LostSignal {
        self.guard.lost_signal()
    }

    /// Leaves, then waits (up to `wait_timeout`) until every member has
    /// left or expired and the generation ended. `Error::Broken` if it was
    /// reset instead; `Error::Timeout` past the deadline (nothing breaks).
    /// While the backend cannot be reached it keeps trying until the
    /// deadline (a leave that did not get through expires at the TTL).
    pub async fn leave(self) -> Result<()> {
        let handle = self.handle.clone();
        let client = &handle.client;
        let (name, opts) = handle.checked()?;
        let clock = client.clock().clone();
        let start = clock.now();
        let deadline = opts.wait_timeout.and_then(|w| start.checked_add(w));
        let generation = self.generation;
        let barriers = client.barriers()?;
        // Subscribed before leaving: the end that the last leave causes is
        // not missed.
        let mut watch = before(&clock, deadline, barriers.watch(KIND, name))
            .await
            .and_then(|w| w.ok());
        match before(&clock, deadline, self.guard.release()).await {
            Some(Err(e)) if !e.is_retryable() => return Err(e),
            _ => {}
        }
        let mut backoff = Duration::from_millis(20);
        let res = loop {
            let st = barriers.state(KIND, name, Some(generation));
            let st = trace::call(client, || site("state", KIND, name), st, Outcome::ok);
            let mut unreachable = false;
            match before(&clock, deadline, st).await {
                Some(Ok(st)) if st.generation != generation => {
                    break match st.asked {
                        Some(EndedGeneration {
                            ended: Ended::Broken(b),
                            next,
                            ..
                        }) => Err(broken(KIND, name, generation, next, b)),
                        _ => Ok(()),
                    };
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) if e.is_retryable() => unreachable = true,
                Some(Err(e)) => break Err(e),
            }
            let now = clock.now();
            if deadline.is_some_and(|d| now >= d) {
                let what = format!("every member to leave double barrier {:?}", name.as_str());
                break Err(client.timed_out(what, now - start));
            }
            let mut wake = later(now, jittered(opts)).min(later(now, opts.renew_every()));
            if unreachable {
                wake = wake.min(later(now, backoff));
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            sleep_or_woken(client, &mut watch, wake).await;
        };
        let outcome = metrics::outcome(&res, "left");
        metrics::wait_ended(KIND.as_str(), outcome, clock.now() - start);
        res
    }
}
