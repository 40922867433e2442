//! The wait every barrier shares. A participant arrives in a generation and
//! waits: woken by the backend's notification that a generation ended (a
//! hint), by its renewal period, or by its retry delay, it arrives again —
//! which renews its arrival and reads the outcome in one step. At its
//! deadline it breaks the generation (unless the generation tripped first),
//! so that every waiter of a generation returns the same way. If the wait
//! ends any other way (cancelled, a backend error), its arrival is withdrawn
//! in the background.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    Client, Clock, Error, Key, LeaseOptions, Result, Watch,
    clock::Instant,
    lease::{
        undo::Undo,
        wait::{jittered, later},
    },
    spi::{Arrive, BarrierBackend, BarrierKind, Break, BreakReason, Ended, EndedGeneration, Trip},
    trace::{self, Outcome, Site},
};

/// One participant's arrival in one generation of a barrier.
pub(crate) struct Arrival<'a> {
    pub(crate) client: &'a Client,
    pub(crate) kind: BarrierKind,
    pub(crate) name: &'a Key,
    pub(crate) participant: &'a Key,
    pub(crate) generation: u64,
    pub(crate) parties: u32,
    pub(crate) opts: &'a LeaseOptions,
    /// When the caller's wait started: its deadline is `wait_timeout` from
    /// there, so that the calls it made before arriving count against it.
    pub(crate) start: Instant,
    /// Whether the backend counted this arrival (answered it waiting).
    pub(crate) arrived: AtomicBool,
    /// This wait's id ([`new_id`]): a withdrawal of it that comes late
    /// cannot withdraw a later wait's arrival of the same participant.
    pub(crate) id: u64,
}

/// A wait's id: random, so that two waits of a participant (in two
/// processes, or one after the other) differ.
pub(crate) fn new_id() -> u64 {
    rand::random()
}

/// How an arrival's wait ended well.
pub(crate) enum Reached {
    /// The generation ended (a cyclic barrier's trip, or a double barrier's
    /// generation that ended before this participant entered): judged by
    /// [`Arrival::settle`].
    Ended(EndedGeneration),
    /// A double barrier's generation tripped with this participant inside;
    /// its arrival's lease was last renewed by a request sent at the
    /// instant given.
    Entered(Trip, Instant),
}

/// The span of a barrier call.
pub(crate) fn site<'a>(op: &'static str, kind: BarrierKind, name: &'a Key) -> Site<'a> {
    Site {
        op,
        family: kind.as_str(),
        kind: "",
        key: name,
        holder: None,
        token: None,
    }
}

impl Arrival<'_> {
    fn backend(&self) -> Result<&dyn BarrierBackend> {
        self.client.barriers()
    }

    /// Arrives (again): one step.
    async fn arrive(&self) -> Result<Arrive> {
        let b = self.backend()?;
        let arrive = b.arrive(
            self.kind,
            self.name,
            self.participant,
            self.generation,
            self.parties,
            self.opts.ttl,
            self.id,
        );
        trace::call(
            self.client,
            || site("arrive", self.kind, self.name),
            arrive,
            Outcome::ok,
        )
        .await
    }

    /// Arrives and waits until the generation trips (or, for a double
    /// barrier, until every party entered), breaking it at the deadline.
    pub(crate) async fn wait(&self) -> Result<Reached> {
        let clock = self.client.clock().clone();
        let start = self.start;
        let deadline = self.deadline();
        let refresh = self.opts.renew_every();
        let mut undo = Undo::new(self.client, self.opts.ttl, || {
            let (kind, name, participant, generation, id) = (
                self.kind,
                self.name.clone(),
                self.participant.clone(),
                self.generation,
                self.id,
            );
            move |client: Client| {
                let (name, participant) = (name.clone(), participant.clone());
                async move {
                    let b = client.barriers()?;
                    b.leave(kind, &name, &participant, generation, id)
                        .await
                        .map(drop)
                }
            }
        });
        let mut watch: Option<Box<dyn Watch>> = None;
        let mut backoff = Duration::from_millis(20);
        // When the last arrival the backend answered was sent: the lease of
        // a double barrier's member runs from there.
        let mut renewed = start;
        // A call in flight at the deadline is abandoned for the break
        // (`before`), so that a wait ends at most one call (the break's)
        // past its deadline.
        loop {
            let t_sent = clock.now();
            let mut unreachable = false;
            match before(&clock, deadline, self.arrive()).await {
                None => {}
                Some(Ok(Arrive::Waiting { .. })) => {
                    self.arrived.store(true, Ordering::Relaxed);
                    renewed = t_sent
                }
                Some(Ok(Arrive::Entered(trip))) => {
                    undo.disarm();
                    return Ok(Reached::Entered(trip, t_sent));
                }
                Some(Ok(Arrive::Ended(ended))) => {
                    undo.disarm();
                    return Ok(Reached::Ended(ended));
                }
                Some(Ok(other)) => {
                    undo.disarm();
                    return Err(self.refused(other));
                }
                Some(Err(e)) if e.is_retryable() => unreachable = true,
                Some(Err(e)) => return Err(e),
            }
            let now = clock.now();
            if deadline.is_some_and(|d| now >= d) {
                return match self.break_at_deadline().await {
                    Ok(Break::Ended(ended)) => {
                        undo.disarm();
                        Ok(Reached::Ended(ended))
                    }
                    // Entered just before: inside after all, if this
                    // participant is one of those who entered (its arrival
                    // may have expired while it could not renew it).
                    Ok(Break::Entered(trip)) => {
                        undo.disarm();
                        if trip.arrivals.contains(self.participant) {
                            Ok(Reached::Entered(trip, renewed))
                        } else {
                            Err(self.refused(Arrive::Full {
                                parties: self.parties,
                            }))
                        }
                    }
                    Ok(Break::Unknown { current }) => {
                        undo.disarm();
                        Err(self.stale(current))
                    }
                    // The generation cannot be settled: a timeout, and the
                    // arrival withdrawn in the background (`undo`).
                    Err(e) if e.is_retryable() => Err(self.timeout(now - start)),
                    Err(e) => Err(e),
                };
            }
            if watch.is_none() && !unreachable {
                match before(
                    &clock,
                    deadline,
                    self.backend()?.watch(self.kind, self.name),
                )
                .await
                {
                    Some(Ok(w)) => {
                        // Arrive again at once: an end between the arrival
                        // and the subscription is not missed.
                        watch = Some(w);
                        continue;
                    }
                    Some(Err(e)) if e.is_retryable() => unreachable = true,
                    Some(Err(e)) => return Err(e),
                    // The deadline: the next round breaks at once.
                    None => continue,
                }
            }
            let mut wake = later(now, jittered(self.opts)).min(later(now, refresh));
            if unreachable {
                wake = wake.min(later(now, backoff));
                backoff = (backoff * 2).min(Duration::from_secs(1));
            } else {
                backoff = Duration::from_millis(20);
            }
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            sleep_or_woken(self.client, &mut watch, wake).await;
        }
    }

    /// The wait's deadline: `wait_timeout` from the caller's start.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.opts
            .wait_timeout
            .and_then(|w| self.start.checked_add(w))
    }

    /// `Error::Timeout` for this wait, `waited` long.
    pub(crate) fn timeout(&self, waited: Duration) -> Error {
        timed_out(self.client, self.kind, self.name, waited)
    }

    /// Breaks the generation because this waiter's deadline passed.
    async fn break_at_deadline(&self) -> Result<Break> {
        let b = self.backend()?;
        let reason = BreakReason::Timeout {
            by: self.participant.clone(),
        };
        let brk = b.break_generation(self.kind, self.name, Some(self.generation), reason);
        trace::call(
            self.client,
            || site("break", self.kind, self.name),
            brk,
            Outcome::ok,
        )
        .await
    }

    /// The error of an arrival refused outright.
    fn refused(&self, arrive: Arrive) -> Error {
        match arrive {
            Arrive::Stale { current } => self.stale(current),
            Arrive::Full { parties } => Error::TooManyParticipants {
                key: self.name.to_string(),
                parties,
            },
            Arrive::PartiesDiffer { parties } => Error::invalid(format!(
                "{} {:?}: generation {} waits for {parties} parties, not {}",
                self.kind.as_str(),
                self.name.as_str(),
                self.generation,
                self.parties
            )),
            other => Error::backend(
                self.client.backend(),
                format!(
                    "unexpected arrival answer {other:?} from {} {:?}",
                    self.kind.as_str(),
                    self.name.as_str()
                ),
            ),
        }
    }

    pub(crate) fn stale(&self, current: u64) -> Error {
        stale(self.kind, self.name, self.generation, current)
    }

    /// What an ended generation means for this participant: its trip if it
    /// was counted, `Broken` if the generation broke, `StaleGeneration` if
    /// it tripped without it. A trip that names it expired tells that the
    /// backend had counted its arrival (`arrived`), though no reply said so.
    pub(crate) fn settle(&self, ended: EndedGeneration) -> Result<(u64, u64, Trip)> {
        let EndedGeneration {
            generation,
            next,
            ended,
        } = ended;
        match ended {
            Ended::Tripped(trip) if trip.arrivals.contains(self.participant) => {
                Ok((generation, next, trip))
            }
            Ended::Tripped(trip) => {
                if trip.expired.contains(self.participant) {
                    self.arrived.store(true, Ordering::Relaxed);
                }
                Err(stale(self.kind, self.name, generation, next))
            }
            Ended::Broken(b) => Err(broken(self.kind, self.name, generation, next, b)),
        }
    }
}

/// Whether a wait that read the generation and then arrived in it, and
/// ended with `e`, arrives in the next generation instead: the generation
/// it read ended before its arrival reached it (`arrived`: the backend
/// answered that it counted it, or its end named it expired), tripped
/// without it or broken without naming it.
pub(crate) fn moves_on(e: &Error, arrived: bool, participant: &Key) -> bool {
    let named = |v: &[String]| v.iter().any(|a| a == participant.as_str());
    match e {
        Error::StaleGeneration { .. } => !arrived,
        Error::Broken(b) => !arrived && !named(&b.arrived) && !named(&b.expired),
        _ => false,
    }
}

/// Sleeps until `wake`, or until `watch` wakes first, or until `client` is
/// closed (its owner's next call then answers `Error::Closed`). A watch that
/// fails is dropped: its owner falls back on its timers (and may subscribe
/// again).
pub(crate) async fn sleep_or_woken(
    client: &Client,
    watch: &mut Option<Box<dyn Watch>>,
    wake: Instant,
) {
    let clock = client.clock();
    match watch.as_mut() {
        Some(w) => {
            tokio::select! {
                biased;
                res = w.changed() => if res.is_err() { *watch = None },
                _ = clock.sleep_until(wake) => {}
                () = client.until_closed() => {}
            }
        }
        None => tokio::select! {
            biased;
            _ = clock.sleep_until(wake) => {}
            () = client.until_closed() => {}
        },
    }
}

/// `call`'s answer, or `None` if `deadline` comes first.
pub(crate) async fn before<T>(
    clock: &Arc<dyn Clock>,
    deadline: Option<Instant>,
    call: impl Future<Output = T>,
) -> Option<T> {
    match deadline {
        Some(d) => tokio::select! {
            biased;
            res = call => Some(res),
            _ = clock.sleep_until(d) => None,
        },
        None => Some(call.await),
    }
}

/// `Error::Timeout` for a wait on `kind` `name` that lasted `waited`.
pub(crate) fn timed_out(client: &Client, kind: BarrierKind, name: &Key, waited: Duration) -> Error {
    client.timed_out(format!("{} {:?}", kind.as_str(), name.as_str()), waited)
}

/// `StaleGeneration` for `generation` of a barrier.
pub(crate) fn stale(kind: BarrierKind, name: &Key, generation: u64, current: u64) -> Error {
    Error::StaleGeneration {
        kind: kind.as_str(),
        key: name.to_string(),
        generation,
        current,
    }
}

/// `Broken` for a generation that broke.
pub(crate) fn broken(
    kind: BarrierKind,
    name: &Key,
    generation: u64,
    next: u64,
    b: crate::spi::Broken,
) -> Error {
    let names = |v: Vec<Key>| v.into_iter().map(|k| k.to_string()).collect();
    Error::Broken(Box::new(crate::BarrierBroken {
        kind: kind.as_str(),
        key: name.to_string(),
        generation,
        next,
        reason: match b.reason {
            BreakReason::Timeout { by } => format!("timeout of {:?}", by.as_str()),
            BreakReason::Reset => "reset".to_owned(),
        },
        missing: b.missing,
        arrived: names(b.arrived),
        expired: names(b.expired),
    }))
}
