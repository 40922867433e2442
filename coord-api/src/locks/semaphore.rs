//! Counting semaphores.

use super::{fair::FairMode, request::Request, require};
use crate::{
    Client, Error, LeaseInfo, LeaseKind, LockSpace, Permit, Result,
    handle::{Handle, option_setters},
    lease::wait::Step,
};

/// A distributed counting semaphore: at most `permits` permits live per key,
/// each guard its own lease (of one permit, or of several taken together with
/// [`acquire_many`](Self::acquire_many)), reclaimed at its TTL when its holder
/// dies. The number of permits is fixed while any permit is live: asking with
/// another number then is `InvalidArgument`.
///
/// ```
/// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
/// let slots = client.semaphore("exports/concurrent", 3);
/// let permit = slots.acquire().await?; // at most 3 instances export at once
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    handle: Handle,
    permits: u32,
    fair: FairMode,
}

impl Semaphore {
    pub(crate) fn new(client: Client, key: &str, permits: u32) -> Semaphore {
        Semaphore {
            handle: Handle::new(client, key),
            permits,
            fair: FairMode::default(),
        }
    }

    option_setters!();

    /// Makes this handle fair (first come, first served): waiters of
    /// [`acquire`](Self::acquire) and [`acquire_many`](Self::acquire_many)
    /// are granted in the order they began to wait, only the first in line
    /// going in (a waiter for several permits is never overtaken by later,
    /// smaller asks), and the `try_` calls never jump the queue (refused
    /// while anyone waits, even with permits free). Every handle on the key
    /// should be fair: a handle that is not ignores the queue. See
    /// [`Lock::fair`](crate::Lock::fair) for waiter TTLs, dead and
    /// cancelled waiters.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let slots = client.semaphore("exports/concurrent", 3).fair(true);
    /// let permit = slots.acquire().await?; // in arrival order
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn fair(mut self, on: bool) -> Self {
        self.fair.on = on;
        self
    }

    /// How long a fair waiter's place lasts unless renewed: see
    /// [`Lock::waiter_ttl`](crate::Lock::waiter_ttl).
    pub fn waiter_ttl(mut self, waiter_ttl: std::time::Duration) -> Self {
        self.fair.waiter_ttl = waiter_ttl;
        self
    }

    /// The number of permits.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    fn kind(&self) -> Result<LeaseKind> {
        let caps = self.handle.client.locks()?.capabilities();
        require(&self.handle, caps.semaphore, "semaphore")?;
        Ok(LeaseKind::Permit {
            limit: self.checked_permits()?,
        })
    }

    /// The permits, unless 0: `InvalidArgument` naming the key (no I/O).
    fn checked_permits(&self) -> Result<u32> {
        if self.permits == 0 {
            return Err(Error::invalid(format!(
                "semaphore {:?} needs at least 1 permit, got 0",
                self.handle.key_str()
            )));
        }
        Ok(self.permits)
    }

    /// The kind of a lease of `n` permits: `Permit` for one, `Permits`
    /// for more; `n` checked against the permits before any I/O.
    fn kind_of(&self, n: u32) -> Result<LeaseKind> {
        let kind = self.kind()?;
        if n == 0 || n > self.permits {
            return Err(Error::invalid(format!(
                "semaphore {:?} has {} permits; asked for {n} at once (1..={})",
                self.handle.key_str(),
                self.permits,
                self.permits
            )));
        }
        if n == 1 {
            return Ok(kind);
        }
        let caps = self.handle.client.locks()?.capabilities();
        require(
            &self.handle,
            caps.multi_permit,
            "several semaphore permits at once",
        )?;
        Ok(LeaseKind::Permits {
            limit: self.permits,
            count: n,
        })
    }

    /// A permit if one is free (and, [`fair`](Self::fair), nobody waits);
    /// `Ok(None)` otherwise.
    ///
    /// # Cancel safety
    /// If cancelled after the request left, anything granted is released
    /// in the background.
    pub async fn try_acquire(&self) -> Result<Option<Permit>> {
        self.try_acquire_many(1).await
    }

    /// `n` permits at once, as one guard, if `n` are free; `Ok(None)`
    /// otherwise, and then nothing is taken. The guard is one lease
    /// counting as `n` permits (one token, one TTL, renewed and released
    /// as a whole: see [`LeaseGuard::permits`](crate::LeaseGuard::permits));
    /// `try_acquire_many(1)` is [`try_acquire`](Self::try_acquire).
    /// `InvalidArgument`, before any I/O, for `n` 0 or above the permits.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let bandwidth = client.semaphore("exports/bandwidth", 10);
    /// if let Some(big) = bandwidth.try_acquire_many(4).await? {
    ///     assert_eq!(big.permits(), 4);
    ///     big.release().await?; // all 4 back at once
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// If cancelled after the request left, anything granted is released
    /// in the background.
    pub async fn try_acquire_many(&self, n: u32) -> Result<Option<Permit>> {
        let kind = self.kind_of(n)?;
        let fair = self.fair.checked(&self.handle)?;
        let request = Request::new(&self.handle, kind, None)?.fair(fair);
        match request.try_once().await? {
            Step::Done(g) => Ok(Some(g)),
            Step::Busy(_) => Ok(None),
        }
    }

    /// `n` permits at once, as one guard, waiting until `n` are free
    /// together (never holding some while waiting for the rest). See
    /// [`try_acquire_many`](Self::try_acquire_many) for the guard and the
    /// errors. A waiter for `n` gets no priority: waiters for fewer that
    /// fit enter before it (under a steady stream of them it may wait
    /// long, or until its `wait_timeout`).
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let bandwidth = client.semaphore("exports/bandwidth", 10);
    /// let big = bandwidth.acquire_many(4).await?; // a large export counts 4
    /// big.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait leaves nothing held and, fair, gives
    /// its place in the queue back (in the background).
    pub async fn acquire_many(&self, n: u32) -> Result<Permit> {
        let kind = self.kind_of(n)?;
        let fair = self.fair.checked(&self.handle)?;
        Request::new(&self.handle, kind, None)?
            .fair(fair)
            .wait()
            .await
    }

    /// A permit, waiting until one frees (and, [`fair`](Self::fair), until
    /// everyone who waited before has gone in).
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait leaves nothing held and, fair, gives
    /// its place in the queue back (in the background).
    pub async fn acquire(&self) -> Result<Permit> {
        self.acquire_many(1).await
    }

    /// The live permit leases: one per guard, a guard of several permits
    /// showing their number in [`LeaseInfo::holds`].
    pub async fn holders(&self) -> Result<Vec<LeaseInfo>> {
        super::holders(&self.handle, LockSpace::Semaphore).await
    }

    /// How many permits are free now (one read of the backend): the
    /// permits less the live ones (a guard of `n` permits counts `n`).
    /// The permits are the semaphore's N: while permits are live, the N
    /// they fixed, even when this handle was made with another (its
    /// acquisitions are then `InvalidArgument`); else this handle's. A
    /// handle made with 0 permits is `InvalidArgument` before any I/O, as
    /// its acquisitions are: 0 is no semaphore's size.
    ///
    /// ```
    /// # async fn demo(client: coord_api::Client) -> coord_api::Result<()> {
    /// let slots = client.semaphore("exports/concurrent", 3);
    /// let permit = slots.acquire().await?;
    /// assert_eq!(slots.available().await?, 2);
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub async fn available(&self) -> Result<u32> {
        let permits = self.checked_permits()?;
        let holders = self.holders().await?;
        let live: u64 = holders.iter().map(|i| u64::from(i.kind.permits())).sum();
        // Every live lease carries the N its grant was checked against.
        let n = (holders.iter())
            .find_map(|i| i.kind.permit_limit())
            .unwrap_or(permits);
        Ok(n.saturating_sub(live.try_into().unwrap_or(u32::MAX)))
    }

    /// Frees every permit (an operator's tool).
    pub async fn force_release(&self) -> Result<usize> {
        super::force_release(&self.handle, LockSpace::Semaphore).await
    }
}
